"""The ready specs in configs/ cover what they promise, and a real (tiny) sweep reports what it stored."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

from rethinkgen.report import build_report, figures, paper
from rethinkgen.report.build import load_store
from rethinkgen.report.findings import all_findings
from rethinkgen.sweep.spec import load_spec

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LEVELS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def _row(run) -> tuple:
    c = run.config
    return (c.model, c.augment, c.weight_decay > 0, "random" if c.corruption == "random_labels" else "true")


def test_table1_spec_has_every_row_of_table1_once():
    spec = load_spec(CONFIGS / "paper" / "table1.toml")
    rows = [_row(r) for r in spec.runs]
    expected = [(r["model"], r["random_crop"], r["weight_decay"], r["labels"]) for r in paper.table1_rows()]
    assert sorted(rows) == sorted(expected)
    assert {r.config.weight_decay for r in spec.runs} == {0.0, 5e-4}
    assert all(r.config.data == "cifar10" and r.config.dropout == 0 for r in spec.runs)


def test_table2_spec_has_every_row_of_table2_once():
    spec = load_spec(CONFIGS / "paper" / "table2.toml")
    rows = [("random" if r.config.corruption == "random_labels" else "true", r.config.augment, r.config.dropout > 0,
             r.config.weight_decay > 0) for r in spec.runs]
    expected = [(r["labels"], r["data_aug"], r["dropout"], r["weight_decay"]) for r in paper.table2_rows()]
    assert rows == expected  # the paper's order, one run per row
    assert all(r.config.data == "imagenet" and r.config.model == "inception_v3" and r.config.crop == 299
               for r in spec.runs)
    assert all(r.config.flip == r.config.augment for r in spec.runs)  # "data aug" = random resized crop + flip


def test_sweep_plan_lists_every_table2_row():
    import subprocess
    import sys

    import rethinkgen

    env = {"PYTHONPATH": str(Path(rethinkgen.__file__).resolve().parents[1]), "COLUMNS": "200",
           "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "rethinkgen", "sweep", "plan", str(CONFIGS / "paper" / "table2.toml")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    names = ["true-aug-dropout-wd", "true-aug", "true-wd", "true-none", "random-dropout-wd", "random-wd",
             "random-none"]
    assert "7 runs" in out.stdout and all(f" {n} " in out.stdout for n in names)


def test_figure1_spec():
    spec = load_spec(CONFIGS / "paper" / "figure1.toml")
    types = {r.config.corruption for r in spec.runs if "corruption-types" in r.experiments}
    assert types == set(paper.FIGURE1_CORRUPTIONS)
    assert {r.config.model for r in spec.runs if "corruption-types" in r.experiments} == {"inception_small"}
    levels = {(r.config.model, r.config.level) for r in spec.runs if "label-levels" in r.experiments}
    assert levels == {(m, p) for m in ("inception_small", "alexnet_small", "mlp_1x512") for p in LEVELS}
    assert all(r.config.weight_decay == 0 and not r.config.augment for r in spec.runs)


def test_figure2_spec_reuses_table1_runs():
    fig2 = load_spec(CONFIGS / "paper" / "figure2.toml")
    assert {r.config.model for r in fig2.runs} == {"inception_small", "inception_small_nobn"}
    table1 = {r.run_key for r in load_spec(CONFIGS / "paper" / "table1.toml").runs}
    assert {r.run_key for r in fig2.runs} <= table1  # same settings: a shared store trains nothing twice


def test_quick_spec_scales_the_same_experiments_to_mnist1d():
    spec = load_spec(CONFIGS / "quick.toml")
    assert {r.config.data for r in spec.runs} == {"mnist1d"}
    assert {r.config.model for r in spec.runs} == {"mlp_1x512", "cnn1d"}
    for model in ("mlp_1x512", "cnn1d"):
        mine = [r for r in spec.runs if r.config.model == model]
        assert {r.config.corruption for r in mine} >= set(paper.FIGURE1_CORRUPTIONS)
        assert sorted(r.config.level for r in mine if r.config.corruption == "partial_labels") == LEVELS
        assert {(r.config.weight_decay > 0, r.config.dropout > 0) for r in mine} == {
            (False, False), (True, False), (False, True)}


def _tiny_quick(tmp_path: Path, models=("mlp_1x512",)) -> Path:
    from rethinkgen.sweep.executors import LocalExecutor
    from rethinkgen.sweep.runner import run_sweep

    spec = load_spec(CONFIGS / "quick.toml", overrides={"epochs": 3, "n_train": 400, "n_test": 200, "log_every": 1,
                                                        "device": "cpu"})
    keep = [r for r in spec.runs if r.config.model in models
            and ({"corruption-types", "label-levels"} & set(r.experiments))]
    spec = dataclasses.replace(spec, runs=keep)
    store = tmp_path / "quick.db"
    result = run_sweep(spec, store, executor=LocalExecutor(jobs=1), checkpoint_every=1000)
    assert not result.failed
    return store


def test_report_of_a_real_sweep_holds_the_stored_numbers(tmp_path):
    store = _tiny_quick(tmp_path)
    index = build_report(store, tmp_path / "report")
    runs, _ = load_store(store)
    assert len(runs) == 11
    text = index.read_text()
    for key in ("fig1a", "fig1b", "fig1c", "fig2"):
        assert f'src="{key}_mnist1d.png"' in text
    # Figure 1a: one point per stored step loss, for every corruption type
    plot = figures.figure1a(runs, "mnist1d")
    for run in runs:
        if run["config"]["corruption"] in paper.FIGURE1_CORRUPTIONS:
            s = plot.find(run["config"]["corruption"])
            assert s.x == [float(step) for step, _ in run["step_losses"]] and len(s.x) > 3
            assert s.y == [loss for _, loss in run["step_losses"]]
    # Figure 1c and the levels table: one point per level, the stored test accuracy
    partial = {r["config"]["level"]: r for r in runs if r["config"]["corruption"] == "partial_labels"}
    s = figures.figure1c(runs, "mnist1d").find("mlp_1x512")
    assert s.x == LEVELS
    assert s.y == pytest.approx([100 * (1 - partial[p]["test_acc"]) for p in LEVELS])
    rows = list(csv.DictReader((tmp_path / "report" / "levels_mnist1d.csv").read_text().splitlines()))
    assert [float(r["level"]) for r in rows] == LEVELS
    for r in rows:
        run = partial[float(r["level"])]
        assert float(r["train_acc"]) == pytest.approx(100 * run["train_acc"], abs=1e-9)
        assert float(r["realized_noise"]) == pytest.approx(100 * run["realized_noise_rate"], abs=1e-9)
    # the per-run summary lists every run with its stored test accuracy
    summary = list(csv.DictReader((tmp_path / "report" / "runs_mnist1d.csv").read_text().splitlines()))
    assert sorted(float(r["test_acc"]) for r in summary) == pytest.approx(
        sorted(100 * r["test_acc"] for r in runs), abs=1e-9)


@pytest.mark.slow
def test_quick_spec_shows_the_papers_findings(tmp_path):
    """The demo's sweep (about 1.5 min on 2 cores): every qualitative finding of the paper holds."""
    from rethinkgen.sweep.executors import LocalExecutor
    from rethinkgen.sweep.runner import run_sweep

    spec = load_spec(CONFIGS / "quick.toml", overrides={"device": "cpu"})
    result = run_sweep(spec, tmp_path / "q.db", executor=LocalExecutor(jobs=2), checkpoint_every=1000)
    assert not result.failed
    build_report(tmp_path / "q.db", tmp_path / "report")
    runs, _ = load_store(tmp_path / "q.db")
    verdicts = {f.claim: f.ok for f in all_findings(runs)}
    assert all(ok is True for ok in verdicts.values()), verdicts
