"""MoCo v2: contrast a query with its key and a queue of earlier keys.

The query encoder (backbone f_q + MLP head) is trained; the key encoder is an
exponential moving average of it, ξ ← mξ + (1 − m)θ, and gets no gradient, so
the keys change slowly and keys from earlier batches stay comparable. A queue
(first in, first out) keeps the last K normalised keys as negatives, so the
number of negatives is decoupled from the batch size (He et al. 2020). MoCo v2
adds SimCLR's MLP head and stronger augmentation (Chen, Fan, Girshick & He
2020). The representation is the query backbone's output.

Shuffle-BN (shuffling the keys' batch across GPUs so BN statistics cannot leak
which key belongs to which query) is not needed on one device, where query
and key encoders see their batches in separate forward passes with their own
BN statistics; it is not implemented. Under DistributedDataParallel the keys
of all processes are gathered before they enter the queue, as in MoCo's code,
so every process holds the same queue.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..augment import make_view_pair
from ..config import param
from ..collective import gather_with_grad
from ..losses import info_nce
from ..nets import BACKBONES, build_backbone, mlp
from .base import DataInfo, ImageMethod, MethodCard
from .momentum import ema_update, frozen_copy


@dataclass
class MoCoConfig:
    backbone: str = param("small-cnn", "Encoder network", choices=BACKBONES)
    width: int = param(32, "Channels of the small CNN's first layer", min=4, max=256)
    projection_dim: int = param(128, "Output size of the MLP head (keys and queries)", min=2, max=4096)
    hidden_dim: int = param(512, "Hidden size of the MLP head (2048 in MoCo v2)", min=2, max=8192)
    queue_size: int = param(4096, "Keys kept as negatives (K); at least one batch, ideally a multiple of it",
                            min=2, max=1_000_000)
    momentum: float = param(0.99, "m of the key encoder's moving average (0.999 in the paper on ImageNet; "
                                  "0.99 suits small data)", min=0.0, max=1.0)
    temperature: float = param(0.2, "τ of the InfoNCE softmax", min=0.01, max=10.0)
    symmetric: bool = param(False, "Symmetric loss: also use view 2 as the query against view 1's key "
                                   "(one queue per view; twice the compute)")


class MoCo(ImageMethod):
    name = "moco"
    Config = MoCoConfig
    # MoCo's CIFAR-10 recipe (the official CIFAR demo, as in lightly's and solo-learn's benchmarks):
    # ResNet-18, batch 512, SGD lr 0.06 with weight decay 5e-4, K = 4096, m = 0.99, τ = 0.1.
    gpu_defaults = {"backbone": "resnet18-auto", "batch_size": 512, "epochs": 200, "optimizer": "sgd",
                    "lr": 0.06, "weight_decay": 5e-4, "hidden_dim": 2048, "queue_size": 4096,
                    "momentum": 0.99, "temperature": 0.1}
    card = MethodCard(
        title="MoCo v2", family="siamese",
        learns="Features that tell an image's augmented views apart from many other images, "
               "with a slowly moving key encoder and a long queue of negatives: invariance to "
               "the chosen augmentations without needing a huge batch.",
        loss="L_q = −log exp(q·k₊/τ) / (exp(q·k₊/τ) + Σ_{k⁻∈queue} exp(q·k⁻/τ)),  "
             "θ_k ← m θ_k + (1−m) θ_q",
        paper="He, Fan, Wu, Xie & Girshick, Momentum contrast for unsupervised visual representation "
              "learning, CVPR 2020; Chen, Fan, Girshick & He, Improved baselines with momentum "
              "contrastive learning, arXiv 2020",
        url="https://arxiv.org/abs/2003.04297")

    def __init__(self, cfg: MoCoConfig, info: DataInfo):
        super().__init__(cfg, info)
        self.backbone = build_backbone(cfg.backbone, info.channels, info.height, cfg.width)
        # MoCo v2's head: fc → ReLU → fc (no BN).
        self.head = mlp(self.backbone.dim, cfg.hidden_dim, cfg.projection_dim, layers=2, batch_norm=False)
        self.key_backbone = frozen_copy(self.backbone)
        self.key_head = frozen_copy(self.head)
        # The queue: random unit vectors at first (as in MoCo's code), one per view when symmetric.
        # Buffers, so checkpoints hold them and a resumed run continues with the same negatives.
        n_views = 2 if cfg.symmetric else 1
        self.register_buffer("queue", F.normalize(torch.randn(n_views, cfg.queue_size, cfg.projection_dim), dim=-1))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def embed(self, x):
        return self.backbone(x)

    def training_step(self, x, views, generator, index=None):
        v1, v2 = make_view_pair(x, views, generator)
        q1 = self.head(self.backbone(v1))
        with torch.no_grad():
            k2 = F.normalize(self.key_head(self.key_backbone(v2)).float(), dim=1)
        # The loss reads a copy of the queue: the queue is updated below, before backward.
        queue = self.queue.clone()
        if self.cfg.symmetric:
            q2 = self.head(self.backbone(v2))
            with torch.no_grad():
                k1 = F.normalize(self.key_head(self.key_backbone(v1)).float(), dim=1)
            # queue[v] holds keys of view v: q1 is contrasted with view-2 keys, q2 with view-1 keys.
            loss = 0.5 * (info_nce(q1, k2, queue[1], self.cfg.temperature)
                          + info_nce(q2, k1, queue[0], self.cfg.temperature))
            self._enqueue(torch.stack([k1, k2]))
        else:
            loss = info_nce(q1, k2, queue[0], self.cfg.temperature)
            self._enqueue(k2[None])
        return loss, {"z": q1.detach()}

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        """Put (V, n, d) normalised keys where the oldest ones are, wrapping around the end."""
        # (V, n, d) from every process → (V, world·n, d) in rank order (MoCo's concat_all_gather).
        keys = gather_with_grad(keys.transpose(0, 1)).transpose(0, 1)
        n, size = keys.shape[1], self.queue.shape[1]
        if n > size:
            raise ValueError(f"MoCo's queue holds {size} keys but a step makes {n}: "
                             "choose a queue_size at least as large as the batch")
        ptr = int(self.queue_ptr)
        idx = (torch.arange(ptr, ptr + n, device=self.queue.device)) % size
        self.queue[:, idx] = keys.to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + n) % size

    def after_step(self, step, total_steps):
        ema_update(self.key_backbone, self.backbone, self.cfg.momentum)
        ema_update(self.key_head, self.head, self.cfg.momentum)
