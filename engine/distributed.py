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
