"""The one validator of training-config values, shared by every way in (design §3: bad input fails before
any work, with a message naming the fix).

- :class:`~rethinkgen.train.config.TrainConfig` checks its own fields when it is built, so the Python API
  (``TrainConfig(...)``, ``rethinkgen.train(...)``) and ``rethinkgen train`` refuse what a sweep spec
  refuses, with the same words;
- sweep specs (:mod:`rethinkgen.sweep.spec`) call :func:`field_problem` per value, to report every
  problem at once with its file and key path;
- options that are not config fields (``--threads``, ``--jobs``, ``kernel fit --reg``) use
  :func:`check_option`.

A rule is a predicate and the words that describe the allowed values; a ``None`` is allowed exactly for
fields typed ``X | None`` (``None`` = resolved from the dataset or model, see ``train.resolve``).
"""

from __future__ import annotations

import math
import numbers
import typing
from collections.abc import Callable, Mapping
from dataclasses import fields
from functools import cache
from typing import Any

from rethinkgen.errors import ConfigError

__all__ = ["RULES", "check_config", "check_option", "combination_problems", "config_problems", "field_problem",
           "normalized", "precision_problem"]

DEVICES = ("auto", "cpu", "cuda", "mps")
STANDARDIZE = ("per_image", "per_feature", "inception", "none")
PRECISIONS = ("float32", "bfloat16")  # TrainConfig.precision: the dtype of the autocast regions (None: automatic)


def _finite(v: float) -> bool:
    return math.isfinite(v)


# field -> (predicate on a value of the right type, what is allowed). NaN fails every comparison.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "level": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    "epochs": (lambda v: v > 0, "> 0"),
    "batch_size": (lambda v: v > 0, "> 0"),
    "lr": (lambda v: v > 0 and _finite(v), "> 0 and finite"),
    "n_train": (lambda v: v > 0, "> 0"),
    "n_test": (lambda v: v > 0, "> 0"),
    "eval_batch_size": (lambda v: v > 0, "> 0"),
    "log_every": (lambda v: v > 0, "> 0"),
    "eval_every": (lambda v: v >= 1, ">= 1 steps (unset: once per epoch)"),
    "momentum": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "weight_decay": (lambda v: v >= 0 and _finite(v), ">= 0 and finite"),
    "lr_decay": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
    "lr_decay_every": (lambda v: v >= 0, ">= 0 samples (0: once per epoch)"),
    "dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "target_train_acc": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
    "crop": (lambda v: v >= 0, ">= 0 pixels (0: none)"),
    "seed": (lambda v: v >= 0, ">= 0"),
    "world_size": (lambda v: v >= 1, ">= 1 processes"),
    "workers": (lambda v: v >= 0, ">= 0 DataLoader processes"),
    "train_eval_samples": (lambda v: v >= 1, ">= 1 images (unset: the whole training set)"),
    "device": (lambda v: v in DEVICES, "one of " + ", ".join(DEVICES)),
    "standardize": (lambda v: v in STANDARDIZE, "one of " + ", ".join(STANDARDIZE)),
    "precision": (lambda v: v in PRECISIONS, "one of " + ", ".join(PRECISIONS) + " (unset: automatic)"),
}

_TYPE_WORDS = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string",
               dict: "a table (dict)"}


@cache
def field_types() -> dict[str, tuple[type, bool]]:
    """TrainConfig field -> (base type, whether None is allowed)."""
    from rethinkgen.train.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    out: dict[str, tuple[type, bool]] = {}
    for f in fields(TrainConfig):
        hint = hints[f.name]
        args = typing.get_args(hint)
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        out[f.name] = (typing.get_origin(base) or base, type(None) in args)
    return out


def _has_type(value: Any, base: type) -> bool:
    if base is bool:
        return isinstance(value, bool)
    if base is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if base is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if base is dict:
        return isinstance(value, Mapping)
    return isinstance(value, base)


def field_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the TrainConfig field ``name`` ("lr must be > 0 and finite, got
    inf"), or None when it is allowed. Unknown names are the caller's to report."""
    base, optional = field_types()[name]
    if value is None:
        return None if optional else f"{name} must be {_TYPE_WORDS.get(base, base.__name__)}, got None"
    if not _has_type(value, base):
        return (f"{name} must be {_TYPE_WORDS.get(base, base.__name__)}, got {value!r} "
                f"({type(value).__name__})")
    rule = RULES.get(name)
    if rule is not None and not rule[0](value):
        return f"{name} must be {rule[1]}, got {value!r}"
    return None


def normalized(name: str, value: Any) -> Any:
    """``value`` as the field's plain Python type (1 -> 1.0 for a float field, numpy scalars -> Python), so
    equal configs have equal run keys. Call after :func:`field_problem` found nothing."""
    base, _ = field_types()[name]
    if value is None or isinstance(value, bool):
        return value
    if base is float:
        return float(value)
    if base is int:
        return int(value)
    if base is dict:
        return dict(value)
    return value


def precision_problem(precision: Any, amp: Any) -> str | None:
    """What contradicts in ``precision`` together with ``amp`` (None: nothing): ``precision="bfloat16"``
    asks for bf16 autocast, ``amp=False`` turns autocast off."""
    if precision == "bfloat16" and amp is False:
        return ("precision=bfloat16 asks for bf16 autocast but amp=false turns autocast off; drop amp=false "
                "(or set precision=float32 for float32 throughout)")
    return None


def combination_problems(config: Any) -> list[str]:
    """The problems of a TrainConfig's values taken together that need no dataset or model (those are
    ``train.resolve.validate``'s): today ``precision`` against ``amp``."""
    problem = precision_problem(config.precision, config.amp)
    return [problem] if problem is not None else []


def config_problems(config: Any) -> list[str]:
    """Every problem of a TrainConfig's field values, in field order, then of their combinations."""
    problems = [p for f in fields(config) if (p := field_problem(f.name, getattr(config, f.name))) is not None]
    return problems or combination_problems(config)  # combinations of valid values only


def check_config(config: Any) -> None:
    """Raise one ConfigError listing every impossible field value of ``config``."""
    problems = config_problems(config)
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


def check_option(option: str, value: float | int | None, *, minimum: float, integer: bool = False) -> None:
    """Refuse a command-line value below ``minimum``, not finite, or (``integer``) not whole — before any
    work. ``None`` (the option's default) passes."""
    if value is None:
        return
    if integer and (not isinstance(value, numbers.Integral) or isinstance(value, bool)):
        raise ConfigError(f"{option} must be an integer >= {minimum:g}, got {value!r}")
    if not (math.isfinite(value) and value >= minimum):
        words = f">= {minimum:g}" if integer else f">= {minimum:g} and finite"
        raise ConfigError(f"{option} must be {words}, got {value!r}")
