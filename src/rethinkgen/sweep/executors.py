"""Executors: where a sweep's runs are trained (design §3: interchangeable behind one small interface).

An executor gets an iterator of :class:`WorkItem` (one run each today; a group of runs once the fused
multi-run trainer exists) and an ``on_event`` callback, trains every item, and calls ``on_event`` *in
the calling (driver) thread* with :class:`Event` objects:

=============  ===================================================================================
``started``    a worker picked the run up; data: the worker's code/hardware/torch versions
``epoch``      one epoch ended; data: ``row``, ``step_losses`` and ``checkpoint`` (encoded bytes)
``finished``   training ended normally (converged | max_epochs | diverged); data: ``summary``
``failed``     the run raised; data: ``error`` (the traceback)
=============  ===================================================================================

Only the driver writes the store and the checkpoint files: workers send everything back. Choice of
transport: the local process pool uses one ``multiprocessing`` queue (spawn context); Ray tasks put
events into a ``ray.util.queue.Queue`` actor (``put`` returns only once the actor holds the event, so
when a task's reference is ready all its events can be drained). Because the checkpoint bytes travel
with the epoch event, Ray workers need no file system shared with the driver.

- :class:`LocalExecutor` — ``jobs=1``: in this process; ``jobs=N``: N spawned worker processes, each
  with ``torch.set_num_threads(max(1, cores // N))``.
- :class:`RayExecutor` — Ray core tasks (``num_cpus=1`` and a ``num_gpus`` fraction per run when the
  cluster has GPUs; ``max_retries`` re-runs a task whose worker died). Starts a local cluster when no
  address is given. Ray is optional and imported only here, lazily.

Hook for the fused trainer: :func:`register_group_trainer` installs a function that trains a whole
:class:`WorkItem` of compatible runs (same architecture and data shape) at once and emits the same
events per run; the runner then groups runs with its ``key`` function.
"""

from __future__ import annotations

import contextlib
import os
import queue as queue_mod
import signal
import socket
import time
import traceback
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rethinkgen.errors import RethinkgenError
from rethinkgen.sweep.checkpoint import decode, encode, make_payload
from rethinkgen.train.config import TrainConfig

__all__ = ["Event", "Executor", "LocalExecutor", "RayExecutor", "RunTask", "WorkItem", "execute_item",
           "execute_run", "make_executor", "register_group_trainer", "group_key"]

RAY_PIP = "pip install 'rethinkgen[ray]'"
STOP_GRACE_S = 3.0  # on Ctrl-C, how long workers may take to deliver the epoch they just finished


@dataclass
class RunTask:
    """One run to train: its resolved config and, when resuming, the verified checkpoint payload."""

    run_key: str
    name: str
    config: TrainConfig
    resume: bytes | None = None  # checkpoint payload (checkpoint.encode of make_payload), or None
    checkpoint_every: int = 1  # epochs between checkpoints (the final epoch is always covered by the summary)


@dataclass
class WorkItem:
    """The unit an executor schedules: one run, or a group for the fused multi-run trainer."""

    tasks: list[RunTask]

    @property
    def label(self) -> str:
        return self.tasks[0].name if len(self.tasks) == 1 else f"{self.tasks[0].name} (+{len(self.tasks) - 1})"


@dataclass
class Event:
    kind: str  # started | epoch | finished | failed (| item_done, internal to the process pool)
    run_key: str | None
    data: dict[str, Any] = field(default_factory=dict)
    worker: int | None = None


Emit = Callable[[Event], None]


# ------------------------------------------------------------------------------ fused-trainer hook
_GROUP_TRAINER: Callable[[list[RunTask], Emit], None] | None = None
_GROUP_KEY: Callable[[TrainConfig], Hashable] | None = None


def register_group_trainer(trainer: Callable[[list[RunTask], Emit], None] | None,
                           key: Callable[[TrainConfig], Hashable] | None = None) -> None:
    """Install (or with ``None`` remove) a trainer for groups of runs sharing ``key(config)``.

    ``trainer(tasks, emit)`` must emit, per run, the same events as :func:`execute_run` (``epoch`` with
    a checkpoint payload from :func:`rethinkgen.sweep.checkpoint.make_payload`, then ``finished`` or
    ``failed``), so the store, resume and progress work unchanged.
    """
    global _GROUP_TRAINER, _GROUP_KEY
    _GROUP_TRAINER, _GROUP_KEY = trainer, key


def group_key() -> Callable[[TrainConfig], Hashable] | None:
    """The installed grouping function (None: every run is its own work item)."""
    return _GROUP_KEY if _GROUP_TRAINER is not None else None


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
        self.emit(Event("epoch", self.task.run_key, {"row": dict(row), "step_losses": [list(p) for p in step_losses],
                                                     "checkpoint": blob}))
        if self.should_stop is not None and self.should_stop():
            raise _Stop()


def execute_run(task: RunTask, emit: Emit, should_stop: Callable[[], bool] | None = None) -> None:
    """Train one run, reporting through ``emit``; a run that raises becomes a ``failed`` event.

    Errors raised *by* ``emit`` (the driver failing to write) are not the run's fault: they propagate.
    """
    from rethinkgen.train.loop import train

    emitter_error: list[BaseException] = []

    def guarded(event: Event) -> None:
        try:
            emit(event)
        except Exception as exc:
            emitter_error.append(exc)
            raise

    emit(Event("started", task.run_key, worker_environment()))
    try:
        state = decode(task.resume)["state"] if task.resume is not None else None
        summary = train(task.config, callbacks=[_SweepCallback(task, guarded, should_stop)], resume=state,
                        progress=False)
    except Exception:
        if emitter_error:
            raise
        emit(Event("failed", task.run_key, {"error": traceback.format_exc()}))
        return
    slim = {k: v for k, v in summary.items() if k not in ("metrics", "step_losses")}
    emit(Event("finished", task.run_key, {"summary": slim}))


def execute_item(item: WorkItem, emit: Emit, should_stop: Callable[[], bool] | None = None) -> None:
    """Train a work item: the fused trainer for a group when one is registered, else run by run."""
    if len(item.tasks) > 1 and _GROUP_TRAINER is not None:
        try:
            _GROUP_TRAINER(item.tasks, emit)
        except Exception:
            error = traceback.format_exc()
            for task in item.tasks:
                emit(Event("failed", task.run_key, {"error": error}))
        return
    for task in item.tasks:
        execute_run(task, emit, should_stop)


# ------------------------------------------------------------------------------------ interface
class Executor:
    """Trains work items; ``run`` returns when all are done. On KeyboardInterrupt it stops its
    workers (delivering what they already finished) and re-raises."""

    name = "executor"

    def run(self, items: Iterator[WorkItem], on_event: Callable[[Event], None]) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


def make_executor(kind: str = "local", *, jobs: int = 1, address: str | None = None,
                  threads: int | None = None, gpus_per_run: float | None = None) -> Executor:
    """``local`` (in-process for jobs=1, else a process pool) or ``ray``."""
    if jobs < 1:
        raise RethinkgenError(f"--jobs must be >= 1, got {jobs}")
    if kind == "local":
        if address is not None:
            raise RethinkgenError("--address is for --executor ray; drop it or add --executor ray")
        return LocalExecutor(jobs=jobs, threads=threads)
    if kind == "ray":
        return RayExecutor(address=address, num_cpus=jobs if jobs > 1 else None, gpus_per_run=gpus_per_run,
                           threads=threads)
    raise RethinkgenError(f"unknown executor {kind!r}; valid executors: local, ray")


# -------------------------------------------------------------------------------- local executor
class LocalExecutor(Executor):
    """In-process (``jobs=1``) or a pool of ``jobs`` spawned worker processes."""

    name = "local"

    def __init__(self, jobs: int = 1, threads: int | None = None) -> None:
        self.jobs = jobs
        self.threads = threads or (max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None)

    def describe(self) -> str:
        return "in-process" if self.jobs == 1 else f"{self.jobs} worker processes × {self.threads} threads"

    def run(self, items: Iterator[WorkItem], on_event: Callable[[Event], None]) -> None:
        if self.jobs == 1:
            import torch

            before = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                for item in items:
                    execute_item(item, on_event)
            finally:
                torch.set_num_threads(before)
            return
        _ProcessPool(self.jobs, self.threads).run(items, on_event)


def _worker_main(wid: int, tasks: Any, events: Any, stop: Any, threads: int, parent: int) -> None:
    """Entry point of a pool worker process (spawned; imports torch fresh)."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    events.cancel_join_thread()  # never hang at exit on a queue nobody reads (dead driver)
    torch.set_num_threads(threads)

    def emit(event: Event) -> None:
        if os.getppid() != parent:  # the driver died: nobody will write what we compute
            os._exit(3)
        event.worker = wid
        events.put(event)

    while True:
        try:
            item = tasks.get(timeout=1.0)
        except queue_mod.Empty:
            if os.getppid() != parent or stop.is_set():
                return
            continue
        if item is None:
            return
        try:
            execute_item(item, emit, should_stop=stop.is_set)
        except _Stop:
            return
        emit(Event("item_done", None))


class _ProcessPool:
    def __init__(self, jobs: int, threads: int) -> None:
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.jobs, self.threads = jobs, threads
        self.events = self.ctx.Queue()
        self.stop = self.ctx.Event()
        self.workers: dict[int, Any] = {}
        self.inboxes: dict[int, Any] = {}
        self.current: dict[int, WorkItem] = {}
        self.open_runs: dict[int, set[str]] = {}
        self.next_id = 0

    def _spawn(self) -> int:
        wid, self.next_id = self.next_id, self.next_id + 1
        inbox = self.ctx.Queue()
        proc = self.ctx.Process(target=_worker_main, name=f"rethinkgen-worker-{wid}", daemon=True,
                                args=(wid, inbox, self.events, self.stop, self.threads, os.getpid()))
        proc.start()
        self.workers[wid], self.inboxes[wid] = proc, inbox
        return wid

    def _handle(self, event: Event, on_event: Callable[[Event], None]) -> None:
        wid = event.worker
        if event.kind == "item_done":
            self.current.pop(wid, None)
            self.open_runs.pop(wid, None)
            return
        if event.kind in ("finished", "failed") and wid in self.open_runs:
            self.open_runs[wid].discard(event.run_key)
        on_event(event)

    def _drain(self, on_event: Callable[[Event], None], timeout: float = 0.0) -> bool:
        try:
            event = self.events.get(timeout=timeout) if timeout else self.events.get_nowait()
        except queue_mod.Empty:
            return False
        self._handle(event, on_event)
        return True

    def _reap(self, on_event: Callable[[Event], None]) -> None:
        """A worker that died without finishing its item: its open runs fail, a new worker replaces it."""
        for wid, proc in list(self.workers.items()):
            if proc.is_alive():
                continue
            while self._drain(on_event):  # what it sent before dying comes first
                pass
            code = proc.exitcode
            for key in sorted(self.open_runs.pop(wid, set())):
                on_event(Event("failed", key, {"error": f"worker process {proc.pid} died (exit code {code}), "
                                               "e.g. killed for memory; a rerun resumes from its checkpoint"}))
            self.current.pop(wid, None)
            del self.workers[wid], self.inboxes[wid]
            self._spawn()

    def run(self, items: Iterator[WorkItem], on_event: Callable[[Event], None]) -> None:
        items = iter(items)
        exhausted = False
        try:
            for _ in range(self.jobs):
                self._spawn()
            while True:
                idle = [w for w in self.workers if w not in self.current]
                while idle and not exhausted:
                    item = next(items, None)
                    if item is None:
                        exhausted = True
                        break
                    wid = idle.pop()
                    self.current[wid] = item
                    self.open_runs[wid] = {t.run_key for t in item.tasks}
                    self.inboxes[wid].put(item)
                if exhausted and not self.current:
                    break
                if not self._drain(on_event, timeout=0.5):
                    self._reap(on_event)
        except KeyboardInterrupt:
            self.stop.set()
            deadline = time.monotonic() + STOP_GRACE_S
            with contextlib.suppress(KeyboardInterrupt):
                while time.monotonic() < deadline and any(p.is_alive() for p in self.workers.values()):
                    self._drain(on_event, timeout=0.1)
            raise
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for inbox in self.inboxes.values():
            with contextlib.suppress(Exception):
                inbox.put(None)
        deadline = time.monotonic() + 2.0
        for proc in self.workers.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
        for q in [self.events, *self.inboxes.values()]:
            q.cancel_join_thread()
            q.close()


# ---------------------------------------------------------------------------------- Ray executor
def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RethinkgenError(f"--executor ray needs Ray, which is not installed: {RAY_PIP}") from None
    return ray


def _ray_entry(item: WorkItem, events: Any, threads: int | None) -> str:
    """Body of the Ray task: train the item, putting every event into the queue actor."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(threads or max(1, int(cpus)))
    execute_item(item, events.put)
    return "done"


class RayExecutor(Executor):
    """Ray core tasks, one per work item; the driver drains a queue actor and writes the store."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 gpus_per_run: float | None = None, max_retries: int = 2, threads: int | None = None) -> None:
        self.address, self.num_cpus, self.gpus_per_run = address, num_cpus, gpus_per_run
        self.max_retries, self.threads = max_retries, threads
        import_ray()  # fail early, with the pip line, before any run is touched

    def describe(self) -> str:
        return f"ray ({self.address or 'local cluster'})"

    def _init(self, ray: Any) -> bool:
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                                  "logging_level": "WARNING", "configure_logging": True}
        try:
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.num_cpus or os.cpu_count() or 1, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a local cluster"
            raise RethinkgenError(f"cannot start or reach Ray at {where}: {exc}. Check --address "
                                  "(e.g. ray://HOST:10001 or auto) or run without it for a local cluster") from None
        return True

    def run(self, items: Iterator[WorkItem], on_event: Callable[[Event], None]) -> None:
        ray = import_ray()
        from ray.util.queue import Queue

        started_here = self._init(ray)
        gpus = self.gpus_per_run
        if gpus is None:
            gpus = 0.25 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
        events = Queue()
        remote = ray.remote(_ray_entry).options(num_cpus=1, num_gpus=gpus, max_retries=self.max_retries)
        pending: dict[Any, WorkItem] = {}
        open_runs: dict[str, Any] = {}
        items = iter(items)
        exhausted = False

        def drain() -> None:
            for event in events.get_nowait_batch(events.qsize()) if events.qsize() else []:
                if event.kind in ("finished", "failed"):
                    open_runs.pop(event.run_key, None)
                on_event(event)

        try:
            while True:
                while not exhausted and len(pending) < 2 * capacity:
                    item = next(items, None)
                    if item is None:
                        exhausted = True
                        break
                    ref = remote.remote(item, events, self.threads)
                    pending[ref] = item
                    for task in item.tasks:
                        open_runs[task.run_key] = ref
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.2)
                drain()  # a ready task's events are all in the queue already
                for ref in ready:
                    item = pending.pop(ref)
                    try:
                        ray.get(ref)
                        error = "the Ray task ended without reporting a result"
                    except Exception as exc:  # worker lost beyond max_retries, task cancelled ...
                        error = f"Ray task failed after {self.max_retries} retries: {type(exc).__name__}: {exc}"
                    drain()
                    for task in item.tasks:
                        if open_runs.get(task.run_key) is ref:
                            open_runs.pop(task.run_key)
                            on_event(Event("failed", task.run_key, {"error": error}))
        except KeyboardInterrupt:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            with contextlib.suppress(Exception, KeyboardInterrupt):
                drain()
            raise
        finally:
            with contextlib.suppress(Exception):
                ray.kill(events.actor)
            if started_here:
                with contextlib.suppress(Exception):
                    ray.shutdown()
