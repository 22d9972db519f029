"""Momentum (EMA) target networks, shared by MoCo and BYOL.

* :func:`frozen_copy` — the target starts as an exact copy of the online
  network and never receives gradients (``requires_grad=False``); it is a
  submodule of the method, so it is saved in checkpoints and a resumed run
  continues from the same target.
* :func:`ema_update` — ξ ← m·ξ + (1 − m)·θ over the parameters
  (MoCo: He et al. 2020, eq. 2; BYOL: Grill et al. 2020, §3.1).
  Buffers (BatchNorm running statistics) are not averaged: as in MoCo's and
  BYOL's code, the target runs in train mode and its BN layers normalise by
  the statistics of the batch they see; their running averages are only ever
  used by a target in eval mode, which no method here embeds with.
* :func:`cosine_momentum` — BYOL's schedule
  τ_k = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2, from τ_base at k = 0 to 1 at k = K.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["frozen_copy", "ema_update", "cosine_momentum"]


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters never require a gradient."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """In place, for every parameter pair: ξ ← m·ξ + (1 − m)·θ.

    ``target`` and ``online`` must have the same parameters in the same order
    (``target`` made by :func:`frozen_copy` of ``online``). One fused
    multiply and one fused add over all tensors (``torch._foreach_*``), which
    on the CPU costs a fraction of a Python loop over parameters.
    """
    t = list(target.parameters())
    o = list(online.parameters())
    if len(t) != len(o):
        raise ValueError(f"target has {len(t)} parameter tensors, online {len(o)}")
    if not t:
        return
    m = float(momentum)
    torch._foreach_mul_(t, m)
    torch._foreach_add_(t, [p.detach() for p in o], alpha=1.0 - m)


def cosine_momentum(step: int, total_steps: int, base: float) -> float:
    """BYOL's target decay rate at step k of K (Grill et al. 2020, §3.2):

        τ = 1 − (1 − τ_base) · (cos(π k / K) + 1) / 2

    τ_base at k = 0, rising to 1 at k = K (k is clipped to [0, K]).
    """
    k = min(max(step, 0), max(total_steps, 1))
    return 1.0 - (1.0 - base) * (math.cos(math.pi * k / max(total_steps, 1)) + 1.0) / 2.0
