"""Stopping a run after a number of epochs in this call: ``rethinkgen train --stop-after N``.

A run longer than a cluster job's time limit is trained one job after another: each call trains at
most N epochs, then stops exactly as an interruption does — the checkpoint of the last finished epoch
saved in the run's folder (:mod:`rethinkgen.train.run_dir`) — and ``rethinkgen train --resume DIR``
continues it. Under torchrun the callback runs on every rank (``all_ranks``), so all ranks stop after
the same epoch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["StopAfter", "StopRequested"]


class StopRequested(KeyboardInterrupt):  # noqa: N818 - a request, handled like an interruption
    """Raised by :class:`StopAfter` at the end of the epoch it names."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"stopped after epoch {epoch} (--stop-after)")
        self.epoch = epoch


class StopAfter:
    """Callback: raise :class:`StopRequested` at the end of epoch ``epoch`` unless the run has just finished."""

    all_ranks = True

    def __init__(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def on_epoch_end(self, row: dict[str, Any], step_losses: list, trainer: Any) -> None:
        if int(row["epoch"]) >= self.epoch and not trainer.history.finished:
            raise StopRequested(int(row["epoch"]))
