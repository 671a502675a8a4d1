"""Check the spec's FLOP count against PyTorch's own counter.

For the two start nets (minimal and ResNet18) at MNIST and CIFAR shapes, and
for 1-D signals (1x40), non-square (1x28x56) and large (3x112x112, average-pooled
to 28 px by the minimal net) inputs, print
a markdown table with ``Architecture.flops()`` (the paper's formula, computed
from the spec alone) next to what ``torch.utils.flop_counter`` counts in a
forward pass of the built module, their ratio, and the parameter count.

Exits with status 1 if any ratio differs from 1 (or the parameter count differs
from the module's). Run: ``.venv/bin/python benchmarks/flops_check.py``.
"""

from __future__ import annotations

import sys

import torch

from sklearn_resbuilder import Architecture
from sklearn_resbuilder.flops import torch_flops

PRESETS = ("minimal", "resnet18")
SHAPES = ((1, 28, 28), (3, 32, 32), (1, 1, 40), (1, 28, 56), (3, 112, 112))


def main() -> int:
    torch.manual_seed(0)
    rows, ok = [], True
    for preset in PRESETS:
        for shape in SHAPES:
            arch = getattr(Architecture, preset)(shape, 10)
            module = arch.build()
            ours, theirs = arch.flops(), torch_flops(module, shape)
            params = sum(p.numel() for p in module.parameters())
            ok &= ours == theirs and params == arch.n_params()
            rows.append((preset, "x".join(map(str, shape)), f"{ours:,}", f"{theirs:,}",
                         f"{ours / theirs:.3f}", f"{arch.n_params():,}"))
    header = ("preset", "input (C x H x W)", "our FLOPs", "torch counter FLOPs", "ratio", "params")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if not ok:
        print("\nMISMATCH: the spec's count differs from torch's", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
