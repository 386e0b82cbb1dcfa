"""The report's "Generalization measures" section: which measures track the generalization gap.

For each dataset and each stored measure (:mod:`rethinkgen.measures`): Kendall's rank correlation τ
between the measure and the generalization gap (train accuracy − test accuracy, in percentage points)
across the finished runs, overall and within groups of runs that differ in one hyperparameter only,
and the granulated coefficient Ψ of Jiang et al. ("Fantastic generalization measures and where to
find them", ICLR 2020, §4): for an axis i (corruption level, weight decay, model), ψ_i is the mean of
τ over the groups of runs in which only axis i varies; Ψ is the mean of the ψ_i. τ = 1: the measure
ranks the runs exactly as their gaps; 0: no relation; −1: in reverse. τ is ``scipy.stats.kendalltau``
(τ-b, which accounts for ties) of the values' ranks, so infinite values (a margin measure of a run
that misclassifies more than the quantile) rank as the largest.

Only runs that finished as intended count (:func:`counts_as_evidence`). Runs that are the same
experiment under two names (``true_labels`` and ``partial_labels`` at p = 0, ``random_labels`` and
p = 1, same everything else) count once, the ``partial_labels`` one kept, as in Figure 1b.

A run here is the report's plain dict (see ``runs.py``) with ``measures``: {name: value} of the
measures stored at its final epoch (:func:`attach_measures`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rethinkgen.report.evidence import is_evidence
from rethinkgen.report.runs import by_data, cfg, finite, label_level, slug

__all__ = ["AXES", "attach_measures", "counts_as_evidence", "granulated", "kendall_tau", "measure_table",
           "mixed_settings", "scatter_plot", "add_section", "section_html"]

#: Hyperparameter axes of the granulated coefficient: axis -> (title, config fields that make it up).
AXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "level": ("label-corruption level", ("corruption", "level")),
    "weight_decay": ("weight decay", ("weight_decay",)),
    "model": ("model", ("model",)),
}
_IGNORED = frozenset({"data_dir", "device", "eval_batch_size"})  # change nothing computed
_LABELS = ("true_labels", "partial_labels", "random_labels")


def counts_as_evidence(run: dict) -> bool:
    """Whether a run is evidence: the report's one rule (:func:`rethinkgen.report.evidence.is_evidence`:
    converged or at its epoch limit, with finite accuracies; never diverged, failed or unfinished)."""
    return is_evidence(run)


def gap(run: dict) -> float | None:
    """Generalization gap in percentage points: train accuracy (on the labels trained on) − test accuracy."""
    tr, te = run.get("train_acc"), run.get("test_acc")
    return 100.0 * (float(tr) - float(te)) if finite(tr) and finite(te) else None


def attach_measures(store: Any, runs: Sequence[dict]) -> None:
    """Set ``run["measures"]`` = {name: value} of the measures stored at each run's final epoch, and
    ``run["measure_settings"]`` = {name: the settings JSON they were computed with (None: unknown)}."""
    final = {r["run_key"]: r.get("epochs") for r in runs}
    values: dict[str, dict[str, float | None]] = defaultdict(dict)
    settings: dict[str, dict[str, str | None]] = defaultdict(dict)
    for row in store.measures():
        if final.get(row["run_key"]) is not None and row["epoch"] == final[row["run_key"]]:
            values[row["run_key"]][row["name"]] = row["value"]
            settings[row["run_key"]][row["name"]] = row.get("settings_json")
    for run in runs:
        run["measures"] = dict(values.get(run["run_key"], {}))
        run["measure_settings"] = dict(settings.get(run["run_key"], {}))


def mixed_settings(pts: Sequence[tuple[dict, float, float]], measure: str) -> dict[str | None, int]:
    """{settings JSON: number of runs} of ``measure`` over ``pts`` when its runs were measured with more
    than one setting (e.g. ``--subset`` 2048 at the end of the sweep, 512 afterwards), else {}. Such
    values are not comparable: the table gives no τ for them and says how to recompute."""
    spec = _spec(measure)
    if spec is not None and not spec.settings:  # nothing to differ in (old stores recorded no settings)
        return {}
    counts: dict[str | None, int] = defaultdict(int)
    for run, _, _ in pts:
        counts[(run.get("measure_settings") or {}).get(measure)] += 1
    return dict(counts) if len(counts) > 1 else {}


# ---------------------------------------------------------------------------------- statistics
def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's τ-b of (x, y) by ranks (infinite values rank last); None for fewer than two points.

    When all x or all y are tied (a measure that does not vary across the runs), no pair is concordant
    or discordant and τ is 0, as in Jiang et al.'s definition (eq. 3: the mean of sign products over
    all pairs). τ-b itself is 0/0 there; leaving such groups out of ψ credited a constant measure with
    the τ of the other groups."""
    from scipy.stats import kendalltau, rankdata

    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if len(x) < 2:
        return None
    if len(set(x)) < 2 or len(set(y)) < 2:
        return 0.0
    tau = kendalltau(rankdata(x), rankdata(y)).statistic
    return None if math.isnan(tau) else float(tau)


def _setting(run: dict) -> dict[str, Any]:
    """The run's config that matters, with label corruptions written as their level (p = 0 true labels,
    p = 1 random labels) so the same experiment under two names has one setting."""
    config = {k: v for k, v in (run.get("config") or {}).items() if k not in _IGNORED}
    level = label_level(run)
    if level is not None:
        config["corruption"], config["level"] = "labels", level
    return config


def _frozen(values: dict[str, Any]) -> tuple:
    import json

    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in values.items()))


def points(runs: Sequence[dict], measure: str) -> list[tuple[dict, float, float]]:
    """(run, gap, value) of the evidence runs with a stored ``measure`` and a gap, one per setting
    (``partial_labels`` preferred over a named true/random-label run of the same setting)."""
    chosen: dict[tuple, dict] = {}
    for run in runs:
        value = (run.get("measures") or {}).get(measure)
        if not counts_as_evidence(run) or gap(run) is None or value is None \
                or (isinstance(value, float) and math.isnan(value)):
            continue
        key = _frozen(_setting(run))
        old = chosen.get(key)
        if old is None or (cfg(old, "corruption") != "partial_labels" and cfg(run, "corruption") == "partial_labels"):
            chosen[key] = run
    return [(run, gap(run), float(run["measures"][measure])) for run in chosen.values()]


def granulated(pts: Sequence[tuple[dict, float, float]], axis: str) -> tuple[float | None, int]:
    """ψ_axis: the mean τ(measure, gap) over groups of runs equal in everything but ``axis`` (Jiang et al.
    §4, eq. 4), and the number of groups with a τ (two runs or more; a group in which the measure does
    not vary counts τ = 0). Runs without a value on that axis (input corruptions on the level axis) are
    left out."""
    fields = AXES[axis][1]
    groups: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for run, g, value in pts:
        if axis == "level" and label_level(run) is None:
            continue
        setting = _setting(run)
        key = _frozen({k: v for k, v in setting.items() if k not in fields})
        groups[key].append((value, g))
    taus = [t for t in (kendall_tau([v for v, _ in grp], [g for _, g in grp]) for grp in groups.values())
            if t is not None]
    return (sum(taus) / len(taus) if taus else None), len(taus)


@dataclass
class MeasureRow:
    name: str
    n: int
    tau: float | None
    psi: dict[str, tuple[float | None, int]]  # axis -> (ψ, groups)

    @property
    def big_psi(self) -> float | None:
        values = [p for p, _ in self.psi.values() if p is not None]
        return sum(values) / len(values) if values else None


def measure_rows(runs: Sequence[dict]) -> list[MeasureRow]:
    """One row per measure stored for any of ``runs`` (registry order first)."""
    names = sorted({n for r in runs for n in (r.get("measures") or {})}, key=_order)
    rows = []
    for name in names:
        pts = points(runs, name)
        if mixed_settings(pts, name):  # values under different definitions: no ranking of them
            rows.append(MeasureRow(name, len(pts), None, {axis: (None, 0) for axis in AXES}))
            continue
        tau = kendall_tau([v for _, _, v in pts], [g for _, g, _ in pts])
        rows.append(MeasureRow(name, len(pts), tau, {axis: granulated(pts, axis) for axis in AXES}))
    return rows


def _order(name: str) -> tuple:
    from rethinkgen.measures import list_measures

    order = list_measures()
    return (order.index(name) if name in order else len(order), name)


def _spec(name: str):
    from rethinkgen.measures import MEASURES

    return MEASURES.get(name) if name in MEASURES else None


# ---------------------------------------------------------------------------------- table, figure
def measure_table(runs: Sequence[dict], data: str):
    """The τ / ψ / Ψ table of one dataset (a report ``Table``; written as CSV and Markdown)."""
    from rethinkgen.report.tables import Column, Table

    columns = [Column("measure", "measure"), Column("units", "units"), Column("n", "runs", "int"),
               Column("tau", "τ (all runs)", "float")]
    for axis, (title, _) in AXES.items():
        columns += [Column(f"psi_{axis}", f"ψ {title}", "float"), Column(f"groups_{axis}", "groups", "int")]
    columns.append(Column("big_psi", "Ψ (mean of ψ)", "float"))
    rows = []
    for row in measure_rows(runs):
        spec = _spec(row.name)
        entry = {"measure": row.name, "units": spec.units if spec else "", "n": row.n, "tau": row.tau,
                 "big_psi": row.big_psi}
        for axis, (psi, groups) in row.psi.items():
            entry[f"psi_{axis}"], entry[f"groups_{axis}"] = psi, groups
        rows.append(entry)
    excluded = [r for r in runs if not counts_as_evidence(r)]
    notes = ["τ: Kendall's rank correlation between the measure and the generalization gap (train − test "
             "accuracy) across the runs; ψ: mean τ over groups of runs that differ only in that "
             "hyperparameter (groups: how many have two runs or more; one in which the measure does not vary "
             "counts τ = 0); Ψ: mean of the ψ (Jiang et al. 2020, §4).",
             "Positive: a larger measure goes with a larger gap, as a complexity measure should."]
    if excluded:
        notes.append(f"{len(excluded)} run(s) that did not finish as intended (diverged, failed or unfinished) "
                     "are left out.")
    for row in measure_rows(runs):
        mixed = mixed_settings(points(runs, row.name), row.name)
        if mixed:
            shown = "; ".join(f"{settings or 'unknown settings'} on {n} run(s)" for settings, n in mixed.items())
            notes.append(f"{row.name}: no τ, its runs were measured with different settings ({shown}); "
                         f"recompute them alike with `rethinkgen measure --store PATH --measures {row.name} "
                         "--force` (with the same --subset for every run).")
    unmeasured = [r for r in runs if counts_as_evidence(r) and not r.get("measures")]
    if unmeasured:
        notes.append(f"{len(unmeasured)} finished run(s) have no measures stored; add them with `rethinkgen "
                     "measure --store PATH` (from kept checkpoints) or `measures = [...]` in the spec.")
    return Table(f"measures_{slug(data)}", f"Generalization measures against the gap — {data}", columns, rows,
                 notes)


def scatter_plot(runs: Sequence[dict], data: str):
    """Each measure against the gap, one panel per measure: colour = label-corruption level (grey: an
    input corruption), marker = model. Returns a report ``Plot`` (figure None when nothing is measured)."""
    from matplotlib import cm, colormaps
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    from rethinkgen.report.figures import Plot, Series, model_sort
    from rethinkgen.report.style import MARKERS, NEUTRAL, new_figure, style

    title = "Generalization measures against the generalization gap"
    caption = ("Each point is a finished run: its measure (x) and its gap, train minus test accuracy in "
               "percentage points (y). Colour: label-corruption level p; grey: an input corruption. Marker: "
               "model. τ: Kendall's rank correlation over the panel's points. A logarithmic x axis where the "
               "values span more than two decades.")
    rows = measure_rows(runs)
    if not rows:
        return Plot("measures", title, caption, None, [], [], reason="no measures are stored for these runs")
    models = sorted({str(cfg(r, "model")) for r in runs}, key=model_sort)
    marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(models)}
    cmap, norm = colormaps["viridis"], Normalize(0.0, 1.0)
    series, notes = [], []
    with style():
        fig, axes = new_figure(len(rows), panel_size=(3.9, 3.0))
        for ax, row in zip(axes, rows, strict=True):
            pts = points(runs, row.name)
            shown = [(r, g, v) for r, g, v in pts if math.isfinite(v)]
            if len(shown) < len(pts):
                notes.append(f"{row.name}: {len(pts) - len(shown)} run(s) with an infinite value (margin ≤ 0 at "
                             "the quantile) not drawn; they count in τ as the largest values")
            for r, g, v in shown:
                level = label_level(r)
                color = NEUTRAL if level is None else cmap(norm(level))
                ax.scatter([v], [g], color=color, marker=marker[str(cfg(r, "model"))], s=30, edgecolors="black",
                           linewidths=0.4, zorder=3)
            xs = [v for _, _, v in shown]
            if xs and min(xs) > 0 and max(xs) / min(xs) > 100:
                ax.set_xscale("log")
            tau = "—" if row.tau is None else f"{row.tau:+.2f}"
            ax.set_title(f"{row.name} (τ = {tau}, n = {row.n})")
            spec = _spec(row.name)
            ax.set_xlabel(spec.units if spec else row.name)
            ax.set_ylabel("gap (train − test acc., pp)")
            series.append(Series(row.name, xs, [g for _, g, _ in shown], panel=row.name,
                                 extra={"tau": row.tau, "n": row.n}))
        handles = [Line2D([], [], linestyle="none", marker=marker[m], color="black", markerfacecolor="white",
                          label=m) for m in models]
        if any(label_level(r) is None for r in runs if counts_as_evidence(r)):
            handles.append(Line2D([], [], linestyle="none", marker="o", color=NEUTRAL, label="input corruption"))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)))
        fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="label-corruption level p",
                     shrink=0.6)
        fig.suptitle(f"{title} — {data}")
    return Plot("measures", title, caption, fig, series, notes)


# ---------------------------------------------------------------------------------- HTML
def section_html(runs: Sequence[dict], out: Path, embed: bool = False) -> str:
    """The section's HTML (empty when no run of the store has measures); writes its PNGs and tables."""
    from rethinkgen.report.html import FigureEntry, TableEntry, esc, render_figure, render_table
    from rethinkgen.report.style import save

    groups = {data: group for data, group in by_data(runs).items() if any(r.get("measures") for r in group)}
    if not groups:
        return ""
    parts = ['<h2 id="measures">Generalization measures (beyond the paper)</h2>',
             "<p>Complexity measures of each finished run's final weights (<code>rethinkgen list measures</code>; "
             "definitions, units and references in the documentation's Measures page), ranked against the runs' "
             "generalization gaps as Jiang et al. (ICLR 2020) and Dziugaite et al. (NeurIPS 2020) rank them. "
             "A measure that explains generalization should rank the runs as their gaps rank: τ and Ψ near "
             "1. The paper's point is that the same network fits true and random labels; a measure that tracks "
             "the gap across corruption levels (ψ level) tells them apart.</p>"]
    for data, group in groups.items():
        parts.append(f'<h3 id="measures-{esc(slug(data))}">Measures on {esc(data)}</h3>')
        table = measure_table(group, data)
        csv_path, md_path = table.write(out)
        parts.append(render_table(TableEntry(table, csv_path.name, md_path.name)))
        plot = scatter_plot(group, data)
        image = None
        if plot.figure is not None:
            image = f"measures_{slug(data)}.png"
            save(plot.figure, out / image)
        parts.append(render_figure(FigureEntry(plot, image), out, embed))
    return "\n".join(parts)


def add_section(page: str, runs: Sequence[dict], out: Path, embed: bool = False) -> str:
    """``page`` (the rendered index.html) with the measures section placed before the kernel and
    unfinished-runs sections (or at the end of the body)."""
    section = section_html(runs, out, embed)
    if not section:
        return page
    for anchor in ('<h2 id="kernels">', '<h2 id="unfinished">', "</body>"):
        at = page.find(anchor)
        if at >= 0:
            return page[:at] + section + "\n" + page[at:]
    return page + section
