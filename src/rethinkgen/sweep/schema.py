"""The results store's SQLite schema, its versions and the migration of older stores.

Version 1: the tables of :mod:`rethinkgen.sweep.store`. Version 2 added top-5 accuracies (Table 2:
ImageNet is reported as top-1 and top-5): ``epochs.train_acc_top5`` and ``epochs.test_acc_top5``, and
``summaries.train_acc_top5``, ``summaries.test_acc_top5`` and ``summaries.best_test_acc_top5`` (the
best test top-5 along training, Table 2's parentheses). A store written by an older rethinkgen is
migrated when it is opened for writing (columns added, NULL for the runs it already holds; nothing is
rewritten); opened read-only it is read as it is, the new columns reading as None.
"""

from __future__ import annotations

import sqlite3

__all__ = ["EPOCH_COLUMNS", "KERNEL_COLUMNS", "SCHEMA", "SCHEMA_VERSION", "SUMMARY_COLUMNS", "TABLES",
           "existing_columns", "migrate"]

SCHEMA_VERSION = 2

EPOCH_COLUMNS = ("epoch", "step", "samples_seen", "lr", "train_loss", "train_eval_loss", "train_acc",
                 "train_acc_corrupted", "train_acc_clean", "test_loss", "test_acc", "wall_time_s",
                 "train_acc_top5", "test_acc_top5")
SUMMARY_COLUMNS = ("status", "train_acc", "test_acc", "best_test_acc", "converged_step", "converged_epoch",
                   "steps", "epochs", "n_params", "realized_noise_rate", "wall_time_s",
                   "train_acc_top5", "test_acc_top5", "best_test_acc_top5")
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
    test_loss REAL, test_acc REAL, wall_time_s REAL, train_acc_top5 REAL, test_acc_top5 REAL,
    PRIMARY KEY (run_key, epoch));
CREATE TABLE IF NOT EXISTS step_losses (
    run_key TEXT NOT NULL, step INTEGER NOT NULL, loss REAL, PRIMARY KEY (run_key, step));
CREATE TABLE IF NOT EXISTS summaries (
    run_key TEXT PRIMARY KEY, status TEXT, train_acc REAL, test_acc REAL, best_test_acc REAL,
    converged_step INTEGER, converged_epoch INTEGER, steps INTEGER, epochs INTEGER, n_params INTEGER,
    realized_noise_rate REAL, wall_time_s REAL, summary_json TEXT, train_acc_top5 REAL, test_acc_top5 REAL,
    best_test_acc_top5 REAL);
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

# Columns added after version 1, by table: (name, SQL type), in the order they were added.
ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "epochs": (("train_acc_top5", "REAL"), ("test_acc_top5", "REAL")),
    "summaries": (("train_acc_top5", "REAL"), ("test_acc_top5", "REAL"), ("best_test_acc_top5", "REAL")),
}


def existing_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """The column names ``table`` has in the store behind ``conn`` (empty if there is no such table)."""
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Add the columns of :data:`ADDED_COLUMNS` a store lacks (inside the caller's transaction);
    returns ``"table.column"`` for each column added."""
    added = []
    for table, columns in ADDED_COLUMNS.items():
        have = existing_columns(conn, table)
        for name, kind in columns:
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                added.append(f"{table}.{name}")
    return added
