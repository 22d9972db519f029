"""Collectives the methods use under torchrun: gathers that keep the gradient, sums, maxima.

torch only, so the methods and losses can import it without the launcher
(engine/distributed.py), which knows about runs and the training loop. With one
process every function is the identity (or a plain local value).
"""
from __future__ import annotations

import torch
import torch.distributed as torch_dist


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return torch_dist.is_available() and torch_dist.is_initialized() and torch_dist.get_world_size() > 1


def world_and_rank() -> tuple[int, int]:
    return (torch_dist.get_world_size(), torch_dist.get_rank()) if is_distributed() else (1, 0)


def row_counts(n: int, device: torch.device | str = "cpu") -> list[int]:
    """Every rank's ``n`` (its number of rows), in rank order; ``[n]`` outside torchrun."""
    if not is_distributed():
        return [n]
    count = torch.tensor([n], device=device)
    counts = [torch.zeros_like(count) for _ in range(torch_dist.get_world_size())]
    torch_dist.all_gather(counts, count)
    return [int(c) for c in counts]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 (ranks may hold different counts) that keeps the gradient.

    Each rank's loss may use every rank's rows. The backward sums what all
    ranks' losses say about each rank's rows (an all-reduce) and hands each
    rank its own slice, so rank r's parameters get the gradient of the sum of
    all ranks' losses through its rows. DDP then averages over ranks: the
    result is the gradient of the ranks' mean loss, which is one process's
    gradient on the whole batch when that mean is the whole batch's loss."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        padded = x.new_zeros((max(sizes), *x.shape[1:]))
        padded[:x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        torch_dist.all_gather(parts, padded)
        ctx.sizes, ctx.rank = sizes, torch_dist.get_rank()
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        torch_dist.all_reduce(grad)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None


def gather_with_grad(x: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """The rows of every rank (rank order, float32), differentiable; ``x`` itself outside
    torchrun. ``sizes``: every rank's row count when the caller already has them
    (:func:`row_counts`), saving one collective."""
    if not is_distributed():
        return x
    if sizes is None:
        sizes = row_counts(x.shape[0], x.device)
    return _GatherWithGrad.apply(x.float().contiguous(), sizes)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over all ranks, in place (and returned); ``t`` itself outside torchrun."""
    if is_distributed():
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """The element-wise maximum of ``t`` over all ranks, in place (and returned)."""
    if is_distributed():
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return t


def share_of_mean(n_local: int, sizes: list[int]) -> float:
    """The factor that turns a mean over this rank's ``n_local`` rows into its share of
    the global mean: DDP averages the ranks' gradients (and the loop logs the ranks'
    mean loss), so the ranks' losses must average to the mean over all rows. It is
    exactly 1.0 when the ranks hold equal counts, as the loop's shards do."""
    return len(sizes) * n_local / sum(sizes)
