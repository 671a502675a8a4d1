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


def test_1d_conv_flops_by_hand():
    # 1x3 kernel, 1x40 output, 2 -> 7 channels: 2 * 3 * 40 * 2 * 7
    assert conv_flops((1, 3), 1, 40, 2, 7) == 3360 == conv_flops((3, 1), 40, 1, 2, 7)
    conv = torch.nn.Conv2d(2, 7, (1, 3), padding=(0, 1), bias=False)
    assert _counted(conv, torch.zeros(1, 2, 1, 40)) == 3360


def test_minimal_1d_by_hand():
    # stem 1x3, 1 -> 16 at length 40, three 1x2 pools to length 5, dense 16*5 -> 10
    arch = Architecture.minimal((1, 1, 40), 10)
    assert arch.flops() == 2 * 3 * 40 * 1 * 16 + 2 * 16 * 5 * 10 == 5440


SHAPES_1D_NON_SQUARE = [(1, 1, 40), (3, 1, 64), (2, 50, 1), (1, 1, 9), (1, 28, 56),
                        (1, 56, 28), (1, 27, 45), (3, 45, 27), (1, 5, 40)]


@pytest.mark.parametrize("preset, shape", [("minimal", s) for s in SHAPES_1D_NON_SQUARE]
                         # 5 px is too short for ResNet18's three poolings
                         + [("resnet18", s) for s in SHAPES_1D_NON_SQUARE if s != (1, 5, 40)])
def test_1d_and_non_square_presets_match_torch_counter(preset, shape):
    arch = getattr(Architecture, preset)(shape, 10)
    if preset == "minimal":
        arch = arch.insert_block(0, 0).insert_block(arch.n_stages - 1, 0)
    else:
        arch = arch.scaled(0.125)
    net = arch.build()
    assert arch.flops() == torch_flops(net, arch.input_shape)
    with torch.no_grad():
        assert net.eval()(torch.zeros(3, *shape)).shape == (3, 10)


@pytest.mark.parametrize("shape", [(3, 112, 112), (1, 64, 64), (3, 300, 300), (3, 64, 300),
                                   (1, 113, 57)])
def test_downsampled_start_nets_match_torch_counter(shape):
    arch = Architecture.minimal(shape, 10)
    assert arch.stem.downsample > 1
    arch = arch.insert_block(0, 0).insert_block(2, 0)
    net = arch.build()
    assert arch.flops() == torch_flops(net, shape)
    with torch.no_grad():
        assert net.eval()(torch.zeros(2, *shape)).shape == (2, 10)


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
    # 2-D images (square and not, odd sizes) and 1-D signals both ways round.
    kind = draw(st.sampled_from(["2d", "2d", "1d-h", "1d-w"]))
    h = draw(st.integers(4, 40))
    w = draw(st.integers(4, 40))
    if kind == "1d-h":
        h, w = 1, draw(st.integers(2, 80))
    elif kind == "1d-w":
        h, w = draw(st.integers(2, 80)), 1
    kernel = draw(st.sampled_from([1, 3, 5]))
    stride = draw(st.integers(1, 2))
    pool = draw(st.booleans())
    downsample = draw(st.sampled_from([1, 1, 2, 3]))
    # Stages that fit: each pooling halves the stem's output size (1-D: the
    # long side only; the short side of a signal stays 1).
    long = kind != "2d"
    fh, fw = (1, downsample) if kind == "1d-h" else (downsample, 1) if kind == "1d-w" else (
        downsample, downsample)
    sh, sw = h // fh, w // fw
    assume(min(sh, sw) >= 1)
    sh = (sh - 1) // (1 if kind == "1d-h" else stride) + 1
    sw = (sw - 1) // (1 if kind == "1d-w" else stride) + 1
    if pool:
        sh, sw = (sh, sw // 2) if kind == "1d-h" else (sh // 2, sw) if kind == "1d-w" else (
            sh // 2, sw // 2)
    assume(min(sh, sw) >= 1)
    size = max(sh, sw) if long else min(sh, sw)
    max_stages = min(4, 1 + int(math.log2(size)))
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
        arch = Architecture((c, h, w), n_classes,
                            Stem(kernel, stem_width, stride, pool, downsample),
                            tuple(stages), head)
        assert arch.layout == ("2d" if kind == "2d" else "1d")
        return arch
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


@pytest.mark.parametrize("multiple, budget", [(8, 1e7), (16, 1e8)])
def test_largest_omega_with_a_multiple(multiple, budget):
    # Budgets where the stream is wider than 4 multiples (33 and 106 exact).
    arch = Architecture.minimal((1, 28, 28), 10).insert_block(2, 0).insert_block(0, 0, width=4)
    omega, scaled = largest_omega(arch, budget, multiple=multiple)
    assert scaled == arch.scaled(omega, multiple)
    assert scaled.flops() <= budget
    widths = scaled.group_widths() + [m for ms in scaled.block_widths() for m in ms]
    assert all(w % multiple == 0 for w in widths if w >= 4 * multiple)
    # Still the largest: the next width step exceeds the budget.
    assert arch.scaled(omega * (1 + 3e-4), multiple).flops() > budget
    # Rounding costs FLOPs but not the bulk of the budget.
    exact = largest_omega(arch, budget)[1]
    assert exact != scaled
    assert scaled.flops() > 0.5 * exact.flops()


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
