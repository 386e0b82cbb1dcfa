"""What a worker does with a work item: train its run(s) and report every step as an :class:`Event`.

The driver (:mod:`rethinkgen.sweep.runner`) hands executors :class:`WorkItem` objects — one run, or a
group of runs that the fused multi-run trainer trains at once — and receives, in order, per run:

=============  ===================================================================================
``started``    a worker picked the run up; data: the worker's code/hardware/torch versions
``restarted``  its checkpoint was discarded (numerics differ, ``--restart-mismatched``); data: ``reason``
``epoch``      one epoch ended; data: ``row``, ``step_losses``, ``numerics`` and ``checkpoint`` (bytes)
``finished``   training ended normally (converged | max_epochs | diverged); data: ``summary``
``failed``     the run raised; data: ``error`` (the traceback, or the refusal naming its fix)
=============  ===================================================================================

Before a run resumes, the worker compares the checkpoint's numerics with its own
(:mod:`rethinkgen.train.numerics`: device type, autocast, CPU threads, compile, channels_last, TF32)
and refuses a resume that would change them, or restarts the run from scratch when the task says so.

Fused runs (design §5): :func:`execute_group` trains a group with
:func:`rethinkgen.train.fused.train_group`, emitting the same events per run as :func:`execute_run`;
:func:`register_group_trainer` replaces it.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import traceback
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from rethinkgen.sweep.checkpoint import decode, encode, make_payload
from rethinkgen.train.config import TrainConfig

__all__ = ["Emit", "Event", "RunTask", "WorkItem", "execute_group", "execute_item", "execute_run", "group_key",
           "register_group_trainer", "resume_state", "worker_environment"]


@dataclass
class RunTask:
    """One run to train: its resolved config and, when resuming, the verified checkpoint payload."""

    run_key: str
    name: str
    config: TrainConfig
    resume: bytes | None = None  # checkpoint payload (checkpoint.encode of make_payload), or None
    checkpoint_every: int = 1  # epochs between checkpoints (the final epoch is always covered by the summary)
    restart_mismatched: bool = False  # a checkpoint with other numerics than this worker's: train from scratch
    measures: tuple[str, ...] = ()  # generalization measures computed when the run ends (rethinkgen.measures)


@dataclass
class WorkItem:
    """The unit an executor schedules: one run, or a group for the fused multi-run trainer."""

    tasks: list[RunTask]

    @property
    def label(self) -> str:
        return self.tasks[0].name if len(self.tasks) == 1 else f"{self.tasks[0].name} (+{len(self.tasks) - 1})"


@dataclass
class Event:
    kind: str  # started | restarted | epoch | finished | failed (| item_done, internal to the process pool)
    run_key: str | None
    data: dict[str, Any] = field(default_factory=dict)
    worker: int | None = None


Emit = Callable[[Event], None]


# ------------------------------------------------------------------------------ fused-trainer hook
_GROUP_TRAINER: Callable[[list[RunTask], Emit], None] | None = None
_GROUP_KEY: Callable[[TrainConfig], Hashable] | None = None


def register_group_trainer(trainer: Callable[[list[RunTask], Emit], None] | None,
                           key: Callable[[TrainConfig], Hashable] | None = None) -> None:
    """Install a trainer for groups of runs sharing ``key(config)``, or with ``None`` restore the default
    (:func:`execute_group`, the fused multi-run trainer, grouped by :func:`rethinkgen.train.fused.fuse_key`).

    ``trainer(tasks, emit)`` must emit, per run, the same events as :func:`execute_run` (``epoch`` with
    a checkpoint payload from :func:`rethinkgen.sweep.checkpoint.make_payload`, then ``finished`` or
    ``failed``), so the store, resume and progress work unchanged.
    """
    global _GROUP_TRAINER, _GROUP_KEY
    _GROUP_TRAINER, _GROUP_KEY = trainer, key


def _fuse_key(config: TrainConfig) -> Hashable:
    from rethinkgen.train.fused import fuse_key

    return fuse_key(config)


def group_key() -> Callable[[TrainConfig], Hashable]:
    """The grouping function: runs with equal keys go to the group trainer together."""
    return _GROUP_KEY if _GROUP_TRAINER is not None and _GROUP_KEY is not None else _fuse_key


# ------------------------------------------------------------------------------------ the worker
class _Stop(BaseException):
    """Raised inside a worker's training loop when the driver asks it to stop (not a run failure)."""


def worker_environment() -> dict[str, Any]:
    from rethinkgen.sweep.store import environment

    return {**environment(), "pid": os.getpid(), "host": socket.gethostname()}


class _SweepCallback:
    """Trainer callback: turns every epoch into an ``epoch`` event carrying an encoded checkpoint."""

    def __init__(self, task: RunTask, emit: Emit, should_stop: Callable[[], bool] | None) -> None:
        self.task, self.emit, self.should_stop = task, emit, should_stop

    def on_epoch_end(self, row: dict[str, Any], step_losses: list, state: Any) -> None:
        epoch = int(row["epoch"])
        blob = None
        if epoch % self.task.checkpoint_every == 0:
            blob = encode(make_payload(self.task.run_key, row, step_losses, state.checkpoint()))
        numerics = getattr(state, "numerics", None)
        self.emit(Event("epoch", self.task.run_key, {"row": dict(row), "step_losses": [list(p) for p in step_losses],
                                                     "checkpoint": blob,
                                                     "numerics": numerics.to_dict() if numerics else None}))
        if self.should_stop is not None and self.should_stop():
            raise _Stop()


class _GuardedEmit:
    """``emit`` that remembers whether *it* raised: the driver failing to write is not the run's fault."""

    def __init__(self, emit: Emit) -> None:
        self.emit, self.failed = emit, False

    def __call__(self, event: Event) -> None:
        try:
            self.emit(event)
        except Exception:
            self.failed = True
            raise


def resume_state(task: RunTask, emit: Emit) -> dict[str, Any] | None:
    """The trainer state to resume ``task`` from: its checkpoint's, when the checkpoint's numerics are this
    worker's (or unrecorded, or of a finished run, which is only read back); None when there is no
    checkpoint, or when they differ and ``task.restart_mismatched`` (after a ``restarted`` event, so the
    driver drops the run's rows and checkpoint). Otherwise raises
    :class:`~rethinkgen.train.numerics.NumericsMismatchError` naming each difference and the fix."""
    from rethinkgen.train.numerics import NumericsMismatchError, check_resume, numerics_here

    if task.resume is None:
        return None
    state = decode(task.resume)["state"]
    if state.get("status") is not None:
        return state
    here = numerics_here(task.config)
    if here is None:  # the device or data cannot be resolved here: the trainer says why
        return state
    try:
        check_resume(state.get("numerics"), here, run=f"{task.name} ({task.run_key[:10]})", context="sweep")
    except NumericsMismatchError as exc:
        if not task.restart_mismatched:
            raise
        emit(Event("restarted", task.run_key, {"reason": "its checkpoint's numerics differ from this worker's ("
                                                         + "; ".join(exc.differences) + ")"}))
        return None
    return state


def execute_run(task: RunTask, emit: Emit, should_stop: Callable[[], bool] | None = None) -> None:
    """Train one run, reporting through ``emit``; a run that raises becomes a ``failed`` event, a
    resume refused for its numerics too (its message names the fix, no traceback needed).

    Errors raised *by* ``emit`` (the driver failing to write) are not the run's fault: they propagate.
    """
    from rethinkgen.train.loop import train
    from rethinkgen.train.numerics import NumericsMismatchError

    guarded = _GuardedEmit(emit)
    emit(Event("started", task.run_key, worker_environment()))
    try:
        state = resume_state(task, guarded)
        summary = train(task.config, callbacks=[_SweepCallback(task, guarded, should_stop),
                                                *_measure_callbacks(task)], resume=state, progress=False)
    except NumericsMismatchError as exc:
        emit(Event("failed", task.run_key, {"error": str(exc)}))
        return
    except Exception:
        if guarded.failed:
            raise
        emit(Event("failed", task.run_key, {"error": traceback.format_exc()}))
        return
    if task.measures:  # a run resumed from its final checkpoint ends without callbacks: measure it here
        from rethinkgen.measures.compute import measure_resumed

        measure_resumed(task.measures, task.config, state, summary)
    emit(Event("finished", task.run_key, {"summary": _slim(summary)}))


class _Finished:
    """Trainer callback: a ``finished`` event as soon as a run ends (fused runs leave their group at
    different epochs, and the store should say so then, not when the whole group is done)."""

    def __init__(self, task: RunTask, emit: Emit, done: set[str]) -> None:
        self.task, self.emit, self.done = task, emit, done

    def on_train_end(self, summary: dict[str, Any]) -> None:
        self.done.add(self.task.run_key)
        self.emit(Event("finished", self.task.run_key, {"summary": _slim(summary)}))


def _measure_callbacks(task: RunTask) -> list[Any]:
    """The callback computing the run's measures when it ends (before its ``finished`` event goes out, so
    the summary carries them), or nothing when the spec asks for none."""
    if not task.measures:
        return []
    from rethinkgen.measures.compute import MeasureCallback

    return [MeasureCallback(task.measures)]


def _slim(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary without the history (the epoch events carried it already)."""
    return {k: v for k, v in summary.items() if k not in ("metrics", "step_losses")}


def execute_group(tasks: list[RunTask], emit: Emit, should_stop: Callable[[], bool] | None = None) -> None:
    """Train runs of one fuse key at once with :func:`rethinkgen.train.fused.train_group`, emitting per
    run exactly the events :func:`execute_run` emits (design §5: the store cannot tell the difference).

    An exception inside the group fails the runs that had not finished (a rerun resumes each from its
    own checkpoint); errors raised *by* ``emit`` propagate, as in :func:`execute_run`.
    """
    from rethinkgen.train.fused import train_group
    from rethinkgen.train.numerics import NumericsMismatchError

    environment = worker_environment()
    resumes: dict[str, dict[str, Any] | None] = {}
    for task in list(tasks):  # each run's numerics checked before any of them trains (see resume_state)
        try:
            resumes[task.run_key] = resume_state(task, emit)
        except NumericsMismatchError as exc:
            emit(Event("started", task.run_key, dict(environment)))
            emit(Event("failed", task.run_key, {"error": str(exc)}))
            tasks = [t for t in tasks if t is not task]
            continue
        if task.resume is not None and resumes[task.run_key] is None:  # restarted: no checkpoint any more
            tasks = [dataclasses.replace(t, resume=None) if t is task else t for t in tasks]
    finished = [t for t in tasks if (resumes[t.run_key] or {}).get("status") is not None]
    if finished or len(tasks) < 2:  # checkpoints of runs that had finished (a crash before the store said
        for task in finished:  # so): record them now, alone, so that nothing in the group can fail them
            execute_run(task, emit, should_stop)
        tasks = [t for t in tasks if t not in finished]
        if len(tasks) < 2:
            for task in tasks:
                execute_run(task, emit, should_stop)
            return
    guarded = _GuardedEmit(emit)
    done: set[str] = set()
    for task in tasks:
        emit(Event("started", task.run_key, dict(environment)))
    callbacks = [[_SweepCallback(task, guarded, should_stop), *_measure_callbacks(task), _Finished(task, guarded, done)]
                 for task in tasks]
    try:
        summaries = train_group([task.config for task in tasks], callbacks=callbacks,
                                resumes=[resumes[task.run_key] for task in tasks])
    except Exception:
        if guarded.failed:
            raise
        error = traceback.format_exc()
        for task in tasks:
            if task.run_key not in done:
                emit(Event("failed", task.run_key, {"error": error}))
        return
    for task, summary in zip(tasks, summaries, strict=True):
        if task.run_key not in done:  # a run whose trainer ran no callbacks (none known): record it anyway
            emit(Event("finished", task.run_key, {"summary": _slim(summary)}))


def execute_item(item: WorkItem, emit: Emit, should_stop: Callable[[], bool] | None = None) -> None:
    """Train a work item: a group with the group trainer (the fused one by default), one run alone."""
    if len(item.tasks) == 1:
        execute_run(item.tasks[0], emit, should_stop)
    elif _GROUP_TRAINER is not None:
        try:
            _GROUP_TRAINER(item.tasks, emit)
        except Exception:
            error = traceback.format_exc()
            for task in item.tasks:
                emit(Event("failed", task.run_key, {"error": error}))
    else:
        execute_group(item.tasks, emit, should_stop)
