"""skorch callbacks that end a training early, one per reason.

Each stops the training the way skorch's own ``EarlyStopping`` does (raising
``KeyboardInterrupt``, which ``partial_fit`` catches) and writes its reason
to ``net.stop_reason_`` (reset to None when a training begins, see
:class:`~sklearn_resbuilder.trainer.ResBuilderTrainer`):

- :class:`CollapseStop` -- "collapsed: ...": the penalties left a residual
  stream without an alive channel (the search discards such a network);
- :class:`DivergenceGuard` -- "diverged: ...": the training loss is not
  finite or exploded; the last good weights are restored;
- :class:`PlanStop` -- "max_time" or "hard stop": the time plan's epochs are
  used up, or the wall-clock safety net fired
  (:class:`~sklearn_resbuilder.timeplan.Slot`).
"""

from __future__ import annotations

import copy
import math

import torch
from skorch.callbacks import Callback

from .regularizers import alive_widths


class CollapseStop(Callback):
    """Ends a regularised training once a residual stream has no alive channel.

    Checked after every epoch, only while a penalty is on: the search rolls
    such a network back, so the rest of its training would be wasted.
    """

    def on_epoch_end(self, net, **kwargs):
        if not (net.morph_strength or net.lasso_strength):
            return
        groups, _ = alive_widths(net.module_, net.gamma_threshold)
        if min(groups) == 0:
            net.stop_reason_ = f"collapsed: a stream died in epoch {len(net.history)}"
            raise KeyboardInterrupt


class DivergenceGuard(Callback):
    """Ends a training whose loss diverges, and restores the last good weights.

    Diverging means a non-finite training loss, or ``explode_factor`` times
    the first batch's: a too large lambda or lr (the paper's Fig. 10) blows
    the loss up to 1e11 and more long before it overflows. The weights at
    the end of the last epoch with finite parameters are the good ones (at
    first, the start weights).
    """

    def __init__(self, explode_factor: float = 1e3):
        self.explode_factor = explode_factor

    def initialize(self):
        self._good = None
        self._first = None
        return self

    def on_train_begin(self, net, **kwargs):
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
        if all(torch.isfinite(p).all() for p in net.module_.parameters()):
            self._good = copy.deepcopy(net.module_.state_dict())


class PlanStop(Callback):
    """Ends a training where ``max_time``'s plan says, checked between epochs.

    ``slot`` (a :class:`~sklearn_resbuilder.timeplan.Slot`) caps the epochs
    the plan leaves this training and holds the wall-clock safety net; the
    reason is "max_time" or "hard stop". Without a slot it never stops.
    """

    def __init__(self, slot=None):
        self.slot = slot

    def on_epoch_end(self, net, **kwargs):
        if self.slot is None:
            return
        # After the last epoch the training is complete: no reason.
        reason = self.slot.stop_reason(len(net.history), net.max_epochs)
        if reason is not None:
            net.stop_reason_ = reason
            raise KeyboardInterrupt


def stop_callbacks(slot=None) -> list:
    """The three stops of every training, in the order they are checked after an epoch."""
    return [("collapse", CollapseStop()), ("divergence", DivergenceGuard()),
            ("plan", PlanStop(slot))]
