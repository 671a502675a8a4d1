"""Pick a FLOP budget with ``GridSearchCV``: the cheapest one that is nearly as good.

A bigger ``flop_budget`` lets the search keep wider and deeper networks, which
usually helps accuracy up to a point and always costs inference time. This
script grid-searches ``flop_budget`` with cross-validation and then, instead
of the plain best score, refits the *cheapest* budget whose mean CV accuracy
is within ``TOLERANCE`` of the best (a callable ``refit``). It prints one row
per budget, the chosen budget, the FLOPs of the refitted network (never above
the chosen budget) and its accuracy on held-out digits.

Data: scikit-learn's 1,797 8x8 digits (ships with scikit-learn).

Run: ``.venv/bin/python examples/grid_search_budget.py`` (3 budgets x 3 folds
+ the refit = 10 searches, each capped at 60 s by ``max_time``: at most about
10 minutes on a CPU).
``RESBUILDER_SMOKE=1`` shrinks data, grid, folds and epochs to a seconds-long
run (the test suite runs it that way).
"""

import os

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split

from sklearn_resbuilder import ResBuilderClassifier

SMOKE = os.environ.get("RESBUILDER_SMOKE") == "1"
# The minimal start net costs 19,712 FLOPs on 8x8 images: every budget must
# be above it, or fit raises ValueError.
BUDGETS = [5e4, 2e5] if SMOKE else [3e4, 1e5, 3e5]
TOLERANCE = 0.01  # accept up to 1 point of CV accuracy for a cheaper network


def cheapest_within_tolerance(cv_results):
    """Index of the smallest budget whose mean CV score is within TOLERANCE of the best."""
    means = np.asarray(cv_results["mean_test_score"])
    budgets = np.asarray(cv_results["param_flop_budget"], dtype=float)
    good = np.flatnonzero(means >= means.max() - TOLERANCE)
    return int(good[np.argmin(budgets[good])])


X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0)
if SMOKE:
    X_train, y_train = X_train[:500], y_train[:500]

clf = ResBuilderClassifier(
    n_insertions=1 if SMOKE else 2,
    n_morph_steps=1 if SMOKE else 2,
    max_epochs=5 if SMOKE else 20,
    refit=not SMOKE,  # the refit's 600-step floor is minutes, not the smoke run's seconds
    batch_size=32,
    augment="shift",  # digits must not be mirrored
    max_time=None if SMOKE else 60,  # per fit: every fit is a whole search
    random_state=0,
)
search = GridSearchCV(clf, {"flop_budget": BUDGETS}, cv=2 if SMOKE else 3,
                      refit=cheapest_within_tolerance)
search.fit(X_train, y_train)

res = search.cv_results_
print(f"{'flop_budget':>12}  {'mean CV accuracy':>16}  {'std':>6}")
for budget, mean, std in zip(res["param_flop_budget"], res["mean_test_score"],
                             res["std_test_score"]):
    print(f"{budget:>12,.0f}  {mean:>16.4f}  {std:>6.4f}")
best = search.best_estimator_
chosen = search.best_params_["flop_budget"]
print(f"chosen flop_budget: {chosen:,.0f} (cheapest within {TOLERANCE} of the best CV accuracy)")
print(f"refit FLOPs:        {best.best_architecture_.flops():,} of {chosen:,.0f}")
print(f"test accuracy:      {search.score(X_test, y_test):.4f} ({len(X_test)} held-out digits)")
