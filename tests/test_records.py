"""The history record's documented type matches what the search writes."""

from __future__ import annotations

import json
import math
import typing
from pathlib import Path

from sklearn_resbuilder import Architecture
from sklearn_resbuilder.records import (
    OPERATIONS,
    ScoreRecord,
    SearchRecord,
    new_record,
    score_record,
)

RECORDED = Path(__file__).parent / "data" / "recorded_history.json"


def _keys(td):
    hints = typing.get_type_hints(td, include_extras=True)
    optional = {k for k, h in hints.items() if typing.get_origin(h) is typing.NotRequired}
    return set(hints) - optional, set(hints)


def _check(record):
    required, allowed = _keys(SearchRecord)
    # "seconds" is stripped from the recorded file (wall time is not recorded).
    assert required - {"seconds"} <= set(record) <= allowed, set(record) ^ allowed
    assert record["operation"] in OPERATIONS
    s_required, s_allowed = _keys(ScoreRecord)
    for variant, score in record["scores"].items():
        assert variant in ("with_reg", "no_reg_wi", "no_reg_ri")
        assert s_required - {"seconds"} <= set(score) <= s_allowed, set(score) ^ s_allowed


def test_the_recorded_history_has_the_documented_keys():
    history = json.loads(RECORDED.read_text())["history"]
    assert len(history) >= 3
    for record in history:
        _check(record)


def test_a_fresh_search_writes_the_documented_keys(fitted_with_block):
    history = fitted_with_block.history_
    assert {"start", "insert"} <= {r["operation"] for r in history}
    for record in history:
        _check(record)
        assert set(record) >= _keys(SearchRecord)[0]  # with seconds
        for score in record["scores"].values():
            assert set(score) >= _keys(ScoreRecord)[0]


def test_new_record_is_json_and_scores_lose_nan():
    arch = Architecture.minimal((1, 8, 8), 3)
    rec = new_record(0, "start", arch, 1e9, removed=[(0, 1)], inserted=(1, 0))
    assert json.loads(json.dumps(rec)) == rec
    assert rec["flops"] == arch.flops() and rec["within_budget"]
    assert rec["removed_blocks"] == [[0, 1]] and rec["inserted_at"] == [1, 0]
    assert not new_record(0, "start", arch, arch.flops() - 1)["within_budget"]
    cleaned = score_record({"train_loss": math.nan, "valid_loss": math.inf, "epochs": 3})
    assert cleaned == {"train_loss": None, "valid_loss": None, "epochs": 3}
