"""The search's questions to ``max_time``: can this training finish, and what
to leave out when it cannot (docs/algorithm.md, deviation 17).

Every answer is read off the :class:`~sklearn_resbuilder.timeplan.TimePlan`'s
modelled seconds, never the wall clock, so a fixed plan gives a fixed search.
Without ``max_time`` (no plan) every training can finish.
"""

from __future__ import annotations

import math

import numpy as np

from .architecture import Architecture
from .flops import largest_omega
from .timeplan import CUT, TimePlan


class SearchTimeBudget:
    """What ``max_time`` allows one search, asked before each training.

    Parameters
    ----------
    plan : TimePlan or None
        The time plan (None: no ``max_time``).
    history : list
        The search's history records (the same list, read as it grows): the
        epochs its finished trainings ran predict the next ones'.
    n_train, n_valid : int
        Training and validation images per epoch.
    flop_budget : float
    width_multiple : int
        As the MorphNet step rounds widths (to model its network).
    """

    def __init__(self, plan: TimePlan | None, history: list, n_train: int, n_valid: int,
                 flop_budget: float, width_multiple: int):
        self.plan = plan
        self.history = history
        self.n_train, self.n_valid = n_train, n_valid
        self.flop_budget, self.width_multiple = flop_budget, width_multiple

    def out_of_time(self) -> bool:
        """Has the plan's time run out?"""
        return self.plan is not None and self.plan.left() <= 0

    def can_finish(self, seconds: float | None) -> bool:
        """Would ``seconds`` of training (an estimate, or None) fit in the plan's time left?"""
        if self.plan is None or seconds is None:
            return True
        return seconds <= self.plan.left()

    def left(self) -> float:
        """The plan's modelled seconds left."""
        return self.plan.left()

    def training_seconds(self, arch: Architecture, n_trainings: int,
                         batch_size: int) -> float | None:
        """Estimated seconds of ``n_trainings`` trainings of ``arch``.

        The plan's seconds per epoch of ``arch``
        (:meth:`~sklearn_resbuilder.timeplan.TimePlan.epoch_seconds`, from its
        timed training step) times the median epochs this search's finished
        trainings ran (early stopping ends most before ``max_epochs``). None
        until a training has finished. From the start network's alone: the
        first insertion, whose training can cost many times the start's
        (an 8x8 block at 28x28 pixels), is then judged too, instead of being
        trained whether or not it and its MorphNet step can end in time
        (docs/algorithm.md, deviation 24).
        """
        epochs, shapes = [], 0
        for r in self.history:
            if r.get("reused_from") is not None:
                continue
            done = [v["epochs"] for v in r["scores"].values()
                    if v.get("epochs") and v.get("stopped") not in CUT]
            epochs += done
            shapes += bool(done)
        if not shapes:
            return None
        per_epoch = self.plan.epoch_seconds(arch, self.n_train, self.n_valid, batch_size)
        return n_trainings * float(np.median(epochs)) * per_epoch

    def search_epochs(self, start: Architecture, n_architectures: int, batch_size: int,
                      min_steps: int, highest: int) -> int:
        """Epochs per search training that let the whole plan fit its time.

        ``n_architectures`` trainings of two variants each (With Reg and No
        Reg WI) of ``start`` scaled to the budget (the size a MorphNet step
        gives) within the plan's search seconds, at most ``highest``, but at
        least the epochs that make ``min_steps`` optimizer steps (a training
        shorter than that says little, whatever the time); ``highest``
        without a plan. Read off the plan's timed step, so a replayed plan
        gives the same number.
        """
        if self.plan is None:
            return int(highest)
        lowest = max(1, math.ceil(min_steps / math.ceil(self.n_train / batch_size)))
        try:
            per_epoch = self.plan.epoch_seconds(self.at_budget(start), self.n_train,
                                                self.n_valid, batch_size)
        except ValueError:  # a recorded plan without that shape: the start's own
            per_epoch = self.plan.epoch_seconds(start, self.n_train, self.n_valid, batch_size)
        fits = self.plan.search_seconds / max(2 * n_architectures * per_epoch, 1e-12)
        return int(max(min(math.floor(fits), highest), lowest))

    def at_budget(self, arch: Architecture) -> Architecture:
        """``arch`` scaled to the budget: a stand-in for a MorphNet step's
        network before it is known (``arch`` itself if no width fits)."""
        try:
            return largest_omega(arch, self.flop_budget, multiple=self.width_multiple)[1]
        except ValueError:
            return arch

    def insertion_skip(self, new: Architecture, n_trainings: int, current: Architecture,
                       morph_ahead: bool, batch_size: int) -> tuple[float, bool] | None:
        """None to train the insertion ``new`` (``n_trainings`` variants);
        else ``(estimate, stop)``.

        Trained if it and then this cycle's MorphNet step (two trainings of
        ``new`` scaled to the budget) both fit in the plan's time: a network
        over the budget can only be chosen after that step. Else, if the
        MorphNet step of ``current`` can still end in time, the rest of the
        cycle is skipped for it (``stop`` False); else an insertion within
        the budget (a candidate by itself) that fits is trained anyway, and
        anything else ends the search (``stop`` True).
        """
        ins = self.training_seconds(new, n_trainings, batch_size)
        then = (self.training_seconds(self.at_budget(new), 2, batch_size)
                if morph_ahead else 0.0)
        if ins is None or then is None or self.can_finish(ins + then):
            return None
        if morph_ahead:
            now = self.training_seconds(self.at_budget(current), 2, batch_size)
            if self.can_finish(now):
                return ins + then, False
        if new.flops() <= self.flop_budget and self.can_finish(ins):
            return None
        return ins + then, True

    def skipped(self, operation: str, step: int, estimate: float) -> dict:
        """The record of an operation left out (``SearchResult.skipped``)."""
        return {"operation": operation, "step": step,
                "estimated_seconds": round(estimate, 1),
                "seconds_left": round(self.plan.left(), 1)}

    def charge_eval(self, arch: Architecture, batch_size: int, passes: int = 1) -> None:
        """Count ``passes`` eval passes of ``arch`` over the validation images as spent."""
        if self.plan is not None:
            self.plan.charge(passes * self.plan.eval_seconds(arch, self.n_valid, batch_size))

    @staticmethod
    def cut_short(record: dict, expected) -> bool:
        """Did the time end a training of ``record`` (or leave out one of the
        ``expected`` variants)? A revisit never is."""
        if record.get("reused_from") is not None:
            return False
        scores = record["scores"]
        return (any(v not in scores for v in expected)
                or any(v.get("stopped") in CUT for v in scores.values()))
