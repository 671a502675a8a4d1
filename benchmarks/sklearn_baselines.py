"""ResBuilderClassifier (demo settings) against what an analyst tries first.

Same split, same run: LogisticRegression, MLPClassifier, SVC and the estimator
with the settings of ``examples/quickstart.py``, on sklearn's digits (8x8) and
on a 10k MNIST subset (official test set). Prints a markdown table per data
set with test accuracy and fit time, and the ratio of our fit time to SVC's.

    python benchmarks/sklearn_baselines.py [--n-train 10000] [--max-time 270] [--data digits,mnist]
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from sklearn_resbuilder import ResBuilderClassifier
from sklearn_resbuilder.datasets import load_mnist


def ours(budget, max_time, epochs):
    return ResBuilderClassifier(flop_budget=budget, n_insertions=3, n_morph_steps=2,
                                max_epochs=epochs, augment="shift", max_time=max_time,
                                random_state=0)


def baselines():
    return {
        "LogisticRegression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "MLPClassifier(256)": make_pipeline(StandardScaler(), MLPClassifier((256,), random_state=0)),
        "SVC(rbf)": make_pipeline(StandardScaler(), SVC()),
    }


def bench(name, X, y, Xt, yt, est):
    t = time.perf_counter()
    est.fit(X, y)
    fit_s = time.perf_counter() - t
    acc = est.score(Xt, yt)
    extra = ""
    if isinstance(est, ResBuilderClassifier):
        extra = f"{est.best_architecture_.flops():,} FLOPs, {len(est.history_)} archs"
    return name, acc, fit_s, extra


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--max-time", type=float, default=270)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--data", default="digits,mnist")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    sets = {}
    if "digits" in args.data:
        X, y = load_digits(return_X_y=True)
        Xa, Xb, ya, yb = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
        sets["digits (1,347 train / 450 test, 8x8)"] = (Xa, ya, Xb, yb, 2e5)
    if "mnist" in args.data:
        X, y, Xt, yt = load_mnist(n_train=args.n_train)
        sets[f"MNIST ({len(X):,} train / 10,000 official test)"] = (
            X.reshape(len(X), -1), y, Xt.reshape(len(Xt), -1), yt, 1e7)
    for title, (X, y, Xt, yt, budget) in sets.items():
        rows = [bench(n, X, y, Xt, yt, e) for n, e in baselines().items()]
        rows.append(bench(f"ResBuilderClassifier(flop_budget={budget:.0e}), demo settings", X, y,
                          Xt, yt, ours(budget, args.max_time, args.epochs)))
        if len(X) < 5000:
            # Small data: 4 epochs are ~40 Adam steps; the paper's 20 epochs fit better.
            rows.append(bench(f"ResBuilderClassifier(flop_budget={budget:.0e}, max_epochs=20)",
                              X, y, Xt, yt, ours(budget, args.max_time, 20)))
        svc = dict((r[0], r[2]) for r in rows)["SVC(rbf)"]
        print(f"\n{title}\n\n| method | test acc | fit s | fit time / SVC | notes |\n|---|---|---|---|---|")
        for name, acc, fit_s, extra in rows:
            print(f"| {name} | {acc:.4f} | {fit_s:.1f} | {fit_s / svc:.1f} | {extra} |")


if __name__ == "__main__":
    main()
