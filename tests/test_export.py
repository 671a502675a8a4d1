"""Tests for getting the fitted network out: ``preprocess``, ``to_torch``
(fx GraphModule usable without this package), ONNX and ``torch.export``.

One tiny fit on digits (start net with a residual block, so the exports cover
``ResidualBlock``), reused by every test.
"""

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from sklearn_resbuilder import ResBuilderClassifier



@pytest.fixture
def fitted(fitted_with_block):
    return fitted_with_block  # conftest.py: one tiny fit shared with the other test file


@pytest.fixture(scope="module")
def X_test(digits):
    return digits[1][:40]


def images(X):
    """Digits rows as the exported models take them: float32 (N, 1, 8, 8), raw scale."""
    return torch.as_tensor(np.asarray(X, np.float32).reshape(-1, 1, 8, 8))


# ----------------------------------------------------------------- preprocess
def test_preprocess_is_what_module_takes(fitted, X_test):
    x = fitted.preprocess(X_test)
    assert x.dtype == torch.float32 and tuple(x.shape) == (len(X_test), 1, 8, 8)
    assert x.device.type == "cpu"
    with torch.no_grad():
        proba = torch.softmax(fitted.module_.eval()(x), dim=1).numpy()
    np.testing.assert_allclose(proba, fitted.predict_proba(X_test), rtol=0, atol=1e-6)
    # Standardised with the training split's statistics, not the batch's own.
    expected = (np.asarray(X_test, np.float32).reshape(-1, 1, 8, 8)
                - fitted.input_mean_[0]) / fitted.input_std_[0]
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_preprocess_rejects_wrong_shape(fitted):
    with pytest.raises(ValueError, match="features"):
        fitted.preprocess(np.zeros((3, 65)))


# ------------------------------------------------------------------- to_torch
def test_to_torch_is_plain_torch_and_matches_predict_proba(fitted, X_test):
    gm = fitted.to_torch()
    assert isinstance(gm, torch.fx.GraphModule)
    assert not gm.training
    foreign = {type(m).__module__ for m in gm.modules()
               if not type(m).__module__.startswith("torch.")}
    assert foreign == set()
    assert "sklearn_resbuilder" not in gm.code
    assert all(p.device.type == "cpu" and not p.requires_grad for p in gm.parameters())
    with torch.no_grad():
        logits = gm(images(X_test))
    assert tuple(logits.shape) == (len(X_test), 10)
    proba = torch.softmax(logits, dim=1).numpy()
    np.testing.assert_allclose(proba, fitted.predict_proba(X_test), rtol=0, atol=1e-5)
    with torch.no_grad():
        direct = fitted.to_torch(proba=True)(images(X_test)).numpy()
    np.testing.assert_allclose(direct, fitted.predict_proba(X_test), rtol=0, atol=1e-5)


def test_to_torch_without_preprocessing_takes_preprocess_output(fitted, X_test):
    gm = fitted.to_torch(include_preprocessing=False, proba=True)
    with torch.no_grad():
        out = gm(fitted.preprocess(X_test)).numpy()
    np.testing.assert_allclose(out, fitted.predict_proba(X_test), rtol=0, atol=1e-5)
    # Raw pixels are not standardised by this module: outputs differ.
    with torch.no_grad():
        raw = gm(images(X_test)).numpy()
    assert np.abs(raw - out).max() > 1e-3


def test_to_torch_owns_its_weights(fitted, X_test):
    before = fitted.predict_proba(X_test)
    gm = fitted.to_torch()
    with torch.no_grad():
        for p in gm.parameters():
            p.zero_()
    np.testing.assert_array_equal(fitted.predict_proba(X_test), before)


def test_uint8_fitted_model_takes_0_255_pixels(fitted, X_test):
    # Same weights and statistics, marked as fitted on uint8: predict_proba on
    # uint8 input divides by 255 before standardising, the export must too.
    u8 = copy.copy(fitted)
    u8._fit_dtype_ = "uint8"
    X8 = (np.asarray(X_test) * 15).astype(np.uint8)
    expected = u8.predict_proba(X8)
    gm = u8.to_torch(proba=True)
    x8 = torch.as_tensor(X8.reshape(-1, 1, 8, 8))
    with torch.no_grad():
        from_uint8 = gm(x8).numpy()
        from_float = gm(x8.float()).numpy()
    np.testing.assert_allclose(from_uint8, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(from_float, expected, rtol=0, atol=1e-5)


def test_to_torch_loads_where_the_package_cannot_be_imported(fitted, X_test, tmp_path):
    model_file, x_file, out_file = (tmp_path / n for n in ("model.pt", "x.pt", "out.pt"))
    torch.save(fitted.to_torch(proba=True), model_file)
    torch.save(images(X_test), x_file)
    child = textwrap.dedent(f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "sklearn_resbuilder":
                    raise ImportError("blocked: " + name)

        sys.meta_path.insert(0, Block())
        try:
            import sklearn_resbuilder
        except ImportError:
            pass
        else:
            sys.exit("the import blocker does not work")
        import torch
        model = torch.load({str(model_file)!r}, weights_only=False)
        with torch.no_grad():
            out = model(torch.load({str(x_file)!r}))
        torch.save(out, {str(out_file)!r})
        assert not any(m.split(".")[0] == "sklearn_resbuilder" for m in sys.modules)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    out = torch.load(out_file).numpy()
    np.testing.assert_allclose(out, fitted.predict_proba(X_test), rtol=0, atol=1e-5)


def test_exports_need_a_fitted_estimator(tmp_path):
    clf = ResBuilderClassifier()
    with pytest.raises(NotFittedError):
        clf.to_torch()
    with pytest.raises(NotFittedError):
        clf.export_program(tmp_path / "m.pt2")
    with pytest.raises(NotFittedError):
        clf.preprocess(np.zeros((2, 64)))


def test_missing_fit_dtype_is_a_clear_error(fitted):
    old = copy.copy(fitted)
    del old._fit_dtype_  # as fitted by a version that did not record it
    with pytest.raises(ValueError, match="refit"):
        old.to_torch()
    assert isinstance(old.to_torch(include_preprocessing=False), torch.fx.GraphModule)


# ----------------------------------------------------------------------- ONNX
def test_onnx_matches_predict_proba_for_several_batch_sizes(fitted, X_test, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = tmp_path / "model.onnx"
    fitted.export_onnx(path, proba=True)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # no exporter progress lines
    assert os.listdir(tmp_path) == ["model.onnx"]  # weights inside, no side files
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "images" and out.name == "probabilities"
    assert inp.type == "tensor(float)" and inp.shape[1:] == [1, 8, 8]
    assert not isinstance(inp.shape[0], int)  # dynamic batch
    expected = fitted.predict_proba(X_test)
    for n in (1, 7):
        got = session.run(None, {"images": images(X_test[:n]).numpy()})[0]
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, expected[:n], rtol=0, atol=1e-4)
    meta = json.loads(session.get_modelmeta().custom_metadata_map["sklearn_resbuilder"])
    assert meta["classes"] == fitted.classes_.tolist()
    assert meta["input_shape"] == [1, 8, 8] and meta["output"] == "probabilities"


def test_onnx_default_outputs_logits(fitted, X_test, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = tmp_path / "logits.onnx"
    fitted.export_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].name == "logits"
    logits = session.run(None, {"images": images(X_test).numpy()})[0]
    proba = torch.softmax(torch.as_tensor(logits), dim=1).numpy()
    np.testing.assert_allclose(proba, fitted.predict_proba(X_test), rtol=0, atol=1e-4)


def test_onnx_without_extra_names_it(fitted, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"onnxscript.*sklearn-resbuilder\[export\]"):
        fitted.export_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


# --------------------------------------------------------------- torch.export
def test_export_program_round_trips(fitted, X_test, tmp_path):
    path = tmp_path / "model.pt2"
    fitted.export_program(path, proba=True)
    extra = {"sklearn_resbuilder": ""}
    program = torch.export.load(path, extra_files=extra)
    module = program.module()
    expected = fitted.predict_proba(X_test)
    for n in (1, 7, len(X_test)):
        with torch.no_grad():
            got = module(images(X_test[:n])).numpy()
        np.testing.assert_allclose(got, expected[:n], rtol=0, atol=1e-5)
    meta = json.loads(extra["sklearn_resbuilder"])
    assert meta["classes"] == fitted.classes_.tolist()
    assert meta["architecture"] == fitted.best_architecture_.to_dict()


# ------------------------------------------------- 1-D and downsampled inputs
def _signal_rows(X):
    """Digits rows as 1-D signals of length 64 (``image_shape=(1, 64)``)."""
    return np.asarray(X, np.float32)


def _upscaled(X):
    """Digits nearest-upscaled x8 to 64x64: the minimal net average-pools them to 32x32."""
    img = np.asarray(X, np.float32).reshape(-1, 8, 8)
    return img.repeat(8, axis=1).repeat(8, axis=2)


@pytest.fixture(scope="module", params=["1d", "downsample"])
def fitted_input(request, digits):
    """(classifier, test images as the exported models take them, test X)."""
    from sklearn_resbuilder import Architecture

    X_train, X_test, y_train, _ = digits
    if request.param == "1d":
        Xtr, Xte, shape = _signal_rows(X_train), _signal_rows(X_test[:20]), (1, 1, 64)
        kw = {"image_shape": (1, 64)}
    else:
        Xtr, Xte, shape = _upscaled(X_train[:300]), _upscaled(X_test[:20]), (1, 64, 64)
        kw = {}
    start = Architecture.minimal(shape, 10, width=4).insert_block(1, 0)
    assert start.layout == "1d" or start.stem.downsample == 2
    # No MorphNet step: the start net (with its block, within the budget) is exported.
    clf = ResBuilderClassifier(flop_budget=3e5, start=start, n_insertions=1, n_morph_steps=0,
                               lasso_threshold=0.0, max_epochs=1, augment=False, refit=False,
                               device="cpu", random_state=0, **kw).fit(Xtr, y_train[:len(Xtr)])
    assert clf.best_architecture_.n_blocks >= 1
    return clf, torch.as_tensor(Xte.reshape(-1, *shape)), Xte


def test_1d_and_downsampled_nets_export(fitted_input, tmp_path):
    clf, x, X = fitted_input
    expected = clf.predict_proba(X)
    with torch.no_grad():
        got = clf.to_torch(proba=True)(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    program = clf.export_program(tmp_path / "m.pt2", proba=True)
    with torch.no_grad():
        got = torch.export.load(tmp_path / "m.pt2").module()(x[:7]).numpy()
    np.testing.assert_allclose(got, expected[:7], rtol=0, atol=1e-5)
    assert program is not None
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    clf.export_onnx(tmp_path / "m.onnx", proba=True)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    meta = json.loads(session.get_modelmeta().custom_metadata_map["sklearn_resbuilder"])
    assert meta["architecture"] == clf.best_architecture_.to_dict()


def test_1d_and_downsampled_nets_save_and_load(fitted_input, tmp_path):
    clf, _, X = fitted_input
    loaded = ResBuilderClassifier.load(clf.save(tmp_path / "model"))
    assert loaded.best_architecture_ == clf.best_architecture_
    assert loaded.best_architecture_.layout == clf.best_architecture_.layout
    assert loaded.best_architecture_.stem.downsample == clf.best_architecture_.stem.downsample
    assert np.array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    import pickle

    again = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(again.predict_proba(X), clf.predict_proba(X))
