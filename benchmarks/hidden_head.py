"""Does a hidden dense layer in the head lift a ResBuilder network at equal time?

The 2-conv CNN beats the search at MNIST 3e6 FLOPs, and without its hidden
dense layer it falls below it (``pareto.py --only cnn_linear``). This asks the
converse: give the network the search returns there the CNN's head
(``Linear(F, h) -> ReLU -> Dropout(0.5) -> Linear(h, classes)`` in place of
the one linear layer on the flattened maps) and train both for the same T.

Each variant (``--hidden 0,64``; 0 is the network as it is) trains by
``search_value.train_for`` (the fixed rows' recipe: Adam, one-cycle to 3e-3,
+-10 % shifts, all training images) for ``--time`` seconds per seed. The
network is ``--arch`` (a JSON spec as ``Architecture.to_dict`` writes it) or,
by default, the minimal start ``--width`` channels wide with one block in its
last stage: the ResBuilder winner at MNIST 3e6 (``32[-] > 32[-] > 32[32]``).

    OMP_NUM_THREADS=1 python benchmarks/hidden_head.py [--dataset mnist]
        [--hidden 0,64] [--width 32] [--arch JSON] [--time 201] [--seeds 0,1,2]
        [--threads 1] [--out FILE.json] [--smoke]

Variants run one after the other within a seed; on two cores, run one
process per variant side by side (``--hidden 0`` and ``--hidden 64``) so both
see the same load, and read the JSON files together.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # search_value, beside this file

import search_value as sv  # noqa: E402
from sklearn_resbuilder import Architecture  # noqa: E402
from sklearn_resbuilder.flops import torch_flops  # noqa: E402
from sklearn_resbuilder.network import ResBuilderNet  # noqa: E402


def default_arch(shape, n_classes, width):
    """The minimal start ``width`` wide with one block opening its last stage."""
    base = Architecture.minimal(shape, n_classes, width)
    return base.insert_block(base.n_stages - 1, 0)


def build(arch: Architecture, hidden: int, seed: int) -> nn.Module:
    """``arch`` as a module; ``hidden > 0`` puts the CNN's hidden dense layer in its head."""
    torch.manual_seed(seed)  # the dropout masks and the new layers' init
    net = ResBuilderNet(arch, torch.Generator().manual_seed(seed))
    if hidden:
        net.head = nn.Sequential(*sv.dense_head(net.head.in_features, hidden, arch.n_classes))
    return net


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist", choices=("mnist", "digits"))
    p.add_argument("--hidden", default="0,64")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--arch", default=None, help="a JSON spec (Architecture.to_dict)")
    p.add_argument("--time", type=float, default=201.0)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--smoke", action="store_true", help="600 images, T = 2 s, one seed")
    args = p.parse_args(argv)
    hidden = [int(h) for h in args.hidden.split(",")]
    if any(h < 0 for h in hidden):
        raise SystemExit(f"--hidden widths must be >= 0, got {args.hidden}")
    seeds = [0] if args.smoke else [int(s) for s in args.seeds.split(",")]
    T = 2.0 if args.smoke else args.time
    torch.set_num_threads(args.threads)

    X, y, Xt, yt = sv.load(args.dataset, args.smoke)
    shape, n_classes = (1, *X.shape[1:]), int(y.max()) + 1
    arch = (Architecture.from_dict(json.loads(args.arch)) if args.arch
            else default_arch(shape, n_classes, args.width))
    print(f"{args.dataset}: {arch.summary()}; T = {T:g} s per training", flush=True)
    rows = []
    for seed in seeds:
        data = sv.TorchData(X, y, Xt, yt, seed, "cpu")
        for h in hidden:
            net = build(arch, h, seed)
            t = time.perf_counter()
            steps = sv.train_for(net, data, T, seed, on_all=True)
            row = dict(hidden=h, seed=seed, acc=sv.accuracy(net, *data.test),
                       flops=torch_flops(net, shape), fit_s=time.perf_counter() - t,
                       epochs=steps * sv.BATCH / len(data.all[1]))
            rows.append(row)
            print(f"  seed {seed} hidden {h}: {row['acc']:.4f} ({row['epochs']:.1f} epochs)",
                  flush=True)

    print("\n| hidden | median | per seed | FLOPs | epochs |\n|---|---|---|---|---|")
    for h in hidden:
        mine = [r for r in rows if r["hidden"] == h]
        accs = [r["acc"] for r in mine]
        print(f"| {h or 'none'} | {statistics.median(accs):.4f} | "
              f"{', '.join(f'{a:.4f}' for a in accs)} | {mine[0]['flops']:,} | "
              f"{statistics.median(r['epochs'] for r in mine):.1f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(
            dict(config=vars(args), arch=arch.to_dict(), torch=torch.__version__, rows=rows),
            indent=1))


if __name__ == "__main__":
    main()
