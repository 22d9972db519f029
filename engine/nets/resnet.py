"""ResNet-18 from torchvision, with the CIFAR stem option.

For 32×32 inputs the ImageNet stem (7×7 stride-2 conv + max-pool) throws away
most of the resolution, so the CIFAR variant (SimCLR appendix B.9) uses a 3×3
stride-1 conv and no max-pool.
"""
from __future__ import annotations

import torch
from torch import nn


class ResNet18(nn.Module):
    def __init__(self, in_channels: int = 3, cifar_stem: bool = True):
        super().__init__()
        # torchvision is imported only when a ResNet is built: importing it pulls in
        # torch._dynamo (seconds), which every other method and the app's start-up can skip.
        from torchvision.models import resnet18 as tv_resnet18
        net = tv_resnet18(weights=None)
        if cifar_stem:
            net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        self.net = net
        self.dim = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def resnet18(in_channels: int = 3, cifar_stem: bool = True) -> ResNet18:
    return ResNet18(in_channels, cifar_stem)
