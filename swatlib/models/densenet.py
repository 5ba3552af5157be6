"""DenseNet-121 (Huang et al. 2017), CIFAR variant with growth rate 32.

Dense blocks of 6, 12, 24 and 16 bottleneck layers (BN-ReLU-conv1×1 to 4·growth channels,
BN-ReLU-conv3×3 to ``growth`` channels, output concatenated to the input), transitions that
halve the channels (compression 0.5) with BN-ReLU-conv1×1 and a 2×2 average pool, a 3×3 stem
with 2·growth = 64 channels and stride 1 (no stem pooling, for 32×32 inputs), and a final
BN-ReLU, global average pool and linear classifier. 6.96 M parameters and 0.90 GMACs per
3×32×32 example with 10 classes.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DenseLayer", "Transition", "DenseNet", "densenet121"]


class DenseLayer(nn.Module):
    """Bottleneck layer of a dense block; returns ``cat([new_features, x])``.

    Parameters
    ----------
    in_planes : int
        Channels of the concatenated input.
    growth : int
        Channels added by this layer.
    """

    def __init__(self, in_planes: int, growth: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu1(self.bn1(x)))
        out = self.conv2(self.relu2(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    """BN-ReLU-conv1×1 to ``out_planes`` channels, then a 2×2 average pool."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(self.relu(self.bn(x))))


class DenseNet(nn.Module):
    """CIFAR DenseNet with bottleneck layers and compression.

    Parameters
    ----------
    blocks : sequence of int
        Layers per dense block.
    growth : int
        Growth rate k (channels added per layer).
    compression : float
        Fraction of channels a transition keeps.
    num_classes : int
        Outputs of the classifier.

    Attributes
    ----------
    input_shape : tuple of int
        (3, 32, 32).
    """

    input_shape = (3, 32, 32)

    def __init__(self, blocks: tuple[int, ...] = (6, 12, 24, 16), growth: int = 32,
                 compression: float = 0.5, num_classes: int = 10):
        super().__init__()
        planes = 2 * growth
        self.stem = nn.Conv2d(3, planes, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i, n_layers in enumerate(blocks):
            for _ in range(n_layers):
                stages.append(DenseLayer(planes, growth))
                planes += growth
            if i < len(blocks) - 1:
                out_planes = int(planes * compression)
                stages.append(Transition(planes, out_planes))
                planes = out_planes
        self.features = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn(self.features(self.stem(x))))
        return self.fc(torch.flatten(self.pool(out), 1))


def densenet121(num_classes: int = 10) -> DenseNet:
    """DenseNet-121, CIFAR variant with growth 32 (6.96 M parameters with 10 classes)."""
    return DenseNet((6, 12, 24, 16), 32, 0.5, num_classes)
