"""The CUDA path, checked and timed: the demo search on the GPU against the CPU.

Runs the ``make demo`` search (MNIST 10k, budget 1e7, n_M = 2, n_Lambda = 3,
4 epochs, no ``max_time`` so every device does the same schedule) on

- the CPU (float32; the baseline, measured in the same run),
- CUDA with bfloat16 autocast (``mixed_precision="auto"``, the default there),
- CUDA in float32 (``mixed_precision=False``),

then checks that the GPU-fitted model, pickled with joblib and saved with
``clf.save``, predicts the same labels (and probabilities to 1e-4) when loaded
in a fresh process that sees no GPU (``CUDA_VISIBLE_DEVICES=""``). Prints one
markdown table and the CPU/GPU time ratio; exits 1 when a check fails.

    python benchmarks/gpu_check.py [--n-train 10000] [--epochs 4] [--devices cpu,cuda]
        [--smoke] [--out DIR]

Without CUDA it says so and checks only the CPU rows (``--devices cpu`` runs the
script's own logic end to end on any machine; the test suite does that in
``--smoke`` mode).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import torch

from sklearn_resbuilder import ResBuilderClassifier
from sklearn_resbuilder.datasets import load_mnist

LOAD_ON_CPU = """
import sys, joblib, numpy as np, torch
assert not torch.cuda.is_available(), "the CPU check must not see a GPU"
from sklearn_resbuilder import ResBuilderClassifier
X = np.load(sys.argv[2])
clf = joblib.load(sys.argv[1] + "/model.joblib")
np.save(sys.argv[1] + "/proba_joblib.npy", clf.predict_proba(X))
if hasattr(ResBuilderClassifier, "load"):
    np.save(sys.argv[1] + "/proba_saved.npy",
            ResBuilderClassifier.load(sys.argv[1] + "/saved").predict_proba(X))
"""


def fit_row(device, mixed, X, y, X_test, y_test, args):
    clf = ResBuilderClassifier(
        flop_budget=args.budget, n_insertions=args.n_ins, n_morph_steps=args.n_morph,
        max_epochs=args.epochs, augment="shift", device=device, mixed_precision=mixed,
        refit=not args.smoke,  # the smoke run checks the devices, not the refit
        random_state=0, verbose=args.verbose)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    clf.fit(X, y)
    seconds = time.perf_counter() - t0
    row = {
        "device": device, "mixed precision": "bf16" if mixed else "fp32",
        "search s": seconds, "archs": len(clf.history_),
        "s / arch": seconds / len(clf.history_),
        "test acc": clf.score(X_test, y_test), "FLOPs": clf.best_architecture_.flops(),
        "peak GPU MiB": (torch.cuda.max_memory_allocated() / 2**20
                         if device.startswith("cuda") else None),
    }
    return clf, row


def check_on_cpu(clf, X_test, workdir) -> dict:
    """Load ``clf`` in a process without a GPU; compare with its own predictions."""
    work = Path(workdir)
    joblib.dump(clf, work / "model.joblib")
    if hasattr(clf, "save"):
        clf.save(work / "saved")
    np.save(work / "X.npy", X_test)
    here = clf.predict_proba(X_test)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", LOAD_ON_CPU, str(work), str(work / "X.npy")],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {"ok": False, "error": out.stderr[-2000:]}
    result = {"ok": True}
    for name in ("joblib", "saved"):
        path = work / f"proba_{name}.npy"
        if path.exists():
            there = np.load(path)
            same = bool(np.array_equal(there.argmax(1), here.argmax(1)))
            diff = float(np.abs(there - here).max())
            result[name] = {"same labels": same, "max |proba diff|": diff}
            result["ok"] &= same and diff <= 1e-4
    return result


def markdown(rows) -> str:
    cols = list(rows[0])
    fmt = {"search s": "{:.1f}", "s / arch": "{:.2f}", "test acc": "{:.4f}",
           "FLOPs": "{:,}", "peak GPU MiB": "{:,.0f}"}
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = ["–" if r[c] is None else fmt.get(c, "{}").format(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--n-morph", type=int, default=2)
    p.add_argument("--n-ins", type=int, default=3)
    p.add_argument("--budget", type=float, default=1e7)
    p.add_argument("--devices", default="cpu,cuda")
    p.add_argument("--smoke", action="store_true", help="500 images, 1 epoch, n_M = 1")
    p.add_argument("--out", help="also write the table and checks to this folder")
    p.add_argument("--verbose", type=int, default=0)
    args = p.parse_args(argv)
    if args.smoke:
        args.n_train, args.epochs, args.n_morph, args.n_ins = 500, 1, 1, 1
    devices = args.devices.split(",")
    if "cuda" in devices and not torch.cuda.is_available():
        print("no CUDA device on this machine: only the CPU rows run")
        devices = [d for d in devices if d != "cuda"]

    X, y, X_test, y_test = load_mnist(n_train=args.n_train)
    if args.smoke:
        X_test, y_test = X_test[:500], y_test[:500]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs "
          f"({torch.get_num_threads()} torch threads), GPU: {gpu}, {platform.platform()}")
    print(f"MNIST {len(X):,} train / {len(X_test):,} test, budget {args.budget:.0e}, "
          f"n_M={args.n_morph}, n_Λ={args.n_ins}, {args.epochs} epochs\n")

    rows, checks = [], {}
    for device in devices:
        for mixed in ([True, False] if device == "cuda" else [False]):
            clf, row = fit_row(device, mixed, X, y, X_test, y_test, args)
            rows.append(row)
            print(markdown([row]).splitlines()[-1], flush=True)
            if device == "cuda" and mixed or device == "cpu" and len(devices) == 1:
                with tempfile.TemporaryDirectory() as tmp:
                    checks[f"{device} fit, loaded on CPU"] = check_on_cpu(clf, X_test, tmp)

    table = markdown(rows)
    print("\n" + table)
    base = next((r for r in rows if r["device"] == "cpu"), None)
    for r in rows:
        if base is not None and r is not base:
            print(f"CPU / {r['device']} {r['mixed precision']}: "
                  f"{base['s / arch'] / r['s / arch']:.1f}x per architecture, "
                  f"{base['search s'] / r['search s']:.1f}x in all")
    print(json.dumps(checks, indent=1))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "gpu_check.md").write_text(table + "\n")
        Path(args.out, "gpu_check.json").write_text(json.dumps({"rows": rows, "checks": checks},
                                                               indent=1))
    ok = all(c.get("ok") for c in checks.values())
    print("checks:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
