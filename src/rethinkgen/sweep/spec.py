"""Sweep specs: a TOML file -> the validated, resolved runs of a randomization study.

A study of the paper (Figure 1, Table 1) is a grid — models × corruptions × levels × seeds. A spec
names shared ``[defaults]`` (any :class:`~rethinkgen.train.config.TrainConfig` field), ``[grid]``
axes (lists, expanded as a cartesian product) and optional named ``[[experiment]]`` subsets, each
with its own ``defaults`` and ``grid``::

    name = "quick"
    tensorboard = "tb"      # optional: TensorBoard event files, one folder per run (relative to the spec)
    [defaults]
    data = "mnist1d"
    [grid]
    seed = [0, 1]
    [[experiment]]
    name = "label-levels"
    grid = { corruption = ["partial_labels"], level = [0.0, 0.5, 1.0] }

Precedence for a run's value of a field (later wins): top-level ``defaults`` < top-level ``grid`` <
the experiment's ``defaults`` < the experiment's ``grid`` (an experiment default therefore removes a
top-level axis for that experiment). Without ``[[experiment]]`` tables the spec is one experiment
named after the sweep. A top-level ``measures = ["l2_norm", "sharpness"]`` (or ``["all"]``) asks for
generalization measures (:mod:`rethinkgen.measures`) of every run that finishes as intended; they are
not part of any run's config or key. Runs are deduplicated by ``run_key``: a run in two experiments is trained once
and remembers both memberships. Two runs that differ only in how they are computed (:data:`NUMERICS_FIELDS`:
device, precision, ...; not part of the run key, recorded in each run's numerics) would be one run in a store,
so such a spec is refused: each value goes into a store of its own.

Validation happens before anything runs, and every problem is reported at once in one
:class:`~rethinkgen.errors.ConfigError` naming the file, the key path (``experiment[1].grid.model[0]``;
experiments are counted from 0 in file order) and the allowed values.
"""

from __future__ import annotations

import difflib
import itertools
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rethinkgen.errors import ConfigError, RethinkgenError
from rethinkgen.train.config import TrainConfig, run_key
from rethinkgen.train.validate import field_problem, field_types, normalized, precision_problem

__all__ = ["PlannedRun", "SweepSpec", "load_spec", "parse_spec", "format_value"]

TOP_KEYS = ("name", "description", "tensorboard", "measures", "defaults", "grid", "experiment")
EXPERIMENT_KEYS = ("name", "description", "defaults", "grid")
# Config fields left out of the run key (train.config.KEY_EXCLUDED) that change a run's numbers: runs that
# differ only in them are one run in a store, trained once (the refusal in ``_Builder.resolve``).
NUMERICS_FIELDS = ("device", "precision", "channels_last", "cuda_graphs", "world_size")

# Corruptions whose level is implied by the name; an explicit equal level is accepted (as resolve does).
IMPLIED_LEVEL = {"true_labels": 0.0, "random_labels": 1.0}

@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its resolved config and where it came from."""

    run_key: str  # sha256 of the canonical resolved config (train.config.run_key)
    name: str  # "EXPERIMENT/axis=value,..." (the first experiment that produced it)
    experiment: str  # first experiment that produced it
    experiments: tuple[str, ...]  # every experiment that produced it (deduplicated by run_key)
    config: TrainConfig  # resolved: no None defaults left (train.loop.resolve_config)
    axes: dict[str, Any] = field(default_factory=dict)  # this run's grid values


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the name stored with every run and the deduplicated runs, in file order."""

    name: str
    description: str
    path: str
    runs: tuple[PlannedRun, ...]
    tensorboard: str | None = None  # folder for TensorBoard event files, one subfolder per run (a sink only)
    measures: tuple[str, ...] = ()  # generalization measures computed when each run ends (rethinkgen.measures)

    def __len__(self) -> int:
        return len(self.runs)


# ------------------------------------------------------------------------------------- loading
def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """Read, validate, expand and resolve the sweep spec at ``path``.

    ``overrides`` (e.g. ``{"device": "cpu", "data_dir": "data"}`` from the command line) replace that
    field in every run; they are validated like spec values. A relative ``data_dir`` in the spec is
    taken relative to the spec file's folder.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"sweep spec {path} does not exist; pass the path of a TOML spec "
                          "(examples: configs/*.toml)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read sweep spec {path}: {exc.strerror}") from None
    return parse_spec(text, source=str(path), overrides=overrides, base_dir=path.parent)


def parse_spec(text: str, *, source: str = "<spec>", overrides: dict[str, Any] | None = None,
               base_dir: Path | None = None) -> SweepSpec:
    """Like :func:`load_spec` on the TOML ``text``; ``source`` names it in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return _Builder(doc, source, overrides or {}, base_dir).build()


def format_value(value: Any) -> str:
    """A short, stable text for a grid value in run names (``0.2``, ``mlp_1x512``, ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={format_value(v)}" for k, v in sorted(value.items())) + "}"
    return str(value)


def _shown(value: Any) -> str:
    return "unset" if value is None else format_value(value)


# ------------------------------------------------------------------------------ field typing
FIELD_TYPES = field_types()  # TrainConfig field -> (base type, optional); values checked by train.validate


def _registries() -> dict[str, Any]:
    from rethinkgen.data.corruptions import CORRUPTIONS
    from rethinkgen.data.sources import DATASETS
    from rethinkgen.models import MODELS

    return {"data": DATASETS, "model": MODELS, "corruption": CORRUPTIONS}


def _suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------------- builder
INVALID = object()  # stands for a value already reported, so combinations with it are not checked


@dataclass
class _Value:
    value: Any
    where: str  # key path, e.g. "experiment[1].grid.model[0]"


class _Builder:
    """Collects every problem of a spec, then expands and resolves it."""

    def __init__(self, doc: dict, source: str, overrides: dict[str, Any], base_dir: Path | None) -> None:
        self.doc = doc
        self.source = source
        self.overrides = overrides
        self.base_dir = base_dir
        self.problems: list[str] = []
        self.registries = _registries()

    def problem(self, where: str, message: str) -> None:
        text = f"{where}: {message}" if where else message
        if text not in self.problems:
            self.problems.append(text)

    def fail_if_problems(self) -> None:
        if self.problems:
            n = len(self.problems)
            raise ConfigError(f"{self.source}: {n} problem{'s' if n > 1 else ''} in the sweep spec:\n  - "
                              + "\n  - ".join(self.problems))

    # -------------------------------------------------------------------- values
    def check_value(self, key: str, value: Any, where: str) -> tuple[bool, Any]:
        """Validate one field value; returns (ok, converted value)."""
        if key not in FIELD_TYPES:
            valid = sorted(FIELD_TYPES)
            self.problem(where, f"unknown config key {key!r}{_suggest(key, valid)}; valid keys: "
                         + ", ".join(valid))
            return False, value
        problem = field_problem(key, value)  # the one validator: type and allowed values
        if problem is not None:
            self.problem(where, problem)
            return False, value
        value = normalized(key, value)  # 1 and 1.0 must give the same run_key
        if key in self.registries:
            reg = self.registries[key]
            if value not in reg:
                self.problem(where, f"unknown {reg.kind} {value!r}{_suggest(value, reg.names())}; valid "
                             f"{reg.kind}s: {', '.join(reg.names())}")
                return False, value
        if key == "data_dir" and self.base_dir is not None and not Path(value).expanduser().is_absolute():
            value = str((self.base_dir / Path(value)).resolve())
        return True, value

    def table(self, obj: Any, where: str) -> dict[str, Any]:
        if obj is None:
            return {}
        if not isinstance(obj, dict):
            self.problem(where, f"must be a table, got {obj!r}")
            return {}
        return obj

    def defaults(self, obj: Any, where: str) -> dict[str, _Value]:
        out: dict[str, _Value] = {}
        for key, value in self.table(obj, where).items():
            ok, value = self.check_value(key, value, f"{where}.{key}")
            if key in FIELD_TYPES:
                out[key] = _Value(value if ok else INVALID, f"{where}.{key}")
        return out

    def grid(self, obj: Any, where: str) -> dict[str, list[_Value]]:
        out: dict[str, list[_Value]] = {}
        for key, values in self.table(obj, where).items():
            if not isinstance(values, list):  # a scalar is a one-value axis
                values = [values]
                paths = [f"{where}.{key}"]
            else:
                paths = [f"{where}.{key}[{i}]" for i in range(len(values))]
            if not values:
                self.problem(f"{where}.{key}", "an empty axis would make no runs; give at least one value "
                             "or remove the key")
                continue
            axis = []
            for value, path in zip(values, paths, strict=True):
                ok, value = self.check_value(key, value, path)
                axis.append(_Value(value if ok else INVALID, path))
            if key in FIELD_TYPES:
                out[key] = axis
        return out

    def measures(self, value: Any) -> tuple[str, ...]:
        """The top-level ``measures = [...]`` list: registry names (``rethinkgen list measures``) or "all"."""
        from rethinkgen.measures import MEASURES, validate_names

        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem("measures", f"must be a list of measure names, got {value!r}; e.g. measures = "
                         "[\"l2_norm\", \"sharpness\"] or [\"all\"] (rethinkgen list measures)")
            return ()
        unknown = [v for v in value if v != "all" and v not in MEASURES]
        for i, v in enumerate(value):
            if v in unknown:
                self.problem(f"measures[{i}]", f"unknown measure {v!r}{_suggest(v, MEASURES.names())}; valid "
                             f"measures: all, {', '.join(MEASURES.names())}")
        return () if unknown else validate_names(value)

    # ----------------------------------------------------------------- structure
    def build(self) -> SweepSpec:
        doc = self.doc
        for key in doc:
            if key not in TOP_KEYS:
                hint = ("; TrainConfig fields go under [defaults] or [grid]" if key in FIELD_TYPES else "")
                self.problem(key, f"unknown top-level key{_suggest(key, TOP_KEYS)}; valid: "
                             f"{', '.join(TOP_KEYS)}{hint}")
        name = doc.get("name", Path(self.source).stem)
        if not isinstance(name, str) or not name:
            self.problem("name", f"must be a non-empty string, got {name!r}")
            name = Path(self.source).stem
        description = doc.get("description", "")
        if not isinstance(description, str):
            self.problem("description", f"must be a string, got {description!r}")
            description = ""
        tensorboard = doc.get("tensorboard")
        if tensorboard is not None:
            if not isinstance(tensorboard, str) or not tensorboard:
                self.problem("tensorboard", f"must be a folder path (a string), got {tensorboard!r}")
                tensorboard = None
            elif self.base_dir is not None and not Path(tensorboard).expanduser().is_absolute():
                tensorboard = str((self.base_dir / Path(tensorboard)).resolve())
        measures = self.measures(doc.get("measures", []))
        top_defaults = self.defaults(doc.get("defaults"), "defaults")
        top_grid = self.grid(doc.get("grid"), "grid")
        cli = {}
        for key, value in self.overrides.items():
            ok, value = self.check_value(key, value, f"--{key.replace('_', '-')}")
            if ok:
                cli[key] = _Value(value, f"--{key.replace('_', '-')}")

        experiments = doc.get("experiment")
        if experiments is None:
            experiments = [{"name": name}]
            paths = [""]
        elif not isinstance(experiments, list) or not all(isinstance(e, dict) for e in experiments):
            self.problem("experiment", "must be an array of tables ([[experiment]] sections)")
            experiments, paths = [], []
        else:
            paths = [f"experiment[{i}]" for i in range(len(experiments))]
            if not experiments:
                self.problem("experiment", "is empty: add [[experiment]] sections or remove the key")

        combos: list[tuple[str, dict[str, _Value], dict[str, Any]]] = []  # (experiment, values, axes)
        seen_names: set[str] = set()
        for exp, path in zip(experiments, paths, strict=True):
            prefix = f"{path}." if path else ""
            for key in exp:
                if key not in EXPERIMENT_KEYS:
                    hint = ("; put config fields in its defaults or grid" if key in FIELD_TYPES else "")
                    self.problem(f"{prefix}{key}", f"unknown experiment key{_suggest(key, EXPERIMENT_KEYS)};"
                                 f" valid: {', '.join(EXPERIMENT_KEYS)}{hint}")
            exp_name = exp.get("name", f"experiment{len(seen_names)}")
            if not isinstance(exp_name, str) or not exp_name or "/" in exp_name:
                self.problem(f"{prefix}name", f"must be a non-empty string without '/', got {exp_name!r}")
                exp_name = f"experiment{len(seen_names)}"
            if exp_name in seen_names:
                self.problem(f"{prefix}name", f"experiment name {exp_name!r} is used twice; names must differ")
            seen_names.add(exp_name)
            exp_defaults = self.defaults(exp.get("defaults"), f"{prefix}defaults") if path else {}
            exp_grid = self.grid(exp.get("grid"), f"{prefix}grid") if path else {}
            # precedence: defaults < grid < experiment defaults < experiment grid < command line
            base = dict(top_defaults)
            axes = {k: v for k, v in top_grid.items() if k not in exp_defaults}
            axes.update(exp_grid)
            base.update(exp_defaults)
            for k in cli:
                axes.pop(k, None)
            base.update(cli)
            keys = list(axes)
            for combo in itertools.product(*(axes[k] for k in keys)):
                values = dict(base)
                values.update(zip(keys, combo, strict=True))
                combos.append((exp_name, values, {k: v.value for k, v in zip(keys, combo, strict=True)}))

        for _, values, _ in combos:
            self.check_combination(values)
        self.fail_if_problems()
        runs = self.resolve(combos)
        self.fail_if_problems()
        return SweepSpec(name=name, description=description, path=self.source, runs=tuple(runs),
                         tensorboard=tensorboard, measures=measures)

    # ------------------------------------------------------------- combinations
    def lookup(self, values: dict[str, _Value], key: str) -> tuple[Any, str]:
        if key in values:
            return values[key].value, values[key].where
        return getattr(TrainConfig(), key), f"default {key}"

    def check_combination(self, values: dict[str, _Value]) -> None:
        """Problems that involve two fields: level vs corruption, model vs data, augmentation vs data."""
        # A value already reported as invalid is INVALID here: checks involving it are skipped.
        corruption, c_where = self.lookup(values, "corruption")
        data, d_where = self.lookup(values, "data")
        model, m_where = self.lookup(values, "model")
        corruptions, datasets, models = (self.registries[k] for k in ("corruption", "data", "model"))
        (precision, p_where), (amp, a_where) = self.lookup(values, "precision"), self.lookup(values, "amp")
        if INVALID not in (precision, amp) and (problem := precision_problem(precision, amp)) is not None:
            self.problem(p_where, f"{problem} ({a_where})")
        if corruption in corruptions:
            takes = corruptions.get(corruption).takes_level
            if "level" in values:
                level = values["level"]
                if level.value is not INVALID and not takes and IMPLIED_LEVEL.get(corruption) != level.value:
                    implied = IMPLIED_LEVEL.get(corruption)
                    extra = f" (its level is {implied:g})" if implied is not None else ""
                    levelled = [n for n in corruptions.names() if corruptions.get(n).takes_level]
                    self.problem(level.where, f"level {level.value:g} given for corruption {corruption!r} "
                                 f"({c_where}), which takes no level{extra}; corruptions with a level: "
                                 f"{', '.join(levelled)} (put level axes in an experiment of their own)")
            elif takes:
                self.problem(c_where, f"corruption {corruption!r} needs a level in [0, 1]: add `level` to "
                             "the defaults or the grid")
        if data not in datasets:
            return
        layout = datasets.get(data).layout
        if layout not in ("image", "signal", "vector"):
            return  # decided by the user's file (npz): resolve_config and the trainer check it
        if model in models and layout not in models.get(model).layouts:
            fits = [n for n in models.names() if layout in models.get(n).layouts]
            self.problem(m_where, f"model {model!r} takes {'/'.join(models.get(model).layouts)} inputs but "
                         f"dataset {data!r} ({d_where}) is {layout} data; models for {layout} data: "
                         f"{', '.join(fits)}")
        if layout != "image":
            images = [n for n in datasets.names() if datasets.get(n).layout == "image"]
            for key in ("augment", "flip", "crop"):
                if key in values and values[key].value is not INVALID and values[key].value:
                    self.problem(values[key].where, f"{key} = {format_value(values[key].value)} needs image "
                                 f"data but dataset {data!r} ({d_where}) has layout {layout}; image datasets: "
                                 f"{', '.join(images)} (or set {key} = {'0' if key == 'crop' else 'false'})")

    # ------------------------------------------------------------------- resolve
    def resolve(self, combos: list[tuple[str, dict[str, _Value], dict[str, Any]]]) -> list[PlannedRun]:
        from rethinkgen.train.loop import resolve_config

        by_key: dict[str, dict[str, Any]] = {}
        for exp_name, values, axes in combos:
            label = exp_name + ("/" + ",".join(f"{k}={format_value(v)}" for k, v in axes.items())
                                if axes else "")
            try:
                resolved = resolve_config(TrainConfig(**{k: v.value for k, v in values.items()}))
            except RethinkgenError as exc:
                self.problem(f"run {label}", str(exc).replace("\n", " "))
                continue
            key = run_key(resolved)
            first = by_key[key]["config"] if key in by_key else None
            differ = [f for f in NUMERICS_FIELDS if first is not None and getattr(resolved, f) != getattr(first, f)]
            if differ:
                what = ", ".join(f"{f} ({_shown(getattr(first, f))} vs {_shown(getattr(resolved, f))})" for f in differ)
                self.problem(f"run {label}", f"differs from run {by_key[key]['name']} only in {what}, which is not "
                             "part of the run key (how a run is computed; recorded in its numerics): the two would "
                             f"be one run in a store. Set {' and '.join(differ)} in [defaults] and run each value "
                             "into a store of its own")
                continue
            if key in by_key:
                if exp_name not in by_key[key]["experiments"]:
                    by_key[key]["experiments"].append(exp_name)
                continue
            by_key[key] = {"name": label, "experiment": exp_name, "experiments": [exp_name],
                           "config": resolved, "axes": axes}
        return [PlannedRun(run_key=k, name=v["name"], experiment=v["experiment"],
                           experiments=tuple(v["experiments"]), config=v["config"], axes=v["axes"])
                for k, v in by_key.items()]
