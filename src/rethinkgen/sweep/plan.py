"""What ``sweep run`` will do with a spec's runs: which train together, on which device, in what memory,
computed how (precision, memory format, captured step, threads: :mod:`rethinkgen.train.numerics`).

:func:`work_plan` makes the same decisions as the driver (:mod:`rethinkgen.sweep.runner`: which runs
fuse, :func:`~rethinkgen.sweep.runner.plan_groups` with the executor's group limits) without
starting anything, so ``sweep plan`` shows exactly the work items ``sweep run`` would hand out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rich.table import Table

from rethinkgen.sweep.executors import Executor, group_key
from rethinkgen.sweep.runner import fuses, plan_groups
from rethinkgen.sweep.sizing import MAX_GROUP_CPU, group_memory

__all__ = ["PlanItem", "fused_alternative", "numerics_lines", "plan_table", "work_plan"]

GB = 1e9


@dataclass(frozen=True)
class PlanItem:
    """One work item of ``sweep run``: runs trained together (or one alone) on one device."""

    runs: tuple[Any, ...]  # the PlannedRuns
    device: str  # "cpu" | "cuda" | "cuda (GPU 0 or 1)" ...
    memory: int | None  # estimated device bytes of the item (GPU items only)
    numerics: str = "unknown here"  # how its runs will be computed (train.numerics.describe), e.g.
    # "cuda, bf16 autocast, channels_last, CUDA graph, TF32 conv"

    @property
    def model(self) -> str:
        return self.runs[0].config.model


def _device(executor: Executor, config: Any) -> str:
    if not executor.on_gpu(config):
        return "mps" if config.device == "mps" else "cpu"
    gpus = getattr(executor, "gpus", [])
    if len(gpus) > 1:
        return f"cuda (each worker on one of GPUs {', '.join(gpus)})"
    return "cuda" + (f" (GPU {gpus[0]})" if gpus else "")


def _numerics(executor: Executor, config: Any) -> str:
    """How a run of ``config`` will be computed by ``executor`` (``train.numerics.describe``): the
    executor's own answer for runs on this machine's CPU (it knows their threads), else planned for the
    device type the run goes to (a GPU that may not be visible here; the thread count is then left out,
    as the worker decides it). "unknown here" when the dataset's layout cannot be read here."""
    from rethinkgen.data.sources import dataset_layout
    from rethinkgen.errors import RethinkgenError
    from rethinkgen.train.numerics import plan_numerics

    gpu = executor.on_gpu(config)
    planned = None if gpu else executor.planned_numerics(config)
    if planned is None:
        try:
            layout = dataset_layout(config.data, config.data_options, config.data_dir)
        except RethinkgenError:
            return "unknown here"
        kind = "cuda" if gpu else ("mps" if config.device == "mps" else "cpu")
        planned = replace(plan_numerics(config, kind, layout), threads=None)
    return planned.describe()


def work_plan(runs: list[Any], executor: Executor, fuse: bool | None) -> list[PlanItem]:
    """The work items ``sweep run`` would make of ``runs`` with ``executor`` and ``--fuse`` (None: auto)."""
    fused = [run for run in runs if fuses(run.config, fuse, executor)]
    groups = plan_groups(fused, group_key(), executor.max_group, executor.parallelism()) if fused else []
    in_groups = {id(run) for run in fused}
    groups += [[run] for run in runs if id(run) not in in_groups]
    items = []
    for group in groups:
        config = group[0].config
        memory = group_memory([run.config for run in group]) if executor.on_gpu(config) else None
        items.append(PlanItem(tuple(group), _device(executor, config), memory, _numerics(executor, config)))
    return items


def plan_table(items: list[PlanItem], executor: Executor) -> Table:
    """Groups one per row, runs that train alone summed per model and device."""
    table = Table(title=f"how `sweep run` trains them ({executor.describe()})")
    for name, justify in (("item", "right"), ("model", "left"), ("runs", "right"), ("trained", "left"),
                          ("device", "left"), ("memory (est.)", "right")):
        table.add_column(name, justify=justify)
    alone: dict[tuple[str, str], list[PlanItem]] = {}
    n = 0
    for item in items:
        if len(item.runs) == 1:
            alone.setdefault((item.model, item.device), []).append(item)
            continue
        n += 1
        memory = "—" if item.memory is None else f"{item.memory / GB:.1f} GB"
        table.add_row(str(n), item.model, str(len(item.runs)), "together (fused)", item.device, memory)
    for (model, device), singles in alone.items():
        memory = singles[0].memory
        table.add_row("—", model, str(len(singles)), "each alone", device,
                      "—" if memory is None else f"{memory / GB:.1f} GB each")
    return table


def numerics_lines(items: list[PlanItem]) -> list[str]:
    """One line per way the items' runs will be computed (precision, memory format, captured step,
    threads; not part of the run key, recorded with each run), with the runs it covers, e.g.
    ``computed as: cuda, bf16 autocast, channels_last, CUDA graph, TF32 conv (23 runs)``."""
    runs: dict[str, int] = {}
    for item in items:
        runs[item.numerics] = runs.get(item.numerics, 0) + len(item.runs)
    return [f"computed as: {numerics} ({n} run{'s' if n != 1 else ''})" for numerics, n in runs.items()]


def fused_alternative(runs: list[Any]) -> str:
    """How ``--fuse on`` in one CPU process would group ``runs`` (shown when they would not be fused)."""
    groups = plan_groups(runs, group_key(), MAX_GROUP_CPU)
    fused = [g for g in groups if len(g) > 1]
    if not fused:
        return "fused training: none of these runs can train together (see rethinkgen.train.fused.why_not_fused)"
    sizes = ", ".join(f"{g[0].config.model} x{len(g)}" for g in fused)
    alone = len(runs) - sum(len(g) for g in fused)
    return (f"fused training (--fuse on, one CPU process): {len(fused)} group(s): {sizes}; {alone} run(s) "
            "alone (dropout, or no partner)")
