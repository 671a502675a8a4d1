"""Save, load and export a fitted ResBuilder classifier without pickle.

Fits a small ``ResBuilderClassifier`` on scikit-learn's 8x8 digits, then:

1. saves it with ``clf.save(dir)`` (JSON + a torch state dict, no pickle) and
   loads it back with ``ResBuilderClassifier.load(dir)``;
2. turns it into a plain ``torch.fx.GraphModule`` with ``clf.to_torch()``;
3. exports it to ONNX (``clf.export_onnx``) and runs it with onnxruntime, when
   the ``export`` extra is installed;
4. exports it with ``torch.export`` (``clf.export_program``) and reloads it.

For each it prints how far its probabilities are from the original
``predict_proba`` and the line ``all predictions agree: True`` at the end.
Everything is written to a temporary directory that is removed afterwards.

Run: ``.venv/bin/python examples/save_and_export.py``. ``RESBUILDER_SMOKE=1``
makes the fit a seconds-long smoke run (the test suite uses it).
"""

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sklearn_resbuilder import ResBuilderClassifier

SMOKE = os.environ.get("RESBUILDER_SMOKE") == "1"

X, y = load_digits(return_X_y=True)  # float64 pixels 0..16, flat rows of 64
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                    random_state=0)
clf = ResBuilderClassifier(
    flop_budget=2e5,
    n_insertions=1 if SMOKE else 2,
    n_morph_steps=1 if SMOKE else 2,
    max_epochs=1 if SMOKE else 10,
    refit=not SMOKE,  # the refit's 600-step floor is minutes, not the smoke run's seconds
    augment=False,
    # CPU so predict_proba and the (CPU) exports compute alike: CUDA convs may
    # use TF32 and differ by ~1e-3.
    device="cpu",
    random_state=0,
).fit(X_train, y_train)
expected = clf.predict_proba(X_test)
print(f"fitted: test accuracy {clf.score(X_test, y_test):.3f}, "
      f"{clf.best_architecture_.flops():,} FLOPs per image")

# The exported models take (N, C, H, W) float32 images in fit's raw scale.
images = torch.as_tensor(X_test.reshape(-1, *clf.input_shape_), dtype=torch.float32)
agree = []


def report(what, proba, tol):
    diff = float(np.abs(np.asarray(proba) - expected).max())
    ok = diff <= tol
    agree.append(ok)
    print(f"{what:<28} max |proba diff| = {diff:.1e}  ({'agrees' if ok else 'DIFFERS'})")


with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)

    # 1. Safe save/load: loading runs no code from the files.
    clf.save(tmp / "model")
    loaded = ResBuilderClassifier.load(tmp / "model")
    identical = np.array_equal(loaded.predict_proba(X_test), expected)
    agree.append(identical)
    print(f"{'save/load':<28} predict_proba identical: {identical}  "
          f"(files: {', '.join(sorted(os.listdir(tmp / 'model')))})")

    # 2. Plain torch: needs nothing from sklearn_resbuilder to run.
    module = clf.to_torch(proba=True)
    with torch.no_grad():
        report("to_torch (fx GraphModule)", module(images).numpy(), 1e-5)

    # 3. ONNX, run by onnxruntime (optional extra).
    try:
        import onnxruntime
    except ImportError:
        print("ONNX: skipped (pip install \"sklearn-resbuilder[export]\")")
    else:
        clf.export_onnx(tmp / "model.onnx", proba=True)
        session = onnxruntime.InferenceSession(str(tmp / "model.onnx"),
                                               providers=["CPUExecutionProvider"])
        report("ONNX (onnxruntime)", session.run(None, {"images": images.numpy()})[0], 1e-4)

    # 4. torch.export archive.
    clf.export_program(tmp / "model.pt2", proba=True)
    program = torch.export.load(tmp / "model.pt2")
    with torch.no_grad():
        report("torch.export (.pt2)", program.module()(images).numpy(), 1e-5)

print(f"all predictions agree: {all(agree)}")
