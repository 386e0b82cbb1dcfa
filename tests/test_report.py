"""The report (issue 4): figures, tables and HTML hold exactly what the store holds.

The runs here are synthetic (made-up accuracies and losses written through the real Store API), so the
tests are fast and every expected number is known; the browser test renders a real index.html in
headless Chromium.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from rethinkgen.errors import RethinkgenError
from rethinkgen.report import build_from_data, build_report, figures, tables
from rethinkgen.report.findings import all_findings
from rethinkgen.sweep.store import Store
from rethinkgen.train.config import TrainConfig, run_key
from rethinkgen.train.numerics import Numerics

LEVELS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
# ../shared/cases/diverged_runs_in_report, copied so that the suite runs from a fresh clone too
SPEC_DIVERGE = """name = "divcase"
description = "same grid twice: a sane lr and a huge lr that makes every run diverge (NaN loss)"
[defaults]
data = "mnist1d"
model = "mlp_1x512"
n_train = 500
epochs = 40
[grid]
seed = [0]
[[experiment]]
name = "sane"
grid = { corruption = ["partial_labels"], level = [0.0, 0.5, 1.0] }
[[experiment]]
name = "huge_lr"
defaults = { lr = 1000.0 }
grid = { corruption = ["partial_labels"], level = [0.0, 0.5, 1.0] }
"""
SPEC_NAN = """name = "nancase"
[defaults]
data = "mnist1d"
model = "mlp_1x512"
n_train = 500
epochs = 5
lr = nan
weight_decay = inf
"""
XSS = "<script>alert(1)</script>"


# --- synthetic runs ---------------------------------------------------------------------------------

def make_run(*, data="mnist1d", model="mlp_1x512", corruption="partial_labels", level=None, seed=0,
             status="converged", converged_step=400, train_acc=1.0, test_acc=0.6, epochs=5,
             steps_per_epoch=32, log_every=10, weight_decay=0.0, augment=False, dropout=0.0, name=None,
             loss0=2.3) -> dict:
    """A run dict as Store.runs() + history + step_losses would give, with known numbers."""
    if corruption == "true_labels":
        level = 0.0
    elif corruption == "random_labels":
        level = 1.0
    config = TrainConfig(data=data, model=model, corruption=corruption, level=level, seed=seed, epochs=epochs,
                         weight_decay=weight_decay, augment=augment, dropout=dropout, log_every=log_every,
                         lr=0.1, crop=0, standardize="none", lr_decay_every=50_000).to_dict()
    history = []
    for e in range(epochs + 1):
        frac = e / epochs
        history.append({
            "epoch": e, "step": e * steps_per_epoch, "samples_seen": e * steps_per_epoch * 128, "lr": 0.1,
            "train_loss": None if e == 0 else loss0 * (1 - frac) + 0.01, "train_eval_loss": 1.0,
            "train_acc": 0.1 + (train_acc - 0.1) * frac, "train_acc_corrupted": None, "train_acc_clean": None,
            "test_loss": 1.0, "test_acc": 0.1 + (test_acc - 0.1) * min(1.0, 1.6 * frac) - 0.02 * frac,
            "wall_time_s": 0.5 * e})
    history[-1]["test_acc"] = test_acc
    steps = epochs * steps_per_epoch
    step_losses = [(s, loss0 * math.exp(-s / (steps / 3)) + 0.001 * seed)
                   for s in range(0, steps + 1, log_every)]
    finished = status in ("converged", "max_epochs", "diverged")
    run = {
        "run_key": run_key(TrainConfig.from_dict(config)), "name": name or f"{model}/{corruption},p={level}",
        "sweep": "test", "config": config, "status": status, "attempts": 1, "error": None,
        "code_version": "git:abc123", "hardware": "test machine, 2 CPUs", "torch_version": "2.14.1",
        "device": "cpu", "history": history if finished else history[:2],
        "step_losses": step_losses if finished else step_losses[:3],
        "train_acc": train_acc if finished else None, "test_acc": test_acc if finished else None,
        "best_test_acc": max(r["test_acc"] for r in history) if finished else None,
        "converged_step": converged_step if status == "converged" else None,
        "converged_epoch": None, "steps": steps if finished else None, "epochs": epochs if finished else None,
        "n_params": 26122 if finished else None,
        "realized_noise_rate": 0.9 * (level or 0.0) if finished else None,
        "wall_time_s": 0.5 * epochs if finished else None,
    }
    return run


def level_sweep(model="mlp_1x512", data="mnist1d", seed=0, base_steps=200, err0=30.0) -> list[dict]:
    runs = []
    for p in LEVELS:
        runs.append(make_run(data=data, model=model, level=p, seed=seed,
                             converged_step=base_steps * (1 + 3 * p),
                             test_acc=1 - (err0 + (90 - err0) * p) / 100))
    return runs


def corruption_runs(model="mlp_1x512", data="mnist1d", seed=0) -> list[dict]:
    names = ["true_labels", "random_labels", "shuffled_pixels", "random_pixels", "gaussian"]
    return [make_run(data=data, model=model, corruption=c, seed=seed, converged_step=100 * (i + 1),
                     test_acc=0.7 if c == "true_labels" else 0.1, loss0=2.0 + 0.1 * i)
            for i, c in enumerate(names)]


def write_store(path: Path, runs: list[dict], kernels: list[dict] = ()) -> Path:
    """Write ``runs`` (make_run dicts) through the real Store write API."""
    with Store(path) as store:
        planned = [SimpleNamespace(run_key=r["run_key"], name=r["name"], experiments=("exp",),
                                   config=TrainConfig.from_dict(r["config"])) for r in runs]
        store.add_runs("test", planned)
        for r in runs:
            if r["status"] == "pending":
                continue
            store.start_run(r["run_key"], code_version=r["code_version"], hardware=r["hardware"],
                            torch_version=r["torch_version"], device="cpu")
            losses = list(r["step_losses"])
            for row in r["history"]:
                lo = row["step"] - (r["history"][1]["step"] if len(r["history"]) > 1 else 0)
                chunk = [(s, v) for s, v in losses if lo < s <= row["step"] or (row["epoch"] == 0 and s == 0)]
                store.record_epoch(r["run_key"], row, chunk)
            if r["status"] in ("converged", "max_epochs", "diverged"):
                store.finish_run(r["run_key"], {k: r[k] for k in (
                    "status", "train_acc", "test_acc", "best_test_acc", "converged_step", "converged_epoch",
                    "steps", "epochs", "n_params", "realized_noise_rate", "wall_time_s")})
            elif r["status"] == "failed":
                store.fail_run(r["run_key"], r.get("error") or "Traceback: boom")
        for k in kernels:
            store.add_kernel_result(k)
    return path


def kernel_row(data="mnist", features="none", reg=0.0, test_error=0.0123, norm=231.0, n_train=60000):
    return {"data": data, "n_train": n_train, "n_test": 10000, "kernel": "gaussian", "bandwidth": 10.0,
            "features": features, "filters": None, "reg": reg, "solver": "exact", "dtype": "float32",
            "test_error": test_error, "norm": norm, "rel_residual": 1e-6, "time_s": 12.5, "peak_mem_bytes": 1,
            "config": {"data": data, "features": features, "reg": reg, "n_train": n_train}}


# --- tables hold exactly the stored numbers -------------------------------------------------------

def test_table1_values_and_paper_deltas():
    runs = [make_run(data="cifar10", model="inception_small", corruption="true_labels", train_acc=1.0,
                     test_acc=0.8512),
            make_run(data="cifar10", model="inception_small", corruption="random_labels", train_acc=0.9987,
                     test_acc=0.1003, status="max_epochs"),
            make_run(data="cifar10", model="mlp_1x512", corruption="true_labels", weight_decay=5e-4,
                     test_acc=0.5101)]
    t = tables.table1(runs, "cifar10")
    assert len(t.rows) == 19  # the paper's 19 rows (3 of them ours), nothing else
    ours = [r for r in t.rows if r["status"] != "not run"]
    assert len(ours) == 3
    row = next(r for r in ours if r["model"] == "inception_small" and r["labels"] == "true")
    assert row["test_acc"] == pytest.approx(85.12) and row["paper_test_acc"] == 85.75
    assert row["delta_test_acc"] == pytest.approx(85.12 - 85.75)
    rnd = next(r for r in ours if r["labels"] == "random")
    assert rnd["train_acc"] == pytest.approx(99.87) and rnd["paper_train_acc"] == 100.0
    assert rnd["status"] == "max_epochs" and rnd["paper_mark"] == "[V2]"
    mlp = next(r for r in ours if r["model"] == "mlp_1x512")
    assert mlp["paper_test_acc"] == 50.39 and mlp["weight_decay"] == "yes (0.0005)"
    # CSV carries the same numbers at full precision
    rows = list(csv.DictReader(t.to_csv().splitlines()))
    got = next(r for r in rows if r["model"] == "inception_small" and r["labels"] == "true"
               and r["status"] == "converged")
    assert float(got["test_acc"]) == pytest.approx(85.12, abs=1e-9)
    assert "| Inception" not in t.to_markdown() and "| inception_small |" in t.to_markdown()


def test_table1_other_data_has_no_paper_columns_and_mean_sd_over_seeds():
    runs = [make_run(corruption="true_labels", seed=s, test_acc=a) for s, a in ((0, 0.60), (1, 0.64))]
    t = tables.table1(runs, "mnist1d")
    assert not [c for c in t.columns if "paper" in c.key]
    (row,) = t.rows
    assert row["seeds"] == 2 and row["test_acc"] == pytest.approx(62.0)
    assert row["test_acc_sd"] == pytest.approx(math.sqrt(8.0))
    assert "62.00 ± 2.83" in t.to_markdown()


def test_levels_table_matches_runs():
    runs = level_sweep()
    t = tables.table_levels(runs, "mnist1d")
    assert [r["level"] for r in t.rows] == LEVELS
    for row, run in zip(t.rows, runs, strict=True):
        assert row["test_error"] == pytest.approx(100 * (1 - run["test_acc"]))
        assert row["converged_step"] == run["converged_step"]
        assert row["relative_time"] == pytest.approx(1 + 3 * row["level"])


def test_kernel_table_beside_the_paper():
    t = tables.table3([kernel_row(), kernel_row(data="cifar10", features="random_conv", reg=0.1,
                                                test_error=0.16, norm=None, n_train=50000)])
    mnist = next(r for r in t.rows if r["data"] == "mnist" and r["status"] == "ok")
    assert mnist["test_error"] == pytest.approx(1.23) and mnist["paper_test_error"] == 1.2
    assert mnist["paper_norm"] == 220 and mnist["delta_test_error"] == pytest.approx(0.03)
    reg = next(r for r in t.rows if r["data"] == "cifar10" and r["status"] == "ok")
    assert reg["paper_test_error"] == 15.0
    not_run = {(r["data"], r["paper_test_error"]) for r in t.rows if r["status"] == "not run"}
    assert not_run == {("mnist", 0.6), ("cifar10", 46.0), ("cifar10", 17.0)}


def test_findings_agree_on_a_faithful_sweep_and_differ_otherwise():
    fit, rises, chance, slow, inputs, _ = all_findings(level_sweep() + corruption_runs())
    assert fit.ok is True and rises.ok is True and chance.ok is True and slow.ok is True
    assert fit.verdict == "✓ agrees" and "×4.00" in " ".join(slow.details)
    falls = level_sweep()
    falls[-1]["test_acc"] = 0.7  # p = 1 reached the target, yet its test error falls back: a real difference
    rises = all_findings(falls)[1]
    assert rises.ok is False and rises.verdict == "✗ differs"
    empty = all_findings([])
    assert all(f.ok is None and f.why == "no runs of this kind finished as intended" for f in empty)


@pytest.mark.parametrize("data", ["mnist", "fashion_mnist", "cifar10", "mnist1d"])
def test_test_error_at_chance_is_checked_on_every_ten_class_dataset(data):
    """The chance level needs the class count: every registered 10-class set has one (Fashion-MNIST was
    missing, so its random-label runs were never compared with chance)."""
    chance = all_findings(level_sweep(data=data))[2]
    assert chance.ok is True and any("chance 90%" in d for d in chance.details)


def test_runs_stopped_at_max_epochs_make_findings_inconclusive_never_different():
    """Issue 12: a run that ran out of epochs is not evidence against fitting."""
    flat = level_sweep()
    flat[-1]["test_acc"], flat[-1]["status"], flat[-1]["converged_step"] = 0.7, "max_epochs", None
    fit, rises, chance, slow, *_ = all_findings(flat)
    for f in (fit, rises, slow):
        assert f.ok is None and f.verdict == "? inconclusive"
        assert "stopped at max_epochs before reaching the target" in f.why
    assert "1 of 6 runs stopped at max_epochs" in rises.why and "1 of 1 run stopped" in fit.why
    # three of six levels stopped: said so, and the finding still does not differ
    three = level_sweep()
    for run in three[3:]:
        run["status"], run["converged_step"], run["test_acc"] = "max_epochs", None, 0.9
    rises = all_findings(three)[1]
    assert rises.ok is None and rises.why.startswith("3 of 6 runs stopped at max_epochs")
    # Table 1 shows their numbers with their status, but no Δ against the paper
    runs = [make_run(data="cifar10", model="inception_small", corruption="true_labels", status="max_epochs",
                     train_acc=0.61, test_acc=0.47)]
    (row,) = [r for r in tables.table1(runs, "cifar10").rows if r["status"] != "not run"]
    assert row["status"] == "max_epochs" and row["test_acc"] == pytest.approx(47.0)
    assert row["paper_test_acc"] == 85.75 and row["delta_test_acc"] is None and row["delta_train_acc"] is None


DIVERGED_ACC = (0.1234, 0.0987)  # train/test accuracy a diverged run stores (argmax of NaN outputs)


def _with_diverged(runs: list[dict], statuses=("diverged", "failed", "interrupted")) -> list[dict]:
    """``runs`` plus a copy of each label-level run at lr 1000 whose status is one of ``statuses``."""
    bad = []
    for i, run in enumerate(r for r in runs if r["config"]["corruption"] == "partial_labels"):
        copy = make_run(level=run["config"]["level"], status=statuses[i % len(statuses)],
                        train_acc=DIVERGED_ACC[0], test_acc=DIVERGED_ACC[1], name=f"huge_lr/p={run['config']['level']}")
        copy["config"]["lr"] = 1000.0
        copy["run_key"] = run["run_key"] + "-lr1000"
        if copy["status"] == "diverged":  # a diverged run stores its NaN-output accuracies
            copy.update(train_acc=DIVERGED_ACC[0], test_acc=DIVERGED_ACC[1])
        bad.append(copy)
    return runs + bad


def test_runs_that_are_not_evidence_enter_no_number_figure_or_finding(tmp_path):
    """Issue 12 / cases/diverged_runs_in_report: diverged, failed and unfinished runs are listed with
    their status, and nothing computed from them appears anywhere."""
    from rethinkgen.report.evidence import evidence_status, is_evidence

    good = level_sweep() + corruption_runs()
    runs = _with_diverged(good)
    assert {evidence_status(r) for r in runs} == {"fit", "diverged", "failed", "unfinished"}
    index = build_from_data(runs, [], tmp_path / "out")
    text = index.read_text()
    written = text + "".join(p.read_text() for p in (tmp_path / "out").glob("*.[cm][sd]*"))
    for value in DIVERGED_ACC:
        for shown in (f"{100 * value:.2f}", f"{100 * value!r}", f"{100 * (1 - value):.2f}"):
            assert shown not in written, shown
    # findings, figures and tables are exactly those of the evidence alone
    alone = build_from_data(good, [], tmp_path / "alone")
    for a, b in zip(all_findings(runs), all_findings(good), strict=True):
        assert (a.ok, a.details) == (b.ok, b.details)
    fit, rises, *_ = all_findings(runs)
    assert fit.left_out == "1 unfinished" and rises.left_out == "2 diverged, 2 failed, 2 unfinished"
    for plot_all, plot_good in zip(figures.all_figures(runs), figures.all_figures(good), strict=True):
        ours = [(s.kind, s.x, s.y) for s in plot_all.series if s.kind != "missing"]  # labels gain "(lr=0.1)"
        assert ours == [(s.kind, s.x, s.y) for s in plot_good.series]
    # the lr = 1000 setting appears in Figure 1c only as × marks at the bottom
    missing = figures.figure1c(runs).find("mlp_1x512 (lr=1000)", kind="missing")
    assert missing.x == LEVELS and missing.y == []
    levels = list(csv.DictReader((tmp_path / "out" / "levels_mnist1d.csv").read_text().splitlines()))
    for row in levels:
        if row["variant"] == "lr=1000":
            assert row["seeds"] == "0" and row["train_acc"] == row["test_error"] == ""
            assert row["status"] in ("diverged", "failed", "interrupted")
    summary = list(csv.DictReader((tmp_path / "out" / "runs_mnist1d.csv").read_text().splitlines()))
    for row in summary:
        if row["name"].startswith("huge_lr"):
            assert row["train_acc"] == row["test_acc"] == row["best_test_acc"] == ""
    assert "6 of 17 runs are not evidence (2 diverged, 2 failed, 2 interrupted)" in text
    assert "Runs that are not evidence" in text and "the loss became NaN or infinite" in text
    assert alone.read_text().count("not evidence") < text.count("not evidence")
    assert sum(is_evidence(r) for r in runs) == len(good)


def test_the_diverged_case_through_sweep_run_and_report(tmp_path):
    """cases/diverged_runs_in_report: the real spec through ``rethinkgen sweep run`` (CPU, ~5 s), then
    the report: no diverged number in any table or finding."""
    import json

    from typer.testing import CliRunner

    from rethinkgen.cli import app
    from rethinkgen.report.build import load_store

    (tmp_path / "spec_diverge.toml").write_text(SPEC_DIVERGE)
    (tmp_path / "spec_nan.toml").write_text(SPEC_NAN)
    store = tmp_path / "div.db"
    res = CliRunner().invoke(app, ["sweep", "run", str(tmp_path / "spec_diverge.toml"), "--store", str(store),
                                   "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    runs, _ = load_store(store)
    diverged = [r for r in runs if r["status"] == "diverged"]
    assert len(diverged) == 3 and all(r["name"].startswith("huge_lr") for r in diverged)
    out = tmp_path / "report"
    text = build_report(store, out).read_text()
    for name in ("table1_mnist1d.csv", "levels_mnist1d.csv", "runs_mnist1d.csv"):
        for row in csv.DictReader((out / name).read_text().splitlines()):
            if "diverged" in row["status"]:
                assert all(row[k] == "" for k in row if "acc" in k or "error" in k), (name, row)
    for f in all_findings(runs):
        assert not any("huge_lr" in d for d in f.details), f.details
    rises = all_findings(runs)[1]
    assert rises.ok is True and rises.left_out == "3 diverged"
    assert "3 of 6 runs are not evidence (3 diverged)" in text
    json.dumps([f.__dict__ for f in all_findings(runs)])
    # the NaN spec is refused before anything runs, naming both fields
    res = CliRunner().invoke(app, ["sweep", "run", str(tmp_path / "spec_nan.toml"), "--store", str(tmp_path / "n.db")])
    assert res.exit_code != 0 and "lr must be > 0 and finite" in res.output and "weight_decay" in res.output
    assert not (tmp_path / "n.db").exists()


# --- the whole report from a store -----------------------------------------------------------------

def full_runs() -> list[dict]:
    runs = level_sweep() + level_sweep(model="cnn1d", base_steps=150, err0=20) + corruption_runs()
    runs += [make_run(corruption="true_labels", weight_decay=5e-4, test_acc=0.71),
             make_run(corruption="true_labels", dropout=0.5, test_acc=0.69)]
    runs += [make_run(data="cifar10", model="inception_small", corruption="true_labels", test_acc=0.86)]
    return runs


def test_build_report_from_store(tmp_path):
    runs = full_runs()
    store = write_store(tmp_path / "s.db", runs, [kernel_row()])
    index = build_report(store, tmp_path / "out")
    text = index.read_text()
    out = tmp_path / "out"
    for name in ("fig1a_mnist1d.png", "fig1b_mnist1d.png", "fig1c_mnist1d.png", "fig2_mnist1d.png",
                 "fig2_cifar10.png", "table1_cifar10.csv", "table1_mnist1d.md", "levels_mnist1d.csv",
                 "runs_mnist1d.csv", "table3_kernels.csv", "table3_kernels.md"):
        assert (out / name).is_file(), name
        if name.endswith(".png"):
            assert f'src="{name}"' in text
    assert (out / "fig1a_mnist1d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # provenance
    assert f">{len(runs)} ({len(runs)} converged)<" in text
    assert "git:abc123" in text and "2.14.1" in text and "test machine, 2 CPUs" in text
    # the stored numbers, read back through the store, are the CSV's numbers
    rows = list(csv.DictReader((out / "levels_mnist1d.csv").read_text().splitlines()))
    mlp = [r for r in rows if r["model"] == "mlp_1x512"]
    assert [float(r["level"]) for r in mlp] == LEVELS
    expected = {r["config"]["level"]: 100 * (1 - r["test_acc"]) for r in level_sweep()}
    for r in mlp:
        assert float(r["test_error"]) == pytest.approx(expected[float(r["level"])], abs=1e-9)
    assert "paper test (%)" in (out / "table1_cifar10.md").read_text()
    assert "paper" not in (out / "table1_mnist1d.md").read_text()
    assert "no paper columns" in text


def test_the_provenance_says_how_the_runs_were_computed(tmp_path):
    """The device a run was given ("cpu", "auto") does not say its precision: a run forced to bf16 autocast on
    the CPU (``precision="bfloat16"``) and a float32 one must be told apart on the page, from their numerics."""
    runs = level_sweep()
    store = write_store(tmp_path / "s.db", runs)
    with Store(store) as s:
        s.set_numerics(runs[0]["run_key"], Numerics("cpu", "bfloat16", threads=1).to_dict())
        for r in runs[1:]:
            s.set_numerics(r["run_key"], Numerics("cpu", None, threads=2).to_dict())
    text = build_report(store, tmp_path / "out").read_text()
    assert re.search(r">numerics<.*cpu, bf16 autocast, 1 thread \(1 run\); cpu, float32, 2 threads \(5 runs\)",
                     text, re.S)
    # and the run table's files, which outlive the page (joined with another store's, say), per run
    table = (tmp_path / "out" / "runs_mnist1d.csv").read_text().splitlines()
    rows = {row["name"]: row["numerics"] for row in csv.DictReader(table)}
    assert rows[runs[0]["name"]] == "cpu, bf16 autocast, 1 thread"
    assert {rows[r["name"]] for r in runs[1:]} == {"cpu, float32, 2 threads"}


def test_partial_store_lists_unfinished_runs(tmp_path):
    runs = level_sweep()
    runs[2]["status"] = "failed"
    runs[2]["error"] = "RuntimeError: out of memory"
    runs[3]["status"] = "pending"
    index = build_report(write_store(tmp_path / "s.db", runs), tmp_path / "out")
    text = index.read_text()
    assert "2 of 6 runs are not evidence (1 failed, 1 pending)" in text
    assert "rerun the sweep to resume the unfinished ones" in text
    assert "RuntimeError: out of memory" in text and "Runs that are not evidence" in text
    plot = figures.figure1c(runs)
    assert plot.find("mlp_1x512", kind="missing").x == [0.4, 0.6]
    assert plot.find("mlp_1x512").x == [0.0, 0.2, 0.8, 1.0]


def test_empty_store_says_so(tmp_path):
    with Store(tmp_path / "empty.db"):
        pass
    text = build_report(tmp_path / "empty.db", tmp_path / "out").read_text()
    assert "holds no runs and no kernel results yet" in text
    assert "rethinkgen sweep run configs/quick.toml" in text


def test_missing_store_is_refused(tmp_path):
    with pytest.raises(RethinkgenError, match="no results store"):
        build_report(tmp_path / "nope.db", tmp_path / "out")
    assert not (tmp_path / "nope.db").exists()


def test_strings_from_the_store_are_escaped(tmp_path):
    runs = level_sweep()
    runs[1]["name"] = XSS
    runs[2]["status"], runs[2]["error"] = "failed", f"ValueError: {XSS}"
    runs[2]["name"] = f'"><img src=x onerror=alert(2)>{XSS}'
    kern = kernel_row(features=XSS)
    index = build_report(write_store(tmp_path / "s.db", runs, [kern]), tmp_path / "out")
    text = index.read_text()
    assert "<script" not in text.lower() and "onerror=alert" not in text.replace("onerror=alert(2)&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert '<img src=x' not in text
    # a dataset name with markup is escaped too, and its files get a safe name
    bad = [make_run(data=XSS, corruption="true_labels"), make_run(data=XSS, corruption="random_labels")]
    text = build_from_data(bad, [], tmp_path / "out2").read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert all(re.fullmatch(r"[a-z0-9_.-]+", p.name) for p in (tmp_path / "out2").iterdir())


def test_markdown_tables_escape_run_names(tmp_path):
    """Issue 15: a run name with HTML or a pipe stays one cell of text in the Markdown files."""
    runs = level_sweep()
    runs[1]["name"] = f"{XSS}|x | y`z`\\"
    runs[2]["name"] = "two\nlines"
    build_from_data(runs, [], tmp_path / "out")
    md = (tmp_path / "out" / "runs_mnist1d.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;\\|x \\| y\\`z\\`\\\\" in md
    header, _, *rows = [line for line in md.splitlines() if line.startswith("|")]
    cells = len(re.split(r"(?<!\\)\|", header))
    assert all(len(re.split(r"(?<!\\)\|", row.replace("\\\\", ""))) == cells for row in rows)
    assert "two lines" in md


def test_no_literal_backticks_on_the_page(tmp_path):
    """The kernel notice and the empty-store message show commands as <code>, not `backticks`."""
    text = build_from_data(level_sweep(), [], tmp_path / "out").read_text()
    assert "add them with <code>rethinkgen kernel fit ... --store (in memory)</code>" in text
    assert "`" not in re.sub(r"<[^>]+>", "", text)
    with Store(tmp_path / "empty.db"):
        pass
    empty = build_report(tmp_path / "empty.db", tmp_path / "out2").read_text()
    assert "`" not in re.sub(r"<[^>]+>", "", empty) and "<code>rethinkgen sweep run configs/quick.toml" in empty


def test_cli_prints_where_the_report_is(tmp_path, capsys):
    from rethinkgen.report.cli import report_command

    store = write_store(tmp_path / "s.db", corruption_runs())
    index = report_command(store, tmp_path / "r")
    assert index == tmp_path / "r" / "index.html" and index.is_file()
    assert str(index) in capsys.readouterr().out


def test_embedded_images(tmp_path):
    index = build_from_data(corruption_runs(), [], tmp_path / "out", embed_images=True)
    text = index.read_text()
    assert 'src="data:image/png;base64,' in text and 'src="fig1a_' not in text
