"""Saving a fitted :class:`ResBuilderClassifier` as plain data, and loading it back.

``pickle`` and ``joblib`` files run code when they are loaded, so sharing one
means trusting whoever made it. :func:`save` writes a directory of plain data
instead, and :func:`load` reads it without executing anything from it:

``estimator.json``
    Format name and version, the library and torch versions that wrote it,
    ``get_params()`` (constructor parameters), the fitted attributes (labels
    with their dtype, input shape, standardisation statistics, the search
    record ``history_``...) and the SHA-256 of the two other files.
``architecture.json``
    ``best_architecture_.to_dict()``.
``weights.pt``
    ``module_.state_dict()`` (CPU tensors) written by ``torch.save`` and read
    with ``torch.load(weights_only=True, map_location="cpu")``, which only
    rebuilds tensors and containers.

The hashes catch corrupted, truncated or hand-edited files before anything is
built from them. They are a checksum, not a signature: whoever can write
``weights.pt`` can also rewrite ``estimator.json``. What the format rules out
is code execution on load, not a model that was trained to mislead.

Parameters that are not plain data are handled deliberately: an
``Architecture`` (``start``) is stored as its dict; tuples, paths and
``torch.device`` are tagged so they come back as the same type; a
``numpy.random.RandomState`` cannot be stored and becomes ``None`` with a
warning (it only matters for refitting); anything else raises ``ValueError``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import warnings
from pathlib import Path, PurePath

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from .architecture import Architecture

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "sklearn_resbuilder.ResBuilderClassifier"
#: Bumped when a file written now could not be read by an older ``load``.
FORMAT_VERSION = 1

ESTIMATOR_FILE = "estimator.json"
ARCHITECTURE_FILE = "architecture.json"
WEIGHTS_FILE = "weights.pt"
HASHED_FILES = (ARCHITECTURE_FILE, WEIGHTS_FILE)

#: Fitted attributes every saved estimator has.
REQUIRED = ("classes_", "input_shape_", "n_features_in_", "input_mean_", "input_std_",
            "best_step_", "best_variant_", "best_score_", "history_", "search_time_",
            "stopped_", "_image_shape_")
#: Fitted attributes stored when the estimator has them.
OPTIONAL = ("_fit_dtype_", "feature_names_in_", "n_threads_", "refit_", "skipped_", "plan_",
            "max_epochs_")


# ---------------------------------------------------------------------- save
def save(clf, path, *, overwrite: bool = False) -> Path:
    """Write a fitted estimator to the directory ``path`` as plain data.

    Parameters
    ----------
    clf : ResBuilderClassifier
        A fitted estimator.
    path : str or path-like
        Directory to create (parents too). It may exist if it is empty.
    overwrite : bool, default=False
        Allow a non-empty directory; the three files are replaced, anything
        else in it is left alone.

    Returns
    -------
    pathlib.Path
        The directory.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``clf`` is not fitted.
    FileExistsError
        ``path`` is a non-empty directory and ``overwrite`` is False.
    ValueError
        ``path`` is a file; a parameter or label that has no plain-data form
        (e.g. object labels that are not strings or numbers).
    """
    from . import __version__

    check_is_fitted(clf)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; save writes a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} is not empty; pass overwrite=True to replace the "
                              "saved model in it")
    # Encode everything before writing anything: a refused parameter or label
    # must not leave half a model behind.
    params = {name: _encode_param(name, value)
              for name, value in clf.get_params(deep=False).items()}
    fitted = {name: _encode_fitted(name, getattr(clf, name)) for name in REQUIRED}
    for name in OPTIONAL:
        if hasattr(clf, name):
            fitted[name] = _encode_fitted(name, getattr(clf, name))

    arch_bytes = (json.dumps(clf.best_architecture_.to_dict(), indent=1) + "\n").encode()
    buffer = io.BytesIO()
    state = {k: v.detach().cpu().clone() for k, v in clf.module_.state_dict().items()}
    torch.save(state, buffer)
    weights_bytes = buffer.getvalue()

    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "written_by": {"sklearn_resbuilder": __version__, "torch": torch.__version__},
        "files": {ARCHITECTURE_FILE: _digest(arch_bytes), WEIGHTS_FILE: _digest(weights_bytes)},
        "params": params,
        "fitted": fitted,
    }
    try:
        est_bytes = (json.dumps(doc, indent=1, allow_nan=True) + "\n").encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot write {ESTIMATOR_FILE}: {exc}") from None

    path.mkdir(parents=True, exist_ok=True)
    # estimator.json last: a directory without it is visibly incomplete.
    for name, data in ((ARCHITECTURE_FILE, arch_bytes), (WEIGHTS_FILE, weights_bytes),
                       (ESTIMATOR_FILE, est_bytes)):
        _write_atomic(path / name, data)
    return path


def _digest(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _write_atomic(target: Path, data: bytes) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


# ------------------------------------------------------------- param codecs
def _encode_param(name, value):
    """A constructor parameter as JSON, tagging types JSON lacks."""
    if isinstance(value, np.random.RandomState) or isinstance(value, np.random.Generator):
        warnings.warn(
            f"{name} is a {type(value).__name__}, which has no plain-data form: it is "
            "saved as None. Predictions are unaffected; a refit of the loaded model "
            "is not reproducible. Use an int seed to keep it.", UserWarning, stacklevel=3)
        return None
    if isinstance(value, Architecture):
        return {"__architecture__": value.to_dict()}
    if isinstance(value, torch.device):
        return {"__torch_device__": str(value)}
    if isinstance(value, PurePath):
        return {"__path__": str(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode_param(name, v) for v in value]}
    if isinstance(value, list):
        return [_encode_param(name, v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if name == "plan" and isinstance(value, dict):
        return {"__plan__": json.loads(json.dumps(value))}  # plain JSON already
    raise ValueError(f"parameter {name}={value!r} ({type(value).__name__}) has no plain-data "
                     "form for estimator.json; use a str, number, bool, tuple or None")


def _decode_param(value):
    if isinstance(value, list):
        return [_decode_param(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__architecture__"}:
            return Architecture.from_dict(value["__architecture__"])
        if set(value) == {"__torch_device__"}:
            return torch.device(value["__torch_device__"])
        if set(value) == {"__path__"}:
            return Path(value["__path__"])
        if set(value) == {"__tuple__"}:
            return tuple(_decode_param(v) for v in value["__tuple__"])
        if set(value) == {"__plan__"}:
            return value["__plan__"]
        raise ValueError(f"unknown tagged value {sorted(value)}")
    return value


# ----------------------------------------------------------- fitted codecs
def _plain(value):
    """numpy scalars -> Python scalars (JSON cannot hold numpy types)."""
    return value.item() if isinstance(value, np.generic) else value


def _encode_labels(name, arr):
    arr = np.asarray(arr)
    if arr.dtype.kind in "biufU":
        return {"dtype": arr.dtype.str, "values": arr.tolist()}
    if arr.dtype.kind == "O":
        values = [_plain(v) for v in arr.tolist()]
        bad = [v for v in values if not isinstance(v, (str, bool, int, float))]
        if not bad:
            return {"dtype": "|O", "values": values}
        raise ValueError(
            f"{name} holds {type(bad[0]).__name__} values (e.g. {bad[0]!r}); only strings, "
            "numbers and bools can be saved as plain data. Encode the labels first "
            "(e.g. as strings) or use joblib, which trusts the file on load")
    raise ValueError(f"{name} has dtype {arr.dtype}, which cannot be saved as plain data; "
                     "use string or integer labels")


def _decode_labels(d):
    dtype = np.dtype(d["dtype"])
    values = d["values"]
    if not isinstance(values, list):
        raise ValueError("values must be a list")
    if dtype.kind == "O":
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    if dtype.kind not in "biufU":
        raise ValueError(f"unsupported dtype {dtype}")
    return np.array(values, dtype=dtype)


def _encode_fitted(name, value):
    if name in ("classes_", "feature_names_in_"):
        return _encode_labels(name, value)
    if name in ("input_mean_", "input_std_"):
        arr = np.asarray(value)
        return {"dtype": arr.dtype.str, "values": arr.tolist()}  # float32 -> float64 is exact
    if name in ("input_shape_", "_image_shape_"):
        return _encode_param(name, value)
    if name == "history_":
        return value
    return _plain(value)


def _decode_fitted(name, value):
    if name in ("classes_", "feature_names_in_"):
        return _decode_labels(value)
    if name in ("input_mean_", "input_std_"):
        return np.array(value["values"], dtype=np.dtype(value["dtype"]))
    if name in ("input_shape_", "_image_shape_"):
        return _decode_param(value)
    if name in ("n_features_in_", "best_step_"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an int, got {value!r}")
    return value


# ---------------------------------------------------------------------- load
def load(path, cls=None):
    """Read an estimator written by :func:`save`; nothing in the files is executed.

    Parameters
    ----------
    path : str or path-like
        The directory :func:`save` wrote.
    cls : type, optional
        The estimator class to rebuild (default :class:`ResBuilderClassifier`).

    Returns
    -------
    ResBuilderClassifier
        Fitted, with ``module_`` on CPU in eval mode (a model fitted on a GPU
        loads on a CPU-only machine; ``predict`` moves it back to a GPU when
        ``device`` asks for one and one is there).

    Raises
    ------
    ValueError
        Naming the file and the problem: a missing directory or file, JSON that
        does not parse (e.g. truncated), another format or a newer format
        version, a SHA-256 mismatch (tampered or truncated file), weights whose
        keys or shapes do not fit the architecture, unknown parameters.
    """
    from .network import ResBuilderNet

    if cls is None:
        from .estimator import ResBuilderClassifier as cls
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not" if path.exists() else "does not exist; expected"
        raise ValueError(f"{path} {what} a directory written by ResBuilderClassifier.save")
    est_file = path / ESTIMATOR_FILE
    doc = _read_json(est_file)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{est_file}: not a saved {FORMAT} (format field is "
                         f"{doc.get('format') if isinstance(doc, dict) else None!r})")
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{est_file}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{est_file}: format_version {version} was written by a newer "
                         f"sklearn_resbuilder (this one reads up to {FORMAT_VERSION}); upgrade it")

    data = {}
    files = doc.get("files")
    for name in HASHED_FILES:
        file = path / name
        if not file.is_file():
            raise ValueError(f"{file}: missing (every saved model has {', '.join(HASHED_FILES)})")
        data[name] = file.read_bytes()
        try:
            expected = files[name]["sha256"]
        except (TypeError, KeyError):
            raise ValueError(f"{est_file}: no SHA-256 recorded for {name}") from None
        actual = hashlib.sha256(data[name]).hexdigest()
        if actual != expected:
            raise ValueError(
                f"{file}: SHA-256 mismatch ({actual[:12]}... on disk, {str(expected)[:12]}... "
                f"recorded in {ESTIMATOR_FILE}): the file was changed, truncated or "
                "corrupted after saving")

    arch_file = path / ARCHITECTURE_FILE
    arch = _architecture(data[ARCHITECTURE_FILE], arch_file)
    module = _module(ResBuilderNet, arch, data[WEIGHTS_FILE], path / WEIGHTS_FILE)

    params = doc.get("params")
    if not isinstance(params, dict):
        raise ValueError(f"{est_file}: 'params' must be an object")
    known = set(cls().get_params(deep=False))
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{est_file}: parameters {unknown} are unknown to this version of "
                         f"{cls.__name__}")
    try:
        clf = cls(**{k: _decode_param(v) for k, v in params.items()})
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{est_file}: bad parameter: {exc}") from None

    fitted = doc.get("fitted")
    if not isinstance(fitted, dict):
        raise ValueError(f"{est_file}: 'fitted' must be an object")
    for name in REQUIRED + OPTIONAL:
        if name not in fitted:
            if name in REQUIRED:
                raise ValueError(f"{est_file}: fitted attribute {name!r} is missing")
            continue
        try:
            setattr(clf, name, _decode_fitted(name, fitted[name]))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ValueError(f"{est_file}: fitted attribute {name!r} is malformed: {exc}") from None

    if tuple(clf.input_shape_) != arch.input_shape or len(clf.classes_) != arch.n_classes:
        raise ValueError(
            f"{arch_file}: architecture is for input {arch.input_shape} and {arch.n_classes} "
            f"classes, but {ESTIMATOR_FILE} says {tuple(clf.input_shape_)} and "
            f"{len(clf.classes_)} classes")
    if clf.n_features_in_ != math.prod(arch.input_shape):
        raise ValueError(f"{est_file}: n_features_in_={clf.n_features_in_} does not match "
                         f"input_shape_ {arch.input_shape}")
    clf.best_architecture_ = arch
    clf.module_ = module
    return clf


def _read_json(file: Path):
    if not file.is_file():
        raise ValueError(f"{file}: missing; expected a directory written by "
                         "ResBuilderClassifier.save")
    return _parse_json(file.read_bytes(), file)


def _parse_json(data: bytes, file: Path):
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}: not valid JSON, truncated or corrupted? ({exc.msg} at "
                         f"line {exc.lineno}, column {exc.colno})") from None


def _architecture(data: bytes, file: Path) -> Architecture:
    d = _parse_json(data, file)
    try:
        return Architecture.from_dict(d)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{file}: not a valid architecture: {exc}") from None


def _module(net_cls, arch: Architecture, data: bytes, file: Path):
    try:
        state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises several types for a damaged archive
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{file}: cannot be read as a torch state dict "
                         f"({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{file}: expected a dict of named tensors")
    module = net_cls(arch)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ValueError(f"{file}: weights do not fit {ARCHITECTURE_FILE}: missing keys "
                         f"{missing[:5]}, unexpected keys {extra[:5]}")
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
             if state[k].shape != v.shape]
    if wrong:
        k, got, want = wrong[0]
        raise ValueError(f"{file}: weights do not fit {ARCHITECTURE_FILE}: {k} has shape "
                         f"{got}, the architecture needs {want} ({len(wrong)} tensors differ)")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{file}: {str(exc).strip().splitlines()[0]}") from None
    return module.eval()
