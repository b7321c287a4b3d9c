"""Data-parallel training on torch.distributed, started by `torchrun --nproc_per_node N -m minbert train ...`
(gloo on CPU, NCCL on GPUs).

Every process builds the same run (same seed: same schedule, same batches) and takes its share of each
batch, `index[rank::world]`. Its loss is weighted by its share of the batch, so summing the processes'
gradients gives the gradient of the whole batch's mean loss: the same update as one process with the
same global batch. PCGrad sums each task's gradient across processes before the projection. Only
rank 0 writes the run directory; every process evaluates, so all agree on the best epoch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Parallel:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, index: list[int]) -> tuple[list[int], float]:
        """This process's rows of a batch and the weight of its mean loss (its share of the batch).
        A process left without rows takes the batch's first row at weight 0, so every process runs
        the same forward and backward passes."""
        mine = index[self.rank::self.world]
        if not mine:
            return index[:1], 0.0
        return mine, len(mine) / len(index)

    def sum_gradients(self, grads: list[torch.Tensor | None], like: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """Sum gradients over the processes (one all-reduce); a gradient missing here but present in another
        process counts as zeros; one missing everywhere stays None."""
        if self.world == 1 or not grads:
            return grads
        device = like[0].device
        present = torch.tensor([g is not None for g in grads], dtype=torch.int32, device=device)
        dist.all_reduce(present, op=dist.ReduceOp.MAX)
        full = [(g if g is not None else torch.zeros_like(p)) if flag else None
                for g, p, flag in zip(grads, like, present.tolist())]
        tensors = [g for g in full if g is not None]
        if tensors:
            flat = torch.cat([t.reshape(-1) for t in tensors])
            dist.all_reduce(flat)
            offset = 0
            for t in tensors:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()
        return full

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def from_environment(device: str = "auto") -> Parallel:
    """Join the process group torchrun describes in the environment; one process when there is none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Parallel()
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and device != "cpu"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Parallel(dist.get_rank(), dist.get_world_size())
