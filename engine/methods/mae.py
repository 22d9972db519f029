"""Masked autoencoder: redraw the patches you were not shown (He et al. 2022).

The image is cut into p×p patches; a random 75 % of them are removed (argsort
of uniform noise, :func:`engine.augment.random_patch_mask`) and the ViT
encoder sees ONLY the visible quarter — which is what makes MAE cheap. A
lightweight decoder gets the encoded visible tokens plus a learned mask token
at every removed position (put back in place with ``ids_restore``), adds its
own fixed positional embeddings and predicts every patch's pixels. The loss is
the mean squared error on the removed patches only; with ``norm_pix_loss`` the
target of each patch is its pixels normalised by the patch's own mean and
variance (MAE's better-feature choice, Table 1d of the paper).

The structure follows facebookresearch/mae ``models_mae.py``: ``patchify`` /
``unpatchify``, ``forward_encoder`` → ``(latent, mask, ids_restore)``,
``forward_decoder``, ``forward_loss``, and ``forward_mae`` → ``(loss, pred,
mask)`` for a viewer. :func:`reconstruct_images` draws any images at any mask
ratio.

Views: MAE augments with a random resized crop (scale 0.2–1) and a flip only,
no colour jitter. The method uses the run's view config, and its defaults
switch colour jitter, grayscale, blur, solarize and noise off, keeping each
data set's crop and flip settings (0.2–1 crops and flips on natural images).

Representation (``embed``): the encoder on ALL patches, its patch tokens
averaged. The mean gave better kNN than the cls token once trained (CIFAR-10
subset, 15 epochs: 0.36 vs 0.33; digits, 1,100 steps: 0.89 vs 0.77);
``pool="cls"`` switches. MAE's features are weak for kNN early in training:
expect them to pass the random-init baseline only after many epochs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..augment import make_views, normalize, random_patch_mask
from ..config import ConfigError, param
from ..nets.vit import VIT_SIZES, Block, ViT, init_transformer_weights, sincos_pos_embed_2d
from .base import DataInfo, ImageMethod, MethodCard, Reconstruction, Slider

#: Added to a patch's variance before the square root, as in models_mae.py.
NORM_PIX_EPS = 1e-6


@dataclass
class MAEConfig:
    size: str = param("tiny", "Encoder size: tiny (width 128, 4 blocks, 4 heads) or small "
                              "(width 192, 6 blocks, 3 heads)", choices=tuple(VIT_SIZES))
    patch: int = param(0, "Patch side in pixels; it must divide the image. 0 = automatic "
                          "(2 up to 16 px, 4 up to 48 px, 8 up to 128 px)", min=0, max=64)
    mask_ratio: float = param(0.75, "Fraction of the patches removed before the encoder", min=0.0, max=0.95)
    decoder_dim: int = param(64, "Width of the lightweight decoder (a multiple of 4 and of its heads)",
                             min=8, max=1024, advanced=True)
    decoder_depth: int = param(2, "Transformer blocks in the decoder", min=1, max=16, advanced=True)
    decoder_heads: int = param(4, "Attention heads in the decoder", min=1, max=16, advanced=True)
    norm_pix_loss: bool = param(True, "Targets are each patch's pixels normalised by that patch's mean "
                                      "and variance (MAE's choice: better features)")
    pool: str = param("mean", "Representation: the mean of the patch tokens, or the cls token",
                      choices=("mean", "cls"))

    def __post_init__(self):
        bad = {}
        if self.decoder_dim % 4:
            bad["decoder_dim"] = f"must be a multiple of 4 (2-D sin-cos positions), not {self.decoder_dim}"
        elif self.decoder_heads and self.decoder_dim % self.decoder_heads:
            bad["decoder_heads"] = f"must divide the decoder width {self.decoder_dim}"
        if bad:
            raise ConfigError(bad)


def normalize_patches(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-patch normalised targets (B, L, D) and the (B, L, 1) mean and variance used."""
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + NORM_PIX_EPS) ** 0.5, mean, var


def unnormalize_patches(pred: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Undo :func:`normalize_patches` with the ORIGINAL patches' statistics (MAE's visualisation)."""
    return pred * (var + NORM_PIX_EPS) ** 0.5 + mean


class MaskedAutoencoder(ImageMethod):
    name = "mae"
    Config = MAEConfig
    # MAE's recipe is AdamW, weight decay 0.05, warm-up, lr = 1.5e-4 · batch / 256 — for 800
    # ImageNet epochs. A short CPU schedule needs more steps and a larger lr: on the 8×8 digits
    # (tiny ViT, 100 epochs, batch 256) kNN went 0.40 / 0.45 / 0.50 at lr 1.5e-4 / 1.5e-3 / 3e-3,
    # and 0.86 with batch 128 (twice the steps) at 3e-3. Views: crop + flip only, as MAE.
    train_defaults = {"lr": 3e-3, "batch_size": 128, "epochs": 100, "weight_decay": 0.05,
                      "warmup_epochs": 5, "views.jitter_p": 0.0, "views.grayscale_p": 0.0,
                      "views.blur_p": 0.0, "views.solarize_p": 0.0, "views.noise_p": 0.0}
    # On a GPU, MAE's own rule: 1.5e-4 · 1024 / 256, 5 % of the epochs warm-up.
    gpu_defaults = {"size": "small", "batch_size": 1024, "lr": 1.5e-4 * 1024 / 256, "epochs": 400,
                    "warmup_epochs": 20}
    #: MAE's AdamW betas (He et al. 2022, appendix A.1): β₂ = 0.95 rather than 0.999, so the
    #: second moment follows the gradients' scale faster (as for large-batch ViT training).
    adam_betas = (0.9, 0.95)
    # The slider stops short of 1: a mask ratio of 1 leaves the encoder nothing to see.
    reconstructs = Reconstruction(input_title="masked input", redraws="masks",
                                  slider=Slider("mask_ratio", "Mask ratio", 0.0, 0.95, 0.75))
    card = MethodCard(
        title="Masked autoencoder (MAE)", family="masking",
        learns="Enough about shapes and layout to fill in three quarters of an image from the "
               "quarter it sees: the encoder works on the visible patches only.",
        loss="L = 1/|M| Σ_{i∈M} ||x̂_i − x_i||²  over the masked patches M (75 %), "
             "x_i optionally normalised per patch",
        paper="He, Chen, Xie, Li, Dollár & Girshick, Masked autoencoders are scalable vision "
              "learners, CVPR 2022",
        url="https://arxiv.org/abs/2111.06377",
        needs="Images of 32 px or more (a patch must hold a recognisable part of the object), long "
              "training (hundreds of epochs; the paper: 800 on ImageNet) and fine-tuning to judge it: "
              "its features are weak under kNN and a linear probe, which is expected, not a failure.")

    #: Below this side, a patch of the automatic size holds a handful of pixels: the task
    #: becomes interpolating neighbours, and the encoder learns little (digits, 8×8: kNN at the
    #: untrained network's level after 30 epochs, with a flat loss).
    MIN_USEFUL_SIDE = 16

    @classmethod
    def data_warning(cls, height: int, width: int) -> str | None:
        if min(height, width) >= cls.MIN_USEFUL_SIDE:
            return None
        return (f"MAE on {height}×{width} images: each patch holds only a few pixels, so filling in "
                f"the masked ones is little more than blurring their neighbours, and the encoder learns "
                f"about as much as an untrained network. Use images of 32 px or more (e.g. shapes) to "
                f"see MAE work; here expect blurry reconstructions and a flat loss.")

    def __init__(self, cfg: MAEConfig, info: DataInfo):
        super().__init__(cfg, info)
        self.encoder = ViT(info.channels, info.height, info.width, cfg.patch, cfg.size)
        self.patch = p = self.encoder.patch
        self.grid = self.encoder.grid
        self.num_patches = self.encoder.num_patches
        if cfg.norm_pix_loss and p * p * info.channels < 2:
            raise ConfigError({"norm_pix_loss": f"a {p}×{p} patch of a {info.channels}-channel image has "
                                                "one value, which normalised per patch is always 0: "
                                                "turn it off or use a larger patch"})
        dd = cfg.decoder_dim
        self.decoder_embed = nn.Linear(self.encoder.dim, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.register_buffer("decoder_pos_embed", sincos_pos_embed_2d(dd, *self.grid), persistent=False)
        self.decoder_blocks = nn.ModuleList(Block(dd, cfg.decoder_heads) for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(dd)
        self.decoder_pred = nn.Linear(dd, p * p * info.channels)
        for mod in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            mod.apply(init_transformer_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    # --- patches ----------------------------------------------------------------------------
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, L, p·p·C), patches in row-major order, pixels as (p, p, C)."""
        B, C = imgs.shape[:2]
        (gh, gw), p = self.grid, self.patch
        x = imgs.reshape(B, C, gh, p, gw, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(B, gh * gw, p * p * C)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, p·p·C) → (B, C, H, W); the inverse of :meth:`patchify`."""
        B = x.shape[0]
        (gh, gw), p = self.grid, self.patch
        C = x.shape[-1] // (p * p)
        x = x.reshape(B, gh, gw, p, p, C)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(B, C, gh * p, gw * p)

    # --- the model ----------------------------------------------------------------------------
    def forward_encoder(self, imgs: torch.Tensor, ratio: float, generator: torch.Generator
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the visible patches only: latent (B, 1 + n_keep, dim) with the cls token first,
        mask (B, L) 1 = removed, ids_restore (B, L)."""
        ids_keep, mask, ids_restore = random_patch_mask(imgs.shape[0], self.num_patches, ratio,
                                                        generator, imgs.device)
        return self.encoder.tokens(imgs, ids_keep), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predicted pixels of every patch (B, L, p·p·C), in the original patch order."""
        x = self.decoder_embed(latent)
        B, n, D = x.shape
        mask_tokens = self.mask_token.to(x.dtype).expand(B, self.num_patches + 1 - n, D)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)                      # shuffled order
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, D))   # unshuffle
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error per patch, averaged over the patches where ``mask`` is 1."""
        target = self.patchify(imgs.float())
        if self.cfg.norm_pix_loss:
            target = normalize_patches(target)[0]
        loss = (pred.float() - target).pow(2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def _loss_weights(self, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # At ratio 0 nothing is masked: the loss then covers every patch (a plain ViT
        # autoencoder) instead of being 0/0. Decided from shapes, without a device sync.
        return torch.ones_like(mask) if latent.shape[1] - 1 == self.num_patches else mask

    def forward_mae(self, imgs: torch.Tensor, ratio: float, generator: torch.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """models_mae.py's forward: normalised images → (loss, pred, mask)."""
        latent, mask, ids_restore = self.forward_encoder(imgs, ratio, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, self._loss_weights(latent, mask)), pred, mask

    def _pool(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 0] if self.cfg.pool == "cls" else tokens[:, 1:].mean(dim=1)

    # --- the Method interface -------------------------------------------------------------------
    def optimizer_options(self, train_config) -> dict:
        # Weight decay: the default groups already leave out norms, biases, the cls and mask
        # tokens, as MAE's code does; only Adam and AdamW take betas.
        return {"betas": self.adam_betas} if train_config.optimizer in ("adam", "adamw") else {}

    def training_step(self, x, views, generator, index=None):
        imgs = make_views(x, views, generator)
        latent, mask, ids_restore = self.forward_encoder(imgs, self.cfg.mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore)
        loss = self.forward_loss(imgs, pred, self._loss_weights(latent, mask))
        if latent.shape[1] - 1 == self.num_patches:      # mask token unused: keep DDP's gradients whole
            loss = loss + 0.0 * self.mask_token.sum()
        return loss, {"z": self._pool(latent).detach()}

    def embed(self, x):
        """The encoder on ALL patches (ratio 0), pooled as ``cfg.pool`` says."""
        return self._pool(self.encoder.tokens(x))

    @torch.no_grad()
    def draw(self, imgs: torch.Tensor, ratio: float, generator: torch.Generator) -> dict[str, np.ndarray]:
        """Normalised images → uint8 (B, H, W, C) original / input (removed patches grey) /
        reconstruction (every patch predicted) / pasted (visible patches put back), and
        ``mask`` (B, gh, gw) bool, True = removed. With ``norm_pix_loss`` the prediction is
        un-normalised with each ORIGINAL patch's mean and variance, as MAE's visualisation does:
        removed patches borrow their true brightness and contrast, the network supplies the rest."""
        latent, mask, ids_restore = self.forward_encoder(imgs, ratio, generator)
        pred = self.forward_decoder(latent, ids_restore).float()
        if self.cfg.norm_pix_loss:
            _, mean, var = normalize_patches(self.patchify(imgs.float()))
            pred = unnormalize_patches(pred, mean, var)
        rec = self.unpatchify(pred)
        m = self.unpatchify(mask.unsqueeze(-1).expand(-1, -1, pred.shape[-1]).to(rec.dtype))
        shown = imgs.float() * (1.0 - m)                 # normalised 0 = mid grey
        pasted = shown + rec * m
        return {"original": self.to_uint8_images(imgs), "input": self.to_uint8_images(shown),
                "reconstruction": self.to_uint8_images(rec), "pasted": self.to_uint8_images(pasted),
                "mask": mask.reshape(-1, *self.grid).bool().cpu().numpy()}

    def reconstruct(self, x, generator):
        """The four picture rows (original, input, reconstruction, pasted) at the trained ratio."""
        out = self.draw(normalize(x), self.cfg.mask_ratio, generator)
        out.pop("mask")                    # the loop draws every entry as a row of images
        return out


def reconstruct_images(method: MaskedAutoencoder, images: np.ndarray, ratio: float, seed: int = 0,
                       batch: int = 256) -> dict[str, np.ndarray]:
    """For the viewer: uint8 images (N, H, W, C) or (N, H, W) of the method's size, masked at
    ``ratio`` with masks drawn from ``seed`` → {"original", "input", "reconstruction",
    "pasted"} uint8 (N, H, W, C) and "mask" (N, gh, gw) bool. Runs in eval mode, without
    gradients, on the method's device; leaves the method's mode as it was."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    info = method.info
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (info.height, info.width, info.channels):
        raise ValueError(f"expected uint8 images of shape (N, {info.height}, {info.width}, {info.channels}) "
                         f"(what this model was trained on), got {arr.dtype} {arr.shape}")
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    device = next(method.parameters()).device
    g = torch.Generator(device=device).manual_seed(int(seed))
    was_training = method.training
    method.eval()
    parts: list[dict[str, np.ndarray]] = []
    try:
        for i in range(0, len(arr), batch):
            x = torch.from_numpy(np.ascontiguousarray(arr[i:i + batch])).permute(0, 3, 1, 2).to(device)
            parts.append(method.draw(normalize(x.contiguous()), ratio, g))
    finally:
        method.train(was_training)
    if not parts:
        e = np.zeros((0, info.height, info.width, info.channels), np.uint8)
        return {"original": e, "input": e, "reconstruction": e, "pasted": e,
                "mask": np.zeros((0, *method.grid), bool)}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


__all__ = ["MAEConfig", "MaskedAutoencoder", "normalize_patches", "reconstruct_images",
           "unnormalize_patches"]
