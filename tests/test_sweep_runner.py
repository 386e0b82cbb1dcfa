"""The sweep driver in-process: records, skips, resumes exactly, and keeps failures local."""

from __future__ import annotations

import importlib
import sqlite3

import pytest

from rethinkgen.sweep import ray_executor, worker
from rethinkgen.sweep.executors import LocalExecutor, execute_run, register_group_trainer
from rethinkgen.sweep.progress import SweepDisplay
from rethinkgen.sweep.runner import run_sweep
from rethinkgen.sweep.spec import parse_spec
from rethinkgen.sweep.store import Store, StoreLockedError, SweepLock

SPEC = """
name = "tiny"
[defaults]
data = "mnist1d"
n_train = 128
n_test = 100
batch_size = 32
log_every = 3
epochs = 6
device = "cpu"
[grid]
seed = [0, 1]
corruption = ["true_labels", "random_labels"]
"""
VOLATILE = {"wall_time_s"}  # the only numbers allowed to differ between two executions


def snapshot(path) -> dict:
    """Everything a sweep computed, per run, without wall times: the thing resume must reproduce."""
    with Store.open(path) as s:
        out = {}
        for r in s.runs():
            summary = {k: v for k, v in s.summary(r["run_key"]).items() if k not in VOLATILE | {"hardware"}}
            rows = [{k: v for k, v in row.items() if k not in VOLATILE} for row in s.epoch_rows(r["run_key"])]
            out[r["run_key"]] = (r["status"], summary, rows, s.step_losses(r["run_key"]))
        return out


def sweep(path, spec=None, display=None, **kwargs):
    """The driver's run-by-run semantics (``fuse=False``); fused groups are tested at the end of the file."""
    kwargs.setdefault("fuse", False)
    return run_sweep(spec or parse_spec(SPEC), path, executor=LocalExecutor(threads=1),
                     display=display or SweepDisplay(quiet=True), **kwargs)


class InterruptAt(SweepDisplay):
    """Acts as Ctrl-C right after the ``epoch``-th epoch of the ``index``-th started run committed."""

    def __init__(self, index: int, epoch: int) -> None:
        super().__init__(quiet=True)
        self.index, self.at, self.started, self.warnings = index, epoch, [], []

    def run_started(self, run_key, name, epochs, resumed_from):
        self.started.append(run_key)
        super().run_started(run_key, name, epochs, resumed_from)

    def epoch(self, run_key, row):
        super().epoch(run_key, row)
        if len(self.started) > self.index and run_key == self.started[self.index] and row["epoch"] == self.at:
            raise KeyboardInterrupt

    def warn(self, message):
        self.warnings.append(message)
        super().warn(message)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.db"
    result = sweep(path)
    assert result.started == 4 and not result.failed and not result.stopped
    return snapshot(path)


def test_a_sweep_records_every_epoch_and_a_second_call_does_nothing(tmp_path, reference):
    path = tmp_path / "r.db"
    assert sweep(path).started == 4
    snap = snapshot(path)
    assert snap == reference  # two uninterrupted executions agree bit for bit (CPU)
    for status, summary, rows, losses in snap.values():
        assert status in ("converged", "max_epochs")
        assert [r["epoch"] for r in rows] == list(range(summary["epochs"] + 1))  # epoch 0 .. last, no gaps
        assert [s for s, _ in losses] == list(range(3, summary["steps"] + 1, 3))
    with Store.open(path) as s:
        before = {r["run_key"]: (r["attempts"], r["finished_at"]) for r in s.runs()}
    again = sweep(path)
    assert (again.skipped, again.started) == (4, 0)
    with Store.open(path) as s:
        assert {r["run_key"]: (r["attempts"], r["finished_at"]) for r in s.runs()} == before
    assert not (tmp_path / "r.db.ckpt").exists() or not any((tmp_path / "r.db.ckpt").iterdir())


def test_an_interrupted_sweep_resumes_to_exactly_the_uninterrupted_numbers(tmp_path, reference):
    path = tmp_path / "r.db"
    display = InterruptAt(index=1, epoch=3)
    first = sweep(path, display=display)
    assert first.stopped and len(first.interrupted) == 1
    with Store.open(path) as s:
        statuses = [r["status"] for r in s.runs()]
        assert statuses[:2] == [reference[display.started[0]][0], "interrupted"]
        assert statuses[2:] == ["pending", "pending"]
        assert [r["epoch"] for r in s.epoch_rows(display.started[1])] == [0, 1, 2, 3]
    second = sweep(path)
    assert (second.skipped, second.started, second.resumed) == (1, 3, 1)
    assert snapshot(path) == reference
    with Store.open(path) as s:
        assert s.run(display.started[1])["attempts"] == 2


@pytest.mark.parametrize("damage", ["latest", "both"])
def test_a_truncated_checkpoint_falls_back_with_a_warning_and_still_matches(tmp_path, reference, damage):
    path = tmp_path / "r.db"
    display = InterruptAt(index=0, epoch=4)
    sweep(path, display=display)
    key = display.started[0]
    ckpt = tmp_path / "r.db.ckpt" / f"{key}.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])  # e.g. a disk that filled up mid-write
    if damage == "both":
        prev = ckpt.with_name(ckpt.name + ".prev")
        prev.write_bytes(prev.read_bytes()[:-1])
    again = InterruptAt(index=99, epoch=-1)  # only records warnings
    with pytest.warns(UserWarning):
        result = sweep(path, display=again)
    assert any("truncated" in w for w in again.warnings)
    assert any(("previous checkpoint" if damage == "latest" else "restart from scratch") in w
               for w in again.warnings)
    assert result.resumed == (1 if damage == "latest" else 0)
    assert snapshot(path) == reference


def test_epoch_commits_lost_to_a_power_cut_come_back_from_the_checkpoint(tmp_path, reference):
    path = tmp_path / "r.db"
    display = InterruptAt(index=0, epoch=4)
    sweep(path, display=display)
    with sqlite3.connect(path) as db:  # epoch commits are not fsynced: a power cut may roll some back
        db.execute("DELETE FROM epochs WHERE epoch BETWEEN 1 AND 3")
        db.execute("DELETE FROM step_losses")
    result = sweep(path)
    assert result.resumed == 1
    assert snapshot(path) == reference


def test_a_run_that_raises_is_recorded_and_the_sweep_goes_on(tmp_path, reference, monkeypatch):
    loop = importlib.import_module("rethinkgen.train.loop")
    real = loop.train

    def flaky(config, **kwargs):
        if config.seed == 1 and config.corruption == "random_labels":
            raise RuntimeError("simulated out-of-memory in one run")
        return real(config, **kwargs)

    monkeypatch.setattr(loop, "train", flaky)
    path = tmp_path / "r.db"
    result = sweep(path)
    assert result.failed == ["tiny/seed=1,corruption=random_labels"] and result.started == 4
    with Store.open(path) as s:
        (failed,) = s.runs(status="failed")
        assert "Traceback" in failed["error"] and "simulated out-of-memory" in failed["error"]
        assert len(s.runs(status=["converged", "max_epochs"])) == 3
    monkeypatch.setattr(loop, "train", real)
    retry = sweep(path)  # a rerun retries the failed run only
    assert (retry.skipped, retry.started, retry.failed) == (3, 1, [])
    assert snapshot(path) == reference


def test_a_diverging_run_is_a_normal_final_status(tmp_path):
    spec = parse_spec(SPEC.replace("epochs = 6", "epochs = 6\nlr = 1e12").replace('"random_labels"', ""))
    path = tmp_path / "r.db"
    result = sweep(path, spec=spec)
    assert result.statuses == {"diverged": 2} and not result.failed
    with Store.open(path) as s:
        assert all(r["status"] == "diverged" and r["error"] is None for r in s.runs())
    assert sweep(path, spec=spec).started == 0  # final: not retried


def test_a_dead_drivers_running_runs_are_resumed(tmp_path, reference):
    path = tmp_path / "r.db"
    display = InterruptAt(index=2, epoch=2)
    sweep(path, display=display)
    with sqlite3.connect(path) as db:  # what a SIGKILLed driver leaves: "running", no lock holder
        db.execute("UPDATE runs SET status = 'running' WHERE status = 'interrupted'")
    result = sweep(path)
    assert result.stale == 1 and result.resumed == 1
    assert snapshot(path) == reference


def test_a_second_sweep_on_a_locked_store_is_refused_before_any_run(tmp_path):
    path = tmp_path / "r.db"
    with SweepLock(path), pytest.raises(StoreLockedError, match="in use by another sweep"):
        sweep(path)
    with Store.open(path) as s:
        assert s.runs() == []


def test_the_fused_trainer_hook_receives_groups(tmp_path, reference):
    groups = []

    def group_trainer(tasks, emit):
        groups.append([t.run_key for t in tasks])
        for task in tasks:
            execute_run(task, emit)

    register_group_trainer(group_trainer, key=lambda config: (config.model, config.corruption))
    try:
        sweep(tmp_path / "r.db", fuse=True)
    finally:
        register_group_trainer(None)
    assert sorted(len(g) for g in groups) == [2, 2]  # both seeds of each corruption together
    assert worker.group_key() is worker._fuse_key  # None restores the fused trainer's grouping
    assert snapshot(tmp_path / "r.db") == reference


# ------------------------------------------------------------------------------ fused groups
def close_to(snap: dict, reference: dict, rel: float = 1e-4) -> None:
    """Same runs, statuses, epochs, steps and convergence; the numbers within float tolerance."""
    assert set(snap) == set(reference)
    for key, (status, summary, rows, losses) in snap.items():
        ref_status, ref_summary, ref_rows, ref_losses = reference[key]
        assert status == ref_status
        for field in ("epochs", "steps", "converged_step", "converged_epoch", "n_params", "realized_noise_rate"):
            assert summary[field] == ref_summary[field], field
        assert [r["epoch"] for r in rows] == [r["epoch"] for r in ref_rows]
        for row, ref in zip(rows, ref_rows, strict=True):
            for name, value in ref.items():
                if isinstance(value, float):
                    assert row[name] == pytest.approx(value, rel=rel, abs=1e-6), (key, row["epoch"], name)
                else:
                    assert row[name] == value, (key, row["epoch"], name)
        assert [s for s, _ in losses] == [s for s, _ in ref_losses]
        assert [v for _, v in losses] == pytest.approx([v for _, v in ref_losses], rel=rel, abs=1e-6)


@pytest.fixture(scope="module")
def fused_reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("fused") / "ref.db"
    result = sweep(path, fuse=True)
    assert result.started == 4 and not result.failed
    return snapshot(path)


def test_a_fused_sweep_trains_groups_and_records_what_separate_runs_record(tmp_path, reference, fused_reference,
                                                                          monkeypatch):
    fused = importlib.import_module("rethinkgen.train.fused")
    real, groups = fused.train_group, []

    def spy(configs, **kwargs):
        groups.append(len(configs))
        return real(configs, **kwargs)

    monkeypatch.setattr(fused, "train_group", spy)
    path = tmp_path / "r.db"
    display = InterruptAt(index=99, epoch=-1)
    result = sweep(path, display=display, fuse=True)
    assert groups == [4] and result.started == 4 and not result.failed
    assert snapshot(path) == fused_reference  # fused training is deterministic
    close_to(fused_reference, reference)  # and the store holds what separate training gives
    with Store.open(path) as s:  # the run that converged at epoch 1 finished then, while the others went on
        assert sorted(r["status"] for r in s.runs()) == sorted(v[0] for v in reference.values())
    assert sweep(path, fuse=True).started == 0


def test_an_interrupted_fused_sweep_resumes_every_run_of_the_group(tmp_path, fused_reference):
    path = tmp_path / "r.db"
    display = InterruptAt(index=0, epoch=3)
    first = sweep(path, display=display, fuse=True)
    assert first.stopped and len(first.interrupted) >= 1
    second = sweep(path, fuse=True)
    assert second.resumed == second.started >= 1 and not second.failed
    close_to(snapshot(path), fused_reference)  # runs may resume an epoch apart: see test_sweep_cli


def test_a_fused_group_that_raises_fails_its_open_runs_and_a_rerun_resumes_them(tmp_path, fused_reference,
                                                                                monkeypatch):
    fused = importlib.import_module("rethinkgen.train.fused")
    real_epoch = fused._FusedGroup.train_epoch
    calls = []

    def failing(self):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated CUDA out of memory in a fused group")
        return real_epoch(self)

    monkeypatch.setattr(fused._FusedGroup, "train_epoch", failing)
    path = tmp_path / "r.db"
    result = sweep(path, fuse=True)
    assert len(result.failed) >= 3 and not result.stopped
    with Store.open(path) as s:
        for run in s.runs(status="failed"):
            assert "simulated CUDA out of memory" in run["error"]
            assert [r["epoch"] for r in s.epoch_rows(run["run_key"])] == [0, 1, 2]
    monkeypatch.setattr(fused._FusedGroup, "train_epoch", real_epoch)
    retry = sweep(path, fuse=True)
    assert retry.resumed == len(result.failed) and not retry.failed
    close_to(snapshot(path), fused_reference)


def test_by_default_only_runs_on_a_gpu_are_fused(tmp_path, reference, monkeypatch):
    from rethinkgen.sweep.runner import fuses

    cpu, gpu = LocalExecutor(threads=1), LocalExecutor(threads=1)
    monkeypatch.setattr(gpu, "accelerated", lambda: True)
    monkeypatch.setattr(cpu, "accelerated", lambda: False)
    config = parse_spec(SPEC).runs[0].config
    assert [fuses(config.replace(device=d), None, cpu) for d in ("auto", "cpu", "cuda")] == [False, False, True]
    assert [fuses(config.replace(device=d), None, gpu) for d in ("auto", "cpu", "cuda")] == [True, False, True]
    assert fuses(config, True, cpu) and not fuses(config, False, gpu)
    fused = importlib.import_module("rethinkgen.train.fused")
    monkeypatch.setattr(fused, "train_group", lambda *a, **k: pytest.fail("a CPU sweep was fused by default"))
    run_sweep(parse_spec(SPEC), tmp_path / "r.db", executor=cpu, display=SweepDisplay(quiet=True))
    assert snapshot(tmp_path / "r.db") == reference


def test_plan_groups_splits_keys_for_the_group_limit_and_the_workers():
    from rethinkgen.sweep.runner import plan_groups

    runs = [type("Run", (), {"config": i % 2})() for i in range(34)]  # two keys, 17 runs each
    sizes = [len(g) for g in plan_groups(runs, key=lambda c: c, max_group=16)]
    assert sizes == [9, 8, 9, 8]
    assert [len(g) for g in plan_groups(runs[:22], key=lambda c: 0, max_group=16, parallelism=2)] == [11, 11]
    assert [len(g) for g in plan_groups(runs[:22], key=lambda c: c, max_group=16, parallelism=2)] == [11, 11]
    assert [len(g) for g in plan_groups(runs[:3], key=lambda c: 0, max_group=16, parallelism=8)] == [1, 1, 1]
    groups = plan_groups(runs, key=lambda c: c, max_group=16)
    assert sorted(id(r) for g in groups for r in g) == sorted(id(r) for r in runs)


def test_a_finished_checkpoint_in_a_fused_group_is_recorded_finished_even_if_the_group_fails(monkeypatch):
    """A crash between a run's last checkpoint and its `finished` commit leaves a finished checkpoint;
    the rerun must record that run as finished, whatever happens to the group it is planned with."""
    from rethinkgen.sweep.checkpoint import encode, make_payload
    from rethinkgen.sweep.executors import Event, RunTask, execute_group
    from rethinkgen.train import fused
    from rethinkgen.train.config import run_key
    from rethinkgen.train.loop import train

    configs = [run.config for run in parse_spec(SPEC).runs][:3]
    grabbed = {}

    class Grab:
        def on_epoch_end(self, row, step_losses, state):
            grabbed.update(row=dict(row), losses=list(step_losses), ckpt=state.checkpoint())

    summary = train(configs[0], callbacks=[Grab()])
    assert grabbed["ckpt"]["status"] == summary["status"] is not None
    blob = encode(make_payload(run_key(configs[0]), grabbed["row"], grabbed["losses"], grabbed["ckpt"]))
    tasks = [RunTask(run_key(c), f"run{i}", c, resume=blob if i == 0 else None) for i, c in enumerate(configs)]
    monkeypatch.setattr(fused._FusedGroup, "train_epoch", lambda self: (_ for _ in ()).throw(RuntimeError("boom")))
    events: list[Event] = []
    execute_group(tasks, events.append)
    final = {e.run_key: e.kind for e in events if e.kind in ("finished", "failed")}
    assert final == {tasks[0].run_key: "finished", tasks[1].run_key: "failed", tasks[2].run_key: "failed"}
    assert [e.kind for e in events].count("started") == 3


def test_ray_parallelism_counts_the_tasks_the_cluster_can_run(monkeypatch):
    from rethinkgen.sweep.executors import RayExecutor

    class FakeRay:
        resources = {"CPU": 16.0, "GPU": 1.0}

        def is_initialized(self):
            return True

        def cluster_resources(self):
            return self.resources

    monkeypatch.setattr(ray_executor, "import_ray", lambda: FakeRay())
    default, no_gpu, half = RayExecutor(), RayExecutor(gpus_per_run=0.0), RayExecutor(gpus_per_run=0.5)
    assert (default.parallelism(), default.accelerated(), default.max_group()) == (4, True, 64)  # 0.25 GPU each
    assert (no_gpu.parallelism(), no_gpu.accelerated(), no_gpu.max_group()) == (16, False, 16)
    assert half.parallelism() == 2
    FakeRay.resources = {"CPU": 8.0}
    assert (default.parallelism(), default.accelerated()) == (8, False)


def test_missing_data_is_refused_before_any_run_naming_the_fetch_command(tmp_path):
    """A sweep over a dataset whose files are absent stops before it starts anything (the store untouched),
    naming where it looked and the fetch command for each missing set — not a failed run per grid point."""
    from rethinkgen.errors import DatasetNotFoundError

    empty = tmp_path / "no-data"
    empty.mkdir()
    text = SPEC.replace('data = "mnist1d"', f'data = "mnist"\ndata_dir = "{empty}"').replace(
        'corruption = ["true_labels", "random_labels"]', 'corruption = ["true_labels"]')
    path = tmp_path / "s.db"
    with pytest.raises(DatasetNotFoundError) as caught:
        sweep(path, parse_spec(text))
    message = str(caught.value)
    assert "nothing was started" in message and message.count("mnist: no complete set") == 1  # one per dataset
    assert f"rethinkgen data fetch mnist --data-dir {empty}" in message
    with Store.open(path) as s:
        assert s.runs() == []  # no run was added, none failed
