"""Dose-response of the two penalties (MorphNet λ_M, LayerLasso λ_Λ) on one training.

The same start network (minimal + one block per stage, width 16), the same init
and the same data for every strength; one With Reg training each. Prints, per
strength: the alive widths the MorphNet step would keep (stream groups, and
each block's middle), the mean |γ| of each block's first BN (expensive stage-0
blocks should shrink faster than cheap stage-2 ones), the blocks greedy out
would delete, and validation / test accuracy.

    python benchmarks/penalty_dose.py [--data mnist|digits] [--n-train 2000]
        [--epochs 4] [--morph 0,1e-8,1e-7,1e-6,1e-5] [--lasso 0,1e-9,1e-8,1e-7,1e-6]
        [--inserted]

``--inserted``: the blocks are inserted near-identity (last-BN gamma ~5e-3)
into a trained minimal net, as the search inserts them, instead of starting
at gamma 1.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sklearn_resbuilder import Architecture
from sklearn_resbuilder.defaults import GAMMA_THRESHOLD
from sklearn_resbuilder.data import channel_stats, to_images, validation_split
from sklearn_resbuilder.network import ResBuilderNet
from sklearn_resbuilder.regularizers import alive_widths, block_scores
from sklearn_resbuilder.inference import prepare_batch
from sklearn_resbuilder.training import TrainConfig, train_one
from sklearn_resbuilder.training_data import TrainingData


def load(args):
    if args.data == "mnist":
        from sklearn_resbuilder.datasets import load_mnist

        X, y, Xt, yt = load_mnist(n_train=args.n_train)
        return X, y, Xt, yt
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32).reshape(-1, 8, 8)
    Xa, Xb, ya, yb = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    return Xa, ya, Xb, yb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--morph", default="0,1e-8,1e-7,1e-6,1e-5")
    ap.add_argument("--lasso", default="0")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--inserted", action="store_true",
                    help="LayerLasso on a just-inserted block: train the minimal net first, "
                         "insert a near-identity block per stage, then the With Reg training")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    X, y, Xt, yt = load(args)
    images, shape = to_images(X)
    test_images, _ = to_images(Xt)
    tr, va = validation_split(y, 0.1, 0)
    mean, std = channel_stats(images[tr])
    data = TrainingData.from_arrays(images[tr], y[tr], images[va], y[va], mean, std)
    arch = Architecture.minimal(shape, 10)
    if args.inserted:
        from sklearn_resbuilder.network import insert_block

        base = ResBuilderNet(arch, generator=torch.Generator().manual_seed(0))
        base = train_one(base, data, TrainConfig(max_epochs=args.epochs, patience=args.epochs,
                                                 augment="shift"), regularized=False).module
        for s in range(arch.n_stages):
            base = insert_block(base, s, 0, generator=torch.Generator().manual_seed(s))
        arch, start = base.architecture, base.state_dict()
    else:
        for s in range(arch.n_stages):
            arch = arch.insert_block(s, 0)
        start = ResBuilderNet(arch, generator=torch.Generator().manual_seed(0)).state_dict()
    print(f"{args.data} {len(tr)} train / {len(va)} valid, {args.epochs} epochs, "
          f"net {arch.summary()}")
    print("| λ_M | λ_Λ | alive stream | alive middles | mean|γ1| per block | gate per block | "
          "deleted (score<1e-3) | valid acc | test acc | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for lm in [float(v) for v in args.morph.split(",")]:
        for ll in [float(v) for v in args.lasso.split(",")]:
            net = ResBuilderNet(arch)
            net.load_state_dict(start)
            cfg = TrainConfig(morph_strength=lm, lasso_strength=ll, max_epochs=args.epochs,
                              patience=args.epochs, augment="shift")
            t = time.perf_counter()
            res = train_one(net, data, cfg, regularized=True, seed=0)
            m = res.module.eval()
            groups, mids = alive_widths(m, GAMMA_THRESHOLD)
            g1 = [f"{float(blk.bn1.weight.detach().abs().mean()):.3f}" for _, blk in m.blocks()]
            scores = block_scores(m)
            dead = [sb for sb, v in scores.items() if v < 1e-3]
            gates = " ".join(f"{v:.2g}" for v in scores.values())
            with torch.no_grad():
                logits = torch.cat([m(prepare_batch(test_images[i:i + 1000], mean, std))
                                    for i in range(0, len(test_images), 1000)])
            acc = float((logits.argmax(1).numpy() == yt).mean())
            print(f"| {lm:g} | {ll:g} | {groups} | {mids} | {' '.join(g1)} | {gates} | {dead} | "
                  f"{res.record['valid_accuracy']:.3f} | {acc:.3f} | "
                  f"{time.perf_counter() - t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
