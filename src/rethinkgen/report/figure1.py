"""Figure 1 of the paper (§2): 1a training loss per corruption, 1b time to fit, 1c test error.

- Figure 1a: training loss against thousands of SGD steps, one curve per corruption type (Fig. 1a).
- Figure 1b: convergence time relative to true labels against the label-corruption level, one line
  per model (Fig. 1b). Convergence time = the summary's ``converged_step``: the first *evaluated* step
  at which eval-mode accuracy on the whole (corrupted) training set reached the target. Evaluations
  happen every ``eval_every`` steps (default: once per epoch), and that resolution is drawn.
- Figure 1c: test error against the label-corruption level, one line per model (Fig. 1c); for CIFAR-10
  the paper's endpoints derived from Table 1 are drawn beside ours.

Only evidence is drawn as a value (:mod:`rethinkgen.report.evidence`): runs that stopped at max_epochs
are drawn hollow (1c) or as ▲ (1b, no convergence time), and levels without any evidence (diverged,
failed, unfinished or missing runs) as × at the bottom.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from rethinkgen.report import paper
from rethinkgen.report.evidence import is_evidence, left_out_text, stopped_at_budget
from rethinkgen.report.plot import (
    CORRUPTION_LABELS,
    Plot,
    Series,
    aggregate,
    left_out_levels,
    level_keys,
    level_lines,
    line_titles,
    mark_edge,
    model_sort,
    neutral_handle,
    no_figure,
    outside_legend,
    panel_titles,
    style_names,
)
from rethinkgen.report.runs import NUM_CLASSES, cfg, convergence_resolution, finite, setting_key, spread
from rethinkgen.report.style import NEUTRAL, Styler, new_figure, style

MARKS_PER_CURVE = 8  # markers along a long curve; offset per series so coinciding curves stay visible


def figure1a(runs: Sequence[dict], data: str | None = None) -> Plot:
    """Training loss against thousands of steps, one curve per corruption type (paper Fig. 1a).

    One panel per setting (model and every other config field except seed/corruption/level) that has
    evidence runs of at least two of the five corruption types, one of them an input corruption
    (shuffled/random pixels, gaussian); only when no setting has one, settings with true and random
    labels alone (e.g. Table 1's rows) get panels instead. Points are the stored step losses
    (``log_every`` steps apart); several seeds are averaged at each step, with a min-max band.

    Curves that coincide (an MLP sees shuffled pixels as a relabelled input, so its curve lies on the
    true-labels one) stay visible: the first corruption is drawn on top and thinnest, each later one
    below it and wider, half-transparent, with its markers at other steps.
    """
    title = "Figure 1a: training loss under each corruption"
    caption = ("Training loss (cross-entropy, mean over the logged minibatch) against SGD steps, one curve "
               "per corruption of the training data (paper Fig. 1a). Curves that lie on top of each other "
               "are drawn wider underneath, with markers at different steps. The dotted line is the loss "
               "of a uniform guess, ln K.")
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if is_evidence(run) and cfg(run, "corruption") in paper.FIGURE1_CORRUPTIONS:
            groups[setting_key(run)][cfg(run, "corruption")].append(run)
    keys = [k for k in groups if len(groups[k]) >= 2]
    with_inputs = [k for k in keys if set(groups[k]) - {"true_labels", "random_labels"}]
    keys = sorted(with_inputs or keys, key=lambda k: (model_sort(dict(k)["model"]), k))
    if not keys:
        return no_figure("fig1a", title, caption,
                         "needs runs that finished as intended of at least two of the corruption types "
                         f"({', '.join(paper.FIGURE1_CORRUPTIONS)}) with otherwise identical settings")
    titles = panel_titles(keys, {k: dict(k)["model"] for k in keys}, shown=("model",))
    series: list[Series] = []
    notes: list[str] = []
    order = paper.FIGURE1_CORRUPTIONS
    with style():
        fig, axes = new_figure(len(keys))
        styler = Styler(order)
        for ax, key in zip(axes, keys, strict=True):
            for rank, corruption in enumerate(order):
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
                xs, mean, lo, hi, n = aggregate(curves)
                if not xs:
                    notes.append(f"{titles[key]}, {corruption}: no finite losses recorded")
                    continue
                seeds = len(members)
                stopped = sum(1 for r in members if stopped_at_budget(r))
                label = CORRUPTION_LABELS[corruption] + (f" (mean of {seeds} seeds)" if seeds > 1 else "")
                if stopped:
                    label += " — stopped at max_epochs"
                    notes.append(f"{titles[key]}, {corruption}: {stopped} of {seeds} runs stopped at "
                                 "max_epochs before reaching the target train accuracy")
                kx = [x / 1000 for x in xs]
                every = max(len(order), len(kx) // MARKS_PER_CURVE)  # offsets rank·every/5 all differ
                ax.plot(kx, mean, label=label, color=styler.color(corruption),
                        linestyle=styler.linestyle(corruption), marker=styler.marker(corruption),
                        markevery=(min(len(kx) - 1, rank * every // len(order)), every),
                        linewidth=1.4 + 0.4 * rank, alpha=1.0 if rank == 0 else 0.8, zorder=10 - rank)
                multi = max(n) > 1
                if multi:
                    ax.fill_between(kx, lo, hi, color=styler.color(corruption), alpha=0.15, linewidth=0,
                                    zorder=1)
                series.append(Series(corruption, xs, mean, lo if multi else None, hi if multi else None, n,
                                     panel=titles[key], extra={"zorder": 10 - rank, "stopped": stopped}))
            k = NUM_CLASSES.get(dict(key)["data"])
            if k:
                ax.axhline(math.log(k), color=NEUTRAL, linestyle=":", linewidth=1.0,
                           label=f"uniform guess (ln {k})")
            ax.set_title(titles[key])
            ax.set_xlabel("training steps (thousands)")
            ax.set_ylabel("training loss (cross-entropy, nats)")
            ax.set_ylim(bottom=0)
        outside_legend(fig, axes, where="below")
        fig.suptitle(title + (f" — {data}" if data else ""))
    return Plot("fig1a", title, caption, fig, series, notes)


def _left_out_note(name: str, levels: dict[float, list[dict]]) -> list[str]:
    return [f"{name}, p = {level:g}: left out ({left_out_text(group)}) — not evidence"
            for level, group in sorted(levels.items())]


def _only_left_out(ax, styler: Styler, name: str, sname: str, levels: dict, left: dict[float, list[dict]],
                   series: list[Series], notes: list[str]) -> bool:
    """A setting none of whose label-level runs is evidence: × marks at its levels and a legend entry
    saying why, no line. Returns True when the setting was one (``levels``, its evidence, is empty)."""
    if levels:
        return False
    xs = sorted(left)
    everyone = [r for group in left.values() for r in group]
    mark_edge(ax, styler, sname, xs, top=False,
              label=f"{name}: no run finished as intended ({left_out_text(everyone)})")
    series.append(Series(name, xs, [], kind="missing", extra={"whole_setting": True}))
    notes += _left_out_note(name, left)
    return True


def _layered(kw: dict, rank: int) -> dict:
    """Line style for the ``rank``-th line of a figure: the first on top, thin, small markers; each later
    one drawn below it, wider, with bigger half-transparent markers, so lines that coincide all show."""
    return {**kw, "linewidth": 1.6 + 1.6 * rank, "markersize": 5.5 + 3.0 * rank, "alpha": 1.0 if rank == 0 else 0.6}


def _resolution_text(values: Sequence[int]) -> str:
    vals = sorted(set(values))
    if not vals:
        return "resolution unknown"
    return f"checked every {vals[0]:,} steps" if len(vals) == 1 else \
        f"checked every {vals[0]:,}–{vals[-1]:,} steps"


def figure1b(runs: Sequence[dict], data: str | None = None) -> Plot:
    """Convergence time relative to true labels against label-corruption level (paper Fig. 1b).

    For each model (setting) and seed: ``converged_step(p) / converged_step(p = 0)``; several seeds give
    the mean with a min-max bar. Convergence is only checked every r steps (the config's ``eval_every``,
    else once per epoch), so a step count is known to within r: the light bar around each point spans
    ± r / converged_step(p = 0), and the legend states r. A level with a run that stopped at
    max_epochs (no convergence time) is marked ▲ at the top of the axes and gets no mean (one over the
    runs that fit would leave out the slowest); a level with no run that finished as intended
    (diverged, failed, unfinished or missing) × at the bottom.
    """
    title = "Figure 1b: time to fit, relative to true labels"
    caption = ("Convergence time (SGD steps until eval-mode accuracy on the whole corrupted training set "
               "reached the target) divided by the time on true labels (p = 0), same model and seed "
               "(paper Fig. 1b). Accuracy is checked every r steps (legend), so each step count is known "
               "to within r: the light bar spans ± r / steps at p = 0. ▲ at the top: a run stopped at "
               "max_epochs before reaching the target (no mean is drawn at that level: one over the runs "
               "that fit would leave out the slowest); × at the bottom: no run that finished as intended "
               "(diverged, failed, unfinished or missing).")
    lines = level_lines(runs)
    if not lines:
        return no_figure("fig1b", title, caption,
                         "needs partial_labels runs that finished as intended at a level strictly between 0 "
                         "and 1 (with p = 0 and p = 1 from partial_labels, true_labels or random_labels)")
    left_out = left_out_levels(runs)
    keys = level_keys(lines, left_out)
    titles = line_titles(keys)
    all_levels = sorted({lv for k in keys for lv in (*lines.get(k, {}), *left_out.get(k, {}))})
    series: list[Series] = []
    notes: list[str] = []
    with style():
        fig, (ax,) = new_figure(1, panel_size=(6.2, 4.2))
        snames = style_names(keys, titles)
        styler = Styler(snames[k] for k in keys)
        for rank, key in enumerate(keys):
            name, sname, levels = titles[key], snames[key], lines.get(key, {})
            if _only_left_out(ax, styler, name, sname, levels, left_out.get(key, {}), series, notes):
                continue
            base = levels.get(0.0, {})
            xs, ys, los, his, ns, res, not_conv = [], [], [], [], [], [], []
            resolutions = [r for lv in levels.values() for run in lv.values()
                           if (r := convergence_resolution(run)) is not None]
            for level in sorted(levels):
                ratios, halfwidths = [], []
                for seed, run in levels[level].items():
                    b = base.get(seed)
                    if not finite(run.get("converged_step")):
                        not_conv.append(level)
                        notes.append(f"{name}, p = {level:g}, seed {seed}: stopped at max_epochs before "
                                     f"reaching the target train accuracy (status {run.get('status')})")
                        continue
                    if b is None or not finite(b.get("converged_step")) or b["converged_step"] <= 0:
                        notes.append(f"{name}, seed {seed}: no true-label (p = 0) run that reached the "
                                     f"target, so no relative time at p = {level:g}")
                        continue
                    ratios.append(run["converged_step"] / b["converged_step"])
                    r = convergence_resolution(run)
                    if r is not None:
                        halfwidths.append(r / b["converged_step"])
                mean, lo, hi, n = spread(ratios)
                if n and level in not_conv:  # a mean over the runs that fit would leave out the slowest
                    notes.append(f"{name}, p = {level:g}: no mean drawn over the {n} run{'s' if n > 1 else ''} "
                                 "that reached the target, since the others stopped before it")
                elif n:
                    xs.append(level)
                    ys.append(mean)
                    los.append(lo)
                    his.append(hi)
                    ns.append(n)
                    res.append(max(halfwidths) if halfwidths else None)
            missing = [lv for lv in all_levels if lv not in levels]
            kw = _layered(styler.kwargs(sname), rank)
            if xs:
                multi = max(ns) > 1
                shown = [(x, y, h) for x, y, h in zip(xs, ys, res, strict=True) if h is not None]
                if shown:
                    ax.errorbar([s[0] for s in shown], [s[1] for s in shown], yerr=[s[2] for s in shown],
                                fmt="none", ecolor=kw["color"], elinewidth=7, alpha=0.22, zorder=1)
                ax.errorbar(xs, ys, yerr=[[y - lo for y, lo in zip(ys, los, strict=True)],
                                          [hi - y for y, hi in zip(ys, his, strict=True)]] if multi else None,
                            label=f"{name}, {_resolution_text(resolutions)}"
                                  + (" (mean, min-max over seeds)" if multi else ""),
                            capsize=3, zorder=3 + len(keys) - rank, **kw)
                series.append(Series(name, xs, ys, los if multi else None, his if multi else None, ns,
                                     extra={"model": dict(key)["model"], "resolution_halfwidth": res,
                                            "resolution_steps": sorted(set(resolutions))}))
            mark_edge(ax, styler, sname, sorted(set(not_conv)), top=True)
            mark_edge(ax, styler, sname, missing, top=False)
            if not_conv:
                series.append(Series(name, sorted(set(not_conv)), [], kind="not_converged"))
            if missing:
                series.append(Series(name, missing, [], kind="missing"))
                notes.append(f"{name}: no run that finished as intended at p = "
                             f"{', '.join(f'{m:g}' for m in missing)}")
            notes += _left_out_note(name, left_out.get(key, {}))
        ax.axhline(1.0, color=NEUTRAL, linestyle=":", linewidth=1.0)
        extra = [(neutral_handle(NEUTRAL, linewidth=7, alpha=0.22), "± one evaluation interval")]
        if any(s.kind == "not_converged" for s in series):
            extra.append((neutral_handle(NEUTRAL, marker="^", linestyle="none"),
                          "stopped at max_epochs (top)"))
        if any(s.kind == "missing" and not s.extra.get("whole_setting") for s in series):
            extra.append((neutral_handle(NEUTRAL, marker="x", linestyle="none"),
                          "no run finished as intended (bottom)"))
        ax.set_xlabel("label corruption level p (fraction of labels redrawn)")
        ax.set_ylabel("convergence time (× steps on true labels)")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(bottom=0)
        ax.set_title(title + (f" — {data}" if data else ""))
        outside_legend(fig, [ax], extra, where="below")
    return Plot("fig1b", title, caption, fig, series, notes)


def figure1c(runs: Sequence[dict], data: str | None = None) -> Plot:
    """Test error against label-corruption level, one line per model (paper Fig. 1c).

    Test error = 100 · (1 − final test accuracy), against the true test labels. Levels where a run
    stopped at max_epochs before reaching the target train accuracy are drawn hollow (their test error
    is not the error after fitting). For CIFAR-10 the paper's endpoints derived from Table 1 [D] are
    added.
    """
    title = "Figure 1c: test error under label corruption"
    caption = ("Test error (%) on the true test labels after training, against the label corruption "
               "level (paper Fig. 1c). Hollow markers: runs that stopped at max_epochs before reaching the "
               "target train accuracy; × at the bottom: no run that finished as intended (diverged, "
               "failed, unfinished or missing). The dotted line is chance.")
    lines = level_lines(runs)
    if not lines:
        return no_figure("fig1c", title, caption,
                         "needs partial_labels runs that finished as intended at a level strictly between 0 "
                         "and 1 (with p = 0 and p = 1 from partial_labels, true_labels or random_labels)")
    left_out = left_out_levels(runs)
    keys = level_keys(lines, left_out)
    titles = line_titles(keys)
    all_levels = sorted({lv for k in keys for lv in (*lines.get(k, {}), *left_out.get(k, {}))})
    series: list[Series] = []
    notes: list[str] = []
    dataset = data or dict(keys[0])["data"]
    with style():
        fig, (ax,) = new_figure(1, panel_size=(6.2, 4.2))
        snames = style_names(keys, titles)
        styler = Styler(snames[k] for k in keys)
        for rank, key in enumerate(keys):
            name, model, sname, levels = titles[key], dict(key)["model"], snames[key], lines.get(key, {})
            if _only_left_out(ax, styler, name, sname, levels, left_out.get(key, {}), series, notes):
                continue
            xs, ys, los, his, ns, hollow = [], [], [], [], [], []
            for level in sorted(levels):
                errors = [100.0 * (1.0 - run["test_acc"]) for run in levels[level].values()]
                mean, lo, hi, n = spread(errors)
                if not n:
                    continue
                xs.append(level)
                ys.append(mean)
                los.append(lo)
                his.append(hi)
                ns.append(n)
                if any(stopped_at_budget(run) for run in levels[level].values()):
                    hollow.append((level, mean))
            kw = _layered(styler.kwargs(sname), rank)
            multi = bool(ns) and max(ns) > 1
            ax.errorbar(xs, ys, yerr=[[y - lo for y, lo in zip(ys, los, strict=True)],
                                      [hi - y for y, hi in zip(ys, his, strict=True)]] if multi else None,
                        label=name + (" (mean, min-max over seeds)" if multi else ""), capsize=3,
                        zorder=3 + len(keys) - rank, **kw)
            series.append(Series(name, xs, ys, los if multi else None, his if multi else None, ns,
                                 extra={"model": model}))
            if hollow:
                ax.plot([h[0] for h in hollow], [h[1] for h in hollow], linestyle="none", marker="o",
                        markersize=10, markerfacecolor="white", markeredgecolor=kw["color"], zorder=3)
                series.append(Series(name, [h[0] for h in hollow], [h[1] for h in hollow],
                                     kind="not_converged"))
                notes.append(f"{name}: stopped at max_epochs before reaching the target train accuracy at "
                             f"p = {', '.join(f'{h[0]:g}' for h in hollow)}")
            missing = [lv for lv in all_levels if lv not in levels]
            mark_edge(ax, styler, sname, missing, top=False)
            if missing:
                series.append(Series(name, missing, [], kind="missing"))
                notes.append(f"{name}: no run that finished as intended at p = "
                             f"{', '.join(f'{m:g}' for m in missing)}")
            notes += _left_out_note(name, left_out.get(key, {}))
        extra = []
        if dataset == "cifar10":
            shown = {dict(k)["model"] for k in keys}
            for model in sorted(shown, key=model_sort):
                points = [p for p in paper.figure1c_expected() if p["model"] == model]
                if points:
                    px = [p["level"] for p in points]
                    py = [p["test_error"] for p in points]
                    ax.plot(px, py, linestyle="none", marker="s", markersize=9, markerfacecolor="none",
                            markeredgecolor=styler.color(model), markeredgewidth=1.6, zorder=2)
                    series.append(Series(model, px, py, kind="paper", extra={"mark": "D"}))
            if any(s.kind == "paper" for s in series):
                extra.append((neutral_handle(NEUTRAL, linestyle="none", marker="s", markerfacecolor="none"),
                              "paper, from Table 1 [D]"))
        k = NUM_CLASSES.get(dataset)
        if k:
            ax.axhline(100.0 * (1 - 1 / k), color=NEUTRAL, linestyle=":", linewidth=1.0,
                       label=f"chance ({100 * (1 - 1 / k):g}%)")
        if any(s.kind == "not_converged" for s in series):
            extra.append((neutral_handle(NEUTRAL, linestyle="none", marker="o", markersize=9,
                                         markerfacecolor="white"), "stopped at max_epochs (hollow)"))
        if any(s.kind == "missing" and not s.extra.get("whole_setting") for s in series):
            extra.append((neutral_handle(NEUTRAL, marker="x", linestyle="none"),
                          "no run finished as intended (bottom)"))
        ax.set_xlabel("label corruption level p (fraction of labels redrawn)")
        ax.set_ylabel("test error (%)")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(0, 100)
        ax.set_title(title + (f" — {data}" if data else ""))
        outside_legend(fig, [ax], extra, where="below")
    return Plot("fig1c", title, caption, fig, series, notes)
