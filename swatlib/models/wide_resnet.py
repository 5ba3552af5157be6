"""Wide residual networks: WRN-16-8 for CIFAR and WRN-50-2 for ImageNet.

* ``wrn16_8`` follows Zagoruyko & Komodakis (2016): a 3×3 stem with 16 channels, then three
  groups of ``(depth - 4) / 6 = 2`` *pre-activation* blocks (BN-ReLU-conv3×3-BN-ReLU-conv3×3)
  of width 16·k, 32·k, 64·k with k = 8, a final BN-ReLU, global average pooling and a linear
  classifier. No dropout. 10.96 M parameters and 1.55 GMACs per 3×32×32 example.
* ``wrn50_2`` is torchvision's ``wide_resnet50_2``: ResNet-50 with every bottleneck's inner
  width doubled. 68.88 M parameters and 11.4 GMACs per 3×224×224 example.
"""

from __future__ import annotations

import torch
from torch import nn

from .resnet import Bottleneck, ResNet

__all__ = ["PreActBlock", "WideResNet", "wrn16_8", "wrn50_2"]


class PreActBlock(nn.Module):
    """Pre-activation residual block of a WRN (BN-ReLU before each 3×3 convolution).

    When the shape changes, the 1×1 projection shortcut takes the pre-activated input
    (as in the authors' code); otherwise the shortcut is the raw input.

    Parameters
    ----------
    in_planes, planes : int
        Input and output channels.
    stride : int
        Stride of the first convolution and of the projection.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.projection = (None if stride == 1 and in_planes == planes
                           else nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(pre))))
        shortcut = x if self.projection is None else self.projection(pre)
        return out + shortcut


class WideResNet(nn.Module):
    """CIFAR wide residual network WRN-depth-k.

    Parameters
    ----------
    depth : int
        Total depth; ``(depth - 4)`` must be divisible by 6.
    widen_factor : int
        Width multiplier k of the three groups (16k, 32k, 64k channels).
    num_classes : int
        Outputs of the classifier.

    Attributes
    ----------
    input_shape : tuple of int
        (3, 32, 32).
    """

    input_shape = (3, 32, 32)

    def __init__(self, depth: int = 16, widen_factor: int = 8, num_classes: int = 10):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        n_blocks = (depth - 4) // 6
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        in_planes = 16
        groups = []
        for i, planes in enumerate((16 * widen_factor, 32 * widen_factor, 64 * widen_factor)):
            blocks = []
            for j in range(n_blocks):
                blocks.append(PreActBlock(in_planes, planes, 2 if (i > 0 and j == 0) else 1))
                in_planes = planes
            groups.append(nn.Sequential(*blocks))
        self.groups = nn.Sequential(*groups)
        self.bn = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn(self.groups(self.stem(x))))
        return self.fc(torch.flatten(self.pool(out), 1))


def wrn16_8(num_classes: int = 10) -> WideResNet:
    """WRN-16-8, CIFAR variant (10.96 M parameters with 10 classes)."""
    return WideResNet(16, 8, num_classes)


def wrn50_2(num_classes: int = 1000) -> ResNet:
    """WRN-50-2, ImageNet variant (68.88 M parameters with 1000 classes)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, stem="imagenet", base_width=128)
