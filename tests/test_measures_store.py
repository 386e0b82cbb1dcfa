"""Measures in sweeps and stores: the spec key, computing at the end of runs (alone and fused), the
``measures`` table and its migration, ``rethinkgen measure`` from checkpoints (resumable), the CLI.
Everything on the CPU with tiny MNIST-1D runs."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch
from typer.testing import CliRunner

from rethinkgen import cli
from rethinkgen.errors import ConfigError
from rethinkgen.measures import list_measures
from rethinkgen.measures.records import lacking, measure_store
from rethinkgen.sweep.executors import LocalExecutor
from rethinkgen.sweep.progress import SweepDisplay
from rethinkgen.sweep.runner import run_sweep
from rethinkgen.sweep.spec import parse_spec
from rethinkgen.sweep.store import MEASURE_COLUMNS, Store

NAMES = ["l2_norm", "inverse_margin", "sharpness"]
SPEC = """
name = "m"
{measures}
[defaults]
data = "mnist1d"
device = "cpu"  # the CPU's numbers, also where a GPU is visible
n_train = 128
n_test = 100
batch_size = 32
epochs = 3
[grid]
corruption = ["true_labels", "random_labels"]
"""


def spec(measures: str = f"measures = {json.dumps(NAMES)}"):
    return parse_spec(SPEC.format(measures=measures))


def sweep(path, plan, **kwargs):
    kwargs.setdefault("fuse", False)
    return run_sweep(plan, path, executor=LocalExecutor(threads=1), display=SweepDisplay(quiet=True), **kwargs)


def stored(path) -> dict[str, dict[str, tuple[int, float]]]:
    with Store.open(path) as s:
        out: dict[str, dict[str, tuple[int, float]]] = {}
        for row in s.measures():
            out.setdefault(row["run_key"], {})[row["name"]] = (row["epoch"], row["value"])
        return out


# ------------------------------------------------------------------------------------------ spec
def test_spec_measures_are_validated_and_do_not_change_run_keys():
    plan = spec('measures = ["sharpness", "l2_norm"]')
    assert plan.measures == ("l2_norm", "sharpness")  # registry order
    assert [r.run_key for r in plan.runs] == [r.run_key for r in spec("").runs]
    assert spec('measures = ["all"]').measures == tuple(list_measures())
    with pytest.raises(ConfigError, match=r"measures\[1\]: unknown measure 'sharpnes' \(did you mean 'sharpness'\?\)"):
        spec('measures = ["l2_norm", "sharpnes"]')
    with pytest.raises(ConfigError, match="measures: must be a list of measure names"):
        spec('measures = "l2_norm"')


# ------------------------------------------------------------------------------------------ sweeps
@pytest.mark.parametrize("fuse", [False, True])
def test_sweep_stores_the_measures_of_each_finished_run_at_its_final_epoch(tmp_path, fuse, monkeypatch):
    from rethinkgen.sweep import worker

    groups = []
    real = worker.execute_group
    monkeypatch.setattr(worker, "execute_group",
                        lambda tasks, *a, **k: groups.append(len(tasks)) or real(tasks, *a, **k))
    path = tmp_path / "s.db"
    result = sweep(path, spec(), fuse=fuse)
    assert not result.failed
    assert groups == ([2] if fuse else [])  # the fused trainer computed them too
    values = stored(path)
    with Store.open(path) as s:
        runs = s.runs()
        assert len(runs) == 2
        for r in runs:
            assert set(values[r["run_key"]]) == set(NAMES)
            assert {epoch for epoch, _ in values[r["run_key"]].values()} == {r["epochs"]}
            assert "measures" not in s.summary(r["run_key"])  # stored in its table, not the summary JSON
            row = next(m for m in s.measures(r["run_key"]) if m["name"] == "sharpness")
            assert json.loads(row["settings_json"]) == {"subset": 2048, "sharpness_radius": 5e-4,
                                                         "sharpness_steps": 5}
            assert row["seconds"] >= 0 and row["error"] is None and row["code_version"]


def test_fused_and_single_runs_give_the_same_measures(tmp_path):
    sweep(tmp_path / "a.db", spec(), fuse=False)
    sweep(tmp_path / "b.db", spec(), fuse=True)
    a, b = stored(tmp_path / "a.db"), stored(tmp_path / "b.db")
    for key in a:  # the same weights within float tolerance (tests/test_fused.py), so the same measures
        for name in NAMES:
            assert b[key][name][1] == pytest.approx(a[key][name][1], rel=1e-3, abs=1e-6), name


def test_measure_command_computes_from_checkpoints_and_resumes(tmp_path):
    path = tmp_path / "s.db"
    sweep(path, spec(), keep_checkpoints=True)  # measured at the end of each run
    at_end = stored(path)
    first = measure_store(path, ["l2_norm", "path_norm"], device="cpu")  # path_norm is new: only it is computed
    assert first.measured == 2 and first.skipped == 0 and not first.no_checkpoint
    after = stored(path)
    for key, values in at_end.items():
        assert after[key]["l2_norm"] == values["l2_norm"]  # untouched
        assert after[key]["path_norm"][0] == values["l2_norm"][0]  # at the final epoch
    again = measure_store(path, ["l2_norm", "path_norm"], device="cpu")
    assert again.measured == 0 and again.skipped == 2  # resumable: nothing left to do
    forced = measure_store(path, NAMES, force=True, device="cpu")  # from the checkpoint: the same weights as at the end
    assert forced.measured == 2
    for key, values in at_end.items():
        for name in NAMES:
            assert stored(path)[key][name] == pytest.approx(values[name], rel=1e-9)


def test_runs_without_a_final_checkpoint_are_named(tmp_path):
    path = tmp_path / "s.db"
    sweep(path, spec(""))  # no measures, checkpoints deleted when runs finish
    with Store.open(path) as s:
        assert len(lacking(s, ["l2_norm"])) == 2
    result = measure_store(path, ["l2_norm"], device="cpu")
    assert result.measured == 0 and len(result.no_checkpoint) == 2


def test_a_later_spec_with_measures_points_at_the_measure_command(tmp_path):
    path = tmp_path / "s.db"
    sweep(path, spec(""))

    class Warnings(SweepDisplay):
        def __init__(self):
            super().__init__(quiet=True)
            self.seen = []

        def warn(self, text):
            self.seen.append(text)

    display = Warnings()
    run_sweep(spec(), path, executor=LocalExecutor(threads=1), display=display, fuse=False)
    assert any("rethinkgen measure --store" in w for w in display.seen)


# ------------------------------------------------------------------------------------------ store
def test_an_old_store_gains_the_measure_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE measures (run_key TEXT NOT NULL, epoch INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
                               PRIMARY KEY (run_key, epoch, name));
        INSERT INTO measures VALUES ('abc', 3, 'l2_norm', 1.5);
    """)
    conn.close()
    with Store(path) as s:
        columns = [r[1] for r in s.conn.execute("PRAGMA table_info(measures)")]
        assert columns == list(MEASURE_COLUMNS)
        s.add_measures("abc", 3, [{"name": "sharpness", "value": 0.25, "settings": {"subset": 8}, "seconds": 1.0}])
        rows = {r["name"]: r for r in s.measures("abc")}
    assert rows["l2_norm"]["value"] == 1.5 and rows["l2_norm"]["settings_json"] is None
    assert rows["sharpness"]["value"] == 0.25 and json.loads(rows["sharpness"]["settings_json"]) == {"subset": 8}
    with Store(path) as s:  # opening again changes nothing
        assert [r[1] for r in s.conn.execute("PRAGMA table_info(measures)")] == list(MEASURE_COLUMNS)


# ------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("columns", [80, 200])  # descriptions under the table / in it
def test_list_measures_shows_every_measure(columns, monkeypatch):
    monkeypatch.setattr(cli.console, "width", columns)
    result = CliRunner().invoke(cli.app, ["list", "measures"])
    assert result.exit_code == 0, result.output
    for name in list_measures():
        assert name in result.output
    assert "f(x)[y]" in result.output  # formulas are printed as text, not eaten as console markup


def test_measure_command_refuses_unknown_names_before_any_work(tmp_path):
    result = CliRunner().invoke(cli.app, ["measure", "--store", str(tmp_path / "none.db"), "--measures", "l2norm"])
    assert result.exit_code == 2
    assert "unknown measure 'l2norm'" in result.output and "l2_norm" in result.output


# ------------------------------------------------------------------------------------------ edge cases
def _finished_checkpoint(config):
    """The encoded sweep checkpoint of a run's final epoch (as a crash before the store's record leaves)."""
    from rethinkgen.sweep.checkpoint import encode, make_payload
    from rethinkgen.train.loop import train

    class Last:
        def on_epoch_end(self, row, logged, state):
            self.blob = encode(make_payload("k", row, logged, state.checkpoint()))

    last = Last()
    train(config, callbacks=[last])
    return last.blob


def test_a_run_resumed_from_its_final_checkpoint_is_measured_too():
    from rethinkgen.sweep.executors import RunTask, execute_run

    plan = spec()
    config = plan.runs[0].config
    task = RunTask(run_key="k", name="r", config=config, resume=_finished_checkpoint(config), measures=plan.measures)
    events = []
    execute_run(task, events.append)
    summary = events[-1].data["summary"]
    assert events[-1].kind == "finished"
    assert [r["name"] for r in summary["measures"]["results"]] == list(plan.measures)
    assert all(r["value"] is not None for r in summary["measures"]["results"])


def test_a_measure_setup_failure_never_fails_the_run(monkeypatch):
    from rethinkgen.measures import compute
    from rethinkgen.sweep.executors import RunTask, execute_run

    def broken(*args, **kwargs):
        raise RuntimeError("no data")

    monkeypatch.setattr(compute, "run_context", broken)
    plan = spec()
    events = []
    execute_run(RunTask(run_key="k", name="r", config=plan.runs[0].config, measures=plan.measures), events.append)
    assert events[-1].kind == "finished"
    results = events[-1].data["summary"]["measures"]["results"]
    assert all(r["value"] is None and "no data" in r["error"] for r in results)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measures_on_cuda_match_the_cpu():
    from rethinkgen.measures.compute import compute_measures, run_context
    from rethinkgen.measures.layers import initial_model
    from rethinkgen.train.loop import resolve_config

    config = resolve_config(spec().runs[0].config)
    weights = initial_model(config.model, (40,), 10, seed=3, layout="vector").state_dict()
    names = ["l2_norm", "log_prod_spec", "path_norm", "spectral_complexity", "inverse_margin", "input_grad_norm",
             "sharpness", "pacbayes_flatness", "pacbayes_mag_flatness"]
    cpu = {r.name: r.value for r in compute_measures(names, run_context(config, weights, "cpu"))}
    gpu = {r.name: r.value for r in compute_measures(names, run_context(config, weights, "cuda"))}
    for name in names[:-2]:  # float32 network on two devices: tolerance 1e-3 relative
        assert gpu[name] == pytest.approx(cpu[name], rel=1e-3), name
    # the noise is drawn on the CPU for both (the same z); a sample flipping near the boundary moves σ' by
    # at most one bisection step at the end (log-bracket ln(1e6)/2^12 = 0.34%): 1/σ'² within 1e-2
    for name in names[-2:]:
        assert gpu[name] == pytest.approx(cpu[name], rel=1e-2), name


def test_measures_stored_with_other_settings_are_recomputed_not_skipped(tmp_path):
    """`measure --subset 16` on runs measured at the end with the default subset (2,048) must compute
    them again (it once counted them as done, so a store could mix two definitions of one measure)."""
    from rethinkgen.measures.context import MeasureSettings

    path = tmp_path / "s.db"
    sweep(path, spec(), keep_checkpoints=True)  # sharpness at the end, subset 2048
    small = MeasureSettings(subset=16)
    result = measure_store(path, ["sharpness", "l2_norm"], settings=small, device="cpu")
    assert result.measured == 2 and result.skipped == 0
    with Store.open(path) as s:
        rows = [r for r in s.measures() if r["name"] == "sharpness"]
        assert len(rows) == 2 and all(json.loads(r["settings_json"])["subset"] == 16 for r in rows)
        assert lacking(s, ["sharpness", "l2_norm"], settings=small) == {}
        assert set(lacking(s, ["sharpness"])) == {r["run_key"] for r in rows}  # the defaults: lacking again
    again = measure_store(path, ["sharpness", "l2_norm"], settings=small, device="cpu")
    assert again.measured == 0 and again.skipped == 2


def test_a_checkpoint_that_does_not_fit_is_named_and_the_other_runs_are_measured(tmp_path):
    """A checkpoint of another code version (here: a layer renamed) used to stop the whole call with a
    traceback at that run, so the runs after it were never measured."""
    from rethinkgen.sweep.checkpoint import encode, load_checkpoint, write_atomic

    path = tmp_path / "s.db"
    sweep(path, spec(""), keep_checkpoints=True)
    with Store.open(path) as s:
        runs = s.runs()
    bad = runs[0]
    ckpt = s.checkpoint_dir / f"{bad['run_key']}.pt"
    loaded, _ = load_checkpoint(ckpt, bad["run_key"])
    payload = loaded.payload
    payload["state"]["model"] = {k.replace("head", "classifier"): v for k, v in payload["state"]["model"].items()}
    write_atomic(ckpt, encode(payload))
    result = CliRunner().invoke(cli.app, ["measure", "--store", str(path), "--measures", "l2_norm",
                                          "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert "cannot measure" in result.output and "RuntimeError" in result.output and "other runs" in result.output
    values = stored(path)
    assert set(values) == {runs[1]["run_key"]} and values[runs[1]["run_key"]]["l2_norm"][1] > 0


def test_a_rebuilt_run_whose_data_or_init_differ_from_the_stored_one_is_not_measured(tmp_path, monkeypatch):
    """`measure` rebuilds the training data and the initial weights from the config; code that changed
    since the run trained (another corruption draw, another initialisation) loads the checkpoint without
    complaint and gave wrong margins or distances from initialisation. The store's final train accuracy
    and epoch-0 loss now tell."""
    import dataclasses

    from rethinkgen.measures import layers
    from rethinkgen.train import data as train_data

    path = tmp_path / "s.db"
    sweep(path, spec(""), keep_checkpoints=True)
    real_init = layers.initial_model
    monkeypatch.setattr(layers, "initial_model", lambda *a, seed, **k: real_init(*a, seed=seed + 1, **k))
    result = measure_store(path, ["l2_norm", "dist_init"], device="cpu")
    assert result.measured == 2 and not result.unusable and result.failed == {"dist_init": 2}
    with Store.open(path) as s:
        rows = {r["name"]: r for r in s.measures()}
    assert rows["l2_norm"]["value"] > 0
    assert rows["dist_init"]["value"] is None and "initialises the model differently" in rows["dist_init"]["error"]
    monkeypatch.setattr(layers, "initial_model", real_init)
    assert measure_store(path, ["dist_init"], device="cpu").measured == 2  # the right init: measured now

    real_prepare = train_data.prepare_data
    monkeypatch.setattr(train_data, "prepare_data", lambda config, device: dataclasses.replace(
        prepared := real_prepare(config, device), y_train=(prepared.y_train + 1) % prepared.num_classes))
    result = measure_store(path, ["path_norm"], device="cpu")
    assert result.measured == 0 and len(result.unusable) == 2
    assert all("differ from those it trained on" in line for line in result.unusable)


def test_rows_of_an_old_store_without_settings_count_only_for_measures_without_settings(tmp_path):
    path = tmp_path / "s.db"
    sweep(path, spec())
    with sqlite3.connect(path) as conn:  # as a store written before the settings column
        conn.execute("UPDATE measures SET settings_json = NULL")
    with Store.open(path) as s:
        missing = lacking(s, ["l2_norm", "sharpness"])
    assert len(missing) == 2 and all(names == ["sharpness"] for names in missing.values())
