"""Running a trained network on images: batch preparation (scale, standardise),
logits in eval mode, and the channels-last copy prediction runs fastest."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from skorch.utils import to_tensor
from torch import nn

from .data import UINT8_SCALE

if TYPE_CHECKING:
    from .training_data import TrainingData

#: Images per forward pass when predicting (eval mode: no activations kept
#: for backward, so batches far larger than training's fit in memory).
PREDICT_BATCH_SIZE = 1024


def prepare_batch(x, mean=None, std=None, device="cpu") -> torch.Tensor:
    """A batch as the network sees it: on ``device``, float32, uint8 scaled to
    [0, 1], then standardised per channel with ``mean``/``std`` (shape (C,))."""
    x = to_tensor(x, device=device)
    if x.dtype == torch.uint8:
        x = x.float().div_(UINT8_SCALE)
    elif x.dtype != torch.float32:
        x = x.float()
    if mean is not None:
        shape = (1, x.shape[1], 1, 1)
        x = (x - torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)) \
            / torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return x


@torch.no_grad()
def predict_logits(module: nn.Module, X, mean, std, device="cpu", *, batch_size: int = PREDICT_BATCH_SIZE,
                   mirror: bool = False) -> torch.Tensor:
    """``module``'s float logits on the images ``X`` (uint8 or float, (n, C, H, W)),
    in eval mode and channels-last batches of ``batch_size`` (``mirror``:
    flipped left-right). Train mode is restored; the logits stay on ``device``."""
    was = module.training
    module.eval()
    out = []
    for i in range(0, len(X), batch_size):
        xb = prepare_batch(X[i:i + batch_size], mean, std, device)
        if mirror:
            xb = xb.flip(-1)
        # Channels-last: oneDNN's (and cuDNN's) faster layout for these convs.
        out.append(module(xb.contiguous(memory_format=torch.channels_last)).float())
    module.train(was)
    return torch.cat(out)


def bf16_autocast(device, enabled: bool = True):
    """``torch.autocast`` to bfloat16 on ``device``'s kind: what
    ``mixed_precision`` trains under (the trainer and :func:`step_seconds`)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


def inference_copy(module: nn.Module, device="cpu") -> nn.Module:
    """An eval-mode copy of ``module`` on ``device``, weights in channels-last.

    What :func:`predict_logits` runs fastest: with plain (NCHW) weights
    oneDNN reorders them on every call, and eval-mode passes ran 1.5-2x
    slower (MNIST, 2 threads: the demo's net 3,630 against 7,265 img/s,
    docs/benchmarks.md). A copy, so a fitted estimator's own weights stay
    plain (what save and export expect) and concurrent predictions never
    move them.
    """
    return copy.deepcopy(module).to(device=device, memory_format=torch.channels_last).eval()


def valid_logits(module: nn.Module, data: "TrainingData", device="cpu", *,
                 mirror: bool = False) -> torch.Tensor:
    """:func:`predict_logits` on ``data``'s validation images."""
    return predict_logits(module, data.X_valid, data.mean, data.std, device, mirror=mirror)
