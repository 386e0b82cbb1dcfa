"""The sweep commands end to end: SIGKILL and resume, Ctrl-C with worker processes, Ray, the lock,
and the plan / status / export output. Subprocesses run ``python -m rethinkgen.sweep.cli``."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rethinkgen.sweep.cli import export_command, sweep_app
from rethinkgen.sweep.executors import LocalExecutor
from rethinkgen.sweep.progress import SweepDisplay
from rethinkgen.sweep.runner import run_sweep
from rethinkgen.sweep.spec import load_spec
from rethinkgen.sweep.store import Store, lock_holder
from test_sweep_runner import close_to

SPEC = """
name = "acceptance"
[defaults]
data = "mnist1d"
n_train = 256
n_test = 200
epochs = 40
device = "cpu"
[grid]
seed = [0, 1]
corruption = ["true_labels", "random_labels"]
"""
FINISHED = ("converged", "max_epochs", "diverged")


def snapshot(path) -> dict:
    """Per run: status, summary, epoch rows and logged losses, without wall-clock times."""
    with Store.open(path) as s:
        out = {}
        for r in s.runs():
            summary = {k: v for k, v in s.summary(r["run_key"]).items() if k not in ("wall_time_s", "hardware")}
            rows = [{k: v for k, v in row.items() if k != "wall_time_s"} for row in s.epoch_rows(r["run_key"])]
            out[r["run_key"]] = (r["status"], summary, rows, s.step_losses(r["run_key"]))
        return out


def cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rethinkgen.sweep.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            **kwargs)


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def progress(path: Path) -> tuple[int, int]:
    """(finished runs, epoch rows of running runs) as a concurrent reader sees them."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            done = db.execute(f"SELECT count(*) FROM runs WHERE status IN {FINISHED}").fetchone()[0]
            rows = db.execute("SELECT count(*) FROM epochs JOIN runs USING (run_key) "
                              "WHERE runs.status = 'running'").fetchone()[0]
            return done, rows
    except sqlite3.Error:  # not created yet
        return 0, 0


def wait_for(proc: subprocess.Popen, condition, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before the test could interrupt it:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the sweep to make progress")
        time.sleep(0.02)


def check_complete(path: Path, reference: dict) -> None:
    snap = snapshot(path)
    assert set(snap) == set(reference)
    for status, summary, rows, _losses in snap.values():
        assert status in FINISHED
        assert [r["epoch"] for r in rows] == list(range(summary["epochs"] + 1))  # none missing, none doubled
    assert snap == reference  # bit-identical to the uninterrupted sweep (CPU, same thread count)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "acceptance.toml"
    path.write_text(SPEC)
    return path


def sweep_reference(spec_file, path, fuse: bool) -> dict:
    """An uninterrupted sweep of the same spec in another store (in this process, one thread per run)."""
    result = run_sweep(load_spec(spec_file), path, executor=LocalExecutor(threads=1),
                       display=SweepDisplay(quiet=True), fuse=fuse)
    assert result.started == 4 and not result.failed
    return snapshot(path)


@pytest.fixture(scope="module")
def reference(spec_file, tmp_path_factory) -> dict:
    """Every run trained alone."""
    return sweep_reference(spec_file, tmp_path_factory.mktemp("ref") / "ref.db", fuse=False)


@pytest.fixture(scope="module")
def fused_reference(spec_file, tmp_path_factory) -> dict:
    """The four runs as one fused group (what ``sweep run`` does by default in one process)."""
    return sweep_reference(spec_file, tmp_path_factory.mktemp("fref") / "ref.db", fuse=True)


def test_sigkill_mid_sweep_then_the_same_command_finishes_every_run_exactly_once(tmp_path, spec_file, reference):
    store = tmp_path / "results.db"
    command = ("run", spec_file, "--store", store, "--quiet", "--threads", "1", "--fuse", "off")
    proc = cli(*command)
    wait_for(proc, lambda: (lambda done, rows: done >= 1 and rows >= 3)(*progress(store)))
    os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up: the worst case
    proc.wait()
    with Store.open(store) as s:
        before = {r["run_key"]: r for r in s.runs()}
    done_before = {k for k, r in before.items() if r["status"] in FINISHED}
    assert done_before and any(r["status"] == "running" for r in before.values())

    code, out = finish(cli(*command))
    assert code == 0, out
    assert "left running by a driver that stopped" in out and "resumed from a checkpoint: 1" in out
    check_complete(store, reference)
    with Store.open(store) as s:
        after = {r["run_key"]: r for r in s.runs()}
    for key in done_before:  # finished before the kill: not trained again
        assert (after[key]["attempts"], after[key]["finished_at"]) == (1, before[key]["finished_at"])
    assert sorted(r["attempts"] for r in after.values()) == [1, 1, 1, 2]


def test_sigkill_mid_fused_group_then_the_same_command_resumes_every_run(tmp_path, spec_file, fused_reference):
    store = tmp_path / "results.db"
    command = ("run", spec_file, "--store", store, "--quiet", "--threads", "1", "--fuse", "on")
    proc = cli(*command)
    wait_for(proc, lambda: progress(store)[1] >= 4 * 4)  # every run of the group a few epochs in
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with Store.open(store) as s:
        running = [r["run_key"] for r in s.runs(status="running")]
    assert len(running) >= 2

    code, out = finish(cli(*command))
    assert code == 0, out
    assert f"resumed from a checkpoint: {len(running)}" in out
    snap = snapshot(store)
    for status, summary, rows, _losses in snap.values():
        assert status in FINISHED
        assert [r["epoch"] for r in rows] == list(range(summary["epochs"] + 1))  # none missing, none doubled
    # Within float tolerance, not bit for bit: the kill may land between the epoch records of the group's
    # runs, which then resume one epoch apart and no longer share one batch (another kernel sums the
    # first layer); --fuse off resumes bit for bit (the test above).
    close_to(snap, fused_reference)

    code, out = finish(cli(*command))  # the same command a third time does no work
    assert code == 0 and "0 to run" in out and "skipped (already done): 4" in out


def test_worker_processes_a_dead_worker_fails_its_run_ctrl_c_stops_cleanly_and_a_rerun_resumes(
        tmp_path, spec_file, reference):
    store = tmp_path / "results.db"
    command = ("run", spec_file, "--store", store, "--quiet", "--jobs", "2", "--threads", "1", "--fuse", "off")
    proc = cli(*command)
    wait_for(proc, lambda: progress(store)[1] >= 4)
    workers = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"],
                                                  capture_output=True, text=True).stdout.split()]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)  # e.g. the kernel's OOM killer
    with Store.open(store) as s:
        wait_for(proc, lambda: bool(s.runs(status="failed")))
        (failed,) = s.runs(status="failed")
        assert f"worker process {workers[0]} died (exit code -9)" in failed["error"]

    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    code, out = finish(proc, timeout=60)
    assert code == 130, out
    assert "marked interrupted" in out and "Traceback" not in out, out
    with Store.open(store) as s:
        statuses = [r["status"] for r in s.runs()]
    assert "running" not in statuses and "failed" in statuses
    deadline = time.monotonic() + 10
    while subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "worker processes outlived the driver"
        time.sleep(0.1)

    code, out = finish(cli(*command))
    assert code == 0, out
    check_complete(store, reference)  # 2 processes × 1 thread each == 1 thread in process


def test_two_sweep_commands_on_one_store_the_second_refuses_and_sigterm_stops_cleanly(tmp_path):
    spec = tmp_path / "long.toml"  # one run that never converges: lr too small to fit random labels
    spec.write_text('name = "long"\n[defaults]\ndata = "mnist1d"\nn_train = 256\nn_test = 100\nepochs = 100000\n'
                    'corruption = "random_labels"\nlr = 1e-7\ndevice = "cpu"\n')
    store = tmp_path / "results.db"
    first = cli("run", spec, "--store", store, "--quiet", "--threads", "1")
    wait_for(first, lambda: lock_holder(store) is not None and progress(store)[1] >= 2)
    code, out = finish(cli("run", spec, "--store", store, "--quiet"))
    assert code == 2
    assert f"in use by another sweep (PID {first.pid}" in out and "results.db.lock" in out
    assert first.poll() is None  # the first one is unaffected

    os.killpg(first.pid, signal.SIGTERM)  # a batch system's stop
    code, out = finish(first, timeout=60)
    assert code == 130 and "marked interrupted" in out, out
    with Store.open(store) as s:
        (run,) = s.runs()
        rows = s.epoch_rows(run["run_key"])
        assert run["status"] == "interrupted"
    assert [r["epoch"] for r in rows] == list(range(len(rows)))
    assert lock_holder(store) is None


@pytest.mark.ray
def test_a_local_ray_cluster_gives_the_local_executors_results(tmp_path, spec_file, reference):
    pytest.importorskip("ray")
    store = tmp_path / "results.db"
    code, out = finish(cli("run", spec_file, "--store", store, "--quiet", "--executor", "ray", "--jobs", "2",
                           "--fuse", "on"),
                       timeout=300)
    assert code == 0, out
    assert "(ray: local cluster)" in out
    close_to(snapshot(store), reference)  # two fused groups of two runs, one per Ray CPU


# ------------------------------------------------------------------------ in-process command checks
def invoke(*args: str):
    return CliRunner().invoke(sweep_app, [str(a) for a in args], catch_exceptions=True, env={"COLUMNS": "200"})


@pytest.fixture
def small_store(tmp_path) -> tuple[Path, Path]:
    spec = tmp_path / "small.toml"
    spec.write_text(SPEC.replace("epochs = 40", "epochs = 2").replace('"random_labels"', ""))
    store = tmp_path / "small.db"
    run_sweep(load_spec(spec), store, executor=LocalExecutor(threads=1), display=SweepDisplay(quiet=True))
    with sqlite3.connect(store) as db:  # make one run look failed, as a crash would leave it
        db.execute("UPDATE runs SET status = 'failed', error = 'Traceback ...\nRuntimeError: CUDA out of memory' "
                   "WHERE name LIKE '%seed=1%'")
    return spec, store


def test_plan_lists_runs_with_their_status_in_the_store(small_store):
    spec, store = small_store
    result = invoke("plan", spec, "--store", store)
    assert result.exit_code == 0, result.output
    assert "sweep acceptance" in result.output and "2 runs" in result.output
    assert "acceptance/seed=0,corruption=true_labels" in result.output
    assert "max_epochs" in result.output and "failed" in result.output
    plain = invoke("plan", spec)
    assert plain.exit_code == 0 and "status" not in plain.output
    assert "1 group(s): mlp_1x512 x2; 0 run(s) alone" in plain.output  # both seeds can train together


def test_plan_says_which_runs_cannot_be_fused(tmp_path):
    spec = tmp_path / "dropout.toml"
    spec.write_text('name = "d"\n[defaults]\ndata = "mnist1d"\ndropout = 0.5\ndevice = "cpu"\n[grid]\nseed = [0, 1]\n')
    result = invoke("plan", spec)
    assert result.exit_code == 0 and "none of these runs can train together" in result.output


def test_status_summarizes_failures_with_the_last_error_line(small_store):
    _, store = small_store
    result = invoke("status", "--store", store)
    assert result.exit_code == 0, result.output
    assert "no sweep is running" in result.output
    assert "RuntimeError: CUDA out of memory" in result.output and "Traceback" not in result.output


def test_export_writes_every_table(small_store, tmp_path):
    import typer

    _, store = small_store
    app = typer.Typer()
    app.command("export")(export_command)
    app.command("noop")(lambda: None)  # two commands: typer keeps "export" as a subcommand
    result = CliRunner().invoke(app, ["export", "--store", str(store), "--format", "csv", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["epochs.csv", "kernel_results.csv", "measures.csv", "run_tags.csv", "runs.csv",
                     "step_losses.csv", "summaries.csv"]
    assert (tmp_path / "out" / "epochs.csv").read_text().count("\n") == 1 + 2 * 3  # header + 2 runs × 3 epochs


def test_usage_errors_name_the_fix(tmp_path, small_store, monkeypatch):
    spec, _ = small_store
    missing = invoke("run", spec, "--store", tmp_path / "nowhere" / "r.db")
    assert "nowhere does not exist; create it (mkdir -p" in str(missing.exception)
    bad = tmp_path / "bad.toml"
    bad.write_text('[defaults]\nmodel = "mlp_2x512"\n')
    assert "defaults.model: unknown model 'mlp_2x512'" in str(invoke("run", bad, "--store", tmp_path / "x.db")
                                                              .exception)
    assert not (tmp_path / "x.db").exists()  # validation happens before the store is touched
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    no_ray = invoke("run", spec, "--store", tmp_path / "y.db", "--executor", "ray")
    assert "pip install 'rethinkgen[ray]'" in str(no_ray.exception)
    assert "valid executors: local, ray" in str(invoke("run", spec, "--store", tmp_path / "y.db", "--executor",
                                                       "slurm").exception)
    assert "--fuse must be one of auto, on, off" in str(invoke("run", spec, "--store", tmp_path / "y.db", "--fuse",
                                                              "yes").exception)


def test_two_worker_processes_each_train_a_fused_group(tmp_path, spec_file, reference):
    store = tmp_path / "results.db"
    code, out = finish(cli("run", spec_file, "--store", store, "--quiet", "--jobs", "2", "--threads", "1", "--fuse",
                           "on"))
    assert code == 0, out
    assert "2 worker processes" in out
    with Store.open(store) as s:
        assert len(s.runs(status=list(FINISHED))) == 4
    close_to(snapshot(store), reference)  # 2 fused groups of 2 runs, one per worker
