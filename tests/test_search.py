"""The search loop: random in, greedy out, MorphNet to the budget.

Most tests replace :func:`sklearn_resbuilder.search.train_variants` with a fake
(:class:`FakeTrainer`) that returns the network unchanged (or changed the way a
test scripts it) together with scripted scores. That makes hundreds of search
steps cost milliseconds and lets a test decide what "training" did. The few
tests that need real training (``max_time``, seed determinism, the record
format) run tiny searches on a subset of sklearn's 8x8 digits.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import signal
import re
from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sklearn_resbuilder import search as search_mod
from sklearn_resbuilder import defaults, timeplan
from sklearn_resbuilder.architecture import Architecture
from sklearn_resbuilder.search import (
    SearchCallback,
    SearchConfig,
    TqdmProgress,
    Search,
    format_record,
    run_search,
)
from sklearn_resbuilder.training import TrainConfig, TrainResult, VARIANTS
from sklearn_resbuilder.regularizers import alive_widths
from sklearn_resbuilder.training_data import TrainingData

NO_REG = ("no_reg_wi", "no_reg_ri")
SHAPE = (1, 8, 8)
MINIMAL = Architecture.minimal(SHAPE, 10)  # 3 stages (8x8, 4x4, 2x2), no blocks


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32).reshape(-1, *SHAPE)
    p = np.random.default_rng(0).permutation(len(X))
    tr, va = p[:500], p[500:700]
    return TrainingData.from_arrays(X[tr], y[tr], X[va], y[va])


# ------------------------------------------------------------------ the fake
class FakeTrainer:
    """Stands in for ``train_variants``: no training, scripted outcomes.

    Call ``i`` (== the history step it produces) returns, for every variant, a
    :class:`TrainResult` whose record has the keys the real one has. The
    With Reg module is a copy of the input, optionally changed by
    ``mutate(i, module)``; ``scores(i, arch)`` gives each variant's
    validation accuracy; ``stopped(i)`` the With Reg ``stopped`` field.
    """

    def __init__(self, scores=None, mutate=None, stopped=None, seconds=None):
        self.scores, self.mutate, self.stopped = scores, mutate, stopped
        self.seconds = seconds  # seconds(arch): the reported seconds of each training
        self.calls = []  # architecture trained at each call
        self.variants = []  # variants asked for at each call
        self.spent = []  # the time plan's modelled seconds after each call (with one)
        self.max_epochs = []  # config.max_epochs of each call

    def __call__(self, module, data, config, *, seed=0, variants=VARIANTS, plan=None):
        i = len(self.calls)
        arch = module.architecture
        self.calls.append(arch)
        self.max_epochs.append(config.max_epochs)
        wr = copy.deepcopy(module)
        if self.mutate is not None:
            with torch.no_grad():
                self.mutate(i, wr)
        accs = self.scores(i, arch) if self.scores else {v: 0.5 for v in VARIANTS}
        out = {}
        self.variants.append(tuple(variants))
        for v in variants:
            epochs = 1
            if plan is not None:  # one epoch if the plan has time for it, as train_one
                slot = plan.training(lambda: plan.epoch_seconds(
                    arch, len(data.y_train), len(data.y_valid), config.batch_size),
                    config.max_epochs)
                epochs = min(1, slot.limit)
                slot.finish(epochs)
                if v == "no_reg_ri" and not epochs:
                    continue
            record = {"valid_accuracy": float(accs[v]), "valid_loss": 1.0 - accs[v],
                      "train_loss": 1.0, "epochs": epochs,
                      "stopped": None if epochs else "max_time",
                      "seconds": self.seconds(arch) if self.seconds else 0.0}
            mod = wr if v != "no_reg_ri" else copy.deepcopy(module)
            out[v] = TrainResult(mod, record)
        if self.stopped is not None:
            out["with_reg"].record["stopped"] = self.stopped(i)
        self.spent.append(None if plan is None else plan.spent)
        return out


@pytest.fixture
def fake(monkeypatch):
    """Install a FakeTrainer; tests configure it through its attributes."""
    f = FakeTrainer()
    monkeypatch.setattr(search_mod, "train_variants", f)
    return f


def config(**kw):
    train = kw.pop("train", None) or TrainConfig(max_epochs=1, augment=False)
    kw.setdefault("flop_budget", 2e5)
    kw.setdefault("n_insertions", 2)
    kw.setdefault("n_morph_steps", 1)
    # The fake does not train: a validation check of removals would measure
    # random networks. These tests pin the score rule; the check has its own.
    kw.setdefault("check_removals", False)
    return SearchConfig(train=train, **kw)


def arch_of(record) -> Architecture:
    return Architecture.from_dict(record["architecture"])


def parent_of(history, i) -> dict:
    """The record the search continued from at step ``i``: the last one before
    it that did not collapse."""
    return next(r for r in reversed(history[:i]) if not r["collapsed"])


def strip_seconds(x):
    """``x`` without any 'seconds' entry, recursively (wall times differ)."""
    if isinstance(x, dict):
        return {k: strip_seconds(v) for k, v in x.items() if k != "seconds"}
    if isinstance(x, list):
        return [strip_seconds(v) for v in x]
    return x


# --------------------------------------------------------- insertion positions
@pytest.mark.parametrize("start", [
    MINIMAL,
    MINIMAL.insert_block(0, 0).insert_block(1, 0).insert_block(2, 0),
], ids=["minimal", "one-block-per-stage"])
def test_insertion_positions_uniform_over_stages(fake, digits, start):
    """Random in (§3.3): a uniform stage, then a uniform position in it;
    position 0 (directly after the stem/pooling) allowed, never outside the
    stage (before the stem or after the head)."""
    s = Search(start, digits, config(), seed=0, callbacks=())
    start_net = s.current
    n = 300
    stages, positions = Counter(), Counter()
    for _ in range(n):
        s.current, s.visited = start_net, set()  # every draw from `start`
        assert s.insert()
        rec = s.history[-1]
        assert rec["operation"] == "insert"
        stage, pos = rec["inserted_at"]
        assert 0 <= stage < start.n_stages
        assert 0 <= pos <= len(start.stages[stage].blocks)
        new = arch_of(rec)
        assert new == start.insert_block(stage, pos)
        assert new.stem == start.stem and new.head == start.head
        assert new.n_stages == start.n_stages and new.n_blocks == start.n_blocks + 1
        stages[stage] += 1
        positions[(stage, pos)] += 1
    assert len(fake.calls) == n
    expected = n / start.n_stages
    for st in range(start.n_stages):
        assert 0.20 * n <= stages[st] <= 0.47 * n, stages
    chi2 = sum((stages[st] - expected) ** 2 / expected for st in range(start.n_stages))
    assert chi2 < 13.8, stages  # p = 0.001 for 2 degrees of freedom
    # Directly after the pooling layers (and after the stem) is drawn.
    for st in range(start.n_stages):
        assert positions[(st, 0)] > 0, positions
    if start.n_blocks:
        # With one block per stage, "after it" is drawn too, about half the time.
        for st in range(start.n_stages):
            share = positions[(st, 1)] / stages[st]
            assert 0.25 <= share <= 0.75, positions


def test_insertions_continue_from_the_current_architecture(fake, digits):
    fake.scores = lambda i, arch: {v: 0.5 for v in VARIANTS}
    res = run_search(MINIMAL, digits, config(n_insertions=3, n_morph_steps=2), seed=1)
    inserts = [i for i, r in enumerate(res.history) if r["operation"] == "insert"]
    assert len(inserts) == 6
    for i in inserts:
        rec = res.history[i]
        parent = arch_of(parent_of(res.history, i))
        stage, pos = rec["inserted_at"]
        assert 0 <= pos <= len(parent.stages[stage].blocks)
        assert arch_of(rec) == parent.insert_block(stage, pos)


# -------------------------------------------------------------------- removal
def _kill_inserted_block(i, module):
    """'Training' drove the fresh block's last BN to zero (gamma and beta).

    A freshly inserted block is recognisable by its tiny last-BN gamma
    (INSERT_GAMMA ~1e-2); trained blocks here keep gamma 1.
    """
    for _, blk in module.blocks():
        if blk.bn2.weight.abs().max() < 0.05:
            blk.bn2.weight.zero_()
            blk.bn2.bias.zero_()


def test_greedy_out_removes_a_dead_block(fake, digits):
    start = MINIMAL.insert_block(1, 0)  # an existing, healthy block
    fake.mutate = _kill_inserted_block
    res = run_search(start, digits, config(n_insertions=1, n_morph_steps=1), seed=0)
    ops = [r["operation"] for r in res.history]
    assert ops == ["start", "insert", "remove", "morph"]
    ins, rem, morph = res.history[1:]
    assert rem["removed_blocks"] == [ins["inserted_at"]]
    # Only the dead block went: the healthy one stays.
    assert arch_of(rem) == start
    assert rem["n_blocks"] == start.n_blocks == ins["n_blocks"] - 1
    assert morph["n_blocks"] == start.n_blocks
    assert ins["removed_blocks"] == [] and morph["removed_blocks"] == []


def test_healthy_blocks_are_not_removed(fake, digits, monkeypatch):
    """Negative control: an inserted block that keeps its (small, non-zero)
    gamma scores above tau_Lambda and stays (and no MorphNet step trades
    blocks for width here)."""
    monkeypatch.setattr(search_mod.defaults, "MIN_MORPH_WIDTH", 1)
    res = run_search(MINIMAL, digits, config(n_insertions=2, n_morph_steps=2), seed=0)
    assert "remove" not in [r["operation"] for r in res.history]
    assert res.history[-1]["n_blocks"] == 4


# ------------------------------------------------------------ width step
@pytest.mark.parametrize("multiple", [1, 8])
@pytest.mark.parametrize("budget, grows", [(1.2e5, False), (3e6, True)])
def test_morph_step_hits_the_budget(fake, digits, budget, grows, multiple):
    res = run_search(MINIMAL, digits, config(flop_budget=budget, n_insertions=1,
                                             n_morph_steps=1, width_multiple=multiple), seed=0)
    ins, morph = res.history[-2], res.history[-1]
    assert ins["operation"] == "insert" and morph["operation"] == "morph"
    before, after = arch_of(ins), arch_of(morph)
    omega = morph["omega"]
    assert isinstance(omega, float) and omega > 0
    assert morph["flops"] == after.flops() <= budget
    # Everything is alive under the fake, so the new widths are omega * old ...
    assert after == before.scaled(omega, multiple)
    # ... with omega the largest feasible one (bisection tolerance 1e-4).
    assert before.scaled(omega * (1 + 3e-4), multiple).flops() > budget
    widths = after.group_widths() + [m for ms in after.block_widths() for m in ms]
    assert all(w % multiple == 0 for w in widths if w >= 4 * multiple)
    if multiple == 1:
        # The exact widths are not all multiples of 8: rounding is not a no-op here.
        assert any(w % 8 for w in widths)
    if grows:
        assert omega > 1
        assert after.stem.width > before.stem.width
        assert all(a.width > b.width for a, b in zip(after.stages, before.stages))
    else:
        assert omega < 1
        assert after.stem.width < before.stem.width
    assert all(r["omega"] is None for r in res.history[:-1])


def test_start_above_budget_ends_with_a_morph_step(fake, digits):
    budget = 1e4
    assert MINIMAL.flops() > budget
    res = run_search(MINIMAL, digits, config(flop_budget=budget, n_morph_steps=0), seed=0)
    assert [r["operation"] for r in res.history] == ["start", "morph"]
    assert not res.history[0]["within_budget"]
    assert res.history[1]["flops"] <= budget
    assert res.best_step == 1
    assert res.best_architecture.flops() <= budget
    assert res.best_architecture == arch_of(res.history[1])
    assert res.best_module.architecture == res.best_architecture


def test_morph_removed_blocks_name_distinct_blocks_of_the_parent(fake, digits):
    """A morph step that drops a dead block (mid width 0) *and* has to drop
    another one to fit the budget records both in the parent's indexing.

    Start: two blocks in stage 0; block (0, 0)'s first BN dies, so the morph
    step removes it; at flop_budget 2000 even the narrowest net with the other
    block (3,536 FLOPs) is too big, so that one (originally (0, 1)) goes too.
    """
    start = MINIMAL.insert_block(0, 0).insert_block(0, 0)
    assert start.remove_blocks([(0, 0)]).scaled(1e-9).flops() > 2000
    assert MINIMAL.scaled(1e-9).flops() <= 2000

    def kill_mid(i, module):
        if i == 0:
            module.block(0, 0).bn1.weight.zero_()
    fake.mutate = kill_mid
    res = run_search(start, digits, config(flop_budget=2000, n_morph_steps=0), seed=0)
    parent, morph = res.history
    assert morph["operation"] == "morph" and morph["flops"] <= 2000
    assert morph["n_blocks"] == 0
    removed = [tuple(b) for b in morph["removed_blocks"]]
    # Each removed block is named once, by its index in the parent architecture.
    assert sorted(removed) == [(0, 0), (0, 1)], removed


def test_start_within_budget_gets_no_extra_morph(fake, digits):
    res = run_search(MINIMAL, digits, config(flop_budget=1e6, n_morph_steps=0), seed=0)
    assert [r["operation"] for r in res.history] == ["start"]
    assert res.best_step == 0


# ------------------------------------------------------------- no revisit
@pytest.mark.parametrize("kill", [False, True], ids=["growing", "every-insert-removed"])
def test_insertions_never_revisit(fake, digits, kill):
    start = MINIMAL.insert_block(0, 0).insert_block(1, 0).insert_block(2, 0)
    if kill:
        # Greedy out undoes every insertion, so the search keeps drawing from
        # the same 6 insertions of `start`: repeats are likely without the check.
        fake.mutate = _kill_inserted_block
    res = run_search(start, digits, config(flop_budget=3e6, n_insertions=5,
                                           n_morph_steps=2), seed=0)
    seen = []
    n_inserts = 0
    for r in res.history:
        if r["operation"] == "insert":
            n_inserts += 1
            assert r["architecture"] not in seen
        seen.append(r["architecture"])
    # Growing: every insertion finds a new architecture. Removed: equal-width
    # blocks make positions 0 and 1 of a stage the same spec, so only 3 of the
    # 6 draws per architecture are new; the rest are refused (insert -> False).
    assert n_inserts == 10 if not kill else n_inserts >= 4
    assert ("remove" in [r["operation"] for r in res.history]) == kill


def test_insert_skips_visited_architectures(fake, digits):
    for seed in range(8):
        s = Search(MINIMAL, digits, config(), seed=seed, callbacks=())
        s.visited = {MINIMAL.insert_block(0, 0), MINIMAL.insert_block(2, 0)}
        assert s.insert()
        assert s.history[-1]["inserted_at"] == [1, 0]


def test_insert_gives_up_when_every_insertion_was_visited(fake, digits):
    s = Search(MINIMAL, digits, config(max_redraws=5), seed=0, callbacks=())
    s.visited = {MINIMAL.insert_block(st, 0) for st in range(MINIMAL.n_stages)}
    current = s.current
    assert s.insert() is False
    assert fake.calls == [] and s.history == []
    assert s.current is current


# ------------------------------------------------------------ best selection
def _scripted_scores(budget):
    """With Reg always 1.0 and over-budget No Reg 1.0: traps the selection
    must not fall into. In-budget No Reg scores are coarse, so ties occur."""
    def scores(i, arch):
        if arch.flops() > budget:
            return {v: 1.0 for v in VARIANTS}
        return {"with_reg": 1.0,
                "no_reg_wi": [0.6, 0.8][i % 2],
                "no_reg_ri": 0.8 if i % 3 == 0 else 0.7}
    return scores


def _expected_best(history, budget, n_valid=200):
    """The documented rule on the whole list: of the No Reg trainings within
    the budget whose accuracy is within one SE of the best, the one with the
    most parameters (then FLOPs, the higher accuracy, the earlier)."""
    cands = [(r["scores"][v]["valid_accuracy"], r["flops"], r["n_params"], r["step"])
             for r in history
             if r["flops"] <= budget and not r["collapsed"] and r.get("reused_from") is None
             for v in NO_REG if v in r["scores"]]
    top = max(c[0] for c in cands)
    floor = top - (top * (1 - top) / n_valid) ** 0.5
    acc, flops, _, _ = max((c for c in cands if c[0] >= floor),
                           key=lambda c: (c[2], c[1], c[0], -c[3]))
    return acc, flops


def test_best_is_the_top_no_reg_score_within_budget(fake, digits):
    budget = 1e5
    fake.scores = _scripted_scores(budget)
    res = run_search(MINIMAL, digits, config(flop_budget=budget, n_insertions=3,
                                             n_morph_steps=2), seed=0)
    h = res.history
    assert any(r["flops"] > budget for r in h), "the trap needs an over-budget record"
    best = h[res.best_step]
    assert best["flops"] <= budget and best["within_budget"]
    assert res.best_variant in NO_REG
    acc, flops = _expected_best(h, budget)
    assert res.best_score == acc == best["scores"][res.best_variant]["valid_accuracy"]
    assert best["flops"] == flops
    assert res.best_architecture == arch_of(best) == res.best_module.architecture
    assert res.best_architecture.flops() <= budget


def test_best_ties_go_to_more_parameters(fake, digits):
    budget = 1e5
    # Every in-budget No Reg scores 0.7 except the start (0.5), which is the
    # smallest net, so the tie is between bigger nets of different sizes.
    def scores(i, arch):
        if arch.flops() > budget:
            return {v: 1.0 for v in VARIANTS}
        return {"with_reg": 1.0, "no_reg_wi": 0.5 if i == 0 else 0.7,
                "no_reg_ri": 0.5 if i == 0 else 0.7}
    fake.scores = scores
    res = run_search(MINIMAL, digits, config(flop_budget=budget, n_insertions=3,
                                             n_morph_steps=2), seed=0)
    tied = [r for r in res.history[1:] if r["flops"] <= budget]
    assert len({r["n_params"] for r in tied}) >= 2, "the test needs a tie between sizes"
    assert res.best_score == 0.7
    assert res.history[res.best_step]["n_params"] == max(r["n_params"] for r in tied)


# ------------------------------------------------------------------ collapse
def _zero_stream_gammas(i, module):
    if i == 1:  # the first insertion
        module.stem.bn.weight.zero_()
        for _, blk in module.blocks():
            blk.bn2.weight.zero_()


@pytest.mark.parametrize("mode", ["dead_stream", "diverged"])
def test_collapse_rolls_back_and_is_never_best(fake, digits, mode):
    if mode == "dead_stream":
        fake.mutate = _zero_stream_gammas
    else:
        fake.stopped = lambda i: "diverged: non-finite training loss in epoch 1" if i == 1 else None
    # The collapsed record would be the best by far if it were eligible.
    fake.scores = lambda i, arch: {v: 1.0 if i == 1 else 0.5 for v in VARIANTS}
    res = run_search(MINIMAL, digits, config(flop_budget=1e6, n_insertions=2,
                                             n_morph_steps=1), seed=0)
    h = res.history
    assert h[1]["operation"] == "insert"
    assert h[1]["collapsed"]
    if mode == "diverged":
        assert h[1]["collapsed"].startswith("diverged")
    assert all(not r["collapsed"] for i, r in enumerate(h) if i != 1)
    # No greedy-out after the collapse; the next insertion starts from the start net.
    assert h[2]["operation"] == "insert"
    assert h[2]["n_blocks"] == 1
    assert arch_of(h[2]) == MINIMAL.insert_block(*h[2]["inserted_at"])
    assert h[2]["architecture"] != h[1]["architecture"]
    # The With Reg network that was trained at step 2 is the pre-collapse one plus a block.
    assert fake.calls[2] == MINIMAL.insert_block(*h[2]["inserted_at"])
    assert res.best_step != 1
    assert res.best_score == 0.5
    assert "COLLAPSED" in format_record(h[1])


# ---------------------------------------------------------------- callbacks
class Recorder(SearchCallback):
    def __init__(self):
        self.events = []

    def on_search_begin(self, total):
        self.events.append(("begin", total))

    def on_record(self, record):
        self.events.append(("record", record))

    def on_search_end(self, result):
        self.events.append(("end", result))


def test_callbacks(fake, digits):
    rec, buf = Recorder(), io.StringIO()
    cfg = config(n_insertions=2, n_morph_steps=1)
    res = run_search(MINIMAL, digits, cfg, seed=0, callbacks=[rec, TqdmProgress(file=buf)])
    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "begin" and kinds[-1] == "end"
    assert kinds.count("begin") == 1 and kinds.count("end") == 1
    assert rec.events[0][1] == 1 + cfg.n_morph_steps * (cfg.n_insertions + 1)
    records = [e[1] for e in rec.events if e[0] == "record"]
    assert len(records) == len(res.history) >= 4
    assert all(a is b for a, b in zip(records, res.history))
    assert rec.events[-1][1] is res
    lines = [ln.strip() for ln in re.split(r"[\r\n]", buf.getvalue())]
    step_lines = [ln for ln in lines if ln.startswith("step ")]
    assert step_lines == [format_record(r) for r in res.history]


# ----------------------------------------------------------- real trainings
def _tiny(**kw):
    train = TrainConfig(max_epochs=1, augment="shift", batch_size=128)
    return SearchConfig(flop_budget=2e5, n_insertions=1, n_morph_steps=1, train=train, **kw)


@pytest.fixture(scope="module")
def real_run(digits):
    return run_search(MINIMAL, digits, _tiny(), seed=0)


HISTORY_KEYS = {"step", "operation", "architecture", "n_blocks", "flops", "n_params", "omega",
                "removed_blocks", "seconds", "scores"}
SCORE_KEYS = {"valid_accuracy", "train_loss", "valid_loss", "epochs", "seconds"}


def test_history_records_are_json_and_complete(real_run):
    h = real_run.history
    assert [r["operation"] for r in h][:2] == ["start", "insert"]
    assert h[-1]["operation"] == "morph"
    text = json.dumps(h, allow_nan=False)
    assert json.loads(text) == h
    for i, r in enumerate(h):
        assert HISTORY_KEYS <= set(r), HISTORY_KEYS - set(r)
        assert r["step"] == i
        assert r["operation"] in ("start", "insert", "remove", "morph")
        arch = arch_of(r)
        assert r["n_blocks"] == arch.n_blocks
        assert r["flops"] == arch.flops() and r["n_params"] == arch.n_params()
        assert isinstance(r["removed_blocks"], list)
        assert r["seconds"] >= 0
        assert (r["omega"] is None) == (r["operation"] != "morph")
        # No Reg only where it can be chosen (within budget); No Reg RI is opt-in.
        expected = {"with_reg", "no_reg_wi"} if r["within_budget"] else {"with_reg"}
        assert set(r["scores"]) == expected
        for v, sc in r["scores"].items():
            assert SCORE_KEYS <= set(sc), (v, SCORE_KEYS - set(sc))
            assert 0.0 <= sc["valid_accuracy"] <= 1.0
            assert sc["epochs"] == 1
    assert real_run.best_variant in NO_REG
    assert h[real_run.best_step]["flops"] <= 2e5
    assert real_run.best_module.architecture == real_run.best_architecture


def test_same_seed_same_history(digits, real_run):
    again = run_search(MINIMAL, digits, _tiny(), seed=0)
    other = run_search(MINIMAL, digits, _tiny(), seed=1)
    ref = strip_seconds(real_run.history)
    assert strip_seconds(again.history) == ref
    assert (again.best_step, again.best_variant, again.best_score) == \
        (real_run.best_step, real_run.best_variant, real_run.best_score)
    assert strip_seconds(other.history) != ref


def test_max_time_stops_early_and_keeps_records(digits):
    cfg = SearchConfig(flop_budget=2e5, max_time=0.5,
                       train=TrainConfig(max_epochs=20, augment=False))  # n_M=7, n_Lambda=4
    planned = 1 + cfg.n_morph_steps * (cfg.n_insertions + 1)
    res = run_search(MINIMAL, digits, cfg, seed=0)
    assert res.stopped == "max_time"
    assert 1 <= len(res.history) < planned
    assert res.history[0]["operation"] == "start"
    for r in res.history:
        # No Reg RI is left out once the deadline has passed (it would be
        # scored untrained); the other two are always there.
        assert {"with_reg", "no_reg_wi"} <= set(r["scores"]) <= set(VARIANTS)
    # Nothing is started after the deadline. Only the last record's With Reg
    # training can have been cut inside its first epoch (it began before the
    # deadline); every earlier one ran at least one whole epoch.
    for r in res.history[:-1]:
        assert r["scores"]["with_reg"]["epochs"] >= 1
    last = res.history[-1]["scores"]["with_reg"]
    assert last["epochs"] >= 1 or last["stopped"] == "max_time"
    assert res.best_step is not None and res.best_variant in NO_REG


# ------------------------------------------- no training that cannot finish
@pytest.fixture
def clock(monkeypatch, fake):
    """The time plan's step times made so that one epoch of an architecture
    costs exactly ``fake.seconds(arch)`` modelled seconds (what each fake
    training reports), and timing itself costs nothing: the plan's spent
    time is then the sum of the fake trainings' seconds."""
    monkeypatch.setattr(timeplan, "TIMING_STEPS", 0)

    def step(arch, data, cfg):
        per_epoch = (math.ceil(len(data.y_train) / cfg.batch_size)
                     + timeplan.EVAL_SHARE * len(data.y_valid) / cfg.batch_size)
        return fake.seconds(arch) / per_epoch

    monkeypatch.setattr(search_mod, "step_seconds", step)
    return fake


def _trained(s, arch, epochs, **extra):
    s.history.append(dict({"architecture": arch.to_dict(), "reused_from": None, "scores": {
        "with_reg": {"epochs": epochs, "seconds": 99.0, "stopped": None}}}, **extra))


def test_training_seconds_model_each_shape_from_its_timed_step(digits, monkeypatch):
    probed = []
    monkeypatch.setattr(search_mod, "step_seconds",
                        lambda arch, data, cfg: probed.append(arch) or 0.05)
    A, B, C, D = (MINIMAL, MINIMAL.insert_block(2, 0), MINIMAL.insert_block(1, 0),
                  MINIMAL.insert_block(0, 0))
    s = Search(MINIMAL, digits, config(max_time=1e6), 0, [])
    tr, va, bs = len(s.data.y_train), len(s.data.y_valid), s.train_config.batch_size
    per_epoch = 0.05 * (math.ceil(tr / bs) + timeplan.EVAL_SHARE * va / bs)
    assert s.training_seconds(D, 2) is None  # nothing finished yet
    assert probed == []
    # The start's 4 epochs times D's 0.05 s step over the batches of an
    # epoch; the wall seconds the records hold play no part.
    _trained(s, A, 4)
    assert s.training_seconds(D, 2) == pytest.approx(2 * 4 * per_epoch)
    assert probed == [D]
    _trained(s, B, 4)  # median of (4, 4)
    assert s.training_seconds(D, 2) == pytest.approx(2 * 4 * per_epoch)
    _trained(s, C, 3)  # median of (4, 4, 3): still 4
    assert s.training_seconds(D, 2) == pytest.approx(2 * 4 * per_epoch)
    assert probed == [D]  # timed once per architecture
    # Revisits and trainings cut by the time say nothing about epochs.
    _trained(s, D, 1, reused_from=0)
    _trained(s, MINIMAL.insert_block(0, 0).insert_block(0, 0), 1)
    s.history[-1]["scores"]["with_reg"]["stopped"] = "max_time"
    assert s.training_seconds(D, 2) == pytest.approx(2 * 4 * per_epoch)
    # The plan charged D's timing once (TIMING_STEPS steps), nothing else.
    assert s.time_plan.spent == pytest.approx(timeplan.TIMING_STEPS * 0.05)


def test_step_seconds_times_a_training_step_without_touching_global_state(digits):
    from sklearn_resbuilder.training import step_seconds

    state = torch.random.get_rng_state()
    small = step_seconds(MINIMAL, digits, TrainConfig())
    large = step_seconds(MINIMAL.insert_block(0, 0).scaled(4), digits, TrainConfig())
    assert torch.equal(torch.random.get_rng_state(), state)
    assert 0 < small < 1.0 and 0 < large < 5.0
    assert large > small  # 64-wide block at 8x8 vs no block at all (~480x the FLOPs)


def test_step_seconds_times_the_precision_the_trainer_uses(digits, monkeypatch):
    """Under ``mixed_precision`` the timed step's forward runs in bfloat16,
    as the trainer's does: the time estimates scale from the right speed."""
    from sklearn_resbuilder import network, training

    dtypes = []
    real = network.ResBuilderNet

    def hooked(*args, **kwargs):
        net = real(*args, **kwargs)
        net.head.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
        return net

    monkeypatch.setattr(training, "ResBuilderNet", hooked)
    training.step_seconds(MINIMAL, digits, TrainConfig(mixed_precision=True), steps=1, warmup=0)
    training.step_seconds(MINIMAL, digits, TrainConfig(), steps=1, warmup=0)
    assert dtypes == [torch.bfloat16, torch.float32]


def _costs(history):
    """Seconds each record's trainings reported."""
    return [sum(v["seconds"] for v in r["scores"].values()) if r["reused_from"] is None else 0.0
            for r in history]


def _deadline_run(digits, T=None, **kw):
    """The fake search with ``max_time=T`` (blocks never deleted), and its
    trained operations."""
    res = run_search(MINIMAL, digits, config(max_time=T, lasso_threshold=0.0, **kw), seed=0)
    return res, [r["operation"] for r in res.history if r["reused_from"] is None]


def _until(full, n_trained):
    """Seconds the first ``n_trained`` trained records of ``full`` took."""
    return sum(_costs([r for r in full.history if r["reused_from"] is None][:n_trained]))


def test_a_first_insertion_over_the_budget_that_cannot_finish_is_not_trained(fake, clock,
                                                                             digits):
    # At 5e4 FLOPs every block inserted into the 19,712-FLOP start is over the
    # budget: it can only be chosen after a MorphNet step. With time for the
    # start and one second more, neither fits. Judged by the start's epochs,
    # the insertion is left out and the search ends, instead of training an
    # insertion the time cuts short (what a small budget's fit spent a
    # quarter of its time on).
    fake.seconds = lambda arch: arch.flops() * 1e-3
    full, _ = _deadline_run(digits, flop_budget=5e4)
    T = _until(full, 1) + 1.0
    res, trained = _deadline_run(digits, T, flop_budget=5e4)
    assert trained == ["start"]
    assert [k["operation"] for k in res.skipped] == ["insert"]
    assert res.skipped[0]["estimated_seconds"] > res.skipped[0]["seconds_left"]
    assert res.stopped == "max_time" and res.best_step == 0


def test_an_insertion_that_cannot_finish_ends_the_search(fake, clock, digits):
    # 1 ms per FLOP and epoch. Time for the start net, the first insertion
    # (trained: within the budget, it fits by itself) and one second more:
    # the next insertion cannot finish, nor can a MorphNet step instead.
    fake.seconds = lambda arch: arch.flops() * 1e-3
    full, _ = _deadline_run(digits)  # no max_time: the whole plan
    assert full.skipped == [] and full.stopped is None
    T = _until(full, 2) + 1.0

    class Seen(SearchCallback):
        skips = []

        def on_skip(self, skipped):
            self.skips.append(skipped)

    buf = io.StringIO()
    res = run_search(MINIMAL, digits, config(max_time=T, lasso_threshold=0.0), seed=0,
                     callbacks=[Seen(), TqdmProgress(file=buf)])
    trained = [r["operation"] for r in res.history if r["reused_from"] is None]
    assert trained == ["start", "insert"]
    assert [k["operation"] for k in res.skipped] == ["insert"]
    assert all(k["estimated_seconds"] > k["seconds_left"] for k in res.skipped)
    assert Seen.skips == res.skipped
    assert re.findall(r"skipped (\w+): ~\d+ s of training", buf.getvalue()) == ["insert"]
    assert fake.spent[-1] <= T  # every training ended within the plan's time
    assert res.stopped == "max_time"
    assert res.best_step is not None  # what the refit gets the time for


@pytest.mark.parametrize("n_timed, spare, trained, skipped", [
    # Time for the start, the first insertion and 201 s: the second insertion
    # would leave too little for its MorphNet step, so the rest of the cycle
    # is skipped and the step (of the network as it is) is trained.
    (2, 201.0, ["start", "insert", "morph"], ["insert"]),
    # Time for the start, both insertions and 1 s: no MorphNet step fits, so
    # the second insertion (within the budget, a candidate by itself) is
    # trained, and the MorphNet step after it is left out.
    (3, 1.0, ["start", "insert", "insert"], ["morph"]),
], ids=["insertion-skipped-for-the-morph-step", "morph-step-left-out"])
def test_insertions_leave_time_for_their_morph_step(fake, clock, digits, n_timed, spare,
                                                    trained, skipped):
    # Budget 2e6, 50 us per FLOP and epoch: a MorphNet step costs about
    # 2 x 100 s, an insertion 2 x 3-30 s.
    fake.seconds = lambda arch: arch.flops() * 5e-5
    full, _ = _deadline_run(digits, flop_budget=2e6)
    T = _until(full, n_timed) + spare
    res, ops = _deadline_run(digits, T, flop_budget=2e6)
    assert ops == trained
    assert [k["operation"] for k in res.skipped] == skipped
    assert all(k["estimated_seconds"] > k["seconds_left"] for k in res.skipped)
    assert fake.spent[-1] <= T  # every training ended within the plan's time
    assert res.history[-1]["within_budget"]
    assert res.stopped == "max_time"  # the plan was cut to fit


def test_the_next_fit_goes_on_from_the_first_operation_the_plan_left_out(fake, clock, digits,
                                                                         tmp_path):
    # As in insertion-skipped-for-the-morph-step: the first fit skips the
    # second insertion and trains the MorphNet step instead. The checkpoint
    # it leaves is the state before the skip, so the next fit (a max_time of
    # its own) trains the skipped insertion and ends as an uninterrupted run.
    from sklearn_resbuilder.checkpoint import SearchCheckpoint

    fake.seconds = lambda arch: arch.flops() * 5e-5
    full, full_ops = _deadline_run(digits, flop_budget=2e6)
    T = _until(full, 2) + 201.0
    ckpt = SearchCheckpoint(tmp_path, {"data": "d", "params": {}})
    first = run_search(MINIMAL, digits, config(max_time=T, lasso_threshold=0.0,
                                               flop_budget=2e6), seed=0, checkpoint=ckpt)
    assert [k["operation"] for k in first.skipped] == ["insert"]
    state = ckpt.load()
    assert state["call_ended"] is True and state["skipped"] == []
    assert len(state["history"]) == first.skipped[0]["step"] < len(first.history)
    # Later checkpoints of the first fit were dropped: the rewound one is the newest.
    assert [p.name for p in ckpt.files()][-1] == f"search-{len(state['history']):04d}.ckpt"
    second = run_search(MINIMAL, digits, config(max_time=1e9, lasso_threshold=0.0,
                                                flop_budget=2e6), seed=0, checkpoint=ckpt,
                        resume=state)
    assert second.stopped is None and second.skipped == []
    assert [r["architecture"] for r in second.history] == [r["architecture"]
                                                           for r in full.history]
    assert [r["operation"] for r in second.history if r["reused_from"] is None] == full_ops


# ------------------------------------------------------------------ Ctrl-C
@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler, also when the test run was started in the
    background (a shell's ``&`` hands children SIGINT ignored: then a Ctrl-C
    rightly does nothing, and these tests could not tell)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_ends_the_search_and_keeps_finished_work(digits, monkeypatch, python_sigint):
    """skorch's partial_fit swallows KeyboardInterrupt; train_one passes a user's
    Ctrl-C on, and the search stops with every finished record and a result."""
    from sklearn_resbuilder import callbacks

    calls = {"n": 0}
    real = callbacks.PlanStop.on_epoch_end

    def interrupt_in_fifth_training(self, net, **kwargs):
        real(self, net, **kwargs)
        if net.history[-1, "epoch"] == 1:
            calls["n"] += 1
            if calls["n"] == 5:  # during the 2nd architecture's 2nd variant
                os.kill(os.getpid(), signal.SIGINT)  # a user's Ctrl-C

    monkeypatch.setattr(callbacks.PlanStop, "on_epoch_end", interrupt_in_fifth_training)
    res = run_search(MINIMAL, digits, _tiny(), seed=0)
    assert res.stopped == "interrupted"
    assert len(res.history) >= 1 and res.history[0]["operation"] == "start"
    assert calls["n"] == 5  # nothing trained on after the interrupt but the final fit-to-budget
    assert res.best_module is not None
    assert res.best_architecture.flops() <= _tiny().flop_budget


def test_ctrl_c_before_anything_finished_propagates(digits, monkeypatch, python_sigint):
    from sklearn_resbuilder import callbacks

    def interrupt(self, net, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(callbacks.PlanStop, "on_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_search(MINIMAL, digits, _tiny(), seed=0)


def test_out_of_memory_batch_size_stays_halved_for_the_rest_of_the_search(digits,
                                                                           monkeypatch):
    from sklearn_resbuilder.trainer import ResBuilderTrainer

    real = ResBuilderTrainer.train_step

    def step(self, batch, **kw):
        if len(batch[0]) > 64:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(self, batch, **kw)

    monkeypatch.setattr(ResBuilderTrainer, "train_step", step)
    cfg = config(n_insertions=1, n_morph_steps=1,
                 train=TrainConfig(max_epochs=1, augment=False, batch_size=128))
    with pytest.warns(UserWarning, match="out of memory") as warned:
        res = run_search(MINIMAL, digits, cfg, seed=0)
    assert len(warned) == 1  # discovered once, then remembered
    sizes = {s["batch_size"] for r in res.history for s in r["scores"].values()}
    assert sizes == {64} and len(res.history) >= 3


# --------------------------------------------------- no training that cannot matter
def test_no_reg_only_within_budget_and_fresh_init_opt_in(fake, digits):
    # A budget the insertions exceed: the start fits, the inserted nets do not.
    budget = MINIMAL.insert_block(0, 0).flops() - 1
    run_search(MINIMAL, digits, config(flop_budget=budget, n_insertions=2), seed=0)
    arches = fake.calls
    assert any(a.flops() > budget for a in arches) and any(a.flops() <= budget for a in arches)
    for arch, variants in zip(arches, fake.variants):
        assert variants == (("with_reg", "no_reg_wi") if arch.flops() <= budget
                            else ("with_reg",)), arch.summary()
    fresh = FakeTrainer()
    search_mod.train_variants = fresh  # the monkeypatch fixture restores it
    run_search(MINIMAL, digits, config(flop_budget=budget, retrain_fresh=True), seed=0)
    assert ("with_reg", "no_reg_wi", "no_reg_ri") in fresh.variants


def test_revisited_architecture_is_reused_not_trained(fake, digits):
    """Insert, then greedy out deletes the new block: the network is the one
    before the insertion again, which is not trained a second time."""
    start = MINIMAL.insert_block(1, 0)
    fake.mutate = _kill_inserted_block
    # Exact widths: rounded to multiples of 8, the MorphNet step would land on
    # the start net too (also reused, but then this test cannot tell which).
    res = run_search(start, digits, config(n_insertions=1, n_morph_steps=1, width_multiple=1),
                     seed=0)
    start_rec, ins, rem, morph = res.history
    assert rem["operation"] == "remove" and arch_of(rem) == arch_of(start_rec)
    assert rem["reused_from"] == 0 and rem["scores"] == start_rec["scores"]
    assert len(fake.calls) == 3  # start, insert, morph: the removal trained nothing
    assert ins["reused_from"] is None and morph["reused_from"] is None


def test_selection_prefers_the_larger_network_within_one_standard_error(fake, digits):
    """200 validation images: SE of 0.9 is 0.021. A bigger net 0.01 worse is
    chosen over the smaller one (the split cannot tell them apart); 0.05
    worse is not."""
    n_valid = len(digits.y_valid)
    assert search_mod.selection_se(0.9, n_valid) == pytest.approx(0.0212, abs=1e-3)
    for loss, bigger_wins in ((0.01, True), (0.05, False)):
        f = FakeTrainer(scores=lambda i, arch, g=loss: {
            v: 0.9 - (g if arch.n_blocks else 0.0) for v in VARIANTS})
        search_mod.train_variants = f
        res = run_search(MINIMAL, digits, config(n_insertions=1, n_morph_steps=1,
                                                 flop_budget=1e7), seed=0)
        assert (res.best_architecture.n_blocks == 1) == bigger_wins, loss


# ------------------------------------------------ greedy out that reads the data
def _trained_two_block_net(data, seed=0):
    from sklearn_resbuilder.network import ResBuilderNet
    from sklearn_resbuilder.training import train_one

    arch = Architecture.minimal(data.X_train.shape[1:], 10, width=8)
    arch = arch.insert_block(0, 0).insert_block(1, 0)
    net = ResBuilderNet(arch, generator=torch.Generator().manual_seed(seed))
    cfg = TrainConfig(max_epochs=6, augment=False, morph_strength=0, lasso_strength=0)
    return train_one(net, data, cfg, regularized=False, seed=seed).module


@pytest.mark.parametrize("scale", [1, 3, 14], ids=["8x8", "24x24", "112x112"])
def test_removal_check_deletes_an_unused_block_and_keeps_a_useful_one(digits, scale):
    """A block whose branch the data barely uses (its gate scaled to 2 %, a
    score well above tau_Lambda = 1e-3, so the paper's rule keeps it) goes;
    a trained, used block stays; at every image size alike."""
    up = lambda x: x.repeat_interleave(scale, 2).repeat_interleave(scale, 3)  # noqa: E731
    data = TrainingData(up(digits.X_train), digits.y_train, up(digits.X_valid),
                        digits.y_valid, digits.mean, digits.std)
    net = _trained_two_block_net(data)
    with torch.no_grad():
        unused = net.block(1, 0).bn2
        unused.weight.mul_(0.02)
        unused.bias.clamp_(max=0)
    scores = search_mod.block_scores(net)
    assert scores[(1, 0)] > 1e-3 and scores[(0, 0)] > 1e-3

    def losses(n):
        logits = search_mod.valid_logits(n, data, "cpu")
        return torch.nn.functional.cross_entropy(logits, data.y_valid, reduction="none")

    _, paper_rule = search_mod._confirmed_removals(net, losses, 1e-3, check=False)
    assert paper_rule == []
    left, removed = search_mod._confirmed_removals(net, losses, 1e-3)
    assert removed == [(1, 0)]
    assert left.architecture == net.architecture.remove_blocks([(1, 0)])


# ------------------------------------------------------------ several starts
PYRAMID = Architecture.pyramid(SHAPE, 10)


@pytest.mark.parametrize("better", [0, 1], ids=["first-start-better", "second-start-better"])
def test_several_starts_each_train_and_the_search_goes_on_from_the_best(fake, digits, better):
    fake.scores = lambda i, arch: {v: 0.9 if i == better else 0.6 for v in VARIANTS}
    res = run_search([MINIMAL, PYRAMID], digits, config(flop_budget=1e6, n_insertions=1,
                                                         n_morph_steps=1), seed=0)
    h = res.history
    assert [r["operation"] for r in h[:3]] == ["start", "start", "insert"]
    assert [arch_of(r) for r in h[:2]] == [MINIMAL, PYRAMID]
    # The insertion is a block added to the better start, trained from its weights.
    assert arch_of(h[2]) == [MINIMAL, PYRAMID][better].insert_block(*h[2]["inserted_at"])
    # Both starts were candidates: the better one, the most accurate by far, is chosen.
    assert res.best_step == better


def test_a_collapsed_start_hands_the_search_to_the_other(fake, digits):
    def kill_first(i, module):
        if i == 0:
            module.stem.bn.weight.zero_()

    fake.mutate = kill_first
    fake.scores = lambda i, arch: {v: 1.0 if i == 0 else 0.5 for v in VARIANTS}
    res = run_search([MINIMAL, PYRAMID], digits, config(flop_budget=1e6, n_insertions=1,
                                                         n_morph_steps=1), seed=0)
    h = res.history
    assert h[0]["collapsed"] and not h[1]["collapsed"]
    assert res.stopped is None
    assert arch_of(h[2]) == PYRAMID.insert_block(*h[2]["inserted_at"])
    assert res.best_step != 0


def test_every_start_collapsed_stops_the_search(fake, digits):
    fake.stopped = lambda i: "diverged: non-finite training loss in epoch 1"
    res = run_search([MINIMAL, PYRAMID], digits, config(flop_budget=1e6), seed=0)
    # Both starts trained; then nothing was: the search stopped there.
    assert [r["operation"] for r in res.history[:3]] == ["start", "start", "morph"]
    assert res.stopped == "collapsed at start" and res.best_step is None


def test_a_second_start_the_plan_has_no_time_for_is_left_out(fake, clock, digits):
    fake.seconds = lambda arch: 10.0
    # Time for the first start's two trainings and a little: not for the second's.
    res = run_search([MINIMAL, PYRAMID], digits, config(flop_budget=1e6, max_time=25.0), seed=0)
    assert [r["operation"] for r in res.history] == ["start"]
    assert [k["operation"] for k in res.skipped] == ["start"]
    assert res.stopped == "max_time" and res.best_step == 0


def test_starts_of_other_data_shapes_are_refused(digits):
    with pytest.raises(ValueError, match="differ in input shape"):
        run_search([MINIMAL, Architecture.minimal((1, 16, 16), 10)], digits, config())
    with pytest.raises(ValueError, match="non-empty sequence"):
        run_search([], digits, config())


@pytest.mark.parametrize("weakest", [0, 1])
def test_a_morph_step_too_narrow_drops_the_weakest_blocks_for_width(fake, digits, monkeypatch,
                                                                      weakest):
    """With MIN_MORPH_WIDTH = 8, a MorphNet step that would leave the widest
    stream at 6 channels (two blocks at 8x8 and one at 2x2, budget 2e5)
    drops the lowest-scoring block instead and gets 8 channels; the removed
    block is named in the parent's indexing. With 1 (never) the blocks stay."""
    start = MINIMAL.insert_block(0, 0).insert_block(0, 0).insert_block(2, 0)

    def weaken(i, module):
        if module.architecture == start:  # a gate of 0.05: above tau_Lambda, the lowest
            module.block(0, weakest).bn2.weight.fill_(0.05)
            module.block(0, weakest).bn2.bias.zero_()
    fake.mutate = weaken
    monkeypatch.setattr(search_mod.defaults, "MIN_MORPH_WIDTH", 1)
    res = run_search(start, digits, config(flop_budget=2e5, n_morph_steps=0), seed=0)
    deep = arch_of(res.history[-1])
    assert deep.n_blocks == 3 and max(deep.group_widths()) == 6
    monkeypatch.setattr(search_mod.defaults, "MIN_MORPH_WIDTH", 8)
    res = run_search(start, digits, config(flop_budget=2e5, n_morph_steps=0), seed=0)
    morph = res.history[-1]
    wide = arch_of(morph)
    assert morph["operation"] == "morph" and morph["flops"] <= 2e5
    assert wide.n_blocks == 2 and max(wide.group_widths()) == 8
    assert [tuple(b) for b in morph["removed_blocks"]] == [(0, weakest)]


@pytest.mark.parametrize("mode", ["dead_stream", "diverged"])
def test_a_recovered_no_reg_training_of_a_collapsed_record_stays_a_candidate(fake, digits,
                                                                             mode):
    """The With Reg training of step 1 collapses. No Reg WI starts from its
    dead stream and is not a candidate; No Reg RI (a fresh, healthy network
    of the same architecture) is, and scores best, so it is chosen, while
    the search goes on from the start net. After a divergence neither is."""
    if mode == "dead_stream":
        fake.mutate = _zero_stream_gammas
    else:
        fake.stopped = lambda i: "diverged: non-finite training loss in epoch 1" if i == 1 else None
    fake.scores = lambda i, arch: {v: 1.0 if i == 1 else 0.5 for v in VARIANTS}
    res = run_search(MINIMAL, digits, config(flop_budget=1e6, n_insertions=2, n_morph_steps=1,
                                             retrain_fresh=True), seed=0)
    h = res.history
    assert h[1]["collapsed"] and h[2]["n_blocks"] == 1  # rolled back to the start net
    if mode == "dead_stream":
        assert h[1]["candidates"] == ["no_reg_ri"]
        assert (res.best_step, res.best_variant, res.best_score) == (1, "no_reg_ri", 1.0)
    else:
        assert h[1]["candidates"] == []
        assert res.best_step != 1
    assert all(r["candidates"] == ["no_reg_wi", "no_reg_ri"] for r in h if not r["collapsed"]
               and r["within_budget"] and r.get("reused_from") is None)
    # a plain history list gets the same star
    from sklearn_resbuilder.plotting import _best_of
    assert _best_of(h, [r["within_budget"] for r in h]) == (res.best_step, res.best_variant)


def test_auto_epochs_fit_the_plan_and_survive_a_resume(fake, clock, digits, tmp_path,
                                                        monkeypatch):
    # "auto": every planned training (4 architectures x 2 variants) of the
    # start scaled to the budget fits the search's time; the checkpoint keeps
    # the number, so a resumed fit with another max_time trains alike.
    from sklearn_resbuilder.checkpoint import SearchCheckpoint
    from sklearn_resbuilder.flops import largest_omega

    steps = defaults.AUTO_MIN_STEPS
    monkeypatch.setattr(defaults, "AUTO_MIN_STEPS", 1)  # the time decides (the floor: below)

    fake.seconds = lambda arch: arch.flops() * 1e-5
    auto = TrainConfig(max_epochs="auto", augment=False)
    at_budget = largest_omega(MINIMAL, 2e5)[1]
    T = 7.5 * 8 * fake.seconds(at_budget)
    ckpt = SearchCheckpoint(tmp_path, {"data": "d", "params": {}})
    res = run_search(MINIMAL, digits, config(max_time=T, train=auto), seed=0, checkpoint=ckpt)
    assert res.max_epochs == 7
    assert set(fake.max_epochs) == {7}
    state = ckpt.load()
    assert state["max_epochs"] == 7
    fake.max_epochs.clear()
    again = run_search(MINIMAL, digits, config(max_time=1e9, train=auto), seed=0,
                       checkpoint=ckpt, resume=state)
    assert again.max_epochs == 7 and set(fake.max_epochs) <= {7}
    # At least AUTO_MIN_STEPS optimizer steps however short the time; without
    # max_time the paper's 20.
    monkeypatch.setattr(defaults, "AUTO_MIN_STEPS", steps)
    per_epoch = math.ceil(len(digits.y_train) / auto.batch_size)
    assert run_search(MINIMAL, digits, config(max_time=1e-3, train=auto),
                      seed=0).max_epochs == math.ceil(steps / per_epoch) > 20
    assert run_search(MINIMAL, digits, config(train=auto), seed=0).max_epochs == 20


def test_a_morph_step_that_removes_the_blocks_carrying_a_stream_never_becomes_current(fake,
                                                                                   digits):
    # The stream is alive only through a block whose middle is dead (the
    # stem's channels shrunk away): the MorphNet step removes that block, so
    # its network's stream is dead. Trained, that is a collapse; revisited
    # (the same step again), it must not become the network the search goes
    # on from, or the next step has no width to keep.
    s = Search(MINIMAL.insert_block(0, 0), digits, config(flop_budget=1e5), seed=0,
               callbacks=())
    with torch.no_grad():
        s.current.stem.bn.weight.zero_()
        (_, blk), = s.current.blocks()
        blk.bn1.weight.zero_()
        blk.bn2.weight.fill_(1.0)
    carrier = s.current
    for _ in range(3):
        s.morph()
        assert s.current is carrier
        assert min(alive_widths(s.current, s.train_config.gamma_threshold)[0]) > 0
    trained, *revisits = s.history
    assert trained["collapsed"] and trained["reused_from"] is None
    assert revisits and all(r["collapsed"] and r["reused_from"] == trained["step"]
                            for r in revisits)


def test_a_within_budget_net_keeps_its_floor_share_instead_of_collapsing(digits, monkeypatch):
    # MorphNet at 1e4 x its default kills the 16-wide start's stream within
    # its first epochs (a collapse); with the floor, the training stops
    # shrinking at MORPH_FLOOR_SHARE of the network's FLOPs and stays alive.
    from sklearn_resbuilder.regularizers import morphnet_penalty

    train = TrainConfig(max_epochs=6, augment=False, morph_strength=1e-3)
    cfg = config(flop_budget=1e6, n_insertions=0, n_morph_steps=0, train=train)
    ends = {}
    for share in (0.0, defaults.MORPH_FLOOR_SHARE):
        monkeypatch.setattr(defaults, "MORPH_FLOOR_SHARE", share)
        s = Search(MINIMAL, digits, cfg, seed=0, callbacks=())
        s.run()
        ends[share] = s.history[0]["collapsed"], s.current
    assert ends[0.0][0] and "stream" in ends[0.0][0]
    collapsed, net = ends[defaults.MORPH_FLOOR_SHARE]
    assert collapsed is None
    alive_cost = morphnet_penalty(net, train.gamma_threshold)[1]
    assert defaults.MORPH_FLOOR_SHARE * MINIMAL.flops() <= alive_cost < MINIMAL.flops()
