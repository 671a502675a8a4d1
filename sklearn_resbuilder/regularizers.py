"""The two penalties of ResBuilder's loss (paper eq. 5) and what the search reads off them.

- :func:`morphnet_penalty` -- MorphNet's FLOP regularizer G_M (eq. 1-2) in the
  GammaFlops form of google-research/morph-net: per conv or dense op
  ``reg = coeff * (A_in * sum r_out + A_out * sum r_in)`` and
  ``cost = coeff * A_in * A_out`` with ``coeff = 2 H_out W_out kh kw`` (a conv:
  the real kernel area, 3 for the ``1 x 3`` convs of a 1-D network) or
  ``2 * positions`` (the dense head), ``r = |gamma|`` of the BN producing those
  channels and ``A`` the alive counts (|gamma| > tau_M, no gradient). Channels
  added into one residual stream are one group: score = max over the group's
  BNs, alive if alive in any (docs/architecture.md §5.4).
- :func:`layer_lasso_penalty` -- LayerLasso G_Lambda (eq. 3) and
  :func:`block_scores` -- the deletion score of eq. 6. Both are measured on the
  block's BN gates instead of raw conv weights: a conv followed by BN is
  scale-free, so an L1 on (or a threshold of) its raw weights says nothing
  about what the block does (docs/architecture.md §5.2; docs/algorithm.md).
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F

from .architecture import Architecture
from .network import ResBuilderNet


def _group_tensors(net: ResBuilderNet, gamma_threshold: float):
    """Score vector ``r`` (with grad) and alive count ``A`` of every channel group."""
    groups = {}
    for g, bns in enumerate(net.stream_bns()):
        r = torch.stack([bn.weight.abs() for bn in bns]).amax(0) if len(bns) > 1 else bns[0].weight.abs()
        groups[("stream", g)] = r
    alive = {k: int((r.detach() > gamma_threshold).sum()) for k, r in groups.items()}
    for (s, b), blk in net.blocks():
        r = blk.bn1.weight.abs()
        groups[("mid", s, b)] = r
        # BN2 cancels any common scale of layer 1 (BN2(a z) = BN2(z)), so an
        # absolute threshold on gamma_1 is meaningless: a middle channel is
        # alive relative to the block's largest one.
        rd = r.detach()
        alive[("mid", s, b)] = int((rd > gamma_threshold * rd.max()).sum())
    return groups, alive


@functools.lru_cache(maxsize=256)
def _ops(arch: Architecture):
    """``(coeff, in_group, out_group)`` of every conv/dense op (cached per spec).

    ``coeff`` is the op's FLOPs (eq. 2's ``C_j`` from :meth:`Architecture.layers`,
    with the layer's real kernel area ``kh kw``) per (input, output) channel pair.
    """
    widths = {("stream", g): w for g, w in enumerate(arch.group_widths())}
    widths.update({("mid", s, b): m for s, st in enumerate(arch.stages)
                   for b, m in enumerate(st.blocks)})
    widths.update({"image": arch.input_shape[0], "logits": arch.n_classes})
    # coeff: FLOPs per (input channel, output channel) pair of the op.
    return tuple((L.flops // (widths[L.in_group] * widths[L.out_group]), L.in_group, L.out_group)
                 for L in arch.layers() if L.kind != "pool")


@functools.lru_cache(maxsize=256)
def _block_flops(arch: Architecture):
    flops = {L.name: L.flops for L in arch.layers()}
    return {(s, b): (flops[f"stage{s}.block{b}.conv1"], flops[f"stage{s}.block{b}.conv2"])
            for s, b in arch.block_ids()}


def morphnet_penalty(net: ResBuilderNet, gamma_threshold: float):
    """MorphNet's G_M (paper eq. 1-2) and the alive-channel FLOP cost.

    Parameters
    ----------
    net : ResBuilderNet
    gamma_threshold : float
        tau_M: a channel is alive if |gamma| > tau_M.

    Returns
    -------
    reg : torch.Tensor
        Scalar, differentiable w.r.t. the BN gammas.
    cost : int
        ``sum coeff * A_in * A_out``: the FLOPs of the network that keeps only
        the alive channels (equals ``Architecture.flops()`` when all are alive).
    """
    r, alive = _group_tensors(net, gamma_threshold)
    arch = net.architecture
    alive.update({"image": arch.input_shape[0], "logits": arch.n_classes})
    reg = net.head.weight.new_zeros(())
    cost = 0
    for coeff, i, o in _ops(arch):
        a_in, a_out = alive[i], alive[o]
        cost += coeff * a_in * a_out
        # The image and the logits have no gamma: their sum r is 0.
        if o in r:
            reg = reg + coeff * a_in * r[o].sum()
        if i in r:
            reg = reg + coeff * a_out * r[i].sum()
    return reg, cost


def alive_widths(net: ResBuilderNet, gamma_threshold: float):
    """Widths the MorphNet step keeps (Alg. 1, step 2): alive channels per group.

    Returns
    -------
    group_widths : list of int
        Alive channels per stream group (0 means the stream collapsed).
    block_widths : list of list of int
        Alive middle channels per block (0 means the block disappears).
    """
    _, alive = _group_tensors(net, gamma_threshold)
    arch = net.architecture
    groups = [alive[("stream", g)] for g in range(arch.n_groups)]
    blocks = [[alive[("mid", s, b)] for b in range(len(st.blocks))]
              for s, st in enumerate(arch.stages)]
    return groups, blocks


def _gate(blk):
    """The block's gate, differentiable: ``mean(|gamma_2| + relu(beta_2))``.

    The branch is ``ReLU(gamma_2 z + beta_2)`` with z of unit variance (BN2 in
    training), so the gate bounds the branch's mean output in units of a
    normalised activation. It is the only scale of the block that matters:
    layer 1 and both convs are followed by BN, which cancels their scale.
    """
    return (blk.bn2.weight.abs() + F.relu(blk.bn2.bias)).mean()


def layer_lasso_penalty(net: ResBuilderNet):
    """LayerLasso G_Lambda (eq. 3), measured on the block's gate.

    ``sum over blocks of (C_1 + C_2) * gate`` with the gate of :func:`_gate` and
    ``C_j`` the FLOPs of the block's two convs. Raw conv weights (eq. 3) are
    scale-free under BN, so their L1 says nothing about what the block does;
    the gate does. The FLOP weight gives lambda_Lambda the same units as
    lambda_M (FLOPs), which makes the paper's default 1e-8 act: an unweighted
    L1 at 1e-8 is ~1e-8 of the data gradient and never deletes a block. Stem,
    transitions and head are not penalised (paper §3.2).
    """
    flops = _block_flops(net.architecture)
    total = net.head.weight.new_zeros(())
    for sb, blk in net.blocks():
        c1, c2 = flops[sb]
        total = total + (c1 + c2) * _gate(blk)
    return total


@torch.no_grad()
def block_scores(net: ResBuilderNet) -> dict:
    """Deletion score of every block, ``{(stage, index): score}`` (eq. 6, mean form).

    A block is deleted when its score is under tau_Lambda. The score is the
    block's gate (:func:`_gate`), a per-parameter mean (docs/architecture.md §5.3) that
    bounds the branch's output. Eq. 6 asks whether *any* layer is under the
    threshold; under BN only the last one can say so: rescaling layer 1 or
    either conv leaves the block's function and this score unchanged.
    """
    return {sb: float(_gate(blk)) for sb, blk in net.blocks()}


def blocks_to_remove(net: ResBuilderNet, lasso_threshold: float = 1e-3) -> list:
    """Blocks whose deletion score is under ``lasso_threshold`` (greedy out, eq. 6)."""
    return [sb for sb, score in block_scores(net).items() if score < lasso_threshold]


# ------------------------------------------------------------ proximal update
#: Image area (pixels) at which lambda keeps the paper's meaning: CIFAR's 32x32,
#: where the defaults were tuned. Both penalties are FLOP-weighted and FLOPs
#: grow with H*W; dividing by H*W / REFERENCE_PIXELS makes one lambda act the
#: same at 8x8, 28x28 and 112x112 (docs/algorithm.md, "Penalties under Adam").
#: H*W is the stem's input, after ``Stem.downsample``: the maps FLOPs pay for.
REFERENCE_PIXELS = 32 * 32


def penalty_scale(arch: Architecture) -> float:
    """``REFERENCE_PIXELS / (H * W)``: the size normalisation of both penalties.

    ``H x W`` is what the stem conv sees (:meth:`Architecture.stem_input_hw`):
    the image, or the image after the stem's average downsampling, so a
    112 px image pooled to 28 px is penalised like a 28 px one.
    """
    h, w = arch.stem_input_hw()
    return REFERENCE_PIXELS / (h * w)


def penalty_value(net: ResBuilderNet, morph_strength: float, lasso_strength: float,
                  gamma_threshold: float, flop_floor: float = 0.0) -> torch.Tensor:
    """``scale * (lambda_M G_M + lambda_Lambda G_Lambda)`` (paper eq. 5's penalty terms).

    Differentiable w.r.t. the BN parameters it reads; ``scale`` is
    :func:`penalty_scale`. :func:`proximal_step` applies exactly this term.
    ``flop_floor``: the MorphNet term is left out while the alive channels
    cost at most this many FLOPs (0: always on).
    """
    total = net.head.weight.new_zeros(())
    if morph_strength:
        reg, cost = morphnet_penalty(net, gamma_threshold)
        if cost > flop_floor:
            total = total + morph_strength * reg
    if lasso_strength:
        total = total + lasso_strength * layer_lasso_penalty(net)
    return total * penalty_scale(net.architecture)


def _penalised_params(net: ResBuilderNet) -> list:
    """Every BN gamma, and each block's last-BN beta (the gate's ``relu(beta_2)``)."""
    params = [m.weight for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    return params + [blk.bn2.bias for _, blk in net.blocks()]


#: Halvings of the proximal step that would cut a network below its FLOP
#: floor: the step taken is within 2**-12 of the largest that keeps it.
FLOOR_BISECTIONS = 12


def proximal_step(net: ResBuilderNet, step_size: float, morph_strength: float,
                  lasso_strength: float, gamma_threshold: float,
                  flop_floor: float = 0.0) -> None:
    """Soft-threshold the BN parameters by the penalty term (decoupled L1).

    Both penalties are positively homogeneous in ``|gamma|`` (and ``relu(beta_2)``),
    so each parameter ``p`` carries an L1 weight ``w_p = |d penalty / d p|``.
    After the optimizer's step, ``p <- sign(p) max(|p| - step_size * w_p, 0)``:
    the proximal operator of ``step_size * penalty``. Like AdamW's decoupled
    weight decay, it bypasses Adam's per-parameter normalisation, which would
    otherwise turn any dominating penalty into the same ~lr drift for every
    channel (docs/architecture.md §5.6): here a channel shrinks in proportion to its FLOP
    cost, and one the data does not defend reaches exactly 0.

    With a ``flop_floor``, MorphNet's term is off while the alive channels
    cost at most the floor, and a step that would take them below it is cut
    to the largest fraction that does not: an over-budget network shrinks to
    its budget instead of losing a whole stream.

    Parameters
    ----------
    net : ResBuilderNet
    step_size : float
        ``defaults.PROXIMAL_LR_RATIO * lr`` in the trainer (the optimizer's current lr,
        so a schedule applies to the penalties too).
    morph_strength, lasso_strength, gamma_threshold, flop_floor : float
        lambda_M, lambda_Lambda, tau_M and the floor, as in :func:`penalty_value`.
    """
    if not (morph_strength or lasso_strength) or step_size <= 0:
        return
    params = _penalised_params(net)
    with torch.enable_grad():
        total = penalty_value(net, morph_strength, lasso_strength, gamma_threshold,
                              flop_floor)
        if not total.requires_grad:  # the floor left no term with a gradient
            return
        grads = torch.autograd.grad(total, params, allow_unused=True)
    pairs = [(p, g) for p, g in zip(params, grads) if g is not None]
    with torch.no_grad():
        before = [p.detach().clone() for p, _ in pairs] if flop_floor else None

        def shrink(fraction):
            for (p, g), old in zip(pairs, before or [p.detach() for p, _ in pairs]):
                p.copy_(torch.sign(old) * (old.abs() - fraction * step_size * g.abs()).clamp(min=0))

        shrink(1.0)
        if flop_floor and morphnet_penalty(net, gamma_threshold)[1] < flop_floor:
            # The whole step would cut the network below the floor (one step
            # can kill a whole stream of a far-over-budget net): take the
            # largest fraction of it that keeps the floor (bisection; the
            # alive cost only falls as the fraction grows, and 0 keeps it).
            lo, hi = 0.0, 1.0
            for _ in range(FLOOR_BISECTIONS):
                mid = (lo + hi) / 2
                shrink(mid)
                if morphnet_penalty(net, gamma_threshold)[1] >= flop_floor:
                    lo = mid
                else:
                    hi = mid
            shrink(lo)
