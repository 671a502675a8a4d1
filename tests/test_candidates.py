"""The candidate pool and the selection rule (docs/algorithm.md, deviation 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sklearn_resbuilder.candidates import Candidate, CandidatePool, prune, select, selection_se


def _cand(acc, flops, step, params=None):
    return Candidate(acc, flops, flops if params is None else params, step, "no_reg_wi",
                     module=None)


def test_select_takes_the_largest_network_the_split_cannot_tell_from_the_best():
    """n_valid = 100: SE at 0.95 is 0.022. 0.94 with 1,800 parameters ties the
    best 0.95 with 560, so the bigger one is chosen; 0.90 with 2,000 is > 1 SE
    worse and is not."""
    cands = [_cand(0.95, 56_000, 1, 560), _cand(0.94, 180_000, 3, 1_800),
             _cand(0.90, 200_000, 4, 2_000)]
    assert select(cands, 100).step == 3
    # the same three judged on 10,000 images (SE 0.002): only the best is eligible
    assert select(cands, 10_000).step == 1
    # equal parameters: the most FLOPs, then the higher accuracy, then the earlier step
    assert select([_cand(0.94, 8, 0, 5), _cand(0.93, 9, 1, 5)], 100).step == 1
    assert select([_cand(0.93, 9, 0), _cand(0.94, 9, 2)], 100).step == 2
    assert select([_cand(0.94, 9, 0), _cand(0.94, 9, 2)], 100).step == 0
    assert select([], 100) is None


def test_parameters_decide_before_flops():
    """A deep stack of narrow blocks (the FLOPs MorphNet leaves at a small
    budget) against a wide shallow net with fewer FLOPs but more parameters:
    within one SE the wide one is chosen, whatever the order."""
    deep_narrow = _cand(0.95, 30_000, 1, params=1_200)
    wide_shallow = _cand(0.94, 24_000, 2, params=2_900)
    assert select([deep_narrow, wide_shallow], 90) is wide_shallow
    assert select([wide_shallow, deep_narrow], 90) is wide_shallow
    # more than one SE apart (10,000 images), accuracy decides
    assert select([deep_narrow, wide_shallow], 10_000) is deep_narrow


def test_prune_keeps_exactly_what_select_can_still_choose():
    """Whatever arrives later, select(prune(pool) + later) == select(pool + later)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        pool = [_cand(float(rng.integers(80, 100)) / 100, int(rng.integers(1, 6)), i,
                      int(rng.integers(1, 4)))
                for i in range(int(rng.integers(1, 8)))]
        later = [_cand(float(rng.integers(80, 100)) / 100, int(rng.integers(1, 6)), 10 + i,
                       int(rng.integers(1, 4)))
                 for i in range(int(rng.integers(0, 4)))]
        kept = prune(pool, 90)
        assert len(kept) <= len(pool)
        assert select(kept + later, 90) == select(pool + later, 90)


def test_selection_se_is_the_binomial_standard_error():
    assert selection_se(0.9, 100) == pytest.approx(0.03)
    assert selection_se(1.0, 100) == 0.0 and selection_se(0.5, 0) == pytest.approx(0.5)


def test_the_pool_keeps_copies_and_only_what_can_still_be_chosen():
    pool = CandidatePool(n_valid=100)
    assert pool.best is None and len(pool) == 0
    module = torch.nn.Linear(2, 2)
    pool.offer(0.95, 56_000, 560, 1, "no_reg_wi", module)
    pool.offer(0.80, 90_000, 900, 2, "no_reg_wi", module)  # > 1 SE below the best: pruned
    pool.offer(0.94, 180_000, 1_800, 3, "no_reg_ri", module)
    assert [c.step for c in pool] == [1, 3]
    best = pool.best
    assert (best.step, best.variant, best.flops) == (3, "no_reg_ri", 180_000)
    assert best.module is not module  # a copy: later training does not change it
    with torch.no_grad():
        module.weight.add_(1.0)
    assert not torch.equal(best.module.weight, module.weight)
