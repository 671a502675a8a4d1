"""The input side of the estimator: images, labels, the validation split.

Everything here is plain numpy (no torch), so bad input is rejected with a
``ValueError`` that names the problem before any network is built
(docs/architecture.md §5.8), never with a traceback from deep inside torch.

Conventions a caller relies on
------------------------------
* Images come out as a C-contiguous ``(n, C, H, W)`` array. ``uint8`` stays
  ``uint8`` (4x less memory than float32; the scaling to [0, 1] by ``1/255``
  happens later, batch by batch, on the device). Every other dtype, ``bool``
  and the other integer types included, becomes ``float32`` *unscaled*.
* Flat rows ``(n, D)`` are reshaped to ``(n, *image_shape)`` and then read by
  the same rules as a 3-D or 4-D array. Without ``image_shape``, ``D = s*s`` is
  one ``s x s`` channel and ``D = 3*s*s`` is an ``(s, s, 3)`` image flattened
  channel-last, i.e. what ``X.reshape(n, -1)`` gives for an ``(n, H, W, 3)``
  array (PIL / matplotlib / Keras order). Data flattened channel-first (the
  CIFAR-10 pickles, OpenML's CIFAR_10) must pass ``image_shape=(3, 32, 32)``.
* 4-D arrays: the channel axis is axis 1 or axis 3, whichever has size in
  {1, 3, 4}; if both do, the smaller size wins, and on a tie axis 1
  (channel-first, the array is kept as given).
* ``uint8`` outputs may share memory with ``X``: callers must not modify them
  in place.
* ``fit`` asks :func:`to_images` for ``keep_channels_last=True``: a
  channel-last input is then read as a strided ``(n, C, H, W)`` view (torch's
  ``channels_last`` layout, which the network runs in anyway) instead of being
  transposed into a copy, and :func:`take_samples` makes the one copy the
  validation split needs in that same layout. A 1 GB ``(n, H, W, C)`` uint8
  input is so copied once on its way into training, not twice.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np

__all__ = [
    "to_images",
    "is_channels_last",
    "take_samples",
    "check_same_shape",
    "check_labels",
    "validation_split",
    "channel_stats",
]

#: Channel counts a 4-D array (or a 3-tuple ``image_shape``) may have.
CHANNEL_COUNTS = (1, 3, 4)

#: uint8 pixels are divided by this before the network sees them.
UINT8_SCALE = 255.0

# Elements handled per chunk when scanning large arrays: big enough to be
# fast (50k MNIST images: ~40 chunks), small enough that a float64 copy of
# one chunk is only ~8 MB (benchmarks/memory.py: the fit's prep peak).
_CHUNK_ELEMENTS = 1 << 20

_FLOAT32_MAX = float(np.finfo(np.float32).max)


class NonNumericError(TypeError, ValueError):
    """Values that are not numbers: a ValueError (docs/architecture.md §5.8) that is also
    the TypeError scikit-learn's checks expect from ``np.asarray(..., float)``."""


# ----------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------

def to_images(X, image_shape=None, *, keep_channels_last=False):
    """Turn ``X`` into a batch of images ``(n, C, H, W)``.

    Parameters
    ----------
    X : array-like
        Numpy array, nested list, pandas DataFrame (or anything
        ``np.asarray`` accepts) of one of these shapes:

        * ``(n, D)`` flat rows: reshaped with ``image_shape`` if given, else
          ``D = s*s`` -> ``(1, s, s)`` and ``D = 3*s*s`` -> ``(3, s, s)``,
          assuming channel-last flattening (see the module docstring);
        * ``(n, H, W)``: one channel;
        * ``(n, H, W, C)`` channel-last, transposed to channel-first;
        * ``(n, C, H, W)`` channel-first, kept.

        For 4-D input the channel axis is axis 1 or 3, whichever has size in
        {1, 3, 4}; if both do, the one with the smaller size, and axis 1 on a
        tie (e.g. ``(n, 3, 32, 32)`` is channel-first, ``(n, 32, 32, 3)`` and
        ``(n, 4, 32, 3)`` are channel-last, ``(n, 3, 5, 3)`` channel-first).
    image_shape : tuple of int, optional
        Shape of one image: ``(H, W)`` (one channel), ``(C, H, W)`` or
        ``(H, W, C)``. For flat rows it says how to reshape each row:
        ``(C, H, W)`` means the row holds channel after channel, ``(H, W, C)``
        means pixel after pixel (a 3-tuple is read by the 4-D rule above).
        For 3-D/4-D ``X`` it is only checked against the images found.
    keep_channels_last : bool, default=False
        If the images are laid out channel-last in memory (an ``(n, H, W, C)``
        C-contiguous array, or flat rows of one), return them as a strided
        ``(n, C, H, W)`` view of that memory (no copy when the dtype is
        already right; a dtype cast keeps the layout) instead of a
        C-contiguous copy. ``torch.as_tensor`` of it is a ``channels_last``
        tensor.

    Returns
    -------
    images : ndarray of shape (n, C, H, W)
        C-contiguous, or channel-last in memory with ``keep_channels_last``;
        ``uint8`` if ``X`` is ``uint8`` (may share memory with ``X``), else
        ``float32`` (bool and other integers are converted, not scaled).
    input_shape : tuple of int
        ``(C, H, W)``.

    Raises
    ------
    ValueError
        Empty or sparse ``X``, wrong number of dimensions, non-numeric values,
        NaN or infinite values (including values beyond the float32 range),
        finite values whose span (max - min) exceeds the float32 range, a
        flat width that no ``image_shape`` explains, an ``image_shape`` that
        does not fit, or a 4-D array with no recognisable channel axis.
    """
    X = _as_array(X)
    if X.ndim == 0:
        raise ValueError(f"X must be an array of images; got a scalar {X!r}.")
    if X.shape[0] == 0:
        raise ValueError(f"X has 0 samples (shape {X.shape}); need at least one.")
    if X.ndim not in (2, 3, 4):
        hint = (" Reshape your data: if X holds a single image, add a sample axis, X[None]."
                if X.ndim == 1 else "")
        raise ValueError(
            f"X must be 2-D (n, D) flat images, 3-D (n, H, W), or 4-D "
            f"(n, H, W, C) / (n, C, H, W); got a {X.ndim}-D array of shape "
            f"{X.shape}.{hint}")
    if X.ndim == 2 and X.shape[1] == 0:
        raise ValueError(f"X has 0 feature(s) (shape={X.shape}) while a minimum of 1 "
                         f"is required: an empty image axis.")
    if 0 in X.shape[1:]:
        raise ValueError(f"X has an empty image axis: shape {X.shape}.")
    X = _numeric(X)

    shape = None if image_shape is None else _check_image_shape(image_shape)
    if shape is not None and -1 in shape:
        shape = _resolve_wildcard(shape, math.prod(X.shape[1:]))
    if X.ndim == 2:
        X = X.reshape((X.shape[0],) + _flat_layout(X.shape[1], shape))
    images = _channel_first(X)
    input_shape = tuple(int(d) for d in images.shape[1:])
    if shape is not None and _as_chw(shape) != input_shape:
        raise ValueError(
            f"image_shape={tuple(shape)} does not match X: its images have "
            f"shape (C, H, W) = {input_shape}.")

    # One pass does layout and dtype at once: a channel-last float64 input is
    # copied once, not twice. Overflowing float64 -> float32 casts become inf
    # (numpy warns); _check_finite reports them, so silence the warning.
    source_kind = images.dtype.kind
    dtype = np.uint8 if images.dtype == np.uint8 else np.float32
    with np.errstate(over="ignore", invalid="ignore"):
        if keep_channels_last and is_channels_last(images):
            # order="K" keeps the channel-last strides; copy=False: none if uint8.
            images = images.astype(dtype, order="K", copy=False)
        else:
            images = np.ascontiguousarray(images, dtype=dtype)
    if source_kind == "f":  # integers and bools are always finite in float32
        _check_finite(images)
    return images, input_shape


def check_same_shape(input_shape, fitted_shape):
    """Raise if images at predict time differ from those seen in ``fit``.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)`` of the new images (from :func:`to_images`).
    fitted_shape : tuple of int
        ``(C, H, W)`` the estimator was fitted on (``input_shape_``).

    Raises
    ------
    ValueError
        If the two differ.
    """
    new, fitted = tuple(int(d) for d in input_shape), tuple(int(d) for d in fitted_shape)
    if new != fitted:
        raise ValueError(
            f"X has images of shape (C, H, W) = {new} but the estimator was "
            f"fitted on {fitted}.")


def is_channels_last(images) -> bool:
    """Is an ``(n, C, H, W)`` array channel-last in memory?

    Parameters
    ----------
    images : ndarray
        Any array; only 4-D ones can be channel-last.

    Returns
    -------
    bool
        True when ``images.transpose(0, 2, 3, 1)`` is C-contiguous: the
        array is a view of ``(n, H, W, C)`` memory (torch's ``channels_last``).
        One-channel (and 1x1) images are both this and C-contiguous.
    """
    return (isinstance(images, np.ndarray) and images.ndim == 4
            and images.transpose(0, 2, 3, 1).flags.c_contiguous)


def take_samples(images, index):
    """``images[index]`` as one new array, in the memory layout of ``images``.

    Parameters
    ----------
    images : ndarray of shape (n, C, H, W)
        C-contiguous or channel-last (see :func:`is_channels_last`).
    index : array-like of int
        Samples to take, in the order wanted.

    Returns
    -------
    ndarray of shape (len(index), C, H, W)
        A copy: channel-last if ``images`` is (and is not also C-contiguous),
        else C-contiguous. Gathering in the source's layout is a plain row
        copy; gathering a channel-last array into channel-first order would
        be a transpose as well.
    """
    index = np.asarray(index, dtype=np.intp)
    if is_channels_last(images) and not images.flags.c_contiguous:
        return images.transpose(0, 2, 3, 1)[index].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images[index])  # already contiguous: no second copy


def _as_array(X):
    """``np.asarray`` that understands DataFrames and says why it failed."""
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        # np.asarray would silently make a 0-d object array of a sparse matrix.
        raise ValueError("X is a sparse matrix; images are dense: pass X.toarray().")
    if hasattr(X, "dtypes") and hasattr(X, "to_numpy"):  # pandas DataFrame
        dtypes = set(getattr(X.dtypes, "values", [X.dtypes]))
        if len(dtypes) == 1 and isinstance(next(iter(dtypes)), np.dtype):
            return X.to_numpy()  # one plain numpy dtype: keep it (uint8!)
        # Mixed or extension dtypes (nullable Int64, strings): go through
        # float64 so pd.NA becomes NaN and is counted like any NaN.
        try:
            return X.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"X has non-numeric columns (dtypes {sorted(map(str, dtypes))}): "
                f"{exc}") from None
    try:
        return np.asarray(X)
    except (TypeError, ValueError) as exc:  # ragged nested lists, mostly
        raise ValueError(f"X cannot be read as a numeric array: {exc}") from None


def _numeric(X):
    """Return ``X`` with a real numeric or bool dtype, converting text/objects."""
    kind = X.dtype.kind
    if kind in "biuf":
        return X
    if kind in "OUS":
        try:
            return X.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise NonNumericError(
                f"X has non-numeric values (dtype {X.dtype}): {exc}") from None
    # complex (the imaginary part would be dropped), datetime, void, ...
    if kind == "c":
        raise ValueError(f"Complex data not supported: X has a non-numeric dtype "
                         f"{X.dtype}; images need real numbers.")
    raise ValueError(f"X has a non-numeric dtype {X.dtype}; images need real numbers.")


def _check_image_shape(image_shape):
    """Validate ``image_shape``: 2 or 3 positive ints."""
    try:
        shape = tuple(image_shape)
    except TypeError:
        shape = None
    if (shape is None or len(shape) not in (2, 3)
            or not all(isinstance(d, Integral) and not isinstance(d, bool)
                       and (d > 0 or d == -1) for d in shape)
            or sum(d == -1 for d in shape) > 1):
        raise ValueError(
            f"image_shape must be (H, W), (C, H, W) or (H, W, C) with positive "
            f"integers (one of them may be -1, as in numpy's reshape); got {image_shape!r}.")
    return tuple(int(d) for d in shape)


def _resolve_wildcard(shape, D):
    """Replace the one ``-1`` in ``shape`` so the product is ``D`` (numpy reshape rule)."""
    known = math.prod(d for d in shape if d != -1)
    if D % known:
        raise ValueError(
            f"image_shape={shape}: {D} values per image are not a multiple of "
            f"{known}, so -1 cannot be resolved.")
    return tuple(D // known if d == -1 else d for d in shape)


def _channel_axis(shape4):
    """Channel axis (1 or 3) of a 4-D shape ``(n, a, b, c)``, or ``None``."""
    first, last = shape4[1] in CHANNEL_COUNTS, shape4[3] in CHANNEL_COUNTS
    if first and last:
        # Both could be channels: a real image has more rows/columns than
        # channels, so the smaller axis is the channel axis. A tie keeps the
        # array as given (channel-first).
        return 3 if shape4[3] < shape4[1] else 1
    if first:
        return 1
    if last:
        return 3
    return None


def _as_chw(shape):
    """``(C, H, W)`` of an ``image_shape`` (which may be ``(H, W, C)``)."""
    if len(shape) == 2:
        return (1,) + shape
    axis = _channel_axis((0,) + shape)
    if axis is None:
        raise ValueError(
            f"image_shape={shape}: cannot tell which axis holds the channels; "
            f"the first or last entry must be one of {CHANNEL_COUNTS}.")
    return shape if axis == 1 else (shape[2], shape[0], shape[1])


def _flat_layout(D, shape):
    """Per-row shape that flat rows of width ``D`` are reshaped to."""
    if shape is not None:
        if math.prod(shape) != D:
            hint = ""
            if len(shape) == 2 and D % math.prod(shape) == 0:
                c = D // math.prod(shape)
                hint = (f"; for {c} channels pass image_shape=({c}, {shape[0]}, "
                        f"{shape[1]}) or ({shape[0]}, {shape[1]}, {c})")
            raise ValueError(
                f"image_shape={shape} has {math.prod(shape)} values per image but "
                f"X has {D} features per sample{hint}.")
        _as_chw(shape)  # fail early if the channel axis is unclear
        return shape
    s = math.isqrt(D)
    if s * s == D:
        return (s, s)
    s = math.isqrt(D // 3)
    if D % 3 == 0 and 3 * s * s == D:
        return (s, s, 3)  # channel-last flattening, see module docstring
    raise ValueError(
        f"X has {D} features per sample, which is neither a square (one "
        f"channel) nor 3 x a square (RGB); pass image_shape=(H, W) or "
        f"(C, H, W) to say how to reshape each row.")


def _channel_first(X):
    """View of a 3-D or 4-D array as ``(n, C, H, W)`` (no copy yet)."""
    if X.ndim == 3:
        return X[:, None, :, :]
    axis = _channel_axis(X.shape)
    if axis is None:
        raise ValueError(
            f"X has shape {X.shape}: cannot tell which axis holds the channels; "
            f"4-D images must be (n, H, W, C) or (n, C, H, W) with C in "
            f"{CHANNEL_COUNTS}.")
    return X if axis == 1 else X.transpose(0, 3, 1, 2)


def _chunks(n, per_sample):
    """Sample slices holding about ``_CHUNK_ELEMENTS`` elements each."""
    step = max(1, _CHUNK_ELEMENTS // max(1, per_sample))
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def _check_finite(images):
    """Raise if a float array holds NaN or inf, saying how many, or if its
    values span more than float32 holds (centring them would overflow)."""
    per_sample = int(np.prod(images.shape[1:]))
    # Chunked so the boolean mask never has the size of the whole dataset.
    n_nan = n_inf = 0
    lo, hi = math.inf, -math.inf
    for sl in _chunks(len(images), per_sample):
        chunk = images[sl]
        if np.isfinite(chunk).all():
            lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
            continue
        n_nan += int(np.isnan(chunk).sum())
        n_inf += int(np.isinf(chunk).sum())
    if n_nan or n_inf:
        raise ValueError(
            f"X contains {n_nan} NaN and {n_inf} infinite values (values with "
            f"|x| > {_FLOAT32_MAX:.1e} overflow float32 and count as infinite); "
            f"impute or drop them first.")
    # Finite, but x - mean in float32 (the standardisation before the network)
    # would overflow to inf and the training loss to NaN. Python floats: no
    # overflow in hi - lo.
    if hi - lo > _FLOAT32_MAX:
        raise ValueError(
            f"X values span {hi - lo:.2e} (from {lo:.2e} to {hi:.2e}), more than "
            f"float32 holds ({_FLOAT32_MAX:.1e}): standardising them would overflow. "
            f"Rescale X, e.g. divide it by {max(abs(lo), abs(hi)):.1e}.")


# ----------------------------------------------------------------------------
# labels
# ----------------------------------------------------------------------------

def check_labels(y, n_samples):
    """Validate and encode class labels.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, 1)
        Labels of any sortable type: strings, integers (negative too),
        integral floats, bools; list, array or pandas Series.
    n_samples : int
        Number of samples in ``X``.

    Returns
    -------
    classes : ndarray of shape (n_classes,)
        Sorted unique labels (``np.unique``), of ``y``'s dtype, so
        ``classes[y_encoded]`` gives back ``y``.
    y_encoded : ndarray of shape (n_samples,), dtype int64
        Index of each label in ``classes``.

    Raises
    ------
    ValueError
        Length mismatch with ``X``, a 2-D ``y`` other than ``(n, 1)``,
        missing labels (NaN, None, pd.NA), non-integral float labels (a
        regression target), labels of mixed types, or fewer than 2 classes.
    """
    missing = None
    if hasattr(y, "isna") and hasattr(y, "to_numpy"):  # pandas Series/DataFrame
        missing = int(np.asarray(y.isna()).sum())
        y = y.to_numpy()
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()  # a column vector is a common, harmless slip
    if y.ndim != 1:
        raise ValueError(
            f"y must be 1-D (n_samples,); got shape {y.shape}. Multi-output "
            f"and multilabel targets are not supported.")
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} samples but y has {len(y)}.")
    if missing is None:
        missing = _count_missing(y)
    if missing:
        raise ValueError(f"y contains {missing} missing labels (NaN/None); drop "
                         f"those samples first.")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        bad = y[y != np.round(y)][0]
        raise ValueError(
            f"y has continuous, non-integral float labels (e.g. {_show(bad)}): that looks like a "
            f"regression target; a classifier needs discrete labels.")
    try:
        classes, y_encoded = np.unique(y, return_inverse=True)
    except TypeError as exc:  # e.g. strings mixed with numbers in an object array
        raise ValueError(f"y mixes labels of types that cannot be compared: {exc}") from None
    if len(classes) < 2:
        raise ValueError(
            f"y has a single class ({_show(classes[0])}); a classifier needs at "
            f"least two (got only one class).")
    return classes, y_encoded.reshape(-1).astype(np.int64)


def _show(value):
    """repr of a label without numpy 2's ``np.int64(...)`` wrapper."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _count_missing(y):
    """NaN/None/pd.NA labels in a numpy array."""
    if y.dtype.kind in "fc":
        return int(np.isnan(y).sum())
    if y.dtype.kind != "O":
        return 0

    def is_missing(v):
        # NaN is the only value unequal to itself; pd.NA's comparisons give NA,
        # whose truth value raises, so it is caught by its type name.
        if v is None or type(v).__name__ in ("NAType", "NaTType"):
            return True
        return isinstance(v, (float, np.floating)) and v != v

    return sum(map(is_missing, y))


# ----------------------------------------------------------------------------
# validation split
# ----------------------------------------------------------------------------

def validation_split(y_encoded, fraction, random_state=None, *, classes=None):
    """Stratified, seeded split of sample indices into training and validation.

    The best architecture is chosen on this validation part (docs/architecture.md §5.5),
    so every class appears on both sides: after sklearn's
    ``StratifiedShuffleSplit``, a class that rounding left out of one side
    gets one random sample moved over (so sizes may differ from
    ``fraction * n`` by a few samples). On small data the validation part is
    grown to one sample per class when ``fraction * n`` is fewer.

    Parameters
    ----------
    y_encoded : array-like of int, shape (n_samples,)
        Encoded labels (from :func:`check_labels`).
    fraction : float
        Share of samples for validation, in (0, 1).
    random_state : int, RandomState or None
        Seed; an int gives the same split every call.
    classes : array-like, optional
        Original labels, only used to name a class in error messages.

    Returns
    -------
    train_idx, valid_idx : ndarray of int64
        Sorted, disjoint, together all of ``range(n_samples)``.

    Raises
    ------
    ValueError
        ``fraction`` outside (0, 1), a class with fewer than 2 samples, or
        too few training samples for one per class.
    """
    from sklearn.model_selection import StratifiedShuffleSplit
    from sklearn.utils import check_random_state

    if isinstance(fraction, bool) or not isinstance(fraction, (float, Integral, np.floating)) \
            or not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must be a float in (0, 1); got {fraction!r}.")
    fraction = float(fraction)
    y = np.asarray(y_encoded)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"y_encoded must be 1-D integers; got dtype {y.dtype}, "
                         f"shape {y.shape}.")
    n = len(y)
    labels, counts = np.unique(y, return_counts=True)
    n_classes = len(labels)

    rare = labels[counts < 2]
    if len(rare):
        name = rare[0] if classes is None else np.asarray(classes)[rare[0]]
        raise ValueError(
            f"class {_show(name)} has only 1 sample; every class "
            f"needs at least 2 so it can appear in both the training and the "
            f"validation part. Add data or drop the class.")
    # Sizes as StratifiedShuffleSplit computes them.
    n_valid = math.ceil(fraction * n)
    n_train = n - n_valid
    if n_valid < n_classes:
        # Small data: the validation part needs one sample per class to rank
        # architectures at all; every class has >= 2 samples, so the training
        # part keeps at least one per class too.
        n_valid = n_classes
        n_train = n - n_valid
    if n_train < n_classes:
        per_class = math.ceil(1 / (1 - fraction) - 1e-9)
        raise ValueError(
            f"validation_fraction={fraction} of {n} samples leaves {n_train} "
            f"training samples for {n_classes} classes, but each class needs "
            f"one: with this fraction that takes about {per_class} samples per "
            f"class. Lower validation_fraction or add data.")

    rng = check_random_state(random_state)
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_valid, random_state=rng)
    train_idx, valid_idx = next(splitter.split(np.zeros((n, 1)), y))
    is_valid = np.zeros(n, dtype=bool)
    is_valid[valid_idx] = True
    # Rounding (_approximate_mode) can leave a rare class out of one side;
    # move one random sample across. Counts >= 2 keep the other side non-empty.
    for label in labels:
        members = np.flatnonzero(y == label)
        in_valid = is_valid[members]
        if not in_valid.any():
            is_valid[rng.choice(members)] = True
        elif in_valid.all():
            is_valid[rng.choice(members)] = False
    return (np.flatnonzero(~is_valid).astype(np.int64),
            np.flatnonzero(is_valid).astype(np.int64))


# ----------------------------------------------------------------------------
# normalisation statistics
# ----------------------------------------------------------------------------

def channel_stats(images, *, chunk_samples=None):
    """Per-channel mean and standard deviation, in the scale the network sees.

    Parameters
    ----------
    images : ndarray of shape (n, C, H, W)
        From :func:`to_images`; ``uint8`` values are scaled by ``1/255``.
    chunk_samples : int, optional
        Samples per chunk; by default about 1M values per chunk. Only one chunk
        is ever converted to float64, so a large uint8 dataset is never
        copied to float as a whole.

    Returns
    -------
    mean, std : ndarray of shape (C,), float32
        Population statistics (``ddof=0``); ``std`` is at least ``1e-6`` so
        constant channels can be divided by it.
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (n, C, H, W) array; got "
                         f"shape {images.shape}.")
    n, C = images.shape[:2]
    per_sample = int(np.prod(images.shape[1:]))
    if chunk_samples is None:
        slices = _chunks(n, per_sample)
    else:
        step = max(1, int(chunk_samples))
        slices = (slice(i, min(i + step, n)) for i in range(0, n, step))

    # Chan et al.'s pairwise update of (count, mean, M2): stable where
    # E[x^2] - E[x]^2 would cancel, and exact up to float64 rounding.
    count = 0
    mean = np.zeros(C)
    m2 = np.zeros(C)
    for sl in slices:
        # C order whatever the layout of images: numpy's reductions over
        # (0, 2, 3) of a channel-last chunk run 4-10x slower, and the same
        # summation order gives channel-last and channel-first inputs equal stats.
        chunk = np.ascontiguousarray(images[sl], dtype=np.float64)
        k = chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
        c_mean = chunk.mean(axis=(0, 2, 3))
        # In place and freed before the next one: one float64 chunk alive at a
        # time, not four (this x, x - mean, its square, and the last chunk).
        chunk -= c_mean[None, :, None, None]
        np.square(chunk, out=chunk)
        c_m2 = chunk.sum(axis=(0, 2, 3))
        del chunk
        total = count + k
        delta = c_mean - mean
        mean = mean + delta * (k / total)
        m2 = m2 + c_m2 + delta ** 2 * (count * k / total)
        count = total
    std = np.sqrt(m2 / count)
    if images.dtype == np.uint8:
        mean, std = mean / UINT8_SCALE, std / UINT8_SCALE
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)
