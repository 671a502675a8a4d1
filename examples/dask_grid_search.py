"""Grid-search ``flop_budget`` on a Dask cluster: every fit on a worker process.

Each candidate x fold of a ``GridSearchCV`` is a whole ResBuilder search,
independent of the others, so they spread over machines (or GPUs) with no
change to the estimator: inside ``joblib.parallel_backend("dask")``
scikit-learn hands its fits to the Dask workers of the active ``Client``.

By default the script starts a ``LocalCluster`` of worker processes on this
machine, one thread each (Dask's nanny sets ``OMP_NUM_THREADS=1``, so torch
uses one thread per worker; more threads per fit only fight over the cores).
To use a cluster that is already running, start it and pass its address::

    dask scheduler                                   # prints tcp://HOST:8786
    dask worker tcp://HOST:8786 --nworkers 4 --nthreads 1   # on each machine
    DASK_SCHEDULER_ADDRESS=tcp://HOST:8786 python examples/dask_grid_search.py

(every worker needs ``sklearn_resbuilder`` installed). The script prints one
row per budget, how many fits each worker ran, the chosen budget, the FLOPs
of the refitted network and its accuracy on held-out digits. The refit on
the whole training set runs in this process.

Data: scikit-learn's 1,797 8x8 digits (ships with scikit-learn).
Needs ``pip install "dask[distributed]"`` (the ``dask`` extra of this package).

Run: ``.venv/bin/python examples/dask_grid_search.py`` (3 budgets x 3 folds =
9 searches of up to 60 s each on 2 workers, plus the refit: about 6 minutes on
2 CPU cores). ``RESBUILDER_SMOKE=1`` shrinks data, grid and epochs to a
seconds-long run (the test suite runs it that way). See docs/distributed.md
for multi-GPU clusters and the Ray alternative (examples/ray_grid_search.py).
"""

import collections
import contextlib
import os
import time

import joblib
from distributed import Client, LocalCluster, get_task_stream
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split

from sklearn_resbuilder import ResBuilderClassifier

SMOKE = os.environ.get("RESBUILDER_SMOKE") == "1"
N_WORKERS = 2
# The minimal start net costs 19,712 FLOPs on 8x8 images: every budget is above it.
BUDGETS = [5e4, 2e5] if SMOKE else [3e4, 1e5, 3e5]


def main():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0)
    if SMOKE:
        X_train, y_train = X_train[:400], y_train[:400]

    clf = ResBuilderClassifier(
        n_insertions=1 if SMOKE else 2,
        n_morph_steps=1 if SMOKE else 2,
        max_epochs=3 if SMOKE else 20,
        refit=not SMOKE,  # the refit's 600-step floor is minutes, not the smoke run's seconds
        lr=1e-2 if SMOKE else 1e-3,
        batch_size=32,
        augment="shift",  # digits must not be mirrored
        max_time=None if SMOKE else 60,  # per fit: every fit is a whole search
        device="cpu",  # see docs/distributed.md for one GPU per worker
        random_state=0,
    )
    search = GridSearchCV(clf, {"flop_budget": BUDGETS}, cv=2 if SMOKE else 3, n_jobs=-1)

    with contextlib.ExitStack() as stack:
        address = os.environ.get("DASK_SCHEDULER_ADDRESS")
        if address:
            # An existing cluster; by hand: client = Client("tcp://10.0.0.5:8786")
            client = stack.enter_context(Client(address))
        else:
            cluster = stack.enter_context(LocalCluster(
                n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                dashboard_address=None))
            client = stack.enter_context(Client(cluster))
        print(f"Dask cluster: {len(client.scheduler_info()['workers'])} workers")
        t0 = time.perf_counter()
        with get_task_stream(client) as stream, joblib.parallel_backend("dask"):
            search.fit(X_train, y_train)
        seconds = time.perf_counter() - t0
        tasks = collections.Counter(t["worker"] for t in stream.data)

    res = search.cv_results_
    print(f"{'flop_budget':>12}  {'mean CV accuracy':>16}  {'std':>6}")
    for budget, mean, std in zip(res["param_flop_budget"], res["mean_test_score"],
                                 res["std_test_score"]):
        print(f"{budget:>12,.0f}  {mean:>16.4f}  {std:>6.4f}")
    n_fits = len(BUDGETS) * search.n_splits_
    print(f"CV fits:            {n_fits} in {sum(tasks.values())} Dask tasks, per worker: "
          + ", ".join(f"{w}={n}" for w, n in sorted(tasks.items())))
    best = search.best_estimator_
    chosen = search.best_params_["flop_budget"]
    print(f"chosen flop_budget: {chosen:,.0f}")
    print(f"refit FLOPs:        {best.best_architecture_.flops():,} of {chosen:,.0f}")
    print(f"test accuracy:      {search.score(X_test, y_test):.4f} "
          f"({len(X_test)} held-out digits)")
    print(f"search time:        {seconds:.0f} s (CV fits on the cluster + the refit here)")


# Worker processes are spawned and import this file: start nothing at import time.
if __name__ == "__main__":
    main()
