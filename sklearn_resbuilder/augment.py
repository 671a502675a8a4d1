"""Data augmentation of training batches, on their device, and the check that
decides ``augment="auto"`` (do mirrored images keep their class?)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn
from torchvision.transforms import v2

from .inference import valid_logits

if TYPE_CHECKING:
    from .training_data import TrainingData


class BatchAugment(v2.Transform):
    """Per-sample random shift and horizontal flip of an image batch, on its device.

    torchvision's own ``RandomAffine``/``RandomHorizontalFlip`` draw one set of
    parameters per call, i.e. the same shift for a whole batch; this transform
    draws one per image and applies all of them with two ``gather`` calls (no
    Python loop over images). Shifts are whole pixels, up to ``shift`` of the
    image size (10 % of 28 px: 3 px); borders repeat the edge pixel (Keras'
    "nearest" fill, as the paper used).

    Parameters
    ----------
    shift : float
        Maximum shift as a fraction of height/width (paper: 0.1). 0 disables.
    flip : bool
        Random horizontal flips with probability 0.5.
    generator : torch.Generator, optional
        On the batch's device; makes the augmentation reproducible.
    """

    def __init__(self, shift: float = 0.1, flip: bool = True, generator=None):
        super().__init__()
        self.shift, self.flip, self.generator = float(shift), bool(flip), generator

    def _offsets(self, n, size, device):
        m = int(round(self.shift * size))
        if m == 0:
            return torch.zeros(n, dtype=torch.long, device=device)
        return torch.randint(-m, m + 1, (n,), generator=self.generator, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        if x.ndim != 4 or not (self.shift or self.flip):
            return x
        n, c, h, w = x.shape
        dev = x.device
        # Source row/column of every output pixel; clamping repeats the edge.
        rows = (torch.arange(h, device=dev) + self._offsets(n, h, dev)[:, None]).clamp_(0, h - 1)
        cols = (torch.arange(w, device=dev) + self._offsets(n, w, dev)[:, None]).clamp_(0, w - 1)
        if self.flip:
            flip = torch.rand(n, device=dev, generator=self.generator) < 0.5
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        x = x.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w))
        return x.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def make_augment(augment, device, seed=None):
    """The batch transform for ``augment`` = True (shift + flip), "shift", "flip" or False.

    "auto" is decided by the search (:func:`flip_invariant`); until then it
    means "shift"."""
    if augment is False or augment is None:
        return None
    if augment is True:
        shift, flip = 0.1, True
    elif augment in ("shift", "auto"):
        shift, flip = 0.1, False
    elif augment == "flip":
        shift, flip = 0.0, True
    else:
        raise ValueError(f"augment must be True, False, 'auto', 'shift' or 'flip', got {augment!r}")
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
    return BatchAugment(shift, flip, gen)


@torch.no_grad()
def flip_invariant(module: nn.Module, data: "TrainingData", device="cpu") -> dict:
    """Does ``module`` (trained without flips) classify mirrored validation images
    as well as the originals? Decides ``augment="auto"``.

    Flips are chosen when the network has learned something (accuracy four
    standard errors above the majority class) and the accuracy on
    horizontally flipped images is at least the accuracy on the originals
    minus two paired standard errors:
    mirrored digits or letters lose far more (measured: digits 0.95 -> 0.4),
    mirror-symmetric classes nothing.

    Returns
    -------
    dict
        ``{"flip": bool, "accuracy": float, "flipped_accuracy": float}``.
    """
    y = data.y_valid.to(device)
    a = (valid_logits(module, data, device).argmax(1) == y).float()
    b = (valid_logits(module, data, device, mirror=True).argmax(1) == y).float()
    d = a - b
    se = float(d.std()) / math.sqrt(len(d)) if len(d) > 1 else 0.0
    # A network no better than the majority class cannot tell: no flips (they
    # cost 5-8 points where they are wrong, shifts alone rarely cost any).
    chance = float(torch.bincount(data.y_valid).max()) / len(data.y_valid)
    learned = float(a.mean()) - chance > 4 * math.sqrt(chance * (1 - chance) / len(a))
    return {"flip": bool(learned and float(d.mean()) <= 2 * se), "accuracy": float(a.mean()),
            "flipped_accuracy": float(b.mean())}
