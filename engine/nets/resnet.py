"""ResNet-18 and ResNet-50 from torchvision, with the stem chosen for the image size.

Two stems:

* the ImageNet stem: a 7×7 stride-2 conv and a 3×3 stride-2 max-pool, a quarter of
  the resolution gone before the first block: right for 64 px and above (224 px → 56 px
  at the first block, 64 px → 16 px);
* the CIFAR stem (SimCLR appendix B.9): a 3×3 stride-1 conv and no max-pool. On 32×32
  inputs the ImageNet stem would leave 8×8 at the first block and 1×1 at the last, so
  small images keep their resolution instead.

:func:`stem_for` says which one a size gets: the CIFAR stem below
:data:`IMAGENET_STEM_FROM` (64) pixels, the ImageNet stem from there up. The network is
torchvision's own with ``fc`` replaced by the identity, so its ``net`` state dict has
torchvision's keys exactly (what :func:`engine.workbench.export_encoder` writes).
"""
from __future__ import annotations

import torch
from torch import nn

#: The smallest image side (pixels) that gets the ImageNet stem; smaller ones get the CIFAR stem.
IMAGENET_STEM_FROM = 64

#: Feature width after global pooling, by depth.
RESNET_DIMS = {18: 512, 50: 2048}


def stem_for(image_size: int) -> str:
    """"imagenet" (7×7 stride-2 conv + max-pool) from 64 px up, "cifar" (3×3 stride-1, no pool) below."""
    return "imagenet" if image_size >= IMAGENET_STEM_FROM else "cifar"


class ResNet(nn.Module):
    """torchvision's ResNet-``depth`` without its classifier: images → (B, 512 or 2048)."""

    def __init__(self, depth: int = 18, in_channels: int = 3, cifar_stem: bool = True):
        super().__init__()
        if depth not in RESNET_DIMS:
            raise ValueError(f"no ResNet-{depth} (known depths: {', '.join(map(str, RESNET_DIMS))})")
        # torchvision is imported only when a ResNet is built: importing it pulls in
        # torch._dynamo (seconds), which every other method and the app's start-up can skip.
        from torchvision import models
        net = getattr(models, f"resnet{depth}")(weights=None)
        if cifar_stem:
            net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        self.net = net
        self.depth = depth
        self.in_channels = in_channels
        self.stem = "cifar" if cifar_stem else "imagenet"
        self.dim = RESNET_DIMS[depth]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def resnet18(in_channels: int = 3, cifar_stem: bool = True) -> ResNet:
    return ResNet(18, in_channels, cifar_stem)


def resnet50(in_channels: int = 3, cifar_stem: bool = True) -> ResNet:
    return ResNet(50, in_channels, cifar_stem)
