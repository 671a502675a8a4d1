"""FLOP accounting: the spec's count against ``torch.utils.flop_counter``, and the omega search."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from sklearn_resbuilder import Architecture, Stage, Stem
from sklearn_resbuilder.flops import conv_flops, dense_flops, largest_omega, torch_flops


def _counted(module, x):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return int(counter.get_total_flops())


# ------------------------------------------------------ hand-computed values
def test_conv_flops_by_hand():
    # 3x3 kernel, 4x5 output, 2 -> 7 channels: 2 * 9 * 20 * 2 * 7
    assert conv_flops(3, 4, 5, 2, 7) == 5040
    assert conv_flops(1, 1, 1, 1, 1) == 2
    conv = torch.nn.Conv2d(2, 7, 3, padding=1, bias=False)
    assert _counted(conv, torch.zeros(1, 2, 4, 5)) == 5040


def test_dense_flops_by_hand():
    # 784 inputs -> 10 outputs: 2 * 784 * 10 (bias add not counted)
    assert dense_flops(784, 10) == 15680
    assert _counted(torch.nn.Linear(784, 10), torch.zeros(1, 784)) == 15680


def test_minimal_by_hand():
    # stem 3x3, 1 -> 16 channels at 28x28, then dense 16*7*7 -> 10
    arch = Architecture.minimal((1, 28, 28), 10)
    assert arch.flops() == 2 * 9 * 28 * 28 * 1 * 16 + 2 * 16 * 7 * 7 * 10 == 241472


# ------------------------------------------------- spec count == torch count
PRESET_SHAPES = [(1, 8, 8), (3, 8, 8), (1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32)]


@pytest.mark.parametrize("shape", PRESET_SHAPES)
@pytest.mark.parametrize("preset", ["minimal", "resnet18"])
def test_presets_match_torch_counter(preset, shape):
    arch = getattr(Architecture, preset)(shape, 10)
    assert arch.flops() == torch_flops(arch.build(), arch.input_shape)


def test_imagenet_stem_matches_torch_counter():
    arch = Architecture.resnet18((3, 96, 96), 10).scaled(0.25)
    assert (arch.stem.kernel, arch.stem.stride, arch.stem.pool) == (7, 2, True)
    assert arch.flops() == torch_flops(arch.build(), arch.input_shape)


def test_torch_flops_restores_mode():
    net = Architecture.minimal((1, 8, 8), 3).build()
    net.train()
    torch_flops(net, (1, 8, 8))
    assert net.training
    net.eval()
    torch_flops(net, (1, 8, 8))
    assert not net.training


@st.composite
def architectures(draw):
    """Valid random specs (invalid draws are filtered by ``assume``)."""
    c = draw(st.integers(1, 3))
    h = draw(st.integers(4, 40))
    w = draw(st.integers(4, 40))
    kernel = draw(st.sampled_from([1, 3, 5]))
    stride = draw(st.integers(1, 2))
    pool = draw(st.booleans())
    # Stages that fit: each pooling halves the stem's output size.
    sh, sw = (h - 1) // stride + 1, (w - 1) // stride + 1
    if pool:
        sh, sw = sh // 2, sw // 2
    assume(min(sh, sw) >= 1)
    max_stages = min(4, 1 + int(math.log2(min(sh, sw))))
    n_stages = draw(st.integers(1, max_stages))
    stem_width = draw(st.integers(1, 12))
    stages, prev = [], stem_width
    for s in range(n_stages):
        transition = s > 0 and draw(st.booleans())
        width = draw(st.integers(1, 12)) if transition else prev
        blocks = tuple(draw(st.lists(st.integers(1, 12), min_size=0, max_size=3)))
        stages.append(Stage(width, blocks, transition))
        prev = width
    head = draw(st.sampled_from(["flatten", "avg"]))
    n_classes = draw(st.integers(1, 12))
    try:
        return Architecture((c, h, w), n_classes, Stem(kernel, stem_width, stride, pool),
                            tuple(stages), head)
    except ValueError:  # pragma: no cover - the strategy only draws valid specs
        assume(False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=architectures())
def test_random_architectures_match_torch_counter(arch):
    net = arch.build()
    assert arch.flops() == torch_flops(net, arch.input_shape)
    assert arch.n_params() == sum(p.numel() for p in net.parameters())
    # The spec's geometry is the module's: logits for a batch of 2.
    with torch.no_grad():
        out = net.eval()(torch.zeros(2, *arch.input_shape))
    assert out.shape == (2, arch.n_classes)


# ------------------------------------------------------------ largest_omega
@pytest.mark.parametrize("arch, budget", [
    (Architecture.resnet18((1, 28, 28), 10), 1e8),
    (Architecture.resnet18((3, 32, 32), 10), 3e7),
    (Architecture.minimal((1, 28, 28), 10, width=64).insert_block(0, 0).insert_block(2, 0), 1e7),
], ids=["resnet18-28", "resnet18-32", "minimal-64"])
def test_largest_omega_is_largest(arch, budget):
    omega, scaled = largest_omega(arch, budget)
    assert scaled == arch.scaled(omega)
    assert scaled.flops() <= budget
    # Same depth: a width step never removes a block.
    assert scaled.n_blocks == arch.n_blocks
    # 1 % more exceeds the budget unless rounding leaves every width unchanged.
    up = arch.scaled(omega * 1.01)
    if up != scaled:
        assert up.flops() > budget
    # These nets are wide enough that 5 % more always changes some width.
    assert arch.scaled(omega * 1.05).flops() > budget
    # All three start nets exceed their budget, so the step narrows them.
    assert omega < 1


def test_largest_omega_grows_narrow_nets():
    arch = Architecture.minimal((1, 28, 28), 10, width=4)
    omega, scaled = largest_omega(arch, 1e7)
    assert omega > 1
    assert scaled.group_widths()[0] > 4
    assert scaled.flops() <= 1e7 < arch.scaled(omega * 1.05).flops()


def test_largest_omega_whole_budget_fits():
    arch = Architecture.minimal((1, 8, 8), 2, width=1)
    omega, scaled = largest_omega(arch, 1e18, max_width=64)
    assert scaled.group_widths() == [64]
    assert scaled.flops() <= 1e18


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=architectures(), frac=st.floats(0.0, 1.0))
def test_largest_omega_property(arch, frac):
    lo = arch.scaled(1e-9).flops()
    budget = lo * (1 + 100 * frac)
    omega, scaled = largest_omega(arch, budget)
    assert scaled.flops() <= budget
    up = arch.scaled(omega * 1.01)
    if up != scaled:
        assert up.flops() > budget


def test_largest_omega_below_narrowest_raises():
    arch = Architecture.resnet18((1, 28, 28), 10)
    narrowest = arch.scaled(1e-9).flops()
    with pytest.raises(ValueError, match="narrowest"):
        largest_omega(arch, narrowest - 1)
    omega, scaled = largest_omega(arch, narrowest)
    assert scaled.flops() == narrowest


@pytest.mark.parametrize("budget", [0, -1, -1e8, float("nan")])
def test_largest_omega_nonpositive_budget_raises(budget):
    with pytest.raises(ValueError, match="budget must be > 0"):
        largest_omega(Architecture.minimal((1, 28, 28), 10), budget)
