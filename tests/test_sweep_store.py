"""The results store: schema (an interface), upserts, resume bookkeeping, locks, permissions, export."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import sqlite3
import stat
import tempfile
from pathlib import Path

import pytest

from rethinkgen.sweep.cli import export_tables
from rethinkgen.sweep.schema import SCHEMA
from rethinkgen.sweep.spec import parse_spec
from rethinkgen.sweep.store import (
    Store,
    StoreError,
    StoreLockedError,
    SweepLock,
    environment,
    is_stale,
    lock_holder,
)

SPEC = """
name = "st"
[defaults]
data = "mnist1d"
epochs = 3
[grid]
seed = [0, 1]
"""

# The columns other parts (report, kernel commands) code against: changing them breaks them.
COLUMNS = {
    "runs": ["run_key", "name", "sweep", "config_json", "status", "attempts", "created_at", "started_at",
             "finished_at", "heartbeat_at", "error", "code_version", "hardware", "torch_version", "device",
             "numerics_json"],
    "epochs": ["run_key", "epoch", "step", "samples_seen", "lr", "train_loss", "train_eval_loss", "train_acc",
               "train_acc_corrupted", "train_acc_clean", "test_loss", "test_acc", "wall_time_s"],
    "step_losses": ["run_key", "step", "loss"],
    "summaries": ["run_key", "status", "train_acc", "test_acc", "best_test_acc", "converged_step",
                  "converged_epoch", "steps", "epochs", "n_params", "realized_noise_rate", "wall_time_s",
                  "summary_json"],
    "measures": ["run_key", "epoch", "name", "value", "settings_json", "seconds", "error", "created_at",
                 "code_version"],
    "run_tags": ["run_key", "sweep", "experiment"],
    "kernel_results": ["result_key", "data", "n_train", "n_test", "kernel", "bandwidth", "features", "filters",
                       "reg", "solver", "dtype", "test_error", "norm", "norm_per_class_json", "rel_residual",
                       "time_s", "peak_mem_bytes", "config_json", "created_at", "code_version", "hardware",
                       "torch_version"],
}


def row(epoch: int, acc: float = 0.5) -> dict:
    return {"epoch": epoch, "step": 4 * epoch, "samples_seen": 512 * epoch, "lr": 0.1,
            "train_loss": None if epoch == 0 else 1.0 / (epoch + 1), "train_eval_loss": 1.0, "train_acc": acc,
            "train_acc_corrupted": None, "train_acc_clean": acc, "test_loss": 2.0, "test_acc": acc / 2,
            "wall_time_s": 0.1 * epoch}


@pytest.fixture
def planned():
    return parse_spec(SPEC)


@pytest.fixture
def store(tmp_path, planned):
    s = Store(tmp_path / "results.db")
    s.add_runs("st", planned.runs)
    yield s
    s.close()


def test_schema_columns_are_exactly_the_interface(store):
    for table, columns in COLUMNS.items():
        got = [r[1] for r in store.conn.execute(f"PRAGMA table_info({table})")]
        assert got == columns, table
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000


def test_runs_are_registered_once_with_their_tags(store, planned):
    assert store.add_runs("st", planned.runs) == 0  # already known: nothing new, status untouched
    runs = store.runs()
    assert [r["run_key"] for r in runs] == [r.run_key for r in planned.runs]
    first = runs[0]
    assert first["status"] == "pending" and first["attempts"] == 0
    assert first["config"]["seed"] == 0 and first["config"]["epochs"] == 3
    assert first["experiments"] == ["st"] and first["train_acc"] is None


def test_epoch_rows_are_upserts_and_truncation_drops_what_follows(store, planned):
    key = planned.runs[0].run_key
    store.start_run(key, device="cpu", **environment())
    for e in range(4):
        store.record_epoch(key, row(e), [(4 * e - 2, 0.9), (4 * e, 0.8)] if e else [])
    store.record_epoch(key, row(2, acc=0.75), [(8, 0.7)])  # a replayed epoch replaces, never duplicates
    rows = store.epoch_rows(key)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert rows[2]["train_acc"] == 0.75 and rows[0]["train_loss"] is None
    assert len(store.step_losses(key)) == 6
    store.truncate_run(key, epoch=1, step=4)
    assert [r["epoch"] for r in store.epoch_rows(key)] == [0, 1]
    assert store.step_losses(key) == [(2, 0.9), (4, 0.8)]
    store.truncate_run(key)
    assert store.epoch_rows(key) == [] and store.step_losses(key) == []


def test_finish_fail_interrupt_and_stale(store, planned):
    a, b = (r.run_key for r in planned.runs)
    store.start_run(a, device="cpu", **environment())
    store.record_epoch(a, row(0))
    store.record_epoch(a, row(1, acc=1.0))
    store.record_epoch(a, row(2))  # an abandoned attempt's epoch beyond the final one
    store.finish_run(a, {"status": "converged", "train_acc": 1.0, "test_acc": 0.5, "best_test_acc": 0.5,
                         "converged_step": 4, "converged_epoch": 1, "steps": 4, "epochs": 1, "n_params": 10,
                         "realized_noise_rate": 0.0, "wall_time_s": 0.1, "metrics": [1, 2], "device": "cpu"})
    done = store.run(a)
    assert done["status"] == "converged" and done["attempts"] == 1 and done["converged_step"] == 4
    assert [r["epoch"] for r in store.epoch_rows(a)] == [0, 1]
    assert "metrics" not in store.summary(a) and store.summary(a)["converged_epoch"] == 1
    assert done["code_version"] and "CPUs" in done["hardware"] and done["torch_version"]

    store.start_run(b, device="cpu")
    assert store.recover_stale() == [b]
    assert store.run(b)["status"] == "interrupted" and "stale" in store.run(b)["error"]
    store.start_run(b, device="cpu")
    assert store.run(b)["attempts"] == 2
    store.fail_run(b, "Traceback ...\nValueError: boom")
    assert store.runs(status="failed")[0]["error"].endswith("boom")
    store.start_run(b, device="cpu")
    assert store.interrupt_runs([a, b]) == 1  # only running runs
    assert store.status_counts()["interrupted"] == 1 and store.status_counts()["converged"] == 1
    with pytest.raises(ValueError, match="final status"):
        store.finish_run(b, {"status": "running"})


CPU2 = {"device": "cpu", "autocast": None, "threads": 2, "graph": None, "channels_last": False, "tf32": None}
CUDA = {"device": "cuda", "autocast": "bfloat16", "threads": None, "graph": None, "channels_last": True,
        "tf32": "conv"}


def test_numerics_are_recorded_per_run(store, planned):
    a, b = (r.run_key for r in planned.runs)
    assert store.run(a)["numerics"] is None  # not trained yet
    store.start_run(a, device="cpu")
    store.set_numerics(a, CPU2)
    assert store.run(a)["numerics"] == CPU2
    store.finish_run(a, {"status": "max_epochs", "epochs": 3, "steps": 12, "numerics": CUDA})
    assert store.run(a)["numerics"] == CUDA and store.summary(a)["numerics"] == CUDA
    store.finish_run(b, {"status": "max_epochs"})  # a summary without numerics leaves the column alone
    assert store.run(b)["numerics"] is None


def test_a_store_of_an_older_version_is_migrated_and_keeps_its_runs(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # what rethinkgen wrote before runs had numerics_json: SCHEMA alone
        db.executescript(SCHEMA)
        db.execute("INSERT INTO runs (run_key, name, status) VALUES ('k1', 'old run', 'converged')")
    with Store.open(path, readonly=True) as old:  # readers do not change it, and see no numerics
        assert [(r["run_key"], r["numerics"]) for r in old.runs()] == [("k1", None)]
    with Store(path) as s:
        assert [r[1] for r in s.conn.execute("PRAGMA table_info(runs)")] == COLUMNS["runs"]
        (run,) = s.runs()
        assert (run["name"], run["status"], run["numerics"]) == ("old run", "converged", None)
        s.set_numerics("k1", CPU2)
    with Store(path) as s:  # opening again migrates nothing twice
        assert s.run("k1")["numerics"] == CPU2


def test_is_stale_uses_the_heartbeat():
    assert is_stale({"status": "running", "heartbeat_at": 0.0}, now=1000.0)
    assert not is_stale({"status": "running", "heartbeat_at": 990.0}, now=1000.0)
    assert not is_stale({"status": "failed", "heartbeat_at": 0.0}, now=1000.0)


def test_kernel_results_are_keyed_by_config(store):
    config = {"data": "mnist", "kernel": "gaussian", "n_train": 100}
    key = store.add_kernel_result({"config": config, "data": "mnist", "kernel": "gaussian", "n_train": 100,
                                   "test_error": 0.1, "norm_per_class": [1.0, 2.0]})
    again = store.add_kernel_result({"config": config, "data": "mnist", "kernel": "gaussian", "n_train": 100,
                                     "test_error": 0.05})
    assert key == again and len(key) == 64
    (result,) = store.kernel_results()
    assert result["test_error"] == 0.05 and result["config"] == config and result["code_version"]
    with pytest.raises(ValueError, match="unknown kernel_results columns"):
        store.add_kernel_result({"config": {}, "kernal": "x"})


def test_readonly_open_reads_and_refuses_writes(store, tmp_path, planned):
    ro = Store.open(tmp_path / "results.db", readonly=True)
    assert len(ro.runs()) == 2
    with pytest.raises(StoreError, match="read-only"):
        ro.add_runs("st", planned.runs)
    ro.close()
    with pytest.raises(StoreError, match="no results store at .*sweep run SPEC --store"):
        Store.open(tmp_path / "missing.db")


def test_missing_store_folder_is_refused_not_created(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "r.db"
    with pytest.raises(StoreError, match=r"folder .*no/such/dir does not exist; create it \(mkdir -p"):
        Store(target)
    assert not (tmp_path / "no").exists()


def test_a_store_path_that_is_a_folder_or_not_sqlite(tmp_path):
    with pytest.raises(StoreError, match="is a folder"):
        Store(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, just some text" * 100)
    with pytest.raises(StoreError, match="not a rethinkgen results store"):
        Store(junk)
    assert junk.read_bytes().startswith(b"this is not")  # left as it was


@contextlib.contextmanager
def unprivileged():
    """Drop the effective uid to nobody (root ignores permission bits) and restore it after."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def public_tmp():
    """A folder an unprivileged user can reach (pytest's tmp_path lives under a root-only folder)."""
    folder = Path(tempfile.mkdtemp(prefix="rethinkgen-ro-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_read_only_folder_and_file_give_clear_errors_and_lose_nothing(public_tmp, planned):
    folder = public_tmp / "ro"
    folder.mkdir()
    path = folder / "r.db"
    with Store(path) as s:
        s.add_runs("st", planned.runs)
    before = path.read_bytes()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        with unprivileged():
            with pytest.raises(StoreError, match="is read-only|not writable"):
                Store(path)
            with pytest.raises(StoreError, match=r"folder .*ro is not writable"):
                Store(folder / "new.db")
            with Store.open(path, readonly=True) as ro:  # reading still works
                assert len(ro.runs()) == 2
    finally:
        folder.chmod(0o755)
    assert path.read_bytes() == before

    path.chmod(0o444)
    folder.chmod(0o777)
    try:
        with unprivileged(), pytest.raises(StoreError, match=r"r\.db is read-only; make it writable"):
            Store(path)
    finally:
        path.chmod(0o644)
        folder.chmod(0o755)
    assert len(Store.open(path).runs()) == 2


def test_second_sweep_on_a_store_is_refused_naming_the_pid(tmp_path):
    path = tmp_path / "r.db"
    assert lock_holder(path) is None
    with SweepLock(path):
        with pytest.raises(StoreLockedError, match=rf"in use by another sweep \(PID {os.getpid()} on .*lock file "
                                                    r".*r\.db\.lock\)"):
            SweepLock(path).acquire(wait_s=0.1)
        assert lock_holder(path).startswith(f"PID {os.getpid()}")
    SweepLock(path).acquire().release()  # free again once released
    assert lock_holder(path) is None


def test_export_csv_and_parquet(store, planned, tmp_path):
    key = planned.runs[0].run_key
    store.record_epoch(key, row(0))
    store.record_epoch(key, row(1), [(4, 0.5)])
    files = export_tables(store, "csv", tmp_path / "csv")
    names = sorted(f.name for f in files)
    assert {"runs.csv", "epochs.csv", "step_losses.csv", "summaries.csv", "kernel_results.csv"} <= set(names)
    with open(tmp_path / "csv" / "epochs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"] and list(rows[0]) == COLUMNS["epochs"]
    pq = pytest.importorskip("pyarrow.parquet")
    export_tables(store, "parquet", tmp_path / "pq")
    table = pq.read_table(tmp_path / "pq" / "epochs.parquet")
    assert table.column_names == COLUMNS["epochs"] and table.num_rows == 2
    assert pq.read_table(tmp_path / "pq" / "summaries.parquet").num_rows == 0


def test_parquet_without_pyarrow_names_the_pip_line(store, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(Exception, match=r"pip install 'rethinkgen\[parquet\]'"):
        export_tables(store, "parquet", tmp_path / "pq")


def test_concurrent_reader_sees_committed_epochs(store, planned, tmp_path):
    key = planned.runs[0].run_key
    reader = sqlite3.connect(tmp_path / "results.db")
    store.record_epoch(key, row(0))
    assert reader.execute("SELECT count(*) FROM epochs").fetchone()[0] == 1
    reader.close()
