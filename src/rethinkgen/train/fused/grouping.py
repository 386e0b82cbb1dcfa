"""Which runs can be trained as one fused group, and how a sweep's runs are split into groups.

A group shares one architecture, one data shape and one step structure (:data:`SHARED_FIELDS`);
a run whose training a vmapped model cannot reproduce (dropout, unknown buffers) is never fused.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Hashable, Sequence

import torch

from rethinkgen.train.config import TrainConfig, run_key
from rethinkgen.train.resolve import resolve_config

__all__ = ["SHARED_FIELDS", "can_fuse", "fuse_key", "group_runs", "why_not_fused"]

# Config fields that must be equal within a group: they fix the architecture, the data shapes, the
# number of steps per epoch and the device. Every other field may differ between the runs.
SHARED_FIELDS = ("data", "data_dir", "data_options", "n_train", "n_test", "crop", "model", "batch_size",
                 "eval_batch_size", "device", "amp", "precision", "compile", "channels_last",
                 "cuda_graphs")


@functools.cache
def _model_refusal(model: str) -> str | None:
    """Why ``model`` cannot run under vmap over stacked parameters (None: it can)."""
    from rethinkgen.models import create_model, natural_input_shape

    with torch.device("meta"):  # no weights allocated, no random numbers drawn
        module = create_model(model, natural_input_shape(model), 10)
    norms = {id(b) for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)
             for b in m.buffers(recurse=False)}
    other = [name for name, b in module.named_buffers() if id(b) not in norms]
    if other:
        return (f"model {model} has buffers other than BatchNorm statistics ({', '.join(other[:3])}), which "
                "fused training does not know how to stack")
    return None


def _run_refusal(config: TrainConfig) -> str | None:
    """Why this run cannot be in any group (None: it can)."""
    if config.dropout > 0:
        return (f"dropout={config.dropout:g}: dropout masks are drawn from the global RNG in the single "
                "trainer's order, which a vmapped model cannot reproduce per run")
    from rethinkgen.train.streaming.select import streaming_refusal

    refusal = streaming_refusal(config)
    if refusal is not None:
        return refusal
    return _model_refusal(config.model)


def _shared(config: TrainConfig) -> tuple:
    return tuple(json.dumps(getattr(config, name), sort_keys=True) for name in SHARED_FIELDS)


def why_not_fused(configs: Sequence[TrainConfig]) -> str | None:
    """None when ``configs`` can be trained as one fused group, else the reason (one line).

    A group of zero or one run is trivially fusable.
    """
    resolved = [resolve_config(c) for c in configs]
    for c in resolved:
        reason = _run_refusal(c)
        if reason is not None:
            return reason
    if resolved:
        first = resolved[0]
        for c in resolved[1:]:
            differ = [n for n in SHARED_FIELDS if getattr(c, n) != getattr(first, n)]
            if differ:
                values = ", ".join(f"{n}={getattr(first, n)!r} vs {getattr(c, n)!r}" for n in differ)
                return f"runs differ in {values}; fused runs must share {', '.join(SHARED_FIELDS)}"
    return None


def can_fuse(configs: Sequence[TrainConfig]) -> bool:
    """Whether :func:`train_group` trains ``configs`` fused (see :func:`why_not_fused` for the reason)."""
    return why_not_fused(configs) is None


def fuse_key(config: TrainConfig) -> Hashable:
    """A grouping key: runs with equal keys can be fused together; a run that can never be fused gets a
    key of its own (``("alone", run_key)``). Takes raw or resolved configs."""
    c = resolve_config(config)
    if _run_refusal(c) is not None:
        return ("alone", run_key(c))
    return ("fused", *_shared(c))


def group_runs(configs: Sequence[TrainConfig], max_group: int | Callable[[TrainConfig], int] = 16,
               parallelism: int = 1, key: Callable[[TrainConfig], Hashable] | None = None) -> list[list[int]]:
    """Indices of ``configs`` split into fusable groups of at most ``max_group`` runs (in input order).

    Runs with equal ``key`` (default :func:`fuse_key`) go together; a key with more runs than
    ``max_group`` is split into near-equal chunks (17 runs, max 16 -> 9 + 8). Runs that cannot be fused
    come out alone. When there are fewer keys than ``parallelism`` (worker processes, Ray tasks), each
    key is cut into enough parts to keep every worker busy: one group of 11 on a single worker would
    leave the others idle. ``max_group`` may be a function of a key's first config (a sweep sizes GPU
    groups by the model's memory: ``rethinkgen.sweep.sizing``).
    """
    if not callable(max_group) and max_group < 1:
        raise ValueError(f"max_group must be >= 1, got {max_group}")
    limit = max_group if callable(max_group) else (lambda config: max_group)
    key = key or fuse_key
    by_key: dict[Hashable, list[int]] = {}
    for i, c in enumerate(configs):
        by_key.setdefault(key(c), []).append(i)
    per_key = -(-parallelism // max(len(by_key), 1))
    groups = []
    for members in by_key.values():
        cap = max(1, limit(configs[members[0]]))
        parts = min(len(members), max(-(-len(members) // cap), per_key))
        size = -(-len(members) // parts)
        groups += [members[j:j + size] for j in range(0, len(members), size)]
    return groups


