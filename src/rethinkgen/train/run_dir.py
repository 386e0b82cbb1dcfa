"""The output folder of one ``rethinkgen train`` run, written while the run goes, so no run is lost.

Layout of ``DIR``::

    summary.json      status, the resolved config, run key, final (or latest) numbers; written first
                      (status "running"), rewritten as epochs finish, and last of all at the end
    metrics.csv       one row per finished epoch (epoch 0 = the untrained model)
    step_losses.csv   (step, minibatch loss) every ``log_every`` SGD steps (Figure 1a)
    checkpoint.pt     the state at the end of the last finished epoch, while the run is unfinished
    .lock             held (``fcntl.flock``) by the one process training into the folder, so a second
                      ``rethinkgen train --out DIR`` or ``--resume DIR`` is refused while it runs

Every file is replaced atomically (temporary file + rename; :mod:`rethinkgen.files`). The CSV files
and a "running" summary follow the epochs at most every ``csv_every_s`` seconds; the checkpoint is
written at most every ``checkpoint_every_s`` seconds, and always when the run stops early: on Ctrl-C
or SIGTERM the summary says ``interrupted``, on an error ``failed`` (with the error), and both keep
the checkpoint of the last finished epoch, from which ``rethinkgen train --resume DIR`` continues.
Epochs restart from a seeded state (see :mod:`rethinkgen.train.loop`), so on the CPU with the same
thread count a resumed run ends with the numbers of an uninterrupted one, bit for bit.

The checkpoint file uses the sweep's framing (:mod:`rethinkgen.sweep.checkpoint`: magic, sha256,
length; the previous generation kept as ``checkpoint.pt.prev``), so a truncated file is detected.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rethinkgen.errors import ConfigError
from rethinkgen.files import ensure_writable_dir, write_csv_atomic, write_text_atomic
from rethinkgen.train.config import TrainConfig

__all__ = ["RunDir", "RunDirWriter", "FINISHED", "public_summary"]

FINISHED = ("converged", "max_epochs", "diverged")
SUMMARY, METRICS, STEP_LOSSES, CHECKPOINT = "summary.json", "metrics.csv", "step_losses.csv", "checkpoint.pt"
LOCK = ".lock"


def public_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without the per-epoch history (which goes to metrics.csv and step_losses.csv)."""
    return {k: v for k, v in summary.items() if k not in ("metrics", "step_losses")}


def _json_safe(value: Any) -> Any:
    """NaN and infinities (a diverged run's losses) as null: summary.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class RunDir:
    """One run's output folder (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    # ------------------------------------------------------------------ one process per folder
    def lock(self) -> None:
        """Take the folder's exclusive lock (``DIR/.lock``, ``fcntl.flock``: dropped by the kernel when the
        process dies). Raises ConfigError naming the holder's PID when another process trains here: two
        runs writing one folder would leave files of either. The folder must exist."""
        if self._lock_fd is not None:
            return
        try:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot create the lock file {self.path / LOCK} ({exc.strerror}): a run folder "
                              "must be writable, the run writes its files there") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 100, 0).decode(errors="replace").split()
            os.close(fd)
            who = f"PID {holder[0]}" + (f" on {holder[1]}" if len(holder) > 1 else "") if holder else "a process"
            raise ConfigError(f"{self.path} is in use: {who} is training into it now. Wait for it to end or stop "
                              "it (then --resume continues it), or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release :meth:`lock` (closing the file drops the flock; the file stays: unlinking would race)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ reading
    def read_summary(self) -> dict[str, Any] | None:
        """The folder's summary.json, or None if it has none; ConfigError if it is not readable JSON."""
        path = self.path / SUMMARY
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is not a readable rethinkgen summary ({exc}); choose another --out") from None

    def prepare(self, run_key: str, overwrite: bool = False) -> None:
        """Check, before any work, that a new run may write here; create the folder.

        Refuses (ConfigError naming the fix) a path that is a file or not writable, and, unless
        ``overwrite``, a folder holding work that would be lost: an unfinished run with a checkpoint
        (``--resume`` continues it) or a finished run of another config. A finished run of the same
        config, or an unfinished one without a checkpoint, is simply started again. Takes the folder's
        lock (:meth:`lock`; a folder another process trains into is refused); the caller unlocks.
        """
        ensure_writable_dir(self.path, "--out")
        self.lock()
        try:
            self._check_reuse(run_key, overwrite)
        except BaseException:
            self.unlock()
            raise

    def _check_reuse(self, run_key: str, overwrite: bool) -> None:
        old = self.read_summary()
        if old is None or overwrite:
            return
        status, same = old.get("status"), old.get("run_key") == run_key
        has_checkpoint = self.checkpoint_path.exists()
        if status not in FINISHED and has_checkpoint:
            whose = "this config" if same else f"another config (run key {str(old.get('run_key'))[:12]})"
            raise ConfigError(f"{self.path} holds an unfinished run of {whose} (status {status}, "
                              f"{old.get('epochs', 0)} epochs done): continue it with `rethinkgen train --resume "
                              f"{self.path}`, or pass --overwrite to start over, or choose another --out")
        if status in FINISHED and not same:
            raise ConfigError(f"{self.path} holds a finished run of another config (run key "
                              f"{str(old.get('run_key'))[:12]}, status {status}); choose another --out, or pass "
                              "--overwrite to replace it")

    def load_resume(self) -> tuple[TrainConfig, dict[str, Any] | None, dict[str, Any]]:
        """(resolved config, trainer state of the last finished epoch or None, old summary) for ``--resume``.

        Raises ConfigError when the folder holds no run. The state is None when the run stopped before
        its first checkpoint (it then restarts from epoch 0).
        """
        from rethinkgen.sweep.checkpoint import load_checkpoint

        old = self.read_summary()
        if old is None or not isinstance(old.get("config"), dict):
            raise ConfigError(f"--resume {self.path}: no rethinkgen run there (no {SUMMARY} with a config); pass "
                              "the --out folder of an interrupted `rethinkgen train`")
        config = TrainConfig.from_dict(old["config"])
        loaded, notes = load_checkpoint(self.checkpoint_path, old.get("run_key"))
        del notes  # already issued as CheckpointWarning; an unreadable checkpoint means a restart
        return config, (loaded.payload["state"] if loaded is not None else None), old

    # ------------------------------------------------------------------ writing
    def write_summary(self, summary: dict[str, Any]) -> None:
        text = json.dumps(_json_safe(public_summary(summary)), indent=2, allow_nan=False)
        write_text_atomic(self.path / SUMMARY, text + "\n")

    def write_history(self, metrics: list[dict[str, Any]], step_losses: list) -> None:
        if metrics:
            columns = list(metrics[0])
            write_csv_atomic(self.path / METRICS, columns, ([row.get(c) for c in columns] for row in metrics))
        write_csv_atomic(self.path / STEP_LOSSES, ["step", "loss"], step_losses)

    def write_checkpoint(self, state: dict[str, Any]) -> None:
        from rethinkgen.sweep.checkpoint import encode, make_payload, write_atomic

        row = state["metrics"][-1] if state.get("metrics") else {"epoch": state["epoch"], "step": state["step"]}
        write_atomic(self.checkpoint_path, encode(make_payload(state["run_key"], row, [], state)))

    def remove_checkpoint(self) -> None:
        from rethinkgen.sweep.checkpoint import remove_checkpoints

        remove_checkpoints(self.checkpoint_path)


class RunDirWriter:
    """Trainer callback that keeps a :class:`RunDir` up to date, and saves what there is on a stop.

    ``on_epoch_end(row, step_losses, trainer)`` (see :meth:`rethinkgen.train.loop.Trainer.fit`) keeps the
    trainer's epoch-end checkpoint in memory and writes the files at most every ``csv_every_s`` /
    ``checkpoint_every_s`` seconds; :meth:`on_train_end` writes the final summary and drops the
    checkpoint; :meth:`stop` records an early end (``interrupted`` or ``failed``). ``extra`` fields
    (e.g. the CPU thread count) are added to every summary written.
    """

    def __init__(self, run_dir: RunDir, config: TrainConfig, *, extra: dict[str, Any] | None = None,
                 csv_every_s: float = 2.0, checkpoint_every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from rethinkgen.train.config import run_key

        self.dir, self.config, self.extra = run_dir, config, dict(extra or {})
        self.run_key = run_key(config)
        self.csv_every_s, self.checkpoint_every_s, self.clock = csv_every_s, checkpoint_every_s, clock
        self.trainer: Any = None
        self.state: dict[str, Any] | None = None  # checkpoint of the last finished epoch
        self.last_csv = self.last_checkpoint = -math.inf
        self.saved_epoch: int | None = None  # epoch of the checkpoint on disk

    def start(self, state: dict[str, Any] | None = None) -> None:
        """Write the "running" summary before any work (with the resumed state, if any)."""
        self.state = state
        if state is not None:
            self.saved_epoch = int(state["epoch"])
        self.last_checkpoint = self.clock()  # the first periodic checkpoint after checkpoint_every_s of work
        self.dir.write_summary(self._bare_summary("running"))

    def on_epoch_end(self, row: dict[str, Any], step_losses: list, trainer: Any) -> None:
        self.trainer = trainer
        self.state = trainer.checkpoint()
        now = self.clock()
        if now - self.last_csv >= self.csv_every_s:
            self.dir.write_history(self.state["metrics"], self.state["step_losses"])
            self.dir.write_summary({**trainer.summary(), "status": "running", **self.extra})
            self.last_csv = now
        if now - self.last_checkpoint >= self.checkpoint_every_s:
            self._save_checkpoint()
            self.last_checkpoint = now

    def on_train_end(self, summary: dict[str, Any]) -> None:
        self.finish(summary)

    def finish(self, summary: dict[str, Any]) -> None:
        """The run ended as intended: full history, final summary, no checkpoint."""
        self.dir.write_history(summary["metrics"], summary["step_losses"])
        self.dir.write_summary({**summary, **self.extra})
        self.dir.remove_checkpoint()

    def stop(self, status: str, error: BaseException | None = None) -> dict[str, Any]:
        """Record an early end (``interrupted`` | ``failed``): the last finished epoch's checkpoint, its
        history and a summary with ``status`` (and ``error``). Returns the summary written."""
        summary = self._stopped_summary(status)
        if error is not None:
            summary["error"] = "".join(traceback.format_exception_only(type(error), error)).strip()
        if self.state is not None:
            self._save_checkpoint()
            self.dir.write_history(self.state["metrics"], self.state["step_losses"])
        self.dir.write_summary(summary)
        return summary

    # ------------------------------------------------------------------ helpers
    def _save_checkpoint(self) -> None:
        if self.state is not None and self.saved_epoch != self.state["epoch"]:
            self.dir.write_checkpoint(self.state)
            self.saved_epoch = int(self.state["epoch"])

    def _bare_summary(self, status: str) -> dict[str, Any]:
        state = self.state or {}
        return {"status": status, "epochs": state.get("epoch", 0), "steps": state.get("step", 0),
                "config": self.config.to_dict(), "run_key": self.run_key, **self.extra}

    def _stopped_summary(self, status: str) -> dict[str, Any]:
        """The trainer's own summary as of the last finished epoch (restored from its checkpoint)."""
        if self.trainer is not None and self.state is not None:
            try:
                self.trainer.restore(self.state)
                return {**self.trainer.summary(), **self.extra, "status": status}
            except Exception:  # a trainer broken by the error itself: fall back to the bare fields
                pass
        return self._bare_summary(status)
