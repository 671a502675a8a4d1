"""The accuracy-FLOPs front: ResBuilder against fixed networks scaled to each budget.

For each data set and each FLOP budget B (spaced by about x3 over two decades
or more), in one run, with the same wall-clock T(B) per row:

- ``ResBuilder``: ``ResBuilderClassifier(flop_budget=B, max_time=T)`` with the
  package's defaults (``--rb-params`` on top);
- ``2-conv CNN (scaled)``: the PyTorch MNIST example's conv32-pool-conv64-pool-
  dense128 with every width times the largest factor whose FLOPs fit B
  (widths from 32 up rounded down to multiples of 8, as ResBuilder rounds);
- ``uniform ResNet (scaled)``: ``search_value.row_uniform``: three block
  layouts scaled to B with ``largest_omega``, T/3 each, best by validation;
- ``pyramid (scaled)``: ``Architecture.pyramid`` (16-32-64, no blocks) scaled
  to B with ``largest_omega``, trained once for T;
- ``SVC(rbf)`` / ``MLPClassifier(256)``: once per data set (their FLOPs as in
  ``search_value.py``), shown at their own FLOPs.

Three opt-in diagnostic rows (``--only cnn_linear,conv_pyramid,pooled_pyramid``):
``2-conv CNN, linear head`` drops the CNN's hidden dense layer;
``3x3-conv pyramid`` is the pyramid start with its 1x1 transitions made
3x3 convs (a shape ResBuilder's search space does not hold); ``pyramid on
2x-pooled input`` is the pyramid on images average-pooled by 2
(``Stem.downsample``), what ``start="auto"`` starts from at the smallest
budgets. All count as fixed rows in the verdicts when present.

The fixed networks train by ``search_value.train_for`` (Adam, one-cycle to
3e-3, random +-10 % shifts, standardised inputs, as many steps as T allows).
The CNN and the pyramid choose nothing, so they train on all the training
images, as ResBuilder's refit does; the uniform ResNet trains on 90 % and
picks its layout on the other 10 %. A fixed row that cannot be laid out within B (even
at width 1) is reported as "does not fit".

T scales with the budget's cube root from the reference point of
``search_value.py`` (MNIST 300 s at 1e7, digits 60 s at 2e5): a network 10x
larger gets 2.15x the time (a step costs about FLOPs once the network is
large, much less below), times ``--time-scale``, at least ``--min-time``.

The ResBuilder rows also count trainings that collapsed and the seconds they
cost (the search's step seconds of those records).

    OMP_NUM_THREADS=2 python benchmarks/pareto.py [--datasets digits,mnist]
        [--budgets-digits 1e4,3e4,1e5,3e5,1e6] [--budgets-mnist 1e5,3e5,1e6,3e6,1e7,3e7]
        [--seeds 0,1,2] [--time-scale 1] [--min-time 10] [--threads 2]
        [--only resbuilder,cnn,uniform,pyramid,sklearn,cnn_linear,conv_pyramid,pooled_pyramid] [--rb-params '{}']
        [--device auto] [--out benchmarks/results/pareto.json] [--smoke] [--label NAME]
        [--set NAME=VALUE ...]
    python benchmarks/pareto.py --tables FILE.json [FILE.json ...]

``--label`` names the ResBuilder rows of a variant run (say with
``--rb-params '{"start": "auto"}' --only resbuilder``); ``--set NAME=VALUE``
(repeatable) runs such a variant with a constant of
``sklearn_resbuilder.defaults`` changed for this process, say
``--set REFIT_MAX_STRETCH=64`` (the JSON records it); and ``--tables``
prints the tables of several runs' files merged, so a variant is judged
against the fixed rows of the run it extends. ``--smoke`` uses 600 images, two tiny budgets and T = 4 s to check that every
row runs (a test does this). ``docs/make_figures.py --pareto FILE`` draws
``docs/figures/pareto.png`` from the JSON this writes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))  # search_value, beside this file

import search_value as sv  # noqa: E402
from sklearn_resbuilder import Architecture  # noqa: E402
from sklearn_resbuilder.flops import largest_omega, torch_flops  # noqa: E402

ROWS = ("resbuilder", "cnn", "uniform", "pyramid", "sklearn", "cnn_linear", "conv_pyramid",
        "pooled_pyramid")
#: What a run without ``--only`` measures; the other rows are diagnostics.
DEFAULT_ROWS = ROWS[:5]
FIXED = ("2-conv CNN (scaled)", "uniform ResNet (scaled)", "pyramid (scaled)",
         "2-conv CNN, linear head (scaled)", "3x3-conv pyramid (scaled)",
         "pyramid on 2x-pooled input (scaled)")
BUDGETS = {"digits": "1e4,3e4,1e5,3e5,1e6", "mnist": "1e5,3e5,1e6,3e6,1e7,3e7"}
#: (budget, seconds) of search_value.py's reference rows.
T_REF = {"digits": (2e5, 60.0), "mnist": (1e7, 300.0)}


def row_time(name, budget, scale, min_time):
    """T(B) = T_ref * (B / B_ref)^(1/3) * scale, at least ``min_time``."""
    b_ref, t_ref = T_REF[name]
    return max(min_time, t_ref * (budget / b_ref) ** (1 / 3) * scale)


# ----------------------------------------------------------- the scaled CNN
def _width(w):
    """ResBuilder's rounding: multiples of 8 from 32 up, else an integer >= 1."""
    return 8 * int(w / 8) if w >= 32 else max(1, int(w))


def scaled_cnn(shape, n_classes, factor, hidden=True):
    """The 2-conv CNN of ``search_value.two_conv_cnn`` with widths x ``factor``.

    ``hidden=False`` drops its hidden dense layer (the head is one linear
    layer on the flattened maps, as in ResBuilder's ``head="flatten"``).
    """
    from torch import nn
    c, h, w = shape
    c1, c2, d = _width(32 * factor), _width(64 * factor), _width(128 * factor)
    flat = c2 * (h // 4) * (w // 4)
    head = sv.dense_head(flat, d, n_classes) if hidden else [nn.Linear(flat, n_classes)]
    return nn.Sequential(
        nn.Conv2d(c, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(), *head), (c1, c2, d if hidden else 0)


def conv_pyramid(shape, n_classes, factor):
    """ResBuilder's pyramid start (16-32-64 streams) with 3x3 convs where it has 1x1.

    ``conv3x3-BN-ReLU`` at each stage, a 2x2 max-pool between stages, a linear
    head on the flattened maps: the pyramid's layout with its 1x1 transitions
    made 3x3, a shape the search space does not hold.
    """
    from torch import nn
    c, h, w = shape
    pyramid = Architecture.pyramid(shape, n_classes)  # the start's widths, not a copy of them
    widths = [_width(stage.width * factor) for stage in pyramid.stages]
    layers, prev = [], c
    for i, width in enumerate(widths):
        layers += [nn.Conv2d(prev, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        layers += [nn.MaxPool2d(2)] if i < len(widths) - 1 else []
        prev = width
    side = 2 ** (len(widths) - 1)
    layers += [nn.Flatten(), nn.Linear(prev * (h // side) * (w // side), n_classes)]
    return nn.Sequential(*layers), tuple(widths)


def widest(build, shape, n_classes, budget):
    """The largest width factor whose ``build(shape, n_classes, f)`` fits ``budget``, or None."""
    flops = lambda f: torch_flops(build(shape, n_classes, f)[0], shape)  # noqa: E731
    lo, hi = 1 / 64, 64.0
    if flops(lo) > budget:
        return None
    while hi / lo > 1.001:  # FLOPs are non-decreasing in the factor
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if flops(mid) <= budget else (lo, mid)
    return lo


# ------------------------------------------------------------------- rows
def _row_torch(ctx, method, build, describe):
    """Train the widest ``build`` within the budget on all training images for T."""
    data = ctx["data"]
    factor = widest(build, data.shape, data.n_classes, ctx["budget"])
    if factor is None:
        return [dict(method=method, skipped="does not fit")]
    torch.manual_seed(ctx["seed"])  # the weights
    net, widths = build(data.shape, data.n_classes, factor)
    flops = torch_flops(net, data.shape)
    t = time.perf_counter()
    steps = sv.train_for(net, data, ctx["T"], ctx["seed"], on_all=True)
    fit_s = time.perf_counter() - t
    return [dict(method=method, acc=sv.accuracy(net, *data.test), flops=flops, fit_s=fit_s,
                 notes=f"{describe(widths)}; {steps * sv.BATCH / len(data.all[1]):.1f} epochs")]


def row_cnn(ctx):
    return _row_torch(ctx, FIXED[0], scaled_cnn,
                      lambda w: f"conv{w[0]}-conv{w[1]}-dense{w[2]}")


def row_cnn_linear(ctx):
    return _row_torch(ctx, FIXED[3], lambda s, n, f: scaled_cnn(s, n, f, hidden=False),
                      lambda w: f"conv{w[0]}-conv{w[1]}-linear")


def row_conv_pyramid(ctx):
    return _row_torch(ctx, FIXED[4], conv_pyramid, lambda w: "-".join(f"conv{x}" for x in w))


def row_uniform(ctx):
    try:
        (best,) = sv.row_uniform(ctx)
    except ValueError as exc:  # every layout needs more than the budget
        return [dict(method=FIXED[1], skipped=f"does not fit ({exc})")]
    return [dict(best, method=FIXED[1])]


def _row_arch(ctx, method, make):
    """Train ``make(shape, n_classes)`` scaled to the budget for T on all training images."""
    data = ctx["data"]
    try:
        _, arch = largest_omega(make(data.shape, data.n_classes), ctx["budget"],
                                multiple=sv.MULTIPLE)
    except ValueError as exc:
        return [dict(method=method, skipped=f"does not fit ({exc})")]
    return [dict(sv.arch_row(method, arch, data, ctx["T"], ctx["seed"], on_all=True),
                 method=method)]


def row_pyramid(ctx):
    return _row_arch(ctx, FIXED[2], Architecture.pyramid)


def row_pooled_pyramid(ctx):
    def pooled(shape, n_classes):
        factor = 2 * Architecture.pyramid(shape, n_classes).stem.downsample
        return Architecture.pyramid(shape, n_classes, downsample=factor)
    return _row_arch(ctx, FIXED[5], pooled)


def row_resbuilder(ctx):
    rows = sv.row_resbuilder(ctx)
    if ctx.get("label"):  # a variant's rows stand beside the defaults' in merged tables
        rows = [dict(r, method=f"ResBuilder ({ctx['label']})") for r in rows]
    return rows


def sklearn_rows(ctx):
    return sv.row_svc(ctx) + sv.row_mlp(ctx)


# ----------------------------------------------------------------- report
def test_se(acc, n):
    return math.sqrt(max(acc * (1 - acc), 1e-12) / n)


def summarise(rows, budgets):
    """Per (method, budget): median accuracy, per-seed values, FLOPs, seconds."""
    out = {}
    for r in rows:
        out.setdefault((r["method"], r["budget"]), []).append(r)
    cells = {}
    for (method, budget), runs in out.items():
        ok = [r for r in runs if "acc" in r]
        cell = dict(method=method, budget=budget, seeds=[r["seed"] for r in runs])
        if not ok:
            cell["missing"] = runs[0].get("skipped") or runs[0].get("error")
        else:
            cell.update(acc=statistics.median(r["acc"] for r in ok),
                        accs=[round(r["acc"], 4) for r in ok],
                        flops=statistics.median(r["flops"] for r in ok),
                        max_flops=max(r["flops"] for r in ok),
                        fit_s=statistics.median(r["fit_s"] for r in ok),
                        within=all(r["flops"] <= budget for r in ok),
                        n_collapsed=sum(r.get("n_collapsed", 0) for r in ok),
                        collapsed_s=sum(r.get("collapsed_s", 0.0) for r in ok),
                        search_s=sum(r.get("search_s") or 0.0 for r in ok),
                        notes=ok[0].get("notes", ""))
        cells[(method, budget)] = cell
    return cells


def report(name, cells, budgets, n_test, times):
    methods = list(dict.fromkeys(m for m, _ in cells))
    print(f"\n### {name}: test accuracy, median of seeds (FLOPs/image used)\n")
    print("| method | " + " | ".join(f"{b:.0e} (T={times[b]:.0f} s)" for b in budgets) + " |")
    print("|---|" + "---|" * len(budgets))
    for m in methods:
        line = []
        for b in budgets:
            c = cells.get((m, b))
            if c is None:
                line.append("")
            elif "missing" in c:
                line.append("does not fit" if "fit" in str(c["missing"]) else "error")
            else:
                over = "" if c["within"] else " OVER"
                line.append(f"{c['acc']:.4f} ({c['max_flops']:,.0f}){over}")
        print(f"| {m} | " + " | ".join(line) + " |")

    print(f"\n#### {name}: per seed\n")
    print("| method | budget | per seed | median | max FLOPs | fit s | collapses (s) | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for (m, b), c in cells.items():
        if "missing" in c:
            print(f"| {m} | {b:.0e} | {sv._md(c['missing'])} | | | | | |")
            continue
        col = (f"{c['n_collapsed']} ({c['collapsed_s']:.0f} of {c['search_s']:.0f} s search)"
               if m == "ResBuilder" else "")
        print(f"| {m} | {b:.0e} | {' / '.join(f'{a:.4f}' for a in c['accs'])} | "
              f"{c['acc']:.4f} | {c['max_flops']:,.0f} | {c['fit_s']:.1f} | {col} | "
              f"{sv._md(c['notes'])} |")

    print(f"\n#### {name}: ResBuilder against the best fixed network within each budget\n")
    print("| ResBuilder | budget | median | best fixed row | margin | one test SE | verdict |")
    print("|---|---|---|---|---|---|---|")
    verdicts = {}
    ours_methods = [m for m in methods if m.startswith("ResBuilder")]
    for m, b in [(m, b) for m in ours_methods for b in budgets]:
        ours = cells.get((m, b))
        fixed = [cells[(m, b)] for m in FIXED
                 if (m, b) in cells and "acc" in cells[(m, b)] and cells[(m, b)]["within"]]
        if ours is None:
            continue
        if "acc" not in ours or not fixed:
            print(f"| {m} | {b:.0e} | {'n/a' if 'acc' not in ours else ours['acc']} | "
                  f"{'none fits' if not fixed else ''} | | | |")
            verdict = "ahead" if "acc" in ours and not fixed else "n/a"
        else:
            best = max(fixed, key=lambda c: c["acc"])
            margin, se = ours["acc"] - best["acc"], test_se(best["acc"], n_test)
            verdict = "ahead" if margin > se else (
                "tie" if margin >= 0 else ("behind, within SE" if -margin <= se else "behind"))
            print(f"| {m} | {b:.0e} | {ours['acc']:.4f} | {best['method']} {best['acc']:.4f} | "
                  f"{margin:+.4f} | {se:.4f} | {verdict} |")
        if m == "ResBuilder":
            verdicts[b] = verdict
    return verdicts


def print_dataset(name, report_data):
    """The three tables of one data set's rows; returns the defaults' verdicts."""
    rows, budgets = report_data["rows"], report_data["budgets"]
    budget_rows = [r for r in rows if r["method"] not in ("SVC(rbf)", "MLPClassifier(256)")]
    times = {float(b): s for b, s in report_data["times"].items()}
    verdicts = report(f"{name} ({report_data['n_train']:,} train / {report_data['n_test']:,} test)",
                      summarise(budget_rows, budgets), budgets, report_data["n_test"], times)
    for r in rows:
        if r["method"] in ("SVC(rbf)", "MLPClassifier(256)") and "acc" in r:
            print(f"{r['method']}: {r['acc']:.4f} at {r['flops']:,.0f} FLOPs, "
                  f"{r['fit_s']:.1f} s")
    return verdicts


def merged(paths):
    """The data sets of several result files, rows joined (budgets: the union)."""
    out = {}
    for path in paths:
        for name, d in json.loads(Path(path).read_text())["datasets"].items():
            m = out.setdefault(name, dict(budgets=[], times={}, rows=[], n_train=d["n_train"],
                                          n_test=d["n_test"]))
            m["budgets"] = sorted(set(m["budgets"]) | {float(b) for b in d["budgets"]})
            m["times"].update({float(b): s for b, s in d["times"].items()})
            m["rows"] += d["rows"]
    return out


def set_defaults(pairs):
    """Change constants of ``sklearn_resbuilder.defaults`` for this process.

    ``pairs``: ``"NAME=VALUE"`` strings; VALUE is parsed as the constant's
    own type (int, float or bool). Only constants the package reads while it
    fits take effect; those copied into a parameter's or a config field's
    default at import (``LR``, ``PATIENCE``, ``REFIT_MIN_STEPS``, ...) are
    refused (estimator parameters go through ``--rb-params``). Returns
    ``{NAME: (old, new)}``. Raises ``SystemExit`` naming the problem for an
    unknown or refused name or a bad value.
    """
    import dataclasses
    import inspect

    from sklearn_resbuilder import ResBuilderClassifier, defaults
    from sklearn_resbuilder.search import SearchConfig
    from sklearn_resbuilder.training import TrainConfig
    params = set(inspect.signature(ResBuilderClassifier).parameters)
    fields = {f.name: f.default for cls in (SearchConfig, TrainConfig)
              for f in dataclasses.fields(cls)}
    changed = {}
    for pair in pairs or ():
        name, sep, text = pair.partition("=")
        if not sep or not name.isupper() or not hasattr(defaults, name):
            raise SystemExit(f"--set {pair!r}: expected NAME=VALUE with NAME a constant of "
                             "sklearn_resbuilder.defaults, e.g. REFIT_MAX_STRETCH=64")
        if name.lower() in params:
            raise SystemExit(f"--set {pair!r}: defaults.{name} is the default of the "
                             f"estimator's {name.lower()!r}: pass it with --rb-params")
        bound = [f for f, d in fields.items()
                 if name.endswith(f.upper()) and d == getattr(defaults, name)]
        if bound:
            raise SystemExit(f"--set {pair!r}: defaults.{name} is read once, at import, as "
                             f"the default of the config field {bound[0]!r}: setting it "
                             "here would change nothing")
        old = getattr(defaults, name)
        try:
            if isinstance(old, bool):
                if text.lower() not in ("true", "false"):
                    raise ValueError(text)
                value = text.lower() == "true"
            else:
                value = type(old)(text)
        except ValueError:
            raise SystemExit(f"--set {pair!r}: {text!r} is not of type {type(old).__name__}, "
                             f"the type of defaults.{name} ({old!r})") from None
        setattr(defaults, name, value)
        changed[name] = (old, value)
    return changed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="digits,mnist")
    p.add_argument("--budgets-digits", default=BUDGETS["digits"])
    p.add_argument("--budgets-mnist", default=BUDGETS["mnist"])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--time-scale", type=float, default=1.0, help="multiplies every T(B)")
    p.add_argument("--min-time", type=float, default=10.0, help="seconds per row at least")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default=",".join(DEFAULT_ROWS), help=f"comma list of {', '.join(ROWS)}")
    p.add_argument("--rb-params", default="{}", help="JSON of extra ResBuilderClassifier params")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", default="benchmarks/results/pareto.json")
    p.add_argument("--smoke", action="store_true", help="600 images, 2 budgets, T = 4 s")
    p.add_argument("--label", help='name the ResBuilder rows "ResBuilder (LABEL)" (a variant)')
    p.add_argument("--set", action="append", metavar="NAME=VALUE", dest="set_defaults",
                   help="change a constant of sklearn_resbuilder.defaults (repeatable)")
    p.add_argument("--tables", nargs="+", metavar="JSON",
                   help="print the tables of earlier runs' files, rows merged; run nothing")
    args = p.parse_args(argv)
    if args.tables:
        if args.set_defaults:
            p.error("--set changes a run's defaults; --tables runs nothing")
        for name, d in merged(args.tables).items():
            print_dataset(name, d)
        return
    for name, (old, value) in set_defaults(args.set_defaults).items():
        print(f"defaults.{name} = {value!r} for this run (the package's: {old!r})", flush=True)
    only = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = set(only) - set(ROWS)
    if unknown:
        p.error(f"--only: unknown rows {sorted(unknown)}; choose from {', '.join(ROWS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(args.threads)
    results = {"config": vars(args), "torch": torch.__version__, "datasets": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        budgets = sorted(float(b) for b in getattr(args, f"budgets_{name}").split(","))
        if args.smoke:
            budgets = budgets[:2]
        times = {b: 4.0 if args.smoke else row_time(name, b, args.time_scale, args.min_time)
                 for b in budgets}
        X, y, Xt, yt = sv.load(name, args.smoke)
        # The package's defaults (tiny settings for the seconds-long smoke run).
        rb = sv.RB_DEFAULTS["smoke"] if args.smoke else None
        rows = []
        for seed in seeds:
            data = sv.TorchData(X, y, Xt, yt, seed, device)
            base = dict(X=X, y=y, Xt=Xt, yt=yt, seed=seed, rb=rb, data=data, device=args.device,
                        rb_params=json.loads(args.rb_params), label=args.label)
            jobs = [(key, b) for b in budgets for key in only if key != "sklearn"]
            if "sklearn" in only and seed == seeds[0]:
                jobs.append(("sklearn", None))
            for key, b in jobs:
                ctx = dict(base, budget=b if b else budgets[-1], T=times.get(b, 0.0))
                torch.manual_seed(seed)
                print(f"[{name} seed {seed} budget {b or '-'}] {key} ...", flush=True)
                try:
                    with threadpool_limits(args.threads):
                        new = globals()[f"row_{key}" if key != "sklearn" else "sklearn_rows"](ctx)
                except Exception as exc:  # one broken row must not lose the others
                    traceback.print_exc()
                    new = [dict(method="ResBuilder" if key == "resbuilder" else key,
                                error=f"{type(exc).__name__}: {exc}")]
                for r in new:
                    # sklearn rows are not fitted to a budget: they sit at their own FLOPs
                    rows.append(dict(r, seed=seed, budget=b if b else r.get("flops", 0.0)))
                # write as we go: a long run never loses finished rows
                results["datasets"][name] = dict(budgets=budgets, times=times, rows=rows,
                                                 n_train=len(X), n_test=len(Xt))
                out.write_text(json.dumps(results, indent=1, default=str))
        verdicts = print_dataset(name, results["datasets"][name])
        results["datasets"][name]["verdicts"] = {f"{b:g}": v for b, v in verdicts.items()}
        out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nrows written to {out}")


if __name__ == "__main__":
    main()
