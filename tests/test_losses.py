"""Losses against hand-written references of the papers' formulas."""
import math

import torch

from engine.losses import nt_xent, reconstruction_mse


def nt_xent_reference(z1, z2, tau):
    """SimCLR eq. (1) written as the paper reads, one anchor at a time."""
    z = torch.cat([z1, z2]).double()
    n2 = z.shape[0]
    n = n2 // 2
    sim = lambda a, b: float(a @ b / (a.norm() * b.norm()))  # noqa: E731
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        denom = sum(math.exp(sim(z[i], z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim(z[i], z[j]) / tau) / denom)
    return total / n2


def test_nt_xent_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    for n, d, tau in [(4, 8, 0.5), (7, 3, 0.1), (2, 16, 1.0)]:
        z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
        assert abs(float(nt_xent(z1, z2, tau)) - nt_xent_reference(z1, z2, tau)) < 1e-5


def test_nt_xent_is_low_for_aligned_views_and_high_for_swapped_ones():
    z = torch.eye(8) * 5
    aligned = float(nt_xent(z, z, 0.1))
    shuffled = float(nt_xent(z, z.roll(1, 0), 0.1))
    assert aligned < 1e-3 < shuffled


def test_nt_xent_gradient_flows_to_both_views():
    z1 = torch.randn(5, 4, requires_grad=True)
    z2 = torch.randn(5, 4, requires_grad=True)
    nt_xent(z1, z2, 0.5).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


def test_reconstruction_mse():
    a, b = torch.zeros(2, 3), torch.ones(2, 3) * 2
    assert float(reconstruction_mse(a, b)) == 4.0
