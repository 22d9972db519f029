"""Heads as short declarations over one generic MLP builder (as lightly does).

``mlp(512, 2048, 128, layers=2)`` is SimCLR's projection head; BYOL's
projector/predictor and SimSiam's heads are the same call with other sizes.
"""
from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, *,
        batch_norm: bool = True, last_bn: bool = False) -> nn.Sequential:
    """``layers`` linear layers; all but the last followed by (BN,) ReLU."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden_dim, bias=not batch_norm)]
        if batch_norm:
            mods.append(nn.BatchNorm1d(hidden_dim))
        mods.append(nn.ReLU(inplace=True))
        d = hidden_dim
    mods.append(nn.Linear(d, out_dim, bias=not last_bn))
    if last_bn:
        mods.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*mods)
