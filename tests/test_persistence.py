"""Tests for ``ResBuilderClassifier.save`` / ``load``: a directory of plain data
(JSON + a torch state dict) that round-trips exactly and refuses damaged,
tampered or mismatched files with a ``ValueError`` naming the file.

One tiny fit on digits, reused; label and parameter variants are made by
copying it and changing attributes, which is all save/load sees.
"""

import copy
import datetime
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

import sklearn_resbuilder.persistence as persistence
from sklearn_resbuilder import Architecture, ResBuilderClassifier

START = Architecture.minimal((1, 8, 8), 10).insert_block(1, 0)  # as in conftest.py


@pytest.fixture
def fitted(fitted_with_block):
    return fitted_with_block  # conftest.py: one tiny fit shared with the other test file


@pytest.fixture(scope="module")
def X_test(digits):
    return digits[1][:50]


@pytest.fixture
def saved(fitted, tmp_path):
    return fitted.save(tmp_path / "model")


def rehash(directory, name):
    """Record ``name``'s current SHA-256 in estimator.json (a consistent forgery)."""
    est = Path(directory) / "estimator.json"
    doc = json.loads(est.read_text())
    doc["files"][name]["sha256"] = hashlib.sha256((Path(directory) / name).read_bytes()).hexdigest()
    est.write_text(json.dumps(doc))


def edit_json(directory, fn):
    est = Path(directory) / "estimator.json"
    doc = json.loads(est.read_text())
    fn(doc)
    est.write_text(json.dumps(doc))


# ----------------------------------------------------------------- round trip
def test_round_trip_is_exact(fitted, saved, X_test):
    loaded = ResBuilderClassifier.load(saved)
    assert type(loaded) is ResBuilderClassifier
    assert np.array_equal(loaded.predict_proba(X_test), fitted.predict_proba(X_test))
    assert np.array_equal(loaded.predict(X_test), fitted.predict(X_test))
    assert loaded.get_params() == fitted.get_params()
    assert isinstance(loaded.start, Architecture) and isinstance(loaded.image_shape, tuple)
    assert loaded.classes_.dtype == fitted.classes_.dtype
    assert np.array_equal(loaded.classes_, fitted.classes_)
    # history_ may hold NaN (never equal to itself): compare its JSON text.
    assert json.dumps(loaded.history_) == json.dumps(fitted.history_)
    assert loaded.best_architecture_ == fitted.best_architecture_
    for name in ("input_shape_", "n_features_in_", "best_step_", "best_variant_",
                 "best_score_", "search_time_", "stopped_", "_image_shape_", "_fit_dtype_"):
        assert getattr(loaded, name) == getattr(fitted, name), name
        assert type(getattr(loaded, name)) is type(getattr(fitted, name)), name
    # Saved since 0.2.0 (before: lost on load): how the refit ran, what max_time skipped.
    for name in ("refit_", "skipped_"):
        assert json.dumps(getattr(loaded, name)) == json.dumps(getattr(fitted, name)), name
    for name in ("input_mean_", "input_std_"):
        assert getattr(loaded, name).dtype == np.float32
        assert np.array_equal(getattr(loaded, name), getattr(fitted, name))
    assert not loaded.module_.training
    assert all(p.device.type == "cpu" for p in loaded.module_.parameters())
    assert loaded.score(X_test, fitted.predict(X_test)) == 1.0


def test_files_are_plain_data_with_hashes(saved, fitted):
    assert sorted(os.listdir(saved)) == ["architecture.json", "estimator.json", "weights.pt"]
    doc = json.loads((saved / "estimator.json").read_text())
    assert doc["format"] == persistence.FORMAT
    assert doc["format_version"] == persistence.FORMAT_VERSION
    for name in ("architecture.json", "weights.pt"):
        data = (saved / name).read_bytes()
        assert doc["files"][name] == {"sha256": hashlib.sha256(data).hexdigest(),
                                      "bytes": len(data)}
    arch = json.loads((saved / "architecture.json").read_text())
    assert Architecture.from_dict(arch) == fitted.best_architecture_
    assert doc["params"]["start"] == {"__architecture__": START.to_dict()}
    assert doc["fitted"]["classes_"]["values"] == list(range(10))


@pytest.mark.parametrize("classes", [
    np.array(["cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay", "kea", "lynx"]),
    np.array([f"c{i}" for i in range(10)], dtype=object),
    np.arange(-5, 5, dtype=np.int32),
    np.arange(10, dtype=np.uint8),
    np.arange(10) / 2.0,
], ids=["str", "object-str", "int32", "uint8", "float"])
def test_label_dtypes_survive(fitted, classes, tmp_path, X_test):
    clf = copy.copy(fitted)
    clf.classes_ = classes
    loaded = ResBuilderClassifier.load(clf.save(tmp_path / "m"))
    assert loaded.classes_.dtype == classes.dtype
    assert loaded.classes_.tolist() == classes.tolist()
    assert [type(v) for v in loaded.classes_] == [type(v) for v in classes]
    assert np.array_equal(loaded.predict(X_test), clf.predict(X_test))


def test_labels_without_plain_form_are_refused_before_writing(fitted, tmp_path):
    clf = copy.copy(fitted)
    clf.classes_ = np.array([datetime.date(2020, 1, i + 1) for i in range(10)], dtype=object)
    with pytest.raises(ValueError, match="classes_ holds date values"):
        clf.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_feature_names_round_trip(fitted, tmp_path):
    clf = copy.copy(fitted)
    clf.feature_names_in_ = np.array([f"px{i}" for i in range(64)], dtype=object)
    loaded = ResBuilderClassifier.load(clf.save(tmp_path / "m"))
    assert loaded.feature_names_in_.dtype == object
    assert loaded.feature_names_in_.tolist() == clf.feature_names_in_.tolist()
    assert not hasattr(ResBuilderClassifier.load(fitted.save(tmp_path / "n")),
                       "feature_names_in_")


def test_random_state_instance_is_saved_as_none_with_a_warning(fitted, tmp_path):
    clf = copy.copy(fitted)
    clf.random_state = np.random.RandomState(3)
    with pytest.warns(UserWarning, match="random_state is a RandomState"):
        path = clf.save(tmp_path / "m")
    assert ResBuilderClassifier.load(path).random_state is None


def test_param_types_are_kept(fitted, tmp_path):
    clf = copy.copy(fitted)
    clf.device = torch.device("cpu")
    clf.image_shape = [8, 8]
    loaded = ResBuilderClassifier.load(clf.save(tmp_path / "m"))
    assert loaded.device == torch.device("cpu") and isinstance(loaded.device, torch.device)
    assert loaded.image_shape == [8, 8]


def test_param_without_plain_form_is_refused(fitted, tmp_path):
    clf = copy.copy(fitted)
    clf.verbose = object()
    with pytest.raises(ValueError, match="parameter verbose="):
        clf.save(tmp_path / "m")


def test_unfitted_save_raises_not_fitted(tmp_path):
    with pytest.raises(NotFittedError):
        ResBuilderClassifier().save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_existing_directory_needs_overwrite(fitted, saved, X_test):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        fitted.save(saved)
    (saved / "notes.txt").write_text("mine")
    fitted.save(saved, overwrite=True)
    assert (saved / "notes.txt").read_text() == "mine"
    assert np.array_equal(ResBuilderClassifier.load(saved).predict_proba(X_test),
                          fitted.predict_proba(X_test))


def test_save_into_a_file_path_is_refused(fitted, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        fitted.save(f)


# --------------------------------------------------------------- bad files
def test_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ResBuilderClassifier.load(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["estimator.json", "architecture.json", "weights.pt"])
def test_missing_file_is_named(saved, name):
    (saved / name).unlink()
    with pytest.raises(ValueError, match=rf"{name}: missing"):
        ResBuilderClassifier.load(saved)


def test_truncated_estimator_json(saved):
    est = saved / "estimator.json"
    est.write_bytes(est.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"estimator\.json: not valid JSON"):
        ResBuilderClassifier.load(saved)


def test_flipped_byte_in_weights(saved):
    w = saved / "weights.pt"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"weights\.pt: SHA-256 mismatch"):
        ResBuilderClassifier.load(saved)


def test_truncated_weights(saved):
    w = saved / "weights.pt"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"weights\.pt: SHA-256 mismatch"):
        ResBuilderClassifier.load(saved)
    rehash(saved, "weights.pt")  # even with a matching hash, torch cannot read it
    with pytest.raises(ValueError, match=r"weights\.pt: cannot be read as a torch state dict"):
        ResBuilderClassifier.load(saved)


def test_tampered_architecture(saved):
    arch_file = saved / "architecture.json"
    arch = json.loads(arch_file.read_text())
    stage = next(st for st in arch["stages"] if st["blocks"])  # START has a block
    stage["blocks"][0] += 1  # a wider block than the weights hold
    arch_file.write_text(json.dumps(arch))
    with pytest.raises(ValueError, match=r"architecture\.json: SHA-256 mismatch"):
        ResBuilderClassifier.load(saved)
    rehash(saved, "architecture.json")
    with pytest.raises(ValueError, match=r"weights\.pt: weights do not fit architecture\.json"
                                         r".*shape"):
        ResBuilderClassifier.load(saved)


def test_weights_with_wrong_keys(saved, fitted):
    state = fitted.module_.state_dict()
    state["extra.weight"] = torch.zeros(3)
    del state["head.bias"]
    torch.save(state, saved / "weights.pt")
    rehash(saved, "weights.pt")
    with pytest.raises(ValueError, match=r"missing keys \['head.bias'\], unexpected keys \['extra"):
        ResBuilderClassifier.load(saved)


def test_weights_that_would_run_code_are_refused(saved, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    torch.save({"stem.conv.weight": Evil()}, saved / "weights.pt")
    rehash(saved, "weights.pt")
    with pytest.raises(ValueError, match=r"weights\.pt: cannot be read"):
        ResBuilderClassifier.load(saved)
    assert not marker.exists()


def test_architecture_disagreeing_with_estimator_json(saved):
    edit_json(saved, lambda d: d["fitted"]["classes_"]["values"].pop())
    with pytest.raises(ValueError, match="10 classes.*9 classes"):
        ResBuilderClassifier.load(saved)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format_version=99), "format_version 99 was written by a newer"),
    (lambda d: d.update(format="something.else"), "not a saved"),
    (lambda d: d["params"].update(warp_drive=True), r"parameters \['warp_drive'\] are unknown"),
    (lambda d: d["fitted"].pop("input_mean_"), "'input_mean_' is missing"),
    (lambda d: d["fitted"].update(classes_={"dtype": "<M8[s]", "values": [0]}),
     "'classes_' is malformed"),
    (lambda d: d["files"].pop("weights.pt"), "no SHA-256 recorded for weights.pt"),
])
def test_bad_estimator_json_fields(saved, change, message):
    edit_json(saved, change)
    with pytest.raises(ValueError, match=message) as info:
        ResBuilderClassifier.load(saved)
    assert "estimator.json" in str(info.value)


# ------------------------------------------------------------ GPU -> CPU
def test_weights_written_on_a_gpu_load_on_cpu(saved, fitted, X_test, monkeypatch):
    # Rewrite weights.pt as a CUDA machine would: storages tagged "cuda:0".
    state = torch.load(saved / "weights.pt", weights_only=True)
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(state, saved / "weights.pt")
    rehash(saved, "weights.pt")
    if not torch.cuda.is_available():  # the forgery is real: a plain load needs CUDA
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(saved / "weights.pt", weights_only=True)
    loaded = ResBuilderClassifier.load(saved)
    assert all(p.device.type == "cpu" for p in loaded.module_.parameters())
    assert np.array_equal(loaded.predict_proba(X_test), fitted.predict_proba(X_test))
