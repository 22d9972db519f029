"""Loss functions, pure and each tied to its paper.

They take tensors and return a scalar tensor; no module state, so tests can
compare each one with a hand-written reference of the formula.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross-entropy (Chen et al. 2020, eq. 1).

    For a positive pair (i, j) of the 2N views:

        l(i, j) = -log exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ)

    with sim the cosine similarity; the denominator runs over the positive and
    the 2N−2 in-batch negatives. The loss is the mean of l over all 2N
    anchors, i.e. L = 1/(2N) Σ_k [l(2k−1, 2k) + l(2k, 2k−1)].
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.t() / temperature
    # An anchor is never its own negative: remove the diagonal from the softmax.
    sim.fill_diagonal_(float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, positives)


def reconstruction_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per pixel, the autoencoders' objective ||x − g(f(x̃))||²."""
    return F.mse_loss(pred.float(), target.float())
