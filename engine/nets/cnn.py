"""The small CNN: the CPU default, a few hundred thousand parameters.

Four 3×3 conv blocks (conv, batch norm, ReLU), down-sampling by stride 2 after
the first, then global average pooling. It works from 8×8 (digits) to 64×64
inputs because nothing depends on the input size.
"""
from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    def __init__(self, in_channels: int = 3, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(in_channels, w, 1), _block(w, 2 * w, 2),
            _block(2 * w, 4 * w, 2), _block(4 * w, 8 * w, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dim = 8 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
