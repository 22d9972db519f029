"""PCA: the linear information-bottleneck baseline.

The k principal directions of the centred pixels are the linear encoder whose
reconstruction error ||x − W Wᵀ x||² is smallest; every learned method should
beat it. Closed form (an SVD), so the loop calls ``fit`` once instead of steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import param
from .base import DataInfo, ImageMethod, MethodCard, Reconstruction


@dataclass
class PCAConfig:
    dim: int = param(64, "Number of principal components kept (the embedding size)", min=1, max=4096)


class PCA(ImageMethod):
    name = "pca"
    Config = PCAConfig
    iterative = False
    uses_views = False
    train_defaults = {"epochs": 1}
    reconstructs = Reconstruction(input_title="input", redraws="noise")     # its projection, redrawn
    card = MethodCard(
        title="PCA (linear baseline)", family="bottleneck",
        learns="The directions of largest pixel variance: the best linear code of its size.",
        loss="min_W Σ_i ||x_i − W Wᵀ x_i||²  with  Wᵀ W = I",
        paper="Pearson 1901; Hotelling 1933")

    def __init__(self, cfg: PCAConfig, info: DataInfo):
        super().__init__(cfg, info)
        d_in = info.channels * info.height * info.width
        k = min(cfg.dim, d_in)
        self.register_buffer("mean", torch.zeros(d_in))
        self.register_buffer("components", torch.zeros(k, d_in))
        self.register_buffer("explained", torch.zeros(k))

    def fit(self, x: torch.Tensor) -> dict:
        flat = x.flatten(1).float()
        mean = flat.mean(0)
        k = self.components.shape[0]
        # Randomised low-rank SVD: exact enough for the top components, fast for wide data.
        q = min(k + 10, *flat.shape)
        u, s, v = torch.svd_lowrank(flat - mean, q=q, niter=4)
        k = min(k, v.shape[1])
        self.mean.copy_(mean)
        self.components.zero_()
        self.components[:k] = v[:, :k].t()
        var = s ** 2 / max(1, flat.shape[0] - 1)
        total = (flat - mean).pow(2).sum(0).sum() / max(1, flat.shape[0] - 1)
        self.explained.zero_()
        self.explained[:k] = var[:k] / total.clamp_min(1e-12)
        return {"explained_variance": float(self.explained.sum())}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1).float() - self.mean) @ self.components.t()

    def reconstruct(self, x, generator):
        xn = self.normalized(x)
        rec = (self.embed(xn) @ self.components + self.mean).view_as(xn)
        return {"original": self.to_uint8_images(xn), "input": self.to_uint8_images(xn),
                "reconstruction": self.to_uint8_images(rec)}
