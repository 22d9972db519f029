"""Backbones and heads.

A backbone maps normalised images (B, C, H, W) to features (B, dim) and says
its ``dim``. Heads are small MLP declarations on top (see ``heads.py``).
"""
from __future__ import annotations

import torch
from torch import nn

from .cnn import SmallCNN
from .heads import mlp
from .resnet import resnet18
from .vit import VIT_SIZES, ViT, auto_patch_size

BACKBONES = ("small-cnn", "resnet18", "resnet18-cifar")


def build_backbone(name: str, in_channels: int, image_size: int, width: int = 32) -> nn.Module:
    """A convolutional backbone by name; ``width`` scales the small CNN (ignored by ResNet).

    Weights are stored channels_last: the same convolutions, 1.4–1.5× faster on
    the CPU (oneDNN) and the layout tensor cores prefer on CUDA.
    """
    if name == "small-cnn":
        net = SmallCNN(in_channels, width=width)
    elif name == "resnet18":
        net = resnet18(in_channels, cifar_stem=False)
    elif name == "resnet18-cifar":
        net = resnet18(in_channels, cifar_stem=True)
    else:
        raise ValueError(f"unknown backbone {name!r} (known: {', '.join(BACKBONES)})")
    return net.to(memory_format=torch.channels_last)


__all__ = ["BACKBONES", "build_backbone", "SmallCNN", "resnet18", "mlp", "ViT", "VIT_SIZES", "auto_patch_size"]
