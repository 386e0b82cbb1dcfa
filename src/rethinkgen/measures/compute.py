"""Computing measures for a run: from a live trainer at the end of training, or from a checkpoint.

:func:`compute_measures` evaluates named measures on a :class:`MeasureContext`, each timed and each
isolated (a measure that raises is recorded with its error; the others still run). :func:`run_context`
builds the context of a run from its resolved config and final weights: the initial weights are drawn
again from the run's seed exactly as the trainer drew them, the training data is prepared again (or
taken from the trainer). :class:`MeasureCallback` computes the measures a sweep spec asks for when a
run finishes and puts them into its summary (key ``"measures"``), which the sweep driver stores.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rethinkgen.measures import MEASURES, validate_names
from rethinkgen.measures.context import MeasureContext, MeasureSettings
from rethinkgen.report.evidence import is_evidence

__all__ = ["EVIDENCE_STATUSES", "MeasureCallback", "MeasureResult", "compute_measures", "measure_resumed",
           "run_context"]

# Only runs that finished as intended are measured (design §2; the report's one rule,
# rethinkgen.report.evidence.is_evidence). These are the statuses that rule can accept: a store query's prefilter.
EVIDENCE_STATUSES = ("converged", "max_epochs")


@dataclass
class MeasureResult:
    """One measure of one network: its value (None when it failed), time and the settings it used."""

    name: str
    value: float | None
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the traceback's last line when the measure raised

    def as_row(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "seconds": self.seconds, "settings": self.settings,
                "error": self.error}


def compute_measures(names: Sequence[str], ctx: MeasureContext) -> list[MeasureResult]:
    """Every measure of ``names`` (registry names, or "all") on ``ctx``, in registry order.

    A measure's time includes the shared pieces it is the first to need (e.g. the margins). A measure
    that raises gives ``value=None`` and its error; it never stops the others. Unknown names raise
    ``UnknownNameError`` before anything is computed.
    """
    results = []
    for name in validate_names(names):
        spec = MEASURES.get(name)
        t0 = time.perf_counter()
        value, error = None, None
        try:
            value = float(spec.compute(ctx))
            if math.isnan(value):
                value, error = None, "the value is NaN (non-finite weights or outputs)"
        except Exception as exc:  # one measure's failure is recorded, the others go on
            error = f"{type(exc).__name__}: {exc}"
            if not str(exc):
                error += " " + traceback.format_exc(limit=-1).strip().splitlines()[-1]
        results.append(MeasureResult(name, value, time.perf_counter() - t0,
                                     ctx.settings.subset_of(spec.settings), error))
    return results


def run_context(config: Any, state_dict: dict[str, torch.Tensor], device: torch.device | str = "cpu", *,
                data: Any | None = None, settings: MeasureSettings | None = None) -> MeasureContext:
    """The :class:`MeasureContext` of a run from its *resolved* ``TrainConfig`` and final weights.

    ``data``: the run's :class:`rethinkgen.train.data.PreparedData` when already loaded (the trainer's),
    else it is prepared again from the config (the same corruption and preprocessing: they are seeded).
    """
    from rethinkgen.measures.layers import initial_model
    from rethinkgen.models import create_model
    from rethinkgen.train.data import prepare_data

    device = torch.device(device)
    if data is None or not hasattr(data, "x_train"):
        data = prepare_data(config, device)
    shape, k, layout = tuple(data.x_train.shape[1:]), data.num_classes, data.layout
    init = initial_model(config.model, shape, k, seed=config.seed, dropout=config.dropout, layout=layout)
    with torch.random.fork_rng(devices=[]):  # building the model draws (then overwritten) weights
        model = create_model(config.model, shape, k, dropout=config.dropout, layout=layout)
    model.load_state_dict({name: t.detach().to("cpu") for name, t in state_dict.items()})
    x = data.x_train.to(device).contiguous()
    return MeasureContext(model, init, x, data.y_train.to(device), seed=config.seed, settings=settings)


class MeasureCallback:
    """Trainer callback: when the run ends as intended, compute ``names`` and add them to its summary.

    Works with the single trainer and the fused one (it reads ``state.model_state_dict()`` and
    ``state.device``, which both give, and ``state.data`` when it holds the training tensors). The
    summary gains ``"measures": {"epoch": E, "results": [MeasureResult.as_row(), ...]}``; a run that is
    not evidence (:func:`rethinkgen.report.evidence.is_evidence`: diverged, failed, unfinished) gets none.
    """

    def __init__(self, names: Sequence[str], settings: MeasureSettings | None = None) -> None:
        self.names = validate_names(names)
        self.settings = settings
        self.state: Any = None

    def on_epoch_end(self, row: dict[str, Any], step_losses: list, state: Any) -> None:
        self.state = state

    def on_train_end(self, summary: dict[str, Any]) -> None:
        state = self.state
        if state is not None:
            self.measure(summary, state.config, state.model_state_dict(), state.device,
                         data=getattr(state, "data", None))

    def measure(self, summary: dict[str, Any], config: Any, state_dict: dict[str, torch.Tensor],
                device: torch.device | str, data: Any | None = None) -> None:
        """Add ``"measures"`` to ``summary`` (a run that ended as intended) from its final weights; also
        used for a run resumed from the checkpoint of its final epoch, whose trainer calls no callbacks."""
        if not self.names or not is_evidence(summary) or "measures" in summary:
            return
        t0 = time.perf_counter()
        try:
            ctx = run_context(config, state_dict, device, data=data, settings=self.settings)
        except Exception as exc:  # never turn a finished run into a failed one: record the measures as failed
            error = f"cannot build the measures' context: {type(exc).__name__}: {exc}"
            results = [MeasureResult(n, None, time.perf_counter() - t0, error=error) for n in self.names]
        else:
            results = compute_measures(self.names, ctx)
        summary["measures"] = {"epoch": int(summary["epochs"]), "results": [r.as_row() for r in results]}


def measure_resumed(names: Sequence[str], config: Any, state: dict[str, Any] | None, summary: dict[str, Any]) -> None:
    """Measure a run that was resumed from the checkpoint of its final epoch (a crash came between that
    checkpoint and the store's record): the trainer then returns its summary without calling callbacks."""
    if state is None or state.get("status") is None:
        return
    from rethinkgen.train.loop import resolve_config, select_device

    config = resolve_config(config)
    MeasureCallback(names).measure(summary, config, state["model"], select_device(config.device))
