"""scikit-learn compatibility: the common estimator checks, meta-estimators,
persistence and tags.

The common checks feed tabular data with 1-10 features; ``image_shape=(1, -1)``
turns each row into a 1 x D one-channel image so every check applies.
"""

import copy
import io
import pickle
import types

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_resbuilder import ResBuilderClassifier


# The config the common checks run on. check_classifiers_train wants training
# accuracy > 0.83 on make_blobs (300 samples): 3 epochs at lr 1e-2 with batches
# of 32 reach 0.93-0.98 (measured, seeds 0-2, 2 and 3 classes), and keep the
# ~50 checks (about 150 fits) fast; 10 epochs at batch 128 reach the same
# accuracy at several times the cost.
# validation_fraction=0.25: several checks fit 10-20 samples of 2-3 classes,
# and the stratified split inside fit needs one validation sample per class
# (with the default 0.1, 20 samples of 3 classes give 2 validation samples and
# fit raises a clear ValueError by design; see data.validation_split).
CHECK_CONFIG = dict(flop_budget=1e6, n_insertions=0, n_morph_steps=0, max_epochs=3, refit=False,
                    lr=1e-2, batch_size=32, augment=False, image_shape=(1, -1),
                    validation_fraction=0.25, random_state=0)


def expected_failed_checks(estimator):
    """Checks this estimator is known not to pass, with the reason.

    Empty: every failure seen so far was a fixable convention (error-message
    wording, exception type, NotFittedError) and is not excused here.
    """
    return {}


@parametrize_with_checks([ResBuilderClassifier(**CHECK_CONFIG)],
                         expected_failed_checks=expected_failed_checks)
def test_sklearn_common_checks(estimator, check):
    check(estimator)


# ----------------------------------------------------------------------------
# data and a tiny configuration for the rest of the file
# ----------------------------------------------------------------------------

TINY = dict(flop_budget=2e5, n_insertions=0, n_morph_steps=0, max_epochs=3, lr=1e-2,
            augment=False, random_state=0)


@pytest.fixture(scope="module")
def fitted(digits):
    Xtr, Xte, ytr, yte = digits
    return ResBuilderClassifier(**TINY).fit(Xtr, ytr)


# ----------------------------------------------------------------------------
# params, clone, meta-estimators
# ----------------------------------------------------------------------------

def test_clone_and_params_round_trip():
    est = ResBuilderClassifier(**TINY, image_shape=(8, 8), max_time=30.0)
    params = est.get_params()
    assert params["flop_budget"] == 2e5 and params["image_shape"] == (8, 8)
    twin = clone(est)
    assert twin is not est
    assert twin.get_params() == params
    other = ResBuilderClassifier().set_params(**params)
    assert other.get_params() == params
    assert other.set_params(lr=0.5, start="resnet18") is other
    assert other.lr == 0.5 and other.start == "resnet18"
    with pytest.raises(ValueError, match="Invalid parameter"):
        other.set_params(no_such_param=1)


def test_clone_of_fitted_is_unfitted(fitted):
    twin = clone(fitted)
    assert twin.get_params() == fitted.get_params()
    assert not hasattr(twin, "module_") and not hasattr(twin, "classes_")


def test_pipeline_with_reshaping_step(digits):
    Xtr, Xte, ytr, yte = digits
    to_images = FunctionTransformer(lambda X: np.asarray(X).reshape(-1, 8, 8))
    pipe = make_pipeline(to_images, ResBuilderClassifier(**TINY)).fit(Xtr, ytr)
    clf = pipe[-1]
    assert clf.input_shape_ == (1, 8, 8)
    assert pipe.predict(Xte).shape == (len(Xte),)
    np.testing.assert_allclose(pipe.predict_proba(Xte).sum(axis=1), 1, atol=1e-5)
    assert pipe.score(Xte, yte) > 0.3  # chance 0.1; measured ~0.9 on all of digits


def test_cross_val_score():
    X, y = load_digits(return_X_y=True)
    scores = cross_val_score(ResBuilderClassifier(**TINY), X, y, cv=2)
    assert scores.shape == (2,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert np.all(scores > 0.3)  # chance 0.1; measured 0.82 and 0.84


def test_grid_search_parallel(digits):
    Xtr, Xte, ytr, yte = digits
    grid = {"flop_budget": [1e5, 2e5], "morph_strength": [1e-7]}  # 2 candidates
    search = GridSearchCV(ResBuilderClassifier(**{**TINY, "max_epochs": 2}), grid,
                          cv=2, n_jobs=2).fit(Xtr[:600], ytr[:600])
    assert len(search.cv_results_["params"]) == 2
    assert search.best_params_ in search.cv_results_["params"]
    best = search.best_estimator_
    assert best.flop_budget == search.best_params_["flop_budget"]
    assert best.best_architecture_.flops() <= best.flop_budget
    assert hasattr(best, "module_")  # refit on the whole training data
    assert search.score(Xte, yte) == pytest.approx(np.mean(best.predict(Xte) == yte))


# ----------------------------------------------------------------------------
# persistence
# ----------------------------------------------------------------------------

def test_joblib_round_trip_fitted(fitted, digits, tmp_path):
    Xtr, Xte, ytr, yte = digits
    path = tmp_path / "clf.joblib"
    joblib.dump(fitted, path)
    loaded = joblib.load(path)
    assert np.array_equal(loaded.predict_proba(Xte), fitted.predict_proba(Xte))
    np.testing.assert_array_equal(loaded.predict(Xte), fitted.predict(Xte))
    assert loaded.best_architecture_ == fitted.best_architecture_
    assert loaded.history_ == fitted.history_
    assert loaded.get_params() == fitted.get_params()


def test_pickle_unfitted():
    est = ResBuilderClassifier(**TINY, image_shape=(8, 8))
    twin = pickle.loads(pickle.dumps(est))
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "module_")


def test_pickle_holds_cpu_tensors_only(fitted, digits):
    Xtr, Xte, ytr, yte = digits
    blob = pickle.dumps(fitted)
    assert b"cuda" not in blob
    loaded = pickle.loads(blob)
    assert all(p.device.type == "cpu" for p in loaded.module_.parameters())
    # torch's own loader with its default map_location reads it back as well
    buf = io.BytesIO()
    torch.save(fitted, buf)
    buf.seek(0)
    via_torch = torch.load(buf, weights_only=False)
    assert np.array_equal(via_torch.predict_proba(Xte), fitted.predict_proba(Xte))


def _reports_cuda(self, recurse=True):
    """``Module.parameters`` of a module that claims to live on a GPU."""
    yield types.SimpleNamespace(device=torch.device("cuda", 0))


def test_getstate_moves_a_gpu_module_to_cpu(fitted):
    """``__getstate__`` hands pickle a CPU copy when ``module_`` is on a GPU.

    No GPU here: the module is made to *report* a CUDA device (its
    ``parameters()`` is replaced), which is what ``__getstate__`` looks at. A
    real GPU round trip is ``test_gpu_fitted_model_loads_on_cpu`` below, which
    only runs where CUDA is available.
    """
    clf = copy.deepcopy(fitted)
    clf.module_.parameters = types.MethodType(_reports_cuda, clf.module_)
    state = clf.__getstate__()
    assert state["module_"] is not clf.module_  # the user's module is left alone
    assert all(t.device.type == "cpu" for t in state["module_"].state_dict().values())
    # and a CPU module is not copied needlessly
    assert fitted.__getstate__()["module_"] is fitted.module_


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_fitted_model_loads_on_cpu(digits, tmp_path):
    import subprocess
    import sys

    Xtr, Xte, ytr, yte = digits
    clf = ResBuilderClassifier(**TINY, device="cuda").fit(Xtr, ytr)
    path = tmp_path / "gpu.joblib"
    joblib.dump(clf, path)
    np.save(tmp_path / "Xte.npy", Xte)
    np.save(tmp_path / "proba.npy", clf.predict_proba(Xte))
    code = (
        "import joblib, numpy as np, torch, sys\n"
        "assert not torch.cuda.is_available()\n"
        f"clf = joblib.load({str(path)!r})\n"
        f"X = np.load({str(tmp_path / 'Xte.npy')!r})\n"
        f"ref = np.load({str(tmp_path / 'proba.npy')!r})\n"
        "np.testing.assert_allclose(clf.predict_proba(X), ref, atol=1e-4)\n"
    )
    env = {"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)


# ----------------------------------------------------------------------------
# tags
# ----------------------------------------------------------------------------

def test_sklearn_tags():
    tags = ResBuilderClassifier().__sklearn_tags__()
    assert tags.input_tags.three_d_array is True
    assert tags.estimator_type == "classifier"
    # "auto" predicts on a GPU where there is one (cuDNN: not bit-reproducible)
    assert tags.non_deterministic is torch.cuda.is_available()
    assert ResBuilderClassifier(device="cpu").__sklearn_tags__().non_deterministic is False
