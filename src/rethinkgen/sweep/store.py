"""The results store: one SQLite file that is the record of every run (design §3, "the store is the truth").

WAL mode, ``busy_timeout`` for the rare
second writer (e.g. ``rethinkgen kernel`` adding a result while a sweep runs), and one transaction per
epoch. During a sweep only the driver writes; an exclusive lock file ``PATH.lock`` (``fcntl.flock``)
keeps a second ``sweep run`` on the same store out (:class:`SweepLock`).

Durability: every commit survives the process (a crash, SIGKILL, OOM kill). Against a power cut or a
pre-empted VM, run registration, starts, finishes and failures commit with ``synchronous=FULL``
(fsynced), while per-epoch rows commit with ``synchronous=NORMAL`` (no fsync; ~10 ms saved per epoch
on a disk): the latest epoch rows may roll back, but the run's checkpoint, fsynced every epoch,
carries the whole history and the sweep re-commits it on resume (:mod:`rethinkgen.sweep.runner`).

Tables (names and columns are an interface: the report and the kernel commands rely on them):

- ``runs``: one row per run — run_key, name, sweep, resolved config_json, status (pending | running |
  converged | max_epochs | diverged | failed | interrupted), attempts, timings, heartbeat, error
  (traceback), code_version, hardware, torch_version, device, numerics_json (how the run is computed:
  device type, autocast dtype, CPU threads, compile, channels_last, TF32; :mod:`rethinkgen.train.numerics`).
- ``run_tags``: (run_key, sweep, experiment) — every experiment a run belongs to.
- ``epochs``: per-epoch metrics, keyed by (run_key, epoch); epoch 0 is the untrained model.
- ``step_losses``: training loss every ``log_every`` SGD steps, keyed by (run_key, step) (Figure 1a).
- ``summaries``: the final numbers of a finished run (Figure 1b, Table 1) plus the summary JSON.
- ``measures``: generalization measures of a run's weights at an epoch (:mod:`rethinkgen.measures`),
  keyed by (run_key, epoch, name): value (NULL when it failed, with ``error``), the measure's settings
  (JSON), seconds, created_at, code_version. Stores made before these columns existed gain them when
  opened for writing (:data:`rethinkgen.sweep.schema.MIGRATIONS`).
- ``kernel_results``: one row per kernel interpolation (paper §5, Table 3), keyed by sha256(config_json).

The schema and its migrations live in :mod:`rethinkgen.sweep.schema`, the one-driver lock in
:mod:`rethinkgen.sweep.lock`, the provenance record in :mod:`rethinkgen.sweep.provenance` (all
re-exported here).

A missing store *directory* is refused, not created: a mistyped ``--store`` path would otherwise start
an empty store and silently redo every finished run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rethinkgen.sweep.lock import SweepLock, lock_holder
from rethinkgen.sweep.provenance import environment
from rethinkgen.sweep.schema import (
    EPOCH_COLUMNS,
    FINISHED,
    KERNEL_COLUMNS,
    MEASURE_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    STALE_AFTER_S,
    STATUSES,
    SUMMARY_COLUMNS,
    TABLES,
    StoreError,
    StoreLockedError,
    existing_columns,
    migrate,
)

__all__ = [
    "FINISHED", "MEASURE_COLUMNS", "STATUSES", "STALE_AFTER_S", "TABLES", "Store", "StoreError", "StoreLockedError",
    "SweepLock", "environment", "is_stale", "lock_holder",
]

BUSY_TIMEOUT_MS = 30_000


def is_stale(run: dict[str, Any], now: float | None = None, after: float = STALE_AFTER_S) -> bool:
    """A "running" run whose heartbeat is older than ``after`` seconds (its driver died)."""
    if run.get("status") != "running":
        return False
    beat = run.get("heartbeat_at") or run.get("started_at") or 0.0
    return (now if now is not None else time.time()) - beat > after


def _access(path: Path, mode: int) -> bool:
    """os.access with the *effective* ids where the platform allows (what the kernel will check)."""
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _finite(value: Any) -> Any:
    """NaN (a diverged loss) is stored as NULL, which is what SQLite makes of it anyway; inf stays inf."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# ------------------------------------------------------------------------------------- store
class Store:
    """The SQLite results store at ``path``; see the module docstring for the tables."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.conn = self._connect()
        if not readonly:
            self._init_schema()

    @classmethod
    def open(cls, path: str | Path, readonly: bool = True) -> Store:
        """Open an existing (``readonly=True``) or new-or-existing (``readonly=False``) store."""
        return cls(path, readonly=readonly)

    # --------------------------------------------------------------- connection
    def _connect(self) -> sqlite3.Connection:
        try:
            return self._connect_checked()
        except PermissionError as exc:
            raise StoreError(f"cannot access store {self.path}: {exc.strerror} ({exc.filename}); check the "
                             "permissions of its folders. Nothing was changed.") from None

    def _connect_checked(self) -> sqlite3.Connection:
        path, parent = self.path, self.path.parent if str(self.path.parent) else Path(".")
        if self.readonly:
            if not path.is_file():
                raise StoreError(f"no results store at {path}; create one with "
                                 f"`rethinkgen sweep run SPEC --store {path}`")
            return self._sqlite(f"{path.resolve().as_uri()}?mode=ro", fallback_immutable=True)
        if not parent.is_dir():
            raise StoreError(f"the store's folder {parent} does not exist; create it (mkdir -p {parent}) and "
                             "run again. rethinkgen does not create it, so that a mistyped --store cannot start "
                             "an empty store and redo every finished run.")
        if path.exists() and not path.is_file():
            raise StoreError(f"--store {path} is a {'folder' if path.is_dir() else 'special file'}, not a "
                             "results store file; pass a file path such as results/sweep.db")
        if path.exists() and not _access(path, os.R_OK | os.W_OK):
            raise StoreError(f"store {path} is read-only; make it writable (chmod u+w {path}) or copy it to a "
                             "writable folder. Nothing was changed.")
        if not _access(parent, os.W_OK | os.X_OK):
            raise StoreError(f"the store's folder {parent} is not writable: SQLite keeps {path.name}-wal and "
                             f"{path.name}-shm beside the store, and checkpoints go to {path.name}.ckpt/. Make "
                             "the folder writable or choose another --store. Nothing was changed.")
        return self._sqlite(str(path))

    def _sqlite(self, target: str, fallback_immutable: bool = False) -> sqlite3.Connection:
        uri = target.startswith("file:")
        try:
            conn = sqlite3.connect(target, uri=uri, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not self.readonly:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StoreError(f"store {self.path}: SQLite refused WAL mode (got {mode}); put the store on a "
                                     "local file system")
                conn.execute("PRAGMA synchronous = FULL")
                self._synchronous = "FULL"
            else:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.row_factory = sqlite3.Row
            return conn
        except sqlite3.DatabaseError as exc:
            if fallback_immutable:  # a WAL store in a read-only folder (no -shm): read it as immutable
                return self._sqlite(target + "&immutable=1")
            raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "readonly" in text or "read-only" in text:
            return StoreError(f"store {self.path} is read-only ({text}); make it and its folder writable. "
                              "Nothing was changed.")
        if "not a database" in text:
            return StoreError(f"{self.path} is not a rethinkgen results store (SQLite: {text}); choose "
                              "another --store path")
        if "unable to open" in text:
            return StoreError(f"cannot open store {self.path} ({text}); check that its folder exists and is "
                              "writable")
        return StoreError(f"store {self.path}: SQLite error: {text}")

    def _init_schema(self) -> None:
        try:
            with self.transaction() as c:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise StoreError(f"store {self.path} has schema version {row[0]}, newer than this "
                                     f"rethinkgen's ({SCHEMA_VERSION}); upgrade rethinkgen")
                migrate(c)  # columns added since the first release (schema.MIGRATIONS)
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    @contextlib.contextmanager
    def transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; any exception (Ctrl-C included) rolls back.

        ``durable``: the commit is fsynced (``synchronous=FULL``, also making every earlier commit
        durable); otherwise ``synchronous=NORMAL`` (safe from corruption, may roll back on a power cut).
        """
        if self.readonly:
            raise StoreError(f"store {self.path} was opened read-only")
        try:
            mode = "FULL" if durable else "NORMAL"
            if getattr(self, "_synchronous", None) != mode:
                self.conn.execute(f"PRAGMA synchronous = {mode}")
                self._synchronous = mode
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise self._error(exc) from None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None  # type: ignore[assignment]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def checkpoint_dir(self) -> Path:
        """Where a sweep keeps its runs' checkpoints: ``PATH.ckpt/<run_key>.pt``."""
        return self.path.with_name(self.path.name + ".ckpt")

    @property
    def labels_dir(self) -> Path:
        """Where a sweep keeps the training labels of its streamed runs: ``PATH.labels/<run_key>/labels.npy``
        (their sha256 is the summary's ``labels_sha256``); they stay when the checkpoints go."""
        return self.path.with_name(self.path.name + ".labels")

    # ------------------------------------------------------------------- writes
    def add_runs(self, sweep: str, runs: Iterable[Any]) -> int:
        """Register planned runs (``spec.PlannedRun``) as pending unless known; returns how many are new."""
        now, added = time.time(), 0
        with self.transaction() as c:
            for run in runs:
                config_json = json.dumps(run.config.to_dict(), sort_keys=True)
                cur = c.execute("INSERT OR IGNORE INTO runs (run_key, name, sweep, config_json, status, attempts,"
                                " created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?)",
                                (run.run_key, run.name, sweep, config_json, now))
                added += cur.rowcount
                for exp in run.experiments:
                    c.execute("INSERT OR IGNORE INTO run_tags VALUES (?, ?, ?)", (run.run_key, sweep, exp))
        return added

    def start_run(self, run_key: str, *, code_version: str | None = None, hardware: str | None = None,
                  torch_version: str | None = None, device: str | None = None) -> None:
        """Mark a run running: attempts + 1, fresh start time and heartbeat, error cleared."""
        now = time.time()
        with self.transaction() as c:
            c.execute("UPDATE runs SET status = 'running', attempts = attempts + 1, started_at = ?, "
                      "heartbeat_at = ?, finished_at = NULL, error = NULL, code_version = ?, hardware = ?, "
                      "torch_version = ?, device = ? WHERE run_key = ?",
                      (now, now, code_version, hardware, torch_version, device, run_key))

    def set_environment(self, run_key: str, *, code_version: str | None = None, hardware: str | None = None,
                        torch_version: str | None = None) -> None:
        """Provenance reported by the worker that trains the run (it may be another machine)."""
        with self.transaction(durable=False) as c:
            c.execute("UPDATE runs SET code_version = COALESCE(?, code_version), hardware = COALESCE(?, hardware),"
                      " torch_version = COALESCE(?, torch_version) WHERE run_key = ?",
                      (code_version, hardware, torch_version, run_key))

    def set_numerics(self, run_key: str, numerics: dict[str, Any] | None) -> None:
        """Record how the run is computed (``rethinkgen.train.numerics``: device, autocast, threads, ...)."""
        if numerics is None:
            return
        with self.transaction(durable=False) as c:
            c.execute("UPDATE runs SET numerics_json = ? WHERE run_key = ?",
                      (json.dumps(numerics, sort_keys=True), run_key))

    def record_epoch(self, run_key: str, row: dict[str, Any] | list[dict[str, Any]],
                     step_losses: Iterable[Any] = (), durable: bool = False) -> None:
        """Upsert one epoch row (or several) and logged losses, and beat the heart — one transaction."""
        rows = row if isinstance(row, list) else [row]
        values = [[run_key] + [_finite(r.get(k)) for k in EPOCH_COLUMNS] for r in rows]
        with self.transaction(durable=durable) as c:
            c.executemany(f"INSERT OR REPLACE INTO epochs (run_key, {', '.join(EPOCH_COLUMNS)}) VALUES "
                          f"({', '.join('?' * (len(EPOCH_COLUMNS) + 1))})", values)
            c.executemany("INSERT OR REPLACE INTO step_losses VALUES (?, ?, ?)",
                          [(run_key, int(s), _finite(float(v))) for s, v in step_losses])
            c.execute("UPDATE runs SET heartbeat_at = ? WHERE run_key = ?", (time.time(), run_key))

    def truncate_run(self, run_key: str, epoch: int | None = None, step: int | None = None) -> None:
        """Delete what lies beyond a restored checkpoint (epoch rows > ``epoch``, losses > ``step``)
        and the summary; ``None`` deletes everything of the run (a restart from scratch)."""
        e = -1 if epoch is None else epoch
        s = -1 if step is None else step
        with self.transaction() as c:
            c.execute("DELETE FROM epochs WHERE run_key = ? AND epoch > ?", (run_key, e))
            c.execute("DELETE FROM step_losses WHERE run_key = ? AND step > ?", (run_key, s))
            c.execute("DELETE FROM measures WHERE run_key = ? AND epoch > ?", (run_key, e))
            c.execute("DELETE FROM summaries WHERE run_key = ?", (run_key,))

    def finish_run(self, run_key: str, summary: dict[str, Any]) -> None:
        """Store the summary and the final status (converged | max_epochs | diverged) — one transaction."""
        status = summary["status"]
        if status not in FINISHED:
            raise ValueError(f"finish_run needs a final status ({', '.join(FINISHED)}), got {status!r}")
        slim = {k: v for k, v in summary.items() if k not in ("metrics", "step_losses")}
        now = time.time()
        with self.transaction() as c:
            c.execute(f"INSERT OR REPLACE INTO summaries (run_key, {', '.join(SUMMARY_COLUMNS)}, summary_json) "
                      f"VALUES ({', '.join('?' * (len(SUMMARY_COLUMNS) + 2))})",
                      [run_key] + [_finite(summary.get(k)) for k in SUMMARY_COLUMNS]
                      + [json.dumps(slim, sort_keys=True, default=_json_default)])
            if isinstance(summary.get("epochs"), int) and isinstance(summary.get("steps"), int):
                # rows of an abandoned longer attempt (a retried Ray task) must not outlive the final epoch
                c.execute("DELETE FROM epochs WHERE run_key = ? AND epoch > ?", (run_key, summary["epochs"]))
                c.execute("DELETE FROM step_losses WHERE run_key = ? AND step > ?", (run_key, summary["steps"]))
            numerics = summary.get("numerics")
            c.execute("UPDATE runs SET status = ?, finished_at = ?, heartbeat_at = ?, error = NULL, "
                      "device = COALESCE(?, device), torch_version = COALESCE(?, torch_version), "
                      "numerics_json = COALESCE(?, numerics_json) WHERE run_key = ?",
                      (status, now, now, summary.get("device"), summary.get("torch_version"),
                       json.dumps(numerics, sort_keys=True) if numerics else None, run_key))

    def fail_run(self, run_key: str, error: str) -> None:
        """Record a run that raised: status failed, the traceback in ``error``."""
        now = time.time()
        with self.transaction() as c:
            c.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ?, heartbeat_at = ? "
                      "WHERE run_key = ?", (error, now, now, run_key))

    def interrupt_runs(self, run_keys: Iterable[str], reason: str = "interrupted (Ctrl-C or SIGTERM)") -> int:
        """Mark running runs interrupted (resumable from their checkpoint)."""
        n = 0
        with self.transaction() as c:
            for key in run_keys:
                n += c.execute("UPDATE runs SET status = 'interrupted', error = ?, heartbeat_at = ? "
                               "WHERE run_key = ? AND status = 'running'", (reason, time.time(), key)).rowcount
        return n

    def recover_stale(self) -> list[str]:
        """Runs left "running" by a driver that died: mark them interrupted. Call only while holding
        the :class:`SweepLock` (then no live driver owns them)."""
        with self.transaction() as c:
            keys = [r[0] for r in c.execute("SELECT run_key FROM runs WHERE status = 'running'")]
            for key in keys:
                c.execute("UPDATE runs SET status = 'interrupted', error = 'stale: its driver stopped without "
                          "finishing (last heartbeat ' || COALESCE(datetime(heartbeat_at, 'unixepoch'), '?') "
                          "|| ' UTC)' WHERE run_key = ?", (key,))
        return keys

    def heartbeat(self, run_keys: Iterable[str]) -> None:
        keys = list(run_keys)
        if not keys:
            return
        now = time.time()
        with self.transaction(durable=False) as c:
            c.executemany("UPDATE runs SET heartbeat_at = ? WHERE run_key = ? AND status = 'running'",
                          [(now, k) for k in keys])

    def add_measure(self, run_key: str, epoch: int, name: str, value: float) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO measures (run_key, epoch, name, value) VALUES (?, ?, ?, ?)",
                      (run_key, epoch, name, _finite(value)))

    def add_measures(self, run_key: str, epoch: int, results: Iterable[dict[str, Any]]) -> int:
        """Upsert measure results of a run at ``epoch`` in one transaction; returns how many.

        Each result is a dict with ``name``, ``value`` (None when it failed), and optionally ``settings``
        (a dict, stored as JSON), ``seconds`` and ``error``.
        """
        now, code = time.time(), environment()["code_version"]
        rows = [(run_key, int(epoch), r["name"], _finite(r.get("value")),
                 json.dumps(r.get("settings") or {}, sort_keys=True, default=_json_default), r.get("seconds"),
                 r.get("error"), now, code) for r in results]
        with self.transaction() as c:
            c.executemany(f"INSERT OR REPLACE INTO measures ({', '.join(MEASURE_COLUMNS)}) VALUES "
                          f"({', '.join('?' * len(MEASURE_COLUMNS))})", rows)
        return len(rows)

    def add_kernel_result(self, row: dict[str, Any]) -> str:
        """Upsert a kernel interpolation result; returns ``result_key`` = sha256 of its config_json.

        ``row`` holds the ``kernel_results`` columns; ``config_json`` (a string) or ``config`` (a dict,
        serialized with sorted keys) is required; ``norm_per_class`` (a list) may replace
        ``norm_per_class_json``; provenance columns default to this machine's :func:`environment`.
        """
        row = dict(row)
        if "config_json" not in row:
            if "config" not in row:
                raise ValueError("add_kernel_result needs config_json (or config)")
            row["config_json"] = json.dumps(row.pop("config"), sort_keys=True, separators=(",", ":"),
                                            default=_json_default)
        row.pop("config", None)
        if "norm_per_class" in row:
            row["norm_per_class_json"] = json.dumps(row.pop("norm_per_class"), default=_json_default)
        unknown = sorted(set(row) - set(KERNEL_COLUMNS))
        if unknown:
            raise ValueError(f"unknown kernel_results columns {unknown}; valid: {', '.join(KERNEL_COLUMNS)}")
        row["result_key"] = hashlib.sha256(row["config_json"].encode()).hexdigest()
        row.setdefault("created_at", time.time())
        for k, v in environment().items():
            row.setdefault(k, v)
        cols = [k for k in KERNEL_COLUMNS if k in row]
        with self.transaction() as c:
            c.execute(f"INSERT OR REPLACE INTO kernel_results ({', '.join(cols)}) VALUES "
                      f"({', '.join('?' * len(cols))})", [_finite(row[k]) for k in cols])
        return row["result_key"]

    # -------------------------------------------------------------------- reads
    def _select(self, table: str, columns: Iterable[str], prefix: str = "") -> list[str]:
        """Select expressions for ``columns``: ``NULL AS c`` for a column that a store written by an older
        rethinkgen and opened read-only (so not migrated) lacks."""
        have = existing_columns(self.conn, table)
        return [f"{prefix}{c}" if c in have else f"NULL AS {c}" for c in columns]

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def runs(self, status: str | Iterable[str] | None = None, sweep: str | None = None,
             run_key: str | None = None) -> list[dict[str, Any]]:
        """Every run (optionally of some statuses / one sweep): the ``runs`` columns, ``config`` (parsed
        config_json), ``numerics`` (parsed numerics_json; None before the run's first epoch and in stores
        of older versions), ``experiments`` (list) and the summary columns (None where not finished).
        ``status`` keeps the runs table's status; the summary's is the same once finished."""
        where, params = [], []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"r.status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        if sweep is not None:
            where.append("(r.sweep = ? OR r.run_key IN (SELECT run_key FROM run_tags WHERE sweep = ?))")
            params += [sweep, sweep]
        if run_key is not None:
            where.append("r.run_key = ?")
            params.append(run_key)
        summary_cols = ", ".join(self._select("summaries", [k for k in SUMMARY_COLUMNS if k != "status"], "s."))
        rows = self._query(f"SELECT r.*, {summary_cols} FROM runs r LEFT JOIN summaries s USING (run_key)"
                           + (f" WHERE {' AND '.join(where)}" if where else "")
                           + " ORDER BY r.created_at, r.rowid", params)
        tags: dict[str, list[str]] = {}
        for key, exp in self._query("SELECT run_key, experiment FROM run_tags ORDER BY rowid"):
            tags.setdefault(key, []).append(exp)
        out = []
        for r in rows:
            d = dict(r)
            d["config"] = json.loads(d["config_json"]) if d.get("config_json") else None
            d["numerics"] = json.loads(d["numerics_json"]) if d.get("numerics_json") else None
            d["experiments"] = tags.get(d["run_key"], [])
            out.append(d)
        return out

    def run(self, run_key: str) -> dict[str, Any] | None:
        """One run as :meth:`runs` gives it, or None."""
        matches = self.runs(run_key=run_key)
        return matches[0] if matches else None

    def last_epochs(self) -> dict[str, int]:
        """run_key -> the highest epoch recorded (runs with at least one epoch row)."""
        return {k: int(e) for k, e in self._query("SELECT run_key, max(epoch) FROM epochs GROUP BY run_key")}

    def summary(self, run_key: str) -> dict[str, Any] | None:
        """The stored summary dict of a finished run (without the per-epoch metrics), or None."""
        rows = self._query("SELECT summary_json FROM summaries WHERE run_key = ?", (run_key,))
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    def epoch_rows(self, run_key: str) -> list[dict[str, Any]]:
        columns = ", ".join(self._select("epochs", EPOCH_COLUMNS))
        return [dict(r) for r in self._query(f"SELECT {columns} FROM epochs WHERE run_key = ? ORDER BY epoch",
                                             (run_key,))]

    def step_losses(self, run_key: str) -> list[tuple[int, float]]:
        return [(int(s), v) for s, v in self._query("SELECT step, loss FROM step_losses WHERE run_key = ? "
                                                    "ORDER BY step", (run_key,))]

    def measures(self, run_key: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM measures" + (" WHERE run_key = ?" if run_key else "") + " ORDER BY run_key, epoch"
        return [dict(r) for r in self._query(sql, (run_key,) if run_key else ())]

    def kernel_results(self) -> list[dict[str, Any]]:
        """Every kernel result row, with ``config`` and ``norm_per_class`` parsed from their JSON."""
        out = []
        for r in self._query("SELECT * FROM kernel_results ORDER BY created_at, rowid"):
            d = dict(r)
            d["config"] = json.loads(d["config_json"]) if d.get("config_json") else None
            d["norm_per_class"] = json.loads(d["norm_per_class_json"]) if d.get("norm_per_class_json") else None
            out.append(d)
        return out

    def status_counts(self) -> dict[str, int]:
        counts = {s: 0 for s in STATUSES}
        for status, n in self._query("SELECT status, count(*) FROM runs GROUP BY status"):
            counts[status] = n
        return counts

    def table(self, name: str) -> tuple[list[str], list[tuple]]:
        """(column names, rows) of one table, for export."""
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
        cur = self.conn.execute(f"SELECT * FROM {name} ORDER BY rowid")
        return [d[0] for d in cur.description], [tuple(r) for r in cur.fetchall()]
