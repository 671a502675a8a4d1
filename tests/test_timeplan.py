"""The time plan: ``max_time`` decided from timed steps, recorded in ``plan_``, replayable."""

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from sklearn_resbuilder import ResBuilderClassifier
from sklearn_resbuilder.architecture import Architecture
from sklearn_resbuilder.timeplan import TIMING_STEPS, TimePlan, check_plan
from sklearn_resbuilder.threads import in_cross_validation

KW = dict(flop_budget=2e5, augment=False, max_time=4.0, random_state=0, device="cpu",
          n_jobs=1)
A = Architecture.minimal((1, 8, 8), 10)


@pytest.fixture(scope="module")
def xy():
    X, y = load_digits(return_X_y=True)
    return X[:900], y[:900], X[900:1300], y[900:1300]


def _strip(history):
    return json.loads(json.dumps(history, default=str).replace('"seconds": ', '"s": '),
                      object_hook=lambda d: {k: v for k, v in d.items() if k != "s"})


@pytest.fixture
def busy():
    """Another process loading a core while the test runs."""
    p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield p
    p.kill()
    p.wait()


def test_replaying_a_plan_repeats_the_fit_exactly_under_load(xy, busy):
    Xtr, ytr, Xte, _ = xy
    first = ResBuilderClassifier(**KW).fit(Xtr, ytr)
    plan = first.plan_
    assert json.loads(json.dumps(plan)) == plan
    assert plan["step_seconds"] and plan["planned_seconds"] <= plan["max_time"]
    again = ResBuilderClassifier(**{**KW, "max_time": None}, plan=plan).fit(Xtr, ytr)
    assert _strip(again.history_) == _strip(first.history_)
    assert again.skipped_ == first.skipped_ and again.refit_["epochs"] == first.refit_["epochs"]
    np.testing.assert_array_equal(again.predict_proba(Xte), first.predict_proba(Xte))
    assert again.plan_["step_seconds"] == plan["step_seconds"]  # nothing timed anew


def test_each_plan_replays_its_own_model(xy, busy):
    """Idle and loaded fits may plan differently; each replays to its model."""
    Xtr, ytr, Xte, _ = xy
    loaded = ResBuilderClassifier(**KW).fit(Xtr, ytr)
    busy.kill()
    busy.wait()
    idle = ResBuilderClassifier(**KW).fit(Xtr, ytr)
    for fit in (loaded, idle):
        replay = ResBuilderClassifier(**KW, plan=fit.plan_).fit(Xtr, ytr)
        np.testing.assert_array_equal(replay.predict_proba(Xte), fit.predict_proba(Xte))


def test_plan_errors_name_the_problem(xy):
    Xtr, ytr, _, _ = xy
    with pytest.raises(ValueError, match="version"):
        ResBuilderClassifier(plan={"version": 99}).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="step_seconds"):
        check_plan({"version": 1, "max_time": 1.0, "search_seconds": 1.0,
                    "step_seconds": {"x": -1}})
    good = {"version": 1, "max_time": 5.0, "search_seconds": 2.5, "step_seconds": {}}
    with pytest.raises(ValueError, match="max_time=3.0 but the plan was made for"):
        ResBuilderClassifier(max_time=3.0, plan=good).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="holds no step time"):
        ResBuilderClassifier(**{**KW, "max_time": None}, plan=good).fit(Xtr, ytr)


def test_no_max_time_no_plan(xy):
    Xtr, ytr, _, _ = xy
    clf = ResBuilderClassifier(flop_budget=2e5, n_morph_steps=0, max_epochs=1, augment=False,
                               random_state=0).fit(Xtr, ytr)
    assert clf.plan_ is None


def test_a_shape_is_timed_and_charged_once():
    timed = []
    plan = TimePlan(100.0, 0.5, timer=lambda arch, bs: timed.append(arch) or 0.1)
    assert plan.search_seconds == 50.0
    e = plan.epoch_seconds(A, 1000, 100, 100)
    assert e == pytest.approx(0.1 * (10 + 1 / 3))
    plan.epoch_seconds(A, 1000, 100, 100)
    assert timed == [A] and plan.spent == pytest.approx(TIMING_STEPS * 0.1)
    slot = plan.training(e, 20)
    assert slot.limit == 20  # 50 s hold 47 epochs of 1.03 s: max_epochs caps
    slot.finish(7)
    assert plan.left() == pytest.approx(50 - TIMING_STEPS * 0.1 - 7 * e)
    assert plan.training(e, 100).limit == int(plan.left() // e) == 40
    replay = TimePlan(100.0, 0.5, recorded=plan.to_dict())
    assert replay.step(A, 100) == 0.1
    with pytest.raises(ValueError, match="holds no step time"):
        replay.step(A.insert_block(0, 0), 100)


def test_cross_validation_is_seen_on_the_stack():
    from sklearn.model_selection import _validation

    assert not in_cross_validation()
    seen = []

    from sklearn.base import BaseEstimator

    class Probe(BaseEstimator):
        def fit(self, X, y):
            seen.append(in_cross_validation())
            return self

        def score(self, X, y):
            return 0.0

    X = np.zeros((6, 2))
    _validation.cross_validate(Probe(), X, np.array([0, 1] * 3), cv=2)
    assert seen == [True, True]
