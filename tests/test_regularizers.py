"""Tests of :mod:`sklearn_resbuilder.regularizers`: MorphNet's G_M and LayerLasso.

The MorphNet numbers are written out by hand from the GammaFlops formulas of
docs/architecture.md §5.4 (per op ``reg = coeff (A_in sum r_out + A_out sum r_in)``,
``cost = coeff A_in A_out``), not recomputed with the library's helpers.
"""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from sklearn_resbuilder import Architecture, Stage, Stem
from sklearn_resbuilder.network import insert_block
from sklearn_resbuilder.defaults import GAMMA_THRESHOLD, INSERT_GAMMA
from sklearn_resbuilder.regularizers import (
    alive_widths,
    block_scores,
    blocks_to_remove,
    layer_lasso_penalty,
    morphnet_penalty,
)

TAU = GAMMA_THRESHOLD  # MorphNet's alive threshold tau_M (the default)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- MorphNet G_M
def _one_block_net(input_shape=(1, 8, 8)):
    """1x8x8 input, stem 3x3 -> 4 channels, one block (mid 2), avg head, 3 classes.

    Stem BN (stream), block bn1 (mid) and bn2 (stream) get chosen gammas:

    ============  =====  =====  ======  =====
    channel         0      1      2      3
    stem.bn       0.5   -0.3   0.005   0.2
    block bn2    -0.9    0.6  -0.004   0.002
    stream r      0.9    0.6   0.005   0.2     (max |gamma| over the group)
    alive         yes    yes    no     yes     -> A_stream = 3
    block bn1     0.7   -0.005                 -> A_mid = 1
    ============  =====  =====  ======  =====

    Middle channels are alive relative to the block's largest |gamma_1|
    (0.005 < tau * 0.7 = 0.007): BN2 cancels any common scale of layer 1.
    """
    arch = Architecture(input_shape=input_shape, n_classes=3, stem=Stem(3, 4),
                        stages=(Stage(4, (2,)),), head="avg")
    net = arch.build(_gen())
    blk = net.block(0, 0)
    with torch.no_grad():
        net.stem.bn.weight.copy_(torch.tensor([0.5, -0.3, 0.005, 0.2]))
        blk.bn2.weight.copy_(torch.tensor([-0.9, 0.6, -0.004, 0.002]))
        blk.bn1.weight.copy_(torch.tensor([0.7, -0.005]))
    return net


# Hand-derived constants of that net.
COEFF_CONV = 2 * 8 * 8 * 3 * 3  # 2 H_out W_out k^2 = 1152, same for stem, conv1, conv2
COEFF_HEAD = 2                  # avg head: one position
A_IMG, A_S, A_M, A_LOGITS = 1, 3, 1, 3
SUM_R_S = 0.9 + 0.6 + 0.005 + 0.2
SUM_R_M = 0.7 + 0.005


def test_morphnet_penalty_matches_hand_computation():
    net = _one_block_net()
    reg, cost = morphnet_penalty(net, TAU)

    expected_reg = (
        COEFF_CONV * (A_IMG * SUM_R_S + A_S * 0.0)          # stem: image has no gamma
        + COEFF_CONV * (A_S * SUM_R_M + A_M * SUM_R_S)      # conv1: stream -> mid
        + COEFF_CONV * (A_M * SUM_R_S + A_S * SUM_R_M)      # conv2: mid -> stream
        + COEFF_HEAD * (A_S * 0.0 + A_LOGITS * SUM_R_S)     # head: logits have no gamma
    )
    expected_cost = (COEFF_CONV * A_IMG * A_S + COEFF_CONV * A_S * A_M
                     + COEFF_CONV * A_M * A_S + COEFF_HEAD * A_S * A_LOGITS)
    assert expected_cost == 1152 * 3 + 1152 * 3 + 1152 * 3 + 18
    assert reg.ndim == 0
    assert float(reg.detach()) == pytest.approx(expected_reg, rel=1e-6)
    assert isinstance(cost, int)
    assert cost == expected_cost
    # The cost is the FLOPs of the net that keeps only the alive channels.
    assert cost == net.architecture.with_widths([A_S], [[A_M]]).flops()


def test_morphnet_gradient_sign_and_size():
    net = _one_block_net()
    reg, _ = morphnet_penalty(net, TAU)
    reg.backward()
    blk = net.block(0, 0)
    g_stem, g_bn2, g_bn1 = net.stem.bn.weight.grad, blk.bn2.weight.grad, blk.bn1.weight.grad

    # d reg / d r for a stream channel: stem out, conv1 in, conv2 out, head in.
    d_stream = COEFF_CONV * A_IMG + COEFF_CONV * A_M + COEFF_CONV * A_M + COEFF_HEAD * A_LOGITS
    # ... for a mid channel: conv1 out (times A_in = A_stream), conv2 in (times A_out = A_stream).
    d_mid = COEFF_CONV * A_S + COEFF_CONV * A_S
    assert d_stream == 1152 + 1152 + 1152 + 6 and d_mid == 2 * 1152 * 3

    # Mid channels: sign(gamma) * d_mid, also for the dead channel 1 (gamma -0.005).
    torch.testing.assert_close(g_bn1, torch.tensor([d_mid, -d_mid], dtype=torch.float32))
    # Stream channels: only the group's max member feels the penalty.
    #   ch 0: bn2 (-0.9) is max -> bn2 gets -d, stem 0
    #   ch 1: bn2 (0.6) beats stem (-0.3) -> bn2 gets +d
    #   ch 2: stem (0.005) beats bn2 (-0.004), dead but still penalised
    #   ch 3: stem (0.2) beats bn2 (0.002)
    torch.testing.assert_close(g_bn2, torch.tensor([-d_stream, d_stream, 0.0, 0.0]))
    torch.testing.assert_close(g_stem, torch.tensor([0.0, 0.0, d_stream, d_stream]))
    # Sign rule, stated generally: grad * gamma >= 0 everywhere (pushes |gamma| down).
    for bn in (net.stem.bn, blk.bn1, blk.bn2):
        assert (bn.weight.grad * bn.weight.detach() >= 0).all()
    # Nothing but BN gammas is touched.
    for name, p in net.named_parameters():
        if not (name.endswith("bn.weight") or name.endswith("bn1.weight")
                or name.endswith("bn2.weight")):
            assert p.grad is None or not p.grad.any(), name


def test_channel_dead_in_a_block_but_alive_in_the_stem_is_alive():
    """Stream channels are alive if alive in ANY member of the group (docs/architecture.md §5.4)."""
    # minimal: no transitions, so the stem and all three stages share stream group 0.
    arch = Architecture.minimal((1, 8, 8), 5, width=4).insert_block(0, 0).insert_block(2, 0)
    net = arch.build(_gen())
    b0, b2 = net.block(0, 0), net.block(2, 0)
    with torch.no_grad():
        net.stem.bn.weight.copy_(torch.tensor([1.0, 0.5, 0.001, 0.001]))
        b0.bn2.weight.copy_(torch.tensor([1.0, 0.001, 0.001, 0.001]))   # ch 1 dead here
        b2.bn2.weight.copy_(torch.tensor([1.0, 0.001, 0.5, 0.001]))     # ch 2 alive only here
    groups, blocks = alive_widths(net, TAU)
    assert groups == [3]          # channels 0, 1, 2; only channel 3 is dead everywhere
    assert blocks == [[4], [], [4]]
    _, cost = morphnet_penalty(net, TAU)
    assert cost == arch.with_widths([3], [[4], [], [4]]).flops()

    # Killing channel 1 in the stem too makes it dead: the cost drops accordingly.
    with torch.no_grad():
        net.stem.bn.weight[1] = 0.001
    assert alive_widths(net, TAU)[0] == [2]
    _, cost2 = morphnet_penalty(net, TAU)
    assert cost2 == arch.with_widths([2], [[4], [], [4]]).flops() < cost


def _random_arch(rng: random.Random) -> Architecture:
    c = rng.choice([1, 3])
    size = rng.choice([8, 12, 16])
    stem_w = rng.randint(2, 9)
    stages, prev = [], stem_w
    for s in range(rng.randint(1, 3)):
        transition = s > 0 and rng.random() < 0.5
        width = rng.randint(2, 9) if transition else prev
        blocks = tuple(rng.randint(1, 7) for _ in range(rng.randint(0, 3)))
        stages.append(Stage(width, blocks, transition))
        prev = width
    stride = rng.choice([1, 1, 2]) if size >= 12 else 1
    return Architecture((c, size, size), rng.randint(2, 6),
                        Stem(rng.choice([1, 3, 5]), stem_w, stride, False),
                        tuple(stages), rng.choice(["flatten", "avg"]))


PRESETS = [
    Architecture.minimal((1, 28, 28), 10),
    Architecture.minimal((3, 32, 32), 10).insert_block(0, 0).insert_block(1, 0, width=5),
    Architecture.resnet18((3, 32, 32), 10),
    Architecture.resnet18((3, 64, 64), 7),   # ImageNet stem: 7x7 / 2 + pool
    Architecture.minimal((2, 1, 40), 10).insert_block(0, 0).insert_block(3, 0),  # 1-D
    Architecture.resnet18((1, 50, 1), 4).scaled(0.25),                       # 1-D, tall
    Architecture.minimal((3, 112, 112), 10).insert_block(1, 0),              # avg-pooled input
    Architecture.minimal((1, 27, 45), 10).insert_block(2, 0),                # non-square
]
RANDOM = [_random_arch(random.Random(seed)) for seed in range(6)]


@pytest.mark.parametrize("arch", PRESETS + RANDOM, ids=lambda a: a.summary())
def test_cost_equals_flops_when_all_channels_alive(arch):
    net = arch.build(_gen())   # all gammas 1 > tau
    reg, cost = morphnet_penalty(net, TAU)
    assert cost == arch.flops()
    assert torch.isfinite(reg) and float(reg.detach()) > 0
    groups, blocks = alive_widths(net, TAU)
    assert groups == arch.group_widths()
    assert blocks == arch.block_widths()


@pytest.mark.parametrize("seed", range(4))
def test_cost_equals_flops_of_alive_subnetwork(seed):
    """With random gammas (many dead), cost == FLOPs of the alive-width spec."""
    arch = _random_arch(random.Random(100 + seed))
    net = arch.build(_gen(seed))
    g = _gen(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_((torch.rand(m.weight.shape, generator=g) - 0.5) * 0.05)
        for bns in net.stream_bns():
            bns[0].weight[0] = 1.0   # every stream keeps >= 1 channel
    groups, blocks = alive_widths(net, TAU)
    _, cost = morphnet_penalty(net, TAU)
    assert cost == arch.with_widths(groups, blocks).flops()


def test_morphnet_coefficients_use_the_real_kernel_area_in_1d():
    """A 1x3 conv's coefficient is 2 H W * 3, not 2 H W * 9 (eq. 2's C_j per channel pair)."""
    net = _one_block_net((1, 1, 16))  # the same gammas as the 2-D table above
    arch, blk = net.architecture, net.block(0, 0)
    assert arch.layout == "1d"
    coeff = 2 * 1 * 16 * 1 * 3   # 2 H_out W_out kh kw = 96, for stem, conv1 and conv2
    reg, cost = morphnet_penalty(net, TAU)
    expected_reg = (coeff * (A_IMG * SUM_R_S) + coeff * (A_S * SUM_R_M + A_M * SUM_R_S)
                    + coeff * (A_M * SUM_R_S + A_S * SUM_R_M) + COEFF_HEAD * A_LOGITS * SUM_R_S)
    assert float(reg.detach()) == pytest.approx(expected_reg, rel=1e-6)
    assert cost == 3 * coeff * 3 + COEFF_HEAD * A_S * A_LOGITS
    assert cost == arch.with_widths([A_S], [[A_M]]).flops()
    # The gate penalty is FLOP-weighted with the same area.
    lasso = float(layer_lasso_penalty(net).detach())
    gate = float((blk.bn2.weight.abs() + blk.bn2.bias.clamp(min=0)).mean().detach())
    assert lasso == pytest.approx(2 * coeff * 4 * 2 * gate, rel=1e-6)


def test_penalty_scale_counts_the_pixels_the_stem_sees():
    from sklearn_resbuilder.regularizers import REFERENCE_PIXELS, penalty_scale

    small, large = Architecture.minimal((1, 28, 28), 10), Architecture.minimal((3, 112, 112), 10)
    assert large.stem.downsample == 4
    assert penalty_scale(large) == penalty_scale(small) == REFERENCE_PIXELS / 784
    assert penalty_scale(Architecture.minimal((1, 1, 40), 10)) == REFERENCE_PIXELS / 40


# --------------------------------------------------------------- LayerLasso
def _two_block_net():
    arch = Architecture((1, 8, 8), 3, Stem(3, 6), (Stage(6, (4, 5)),), "avg")
    return arch.build(_gen())


def _stream_input(net, n=64, seed=0):
    x = torch.randn(n, 1, 8, 8, generator=_gen(seed))
    with torch.no_grad():
        return net.stem(x)


def test_layer_lasso_value_by_hand():
    net = _two_block_net()
    g = _gen(3)
    with torch.no_grad():
        for _, blk in net.blocks():
            for bn in (blk.bn1, blk.bn2):
                bn.weight.copy_(torch.randn(bn.weight.shape, generator=g))
                bn.bias.copy_(torch.randn(bn.bias.shape, generator=g))
    expected = 0.0
    for (_, b), blk in net.blocks():
        mid = (4, 5)[b]
        c1 = 2 * 9 * 64 * 6 * mid    # conv1 FLOPs: 3x3, 8x8 output, 6 -> mid
        c2 = 2 * 9 * 64 * mid * 6
        # Only the gate (last BN) carries the penalty: layer 1's scale is free.
        w, beta = blk.bn2.weight.detach().numpy(), blk.bn2.bias.detach().numpy()
        expected += (c1 + c2) * np.mean(np.abs(w) + np.maximum(beta, 0))
    assert float(layer_lasso_penalty(net).detach()) == pytest.approx(expected, rel=1e-5)


def test_layer_lasso_gradient_only_on_block_gates():
    net = _two_block_net()
    with torch.no_grad():
        blocks = [blk for _, blk in net.blocks()]
        blocks[0].bn2.bias.fill_(0.1)    # relu(beta) active: gets gradient
        blocks[1].bn2.bias.fill_(-0.1)   # beta <= 0: none
    layer_lasso_penalty(net).backward()
    for name, p in net.named_parameters():
        if ".bn2." in name and ".blocks." in name:
            continue
        assert p.grad is None or not p.grad.any(), name   # stem, head, convs, bn1
    for blk in blocks:
        assert (blk.bn2.weight.grad != 0).all()
    assert (blocks[0].bn2.bias.grad > 0).all()
    assert blocks[1].bn2.bias.grad is None or not blocks[1].bn2.bias.grad.any()


@pytest.mark.parametrize("conv", ["conv1", "conv2"])
def test_block_scores_invariant_to_rescaling_a_conv_before_bn(conv):
    net = _two_block_net()
    net.train()
    h = _stream_input(net)
    blk = net.block(0, 1)
    before_scores = block_scores(net)
    with torch.no_grad():
        before_out = blk.branch(h)
        getattr(blk, conv).weight.mul_(7.3)
        after_out = blk.branch(h)
    assert block_scores(net) == before_scores
    # ... and that is right, because the function does not change either.
    torch.testing.assert_close(after_out, before_out, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("beta", [0.0, -0.1])
def test_block_with_dead_last_bn_is_removed(beta):
    net = _two_block_net()
    net.train()
    h = _stream_input(net)
    blk = net.block(0, 0)
    with torch.no_grad():
        blk.bn2.weight.fill_(1e-5)
        blk.bn2.bias.fill_(beta)
        out = blk.branch(h)
    assert out.abs().max() < 1e-4            # the branch adds ~nothing
    scores = block_scores(net)
    assert scores[(0, 0)] < 1e-3
    assert scores[(0, 1)] > 0.5              # the untouched block (gamma 1)
    assert blocks_to_remove(net, 1e-3) == [(0, 0)]


def test_inserted_block_scores_at_the_gamma_scale():
    net = Architecture.minimal((1, 8, 8), 10).build(_gen())
    net = insert_block(net, 0, 0, generator=_gen(1))
    score = block_scores(net)[(0, 0)]
    bn2 = net.block(0, 0).bn2
    # last BN gamma ~ INSERT_GAMMA * U[a, b), beta 0: score = mean |gamma_2|
    assert score == pytest.approx(float(bn2.weight.detach().abs().mean()), rel=1e-6)
    assert 0.1 * INSERT_GAMMA < score <= INSERT_GAMMA
    assert blocks_to_remove(net, 1e-3) == []


def test_block_score_follows_the_function_not_a_bn1_rescaling():
    """Function-preserving reparametrisation across bn1 -> conv2 -> bn2.

    The branch is ``relu(bn2(conv2(relu(bn1(.)))))``. Scaling bn1's gamma and
    beta by 1/k and conv2 by k leaves it unchanged (relu is positively
    homogeneous, conv2 is linear), so a deletion decision must not change.
    The ``s1 + mean relu(beta_2)`` half of the score is not invariant to it:
    the bn1 gates are scale-free in the same way raw conv weights before BN
    are (docs/architecture.md §5.2), so the LayerLasso penalty on s1 can shrink them at
    ~lr per Adam step and the block is then deleted although it still adds a
    full normalised activation to the stream. (Known failing: see report.)
    """
    net = _two_block_net()
    net.train()
    h = _stream_input(net)
    blk = net.block(0, 0)
    k = 1e4
    with torch.no_grad():
        before = blk.branch(h)
        blk.bn1.weight.div_(k)
        blk.bn1.bias.div_(k)
        blk.conv2.weight.mul_(k)
        after = blk.branch(h)
    torch.testing.assert_close(after, before, rtol=1e-3, atol=1e-3)
    assert before.abs().mean() > 0.1 * h.abs().mean()   # a block that does something
    assert (0, 0) not in blocks_to_remove(net, 1e-3)


# ----------------------------------------------------- trained block (digits)
@pytest.fixture(scope="module")
def digits_data():
    from sklearn.datasets import load_digits

    from sklearn_resbuilder.training_data import TrainingData

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32).reshape(-1, 1, 8, 8)
    p = np.random.default_rng(0).permutation(len(X))
    tr, va = p[:1400], p[1400:]
    return TrainingData.from_arrays(X[tr], y[tr], X[va], y[va])


def test_trained_useful_block_is_kept(digits_data):
    from sklearn_resbuilder.training import TrainConfig, train_one

    net = Architecture.minimal((1, 8, 8), 10).build(_gen())
    net = insert_block(net, 0, 0, generator=_gen(1))
    inserted = block_scores(net)[(0, 0)]
    cfg = TrainConfig(max_epochs=6, augment="shift")   # paper's lambda_M, lambda_Lambda
    res = train_one(copy.deepcopy(net), digits_data, cfg, regularized=True, seed=0)
    score = block_scores(res.module)[(0, 0)]
    assert res.record["valid_accuracy"] > 0.5
    assert score > 1e-3
    assert score > 2 * inserted            # the block grew out of its near-identity init
    assert blocks_to_remove(res.module, 1e-3) == []


def test_an_over_budget_net_shrinks_to_its_floor_instead_of_collapsing(digits_data):
    """A 64-wide net 475x over a 2e4 budget under a strong MorphNet penalty:
    unfloored, one epoch kills its stream (a collapse); with the budget as
    floor it ends alive, shrunk toward the budget and not below it."""
    from sklearn_resbuilder.training import TrainConfig, train_one

    arch = Architecture.minimal((1, 8, 8), 10, width=64).insert_block(0, 0)
    budget = 2e4
    assert arch.flops() > 400 * budget
    ends = {}
    for floor in (0.0, budget):
        cfg = TrainConfig(max_epochs=3, augment=False, morph_strength=1e-5, flop_floor=floor)
        res = train_one(arch.build(_gen()), digits_data, cfg, regularized=True, seed=0)
        groups, _ = alive_widths(res.module, cfg.gamma_threshold)
        ends[floor] = (res.record["stopped"] or "", min(groups),
                       morphnet_penalty(res.module, cfg.gamma_threshold)[1])
    assert ends[0.0][0].startswith("collapsed") and ends[0.0][1] == 0
    stopped, narrowest, cost = ends[budget]
    assert not stopped.startswith("collapsed") and narrowest > 0
    assert budget <= cost < arch.flops() / 10  # shrank toward the budget, not past it


# ------------------------------------------------- the proximal (decoupled) step
def test_proximal_step_is_the_soft_threshold_of_the_penalty():
    """p <- sign(p) max(|p| - step |dG/dp|, 0) with G the scaled eq. 5 terms."""
    from sklearn_resbuilder.regularizers import penalty_value, proximal_step

    net = _one_block_net()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    params = [net.stem.bn.weight, net.block(0, 0).bn1.weight, net.block(0, 0).bn2.weight]
    grads = torch.autograd.grad(penalty_value(net, 1e-4, 1e-4, TAU), params)
    step = 1e-2
    proximal_step(net, step, 1e-4, 1e-4, TAU)
    for p, g, name in zip(params, grads, ("stem.bn.weight", "stages.0.blocks.0.bn1.weight",
                                          "stages.0.blocks.0.bn2.weight")):
        old = before[name]
        want = torch.sign(old) * (old.abs() - step * g.abs()).clamp(min=0)
        torch.testing.assert_close(p.detach(), want)
        assert (p.detach().abs() <= old.abs()).all()
    # Nothing else moves: conv weights and the head are untouched.
    for n, p in net.named_parameters():
        if "conv" in n or n.startswith("head"):
            assert torch.equal(p.detach(), before[n]), n
    # A large step gives exact zeros (a dead channel), not a sign flip.
    proximal_step(net, 1e6, 1e-4, 1e-4, TAU)
    assert torch.all(net.block(0, 0).bn1.weight == 0)
    assert torch.all(net.block(0, 0).bn2.weight == 0)


def test_flop_floor_pauses_morphnet_pressure_at_the_budget():
    """With the alive channels at or under ``flop_floor`` FLOPs MorphNet's term
    is off (nothing shrinks); above it the step is the plain one."""
    from sklearn_resbuilder.regularizers import penalty_value, proximal_step

    _, cost = morphnet_penalty(_one_block_net(), TAU)
    at_floor, above, plain = _one_block_net(), _one_block_net(), _one_block_net()
    before = {n: p.detach().clone() for n, p in at_floor.named_parameters()}
    assert penalty_value(at_floor, 1e-4, 0.0, TAU, flop_floor=cost).item() == 0.0
    proximal_step(at_floor, 1e-2, 1e-4, 0.0, TAU, flop_floor=cost)
    for n, p in at_floor.named_parameters():
        assert torch.equal(p.detach(), before[n]), n
    proximal_step(above, 1e-2, 1e-4, 0.0, TAU, flop_floor=cost - 1)
    proximal_step(plain, 1e-2, 1e-4, 0.0, TAU)
    moved = False
    for (n, p), q in zip(above.named_parameters(), plain.parameters()):
        assert torch.equal(p.detach(), q.detach()), n
        moved |= not torch.equal(p.detach(), before[n])
    assert moved
    # LayerLasso is not floored: the block still shrinks at the floor.
    lasso = _one_block_net()
    proximal_step(lasso, 1e-2, 0.0, 1e-2, TAU, flop_floor=cost)
    assert any(not torch.equal(p.detach(), before[n])
               for n, p in lasso.named_parameters() if ".blocks." in n)


@pytest.mark.parametrize("side", [8, 32, 112])
def test_penalty_weights_do_not_depend_on_the_image_size(side):
    """FLOPs grow with H*W; the scale REFERENCE_PIXELS/(H*W) cancels that, so
    one lambda shrinks the same network's channels alike at every size."""
    from sklearn_resbuilder.regularizers import penalty_value

    def weights(s):
        arch = Architecture.minimal((1, s, s), 10, width=6).insert_block(0, 0).insert_block(2, 0)
        net = arch.build(_gen())
        bns = [m.weight for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        return torch.cat([g.abs() for g in torch.autograd.grad(
            penalty_value(net, 1e-7, 1e-8, TAU), bns)])

    torch.testing.assert_close(weights(side), weights(8), rtol=1e-5, atol=0)


def _digits_data():
    from sklearn.datasets import load_digits

    from sklearn_resbuilder.training_data import TrainingData

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32).reshape(-1, 1, 8, 8)
    return TrainingData.from_arrays(X[:1100], y[:1100], X[1100:1400], y[1100:1400])


def _one_block_per_stage():
    arch = Architecture.minimal((1, 8, 8), 10)
    for s in range(arch.n_stages):
        arch = arch.insert_block(s, 0)
    return arch


@pytest.fixture(scope="module")
def dose():
    """Mean |gamma_1| per block after one With Reg training, for three lambda_M."""
    from sklearn_resbuilder.training import TrainConfig, train_one

    data, arch = _digits_data(), _one_block_per_stage()
    out = {}
    for lam in (1e-8, 1e-7, 1e-6):
        net = arch.build(_gen(0))
        cfg = TrainConfig(morph_strength=lam, lasso_strength=0, max_epochs=10, patience=10,
                          augment=False)
        trained = train_one(net, data, cfg, regularized=True, seed=0).module
        out[lam] = (trained, [float(b.bn1.weight.detach().abs().mean())
                              for _, b in trained.blocks()])
    return out


def test_morphnet_shrinks_expensive_channels_faster(dose):
    """Within one training, the stage-0 block (8x8 maps, 16x the FLOPs per
    channel of the 2x2 stage) loses more of its gamma than the stage-2 block.
    Under Adam with the penalty in the loss every gamma drifted alike."""
    _, (g0, g1, g2) = dose[1e-7]
    assert g0 < g1 < g2
    assert g2 - g0 > 0.2


def test_morph_strength_has_a_graded_effect(dose):
    """Each decade of lambda_M shrinks the expensive block clearly more, and the
    default (1e-7) sits inside the range: neither inert nor killing."""
    g = [dose[lam][1][0] for lam in (1e-8, 1e-7, 1e-6)]
    assert g[0] > 0.85 and 0.2 < g[1] < 0.8 and g[2] < 0.05
    assert g[0] - g[1] > 0.1 and g[1] - g[2] > 0.1


def test_morph_step_widths_are_not_a_uniform_rescale(dose):
    """At a strong lambda_M the MorphNet step keeps different shares of each
    group: the expensive block's middle goes, the cheap blocks' stay."""
    net, _ = dose[1e-6]
    groups, mids = alive_widths(net, TAU)
    arch = net.architecture
    kept = [m / w for m, w in zip([x for ms in mids for x in ms],
                                  [x for ms in arch.block_widths() for x in ms])]
    assert max(kept) - min(kept) > 0.5, (groups, mids)
    assert mids[0][0] < mids[2][0]
