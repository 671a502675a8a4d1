"""Training one architecture: the skorch trainer and the three variants (paper §4.1).

- :class:`ResBuilderTrainer` -- a skorch ``NeuralNetClassifier`` whose
  ``get_loss`` adds ``lambda_M G_M + lambda_Lambda G_Lambda`` (paper eq. 5) and
  whose ``infer`` scales, standardises and (in training) augments each batch on
  the training device.
- :func:`train_variants` -- With Reg, No Reg WI and No Reg RI for one
  architecture, each with early stopping on validation loss (best epoch
  restored), the epochs ``max_time``'s plan leaves it and a guard against
  diverging loss.
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
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EarlyStopping, LRScheduler, ProgressBar
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from skorch.utils import to_tensor
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import v2

from .network import ResBuilderNet
from .regularizers import PROXIMAL_LR_RATIO, alive_widths, penalty_value, proximal_step

VARIANTS = ("with_reg", "no_reg_wi", "no_reg_ri")


# ------------------------------------------------------------------ augmentation
class BatchAugment(v2.Transform):
    """Per-sample random shift and horizontal flip of an image batch, on its device.

    torchvision's own ``RandomAffine``/``RandomHorizontalFlip`` draw one set of
    parameters per call, i.e. the same shift for a whole batch; this transform
    draws one per image and applies all of them with two ``gather`` calls (no
    Python loop over images). Shifts are whole pixels, up to ``shift`` of the
    image size (10 % of 28 px: 3 px); borders repeat the edge pixel (Keras'
    "nearest" fill, as the paper used).

    Parameters
    ----------
    shift : float
        Maximum shift as a fraction of height/width (paper: 0.1). 0 disables.
    flip : bool
        Random horizontal flips with probability 0.5.
    generator : torch.Generator, optional
        On the batch's device; makes the augmentation reproducible.
    """

    def __init__(self, shift: float = 0.1, flip: bool = True, generator=None):
        super().__init__()
        self.shift, self.flip, self.generator = float(shift), bool(flip), generator

    def _offsets(self, n, size, device):
        m = int(round(self.shift * size))
        if m == 0:
            return torch.zeros(n, dtype=torch.long, device=device)
        return torch.randint(-m, m + 1, (n,), generator=self.generator, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        if x.ndim != 4 or not (self.shift or self.flip):
            return x
        n, c, h, w = x.shape
        dev = x.device
        # Source row/column of every output pixel; clamping repeats the edge.
        rows = (torch.arange(h, device=dev) + self._offsets(n, h, dev)[:, None]).clamp_(0, h - 1)
        cols = (torch.arange(w, device=dev) + self._offsets(n, w, dev)[:, None]).clamp_(0, w - 1)
        if self.flip:
            flip = torch.rand(n, device=dev, generator=self.generator) < 0.5
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        x = x.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w))
        return x.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def make_augment(augment, device, seed=None):
    """The batch transform for ``augment`` = True (shift + flip), "shift", "flip" or False.

    "auto" is decided by the search (:func:`flip_invariant`); until then it
    means "shift"."""
    if augment is False or augment is None:
        return None
    if augment is True:
        shift, flip = 0.1, True
    elif augment in ("shift", "auto"):
        shift, flip = 0.1, False
    elif augment == "flip":
        shift, flip = 0.0, True
    else:
        raise ValueError(f"augment must be True, False, 'auto', 'shift' or 'flip', got {augment!r}")
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
    return BatchAugment(shift, flip, gen)


@torch.no_grad()
def predict_logits(module: nn.Module, X, mean, std, device="cpu", *, batch_size: int = 1024,
                   mirror: bool = False) -> torch.Tensor:
    """``module``'s float logits on the images ``X`` (uint8 or float, (n, C, H, W)),
    in eval mode and channels-last batches of ``batch_size`` (``mirror``:
    flipped left-right). Train mode is restored; the logits stay on ``device``."""
    was = module.training
    module.eval()
    out = []
    for i in range(0, len(X), batch_size):
        xb = prepare_batch(X[i:i + batch_size], mean, std, device)
        if mirror:
            xb = xb.flip(-1)
        # Channels-last: oneDNN's (and cuDNN's) faster layout for these convs.
        out.append(module(xb.contiguous(memory_format=torch.channels_last)).float())
    module.train(was)
    return torch.cat(out)


def bf16_autocast(device, enabled: bool = True):
    """``torch.autocast`` to bfloat16 on ``device``'s kind: what
    ``mixed_precision`` trains under (the trainer and :func:`step_seconds`)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


def inference_copy(module: nn.Module, device="cpu") -> nn.Module:
    """An eval-mode copy of ``module`` on ``device``, weights in channels-last.

    What :func:`predict_logits` runs fastest: with plain (NCHW) weights
    oneDNN reorders them on every call, and eval-mode passes ran 1.5-2x
    slower (MNIST, 2 threads: the demo's net 3,630 against 7,265 img/s,
    docs/benchmarks.md). A copy, so a fitted estimator's own weights stay
    plain (what save and export expect) and concurrent predictions never
    move them.
    """
    return copy.deepcopy(module).to(device=device, memory_format=torch.channels_last).eval()


def valid_logits(module: nn.Module, data: "TrainingData", device="cpu", *,
                 mirror: bool = False) -> torch.Tensor:
    """:func:`predict_logits` on ``data``'s validation images."""
    return predict_logits(module, data.X_valid, data.mean, data.std, device, mirror=mirror)


@torch.no_grad()
def flip_invariant(module: nn.Module, data: "TrainingData", device="cpu") -> dict:
    """Does ``module`` (trained without flips) classify mirrored validation images
    as well as the originals? Decides ``augment="auto"``.

    Flips are chosen when the network has learned something (accuracy four
    standard errors above the majority class) and the accuracy on
    horizontally flipped images is at least the accuracy on the originals
    minus two paired standard errors:
    mirrored digits or letters lose far more (measured: digits 0.95 -> 0.4),
    mirror-symmetric classes nothing.

    Returns
    -------
    dict
        ``{"flip": bool, "accuracy": float, "flipped_accuracy": float}``.
    """
    y = data.y_valid.to(device)
    a = (valid_logits(module, data, device).argmax(1) == y).float()
    b = (valid_logits(module, data, device, mirror=True).argmax(1) == y).float()
    d = a - b
    se = float(d.std()) / math.sqrt(len(d)) if len(d) > 1 else 0.0
    # A network no better than the majority class cannot tell: no flips (they
    # cost 5-8 points where they are wrong, shifts alone rarely cost any).
    chance = float(torch.bincount(data.y_valid).max()) / len(data.y_valid)
    learned = float(a.mean()) - chance > 4 * math.sqrt(chance * (1 - chance) / len(a))
    return {"flip": bool(learned and float(d.mean()) <= 2 * se), "accuracy": float(a.mean()),
            "flipped_accuracy": float(b.mean())}


# ----------------------------------------------------------------- batching
class TensorBatches:
    """Batches sliced straight out of a skorch ``Dataset`` holding tensors.

    skorch's default ``DataLoader`` indexes one sample at a time and collates;
    slicing whole index batches keeps the per-batch cost independent of the
    batch size. Passed to the trainer as ``iterator_train``/``iterator_valid``.

    Shuffled (training) epochs are cut into ``ceil(n / batch_size)`` batches
    of near-equal size (898 images at 128: eight of 112-113, not seven of 128
    and one of 2). A tail batch of a few samples gives a noisy step at full
    learning rate and pulls BatchNorm's running statistics toward its few
    samples, and the last one of the last epoch is what prediction then uses:
    measured on digits (898 refit images, five seeds of one net), 0.9749 mean
    test accuracy with the 2-sample tail, 0.9818 with balanced batches
    (docs/algorithm.md, deviation 15). Unshuffled (prediction) batches are
    plain ``batch_size`` slices.
    """

    def __init__(self, dataset, batch_size=128, shuffle=False, generator=None):
        self.X, self.y = dataset.X, dataset.y
        self.batch_size, self.shuffle, self.generator = int(batch_size), shuffle, generator

    def __len__(self):
        return math.ceil(len(self.X) / self.batch_size)

    def __iter__(self):
        n = len(self.X)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.X.device)
            for idx in torch.tensor_split(order, len(self)) if n else ():
                yb = self.y[idx] if self.y is not None else torch.zeros(len(idx))
                yield self.X[idx], yb
            return
        for start in range(0, n, self.batch_size):
            xb = self.X[start:start + self.batch_size]
            yb = (self.y[start:start + self.batch_size] if self.y is not None
                  else torch.zeros(len(xb)))
            yield xb, yb


# ---------------------------------------------------------------- callbacks
class StopTraining(Callback):
    """Stops a training where its time plan says (checked between epochs) and
    when the training loss diverges, restoring the last good weights.

    ``slot`` (a :class:`~sklearn_resbuilder.timeplan.Slot`, with ``max_time``)
    caps the epochs the time plan leaves this training, and holds the
    wall-clock safety net of :mod:`~sklearn_resbuilder.timeplan`.
    Diverging means non-finite, or ``explode_factor`` times the first batch's
    loss: a too large lambda or lr (the paper's Fig. 10) blows the loss up to
    1e11 and more long before it overflows. A regularised training also
    stops when the penalties leave a residual stream with no alive channel
    (the search discards such a network). Stopping uses skorch's own
    mechanism (raising ``KeyboardInterrupt``, caught by ``partial_fit``, as
    ``EarlyStopping`` does). The reason lands in ``net.stop_reason_``: None,
    "max_time", "hard stop", "diverged: ..." or "collapsed: ...".
    """

    def __init__(self, slot=None, explode_factor: float = 1e3):
        self.slot = slot
        self.explode_factor = explode_factor

    def initialize(self):
        self._good = None
        self._first = None
        return self

    def on_train_begin(self, net, **kwargs):
        net.stop_reason_ = None
        self._first = None
        self._good = copy.deepcopy(net.module_.state_dict())

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        if not training or loss is None:
            return
        value = float(loss.detach())
        if self._first is None and math.isfinite(value):
            self._first = value
        reason = None
        if not math.isfinite(value):
            reason = "non-finite training loss"
        elif value > self.explode_factor * max(self._first, 1e-3):
            reason = f"training loss {value:.3g} > {self.explode_factor:g} x the first batch's"
        if reason:
            net.stop_reason_ = f"diverged: {reason} in epoch {len(net.history)}"
            net.module_.load_state_dict(self._good)
            raise KeyboardInterrupt

    def on_epoch_end(self, net, **kwargs):
        if net.morph_strength or net.lasso_strength:
            groups, _ = alive_widths(net.module_, net.gamma_threshold)
            if min(groups) == 0:
                # The penalties killed a whole residual stream: the search rolls
                # this network back, so the rest of the training is wasted.
                net.stop_reason_ = f"collapsed: a stream died in epoch {len(net.history)}"
                raise KeyboardInterrupt
        if all(torch.isfinite(p).all() for p in net.module_.parameters()):
            self._good = copy.deepcopy(net.module_.state_dict())
        # The plan's epochs are used up (after the last epoch: complete).
        reason = None if self.slot is None else self.slot.stop_reason(len(net.history),
                                                                      net.max_epochs)
        if reason is not None:
            net.stop_reason_ = reason
            raise KeyboardInterrupt


# ------------------------------------------------------------------ trainer
def prepare_batch(x, mean=None, std=None, device="cpu") -> torch.Tensor:
    """A batch as the network sees it: on ``device``, float32, uint8 scaled to
    [0, 1], then standardised per channel with ``mean``/``std`` (shape (C,))."""
    x = to_tensor(x, device=device)
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    elif x.dtype != torch.float32:
        x = x.float()
    if mean is not None:
        shape = (1, x.shape[1], 1, 1)
        x = (x - torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)) \
            / torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return x


class ResBuilderTrainer(NeuralNetClassifier):
    """skorch classifier for a :class:`ResBuilderNet` with ResBuilder's loss (eq. 5).

    ``loss = CE + lambda_Lambda G_Lambda + lambda_M G_M`` during training;
    validation loss is plain cross entropy (it drives early stopping). L2
    (lambda_0) is Adam's ``weight_decay``.

    Parameters
    ----------
    module : ResBuilderNet
        Trained in place, from its current weights.
    morph_strength : float
        lambda_M, MorphNet's FLOP regularizer strength.
    lasso_strength : float
        lambda_Lambda, LayerLasso strength.
    gamma_threshold : float
        tau_M, MorphNet's alive threshold on |gamma|.
    input_mean, input_std : array-like of shape (C,)
        Per-channel standardisation (computed on the training split).
    augment : torchvision transform or None
        Applied to training batches only, after standardisation.
    mixed_precision : bool
        Forward passes under ``torch.autocast`` (bfloat16) on the trainer's
        device; the logits come back as float32, so the loss, the penalties
        and the weights stay float32.
    channels_last : bool
        Feed batches in channels-last memory format (the module should be
        converted too): faster convolutions on CUDA tensor cores and CPUs.
    **kwargs
        Passed to ``skorch.NeuralNetClassifier``.
    """

    def __init__(self, module, *, morph_strength=0.0, lasso_strength=0.0, gamma_threshold=1e-2,
                 input_mean=None, input_std=None, augment=None, mixed_precision=False,
                 channels_last=False, **kwargs):
        # Set before skorch's __init__: afterwards skorch refuses plain attributes
        # holding torch modules (the augmentation is a v2.Transform).
        self.morph_strength = morph_strength
        self.lasso_strength = lasso_strength
        self.gamma_threshold = gamma_threshold
        self.input_mean = input_mean
        self.input_std = input_std
        self.augment = augment
        self.mixed_precision = mixed_precision
        self.channels_last = channels_last
        kwargs.setdefault("criterion", nn.CrossEntropyLoss)
        kwargs.setdefault("optimizer", torch.optim.Adam)
        super().__init__(module, **kwargs)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """CE, plus in training the value of eq. 5's penalty terms.

        The penalties are added as a constant (no gradient): Adam would
        normalise their gradient away (DESIGN.md §10), so they act through
        :meth:`train_step`'s proximal update instead. The reported training
        loss is still the whole of eq. 5 (with the size scale of
        :func:`~sklearn_resbuilder.regularizers.penalty_scale`).
        """
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if training and (self.morph_strength or self.lasso_strength):
            with torch.no_grad():
                penalty = penalty_value(self.module_, self.morph_strength,
                                        self.lasso_strength, self.gamma_threshold)
            loss = loss + penalty
        return loss

    def train_step(self, batch, **fit_params):
        """skorch's step (Adam on the CE), then the penalties' proximal step."""
        step = super().train_step(batch, **fit_params)
        if self.morph_strength or self.lasso_strength:
            lr = self.optimizer_.param_groups[0]["lr"]
            proximal_step(self.module_, PROXIMAL_LR_RATIO * lr, self.morph_strength,
                          self.lasso_strength, self.gamma_threshold)
        return step

    def preprocess(self, x, training: bool = False) -> torch.Tensor:
        """:func:`prepare_batch`, then augmentation in training."""
        x = prepare_batch(x, self.input_mean, self.input_std, self.device)
        if training and self.augment is not None:
            x = self.augment(x)
        return x

    def infer(self, x, **fit_params):
        x = self.preprocess(x, training=self.module_.training)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.mixed_precision:
            return super().infer(x, **fit_params)
        with bf16_autocast(self.device):
            out = super().infer(x, **fit_params)
        return out.float()


# ------------------------------------------------------------ data & config
@dataclass
class TrainingData:
    """Training and validation tensors (uint8 or float32, ``(n, C, H, W)``;
    C-contiguous or ``channels_last``)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_valid: torch.Tensor
    y_valid: torch.Tensor
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_arrays(cls, X_train, y_train, X_valid, y_valid, mean=None, std=None):
        """Wrap numpy arrays (no copy for C-contiguous or channel-last input);
        stats default to the train split's."""
        if mean is None or std is None:
            from .data import channel_stats

            mean, std = channel_stats(X_train)
        t = cls._tensor
        return cls(t(X_train), t(y_train, torch.long), t(X_valid), t(y_valid, torch.long),
                   np.asarray(mean, np.float32), np.asarray(std, np.float32))

    @staticmethod
    def _tensor(a, dtype=None) -> torch.Tensor:
        """``torch.as_tensor`` sharing ``a``'s memory when torch can: C-contiguous
        or channel-last arrays (not other strides: negative ones, say)."""
        from .data import is_channels_last

        a = np.asarray(a)
        if not (a.flags.c_contiguous or is_channels_last(a)):
            a = np.ascontiguousarray(a)
        return torch.as_tensor(a, dtype=dtype)

    @classmethod
    def from_split(cls, images, y, train_idx, valid_idx):
        """The training and validation samples of ``images``, copied once.

        Both parts are slices of one buffer (training samples first) in the
        memory layout of ``images``: a channel-last input stays channel-last
        (``channels_last`` tensors, what the network runs in), and is never
        transposed into a second copy. The channel statistics are the
        training part's.

        Parameters
        ----------
        images : ndarray of shape (n, C, H, W)
            From :func:`~sklearn_resbuilder.data.to_images`, C-contiguous or
            channel-last.
        y : ndarray of shape (n,)
            Encoded labels.
        train_idx, valid_idx : ndarray of int
            From :func:`~sklearn_resbuilder.data.validation_split`.

        Returns
        -------
        TrainingData
        """
        from .data import channel_stats, take_samples

        order = np.concatenate([train_idx, valid_idx])
        n_train = len(train_idx)
        both = take_samples(images, order)  # the one full-size copy
        mean, std = channel_stats(both[:n_train])
        # One tensor over the buffer, sliced in torch, so both parts share
        # one storage (as_tensor of each numpy slice would make two).
        X, labels = cls._tensor(both), torch.as_tensor(np.asarray(y)[order], dtype=torch.long)
        return cls(X[:n_train], labels[:n_train], X[n_train:], labels[n_train:],
                   np.asarray(mean, np.float32), np.asarray(std, np.float32))

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement()
                   for t in (self.X_train, self.y_train, self.X_valid, self.y_valid))

    def to(self, device, max_fraction: float = 0.5) -> "TrainingData":
        """The same data on ``device``, moved once (uint8 stays uint8: 4x less
        to hold and to copy than float32).

        On CUDA the data moves only when it takes at most ``max_fraction`` of
        the free GPU memory; otherwise it stays in (pinned) host memory and
        each batch is copied as it is used.
        """
        device = torch.device(device)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if self.nbytes > max_fraction * free:
                warnings.warn(
                    f"the training data ({self.nbytes / 2**20:,.0f} MiB) does not fit in "
                    f"{max_fraction:.0%} of the free GPU memory ({free / 2**20:,.0f} MiB): "
                    "it stays in host memory, and batches are copied as they are used",
                    UserWarning, stacklevel=2)
                return replace(self, X_train=self.X_train.pin_memory(),
                               X_valid=self.X_valid.pin_memory())
        if self.X_train.device == device:
            return self
        return replace(self, X_train=self.X_train.to(device), y_train=self.y_train.to(device),
                       X_valid=self.X_valid.to(device), y_valid=self.y_valid.to(device))


@dataclass
class TrainConfig:
    """Settings of one training (paper §4 defaults)."""

    morph_strength: float = 1e-7
    lasso_strength: float = 1e-8
    gamma_threshold: float = 1e-2
    weight_decay: float = 1e-5
    lr: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 20
    patience: int = 5
    #: Floor on the refit's optimizer steps: small data gets more epochs (300
    #: images at batch 128 are 3 steps an epoch; 20 epochs do not train a net).
    min_steps: int = 600
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
        gamma_threshold=config.gamma_threshold,
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
        ("stop", StopTraining(slot)),
    ]
    net = _trainer(module, data, config, regularized=regularized, seed=seed,
                   batch_size=batch_size, channels_last=channels_last, epochs=epochs,
                   callbacks=callbacks,
                   train_split=predefined_split(Dataset(data.X_valid, data.y_valid)))
    return _run_fit(net, data.X_train, data.y_train, slot)


#: The refit's one-cycle peak, in units of ``lr`` (measured on 300-image digits
#: folds: peak 1x -> 0.958, 3x -> 0.978 cross-validated accuracy at 600 steps).
REFIT_PEAK_LR = 3.0
#: The refit's cross-entropy label smoothing (the search's trainings keep plain
#: CE: their validation loss drives early stopping and greedy out). One digits
#: net, 10 seeds: 0.9810 -> 0.9848 mean test accuracy, no seed worse.
REFIT_LABEL_SMOOTHING = 0.1


def refit(module: ResBuilderNet, data: TrainingData, config: TrainConfig, *, epochs: int,
          seed: int = 0, warmup: float = 0.1, slot=None) -> TrainResult:
    """Train ``module`` (in place) on train + validation images, penalties off.

    The learning rate follows skorch's ``LRScheduler`` with torch's
    ``OneCycleLR``: a linear warm-up over ``warmup`` of the steps from
    ``peak / 25`` to ``peak = REFIT_PEAK_LR * config.lr``, then a cosine
    down to ~0. The loss is cross entropy with label smoothing
    ``REFIT_LABEL_SMOOTHING`` (0.1). There is no
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
    X, y = _joined(data.X_train, data.X_valid), _joined(data.y_train, data.y_valid)
    channels_last = config.channels_last is not False
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    steps = epochs * len(TensorBatches(Dataset(X, y), config.batch_size, shuffle=True))
    peak = REFIT_PEAK_LR * config.lr
    schedule = LRScheduler(policy=torch.optim.lr_scheduler.OneCycleLR, max_lr=peak,
                           total_steps=steps + 1, pct_start=warmup, anneal_strategy="cos",
                           cycle_momentum=False, step_every="batch")
    net = _trainer(module, data, config, regularized=False, seed=seed,
                   batch_size=config.batch_size, channels_last=channels_last, epochs=epochs,
                   callbacks=[("lr_schedule", schedule), ("stop", StopTraining(slot))],
                   train_split=None, label_smoothing=REFIT_LABEL_SMOOTHING)
    net = _run_fit(net, X, y, slot)
    rows = [row for row in net.history if "train_loss" in row]
    record = {"epochs": len(rows), "planned_epochs": int(epochs), "n_images": len(X),
              "train_loss": float(rows[-1]["train_loss"]) if rows else float("nan"),
              "schedule": f"one-cycle: {warmup:.0%} linear warm-up to lr, cosine to 0",
              "lr": float(peak), "batch_size": int(config.batch_size),
              "label_smoothing": REFIT_LABEL_SMOOTHING,
              "stopped": getattr(net, "stop_reason_", None),
              "seconds": time.perf_counter() - t0}
    if slot is not None:
        record["planned_seconds"] = round(slot.finish(len(rows)), 6)
    return TrainResult(net.module_, record, net.history)


def _joined(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.cat([a, b])``, as a view when ``b`` directly follows ``a`` in one
    buffer (what :meth:`TrainingData.from_split` makes): no copy of the data."""
    follows = (a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
               and a.stride() == b.stride() and a.shape[1:] == b.shape[1:] and len(a) > 0
               and b.data_ptr() == a.data_ptr() + len(a) * a.stride(0) * a.element_size())
    if not follows:
        return torch.cat([a, b])
    return a.as_strided((len(a) + len(b),) + tuple(a.shape[1:]), a.stride(),
                        a.storage_offset())


@torch.no_grad()
def _score(net: ResBuilderTrainer, data: TrainingData) -> dict:
    """Validation loss and accuracy of the trainer's current module."""
    net.module_.eval()
    logits = torch.cat([net.infer(xb) for xb, _ in
                        TensorBatches(Dataset(data.X_valid, None), batch_size=512)])
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
