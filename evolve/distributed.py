"""The population shards over torch.distributed ranks: gloo on CPU, nccl on GPU. Without a process
group everything runs on one rank.

The ranks come from the launcher's environment: torchrun (one machine or several) and `accelerate
launch` set RANK / WORLD_SIZE / LOCAL_RANK; under mpirun (`accelerate launch --cpu --mpirun_hostfile`)
MPI's own names are read (PMI_*, OMPI_COMM_WORLD_*, MV2_COMM_WORLD_*), as accelerate reads them.
`accelerate launch --cpu` without mpirun starts one process whatever --num_processes says: the run
then says so on stderr and runs on that one process.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from core.errors import UserError

RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
WORLD_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
LOCAL_RANK_VARS = ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK")


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        if os.environ.get(name):
            return int(os.environ[name])
    return default


def env_rank() -> int:
    """This process's rank as the launcher set it (0 when there is no launcher)."""
    return _env_int(RANK_VARS, 0)


def env_world_size() -> int:
    return _env_int(WORLD_VARS, 1)


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
    """Join the process group the launcher describes (world size > 1), or run alone."""
    world = env_world_size()
    if world <= 1:
        if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in os.environ:
            print("note: accelerate launch --cpu started a single process (several CPU processes need mpirun: "
                  "--mpirun_hostfile); this run uses 1 process", file=sys.stderr)
        return Dist()
    if not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")):
        raise UserError(f"world size {world} but MASTER_ADDR / MASTER_PORT are not set: launch with torchrun or "
                        f"accelerate launch, or export them (rank 0's host and a free port)")
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(_env_int(LOCAL_RANK_VARS, 0))
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=env_rank(), world_size=world)
    device = f"cuda:{torch.cuda.current_device()}" if use_cuda else "cpu"
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size(), device)


def shutdown(dist: Dist) -> None:
    if dist.active and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
