"""The two start networks of a ResBuilder search, layer by layer.

ResBuilder starts its search from one of two networks (paper Fig. 4 and §4):

- ``minimal``: one 3x3 conv, two 2x2 max-pooling layers and a dense layer on
  the flattened features, no residual blocks at all;
- ``resnet18``: ResNet18's stages of 64-128-256-512 channels x 2 blocks.

This script builds both for MNIST-shaped (1x28x28) and CIFAR-shaped (3x32x32)
inputs and prints each one's layer table (``str(arch)``: kernel, channels,
output size, FLOPs and parameters per layer), its FLOPs per image and its
parameter count, next to the paper's default FLOP budget of 1e8. It trains
nothing (``examples/quickstart.py`` runs a real search).

Run: ``.venv/bin/python examples/architectures.py``.
"""

from sklearn_resbuilder import Architecture

BUDGET = 1e8  # the paper's zeta


def main() -> None:
    for input_shape in [(1, 28, 28), (3, 32, 32)]:
        for name in ("minimal", "resnet18"):
            arch = getattr(Architecture, name)(input_shape, n_classes=10)
            net = arch.build()
            n_params = sum(p.numel() for p in net.parameters())
            print(f"=== {name} for {'x'.join(map(str, input_shape))} images ===")
            print(arch)
            print(f"FLOPs per image: {arch.flops():,} "
                  f"({100 * arch.flops() / BUDGET:.1f} % of the default budget of {BUDGET:.0e})")
            print(f"parameters:      {n_params:,}")
            print(f"summary:         {arch.summary()}")
            print()


if __name__ == "__main__":
    main()
