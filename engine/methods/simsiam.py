"""SimSiam: a Siamese network with a stop-gradient and nothing else.

Encoder f (backbone + projection MLP) maps both views to z; a predictor MLP h
maps one view's z to p, trained to match the other view's z, which is treated
as a constant (stop-gradient). No negatives, no momentum encoder: the
stop-gradient alone prevents collapse (Chen & He 2021). The representation is
the backbone's output.

The two views go through the network in separate forward passes, as in the
paper's pseudocode (``z1, z2 = f(x1), f(x2)``), so BatchNorm normalises one
view's batch at a time.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..augment import make_view_pair
from ..config import param
from ..losses import simsiam_loss
from ..nets import BACKBONES, build_backbone, mlp
from .base import DataInfo, ImageMethod, MethodCard, decay_groups


@dataclass
class SimSiamConfig:
    backbone: str = param("small-cnn", "Encoder network", choices=BACKBONES)
    width: int = param(32, "Channels of the small CNN's first layer", min=4, max=256)
    dim: int = param(512, "Width of the projection MLP and of z, p (2048 in the paper)", min=2, max=16384)
    pred_dim: int = param(128, "Bottleneck of the predictor MLP (512 in the paper: a quarter of dim)",
                          min=2, max=16384)
    projector_layers: int = param(3, "Layers of the projection MLP (3 on ImageNet, 2 on CIFAR in the paper)",
                                  choices=(2, 3))


class SimSiam(ImageMethod):
    name = "simsiam"
    Config = SimSiamConfig
    # The paper's CIFAR-10 recipe (appendix D): ResNet-18, 2-layer projector of 2048, predictor
    # bottleneck 512, SGD lr 0.03·batch/256 with weight decay 5e-4, batch 512, 800 epochs
    # (200 here). The predictor's learning rate stays fixed at the peak (param_groups).
    gpu_defaults = {"backbone": "resnet18-auto", "batch_size": 512, "epochs": 200, "optimizer": "sgd",
                    "lr": 0.06, "weight_decay": 5e-4, "dim": 2048, "pred_dim": 512, "projector_layers": 2}
    card = MethodCard(
        title="SimSiam", family="siamese",
        learns="Features from which one view of an image predicts the other view's features, "
               "with a stop-gradient that keeps them from collapsing to a constant.",
        loss="D(p, z) = −(p/‖p‖₂)·(z/‖z‖₂),  L = ½ D(p₁, stopgrad(z₂)) + ½ D(p₂, stopgrad(z₁))",
        paper="Chen & He, Exploring simple Siamese representation learning, CVPR 2021",
        url="https://arxiv.org/abs/2011.10566")

    def __init__(self, cfg: SimSiamConfig, info: DataInfo):
        super().__init__(cfg, info)
        self.backbone = build_backbone(cfg.backbone, info.channels, info.height, cfg.width)
        # Projection MLP: BN on every fc layer including the output, no ReLU on the output.
        self.projector = mlp(self.backbone.dim, cfg.dim, cfg.dim, layers=cfg.projector_layers, last_bn=True)
        # Prediction MLP: bottleneck fc → BN → ReLU → fc (no BN on its output).
        self.predictor = mlp(cfg.dim, cfg.pred_dim, cfg.dim, layers=2)

    def embed(self, x):
        return self.backbone(x)

    def param_groups(self, train_config):
        # "Fix lr for the predictor" (Chen & He 2021, section 4.4 and the code's --fix-pred-lr):
        # the predictor keeps the peak lr while the rest follows the schedule; the paper found
        # this better than decaying it, since the predictor should keep adapting to the latest
        # representations. No warm-up either: a fixed group is never touched by the schedule.
        pred = {id(p) for p in self.predictor.parameters()}
        rest = [(n, p) for n, p in self.named_parameters() if id(p) not in pred]
        return (decay_groups(rest, train_config.weight_decay)
                + decay_groups(self.predictor.named_parameters(prefix="predictor"), train_config.weight_decay,
                               fixed_lr=True, lr=train_config.lr))

    def training_step(self, x, views, generator, index=None):
        v1, v2 = make_view_pair(x, views, generator)
        z1 = self.projector(self.backbone(v1))
        z2 = self.projector(self.backbone(v2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = simsiam_loss(p1, p2, z1, z2)          # stop-gradient on z inside, as z.detach()
        return loss, {"z": z1.detach()}
