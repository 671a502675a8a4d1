"""Run a long search in time-boxed pieces: ``max_time`` plus ``checkpoint_dir``.

The paper's default search (``n_morph_steps=7``, ``n_insertions=4``) trains
about 36 architectures three ways each: hours on a CPU. ``max_time`` (seconds)
caps one ``fit``: it is checked between epochs, and ``fit`` returns the best
network within the budget found so far, with ``stopped_ == "max_time"``.
``checkpoint_dir`` makes the search resumable: after every finished
architecture its state is written there atomically, and the next ``fit`` with
the same directory, data and parameters goes on after the last finished
architecture, repeating nothing (an architecture cut short by the deadline is
trained again, in full). A crash, a SIGKILL or a closed laptop lose at most
the architecture in progress.

This script fits twice with the same ``checkpoint_dir`` and ``max_time``, and
prints after each piece why it stopped, how many architectures the search
holds and how good the returned network is.

Data: scikit-learn's 1,797 8x8 digits (ships with scikit-learn).

Run: ``.venv/bin/python examples/resume_time_budget.py [CHECKPOINT_DIR]``
(default: a temporary directory, removed at the end). ``RESBUILDER_SMOKE=1``
shrinks data, epochs and ``max_time`` to a seconds-long run (the test suite
runs it that way).
"""

import os
import sys
import tempfile

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sklearn_resbuilder import ResBuilderClassifier

SMOKE = os.environ.get("RESBUILDER_SMOKE") == "1"
MAX_TIME = 3 if SMOKE else 120  # seconds per fit (smoke: far short of the whole search)

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0)
if SMOKE:
    X_train, y_train = X_train[:600], y_train[:600]

with tempfile.TemporaryDirectory() as tmp:
    directory = sys.argv[1] if len(sys.argv) > 1 else tmp
    clf = ResBuilderClassifier(
        flop_budget=2e5,
        # n_insertions and n_morph_steps keep the paper's defaults (4 and 7): far
        # more than fits in MAX_TIME, so the time budget ends each piece.
        max_epochs=5 if SMOKE else 20,
        refit=not SMOKE,  # the refit's 600-step floor is minutes, not the smoke run's seconds
        batch_size=32,
        augment="shift",  # digits must not be mirrored
        max_time=MAX_TIME,
        checkpoint_dir=directory,
        random_state=0,
    )
    for piece in (1, 2):
        clf.fit(X_train, y_train)  # the second call resumes from the checkpoint
        print(f"--- fit {piece} (checkpoint_dir={directory})")
        print(f"stopped:             {clf.stopped_}")
        print(f"search time:         {clf.search_time_:.1f} s in all "
              f"(max_time={MAX_TIME} s per fit)")
        print(f"architectures tried: {len(clf.history_)} (best: step {clf.best_step_}, "
              f"{clf.best_variant_}, validation accuracy {clf.best_score_:.4f})")
        if clf.skipped_:  # the next fit goes on from the first operation left out
            print(f"resumes at record:   {clf.skipped_[0]['step']} "
                  f"({clf.skipped_[0]['operation']} left out: it would not finish in time)")
        print(f"FLOPs per image:     {clf.best_architecture_.flops():,} of "
              f"{clf.flop_budget:,.0f}")
        print(f"test accuracy:       {clf.score(X_test, y_test):.4f} "
              f"({len(X_test)} held-out digits)")
