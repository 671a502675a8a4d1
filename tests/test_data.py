"""Tests for sklearn_resbuilder.data: image layouts, labels, split, statistics."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from sklearn_resbuilder.data import (
    channel_stats,
    check_labels,
    check_same_shape,
    is_channels_last,
    take_samples,
    to_images,
    validation_split,
)


def hwc_batch(n=5, h=4, w=6, c=3, dtype=np.float32):
    """(n, H, W, C) images whose value encodes (sample, row, col, channel)."""
    i, r, col, ch = np.meshgrid(np.arange(n), np.arange(h), np.arange(w),
                                np.arange(c), indexing="ij")
    return (i * 1000 + r * 100 + col * 10 + ch).astype(dtype) if dtype != np.uint8 \
        else ((i * 37 + r * 11 + col * 5 + ch * 60) % 256).astype(np.uint8)


# ----------------------------------------------------------------------------
# layouts
# ----------------------------------------------------------------------------

def test_every_rgb_layout_gives_the_same_images():
    hwc = hwc_batch()
    n, h, w, c = hwc.shape
    expected = hwc.transpose(0, 3, 1, 2)
    inputs = {
        "channel-last": (hwc, None),
        "channel-first": (expected.copy(), None),
        "flat channel-last, image_shape (H, W, C)": (hwc.reshape(n, -1), (h, w, c)),
        "flat channel-first, image_shape (C, H, W)": (expected.reshape(n, -1), (c, h, w)),
        "list": (hwc.tolist(), None),
    }
    for name, (X, shape) in inputs.items():
        images, input_shape = to_images(X, image_shape=shape)
        assert input_shape == (3, h, w), name
        assert images.dtype == np.float32, name
        assert images.flags.c_contiguous, name
        np.testing.assert_array_equal(images, expected, err_msg=name)
    # the pixel at sample 2, row 1, column 4, channel 2 lands in the right place
    assert images[2, 2, 1, 4] == 2000 + 100 + 40 + 2


def test_flat_rgb_is_inferred_channel_last():
    hwc = hwc_batch(h=5, w=5)
    images, input_shape = to_images(hwc.reshape(len(hwc), -1))
    assert input_shape == (3, 5, 5)
    np.testing.assert_array_equal(images, hwc.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("X_shape, image_shape, expected", [
    ((7, 64), None, (1, 8, 8)),            # square -> one channel
    ((7, 64), (4, 16), (1, 4, 16)),        # explicit (H, W)
    ((7, 64), (1, 8, 8), (1, 8, 8)),
    ((7, 64), (8, 8, 1), (1, 8, 8)),
    ((7, 48), (4, 4, 3), (3, 4, 4)),
    ((7, 8, 9), None, (1, 8, 9)),          # (n, H, W)
    ((7, 8, 9, 1), None, (1, 8, 9)),       # channel-last gray
    ((7, 8, 9, 4), None, (4, 8, 9)),       # RGBA
    ((7, 1, 8, 9), None, (1, 8, 9)),       # channel-first gray
    ((7, 4, 8, 9), None, (4, 8, 9)),
    ((7, 4, 8, 3), None, (3, 4, 8)),       # ambiguous: smaller axis is channels
    ((7, 3, 8, 4), None, (3, 8, 4)),
    ((7, 3, 5, 3), None, (3, 5, 3)),       # tie: kept channel-first
])
def test_shapes(X_shape, image_shape, expected):
    X = np.arange(np.prod(X_shape), dtype=np.float64).reshape(X_shape)
    images, input_shape = to_images(X, image_shape=image_shape)
    assert input_shape == expected
    assert images.shape == (X_shape[0],) + expected
    # a one-channel image keeps its pixel order
    if expected[0] == 1:
        np.testing.assert_array_equal(images.reshape(len(X), -1), X.reshape(len(X), -1))


def test_gray_layouts_agree():
    X = np.random.default_rng(0).random((4, 6, 6))
    ref, _ = to_images(X)
    for other in (X.reshape(4, -1), X[..., None], X[:, None]):
        np.testing.assert_array_equal(to_images(other)[0], ref)


def test_uint8_is_kept():
    hwc = hwc_batch(dtype=np.uint8)
    images, input_shape = to_images(hwc)
    assert images.dtype == np.uint8 and images.flags.c_contiguous
    np.testing.assert_array_equal(images, hwc.transpose(0, 3, 1, 2))
    flat, _ = to_images(hwc.reshape(len(hwc), -1), image_shape=hwc.shape[1:])
    assert flat.dtype == np.uint8
    np.testing.assert_array_equal(flat, images)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int64, np.int8,
                                   np.uint16, bool])
def test_other_dtypes_become_float32_unscaled(dtype):
    X = (np.arange(2 * 16).reshape(2, 16) % 2).astype(dtype)
    images, _ = to_images(X)
    assert images.dtype == np.float32
    np.testing.assert_array_equal(images.reshape(2, -1), X.astype(np.float32))


def test_dataframe_input():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(6, 16)).astype(np.uint8)
    images, shape = to_images(pd.DataFrame(X))
    assert shape == (1, 4, 4) and images.dtype == np.uint8
    np.testing.assert_array_equal(images.reshape(6, -1), X)

    Xf = pd.DataFrame(X.astype(float))                                # float
    Xm = pd.DataFrame(X).astype({0: "float64"})                       # mixed dtypes
    for frame in (Xf, Xm):
        images, shape = to_images(frame)
        assert shape == (1, 4, 4) and images.dtype == np.float32
        np.testing.assert_array_equal(images.reshape(6, -1), X)


def test_numeric_objects_and_strings_are_converted():
    X = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=object)
    images, _ = to_images(X)
    assert images.dtype == np.float32 and images[1, 0, 1, 1] == 8


def test_finite_float32_limits_are_fine():
    X = np.full((2, 4), 3.0e38)
    images, _ = to_images(X)
    assert np.isfinite(images).all()


# ----------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("X, kwargs, match", [
    (np.zeros((0, 16)), {}, "0 samples"),
    ([], {}, "0 samples"),
    (np.zeros(16), {}, "1-D"),
    (np.zeros((2, 3, 4, 4, 3)), {}, "5-D"),
    (np.float64(3.0), {}, "scalar"),
    (np.zeros((2, 0)), {}, "empty image axis"),
    (np.array([["a", "b", "c", "d"]] * 2), {}, "non-numeric"),
    (np.array([[object()] * 4] * 2), {}, "non-numeric"),
    (np.zeros((2, 4), dtype=complex), {}, "non-numeric dtype"),
    (pd.DataFrame({"a": ["x", "y"], "b": ["z", "w"], "c": ["1", "2"], "d": ["3", "4"]}),
     {}, "non-numeric"),
    ([[1, 2], [3]], {}, "cannot be read"),
    (np.zeros((2, 10)), {}, r"pass image_shape=\(H, W\) or\s+\(C, H, W\)"),
    (np.zeros((2, 12)), {"image_shape": (2, 2)}, r"image_shape=\(2, 2\) has 4 values.*12 features.*3 channels"),
    (np.zeros((2, 16)), {"image_shape": (3, 3)}, "9 values per image but X has 16"),
    (np.zeros((2, 16)), {"image_shape": (2, 2, 2, 2)}, "image_shape must be"),
    (np.zeros((2, 16)), {"image_shape": (4, -4)}, "image_shape must be"),
    (np.zeros((2, 16)), {"image_shape": 16}, "image_shape must be"),
    (np.zeros((2, 16)), {"image_shape": (2, 4, 2)}, "which axis holds the channels"),
    (np.zeros((2, 8, 8, 2)), {}, "which axis holds the channels"),
    (np.zeros((2, 5, 8, 6)), {}, "which axis holds the channels"),
    (np.zeros((2, 8, 8)), {"image_shape": (3, 8, 8)}, "does not match"),
    (np.zeros((2, 8, 8, 3)), {"image_shape": (8, 8)}, "does not match"),
])
def test_errors(X, kwargs, match):
    with pytest.raises(ValueError, match=match):
        to_images(X, **kwargs)


def test_image_shape_is_checked_not_used_for_nd_input():
    X = np.zeros((2, 8, 8, 3))
    assert to_images(X, image_shape=(3, 8, 8))[1] == (3, 8, 8)
    assert to_images(X, image_shape=(8, 8, 3))[1] == (3, 8, 8)


def test_nan_and_inf_are_counted():
    X = np.zeros((3, 16))
    X[0, 1] = np.nan
    X[1, 2] = np.inf
    X[2, 3] = -np.inf
    with pytest.raises(ValueError, match="1 NaN and 2 infinite"):
        to_images(X)


def test_float32_overflow_counts_as_infinite():
    X = np.zeros((2, 16))
    X[1, 5] = -1e39
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cast must not leak a RuntimeWarning
        with pytest.raises(ValueError, match="0 NaN and 1 infinite.*overflow"):
            to_images(X)


def test_nullable_dataframe_na_is_nan():
    frame = pd.DataFrame(np.zeros((2, 4), dtype=int)).astype("Int64")
    frame.iloc[0, 0] = pd.NA
    with pytest.raises(ValueError, match="1 NaN"):
        to_images(frame)


def test_check_same_shape():
    check_same_shape((3, 8, 8), (3, 8, 8))
    with pytest.raises(ValueError, match=r"X has images of shape .*\(1, 8, 8\) but the "
                                         r"estimator was fitted on \(3, 8, 8\)"):
        check_same_shape((1, 8, 8), (3, 8, 8))


# ----------------------------------------------------------------------------
# labels
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("y", [
    ["cat", "dog", "cat", "bird"],
    np.array([-3, 5, -3, 0]),
    np.array([1.0, 2.0, 1.0, 2.0]),
    np.array([True, False, True, True]),
    pd.Series(["b", "a", "b", "a"]),
    pd.Series(["b", "a", "b", "a"], dtype="category"),
    np.array([[3], [1], [3], [2]]),
])
def test_label_round_trip(y):
    classes, enc = check_labels(y, 4)
    assert enc.dtype == np.int64 and enc.shape == (4,)
    expected = np.asarray(y).ravel()
    np.testing.assert_array_equal(classes[enc], expected)
    assert list(classes) == sorted(set(expected.tolist()))


def test_negative_int_labels_keep_their_values():
    classes, enc = check_labels([-1, 1, -1], 3)
    assert classes.tolist() == [-1, 1] and enc.tolist() == [0, 1, 0]


@pytest.mark.parametrize("y, n, match", [
    ([0, 1, 0], 4, "X has 4 samples but y has 3"),
    (np.zeros((4, 2)), 4, r"1-D .*got shape \(4, 2\)"),
    (np.zeros((2, 2, 1)), 2, "1-D"),
    ([0.0, np.nan, 1.0], 3, "1 missing"),
    (pd.Series([0, None, 1], dtype="Int64"), 3, "1 missing"),
    (np.array(["a", None, "b"], dtype=object), 3, "1 missing"),
    (np.array(["a", float("nan"), "b"], dtype=object), 3, "1 missing"),
    ([1, 1, 1], 3, r"single class \(1\); a classifier needs at least two"),
    (["a", "a"], 2, "single class"),
    ([0.5, 1.0, 2.0], 3, "non-integral"),
    (np.array(["a", 1], dtype=object), 2, "mixes"),
])
def test_label_errors(y, n, match):
    with pytest.raises(ValueError, match=match):
        check_labels(y, n)


# ----------------------------------------------------------------------------
# validation split
# ----------------------------------------------------------------------------

def _assert_partition(train, valid, y):
    assert train.dtype == np.int64 and valid.dtype == np.int64
    assert len(np.intersect1d(train, valid)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, valid])), np.arange(len(y)))
    assert set(y[train]) == set(y) and set(y[valid]) == set(y)


def test_split_is_stratified_and_seeded():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    train, valid = validation_split(y, 0.2, 0)
    _assert_partition(train, valid, y)
    assert len(valid) == 20
    np.testing.assert_array_equal(np.bincount(y[valid]), [10, 6, 3, 1])
    again = validation_split(y, 0.2, 0)
    np.testing.assert_array_equal(again[0], train)
    np.testing.assert_array_equal(again[1], valid)
    other = validation_split(y, 0.2, 1)
    assert not np.array_equal(other[1], valid)


def test_split_keeps_rare_classes_on_both_sides():
    # rounding alone would give class 1 no validation sample
    y = np.array([0] * 1000 + [1] * 2)
    for seed in range(5):
        train, valid = validation_split(y, 0.1, seed)
        _assert_partition(train, valid, y)
    # and with a large fraction, no training sample of class 1
    y = np.array([0] * 20 + [1] * 2)
    train, valid = validation_split(y, 0.9, 0)
    _assert_partition(train, valid, y)


def test_split_inexact_stratification_still_works():
    y = np.array([0, 0, 0, 1, 1, 2, 2])
    train, valid = validation_split(y, 0.5, 3)
    _assert_partition(train, valid, y)


@pytest.mark.parametrize("y, fraction, match", [
    ([0, 0, 1], 0.5, "class 1 has only 1 sample.*at least 2"),
    (np.repeat(np.arange(10), 2), 0.9, r"leaves 2 training samples.*about 10 samples per class.*Lower validation_fraction"),
    ([0, 0, 1, 1], 0.0, r"in \(0, 1\)"),
    ([0, 0, 1, 1], 1.0, r"in \(0, 1\)"),
    ([0, 0, 1, 1], "0.1", r"in \(0, 1\)"),
])
def test_split_errors(y, fraction, match):
    """Bad fractions and data too small for one sample per class on each side."""
    with pytest.raises(ValueError, match=match):
        validation_split(np.asarray(y), fraction, 0)


def test_split_grows_a_too_small_validation_part_to_one_per_class():
    y = np.repeat(np.arange(10), 2)  # 0.1 * 20 = 2 validation samples for 10 classes
    train, valid = validation_split(y, 0.1, 0)
    assert sorted(y[valid]) == list(range(10))
    assert sorted(y[train]) == list(range(10))


def test_split_error_names_the_original_class():
    with pytest.raises(ValueError, match="class 'rare' has only 1"):
        validation_split(np.array([0, 0, 1]), 0.5, 0, classes=np.array(["common", "rare"]))


# ----------------------------------------------------------------------------
# channel statistics
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("chunk_samples", [None, 1, 3])
def test_channel_stats_uint8(chunk_samples):
    images = np.random.default_rng(0).integers(0, 256, (10, 3, 5, 4)).astype(np.uint8)
    mean, std = channel_stats(images, chunk_samples=chunk_samples)
    assert mean.dtype == np.float32 and mean.shape == (3,) and std.shape == (3,)
    ref = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean((0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, ref.std((0, 2, 3)), rtol=1e-6)


@pytest.mark.parametrize("chunk_samples", [None, 2])
def test_channel_stats_float(chunk_samples):
    images = (np.random.default_rng(1).normal(1e4, 2.0, (9, 2, 4, 4))).astype(np.float32)
    mean, std = channel_stats(images, chunk_samples=chunk_samples)
    ref = images.astype(np.float64)
    np.testing.assert_allclose(mean, ref.mean((0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, ref.std((0, 2, 3)), rtol=1e-5)


def test_channel_stats_constant_channel_is_floored():
    images = np.zeros((4, 2, 3, 3), dtype=np.uint8)
    images[:, 1] = 255
    mean, std = channel_stats(images)
    np.testing.assert_allclose(mean, [0, 1])
    np.testing.assert_array_equal(std, np.float32(1e-6))


def test_channel_stats_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        channel_stats(np.zeros((3, 4, 4)))


# ----------------------------------------------------------------------------
# memory on the way into training
# ----------------------------------------------------------------------------

class _PrepDone(Exception):
    pass


def _prep_of_fit(X, y, monkeypatch):
    """``(TrainingData, peak traced bytes)`` of ``fit``'s input preparation:
    ``fit`` is stopped where the search would start. tracemalloc sees every
    numpy buffer (torch tensors made by ``as_tensor`` share them)."""
    import tracemalloc

    import sklearn_resbuilder.estimator as est
    from sklearn_resbuilder import ResBuilderClassifier

    seen = {}

    def run_search(start, data, *args, **kwargs):
        seen["data"] = data
        seen["peak"] = tracemalloc.get_traced_memory()[1]
        raise _PrepDone

    monkeypatch.setattr(est, "run_search", run_search)
    tracemalloc.start()
    try:
        with pytest.raises(_PrepDone):
            ResBuilderClassifier(flop_budget=1e7, device="cpu", random_state=0).fit(X, y)
    finally:
        tracemalloc.stop()
    return seen["data"], seen["peak"]


def _indexed_images(n, h, w):
    """Random uint8 (n, h, w, 3) images whose first two pixel values say the
    sample's index, so a copy can be traced back to its source rows."""
    X = np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    X[:, 0, 0, 0], X[:, 0, 0, 1] = np.arange(n) % 256, np.arange(n) // 256  # n <= 65536
    return X


def test_fit_copies_a_channel_last_uint8_input_at_most_once(monkeypatch):
    # 53 MiB: large next to the fixed costs (channel_stats' 8 MB float chunk).
    X = _indexed_images(2000, 96, 96)
    y = np.arange(len(X)) % 10
    data, peak = _prep_of_fit(X, y, monkeypatch)
    # One copy is the train/valid gather; a second (a channel-first copy, or
    # a split copied after the transpose) would take the peak past 2x.
    assert peak < 1.35 * X.nbytes, f"prep allocated {peak / X.nbytes:.2f} x the input"
    # Train and valid live in one buffer of the input's size: no torch copy
    # either. (Plain ints in the asserts: pytest would print whole tensors.)
    storage = data.X_train.untyped_storage()
    nbytes, ptr = storage.nbytes(), storage.data_ptr()
    valid_ptr = data.X_valid.untyped_storage().data_ptr()
    assert nbytes == X.nbytes and valid_ptr == ptr
    # ... laid out channels-last, the network's format, as the input was.
    channels_last = data.X_train.is_contiguous(memory_format=torch.channels_last)
    assert channels_last
    # The pixels are the input's, every sample once, labels alongside.
    Xt, Xv = data.X_train.numpy(), data.X_valid.numpy()
    idx_t = Xt[:, 0, 0, 0].astype(int) + 256 * Xt[:, 1, 0, 0].astype(int)
    idx_v = Xv[:, 0, 0, 0].astype(int) + 256 * Xv[:, 1, 0, 0].astype(int)
    np.testing.assert_array_equal(np.sort(np.concatenate([idx_t, idx_v])), np.arange(len(X)))
    np.testing.assert_array_equal(Xt, X[idx_t].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(Xv, X[idx_v].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(data.y_train.numpy(), y[idx_t])
    np.testing.assert_array_equal(data.y_valid.numpy(), y[idx_v])


def test_fit_copies_a_channel_first_uint8_input_at_most_once(monkeypatch):
    X = np.ascontiguousarray(_indexed_images(2000, 96, 96).transpose(0, 3, 1, 2))
    data, peak = _prep_of_fit(X, np.arange(len(X)) % 10, monkeypatch)
    assert peak < 1.35 * X.nbytes, f"prep allocated {peak / X.nbytes:.2f} x the input"
    nbytes = data.X_train.untyped_storage().nbytes()
    contiguous = data.X_train.is_contiguous()
    assert nbytes == X.nbytes
    assert contiguous  # channel-first input: kept channel-first


def test_to_images_keep_channels_last_is_a_view_with_the_same_images():
    hwc = hwc_batch(dtype=np.uint8)
    plain, shape = to_images(hwc)
    view, shape_view = to_images(hwc, keep_channels_last=True)
    assert shape == shape_view == (3, 4, 6)
    np.testing.assert_array_equal(view, plain)
    assert np.shares_memory(view, hwc) and not np.shares_memory(plain, hwc)
    # Flat channel-last rows are a view too; a float64 input is cast once,
    # keeping the channel-last layout.
    flat, _ = to_images(hwc.reshape(len(hwc), -1), (4, 6, 3), keep_channels_last=True)
    assert np.shares_memory(flat, hwc)
    cast, _ = to_images(hwc_batch(dtype=np.float64), keep_channels_last=True)
    assert cast.dtype == np.float32 and is_channels_last(cast) and not cast.flags.c_contiguous
    # Channel-first input: C-contiguous either way.
    chw, _ = to_images(np.ascontiguousarray(plain), keep_channels_last=True)
    assert chw.flags.c_contiguous


def test_take_samples_keeps_the_layout_and_copies():
    hwc = hwc_batch(n=6, dtype=np.uint8)
    view = hwc.transpose(0, 3, 1, 2)
    order = [4, 0, 5]
    taken = take_samples(view, order)
    np.testing.assert_array_equal(taken, view[order])
    assert is_channels_last(taken) and not taken.flags.c_contiguous
    assert not np.shares_memory(taken, hwc)
    chw = take_samples(np.ascontiguousarray(view), order)
    np.testing.assert_array_equal(chw, view[order])
    assert chw.flags.c_contiguous


def test_channel_stats_equal_for_both_layouts():
    hwc = np.random.default_rng(3).integers(0, 256, (50, 7, 9, 3), dtype=np.uint8)
    view = hwc.transpose(0, 3, 1, 2)
    for a, b in zip(channel_stats(view, chunk_samples=8),
                    channel_stats(np.ascontiguousarray(view), chunk_samples=8)):
        np.testing.assert_array_equal(a, b)


def test_data_fingerprint_of_a_channel_last_view_equals_the_contiguous_one():
    from sklearn_resbuilder.checkpoint import data_fingerprint

    hwc = np.random.default_rng(4).integers(0, 256, (40, 5, 6, 3), dtype=np.uint8)
    view, y = hwc.transpose(0, 3, 1, 2), np.arange(40) % 2
    same = data_fingerprint(view, y, [0, 1])
    assert same == data_fingerprint(np.ascontiguousarray(view), y, [0, 1])
    other = view.copy()
    other[-1, -1, -1, -1] ^= 1  # the last pixel is hashed too
    assert data_fingerprint(other, y, [0, 1]) != same
