"""The search's history records: one documented type, read by the search, the
estimator (``history_``), plotting and persistence.

Records are plain JSON-serialisable dicts (they are saved with the model and
in checkpoints, and users read ``history_`` as dicts); these ``TypedDict``
types say which keys they hold. Keys marked ``NotRequired`` are absent from
records written by 0.1.0, and readers use ``.get`` for them.
"""

from __future__ import annotations

import math
import sys
from typing import TypedDict

if sys.version_info >= (3, 11):
    from typing import NotRequired
else:  # pragma: no cover - Python 3.10
    from typing_extensions import NotRequired

from .architecture import Architecture

#: The operations of the paper's Fig. 3 a record can come from.
OPERATIONS = ("start", "insert", "remove", "morph")
#: The trainings of one architecture (paper §4.1): With Reg drives the search,
#: No Reg WI (warm init) and No Reg RI (random init) are the candidates.
VARIANTS = ("with_reg", "no_reg_wi", "no_reg_ri")
NO_REG = VARIANTS[1:]


class ScoreRecord(TypedDict):
    """One training of one variant (``"with_reg"``, ``"no_reg_wi"``, ``"no_reg_ri"``)."""

    valid_accuracy: float | None  # on the validation split, at the best epoch
    valid_loss: float | None
    train_loss: float | None  # None: no epoch finished
    best_epoch: int  # the epoch whose weights were kept (early stopping)
    epochs: int  # epochs run
    n_valid: int  # validation images (the selection's standard error is of these)
    stopped: str | None  # why it ended early: "early_stopping", "max_time", "diverged ..."
    batch_size: int  # after any out-of-memory halving
    seconds: float  # wall seconds
    planned_seconds: NotRequired[float]  # the time plan's modelled seconds (max_time)


class SearchRecord(TypedDict):
    """One architecture the search visited (an element of ``history_``)."""

    step: int  # index in the history
    operation: str  # one of OPERATIONS
    architecture: dict  # Architecture.to_dict()
    n_blocks: int
    flops: int  # per image, forward pass
    n_params: int
    within_budget: bool  # flops <= flop_budget
    omega: float | None  # the MorphNet step's width factor
    removed_blocks: list  # [stage, index] of the blocks removed on the way here
    inserted_at: list | None  # [stage, position] of the block "random in" inserted
    collapsed: str | None  # why its training collapsed (not a candidate), or None
    reused_from: int | None  # the step that trained this architecture before, or None
    seconds: float  # wall seconds of the step
    scores: dict[str, ScoreRecord]  # per variant trained
    augment: NotRequired[dict]  # the start record only, with augment="auto"
    refit: NotRequired[dict]  # the chosen record only: the estimator's refit_ record


def new_record(step: int, operation: str, arch: Architecture, flop_budget: float, *,
               omega=None, removed=(), inserted=None) -> SearchRecord:
    """The record of visiting ``arch``, before any training (no scores yet)."""
    flops = arch.flops()
    return {
        "step": step,
        "operation": operation,
        "architecture": arch.to_dict(),
        "n_blocks": arch.n_blocks,
        "flops": flops,
        "n_params": arch.n_params(),
        "within_budget": flops <= flop_budget,
        "omega": omega,
        "removed_blocks": [list(b) for b in removed],
        "inserted_at": list(inserted) if inserted is not None else None,
        "collapsed": None,
        "reused_from": None,
        "seconds": 0.0,
        "scores": {},
    }


def score_record(record: dict) -> ScoreRecord:
    """A training's record for JSON: NaN and infinities become None."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()}
