"""Executors: where a sweep's runs are trained (design §3: interchangeable behind one small interface).

An executor gets an iterator of :class:`WorkItem` (one run, or a group for the fused multi-run
trainer) and an ``on_event`` callback, trains every item, and calls ``on_event`` *in the calling
(driver) thread* with the :class:`Event` objects a worker emits (:mod:`rethinkgen.sweep.worker`
lists them: started, restarted, epoch, finished, failed).

Only the driver writes the store and the checkpoint files: workers send everything back. Choice of
transport: the local process pool gives each spawned worker its own pipe (a worker that dies
mid-message breaks only its own); Ray tasks put events into a small actor without waiting, and wait
for all their puts before they return (a plain actor runs one caller's calls in order), so when a
task's reference is ready all its events can be drained, in order. Because the checkpoint bytes travel
with the epoch event, Ray workers need no file system shared with the driver.

- :class:`LocalExecutor` — ``jobs=1``: in this process; ``jobs=N``: N spawned worker processes
  (:mod:`rethinkgen.sweep.pool`), each with ``torch.set_num_threads(max(1, cores // N))``.
- :class:`~rethinkgen.sweep.ray_executor.RayExecutor` — Ray core tasks (``num_cpus=1`` and a
  ``num_gpus`` fraction per run when the cluster has GPUs; ``max_retries`` re-runs a task whose worker
  died). Starts a local cluster when no address is given. Ray is optional and imported lazily.

Fused runs (design §5): the runner groups runs that can train together (same architecture and data
shape: :func:`rethinkgen.train.fused.fuse_key`) into one :class:`WorkItem` of at most
:meth:`Executor.max_group` runs, and :func:`execute_group` trains it with the fused multi-run trainer,
emitting the same events per run as :func:`execute_run`. :func:`register_group_trainer` replaces it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from rethinkgen.errors import RethinkgenError
from rethinkgen.sweep.interrupts import GUARD
from rethinkgen.sweep.pool import ProcessPool
from rethinkgen.sweep.sizing import MAX_GROUP_CPU, MAX_GROUP_CUDA, group_limit
from rethinkgen.sweep.worker import (
    Event,
    RunTask,
    WorkItem,
    execute_group,
    execute_item,
    execute_run,
    group_key,
    register_group_trainer,
)

if TYPE_CHECKING:
    from rethinkgen.train.numerics import Numerics

__all__ = ["GUARD", "Event", "Executor", "LocalExecutor", "RunTask", "WorkItem", "execute_item",
           "execute_group", "execute_run", "make_executor", "register_group_trainer", "group_key"]


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

    def on_gpu(self, config: Any) -> bool:
        """Whether a run of ``config`` trains on a GPU here (``device = "cuda"``, or "auto" with one)."""
        return config.device == "cuda" or (config.device == "auto" and self.accelerated())

    def gpu_share(self) -> int:
        """How many worker processes train on each GPU at once (their groups share its memory)."""
        return 1

    def device_memory(self) -> int | None:
        """Bytes a fused group may fill on its GPU (the GPU's free memory over :meth:`gpu_share`), or None
        when the driver cannot know (no GPU here, or a cluster's)."""
        return None

    def max_group(self, configs: Any = None) -> int:
        """The most runs in one fused group of ``configs`` (one config, or the runs that may be grouped
        together): ``MAX_GROUP_CPU`` on a CPU; on a GPU as many as its memory holds
        (:func:`rethinkgen.sweep.sizing.group_limit`), at most ``MAX_GROUP_CUDA``. Without configs: the
        cap of this executor's device."""
        if configs is None:
            return MAX_GROUP_CUDA if self.accelerated() else MAX_GROUP_CPU
        first = configs[0] if isinstance(configs, list | tuple) else configs
        if not self.on_gpu(first):
            return MAX_GROUP_CPU
        return group_limit(configs, self.device_memory(), MAX_GROUP_CUDA)

    def planned_numerics(self, config: Any) -> Numerics | None:
        """The numerics a run of ``config`` will get from this executor (device type, autocast, CPU
        threads, ...; :mod:`rethinkgen.train.numerics`), or None when that is known only in the worker."""
        return None


def make_executor(kind: str = "local", *, jobs: int | None = None, address: str | None = None,
                  threads: int | None = None, gpus_per_run: float | None = None,
                  workers_per_gpu: int | None = None) -> Executor:
    """``local`` (in-process for jobs=1, else a process pool) or ``ray``.

    ``workers_per_gpu`` N: local, N worker processes on each visible GPU (``jobs`` = N x GPUs, each
    worker pinned to its GPU); ray, each task asks for 1/N of a GPU (unless ``gpus_per_run`` is given).
    """
    if jobs is not None and jobs < 1:
        raise RethinkgenError(f"--jobs must be >= 1, got {jobs}")
    if workers_per_gpu is not None and workers_per_gpu < 1:
        raise RethinkgenError(f"--workers-per-gpu must be >= 1, got {workers_per_gpu}")
    if kind == "local":
        if address is not None:
            raise RethinkgenError("--address is for --executor ray; drop it or add --executor ray")
        if gpus_per_run is not None:
            raise RethinkgenError("--gpus-per-run is for --executor ray; with the local executor use "
                                  "--workers-per-gpu N (N worker processes share each GPU)")
        return LocalExecutor(jobs=jobs, threads=threads, workers_per_gpu=workers_per_gpu)
    if kind == "ray":
        from rethinkgen.sweep.ray_executor import RayExecutor

        if workers_per_gpu is not None and gpus_per_run is None:
            gpus_per_run = 1.0 / workers_per_gpu
        return RayExecutor(address=address, num_cpus=jobs if jobs and jobs > 1 else None, gpus_per_run=gpus_per_run,
                           threads=threads)
    raise RethinkgenError(f"unknown executor {kind!r}; valid executors: local, ray")


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (indices or UUIDs)."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    count = torch.cuda.device_count()
    return listed[:count] if listed else [str(i) for i in range(count)]


# -------------------------------------------------------------------------------- local executor
class LocalExecutor(Executor):
    """In-process (``jobs=1``) or a pool of ``jobs`` spawned worker processes.

    ``workers_per_gpu`` N: N worker processes per visible GPU, each pinned to its GPU through
    ``CUDA_VISIBLE_DEVICES`` (worker i on GPU i mod G); ``jobs`` is then N x G (an explicit ``jobs``
    must agree). Without it, ``jobs`` workers all see every GPU and train on the first.
    """

    name = "local"

    def __init__(self, jobs: int | None = None, threads: int | None = None,
                 workers_per_gpu: int | None = None) -> None:
        self.gpus: list[str] = []
        if workers_per_gpu is not None:
            self.gpus = visible_gpus()
            if not self.gpus:
                raise RethinkgenError("--workers-per-gpu needs a CUDA device, and torch sees none here; use "
                                      "--jobs N for N CPU worker processes")
            if jobs is not None and jobs != workers_per_gpu * len(self.gpus):
                raise RethinkgenError(f"--jobs {jobs} and --workers-per-gpu {workers_per_gpu} disagree on "
                                      f"{len(self.gpus)} GPU(s) ({workers_per_gpu * len(self.gpus)} workers); give "
                                      "one of them")
            jobs = workers_per_gpu * len(self.gpus)
        self.jobs = jobs or 1
        self.workers_per_gpu = workers_per_gpu
        self.threads = threads or (max(1, (os.cpu_count() or 1) // self.jobs) if self.jobs > 1 else None)
        self._memory: tuple[int | None] | None = None

    def describe(self) -> str:
        text = "in-process" if self.jobs == 1 else \
            f"{self.jobs} worker processes × {self.threads} thread{'s' if self.threads != 1 else ''}"
        if self.gpus:
            text += f", {self.workers_per_gpu} per GPU on {len(self.gpus)} GPU(s)"
        return text

    def parallelism(self) -> int:
        return self.jobs

    def gpu_share(self) -> int:
        """Workers per GPU: ``workers_per_gpu`` when pinned, else all of them (they share the first GPU)."""
        return self.workers_per_gpu or self.jobs

    def device_memory(self) -> int | None:
        """The first GPU's free memory (``torch.cuda.mem_get_info``, asked once, before any worker
        starts) over the workers sharing it; None without a GPU."""
        if self._memory is None:
            import torch

            free = torch.cuda.mem_get_info(0)[0] if torch.cuda.is_available() else None
            self._memory = (None if free is None else free // self.gpu_share(),)
        return self._memory[0]

    def gpu_of_worker(self, worker: int) -> str | None:
        """The ``CUDA_VISIBLE_DEVICES`` of pool worker ``worker`` (None: not pinned, it sees all GPUs)."""
        return self.gpus[worker % len(self.gpus)] if self.gpus else None

    def planned_numerics(self, config: Any) -> Numerics | None:
        """This machine's numerics with the threads each run gets here (``--threads``, else cores / jobs
        for worker processes, else this process's)."""
        import torch

        from rethinkgen.train.numerics import numerics_here

        return numerics_here(config, threads=self.threads or torch.get_num_threads())

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
        ProcessPool(self.jobs, self.threads, self.gpu_of_worker).run(items, on_event)


def __getattr__(name: str):
    """``RayExecutor`` lives in :mod:`rethinkgen.sweep.ray_executor` (imported on first use)."""
    if name == "RayExecutor":
        from rethinkgen.sweep.ray_executor import RayExecutor

        return RayExecutor
    raise AttributeError(name)
