"""The results store's schema: tables, columns, statuses, migrations, and the errors a store raises.

The table and column names are an interface (the report and the kernel commands read them); see
:mod:`rethinkgen.sweep.store` for what each table holds. Columns added after the first release come
in through :data:`MIGRATIONS`: each is one idempotent function that adds what an older store lacks, so
stores written by any earlier version open unchanged and gain the new columns on their first
writable open (fresh stores get them the same way, right after ``SCHEMA`` creates the tables).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from rethinkgen.errors import RethinkgenError

__all__ = ["EPOCH_COLUMNS", "FINISHED", "KERNEL_COLUMNS", "MEASURE_COLUMNS", "MIGRATIONS", "SCHEMA", "SCHEMA_VERSION",
           "STALE_AFTER_S", "STATUSES", "SUMMARY_COLUMNS", "TABLES", "StoreError", "StoreLockedError", "migrate"]

SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "converged", "max_epochs", "diverged", "failed", "interrupted")
FINISHED = ("converged", "max_epochs", "diverged")  # final: a sweep never reruns these
STALE_AFTER_S = 120.0  # a "running" row without a heartbeat for this long belongs to a dead driver

EPOCH_COLUMNS = ("epoch", "step", "samples_seen", "lr", "train_loss", "train_eval_loss", "train_acc",
                 "train_acc_corrupted", "train_acc_clean", "test_loss", "test_acc", "wall_time_s")
SUMMARY_COLUMNS = ("status", "train_acc", "test_acc", "best_test_acc", "converged_step", "converged_epoch",
                   "steps", "epochs", "n_params", "realized_noise_rate", "wall_time_s")
KERNEL_COLUMNS = ("result_key", "data", "n_train", "n_test", "kernel", "bandwidth", "features", "filters",
                  "reg", "solver", "dtype", "test_error", "norm", "norm_per_class_json", "rel_residual",
                  "time_s", "peak_mem_bytes", "config_json", "created_at", "code_version", "hardware",
                  "torch_version")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY, name TEXT, sweep TEXT, config_json TEXT, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, created_at REAL, started_at REAL, finished_at REAL,
    heartbeat_at REAL, error TEXT, code_version TEXT, hardware TEXT, torch_version TEXT, device TEXT);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS run_tags (
    run_key TEXT NOT NULL, sweep TEXT NOT NULL, experiment TEXT NOT NULL,
    PRIMARY KEY (run_key, sweep, experiment));
CREATE TABLE IF NOT EXISTS epochs (
    run_key TEXT NOT NULL, epoch INTEGER NOT NULL, step INTEGER, samples_seen INTEGER, lr REAL,
    train_loss REAL, train_eval_loss REAL, train_acc REAL, train_acc_corrupted REAL, train_acc_clean REAL,
    test_loss REAL, test_acc REAL, wall_time_s REAL, PRIMARY KEY (run_key, epoch));
CREATE TABLE IF NOT EXISTS step_losses (
    run_key TEXT NOT NULL, step INTEGER NOT NULL, loss REAL, PRIMARY KEY (run_key, step));
CREATE TABLE IF NOT EXISTS summaries (
    run_key TEXT PRIMARY KEY, status TEXT, train_acc REAL, test_acc REAL, best_test_acc REAL,
    converged_step INTEGER, converged_epoch INTEGER, steps INTEGER, epochs INTEGER, n_params INTEGER,
    realized_noise_rate REAL, wall_time_s REAL, summary_json TEXT);
CREATE TABLE IF NOT EXISTS measures (
    run_key TEXT NOT NULL, epoch INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_key, epoch, name));
CREATE TABLE IF NOT EXISTS kernel_results (
    result_key TEXT PRIMARY KEY, data TEXT, n_train INTEGER, n_test INTEGER, kernel TEXT, bandwidth REAL,
    features TEXT, filters TEXT, reg REAL, solver TEXT, dtype TEXT, test_error REAL, norm REAL,
    norm_per_class_json TEXT, rel_residual REAL, time_s REAL, peak_mem_bytes INTEGER, config_json TEXT,
    created_at REAL, code_version TEXT, hardware TEXT, torch_version TEXT);
"""
TABLES = ("runs", "run_tags", "epochs", "step_losses", "summaries", "measures", "kernel_results")
MEASURE_COLUMNS = ("run_key", "epoch", "name", "value", "settings_json", "seconds", "error", "created_at",
                   "code_version")


class StoreError(RethinkgenError):
    """The results store cannot be opened or written; the message names the path and the fix."""


class StoreLockedError(StoreError):
    """Another sweep holds the store's lock file."""


# ------------------------------------------------------------------------------------ migrations
def add_column(conn: sqlite3.Connection, table: str, column: str, decl: str) -> bool:
    """``ALTER TABLE table ADD COLUMN column decl`` unless the column exists; True if it was added."""
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if column in have:
        return False
    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    return True


def _runs_numerics(conn: sqlite3.Connection) -> None:
    """runs.numerics_json: how each run is computed (device, autocast, threads, ...; train.numerics)."""
    add_column(conn, "runs", "numerics_json", "TEXT")


def _measures_provenance(conn: sqlite3.Connection) -> None:
    """measures: how each generalization measure was computed (settings, seconds, error, when, code)."""
    for column, decl in (("settings_json", "TEXT"), ("seconds", "REAL"), ("error", "TEXT"), ("created_at", "REAL"),
                         ("code_version", "TEXT")):
        add_column(conn, "measures", column, decl)


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_runs_numerics, _measures_provenance)


def migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration (inside the caller's transaction); each is a no-op on an up-to-date store."""
    for migration in MIGRATIONS:
        migration(conn)
