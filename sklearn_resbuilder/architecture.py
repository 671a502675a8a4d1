"""Immutable, JSON-serialisable specs of ResBuilder networks.

A network is ``stem -> stage 0 -> pool -> stage 1 -> pool -> ... -> head``.
Images one pixel high or wide (1-D signals, ``input_shape=(C, 1, L)`` or
``(C, L, 1)``) get 1-D networks (:attr:`Architecture.layout` ``"1d"``): every
kernel and pooling window spans the long axis only (``1 x k``, ``1 x 2``).
Each stage keeps one *stream* width; its residual blocks add into that stream
(paper §3, ``x + ReLU(BN(conv(ReLU(BN(conv x)))))``). A stage after a pooling
layer may open with a 1x1 *transition* conv that changes the stream width;
stages without one share the width of the stage before. Channels that are added
into one stream form a *stream group* (docs/architecture.md §5.4): they are resized
together.

Every edit returns a new spec; invalid specs raise ``ValueError`` naming the
problem.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator, Sequence

from . import defaults

HEADS = ("flatten", "avg")
LAYOUTS = ("1d", "2d")
#: The minimal start net downsamples the input (``Stem.downsample``) by the
#: largest power of two that keeps the shorter side at least this long, so
#: stage 0 of a large image lands at 28-55 px: images under 56 px keep their
#: size, 112 px and 128 px go to 28 and 32, 300 px to 37 (docs/algorithm.md).
MIN_STAGE0_SIDE = 28
#: A 1-D minimal start net halves the signal while the last stage keeps at
#: least this many positions (L=40 -> 3 poolings, final length 5; measured in
#: docs/user_guide.md, "1-D signals").
MIN_1D_LENGTH = 4


@dataclass(frozen=True)
class Stem:
    """The first layers: ``[avgpool] -> conv(kernel, stride) -> BN -> ReLU [-> maxpool 2]``.

    In a 1-D network (:attr:`Architecture.layout` ``"1d"``) every size below
    applies to the long axis only: a kernel ``k`` is ``1 x k``, a stride or
    pool acts along the signal.

    Parameters
    ----------
    kernel : int, default=3
        Odd kernel size; padding ``kernel // 2``.
    width : int, default=16
        Output channels: the first stream width.
    stride : int, default=1
        Conv stride (2 for the ImageNet-style ResNet18 stem).
    pool : bool, default=False
        Whether a 2x2 max-pool follows the conv.
    downsample : int, default=1
        Average-pool the input by this factor (window = stride = factor,
        floor) before the conv: a fixed resize with no parameters, so a large
        image is shrunk before any layer the FLOP budget pays for. Like
        max-pooling it costs no FLOPs in the paper's count or in
        ``torch.utils.flop_counter`` (it is about one addition per input
        value). 1: none. :meth:`Architecture.minimal` picks it from the image
        size (:data:`MIN_STAGE0_SIDE`).
    """

    kernel: int = 3
    width: int = 16
    stride: int = 1
    pool: bool = False
    downsample: int = 1


@dataclass(frozen=True)
class Stage:
    """A stretch of the network between pooling layers.

    Parameters
    ----------
    width : int
        Stream width: the channels every block of the stage adds into.
    blocks : tuple of int
        Middle width (first conv's output channels) of each residual block.
    transition : bool
        Whether the stage opens with a 1x1 conv + BN + ReLU after its pooling
        layer, which sets a new stream width. Stage 0 never has one (the stem
        sets its width).
    """

    width: int
    blocks: tuple[int, ...] = ()
    transition: bool = False


@dataclass(frozen=True)
class Layer:
    """One row of an architecture's layer table (what ``str()`` prints).

    ``kernel`` is the window ``(kh, kw)`` of a conv or pooling layer (``(1, 3)``
    for a block conv of a 1-D network), ``(1, 1)`` for the dense layer.
    ``in_group`` / ``out_group`` name the BN channels feeding and produced by the
    layer: ``"image"``, ``"logits"``, ``("stream", g)`` or ``("mid", s, b)``.
    """

    name: str
    kind: str  # "conv", "pool" or "dense"
    kernel: tuple[int, int]
    in_channels: int
    out_channels: int
    out_hw: tuple[int, int]
    flops: int
    params: int
    in_group: object = None
    out_group: object = None


def _as_int(value):
    """numpy/other integers -> int; anything else unchanged (validated later)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def _check_int(name: str, value, minimum: int) -> int:
    value = _as_int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Architecture:
    """An immutable ResBuilder network spec.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)`` of one input image.
    n_classes : int
        Number of output classes (the dense head's width).
    stem : Stem
        The first conv layer.
    stages : tuple of Stage
        Stages, with a 2x2 max-pool between consecutive stages.
    head : {"flatten", "avg"}
        How the last feature map reaches the dense layer: flattened (the paper's
        minimal net, Fig. 4) or global-average-pooled (ResNet18).
    layout : {"1d", "2d"} or None, default=None
        ``"2d"``: square ``k x k`` kernels and 2x2 pooling. ``"1d"`` (only for
        images one pixel high or wide, ``(C, 1, L)`` or ``(C, L, 1)``): every
        kernel, stride and pooling window spans the long axis only (``1 x 3``
        block convs, ``1 x 2`` pooling), so no weight multiplies padding and
        pooling shortens the signal. None: ``"1d"`` exactly when one of H, W
        is 1 and the other is not, else ``"2d"``. A dict without the key
        (:meth:`from_dict`, written before 1-D networks existed) means
        ``"2d"``: the networks saved then load as they were built.

    Examples
    --------
    >>> arch = Architecture.minimal((1, 28, 28), 10)
    >>> arch.n_blocks, arch.flops()
    (0, 241472)
    >>> arch.insert_block(1, 0).n_blocks
    1
    """

    input_shape: tuple[int, int, int]
    n_classes: int
    stem: Stem = field(default_factory=Stem)
    stages: tuple[Stage, ...] = (Stage(16),)
    head: str = "flatten"
    # None resolves to "1d"/"2d" in __post_init__: every spec holds one of them.
    layout: str | None = None

    def __post_init__(self):
        # Normalise lists (e.g. from JSON) to tuples so specs stay hashable.
        object.__setattr__(self, "input_shape", tuple(_as_int(v) for v in self.input_shape))
        object.__setattr__(self, "n_classes", _as_int(self.n_classes))
        object.__setattr__(self, "stem", replace(
            self.stem, kernel=_as_int(self.stem.kernel), width=_as_int(self.stem.width),
            stride=_as_int(self.stem.stride), downsample=_as_int(self.stem.downsample)))
        if self.layout is None and len(self.input_shape) == 3:
            object.__setattr__(self, "layout", _default_layout(self.input_shape))
        object.__setattr__(
            self,
            "stages",
            tuple(
                replace(s, width=_as_int(s.width), blocks=tuple(_as_int(m) for m in s.blocks))
                for s in self.stages
            ),
        )
        self._validate()

    def __setstate__(self, state):
        # A spec pickled before layouts existed lacks the field; every network
        # of that version was "2d" (square kernels), whatever its shape.
        self.__dict__.update({"layout": "2d", **state})

    # ------------------------------------------------------------------ checks
    def _validate(self) -> None:
        if len(self.input_shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {self.input_shape!r}")
        for name, v in zip("CHW", self.input_shape):
            _check_int(f"input_shape {name}", v, 1)
        _check_int("n_classes", self.n_classes, 1)
        _check_int("stem kernel", self.stem.kernel, 1)
        if self.stem.kernel % 2 == 0:
            raise ValueError(f"stem kernel must be odd, got {self.stem.kernel}")
        _check_int("stem width", self.stem.width, 1)
        _check_int("stem stride", self.stem.stride, 1)
        _check_int("stem downsample", self.stem.downsample, 1)
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS} or None, got {self.layout!r}")
        if self.layout == "1d" and (self.input_shape[1] == 1) == (self.input_shape[2] == 1):
            raise ValueError(
                "layout '1d' needs images one pixel high or wide, (C, 1, L) or (C, L, 1); "
                f"got {self.input_shape[1]}x{self.input_shape[2]}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if not self.stages:
            raise ValueError("an architecture needs at least one stage")
        prev = self.stem.width
        for s, stage in enumerate(self.stages):
            _check_int(f"stage {s} width", stage.width, 1)
            if s == 0 and stage.transition:
                raise ValueError("stage 0 cannot have a transition: the stem sets its width")
            if not stage.transition and stage.width != prev:
                raise ValueError(
                    f"stage {s} has no transition conv, so its width must equal the "
                    f"previous stream width {prev}, got {stage.width}"
                )
            for b, mid in enumerate(stage.blocks):
                _check_int(f"stage {s} block {b} width", mid, 1)
            prev = stage.width
        for s, (h, w) in enumerate(self.stage_hw()):
            if h < 1 or w < 1:
                raise ValueError(
                    f"input {self.input_shape[1]}x{self.input_shape[2]} is too small: "
                    f"stage {s} would be {h}x{w} pixels after pooling; use fewer stages "
                    "or larger images"
                )

    # ------------------------------------------------------------- geometry
    def window(self, size: int) -> tuple[int, int]:
        """The ``(kh, kw)`` a nominal kernel, stride or pool ``size`` takes here.

        ``(size, size)`` in a 2-D network; ``(1, size)`` in a 1-D network on
        images one pixel high, ``(size, 1)`` on images one pixel wide.

        Parameters
        ----------
        size : int
            Kernel size, stride or pooling window along the long axis.

        Returns
        -------
        tuple of int
        """
        if self.layout == "1d":
            return (1, size) if self.input_shape[1] == 1 else (size, 1)
        return (size, size)

    def _pool(self, hw: tuple[int, int], size: int = 2) -> tuple[int, int]:
        ph, pw = self.window(size)
        return hw[0] // ph, hw[1] // pw

    def stage_hw(self) -> list[tuple[int, int]]:
        """Spatial size ``(H, W)`` of each stage's feature maps."""
        hw = self.stem_hw()
        if self.stem.pool:
            hw = self._pool(hw)
        out = [hw]
        for _ in self.stages[1:]:
            hw = self._pool(hw)
            out.append(hw)
        return out

    def stem_input_hw(self) -> tuple[int, int]:
        """Size of the image the stem conv sees: after ``stem.downsample``."""
        return self._pool(self.input_shape[1:], self.stem.downsample)

    def stem_hw(self) -> tuple[int, int]:
        """Output size of the stem conv (before its optional pool)."""
        h, w = self.stem_input_hw()
        sh, sw = self.window(self.stem.stride)
        # 'same' padding k//2: out = floor((n - 1) / stride) + 1
        return (h - 1) // sh + 1, (w - 1) // sw + 1

    def stream_groups(self) -> list[int]:
        """Stream-group index of each stage (stages without transition share one)."""
        groups, g = [], -1
        for s, stage in enumerate(self.stages):
            if s == 0 or stage.transition:
                g += 1
            groups.append(g)
        return groups

    @property
    def n_groups(self) -> int:
        """Number of stream groups (independently sized stream widths)."""
        return self.stream_groups()[-1] + 1

    @property
    def n_blocks(self) -> int:
        """Number of residual blocks."""
        return sum(len(s.blocks) for s in self.stages)

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    def block_ids(self) -> list[tuple[int, int]]:
        """``(stage, index)`` of every residual block, in forward order."""
        return [(s, b) for s, st in enumerate(self.stages) for b in range(len(st.blocks))]

    # --------------------------------------------------------------- layers
    def layers(self) -> Iterator[Layer]:
        """The layers in forward order with their sizes, FLOPs and parameters.

        FLOPs follow the paper: ``C_j = 2 s_j u_j v_j c_j c_{j+1}`` for a conv
        (kernel area s = kh kw, output size u x v) and ``2 in out`` for the
        dense layer. Pooling (max and the stem's average downsampling) and BN
        cost no FLOPs in this count (as in the paper and in
        ``torch.utils.flop_counter``). Parameters include BN's gamma and beta.
        """
        from .flops import conv_flops, dense_flops

        c_in = self.input_shape[0]
        groups = self.stream_groups()
        if self.stem.downsample > 1:
            yield Layer("stem.downsample", "pool", self.window(self.stem.downsample), c_in,
                        c_in, self.stem_input_hw(), 0, 0)
        sh, sw = self.stem_hw()
        k = self.window(self.stem.kernel)
        yield Layer("stem", "conv", k, c_in, self.stem.width, (sh, sw),
                    conv_flops(k, sh, sw, c_in, self.stem.width),
                    k[0] * k[1] * c_in * self.stem.width + 2 * self.stem.width,
                    "image", ("stream", 0))
        hw = self.stage_hw()
        p2, k3 = self.window(2), self.window(3)
        a3 = k3[0] * k3[1]
        if self.stem.pool:
            yield Layer("stem.pool", "pool", p2, self.stem.width, self.stem.width, hw[0], 0, 0)
        prev = self.stem.width
        for s, stage in enumerate(self.stages):
            h, w = hw[s]
            g = ("stream", groups[s])
            if s > 0:
                yield Layer(f"pool{s}", "pool", p2, prev, prev, (h, w), 0, 0)
            if stage.transition:
                pg = ("stream", groups[s - 1])
                yield Layer(f"stage{s}.transition", "conv", (1, 1), prev, stage.width, (h, w),
                            conv_flops(1, h, w, prev, stage.width),
                            prev * stage.width + 2 * stage.width, pg, g)
            c = stage.width
            for b, mid in enumerate(stage.blocks):
                m = ("mid", s, b)
                yield Layer(f"stage{s}.block{b}.conv1", "conv", k3, c, mid, (h, w),
                            conv_flops(k3, h, w, c, mid), a3 * c * mid + 2 * mid, g, m)
                yield Layer(f"stage{s}.block{b}.conv2", "conv", k3, mid, c, (h, w),
                            conv_flops(k3, h, w, mid, c), a3 * mid * c + 2 * c, m, g)
            prev = c
        h, w = hw[-1]
        n_in = prev * h * w if self.head == "flatten" else prev
        yield Layer("head", "dense", (1, 1), n_in, self.n_classes, (1, 1),
                    dense_flops(n_in, self.n_classes),
                    n_in * self.n_classes + self.n_classes,
                    ("stream", groups[-1]), "logits")

    def flops(self) -> int:
        """FLOPs of one forward pass on one image (conv + dense, paper's count)."""
        return sum(layer.flops for layer in self.layers())

    def n_params(self) -> int:
        """Number of trainable parameters of the built module."""
        return sum(layer.params for layer in self.layers())

    # ---------------------------------------------------------------- edits
    def insert_block(self, stage: int, position: int, width: int | None = None) -> Architecture:
        """Return a spec with a new block at ``position`` of ``stage``.

        Parameters
        ----------
        stage : int
            Index of the stage, ``0 <= stage < n_stages``.
        position : int
            0 is directly after the stage's pooling layer (or the stem);
            ``len(blocks)`` appends.
        width : int, optional
            The block's middle width; defaults to the stream width.

        Returns
        -------
        Architecture
        """
        stage, position = _as_int(stage), _as_int(position)
        self._check_stage(stage)
        blocks = self.stages[stage].blocks
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= len(blocks):
            raise ValueError(
                f"position must be an int in [0, {len(blocks)}] for stage {stage}, got {position!r}"
            )
        width = self.stages[stage].width if width is None else width
        width = _check_int("block width", width, 1)
        new_blocks = blocks[:position] + (width,) + blocks[position:]
        return self._with_stage(stage, replace(self.stages[stage], blocks=new_blocks))

    def remove_blocks(self, blocks: Iterable[tuple[int, int]]) -> Architecture:
        """Return a spec without the given blocks.

        Parameters
        ----------
        blocks : iterable of (int, int)
            ``(stage, index)`` pairs, as in :meth:`block_ids`.

        Returns
        -------
        Architecture
        """
        drop = set()
        valid = set(self.block_ids())
        for sb in blocks:
            sb = tuple(sb)
            if sb not in valid:
                raise ValueError(f"no block {sb} in this architecture (blocks: {sorted(valid)})")
            drop.add(sb)
        stages = tuple(
            replace(st, blocks=tuple(m for b, m in enumerate(st.blocks) if (s, b) not in drop))
            for s, st in enumerate(self.stages)
        )
        return replace(self, stages=stages)

    def group_widths(self) -> list[int]:
        """Stream width of each stream group."""
        out = []
        for s, g in enumerate(self.stream_groups()):
            if g == len(out):
                out.append(self.stages[s].width)
        return out

    def block_widths(self) -> list[list[int]]:
        """Middle width of each block, per stage."""
        return [list(st.blocks) for st in self.stages]

    def with_widths(self, group_widths: Sequence[int],
                    block_widths: Sequence[Sequence[int]]) -> Architecture:
        """Return a spec with new stream-group and block widths (same topology).

        Parameters
        ----------
        group_widths : sequence of int
            Width of each stream group (see :meth:`group_widths`), each >= 1.
        block_widths : sequence of sequence of int
            Middle width of each block, per stage (see :meth:`block_widths`).
            A width of 0 removes that block (the MorphNet step's "width
            reaches 0").

        Returns
        -------
        Architecture
        """
        groups = self.stream_groups()
        if len(group_widths) != self.n_groups:
            raise ValueError(f"expected {self.n_groups} stream widths, got {len(group_widths)}")
        if len(block_widths) != self.n_stages:
            raise ValueError(f"expected block widths for {self.n_stages} stages, got {len(block_widths)}")
        for g, w in enumerate(group_widths):
            _check_int(f"stream group {g} width", int(w) if _is_intlike(w) else w, 1)
        stages = []
        for s, (stage, mids) in enumerate(zip(self.stages, block_widths)):
            if len(mids) != len(stage.blocks):
                raise ValueError(
                    f"stage {s} has {len(stage.blocks)} blocks, got {len(mids)} widths"
                )
            for b, m in enumerate(mids):
                _check_int(f"stage {s} block {b} width", int(m) if _is_intlike(m) else m, 0)
            stages.append(replace(stage, width=int(group_widths[groups[s]]),
                                  blocks=tuple(int(m) for m in mids if int(m) > 0)))
        stem = replace(self.stem, width=int(group_widths[0]))
        return replace(self, stem=stem, stages=tuple(stages))

    def scaled(self, omega: float, multiple: int = 1) -> Architecture:
        """All widths multiplied by ``omega`` and rounded (minimum 1).

        Parameters
        ----------
        omega : float
            Positive width multiplier (MorphNet's omega).
        multiple : int, default=1
            Widths of at least ``defaults.ROUND_FROM * multiple`` (32 for 8) are rounded
            to the nearest multiple of it; narrower ones to the nearest integer.
            CPU and GPU kernels work on channel blocks of 8 or 16: a 71-wide
            net steps slower than the same net 72 wide (docs/algorithm.md,
            deviation 18). Below 4 multiples a rounding step is 12-50 % of the
            width, and on small data the FLOPs it gives up cost accuracy
            (deviation 19). Widths stay a non-decreasing function of ``omega``
            for any ``multiple``.

        Returns
        -------
        Architecture
        """
        if not (omega > 0 and math.isfinite(omega)):
            raise ValueError(f"omega must be a positive finite number, got {omega!r}")
        multiple = _check_int("multiple", multiple, 1)

        def sc(c):
            w = max(1, int(round(omega * c)))
            if multiple > 1 and w >= defaults.ROUND_FROM * multiple:
                # omega * c >= defaults.ROUND_FROM * multiple - 0.5, so this rounds to
                # >= defaults.ROUND_FROM multiples: no width drops as omega grows.
                w = multiple * int(round(omega * c / multiple))
            return w

        return self.with_widths([sc(c) for c in self.group_widths()],
                                [[sc(m) for m in mids] for mids in self.block_widths()])

    def narrowest(self) -> Architecture:
        """The same shape with every width 1: the cheapest network of this depth."""
        return self.with_widths([1] * len(self.group_widths()),
                                [[1] * len(mids) for mids in self.block_widths()])

    def _check_stage(self, stage):
        if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < self.n_stages:
            raise ValueError(f"stage must be an int in [0, {self.n_stages - 1}], got {stage!r}")

    def _with_stage(self, s: int, stage: Stage) -> Architecture:
        stages = list(self.stages)
        stages[s] = stage
        return replace(self, stages=tuple(stages))

    # -------------------------------------------------------------- presets
    @classmethod
    def minimal(cls, input_shape, n_classes: int, width: int = 16,
                downsample: int | None = None) -> Architecture:
        """The paper's minimal start net (Fig. 4, "RB-0Net"), sized to the input.

        One 3x3 conv, two pooling layers, one dense layer on the flattened
        features: three stages, no residual blocks yet, one stream width.
        Images smaller than 4 pixels get fewer pooling layers. Two deviations
        from the paper, chosen from the input size (docs/algorithm.md):

        * **large images** (shorter side >= 2 x :data:`MIN_STAGE0_SIDE`, i.e.
          56 px) are average-pooled first (``Stem.downsample``, a power of
          two) so that stage 0 has a shorter side of 28-55 px: the budget buys
          width, not full-resolution maps (112 px -> 28, 300 px -> 37);
        * **1-D signals** (one pixel high or wide, :attr:`layout` ``"1d"``)
          get ``1 x 3`` kernels and as many poolings as keep the last stage at
          least :data:`MIN_1D_LENGTH` long (L=40: 3 poolings, 40 -> 5).

        Parameters
        ----------
        input_shape : tuple of int
            ``(C, H, W)`` of one image.
        n_classes : int
            Number of classes.
        width : int, default=16
            Channels of the stem conv (the stream width).
        downsample : int, optional
            Average-pool the input by this factor (``Stem.downsample``)
            instead of the one chosen from the image size; the poolings are
            then sized to the pooled image. Images only.

        Returns
        -------
        Architecture
        """
        input_shape = _shape3(input_shape)
        fixed = downsample is not None
        downsample = _check_int("downsample", downsample, 1) if fixed else 1
        if _default_layout(input_shape) == "1d":
            if fixed and downsample != 1:
                raise ValueError(f"downsample={downsample} is for images; a 1-D signal "
                                 f"{input_shape} keeps its length")
            length = max(input_shape[1:])
            n_pools = 0
            while length // (2 ** (n_pools + 1)) >= MIN_1D_LENGTH:
                n_pools += 1
        else:
            side = min(input_shape[1:])
            while not fixed and side // (2 * downsample) >= MIN_STAGE0_SIDE:
                downsample *= 2
            if side // downsample < 1:
                raise ValueError(f"downsample={downsample} pools {input_shape[1:]} images "
                                 "to nothing")
            side //= downsample
            n_pools = 2
            while n_pools > 0 and side // (2 ** n_pools) < 1:
                n_pools -= 1
        stages = tuple(Stage(width) for _ in range(n_pools + 1))
        return cls(input_shape, n_classes, Stem(3, width, downsample=downsample), stages,
                   "flatten")

    @classmethod
    def pyramid(cls, input_shape, n_classes: int, width: int = 16,
                downsample: int | None = None) -> Architecture:
        """The minimal net with the classic ResNet shape: width doubles at each pooling.

        The same stem, poolings, downsampling and 1-D rule as :meth:`minimal`,
        but stage ``s`` opens with a 1x1 transition conv to ``width * 2**s``
        channels (16 -> 32 -> 64). A block then costs the same FLOPs in every
        stage (a quarter of the pixels, twice the channels, twice over), so a
        uniform "random in" spreads the budget over the stages instead of
        piling it where maps are largest (docs/algorithm.md).

        Parameters
        ----------
        input_shape, n_classes
            As in :meth:`minimal`.
        width : int, default=16
            Channels of the stem conv: stage 0's stream width, doubled at
            each later stage.
        downsample : int, optional
            As in :meth:`minimal`.

        Returns
        -------
        Architecture

        Examples
        --------
        >>> Architecture.pyramid((1, 28, 28), 10).summary()
        'stem 3x3/16 | 16[-] > 32[-] > 64[-] | flatten | 689,920 FLOPs'
        """
        base = cls.minimal(input_shape, n_classes, width, downsample)
        stages = tuple(Stage(width * 2 ** s, (), transition=s > 0)
                       for s in range(base.n_stages))
        return replace(base, stages=stages)

    @classmethod
    def resnet18(cls, input_shape, n_classes: int) -> Architecture:
        """ResNet18's widths and depth (stages 64-128-256-512 x 2 blocks, "RB-R18").

        Small images (shorter side < 64, e.g. 8x8, 28x28, 32x32) get the CIFAR
        stem (3x3 conv, stride 1); larger images the ImageNet stem (7x7 conv,
        stride 2, then max-pool). Pooling between stages plus a 1x1 transition
        conv replaces ResNet's strided projection shortcut. Images too small
        for three poolings raise ``ValueError``. Images one pixel high or wide
        get the same net in 1-D (:attr:`layout` ``"1d"``: 1x3 kernels, 1x2
        pooling, the CIFAR stem).

        Parameters
        ----------
        input_shape, n_classes
            As in :meth:`minimal`.

        Returns
        -------
        Architecture
        """
        input_shape = _shape3(input_shape)
        stem = Stem(3, 64) if min(input_shape[1:]) < 64 else Stem(7, 64, 2, True)
        stages = (Stage(64, (64, 64)),) + tuple(
            Stage(w, (w, w), transition=True) for w in (128, 256, 512)
        )
        return cls(input_shape, n_classes, stem, stages, "avg")

    # ------------------------------------------------------------ serialise
    def to_dict(self) -> dict:
        """A JSON-serialisable dict; :meth:`from_dict` inverts it."""
        stem = {"kernel": self.stem.kernel, "width": self.stem.width,
                "stride": self.stem.stride, "pool": self.stem.pool}
        # Keys added since the first version appear only when they differ from
        # what a dict without them means, so every older spec's dict is unchanged.
        if self.stem.downsample != 1:
            stem["downsample"] = self.stem.downsample
        d = {
            "input_shape": list(self.input_shape),
            "n_classes": self.n_classes,
            "stem": stem,
            "stages": [{"width": s.width, "blocks": list(s.blocks), "transition": s.transition}
                       for s in self.stages],
            "head": self.head,
        }
        if self.layout == "1d":
            d["layout"] = "1d"
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Architecture:
        """Build (and validate) a spec from :meth:`to_dict` output.

        Parameters
        ----------
        d : dict
            As returned by :meth:`to_dict` (also after a JSON round trip).
            Without a ``"layout"`` key the layout is ``"2d"`` (dicts written
            before 1-D networks existed).

        Returns
        -------
        Architecture
        """
        if not isinstance(d, dict):
            raise ValueError(f"expected a dict, got {type(d).__name__}")
        missing = {"input_shape", "n_classes", "stem", "stages"} - set(d)
        if missing:
            raise ValueError(f"architecture dict lacks {sorted(missing)}")
        try:
            stem = Stem(**d["stem"])
            stages = tuple(Stage(s["width"], tuple(s.get("blocks", ())), bool(s.get("transition", False)))
                           for s in d["stages"])
        except (TypeError, KeyError) as exc:
            raise ValueError(f"malformed architecture dict: {exc}") from None
        return cls(tuple(d["input_shape"]), d["n_classes"], stem, stages,
                   d.get("head", "flatten"), d.get("layout", "2d"))

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        """Build a spec from :meth:`to_json` output.

        Parameters
        ----------
        text : str
            JSON written by :meth:`to_json`.

        Returns
        -------
        Architecture
        """
        return cls.from_dict(json.loads(text))

    def build(self, generator=None):
        """A freshly initialised ``torch.nn.Module`` for this spec.

        Parameters
        ----------
        generator : torch.Generator, optional
            Drives the weight init (for reproducible builds).
        """
        from .network import ResBuilderNet

        return ResBuilderNet(self, generator=generator)

    # -------------------------------------------------------------- display
    def summary(self) -> str:
        """One line: input downsampling, stem kernel/width, blocks per stage, FLOPs."""
        parts = []
        for s, st in enumerate(self.stages):
            blocks = ",".join(str(m) for m in st.blocks) or "-"
            parts.append(f"{st.width}[{blocks}]")
        kh, kw = self.window(self.stem.kernel)
        pre = ""
        if self.stem.downsample > 1:
            fh, fw = self.window(self.stem.downsample)
            pre = f"avgpool {fh}x{fw} > "
        return (f"{pre}stem {kh}x{kw}/{self.stem.width} | "
                + " > ".join(parts) + f" | {self.head} | {self.flops():,} FLOPs")

    def __str__(self) -> str:
        rows = [("layer", "kind", "k", "in", "out", "size", "FLOPs", "params")]
        for L in self.layers():
            k = f"{L.kernel[0]}x{L.kernel[1]}" if L.kind != "dense" else ""
            rows.append((L.name, L.kind, k,
                         str(L.in_channels), str(L.out_channels),
                         f"{L.out_hw[0]}x{L.out_hw[1]}" if L.kind != "dense" else "",
                         f"{L.flops:,}", f"{L.params:,}"))
        rows.append(("total", "", "", "", "", "", f"{self.flops():,}", f"{self.n_params():,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        c, h, w = self.input_shape
        kind = ", 1-D" if self.layout == "1d" else ""
        head = (f"Architecture(input {c}x{h}x{w}{kind}, {self.n_classes} classes, "
                f"{self.n_blocks} blocks, {self.n_stages} stages)")
        lines = [head]
        for i, r in enumerate(rows):
            lines.append("  ".join(x.ljust(widths[j]) if j < 2 else x.rjust(widths[j])
                                   for j, x in enumerate(r)).rstrip())
            if i == 0 or i == len(rows) - 2:
                lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
        return "\n".join(lines)


def _is_intlike(v) -> bool:
    try:
        return int(v) == v and not isinstance(v, bool)
    except (TypeError, ValueError, OverflowError):
        return False


def _default_layout(shape) -> str:
    """``"1d"`` when exactly one of H, W is 1 (a signal), else ``"2d"``."""
    _, h, w = shape
    return "1d" if (h == 1) != (w == 1) else "2d"


def _shape3(shape) -> tuple[int, int, int]:
    shape = tuple(int(x) for x in shape)
    if len(shape) == 2:
        shape = (1,) + shape
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W) or (H, W), got {shape!r}")
    return shape
