"""Sweeps never resume a run with other numerics than it was trained with (rethinkgen.train.numerics).

Every run here trains on the CPU (the spec says device = "cpu"); CUDA checkpoints are faked by rewriting
a CPU checkpoint's numerics record, which is what a CPU worker would find after a GPU machine's sweep.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rethinkgen.sweep.checkpoint import decode, encode, make_payload, read_verified, write_atomic
from rethinkgen.sweep.cli import sweep_app
from rethinkgen.sweep.executors import LocalExecutor
from rethinkgen.sweep.progress import SweepDisplay
from rethinkgen.sweep.runner import run_sweep
from rethinkgen.sweep.spec import parse_spec
from rethinkgen.sweep.store import Store
from rethinkgen.sweep.worker import Event, RunTask, execute_group, execute_run
from rethinkgen.train.config import run_key
from rethinkgen.train.loop import train
from rethinkgen.train.numerics import NumericsMismatchError, plan_numerics
from test_sweep_runner import InterruptAt, snapshot

SPEC = """
name = "num"
[defaults]
data = "mnist1d"
n_train = 128
n_test = 100
batch_size = 32
log_every = 3
epochs = 4
device = "cpu"
[grid]
seed = [0, 1]
"""


def sweep(path, executor, **kwargs):
    kwargs.setdefault("fuse", False)
    return run_sweep(parse_spec(SPEC), path, executor=executor, display=kwargs.pop("display", None)
                     or SweepDisplay(quiet=True), **kwargs)


@pytest.fixture(scope="module")
def one_thread_reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.db"
    assert not sweep(path, LocalExecutor(threads=1)).failed
    return snapshot(path)


def interrupted(path, threads: int) -> str:
    """A sweep stopped after epoch 2 of its first run (nothing finished); returns that run's key."""
    display = InterruptAt(index=0, epoch=2)
    assert sweep(path, LocalExecutor(threads=threads), display=display).stopped
    return display.started[0]


def fake_cuda(path, key: str) -> dict:
    """Rewrite the run's checkpoint and store record as a CUDA + bf16 run would have left them."""
    config = parse_spec(SPEC).runs[0].config
    cuda = plan_numerics(config, "cuda", "signal").to_dict()
    ckpt = path.with_name(path.name + ".ckpt") / f"{key}.pt"
    payload = decode(read_verified(ckpt))
    payload["state"]["numerics"] = cuda
    write_atomic(ckpt, encode(payload))
    with Store(path) as s:
        s.set_numerics(key, cuda)
    return cuda


def attempts(path) -> dict:
    with Store.open(path) as s:
        return {r["run_key"]: (r["status"], r["attempts"]) for r in s.runs()}


def test_the_demos_case_is_refused_before_anything_starts_and_a_restart_is_exact(tmp_path, one_thread_reference):
    """1 worker x 2 threads, stopped; then 2 workers x 1 thread: refused; --restart-mismatched: from scratch."""
    path = tmp_path / "r.db"
    key = interrupted(path, threads=2)
    with Store.open(path) as s:
        assert s.run(key)["numerics"]["threads"] == 2
    before = attempts(path)
    with pytest.raises(NumericsMismatchError) as info:
        sweep(path, LocalExecutor(jobs=2, threads=1))
    message = str(info.value)
    assert "cannot resume 1 run(s)" in message and key[:10] in message and "nothing was started" in message
    assert "threads: trained with 2 threads, here 1 thread" in message
    assert "run with --threads 2, or pass --restart-mismatched" in message
    assert attempts(path) == before  # no run was touched
    result = sweep(path, LocalExecutor(threads=1), restart_mismatched=True)
    assert (result.restarted, result.resumed, result.started) == (1, 0, 2) and not result.failed
    assert snapshot(path) == one_thread_reference  # trained from scratch with 1 thread: bit for bit
    with Store.open(path) as s:
        assert {r["numerics"]["threads"] for r in s.runs()} == {1}


def test_a_matching_resume_is_still_bit_identical(tmp_path, one_thread_reference):
    path = tmp_path / "r.db"
    interrupted(path, threads=1)
    result = sweep(path, LocalExecutor(threads=1))
    assert (result.resumed, result.restarted) == (1, 0)
    assert snapshot(path) == one_thread_reference


def test_a_cuda_bf16_checkpoint_is_refused_on_the_cpu_naming_the_fix(tmp_path, one_thread_reference):
    path = tmp_path / "r.db"
    key = interrupted(path, threads=1)
    fake_cuda(path, key)
    spec = tmp_path / "num.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(sweep_app, ["run", str(spec), "--store", str(path), "--threads", "1", "--quiet"])
    message = str(result.exception)
    assert isinstance(result.exception, NumericsMismatchError), result.output
    assert "device: trained with cuda, here cpu" in message
    assert "autocast: trained with bfloat16 autocast, here float32 (no autocast)" in message
    assert "run with --device cuda on a machine that has one, or pass --restart-mismatched" in message
    status = CliRunner().invoke(sweep_app, ["status", "--store", str(path)], env={"COLUMNS": "200"})
    assert "numerics: 1 run(s) cuda, bf16 autocast, CUDA graph, TF32" in status.output, status.output
    restarted = CliRunner().invoke(sweep_app, ["run", str(spec), "--store", str(path), "--threads", "1", "--quiet",
                                               "--restart-mismatched"])
    assert restarted.exit_code == 0, restarted.output
    assert "restarted from scratch (numerics differed): 1" in restarted.output
    assert "training from scratch, its checkpoint's numerics differ" in restarted.output
    assert snapshot(path) == one_thread_reference
    assert key in one_thread_reference
    status = CliRunner().invoke(sweep_app, ["status", "--store", str(path)], env={"COLUMNS": "200"})
    assert "numerics: 2 run(s) cpu, float32, 1 thread" in status.output and "computed" not in status.output


def test_a_float32_checkpoint_is_refused_in_forced_bf16_and_the_named_precision_resumes_it(tmp_path,
                                                                                          one_thread_reference):
    """CPU only: ``--precision bfloat16`` (bf16 autocast forced on the CPU) against a run interrupted in float32
    is refused naming ``--precision float32``, which then resumes it to the reference numbers bit for bit."""
    path = tmp_path / "r.db"
    key = interrupted(path, threads=1)
    spec = tmp_path / "num.toml"
    spec.write_text(SPEC)
    args = ["run", str(spec), "--store", str(path), "--threads", "1", "--quiet"]
    before = attempts(path)
    refused = CliRunner().invoke(sweep_app, [*args, "--precision", "bfloat16"])
    message = str(refused.exception)
    assert isinstance(refused.exception, NumericsMismatchError), refused.output
    assert "autocast: trained with float32 (no autocast), here bfloat16 autocast" in message
    assert "run with --precision float32, or pass --restart-mismatched" in message
    assert attempts(path) == before
    resumed = CliRunner().invoke(sweep_app, [*args, "--precision", "float32"])
    assert resumed.exit_code == 0, resumed.output
    now = snapshot(path)
    for run, (status, summary, rows, losses) in one_thread_reference.items():
        assert (now[run][0], now[run][2], now[run][3]) == (status, rows, losses)  # the numbers: exact
        assert now[run][1]["numerics"] == summary["numerics"] and now[run][1]["run_key"] == run
    assert key in now


class WorkerChecks(LocalExecutor):
    """A local executor that, like Ray, cannot tell the driver its workers' numerics in advance."""

    def planned_numerics(self, config):
        return None


def test_workers_check_when_the_driver_cannot(tmp_path, one_thread_reference):
    path = tmp_path / "r.db"
    key = interrupted(path, threads=1)
    fake_cuda(path, key)
    result = sweep(path, WorkerChecks(threads=1))
    assert len(result.failed) == 1 and not result.stopped
    with Store.open(path) as s:
        (failed,) = s.runs(status="failed")
        assert failed["run_key"] == key and "Traceback" not in failed["error"]
        assert "device: trained with cuda, here cpu" in failed["error"]
        assert [r["epoch"] for r in s.epoch_rows(key)] == [0, 1, 2]  # its history is kept for a retry
    result = sweep(path, WorkerChecks(threads=1), restart_mismatched=True)
    assert (result.restarted, result.resumed) == (1, 0) and not result.failed
    assert snapshot(path) == one_thread_reference


def checkpoint_of(config, epoch: int, **numerics_override) -> bytes:
    grabbed = {}

    class Grab:
        def on_epoch_end(self, row, step_losses, state):
            if row["epoch"] == epoch:
                grabbed.update(row=dict(row), losses=list(step_losses), state=state.checkpoint())

    train(config, callbacks=[Grab()])
    grabbed["state"]["numerics"] = {**grabbed["state"]["numerics"], **numerics_override}
    return encode(make_payload(run_key(config), grabbed["row"], grabbed["losses"], grabbed["state"]))


def test_a_fused_group_trains_the_runs_it_can_and_fails_the_mismatched_one():
    configs = [run.config for run in parse_spec(SPEC.replace("seed = [0, 1]", "seed = [0, 1, 2]")).runs]
    cuda = plan_numerics(configs[0], "cuda", "signal").to_dict()
    blob = checkpoint_of(configs[0], 1, **cuda)
    tasks = [RunTask(run_key(c), f"run{i}", c, resume=blob if i == 0 else None) for i, c in enumerate(configs)]
    events: list[Event] = []
    execute_group(tasks, events.append)
    final = {e.run_key: (e.kind, e.data) for e in events if e.kind in ("finished", "failed")}
    kind, data = final[tasks[0].run_key]
    assert kind == "failed" and "device: trained with cuda, here cpu" in data["error"]
    assert [final[t.run_key][0] for t in tasks[1:]] == ["finished", "finished"]
    events.clear()
    tasks[0].restart_mismatched = True
    execute_run(tasks[0], events.append)
    kinds = [e.kind for e in events]
    assert kinds[:3] == ["started", "restarted", "epoch"] and kinds[-1] == "finished"
    assert events[2].data["row"]["epoch"] == 0  # from scratch
    assert events[-1].data["summary"]["numerics"]["device"] == "cpu"


def test_a_finished_run_is_reused_whatever_its_numerics():
    """Finished runs are results on any machine: their checkpoint is read back, not continued."""
    config = parse_spec(SPEC).runs[0].config
    cuda = plan_numerics(config, "cuda", "signal").to_dict()
    blob = checkpoint_of(config, 4, **cuda)  # epochs = 4: the run's last epoch
    events: list[Event] = []
    execute_run(RunTask(run_key(config), "done", config, resume=blob), events.append)
    assert [e.kind for e in events] == ["started", "finished"]
    assert events[-1].data["summary"]["numerics"] == cuda  # it keeps the numerics it was trained with


def test_finished_runs_skipped_under_an_explicit_other_precision_are_named_not_silently_reused(tmp_path):
    """CPU only. A store of float32 runs, then the same spec with ``--precision bfloat16``: the finished runs are
    results (the precision is not part of the run key), so nothing is retrained — but the sweep says that the
    precision asked for was not applied to them, and where to compute them in it. Automatic precision (no
    ``precision`` set) warns about nothing: a finished GPU run reused on a CPU is the designed case."""
    path = tmp_path / "r.db"
    assert not sweep(path, LocalExecutor(threads=1)).failed
    display = InterruptAt(index=99, epoch=-1)  # only records warnings
    forced = run_sweep(parse_spec(SPEC, overrides={"precision": "bfloat16"}), path, executor=LocalExecutor(threads=1),
                       display=display, fuse=False)
    assert (forced.skipped, forced.started) == (2, 0)
    said = " ".join(" ".join(display.warnings).split())
    assert "2 finished run(s) in the store were computed in float32 (no autocast), not in the bfloat16 asked for" \
        in said and "another --store" in said
    quiet = InterruptAt(index=99, epoch=-1)
    again = run_sweep(parse_spec(SPEC), path, executor=LocalExecutor(threads=1), display=quiet, fuse=False)
    assert again.skipped == 2 and not [w for w in quiet.warnings if "computed in" in w]
    same = InterruptAt(index=99, epoch=-1)
    run_sweep(parse_spec(SPEC, overrides={"precision": "float32"}), path, executor=LocalExecutor(threads=1),
              display=same, fuse=False)
    assert not [w for w in same.warnings if "computed in" in w]


def test_plan_says_what_sweep_run_would_refuse_or_reuse_under_another_precision(tmp_path):
    """CPU only. `sweep plan --precision bfloat16` over a store whose run was interrupted in float32 names the
    refusal `sweep run` would give (and its fix) instead of only planning bf16; over finished float32 runs it
    gives `sweep run`'s warning that they are reused as they are. The plan's own exit status stays 0."""
    path = tmp_path / "r.db"
    key = interrupted(path, threads=1)
    spec = tmp_path / "num.toml"
    spec.write_text(SPEC)
    args = ["plan", str(spec), "--store", str(path), "--threads", "1"]
    bf16 = CliRunner().invoke(sweep_app, [*args, "--precision", "bfloat16"], env={"COLUMNS": "200"})
    assert bf16.exit_code == 0, bf16.output
    text = " ".join(bf16.output.split())
    assert "sweep run with these options would refuse: cannot resume 1 run(s)" in text and key[:10] in text
    assert "run with --precision float32, or pass --restart-mismatched" in text
    same = CliRunner().invoke(sweep_app, [*args, "--precision", "float32"], env={"COLUMNS": "200"})
    assert same.exit_code == 0 and "would refuse" not in same.output, same.output

    done = tmp_path / "done.db"
    assert not sweep(done, LocalExecutor(threads=1)).failed
    reused = CliRunner().invoke(sweep_app, ["plan", str(spec), "--store", str(done), "--precision", "bfloat16"],
                                env={"COLUMNS": "200"})
    text = " ".join(reused.output.split())
    assert "2 finished run(s) in the store were computed in float32 (no autocast), not in the bfloat16" in text
    assert "nothing to run" in text
