"""Fault injection: random bad inputs to ``fit``/``predict``/``predict_proba``.

docs/architecture.md §5.8: bad input gets a ``ValueError`` naming the problem (or
``NotFittedError`` before ``fit``), never a traceback from deep inside torch or
numpy. Hypothesis draws shapes (0-D to 5-D, zero-length axes, 1x1 images too
small for pooling), dtypes (bool, int8, uint8, int64, float16/32/64, complex,
object, str), values (NaN, +-inf, 1e300, float32 extremes, negatives) and
labels (one class, NaN, wrong length, 2-D), and checks that every call either
succeeds with well-formed output or raises one of those two types with a
non-empty message. Any other exception (RuntimeError, IndexError,
ZeroDivisionError, ...) fails the test.
"""

import os
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

from sklearn_resbuilder import ResBuilderClassifier

# Successful fits must be fast: one 1-epoch training per variant, no search steps.
TINY = dict(flop_budget=1e5, n_morph_steps=0, n_insertions=0, max_epochs=1, batch_size=8, refit=False,
            augment=False, device="cpu", random_state=0)

#: Valid per-image shapes; the first four fit the fixture model (fitted on
#: (n, 4, 4) images), the rest include 1x1 and 2x2 images, too small for
#: the minimal net's pooling stages (the network must cope, not crash).
LAYOUTS = [(4, 4), (16,), (1, 4, 4), (4, 4, 1),
           (3, 5, 5), (5, 5, 3), (1, 1), (1,), (2, 2), (3, 1, 1), (1, 1, 4), (2, 7)]
FITTED_LAYOUTS = LAYOUTS[:4]

#: dtypes that hold valid images (object and str: numbers, converted).
VALID_DTYPES = ["bool", "int8", "uint8", "int64", "float16", "float32", "float64",
                "object", "str"]

#: Faults of X that must be rejected, whatever else is drawn.
X_FAULTS = ["0-d", "1-d", "5-d", "no samples", "empty image axis", "no channel axis",
            "flat width not square", "complex", "text", "None in object", "ragged list",
            "NaN", "inf", "-inf", "1e300", "float16 overflow", "float32 span overflow"]
#: Faults of X that may or may not be rejected (a random shape can be valid).
X_MAYBE = ["random shape"]
#: Faults of y that must be rejected by fit.
Y_FAULTS = ["one class", "NaN", "None in object", "short", "long", "2-D", "None", "scalar",
            "non-integral floats", "class with one sample", "mixed types", "NA in Series"]

# RESBUILDER_FAULT_EXAMPLES=1000 for a longer bug hunt; 60 keeps the file ~10 s.
SETTINGS = settings(max_examples=int(os.environ.get("RESBUILDER_FAULT_EXAMPLES", 60)),
                    deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@st.composite
def images(draw, layouts=LAYOUTS):
    """``(X, faults)``: a batch of images with zero or more injected faults.

    Without faults ``X`` is a valid batch of ``n`` images of a shape from
    ``layouts`` (``n < 4`` is too few for ``fit``); each fault breaks one
    thing (shape, dtype or values) and must make ``fit`` and ``predict``
    raise ``ValueError``.
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Half the draws are clean, so successful fits and predictions get exercised too.
    faults = list(draw(st.one_of(st.just([]), st.lists(st.sampled_from(X_FAULTS + X_MAYBE),
                                                       min_size=1, max_size=2, unique=True))))
    # n < 4 is fine for predict but too few for fit's stratified split; 19
    # leaves a training tail batch of one sample (batch_size 8).
    n = draw(st.sampled_from([4, 6, 8, 10, 19, 1, 3]))
    shape = (n,) + draw(st.sampled_from(layouts))
    if "random shape" in faults:
        ndim = draw(st.integers(2, 4))
        shape = (n,) + tuple(draw(st.lists(st.integers(0, 5), min_size=ndim - 1,
                                           max_size=ndim - 1)))
    if "no channel axis" in faults:
        shape = (n, 2, 5, 5)
    if "flat width not square" in faults:
        shape = (n, 10)
    if "empty image axis" in faults:
        shape = shape[:-1] + (0,)
    if "no samples" in faults:
        shape = (0,) + shape[1:]

    dtype = draw(st.sampled_from(VALID_DTYPES))
    value_faults = {"NaN": np.nan, "inf": np.inf, "-inf": -np.inf, "1e300": 1e300}
    if any(f in faults for f in value_faults):
        dtype = draw(st.sampled_from(["float32", "float64", "object"]))
    if "float32 span overflow" in faults:
        dtype = "float32"
    # float16 tops out at 65504: a larger scale is the "float16 overflow" fault.
    scales = [1.0, 1e-3, 255.0] + ([] if dtype == "float16" else [1e30])
    base = rng.normal(size=shape) * draw(st.sampled_from(scales))
    if "float16 overflow" in faults:
        dtype, base = "float16", base + 1e6
    if "complex" in faults:
        dtype = "complex128"
    X = _cast(base, dtype, rng)

    flat = X.reshape(-1)  # a view: X is freshly made and contiguous
    for name, value in value_faults.items():
        if name in faults and flat.size:
            flat[rng.integers(flat.size)] = value
    if "float32 span overflow" in faults:
        if flat.size >= 2:
            # Finite float32 values, but max - min does not fit in float32.
            flat[0], flat[-1] = 3.4e38, -3.4e38
        else:
            faults.remove("float32 span overflow")  # one value cannot span anything
    if "text" in faults and flat.size:
        X = X.astype(object)
        X.reshape(-1)[0] = "pixel"
    if "None in object" in faults and flat.size:
        X = X.astype(object)
        X.reshape(-1)[0] = None
    if "0-d" in faults:
        X = X.reshape(-1)[:1].reshape(()) if X.size else np.asarray(1.0)
    if "1-d" in faults:
        X = X.reshape(-1)
    if "5-d" in faults:
        X = X.reshape(X.shape + (1,) * (5 - X.ndim)) if X.ndim < 5 else X
    if "ragged list" in faults and X.ndim >= 2 and X.shape[0] and X.shape[1]:
        X = X.tolist()
        X[0] = X[0][:-1]
    else:
        container = draw(st.sampled_from(["array"] * 8 + ["list", "DataFrame"]))
        if container == "list":
            X = X.tolist()  # nested lists go through np.asarray
        elif container == "DataFrame" and X.ndim == 2:
            X = pd.DataFrame(X)
    return X, faults


def _cast(base, dtype, rng):
    if dtype == "bool":
        return base > 0
    if dtype in ("int8", "uint8", "int64"):
        info = np.iinfo(dtype)
        return np.clip(np.round(base * 50), max(info.min, -1000), min(info.max, 1000)).astype(dtype)
    if dtype == "complex128":
        return base + 1j * rng.normal(size=base.shape)
    if dtype == "str":
        return base.astype(str)
    if dtype == "object":
        return base.astype(object)
    with np.errstate(over="ignore"):  # float16 overflow to inf is one of the faults
        return base.astype(dtype)


@st.composite
def labels(draw, n):
    """``(y, faults)``: labels for ``n`` samples, two classes unless a fault says otherwise."""
    faults = [draw(st.sampled_from(Y_FAULTS))] if draw(st.integers(0, 2)) == 2 else []
    ints = np.arange(n) % 2
    y = draw(st.sampled_from(["ints", "str", "bool", "column", "negative", "Series"]))
    y = {"ints": ints, "str": np.array(["cat", "dog"])[ints], "bool": ints.astype(bool),
         "column": ints[:, None], "negative": ints - 5, "Series": pd.Series(ints)}[y]
    for fault in faults:
        y = {
            "one class": np.zeros(n, dtype=int),
            "NaN": np.where(np.arange(n) == 0, np.nan, ints.astype(float)),
            "None in object": np.array([None] + list(ints[1:]), dtype=object),
            "short": ints[:-1],
            "long": np.arange(n + 1) % 2,
            "2-D": np.stack([ints, 1 - ints], axis=1),
            "None": None,
            "scalar": 1,
            "non-integral floats": ints + 0.5,
            "class with one sample": np.where(np.arange(n) == 0, 2, ints),
            "mixed types": np.array(["a"] + list(ints[1:]), dtype=object),
            "NA in Series": pd.Series(ints, dtype="Int64").where(np.arange(n) > 0, pd.NA),
        }[fault]
    return y, faults


def _call(fn):
    """Run ``fn``; return its result, or the allowed exception it raised."""
    try:
        return fn()
    except (ValueError, NotFittedError) as exc:
        # NotFittedError is itself a ValueError; both must say what is wrong.
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        return exc


def _n_samples(X):
    if isinstance(X, (list, pd.DataFrame)):
        return len(X)
    return X.shape[0] if np.ndim(X) else 0  # a 0-d array's tolist() is a scalar


def _check_output(clf, X, proba, pred):
    """Successful predictions are well-formed."""
    n = _n_samples(X)
    assert proba.shape == (n, len(clf.classes_))
    assert proba.dtype == np.float64
    assert pred.shape == (n,)
    assert np.isin(pred, clf.classes_).all()


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 4, 4)).astype(np.float32)
    y = np.arange(24) % 2
    X[y == 1] += 1.0
    return ResBuilderClassifier(**TINY).fit(X, y)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@SETTINGS
@given(data=st.data())
def test_fit_raises_only_value_errors(data):
    X, x_faults = data.draw(images(), label="X")
    y, y_faults = data.draw(labels(_n_samples(X)), label="y")
    clf = ResBuilderClassifier(**TINY)
    out = _call(lambda: clf.fit(X, y))
    failed = isinstance(out, ValueError)
    event("fit: " + ("ValueError" if failed else "fitted"))
    if set(x_faults) - set(X_MAYBE) or y_faults or _n_samples(X) < 4:
        assert failed, f"fit accepted faulty input: {x_faults + y_faults}"
    elif not x_faults:
        assert not failed, f"fit rejected valid input: {out}"
    if failed:
        assert not hasattr(clf, "module_")
        return
    assert out is clf
    proba = _call(lambda: clf.predict_proba(X))
    assert not isinstance(proba, ValueError), f"predict on the training data failed: {proba}"
    _check_output(clf, X, proba, clf.predict(X))


@SETTINGS
@given(drawn=images(layouts=FITTED_LAYOUTS * 3 + LAYOUTS))  # half reach the network
def test_predict_raises_only_value_errors(fitted, drawn):
    X, faults = drawn
    for method in ("predict", "predict_proba"):
        out = _call(lambda: getattr(ResBuilderClassifier(**TINY), method)(X))
        assert isinstance(out, NotFittedError), "an unfitted estimator must say so first"
    proba = _call(lambda: fitted.predict_proba(X))
    pred = _call(lambda: fitted.predict(X))
    failed = isinstance(proba, ValueError)
    assert failed == isinstance(pred, ValueError)
    event("predict: " + ("ValueError" if failed else "ok"))
    if set(faults) - set(X_MAYBE):
        assert failed, f"predict accepted faulty input: {faults}"
    if not failed:
        _check_output(fitted, X, proba, pred)


# Cases the random search found once (or that matter most), kept as fixed checks.
@pytest.mark.parametrize("X, match", [
    # Finite float32 values whose spread overflows float32 once centred: the
    # search used to "collapse" (RuntimeError) on NaN losses.
    (np.array([3e38] * 6 + [-3e38] * 2, np.float32)[:, None, None] * np.ones((8, 4, 4), np.float32),
     "span"),
    (np.full((8, 1, 1), 1e300), "infinite"),
    (np.ones((8, 2, 2)) + 0j, "Complex"),
    (np.array([[["a"] * 4] * 4] * 8, dtype=object), "non-numeric"),
])
def test_known_bad_inputs(fitted, X, match):
    with pytest.raises(ValueError, match=match):
        ResBuilderClassifier(**TINY).fit(X, np.arange(8) % 2)
    if X.shape[1:] == (4, 4):
        with pytest.raises(ValueError, match=match):
            fitted.predict(X)
