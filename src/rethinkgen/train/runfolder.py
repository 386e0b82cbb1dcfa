"""A run trained by ``rethinkgen train`` into its folder: checkpoints, resume, stopping, torchrun.

``rethinkgen train ... --out DIR`` keeps a run's record in DIR (default ``runs/<run key[:12]>``, so the
same command finds the same folder): ``summary.json``, ``metrics.csv``, ``step_losses.csv``, for a
streamed run ``labels.npy`` (its training labels) and, every ``checkpoint_every`` epochs,
``checkpoint.pt`` (the sweep's self-verifying format, :mod:`rethinkgen.sweep.checkpoint`: written to a
temporary file and renamed, the previous one kept as ``checkpoint.pt.prev``). Running the same command
again resumes from it — exactly, on the CPU (design §3: resume is ours) — and a finished run's
checkpoint gives its summary back without training. ``stop_after`` ends this call after that many
epochs (a checkpoint is written first): how a run longer than a cluster job's time limit is trained,
one job after another with the same command.

Under torchrun every rank runs this; rank 0 alone writes, every rank reads the checkpoint to resume,
and every rank stops at the same epoch.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rethinkgen.train.config import TrainConfig, run_key

__all__ = ["CHECKPOINT", "FolderCheckpoints", "StopAfter", "StopRequested", "resume_state", "train_in_folder"]

CHECKPOINT = "checkpoint.pt"


class StopRequested(Exception):  # noqa: N818 - a request, not an error
    """Raised by :class:`StopAfter` once this call has trained its epochs (the checkpoint is written)."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"stopped after epoch {epoch}")
        self.epoch = epoch


class FolderCheckpoints:
    """Callback: ``DIR/checkpoint.pt`` every ``every`` epochs (and at the last epoch of this call)."""

    def __init__(self, folder: Path, key: str, every: int, stop_at: int | None = None) -> None:
        self.path, self.key, self.every, self.stop_at = Path(folder) / CHECKPOINT, key, every, stop_at

    def on_epoch_end(self, row: dict[str, Any], step_losses: list, state: Any) -> None:
        from rethinkgen.sweep.checkpoint import encode, make_payload, write_atomic

        epoch = int(row["epoch"])
        if epoch % self.every == 0 or epoch == self.stop_at or state.history.finished:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, encode(make_payload(self.key, row, step_losses, state.checkpoint())))


class StopAfter:
    """Callback on every rank: raise :class:`StopRequested` at the end of epoch ``epoch`` (unless the run has
    just finished there)."""

    all_ranks = True

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, row: dict[str, Any], step_losses: list, state: Any) -> None:
        if int(row["epoch"]) >= self.epoch and not state.history.finished:
            raise StopRequested(int(row["epoch"]))


def resume_state(folder: Path, key: str) -> tuple[dict[str, Any] | None, list[str]]:
    """(the trainer state of ``DIR/checkpoint.pt``, notes about damaged files), or (None, notes)."""
    from rethinkgen.sweep.checkpoint import decode, load_checkpoint

    loaded, notes = load_checkpoint(Path(folder) / CHECKPOINT, key)
    return (decode(loaded.blob)["state"] if loaded is not None else None), notes


def train_in_folder(config: TrainConfig, folder: Path, *, checkpoint_every: int = 1, stop_after: int | None = None,
                    restart: bool = False, progress: bool = False,
                    callbacks: Iterable[Any] = ()) -> tuple[dict[str, Any] | None, int | None, list[str]]:
    """Train the resolved ``config`` with its record in ``folder``: (summary, or None when stopped by
    ``stop_after``; the epoch it resumed from, or None; notes about damaged checkpoint files).

    ``checkpoint_every`` 0 writes no checkpoint. ``restart`` ignores (and overwrites) an existing one.
    """
    from rethinkgen.sweep.checkpoint import remove_checkpoints
    from rethinkgen.train.loop import train

    key = run_key(config)
    resume, notes = (None, []) if restart else resume_state(folder, key)
    if restart:
        remove_checkpoints(Path(folder) / CHECKPOINT)
    start = int(resume["epoch"]) if resume is not None else None
    cbs = list(callbacks)
    stop_at = (start or 0) + stop_after if stop_after else None
    if checkpoint_every > 0 or stop_after:
        cbs.append(FolderCheckpoints(folder, key, checkpoint_every if checkpoint_every > 0 else 10**9, stop_at))
    if stop_at is not None:
        cbs.append(StopAfter(stop_at))
    try:
        summary = train(config, callbacks=cbs, resume=resume, progress=progress, run_dir=str(folder))
    except StopRequested:
        return None, start, notes
    return summary, start, notes
