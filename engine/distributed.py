"""Running the same training loop under torchrun (DistributedDataParallel).

``launch(project_path, run_id, nproc)`` starts ``nproc`` processes with
``torch.distributed.run``; each joins the process group (gloo on the CPU,
nccl on GPUs), reads the run from the project file and calls the ordinary
:func:`engine.loop.train` with its rank. The loop shards every batch across
ranks, DDP averages the gradients, and only rank 0 writes to the file.

The collectives the methods use inside a step live here too (torch only, so
any method may import them): :func:`gather_with_grad` gives every rank the
rows of all ranks with the gradient kept (CLIP's and SimCLR's negatives),
:func:`all_reduce_sum` and :func:`all_reduce_max` serve SwAV's Sinkhorn step.
Outside torchrun, or with one process, they return their input unchanged.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as torch_dist

if TYPE_CHECKING:
    from .train import DistInfo

ROOT = Path(__file__).resolve().parents[1]


def launch(project_path: str | Path, run_id: int, nproc: int, *, quiet: bool = False) -> int:
    """Run ``run_id`` in ``nproc`` processes and wait; returns the exit code."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(ROOT / "main.py"), "worker", "--project", str(project_path), "--run-id", str(run_id)]
    if quiet:
        cmd.append("--quiet")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.call(cmd, env=env, cwd=str(ROOT))


def init_from_env() -> DistInfo:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*)."""
    # Imported here, not at the top: the methods import this module for its
    # collectives, and engine.train imports the methods.
    from .train import DistInfo
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if world > 1 and not torch_dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        torch_dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def shutdown() -> None:
    if torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


# --------------------------------------------------------------------------------------
# Collectives used inside a training step


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
