"""Distributed model selection on a real Dask cluster, and device choice per worker.

A ``LocalCluster`` of two worker *processes* (one thread each) runs
``GridSearchCV``, ``RandomizedSearchCV`` and ``cross_val_score`` through
joblib's "dask" backend; the
scores, the chosen parameters and the predictions must equal a serial run
in this process: the estimator is seed-deterministic on the CPU, whichever
process fits it. The cluster is closed after the module, and its worker
processes must be gone.

The device test needs no Dask: ``CUDA_VISIBLE_DEVICES=""`` hides every GPU
from a process (how one pins a worker to "its" GPU, or to none), and
``device="auto"`` must then resolve to the CPU.
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score

from sklearn_resbuilder import ResBuilderClassifier

# lr 1e-2 and batches of 32: a few hundred digits learn something in 2 epochs.
TINY = dict(n_morph_steps=1, n_insertions=1, max_epochs=2, lr=1e-2, batch_size=32, refit=False,
            augment=False, device="cpu", random_state=0)
GRID = {"flop_budget": [1e5, 2e5]}


@pytest.fixture(scope="module")
def data():
    """600 of sklearn's 8x8 digits (flat), 300 per CV fold."""
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


@pytest.fixture(scope="module")
def client():
    """A two-process LocalCluster with its Client; closed (and checked) afterwards."""
    distributed = pytest.importorskip("distributed")
    # The nanny sets OMP_NUM_THREADS=1 by default (dask's pre-spawn-environ);
    # say so explicitly, since one torch thread per worker is what makes two
    # workers on two cores fast and their results equal to this process's.
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, silence_logs=40)
    pids = []
    try:
        with distributed.Client(cluster) as client:
            pids = list(client.run(os.getpid).values())
            yield client
    finally:
        cluster.close()
    # No stray worker processes may outlive the cluster.
    deadline = time.monotonic() + 10
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [p for p in pids if _running(p)]
    assert not alive, f"worker processes {alive} outlived cluster.close()"


def _running(pid):
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _torch_threads():
    import torch

    return torch.get_num_threads()


def test_workers_are_separate_processes_with_one_torch_thread(client):
    threads = client.run(_torch_threads)
    assert len(threads) == 2
    assert set(threads.values()) == {1}
    pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids


@pytest.fixture(scope="module")
def serial_search(data):
    # Two torch threads here (the tests otherwise run with one), as in a
    # user's process: the thread count changes CPU float sums, and serial
    # cross-validation fits must still use the one thread a worker uses.
    import torch

    from sklearn_resbuilder.threads import torch_threads

    X, y = data
    with torch_threads(2):
        assert torch.get_num_threads() == 2
        return GridSearchCV(ResBuilderClassifier(**TINY), GRID, cv=2, n_jobs=1).fit(X, y)


def test_grid_search_on_dask_equals_serial(client, data, serial_search):
    import joblib
    from distributed import get_task_stream

    X, y = data
    from sklearn_resbuilder.threads import torch_threads

    search = GridSearchCV(ResBuilderClassifier(**TINY), GRID, cv=2, n_jobs=-1)
    with get_task_stream(client) as stream, joblib.parallel_backend("dask"), torch_threads(2):
        search.fit(X, y)  # the final refit runs here, with this process's threads
    # The fits ran on the cluster's workers, not in this process.
    workers = {t["worker"] for t in stream.data}
    assert workers and workers <= set(client.scheduler_info()["workers"])

    for key in ("mean_test_score", "split0_test_score", "split1_test_score"):
        np.testing.assert_array_equal(search.cv_results_[key], serial_search.cv_results_[key])
    assert search.best_params_ == serial_search.best_params_
    np.testing.assert_array_equal(search.predict(X), serial_search.predict(X))
    np.testing.assert_array_equal(search.predict_proba(X), serial_search.predict_proba(X))


def test_fit_on_a_worker_equals_fit_here(client, data, serial_search):
    # The refit above ran in this process; fit the same estimator on a worker
    # and bring it back (pickled through the scheduler): same network.
    # A worker fits with one thread; so does n_jobs=1 here: the same model.
    X, y = data
    est = clone(serial_search.best_estimator_)
    remote = client.submit(est.fit, X, y, pure=False).result()
    assert remote.n_threads_ == 1
    here = clone(est).set_params(n_jobs=1).fit(X, y)
    assert remote.best_architecture_ == here.best_architecture_
    np.testing.assert_array_equal(remote.predict_proba(X), here.predict_proba(X))


def test_cross_val_score_on_dask_equals_serial(client, data):
    import joblib

    X, y = data
    from sklearn_resbuilder.threads import torch_threads

    est = ResBuilderClassifier(flop_budget=1e5, **TINY)
    with torch_threads(2):  # a user's process: the CV fits still take one thread
        serial = cross_val_score(est, X, y, cv=2, n_jobs=1)
    with joblib.parallel_backend("dask"):
        dask = cross_val_score(est, X, y, cv=2, n_jobs=-1)
    np.testing.assert_array_equal(dask, serial)
    assert np.all(serial > 0.3)  # chance is 0.1: a real score, not a constant


def test_randomized_search_on_dask_equals_serial(client, data):
    import joblib
    from scipy.stats import loguniform

    X, y = data
    kw = dict(param_distributions={"flop_budget": loguniform(8e4, 3e5)}, n_iter=2, cv=2,
              random_state=0)
    serial = RandomizedSearchCV(ResBuilderClassifier(**TINY), n_jobs=1, **kw).fit(X, y)
    with joblib.parallel_backend("dask"):
        dask = RandomizedSearchCV(ResBuilderClassifier(**TINY), n_jobs=-1, **kw).fit(X, y)
    budgets = [p["flop_budget"] for p in dask.cv_results_["params"]]
    assert len(set(budgets)) == 2 and all(8e4 <= b <= 3e5 for b in budgets)
    assert budgets == [p["flop_budget"] for p in serial.cv_results_["params"]]
    np.testing.assert_array_equal(dask.cv_results_["mean_test_score"],
                                  serial.cv_results_["mean_test_score"])
    assert dask.best_params_ == serial.best_params_


def test_auto_device_is_cpu_when_no_gpu_is_visible():
    code = ("import torch; from sklearn_resbuilder.estimator import resolve_device; "
            "print(resolve_device('auto'), torch.cuda.device_count())")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["cpu", "0"]
