"""The Ray executor: one Ray core task per work item; the driver drains an event actor and writes the store.

Ray is optional (``pip install 'rethinkgen[ray]'``) and imported only here, lazily.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from rethinkgen.errors import RethinkgenError
from rethinkgen.sweep.executors import Executor
from rethinkgen.sweep.interrupts import GUARD
from rethinkgen.sweep.worker import Event, WorkItem, execute_item

__all__ = ["RAY_PIP", "RayExecutor", "import_ray"]

RAY_PIP = "pip install 'rethinkgen[ray]'"


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

    def task_options(self, item: WorkItem) -> dict[str, float]:
        """The Ray resources one work item asks for, so that Ray places it on a node that has them.

        A run on W > 1 processes (``world_size``, DistributedDataParallel: ImageNet) asks for W whole GPUs
        — a task is never split over nodes, so Ray starts it on a node with W free GPUs, where it starts
        its W ranks (:func:`rethinkgen.train.streaming.spawn.train_spawned`) — unless it trains on the
        CPU (``device = "cpu"``, or a cluster without GPUs), and for W x (1 + ``workers``) CPUs (each
        rank and its DataLoader processes). Other items ask for one CPU and the executor's GPU fraction.
        """
        world = max(int(t.config.world_size or 1) for t in item.tasks)
        if world == 1:
            return {"num_cpus": 1, "num_gpus": self._gpus_per_task()}
        config = item.tasks[0].config
        on_gpu = config.device == "cuda" or (config.device == "auto" and self._gpus_per_task() > 0)
        return {"num_cpus": float(world * (1 + (config.workers or 0))), "num_gpus": float(world) if on_gpu else 0.0}

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
        capacity = self.parallelism

        events = ray.remote(num_cpus=0)(_EventSink).remote()
        remote = ray.remote(_ray_entry)  # resources per item: task_options
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
                    ref = remote.options(max_retries=self.max_retries, **self.task_options(item)).remote(
                        item, events, self.threads)
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
