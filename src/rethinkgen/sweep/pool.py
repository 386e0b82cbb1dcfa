"""The local process pool behind ``sweep run --jobs N``: N spawned workers, one pipe each.

Workers are spawned (no forked torch or CUDA state), started with SIGINT ignored (the driver stops
them itself), each with ``torch.set_num_threads(threads)``; a worker notices a dead driver and exits.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from rethinkgen.sweep.interrupts import GUARD
from rethinkgen.sweep.worker import Event, WorkItem, _Stop, execute_item

__all__ = ["ProcessPool", "STOP_GRACE_S"]

STOP_GRACE_S = 3.0  # on Ctrl-C, how long workers may take to deliver the epoch they just finished


def _worker_main(wid: int, conn: Any, stop: Any, threads: int, parent: int, gpu: str | None = None) -> None:
    """Entry point of a pool worker process (spawned; imports torch fresh).

    It talks to the driver over its own pipe only: work items in, events out. ``send`` blocks while
    the driver is busy (back-pressure) and fails once the driver is gone, and then the worker exits.
    ``gpu``: the one CUDA device this worker sees (``CUDA_VISIBLE_DEVICES``, set before CUDA starts).
    """
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
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


class ProcessPool:
    """``jobs`` spawned workers, each with its own duplex pipe to the driver.

    One pipe per worker, not a shared queue: a worker killed mid-message (e.g. by the OOM killer) can
    only break its own pipe — the driver sees EOF there, fails that worker's run and goes on — whereas a
    shared ``multiprocessing.Queue`` can be left corrupt or locked by a process that dies while using it.
    """

    def __init__(self, jobs: int, threads: int, gpu_of_worker: Callable[[int], str | None] | None = None) -> None:
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.jobs, self.threads = jobs, threads
        self.gpu_of_worker = gpu_of_worker or (lambda slot: None)
        self.slots: dict[int, int] = {}  # live worker id -> its slot 0..jobs-1 (slot s: gpu_of_worker(s))
        self.stop = self.ctx.RawValue("b", 0)  # lock-free flag: a dying worker cannot leave it locked
        self.workers: dict[int, Any] = {}
        self.conns: dict[int, Any] = {}
        self.current: dict[int, WorkItem] = {}
        self.open_runs: dict[int, set[str]] = {}
        self.next_id = 0
        self.launcher = _sigint_immune_python()

    def _spawn(self) -> int:
        wid, self.next_id = self.next_id, self.next_id + 1
        taken = set(self.slots.values())  # a replacement takes a dead worker's slot (and so its GPU)
        self.slots[wid] = slot = min(s for s in range(self.jobs + 1) if s not in taken)
        mine, theirs = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(target=_worker_main, name=f"rethinkgen-worker-{wid}", daemon=True,
                                args=(wid, theirs, self.stop, self.threads, os.getpid(), self.gpu_of_worker(slot)))
        from multiprocessing import spawn

        default = spawn.get_executable()
        if self.launcher is not None:
            spawn.set_executable(self.launcher)
        try:  # a Ctrl-C waits until the child has read its start-up data (cut short, the child would die
            with GUARD.shield():  # in spawn_main with a traceback on the terminal) and is registered, so
                proc.start()  # that the shutdown stops it like any other worker
                theirs.close()  # so that the worker's death reads as EOF here
                self.workers[wid], self.conns[wid] = proc, mine
        finally:
            spawn.set_executable(default)
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
        self.slots.pop(wid, None)
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
