"""TensorBoard output of `rethinkgen train --tensorboard` and of sweeps, read back with TensorBoard's own
EventAccumulator and compared with the run folder / results store (the record). CPU runs."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from rethinkgen import cli
from rethinkgen.sweep.store import Store
from rethinkgen.train import loop
from rethinkgen.train.tensorboard import run_folder

TINY = ["--data", "mnist1d", "--n-train", "512", "--n-test", "256", "--corruption", "random_labels",
        "--lr", "0.01", "--device", "cpu", "--threads", "1"]


def invoke(*args):
    return CliRunner().invoke(cli.app, list(map(str, args)))


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_writes_every_scalar_of_the_run(tmp_path):
    result = invoke("train", *TINY, "--epochs", "4", "--out", tmp_path / "run", "--tensorboard", tmp_path / "tb")
    assert result.exit_code == 0, result.output
    got = scalars(tmp_path / "tb" / "run")
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    losses = read_csv(tmp_path / "run" / "step_losses.csv")
    assert [s for s, _ in got["loss/train_step"]] == [int(r["step"]) for r in losses]
    assert [v for _, v in got["loss/train_step"]] == pytest.approx([float(r["loss"]) for r in losses], rel=1e-6)
    for tag, key in (("accuracy/test", "test_acc"), ("accuracy/train", "train_acc"), ("lr", "lr"),
                     ("loss/test", "test_loss"), ("loss/train_eval", "train_eval_loss")):
        assert [s for s, _ in got[tag]] == [int(r["step"]) for r in rows], tag
        assert [v for _, v in got[tag]] == pytest.approx([float(r[key]) for r in rows], rel=1e-6), tag
    assert [s for s, _ in got["loss/train"]] == [int(r["step"]) for r in rows[1:]]  # epoch 0 trains nothing
    assert [v for _, v in got["epoch"]] == [0, 1, 2, 3, 4]


def test_a_resumed_run_shows_each_step_once_with_the_uninterrupted_values(tmp_path, monkeypatch):
    args = [*TINY, "--epochs", "6"]
    assert invoke("train", *args, "--out", tmp_path / "reference", "--tensorboard", tmp_path / "tb").exit_code == 0
    original = loop.Trainer.train_epoch

    def breaks_in_epoch_5(self):  # epochs 0-4 are written, then the run fails
        if self.epoch == 4:
            raise RuntimeError("simulated failure")
        return original(self)

    monkeypatch.setattr(loop.Trainer, "train_epoch", breaks_in_epoch_5)
    assert invoke("train", *args, "--out", tmp_path / "run", "--tensorboard", tmp_path / "tb").exit_code == 1
    monkeypatch.setattr(loop.Trainer, "train_epoch", original)
    assert invoke("train", "--resume", tmp_path / "run").exit_code == 0  # --tensorboard remembered
    reference, resumed = scalars(tmp_path / "tb" / "reference"), scalars(tmp_path / "tb" / "run")
    assert set(resumed) == set(reference)
    for tag in reference:
        steps = [s for s, _ in resumed[tag]]
        assert steps == sorted(set(steps)), tag  # no step twice
        assert resumed[tag] == reference[tag], tag  # CPU, one thread: the resumed run is bit-identical


def test_events_past_the_resumed_checkpoint_are_purged(tmp_path):
    """A run killed after epoch 4 whose last checkpoint was epoch 2 (kill -9): the resumed attempt's
    events replace those of epochs 3-4, and every step shows once."""
    from rethinkgen.train.tensorboard import TensorBoardSink

    def row(epoch, value):
        return {"epoch": epoch, "step": 10 * epoch, "test_acc": value, "lr": 0.1}

    first = TensorBoardSink(tmp_path)
    for epoch in range(5):
        first.log_epoch(row(epoch, 0.5), [[10 * epoch - 5, 1.0]] if epoch else [])
    first.close()
    again = TensorBoardSink(tmp_path, fresh=False)  # resumed after epoch 2
    for epoch in (3, 4, 5):
        again.log_epoch(row(epoch, 0.9), [[10 * epoch - 5, 2.0]])
    again.close()
    got = {tag: [(s, round(v, 6)) for s, v in events] for tag, events in scalars(tmp_path).items()}
    assert got["accuracy/test"] == [(0, 0.5), (10, 0.5), (20, 0.5), (30, 0.9), (40, 0.9), (50, 0.9)]
    assert got["loss/train_step"] == [(5, 1.0), (15, 1.0), (25, 2.0), (35, 2.0), (45, 2.0)]
    fresh = TensorBoardSink(tmp_path)  # started over from epoch 0: nothing of the earlier attempts stays
    fresh.log_epoch(row(0, 0.1))
    fresh.close()
    assert scalars(tmp_path)["accuracy/test"] == [(0, pytest.approx(0.1))]


def test_a_sweep_writes_one_folder_per_run_named_by_the_run(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "tb"\ntensorboard = "tb-from-spec"\n[defaults]\ndata = "mnist1d"\nn_train = 256\n'
                    'n_test = 128\nepochs = 3\nlog_every = 1\ndevice = "cpu"\n[grid]\ncorruption = ["true_labels", '
                    '"random_labels"]\n')
    store = tmp_path / "s.db"
    result = invoke("sweep", "run", spec, "--store", store, "--quiet")
    assert result.exit_code == 0, result.output
    root = tmp_path / "tb-from-spec"  # relative to the spec's folder
    with Store.open(store) as s:
        runs = s.runs()
        assert len(runs) == 2
        for run in runs:
            folder = run_folder(root, run["name"])
            assert folder.parent == root / "tb", folder  # "tb/corruption=..." -> tb/corruption=...
            got = scalars(folder)
            rows = s.epoch_rows(run["run_key"])
            assert [v for _, v in got["accuracy/test"]] == pytest.approx([r["test_acc"] for r in rows])
            steps = [st for st, _ in s.step_losses(run["run_key"])]
            assert len(steps) == 6 and [st for st, _ in got["loss/train_step"]] == steps
    # --tensorboard on the command line wins over the spec's key
    result = invoke("sweep", "run", spec, "--store", tmp_path / "t.db", "--quiet", "--tensorboard", tmp_path / "cli")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "cli" / "tb").iterdir())) == 2


def test_run_names_become_safe_folders(tmp_path):
    assert run_folder(tmp_path, "exp/corruption=random_labels,seed=0") == \
        tmp_path / "exp" / "corruption=random_labels,seed=0"
    assert run_folder(tmp_path, "exp/data_options={path=x y.npz}").name == "data_options=_path=x_y.npz_"
    assert len(run_folder(tmp_path, "e/" + "x" * 400).name) < 160


def test_missing_tensorboard_fails_before_work_with_the_install_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("training started"))
    result = invoke("train", *TINY, "--epochs", "1", "--out", tmp_path / "run", "--tensorboard", tmp_path / "tb")
    assert result.exit_code == 2, result.output
    assert "pip install 'rethinkgen[tensorboard]'" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()
