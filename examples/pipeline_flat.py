"""A scikit-learn ``Pipeline`` on flat image rows, with a non-square ``image_shape``.

Tabular image data often arrives as flat rows, and a preprocessing step may
change their size. Here a ``FunctionTransformer`` drops the top and bottom
pixel rows of each 8x8 digit (they are nearly always blank), leaving flat rows
of 6 x 8 = 48 values. 48 is not a square, so the classifier is told how to
fold a row back into an image: ``image_shape=(6, 8)`` (rows of 8 pixels,
row-major, one channel).

No ``StandardScaler``: ``ResBuilderClassifier`` standardises each channel
itself with statistics from its own training split. A per-pixel scaler would
give every pixel position its own scale, which a convolution's weights, shared
across positions, do not expect, and would blow up nearly constant border
pixels.

The script prints the image shape the classifier saw, how many predictions
came back for the test rows, and the test accuracy.

Data: scikit-learn's 1,797 8x8 digits (ships with scikit-learn).

Run: ``.venv/bin/python examples/pipeline_flat.py`` (one search, capped at
120 s by ``max_time``).
``RESBUILDER_SMOKE=1`` shrinks data and epochs to a seconds-long run (the test
suite runs it that way).
"""

import os

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_resbuilder import ResBuilderClassifier

SMOKE = os.environ.get("RESBUILDER_SMOKE") == "1"


def drop_blank_rows(X):
    """Flat 8x8 digits (n, 64) -> flat 6x8 (n, 48): drop pixel rows 0 and 7."""
    return X.reshape(-1, 8, 8)[:, 1:7, :].reshape(len(X), -1)


X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0)
if SMOKE:
    X_train, y_train = X_train[:600], y_train[:600]

pipe = make_pipeline(
    # A module-level function (not a lambda) keeps the pipeline picklable.
    FunctionTransformer(drop_blank_rows),
    ResBuilderClassifier(
        image_shape=(6, 8),  # (H, W): one channel, rows of 8 pixels
        flop_budget=2e5,
        n_insertions=1 if SMOKE else 2,
        n_morph_steps=1 if SMOKE else 2,
        max_epochs=5 if SMOKE else 20,
        refit=not SMOKE,  # the refit's 600-step floor is minutes, not the smoke run's seconds
        batch_size=32,
        augment="shift",  # digits must not be mirrored
        max_time=None if SMOKE else 120,
        random_state=0,
    ),
)
pipe.fit(X_train, y_train)
clf = pipe[-1]
pred = pipe.predict(X_test)

print(f"flat input:      {X_train.shape[1]} values per row -> "
      f"{drop_blank_rows(X_train[:1]).shape[1]} after the transformer")
print(f"input_shape_:    {clf.input_shape_}")
print(f"predictions:     {len(pred)} for {len(X_test)} test rows")
print(f"test accuracy:   {pipe.score(X_test, y_test):.4f}")
print(f"FLOPs per image: {clf.best_architecture_.flops():,} of {clf.flop_budget:,.0f}")
