"""The torch module built from an :class:`Architecture`, and weight-preserving surgery.

Block (paper §3): ``x_l = x_{l-1} + ReLU(BN(conv(ReLU(BN(conv(x_{l-1}))))))``.
Every layer is 2-D (``Conv2d``, ``BatchNorm2d``, ``MaxPool2d``); a 1-D network
(``Architecture.layout == "1d"``) uses ``1 x k`` windows (``k x 1`` for images
one pixel wide), so surgery, export and channels-last work unchanged.

Surgery returns a *new* module from an old one; every weight that still has a
place in the new architecture is copied:

- :func:`insert_block` adds a near-identity block (paper §3.1, with the fix of
  docs/architecture.md §5.1: BN cancels a small conv init, so the new block is made small
  through its last BN's gamma, random and non-zero);
- :func:`remove_blocks` drops blocks (paper eq. 6's "greedy out");
- :func:`resize` changes widths (MorphNet step): channels are kept by largest
  |gamma|, channels added into one residual stream are kept or dropped together,
  and new channels are copies of kept ones whose readers split the original's
  weights between them (Net2WiderNet, Chen et al. 2016), so growing preserves
  the function exactly and every new channel gets data gradient at once.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from .architecture import Architecture
from . import defaults



def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class ConvBN(nn.Module):
    """``ReLU(BN(conv(x)))`` with no conv bias (BN's beta replaces it).

    ``kernel`` and ``stride`` are ints (square) or ``(kh, kw)`` pairs; padding
    is ``k // 2`` per axis ("same" for odd kernels at stride 1).
    """

    def __init__(self, c_in: int, c_out: int, kernel, stride=1):
        super().__init__()
        kh, kw = _pair(kernel)
        self.conv = nn.Conv2d(c_in, c_out, (kh, kw), _pair(stride), (kh // 2, kw // 2),
                              bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        # In place: BN's backward needs its input, not its output (7 % faster
        # training on CPU, one fewer activation to allocate).
        return F.relu(self.bn(self.conv(x)), inplace=True)


class ResidualBlock(nn.Module):
    """The paper's residual block with stream width ``width`` and middle width ``mid``.

    ``kernel``: the convs' window, ``(3, 3)`` (2-D) or ``(1, 3)`` / ``(3, 1)`` (1-D).
    """

    def __init__(self, width: int, mid: int, kernel=(3, 3)):
        super().__init__()
        kh, kw = _pair(kernel)
        pad = (kh // 2, kw // 2)
        self.conv1 = nn.Conv2d(width, mid, (kh, kw), 1, pad, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, width, (kh, kw), 1, pad, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def branch(self, x):
        """The residual branch alone (what the block adds to the stream)."""
        h = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(h)), inplace=True)

    def forward(self, x):
        return x + self.branch(x)


class StageModule(nn.Module):
    """``[maxpool 2] -> [1x1 transition] -> blocks``.

    ``kernel`` / ``pool_window``: the blocks' conv window and the pooling
    window, ``(3, 3)`` / ``(2, 2)`` in 2-D, ``(1, 3)`` / ``(1, 2)`` in 1-D.
    """

    def __init__(self, in_width: int, width: int, blocks, pool: bool, transition: bool,
                 kernel=(3, 3), pool_window=(2, 2)):
        super().__init__()
        self.pool = nn.MaxPool2d(_pair(pool_window)) if pool else nn.Identity()
        self.transition = ConvBN(in_width, width, 1) if transition else None
        self.blocks = nn.ModuleList(ResidualBlock(width, m, kernel) for m in blocks)

    def forward(self, x):
        x = self.pool(x)
        if self.transition is not None:
            x = self.transition(x)
        for block in self.blocks:
            x = block(x)
        return x


class ResBuilderNet(nn.Module):
    """A ResNet built from an :class:`Architecture` (kept as ``.architecture``).

    Parameters
    ----------
    architecture : Architecture
    generator : torch.Generator, optional
        Drives the weight init, for reproducible builds.
    """

    def __init__(self, architecture: Architecture, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(architecture, Architecture):
            raise ValueError(f"expected an Architecture, got {type(architecture).__name__}")
        a = architecture
        self.architecture = a
        # torch's layers draw a default init from the global RNG as they are
        # built; reset_parameters replaces it, so keep the caller's RNG as it was.
        with torch.random.fork_rng(devices=[]):
            # Parameter-free, so state_dict keys are those of nets without it.
            self.downsample = (nn.AvgPool2d(a.window(a.stem.downsample))
                               if a.stem.downsample > 1 else nn.Identity())
            self.stem = ConvBN(a.input_shape[0], a.stem.width, a.window(a.stem.kernel),
                               a.window(a.stem.stride))
            self.stem_pool = nn.MaxPool2d(a.window(2)) if a.stem.pool else nn.Identity()
            stages, prev = [], a.stem.width
            for s, st in enumerate(a.stages):
                stages.append(StageModule(prev, st.width, st.blocks, s > 0, st.transition,
                                          a.window(3), a.window(2)))
                prev = st.width
            self.stages = nn.ModuleList(stages)
            h, w = a.stage_hw()[-1]
            self.flatten = a.head == "flatten"
            self.head = nn.Linear(prev * h * w if self.flatten else prev, a.n_classes)
        self.reset_parameters(generator)

    def __setstate__(self, state):
        super().__setstate__(state)
        if "downsample" not in self._modules:  # pickled before Stem.downsample existed
            self._modules["downsample"] = nn.Identity()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Kaiming-normal convs (fan-out), BN gamma 1 beta 0, uniform dense layer."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu",
                                        generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.reset_running_stats()
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.in_features)
                nn.init.uniform_(m.weight, -bound, bound, generator=generator)
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)

    def forward(self, x):
        x = self.stem_pool(self.stem(self.downsample(x)))
        for stage in self.stages:
            x = stage(x)
        x = torch.flatten(x, 1) if self.flatten else x.mean(dim=(2, 3))
        return self.head(x)

    # -------------------------------------------------------------- lookups
    def block(self, stage: int, index: int) -> ResidualBlock:
        return self.stages[stage].blocks[index]

    def blocks(self):
        """``((stage, index), block)`` for every residual block in forward order."""
        for s, st in enumerate(self.stages):
            for b, blk in enumerate(st.blocks):
                yield (s, b), blk

    def stream_bns(self) -> list[list[nn.BatchNorm2d]]:
        """BN layers that produce each stream group's channels (docs/architecture.md §5.4).

        Group g: the stem's (g = 0) or the opening transition's BN, plus the last
        BN of every block adding into that stream.
        """
        groups = self.architecture.stream_groups()
        out: list[list[nn.BatchNorm2d]] = []
        for s, st in enumerate(self.stages):
            if groups[s] == len(out):
                out.append([self.stem.bn if s == 0 else st.transition.bn])
            out[groups[s]].extend(blk.bn2 for blk in st.blocks)
        return out


def _device_dtype(net: nn.Module):
    p = next(net.parameters())
    return p.device, p.dtype


def _split(in_idx: torch.Tensor, rows: int, generator) -> torch.Tensor:
    """``(rows, len(in_idx))`` factors for a reader of channels ``in_idx``.

    An old channel read ``k`` times (it was copied by a grow) gets ``k``
    positive factors per row that sum to 1, so the reader's output is
    unchanged; random per row, so the copies get different gradients and
    grow apart. A channel read once gets factor 1.
    """
    n = len(in_idx)
    counts = torch.bincount(in_idx)
    if n == 0 or int(counts.max()) <= 1:
        return torch.ones(rows, n, device=in_idx.device)
    u = 0.25 + 0.5 * torch.rand(rows, n, generator=generator).to(in_idx.device)
    total = torch.zeros(rows, len(counts), device=in_idx.device).index_add_(1, in_idx, u)
    return u / total[:, in_idx]


def _copy_conv(dst: nn.Conv2d, src: nn.Conv2d, out_idx, in_idx, generator=None) -> None:
    no, ni = len(out_idx), len(in_idx)
    w = src.weight[out_idx][:, in_idx]
    dst.weight[:no, :ni] = w * _split(in_idx, no, generator).to(w.dtype)[:, :, None, None]
    # Input channels beyond in_idx do not exist in the source: read as zero.
    dst.weight[:no, ni:] = 0


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, idx) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name)[:len(idx)] = getattr(src, name)[idx]
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


def _copy_convbn(dst: ConvBN, src: ConvBN, out_idx, in_idx, generator=None) -> None:
    _copy_conv(dst.conv, src.conv, out_idx, in_idx, generator)
    _copy_bn(dst.bn, src.bn, out_idx)


def _transplant(old: ResBuilderNet, arch: Architecture, block_src: dict,
                group_keep: list, mid_keep: dict, generator) -> ResBuilderNet:
    """Build ``arch`` fresh and copy every surviving weight of ``old`` into it.

    block_src: new (stage, index) -> old (stage, index); blocks absent are new.
    group_keep[g]: old channel indices of stream group g, in new order; an
    index listed twice is a copy (:func:`_split` divides its readers' weights).
    mid_keep[new (s, b)]: old middle-channel indices of that block (likewise).
    """
    device, dtype = _device_dtype(old)
    if generator is None:
        # Never the global RNG: a fit must not change the caller's torch state.
        generator = torch.Generator().manual_seed(0)
    new = ResBuilderNet(arch, generator=generator).to(device=device, dtype=dtype)
    new.train(old.training)
    groups = arch.stream_groups()
    c_in = torch.arange(arch.input_shape[0], device=device)
    with torch.no_grad():
        _copy_convbn(new.stem, old.stem, group_keep[0], c_in)
        for s, st in enumerate(new.stages):
            g = group_keep[groups[s]]
            if st.transition is not None:
                _copy_convbn(st.transition, old.stages[s].transition, g,
                             group_keep[groups[s - 1]], generator)
            for b, blk in enumerate(st.blocks):
                src = block_src.get((s, b))
                if src is None:
                    continue
                o = old.block(*src)
                m = mid_keep[(s, b)]
                _copy_conv(blk.conv1, o.conv1, m, g, generator)
                _copy_bn(blk.bn1, o.bn1, m)
                _copy_conv(blk.conv2, o.conv2, g, m, generator)
                _copy_bn(blk.bn2, o.bn2, g)
        # Head: each stream channel owns h*w consecutive inputs when flattened.
        h, w = arch.stage_hw()[-1]
        hw = h * w if new.flatten else 1
        keep = group_keep[-1]
        old_w = old.head.weight.view(arch.n_classes, -1, hw)
        new_w = new.head.weight.view(arch.n_classes, -1, hw)
        factor = _split(keep, arch.n_classes, generator).to(old_w.dtype)[:, :, None]
        new_w[:, : len(keep)] = old_w[:, keep] * factor
        new_w[:, len(keep):] = 0
        new.head.bias.copy_(old.head.bias)
    return new


def _identity_maps(arch: Architecture, device):
    groups = [torch.arange(w, device=device) for w in arch.group_widths()]
    mids = {(s, b): torch.arange(m, device=device)
            for s, st in enumerate(arch.stages) for b, m in enumerate(st.blocks)}
    return groups, mids


def insert_block(net: ResBuilderNet, stage: int, position: int, *,
                 gamma_scale: float = defaults.INSERT_GAMMA,
                 generator: torch.Generator | None = None) -> ResBuilderNet:
    """A new module with a near-identity block at ``position`` of ``stage``.

    The new block's convs get the usual fresh init; its last BN's gamma is
    random in ``gamma_scale * [0.25, 0.75)``, so the branch adds ~1 % of a
    normalised activation (BN cancels any conv scale, docs/architecture.md §5.1). Not zero:
    with the ReLU after that BN, gamma = beta = 0 would give the block no
    gradient at all.
    """
    arch = net.architecture.insert_block(stage, position)
    device, _ = _device_dtype(net)
    block_src = {}
    for (s, b) in net.architecture.block_ids():
        block_src[(s, b + 1 if s == stage and b >= position else b)] = (s, b)
    groups, mids = _identity_maps(arch, device)
    new = _transplant(net, arch, block_src, groups, mids, generator)
    with torch.no_grad():
        bn2 = new.block(stage, position).bn2
        u = torch.rand(bn2.weight.shape, generator=generator).to(device)
        bn2.weight.copy_(gamma_scale * (0.25 + 0.5 * u))
    return new


def remove_blocks(net: ResBuilderNet, blocks) -> ResBuilderNet:
    """A new module without ``blocks`` (``(stage, index)`` pairs); all else copied."""
    blocks = {tuple(b) for b in blocks}
    arch = net.architecture.remove_blocks(blocks)
    device, _ = _device_dtype(net)
    block_src, new_index = {}, {}
    for (s, b) in net.architecture.block_ids():
        if (s, b) in blocks:
            continue
        nb = new_index.get(s, 0)
        block_src[(s, nb)] = (s, b)
        new_index[s] = nb + 1
    groups, mids = _identity_maps(arch, device)
    return _transplant(net, arch, block_src, groups, mids, None)


def _top_channels(scores: torch.Tensor, k: int, generator=None) -> torch.Tensor:
    """Indices of the ``k`` largest scores, in their original order; beyond
    ``scores.numel()``, copies of uniformly drawn channels (appended)."""
    n = scores.numel()
    if k <= n:
        idx = torch.topk(scores, k, sorted=False).indices if k < n else torch.arange(
            n, device=scores.device)
        return torch.sort(idx).values
    extra = torch.randint(0, n, (k - n,), generator=generator).to(scores.device)
    return torch.cat([torch.arange(n, device=scores.device), extra])


def group_scores(net: ResBuilderNet) -> list[torch.Tensor]:
    """Per stream group, each channel's max |gamma| over the group's BNs (§3.4)."""
    return [torch.stack([bn.weight.detach().abs() for bn in bns]).amax(0)
            for bns in net.stream_bns()]


def resize(net: ResBuilderNet, arch: Architecture, *,
           generator: torch.Generator | None = None) -> ResBuilderNet:
    """A new module with ``arch``'s widths (same topology as ``net``).

    Keeps the channels with the largest |gamma| (a stream group's channels by
    their max over the group, docs/architecture.md §5.4). Added channels are copies of
    uniformly drawn old ones (producer weights and BN copied; every reader's
    weights split between original and copies with random factors summing to
    1, Net2WiderNet), so a grow leaves the function unchanged, and a shrink of
    zero-gamma/zero-beta channels does too. Unlike fresh channels read with
    zero weights, copies get data gradient from the first step: they are not
    the first to die at the next MorphNet step.
    """
    old = net.architecture
    same = (old.input_shape == arch.input_shape and old.n_classes == arch.n_classes
            and old.layout == arch.layout
            and replace(old.stem, width=1) == replace(arch.stem, width=1)
            and old.head == arch.head
            and [len(s.blocks) for s in old.stages] == [len(s.blocks) for s in arch.stages]
            and [s.transition for s in old.stages] == [s.transition for s in arch.stages])
    if not same:
        raise ValueError("resize needs the same topology (stages, blocks, stem, head); "
                         "use insert_block/remove_blocks to change depth")
    groups = [_top_channels(sc, w, generator)
              for sc, w in zip(group_scores(net), arch.group_widths())]
    mids = {}
    for (s, b), blk in net.blocks():
        mids[(s, b)] = _top_channels(blk.bn1.weight.detach().abs(), arch.stages[s].blocks[b],
                                     generator)
    block_src = {sb: sb for sb in old.block_ids()}
    return _transplant(net, arch, block_src, groups, mids, generator)
