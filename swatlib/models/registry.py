"""Name → constructor registry of the analysis architectures.

The cost model, the CLI and the notebooks refer to architectures by these names. Each entry
records the constructor, the (C, H, W) example shape the variant is defined for and the number
of classes of its dataset, so that ``build_model("resnet50")`` gives the ImageNet ResNet-50 on
the ``meta`` device (shapes only, no memory) ready for :func:`swatlib.costmodel.layer_table`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from swatlib.checks import check_choice

from .densenet import densenet121
from .resnet import resnet18, resnet50
from .vgg import vgg16
from .wide_resnet import wrn16_8, wrn50_2

__all__ = ["ArchSpec", "ARCHITECTURES", "arch_names", "get_arch", "build_model"]


@dataclass(frozen=True)
class ArchSpec:
    """An analysis architecture.

    Attributes
    ----------
    name : str
        Registry name (``"resnet50"``).
    builder : callable
        ``builder(num_classes) -> nn.Module``.
    input_shape : tuple of int
        (C, H, W) of one example.
    num_classes : int
        Classes of the dataset the variant is for.
    dataset : str
        ``"CIFAR-10"`` or ``"ImageNet"``.
    """

    name: str
    builder: Callable[[int], nn.Module]
    input_shape: tuple[int, int, int]
    num_classes: int
    dataset: str


ARCHITECTURES: dict[str, ArchSpec] = {
    spec.name: spec for spec in (
        ArchSpec("resnet18", resnet18, (3, 32, 32), 10, "CIFAR-10"),
        ArchSpec("vgg16", vgg16, (3, 32, 32), 10, "CIFAR-10"),
        ArchSpec("wrn16_8", wrn16_8, (3, 32, 32), 10, "CIFAR-10"),
        ArchSpec("densenet121", densenet121, (3, 32, 32), 10, "CIFAR-10"),
        ArchSpec("resnet50", resnet50, (3, 224, 224), 1000, "ImageNet"),
        ArchSpec("wrn50_2", wrn50_2, (3, 224, 224), 1000, "ImageNet"),
    )
}


def arch_names() -> list[str]:
    """Registered architecture names, in registry order."""
    return list(ARCHITECTURES)


def get_arch(name: str) -> ArchSpec:
    """Look up an architecture.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid names.
    """
    return ARCHITECTURES[check_choice(name, ARCHITECTURES, "architecture")]


def build_model(name: str, *, num_classes: int | None = None,
                device: str | torch.device = "meta") -> nn.Module:
    """Build a registered architecture.

    Parameters
    ----------
    name : str
        Registry name.
    num_classes : int, optional
        Classifier outputs; defaults to the dataset's.
    device : str or torch.device
        ``"meta"`` (default) allocates nothing — enough for shape and cost analysis.

    Returns
    -------
    nn.Module
        The model, with an ``input_shape`` attribute.
    """
    spec = get_arch(name)
    with torch.device(device):
        return spec.builder(spec.num_classes if num_classes is None else num_classes)
