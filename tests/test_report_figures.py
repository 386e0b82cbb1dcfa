"""The report's figures (paper Figures 1a, 1b, 1c and 2) drawn from synthetic runs: one point per
recorded step or level, seeds as mean and spread, the convergence resolution, every curve visible where
series coincide, legends outside the data (issues 12 and 15). The runs come from tests/test_report.py."""

from __future__ import annotations

import pytest

from rethinkgen.report import figures, tables
from test_report import LEVELS, corruption_runs, full_runs, level_sweep, make_run

# --- figures: one point per recorded step / level ----------------------------------------------------

def test_figure1a_one_point_per_logged_step():
    runs = corruption_runs()
    plot = figures.figure1a(runs, "mnist1d")
    assert plot.figure is not None
    for run in runs:
        s = plot.find(run["config"]["corruption"])
        assert s.x == [float(step) for step, _ in run["step_losses"]]
        assert s.y == pytest.approx([loss for _, loss in run["step_losses"]])
    # the drawn lines carry the same data, x in thousands of steps
    ax = plot.figure.axes[0]
    drawn = {line.get_label(): line for line in ax.get_lines()}
    line = drawn["random labels"]
    assert list(line.get_xdata()) == pytest.approx([s / 1000 for s, _ in runs[1]["step_losses"]])
    assert ax.get_xlabel() == "training steps (thousands)" and "loss" in ax.get_ylabel()


def test_figure1a_seeds_mean_and_spread():
    runs = corruption_runs(seed=0) + corruption_runs(seed=1)
    plot = figures.figure1a(runs)
    s = plot.find("gaussian")
    a, b = runs[4]["step_losses"], runs[9]["step_losses"]
    assert s.y == pytest.approx([(x[1] + y[1]) / 2 for x, y in zip(a, b, strict=True)])
    assert s.lo == pytest.approx([min(x[1], y[1]) for x, y in zip(a, b, strict=True)])
    assert set(s.n) == {2}


def test_figure1b_relative_times_and_missing_levels():
    runs = level_sweep() + level_sweep(model="cnn1d", base_steps=100)
    # cnn1d: drop p=0.4 (missing) and make p=0.8 not converge
    runs = [r for r in runs if not (r["config"]["model"] == "cnn1d" and r["config"]["level"] == 0.4)]
    for r in runs:
        if r["config"]["model"] == "cnn1d" and r["config"]["level"] == 0.8:
            r["status"], r["converged_step"] = "max_epochs", None
    plot = figures.figure1b(runs, "mnist1d")
    mlp = plot.find("mlp_1x512")
    assert mlp.x == LEVELS
    assert mlp.y == pytest.approx([1 + 3 * p for p in LEVELS])
    cnn = plot.find("cnn1d")
    assert cnn.x == [0.0, 0.2, 0.6, 1.0]
    assert plot.find("cnn1d", kind="missing").x == [0.4]
    assert plot.find("cnn1d", kind="not_converged").x == [0.8]
    assert any("p = 0.8, seed 0: stopped at max_epochs" in n for n in plot.notes)


def test_figure1b_shows_the_convergence_resolution():
    """Convergence is checked every ``eval_every`` steps (absent/None: once per epoch), and Figure 1b says so."""
    from rethinkgen.report.runs import convergence_resolution

    runs = level_sweep(base_steps=200)  # 32 steps per epoch in the synthetic history
    assert {convergence_resolution(r) for r in runs} == {32}
    plot = figures.figure1b(runs, "mnist1d")
    s = plot.find("mlp_1x512")
    assert s.extra["resolution_steps"] == [32]
    assert s.extra["resolution_halfwidth"] == pytest.approx([32 / 200] * len(LEVELS))
    labels = [t.get_text() for t in plot.figure.legends[0].get_texts()]
    assert "mlp_1x512, checked every 32 steps" in labels and "± one evaluation interval" in labels
    for run in runs:
        run["config"]["eval_every"] = 5  # the config field, once runs carry it
    assert {convergence_resolution(r) for r in runs} == {5}
    plot = figures.figure1b(runs, "mnist1d")
    assert plot.find("mlp_1x512").extra["resolution_halfwidth"] == pytest.approx([5 / 200] * len(LEVELS))
    assert "mlp_1x512, checked every 5 steps" in [t.get_text() for t in plot.figure.legends[0].get_texts()]
    assert [r["resolution"] for r in tables.table_levels(runs, "mnist1d").rows] == ["5"] * len(LEVELS)
    # no history and no eval_every: ceil(n_train / batch_size)
    bare = {"config": {"n_train": 1000, "batch_size": 128}}
    assert convergence_resolution(bare) == 8


def test_figure1c_test_errors_and_paper_points_only_for_cifar10():
    plot = figures.figure1c(level_sweep(), "mnist1d")
    s = plot.find("mlp_1x512")
    assert s.x == LEVELS
    assert s.y == pytest.approx([30 + 60 * p for p in LEVELS])
    assert not [x for x in plot.series if x.kind == "paper"]
    cifar = figures.figure1c(level_sweep(data="cifar10"), "cifar10")
    paper_pts = cifar.find("mlp_1x512", kind="paper")
    assert paper_pts.x == [0.0, 1.0] and paper_pts.y == pytest.approx([49.49, 89.39])


def test_figure1c_true_and_random_labels_fill_the_ends():
    runs = [make_run(corruption="true_labels", test_acc=0.7),
            make_run(corruption="random_labels", test_acc=0.1), make_run(level=0.5, test_acc=0.4)]
    s = figures.figure1c(runs).find("mlp_1x512")
    assert s.x == [0.0, 0.5, 1.0] and s.y == pytest.approx([30.0, 60.0, 90.0])


def test_figure2_learning_curves_and_cumulative_best():
    runs = [make_run(data="cifar10", model=m, corruption="true_labels", epochs=6) for m in
            ("inception_small", "inception_small_nobn", "mlp_1x512")]
    plot = figures.figure2(runs, "cifar10")
    assert [ax.get_title() for ax in plot.figure.axes] == ["inception_small (with BatchNorm)",
                                                           "inception_small_nobn (without BatchNorm)"]
    hist = runs[0]["history"]
    test = plot.find("no regularizer: test", panel="inception_small")
    assert test.x == [row["step"] for row in hist]
    assert test.y == pytest.approx([100 * row["test_acc"] for row in hist])
    best = plot.find("no regularizer: best test", kind="best", panel="inception_small")
    running = [max(100 * r["test_acc"] for r in hist[: i + 1]) for i in range(len(hist))]
    assert best.y == pytest.approx(running)
    # the shaded early-stopping gain is drawn
    assert plot.figure.axes[0].collections


def test_coinciding_curves_stay_visible_and_legends_sit_outside_the_data():
    """Issue 15: the shuffled-pixels curve hid the true-labels one (Figure 1a), "wd 0.0005" hid "no
    regularizer" (Figure 2). Coinciding curves: the first on top and thinnest, the next below, wider,
    half-transparent, with markers at other steps."""
    runs = corruption_runs()
    runs[2]["step_losses"] = list(runs[0]["step_losses"])  # shuffled pixels exactly on true labels
    lines = {line.get_label(): line for line in figures.figure1a(runs).figure.axes[0].get_lines()}
    top, below = lines["true labels"], lines["shuffled pixels"]
    assert list(top.get_ydata()) == list(below.get_ydata())
    assert top.get_zorder() > below.get_zorder() and top.get_linewidth() < below.get_linewidth()
    assert (below.get_alpha() or 1.0) < 1.0 and top.get_marker() != below.get_marker()
    assert top.get_markevery()[0] != below.get_markevery()[0]  # markers at different steps
    fig2 = figures.figure2([make_run(corruption="true_labels"),
                            make_run(corruption="true_labels", weight_decay=5e-4)]).figure
    drawn = [line for line in fig2.axes[0].get_lines() if line.get_linestyle() == "-" and len(line.get_xdata())]
    plain, wd = drawn[0], drawn[1]  # train curves: no regularizer first, then wd
    assert list(plain.get_ydata()) == list(wd.get_ydata())  # identical synthetic histories
    assert plain.get_zorder() > wd.get_zorder() and plain.get_linewidth() < wd.get_linewidth()
    # the early-stopping reference is shaded from 0 up to the cumulative best test accuracy
    shaded = [c for c in fig2.axes[0].collections if c.get_paths()]
    assert shaded and min(float(c.get_paths()[0].vertices[:, 1].min()) for c in shaded) == 0.0
    for plot in figures.all_figures(full_runs() + corruption_runs(seed=1)):
        if plot.figure is not None:
            assert all(ax.get_legend() is None for ax in plot.figure.axes) and plot.figure.legends, plot.key


def test_coinciding_level_lines_show_a_visible_halo():
    """Figure 1b of two models whose relative times coincide (the same ×(1 + 3p) here): the second
    line is drawn under the first, at least 1.5 pt wider (a halo of 0.75 pt or more each side) and
    translucent, so both show; with 0.6 pt more it vanished under the first at the report's size."""
    runs = level_sweep() + level_sweep(model="cnn1d", base_steps=150)
    lines = [line for line in figures.figure1b(runs).figure.axes[0].get_lines() if len(line.get_xdata()) > 1
             and line.get_linestyle() != ":"]
    top, below = sorted(lines, key=lambda line: -line.get_zorder())[:2]
    assert list(top.get_ydata()) == list(below.get_ydata())
    assert below.get_linewidth() - top.get_linewidth() >= 1.5 and (below.get_alpha() or 1.0) <= 0.7
    assert below.get_markersize() - top.get_markersize() >= 2.5


def test_figures_say_why_when_there_is_nothing_to_draw():
    plots = figures.all_figures([make_run(level=0.5, status="failed")])
    assert all(p.figure is None and p.reason for p in plots)


