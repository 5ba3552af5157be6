"""Analysis architectures: parameter counts, dense MAC totals and input-shape errors."""

from __future__ import annotations

import pytest
import torch

from swatlib.costmodel import layer_table, total_macs
from swatlib.models import ARCHITECTURES, arch_names, build_model, get_arch

# Exact parameter counts of the reference implementations: torchvision (resnet50,
# wide_resnet50_2) and the common CIFAR variants (ResNet-18 and DenseNet-121 as in
# kuangliu/pytorch-cifar, VGG-16 with BatchNorm and a single 512→10 classifier — 14.7 M, not
# the 15 M of a variant with a hidden classifier layer — and WRN-16-8 of Zagoruyko & Komodakis).
PARAMS = {
    "resnet18": 11_173_962,
    "vgg16": 14_728_266,
    "wrn16_8": 10_961_370,
    "densenet121": 6_956_298,
    "resnet50": 25_557_032,
    "wrn50_2": 68_883_240,
}

# Dense forward GMACs per example quoted in the literature (conv + linear).
GMACS = {"resnet18": 0.56, "resnet50": 4.1, "wrn50_2": 11.4, "vgg16": 0.313,
         "wrn16_8": 1.55, "densenet121": 0.89}


def test_registry_names_and_shapes():
    assert arch_names() == list(PARAMS)
    for name in ("resnet18", "vgg16", "wrn16_8", "densenet121"):
        assert get_arch(name).input_shape == (3, 32, 32) and get_arch(name).num_classes == 10
    for name in ("resnet50", "wrn50_2"):
        assert get_arch(name).input_shape == (3, 224, 224)
        assert get_arch(name).num_classes == 1000


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_count(name):
    model = build_model(name)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    assert model.input_shape == ARCHITECTURES[name].input_shape


@pytest.mark.parametrize("name", list(GMACS))
def test_dense_macs_match_literature(name):
    table = layer_table(build_model(name))
    assert total_macs(table) / 1e9 == pytest.approx(GMACS[name], rel=0.015)
    assert sum(row.params for row in table) == PARAMS[name]


def test_vgg16_macs_by_hand():
    # 3×3 convolutions at 32, 16, 8, 4, 2 pixels, then the 512→10 classifier.
    stages = [(32, [(3, 64), (64, 64)]), (16, [(64, 128), (128, 128)]),
              (8, [(128, 256), (256, 256), (256, 256)]), (4, [(256, 512), (512, 512), (512, 512)]),
              (2, [(512, 512)] * 3)]
    expected = sum(s * s * cout * cin * 9 for s, convs in stages for cin, cout in convs) + 5120
    assert total_macs(layer_table(build_model("vgg16"))) == expected


def test_resnet50_table_rows():
    table = layer_table(build_model("resnet50"))
    convs = [row for row in table if row.kind == "conv"]
    assert len(convs) == 53 and [r.kind for r in table].count("linear") == 1
    first = convs[0]
    assert first.weight_shape == (64, 3, 7, 7) and first.output_shape == (64, 112, 112)
    assert first.macs == 64 * 112 * 112 * 3 * 49
    assert len({row.name for row in table}) == len(table)


def test_real_forward_gives_logits():
    model = build_model("resnet18", device="cpu")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name, shape, expected", [
    ("vgg16", (3, 64, 64), "(3, 32, 32)"),
    ("resnet50", (1, 224, 224), "(3, 224, 224)"),
    ("densenet121", (3, 2, 2), "(3, 32, 32)"),
])
def test_wrong_input_shape_names_expected(name, shape, expected):
    with pytest.raises(ValueError, match=r"cannot take input shape") as info:
        layer_table(build_model(name), shape)
    assert expected in str(info.value)


def test_unknown_architecture_lists_names():
    with pytest.raises(ValueError, match="resnet18, vgg16, wrn16_8, densenet121, resnet50, wrn50_2"):
        get_arch("alexnet")
