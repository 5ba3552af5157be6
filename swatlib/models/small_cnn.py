"""A small VGG-style CNN for 28×28 grey-scale images (Fashion-MNIST), the SWAT notebooks' network.

The paper's sensitivity study uses large CIFAR-100 networks; on two CPU cores we need a network
that trains in seconds yet has the ingredients SWAT acts on: several conv layers, BatchNorm,
ReLU, pooling, and a linear classifier. Three stages of two 3×3 convs each (``width``,
``2·width``, ``4·width`` channels), each followed by BatchNorm and ReLU, max-pooling between
stages, global average pooling and one linear layer. ``width=32`` gives about 290 k parameters;
``batchnorm=False`` gives the variant whose saved activations SWAT can shrink the most.
"""

from __future__ import annotations

import torch
from torch import nn

from swatlib.checks import check_int


class SmallCNN(nn.Module):
    """VGG-style CNN: 3 stages × 2 convs, global average pooling, linear classifier.

    Parameters
    ----------
    in_channels, num_classes
        Image channels (1 for Fashion-MNIST) and classes.
    width
        Channels of the first stage; later stages have 2× and 4×.
    batchnorm
        Put BatchNorm after every conv (default), or not.
    """

    input_shape = (1, 28, 28)

    def __init__(self, in_channels: int = 1, num_classes: int = 10, *, width: int = 32,
                 batchnorm: bool = True) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("width", width)):
            check_int(value, name)
        layers: list[nn.Module] = []
        channels = in_channels
        for stage, out in enumerate((width, 2 * width, 4 * width)):
            if stage > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(2):
                layers.append(nn.Conv2d(channels, out, 3, padding=1, bias=not batchnorm))
                if batchnorm:
                    layers.append(nn.BatchNorm2d(out))
                layers.append(nn.ReLU())
                channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.features[0].in_channels:
            raise ValueError(f"SmallCNN expects input of shape (N, {self.features[0].in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))
