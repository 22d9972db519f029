"""Denoising autoencoder: redraw the clean image from a corrupted one.

Same networks as the autoencoder; the encoder sees x̃ = corrupt(x) and the
loss still compares with the clean x, so the code must capture structure that
survives the noise rather than copy pixels (Vincent et al. 2008). Two kinds
of corruption: additive Gaussian noise and masking noise (random patches set
to zero).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..augment import mask_image_patches
from ..config import param
from ..nets import BACKBONES
from .autoencoder import Autoencoder
from .base import MethodCard, Reconstruction, Slider


@dataclass
class DenoisingAutoencoderConfig:
    backbone: str = param("small-cnn", "Encoder network", choices=BACKBONES)
    width: int = param(32, "Channels of the small CNN's first layer", min=4, max=256)
    bottleneck: int = param(64, "Size of the code between encoder and decoder", min=1, max=4096)
    noise: str = param("gaussian", "Corruption: additive Gaussian noise or masking of random patches",
                       choices=("gaussian", "masking"))
    level: float = param(0.5, "Noise std (in normalised units) or fraction of patches masked",
                         min=0.0, max=0.95)
    patch: int = param(4, "Patch side in pixels for masking noise", min=1, max=32)


class DenoisingAutoencoder(Autoencoder):
    name = "denoising-autoencoder"
    Config = DenoisingAutoencoderConfig
    reconstructs = Reconstruction(input_title="corrupted input", redraws="noise",
                                  slider=Slider("level", "Noise level", 0.0, 0.95, 0.5))
    card = MethodCard(
        title="Denoising autoencoder", family="bottleneck",
        learns="A code robust to corruption: structure that lets the network undo the noise.",
        loss="min_{f,g} Σ_i ||x_i − g(f(x̃_i))||²,  x̃ ~ q(x̃ | x)",
        paper="Vincent, Larochelle, Bengio & Manzagol, Extracting and composing robust features "
              "with denoising autoencoders, ICML 2008")

    @classmethod
    def reconstruction_slider(cls, method_config: dict) -> Slider:
        # The same setting is a masked fraction when the noise is masking.
        slider = cls.reconstructs.slider
        return replace(slider, label="Masked fraction") if method_config.get("noise") == "masking" else slider

    def corrupt(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.cfg.level == 0:
            return x
        if self.cfg.noise == "gaussian":
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            return x + self.cfg.level * noise
        masked, _ = mask_image_patches(x, self.cfg.patch, self.cfg.level, generator)
        return masked
