"""Training one architecture: the search's three variants (paper §4.1), the
refit, and the step timing ``max_time``'s plan is made from.

- :func:`train_variants` -- With Reg, No Reg WI and No Reg RI for one
  architecture, each with early stopping on validation loss (best epoch
  restored), the epochs ``max_time``'s plan leaves it and the stops of
  :mod:`~sklearn_resbuilder.callbacks`;
- :func:`refit` -- the chosen network on all training images, one-cycle;
- :func:`step_seconds` -- one timed training step of a shape.

The trainer itself is :class:`~sklearn_resbuilder.trainer.ResBuilderTrainer`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from skorch.callbacks import EarlyStopping, LRScheduler, ProgressBar
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from torch.nn import functional as F

from .augment import make_augment
from .callbacks import stop_callbacks
from .inference import PREDICT_BATCH_SIZE
from .network import ResBuilderNet
from . import defaults
from .records import VARIANTS
from .trainer import ResBuilderTrainer
from .training_data import TensorBatches, TrainingData, joined

@dataclass
class TrainConfig:
    """Settings of one training (defaults from :mod:`~sklearn_resbuilder.defaults`)."""

    morph_strength: float = defaults.MORPH_STRENGTH
    lasso_strength: float = defaults.LASSO_STRENGTH
    gamma_threshold: float = defaults.GAMMA_THRESHOLD
    #: With Reg's MorphNet pressure pauses while the alive channels cost at
    #: most this (the search sets the budget for over-budget networks).
    flop_floor: float = 0.0
    weight_decay: float = defaults.WEIGHT_DECAY
    lr: float = defaults.LR
    batch_size: int = defaults.BATCH_SIZE
    #: Epochs per training at most. The search also takes "auto" (the
    #: estimator's default): sized by ``max_time``'s plan (``Search._max_epochs``).
    max_epochs: int | str = defaults.MAX_EPOCHS
    patience: int = defaults.PATIENCE
    #: Floor on the refit's optimizer steps (``defaults.REFIT_MIN_STEPS``).
    min_steps: int = defaults.REFIT_MIN_STEPS
    augment: object = True
    device: str = "cpu"
    verbose: int = 0
    mixed_precision: bool = False
    #: None (default) or True: channels-last batches and weights, faster on
    #: CUDA tensor cores and on CPUs (oneDNN: 1.5x measured on the demo's net).
    channels_last: bool | None = None


@dataclass
class TrainResult:
    """One trained variant: the module, its score record and skorch's History."""

    module: ResBuilderNet
    record: dict
    history: object = field(repr=False, default=None)


def train_one(module: ResBuilderNet, data: TrainingData, config: TrainConfig, *,
              regularized: bool, seed: int = 0, slot=None) -> TrainResult:
    """Train ``module`` (in place) and return its :class:`TrainResult`.

    The record holds ``valid_accuracy`` and ``valid_loss`` of the restored best
    epoch (evaluated after training), ``train_loss`` of that epoch (including
    the penalties when ``regularized``), ``epochs`` run, ``seconds``,
    ``stopped`` (None, "early_stopping", "max_time", "hard stop" or
    "diverged: ...") and ``batch_size`` (halved from ``config.batch_size``
    after each out-of-memory error, with a warning; the training restarts
    from its start weights). ``slot``: the epochs the time plan allows
    (:class:`~sklearn_resbuilder.timeplan.Slot`), charged to it at the end
    (``planned_seconds``).
    """
    t0 = time.perf_counter()
    batch_size = config.batch_size
    channels_last = config.channels_last is not False
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    start = copy.deepcopy(module.state_dict())
    while True:
        try:
            net = _fit(module, data, config, regularized, seed, batch_size, channels_last,
                       slot)
            break
        except torch.OutOfMemoryError as exc:
            if batch_size <= 2:
                raise torch.OutOfMemoryError(
                    f"out of memory on {config.device} even with batch_size=2 for a network "
                    f"of {module.architecture.flops():,} FLOPs per image: use a smaller "
                    "start network or flop_budget, or device='cpu'") from exc
            # Retry the whole training from its start weights with half the batch.
            warnings.warn(f"out of memory on {config.device} with batch_size={batch_size}: "
                          f"retrying with batch_size={batch_size // 2}", UserWarning,
                          stacklevel=2)
            batch_size //= 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            module.load_state_dict(start)
    epochs = [row for row in net.history if "valid_loss" in row and "valid_acc" in row]
    if epochs:
        # EarlyStopping (threshold 0) restored the first epoch with the lowest
        # validation loss: its row already holds the restored weights' scores,
        # so no extra pass over the validation set is needed.
        best = min(epochs, key=lambda r: r["valid_loss"])
        record = {"valid_accuracy": float(best["valid_acc"]),
                  "valid_loss": float(best["valid_loss"]),
                  "train_loss": float(best["train_loss"]),
                  "best_epoch": int(best["epoch"])}
    else:  # nothing finished an epoch (no time left, early divergence): score the start
        record = {**_score(net, data), "train_loss": float("nan"), "best_epoch": 0}
    record["epochs"] = len(epochs)
    record["n_valid"] = len(data.y_valid)  # what the selection's standard error is of
    stopped = getattr(net, "stop_reason_", None)
    if stopped is None and len(epochs) < config.max_epochs:
        stopped = "early_stopping"
    record["stopped"] = stopped
    record["batch_size"] = batch_size
    if slot is not None:
        record["planned_seconds"] = round(slot.finish(len(net.history)), 6)
    record["seconds"] = time.perf_counter() - t0
    return TrainResult(net.module_, record, net.history)


def refit_epochs(config: TrainConfig, n_images: int, epochs: int) -> int:
    """``epochs``, raised so that the refit makes at least ``config.min_steps`` steps."""
    per_epoch = len(TensorBatches(Dataset(torch.empty(n_images), None), config.batch_size,
                                  shuffle=True))
    return max(int(epochs), math.ceil(config.min_steps / max(per_epoch, 1)))


def step_seconds(arch, data: TrainingData, config: TrainConfig, *, steps: int = 3,
                 warmup: int = 2) -> float:
    """Wall seconds of one training step of a fresh ``arch`` network, as the trainer runs it.

    :class:`ResBuilderTrainer`'s ``train_step`` with both penalties on (With
    Reg, the dearer of the two kinds of training: penalty value and proximal
    step included) on the first ``config.batch_size`` training images, with
    the batch preparation, augmentation, layout and precision of a real
    training; the fastest of ``steps`` timed steps after ``warmup`` untimed
    ones (kernel set-up, first allocations): on a shared machine load only
    ever adds time, and the fastest step varies least between calls. What
    ``max_time``'s plan models every training from
    (:class:`~sklearn_resbuilder.timeplan.TimePlan`): seconds per FLOP
    differ several-fold between shapes of equal FLOPs (a wide stem at full
    resolution against narrow blocks), so each shape is timed rather than
    predicted. Touches no global random state and no network of the search.
    """
    device = config.device
    net = ResBuilderNet(arch, generator=torch.Generator().manual_seed(0)).to(device)
    channels_last = config.channels_last is not False
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    trainer = _trainer(net, data, config, regularized=True, seed=0,
                       batch_size=config.batch_size, channels_last=channels_last, epochs=1,
                       callbacks=[], train_split=None).initialize()
    batch = (data.X_train[:config.batch_size], data.y_train[:config.batch_size].to(device))
    net.train()
    times = []
    for _ in range(steps + warmup):
        t = time.perf_counter()
        trainer.train_step(batch)
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return float(min(times[warmup:]))


def _patience(config: TrainConfig, epochs: int) -> int:
    """Early stopping's patience: ``config.patience``, but at most a third of
    the epochs (at least 2), so it can act in short trainings too."""
    return max(2, min(config.patience, math.ceil(epochs / 3)))


def _seeds(seed: int) -> tuple[int, int]:
    """Independent seeds for shuffling and augmentation (not the same integer)."""
    a, b = np.random.SeedSequence(int(seed)).generate_state(2)
    return int(a), int(b)


def _trainer(module, data, config, *, regularized, seed, batch_size, channels_last,
             epochs, callbacks, train_split, label_smoothing=0.0):
    """The skorch trainer of one training (all randomness from ``seed``, none global)."""
    shuffle_seed, augment_seed = _seeds(seed)
    if config.verbose >= 2:
        callbacks = callbacks + [("progress", ProgressBar())]
    return ResBuilderTrainer(
        module,
        morph_strength=config.morph_strength if regularized else 0.0,
        lasso_strength=config.lasso_strength if regularized else 0.0,
        gamma_threshold=config.gamma_threshold, flop_floor=config.flop_floor,
        input_mean=data.mean, input_std=data.std,
        augment=make_augment(config.augment, config.device, augment_seed),
        mixed_precision=config.mixed_precision, channels_last=channels_last,
        lr=config.lr, batch_size=batch_size, max_epochs=epochs,
        optimizer__weight_decay=config.weight_decay,
        criterion__label_smoothing=label_smoothing,
        iterator_train=TensorBatches, iterator_valid=TensorBatches,
        iterator_train__shuffle=True,
        iterator_train__generator=torch.Generator().manual_seed(shuffle_seed),
        train_split=train_split,
        callbacks=callbacks, device=config.device, verbose=0,
        classes=list(range(module.architecture.n_classes)),
    )


def _run_fit(net, X, y, slot):
    """``net.fit`` unless ``slot`` leaves it no epoch; a user's Ctrl-C ends the search."""
    reason = None if slot is None else slot.stop_reason(0, net.max_epochs)
    if reason is not None:
        net.initialize()
        net.stop_reason_ = reason
        return net
    with _catch_ctrl_c() as pressed:
        net.fit(Dataset(X, y), y=None)
    if pressed:
        # skorch's partial_fit swallows KeyboardInterrupt (its own way to
        # stop a training); a user's Ctrl-C must end the search instead.
        raise KeyboardInterrupt
    return net


def _fit(module, data, config, regularized, seed, batch_size, channels_last, slot):
    """Build the skorch trainer for one training and run it (if the plan leaves time)."""
    epochs = config.max_epochs
    # NeuralNetClassifier adds its cached 'valid_acc' scoring itself.
    callbacks = [
        ("early_stopping", EarlyStopping(monitor="valid_loss", patience=_patience(config, epochs),
                                         threshold=0.0, load_best=True, sink=lambda *a: None)),
        *stop_callbacks(slot),
    ]
    net = _trainer(module, data, config, regularized=regularized, seed=seed,
                   batch_size=batch_size, channels_last=channels_last, epochs=epochs,
                   callbacks=callbacks,
                   train_split=predefined_split(Dataset(data.X_valid, data.y_valid)))
    return _run_fit(net, data.X_train, data.y_train, slot)




def refit_label_smoothing(n_params: int, n_images: int) -> float:
    """The refit's label smoothing for a network of ``n_params`` parameters
    trained on ``n_images`` images.

    ``defaults.REFIT_LABEL_SMOOTHING`` (0.1), or 0 for a network with fewer
    parameters than ``defaults.REFIT_SMOOTH_MIN_PARAMS_PER_IMAGE`` (1) per
    training image: such a network underfits, and smoothing, a regularizer,
    costs it accuracy (docs/algorithm.md, deviation 16).
    """
    if n_params < defaults.REFIT_SMOOTH_MIN_PARAMS_PER_IMAGE * n_images:
        return 0.0
    return defaults.REFIT_LABEL_SMOOTHING


def refit(module: ResBuilderNet, data: TrainingData, config: TrainConfig, *, epochs: int,
          seed: int = 0, warmup: float = 0.1, slot=None,
          label_smoothing: float | None = None) -> TrainResult:
    """Train ``module`` (in place) on train + validation images, penalties off.

    The learning rate follows skorch's ``LRScheduler`` with torch's
    ``OneCycleLR``: a linear warm-up over ``warmup`` of the steps from
    ``peak / 25`` to ``peak = defaults.REFIT_PEAK_LR * config.lr``, then a cosine
    down to ~0. The loss is cross entropy with label smoothing
    ``label_smoothing`` (None: :func:`refit_label_smoothing`). There is no
    validation split left to stop on, so it runs ``epochs`` epochs (fewer
    if the time plan's ``slot`` allows fewer).

    Returns
    -------
    TrainResult
        ``record``: ``epochs`` run, ``planned_epochs``, ``n_images``,
        ``train_loss`` of the last epoch (smoothed CE), ``schedule``, ``lr``,
        ``label_smoothing``, ``seconds``, ``stopped`` (None or "max_time" /
        "hard stop" / "diverged: ..."), and with a ``slot`` ``planned_seconds``.
    """
    t0 = time.perf_counter()
    X, y = joined(data.X_train, data.X_valid), joined(data.y_train, data.y_valid)
    if label_smoothing is None:
        label_smoothing = refit_label_smoothing(module.architecture.n_params(), len(X))
    channels_last = config.channels_last is not False
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    steps = epochs * len(TensorBatches(Dataset(X, y), config.batch_size, shuffle=True))
    peak = defaults.REFIT_PEAK_LR * config.lr
    schedule = LRScheduler(policy=torch.optim.lr_scheduler.OneCycleLR, max_lr=peak,
                           total_steps=steps + 1, pct_start=warmup, anneal_strategy="cos",
                           cycle_momentum=False, step_every="batch")
    net = _trainer(module, data, config, regularized=False, seed=seed,
                   batch_size=config.batch_size, channels_last=channels_last, epochs=epochs,
                   callbacks=[("lr_schedule", schedule), *stop_callbacks(slot)],
                   train_split=None, label_smoothing=label_smoothing)
    net = _run_fit(net, X, y, slot)
    rows = [row for row in net.history if "train_loss" in row]
    record = {"epochs": len(rows), "planned_epochs": int(epochs), "n_images": len(X),
              "train_loss": float(rows[-1]["train_loss"]) if rows else float("nan"),
              "schedule": f"one-cycle: {warmup:.0%} linear warm-up to lr, cosine to 0",
              "lr": float(peak), "batch_size": int(config.batch_size),
              "label_smoothing": float(label_smoothing),
              "stopped": getattr(net, "stop_reason_", None),
              "seconds": time.perf_counter() - t0}
    if slot is not None:
        record["planned_seconds"] = round(slot.finish(len(rows)), 6)
    return TrainResult(net.module_, record, net.history)


@torch.no_grad()
def _score(net: ResBuilderTrainer, data: TrainingData) -> dict:
    """Validation loss and accuracy of the trainer's current module."""
    net.module_.eval()
    logits = torch.cat([net.infer(xb) for xb, _ in
                        TensorBatches(Dataset(data.X_valid, None), batch_size=PREDICT_BATCH_SIZE)])
    y = data.y_valid.to(logits.device)
    loss = float(F.cross_entropy(logits.float(), y))
    acc = float((logits.argmax(1) == y).float().mean())
    return {"valid_accuracy": acc, "valid_loss": loss}


@contextlib.contextmanager
def _catch_ctrl_c():
    """Notes whether SIGINT arrived (main thread only; elsewhere a no-op).

    Yields a list that is non-empty after a Ctrl-C; the usual
    KeyboardInterrupt is still raised.
    """
    pressed: list = []
    old = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(old):
        yield pressed
        return

    def handler(signum, frame):
        pressed.append(True)
        old(signum, frame)

    signal.signal(signal.SIGINT, handler)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, old)


def train_variants(module: ResBuilderNet, data: TrainingData, config: TrainConfig, *,
                   seed: int = 0, variants=VARIANTS, plan=None) -> dict:
    """Train one architecture the paper's three ways (§4.1).

    - ``with_reg``: from ``module``'s weights (a copy), both penalties on;
    - ``no_reg_wi``: from the With Reg result, penalties off;
    - ``no_reg_ri``: fresh init of the same architecture, penalties off.

    Returns ``{variant: TrainResult}`` in that order; ``no_reg_ri`` is left out
    when the time ``plan`` (a :class:`~sklearn_resbuilder.timeplan.TimePlan`)
    leaves it no epoch. Each training takes its epochs from ``plan``.
    ``module`` is not modified.
    """
    arch = module.architecture

    def slot():
        if plan is None:
            return None
        return plan.training(lambda: plan.epoch_seconds(
            arch, len(data.y_train), len(data.y_valid), config.batch_size), config.max_epochs)

    results = {}
    if "with_reg" in variants or "no_reg_wi" in variants:
        start = copy.deepcopy(module)
        results["with_reg"] = train_one(start, data, config, regularized=True, seed=seed,
                                        slot=slot())
        # A batch halved for lack of memory stays halved.
        config = replace(config, batch_size=results["with_reg"].record["batch_size"])
    if "no_reg_wi" in variants:
        wi = copy.deepcopy(results["with_reg"].module)
        results["no_reg_wi"] = train_one(wi, data, config, regularized=False, seed=seed + 1,
                                         slot=slot())
        config = replace(config, batch_size=results["no_reg_wi"].record["batch_size"])
    ri = slot() if "no_reg_ri" in variants else None
    if "no_reg_ri" in variants and (ri is None or ri.limit > 0):
        # Without time left a fresh init would be scored untrained (chance
        # level): that is no finished work, so the variant is left out.
        gen = torch.Generator().manual_seed(seed + 2)
        fresh = ResBuilderNet(module.architecture, generator=gen).to(next(module.parameters()).device)
        results["no_reg_ri"] = train_one(fresh, data, config, regularized=False, seed=seed + 2,
                                         slot=ri)
    return {v: results[v] for v in VARIANTS if v in results}
