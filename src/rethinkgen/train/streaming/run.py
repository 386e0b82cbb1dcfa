"""Entry point of a streamed run: :func:`train_streamed` (``rethinkgen.train.loop.train`` calls it for
datasets that stream, such as ``imagenet``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rethinkgen.train.config import TrainConfig

__all__ = ["train_streamed"]


def train_streamed(config: TrainConfig, *, callbacks: Iterable[Any] = (), resume: dict | None = None,
                   progress: bool = False, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Train the resolved ``config`` from its streamed data on this process (one rank of ``world_size``
    under torchrun) and return its summary.

    Outside torchrun, a ``world_size`` above 1 starts that many local processes
    (:func:`rethinkgen.train.streaming.spawn.train_spawned`); callbacks then run here on rank 0's
    reports. Under torchrun, callbacks run on rank 0 only, except those with ``all_ranks = True`` (e.g.
    a stop request, which every rank must honour at the same epoch). ``resume``: a checkpoint dict
    (every rank reads the same). ``run_dir``: rank 0 writes the run's training labels there as
    ``labels.npy`` (its sha256 is also in the summary as ``labels_sha256``).
    """
    from rethinkgen.data.stream.labels import save_labels
    from rethinkgen.train.loop import select_device
    from rethinkgen.train.streaming.distributed import context, in_torchrun
    from rethinkgen.train.streaming.trainer import StreamTrainer, checkpoint_labels

    if (config.world_size or 1) > 1 and not in_torchrun():  # start the ranks here (a sweep's worker, a library call)
        from rethinkgen.train.streaming.spawn import train_spawned

        return train_spawned(config, callbacks=callbacks, resume=resume,
                             run_dir=str(run_dir) if run_dir is not None else None)
    ctx = context(config.world_size, select_device(config.device))
    try:
        trainer = StreamTrainer(config, ctx, labels=checkpoint_labels(resume))
        labels_file = None
        if run_dir is not None and ctx.main:
            labels_file, _ = save_labels(run_dir, trainer.labels)
        if resume is not None:
            trainer.restore(resume)
        if trainer.history.finished:
            summary = trainer.summary()
        else:
            mine = [cb for cb in callbacks if ctx.main or getattr(cb, "all_ranks", False)]
            summary = trainer.fit(mine, progress and ctx.main)
        if labels_file is not None:
            summary["labels_file"] = str(labels_file)
        return summary
    finally:
        ctx.close()
