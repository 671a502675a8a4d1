"""Tests of the immutable network spec :class:`sklearn_resbuilder.Architecture`."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from sklearn_resbuilder import Architecture, Stage, Stem

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 96, 96)]


def _small(input_shape=(1, 28, 28)):
    """Minimal net with a few blocks: 3 stages, one stream group."""
    return (Architecture.minimal(input_shape, 10, width=8)
            .insert_block(0, 0)
            .insert_block(1, 0, width=5)
            .insert_block(1, 1, width=3))


def _two_groups():
    """Two stream groups (stage 1 opens with a transition), blocks in both."""
    return Architecture((3, 16, 16), 4, Stem(3, 6), (
        Stage(6, (4, 6)),
        Stage(10, (7,), transition=True),
        Stage(10, (2, 3)),
    ), "avg")


# ----------------------------------------------------------------- presets
@pytest.mark.parametrize("shape", SHAPES)
def test_minimal_preset(shape):
    arch = Architecture.minimal(shape, 10)
    assert arch.input_shape == shape
    assert arch.n_classes == 10
    assert arch.n_stages == 3
    assert arch.n_blocks == 0
    assert arch.head == "flatten"
    assert arch.stem.kernel == 3 and arch.stem.stride == 1 and not arch.stem.pool
    assert not any(s.transition for s in arch.stages)
    assert arch.n_groups == 1
    # Images under 56 px keep their size; 96 px is average-pooled to 48 first.
    f = 1 if min(shape[1:]) < 56 else 2
    assert arch.stem.downsample == f
    # Two pooling layers: the last stage is a quarter of the stem's input.
    assert arch.stage_hw()[-1] == (shape[1] // f // 4, shape[2] // f // 4)


@pytest.mark.parametrize("shape", SHAPES)
def test_resnet18_preset(shape):
    arch = Architecture.resnet18(shape, 10)
    assert arch.n_stages == 4
    assert [s.width for s in arch.stages] == [64, 128, 256, 512]
    assert [s.blocks for s in arch.stages] == [(64, 64), (128, 128), (256, 256), (512, 512)]
    assert [s.transition for s in arch.stages] == [False, True, True, True]
    assert arch.n_blocks == 8
    assert arch.head == "avg"
    assert arch.stem.width == 64
    if min(shape[1:]) < 64:  # CIFAR stem
        assert (arch.stem.kernel, arch.stem.stride, arch.stem.pool) == (3, 1, False)
    else:  # ImageNet stem
        assert (arch.stem.kernel, arch.stem.stride, arch.stem.pool) == (7, 2, True)
    assert arch.group_widths() == [64, 128, 256, 512]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8), (1, 1, 40),
                                   (3, 112, 112), (1, 3, 3)])
def test_pyramid_doubles_width_at_each_pooling(shape):
    from sklearn_resbuilder.flops import torch_flops

    minimal = Architecture.minimal(shape, 10)
    arch = Architecture.pyramid(shape, 10)
    # The minimal net's sizing (stem, poolings, downsampling, layout) ...
    assert (arch.stem, arch.layout, arch.head) == (minimal.stem, minimal.layout, minimal.head)
    assert arch.stage_hw() == minimal.stage_hw()
    # ... with a transition to twice the width after every pooling.
    assert [s.width for s in arch.stages] == [16 * 2 ** s for s in range(minimal.n_stages)]
    assert [s.transition for s in arch.stages] == [s > 0 for s in range(minimal.n_stages)]
    assert arch.n_blocks == 0
    assert arch.flops() == torch_flops(arch.build(), shape)


def test_pyramid_block_costs_the_same_in_every_stage():
    # The reason for the shape: a quarter of the pixels, twice the channels.
    arch = Architecture.pyramid((1, 32, 32), 10)
    costs = {arch.insert_block(s, 0).flops() - arch.flops() for s in range(arch.n_stages)}
    assert len(costs) == 1
    minimal = Architecture.minimal((1, 32, 32), 10)
    uniform = [minimal.insert_block(s, 0).flops() - minimal.flops() for s in range(3)]
    assert uniform[0] == 16 * uniform[2]  # where the minimal net's budget goes


def test_minimal_small_images_get_fewer_pools():
    assert Architecture.minimal((1, 3, 3), 2).n_stages == 2
    assert Architecture.minimal((1, 1, 1), 2).n_stages == 1


def test_resnet18_too_small_raises():
    with pytest.raises(ValueError, match="too small"):
        Architecture.resnet18((1, 4, 4), 10)


def test_two_dim_shape_means_one_channel():
    assert Architecture.minimal((28, 28), 10).input_shape == (1, 28, 28)


# ------------------------------------------------------------ immutability
def test_frozen():
    arch = Architecture.minimal((1, 28, 28), 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.n_classes = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.stages = ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.stem.width = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.stages[0].width = 3
    with pytest.raises(TypeError):
        arch.stages[0].blocks[0] = 1  # tuples, not lists


def test_lists_are_normalised_to_tuples():
    arch = Architecture([1, 8, 8], 3, Stem(3, 4), [Stage(4, [2, 3])])
    assert arch.input_shape == (1, 8, 8)
    assert isinstance(arch.stages, tuple)
    assert arch.stages[0].blocks == (2, 3)
    hash(arch)


# ---------------------------------------------------------- serialisation
@pytest.mark.parametrize("arch", [
    Architecture.minimal((1, 28, 28), 10),
    Architecture.resnet18((3, 32, 32), 100),
    Architecture.resnet18((3, 96, 96), 2),
    _small(),
    _two_groups(),
], ids=["minimal", "resnet18", "resnet18-imagenet-stem", "small", "two-groups"])
def test_dict_json_round_trip(arch):
    d = arch.to_dict()
    back = Architecture.from_dict(json.loads(json.dumps(d)))
    assert back == arch
    assert hash(back) == hash(arch)
    assert back.to_dict() == d
    assert Architecture.from_json(arch.to_json()) == arch
    assert {arch: 1}[back] == 1  # usable as a dict key


@pytest.mark.parametrize("key", ["input_shape", "n_classes", "stem", "stages"])
def test_from_dict_missing_key(key):
    d = Architecture.minimal((1, 28, 28), 10).to_dict()
    del d[key]
    with pytest.raises(ValueError, match=f"lacks.*{key}"):
        Architecture.from_dict(d)


def test_from_dict_malformed():
    d = Architecture.minimal((1, 28, 28), 10).to_dict()
    del d["stages"][0]["width"]
    with pytest.raises(ValueError, match="malformed"):
        Architecture.from_dict(d)
    with pytest.raises(ValueError, match="expected a dict"):
        Architecture.from_dict([1, 2])
    d = Architecture.minimal((1, 28, 28), 10).to_dict()
    d["stem"]["colour"] = "red"
    with pytest.raises(ValueError, match="malformed"):
        Architecture.from_dict(d)


def test_from_dict_validates():
    d = Architecture.minimal((1, 28, 28), 10).to_dict()
    d["head"] = "max"
    with pytest.raises(ValueError, match="head must be one of"):
        Architecture.from_dict(d)


# --------------------------------------------------------------- display
@pytest.mark.parametrize("arch", [
    Architecture.minimal((1, 28, 28), 10),
    Architecture.resnet18((1, 28, 28), 10),
    Architecture.resnet18((3, 96, 96), 10),
    _two_groups(),
], ids=["minimal", "resnet18", "resnet18-imagenet-stem", "two-groups"])
def test_str_one_row_per_layer(arch):
    text = str(arch)
    lines = text.splitlines()
    seps = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    assert len(seps) == 2
    body = lines[seps[0] + 1: seps[1]]
    layers = list(arch.layers())
    assert len(body) == len(layers)
    for line, layer in zip(body, layers):
        assert line.split()[0] == layer.name
        assert f"{layer.flops:,}" in line
    total = lines[seps[1] + 1]
    assert total.split()[0] == "total"
    assert f"{arch.flops():,}" in total
    assert f"{arch.n_params():,}" in total
    assert f"{arch.n_blocks} blocks" in lines[0]


def test_summary_mentions_flops():
    arch = _small()
    assert f"{arch.flops():,} FLOPs" in arch.summary()


# ----------------------------------------------------------------- edits
@pytest.mark.parametrize("stage", [0, 1, 2])
def test_insert_block_at_start_and_end(stage):
    arch = _small()
    before = arch.to_dict()
    n = len(arch.stages[stage].blocks)
    first = arch.insert_block(stage, 0, width=11)
    last = arch.insert_block(stage, n, width=13)
    assert first.stages[stage].blocks == (11,) + arch.stages[stage].blocks
    assert last.stages[stage].blocks == arch.stages[stage].blocks + (13,)
    for new in (first, last):
        assert new.n_blocks == arch.n_blocks + 1
        for s, st in enumerate(arch.stages):
            if s != stage:
                assert new.stages[s] == st
    # The original is unchanged.
    assert arch.to_dict() == before
    assert arch.n_blocks == 3


def test_insert_block_default_width_is_stream_width():
    arch = _two_groups()
    assert arch.insert_block(1, 1).stages[1].blocks == (7, 10)
    assert arch.insert_block(0, 2).stages[0].blocks == (4, 6, 6)


def test_insert_block_middle():
    arch = _small()
    new = arch.insert_block(1, 1, width=9)
    assert new.stages[1].blocks == (5, 9, 3)


def test_remove_blocks():
    arch = _two_groups()
    new = arch.remove_blocks([(0, 0), (2, 1)])
    assert [s.blocks for s in new.stages] == [(6,), (7,), (2,)]
    assert new.n_blocks == arch.n_blocks - 2
    assert [s.width for s in new.stages] == [s.width for s in arch.stages]
    assert arch.n_blocks == 5  # unchanged
    assert arch.remove_blocks([]) == arch
    every = arch.remove_blocks(arch.block_ids())
    assert every.n_blocks == 0 and every.n_stages == 3
    # Lists (e.g. from JSON) work as pairs too.
    assert arch.remove_blocks([[1, 0]]).stages[1].blocks == ()


def test_remove_missing_block_raises():
    with pytest.raises(ValueError, match=r"no block \(1, 1\)"):
        _two_groups().remove_blocks([(1, 1)])
    with pytest.raises(ValueError, match="no block"):
        _two_groups().remove_blocks([(5, 0)])


def test_with_widths():
    arch = _two_groups()
    assert arch.group_widths() == [6, 10]
    assert arch.block_widths() == [[4, 6], [7], [2, 3]]
    new = arch.with_widths([3, 12], [[1, 2], [5], [8, 9]])
    assert new.stem.width == 3
    assert [s.width for s in new.stages] == [3, 12, 12]
    assert [s.blocks for s in new.stages] == [(1, 2), (5,), (8, 9)]
    assert [s.transition for s in new.stages] == [s.transition for s in arch.stages]
    assert arch.with_widths(arch.group_widths(), arch.block_widths()) == arch


def test_with_widths_zero_removes_block():
    arch = _two_groups()
    new = arch.with_widths([6, 10], [[0, 6], [0], [2, 0]])
    assert [s.blocks for s in new.stages] == [(6,), (), (2,)]
    assert new.n_blocks == 2


def test_with_widths_accepts_intlike():
    new = _two_groups().with_widths([3.0, 4], [[1, 2.0], [5], [8, 9]])
    assert new.group_widths() == [3, 4]
    assert all(isinstance(m, int) for st in new.stages for m in st.blocks)


def test_with_widths_errors():
    arch = _two_groups()
    with pytest.raises(ValueError, match="stream group 1 width must be >= 1"):
        arch.with_widths([6, 0], arch.block_widths())
    with pytest.raises(ValueError, match="expected 2 stream widths"):
        arch.with_widths([6], arch.block_widths())
    with pytest.raises(ValueError, match="expected block widths for 3 stages"):
        arch.with_widths([6, 10], [[4, 6], [7]])
    with pytest.raises(ValueError, match="stage 2 has 2 blocks, got 1 widths"):
        arch.with_widths([6, 10], [[4, 6], [7], [2]])
    with pytest.raises(ValueError, match="stage 0 block 1 width must be >= 0"):
        arch.with_widths([6, 10], [[4, -1], [7], [2, 3]])
    with pytest.raises(ValueError, match="must be an int"):
        arch.with_widths([6, 10.5], arch.block_widths())


def test_scaled():
    arch = Architecture.resnet18((1, 28, 28), 10)
    half = arch.scaled(0.5)
    assert half.group_widths() == [32, 64, 128, 256]
    assert half.block_widths() == [[32, 32], [64, 64], [128, 128], [256, 256]]
    tiny = arch.scaled(1e-9)
    assert tiny.group_widths() == [1, 1, 1, 1]
    assert tiny.n_blocks == arch.n_blocks  # widths stay >= 1: no block disappears
    assert arch.scaled(1.0) == arch
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="omega must be a positive finite"):
            arch.scaled(bad)


def test_scaled_rounds_to_a_multiple():
    arch = Architecture.minimal((1, 28, 28), 10, width=10).insert_block(0, 0, width=3)
    assert arch.scaled(7.1, 8).group_widths() == [72]        # 71 -> 72
    assert arch.scaled(6.9, 8).group_widths() == [72]        # 69 -> 72
    assert arch.scaled(6.7, 8).group_widths() == [64]        # 67 -> 64
    assert arch.scaled(7.1, 1).group_widths() == [71]
    assert arch.scaled(3.3, 8).group_widths() == [32]        # 33 -> 32 (nearest)
    assert arch.scaled(3.7, 8).group_widths() == [40]        # 37 -> 40
    # Widths under 4 multiples stay exact (deviation 19): 31, 21, and the
    # block's 3 * 7.1 = 21.3 -> 21.
    assert arch.scaled(3.1, 8).group_widths() == [31]
    assert arch.scaled(2.1, 8).group_widths() == [21]
    assert arch.scaled(7.1, 8).block_widths()[0] == [21]
    assert arch.scaled(3.1, 4).group_widths() == [32]        # 4 x 4 = 16: rounded
    # Non-decreasing in omega, so bisection on omega stays valid.
    prev = None
    for omega in np.linspace(0.05, 12, 400):
        widths = arch.scaled(float(omega), 8)
        w = widths.group_widths() + widths.block_widths()[0]
        assert all(x % 8 == 0 for x in w if x >= 32)
        exact = arch.scaled(float(omega), 1)
        assert [x for x in w if x < 32] == [x for x in exact.group_widths()
                                            + exact.block_widths()[0] if x < 32]
        if prev is not None:
            assert all(a >= b for a, b in zip(w, prev))
        prev = w
    for bad in (0, -8, 2.5, True):
        with pytest.raises(ValueError, match="multiple"):
            arch.scaled(1.0, bad)


# ---------------------------------------------------------- invalid specs
@pytest.mark.parametrize("stage", [-1, 3, 10, True, 1.0])
def test_insert_stage_out_of_range(stage):
    with pytest.raises(ValueError, match=r"stage must be an int in \[0, 2\]"):
        _small().insert_block(stage, 0)


@pytest.mark.parametrize("position", [-1, 3, 1.0])
def test_insert_position_out_of_range(position):
    # stage 1 of _small() has 2 blocks: valid positions are 0..2
    with pytest.raises(ValueError, match=r"position must be an int in \[0, 2\] for stage 1"):
        _small().insert_block(1, position)


@pytest.mark.parametrize("width", [0, -3])
def test_insert_width_below_one(width):
    with pytest.raises(ValueError, match="block width must be >= 1"):
        _small().insert_block(0, 0, width=width)


def test_block_width_below_one_in_spec():
    with pytest.raises(ValueError, match="stage 0 block 1 width must be >= 1"):
        Architecture((1, 8, 8), 2, Stem(3, 4), (Stage(4, (2, 0)),))


def test_stage_width_below_one():
    with pytest.raises(ValueError, match="stage 1 width must be >= 1"):
        Architecture((1, 8, 8), 2, Stem(3, 4), (Stage(4), Stage(0, transition=True)))


def test_stage0_transition():
    with pytest.raises(ValueError, match="stage 0 cannot have a transition"):
        Architecture((1, 8, 8), 2, Stem(3, 4), (Stage(4, transition=True),))


def test_stage_without_transition_must_keep_width():
    with pytest.raises(ValueError, match="stage 1 has no transition conv.*previous stream width 4, got 6"):
        Architecture((1, 8, 8), 2, Stem(3, 4), (Stage(4), Stage(6)))
    with pytest.raises(ValueError, match="stage 0 has no transition conv.*width 4, got 5"):
        Architecture((1, 8, 8), 2, Stem(3, 4), (Stage(5),))


def test_images_too_small():
    with pytest.raises(ValueError, match=r"input 8x8 is too small: stage 4 would be 0x0"):
        Architecture((1, 8, 8), 2, Stem(3, 4), tuple(Stage(4) for _ in range(5)))
    # the stem's stride and pool count too
    with pytest.raises(ValueError, match="too small"):
        Architecture((1, 8, 8), 2, Stem(3, 4, stride=2, pool=True), (Stage(4), Stage(4), Stage(4)))
    Architecture((1, 8, 8), 2, Stem(3, 4), tuple(Stage(4) for _ in range(4)))  # 1x1: fine


@pytest.mark.parametrize("kernel", [2, 4])
def test_even_stem_kernel(kernel):
    with pytest.raises(ValueError, match=f"stem kernel must be odd, got {kernel}"):
        Architecture((1, 8, 8), 2, Stem(kernel, 4), (Stage(4),))


def test_unknown_head():
    with pytest.raises(ValueError, match="head must be one of.*'max'"):
        Architecture((1, 8, 8), 2, Stem(3, 4), (Stage(4),), "max")


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_shape=(1, 8)), r"input_shape must be \(C, H, W\)"),
    (dict(input_shape=(0, 8, 8)), "input_shape C must be >= 1"),
    (dict(n_classes=0), "n_classes must be >= 1"),
    (dict(n_classes=2.5), "n_classes must be an int"),
    (dict(stages=()), "at least one stage"),
    (dict(stem=Stem(3, 0)), "stem width must be >= 1"),
    (dict(stem=Stem(3, 4, stride=0)), "stem stride must be >= 1"),
])
def test_other_invalid_specs(kwargs, match):
    args = dict(input_shape=(1, 8, 8), n_classes=2, stem=Stem(3, 4), stages=(Stage(4),))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Architecture(**args)


# ------------------------------------------------------- params and build
@pytest.mark.parametrize("arch", [
    Architecture.minimal((1, 8, 8), 10),
    Architecture.minimal((3, 32, 32), 7),
    Architecture.resnet18((1, 28, 28), 10),
    Architecture.resnet18((3, 96, 96), 10),
    _small(),
    _two_groups(),
], ids=["minimal8", "minimal32", "resnet18", "resnet18-imagenet-stem", "small", "two-groups"])
def test_n_params_matches_module(arch):
    module = arch.build()
    assert isinstance(module, torch.nn.Module)
    assert arch.n_params() == sum(p.numel() for p in module.parameters())
    assert sum(layer.params for layer in arch.layers()) == arch.n_params()


def test_layers_group_labels():
    arch = _two_groups()
    layers = {layer.name: layer for layer in arch.layers()}
    assert layers["stem"].in_group == "image"
    assert layers["stem"].out_group == ("stream", 0)
    assert layers["stage1.transition"].in_group == ("stream", 0)
    assert layers["stage1.transition"].out_group == ("stream", 1)
    assert layers["stage2.block1.conv1"].out_group == ("mid", 2, 1)
    assert layers["stage2.block1.conv2"].out_group == ("stream", 1)
    assert layers["head"].in_group == ("stream", 1)
    assert arch.stream_groups() == [0, 1, 1]
    assert arch.block_ids() == [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1)]


def test_numpy_integers_are_accepted():
    """numpy integers are integers (``numbers.Integral``): the spec should take them.

    ``with_widths`` already does; the constructor, the presets' ``n_classes`` /
    ``width`` and ``insert_block`` reject them with the confusing message
    "n_classes must be an int, got np.int64(10)". They arrive naturally from
    ``np.random.default_rng().integers`` or ``len(np.unique(y))``-style code.
    """
    np = pytest.importorskip("numpy")
    arch = Architecture.minimal((1, 28, 28), np.int64(10), width=np.int64(8))
    assert arch == Architecture.minimal((1, 28, 28), 10, width=8)
    assert type(arch.n_classes) is int and type(arch.stem.width) is int
    new = arch.insert_block(np.int64(1), np.int64(0), width=np.int32(3))
    assert new == arch.insert_block(1, 0, width=3)
    json.dumps(new.to_dict())  # still plain JSON


# ------------------------------------------------------- 1-D and large inputs
@pytest.mark.parametrize("shape, layout, window", [
    ((1, 1, 40), "1d", (1, 3)),
    ((3, 1, 64), "1d", (1, 3)),
    ((2, 50, 1), "1d", (3, 1)),
    ((1, 1, 1), "2d", (3, 3)),    # a single pixel is no signal
    ((1, 2, 40), "2d", (3, 3)),
    ((1, 28, 56), "2d", (3, 3)),
])
def test_layout_is_derived_from_the_shape(shape, layout, window):
    arch = Architecture.minimal(shape, 4)
    assert arch.layout == layout
    assert arch.window(3) == window
    assert Architecture(shape, 4).layout == layout  # the constructor derives it too


@pytest.mark.parametrize("length, n_pools", [(3, 0), (7, 0), (8, 1), (40, 3), (48, 3),
                                             (64, 4), (1000, 7)])
def test_minimal_1d_pools_while_the_signal_stays_long(length, n_pools):
    for shape in [(1, 1, length), (2, length, 1)]:
        arch = Architecture.minimal(shape, 10)
        assert arch.n_stages == n_pools + 1
        final = max(arch.stage_hw()[-1])
        assert min(arch.stage_hw()[-1]) == 1
        assert final >= 4 or n_pools == 0
        assert final // 2 < 4  # one more pooling would go under 4
        assert arch.stem.downsample == 1


def test_1d_net_pools_and_convolves_along_the_signal_only():
    arch = Architecture.minimal((2, 1, 40), 10).insert_block(1, 0).insert_block(3, 0)
    assert arch.stage_hw() == [(1, 40), (1, 20), (1, 10), (1, 5)]
    layers = {L.name: L for L in arch.layers()}
    assert layers["stem"].kernel == (1, 3)
    assert layers["pool1"].kernel == (1, 2)
    assert layers["stage1.block0.conv1"].kernel == (1, 3)
    # 2 * kernel area 3 * 20 positions * 16 * 16: a third of a 3x3 conv's cost.
    assert layers["stage1.block0.conv1"].flops == 2 * 3 * 20 * 16 * 16
    assert layers["stage1.block0.conv1"].params == 3 * 16 * 16 + 2 * 16
    assert layers["head"].in_channels == 16 * 5
    wide = Architecture.minimal((2, 40, 1), 10).insert_block(1, 0).insert_block(3, 0)
    assert wide.stage_hw() == [(40, 1), (20, 1), (10, 1), (5, 1)]
    assert wide.flops() == arch.flops()  # the same network, transposed


def test_1d_text_says_1x3_not_3x3():
    arch = Architecture.minimal((1, 1, 40), 10).insert_block(0, 0)
    text, summary = str(arch), arch.summary()
    assert "1x3" in text and "1x2" in text and "3x3" not in text and "2x2" not in text
    assert "1-D" in text.splitlines()[0]
    assert summary.startswith("stem 1x3/16 |")
    # 2-D text is what it always was.
    assert Architecture.minimal((1, 28, 28), 10).summary() == (
        "stem 3x3/16 | 16[-] > 16[-] > 16[-] | flatten | 241,472 FLOPs")
    assert "1-D" not in str(Architecture.minimal((1, 28, 28), 10))


def test_bad_layout_raises():
    with pytest.raises(ValueError, match="layout must be one of"):
        Architecture((1, 1, 40), 3, layout="3d")
    with pytest.raises(ValueError, match="one pixel high or wide.*8x8"):
        Architecture((1, 8, 8), 3, layout="1d")
    with pytest.raises(ValueError, match="one pixel high or wide.*1x1"):
        Architecture((1, 1, 1), 3, layout="1d")
    with pytest.raises(ValueError, match="stem downsample must be >= 1"):
        Architecture((1, 8, 8), 3, Stem(3, 4, downsample=0))


def test_explicit_2d_layout_keeps_square_kernels_on_a_signal():
    arch = Architecture((1, 1, 40), 10, layout="2d")
    assert arch.window(3) == (3, 3)
    assert next(arch.layers()).flops == 2 * 9 * 40 * 1 * 16


def test_dicts_without_the_new_keys_mean_what_they_meant():
    """Specs saved before 1-D layouts and input downsampling load as they were built."""
    old = {"input_shape": [1, 1, 40], "n_classes": 10,
           "stem": {"kernel": 3, "width": 16, "stride": 1, "pool": False},
           "stages": [{"width": 16, "blocks": [16], "transition": False}], "head": "flatten"}
    arch = Architecture.from_dict(old)
    assert arch.layout == "2d" and arch.stem.downsample == 1
    assert arch.to_dict() == old  # unchanged on the way out, too
    assert tuple(arch.build().stem.conv.weight.shape) == (16, 1, 3, 3)
    # 2-D specs write exactly the keys they always wrote.
    d = Architecture.minimal((3, 32, 32), 10).to_dict()
    assert set(d) == {"input_shape", "n_classes", "stem", "stages", "head"}
    assert set(d["stem"]) == {"kernel", "width", "stride", "pool"}


@pytest.mark.parametrize("arch", [
    Architecture.minimal((1, 1, 40), 10).insert_block(2, 0),
    Architecture.minimal((2, 33, 1), 3),
    Architecture.minimal((3, 112, 112), 10).insert_block(0, 0),
    Architecture((1, 1, 40), 10, layout="2d"),
], ids=["1d", "1d-wide", "downsample", "explicit-2d"])
def test_new_fields_round_trip(arch):
    back = Architecture.from_json(json.dumps(arch.to_dict()))
    assert back == arch and back.layout == arch.layout
    assert back.stem.downsample == arch.stem.downsample


def test_spec_pickled_before_layouts_unpickles_as_2d():
    import pickle

    arch = Architecture.minimal((1, 1, 40), 10)
    old = object.__new__(Architecture)
    state = {k: v for k, v in arch.__dict__.items() if k != "layout"}
    old.__setstate__(state)  # what unpickling an old file does
    assert old.layout == "2d" and old.window(3) == (3, 3)
    assert pickle.loads(pickle.dumps(arch)) == arch


@pytest.mark.parametrize("side, factor", [(8, 1), (28, 1), (32, 1), (55, 1), (56, 2),
                                          (64, 2), (96, 2), (112, 4), (128, 4),
                                          (224, 8), (300, 8)])
def test_minimal_downsamples_large_images_to_28_55_px(side, factor):
    arch = Architecture.minimal((3, side, side), 10)
    assert arch.stem.downsample == factor
    assert arch.stem_input_hw() == (side // factor, side // factor)
    s0 = arch.stage_hw()[0][0]
    assert s0 == side if side < 56 else 28 <= s0 < 56
    assert arch.n_stages == 3
    # Fixed: stride 1, no max-pool in the stem; the average pool is the only change.
    assert (arch.stem.kernel, arch.stem.stride, arch.stem.pool) == (3, 1, False)


def test_large_image_start_net_costs_about_what_a_small_one_does():
    small = Architecture.minimal((1, 28, 28), 10).flops()
    large = Architecture.minimal((3, 112, 112), 10).flops()
    # Same 28x28 stage 0; the 3 input channels make the stem conv 3x dearer.
    assert small < large < 3 * small
    # Without the downsampling the stem alone cost 77.8 MFLOPs at 300 px.
    huge = Architecture.minimal((3, 300, 300), 10)
    assert huge.flops() < 1.3e6
    assert huge.stage_hw()[0] == (37, 37)


def test_minimal_and_pyramid_take_a_downsample_factor():
    """An explicit factor replaces the one chosen from the image size; the
    poolings are sized to the pooled image."""
    arch = Architecture.minimal((1, 28, 28), 10, downsample=2)
    assert arch.stem.downsample == 2 and arch.stage_hw() == [(14, 14), (7, 7), (3, 3)]
    assert Architecture.minimal((3, 112, 112), 10, downsample=1).stage_hw()[0] == (112, 112)
    pyr = Architecture.pyramid((1, 28, 28), 10, downsample=2)
    assert pyr.stem.downsample == 2 and [s.width for s in pyr.stages] == [16, 32, 64]
    # A quarter of the pixels: the same widths cost about a quarter of the FLOPs.
    assert pyr.flops() < 0.3 * Architecture.pyramid((1, 28, 28), 10).flops()
    # 8x8 pooled by 4 is 2x2: one pooling left.
    assert Architecture.minimal((1, 8, 8), 10, downsample=4).n_stages == 2
    for bad, match in ((0, "downsample must be >= 1"), (2.5, "downsample must be an int"),
                       (16, "pools .* to nothing")):
        with pytest.raises(ValueError, match=match):
            Architecture.minimal((1, 8, 8), 10, downsample=bad)
    with pytest.raises(ValueError, match="1-D signal"):
        Architecture.pyramid((1, 1, 40), 10, downsample=2)
    assert Architecture.minimal((1, 1, 40), 10, downsample=1).layout == "1d"


def test_large_non_square_image_downsamples_by_its_shorter_side():
    arch = Architecture.minimal((3, 64, 300), 10)
    assert arch.stem.downsample == 2
    assert arch.stage_hw() == [(32, 150), (16, 75), (8, 37)]


@pytest.mark.parametrize("shape, hw", [
    ((1, 28, 56), [(28, 56), (14, 28), (7, 14)]),
    ((1, 27, 45), [(27, 45), (13, 22), (6, 11)]),
    ((3, 45, 27), [(45, 27), (22, 13), (11, 6)]),
    ((1, 5, 40), [(5, 40), (2, 20), (1, 10)]),
])
def test_non_square_images_pool_each_side(shape, hw):
    arch = Architecture.minimal(shape, 10)
    assert arch.stage_hw() == hw
    head = list(arch.layers())[-1]
    assert head.in_channels == 16 * hw[-1][0] * hw[-1][1]
