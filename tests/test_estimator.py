"""Tests for ResBuilderClassifier: fitted attributes, input formats, labels,
reproducibility, input validation, device handling and ``max_time``.

Every fit here is tiny (digits, flop_budget 2e5, at most one insertion and one
MorphNet step, 1-3 epochs, no augmentation) so the file runs in well under two
minutes on two shared CPU cores. Scores are compared with generous margins:
three epochs on digits reach ~0.65-0.85 test accuracy, chance is 0.1.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import NotFittedError

import sklearn_resbuilder.estimator as estimator_module
from sklearn_resbuilder import Architecture, ResBuilderClassifier
from sklearn_resbuilder.estimator import resolve_device
from sklearn_resbuilder.flops import largest_omega

BUDGET = 2e5
# lr 1e-2: three epochs on 500 digits then score 0.72-0.87 (measured, seeds 0-3)
TINY = dict(flop_budget=BUDGET, n_insertions=0, n_morph_steps=0, max_epochs=3, refit=False,
            lr=1e-2, augment=False, random_state=0)
VARIANTS = {"with_reg", "no_reg_wi", "no_reg_ri"}


@pytest.fixture(scope="module")
def fitted(digits):
    """One search with an insertion and a MorphNet step, so history_ has
    'start', 'insert' and 'morph' records."""
    Xtr, Xte, ytr, yte = digits
    clf = ResBuilderClassifier(flop_budget=BUDGET, n_insertions=1, n_morph_steps=1,
                               max_epochs=3, augment=False, random_state=0)
    return clf.fit(Xtr, ytr)


@pytest.fixture(scope="module")
def small(digits):
    """500 training digits: enough for every class on both sides of the split."""
    Xtr, Xte, ytr, yte = digits
    return Xtr[:500], ytr[:500], Xte[:200], yte[:200]


def strip_seconds(obj):
    """history_ without its wall-clock fields (they differ between runs)."""
    if isinstance(obj, dict):
        return {k: strip_seconds(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [strip_seconds(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------
# fitted attributes (docs/architecture.md §5.9)
# ----------------------------------------------------------------------------

def test_fitted_attributes(fitted, digits):
    clf = fitted
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    assert clf.n_features_in_ == 64 and isinstance(clf.n_features_in_, int)
    assert clf.input_shape_ == (1, 8, 8)
    assert all(isinstance(d, int) for d in clf.input_shape_)

    arch = clf.best_architecture_
    assert isinstance(arch, Architecture)
    assert arch.input_shape == (1, 8, 8) and arch.n_classes == 10
    assert arch.flops() <= BUDGET

    assert isinstance(clf.best_step_, int) and 0 <= clf.best_step_ < len(clf.history_)
    assert clf.best_variant_ in ("no_reg_wi", "no_reg_ri")
    assert isinstance(clf.best_score_, float)
    best = clf.history_[clf.best_step_]
    assert best["scores"][clf.best_variant_]["valid_accuracy"] == pytest.approx(clf.best_score_)
    assert Architecture.from_dict(best["architecture"]) == arch

    assert isinstance(clf.module_, torch.nn.Module)
    assert all(p.device.type == "cpu" for p in clf.module_.parameters())
    assert isinstance(clf.search_time_, float) and clf.search_time_ > 0
    assert clf.stopped_ is None
    assert clf.skipped_ == []  # no max_time: nothing is ever left out


def test_history_records(fitted):
    history = fitted.history_
    assert isinstance(history, list) and len(history) >= 2
    json.loads(json.dumps(history))  # JSON-serialisable, no numpy scalars
    operations = [r["operation"] for r in history]
    assert operations[0] == "start"
    assert "morph" in operations
    assert set(operations) <= {"start", "insert", "remove", "morph"}
    for i, record in enumerate(history):
        assert isinstance(record, dict)
        assert record["step"] == i
        for key in ("architecture", "n_blocks", "flops", "n_params", "omega",
                    "removed_blocks", "seconds", "scores"):
            assert key in record, key
        assert isinstance(record["architecture"], dict)
        assert record["flops"] == Architecture.from_dict(record["architecture"]).flops()
        # No Reg only within the budget; No Reg RI only with retrain_fresh=True.
        within = record["flops"] <= fitted.flop_budget
        assert set(record["scores"]) == ({"with_reg", "no_reg_wi"} if within else {"with_reg"})
        for scores in record["scores"].values():
            for key in ("valid_accuracy", "train_loss", "valid_loss", "epochs", "seconds"):
                assert key in scores, key
    # The chosen network was refit on all the training images, and says how.
    refit = history[fitted.best_step_]["refit"]
    assert refit is fitted.refit_ and refit["used"] and refit["epochs"] >= 2
    assert refit["n_images"] == fitted.refit_["n_images"] > 0


def test_predict_predict_proba_score(fitted, digits):
    Xtr, Xte, ytr, yte = digits
    pred = fitted.predict(Xte)
    assert pred.shape == (len(Xte),)
    assert set(pred) <= set(fitted.classes_)
    proba = fitted.predict_proba(Xte)
    assert proba.shape == (len(Xte), 10)
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(pred, fitted.classes_[proba.argmax(axis=1)])
    score = fitted.score(Xte, yte)
    assert score == pytest.approx(np.mean(pred == yte))
    # Measured 0.80-0.88 with this config (seeds 0-2); chance is 0.1.
    assert score > 0.3


def test_minimal_search_beats_chance(small):
    Xtr, ytr, Xte, yte = small
    clf = ResBuilderClassifier(**TINY).fit(Xtr, ytr)
    assert clf.best_architecture_.flops() <= BUDGET
    assert [r["operation"] for r in clf.history_] == ["start"]
    assert clf.score(Xte, yte) > 0.3


# ----------------------------------------------------------------------------
# input formats (docs/architecture.md §5.8)
# ----------------------------------------------------------------------------

def test_image_layouts_give_the_same_model(small):
    """Flat, (n, H, W), (n, H, W, 1), (n, 1, H, W) are the same images: same
    seed -> the same fitted network, and any layout predicts for any other."""
    Xtr, ytr, Xte, yte = small
    n = len(Xtr)
    layouts = {
        "flat": Xtr,
        "(n,H,W)": Xtr.reshape(n, 8, 8),
        "(n,H,W,1)": Xtr.reshape(n, 8, 8, 1),
        "(n,1,H,W)": Xtr.reshape(n, 1, 8, 8),
    }
    ref = None
    for name, X in layouts.items():
        clf = ResBuilderClassifier(**{**TINY, "max_epochs": 1}).fit(X, ytr)
        assert clf.input_shape_ == (1, 8, 8), name
        assert clf.n_features_in_ == 64, name
        proba = clf.predict_proba(Xte.reshape((-1,) + X.shape[1:]))
        if ref is None:
            ref = proba
        else:
            np.testing.assert_allclose(proba, ref, atol=1e-6, err_msg=name)
        # predicting another layout of the same images works
        np.testing.assert_allclose(clf.predict_proba(Xte.reshape(-1, 8, 8)), proba,
                                   atol=1e-6, err_msg=name)


@pytest.mark.parametrize("shape", [(64,), (8, 8), (8, 8, 1), (1, 8, 8)])
def test_uint8_images(small, shape):
    Xtr, ytr, Xte, yte = small
    to_u8 = lambda X: np.round(X * 255 / 16).astype(np.uint8).reshape((-1,) + shape)
    clf = ResBuilderClassifier(**TINY).fit(to_u8(Xtr), ytr)
    assert clf.input_shape_ == (1, 8, 8)
    # uint8 is scaled to [0, 1] before standardising: stats in that scale
    assert 0 < float(clf.input_mean_[0]) < 1
    proba = clf.predict_proba(to_u8(Xte))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert clf.score(to_u8(Xte), yte) > 0.3


def test_dataframe_input(small):
    Xtr, ytr, Xte, yte = small
    columns = [f"px{i}" for i in range(64)]
    dtr, dte = pd.DataFrame(Xtr, columns=columns), pd.DataFrame(Xte, columns=columns)
    clf = ResBuilderClassifier(**TINY).fit(dtr, pd.Series(ytr))
    assert clf.input_shape_ == (1, 8, 8)
    np.testing.assert_array_equal(clf.feature_names_in_, columns)
    pred = clf.predict(dte)
    assert set(pred) <= set(range(10))
    # same numbers as a plain array, same seed -> same model
    ref = ResBuilderClassifier(**TINY).fit(Xtr, ytr)
    np.testing.assert_allclose(clf.predict_proba(dte), ref.predict_proba(Xte), atol=1e-6)


def rgb(X):
    """Synthetic colour images from digits: (n, 8, 8, 3), three different channels."""
    img = X.reshape(-1, 8, 8)
    return np.stack([img, img[:, :, ::-1], 16 - img], axis=-1)


def test_three_channel_images(small):
    Xtr, ytr, Xte, yte = small
    hwc = ResBuilderClassifier(**TINY).fit(rgb(Xtr), ytr)
    assert hwc.input_shape_ == (3, 8, 8)
    assert hwc.n_features_in_ == 192
    assert hwc.best_architecture_.input_shape == (3, 8, 8)
    assert hwc.input_mean_.shape == (3,)
    # flat (n, 192) is read as channel-last (H, W, 3) flattening: same images
    flat = ResBuilderClassifier(**TINY).fit(rgb(Xtr).reshape(len(Xtr), -1), ytr)
    assert flat.input_shape_ == (3, 8, 8)
    np.testing.assert_allclose(flat.predict_proba(rgb(Xte).reshape(len(Xte), -1)),
                               hwc.predict_proba(rgb(Xte)), atol=1e-6)
    # channel-first layout of the same images predicts the same
    np.testing.assert_allclose(hwc.predict_proba(rgb(Xte).transpose(0, 3, 1, 2)),
                               hwc.predict_proba(rgb(Xte)), atol=1e-6)
    assert hwc.score(rgb(Xte), yte) > 0.3


@pytest.mark.parametrize("kind", ["str", "negative int"])
def test_label_types_round_trip(small, kind):
    Xtr, ytr, Xte, yte = small
    if kind == "str":
        names = np.array([f"digit_{d}" for d in range(10)])
        ytr_l, yte_l = names[ytr], names[yte]
    else:
        ytr_l, yte_l = ytr - 5, yte - 5
    clf = ResBuilderClassifier(**TINY).fit(Xtr, ytr_l)
    np.testing.assert_array_equal(clf.classes_, np.unique(ytr_l))
    pred = clf.predict(Xte)
    assert pred.dtype.kind == ytr_l.dtype.kind
    assert set(pred) <= set(ytr_l)
    assert clf.score(Xte, yte_l) > 0.3
    # the same seed with 0..9 labels gives the same network: only names change
    ref = ResBuilderClassifier(**TINY).fit(Xtr, ytr)
    np.testing.assert_array_equal(pred, np.unique(ytr_l)[ref.predict(Xte)])


def test_predict_rejects_other_image_shape(small):
    Xtr, ytr, Xte, yte = small
    clf = ResBuilderClassifier(**{**TINY, "max_epochs": 1}).fit(Xtr.reshape(-1, 8, 8), ytr)
    assert clf.input_shape_ == (1, 8, 8)
    with pytest.raises(ValueError, match=r"shape.*\(1, 4, 4\)"):
        clf.predict(Xte.reshape(-1, 8, 8)[:, :4, :4])
    with pytest.raises(ValueError, match=r"shape"):
        clf.predict_proba(rgb(Xte))
    with pytest.raises(ValueError, match="features"):
        clf.predict(Xte[:, :16])


def test_image_shape_for_non_square_flat_rows():
    X, y = make_classification(n_samples=200, n_features=10, n_informative=5,
                               random_state=0)
    clf = ResBuilderClassifier(**TINY, image_shape=(1, -1)).fit(X, y)
    assert clf.input_shape_ == (1, 1, 10)
    assert clf.n_features_in_ == 10
    assert clf.best_architecture_.flops() <= BUDGET
    assert clf.score(X, y) > 0.6  # binary: chance 0.5; measured ~0.9


# ----------------------------------------------------------------------------
# the validation split inside fit
# ----------------------------------------------------------------------------

def test_validation_split_is_stratified_and_seeded(small, monkeypatch):
    Xtr, ytr, Xte, yte = small
    splits = []
    real = estimator_module.validation_split

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        splits.append(out)
        return out

    monkeypatch.setattr(estimator_module, "validation_split", spy)
    kw = {**TINY, "max_epochs": 1}
    a = ResBuilderClassifier(**kw).fit(Xtr, ytr)
    b = ResBuilderClassifier(**kw).fit(Xtr, ytr)
    ResBuilderClassifier(**{**kw, "random_state": 1}).fit(Xtr, ytr)
    assert len(splits) == 3
    (tr0, va0), (tr1, va1), (tr2, va2) = splits

    # stratified: every class in both parts, proportions kept (+-1 sample)
    assert len(va0) == math.ceil(0.1 * len(ytr))
    assert set(ytr[va0]) == set(ytr[tr0]) == set(range(10))
    counts = np.bincount(ytr, minlength=10)
    np.testing.assert_allclose(np.bincount(ytr[va0], minlength=10),
                               counts * len(va0) / len(ytr), atol=1.0)
    assert np.intersect1d(tr0, va0).size == 0 and len(tr0) + len(va0) == len(ytr)

    # seeded: same random_state -> same split, another seed -> another split
    np.testing.assert_array_equal(va0, va1)
    assert not np.array_equal(va0, va2)

    # ... and the same history and predictions
    assert strip_seconds(a.history_) == strip_seconds(b.history_)
    np.testing.assert_array_equal(a.predict_proba(Xte), b.predict_proba(Xte))


@pytest.mark.parametrize("mixed_precision", [False, True])
def test_same_seed_same_search(digits, mixed_precision):
    """A search with insertion and morph steps is reproducible end to end,
    in float32 and under bfloat16 autocast (what "auto" picks on a CPU with
    native bfloat16)."""
    Xtr, Xte, ytr, yte = digits
    kw = dict(flop_budget=BUDGET, n_insertions=1, n_morph_steps=1, max_epochs=1,
              augment=False, random_state=3, mixed_precision=mixed_precision)
    a = ResBuilderClassifier(**kw).fit(Xtr[:600], ytr[:600])
    b = ResBuilderClassifier(**kw).fit(Xtr[:600], ytr[:600])
    assert len(a.history_) >= 2
    assert strip_seconds(a.history_) == strip_seconds(b.history_)
    assert a.best_architecture_ == b.best_architecture_
    np.testing.assert_array_equal(a.predict_proba(Xte), b.predict_proba(Xte))


# ----------------------------------------------------------------------------
# bad input -> ValueError naming the problem
# ----------------------------------------------------------------------------

def _X():
    X, y = load_digits(return_X_y=True)
    return X[:300].copy(), y[:300].copy()


def _fit(X=None, y=None, **params):
    X0, y0 = _X()
    X = X0 if X is None else X
    y = y0 if y is None else y
    ResBuilderClassifier(**{**TINY, "max_epochs": 1, **params}).fit(X, y)


def _with(value):
    X, _ = _X()
    X[3, 17] = value
    return X


def _predict_other_shape():
    X, y = _X()
    clf = ResBuilderClassifier(**{**TINY, "max_epochs": 1}).fit(X.reshape(-1, 8, 8), y)
    clf.predict(X.reshape(-1, 8, 8)[:, :6, :6])


BAD_INPUT = {
    "NaN in X": (lambda: _fit(_with(np.nan)), "NaN"),
    "inf in X": (lambda: _fit(_with(np.inf)), "infinite"),
    "1-D X": (lambda: _fit(_X()[0][0], _X()[1][:1]), "1-D"),
    "5-D X": (lambda: _fit(_X()[0].reshape(300, 1, 8, 8, 1)), "5-D"),
    "n_samples mismatch": (lambda: _fit(y=_X()[1][:-1]), "samples"),
    "single class": (lambda: _fit(y=np.zeros(300, dtype=int)), r"(single|one) class"),
    "too few samples for the validation split": (
        lambda: _fit(_X()[0][:12], np.arange(12) % 3, validation_fraction=0.9),
        "validation_fraction"),
    "images too small for the pooling stages": (
        lambda: _fit(_X()[0][:, :16], start="resnet18", flop_budget=1e9), "too small"),
    "flat width needs image_shape": (lambda: _fit(_X()[0][:, :10]), "image_shape"),
    "flop_budget <= 0": (lambda: _fit(flop_budget=0), "flop_budget"),
    "flop_budget below the smallest network": (
        lambda: _fit(flop_budget=10), "smallest network"),
    "unknown start": (lambda: _fit(start="vgg"), "start"),
    "predict on another image shape": (_predict_other_shape, "shape"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_bad_input_raises_value_error(case):
    call, match = BAD_INPUT[case]
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score"])
def test_unfitted_raises_not_fitted(method):
    X, y = _X()
    clf = ResBuilderClassifier()
    args = (X, y) if method == "score" else (X,)
    with pytest.raises(NotFittedError):
        getattr(clf, method)(*args)


# ----------------------------------------------------------------------------
# device
# ----------------------------------------------------------------------------

def test_device_auto_resolves_to_cpu_without_cuda(small):
    Xtr, ytr, Xte, yte = small
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"
    clf = ResBuilderClassifier(**{**TINY, "max_epochs": 1}, device="auto").fit(Xtr, ytr)
    # module_ is kept on the CPU whatever the training device
    assert all(p.device.type == "cpu" for p in clf.module_.parameters())
    clf.predict(Xte)
    assert all(p.device.type == "cpu" for p in clf.module_.parameters())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_raises(small):
    Xtr, ytr, Xte, yte = small
    with pytest.raises(ValueError, match="CUDA"):
        ResBuilderClassifier(**TINY, device="cuda").fit(Xtr, ytr)
    with pytest.raises(ValueError, match="CUDA"):
        resolve_device("cuda:0")


# ----------------------------------------------------------------------------
# max_time
# ----------------------------------------------------------------------------

def test_max_time_stops_the_search_with_a_usable_model(digits):
    Xtr, Xte, ytr, yte = digits
    # The full search (1 + 7 * 5 architectures, 3 variants, 20 epochs each) would
    # take many minutes here; max_time stops it between epochs.
    clf = ResBuilderClassifier(flop_budget=BUDGET, n_insertions=4, n_morph_steps=7,
                               max_epochs=20, augment=False, max_time=1.0,
                               random_state=0).fit(Xtr, ytr)
    assert clf.stopped_ == "max_time"
    assert clf.best_architecture_.flops() <= BUDGET
    assert len(clf.history_) < 1 + 7 * 5
    # What the deadline left out is said, with the estimate that decided it.
    for k in clf.skipped_:
        assert k["operation"] in ("insert", "morph")
        assert k["estimated_seconds"] > k["seconds_left"]
    # The deadline holds by construction: the plan never models more time
    # than max_time (its wall seconds, on a shared machine, are not asserted).
    assert clf.plan_["max_time"] == 1.0 and clf.plan_["planned_seconds"] <= 1.0
    pred = clf.predict(Xte)
    assert set(pred) <= set(clf.classes_)
    np.testing.assert_allclose(clf.predict_proba(Xte).sum(axis=1), 1.0, atol=1e-5)
    assert clf.score(Xte, yte) == pytest.approx(np.mean(pred == yte))


def test_warns_when_time_ran_out_before_anything_within_budget_trained():
    """A start above the budget and no time: the result fits the budget (a final
    MorphNet step) but is untrained, and the user is told so."""
    X, y = _X()
    wide = Architecture.minimal((1, 8, 8), 10, width=64)
    assert wide.flops() > 2e4
    clf = ResBuilderClassifier(**{**TINY, "flop_budget": 2e4, "start": wide, "max_time": 1e-3})
    with pytest.warns(UserWarning, match="not trained"):
        clf.fit(X, y)
    assert clf.best_architecture_.flops() <= 2e4
    assert clf.stopped_ == "max_time"


def test_no_warning_for_a_normal_fit(recwarn):
    X, y = _X()
    ResBuilderClassifier(**TINY).fit(X, y)
    assert not [w for w in recwarn if "not trained" in str(w.message)]


@pytest.mark.parametrize("native", [False, True])
def test_mixed_precision_auto_means_cuda_or_a_native_bf16_cpu(monkeypatch, native):
    from sklearn_resbuilder import estimator
    from sklearn_resbuilder.estimator import resolve_mixed_precision

    monkeypatch.setattr(estimator, "cpu_has_native_bf16", lambda: native)
    assert resolve_mixed_precision("auto", "cpu") is native
    assert resolve_mixed_precision("auto", "cpu:0") is native
    assert resolve_mixed_precision("auto", "cuda") is True
    assert resolve_mixed_precision("auto", "cuda:1") is True
    assert resolve_mixed_precision(True, "cpu") is True
    assert resolve_mixed_precision(False, "cuda") is False
    with pytest.raises(ValueError, match="mixed_precision"):
        ResBuilderClassifier(mixed_precision="bf16").fit(*_X())


def test_cpu_has_native_bf16_matches_the_cpu_flags():
    """The check reads what oneDNN reports; on Linux the CPU's flags must agree."""
    from sklearn_resbuilder.estimator import cpu_has_native_bf16

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo")
    flags = set(cpuinfo.read_text().split())
    if cpu_has_native_bf16():
        assert flags & {"avx512_bf16", "amx_bf16", "amx_tile"}
    else:
        assert not flags & {"avx512_bf16", "amx_tile"}


def test_predict_reads_pixels_on_the_training_scale_whatever_the_dtype():
    X, y = _X()
    X8 = np.round(X / X.max() * 255).astype(np.uint8)
    on_uint8 = ResBuilderClassifier(**TINY).fit(X8, y)
    np.testing.assert_allclose(on_uint8.predict_proba(X8.astype(np.float64)),
                               on_uint8.predict_proba(X8), atol=1e-6)
    on_float = ResBuilderClassifier(**TINY).fit(X8.astype(np.float32), y)
    np.testing.assert_allclose(on_float.predict_proba(X8),
                               on_float.predict_proba(X8.astype(np.float32)), atol=1e-6)


# ------------------------------------------------------- what a user expects of fit
def test_fit_leaves_the_global_torch_rng_alone(small):
    X, y, _, _ = small
    state = torch.get_rng_state()
    ResBuilderClassifier(flop_budget=BUDGET, n_insertions=1, n_morph_steps=0, max_epochs=1,
                         augment=False, random_state=0).fit(X, y)
    assert torch.equal(torch.get_rng_state(), state)


def test_refit_false_returns_the_search_network(small):
    X, y, _, _ = small
    kw = dict(flop_budget=BUDGET, n_insertions=1, n_morph_steps=0, max_epochs=2,
              augment=False, random_state=0)
    off = ResBuilderClassifier(refit=False, **kw).fit(X, y)
    on = ResBuilderClassifier(**kw).fit(X, y)
    assert off.refit_ is None and "refit" not in off.history_[off.best_step_]
    # Same search (same seed), then only the refit trains on more.
    assert strip_seconds(off.history_) == strip_seconds(
        [{k: v for k, v in r.items() if k != "refit"} for r in on.history_])
    assert on.refit_["n_images"] == len(X) and on.refit_["used"]
    assert on.refit_["epochs"] == on.refit_["planned_epochs"]
    # min_steps: 500 images at batch 128 are 4 steps an epoch: >= 600 steps is 150 epochs.
    assert on.refit_["epochs"] >= 150
    w_off = [p.detach() for p in off.module_.parameters()]
    w_on = [p.detach() for p in on.module_.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(w_off, w_on))


def _mirror_symmetric(n=600, seed=0):
    """8x8 images, class = which row holds a horizontal bar: mirroring keeps the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 8, n)
    X = rng.normal(0, 0.3, (n, 8, 8)).astype(np.float32)
    X[np.arange(n), y, :] += 1.5
    X = (X + X[:, :, ::-1]) / 2  # symmetric noise too
    return X.reshape(n, 64), y


@pytest.mark.parametrize("which", ["digits", "mirror"])
def test_augment_auto_flips_only_mirror_invariant_data(small, which):
    X, y = small[:2] if which == "digits" else _mirror_symmetric()
    clf = ResBuilderClassifier(flop_budget=BUDGET, n_insertions=1, n_morph_steps=0,
                               max_epochs=12, lr=3e-3, refit=False, random_state=0).fit(X, y)
    check = clf.history_[0]["augment"]
    assert check["chosen"] == ("shift" if which == "digits" else True), check
    if which == "digits":  # mirrored digits lose a lot
        assert check["flipped_accuracy"] < check["accuracy"] - 0.1


def test_small_data_cross_validation_beats_logistic_regression():
    """300 training digits per fold: the refit's step floor and schedule train
    a network (before: 0.14-0.19 at 3 epochs, where an SVC gets ~0.95)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    X, y = load_digits(return_X_y=True)
    X, y = X[:600], y[:600]
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    lr = cross_val_score(LogisticRegression(max_iter=2000), X, y, cv=cv).mean()
    rb = cross_val_score(ResBuilderClassifier(flop_budget=2e5, n_insertions=1, n_morph_steps=1,
                                              max_epochs=3, random_state=0), X, y, cv=cv).mean()
    assert rb > lr, (rb, lr)


def test_pyramid_start_is_the_doubling_net():
    X, y = _X()
    clf = ResBuilderClassifier(**{**TINY, "max_epochs": 1, "start": "pyramid"}).fit(X, y)
    first = Architecture.from_dict(clf.history_[0]["architecture"])
    assert first == Architecture.pyramid((1, 8, 8), 10)
    assert [s.width for s in clf.best_architecture_.stages] == [16, 32, 64]
    with pytest.raises(ValueError, match="start"):
        ResBuilderClassifier(start="pyramids").fit(X, y)


def test_a_named_start_over_the_budget_is_shrunk_to_it_first():
    """Below the minimal net's FLOPs the start is scaled down to the budget
    before it trains: it is then within the budget, trained No Reg too, and a
    candidate (before, nothing could be chosen until the first MorphNet step)."""
    X, y = _X()
    start = Architecture.minimal((1, 8, 8), 10)
    budget = start.flops() / 2
    clf = ResBuilderClassifier(**{**TINY, "max_epochs": 1, "flop_budget": budget}).fit(X, y)
    first = clf.history_[0]
    shrunk = Architecture.from_dict(first["architecture"])
    assert shrunk == largest_omega(start, budget, multiple=8)[1]
    assert shrunk.stages[0].width < start.stages[0].width
    assert first["flops"] <= budget and first["within_budget"]
    assert set(first["scores"]) == {"with_reg", "no_reg_wi"}
    assert clf.best_step_ == 0 and clf.best_architecture_ == shrunk
    # A start given as an Architecture is the user's: it trains as given.
    clf = ResBuilderClassifier(**{**TINY, "max_epochs": 1, "flop_budget": budget,
                                  "n_morph_steps": 1, "start": start}).fit(X, y)
    assert Architecture.from_dict(clf.history_[0]["architecture"]) == start
    assert set(clf.history_[0]["scores"]) == {"with_reg"}


def test_several_starts_are_each_shrunk_trained_and_candidates():
    X, y = _X()
    budget = 4e4  # under the pyramid's 56k FLOPs, over the minimal net's 20k
    clf = ResBuilderClassifier(**{**TINY, "max_epochs": 1, "flop_budget": budget,
                                  "start": ("minimal", "pyramid")}).fit(X, y)
    starts = [r for r in clf.history_ if r["operation"] == "start"]
    assert [Architecture.from_dict(r["architecture"]) for r in starts] == [
        Architecture.minimal((1, 8, 8), 10),
        largest_omega(Architecture.pyramid((1, 8, 8), 10), budget, multiple=8)[1]]
    assert all(r["within_budget"] and "no_reg_wi" in r["scores"] for r in starts)
    assert clf.best_step_ in (0, 1) and clf.best_architecture_.flops() <= budget


@pytest.mark.parametrize("start, match", [
    (("minimal", "wide"), "start must be one of"),
    ([], "start must be one of"),
    (("minimal", "minimal"), "lists a start twice"),
])
def test_a_bad_start_list_is_a_value_error_before_training(start, match):
    X, y = _X()
    with pytest.raises(ValueError, match=match):
        ResBuilderClassifier(**{**TINY, "start": start}).fit(X, y)


def test_a_start_of_the_list_that_cannot_fit_the_budget_is_named():
    X, y = _X()
    minimal = Architecture.minimal((1, 8, 8), 10)
    budget = 3 * minimal.narrowest().flops()  # resnet18's 8 blocks need more at width 1
    with pytest.raises(ValueError, match="start 'resnet18': flop budget 3,696 is below"):
        ResBuilderClassifier(**{**TINY, "flop_budget": budget,
                                "start": ["minimal", "resnet18"]}).fit(X, y)


def _approx_floats(record):
    """Losses to 1e-5 (float32 kernels may round differently between CPU kinds);
    everything else (architectures, accuracies, epochs, steps) exactly."""
    if isinstance(record, dict):
        return {k: _approx_floats(v) for k, v in record.items()}
    if isinstance(record, list):
        return [_approx_floats(v) for v in record]
    if isinstance(record, float):
        return pytest.approx(record, rel=1e-5)
    return record


def test_a_fixed_seed_follows_the_recorded_search_path():
    """The search's whole path (every step's architecture, FLOPs, omega, removals
    and scores) for one seed equals the one recorded in tests/data: a refactor
    that means to keep behaviour must keep this."""
    import importlib.util
    path = Path(__file__).parent / "data" / "make_recorded_history.py"
    spec = importlib.util.spec_from_file_location("make_recorded_history", path)
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    recorded = json.loads(path.with_name("recorded_history.json").read_text())
    assert recorded["params"] == maker.PARAMS
    history = maker.fit_history()
    assert [r["operation"] for r in history] == [r["operation"] for r in recorded["history"]]
    assert {"insert", "remove", "morph"} <= {r["operation"] for r in history}
    assert history == _approx_floats(recorded["history"])


def test_max_epochs_auto_is_the_papers_20_without_max_time_and_checked():
    X, y = _X()
    clf = ResBuilderClassifier(**{**TINY, "max_epochs": "auto"}).fit(X, y)
    assert clf.max_epochs_ == 20
    assert clf.history_[0]["scores"]["with_reg"]["epochs"] <= 20
    assert ResBuilderClassifier(**TINY).fit(X, y).max_epochs_ == TINY["max_epochs"]
    for bad in ("fast", 0, 2.5):
        with pytest.raises(ValueError, match="max_epochs"):
            ResBuilderClassifier(**{**TINY, "max_epochs": bad}).fit(X, y)


def test_start_auto_is_the_minimal_net_unless_the_budget_makes_it_too_narrow():
    from sklearn_resbuilder.architecture import Architecture
    from sklearn_resbuilder.defaults import MIN_MORPH_WIDTH
    from sklearn_resbuilder.flops import largest_omega

    X, y = _X()
    shape = (1, 8, 8)
    minimal = Architecture.minimal(shape, 10)
    wide_enough = 2e5  # the 16-wide minimal net fits as it is
    # A budget at which the minimal net, scaled down to it, is narrower than 8.
    narrow = next(b for b in (6e3, 5e3, 4e3, 3e3)
                  if max(largest_omega(minimal, b, multiple=8)[1].group_widths()) < MIN_MORPH_WIDTH)
    kw = {**TINY, "max_epochs": 1, "start": "auto"}
    first = ResBuilderClassifier(**{**kw, "flop_budget": wide_enough}).fit(X, y).history_[0]
    assert Architecture.from_dict(first["architecture"]) == minimal
    first = ResBuilderClassifier(**{**kw, "flop_budget": narrow}).fit(X, y).history_[0]
    arch = Architecture.from_dict(first["architecture"])
    assert [s.transition for s in arch.stages] == [False, True, True]  # the pyramid
    assert arch.flops() <= narrow and arch.stages[-1].width >= MIN_MORPH_WIDTH
    with pytest.raises(ValueError, match="auto"):
        ResBuilderClassifier(**{**kw, "start": ["auto", "minimal"]}).fit(X, y)


def test_start_auto_pools_the_input_where_even_the_pyramid_stem_is_too_narrow():
    """Where the pyramid scaled to the budget has a stem narrower than 8, "auto"
    trains the pyramid on the images average-pooled by 2 (while the pooled
    side is at least AUTO_MIN_SIDE): wider, within the same budget."""
    from sklearn_resbuilder.architecture import Architecture
    from sklearn_resbuilder.defaults import AUTO_MIN_SIDE, MIN_MORPH_WIDTH
    from sklearn_resbuilder.flops import largest_omega

    rng = np.random.default_rng(0)
    X, y = rng.random((60, 28 * 28)), np.arange(60) % 3
    shape = (1, 28, 28)
    kw = {**TINY, "max_epochs": 1, "start": "auto"}

    def first(X, y, budget):
        clf = ResBuilderClassifier(**{**kw, "flop_budget": budget}).fit(X, y)
        return Architecture.from_dict(clf.history_[0]["architecture"])

    def scaled(start, budget):
        return largest_omega(start(shape, 3), budget, multiple=8)[1]

    narrow = next(b for b in (6e4, 5e4, 4e4, 3e4)
                  if max(scaled(Architecture.minimal, b).group_widths()) < MIN_MORPH_WIDTH)
    full_size_stem = scaled(Architecture.pyramid, narrow).stem.width
    assert full_size_stem < MIN_MORPH_WIDTH
    pooled = first(X, y, narrow)
    assert pooled.stem.downsample == 2 and pooled.stem_input_hw() == (14, 14)
    assert 28 // 4 < AUTO_MIN_SIDE  # so it stops at one halving
    assert [s.transition for s in pooled.stages] == [False, True, True]
    assert pooled.flops() <= narrow and pooled.stem.width > full_size_stem
    # Where the minimal net is wide enough, it starts at full size.
    wide = first(X, y, 1e6)
    assert wide.stem.downsample == 1 and not any(s.transition for s in wide.stages)
    # 8x8 images are never pooled below AUTO_MIN_SIDE: the full-size pyramid.
    small = first(*_X(), 3e3)
    assert small.stem.downsample == 1 and small.stages[-1].transition


@pytest.mark.parametrize("cut_share", [0.95, 0.3])
def test_a_refit_the_clock_cut_is_used_only_near_its_end(small, monkeypatch, cut_share):
    """The wall-clock safety net cuts the refit at 95 % of its epochs (its
    learning rate all but annealed): module_ is the refit network, with a
    warning. Cut at 30 %: the search's network, with a warning that says so."""
    from sklearn_resbuilder.timeplan import TimePlan
    Xtr, ytr, _, _ = small
    real, seen = estimator_module.refit, {}

    def spy(module, data, config, *, epochs, **kw):
        seen["cut"] = max(1, int(cut_share * epochs))
        seen["planned"] = epochs
        res = real(module, data, config, epochs=epochs, **kw)
        seen["module"] = res.module
        return res

    monkeypatch.setattr(estimator_module, "refit", spy)
    # The clock is never past 1.5 x max_time here but in the refit, at "cut".
    monkeypatch.setattr(TimePlan, "hard_stop",
                        lambda self, training, epochs: epochs == seen.get("cut"))
    clf = ResBuilderClassifier(**{**TINY, "refit": True, "max_time": 600.0})
    with pytest.warns(UserWarning, match="refit stopped early"):
        clf.fit(Xtr, ytr)
    r = clf.refit_
    assert r["stopped"] == "hard stop" and r["epochs"] == seen["cut"] < seen["planned"]
    assert seen["planned"] >= 20  # so that 95 % is a real cut
    if cut_share > 0.9:
        assert r["used"]
        assert all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(
            clf.module_.state_dict().values(), seen["module"].state_dict().values()))
    else:
        assert not r["used"]
        assert clf.module_.state_dict().keys() == seen["module"].state_dict().keys()
        assert not all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(
            clf.module_.state_dict().values(), seen["module"].state_dict().values()))
