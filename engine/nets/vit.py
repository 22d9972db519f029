"""A small Vision Transformer (Dosovitskiy et al. 2021), written out to be read.

Patch embedding by a Conv2d with stride = patch, fixed 2-D sin-cos positional
embeddings (as MAE uses, so nothing about positions is learned), a cls token,
pre-norm Transformer blocks (attention through F.scaled_dot_product_attention)
and a final LayerNorm. Sizes for 8×8 to 64×64 inputs:

=======  ====  =====  =====
size     dim   depth  heads
=======  ====  =====  =====
tiny     128   4      4
small    192   6      3
=======  ====  =====  =====

:meth:`ViT.tokens` takes an optional ``ids_keep`` (B, n_keep): then only those
patches are embedded into the sequence — the masked autoencoder's encoder sees
the visible patches and nothing else. ``forward`` is the backbone interface:
images → (B, dim) mean-pooled patch tokens.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError

VIT_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"dim": 128, "depth": 4, "heads": 4},
    "small": {"dim": 192, "depth": 6, "heads": 3},
}


def auto_patch_size(height: int, width: int) -> int:
    """A patch side that suits the image: 2 up to 16 px (8×8 digits → a 4×4 grid), 4 up to
    48 px (32×32 → 8×8, MNIST's 28×28 → 7×7), 8 up to 128 px, else 16; if it doesn't divide
    the image, the largest divisor of both sides below it."""
    side = min(height, width)
    p = 2 if side <= 16 else 4 if side <= 48 else 8 if side <= 128 else 16
    g = math.gcd(height, width)
    while g % p:
        p -= 1
    return p


def resolve_patch_size(patch: int, height: int, width: int, field: str = "patch") -> int:
    """``patch`` itself (0 = :func:`auto_patch_size`); a ConfigError if it doesn't tile the image."""
    if patch <= 0:
        return auto_patch_size(height, width)
    if height % patch or width % patch:
        raise ConfigError({field: f"a {patch}-pixel patch does not tile {height}×{width} images: "
                                  f"choose a divisor of {math.gcd(height, width)} (or 0 = automatic)"})
    return patch


def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int, cls_token: bool = True) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos embedding (util/pos_embed.py): half the dims encode the row,
    half the column, each as sin/cos of the position at geometric frequencies.
    Returns (1, [1 +] grid_h·grid_w, dim); the cls position is all zeros."""
    if dim % 4:
        raise ValueError(f"the embedding width must be a multiple of 4 for 2-D sin-cos, got {dim}")

    def one_axis(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gw, gh = np.meshgrid(np.arange(grid_w, dtype=np.float64), np.arange(grid_h, dtype=np.float64))
    emb = np.concatenate([one_axis(dim // 2, gh), one_axis(dim // 2, gw)], axis=1)   # (L, dim)
    if cls_token:
        emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
    return torch.from_numpy(emb).float().unsqueeze(0)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])     # (B, heads, N, D/heads)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_transformer_weights(m: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linears with zero bias, LayerNorm at identity."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class ViT(nn.Module):
    """Images (B, C, H, W) → tokens; ``forward`` mean-pools the patch tokens to (B, dim)."""

    def __init__(self, in_channels: int, height: int, width: int, patch: int = 0,
                 size: str = "tiny", dim: int | None = None, depth: int | None = None,
                 heads: int | None = None):
        super().__init__()
        if size not in VIT_SIZES:
            raise ValueError(f"unknown ViT size {size!r} (known: {', '.join(VIT_SIZES)})")
        spec = VIT_SIZES[size]
        dim, depth, heads = dim or spec["dim"], depth or spec["depth"], heads or spec["heads"]
        self.patch = resolve_patch_size(patch, height, width)
        self.grid = (height // self.patch, width // self.patch)
        self.num_patches = self.grid[0] * self.grid[1]
        self.dim = dim
        self.patch_embed = nn.Conv2d(in_channels, dim, self.patch, stride=self.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Fixed, so not saved in checkpoints: recomputed from the grid on load.
        self.register_buffer("pos_embed", sincos_pos_embed_2d(dim, *self.grid), persistent=False)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.apply(init_transformer_weights)
        # The patch embedding initialised like a linear layer (MAE: xavier on the flattened weight).
        w = self.patch_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.cls_token, std=0.02)

    def embed_patches(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Patch embeddings plus positions: (B, L, dim), or (B, n_keep, dim) for ``ids_keep``."""
        if ids_keep is None:
            return self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:, :]
        # Only the kept patches are embedded: a conv whose stride equals its kernel is a linear
        # map of each patch's (C, p, p) pixels, so it is applied to the gathered pixels alone.
        B, C = x.shape[:2]
        (gh, gw), p = self.grid, self.patch
        pix = x.reshape(B, C, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * p * p)
        pix = torch.gather(pix, 1, ids_keep.unsqueeze(-1).expand(-1, -1, pix.shape[-1]))
        w = self.patch_embed.weight
        t = F.linear(pix, w.reshape(w.shape[0], -1), self.patch_embed.bias)
        pos = self.pos_embed[0, 1:, :][ids_keep]                             # (B, n_keep, dim)
        return t + pos

    def tokens(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) → (B, 1 + n, dim): the cls token, then the patches in ``ids_keep``
        (all of them, in order, when None), after the blocks and the final norm."""
        t = self.embed_patches(x, ids_keep)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(t.shape[0], -1, -1)
        t = torch.cat([cls, t], dim=1)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(x)[:, 1:, :].mean(dim=1)
