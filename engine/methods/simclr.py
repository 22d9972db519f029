"""SimCLR: agree across two augmented views of the same image.

Each image gives two views; backbone f and projection head g map them to
z = g(f(x)). NT-Xent pulls the two views of an image together and pushes
them from the other 2N−2 views in the batch. The representation is f(x), the
layer before the head (Chen et al. 2020, §4.2 shows it beats z).

Under torchrun every rank gathers all ranks' projections with gradient, so the
negatives come from the global batch (8 processes × 256 images: 2 × 2,048
views) and the gradients equal one process's on that batch
(tests/test_negatives_ddp.py checks it with two CPU processes).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..augment import make_view_pair
from ..config import param
from ..collective import gather_with_grad, is_distributed, row_counts, share_of_mean, world_and_rank
from ..losses import nt_xent
from ..nets import BACKBONES, build_backbone, mlp
from .base import DataInfo, ImageMethod, MethodCard


@dataclass
class SimCLRConfig:
    backbone: str = param("small-cnn", "Encoder network", choices=BACKBONES)
    width: int = param(32, "Channels of the small CNN's first layer", min=4, max=256)
    projection_dim: int = param(128, "Output size of the projection head g", min=2, max=4096)
    hidden_dim: int = param(512, "Hidden size of the projection head", min=2, max=8192)
    temperature: float = param(0.2, "τ in NT-Xent: lower sharpens the softmax over negatives",
                               min=0.01, max=10.0)


class SimCLR(ImageMethod):
    name = "simclr"
    Config = SimCLRConfig
    # On the CPU, batch 128 (twice the steps of the loop's 256) did no harm and a little good,
    # 6–8 epochs, small CNN, kNN / linear: CIFAR-10 subset 0.441 / 0.526 → 0.448 / 0.531 (64:
    # 0.447 / 0.543; lr 4e-3 or τ 0.1 within a point of these); MNIST (8,000) 0.848 → 0.859 kNN.
    # SimCLR's steps are compute-bound on a CPU: its accuracy follows the epochs it gets.
    train_defaults = {"batch_size": 128}
    gpu_defaults = {"backbone": "resnet18-auto", "batch_size": 512, "epochs": 100, "lr": 1e-3}
    card = MethodCard(
        title="SimCLR", family="siamese",
        learns="Features that are the same for two augmentations of one image and different "
               "from other images: invariance to the chosen augmentations.",
        loss="l(i,j) = −log exp(sim(z_i,z_j)/τ) / Σ_{k≠i} exp(sim(z_i,z_k)/τ),  "
             "L = 1/2N Σ_k [l(2k−1,2k) + l(2k,2k−1)]",
        paper="Chen, Kornblith, Norouzi & Hinton, A simple framework for contrastive learning "
              "of visual representations, ICML 2020",
        url="https://arxiv.org/abs/2002.05709")

    def __init__(self, cfg: SimCLRConfig, info: DataInfo):
        super().__init__(cfg, info)
        self.backbone = build_backbone(cfg.backbone, info.channels, info.height, cfg.width)
        self.head = mlp(self.backbone.dim, cfg.hidden_dim, cfg.projection_dim, layers=2)

    def embed(self, x):
        return self.backbone(x)

    def training_step(self, x, views, generator, index=None):
        v1, v2 = make_view_pair(x, views, generator)
        z1, z2 = self.head(self.backbone(v1)), self.head(self.backbone(v2))
        if not is_distributed():
            return nt_xent(z1, z2, self.cfg.temperature), {"z": z1.detach()}
        # This rank's anchors against every rank's views: the mean over the ranks of
        # these losses is the global batch's loss, whose gradient DDP's average gives.
        n = z1.shape[0]
        sizes = row_counts(n, z1.device)
        both = gather_with_grad(torch.cat([z1, z2], dim=1), sizes)
        offset = sum(sizes[:world_and_rank()[1]])
        loss = nt_xent(z1, z2, self.cfg.temperature, everyone=both.chunk(2, dim=1), offset=offset)
        return loss * share_of_mean(n, sizes), {"z": z1.detach()}
