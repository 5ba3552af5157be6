"""Model definitions: the MLPs of the Truly Sparse experiments, the toy BERT of the dynamic-sparsity
study, and the cost model's analysis architectures with their registry."""

from .mlp import MLP, SparseMLP
from .small_cnn import SmallCNN
from .toy_bert import MaskedLM, ToyBERT
from .densenet import DenseLayer, DenseNet, Transition, densenet121
from .registry import ARCHITECTURES, ArchSpec, arch_names, build_model, get_arch
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50
from .vgg import VGG, VGG16_CONFIG, vgg16
from .wide_resnet import PreActBlock, WideResNet, wrn16_8, wrn50_2

__all__ = [
    "MLP", "SparseMLP", "SmallCNN", "MaskedLM", "ToyBERT",
    "ARCHITECTURES", "ArchSpec", "arch_names", "build_model", "get_arch",
    "BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50",
    "VGG", "VGG16_CONFIG", "vgg16",
    "PreActBlock", "WideResNet", "wrn16_8", "wrn50_2",
    "DenseLayer", "DenseNet", "Transition", "densenet121",
]
