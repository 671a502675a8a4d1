"""The candidate pool: the No Reg networks within the budget that a search
may return, and the rule that chooses among them (docs/algorithm.md,
deviation 1)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

@dataclass
class Candidate:
    """A No Reg network within the budget that the search may return."""

    accuracy: float  # validation accuracy
    flops: int
    params: int  # trainable parameters
    step: int
    variant: str
    module: object = field(repr=False, default=None)


def select(candidates, n_valid: int):
    """The search's choice: the most parameters within one SE of the best accuracy.

    Let ``a*`` be the best validation accuracy; the candidates with accuracy
    ``>= a* - selection_se(a*, n_valid)`` are the ones the split cannot tell
    from the best, and of those the one with the most parameters wins (then
    the most FLOPs, the higher accuracy, the earlier step): the split cannot
    rank them, and the refit trains the winner far longer than the search
    did (docs/algorithm.md, deviation 1). None for no candidates.
    """
    if not candidates:
        return None
    top = max(c.accuracy for c in candidates)
    floor = top - selection_se(top, n_valid)
    return max((c for c in candidates if c.accuracy >= floor), key=_preference)


def _preference(c: Candidate) -> tuple:
    """The order :func:`select` prefers among the candidates within one SE."""
    return (c.params, c.flops, c.accuracy, -c.step)


def prune(candidates, n_valid: int) -> list:
    """The candidates :func:`select` can still choose once more arrive.

    A candidate below one SE of the best can never be chosen again (the best
    only rises, and above 50 % accuracy so does ``best - SE``); nor can one
    that another candidate at least as accurate is preferred to (it is
    eligible whenever the first one is, and wins). What is left is a short
    Pareto front, so keeping its networks costs little memory.
    """
    if not candidates:
        return []
    top = max(c.accuracy for c in candidates)
    floor = top - selection_se(top, n_valid)
    keep = []
    for i, c in enumerate(candidates):
        if c.accuracy < floor:
            continue
        dominated = any(d.accuracy >= c.accuracy and _preference(d) > _preference(c)
                        for d in candidates if d is not c)
        if not dominated:
            keep.append(c)
    return keep


def selection_se(accuracy: float, n_valid: int) -> float:
    """Standard error of a validation accuracy on ``n_valid`` images (binomial)."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(n_valid, 1))


class CandidatePool:
    """The candidates a search can still choose, pruned as they arrive.

    Parameters
    ----------
    n_valid : int
        Validation images the accuracies were measured on (sets the SE).
    """

    def __init__(self, n_valid: int, candidates=()):
        self.n_valid = n_valid
        self.candidates: list[Candidate] = list(candidates)

    def __len__(self) -> int:
        return len(self.candidates)

    def __iter__(self):
        return iter(self.candidates)

    def offer(self, accuracy: float, flops: int, params: int, step: int, variant: str,
              module) -> None:
        """Add a trained No Reg network (a copy of ``module`` is kept)."""
        new = Candidate(accuracy, flops, params, step, variant, copy.deepcopy(module))
        self.candidates = prune(self.candidates + [new], self.n_valid)

    @property
    def best(self) -> Candidate | None:
        """The candidate :func:`select` chooses now, or None."""
        return select(self.candidates, self.n_valid)
