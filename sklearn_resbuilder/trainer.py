"""The skorch trainer of a ResBuilder network: ResBuilder's loss (paper eq. 5)
with the penalties applied by a proximal step, and batches scaled,
standardised and augmented on the training device."""

from __future__ import annotations

import torch
from skorch import NeuralNetClassifier
from torch import nn

from .inference import bf16_autocast, prepare_batch
from .defaults import GAMMA_THRESHOLD
from . import defaults
from .regularizers import penalty_value, proximal_step


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
    flop_floor : float
        MorphNet's pressure pauses while the alive channels cost at most this
        many FLOPs (0: never): an over-budget network shrinks to the budget,
        not past it (docs/algorithm.md, deviation 23).
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

    def __init__(self, module, *, morph_strength=0.0, lasso_strength=0.0, gamma_threshold=GAMMA_THRESHOLD,
                 flop_floor=0.0, input_mean=None, input_std=None, augment=None, mixed_precision=False,
                 channels_last=False, **kwargs):
        # Set before skorch's __init__: afterwards skorch refuses plain attributes
        # holding torch modules (the augmentation is a v2.Transform).
        self.morph_strength = morph_strength
        self.lasso_strength = lasso_strength
        self.gamma_threshold = gamma_threshold
        self.flop_floor = flop_floor
        self.input_mean = input_mean
        self.input_std = input_std
        self.augment = augment
        self.mixed_precision = mixed_precision
        self.channels_last = channels_last
        kwargs.setdefault("criterion", nn.CrossEntropyLoss)
        kwargs.setdefault("optimizer", torch.optim.Adam)
        super().__init__(module, **kwargs)

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        """A training begins without a stop reason (the stop callbacks set one)."""
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.stop_reason_ = None

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """CE, plus in training the value of eq. 5's penalty terms.

        The penalties are added as a constant (no gradient): Adam would
        normalise their gradient away (docs/architecture.md §5.6), so they act through
        :meth:`train_step`'s proximal update instead. The reported training
        loss is still the whole of eq. 5 (with the size scale of
        :func:`~sklearn_resbuilder.regularizers.penalty_scale`).
        """
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if training and (self.morph_strength or self.lasso_strength):
            with torch.no_grad():
                penalty = penalty_value(self.module_, self.morph_strength,
                                        self.lasso_strength, self.gamma_threshold,
                                        self.flop_floor)
            loss = loss + penalty
        return loss

    def train_step(self, batch, **fit_params):
        """skorch's step (Adam on the CE), then the penalties' proximal step."""
        step = super().train_step(batch, **fit_params)
        if self.morph_strength or self.lasso_strength:
            lr = self.optimizer_.param_groups[0]["lr"]
            proximal_step(self.module_, defaults.PROXIMAL_LR_RATIO * lr, self.morph_strength,
                          self.lasso_strength, self.gamma_threshold, self.flop_floor)
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
