"""What the figures share: the plotted-series record, grouping runs into lines, marks and legends.

A figure function returns a :class:`Plot`: the matplotlib Figure (or None with the reason) *and* the
series it drew, so tests and the HTML page can check exactly what was plotted. Only evidence
(:mod:`rethinkgen.report.evidence`) is ever drawn as a value; runs that are not evidence are drawn as
marks at the edge of the axes, never as a point.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib.container import Container
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from rethinkgen.report.evidence import is_evidence
from rethinkgen.report.runs import (
    cfg,
    describe,
    finite,
    label_level,
    setting_key,
    spread,
    varying_fields,
)
from rethinkgen.report.style import Styler

CORRUPTION_LABELS = {
    "true_labels": "true labels",
    "random_labels": "random labels",
    "shuffled_pixels": "shuffled pixels",
    "random_pixels": "random pixels",
    "gaussian": "gaussian",
    "partial_labels": "partially corrupted labels",
}
MODEL_ORDER = ("inception_small", "inception_small_nobn", "alexnet_small", "mlp_3x512", "mlp_1x512",
               "cnn1d", "resnet18")


@dataclass
class Series:
    """One plotted line: its points exactly as drawn (means over seeds, with the min-max spread)."""

    label: str  # machine label: a corruption, model or "model / setting" name
    x: list[float]
    y: list[float]
    lo: list[float] | None = None  # min over seeds at each point (None: one seed everywhere)
    hi: list[float] | None = None  # max over seeds
    n: list[int] | None = None  # seeds behind each point
    panel: str = ""  # title of the axes it is drawn in
    kind: str = "ours"  # "ours" | "paper" | "not_converged" | "missing" | "best" | "reference"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plot:
    key: str  # "fig1a", "fig1b", "fig1c", "fig2"
    title: str
    caption: str
    figure: Figure | None
    series: list[Series]
    notes: list[str]
    reason: str | None = None  # why there is no figure (figure is None)

    def find(self, label: str, *, kind: str = "ours", panel: str | None = None) -> Series:
        for s in self.series:
            if s.label == label and s.kind == kind and (panel is None or s.panel == panel):
                return s
        raise KeyError(f"no {kind} series {label!r} (panel {panel!r}) in {self.key}")


def model_sort(name: str) -> tuple:
    return (MODEL_ORDER.index(name) if name in MODEL_ORDER else len(MODEL_ORDER), name)


def aggregate(curves: Sequence[Sequence[tuple[float, float]]]) -> tuple[list, list, list, list, list]:
    """Mean, min, max and count of y over the curves at each x (non-finite y dropped)."""
    by_x: dict[float, list[float]] = defaultdict(list)
    for curve in curves:
        for x, y in curve:
            if finite(x) and finite(y):
                by_x[float(x)].append(float(y))
    xs = sorted(by_x)
    stats = [spread(by_x[x]) for x in xs]
    return xs, [s[0] for s in stats], [s[1] for s in stats], [s[2] for s in stats], [s[3] for s in stats]


def panel_titles(keys: list[tuple], head: dict[tuple, str], shown: Iterable[str]) -> dict[tuple, str]:
    """Panel titles: ``head[key]`` plus the setting fields that differ between the panels."""
    varying = varying_fields(keys, exclude=shown)
    titles = {}
    for key in keys:
        extra = describe(key, varying)
        titles[key] = f"{head[key]} ({extra})" if extra else head[key]
    return titles


def no_figure(key: str, title: str, caption: str, reason: str) -> Plot:
    return Plot(key=key, title=title, caption=caption, figure=None, series=[], notes=[], reason=reason)


def level_lines(runs: Sequence[dict]) -> dict[tuple, dict[float, dict[int, dict]]]:
    """Label-corruption runs that are evidence, as setting -> level -> seed -> run.

    ``true_labels`` counts as level 0 and ``random_labels`` as level 1, used only where no
    ``partial_labels`` run of that level and seed exists. Only settings with a level strictly between 0
    and 1 make a line: a setting run on true and random labels alone (a Table 1 row pair, a regularizer
    ablation) is not a label-corruption sweep. Runs that are not evidence (diverged, failed,
    unfinished) are left out; :func:`left_out_levels` says where.
    """
    lines: dict[tuple, dict[float, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        level = label_level(run)
        if level is None or not is_evidence(run):
            continue
        slot = lines[setting_key(run)][level]
        seed = cfg(run, "seed")
        old = slot.get(seed)
        if old is None or (cfg(old, "corruption") != "partial_labels"
                           and cfg(run, "corruption") == "partial_labels"):
            slot[seed] = run
    return {k: dict(v) for k, v in lines.items() if any(0.0 < level < 1.0 for level in v)}


def left_out_levels(runs: Sequence[dict]) -> dict[tuple, dict[float, list[dict]]]:
    """Label-corruption runs that are *not* evidence, as setting -> level -> runs."""
    out: dict[tuple, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        level = label_level(run)
        if level is not None and not is_evidence(run):
            out[setting_key(run)][level].append(run)
    return out


def line_titles(keys: list[tuple]) -> dict[tuple, str]:
    return panel_titles(keys, {k: dict(k)["model"] for k in keys}, shown=("model",))


def style_names(keys: list[tuple], titles: dict[tuple, str]) -> dict[tuple, str]:
    """Style each line by its model (one colour per model across figures) unless a model has several."""
    models = [dict(k)["model"] for k in keys]
    return {k: dict(k)["model"] if models.count(dict(k)["model"]) == 1 else titles[k] for k in keys}


def mark_edge(ax, styler: Styler, name: str, levels: Iterable[float], *, top: bool, label: str = "") -> None:
    """Marks at the top (▲: did not reach the target) or bottom (×: no evidence) edge of the axes."""
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    levels = sorted(levels)
    if levels:
        ax.plot(levels, [0.97 if top else 0.03] * len(levels), linestyle="none",
                marker="^" if top else "x", color=styler.color(name), transform=trans, clip_on=False,
                markersize=7, zorder=4, label=label or "_nolegend_")


def level_keys(lines: dict, left_out: dict) -> list[tuple]:
    """The settings a level figure shows: those with evidence, and label-level sweeps with none."""
    keys = set(lines) | {k for k, levels in left_out.items() if any(0.0 < lv < 1.0 for lv in levels)}
    return sorted(keys, key=lambda k: (model_sort(dict(k)["model"]), k))


def outside_legend(fig: Figure, axes: Sequence, extra: Sequence[tuple[Any, str]] = (), *,
                   where: str = "right") -> None:
    """One legend for the whole figure, outside every axes (``where``: "right" or "below").

    Entries are the labelled artists of all ``axes`` (first occurrence of each label wins, so a series
    drawn in several panels appears once) plus ``extra`` (handle, label) pairs.
    """
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels and not label.startswith("_"):
                handles.append(handle)
                labels.append(label)
    for handle, label in extra:
        if label not in labels:
            handles.append(handle)
            labels.append(label)
    if not handles:
        return
    # lines first, marks only (× ▲ hollow, paper squares) last, each group in drawing order
    order = sorted(range(len(handles)), key=lambda k: _marks_only(handles[k]))
    handles, labels = [handles[k] for k in order], [labels[k] for k in order]
    if where == "below":
        longest = max(len(label) for label in labels)
        per_row = (3 if len(axes) == 1 else 6) if longest <= 40 else (2 if longest <= 60 else 1)
        ncols = min(len(handles), per_row)
        fig.legend(handles, labels, loc="outside lower center", ncols=ncols)
    else:
        fig.legend(handles, labels, loc="outside right upper")


def _marks_only(handle: Any) -> bool:
    """True for a legend handle drawn as markers without a line (an errorbar container: its data line)."""
    line = handle[0] if isinstance(handle, Container) else handle
    style = line.get_linestyle() if hasattr(line, "get_linestyle") else "-"
    return style in ("None", "none", "", " ")


def neutral_handle(color: str, **kw) -> Line2D:
    """An artist for a legend entry that explains a mark (not a series)."""
    return Line2D([], [], color=color, **kw)
