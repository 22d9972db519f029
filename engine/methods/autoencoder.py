"""Autoencoder: learn a code by squeezing the image through a bottleneck.

Encoder f (the backbone and a linear map to ``bottleneck`` numbers) and
decoder g (a small transposed-conv net) minimise ||x − g(f(x))||². The code
f(x) is the representation. The denoising variant (denoising_autoencoder.py)
changes only what goes in.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import param
from ..losses import reconstruction_mse
from ..nets import BACKBONES, build_backbone
from .base import DataInfo, ImageMethod, MethodCard, Reconstruction


@dataclass
class AutoencoderConfig:
    backbone: str = param("small-cnn", "Encoder network", choices=BACKBONES)
    width: int = param(32, "Channels of the small CNN's first layer", min=4, max=256)
    bottleneck: int = param(64, "Size of the code between encoder and decoder", min=1, max=4096)


class Decoder(nn.Module):
    """Code → image: a linear map to a coarse feature map, then two upsampling convs."""

    def __init__(self, code: int, channels: int, height: int, width: int, base: int = 64):
        super().__init__()
        self.out_hw = (height, width)
        self.coarse = (max(1, (height + 3) // 4), max(1, (width + 3) // 4))
        self.base = base
        self.fc = nn.Linear(code, base * self.coarse[0] * self.coarse[1])
        self.up = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(base, base // 2, 4, stride=2, padding=1), nn.BatchNorm2d(base // 2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(base // 2, base // 4, 4, stride=2, padding=1), nn.BatchNorm2d(base // 4),
            nn.ReLU(inplace=True),
            nn.Conv2d(base // 4, channels, 3, padding=1))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        h = self.fc(code).view(-1, self.base, *self.coarse)
        out = self.up(h)
        if out.shape[-2:] != self.out_hw:
            out = F.interpolate(out, size=self.out_hw, mode="bilinear", align_corners=False)
        return out


class Autoencoder(ImageMethod):
    name = "autoencoder"
    Config = AutoencoderConfig
    uses_views = False
    gpu_defaults = {"backbone": "resnet18-auto", "batch_size": 512, "epochs": 50}
    reconstructs = Reconstruction(input_title="input", redraws="noise")
    card = MethodCard(
        title="Autoencoder", family="bottleneck",
        learns="A compact code from which the image can be redrawn: whatever explains most pixels.",
        loss="min_{f,g} Σ_i ||x_i − g(f(x_i))||²",
        paper="Hinton & Salakhutdinov, Reducing the dimensionality of data with neural networks, Science 2006")

    def __init__(self, cfg: AutoencoderConfig, info: DataInfo):
        super().__init__(cfg, info)
        self.backbone = build_backbone(cfg.backbone, info.channels, info.height, cfg.width)
        self.to_code = nn.Linear(self.backbone.dim, cfg.bottleneck)
        self.decoder = Decoder(cfg.bottleneck, info.channels, info.height, info.width)

    def corrupt(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """What the encoder sees; the plain autoencoder sees the image itself."""
        return x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_code(self.backbone(x))

    def training_step(self, x, views, generator, index=None):
        clean = self.normalized(x)
        code = self.embed(self.corrupt(clean, generator))
        loss = reconstruction_mse(self.decoder(code), clean)
        return loss, {"z": code.detach()}

    def reconstruct(self, x, generator):
        clean = self.normalized(x)
        noisy = self.corrupt(clean, generator)
        rec = self.decoder(self.embed(noisy))
        return {"original": self.to_uint8_images(clean), "input": self.to_uint8_images(noisy),
                "reconstruction": self.to_uint8_images(rec)}
