"""The training data as tensors: the train/validation split held once, its
move to the training device, and the batches the trainer draws from it."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from .data import channel_stats, is_channels_last, take_samples


@dataclass
class TrainingData:
    """Training and validation tensors (uint8 or float32, ``(n, C, H, W)``;
    C-contiguous or ``channels_last``)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_valid: torch.Tensor
    y_valid: torch.Tensor
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_arrays(cls, X_train, y_train, X_valid, y_valid, mean=None, std=None):
        """Wrap numpy arrays (no copy for C-contiguous or channel-last input);
        stats default to the train split's."""
        if mean is None or std is None:
            mean, std = channel_stats(X_train)
        t = cls._tensor
        return cls(t(X_train), t(y_train, torch.long), t(X_valid), t(y_valid, torch.long),
                   np.asarray(mean, np.float32), np.asarray(std, np.float32))

    @staticmethod
    def _tensor(a, dtype=None) -> torch.Tensor:
        """``torch.as_tensor`` sharing ``a``'s memory when torch can: C-contiguous
        or channel-last arrays (not other strides: negative ones, say)."""
        a = np.asarray(a)
        if not (a.flags.c_contiguous or is_channels_last(a)):
            a = np.ascontiguousarray(a)
        return torch.as_tensor(a, dtype=dtype)

    @classmethod
    def from_split(cls, images, y, train_idx, valid_idx):
        """The training and validation samples of ``images``, copied once.

        Both parts are slices of one buffer (training samples first) in the
        memory layout of ``images``: a channel-last input stays channel-last
        (``channels_last`` tensors, what the network runs in), and is never
        transposed into a second copy. The channel statistics are the
        training part's.

        Parameters
        ----------
        images : ndarray of shape (n, C, H, W)
            From :func:`~sklearn_resbuilder.data.to_images`, C-contiguous or
            channel-last.
        y : ndarray of shape (n,)
            Encoded labels.
        train_idx, valid_idx : ndarray of int
            From :func:`~sklearn_resbuilder.data.validation_split`.

        Returns
        -------
        TrainingData
        """
        order = np.concatenate([train_idx, valid_idx])
        n_train = len(train_idx)
        both = take_samples(images, order)  # the one full-size copy
        mean, std = channel_stats(both[:n_train])
        # One tensor over the buffer, sliced in torch, so both parts share
        # one storage (as_tensor of each numpy slice would make two).
        X, labels = cls._tensor(both), torch.as_tensor(np.asarray(y)[order], dtype=torch.long)
        return cls(X[:n_train], labels[:n_train], X[n_train:], labels[n_train:],
                   np.asarray(mean, np.float32), np.asarray(std, np.float32))

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement()
                   for t in (self.X_train, self.y_train, self.X_valid, self.y_valid))

    def to(self, device, max_fraction: float = 0.5) -> "TrainingData":
        """The same data on ``device``, moved once (uint8 stays uint8: 4x less
        to hold and to copy than float32).

        On CUDA the data moves only when it takes at most ``max_fraction`` of
        the free GPU memory; otherwise it stays in (pinned) host memory and
        each batch is copied as it is used.
        """
        device = torch.device(device)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if self.nbytes > max_fraction * free:
                warnings.warn(
                    f"the training data ({self.nbytes / 2**20:,.0f} MiB) does not fit in "
                    f"{max_fraction:.0%} of the free GPU memory ({free / 2**20:,.0f} MiB): "
                    "it stays in host memory, and batches are copied as they are used",
                    UserWarning, stacklevel=2)
                return replace(self, X_train=self.X_train.pin_memory(),
                               X_valid=self.X_valid.pin_memory())
        if self.X_train.device == device:
            return self
        return replace(self, X_train=self.X_train.to(device), y_train=self.y_train.to(device),
                       X_valid=self.X_valid.to(device), y_valid=self.y_valid.to(device))



class TensorBatches:
    """Batches sliced straight out of a skorch ``Dataset`` holding tensors.

    skorch's default ``DataLoader`` indexes one sample at a time and collates;
    slicing whole index batches keeps the per-batch cost independent of the
    batch size. Passed to the trainer as ``iterator_train``/``iterator_valid``.

    Shuffled (training) epochs are cut into ``ceil(n / batch_size)`` batches
    of near-equal size (898 images at 128: eight of 112-113, not seven of 128
    and one of 2): a tail batch of a few samples gives a noisy step at full
    learning rate and pulls BatchNorm's running statistics toward its few
    samples (measured: docs/algorithm.md, deviation 15). Unshuffled
    (prediction) batches are plain ``batch_size`` slices.
    """

    def __init__(self, dataset, batch_size=128, shuffle=False, generator=None):
        self.X, self.y = dataset.X, dataset.y
        self.batch_size, self.shuffle, self.generator = int(batch_size), shuffle, generator

    def __len__(self):
        return math.ceil(len(self.X) / self.batch_size)

    def __iter__(self):
        n = len(self.X)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.X.device)
            for idx in torch.tensor_split(order, len(self)) if n else ():
                yb = self.y[idx] if self.y is not None else torch.zeros(len(idx))
                yield self.X[idx], yb
            return
        for start in range(0, n, self.batch_size):
            xb = self.X[start:start + self.batch_size]
            yb = (self.y[start:start + self.batch_size] if self.y is not None
                  else torch.zeros(len(xb)))
            yield xb, yb


def joined(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.cat([a, b])``, as a view when ``b`` directly follows ``a`` in one
    buffer (what :meth:`TrainingData.from_split` makes): no copy of the data."""
    follows = (a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
               and a.stride() == b.stride() and a.shape[1:] == b.shape[1:] and len(a) > 0
               and b.data_ptr() == a.data_ptr() + len(a) * a.stride(0) * a.element_size())
    if not follows:
        return torch.cat([a, b])
    return a.as_strided((len(a) + len(b),) + tuple(a.shape[1:]), a.stride(),
                        a.storage_offset())
