"""Backbones and heads.

A backbone maps normalised images (B, C, H, W) to features (B, dim) and says
its ``dim``. Heads are small MLP declarations on top (see ``heads.py``).
"""
from __future__ import annotations

import torch
from torch import nn

from .cnn import SmallCNN
from .heads import mlp
from .resnet import IMAGENET_STEM_FROM, ResNet, resnet18, resnet50, stem_for
from .vit import VIT_SIZES, ViT, auto_patch_size

#: The names a method's ``backbone`` setting takes. "resnet18" and "resnet18-cifar" keep
#: the fixed stems they always had (stored runs name them and their checkpoints hold
#: those conv shapes); "resnet18-auto" and "resnet50" pick the stem by image size.
BACKBONES = ("small-cnn", "resnet18-auto", "resnet50", "resnet18", "resnet18-cifar")


def build_backbone(name: str, in_channels: int, image_size: int, width: int = 32) -> nn.Module:
    """A convolutional backbone by name; ``width`` scales the small CNN (ignored by ResNet).

    * "small-cnn": four conv blocks (any size from 8 px);
    * "resnet18-auto", "resnet50": torchvision's ResNet-18 / -50 with the stem for
      ``image_size`` (:func:`stem_for`): the CIFAR stem (3×3 stride-1 conv, no max-pool)
      below 64 px, the ImageNet stem (7×7 stride-2 conv + max-pool) from 64 px up;
    * "resnet18": ResNet-18 with the ImageNet stem at every size;
    * "resnet18-cifar": ResNet-18 with the CIFAR stem at every size.

    Weights are stored channels_last: the same convolutions, 1.4–1.5× faster on
    the CPU (oneDNN) and the layout tensor cores prefer on CUDA.
    """
    if name == "small-cnn":
        net = SmallCNN(in_channels, width=width)
    elif name == "resnet18":
        net = resnet18(in_channels, cifar_stem=False)
    elif name == "resnet18-cifar":
        net = resnet18(in_channels, cifar_stem=True)
    elif name == "resnet18-auto":
        net = resnet18(in_channels, cifar_stem=stem_for(image_size) == "cifar")
    elif name == "resnet50":
        net = resnet50(in_channels, cifar_stem=stem_for(image_size) == "cifar")
    else:
        raise ValueError(f"unknown backbone {name!r} (known: {', '.join(BACKBONES)})")
    return net.to(memory_format=torch.channels_last)


__all__ = ["BACKBONES", "build_backbone", "SmallCNN", "ResNet", "resnet18", "resnet50", "stem_for",
           "IMAGENET_STEM_FROM", "mlp", "ViT", "VIT_SIZES", "auto_patch_size"]
