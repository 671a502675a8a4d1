"""The two penalties of ResBuilder's loss (paper eq. 5) and what the search reads off them.

- :func:`morphnet_penalty` -- MorphNet's FLOP regularizer G_M (eq. 1-2) in the
  GammaFlops form of google-research/morph-net: per conv or dense op
  ``reg = coeff * (A_in * sum r_out + A_out * sum r_in)`` and
  ``cost = coeff * A_in * A_out`` with ``coeff = 2 H_out W_out k^2`` (a conv) or
  ``2 * positions`` (the dense head), ``r = |gamma|`` of the BN producing those
  channels and ``A`` the alive counts (|gamma| > tau_M, no gradient). Channels
  added into one residual stream are one group: score = max over the group's
  BNs, alive if alive in any (DESIGN.md §3.4).
- :func:`layer_lasso_penalty` -- LayerLasso G_Lambda (eq. 3) and
  :func:`block_scores` -- the deletion score of eq. 6. Both are measured on the
  block's BN gates instead of raw conv weights: a conv followed by BN is
  scale-free, so an L1 on (or a threshold of) its raw weights says nothing
  about what the block does (DESIGN.md §3.2; docs/algorithm.md).
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
    for (s, b), blk in net.blocks():
        groups[("mid", s, b)] = blk.bn1.weight.abs()
    alive = {k: int((r.detach() > gamma_threshold).sum()) for k, r in groups.items()}
    return groups, alive


@functools.lru_cache(maxsize=256)
def _ops(arch: Architecture):
    """``(coeff, in_group, out_group)`` of every conv/dense op (cached per spec)."""
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


def morphnet_penalty(net: ResBuilderNet, gamma_threshold: float = 1e-2):
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


def alive_widths(net: ResBuilderNet, gamma_threshold: float = 1e-2):
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


def _gate_scores(blk):
    """Per-layer gate scores of a block, differentiable.

    ``s2 = mean(|gamma_2| + relu(beta_2))`` bounds the branch's mean output in
    units of a normalised activation (the branch is ``ReLU(gamma_2 z + beta_2)``
    with z of unit variance). ``s1 = mean(|gamma_1| + relu(beta_1))`` does the
    same for the first layer; if it is ~0 the second conv sees ~0 and the branch
    outputs only ``relu(beta_2)``.
    """
    s1 = (blk.bn1.weight.abs() + F.relu(blk.bn1.bias)).mean()
    s2 = (blk.bn2.weight.abs() + F.relu(blk.bn2.bias)).mean()
    return s1, s2


def layer_lasso_penalty(net: ResBuilderNet):
    """LayerLasso G_Lambda (eq. 3), measured on the block's BN gates.

    ``sum over blocks and their two layers of C_j * s_j`` with ``s_j`` the
    layer's mean gate (:func:`_gate_scores`) and ``C_j`` its FLOPs. The FLOP
    weight gives lambda_Lambda the same units as lambda_M (FLOPs), which makes
    the paper's default 1e-8 act: an unweighted L1 at 1e-8 is ~1e-5 of the data
    gradient and never deletes a block. Stem, transitions and head are not
    penalised (paper §3.2).
    """
    flops = _block_flops(net.architecture)
    total = net.head.weight.new_zeros(())
    for sb, blk in net.blocks():
        s1, s2 = _gate_scores(blk)
        c1, c2 = flops[sb]
        total = total + c1 * s1 + c2 * s2
    return total


@torch.no_grad()
def block_scores(net: ResBuilderNet) -> dict:
    """Deletion score of every block, ``{(stage, index): score}`` (eq. 6, mean form).

    A block is deleted when its score is under tau_Lambda. The score is
    ``min(s2, s1 + mean relu(beta_2))``: an upper estimate of the branch's mean
    output whichever of its two layers is (nearly) dead -- eq. 6's "any layer
    under the threshold" made meaningful under BN. It is a per-parameter mean
    (DESIGN.md §3.3) and invariant to rescaling a conv that a BN follows.
    """
    out = {}
    for sb, blk in net.blocks():
        s1, s2 = _gate_scores(blk)
        out[sb] = float(torch.minimum(s2, s1 + F.relu(blk.bn2.bias).mean()))
    return out


def blocks_to_remove(net: ResBuilderNet, lasso_threshold: float = 1e-3) -> list:
    """Blocks whose deletion score is under ``lasso_threshold`` (greedy out, eq. 6)."""
    return [sb for sb, score in block_scores(net).items() if score < lasso_threshold]
