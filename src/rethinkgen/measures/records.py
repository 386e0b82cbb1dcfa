"""Measures in the results store: which runs have which measures, and measuring a store afterwards.

A run's measures are stored at the epoch of the weights they describe (table ``measures`` of
:mod:`rethinkgen.sweep.store`), with the settings they were computed with. A measure *counts* for a run
when it is stored with a value at the run's final epoch (``epochs`` of its summary); only runs that
finished as intended (converged or max_epochs) are measured. A value stored with other settings than
the ones asked for (``--subset``, ...) does not count as done: it is computed again, so that the runs of
a store never mix values of one measure under two definitions. :func:`measure_store` fills in what is
missing from the runs' saved checkpoints (``STORE.ckpt/<run_key>.pt``, kept by ``sweep run
--keep-checkpoints``) and skips what is already stored, so an interrupted call resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rethinkgen.measures.compute import EVIDENCE_STATUSES
from rethinkgen.report.evidence import is_evidence

__all__ = ["MeasureStoreResult", "final_measures", "lacking", "lacking_note", "measure_store", "stored_settings"]


def stored_settings(row: dict) -> dict[str, Any] | None:
    """The settings a stored measure row was computed with (None for rows of stores older than the
    ``settings_json`` column: unknown)."""
    text = row.get("settings_json")
    return None if text is None else json.loads(text)


def _expected_settings(name: str, settings: Any) -> dict[str, Any]:
    """The settings ``name`` records when computed with ``settings``, as they read back from the store."""
    from rethinkgen.measures import MEASURES
    from rethinkgen.measures.context import MeasureSettings

    wanted = (settings or MeasureSettings()).subset_of(MEASURES.get(name).settings)
    return json.loads(json.dumps(wanted, sort_keys=True))


def final_measures(store: Any, runs: Sequence[dict]) -> dict[str, dict[str, float | None]]:
    """run_key -> {measure name: value} of the measures stored at each run's final epoch."""
    final = {r["run_key"]: r.get("epochs") for r in runs}
    out: dict[str, dict[str, float | None]] = {}
    for row in store.measures():
        key = row["run_key"]
        if key in final and final[key] is not None and row["epoch"] == final[key]:
            out.setdefault(key, {})[row["name"]] = row["value"]
    return out


def lacking(store: Any, names: Sequence[str], run_keys: Sequence[str] | None = None,
            force: bool = False, settings: Any = None) -> dict[str, list[str]]:
    """run_key -> the measures of ``names`` it lacks (all of them with ``force``), for every run that
    finished as intended (optionally only those of ``run_keys``). A measure stored without a value, or
    with other settings than ``settings`` (a ``MeasureSettings``; None: the defaults), is lacking."""
    runs = [r for r in store.runs(status=EVIDENCE_STATUSES) if is_evidence(r)
            and (run_keys is None or r["run_key"] in set(run_keys))]
    final = {r["run_key"]: r.get("epochs") for r in runs}
    expected = {n: _expected_settings(n, settings) for n in names}
    done: dict[str, set[str]] = {}
    for row in store.measures():
        key, name = row["run_key"], row["name"]
        if final.get(key) is not None and row["epoch"] == final[key] and name in expected \
                and row["value"] is not None and (stored_settings(row) or {}) == expected[name]:
            done.setdefault(key, set()).add(name)  # unknown settings (old store): only for a measure with none
    out = {}
    for run in runs:
        have = done.get(run["run_key"], set())
        missing = list(names) if force else [n for n in names if n not in have]
        if missing:
            out[run["run_key"]] = missing
    return out


def lacking_note(store: Any, run_keys: Sequence[str], names: Sequence[str]) -> str | None:
    """A sentence for the sweep display when runs finished before this spec asked for measures."""
    missing = lacking(store, names, run_keys)
    if not missing:
        return None
    return (f"{len(missing)} run(s) finished before their measures were asked for; measure them from their "
            f"saved checkpoints with `rethinkgen measure --store {store.path}` (checkpoints are kept with "
            "`sweep run --keep-checkpoints`)")


@dataclass
class MeasureStoreResult:
    """What one ``rethinkgen measure`` call did."""

    measured: int = 0  # runs measured in this call
    skipped: int = 0  # runs that already had every measure asked for
    no_checkpoint: list[str] = field(default_factory=list)  # names of runs without a usable final checkpoint
    unusable: list[str] = field(default_factory=list)  # "run: error" for checkpoints that cannot be measured
    failed: dict[str, int] = field(default_factory=dict)  # measure name -> runs where it raised
    seconds: float = 0.0


def measure_store(store_path: str | Path, names: Sequence[str], *, device: str = "auto", force: bool = False,
                  settings: Any = None, on_run: Callable[[dict, list], None] | None = None) -> MeasureStoreResult:
    """Compute the measures ``names`` of every finished run of the store that lacks them.

    Takes the store's sweep lock (a running sweep is refused: wait for it); ``force`` recomputes stored
    ones. ``on_run(run, results)`` is called after each run is stored (progress). Raises StoreError /
    StoreLockedError before any work when the store cannot be opened or is in use.
    """
    import time

    import torch

    from rethinkgen.measures import validate_names
    from rethinkgen.measures.compute import compute_measures, run_context
    from rethinkgen.measures.consistency import INIT_MEASURES, check_against_store
    from rethinkgen.sweep.checkpoint import load_checkpoint
    from rethinkgen.sweep.store import Store, SweepLock
    from rethinkgen.train.config import TrainConfig
    from rethinkgen.train.loop import select_device

    names = validate_names(names)
    t0 = time.perf_counter()
    result = MeasureStoreResult()
    path = Path(store_path)
    if not path.is_file():
        from rethinkgen.sweep.store import StoreError

        raise StoreError(f"no results store at {path}; create one with `rethinkgen sweep run SPEC --store {path}`")
    with Store(path) as store, SweepLock(path):
        todo = lacking(store, names, force=force, settings=settings)
        finished = [r for r in store.runs(status=EVIDENCE_STATUSES) if is_evidence(r)]
        result.skipped = len(finished) - len(todo)
        for run in finished:
            if run["run_key"] not in todo:
                continue
            loaded, _notes = load_checkpoint(store.checkpoint_dir / f"{run['run_key']}.pt", run["run_key"])
            if loaded is None or loaded.epoch != run["epochs"]:
                result.no_checkpoint.append(run.get("name") or run["run_key"])
                continue
            dev = select_device(device)
            with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
                try:  # a checkpoint of another code version (other layers), data gone, ...: say so, go on
                    config = TrainConfig.from_dict(run["config"])
                    ctx = run_context(config, loaded.payload["state"]["model"], dev, settings=settings)
                    numerics = (store.summary(run["run_key"]) or {}).get("numerics")
                    data_problem, init_problem = check_against_store(
                        ctx, run, store.epoch_rows(run["run_key"]), numerics,
                        check_init=any(n in INIT_MEASURES for n in todo[run["run_key"]]))
                except Exception as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    result.unusable.append(f"{run.get('name') or run['run_key']}: {type(exc).__name__}: {first}")
                    continue
                if data_problem is not None:
                    result.unusable.append(f"{run.get('name') or run['run_key']}: {data_problem}")
                    continue
                results = compute_measures(todo[run["run_key"]], ctx)
                for r in results:
                    if init_problem is not None and r.name in INIT_MEASURES:
                        r.value, r.error = None, init_problem
            store.add_measures(run["run_key"], loaded.epoch, [r.as_row() for r in results])
            for r in results:
                if r.error:
                    result.failed[r.name] = result.failed.get(r.name, 0) + 1
            result.measured += 1
            if on_run is not None:
                on_run(run, results)
    result.seconds = time.perf_counter() - t0
    return result
