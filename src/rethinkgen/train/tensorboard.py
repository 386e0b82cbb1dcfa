"""TensorBoard output of runs: a sink for watching training, never the record (design §3: the run folder
and the results store are the truth; nothing is ever read back from here).

Each run gets one folder of event files; its scalars, all against the SGD step (the x axis of Figure 1a):

=========================  ===========================================================================
``loss/train_step``        minibatch loss every ``log_every`` steps (Figure 1a's curves)
``loss/train``             mean minibatch loss of the epoch (train mode)
``loss/train_eval``        loss on the whole (corrupted) training set, eval mode
``loss/test``              loss on the test set (true labels)
``accuracy/train``         accuracy on the labels trained on, eval mode (what convergence is judged on)
``accuracy/train_corrupted`` / ``accuracy/train_clean``   on the samples whose label was changed / kept
``accuracy/test``          accuracy on the true test labels
``lr``                     learning rate of the epoch's last step
``epoch``                  the epoch number, to read epochs off the step axis
=========================  ===========================================================================

TensorBoard is an optional dependency, imported only when asked for; without it
:func:`require_tensorboard` fails with the exact ``pip install`` line. A resumed run writes a new event
file whose first event purges (``SummaryWriter(purge_step=...)``) what the stopped attempt had written
past the checkpoint it resumes from, and a run started afresh purges everything before it, so the
curves never show an epoch twice.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from rethinkgen.errors import RethinkgenError

__all__ = ["INSTALL", "TensorBoardRuns", "TensorBoardSink", "require_tensorboard", "run_folder"]

INSTALL = "pip install 'rethinkgen[tensorboard]'   (or: pip install tensorboard)"

ROW_SCALARS = (("loss/train", "train_loss"), ("loss/train_eval", "train_eval_loss"), ("loss/test", "test_loss"),
               ("accuracy/train", "train_acc"), ("accuracy/train_corrupted", "train_acc_corrupted"),
               ("accuracy/train_clean", "train_acc_clean"), ("accuracy/test", "test_acc"), ("lr", "lr"),
               ("epoch", "epoch"))


def require_tensorboard(option: str = "--tensorboard") -> type:
    """``torch.utils.tensorboard.SummaryWriter``; a RethinkgenError with the install line when TensorBoard
    is missing. Call it before any work so a missing package costs nothing."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it; check it by name)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise RethinkgenError(f"{option} needs TensorBoard, which is not installed: {INSTALL}") from None
    return SummaryWriter


_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+@-]")


def run_folder(root: str | Path, name: str) -> Path:
    """``root/<name>``: a run name's ``/`` separates folders (``experiment/axis=value,...``); characters
    that file systems or TensorBoard's run selector mishandle become ``_``; a part too long for a file
    name is shortened with a hash of it."""
    parts = []
    for part in name.split("/"):
        safe = _UNSAFE.sub("_", part).strip(".") or "_"
        if len(safe) > 150:
            safe = safe[:140] + "-" + hashlib.sha256(part.encode()).hexdigest()[:8]
        parts.append(safe)
    return Path(root).joinpath(*parts)


class TensorBoardSink:
    """One run's event files in ``log_dir``; also a trainer callback (``on_epoch_end``).

    ``fresh`` (a run started from epoch 0) purges everything earlier event files hold for this folder;
    otherwise (a resumed run) only what lies at or after the first step this attempt writes.
    """

    def __init__(self, log_dir: str | Path, fresh: bool = True, flush_secs: int = 5) -> None:
        self.log_dir, self.fresh, self.flush_secs = Path(log_dir), fresh, flush_secs
        self.writer: Any = None

    def _open(self, first_step: int) -> None:
        writer_class = require_tensorboard()
        self.writer = writer_class(str(self.log_dir), purge_step=0 if self.fresh else first_step,
                                   flush_secs=self.flush_secs)

    def log_epoch(self, row: dict[str, Any], step_losses: list | tuple = ()) -> None:
        """Write one epoch's metrics row and the step losses logged during it."""
        if self.writer is None:
            self._open(min([int(row["step"]), *(int(s) for s, _ in step_losses)]))
        for step, loss in step_losses:
            self.writer.add_scalar("loss/train_step", float(loss), int(step))
        step = int(row["step"])
        for tag, key in ROW_SCALARS:
            value = row.get(key)
            if value is not None:
                self.writer.add_scalar(tag, float(value), step)

    def on_epoch_end(self, row: dict[str, Any], step_losses: list, trainer: Any) -> None:
        self.log_epoch(row, step_losses)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class TensorBoardRuns:
    """The TensorBoard sink of a sweep: one :class:`TensorBoardSink` per run, in ``root/<run name>``.

    It takes the sweep display's notifications (``run_started``, ``epoch``, ``run_finished``,
    ``run_failed``; :class:`rethinkgen.sweep.progress.SweepDisplay` forwards them).
    """

    def __init__(self, root: str | Path) -> None:
        require_tensorboard()
        self.root = Path(root)
        self.sinks: dict[str, TensorBoardSink] = {}
        self.folders: dict[Path, str] = {}  # folder -> run key, so two runs never share one

    def run_started(self, run_key: str, name: str, epochs: int, resumed_from: int | None) -> None:
        folder = run_folder(self.root, name)
        if self.folders.setdefault(folder, run_key) != run_key:
            folder = folder.with_name(f"{folder.name}-{run_key[:8]}")
        self.sinks[run_key] = TensorBoardSink(folder, fresh=resumed_from is None)

    def epoch(self, run_key: str, row: dict[str, Any], step_losses: list | tuple = ()) -> None:
        sink = self.sinks.get(run_key)
        if sink is not None:
            sink.log_epoch(row, step_losses)

    def run_finished(self, run_key: str, name: str, summary: dict[str, Any]) -> None:
        self._close(run_key)

    def run_failed(self, run_key: str, name: str, error: str) -> None:
        self._close(run_key)

    def close(self) -> None:
        for key in list(self.sinks):
            self._close(key)

    def _close(self, run_key: str) -> None:
        sink = self.sinks.pop(run_key, None)
        if sink is not None:
            sink.close()
