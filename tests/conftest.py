"""Shared test settings.

One torch thread: the tests train tiny networks, where a second thread adds
synchronisation cost, and CI machines (2 cores) run pytest beside other work.
The thread count changes CPU float sums, so results do depend on it: tests
that compare fits made in different places set it themselves.
"""

import os

os.environ.setdefault("RESBUILDER_SMOKE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    """sklearn's 8x8 digits, flat: ``X_train, X_test, y_train, y_test`` (stratified 75/25)."""
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


@pytest.fixture(scope="session")
def fitted_with_block():
    """A tiny fitted classifier whose network keeps a residual block (digits,
    ``image_shape=(8, 8)``): what export and persistence tests take apart.
    Shared, so tests copy it before changing anything."""
    from sklearn_resbuilder import Architecture, ResBuilderClassifier

    X, y = load_digits(return_X_y=True)
    Xtr, _, ytr, _ = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    start = Architecture.minimal((1, 8, 8), 10).insert_block(1, 0)
    # lasso_threshold=0: greedy out never deletes, so the block survives.
    clf = ResBuilderClassifier(flop_budget=4e5, start=start, n_insertions=1, n_morph_steps=1,
                               lasso_threshold=0.0, max_epochs=1, augment=False,
                               image_shape=(8, 8), device="cpu", random_state=0)
    clf.fit(Xtr, ytr)
    assert clf.best_architecture_.n_blocks >= 1
    return clf
