"""What max_time allows a search: the estimates and the skip rule, on a plan
whose step times are set (nothing is timed)."""

from __future__ import annotations

import pytest

from sklearn_resbuilder import Architecture, timeplan
from sklearn_resbuilder.timebudget import SearchTimeBudget
from sklearn_resbuilder.timeplan import TimePlan

MINIMAL = Architecture.minimal((1, 8, 8), 10)
N_TRAIN, N_VALID, BATCH = 256, 64, 128


def _record(arch, epochs, *, stopped=None, reused_from=None, variants=("with_reg",)):
    return {"architecture": arch.to_dict(), "reused_from": reused_from,
            "scores": {v: {"epochs": epochs, "stopped": stopped} for v in variants}}


def _budget(max_time, history, flop_budget=1e9, step=0.01):
    plan = TimePlan(max_time, timer=lambda arch, batch_size: step * arch.flops() / MINIMAL.flops())
    return SearchTimeBudget(plan, history, N_TRAIN, N_VALID, flop_budget, 1)


def _epoch(arch, step=0.01):
    return (step * arch.flops() / MINIMAL.flops()
            * (2 + timeplan.EVAL_SHARE * N_VALID / BATCH))


def test_without_max_time_everything_can_finish():
    budget = SearchTimeBudget(None, [], N_TRAIN, N_VALID, 1e6, 1)
    assert not budget.out_of_time()
    assert budget.can_finish(1e12) and budget.can_finish(None)


def test_training_seconds_are_the_median_epochs_times_the_modelled_epoch(monkeypatch):
    monkeypatch.setattr(timeplan, "TIMING_STEPS", 0)
    history = []
    budget = _budget(100.0, history)
    deeper = MINIMAL.insert_block(0, 0)
    assert budget.training_seconds(deeper, 2, BATCH) is None  # nothing finished
    history.append(_record(MINIMAL, 4))
    # From the start's epochs alone: the first insertion is judged too.
    assert budget.training_seconds(deeper, 2, BATCH) == pytest.approx(2 * 4 * _epoch(deeper))
    history.append(_record(MINIMAL.insert_block(2, 0), 6))
    history.append(_record(MINIMAL.insert_block(1, 0), 1, stopped="max_time"))  # cut: ignored
    history.append(_record(MINIMAL, 1, reused_from=0))  # a revisit: ignored
    assert budget.training_seconds(deeper, 2, BATCH) == pytest.approx(2 * 5 * _epoch(deeper))


def test_an_insertion_that_cannot_finish_skips_to_the_morph_step_or_stops(monkeypatch):
    monkeypatch.setattr(timeplan, "TIMING_STEPS", 0)
    history = [_record(MINIMAL, 4), _record(MINIMAL.insert_block(2, 0), 4)]
    deep = MINIMAL.insert_block(0, 0).insert_block(0, 0)
    cost = 4 * _epoch(deep)  # one training of `deep`
    # At this budget the morph step after the insertion trains `deep` itself
    # twice (3 x cost in all); the current network's morph step costs <= 2 x.
    flops = deep.flops()
    # Time for the insertion and the morph step after it: trained.
    roomy = _budget(10 * cost, history, flops)
    assert roomy.insertion_skip(deep, 1, MINIMAL, True, BATCH) is None
    # Not for both, but for the current network's morph step: skip the cycle.
    tight = _budget(2.5 * cost, history, flops)
    estimate, stop = tight.insertion_skip(deep, 1, MINIMAL, True, BATCH)
    assert stop is False and estimate > tight.left()
    # No morph step ahead, within the budget and it fits by itself: trained.
    assert tight.insertion_skip(deep, 1, MINIMAL, False, BATCH) is None
    # Nothing fits: stop the search.
    none = _budget(0.5 * 4 * _epoch(MINIMAL), history, flops)
    assert none.insertion_skip(deep, 1, MINIMAL, True, BATCH)[1] is True
    rec = none.skipped("insert", 7, 12.345)
    assert rec == {"operation": "insert", "step": 7, "estimated_seconds": 12.3,
                   "seconds_left": round(none.left(), 1)}


def test_cut_short_names_records_the_time_ended():
    full = _record(MINIMAL, 3, variants=("with_reg", "no_reg_wi"))
    assert not SearchTimeBudget.cut_short(full, ("with_reg", "no_reg_wi"))
    assert SearchTimeBudget.cut_short(full, ("with_reg", "no_reg_wi", "no_reg_ri"))
    assert SearchTimeBudget.cut_short(_record(MINIMAL, 1, stopped="hard stop"), ("with_reg",))
    revisit = _record(MINIMAL, 0, stopped="max_time", reused_from=0)
    assert not SearchTimeBudget.cut_short(revisit, ("with_reg", "no_reg_wi"))


def test_search_epochs_fit_every_planned_training_of_a_budget_sized_net(monkeypatch):
    monkeypatch.setattr(timeplan, "TIMING_STEPS", 0)
    budget = _budget(100.0, [], flop_budget=MINIMAL.flops())  # the start fills the budget
    per_epoch = _epoch(MINIMAL)
    # 5 architectures x 2 variants: 100 s hold floor(100 / (10 * per_epoch)) epochs each.
    fits = int(100.0 // (10 * per_epoch))
    assert 4 < fits < 500
    assert budget.search_epochs(MINIMAL, 5, BATCH, 1, 1000) == fits
    assert budget.search_epochs(MINIMAL, 5, BATCH, 1, 4) == 4  # at most `highest`
    # At least the epochs of `min_steps` optimizer steps (2 a epoch here), even above `highest`.
    assert budget.search_epochs(MINIMAL, 5000, BATCH, 6, 20) == 3
    assert budget.search_epochs(MINIMAL, 5000, BATCH, 100, 20) == 50
    # Sized by the network at the budget, not the (cheaper) start: 4x the FLOPs, 1/4 the epochs.
    wide = _budget(100.0, [], flop_budget=4 * MINIMAL.flops())
    big = wide.at_budget(MINIMAL)
    assert big.flops() > 2 * MINIMAL.flops()
    assert wide.search_epochs(MINIMAL, 5, BATCH, 1, 1000) == int(100.0 // (10 * _epoch(big)))
    assert SearchTimeBudget(None, [], N_TRAIN, N_VALID, 1e6, 1).search_epochs(
        MINIMAL, 5, BATCH, 4, 20) == 20  # no max_time: the most
