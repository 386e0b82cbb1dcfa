"""Which stored runs are evidence: the one rule every table, figure, finding and measure follows.

Design §2: *a result is evidence only if its run finished as intended.* A stored run (a dict as
``Store.runs()`` returns it: ``status`` plus the summary fields) is in exactly one of these states:

=================  ===========================  ==============================================================
state              store status                 what the report does with it
=================  ===========================  ==============================================================
``fit``            ``converged``                evidence; it reached the target train accuracy
``not_fit``        ``max_epochs``               evidence of what its epoch budget gave, but **not** of
                                                fitting: a finding about fitting that it touches is
                                                "inconclusive", never "differs"; no Δ against the paper
``diverged``       ``diverged``                 not evidence: the loss became NaN/inf, its "accuracy" is
                                                the share of one class (argmax of NaN outputs)
``failed``         ``failed``                   not evidence: training raised an error
``unfinished``     pending/running/interrupted  not evidence: no final result yet
``invalid``        converged/max_epochs with    not evidence: a finished status whose summary lacks a
                   a missing or non-finite      finite train or test accuracy (NaN is stored as NULL)
                   accuracy
=================  ===========================  ==============================================================

Non-evidence runs are listed with their status and never enter a mean, a table cell, a difference
against the paper, a figure's data or a finding. Use :func:`is_evidence` for "may this run's numbers
be used at all" and :func:`reached_target` for "is this run evidence that the network fit its
training set". Both take plain dicts, so other parts (e.g. generalization-measure correlations) can
apply the same rule without the report.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

#: Store statuses of runs that ended on their own (the sweep never reruns them).
FINISHED = ("converged", "max_epochs", "diverged")
#: Store statuses of runs without a final result.
UNFINISHED = ("pending", "running", "interrupted")
#: Evidence states (see the module docstring), in the order they are listed.
STATES = ("fit", "not_fit", "diverged", "failed", "unfinished", "invalid")
#: Why a run of each state is left out (None: it is evidence).
REASONS = {
    "fit": None,
    "not_fit": None,
    "diverged": "the loss became NaN or infinite, so its accuracies are not a result",
    "failed": "training raised an error",
    "unfinished": "the run has no final result yet",
    "invalid": "the run's summary lacks a finite train or test accuracy",
}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def evidence_status(run: dict) -> str:
    """The evidence state of a stored run: one of :data:`STATES`.

    ``run`` needs ``status`` and, for finished runs, ``train_acc`` and ``test_acc`` (fractions).
    Unknown statuses count as ``unfinished``.
    """
    status = run.get("status")
    if status == "diverged":
        return "diverged"
    if status == "failed":
        return "failed"
    if status not in ("converged", "max_epochs"):
        return "unfinished"
    if not (_finite(run.get("train_acc")) and _finite(run.get("test_acc"))):
        return "invalid"
    return "fit" if status == "converged" else "not_fit"


def is_evidence(run: dict) -> bool:
    """True when the run finished as intended (converged or max_epochs, with finite accuracies)."""
    return evidence_status(run) in ("fit", "not_fit")


def reached_target(run: dict) -> bool:
    """True when the run is evidence *and* reached its target train accuracy (status converged)."""
    return evidence_status(run) == "fit"


def stopped_at_budget(run: dict) -> bool:
    """True for evidence that did not reach the target: the run ran out of epochs (max_epochs)."""
    return evidence_status(run) == "not_fit"


def split(runs: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """(evidence, left out) of ``runs``, each in the given order."""
    good, bad = [], []
    for run in runs:
        (good if is_evidence(run) else bad).append(run)
    return good, bad


def left_out_text(runs: Iterable[dict]) -> str | None:
    """``"3 diverged, 1 failed"`` for the non-evidence runs among ``runs`` (None when there are none)."""
    counts = Counter(evidence_status(r) for r in runs if not is_evidence(r))
    if not counts:
        return None
    return ", ".join(f"{counts[s]} {s}" for s in STATES if counts.get(s))


def not_fit_text(runs: Iterable[dict]) -> str | None:
    """``"3 of 6 runs stopped at max_epochs before reaching the target"`` (None when none did)."""
    evidence = [r for r in runs if is_evidence(r)]
    stopped = sum(1 for r in evidence if stopped_at_budget(r))
    if not stopped:
        return None
    return (f"{stopped} of {len(evidence)} run{'s' if len(evidence) != 1 else ''} stopped at max_epochs "
            "before reaching the target train accuracy")
