"""BYOL: predict the target network's projection of the other view.

The online network (backbone f_θ, projector g_θ, predictor q_θ) predicts, from
one view, the projection that the target network (f_ξ, g_ξ, no predictor)
makes of the other view. The target gets no gradient; after every step it
moves towards the online weights, ξ ← τξ + (1 − τ)θ, with τ rising from
τ_base to 1 along a cosine over the run. No negatives: the predictor and the
slowly moving target keep the outputs from collapsing (Grill et al. 2020).
The representation is the online backbone's output.

The two views go through each network in separate forward passes, as in
BYOL's code, so every BatchNorm layer normalises one view's batch at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..augment import make_view_pair
from ..config import param
from ..losses import byol_loss
from ..nets import BACKBONES, build_backbone, mlp
from .base import DataInfo, ImageMethod, MethodCard
from .momentum import cosine_momentum, ema_update, frozen_copy


@dataclass
class BYOLConfig:
    backbone: str = param("small-cnn", "Encoder network", choices=BACKBONES)
    width: int = param(32, "Channels of the small CNN's first layer", min=4, max=256)
    projection_dim: int = param(128, "Output size of the projector and predictor (256 in the paper)",
                                min=2, max=4096)
    hidden_dim: int = param(512, "Hidden size of the projector and predictor MLPs (4096 in the paper)",
                            min=2, max=16384)
    tau_base: float = param(0.99, "τ_base: the target's moving-average rate at the start, rising to 1 by "
                                  "cosine (0.996 in the paper on ImageNet; 0.99 suits small data)",
                            min=0.0, max=1.0)


class BYOL(ImageMethod):
    name = "byol"
    Config = BYOLConfig
    # On the CPU: twice the steps of the loop's batch 256, at twice its lr. CIFAR-10 subset
    # (10,000 / 2,000), 8 epochs, small CNN, kNN / linear: batch 256, lr 2e-3: 0.336 / 0.449;
    # batch 128, lr 4e-3: 0.367 / 0.474 (raw pixels 0.392 / 0.290, untrained 0.313 / 0.387).
    # BYOL gains most from more steps: the target only moves as fast as the steps allow.
    train_defaults = {"batch_size": 128, "lr": 4e-3}
    # A CIFAR-10 recipe (as in lightly's and solo-learn's benchmarks): ResNet-18, BYOL's head
    # sizes, batch 512, SGD with weight decay 5e-4 (the paper uses LARS at batch 4096).
    gpu_defaults = {"backbone": "resnet18-auto", "batch_size": 512, "epochs": 200, "optimizer": "sgd",
                    "lr": 0.12, "weight_decay": 5e-4, "hidden_dim": 4096, "projection_dim": 256,
                    "tau_base": 0.99}
    card = MethodCard(
        title="BYOL", family="siamese",
        learns="Features from which one view of an image predicts a slowly moving average network's "
               "features of another view: invariance to the augmentations, without negatives.",
        loss="L = ‖q̄_θ(z_θ) − z̄′_ξ‖² = 2 − 2·⟨q_θ(z_θ), z′_ξ⟩/(‖q_θ(z_θ)‖‖z′_ξ‖),  L_BYOL = L + L̃,  "
             "ξ ← τξ + (1−τ)θ,  τ = 1 − (1−τ_base)(cos(πk/K)+1)/2",
        paper="Grill, Strub, Altché, Tallec, Richemond et al., Bootstrap your own latent: a new approach "
              "to self-supervised learning, NeurIPS 2020",
        url="https://arxiv.org/abs/2006.07733")

    def __init__(self, cfg: BYOLConfig, info: DataInfo):
        super().__init__(cfg, info)
        self.backbone = build_backbone(cfg.backbone, info.channels, info.height, cfg.width)
        # BYOL's MLPs: fc → BN → ReLU → fc, for the projector and the predictor alike.
        self.projector = mlp(self.backbone.dim, cfg.hidden_dim, cfg.projection_dim, layers=2)
        self.predictor = mlp(cfg.projection_dim, cfg.hidden_dim, cfg.projection_dim, layers=2)
        self.target_backbone = frozen_copy(self.backbone)
        self.target_projector = frozen_copy(self.projector)

    @classmethod
    def default_views(cls, views):
        # Where the data set's views blur at all (from 64 px; SimCLR's symmetric p 0.5), BYOL's
        # first view always blurs, as in the paper; at 32 px neither view blurs.
        return replace(views, blur_p=1.0) if views.blur_p > 0 else views

    @classmethod
    def views_for(cls, views):
        # BYOL's asymmetric pair (Grill et al. 2020, table 6): view 1 blurs with p 1.0 and never
        # solarizes, view 2 blurs with p 0.1 and solarizes with p 0.2. Here view 1 is the run's
        # view settings (blur p 1.0 by default from 64 px: default_views) and view 2 blurs a
        # tenth as often (1.0 → 0.1, as in the paper; no blur where the run has none, as at
        # 32 px, where blur destroys too much) and solarizes with p 0.2 (or the run's own
        # solarize probability, if that is higher).
        return views, replace(views, blur_p=0.1 * views.blur_p, solarize_p=max(views.solarize_p, 0.2))

    def embed(self, x):
        return self.backbone(x)

    def training_step(self, x, views, generator, index=None):
        first, second = self.views_for(views)
        v1, v2 = make_view_pair(x, first, generator, second=second)
        z1 = self.projector(self.backbone(v1))
        z2 = self.projector(self.backbone(v2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            t1 = self.target_projector(self.target_backbone(v1))
            t2 = self.target_projector(self.target_backbone(v2))
        loss = byol_loss(p1, p2, t1, t2)
        return loss, {"z": z1.detach()}

    def after_step(self, step, total_steps):
        tau = cosine_momentum(step, total_steps, self.cfg.tau_base)
        ema_update(self.target_backbone, self.backbone, tau)
        ema_update(self.target_projector, self.projector, tau)
