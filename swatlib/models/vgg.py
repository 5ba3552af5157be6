"""VGG-16 with batch normalisation, CIFAR variant (Simonyan & Zisserman 2015).

The CIFAR variant used by SWAT-style experiments: thirteen 3×3 convolutions, each followed by
BatchNorm and ReLU, five 2×2 max-pools that take 32×32 down to 1×1, and a *single* linear
classifier 512 → classes (no 4096-wide hidden layers). With 10 classes that is 14.73 M
parameters and 0.31 GMACs per 3×32×32 example. The flattened 512 features fix the input to
32×32: any other size fails at the classifier.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["VGG", "VGG16_CONFIG", "vgg16"]

#: Output channels of each 3×3 convolution; "M" is a 2×2 max-pool.
VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    """Plain convolutional network: conv-BN-ReLU stacks with max-pools, one linear classifier.

    Parameters
    ----------
    config : sequence of int or "M"
        Channels of each 3×3 convolution, ``"M"`` for a 2×2 max-pool.
    num_classes : int
        Outputs of the classifier.

    Attributes
    ----------
    input_shape : tuple of int
        (3, 32, 32), the only size whose features flatten to the classifier's 512 inputs.
    """

    input_shape = (3, 32, 32)

    def __init__(self, config: tuple[int | str, ...] = VGG16_CONFIG, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, int(item), 3, padding=1),
                           nn.BatchNorm2d(int(item)), nn.ReLU()]
                in_channels = int(item)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def vgg16(num_classes: int = 10) -> VGG:
    """VGG-16 with BatchNorm, CIFAR variant (14.73 M parameters with 10 classes)."""
    return VGG(VGG16_CONFIG, num_classes)
