"""Does the search's ranking predict the refit's? Spearman over one search's candidates.

The search chooses among its candidates (the No Reg networks within the
budget) by validation accuracy after short trainings; the refit then trains
the chosen one on all training images for the time left. The choice is only
as good as that ranking. For each data set, budget and seed this runs one
``ResBuilderClassifier(flop_budget=B, max_time=T)`` fit as ``pareto.py`` does
(same T(B), same search settings), keeps every candidate the search offered
(the pool itself keeps only the ones it can still choose), then refits each
of them exactly as the fit refit its choice (same data, settings, epochs and
seed, from the candidate's search weights) and scores it on the test set.

Reported per fit: the candidates (search validation accuracy, FLOPs, refit
test accuracy), Spearman's rho between the two accuracies, and the regret of
the choice: the best candidate's refit test accuracy minus the chosen one's.
Then, per data set, the median rho and regret.

    OMP_NUM_THREADS=1 python benchmarks/ranking.py [--datasets digits,mnist]
        [--budgets-digits 3e4,1e5] [--budgets-mnist 1e5,3e5] [--seeds 0,1,2]
        [--threads 1] [--max-candidates 8] [--out benchmarks/results/ranking.json]
        [--smoke]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pareto  # noqa: E402
import search_value as sv  # noqa: E402
from sklearn_resbuilder import ResBuilderClassifier  # noqa: E402
from sklearn_resbuilder import estimator as estimator_module  # noqa: E402
from sklearn_resbuilder import search as search_module  # noqa: E402
from sklearn_resbuilder.candidates import Candidate, CandidatePool  # noqa: E402

BUDGETS = {"digits": "3e4,1e5", "mnist": "1e5,3e5"}


class _Recorder:
    """Keeps every candidate a search offers and the arguments of the fit's refit."""

    def __init__(self):
        self.offered: list[Candidate] = []
        self.refit_call = None
        recorder = self

        class KeepingPool(CandidatePool):
            def offer(self, accuracy, flops, params, step, variant, module):
                recorder.offered.append(Candidate(accuracy, flops, params, step, variant,
                                                  copy.deepcopy(module)))
                super().offer(accuracy, flops, params, step, variant, module)

        self.pool_class = KeepingPool
        self.refit = estimator_module.refit

        def recording_refit(module, data, config, *, epochs, seed=0, slot=None, **kw):
            self.refit_call = dict(data=data, config=config, epochs=epochs, seed=seed, kw=kw)
            return self.refit(module, data, config, epochs=epochs, seed=seed, slot=slot, **kw)

        self.recording_refit = recording_refit

    def __enter__(self):
        self._saved = (search_module.CandidatePool, estimator_module.refit)
        search_module.CandidatePool = self.pool_class
        estimator_module.refit = self.recording_refit
        return self

    def __exit__(self, *exc):
        search_module.CandidatePool, estimator_module.refit = self._saved


def rank_one(X, y, Xt, yt, budget, T, seed, rb, max_candidates, device="cpu"):
    """One fit and the refit of each of its candidates; a dict of what was measured."""
    n_ins, n_morph, epochs = rb
    clf = ResBuilderClassifier(flop_budget=budget, max_time=T, augment="shift",
                               random_state=seed, n_insertions=n_ins, n_morph_steps=n_morph,
                               max_epochs=epochs, device=device)
    t = time.perf_counter()
    with _Recorder() as rec:
        clf.fit(X, y)
    fit_s = time.perf_counter() - t
    call = rec.refit_call
    if call is None:
        raise RuntimeError("the fit did not refit (nothing to compare)")
    chosen = (clf.best_step_, clf.best_variant_)
    # The best by validation accuracy first; the chosen one is always refit.
    offered = sorted(rec.offered, key=lambda c: -c.accuracy)
    keep = offered[:max_candidates]
    if chosen not in {(c.step, c.variant) for c in keep}:
        keep += [c for c in offered if (c.step, c.variant) == chosen]
    rows = []
    for c in keep:
        res = rec.refit(copy.deepcopy(c.module), call["data"], call["config"],
                        epochs=call["epochs"], seed=call["seed"], **call["kw"])
        scorer = copy.copy(clf)
        scorer.module_ = res.module.cpu().to(memory_format=torch.contiguous_format).eval()
        rows.append(dict(step=c.step, variant=c.variant, flops=c.flops, params=c.params,
                         val_acc=c.accuracy, test_acc=float(scorer.score(Xt, yt)),
                         arch=c.module.architecture.summary(),
                         chosen=(c.step, c.variant) == chosen))
    # None for fewer than 3 candidates; NaN (one accuracy shared by all) too
    rho = (float(spearmanr([r["val_acc"] for r in rows], [r["test_acc"] for r in rows])[0])
           if len(rows) > 2 else None)
    best = max(r["test_acc"] for r in rows)
    picked = next(r["test_acc"] for r in rows if r["chosen"])
    return dict(budget=budget, T=T, seed=seed, fit_s=fit_s, refit_epochs=call["epochs"],
                score=float(clf.score(Xt, yt)), n_offered=len(rec.offered),
                candidates=rows, rho=None if rho is None or math.isnan(rho) else rho,
                regret=best - picked)


def report(name, fits):
    print(f"\n### {name}\n")
    print("| budget | seed | candidates (val -> refit test, FLOPs) | rho | chosen | regret |")
    print("|---|---|---|---|---|---|")
    for f in fits:
        cands = "; ".join(f"{'**' if r['chosen'] else ''}{r['val_acc']:.3f}->{r['test_acc']:.4f}"
                          f"{'**' if r['chosen'] else ''} ({r['flops']:,})"
                          for r in f["candidates"])
        rho = "n/a" if f["rho"] is None else f"{f['rho']:+.2f}"
        chosen = next(r for r in f["candidates"] if r["chosen"])
        print(f"| {f['budget']:.0e} | {f['seed']} | {cands} | {rho} | "
              f"{sv._md(chosen['arch'])} | {f['regret']:+.4f} |")
    rhos = [f["rho"] for f in fits if f["rho"] is not None]
    print(f"\nmedian rho {statistics.median(rhos):+.2f} over {len(rhos)} fits"
          if rhos else "\nno fit had three candidates")
    print(f"median regret {statistics.median(f['regret'] for f in fits):+.4f}, "
          f"max {max(f['regret'] for f in fits):+.4f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="digits,mnist")
    p.add_argument("--budgets-digits", default=BUDGETS["digits"])
    p.add_argument("--budgets-mnist", default=BUDGETS["mnist"])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-candidates", type=int, default=8,
                   help="refit at most this many (the best by validation, and the chosen one)")
    p.add_argument("--out", default="benchmarks/results/ranking.json")
    p.add_argument("--smoke", action="store_true", help="600 images, one tiny budget, T = 6 s")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {"config": vars(args), "torch": torch.__version__, "datasets": {}}
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        X, y, Xt, yt = sv.load(name, args.smoke)
        rb = sv.RB_DEFAULTS["smoke" if args.smoke else name]
        budgets = ([3e4] if args.smoke else
                   [float(b) for b in getattr(args, f"budgets_{name}").split(",")])
        fits = []
        for budget in budgets:
            T = 6.0 if args.smoke else pareto.row_time(name, budget, 1.0, 10.0)
            for seed in seeds:
                print(f"[{name} budget {budget:.0e} seed {seed}] T = {T:.0f} s ...", flush=True)
                fits.append(rank_one(X, y, Xt, yt, budget, T, seed, rb, args.max_candidates))
        report(f"{name} ({len(X):,} train / {len(Xt):,} test)", fits)
        results["datasets"][name] = fits
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
