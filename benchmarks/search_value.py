"""Is the search worth its time? ResBuilder against what the same minutes buy otherwise.

In one run, on one train/test split, with one FLOP budget B and one wall-clock
time T per row, this trains and scores:

- ``resbuilder``: ``ResBuilderClassifier(flop_budget=B, max_time=T, augment="shift")``;
- ``uniform``: a hand-laid ResNet scaled to B with ``largest_omega``, three block
  layouts trained T/3 each, the best by validation accuracy reported;
- ``cnn``: the PyTorch MNIST example's 2-conv CNN trained for T (its FLOPs may
  exceed B: see "within budget");
- ``random``: 3 random block layouts scaled to B, trained T/3 each;
- ``svc`` / ``mlp``: scikit-learn's SVC(rbf) and MLPClassifier(256) on pixels/255.

Data: MNIST's first 10k training images, scored on the official 10k test set
(T = 300 s, B = 1e7); sklearn's digits as 0..255 uint8 8x8 images, split 50/50
stratified with random_state=0 (T = 60 s, B = 2e5). Rows trained by the plain
PyTorch loop below (uniform, cnn, random) fit on a stratified 90 % of the
training images and keep 10 % for validation, as ResBuilder does internally;
SVC and MLP fit on all of it. The loop: Adam + OneCycleLR (max lr 3e-3),
batch 128, standardised inputs, random +-10 % shifts, as many steps as the
row's time allows (estimated from timed probe steps; a deadline stops it too).

FLOPs/image use the paper's count (2 per multiply-add of convs and dense
layers). For SVC: 2 * n_support * D (the kernel's dot products); for the MLP its
two dense layers. The margin line compares ResBuilder with the best other row
within budget -- random rows are picked by test accuracy, which favours them.

    OMP_NUM_THREADS=2 python benchmarks/search_value.py [--datasets mnist,digits]
        [--time-mnist 300] [--time-digits 60] [--budget-mnist 1e7] [--budget-digits 2e5]
        [--seeds 0,1,2] [--threads 2] [--only resbuilder,uniform,cnn,random,svc,mlp]
        [--n-insertions 3] [--n-morph-steps 2] [--max-epochs 4] [--rb-params '{"refit": true}']
        [--device auto] [--out benchmarks/results/search_value.json] [--smoke]

With several seeds every row runs once per seed and the tables show medians.
``--smoke`` uses tiny data and T = 5 s to check that every row runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR

from sklearn_resbuilder import Architecture, ResBuilderClassifier
from sklearn_resbuilder.datasets import load_mnist
from sklearn_resbuilder.flops import largest_omega, torch_flops
from sklearn_resbuilder.augment import BatchAugment

ROWS = ("resbuilder", "uniform", "cnn", "random", "svc", "mlp")
BATCH = 128
# ResBuilder defaults per data set: (n_insertions, n_morph_steps, max_epochs).
RB_DEFAULTS = {"mnist": (3, 2, 4), "digits": (2, 2, 30), "smoke": (1, 1, 1)}
# Uniform layouts: (stage, blocks) pairs added to the minimal 3-stage net.
LAYOUTS = {"a: 1 block in each stage": [(0, 1), (1, 1), (2, 1)],
           "b: 2 blocks in stages 1 and 2": [(1, 2), (2, 2)],
           "c: 1 block in stage 2": [(2, 1)]}


def load(name, smoke):
    """``(X_train, y_train, X_test, y_test)`` as uint8 (n, H, W) images."""
    if name == "mnist":
        X, y, Xt, yt = load_mnist(n_train=600 if smoke else 10000)
    else:
        d = load_digits()
        # 0..16 -> 0..255 uint8, so every row sees the same kind of input as MNIST.
        imgs = np.round(d.images * (255 / 16)).astype(np.uint8)
        X, Xt, y, yt = train_test_split(imgs, d.target, test_size=0.5, stratify=d.target,
                                        random_state=0)
    if smoke:
        X, y, Xt, yt = X[:600], y[:600], Xt[:600], yt[:600]
    return X, y, Xt, yt


# ------------------------------------------------------------ plain PyTorch loop
class TorchData:
    """Standardised float tensors of the 90 % train / 10 % validation split and the test set."""

    def __init__(self, X, y, Xt, yt, seed, device):
        tr, va = train_test_split(np.arange(len(y)), test_size=0.1, stratify=y, random_state=seed)
        x = torch.as_tensor(X[:, None], dtype=torch.float32) / 255
        xt = torch.as_tensor(Xt[:, None], dtype=torch.float32) / 255
        mean, std = x[tr].mean(), x[tr].std().clamp_min(1e-6)  # one channel
        prep = lambda a: ((a - mean) / std).to(device)  # noqa: E731
        lab = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
        self.train = prep(x[tr]), lab(y[tr])
        self.valid = prep(x[va]), lab(y[va])
        self.test = prep(xt), lab(yt)
        # Train + validation: what a fixed network that picks nothing can train on.
        self.all = (torch.cat([self.train[0], self.valid[0]]),
                    torch.cat([self.train[1], self.valid[1]]))
        self.shape, self.n_classes, self.device = tuple(x.shape[1:]), int(y.max()) + 1, device


def _step(net, opt, xb, yb, augment):
    loss = nn.functional.cross_entropy(net(augment(xb)), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def train_for(net, data, seconds, seed, on_all=False):
    """Train ``net`` for about ``seconds`` of wall-clock; returns the number of steps.
    ``on_all``: on the training and the validation images (``data.all``)."""
    start = time.perf_counter()
    deadline = start + seconds
    X, y = data.all if on_all else data.train
    net.to(data.device)
    g_dev = torch.Generator(device=data.device).manual_seed(seed)
    augment = BatchAugment(shift=0.1, flip=False, generator=g_dev)
    # OneCycleLR needs its step count up front: time a few steps on a copy.
    probe = copy.deepcopy(net).train()
    popt = torch.optim.Adam(probe.parameters(), lr=1e-3)
    times = []
    for _ in range(7):
        t = time.perf_counter()
        _step(probe, popt, X[:BATCH], y[:BATCH], augment)
        _sync(data.device)
        times.append(time.perf_counter() - t)
    del probe, popt
    # The fastest of 5 after 2 set-up steps, as ResBuilder's plan times a step
    # (training.step_seconds): on a shared machine load only adds time, and a
    # slow probe would leave the baseline half its T unused.
    per_step = min(times[2:])
    # 0.9: leave room for the validation pass and timing noise.
    steps = max(4, int(0.9 * (deadline - time.perf_counter()) / per_step))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    net.train()
    done = 0
    while done < steps and time.perf_counter() < deadline:
        order = torch.randperm(len(y), generator=g).to(data.device)
        for i in range(0, len(y), BATCH):
            idx = order[i:i + BATCH]
            if len(idx) < 2:  # BatchNorm cannot train on one sample
                break
            _step(net, opt, X[idx], y[idx], augment)
            sched.step()
            done += 1
            if done >= steps or time.perf_counter() >= deadline:
                break
    return done


@torch.no_grad()
def accuracy(net, X, y):
    net.eval()
    pred = torch.cat([net(X[i:i + 1000]).argmax(1) for i in range(0, len(X), 1000)])
    return float((pred == y).float().mean())


def dense_head(n_in, hidden, n_classes):
    """The 2-conv CNN's head as a list of layers: ``Linear -> ReLU -> Dropout(0.5) -> Linear``."""
    return [nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, n_classes)]


def two_conv_cnn(shape, n_classes):
    """A hand-written 2-conv CNN: conv32-pool-conv64-pool-dense128 (7.7 MFLOPs at 28x28,
    the issue's reference); padding keeps the maps even, so 8x8 works too."""
    c, h, w = shape
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(), *dense_head(64 * (h // 4) * (w // 4), 128, n_classes))


def with_blocks(base, layout):
    arch = base
    for stage, n in layout:
        for _ in range(n):
            arch = arch.insert_block(stage, len(arch.stages[stage].blocks))
    return arch


def arch_row(method, arch, data, seconds, seed, on_all=False):
    t = time.perf_counter()
    net = arch.build(generator=torch.Generator().manual_seed(seed))
    steps = train_for(net, data, seconds, seed, on_all=on_all)
    # Part of fitting: it picks the uniform layout (None: the validation images were trained on).
    val_acc = None if on_all else accuracy(net, *data.valid)
    fit_s = time.perf_counter() - t
    n = len((data.all if on_all else data.train)[1])
    return dict(method=method, acc=accuracy(net, *data.test), flops=arch.flops(), fit_s=fit_s,
                val_acc=val_acc, arch=arch.to_dict(),
                notes=f"{arch.summary()}; {steps * BATCH / n:.1f} epochs")


# ------------------------------------------------------------------------ rows
def row_resbuilder(ctx):
    """ResBuilder with ``max_time=T``: the search settings ``ctx["rb"]``
    (n_insertions, n_morph_steps, max_epochs) and shifts, or with ``rb``
    None the package's defaults; then ``ctx["rb_params"]`` on top."""
    clf = ResBuilderClassifier(flop_budget=ctx["budget"], max_time=ctx["T"],
                               random_state=ctx["seed"], device=ctx["device"])
    if ctx["rb"] is not None:
        n_ins, n_morph, epochs = ctx["rb"]
        clf.set_params(augment="shift", n_insertions=n_ins, n_morph_steps=n_morph,
                       max_epochs=epochs)
    for key, value in ctx["rb_params"].items():
        try:  # a parameter the estimator does not (yet) have must not stop the run
            clf.set_params(**{key: value})
        except (ValueError, TypeError) as exc:
            warnings.warn(f"--rb-params: skipping {key}={value!r}: {type(exc).__name__}, "
                          "not a parameter of this ResBuilderClassifier")
    t = time.perf_counter()
    clf.fit(ctx["X"], ctx["y"])
    fit_s = time.perf_counter() - t
    arch = clf.best_architecture_
    refit = clf.refit_ or {}
    refit_note = (f"; search {clf.search_time_:.0f} s, refit {refit.get('epochs', 0)} ep"
                  + ("" if refit.get("used") else " (not used)")) if clf.refit else ""
    collapsed = [r for r in clf.history_ if r.get("collapsed")]
    # How well the chosen network fits: its search training's losses at the
    # kept epoch (train on shifted images, validation clean) and the refit's last.
    chosen = clf.history_[clf.best_step_]["scores"][clf.best_variant_]
    return [dict(method="ResBuilder", acc=float(clf.score(ctx["Xt"], ctx["yt"])),
                 chosen_train_loss=chosen.get("train_loss"),
                 chosen_valid_loss=chosen.get("valid_loss"),
                 chosen_valid_acc=chosen.get("valid_accuracy"),
                 chosen_epochs=chosen.get("epochs"),
                 refit_train_loss=refit.get("train_loss"),
                 flops=arch.flops(), fit_s=fit_s, arch=arch.to_dict(),
                 search_s=clf.search_time_, refit_epochs=refit.get("epochs"),
                 n_collapsed=len(collapsed), collapsed_s=sum(r["seconds"] for r in collapsed),
                 max_epochs=clf.max_epochs_, stopped=clf.stopped_, n_skipped=len(clf.skipped_),
                 notes=f"{arch.summary()}; {len(clf.history_)} archs; "
                       f"{clf.n_insertions} ins / {clf.n_morph_steps} morph / "
                       f"{clf.max_epochs_} ep" + refit_note)]


#: Scaled rows round widths as ResBuilder's MorphNet step does by default:
#: odd widths would slow them (deviation 18), not what a user writes.
MULTIPLE = ResBuilderClassifier().width_multiple


def row_uniform(ctx):
    base = Architecture.minimal(ctx["data"].shape, ctx["data"].n_classes)
    layouts, errors = [], []
    for name, layout in LAYOUTS.items():
        try:
            _, arch = largest_omega(with_blocks(base, layout), ctx["budget"], multiple=MULTIPLE)
        except ValueError as exc:  # this depth does not fit the budget even at width 1
            errors.append(exc)
            continue
        layouts.append(arch_row(f"uniform {name}", arch, ctx["data"], ctx["T"] / len(LAYOUTS),
                                ctx["seed"]))
    if not layouts:
        raise errors[0]
    best = max(layouts, key=lambda r: r["val_acc"])  # chosen without looking at the test set
    return [dict(best, method="uniform ResNet (best of 3 by val)",
                 fit_s=sum(r["fit_s"] for r in layouts),
                 notes=f"{best['method'][8:]}; " + best["notes"], layouts=layouts)]


def row_cnn(ctx):
    data = ctx["data"]
    net = two_conv_cnn(data.shape, data.n_classes)
    flops = torch_flops(net, data.shape)
    t = time.perf_counter()
    steps = train_for(net, data, ctx["T"], ctx["seed"])
    fit_s = time.perf_counter() - t
    return [dict(method="2-conv CNN", acc=accuracy(net, *data.test), flops=flops, fit_s=fit_s,
                 notes=f"{steps * BATCH / len(data.train[1]):.1f} epochs")]


def row_random(ctx):
    rng = np.random.default_rng(ctx["seed"])
    base = Architecture.minimal(ctx["data"].shape, ctx["data"].n_classes)
    rows, seen = [], set()
    for k in range(3):
        for _ in range(100):  # redraw repeated layouts and any the budget cannot hold
            layout = [(int(rng.integers(base.n_stages)), 1) for _ in range(rng.integers(1, 5))]
            topology = tuple(sorted(layout))
            try:
                _, arch = largest_omega(with_blocks(base, layout), ctx["budget"],
                                        multiple=MULTIPLE)
            except ValueError:
                continue
            if topology not in seen:
                seen.add(topology)
                break
        rows.append(arch_row(f"random arch #{k + 1}", arch, ctx["data"], ctx["T"] / 3, ctx["seed"]))
    return rows


def _sk_row(method, est, ctx, flops):
    flat = lambda a: a.reshape(len(a), -1) / 255.0  # noqa: E731
    t = time.perf_counter()
    est.fit(flat(ctx["X"]), ctx["y"])
    fit_s = time.perf_counter() - t
    return dict(method=method, acc=float(est.score(flat(ctx["Xt"]), ctx["yt"])),
                flops=flops(est), fit_s=fit_s, notes="")


def row_svc(ctx):
    D = int(np.prod(ctx["X"].shape[1:]))
    return [_sk_row("SVC(rbf)", SVC(), ctx, lambda e: 2 * int(e.n_support_.sum()) * D)]


def row_mlp(ctx):
    mlp = MLPClassifier((256,), max_iter=200, early_stopping=True, random_state=ctx["seed"])
    flops = lambda e: sum(2 * w.size for w in e.coefs_)  # noqa: E731
    return [_sk_row("MLPClassifier(256)", mlp, ctx, flops)]


# ---------------------------------------------------------------------- report
def median_rows(rows, budget):
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        runs = [r for r in rows if r["method"] == method]
        ok = [r for r in runs if "error" not in r]
        if not ok:
            out.append(dict(method=method, error=runs[0]["error"], within=False))
            continue
        med = {k: statistics.median(r[k] for r in ok) for k in ("acc", "flops", "fit_s")}
        out.append(dict(method=method, **med, within=all(r["flops"] <= budget for r in ok),
                        notes=(f"seed {ok[0]['seed']}: " if len(ok) > 1 else "") + ok[0]["notes"],
                        n_runs=len(ok)))
    return out


def _md(text):
    return str(text).replace("|", "\\|").replace("\n", " ")  # keep table cells intact


def report(name, meds, budget, T, n_seeds):
    print(f"\n### {name}: budget {budget:.0e} FLOPs/image, T = {T:g} s, "
          f"{n_seeds} seed(s){' (medians)' if n_seeds > 1 else ''}\n")
    print("| method | test acc | FLOPs/image | within budget | fit s | notes |")
    print("|---|---|---|---|---|---|")
    for r in meds:
        if "error" in r:
            print(f"| {r['method']} | error | | | | {_md(r['error'])} |")
        else:
            print(f"| {r['method']} | {r['acc']:.4f} | {r['flops']:,.0f} | "
                  f"{'yes' if r['within'] else 'no'} | {r['fit_s']:.1f} | {_md(r['notes'])} |")
    ours = [r for r in meds if r["method"] == "ResBuilder" and "error" not in r]
    others = [r["acc"] for r in meds if r["method"] != "ResBuilder" and r["within"]]
    margin = ours[0]["acc"] - max(others) if ours and others else None
    print("\nResBuilder margin over the best other row within budget: "
          + (f"{margin:+.4f}" if margin is not None else "n/a (row missing)"))
    return margin


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="mnist,digits")
    p.add_argument("--time-mnist", type=float, default=300)
    p.add_argument("--time-digits", type=float, default=60)
    p.add_argument("--budget-mnist", type=float, default=1e7)
    p.add_argument("--budget-digits", type=float, default=2e5)
    p.add_argument("--seeds", default="0", help="comma list; medians over seeds")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default=",".join(ROWS), help=f"comma list of {', '.join(ROWS)}")
    p.add_argument("--n-insertions", type=int, help="ResBuilder (default mnist 3, digits 2)")
    p.add_argument("--n-morph-steps", type=int, help="ResBuilder (default 2)")
    p.add_argument("--max-epochs", type=int, help="ResBuilder (default mnist 4, digits 10)")
    p.add_argument("--rb-params", default="{}", help="JSON of extra ResBuilderClassifier params")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (torch rows and ResBuilder)")
    p.add_argument("--out", default="benchmarks/results/search_value.json")
    p.add_argument("--smoke", action="store_true", help="600 images, T = 5 s: does every row run?")
    args = p.parse_args(argv)
    only = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = set(only) - set(ROWS)
    if unknown:
        p.error(f"--only: unknown rows {sorted(unknown)}; choose from {', '.join(ROWS)}")
    rb_params = json.loads(args.rb_params)
    seeds = [int(s) for s in args.seeds.split(",")]
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(args.threads)
    results = {"config": vars(args), "torch": torch.__version__, "datasets": {}}
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        budget = getattr(args, f"budget_{name}")
        T = 5.0 if args.smoke else getattr(args, f"time_{name}")
        X, y, Xt, yt = load(name, args.smoke)
        dflt = RB_DEFAULTS["smoke" if args.smoke else name]
        rb = tuple(d if v is None else v for v, d in
                   zip((args.n_insertions, args.n_morph_steps, args.max_epochs), dflt))
        rows = []
        for seed in seeds:
            ctx = dict(X=X, y=y, Xt=Xt, yt=yt, budget=budget, T=T, seed=seed, rb=rb,
                       rb_params=rb_params, device=args.device,
                       data=TorchData(X, y, Xt, yt, seed, device))
            for key in only:
                torch.manual_seed(seed)
                print(f"[{name} seed {seed}] {key} ...", flush=True)
                try:
                    with threadpool_limits(args.threads):  # BLAS threads of the sklearn rows
                        new = globals()[f"row_{key}"](ctx)
                except Exception as exc:  # one broken row must not lose the others
                    traceback.print_exc()
                    new = [dict(method="ResBuilder" if key == "resbuilder" else key,
                                error=f"{type(exc).__name__}: {exc}")]
                rows += [dict(r, seed=seed) for r in new]
        meds = median_rows(rows, budget)
        title = f"{name} ({len(X):,} train / {len(Xt):,} test)"
        margin = report(title, meds, budget, T, len(seeds))
        results["datasets"][name] = dict(budget=budget, T=T, n_train=len(X), n_test=len(Xt),
                                         rows=rows, medians=meds, margin=margin)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nrows written to {out}")


if __name__ == "__main__":
    main()
