"""Figures 1a, 1b, 1c and 2 of the paper, drawn from stored runs (plain dicts, see ``runs.py``).

Each function takes the runs of one dataset and returns a :class:`Plot`: the matplotlib Figure (or None
with the reason when the runs cannot make it) *and* the series it drew, so tests and the HTML page can
check exactly what was plotted. Several seeds of one setting are drawn as their mean with a min-max
band or bar; a run that is missing or did not converge is marked as such, never filled in.

- Figure 1a: training loss against thousands of SGD steps, one curve per corruption type (paper §2,
  Fig. 1a).
- Figure 1b: convergence time relative to true labels against the label-corruption level, one line per
  model (Fig. 1b). Convergence time = the summary's ``converged_step``: the first step at which
  eval-mode accuracy on the whole (corrupted) training set reached the target.
- Figure 1c: test error against the label-corruption level, one line per model (Fig. 1c); for CIFAR-10
  the paper's endpoints derived from Table 1 are drawn beside ours.
- Figure 2: learning curves (train and test accuracy against steps) with the cumulative best test
  accuracy, the early-stopping reference (§3.1, Fig. 2); BatchNorm against no BatchNorm when both
  small Inceptions are in the store.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from rethinkgen.report import paper
from rethinkgen.report.runs import (
    NUM_CLASSES,
    cfg,
    describe,
    finite,
    is_finished,
    label_level,
    labels_kind,
    one_per_seed,
    regularizers,
    setting_key,
    spread,
    varying_fields,
)
from rethinkgen.report.style import NEUTRAL, Styler, new_figure, style

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


def _aggregate(curves: Sequence[Sequence[tuple[float, float]]]) -> tuple[list, list, list, list, list]:
    """Mean, min, max and count of y over the curves at each x (non-finite y dropped)."""
    by_x: dict[float, list[float]] = defaultdict(list)
    for curve in curves:
        for x, y in curve:
            if finite(x) and finite(y):
                by_x[float(x)].append(float(y))
    xs = sorted(by_x)
    stats = [spread(by_x[x]) for x in xs]
    return xs, [s[0] for s in stats], [s[1] for s in stats], [s[2] for s in stats], [s[3] for s in stats]


def _panel_titles(keys: list[tuple], head: dict[tuple, str], shown: Iterable[str]) -> dict[tuple, str]:
    """Panel titles: ``head[key]`` plus the setting fields that differ between the panels."""
    varying = varying_fields(keys, exclude=shown)
    titles = {}
    for key in keys:
        extra = describe(key, varying)
        titles[key] = f"{head[key]} ({extra})" if extra else head[key]
    return titles


def _no_figure(key: str, title: str, caption: str, reason: str) -> Plot:
    return Plot(key=key, title=title, caption=caption, figure=None, series=[], notes=[], reason=reason)


# --- Figure 1a -------------------------------------------------------------------------------------

def figure1a(runs: Sequence[dict], data: str | None = None) -> Plot:
    """Training loss against thousands of steps, one curve per corruption type (paper Fig. 1a).

    One panel per setting (model and every other config field except seed/corruption/level) that has
    finished runs of at least two of the five corruption types, one of them an input corruption
    (shuffled/random pixels, gaussian); only when no setting has one, settings with true and random
    labels alone (e.g. Table 1's rows) get panels instead. Points are the stored step losses
    (``log_every`` steps apart); several seeds are averaged at each step, with a min-max band.
    """
    title = "Figure 1a: training loss under each corruption"
    caption = ("Training loss (cross-entropy, mean over the logged minibatch) against SGD steps, one curve "
               "per corruption of the training data (paper Fig. 1a). The dotted line is the loss of a "
               "uniform guess, ln K.")
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if is_finished(run) and cfg(run, "corruption") in paper.FIGURE1_CORRUPTIONS:
            groups[setting_key(run)][cfg(run, "corruption")].append(run)
    keys = [k for k in groups if len(groups[k]) >= 2]
    with_inputs = [k for k in keys if set(groups[k]) - {"true_labels", "random_labels"}]
    keys = sorted(with_inputs or keys, key=lambda k: (model_sort(dict(k)["model"]), k))
    if not keys:
        return _no_figure("fig1a", title, caption,
                          "needs finished runs of at least two of the corruption types "
                          f"({', '.join(paper.FIGURE1_CORRUPTIONS)}) with otherwise identical settings")
    titles = _panel_titles(keys, {k: dict(k)["model"] for k in keys}, shown=("model",))
    series: list[Series] = []
    notes: list[str] = []
    with style():
        fig, axes = new_figure(len(keys))
        styler = Styler(paper.FIGURE1_CORRUPTIONS)
        for ax, key in zip(axes, keys, strict=True):
            for corruption in paper.FIGURE1_CORRUPTIONS:
                members = groups[key].get(corruption)
                if not members:
                    continue
                curves = []
                for run in members:
                    losses = [tuple(p) for p in (run.get("step_losses") or [])]
                    if not losses:
                        losses = [(row["step"], row["train_loss"]) for row in run.get("history") or []
                                  if row.get("train_loss") is not None]
                        notes.append(f"{titles[key]}, {corruption}, seed {cfg(run, 'seed')}: no step losses "
                                     "stored; drawn from the per-epoch mean training loss")
                    curves.append(losses)
                xs, mean, lo, hi, n = _aggregate(curves)
                if not xs:
                    notes.append(f"{titles[key]}, {corruption}: no finite losses recorded")
                    continue
                seeds = len(members)
                label = CORRUPTION_LABELS[corruption] + (f" (mean of {seeds} seeds)" if seeds > 1 else "")
                kx = [x / 1000 for x in xs]
                ax.plot(kx, mean, label=label, color=styler.color(corruption),
                        linestyle=styler.linestyle(corruption), marker=styler.marker(corruption),
                        markevery=max(1, len(kx) // 8))
                multi = max(n) > 1
                if multi:
                    ax.fill_between(kx, lo, hi, color=styler.color(corruption), alpha=0.18, linewidth=0)
                series.append(Series(corruption, xs, mean, lo if multi else None, hi if multi else None, n,
                                     panel=titles[key]))
            k = NUM_CLASSES.get(dict(key)["data"])
            if k:
                ax.axhline(math.log(k), color=NEUTRAL, linestyle=":", linewidth=1.0,
                           label=f"uniform guess (ln {k})")
            ax.set_title(titles[key])
            ax.set_xlabel("training steps (thousands)")
            ax.set_ylabel("training loss (cross-entropy, nats)")
            ax.set_ylim(bottom=0)
            ax.legend(loc="best")
        fig.suptitle(title + (f" — {data}" if data else ""))
    return Plot("fig1a", title, caption, fig, series, notes)


# --- Figure 1b / 1c --------------------------------------------------------------------------------

def level_lines(runs: Sequence[dict]) -> dict[tuple, dict[float, dict[int, dict]]]:
    """Finished label-corruption runs as setting -> level -> seed -> run.

    ``true_labels`` counts as level 0 and ``random_labels`` as level 1, used only where no
    ``partial_labels`` run of that level and seed exists. Only settings with a level strictly between 0
    and 1 make a line: a setting run on true and random labels alone (a Table 1 row pair, a regularizer
    ablation) is not a label-corruption sweep.
    """
    lines: dict[tuple, dict[float, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        level = label_level(run)
        if level is None or not is_finished(run):
            continue
        slot = lines[setting_key(run)][level]
        seed = cfg(run, "seed")
        old = slot.get(seed)
        if old is None or (cfg(old, "corruption") != "partial_labels"
                           and cfg(run, "corruption") == "partial_labels"):
            slot[seed] = run
    return {k: dict(v) for k, v in lines.items() if any(0.0 < level < 1.0 for level in v)}


def _unfinished_levels(runs: Sequence[dict]) -> dict[tuple, set[float]]:
    out: dict[tuple, set[float]] = defaultdict(set)
    for run in runs:
        level = label_level(run)
        if level is not None and not is_finished(run):
            out[setting_key(run)].add(level)
    return out


def _line_titles(keys: list[tuple]) -> dict[tuple, str]:
    return _panel_titles(keys, {k: dict(k)["model"] for k in keys}, shown=("model",))


def _style_names(keys: list[tuple], titles: dict[tuple, str]) -> dict[tuple, str]:
    """Style each line by its model (one colour per model across figures) unless a model has several."""
    models = [dict(k)["model"] for k in keys]
    return {k: dict(k)["model"] if models.count(dict(k)["model"]) == 1 else titles[k] for k in keys}


def _mark_missing(ax, styler: Styler, name: str, levels: Iterable[float], *, top: bool) -> None:
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    levels = sorted(levels)
    if levels:
        ax.plot(levels, [0.97 if top else 0.03] * len(levels), linestyle="none",
                marker="^" if top else "x", color=styler.color(name), transform=trans, clip_on=False,
                markersize=7)


def figure1b(runs: Sequence[dict], data: str | None = None) -> Plot:
    """Convergence time relative to true labels against label-corruption level (paper Fig. 1b).

    For each model (setting) and seed: ``converged_step(p) / converged_step(p = 0)``; several seeds give
    the mean with a min-max bar. A level whose run did not reach the target train accuracy is marked
    with ▲ at the top of the axes; a level with no finished run with × at the bottom.
    """
    title = "Figure 1b: time to fit, relative to true labels"
    caption = ("Convergence time (SGD steps until eval-mode accuracy on the whole corrupted training set "
               "reached the target) divided by the time on true labels (p = 0), same model and seed "
               "(paper Fig. 1b). ▲ at the top: the run did not reach the target; × at the bottom: no "
               "finished run.")
    lines = level_lines(runs)
    if not lines:
        return _no_figure("fig1b", title, caption,
                          "needs finished partial_labels runs at a level strictly between 0 and 1 (with "
                          "p = 0 and p = 1 from partial_labels, true_labels or random_labels)")
    unfinished = _unfinished_levels(runs)
    keys = sorted(lines, key=lambda k: (model_sort(dict(k)["model"]), k))
    titles = _line_titles(keys)
    all_levels = sorted({lv for k in keys for lv in lines[k]} | {lv for k in keys for lv in unfinished[k]})
    series: list[Series] = []
    notes: list[str] = []
    with style():
        fig, (ax,) = new_figure(1, panel_size=(6.2, 4.2))
        snames = _style_names(keys, titles)
        styler = Styler(snames[k] for k in keys)
        for key in keys:
            name = titles[key]
            sname = snames[key]
            levels = lines[key]
            base = levels.get(0.0, {})
            xs, ys, los, his, ns, not_conv = [], [], [], [], [], []
            for level in sorted(levels):
                ratios = []
                for seed, run in levels[level].items():
                    b = base.get(seed)
                    if not finite(run.get("converged_step")):
                        not_conv.append(level)
                        notes.append(f"{name}, p = {level:g}, seed {seed}: did not reach the target train "
                                     f"accuracy (status {run.get('status')})")
                        continue
                    if b is None or not finite(b.get("converged_step")) or b["converged_step"] <= 0:
                        notes.append(f"{name}, seed {seed}: no converged true-label (p = 0) run, so no "
                                     f"relative time at p = {level:g}")
                        continue
                    ratios.append(run["converged_step"] / b["converged_step"])
                mean, lo, hi, n = spread(ratios)
                if n:
                    xs.append(level)
                    ys.append(mean)
                    los.append(lo)
                    his.append(hi)
                    ns.append(n)
            missing = [lv for lv in all_levels if lv not in levels]
            kw = styler.kwargs(sname)
            if xs:
                multi = max(ns) > 1
                ax.errorbar(xs, ys, yerr=[[y - lo for y, lo in zip(ys, los, strict=True)],
                                          [hi - y for y, hi in zip(ys, his, strict=True)]] if multi else None,
                            label=name + (" (mean, min-max over seeds)" if multi else ""), capsize=3, **kw)
                series.append(Series(name, xs, ys, los if multi else None, his if multi else None, ns,
                                     extra={"model": dict(key)["model"]}))
            _mark_missing(ax, styler, sname, sorted(set(not_conv)), top=True)
            _mark_missing(ax, styler, sname, missing, top=False)
            if not_conv:
                series.append(Series(name, sorted(set(not_conv)), [], kind="not_converged"))
            if missing:
                series.append(Series(name, missing, [], kind="missing"))
                notes.append(f"{name}: no finished run at p = {', '.join(f'{m:g}' for m in missing)}")
        ax.axhline(1.0, color=NEUTRAL, linestyle=":", linewidth=1.0)
        handles, labels = ax.get_legend_handles_labels()
        if any(s.kind == "not_converged" for s in series):
            handles.append(Line2D([], [], color=NEUTRAL, marker="^", linestyle="none"))
            labels.append("did not reach target (top)")
        if any(s.kind == "missing" for s in series):
            handles.append(Line2D([], [], color=NEUTRAL, marker="x", linestyle="none"))
            labels.append("no finished run (bottom)")
        ax.legend(handles, labels, loc="upper left")
        ax.set_xlabel("label corruption level p (fraction of labels redrawn)")
        ax.set_ylabel("convergence time (× steps on true labels)")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(bottom=0)
        ax.set_title(title + (f" — {data}" if data else ""))
    return Plot("fig1b", title, caption, fig, series, notes)


def figure1c(runs: Sequence[dict], data: str | None = None) -> Plot:
    """Test error against label-corruption level, one line per model (paper Fig. 1c).

    Test error = 100 · (1 − final test accuracy), against the true test labels. Runs that stopped
    before reaching the target train accuracy are drawn hollow (their test error is not the
    generalization error). For CIFAR-10 the paper's endpoints derived from Table 1 [D] are added.
    """
    title = "Figure 1c: test error under label corruption"
    caption = ("Test error (%) on the true test labels after training, against the label corruption "
               "level (paper Fig. 1c). Hollow markers: runs that did not reach the target train accuracy; "
               "× at the bottom: no finished run. The dotted line is chance.")
    lines = level_lines(runs)
    if not lines:
        return _no_figure("fig1c", title, caption,
                          "needs finished partial_labels runs at a level strictly between 0 and 1 (with "
                          "p = 0 and p = 1 from partial_labels, true_labels or random_labels)")
    unfinished = _unfinished_levels(runs)
    keys = sorted(lines, key=lambda k: (model_sort(dict(k)["model"]), k))
    titles = _line_titles(keys)
    all_levels = sorted({lv for k in keys for lv in lines[k]} | {lv for k in keys for lv in unfinished[k]})
    series: list[Series] = []
    notes: list[str] = []
    dataset = data or dict(keys[0])["data"]
    with style():
        fig, (ax,) = new_figure(1, panel_size=(6.2, 4.2))
        snames = _style_names(keys, titles)
        styler = Styler(snames[k] for k in keys)
        for key in keys:
            name = titles[key]
            model = dict(key)["model"]
            sname = snames[key]
            levels = lines[key]
            xs, ys, los, his, ns, hollow = [], [], [], [], [], []
            for level in sorted(levels):
                errors = [100.0 * (1.0 - run["test_acc"]) for run in levels[level].values()
                          if finite(run.get("test_acc"))]
                mean, lo, hi, n = spread(errors)
                if not n:
                    continue
                xs.append(level)
                ys.append(mean)
                los.append(lo)
                his.append(hi)
                ns.append(n)
                if any(run.get("status") != "converged" for run in levels[level].values()):
                    hollow.append((level, mean))
            kw = styler.kwargs(sname)
            multi = bool(ns) and max(ns) > 1
            ax.errorbar(xs, ys, yerr=[[y - lo for y, lo in zip(ys, los, strict=True)],
                                      [hi - y for y, hi in zip(ys, his, strict=True)]] if multi else None,
                        label=name + (" (mean, min-max over seeds)" if multi else ""), capsize=3, **kw)
            series.append(Series(name, xs, ys, los if multi else None, his if multi else None, ns,
                                 extra={"model": model}))
            if hollow:
                ax.plot([h[0] for h in hollow], [h[1] for h in hollow], linestyle="none", marker="o",
                        markersize=10, markerfacecolor="white", markeredgecolor=kw["color"], zorder=3)
                series.append(Series(name, [h[0] for h in hollow], [h[1] for h in hollow],
                                     kind="not_converged"))
                notes.append(f"{name}: did not reach the target train accuracy at p = "
                             f"{', '.join(f'{h[0]:g}' for h in hollow)}")
            missing = [lv for lv in all_levels if lv not in levels]
            _mark_missing(ax, styler, sname, missing, top=False)
            if missing:
                series.append(Series(name, missing, [], kind="missing"))
                notes.append(f"{name}: no finished run at p = {', '.join(f'{m:g}' for m in missing)}")
        if dataset == "cifar10":
            shown = {dict(k)["model"] for k in keys}
            for model in sorted(shown, key=model_sort):
                points = [p for p in paper.figure1c_expected() if p["model"] == model]
                if points:
                    px = [p["level"] for p in points]
                    py = [p["test_error"] for p in points]
                    ax.plot(px, py, linestyle="none", marker="s", markersize=9, markerfacecolor="none",
                            markeredgecolor=styler.color(model), markeredgewidth=1.6)
                    series.append(Series(model, px, py, kind="paper", extra={"mark": "D"}))
            if any(s.kind == "paper" for s in series):
                ax.plot([], [], linestyle="none", marker="s", markerfacecolor="none", markeredgecolor=NEUTRAL,
                        label="paper, from Table 1 [D]")
        k = NUM_CLASSES.get(dataset)
        if k:
            ax.axhline(100.0 * (1 - 1 / k), color=NEUTRAL, linestyle=":", linewidth=1.0,
                       label=f"chance ({100 * (1 - 1 / k):g}%)")
        if any(s.kind == "missing" for s in series):
            ax.plot([], [], color=NEUTRAL, marker="x", linestyle="none", label="no finished run")
        ax.legend(loc="lower right")
        ax.set_xlabel("label corruption level p (fraction of labels redrawn)")
        ax.set_ylabel("test error (%)")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(0, 100)
        ax.set_title(title + (f" — {data}" if data else ""))
    return Plot("fig1c", title, caption, fig, series, notes)


# --- Figure 2 --------------------------------------------------------------------------------------

def _cummax(values: Sequence[float]) -> list[float]:
    out, best = [], -math.inf
    for v in values:
        if finite(v):
            best = max(best, v)
        out.append(best if best > -math.inf else math.nan)
    return out


def figure2(runs: Sequence[dict], data: str | None = None) -> Plot:
    """Learning curves with the cumulative best test accuracy (paper Fig. 2, §3.1).

    Finished true-label runs, one panel per model: the small Inception with and without BatchNorm when
    both are present (Fig. 2b), else every model. In each panel, one colour per regularizer setting:
    training accuracy (solid; eval mode, whole training set) and test accuracy (dashed) at each
    recorded epoch against thousands of steps; the shaded band reaches up to the cumulative best test
    accuracy, i.e. what early stopping could have gained.
    """
    title = "Figure 2: learning curves and the early-stopping reference"
    caption = ("Training accuracy (solid) and test accuracy (dashed) at the end of every epoch on true "
               "labels. The thin dotted line is the cumulative best test accuracy; the shading between it "
               "and the test curve is the gain early stopping could give (paper Fig. 2).")
    eligible = [r for r in runs if is_finished(r) and labels_kind(r) == "true" and r.get("history")]
    if not eligible:
        return _no_figure("fig2", title, caption, "needs finished true-label runs with recorded epochs")
    models = sorted({cfg(r, "model") for r in eligible}, key=model_sort)
    notes: list[str] = []
    if {"inception_small", "inception_small_nobn"} <= set(models):
        if len(models) > 2:
            notes.append("BatchNorm comparison (paper Fig. 2b): only the two small Inceptions are drawn; "
                         "the other models' curves are in their own figures' data")
        models = ["inception_small", "inception_small_nobn"]
    series: list[Series] = []
    with style():
        fig, axes = new_figure(len(models), sharey=True)
        for ax, model in zip(axes, models, strict=True):
            members = [r for r in eligible if cfg(r, "model") == model]
            settings: dict[tuple, list[dict]] = defaultdict(list)
            for run in members:
                settings[setting_key(run)].append(run)
            settings = {k: one_per_seed(v) for k, v in settings.items()}
            keys = sorted(settings, key=lambda k: (regularizers(settings[k][0]) != "no regularizer", k))
            varying = varying_fields(keys, exclude=("model", "augment", "flip", "weight_decay", "dropout"))
            styler = Styler()
            for key in keys:
                group = settings[key]
                name = regularizers(group[0])
                extra = describe(key, varying)
                if extra:
                    name = f"{name}, {extra}"
                seeds = len(group)
                histories = [sorted(r["history"], key=lambda row: row["epoch"]) for r in group]
                steps = _aggregate([[(row["epoch"], row["step"]) for row in h] for h in histories])
                train = _aggregate([[(row["epoch"], 100 * row["train_acc"]) for row in h
                                     if finite(row.get("train_acc"))] for h in histories])
                test = _aggregate([[(row["epoch"], 100 * row["test_acc"]) for row in h
                                    if finite(row.get("test_acc"))] for h in histories])
                best = _aggregate([list(zip([row["epoch"] for row in h],
                                            _cummax([100 * row["test_acc"] if finite(row.get("test_acc"))
                                                     else math.nan for row in h]), strict=True))
                                   for h in histories])
                step_of = dict(zip(steps[0], steps[1], strict=True))
                color = styler.color(name)
                suffix = f" ({seeds} seeds)" if seeds > 1 else ""
                for (xs_e, mean, lo, hi, n), which, ls in ((train, "train", "-"), (test, "test", "--")):
                    kx = [step_of[e] / 1000 for e in xs_e]
                    ax.plot(kx, mean, color=color, linestyle=ls, label=f"{name}: {which}{suffix}")
                    multi = bool(n) and max(n) > 1
                    if multi:
                        ax.fill_between(kx, lo, hi, color=color, alpha=0.12, linewidth=0)
                    series.append(Series(f"{name}: {which}", [step_of[e] for e in xs_e], mean,
                                         lo if multi else None, hi if multi else None, n, panel=model,
                                         extra={"epochs": xs_e}))
                bx = [step_of[e] / 1000 for e in best[0]]
                test_at = dict(zip(test[0], test[1], strict=True))
                ax.plot(bx, best[1], color=color, linestyle=":", linewidth=1.0)
                ax.fill_between(bx, [test_at.get(e, b) for e, b in zip(best[0], best[1], strict=True)],
                                best[1], color=color, alpha=0.22, linewidth=0)
                series.append(Series(f"{name}: best test", [step_of[e] for e in best[0]], best[1],
                                     panel=model, kind="best", extra={"epochs": best[0]}))
                gain = max((b - test_at.get(e, b) for e, b in zip(best[0], best[1], strict=True)), default=0)
                final_gap = (best[1][-1] - test[1][-1]) if best[1] and test[1] else 0.0
                notes.append(f"{model}, {name}: best test accuracy {max(best[1]):.2f}%, final "
                             f"{test[1][-1]:.2f}% (early stopping would gain {final_gap:.2f} points; "
                             f"largest gap along training {gain:.2f})")
            ax.set_title(model + {"inception_small": " (with BatchNorm)",
                                  "inception_small_nobn": " (without BatchNorm)"}.get(model, ""))
            ax.set_xlabel("training steps (thousands)")
            ax.set_ylabel("accuracy (%)")
            ax.set_ylim(0, 101)
            ax.legend(loc="lower right")
        fig.suptitle(title + (f" — {data}" if data else ""))
    return Plot("fig2", title, caption, fig, series, notes)


def all_figures(runs: Sequence[dict], data: str | None = None) -> list[Plot]:
    """Figures 1a, 1b, 1c and 2 for the runs of one dataset."""
    return [figure1a(runs, data), figure1b(runs, data), figure1c(runs, data), figure2(runs, data)]
