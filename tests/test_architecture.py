"""Tests of the immutable network spec :class:`sklearn_resbuilder.Architecture`."""

from __future__ import annotations

import dataclasses
import json

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
    # Two pooling layers: the last stage is a quarter of the input.
    assert arch.stage_hw()[-1] == (shape[1] // 4, shape[2] // 4)


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
