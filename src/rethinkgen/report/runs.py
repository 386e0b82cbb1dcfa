"""Plain-data helpers over stored runs: what a run is (labels, level, setting) and how runs group.

A *run* here is a plain dict as ``Store.runs()`` returns it (the ``runs`` row, the parsed ``config`` and
the summary fields, None where missing), plus two lists the report attaches: ``history`` (the epoch
rows, ``Store.epoch_rows``) and ``step_losses`` (``[(step, loss), ...]``, ``Store.step_losses``).
Figures and tables take lists of such dicts, so they can be tested without a store. Which runs are
evidence (may enter a number at all) is decided in one place, :mod:`rethinkgen.report.evidence`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any

from rethinkgen.train.config import TrainConfig

LABEL_CORRUPTIONS = ("true_labels", "partial_labels", "random_labels")
#: Config fields that never distinguish one *setting* from another: they change nothing computed, or
#: they are the axes a figure spreads its runs over (seed, corruption, level).
NON_SETTING = frozenset({"seed", "corruption", "level", "data_dir", "device", "eval_batch_size"})
_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}
#: Known class counts (for chance levels); other datasets get no chance line.
NUM_CLASSES = {"cifar10": 10, "mnist": 10, "fashion_mnist": 10, "mnist1d": 10}


def cfg(run: dict, key: str) -> Any:
    """A config value of ``run``, falling back to TrainConfig's default for keys the config lacks."""
    config = run.get("config") or {}
    return config[key] if key in config else _DEFAULTS.get(key)


def data_name(run: dict) -> str:
    return str(cfg(run, "data"))


def label_level(run: dict) -> float | None:
    """Label-corruption level p of a run: partial_labels -> p, true_labels -> 0, random_labels -> 1.

    None for input corruptions (shuffled/random pixels, gaussian) and unknown ones.
    """
    corruption = cfg(run, "corruption")
    if corruption == "true_labels":
        return 0.0
    if corruption == "random_labels":
        return 1.0
    if corruption == "partial_labels":
        level = cfg(run, "level")
        return None if level is None else float(level)
    return None


def labels_kind(run: dict) -> str | None:
    """"true" (p = 0), "random" (p = 1) or None, for Table 1's two kinds of rows."""
    level = label_level(run)
    if level == 0.0:
        return "true"
    if level == 1.0:
        return "random"
    return None


def one_per_seed(group: Iterable[dict]) -> list[dict]:
    """One run per seed of a setting's runs, preferring the named ``true_labels``/``random_labels`` run
    over an equivalent ``partial_labels`` run at p = 0 or 1 (Table 1 and Figure 2 name them so)."""
    chosen: dict[Any, dict] = {}
    for run in group:
        seed = cfg(run, "seed")
        old = chosen.get(seed)
        if old is None or (cfg(old, "corruption") == "partial_labels"
                           and cfg(run, "corruption") != "partial_labels"):
            chosen[seed] = run
    return [chosen[s] for s in sorted(chosen, key=str)]


def hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def setting_key(run: dict, drop: Iterable[str] = ()) -> tuple:
    """The run's config without the figure axes (seed, corruption, level) and ``drop``, as a tuple."""
    dropped = NON_SETTING | set(drop)
    config = {**_DEFAULTS, **(run.get("config") or {})}
    return tuple(sorted((k, hashable(v)) for k, v in config.items() if k not in dropped))


def varying_fields(keys: Sequence[tuple], exclude: Iterable[str] = ()) -> list[str]:
    """Fields whose value differs between the setting keys ``keys`` (sorted), minus ``exclude``."""
    values: dict[str, set] = defaultdict(set)
    for key in keys:
        for name, value in key:
            values[name].add(value)
    excluded = set(exclude)
    return sorted(name for name, seen in values.items() if len(seen) > 1 and name not in excluded)


def describe(key: tuple, names: Iterable[str]) -> str:
    """``"lr=0.1, weight_decay=0.0005"`` for the fields ``names`` of a setting key."""
    values = dict(key)
    return ", ".join(f"{name}={_fmt(values.get(name))}" for name in names)


def regularizers(run: dict) -> str:
    """Short description of a run's explicit regularizers ("random crop + wd 0.0005", "none")."""
    parts = []
    if cfg(run, "augment"):
        parts.append("random crop")
    if cfg(run, "flip"):
        parts.append("flip")
    if (cfg(run, "weight_decay") or 0) > 0:
        parts.append(f"wd {_fmt(cfg(run, 'weight_decay'))}")
    if (cfg(run, "dropout") or 0) > 0:
        parts.append(f"dropout {_fmt(cfg(run, 'dropout'))}")
    return " + ".join(parts) if parts else "no regularizer"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def by_data(runs: Iterable[dict]) -> dict[str, list[dict]]:
    """Runs grouped by dataset name; cifar10 first (the paper's), then alphabetical."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[data_name(run)].append(run)
    order = sorted(groups, key=lambda name: (name != "cifar10", name))
    return {name: groups[name] for name in order}


def seeds_of(runs: Iterable[dict]) -> list[int]:
    return sorted({int(cfg(run, "seed")) for run in runs if cfg(run, "seed") is not None})


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def spread(values: Sequence[float]) -> tuple[float, float, float, int]:
    """(mean, min, max, n) of the finite ``values``; NaNs when there are none."""
    good = [float(v) for v in values if finite(v)]
    if not good:
        return math.nan, math.nan, math.nan, 0
    return sum(good) / len(good), min(good), max(good), len(good)


def std(values: Sequence[float]) -> float | None:
    """Sample standard deviation of the finite ``values`` (None for fewer than two)."""
    good = [float(v) for v in values if finite(v)]
    if len(good) < 2:
        return None
    mean = sum(good) / len(good)
    return math.sqrt(sum((v - mean) ** 2 for v in good) / (len(good) - 1))


def pct(value: Any) -> float | None:
    """A stored fraction in [0, 1] as percent (None stays None)."""
    return 100.0 * float(value) if finite(value) else None


def run_wall_time(run: dict) -> float:
    """Compute time of a run in seconds: the summary's, else the last recorded epoch's."""
    if finite(run.get("wall_time_s")):
        return float(run["wall_time_s"])
    history = run.get("history") or []
    times = [row.get("wall_time_s") for row in history if finite(row.get("wall_time_s"))]
    return float(max(times)) if times else 0.0


def convergence_resolution(run: dict) -> int | None:
    """SGD steps between the whole-training-set evaluations that decide ``converged_step``.

    Every epoch end is an evaluation, and with the config's ``eval_every`` (runs made before that field
    existed have none) so is every ``eval_every``-th step: the resolution is the smaller of the two
    (train.history.convergence_resolution). Steps per epoch: between the first two recorded epochs,
    else ceil(n_train / batch_size). None when nothing is known. ``converged_step`` is the first
    *evaluated* step at which the target was reached, so the true first step lies within this many
    steps before it.
    """
    every = cfg(run, "eval_every")
    every = int(every) if finite(every) and every > 0 else None
    history = sorted(run.get("history") or [], key=lambda row: row.get("epoch") or 0)
    steps = {row.get("epoch"): row.get("step") for row in history if finite(row.get("step"))}
    n, batch = cfg(run, "n_train"), cfg(run, "batch_size")
    per_epoch = None
    if 0 in steps and 1 in steps and steps[1] > steps[0]:
        per_epoch = int(steps[1] - steps[0])
    elif finite(n) and finite(batch) and batch > 0:
        per_epoch = int(math.ceil(n / batch))
    known = [v for v in (every, per_epoch) if v is not None]
    return min(known) if known else None


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (a dataset name from a config), unique per distinct text."""
    text = str(text)
    clean = re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-")[:40]
    if clean != text:
        clean = f"{clean or 'x'}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"
    return clean
