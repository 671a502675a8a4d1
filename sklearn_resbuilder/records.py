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
    """One training of one variant (``"with_reg"``, ``"no_reg_wi"``, ``"no_reg_ri"``).

    Attributes
    ----------
    valid_accuracy, valid_loss : float or None
        On the validation split, at the best epoch (the weights kept).
    train_loss : float or None
        Of that epoch; None when no epoch finished.
    best_epoch : int
        The epoch whose weights early stopping kept.
    epochs : int
        Epochs run.
    n_valid : int
        Validation images (the selection's standard error is of these).
    stopped : str or None
        Why it ended before ``max_epochs``: ``"early_stopping"``,
        ``"max_time"``, ``"hard stop"``, ``"diverged ..."``.
    batch_size : int
        After any out-of-memory halving.
    seconds : float
        Wall seconds.
    planned_seconds : float, optional
        The time plan's modelled seconds (with ``max_time`` or ``plan``).
    """

    valid_accuracy: float | None
    valid_loss: float | None
    train_loss: float | None
    best_epoch: int
    epochs: int
    n_valid: int
    stopped: str | None
    batch_size: int
    seconds: float
    planned_seconds: NotRequired[float]


class SearchRecord(TypedDict):
    """One architecture the search visited (an element of ``history_``).

    Attributes
    ----------
    step : int
        Its index in the history.
    operation : {"start", "insert", "remove", "morph"}
        The operation of the paper's Fig. 3 that led here.
    architecture : dict
        ``Architecture.to_dict()``.
    n_blocks, flops, n_params : int
        Residual blocks, FLOPs per image (forward pass), parameters.
    within_budget : bool
        ``flops <= flop_budget``: only these are candidates.
    omega : float or None
        The MorphNet step's width factor.
    removed_blocks : list of [stage, index]
        Blocks removed on the way here (greedy out, or dead at a MorphNet step).
    inserted_at : [stage, position] or None
        Where random in inserted a block.
    collapsed : str or None
        Why its With Reg training collapsed (the search then goes on from the
        network before).
    candidates : list of str
        The No Reg variants the search may return (within the budget, trained
        to a finite score with every stream alive; none after a divergence).
        Absent in older histories and in revisits (not trained).
    reused_from : int or None
        The step that trained this architecture before (not trained again).
    seconds : float
        Wall seconds of the step.
    scores : dict of str to ScoreRecord
        Per variant trained.
    augment : dict, optional
        The start record only, with ``augment="auto"``: the flip check and the choice.
    refit : dict, optional
        The chosen record only: the estimator's ``refit_`` record.
    """

    step: int
    operation: str
    architecture: dict
    n_blocks: int
    flops: int
    n_params: int
    within_budget: bool
    omega: float | None
    removed_blocks: list
    inserted_at: list | None
    collapsed: str | None
    candidates: NotRequired[list]
    reused_from: int | None
    seconds: float
    scores: dict[str, ScoreRecord]
    augment: NotRequired[dict]
    refit: NotRequired[dict]


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
