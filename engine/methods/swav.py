"""SwAV: predict one view's cluster code from another view.

Backbone and projection head map every crop to a unit vector z; its scores
against K learnable unit prototypes C are zᵀC. For each large crop, the
Sinkhorn-Knopp algorithm turns the batch's scores into codes q that spread
the batch evenly over the prototypes (the equipartition that prevents
collapse); every other crop must predict that code with a softmax over its own
scores at temperature τ ("swapped prediction"). Codes are computed without
gradient (Caron et al. 2020). The representation is the backbone's output.

Following the paper's code: the prototypes are l2-normalised before every
step; they get no gradient for the first ``freeze_prototypes_steps`` steps;
crops of one resolution go through the backbone together (both large crops in
one forward of 2B, the small crops in another), and all crops through the head
together; with small batches a queue of earlier batches' embeddings (per large
crop) joins the Sinkhorn step only — its codes are dropped — once it is full.
Multi-crop adds ``n_small_crops`` low-resolution crops per image (views with a
smaller ``out_size`` and smaller crop scales); they are predicted from, never
assigned codes.

Under torchrun the Sinkhorn-Knopp sums run over all ranks and the queue holds
every rank's embeddings (each rank adds its share of it to the Sinkhorn step),
so the codes are those of one process on the global batch and its queue
(tests/test_negatives_ddp.py checks it with two CPU processes).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import make_view_pair, make_views
from ..config import param
from ..collective import gather_with_grad, is_distributed, row_counts, share_of_mean, world_and_rank
from ..losses import sinkhorn_knopp, swav_loss
from ..nets import BACKBONES, build_backbone, mlp
from .base import DataInfo, ImageMethod, MethodCard


@dataclass
class SwAVConfig:
    backbone: str = param("small-cnn", "Encoder network", choices=BACKBONES)
    width: int = param(32, "Channels of the small CNN's first layer", min=4, max=256)
    projection_dim: int = param(128, "Size of the embedding z the prototypes live in", min=2, max=4096)
    hidden_dim: int = param(512, "Hidden size of the projection head (2048 in the paper)", min=2, max=16384)
    n_prototypes: int = param(100, "Number of prototypes K (3000 in the paper on ImageNet)", min=2, max=100000)
    temperature: float = param(0.1, "τ of the softmax over prototype scores", min=0.01, max=10.0)
    epsilon: float = param(0.05, "ε of Sinkhorn-Knopp: lower makes the codes harder (closer to one-hot)",
                           min=0.01, max=10.0)
    sinkhorn_iterations: int = param(3, "Sinkhorn-Knopp iterations", min=1, max=100, advanced=True)
    freeze_prototypes_steps: int = param(20, "Steps at the start during which the prototypes are not "
                                             "updated", min=0, max=10**7)
    n_small_crops: int = param(0, "Multi-crop: extra low-resolution crops per image (0 = only the two "
                                  "large views)", min=0, max=16)
    small_crop_size: int = param(0, "Side of the small crops in pixels (0 = 96/224 of the image side, "
                                    "at least 4)", min=0, max=1024, advanced=True)
    small_crop_scale_min: float = param(0.05, "Smallest small crop, as a fraction of the image area",
                                        min=0.01, max=1.0, advanced=True)
    small_crop_scale_max: float = param(0.14, "Largest small crop, as a fraction of the image area",
                                        min=0.01, max=1.0, advanced=True)
    queue_size: int = param(0, "Embeddings of earlier batches added to the Sinkhorn step (0 = none); "
                               "helps when the batch is small next to the number of prototypes",
                            min=0, max=1_000_000)
    queue_start_step: int = param(0, "Step from which the queue is filled (it is used once full)",
                                  min=0, max=10**8, advanced=True)


class SwAV(ImageMethod):
    name = "swav"
    Config = SwAVConfig
    # A CIFAR-10 recipe (as in solo-learn's): ResNet-18, 3000 prototypes, batch 256 with a queue
    # of 3840 embeddings started after ~15 epochs, prototypes frozen for ~2 epochs, two 32-px crops.
    gpu_defaults = {"backbone": "resnet18-auto", "batch_size": 256, "epochs": 200, "hidden_dim": 2048,
                    "n_prototypes": 3000, "queue_size": 3840, "queue_start_step": 3000,
                    "freeze_prototypes_steps": 400}
    card = MethodCard(
        title="SwAV", family="siamese",
        learns="Features that put the augmented views of an image in the same cluster, with the "
               "clusters (prototypes) learnt online and kept evenly filled by Sinkhorn-Knopp.",
        loss="ℓ(z_t, q_s) = −Σ_k q_s^(k) log p_t^(k),  p_t^(k) = exp(z_tᵀc_k/τ)/Σ_k′ exp(z_tᵀc_k′/τ),  "
             "L = ℓ(z_t, q_s) + ℓ(z_s, q_t),  Q = Diag(u) exp(CᵀZ/ε) Diag(v)",
        paper="Caron, Misra, Mairal, Goyal, Bojanowski & Joulin, Unsupervised learning of visual features "
              "by contrasting cluster assignments, NeurIPS 2020",
        url="https://arxiv.org/abs/2006.09882")

    def __init__(self, cfg: SwAVConfig, info: DataInfo):
        super().__init__(cfg, info)
        self.backbone = build_backbone(cfg.backbone, info.channels, info.height, cfg.width)
        self.projector = mlp(self.backbone.dim, cfg.hidden_dim, cfg.projection_dim, layers=2)
        self.prototypes = nn.Linear(cfg.projection_dim, cfg.n_prototypes, bias=False)
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        # Steps taken (set by after_step): decides the prototype freeze and the queue's start.
        # A buffer, so a resumed run knows where it is.
        self.register_buffer("step", torch.zeros(1, dtype=torch.long))
        if cfg.queue_size > 0:
            self.register_buffer("queue", torch.zeros(2, cfg.queue_size, cfg.projection_dim))
            self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
            self.register_buffer("queue_filled", torch.zeros(1, dtype=torch.long))

    def embed(self, x):
        return self.backbone(x)

    def small_views(self, views):
        """The multi-crop view config: the run's views with a smaller output and smaller crops."""
        cfg = self.cfg
        size = cfg.small_crop_size or max(4, round(self.info.height * 96 / 224))
        lo, hi = sorted((cfg.small_crop_scale_min, cfg.small_crop_scale_max))
        return replace(views, out_size=size, crop_scale_min=lo, crop_scale_max=hi)

    def training_step(self, x, views, generator, index=None):
        cfg = self.cfg
        B = x.shape[0]
        step = int(self.step)
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

        v1, v2 = make_view_pair(x, views, generator)
        feats = [self.backbone(torch.cat([v1, v2]))]
        if cfg.n_small_crops > 0:
            small = make_views(x.repeat(cfg.n_small_crops, 1, 1, 1), self.small_views(views), generator)
            feats.append(self.backbone(small))
        z = F.normalize(self.projector(torch.cat(feats)), dim=1)

        w = self.prototypes.weight
        if step < cfg.freeze_prototypes_steps:
            w = _frozen(w)
        scores = F.linear(z, w)
        crops = scores.split(B)                      # 2 large crops, then the small ones

        codes = []
        distributed = is_distributed()
        world, rank = world_and_rank()
        use_queue = cfg.queue_size > 0 and int(self.queue_filled) >= cfg.queue_size
        for i in range(2):
            s = crops[i].detach()
            if use_queue:
                # Every rank holds the same queue (all ranks' embeddings): each adds its
                # share, so the Sinkhorn step sees the queue once.
                with torch.no_grad():
                    s = torch.cat([s, F.linear(self.queue[i][rank::world].to(s.dtype), w.detach())])
            codes.append(sinkhorn_knopp(s, cfg.sinkhorn_iterations, cfg.epsilon,
                                        across_processes=distributed)[:B])
        loss = swav_loss(crops, codes, cfg.temperature)
        sizes = row_counts(B, z.device)
        if distributed:
            loss = loss * share_of_mean(B, sizes)     # the ranks' mean is the global batch's loss

        if cfg.queue_size > 0 and step >= cfg.queue_start_step:
            with torch.no_grad():
                large = gather_with_grad(z[:2 * B].detach().view(2, B, -1).transpose(0, 1), sizes)
            self._enqueue(large.transpose(0, 1))
        return loss, {"z": z[:B].detach()}

    @torch.no_grad()
    def _enqueue(self, emb: torch.Tensor) -> None:
        """(2, B, d) embeddings of the large crops replace the oldest ones in the queue."""
        n, size = emb.shape[1], self.queue.shape[1]
        if n >= size:
            self.queue.copy_(emb[:, -size:])
            self.queue_ptr.zero_()
        else:
            ptr = int(self.queue_ptr)
            idx = torch.arange(ptr, ptr + n, device=self.queue.device) % size
            self.queue[:, idx] = emb.to(self.queue.dtype)
            self.queue_ptr[0] = (ptr + n) % size
        self.queue_filled[0] = min(size, int(self.queue_filled) + n)

    def after_step(self, step, total_steps):
        self.step.fill_(step + 1)


def _frozen(w: torch.Tensor) -> torch.Tensor:
    """The prototypes without gradient, as the paper's ``p.grad = None``.

    On one process the weight is simply detached: it gets no gradient, and the
    optimiser skips it (no update, no weight decay, no optimiser state).
    DistributedDataParallel (without ``find_unused_parameters``) fails on a
    parameter that gets no gradient, so there the weight stays in the graph
    with a gradient of exactly zero.
    """
    if is_distributed():
        return w.detach() + 0.0 * w
    return w.detach()
