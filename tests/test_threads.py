"""Torch threads per fit: all of them for a single fit, one per parallel worker."""

import joblib
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score

from sklearn_resbuilder import ResBuilderClassifier
from sklearn_resbuilder.threads import available_cores, in_worker, resolve_threads, torch_threads

# The start net only, one epoch: these tests look at threads, not accuracy.
QUICK = dict(flop_budget=2e5, n_insertions=0, n_morph_steps=0, max_epochs=1, refit=False,
             augment=False, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return X[:400], y[:400]


@pytest.fixture
def two_threads():
    """This process at 2 torch threads (conftest sets 1), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _threads_of_fit(est, X, y):
    """A cross_val_score scorer that reports what the worker's fit ran with."""
    return est.n_threads_


def _torch_threads_now(est, X, y):
    return torch.get_num_threads()


@pytest.mark.parametrize("backend", ["loky", "multiprocessing", "threading"])
def test_each_parallel_worker_fits_with_one_thread(data, two_threads, backend):
    X, y = data
    with joblib.parallel_backend(backend):
        used = cross_val_score(ResBuilderClassifier(**QUICK), X, y, cv=2, n_jobs=2,
                               scoring=_threads_of_fit)
    np.testing.assert_array_equal(used, [1, 1])
    assert torch.get_num_threads() == 2  # the parent's setting is untouched


def test_forked_workers_would_otherwise_run_the_parents_thread_count(data, two_threads):
    # What the test above guards against: a multiprocessing worker starts with
    # the parent's 2 threads (2 fits x 2 threads on 2 cores) unless fit sets 1.
    X, y = data
    with joblib.parallel_backend("multiprocessing"):
        seen = cross_val_score(ResBuilderClassifier(**QUICK), X, y, cv=2, n_jobs=2,
                               scoring=_torch_threads_now)
    # After the fit the worker's count is restored: what it was given, 2.
    np.testing.assert_array_equal(seen, [2, 2])


def test_a_single_fit_keeps_the_users_thread_count(data, two_threads):
    X, y = data
    clf = ResBuilderClassifier(**QUICK).fit(X, y)
    assert clf.n_threads_ == 2
    torch.set_num_threads(1)  # the user's explicit choice is respected too
    assert ResBuilderClassifier(**QUICK).fit(X, y).n_threads_ == 1


def test_n_jobs_sets_the_threads_for_the_call_and_restores_them(data, two_threads):
    X, y = data
    clf = ResBuilderClassifier(**QUICK, n_jobs=1).fit(X, y)
    assert clf.n_threads_ == 1
    assert torch.get_num_threads() == 2
    ResBuilderClassifier(**QUICK, n_jobs=-1).fit(X, y)
    assert torch.get_num_threads() == 2


def test_threads_do_not_change_the_result(data, two_threads):
    X, y = data
    one = ResBuilderClassifier(**QUICK, n_jobs=1).fit(X, y)
    two = ResBuilderClassifier(**QUICK, n_jobs=2).fit(X, y)
    assert two.n_threads_ == 2
    assert one.history_[0]["scores"]["with_reg"]["valid_accuracy"] == \
        two.history_[0]["scores"]["with_reg"]["valid_accuracy"]
    np.testing.assert_allclose(one.predict_proba(X), two.predict_proba(X), atol=1e-4)


def test_resolve_threads():
    assert not in_worker()
    assert resolve_threads(None) == torch.get_num_threads()
    assert resolve_threads(3) == 3
    assert resolve_threads(-1) == available_cores()
    assert resolve_threads(-available_cores() - 5) == 1


def test_n_jobs_zero_is_a_value_error_naming_it(data):
    X, y = data
    with pytest.raises(ValueError, match="n_jobs"):
        ResBuilderClassifier(**QUICK, n_jobs=0).fit(X, y)
    with pytest.raises(ValueError, match="n_jobs"):
        resolve_threads(0)


def test_torch_threads_restores_after_an_error(two_threads):
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 2
