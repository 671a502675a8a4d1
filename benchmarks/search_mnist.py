"""ResBuilder on MNIST against ResNet18 and MorphNet alone (paper Table 2 + cost columns).

All methods get the same training images, the same validation split (carved
from them) and the same epochs per training; accuracy is on the official MNIST
test set, which no method sees while fitting. Methods:

- ResNet18 from scratch (No Reg RI): ``Architecture.resnet18`` trained once;
- MorphNet only: ResNet18 start, ``n_insertions=0``;
- RB-R18: ResBuilder from ResNet18;
- RB-0Net: ResBuilder from the minimal net.

CPU-sized by default; ``--full`` uses the paper's settings (all 60k images,
n_M=7, n_Lambda=4, 20 epochs) and is meant for a GPU.

    python benchmarks/search_mnist.py [--n-train 5000] [--epochs 2] [--budget 1e8]
        [--methods rb0,r18,morph,rbr18] [--max-time 600] [--full] [--device auto]

Prints one markdown table per budget, plus the search time of RB-0Net at two
training-set sizes (``--scaling``).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from sklearn_resbuilder import Architecture, ResBuilderClassifier
from sklearn_resbuilder.datasets import load_mnist

METHODS = {
    "r18": "ResNet18 from scratch (No Reg RI)",
    "morph": "MorphNet only (ResNet18 start, n_Λ = 0)",
    "rbr18": "RB-R18",
    "rb0": "RB-0Net",
}


def make(method, args, budget):
    common = dict(flop_budget=budget, max_epochs=args.epochs, augment="shift",
                  max_time=args.max_time, random_state=args.seed, device=args.device,
                  n_morph_steps=args.n_morph, n_insertions=args.n_ins, verbose=args.verbose)
    if method == "morph":
        common.update(start="resnet18", n_insertions=0)
    elif method == "rbr18":
        common.update(start="resnet18")
    return ResBuilderClassifier(**common)


def run_r18(args, X, y, Xt, yt):
    """ResNet18 trained once from a fresh init without penalties (No Reg RI),
    on the same split and epoch budget the estimator uses."""
    from sklearn_resbuilder.data import channel_stats, validation_split
    from sklearn_resbuilder.estimator import resolve_device
    from sklearn_resbuilder.inference import prepare_batch
    from sklearn_resbuilder.training import TrainConfig, train_one
    from sklearn_resbuilder.training_data import TrainingData

    device = resolve_device(args.device)
    t = time.perf_counter()
    tr, va = validation_split(y, 0.1, args.seed)
    X4 = X[:, None]
    mean, std = channel_stats(X4[tr])
    data = TrainingData.from_arrays(X4[tr], y[tr], X4[va], y[va], mean, std)
    arch = Architecture.resnet18((1, 28, 28), 10)
    net = arch.build(torch.Generator().manual_seed(args.seed)).to(device)
    res = train_one(net, data, TrainConfig(max_epochs=args.epochs, augment="shift", device=device),
                    regularized=False, seed=args.seed)
    wall = time.perf_counter() - t
    with torch.no_grad():
        res.module.eval()
        pred = torch.cat([res.module(prepare_batch(Xt[i:i + 500, None], mean, std, device)).argmax(1).cpu()
                          for i in range(0, len(Xt), 500)]).numpy()
    return {"method": METHODS["r18"], "acc": float((pred == yt).mean()), "flops": arch.flops(),
            "params": arch.n_params(), "blocks": arch.n_blocks, "wall": wall, "archs": 1,
            "stopped": res.record["stopped"] or ""}


def run(method, args, budget, X, y, Xt, yt):
    if method == "r18":
        return run_r18(args, X, y, Xt, yt)
    clf = make(method, args, budget)
    t = time.perf_counter()
    clf.fit(X, y)
    wall = time.perf_counter() - t
    acc = clf.score(Xt, yt)
    a = clf.best_architecture_
    return {"method": METHODS[method], "acc": acc, "flops": a.flops(), "params": a.n_params(),
            "blocks": a.n_blocks, "wall": wall, "archs": len(clf.history_),
            "stopped": clf.stopped_ or ""}


def table(rows, budget):
    out = [f"\nflop_budget = {budget:.0e}\n",
           "| method | test acc | FLOPs | params | blocks | archs trained | wall time (s) | stopped |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['method']} | {r['acc']:.4f} | {r['flops']:,} | {r['params']:,} | "
                   f"{r['blocks']} | {r['archs']} | {r['wall']:.0f} | {r['stopped']} |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n-morph", type=int, default=2)
    p.add_argument("--n-ins", type=int, default=2)
    p.add_argument("--budgets", default="1e8,1e7")
    p.add_argument("--methods", default="rb0,r18,morph,rbr18")
    p.add_argument("--max-time", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--scaling", action="store_true",
                   help="also time RB-0Net at n_train/2 to show how search time grows")
    p.add_argument("--full", action="store_true", help="paper settings (GPU)")
    args = p.parse_args(argv)
    if args.full:
        args.n_train, args.epochs, args.n_morph, args.n_ins = 60000, 20, 7, 4
    torch.set_num_threads(args.threads)
    X, y, Xt, yt = load_mnist(n_train=args.n_train)
    print(f"# MNIST: {len(X):,} training images (10 % of them validation), {len(Xt):,} test images; "
          f"{args.epochs} epochs per training, n_M={args.n_morph}, n_Λ={args.n_ins}; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    r18 = None
    for budget in (float(b) for b in args.budgets.split(",")):
        rows = []
        for m in args.methods.split(","):
            if m == "r18" and r18 is not None:  # budget-independent: trained once
                rows.append(r18)
                continue
            rows.append(run(m, args, budget, X, y, Xt, yt))
            if m == "r18":
                r18 = rows[-1]
            print(table(rows[-1:], budget).splitlines()[-1], flush=True)
        print(table(rows, budget), flush=True)
    if args.scaling:
        # RB-0Net at the last budget, full size, is in the table already.
        budget = float(args.budgets.split(",")[-1])
        r_full = next(r for r in rows if r["method"] == METHODS["rb0"])
        half = len(X) // 2
        r_half = run("rb0", args, budget, X[:half], y[:half], Xt, yt)
        print(f"\nRB-0Net search time vs training images (budget {budget:.0e}):\n"
              f"| images | wall time (s) | archs trained | s per arch |\n|---|---|---|---|\n"
              f"| {half:,} | {r_half['wall']:.0f} | {r_half['archs']} | "
              f"{r_half['wall'] / r_half['archs']:.1f} |\n"
              f"| {len(X):,} | {r_full['wall']:.0f} | {r_full['archs']} | "
              f"{r_full['wall'] / r_full['archs']:.1f} |\n"
              f"time per architecture grows {(r_full['wall'] / r_full['archs']) / (r_half['wall'] / r_half['archs']):.2f}x "
              f"for 2x the images")


if __name__ == "__main__":
    main()
