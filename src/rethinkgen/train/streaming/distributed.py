"""Several processes training one run: torch.distributed under ``torchrun`` (DistributedDataParallel).

A run with ``world_size`` W > 1 is trained by W processes (ranks), one per GPU (NCCL) or, on the CPU,
W processes with the gloo backend (how the tests run it). ``torchrun`` starts them and sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`context` joins the
process group from those. Every rank builds the same model (same seed; DDP also broadcasts rank 0's
weights), reads its share of each batch (:mod:`rethinkgen.data.stream.loader`) and averages its
gradients with the others'. Rank 0 alone draws the training labels and broadcasts them, writes files
(summary, checkpoints, the label file) and reports to a sweep; every rank computes the same epoch
rows (evaluation counts are summed over ranks).

Launchers: ``rethinkgen train ... --nproc-per-node N`` runs ``torchrun --standalone --nproc-per-node N
-m rethinkgen train ...`` (:func:`torchrun_command`); several nodes use ``torchrun`` directly (docs).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from rethinkgen.errors import ConfigError

__all__ = ["DistContext", "context", "in_torchrun", "torchrun_command"]

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def in_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets the env:// variables)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


@dataclass
class DistContext:
    """This process's place in a run: rank, world size, the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")
    started_group: bool = False  # this context initialised the process group (and destroys it)

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and reports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled; for labels, file lists and other setup, not per step)."""
        if not self.distributed:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0, device=self._collective_device())
        return box[0]

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (a float64 or int64 tensor on this rank's device) summed over all ranks."""
        if self.distributed:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers of ``module`` (BatchNorm's running statistics) copied into every rank's, in place.

        In training, DDP broadcasts them at the start of each forward, after which each rank updates its
        own from its share of the batch: after an epoch the ranks hold different running statistics.
        An evaluation in eval mode on every rank's shard must use one model, the one rank 0 saves."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def _collective_device(self) -> torch.device | None:
        return self.device if dist.get_backend() == "nccl" else None

    def close(self) -> None:
        if self.started_group and dist.is_initialized():
            dist.destroy_process_group()
            self.started_group = False


def context(world_size: int | None, device: torch.device) -> DistContext:
    """The context of a run asking for ``world_size`` processes on ``device`` (its type: cuda or cpu).

    One process (``world_size`` None or 1, outside torchrun): a trivial context. Under torchrun: joins
    the process group (NCCL on CUDA, gloo on the CPU) after checking that torchrun's ``WORLD_SIZE``
    is the run's; each CUDA rank trains on ``cuda:LOCAL_RANK``. ConfigError when a run asks for several
    processes but was not started by a launcher (the message gives the torchrun command).
    """
    want = int(world_size or 1)
    if not in_torchrun():
        if want > 1:
            raise ConfigError(f"world_size={want} needs {want} processes started by torchrun: run `rethinkgen train "
                              f"... --nproc-per-node {want}` or `torchrun --nproc-per-node {want} -m rethinkgen train "
                              "...` (several nodes: see docs, ImageNet)")
        return DistContext(device=device)
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    if size != want:
        raise ConfigError(f"torchrun started {size} processes but the run's world_size is {want}; start "
                          f"{want} (--nproc-per-node x --nnodes) or pass --world-size {size}")
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"local rank {local_rank} has no GPU (this node has {torch.cuda.device_count()}); "
                              "start at most one process per GPU")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    started = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, init_method="env://", **kwargs)
        started = True
    return DistContext(rank, size, local_rank, local_size, device, started)


def torchrun_command(nproc_per_node: int, argv: list[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m rethinkgen ARGV``: one node,
    N processes, a free rendezvous port (torchrun's ``--standalone``)."""
    if nproc_per_node < 1:
        raise ConfigError(f"--nproc-per-node must be >= 1, got {nproc_per_node}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc_per_node}",
            "-m", "rethinkgen", *argv]
