"""The population shards over torch.distributed ranks (launched with torchrun: gloo on CPU, nccl on
GPU). Without a process group everything runs on one rank."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    device: str = "cpu"  # where collective tensors live (cuda for nccl)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, n: int) -> range:
        """Indices this rank handles: i % world_size == rank (independent of timing)."""
        return range(self.rank, n, self.world_size)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum over ranks of a float64 tensor; each rank fills its own entries and leaves zeros elsewhere,
        so the result is exact (x + 0 = x) and identical for any world size."""
        if not self.active:
            return values
        t = values.to(self.device)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
        return t.cpu()

    def broadcast(self, values: torch.Tensor) -> torch.Tensor:
        """Rank 0's tensor on every rank."""
        if not self.active:
            return values
        t = values.to(self.device)
        torch_dist.broadcast(t, src=0)
        return t.cpu()

    def barrier(self) -> None:
        if self.active:
            if self.device.startswith("cuda"):
                torch_dist.barrier(device_ids=[torch.cuda.current_device()])
            else:
                torch_dist.barrier()


def init_from_env() -> Dist:
    """Join the process group torchrun describes (WORLD_SIZE > 1), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    device = f"cuda:{torch.cuda.current_device()}" if use_cuda else "cpu"
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size(), device)


def shutdown(dist: Dist) -> None:
    if dist.active and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
