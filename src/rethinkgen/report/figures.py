"""Figures 1a, 1b, 1c and 2 of the paper, drawn from stored runs (plain dicts, see ``runs.py``).

Each function takes the runs of one dataset and returns a :class:`Plot`: the matplotlib Figure (or None
with the reason when the runs cannot make it) *and* the series it drew, so tests and the HTML page can
check exactly what was plotted. Several seeds of one setting are drawn as their mean with a min-max
band or bar; a run that is not evidence (:mod:`rethinkgen.report.evidence`: diverged, failed,
unfinished) is marked as such, never plotted as a value, and a run that stopped at max_epochs is drawn
as not having fit.

- :func:`figure1a`, :func:`figure1b`, :func:`figure1c`: paper Fig. 1 (§2), in ``figure1.py``.
- :func:`figure2`: paper Fig. 2 (§3.1), in ``figure2.py``.
- The shared pieces (:class:`Series`, :class:`Plot`, :func:`level_lines`, legends) are in ``plot.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from rethinkgen.report.figure1 import figure1a, figure1b, figure1c
from rethinkgen.report.figure2 import figure2
from rethinkgen.report.plot import (
    CORRUPTION_LABELS,
    MODEL_ORDER,
    Plot,
    Series,
    left_out_levels,
    level_lines,
    model_sort,
)

__all__ = ["CORRUPTION_LABELS", "MODEL_ORDER", "Plot", "Series", "all_figures", "figure1a", "figure1b",
           "figure1c", "figure2", "left_out_levels", "level_lines", "model_sort"]


def all_figures(runs: Sequence[dict], data: str | None = None) -> list[Plot]:
    """Figures 1a, 1b, 1c and 2 for the runs of one dataset."""
    return [figure1a(runs, data), figure1b(runs, data), figure1c(runs, data), figure2(runs, data)]
