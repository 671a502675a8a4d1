"""Tests of :mod:`sklearn_resbuilder.training`: augmentation, batching, the skorch
trainer (loss, preprocessing, initialisation) and the training drivers.

Trainings use sklearn's 8x8 digits and a few epochs (2 CPU cores, shared).
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import pytest
import torch
from skorch.dataset import Dataset
from torch.nn import functional as F

from sklearn_resbuilder import Architecture, defaults
from sklearn_resbuilder.network import insert_block
from sklearn_resbuilder.regularizers import layer_lasso_penalty, morphnet_penalty, penalty_scale
from sklearn_resbuilder.augment import BatchAugment, make_augment
from sklearn_resbuilder.inference import prepare_batch, valid_logits
from sklearn_resbuilder.trainer import ResBuilderTrainer
from sklearn_resbuilder.training import TrainConfig, VARIANTS, refit, train_one, train_variants
from sklearn_resbuilder.training_data import TensorBatches, TrainingData
from sklearn_resbuilder import timeplan
from sklearn_resbuilder.timeplan import TimePlan


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32).reshape(-1, 1, 8, 8)
    p = np.random.default_rng(0).permutation(len(X))
    return X[p], y[p]


@pytest.fixture(scope="module")
def data(digits):
    X, y = digits
    return TrainingData.from_arrays(X[:1400], y[:1400], X[1400:], y[1400:])


@pytest.fixture(scope="module")
def small_data(digits):
    """200 training images: epochs take a few tens of ms."""
    X, y = digits
    return TrainingData.from_arrays(X[:200], y[:200], X[1400:], y[1400:])


def _net(width=8, blocks=1, seed=0):
    arch = Architecture.minimal((1, 8, 8), 10, width=width)
    for _ in range(blocks):
        arch = arch.insert_block(0, 0)
    return arch.build(_gen(seed))


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- BatchAugment
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shift, flip", [(0.1, True), (0.1, False), (0.0, True)])
def test_augment_keeps_shape_and_dtype(dtype, shift, flip):
    x = torch.rand(10, 3, 12, 9, generator=_gen(), dtype=dtype)
    out = BatchAugment(shift, flip, _gen())(x)
    assert out.shape == x.shape
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    # bilinear with border padding: a convex combination of the input's pixels
    assert out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6


def test_augment_off_is_identity():
    x = torch.rand(4, 1, 8, 8, generator=_gen())
    assert torch.equal(BatchAugment(0.0, False)(x), x)


def test_flip_is_per_sample():
    x = torch.rand(64, 2, 8, 8, generator=_gen())
    out = BatchAugment(0.0, True, _gen(1))(x)
    flipped = torch.flip(x, dims=[3])
    same = torch.isclose(out, x, atol=1e-5).flatten(1).all(1)
    flip = torch.isclose(out, flipped, atol=1e-5).flatten(1).all(1)
    assert (same | flip).all()            # every image: itself or its mirror
    assert not (same & flip).any()        # (random images are not symmetric)
    assert 10 <= int(flip.sum()) <= 54    # both happen within one batch


def _spot_positions(out):
    """Centre of mass (row, col) of each image of a (n, 1, H, W) batch."""
    h, w = out.shape[-2:]
    m = out[:, 0]
    total = m.sum((1, 2))
    rows = (m.sum(2) * torch.arange(h)).sum(1) / total
    cols = (m.sum(1) * torch.arange(w)).sum(1) / total
    return rows, cols, total


def test_shift_moves_a_bright_pixel_by_at_most_ten_percent():
    x = torch.zeros(64, 1, 28, 28)
    x[:, 0, 14, 14] = 1.0
    out = BatchAugment(0.1, False, _gen(2))(x)
    rows, cols, total = _spot_positions(out)
    dr, dc = rows - 14, cols - 14
    # 10 % of 28 px = 2.8 px (3 px when shifts are whole pixels)
    assert dr.abs().max() <= 3 + 1e-4 and dc.abs().max() <= 3 + 1e-4
    torch.testing.assert_close(total, torch.ones(64), atol=1e-4, rtol=0)  # spot stays inside
    # per-sample shifts: many different ones within one batch, in both directions
    pairs = {(round(a, 3), round(b, 3)) for a, b in zip(dr.tolist(), dc.tolist())}
    assert len(pairs) >= 20
    assert dr.min() < -1.5 and dr.max() > 1.5 and dc.min() < -1.5 and dc.max() > 1.5


def test_shift_repeats_the_edge_pixel():
    x = torch.rand(256, 1, 10, 10, generator=_gen(3))
    out = BatchAugment(0.1, False, _gen(4))(x)   # up to 1 px
    # every output row is an input row (clamped at the border): the value set is kept
    for i in range(0, 256, 37):
        assert set(out[i].flatten().tolist()) <= set(x[i].flatten().tolist())
    assert not torch.equal(out, x)


def test_augment_is_reproducible_with_a_seeded_generator():
    x = torch.rand(32, 1, 8, 8, generator=_gen())
    a = BatchAugment(0.1, True, _gen(5))(x)
    b = BatchAugment(0.1, True, _gen(5))(x)
    c = BatchAugment(0.1, True, _gen(6))(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    a2 = make_augment(True, "cpu", seed=3)(x)
    b2 = make_augment(True, "cpu", seed=3)(x)
    assert torch.equal(a2, b2)


def test_make_augment_values():
    assert make_augment(False, "cpu") is None
    assert make_augment(None, "cpu") is None
    for value, shift, flip in [(True, 0.1, True), ("shift", 0.1, False), ("flip", 0.0, True)]:
        t = make_augment(value, "cpu", seed=0)
        assert isinstance(t, BatchAugment)
        assert (t.shift, t.flip) == (shift, flip)
    for bad in ["rotate", "SHIFT", 0.5, "true"]:
        with pytest.raises(ValueError, match="augment"):
            make_augment(bad, "cpu")


# --------------------------------------------------------------- TensorBatches
def _epoch(batches):
    return torch.cat([xb for xb, _ in batches])


def test_tensor_batches_cover_every_sample_once():
    n = 300
    ds = Dataset(torch.arange(n), torch.arange(n) * 10)
    tb = TensorBatches(ds, batch_size=64, shuffle=True, generator=_gen(0))
    assert len(tb) == math.ceil(n / 64)
    sizes, xs = [], []
    for xb, yb in tb:
        assert torch.equal(yb, xb * 10)   # X and y stay paired
        sizes.append(len(xb))
        xs.append(xb)
    assert sizes == [60] * 5   # near-equal batches, no short tail
    order = torch.cat(xs)
    assert torch.equal(torch.sort(order).values, torch.arange(n))
    assert not torch.equal(order, torch.arange(n))   # actually shuffled


def test_tensor_batches_order_changes_between_epochs_and_is_seeded():
    ds = Dataset(torch.arange(200), torch.zeros(200, dtype=torch.long))
    tb = TensorBatches(ds, batch_size=32, shuffle=True, generator=_gen(7))
    e1, e2 = _epoch(tb), _epoch(tb)
    assert not torch.equal(e1, e2)
    assert torch.equal(torch.sort(e2).values, torch.arange(200))
    tb_again = TensorBatches(ds, batch_size=32, shuffle=True, generator=_gen(7))
    assert torch.equal(_epoch(tb_again), e1)
    assert torch.equal(_epoch(tb_again), e2)


def test_tensor_batches_unshuffled_and_without_y():
    ds = Dataset(torch.arange(70).float(), None)
    batches = list(TensorBatches(ds, batch_size=32))
    assert torch.equal(torch.cat([xb for xb, _ in batches]), torch.arange(70).float())
    assert [len(yb) for _, yb in batches] == [32, 32, 6]


# ---------------------------------------------------------------- the trainer
def _trainer(module, **kw):
    kw.setdefault("classes", list(range(10)))
    kw.setdefault("device", "cpu")
    kw.setdefault("verbose", 0)
    return ResBuilderTrainer(module, **kw)


def test_get_loss_adds_exactly_the_penalties_in_training(digits):
    X, y = digits
    net = _trainer(_net(), morph_strength=1e-4, lasso_strength=3e-5)
    net.initialize()
    xb, yb = torch.as_tensor(X[:64]), torch.as_tensor(y[:64])
    y_pred = net.module_(xb)
    ce = F.cross_entropy(y_pred, yb)
    g_m, _ = morphnet_penalty(net.module_, 1e-2)
    g_l = layer_lasso_penalty(net.module_)
    assert float(g_m.detach()) > 0 and float(g_l.detach()) > 0
    train = net.get_loss(y_pred, yb, X=xb, training=True)
    valid = net.get_loss(y_pred, yb, X=xb, training=False)
    torch.testing.assert_close(valid, ce)
    scale = penalty_scale(net.module_.architecture)
    torch.testing.assert_close(train, ce + scale * (1e-4 * g_m + 3e-5 * g_l))
    assert float((train - valid).detach()) > 1e-3          # the penalties are really in there
    # ... as a value only: Adam never sees their gradient (the proximal step applies them).
    net.module_.zero_grad()
    (train - ce).backward() if (train - ce).requires_grad else None
    assert all(p.grad is None or not p.grad.any() for p in net.module_.parameters())
    # penalties off: plain CE in training too
    plain = _trainer(net.module_)
    plain.initialize()
    torch.testing.assert_close(plain.get_loss(y_pred, yb, X=xb, training=True), ce)


def test_preprocess_uint8_and_standardisation():
    g = _gen(1)
    x8 = torch.randint(0, 256, (5, 3, 6, 6), generator=g, dtype=torch.uint8)
    mean, std = np.array([0.3, 0.5, 0.1]), np.array([0.2, 0.25, 0.4])
    net = _trainer(_net(), input_mean=mean, input_std=std)
    net.initialize()
    from_u8 = net.preprocess(x8)
    xf = x8.float() / 255
    torch.testing.assert_close(from_u8, net.preprocess(xf))
    expected = (xf - torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)) \
        / torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    torch.testing.assert_close(from_u8, expected)
    assert from_u8.dtype == torch.float32
    # float64 and numpy input become float32 too
    assert net.preprocess(xf.double()).dtype == torch.float32
    torch.testing.assert_close(net.preprocess(xf.numpy()), expected)
    # no stats: only the scaling
    raw = _trainer(_net())
    raw.initialize()
    torch.testing.assert_close(raw.preprocess(x8), xf)


def test_infer_augments_only_in_training(digits):
    X, _ = digits
    xb = torch.as_tensor(X[:16])
    net = _trainer(_net(), input_mean=[0.3], input_std=[0.4],
                   augment=BatchAugment(0.1, True, _gen(0)))
    net.initialize()
    with torch.no_grad():
        net.module_.eval()
        expected = net.module_((xb - 0.3) / 0.4)
        torch.testing.assert_close(net.infer(xb), expected)
        torch.testing.assert_close(net.preprocess(xb, training=False), (xb - 0.3) / 0.4)
        assert not torch.allclose(net.preprocess(xb, training=True), (xb - 0.3) / 0.4)


def _check_bound(net, module, reference_state):
    assert net.module_ is module
    for k, v in net.module_.state_dict().items():
        assert torch.equal(v, reference_state[k]), k
    opt = {id(p) for group in net.optimizer_.param_groups for p in group["params"]}
    assert opt == {id(p) for p in net.module_.parameters()}


def test_initialize_keeps_trained_weights_and_binds_optimizer(small_data):
    module = _net(width=8, blocks=1)
    cfg = TrainConfig(max_epochs=1, augment=False)
    module = train_one(module, small_data, cfg, regularized=False).module  # "trained"
    state = copy.deepcopy(module.state_dict())
    net = _trainer(module, lr=1e-3)
    net.initialize()
    _check_bound(net, module, state)

    # After surgery: a new module, a new trainer; the copied weights survive too.
    grown = insert_block(module, 1, 0, generator=_gen(4))
    grown_state = copy.deepcopy(grown.state_dict())
    torch.testing.assert_close(grown.stem.conv.weight, module.stem.conv.weight)
    net2 = _trainer(grown, lr=1e-3)
    net2.initialize()
    _check_bound(net2, grown, grown_state)
    # ... and the optimizer really trains the new block.
    new_block = copy.deepcopy(grown.block(1, 0).state_dict())
    train_one(grown, small_data, cfg, regularized=False)
    assert not torch.equal(grown.block(1, 0).conv1.weight, new_block["conv1.weight"])
    assert not torch.equal(grown.block(1, 0).bn2.weight, new_block["bn2.weight"])


# ------------------------------------------------------------------ train_one
def _history_valid_losses(history):
    return [row["valid_loss"] for row in history if "valid_loss" in row]


def test_early_stopping_restores_the_best_epoch(small_data):
    """lr 0.5 makes the validation loss jump around; the best epoch is restored."""
    restored_earlier = 0
    for seed in range(3):
        cfg = TrainConfig(lr=0.5, patience=2, max_epochs=12, augment=False)
        res = train_one(_net(seed=seed), small_data, cfg, regularized=False, seed=seed)
        losses = _history_valid_losses(res.history)
        assert res.record["epochs"] == len(losses)
        assert res.record["valid_loss"] == pytest.approx(min(losses), abs=1e-5, rel=1e-5)
        best = int(np.argmin(losses))
        if best < len(losses) - 1:
            restored_earlier += 1
            assert res.record["stopped"] == "early_stopping"
            assert len(losses) - 1 - best <= cfg.patience
            assert res.record["valid_loss"] < losses[-1]
        # The record is read off the history: the returned module must really be
        # that epoch's network (scored again here from scratch).
        module = res.module.eval()
        with torch.no_grad():
            logits = module(prepare_batch(small_data.X_valid, small_data.mean, small_data.std))
        assert float(F.cross_entropy(logits, small_data.y_valid)) == pytest.approx(
            res.record["valid_loss"], rel=1e-4, abs=1e-5)
        assert float((logits.argmax(1) == small_data.y_valid).float().mean()) == pytest.approx(
            res.record["valid_accuracy"], abs=1e-6)
    assert restored_earlier >= 1, "no run stopped after its best epoch: test is vacuous"


@pytest.mark.parametrize("kw", [dict(morph_strength=1e36), dict(lr=1e20)],
                         ids=["huge_morph_strength", "huge_lr"])
def test_divergence_stops_cleanly(data, kw):
    module = _net()
    start = copy.deepcopy(module.state_dict())
    cfg = TrainConfig(max_epochs=3, augment=False, **kw)
    res = train_one(module, data, cfg, regularized=True)
    assert res.record["stopped"].startswith("diverged")
    assert all(torch.isfinite(p).all() for p in res.module.parameters())
    assert all(torch.isfinite(b).all() for b in res.module.buffers() if b.is_floating_point())
    assert math.isfinite(res.record["valid_loss"])
    # it diverged in the first epoch: the last good weights are the starting ones
    assert res.record["epochs"] == 0
    sd = res.module.state_dict()
    assert all(torch.equal(sd[k], start[k]) for k in start if k.endswith(("weight", "bias")))


def test_exploding_finite_loss_counts_as_divergence(small_data):
    cfg = TrainConfig(max_epochs=3, augment=False, lr=1e6)
    res = train_one(_net(), small_data, cfg, regularized=True)
    assert (res.record["stopped"] or "").startswith("diverged")


def _plan(max_time=100.0, step=0.01, clock=lambda: 0.0, **kw):
    """A time plan whose every shape's step takes ``step`` seconds (no timing),
    with a clock that stands still, so a slow machine never reaches the
    wall-clock safety net unless a test moves the clock itself."""
    return TimePlan(max_time, timer=lambda arch, batch_size: step, clock=clock, **kw)


def test_no_time_left_trains_nothing(small_data):
    module = _net()
    start = copy.deepcopy(module.state_dict())
    plan = _plan()
    plan.charge(plan.max_time)
    cfg = TrainConfig(max_epochs=5)
    res = train_one(module, small_data, cfg, regularized=True, slot=plan.training(1.0, 5))
    assert res.record["stopped"] == "max_time"
    assert res.record["epochs"] == 0 and res.record["planned_seconds"] == 0
    assert math.isnan(res.record["train_loss"])
    # No epoch ran: the record scores the start weights.
    logits = valid_logits(res.module, small_data, "cpu")
    right = (logits.argmax(1).cpu() == small_data.y_valid.cpu()).float().mean().item()
    assert res.record["valid_accuracy"] == pytest.approx(right)
    assert math.isfinite(res.record["valid_loss"])
    assert _same_weights(res.module, module) and all(
        torch.equal(res.module.state_dict()[k], v) for k, v in start.items())


def test_the_plan_stops_a_training_after_the_epochs_it_has_time_for(data):
    plan = _plan(max_time=10.0)
    cfg = TrainConfig(max_epochs=500, patience=500, augment=False)
    net = _net(width=16)
    per_epoch = plan.epoch_seconds(net.architecture, len(data.y_train), len(data.y_valid),
                                   cfg.batch_size)
    room = math.floor(plan.left() / per_epoch)
    assert 2 <= room < 500
    res = train_one(net, data, cfg, regularized=False,
                    slot=plan.training(per_epoch, cfg.max_epochs))
    # As many epochs as the modelled time holds, however long they took here.
    assert res.record["stopped"] == "max_time"
    assert res.record["epochs"] == len(res.history) == room
    assert res.record["planned_seconds"] == pytest.approx(room * per_epoch)
    assert plan.left() < per_epoch


def test_a_training_the_plan_has_time_for_is_complete(data):
    plan = _plan()
    res = refit(_net(), data, TrainConfig(augment=False), epochs=2,
                slot=plan.training(0.5, 2, phase="fit"))
    assert res.record["epochs"] == 2 and res.record["stopped"] is None
    assert plan.spent == pytest.approx(2 * 0.5)  # its epochs, nothing timed


def test_the_wall_clock_safety_net_stops_and_is_replayed(data):
    """A machine far slower than its timed steps (the clock at 1.6 x max_time
    after the first epoch): the training stops there, the stop is recorded,
    and a replay of the plan stops at the same epoch without a clock."""
    ticks = iter([0.0] * 3 + [1.6 * 10] * 100)  # t0, the start's and epoch 1's checks
    plan = _plan(max_time=10.0, clock=lambda: next(ticks))
    cfg = TrainConfig(max_epochs=5, patience=5, augment=False)
    res = train_one(_net(), data, cfg, regularized=False, slot=plan.training(0.01, 5))
    assert res.record["stopped"] == "hard stop" and res.record["epochs"] == 2
    assert plan.hard_stops == [{"training": 0, "epochs": 2}]
    reads = []
    replay = TimePlan(10.0, recorded=plan.to_dict(), clock=lambda: reads.append(1) or 0.0)
    again = train_one(_net(), data, cfg, regularized=False, slot=replay.training(0.01, 5))
    assert again.record["stopped"] == "hard stop" and again.record["epochs"] == 2
    assert len(reads) == 1  # the plan's start only: no stop decided by the clock
    assert _same_weights(again.module, res.module)


# ------------------------------------------------------------- train_variants
KEYS = {"valid_accuracy", "train_loss", "valid_loss", "epochs", "seconds"}


def test_train_variants_records_and_independence(small_data):
    module = _net(width=8, blocks=1, seed=3)
    before = copy.deepcopy(module.state_dict())
    cfg = TrainConfig(max_epochs=2, augment=True)
    res = train_variants(module, small_data, cfg, seed=0)
    assert tuple(res) == VARIANTS == ("with_reg", "no_reg_wi", "no_reg_ri")
    for name, r in res.items():
        assert KEYS <= set(r.record), name
        assert r.record["epochs"] == 2
        n_right = r.record["valid_accuracy"] * r.record["n_valid"]  # a count of images
        assert r.record["n_valid"] == len(small_data.y_valid)
        assert n_right == pytest.approx(round(n_right), abs=1e-6)
        assert r.module is not module
        assert r.module.architecture == module.architecture
    # the caller's module is untouched (weights and BN running stats)
    assert all(torch.equal(module.state_dict()[k], v) for k, v in before.items())
    assert len({id(r.module) for r in res.values()}) == 3

    # Determinism: same seed -> same records (except wall time) and weights.
    res2 = train_variants(module, small_data, cfg, seed=0)
    for name in VARIANTS:
        a = {k: v for k, v in res[name].record.items() if k != "seconds"}
        b = {k: v for k, v in res2[name].record.items() if k != "seconds"}
        assert a == b, name
        assert _same_weights(res[name].module, res2[name].module), name


def test_train_variants_starting_points(small_data):
    """With no time left nothing trains: WI and With Reg are the start, and
    No Reg RI, which would be scored untrained, is left out."""
    module = _net(width=8, blocks=1, seed=3)
    plan = _plan()
    plan.charge(plan.max_time)
    res = train_variants(module, small_data, TrainConfig(max_epochs=2), seed=0, plan=plan)
    assert _same_weights(res["with_reg"].module, module)      # continues from the weights
    assert _same_weights(res["no_reg_wi"].module, res["with_reg"].module)
    assert "no_reg_ri" not in res
    assert all(r.record["stopped"] == "max_time" for r in res.values())
    # Without a plan No Reg RI starts from a fresh init of the same architecture.
    ri = train_variants(module, small_data, TrainConfig(max_epochs=1), seed=0,
                        variants=("no_reg_ri",))["no_reg_ri"].module
    assert ri.architecture == module.architecture
    assert not torch.equal(ri.head.weight, module.head.weight)
    # a subset of variants, still in the canonical order; each training is
    # charged its epochs at the plan's modelled seconds
    plan = _plan()
    only = train_variants(module, small_data, TrainConfig(max_epochs=2), seed=0,
                          variants=("no_reg_ri", "with_reg"), plan=plan)
    assert tuple(only) == ("with_reg", "no_reg_ri")
    charged = sum(r.record["planned_seconds"] for r in only.values())
    assert charged > 0
    assert plan.spent == pytest.approx(charged + timeplan.TIMING_STEPS * 0.01)


@pytest.mark.parametrize("n, batch_size", [(9, 4), (898, 128), (129, 128), (128, 128), (5, 128)])
def test_training_batches_have_no_short_tail(n, batch_size):
    """A tail batch of a few samples (898 = 7 x 128 + 2) is a noisy step and
    drags BatchNorm's running statistics; shuffled epochs are cut into
    ``ceil(n / batch_size)`` batches whose sizes differ by at most one."""
    ds = Dataset(torch.arange(float(n)).view(n, 1), torch.arange(n))
    it = TensorBatches(ds, batch_size=batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    sizes = [len(xb) for xb, _ in it]
    assert len(sizes) == len(it) == math.ceil(n / batch_size)
    assert sum(sizes) == n and max(sizes) <= batch_size
    assert max(sizes) - min(sizes) <= 1
    # prediction keeps plain batch_size slices
    plain = [len(xb) for xb, _ in TensorBatches(ds, batch_size=batch_size)]
    assert plain[:-1] == [batch_size] * (len(plain) - 1) and sum(plain) == n


def test_resnet18_on_8x8_trains_with_a_tail_batch_of_one(small_data):
    """8x8 ResNet18 ends on 1x1 maps: a batch of one would crash BatchNorm."""
    arch = Architecture.resnet18((1, 8, 8), 10)
    n = len(small_data.X_train)
    cfg = TrainConfig(max_epochs=1, batch_size=n - 1, augment=False)
    res = train_one(arch.build(torch.Generator().manual_seed(0)), small_data, cfg, regularized=True)
    assert res.record["epochs"] == 1


# ------------------------------------------------------------------ GPU path
# The CUDA-only behaviours are exercised on the CPU: mixed precision and
# channels_last forced on, out-of-memory errors injected.
def _oom_above(monkeypatch, limit):
    """Every training step with more than ``limit`` samples runs out of memory."""
    real = ResBuilderTrainer.train_step
    seen = []

    def step(self, batch, **kw):
        seen.append(len(batch[0]))
        if len(batch[0]) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, batch, **kw)

    monkeypatch.setattr(ResBuilderTrainer, "train_step", step)
    return seen


def test_out_of_memory_halves_the_batch_and_retries(small_data, monkeypatch):
    seen = _oom_above(monkeypatch, 40)
    module = _net(seed=1)
    start = copy.deepcopy(module.state_dict())
    with pytest.warns(UserWarning, match="out of memory") as warned:
        res = train_one(module, small_data, TrainConfig(max_epochs=2, batch_size=128),
                        regularized=True)
    assert [str(w.message).split("retrying with ")[1] for w in warned] == \
        ["batch_size=64", "batch_size=32"]
    assert res.record["batch_size"] == 32 and res.record["epochs"] == 2
    assert max(seen[2:]) <= 32  # after two failed steps, only batches that fit
    # The successful training started from the original weights: same result
    # as a training with batch_size=32 from the start.
    monkeypatch.undo()
    fresh = _net(seed=1)
    fresh.load_state_dict(start)
    ref = train_one(fresh, small_data, TrainConfig(max_epochs=2, batch_size=32),
                    regularized=True)
    assert res.record["valid_loss"] == ref.record["valid_loss"]


def test_out_of_memory_batch_stays_halved_for_the_next_variants(small_data, monkeypatch):
    _oom_above(monkeypatch, 99)  # 200 images: two batches of 100 at 128
    with pytest.warns(UserWarning, match="out of memory") as warned:
        res = train_variants(_net(seed=2), small_data, TrainConfig(max_epochs=1), seed=0)
    assert len(warned) == 1  # only the first training paid for the discovery
    assert {r.record["batch_size"] for r in res.values()} == {64}


def test_out_of_memory_at_batch_two_is_a_clear_error(small_data, monkeypatch):
    _oom_above(monkeypatch, 1)
    with pytest.warns(UserWarning), \
            pytest.raises(torch.OutOfMemoryError, match="even with batch_size=2"):
        train_one(_net(), small_data, TrainConfig(max_epochs=1, batch_size=8),
                  regularized=False)


def test_mixed_precision_runs_the_forward_in_bfloat16(small_data):
    module = _net(seed=4)
    dtypes = []
    module.head.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    res = train_one(module, small_data, TrainConfig(max_epochs=6, lr=1e-2, morph_strength=1e-8,
                                                    lasso_strength=1e-9, mixed_precision=True),
                    regularized=True)
    assert set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in res.module.parameters())
    assert math.isfinite(res.record["train_loss"]) and res.record["valid_accuracy"] > 0.3


def test_channels_last_gives_the_same_training(small_data):
    a = train_one(_net(seed=5), small_data, TrainConfig(max_epochs=2, channels_last=True),
                  regularized=True)
    b = train_one(_net(seed=5), small_data, TrainConfig(max_epochs=2, channels_last=False),
                  regularized=True)
    convs = [p for p in a.module.parameters() if p.ndim == 4 and p.shape[1] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last)
                         and not p.is_contiguous() for p in convs)
    assert a.record["valid_loss"] == pytest.approx(b.record["valid_loss"], rel=1e-4)


def test_training_data_moves_once_and_keeps_uint8():
    X = np.random.default_rng(0).integers(0, 255, (20, 1, 8, 8), dtype=np.uint8)
    y = np.arange(20) % 2
    data = TrainingData.from_arrays(X, y, X[:4], y[:4])
    assert data.to("cpu") is data  # already there: no copy
    moved = data.to("meta")
    assert moved.X_train.device.type == "meta" and moved.X_train.dtype == torch.uint8
    assert moved.y_valid.device.type == "meta"
    assert data.nbytes == 20 * 64 + 4 * 64 + 24 * 8


def test_a_training_whose_stream_dies_stops_early(small_data):
    """Penalties strong enough to kill a residual stream end the training at
    that epoch (the search would discard the network anyway)."""
    cfg = TrainConfig(max_epochs=30, patience=30, augment=False, morph_strength=1e-4,
                      lasso_strength=0)
    res = train_one(_net(seed=6), small_data, cfg, regularized=True)
    assert (res.record["stopped"] or "").startswith("collapsed: a stream died")
    assert res.record["epochs"] < 30


@pytest.mark.parametrize("head", ["flatten", "avg"])
def test_predict_logits_in_channels_last_equals_a_plain_nchw_pass(head):
    # RGB, a transition conv and both heads: the layouts differ in memory
    # (C > 1), and the flatten head must read features in NCHW order.
    from dataclasses import replace

    from sklearn_resbuilder.inference import predict_logits

    arch = Architecture.minimal((3, 12, 12), 5, width=6).insert_block(0, 0).insert_block(2, 0)
    arch = replace(arch, head=head)
    module = arch.build(_gen(3)).eval()
    X = np.random.default_rng(0).integers(0, 256, (40, 3, 12, 12), dtype=np.uint8)
    mean, std = np.array([0.4, 0.5, 0.6], np.float32), np.array([0.2, 0.25, 0.3], np.float32)
    ref_in = (torch.as_tensor(X).float() / 255 - torch.as_tensor(mean).view(1, 3, 1, 1)) \
        / torch.as_tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = module(ref_in)
        ref_mirror = module(ref_in.flip(-1))
    module.train()  # predict_logits evaluates in eval mode and restores train mode
    got = predict_logits(module, X, mean, std, batch_size=16)
    assert module.training
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(predict_logits(module, X, mean, std, mirror=True), ref_mirror,
                               atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ref, ref_mirror)  # the mirror test can fail


def test_refit_joins_train_and_valid_without_a_copy_when_they_share_a_buffer():
    from sklearn_resbuilder.training_data import joined as _joined

    X = torch.arange(10 * 2 * 3 * 3, dtype=torch.uint8).view(10, 2, 3, 3)
    cl = X.contiguous(memory_format=torch.channels_last)
    for buf in (X, cl):
        joined = _joined(buf[:7], buf[7:])
        assert joined.data_ptr() == buf.data_ptr()  # a view, no copy
        assert torch.equal(joined, buf)
    # Separate buffers (or a gap between the parts): a real concatenation.
    apart = _joined(X[:3].clone(), X[3:].clone())
    assert apart.data_ptr() != X.data_ptr() and torch.equal(apart, X)
    gap = _joined(X[:3], X[4:])
    assert torch.equal(gap, torch.cat([X[:3], X[4:]]))


def test_batch_augment_is_the_same_on_a_channels_last_batch():
    # fit keeps (n, H, W, C) input channels-last; the per-image gathers must
    # move the same pixels whatever the memory layout.
    x = torch.rand(16, 3, 10, 12)
    a = BatchAugment(0.2, True, _gen(7))(x)
    b = BatchAugment(0.2, True, _gen(7))(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(a, b)
    assert not torch.equal(a, x)  # it did shift/flip something


def test_refit_smooths_labels_only_for_networks_with_a_parameter_per_image(small_data):
    """Below defaults.REFIT_SMOOTH_MIN_PARAMS_PER_IMAGE parameters per training
    image the refit trains on plain cross entropy (the same run as asking for
    label_smoothing=0), at or above it with REFIT_LABEL_SMOOTHING."""
    from sklearn_resbuilder.training import refit_label_smoothing

    per_image = defaults.REFIT_SMOOTH_MIN_PARAMS_PER_IMAGE
    assert per_image == 1.0
    assert refit_label_smoothing(999, 1000) == 0.0
    assert refit_label_smoothing(1000, 1000) == defaults.REFIT_LABEL_SMOOTHING
    n_all = len(small_data.X_train) + len(small_data.X_valid)
    cfg = TrainConfig(augment=False, max_epochs=3, patience=3, min_steps=0)
    tiny = _net(width=1, blocks=0, seed=0)
    assert tiny.architecture.n_params() < per_image * n_all
    auto = refit(tiny, small_data, cfg, epochs=3, seed=0)
    plain = refit(_net(width=1, blocks=0, seed=0), small_data, cfg, epochs=3, seed=0,
                  label_smoothing=0.0)
    smoothed = refit(_net(width=1, blocks=0, seed=0), small_data, cfg, epochs=3, seed=0,
                     label_smoothing=0.1)
    assert auto.record["label_smoothing"] == 0.0
    assert auto.record["train_loss"] == plain.record["train_loss"] != smoothed.record["train_loss"]
    big = _net(width=16, seed=0)
    assert big.architecture.n_params() >= per_image * n_all
    assert refit(big, small_data, cfg, epochs=1, seed=0).record["label_smoothing"] == 0.1


def test_refit_smooths_labels_and_the_search_trainings_do_not(small_data):
    """With label smoothing eps over K classes the training loss cannot fall
    below the entropy of the smoothed target (0.50 at eps = 0.1, K = 10); a
    search training (plain CE, what early stopping reads) can."""
    eps, k = defaults.REFIT_LABEL_SMOOTHING, 10
    assert eps == 0.1
    p, q = 1 - eps + eps / k, eps / k
    floor = -(p * math.log(p) + (k - 1) * q * math.log(q))
    cfg = TrainConfig(augment=False, max_epochs=60, patience=60, min_steps=0)
    res = refit(_net(width=16, seed=0), small_data, cfg, epochs=60, seed=0)
    assert res.record["label_smoothing"] == eps
    assert floor <= res.record["train_loss"] < floor + 0.1  # trained, down to the floor
    plain = train_one(_net(width=16, seed=0), small_data, cfg, regularized=False, seed=0)
    assert plain.record["train_loss"] < floor - 0.2
