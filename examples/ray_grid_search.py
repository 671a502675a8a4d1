"""Grid-search ``flop_budget`` on Ray instead of Dask (documentation; Ray is optional).

The same pattern as examples/dask_grid_search.py: each candidate x fold of a
``GridSearchCV`` is a whole ResBuilder search, and inside
``joblib.parallel_backend("ray")`` scikit-learn hands them to Ray workers.
``ray.util.joblib.register_ray()`` adds that joblib backend.

Ray is not a dependency of this package (nor of its tests): without it the
script says how to install it and exits with status 0. With it::

    pip install "ray[default]"
    python examples/ray_grid_search.py                    # a local Ray instance
    RAY_ADDRESS=ray://HEAD:10001 python examples/ray_grid_search.py   # a running cluster

Each Ray worker runs its fits with one torch thread (``OMP_NUM_THREADS=1`` in
the workers' environment, set below through ``runtime_env``).
For GPUs, see docs/distributed.md: one fit per GPU, each process seeing only
its own GPU, ``device="auto"``.

Data: scikit-learn's 1,797 8x8 digits. ``RESBUILDER_SMOKE=1`` shrinks data,
grid and epochs to a seconds-long run.
"""

import os
import sys
import time


def main():
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        print("ray is not installed: this example needs it (pip install \"ray[default]\"). "
              "examples/dask_grid_search.py does the same on Dask.")
        return 0

    import joblib
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV, train_test_split

    from sklearn_resbuilder import ResBuilderClassifier

    smoke = os.environ.get("RESBUILDER_SMOKE") == "1"
    budgets = [5e4, 2e5] if smoke else [3e4, 1e5, 3e5]
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0)
    if smoke:
        X_train, y_train = X_train[:400], y_train[:400]
    clf = ResBuilderClassifier(
        n_insertions=1 if smoke else 2, n_morph_steps=1 if smoke else 2,
        max_epochs=3 if smoke else 20, lr=1e-2 if smoke else 1e-3, batch_size=32,
        refit=not smoke,  # the refit's 600-step floor is minutes, not the smoke run's seconds
        augment="shift", max_time=None if smoke else 60, device="cpu", random_state=0)
    search = GridSearchCV(clf, {"flop_budget": budgets}, cv=2 if smoke else 3, n_jobs=-1)

    register_ray()
    # RAY_ADDRESS set: join that cluster; unset: start a local instance on 2 CPUs.
    address = os.environ.get("RAY_ADDRESS")
    ray.init(address=address, num_cpus=None if address else 2,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        t0 = time.perf_counter()
        with joblib.parallel_backend("ray"):
            search.fit(X_train, y_train)
        seconds = time.perf_counter() - t0
    finally:
        ray.shutdown()

    res = search.cv_results_
    print(f"{'flop_budget':>12}  {'mean CV accuracy':>16}")
    for budget, mean in zip(res["param_flop_budget"], res["mean_test_score"]):
        print(f"{budget:>12,.0f}  {mean:>16.4f}")
    chosen = search.best_params_["flop_budget"]
    print(f"chosen flop_budget: {chosen:,.0f}")
    print(f"refit FLOPs:        {search.best_estimator_.best_architecture_.flops():,}")
    print(f"test accuracy:      {search.score(X_test, y_test):.4f}")
    print(f"search time:        {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
