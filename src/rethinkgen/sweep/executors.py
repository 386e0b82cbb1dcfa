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
transport: the local process pool gives each spawned worker its own pipe (a worker that dies
mid-message breaks only its own); Ray tasks put events into a small actor without waiting, and wait
for all their puts before they return (a plain actor runs one caller's calls in order), so when a
task's reference is ready all its events can be drained, in order. Because the checkpoint bytes travel
with the epoch event, Ray workers need no file system shared with the driver.

- :class:`LocalExecutor` — ``jobs=1``: in this process; ``jobs=N``: N spawned worker processes, each
  with ``torch.set_num_threads(max(1, cores // N))``.
- :class:`RayExecutor` — Ray core tasks (``num_cpus=1`` and a ``num_gpus`` fraction per run when the
  cluster has GPUs; ``max_retries`` re-runs a task whose worker died). Starts a local cluster when no
  address is given. Ray is optional and imported only here, lazily.

Fused runs (design §5): the runner groups runs that can train together (same architecture and data
shape: :func:`rethinkgen.train.fused.fuse_key`) into one :class:`WorkItem` of at most
:meth:`Executor.max_group` runs, and :func:`execute_group` trains it with the fused multi-run trainer,
emitting the same events per run as :func:`execute_run`. :func:`register_group_trainer` replaces it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rethinkgen.errors import RethinkgenError
from rethinkgen.sweep.checkpoint import decode, encode, make_payload
from rethinkgen.train.config import TrainConfig

__all__ = ["GUARD", "Event", "Executor", "LocalExecutor", "RayExecutor", "RunTask", "WorkItem", "execute_item",
           "execute_group", "execute_run", "make_executor", "register_group_trainer", "group_key"]

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
    kind: str  # started | epoch | finished | failed (| item_done, internal to the process pool)
    run_key: str | None
    data: dict[str, Any] = field(default_factory=dict)
    worker: int | None = None


Emit = Callable[[Event], None]


# --------------------------------------------------------------------------------- interrupts
class InterruptGuard:
    """SIGINT and SIGTERM become KeyboardInterrupt, except inside :meth:`shield`, where they are held
    until the shielded block ends. The driver shields "receive an event and record it" so a Ctrl-C can
    never split an event (checkpoint written, row not committed, next event recorded: a missing row)."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None
        self.previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.depth > 0:
            self.pending = signum
            return
        raise KeyboardInterrupt(f"signal {signum}")

    def install(self) -> bool:
        """Install the handlers (main thread only; elsewhere Python's defaults stay)."""
        import threading

        if threading.current_thread() is not threading.main_thread() or self.previous:
            return False
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handler)
        return True

    def uninstall(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()
        self.pending = None

    @contextlib.contextmanager
    def shield(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.depth == 0 and self.pending is not None:
            self.pending = None
            raise KeyboardInterrupt("deferred signal")


GUARD = InterruptGuard()


# ------------------------------------------------------------------------------ fused-trainer hook
_GROUP_TRAINER: Callable[[list[RunTask], Emit], None] | None = None
_GROUP_KEY: Callable[[TrainConfig], Hashable] | None = None
MAX_GROUP_CPU = 16  # runs per fused group on a CPU (chosen, not tuned: larger groups' activations leave the caches)
MAX_GROUP_CUDA = 64  # on a GPU (small models need many runs to fill it; not tuned: no GPU was available)


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
        self.emit(Event("epoch", self.task.run_key, {"row": dict(row), "step_losses": [list(p) for p in step_losses],
                                                     "checkpoint": blob}))
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


def execute_run(task: RunTask, emit: Emit, should_stop: Callable[[], bool] | None = None) -> None:
    """Train one run, reporting through ``emit``; a run that raises becomes a ``failed`` event.

    Errors raised *by* ``emit`` (the driver failing to write) are not the run's fault: they propagate.
    """
    from rethinkgen.train.loop import train

    guarded = _GuardedEmit(emit)
    emit(Event("started", task.run_key, worker_environment()))
    try:
        state = decode(task.resume)["state"] if task.resume is not None else None
        summary = train(task.config, callbacks=[_SweepCallback(task, guarded, should_stop),
                                                *_measure_callbacks(task)], resume=state, progress=False)
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

    resumes = {task.run_key: decode(task.resume)["state"] if task.resume is not None else None for task in tasks}
    finished = [t for t in tasks if (resumes[t.run_key] or {}).get("status") is not None]
    if finished:  # checkpoints of runs that had finished (a crash before the store said so): record them
        for task in finished:  # now, alone, so that nothing in the group can turn them into failures
            execute_run(task, emit, should_stop)
        tasks = [t for t in tasks if t not in finished]
        if len(tasks) < 2:
            for task in tasks:
                execute_run(task, emit, should_stop)
            return
    guarded = _GuardedEmit(emit)
    done: set[str] = set()
    environment = worker_environment()
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


# ------------------------------------------------------------------------------------ interface
class Executor:
    """Trains work items; ``run`` returns when all are done. On KeyboardInterrupt it stops its
    workers (delivering what they already finished) and re-raises."""

    name = "executor"

    def run(self, items: Iterator[WorkItem], on_event: Callable[[Event], None]) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def parallelism(self) -> int:
        """How many work items run at once (fused groups are split so that each gets one)."""
        return 1

    def accelerated(self) -> bool:
        """Whether runs with ``device = "auto"`` will train on a GPU here."""
        import torch

        return torch.cuda.is_available()

    def max_group(self) -> int:
        """The most runs in one fused group: more on a GPU, which small models leave idle."""
        return MAX_GROUP_CUDA if self.accelerated() else MAX_GROUP_CPU


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

    def parallelism(self) -> int:
        return self.jobs

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


def _worker_main(wid: int, conn: Any, stop: Any, threads: int, parent: int) -> None:
    """Entry point of a pool worker process (spawned; imports torch fresh).

    It talks to the driver over its own pipe only: work items in, events out. ``send`` blocks while
    the driver is busy (back-pressure) and fails once the driver is gone, and then the worker exits.
    """
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle (see the launcher)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    torch.set_num_threads(threads)

    def emit(event: Event) -> None:
        if os.getppid() != parent:  # the driver died: nobody will write what we compute
            os._exit(3)
        event.worker = wid
        try:
            conn.send(event)
        except OSError:  # broken pipe: the driver is gone
            os._exit(3)

    while True:
        try:
            if not conn.poll(1.0):
                if os.getppid() != parent or stop.value:
                    return
                continue
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        try:
            execute_item(item, emit, should_stop=lambda: bool(stop.value))
        except _Stop:
            return
        emit(Event("item_done", None))


def _sigint_immune_python() -> str | None:
    """A two-line ``/bin/sh`` launcher that starts this Python with SIGINT ignored, or None.

    A Ctrl-C at the terminal reaches the whole foreground process group. A worker must not die of it,
    least of all while it is still importing torch (before it can set its own handler): the driver
    stops the workers itself. An ignored SIGINT survives ``exec`` (a blocked one does not), and
    ignoring it in the driver around the spawn instead would lose a Ctrl-C meant for the driver.
    """
    if os.name != "posix" or not os.path.exists("/bin/sh"):
        return None
    folder = tempfile.mkdtemp(prefix="rethinkgen-workers-")
    path = os.path.join(folder, "python")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\ntrap '' INT\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    os.chmod(path, 0o755)
    return path


class _ProcessPool:
    """``jobs`` spawned workers, each with its own duplex pipe to the driver.

    One pipe per worker, not a shared queue: a worker killed mid-message (e.g. by the OOM killer) can
    only break its own pipe — the driver sees EOF there, fails that worker's run and goes on — whereas a
    shared ``multiprocessing.Queue`` can be left corrupt or locked by a process that dies while using it.
    """

    def __init__(self, jobs: int, threads: int) -> None:
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.jobs, self.threads = jobs, threads
        self.stop = self.ctx.RawValue("b", 0)  # lock-free flag: a dying worker cannot leave it locked
        self.workers: dict[int, Any] = {}
        self.conns: dict[int, Any] = {}
        self.current: dict[int, WorkItem] = {}
        self.open_runs: dict[int, set[str]] = {}
        self.next_id = 0
        self.launcher = _sigint_immune_python()

    def _spawn(self) -> int:
        wid, self.next_id = self.next_id, self.next_id + 1
        mine, theirs = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(target=_worker_main, name=f"rethinkgen-worker-{wid}", daemon=True,
                                args=(wid, theirs, self.stop, self.threads, os.getpid()))
        from multiprocessing import spawn

        default = spawn.get_executable()
        if self.launcher is not None:
            spawn.set_executable(self.launcher)
        try:
            proc.start()
        finally:
            spawn.set_executable(default)
        theirs.close()  # so that the worker's death reads as EOF here
        self.workers[wid], self.conns[wid] = proc, mine
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
        """Record what the workers sent (waiting up to ``timeout``); False if nothing came."""
        from multiprocessing.connection import wait

        by_conn = {conn: wid for wid, conn in self.conns.items()}
        with GUARD.shield():  # receiving and recording an event is one step for Ctrl-C
            ready = wait(list(by_conn), timeout)
            for conn in ready:
                wid = by_conn[conn]
                try:
                    event = conn.recv()
                except (EOFError, OSError):  # the worker died (perhaps mid-message)
                    self._bury(wid, on_event)
                    continue
                self._handle(event, on_event)
        return bool(ready)

    def _bury(self, wid: int, on_event: Callable[[Event], None]) -> None:
        """A worker is gone: its unfinished runs fail (a rerun resumes them from their checkpoints)."""
        proc = self.workers.pop(wid)
        self.conns.pop(wid).close()
        proc.join(timeout=5)
        code = proc.exitcode
        open_runs = self.open_runs.pop(wid, set())
        if self.stop.value:  # stopping anyway (a Ctrl-C may also hit a worker still starting up): the
            open_runs = set()  # runs stay open, and the driver marks them interrupted, not failed
        for key in sorted(open_runs):
            on_event(Event("failed", key, {"error": f"worker process {proc.pid} died (exit code {code}), e.g. "
                                           "killed for memory; a rerun resumes it from its checkpoint"}))
        self.current.pop(wid, None)  # a new worker is spawned when there is work

    def _reap(self, on_event: Callable[[Event], None]) -> None:
        for wid, proc in list(self.workers.items()):
            if not proc.is_alive():
                while wid in self.conns and self._drain_one(wid, on_event):
                    pass  # what it sent before dying comes first
                if wid in self.workers:
                    with GUARD.shield():
                        self._bury(wid, on_event)

    def _drain_one(self, wid: int, on_event: Callable[[Event], None]) -> bool:
        conn = self.conns[wid]
        with GUARD.shield():
            if not conn.poll():
                return False
            try:
                event = conn.recv()
            except (EOFError, OSError):
                self._bury(wid, on_event)
                return False
            self._handle(event, on_event)
        return True

    def run(self, items: Iterator[WorkItem], on_event: Callable[[Event], None]) -> None:
        items = iter(items)
        exhausted = False
        try:
            while True:
                # hand out work; workers are spawned only when there is work for them (at most `jobs`)
                while not exhausted:
                    idle = [w for w in self.workers if w not in self.current]
                    if not idle and len(self.workers) >= self.jobs:
                        break
                    item = next(items, None)
                    if item is None:
                        exhausted = True
                        break
                    wid = idle[0] if idle else self._spawn()
                    self.current[wid] = item
                    self.open_runs[wid] = {t.run_key for t in item.tasks}
                    try:
                        self.conns[wid].send(item)  # the worker is idle, waiting in recv
                    except OSError:  # it died meanwhile: its new run fails like any run of a dead worker
                        with GUARD.shield():
                            self._bury(wid, on_event)
                if exhausted and not self.current:
                    break
                if not self._drain(on_event, timeout=0.5):
                    self._reap(on_event)
        except KeyboardInterrupt:
            self.stop.value = 1
            deadline = time.monotonic() + STOP_GRACE_S
            with contextlib.suppress(KeyboardInterrupt):
                while time.monotonic() < deadline and any(p.is_alive() for p in self.workers.values()):
                    self._drain(on_event, timeout=0.1)
            raise
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for conn in self.conns.values():
            with contextlib.suppress(Exception):
                conn.send(None)
        deadline = time.monotonic() + 2.0
        for proc in self.workers.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
        for conn in self.conns.values():
            conn.close()
        if self.launcher is not None:
            shutil.rmtree(os.path.dirname(self.launcher), ignore_errors=True)


# ---------------------------------------------------------------------------------- Ray executor
def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RethinkgenError(f"--executor ray needs Ray, which is not installed: {RAY_PIP}") from None
    return ray


class _EventSink:
    """The Ray actor between tasks and the driver: tasks ``put`` events, the driver ``take``s them.

    A plain actor (not ``ray.util.queue.Queue``, whose async actor does not keep one caller's calls
    in order): its methods run one at a time in each caller's submission order.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []

    def put(self, event: Event) -> None:
        self.events.append(event)

    def take(self) -> list[Event]:
        events, self.events = self.events, []
        return events


def _ray_entry(item: WorkItem, events: Any, threads: int | None) -> str:
    """Body of the Ray task: train the item, putting every event into the sink actor."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(threads or max(1, int(cpus)))
    in_flight: list[Any] = []

    def emit(event: Event) -> None:
        # Fire and forget (training goes on while the event travels): the sink is a plain (synchronous)
        # actor, which runs one caller's calls in submission order, so the events stay in order and,
        # once the last put below is done, all of them are in the sink.
        in_flight.append(events.put.remote(event))
        if len(in_flight) > 8:  # bound the memory held by events in transit
            ray.get(in_flight.pop(0))

    try:
        execute_item(item, emit)
    finally:
        ray.get(in_flight)
    return "done"


class RayExecutor(Executor):
    """Ray core tasks, one per work item; the driver drains an event actor and writes the store."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 gpus_per_run: float | None = None, max_retries: int = 2, threads: int | None = None) -> None:
        self.address, self.num_cpus, self.gpus_per_run = address, num_cpus, gpus_per_run
        self.max_retries, self.threads = max_retries, threads
        import_ray()  # fail early, with the pip line, before any run is touched

    def describe(self) -> str:
        return f"ray: {self.address or 'local cluster'}"

    def _gpus_per_task(self) -> float:
        """The GPU fraction each task asks for: --gpus-per-run, else 0.25 when the cluster has GPUs."""
        if self.gpus_per_run is not None:
            return self.gpus_per_run
        ray = import_ray()
        return 0.25 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0 else 0.0

    def parallelism(self) -> int:
        """Tasks in flight: what the cluster can start now (rechecked by ``run``: clusters may autoscale).
        Asked once the cluster is up (work items are made lazily in ``run``)."""
        ray = import_ray()
        if not ray.is_initialized():
            return 1
        resources = ray.cluster_resources()
        n = max(1, int(resources.get("CPU", 1)))
        gpus = self._gpus_per_task()
        return max(1, min(n, int(resources.get("GPU", 0) / gpus))) if gpus > 0 else n

    def accelerated(self) -> bool:
        """Whether the tasks get a GPU (not with --gpus-per-run 0)."""
        return self._gpus_per_task() > 0

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
        started_here = self._init(ray)
        gpus = self._gpus_per_task()
        capacity = self.parallelism

        events = ray.remote(num_cpus=0)(_EventSink).remote()
        remote = ray.remote(_ray_entry).options(num_cpus=1, num_gpus=gpus, max_retries=self.max_retries)
        pending: dict[Any, WorkItem] = {}
        open_runs: dict[str, Any] = {}
        items = iter(items)
        exhausted = False

        def drain() -> None:
            for event in ray.get(events.take.remote()):
                if event.kind in ("finished", "failed"):
                    open_runs.pop(event.run_key, None)
                on_event(event)

        limit, checked = capacity(), time.monotonic()
        try:
            while True:
                if time.monotonic() - checked > 10:
                    limit, checked = capacity(), time.monotonic()
                while not exhausted and len(pending) < limit:
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
                with GUARD.shield():
                    drain()  # a ready task's events are all in the queue already
                for ref in ready:
                    item = pending.pop(ref)
                    try:
                        ray.get(ref)
                        error = "the Ray task ended without reporting a result"
                    except Exception as exc:  # worker lost beyond max_retries, task cancelled ...
                        error = f"Ray task failed after {self.max_retries} retries: {type(exc).__name__}: {exc}"
                    with GUARD.shield():
                        drain()
                        for task in item.tasks:
                            if open_runs.get(task.run_key) is ref:
                                open_runs.pop(task.run_key)
                                on_event(Event("failed", task.run_key, {"error": error}))
        except KeyboardInterrupt:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            with contextlib.suppress(Exception, KeyboardInterrupt), GUARD.shield():
                drain()
            raise
        finally:
            with contextlib.suppress(Exception):
                ray.kill(events)
            if started_here:
                with contextlib.suppress(Exception):
                    ray.shutdown()
