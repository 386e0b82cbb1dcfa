"""Convergence times over corruption levels when not every run of a level reached the target (issue 12:
no number from part of a level's runs). Synthetic run dicts (tests/test_report.py), no device."""

from __future__ import annotations

import pytest

from rethinkgen.report import figures, tables
from test_report import make_run

LEVELS3 = (0.0, 0.5, 1.0)


def _grid(stopped: set[tuple[float, int]]) -> list[dict]:
    """Three seeds at p = 0, 0.5, 1: steps to fit 100·(1 + 3p) + seed; ``stopped`` (level, seed) ran out
    of epochs before reaching the target."""
    runs = []
    for seed in (0, 1, 2):
        for p in LEVELS3:
            status = "max_epochs" if (p, seed) in stopped else "converged"
            runs.append(make_run(level=p, seed=seed, status=status, converged_step=100 * (1 + 3 * p) + seed))
    return runs


def test_levels_table_gives_no_mean_steps_when_a_run_of_the_level_did_not_fit():
    """The slowest seed ran out of epochs at p = 1: a mean over the other two (400.5) would say random
    labels took 400 steps, when one run had not fit after all of its epochs."""
    rows = {r["level"]: r for r in tables.table_levels(_grid({(1.0, 2)}), "mnist1d").rows}
    assert rows[1.0]["status"] == "converged 2/3, max_epochs 1/3" and rows[1.0]["seeds"] == 3
    assert rows[1.0]["converged_step"] is None and rows[1.0]["relative_time"] is None
    assert rows[1.0]["test_error"] == pytest.approx(40.0)  # the accuracies are still evidence
    assert rows[0.5]["converged_step"] == pytest.approx(251.0)  # untouched levels keep their means
    assert rows[0.5]["relative_time"] == pytest.approx((250 / 100 + 251 / 101 + 252 / 102) / 3)
    # the base level not fit for one seed: that level has no mean, the others compare seed by seed
    rows = {r["level"]: r for r in tables.table_levels(_grid({(0.0, 1)}), "mnist1d").rows}
    assert rows[0.0]["converged_step"] is None
    assert rows[1.0]["relative_time"] == pytest.approx((400 / 100 + 402 / 102) / 2)


def test_figure1b_marks_such_a_level_and_draws_no_mean_there():
    plot = figures.figure1b(_grid({(1.0, 2)}), "mnist1d")
    line = plot.find("mlp_1x512")
    assert line.x == [0.0, 0.5]  # no point at p = 1 from two of its three runs
    assert plot.find("mlp_1x512", kind="not_converged").x == [1.0]
    assert any("p = 1: no mean drawn over the 2 runs that reached the target" in n for n in plot.notes)


def test_resolution_is_never_coarser_than_an_epoch():
    """Every epoch end is an evaluation: eval_every = 1,000 on 32 steps per epoch resolves to 32 steps,
    as the run's own summary says (train.history.convergence_resolution), not 1,000."""
    from rethinkgen.report.runs import convergence_resolution

    runs = _grid(set())  # 32 steps per epoch in the synthetic history
    for run in runs:
        run["config"]["eval_every"] = 1000
    assert {convergence_resolution(r) for r in runs} == {32}
    assert [r["resolution"] for r in tables.table_levels(runs, "mnist1d").rows] == ["32"] * 3
    plot = figures.figure1b(runs, "mnist1d")
    assert plot.find("mlp_1x512").extra["resolution_steps"] == [32]
    for run in runs:
        run["config"]["eval_every"] = 5
    assert {convergence_resolution(r) for r in runs} == {5}


def test_findings_tell_settings_of_one_model_apart():
    """Two learning rates of one model: each finding's detail names the setting it is about (the lines
    of a figure are named so too), not "mlp_1x512" twice."""
    from rethinkgen.report.findings import slowdown, test_error_rises

    runs = _grid(set())
    for run in _grid(set()):
        run["config"]["lr"] = 1.5
        runs.append(run)
    for finding in (test_error_rises(runs), slowdown(runs)):
        assert any(d.startswith("mlp_1x512 (lr=0.1)") for d in finding.details), finding.details
        assert any(d.startswith("mlp_1x512 (lr=1.5)") for d in finding.details), finding.details
    (single,) = test_error_rises(_grid(set())).details
    assert single.startswith("mlp_1x512: ")  # one setting: the model alone
