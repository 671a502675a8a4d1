"""Fit on a folder of image files: one sub-folder per class, read by ``load_image_folder``.

Image data often sits on disk as ``root/<class>/<file>.png`` (or ``.jpg``).
This script writes scikit-learn's 1,797 8x8 digits into such a folder (a
temporary one, deleted at the end) as PNG files, reads it back with
:func:`sklearn_resbuilder.datasets.load_image_folder` (uint8 ``(n, H, W, C)``
images and the folder names as labels), and fits ``ResBuilderClassifier`` on it.

The labels are the folder names, strings "0" to "9": ``classes_`` holds them
and ``predict`` returns them. The digits are stored as grayscale PNGs, so the
default ``color_mode="auto"`` reads them as one channel; for photos of mixed
sizes pass ``image_size=(H, W)``.

Data: scikit-learn's digits (ships with scikit-learn, nothing downloads).

Run: ``.venv/bin/python examples/image_folder.py`` (one search, capped at
120 s by ``max_time``).
``RESBUILDER_SMOKE=1`` shrinks data and epochs to a seconds-long run (the test
suite runs it that way).
"""

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torchvision.io import write_png

from sklearn_resbuilder import ResBuilderClassifier
from sklearn_resbuilder.datasets import load_image_folder

SMOKE = os.environ.get("RESBUILDER_SMOKE") == "1"

digits = load_digits()
# 0..16 -> 0..255: the 8-bit gray levels an image file holds.
pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)

with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp) / "digits"
    for i, (img, label) in enumerate(zip(pixels, digits.target)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        write_png(torch.from_numpy(img)[None], str(folder / f"{i:04d}.png"))
    n_files = sum(1 for _ in root.glob("*/*.png"))
    print(f"wrote {n_files} PNG files in {len(list(root.iterdir()))} class folders")

    t0 = time.perf_counter()
    X, y = load_image_folder(root)
    print(f"loaded X: {X.shape} {X.dtype}, y: {y.dtype} labels "
          f"{sorted(set(y.tolist()))} in {time.perf_counter() - t0:.2f} s")

# The files are gone; X and y are plain arrays from here on.
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0)
if SMOKE:
    X_train, y_train = X_train[:600], y_train[:600]

clf = ResBuilderClassifier(
    flop_budget=2e5,
    n_insertions=1 if SMOKE else 2,
    n_morph_steps=1 if SMOKE else 2,
    max_epochs=5 if SMOKE else 20,
    refit=not SMOKE,  # the refit's 600-step floor is minutes, not the smoke run's seconds
    batch_size=32,
    augment="shift",  # digits must not be mirrored
    max_time=None if SMOKE else 120,
    random_state=0,
)
t0 = time.perf_counter()
clf.fit(X_train, y_train)
fit_seconds = time.perf_counter() - t0

print(f"input_shape_:    {clf.input_shape_}")
print(f"classes_:        {clf.classes_.tolist()}")
print(f"first predictions: {clf.predict(X_test[:5]).tolist()} (true {y_test[:5].tolist()})")
print(f"test accuracy:   {clf.score(X_test, y_test):.4f}")
print(f"fit time:        {fit_seconds:.1f} s")
print(f"FLOPs per image: {clf.best_architecture_.flops():,} of {clf.flop_budget:,.0f}")
