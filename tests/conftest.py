"""Shared test settings.

One torch thread: the tests train tiny networks, where a second thread adds
synchronisation cost, and CI machines (2 cores) run pytest beside other work;
results do not depend on the thread count.
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
