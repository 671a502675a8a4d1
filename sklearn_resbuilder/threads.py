"""How many torch threads a fit (or a prediction) runs with.

A single ``fit`` gets every core: torch's own default, or whatever the user
set with ``torch.set_num_threads``. Inside parallel workers (``GridSearchCV
(n_jobs=k)``, ``cross_val_score(n_jobs=k)``, joblib's multiprocessing or
threading backends, Dask, Ray) each fit gets one thread: k fits with
torch's default of "all cores" each would put k x cores threads on the
cores, and OpenMP threads that wait for one another on a busy core run
5-20x slower than one thread alone (measured on 2 cores). Every fit of
scikit-learn's cross-validation gets one thread too, also when it runs
serially (``n_jobs=1``): the thread count changes the order of CPU float
sums (convolution weight gradients, channels-last BatchNorm), hence the
trained model, and a grid search must score the same whether it runs here
or on workers. ``n_jobs`` overrides all of these.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading

import torch


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def in_worker() -> bool:
    """Whether this code runs in a parallel worker rather than the user's own process.

    A child process (joblib's loky and multiprocessing backends, Dask's
    nanny-spawned workers, Ray, ``concurrent.futures``) or a thread other
    than the main one (joblib's threading backend, Dask's threaded workers).
    """
    return (multiprocessing.parent_process() is not None
            or threading.current_thread() is not threading.main_thread())


def in_cross_validation() -> bool:
    """Whether this code runs inside one of scikit-learn's cross-validation fits.

    ``GridSearchCV``, ``RandomizedSearchCV``, ``cross_val_score``,
    ``cross_validate``, ``learning_curve`` and ``validation_curve`` all fit
    each split through ``sklearn.model_selection._validation._fit_and_score``,
    serially or on workers; it is looked for on the call stack.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if (frame.f_code.co_name == "_fit_and_score"
                and frame.f_globals.get("__name__", "").startswith("sklearn.model_selection")):
            return True
        frame = frame.f_back
    return False


def resolve_threads(n_jobs) -> int:
    """Torch threads for one fit with the estimator's ``n_jobs``.

    Parameters
    ----------
    n_jobs : int or None
        None: torch's current setting in the user's process, 1 in a parallel
        worker (see :func:`in_worker`) and in every cross-validation fit
        (:func:`in_cross_validation`). A positive int: that many threads.
        -1: every available core; -2 all but one, and so on (scikit-learn's
        convention).

    Returns
    -------
    int
    """
    if n_jobs is None:
        return 1 if in_worker() or in_cross_validation() else torch.get_num_threads()
    n_jobs = int(n_jobs)
    if n_jobs == 0:
        raise ValueError("n_jobs=0 means no thread at all; use None, a positive int or -1")
    if n_jobs < 0:
        return max(1, available_cores() + 1 + n_jobs)
    return n_jobs


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the body with ``torch.set_num_threads(n)``; restore the old count after."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
