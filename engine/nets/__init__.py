"""Backbones and heads.

A backbone maps normalised images (B, C, H, W) to features (B, dim) and says
its ``dim``. Heads are small MLP declarations on top (see ``heads.py``).
"""
from __future__ import annotations

from torch import nn

from .cnn import SmallCNN
from .heads import mlp
from .resnet import resnet18

BACKBONES = ("small-cnn", "resnet18", "resnet18-cifar")


def build_backbone(name: str, in_channels: int, image_size: int, width: int = 32) -> nn.Module:
    """A backbone by name; ``width`` scales the small CNN (ignored by ResNet)."""
    if name == "small-cnn":
        return SmallCNN(in_channels, width=width)
    if name == "resnet18":
        return resnet18(in_channels, cifar_stem=False)
    if name == "resnet18-cifar":
        return resnet18(in_channels, cifar_stem=True)
    raise ValueError(f"unknown backbone {name!r} (known: {', '.join(BACKBONES)})")


__all__ = ["BACKBONES", "build_backbone", "SmallCNN", "resnet18", "mlp"]
