"""Residual networks (He et al. 2016) for the cost model and for training.

Two variants are built from one :class:`ResNet` class:

* ``resnet18`` — the CIFAR variant (3×3 stem with stride 1, no max-pool, four stages of
  :class:`BasicBlock`), as used by the SWAT CIFAR experiments: 11.17 M parameters and
  0.56 GMACs per 3×32×32 example.
* ``resnet50`` — the ImageNet variant (7×7/2 stem and 3×3/2 max-pool, :class:`Bottleneck`
  blocks with the stride on the 3×3 convolution, i.e. torchvision's "v1.5"): 25.56 M
  parameters and 4.09 GMACs per 3×224×224 example.

The wide ImageNet variant ``wrn50_2`` reuses :class:`ResNet` with a wider bottleneck and lives
in :mod:`swatlib.models.wide_resnet`. Every ReLU is its own ``nn.Module`` (never reused), so
forward hooks see each activation once. Weights keep PyTorch's default initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50"]


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """1×1 projection (conv + BN) when the shape changes, identity otherwise."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (ResNet-18/34).

    Parameters
    ----------
    in_planes, planes : int
        Input and output channels.
    stride : int
        Stride of the first convolution (and of the projection shortcut).
    base_width : int
        Accepted for a uniform block signature; basic blocks cannot be widened this way.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, base_width: int = 64):
        super().__init__()
        if base_width != 64:
            raise ValueError("BasicBlock supports base_width=64 only")
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carrying the stride), 1×1 expand ×4, with a residual connection.

    Parameters
    ----------
    in_planes, planes : int
        Input channels and the block's nominal width (output = ``4 * planes``).
    stride : int
        Stride of the 3×3 convolution and of the projection shortcut.
    base_width : int
        64 for ResNet-50; 128 doubles the inner width (WRN-50-2).
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, base_width: int = 64):
        super().__init__()
        width = planes * base_width // 64
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(width, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride)
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + self.shortcut(x))


class ResNet(nn.Module):
    """A residual network with a CIFAR or an ImageNet stem.

    Parameters
    ----------
    block : type
        :class:`BasicBlock` or :class:`Bottleneck`.
    blocks_per_stage : sequence of int
        Number of blocks in each of the four stages (widths 64, 128, 256, 512).
    num_classes : int
        Outputs of the final linear layer.
    stem : {"cifar", "imagenet"}
        ``"cifar"``: 3×3 stride-1 convolution, no pooling (32×32 inputs).
        ``"imagenet"``: 7×7 stride-2 convolution and 3×3 stride-2 max-pool (224×224 inputs).
    base_width : int
        Inner width of a bottleneck per 64 nominal channels (128 for the wide variant).

    Attributes
    ----------
    input_shape : tuple of int
        The (C, H, W) example shape the variant is defined for.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], blocks_per_stage: list[int],
                 num_classes: int, stem: str, base_width: int = 64):
        super().__init__()
        if stem == "cifar":
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
            self.input_shape = (3, 32, 32)
        elif stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1))
            self.input_shape = (3, 224, 224)
        else:
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        in_planes = 64
        stages = []
        for i, n_blocks in enumerate(blocks_per_stage):
            planes = 64 * 2**i
            layers = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(block(in_planes, planes, stride, base_width))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(self.stages(self.stem(x)))
        return self.fc(torch.flatten(out, 1))


def resnet18(num_classes: int = 10) -> ResNet:
    """ResNet-18, CIFAR variant (3×32×32 inputs; 11.17 M parameters with 10 classes)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, stem="cifar")


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50, ImageNet variant (3×224×224 inputs; 25.56 M parameters with 1000 classes)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, stem="imagenet")
