"""Run by tests/test_negatives_ddp.py under torchrun (2 CPU processes, gloo): one
SimCLR step and one SwAV step (with a full queue) on a fixed global batch of 15
images, sharded as the training loop shards it (8 and 7 rows: the gathers must
handle uneven counts), and SwAV's Sinkhorn codes of fixed scores. Rank 0
writes the ranks' mean losses, its gradients, its queue after the step and the
gathered codes to a safetensors file; the test computes the same in one
process on the whole batch."""
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGS = {
    "simclr": {"width": 4, "hidden_dim": 32, "projection_dim": 16, "temperature": 0.2},
    # No prototype freeze, so the prototypes get a real gradient; a queue of 16 that is
    # full from the start and takes the batch's embeddings at the end of the step.
    "swav": {"width": 4, "hidden_dim": 32, "projection_dim": 16, "n_prototypes": 10,
             "freeze_prototypes_steps": 0, "queue_size": 16, "queue_start_step": 0},
}
SCORES_SHAPE = (15, 10)


def fixed_views(x, views, generator):
    """Two different views of each image that do not depend on the generator (each
    rank draws from its own), so the shards' views are the whole batch's views."""
    from engine.augment import normalize
    return normalize(x), normalize(x.flip(-1))


def ddp_setup(name: str):
    """The same method (seeded), data and global batch of 15 in every process.

    Batch norm runs on its running statistics (eval): the shards' batches differ."""
    from engine.data import load_images
    from engine.methods import METHODS, DataInfo
    data = load_images("shapes", n=60, size=16, seed=3)
    train = torch.from_numpy((data.split == 0).nonzero()[0])
    cls = METHODS[name]
    torch.manual_seed(0)
    method = cls(cls.Config(**CONFIGS[name]), DataInfo("shapes", 3, 16, 16, len(train)))
    method.eval()
    if name == "swav":
        queue = torch.nn.functional.normalize(torch.randn(method.queue.shape,
                                                          generator=torch.Generator().manual_seed(1)), dim=-1)
        method.queue.copy_(queue)
        method.queue_filled.fill_(method.queue.shape[1])
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous()
    return method, images, train[:15]


def fixed_scores() -> torch.Tensor:
    return torch.randn(SCORES_SHAPE, generator=torch.Generator().manual_seed(2))


def main(out: str) -> None:
    from safetensors.torch import save_file
    from engine.collective import gather_with_grad
    from engine.losses import sinkhorn_knopp
    from engine.methods import simclr, swav
    simclr.make_view_pair = swav.make_view_pair = fixed_views

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    result = {}
    for name in CONFIGS:
        method, images, batch = ddp_setup(name)
        model = torch.nn.parallel.DistributedDataParallel(method)
        index = batch[rank::world]                # the loop's sharding of a global batch
        loss, _ = model(images[index], None, torch.Generator().manual_seed(rank), index=index)
        loss.backward()
        mean = loss.detach().reshape(1).clone()   # what the loop logs: the ranks' mean
        dist.all_reduce(mean)
        result[f"{name}.loss"] = mean / world
        result[f"{name}.own_rows"] = torch.tensor([len(index)])
        result.update({f"{name}.grad.{n}": p.grad.contiguous() for n, p in method.named_parameters()
                       if p.grad is not None})
        if name == "swav":
            result["swav.queue"] = method.queue.clone()

    scores = fixed_scores()
    codes = sinkhorn_knopp(scores[rank::world], 3, 0.05, across_processes=True)
    result["codes"] = gather_with_grad(codes)     # rank order: rows 0, 2, 4, …, then 1, 3, …

    if rank == 0:
        save_file(result, out)
    dist.barrier()
    # As tests/_clip_ddp_worker.py: the result is on disk and both ranks are past the barrier,
    # so leave without the C++ teardown, where full-suite runs saw rare aborts
    # ("terminate called without an active exception") that would fail a test about losses.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
