"""Cross-validate a ResBuilder search with scikit-learn's ``cross_validate``.

Each fold runs a whole architecture search on its training part and scores
the network it found on the held-out part, so the fold scores measure the
*procedure* (search + training), not one fixed network. The folds may pick
different architectures: the script prints each fold's test accuracy and the
FLOPs of the network it chose (always within ``flop_budget``), then the mean
accuracy with its spread.

Data: scikit-learn's 1,797 8x8 digits (ships with scikit-learn).

Run: ``.venv/bin/python examples/cross_validation.py`` (5 folds, each search
capped at 60 s by ``max_time``: at most about 5 minutes on a CPU).
``RESBUILDER_SMOKE=1`` shrinks data, folds and epochs to a seconds-long run
(the test suite runs it that way).
"""

import os

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold, cross_validate

from sklearn_resbuilder import ResBuilderClassifier

SMOKE = os.environ.get("RESBUILDER_SMOKE") == "1"
BUDGET = 2e5  # FLOPs per image; the minimal start net costs 19,712 at 8x8

X, y = load_digits(return_X_y=True)
if SMOKE:
    X, y = X[:600], y[:600]

clf = ResBuilderClassifier(
    flop_budget=BUDGET,
    n_insertions=1 if SMOKE else 2,
    n_morph_steps=1 if SMOKE else 2,
    max_epochs=5 if SMOKE else 20,
    refit=not SMOKE,  # the refit's 600-step floor is minutes, not the smoke run's seconds
    batch_size=32,  # ~1,300 training images: small batches give more Adam steps
    augment="shift",  # digits must not be mirrored
    max_time=None if SMOKE else 60,  # per fold: every fold is a whole search
    random_state=0,
)
n_folds = 3 if SMOKE else 5
cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=0)
result = cross_validate(clf, X, y, cv=cv, return_estimator=True)

scores = result["test_score"]
flops = [est.best_architecture_.flops() for est in result["estimator"]]
print(f"{n_folds}-fold cross-validation on {len(X):,} digits, flop_budget={BUDGET:,.0f}")
print("fold accuracies: " + " ".join(f"{s:.4f}" for s in scores))
print("fold FLOPs:      " + " ".join(f"{f:,}" for f in flops))
print(f"mean accuracy:   {np.mean(scores):.4f} +/- {np.std(scores):.4f} "
      f"(chance {1 / len(np.unique(y)):.2f})")
print(f"fit time/fold:   {np.mean(result['fit_time']):.1f} s")
