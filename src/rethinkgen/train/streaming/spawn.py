"""A run on ``world_size`` processes started from Python (a sweep's worker, a library call): the local
equivalent of ``torchrun --standalone --nproc-per-node W``.

:func:`train_spawned` starts W processes on this machine with ``torch.multiprocessing`` (spawn), each
with torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``=127.0.0.1 and a
free ``MASTER_PORT``), so each is one rank of :func:`rethinkgen.train.streaming.run.train_streamed`.
Rank 0 sends every epoch's row, logged losses and checkpoint, and finally the summary, back through a
queue; this process replays them to the callbacks (a sweep's, which turn them into events for the
store) and returns the summary. A rank that raises fails the run here, with its traceback; a callback
that raises here stops the ranks.
"""

from __future__ import annotations

import os
import queue
import socket
import time
from collections.abc import Iterable
from typing import Any

from rethinkgen.train.config import TrainConfig

__all__ = ["train_spawned"]

POLL_S = 0.2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Relay:
    """Rank 0's callback in a spawned process: each epoch's (row, losses, checkpoint) into the queue."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def on_epoch_end(self, row: dict[str, Any], step_losses: list, state: Any) -> None:
        from rethinkgen.sweep.checkpoint import encode

        # bytes, not tensors: shared-memory tensors of a process that may exit before they are read are lost
        self.channel.put(("epoch", dict(row), [list(p) for p in step_losses], encode(state.checkpoint()),
                          state.summary()))


def _rank_main(rank: int, config: TrainConfig, resume: dict | None, channel: Any, port: int, threads: int,
               run_dir: str | None) -> None:
    """Entry point of one spawned rank."""
    import torch

    from rethinkgen.train.streaming.run import train_streamed

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(config.world_size),
                      LOCAL_WORLD_SIZE=str(config.world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    callbacks = [_Relay(channel)] if rank == 0 else []
    summary = train_streamed(config, callbacks=callbacks, resume=resume, run_dir=run_dir if rank == 0 else None)
    if rank == 0:
        channel.put(("summary", summary))


class _State:
    """What a callback sees of the run in this process, as it would see the trainer: its checkpoint, its
    summary, ``history`` (``finished``, ``status``, ``epoch``, ``step``) and ``numerics`` (which a sweep
    records for the run) at the end of the epoch."""

    def __init__(self, ckpt: dict[str, Any], summary: dict[str, Any]) -> None:
        from types import SimpleNamespace

        from rethinkgen.train.numerics import Numerics

        self._ckpt, self._summary = ckpt, summary
        status = summary.get("status")  # None until the run has finished (RunHistory.status)
        self.history = SimpleNamespace(finished=status is not None, status=status, epoch=summary.get("epochs"),
                                       step=summary.get("steps"))
        self.numerics = Numerics.from_dict(summary["numerics"]) if summary.get("numerics") else None

    def checkpoint(self) -> dict[str, Any]:
        return self._ckpt

    def summary(self) -> dict[str, Any]:
        return dict(self._summary)


def train_spawned(config: TrainConfig, *, callbacks: Iterable[Any] = (), resume: dict | None = None,
                  threads: int | None = None, run_dir: str | None = None) -> dict[str, Any]:
    """Train the resolved, streamed ``config`` on ``config.world_size`` local processes (module
    docstring) and return rank 0's summary. ``threads``: torch threads per rank (default: this
    process's CPU threads shared among the ranks); ``run_dir``: where rank 0 writes the label file."""
    import torch
    import torch.multiprocessing as mp

    from rethinkgen.sweep.checkpoint import decode

    world = int(config.world_size or 1)
    ctx = mp.get_context("spawn")
    channel = ctx.Queue()
    threads = threads or max(1, torch.get_num_threads() // world)
    procs = mp.start_processes(_rank_main, args=(config, resume, channel, _free_port(), threads, run_dir), nprocs=world,
                               join=False, start_method="spawn")
    callbacks = list(callbacks)
    summary = None
    try:
        done = False
        while True:
            try:
                message = channel.get(timeout=POLL_S)
            except queue.Empty:
                if done:
                    break
                done = procs.join(timeout=0)  # raises ProcessRaisedException / ProcessExitedException
                continue
            if message[0] == "summary":
                summary = message[1]
            else:
                _, row, losses, ckpt, epoch_summary = message
                for cb in callbacks:
                    if hasattr(cb, "on_epoch_end"):
                        cb.on_epoch_end(row, losses, _State(decode(ckpt), epoch_summary))
    except BaseException:
        for p in procs.processes:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + 10
        for p in procs.processes:
            p.join(max(0.0, deadline - time.monotonic()))
        raise
    if summary is None:
        raise RuntimeError(f"the {world} ranks ended without rank 0 reporting a summary")
    for cb in callbacks:
        if hasattr(cb, "on_train_end"):
            cb.on_train_end(summary)
    return summary
