"""Figure 2 of the paper (§3.1): learning curves and the early-stopping reference.

Training and test accuracy against steps for true-label runs, with the cumulative best test accuracy
shaded (the paper: "the shaded areas are the cumulative best test accuracy, as an indicator of
potential performance gain of early stopping"); BatchNorm against no BatchNorm when both small
Inceptions are in the store (Fig. 2b). Only evidence is drawn (:mod:`rethinkgen.report.evidence`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from matplotlib.patches import Patch

from rethinkgen.report.evidence import is_evidence, stopped_at_budget
from rethinkgen.report.plot import (
    Plot,
    Series,
    aggregate,
    model_sort,
    neutral_handle,
    no_figure,
    outside_legend,
)
from rethinkgen.report.runs import (
    cfg,
    describe,
    finite,
    labels_kind,
    one_per_seed,
    regularizers,
    setting_key,
    varying_fields,
)
from rethinkgen.report.style import NEUTRAL, Styler, new_figure, style

MARKS_PER_CURVE = 7


def _cummax(values: Sequence[float]) -> list[float]:
    out, best = [], -math.inf
    for v in values:
        if finite(v):
            best = max(best, v)
        out.append(best if best > -math.inf else math.nan)
    return out


def figure2(runs: Sequence[dict], data: str | None = None) -> Plot:
    """Learning curves with the cumulative best test accuracy (paper Fig. 2, §3.1).

    True-label runs that finished as intended, one panel per model: the small Inception with and
    without BatchNorm when both are present (Fig. 2b), else every model. In each panel, one colour and
    marker per regularizer setting (the same in every panel): training accuracy (solid; eval mode,
    whole training set) and test accuracy (dashed) at each recorded epoch against thousands of steps,
    and the area under the cumulative best test accuracy shaded, as in the paper. Settings whose curves
    coincide (weight decay 5e-4 barely moves them) stay visible: the first setting is drawn on top and
    thinnest, later ones below, wider and half-transparent, with markers at other epochs.
    """
    title = "Figure 2: learning curves and the early-stopping reference"
    caption = ("Training accuracy (solid) and test accuracy (dashed) at the end of every epoch on true "
               "labels, one colour and marker per regularizer setting. The shaded area reaches up to the "
               "cumulative best test accuracy (thin dotted line): where it rises above the dashed test "
               "curve, stopping early would have given a better model (paper Fig. 2). The notes give the "
               "gain in points.")
    eligible = [r for r in runs if is_evidence(r) and labels_kind(r) == "true" and r.get("history")]
    if not eligible:
        return no_figure("fig2", title, caption,
                         "needs true-label runs that finished as intended, with recorded epochs")
    models = sorted({cfg(r, "model") for r in eligible}, key=model_sort)
    notes: list[str] = []
    if {"inception_small", "inception_small_nobn"} <= set(models):
        if len(models) > 2:
            notes.append("BatchNorm comparison (paper Fig. 2b): only the two small Inceptions are drawn; "
                         "the other models' curves are in their own figures' data")
        models = ["inception_small", "inception_small_nobn"]
    series: list[Series] = []
    styler = Styler()
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
            for rank, key in enumerate(keys):
                group = settings[key]
                name = regularizers(group[0])
                extra = describe(key, varying)
                if extra:
                    name = f"{name}, {extra}"
                _draw_setting(ax, styler, model, name, group, rank, len(keys), series, notes)
            ax.set_title(model + {"inception_small": " (with BatchNorm)",
                                  "inception_small_nobn": " (without BatchNorm)"}.get(model, ""))
            ax.set_xlabel("training steps (thousands)")
            ax.set_ylabel("accuracy (%)")
            ax.set_ylim(0, 101)
        extra = [(neutral_handle(NEUTRAL, linestyle="-"), "train"),
                 (neutral_handle(NEUTRAL, linestyle="--"), "test"),
                 (neutral_handle(NEUTRAL, linestyle=":", linewidth=1.0), "best test so far"),
                 (Patch(color=NEUTRAL, alpha=0.2, linewidth=0), "shaded: up to the best test so far")]
        outside_legend(fig, axes, extra, where="below")
        fig.suptitle(title + (f" — {data}" if data else ""))
    return Plot("fig2", title, caption, fig, series, notes)


def _draw_setting(ax, styler: Styler, model: str, name: str, group: list[dict], rank: int, n_settings: int,
                  series: list[Series], notes: list[str]) -> None:
    """One regularizer setting in one panel: train, test, best-so-far and its shading."""
    seeds = len(group)
    histories = [sorted(r["history"], key=lambda row: row["epoch"]) for r in group]
    steps = aggregate([[(row["epoch"], row["step"]) for row in h] for h in histories])
    train = aggregate([[(row["epoch"], 100 * row["train_acc"]) for row in h
                        if finite(row.get("train_acc"))] for h in histories])
    test = aggregate([[(row["epoch"], 100 * row["test_acc"]) for row in h
                       if finite(row.get("test_acc"))] for h in histories])
    best = aggregate([list(zip([row["epoch"] for row in h],
                               _cummax([100 * row["test_acc"] if finite(row.get("test_acc"))
                                        else math.nan for row in h]), strict=True))
                      for h in histories])
    step_of = dict(zip(steps[0], steps[1], strict=True))
    color, marker = styler.color(name), styler.marker(name)
    stopped = sum(1 for r in group if stopped_at_budget(r))
    suffix = (f" ({seeds} seeds)" if seeds > 1 else "") + (" — stopped at max_epochs" if stopped else "")
    width, alpha, z = 1.3 + 0.6 * rank, 1.0 if rank == 0 else 0.75, 10 + n_settings - rank
    ax.plot([], [], color=color, marker=marker, linestyle="-", label=f"{name}{suffix}")  # legend entry
    for (xs_e, mean, lo, hi, n), which, ls in ((train, "train", "-"), (test, "test", "--")):
        kx = [step_of[e] / 1000 for e in xs_e]
        every = max(n_settings, len(kx) // MARKS_PER_CURVE)  # offsets rank·every/n all differ
        ax.plot(kx, mean, color=color, linestyle=ls, marker=marker, linewidth=width, alpha=alpha, zorder=z,
                markevery=(min(max(len(kx) - 1, 0), rank * every // max(n_settings, 1)), every))
        multi = bool(n) and max(n) > 1
        if multi:
            ax.fill_between(kx, lo, hi, color=color, alpha=0.10, linewidth=0, zorder=1)
        series.append(Series(f"{name}: {which}", [step_of[e] for e in xs_e], mean,
                             lo if multi else None, hi if multi else None, n, panel=model,
                             extra={"epochs": xs_e, "zorder": z}))
    bx = [step_of[e] / 1000 for e in best[0]]
    ax.plot(bx, best[1], color=color, linestyle=":", linewidth=1.0, zorder=z)
    ax.fill_between(bx, 0, best[1], color=color, alpha=0.10, linewidth=0, zorder=0)
    series.append(Series(f"{name}: best test", [step_of[e] for e in best[0]], best[1], panel=model,
                         kind="best", extra={"epochs": best[0]}))
    test_at = dict(zip(test[0], test[1], strict=True))
    gain = max((b - test_at.get(e, b) for e, b in zip(best[0], best[1], strict=True)), default=0)
    final_gap = (best[1][-1] - test[1][-1]) if best[1] and test[1] else 0.0
    notes.append(f"{model}, {name}: best test accuracy {max(best[1]):.2f}%, final {test[1][-1]:.2f}% "
                 f"(early stopping would gain {final_gap:.2f} points; largest gap along training "
                 f"{gain:.2f})" + (f"; {stopped} of {seeds} runs stopped at max_epochs" if stopped else ""))
