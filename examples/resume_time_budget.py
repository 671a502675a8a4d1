"""Cap a long search with ``max_time`` and keep the best network found so far.

The paper's default search (``n_morph_steps=7``, ``n_insertions=4``) trains
about 36 architectures three ways each: hours on a CPU. ``max_time`` (seconds)
caps the search's wall-clock time: it is checked between epochs, every
finished architecture stays in ``history_``, and ``fit`` returns the best
network within the budget found so far, with ``stopped_ == "max_time"``. The
epoch running at the deadline finishes first, so the search can overrun by
about one epoch of the largest network.

This script runs the paper's default search length under a small
``max_time``, then prints why the search stopped, how long it took, how many
architectures it trained and how good the returned network is.

To continue such a search later instead of starting over, see "Resuming a
long search" in ``docs/user_guide.md``.

Data: scikit-learn's 1,797 8x8 digits (ships with scikit-learn).

Run: ``.venv/bin/python examples/resume_time_budget.py``.
``RESBUILDER_SMOKE=1`` shrinks data, epochs and ``max_time`` to a
seconds-long run (the test suite runs it that way).
"""

import os

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sklearn_resbuilder import ResBuilderClassifier

SMOKE = os.environ.get("RESBUILDER_SMOKE") == "1"
MAX_TIME = 5 if SMOKE else 120  # seconds

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0)
if SMOKE:
    X_train, y_train = X_train[:600], y_train[:600]

clf = ResBuilderClassifier(
    flop_budget=2e5,
    # n_insertions and n_morph_steps keep the paper's defaults (4 and 7): far
    # more than fits in MAX_TIME, so the time budget ends the search.
    max_epochs=5 if SMOKE else 20,
    batch_size=32,
    augment="shift",  # digits must not be mirrored
    max_time=MAX_TIME,
    random_state=0,
)
clf.fit(X_train, y_train)

print(f"stopped:             {clf.stopped_}")
print(f"search time:         {clf.search_time_:.1f} s (max_time={MAX_TIME} s)")
print(f"architectures tried: {len(clf.history_)} (best: step {clf.best_step_}, "
      f"{clf.best_variant_}, validation accuracy {clf.best_score_:.4f})")
print(f"FLOPs per image:     {clf.best_architecture_.flops():,} of {clf.flop_budget:,.0f}")
print(f"test accuracy:       {clf.score(X_test, y_test):.4f} ({len(X_test)} held-out digits)")
