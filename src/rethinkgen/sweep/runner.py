"""The sweep driver: runs a spec's runs through an executor into the store, and resumes (design §3).

For each run of the spec the driver

1. skips it if the store says it finished (converged | max_epochs | diverged) — so running the same
   command twice does no work the second time;
2. otherwise (pending, failed, interrupted, or "running" left by a dead driver) loads its newest intact
   checkpoint ``STORE.ckpt/<run_key>.pt`` (falling back to ``.pt.prev`` with a warning when the newest
   is corrupt or truncated), deletes the store rows beyond the checkpoint's epoch, re-commits the
   history the checkpoint carries (every epoch row and logged loss up to its epoch), and hands the run
   to the executor to continue from there (from scratch, after deleting all its rows, when no intact
   checkpoint exists);
3. for every epoch event: writes the checkpoint (temp file + fsync + rename) **before** committing the
   epoch row, its logged losses and a heartbeat in one transaction — so whatever a crash (or a power
   cut, see :mod:`rethinkgen.sweep.store`) interrupts, the rows up to the restored checkpoint are
   re-committed from it and the rows after it are deleted and recomputed: none missing, none doubled;
4. records the summary and the final status, or the traceback of a run that raised (the sweep goes on).

Only this driver writes the store (workers send rows back; see :mod:`rethinkgen.sweep.executors`),
and it holds ``STORE.lock`` for its whole life. Ctrl-C or SIGTERM stop it cleanly: what workers
already delivered is committed and the unfinished runs are marked ``interrupted``. A background thread
beats the heart of running runs every ``HEARTBEAT_S`` seconds (``rethinkgen sweep status`` shows runs
of a store without a lock holder as stale).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rethinkgen.errors import RethinkgenError
from rethinkgen.sweep.checkpoint import load_checkpoint, remove_checkpoints, write_atomic
from rethinkgen.sweep.executors import GUARD, Event, Executor, LocalExecutor, RunTask, WorkItem, group_key
from rethinkgen.sweep.progress import SweepDisplay
from rethinkgen.sweep.spec import PlannedRun, SweepSpec
from rethinkgen.sweep.store import FINISHED, Store, SweepLock, environment

__all__ = ["SweepResult", "run_sweep", "HEARTBEAT_S"]

HEARTBEAT_S = 30.0


@dataclass
class SweepResult:
    """What one ``sweep run`` did."""

    total: int = 0  # runs in the spec (deduplicated)
    skipped: int = 0  # already finished before this call
    started: int = 0  # handed to the executor (fresh or resumed)
    resumed: int = 0  # of those, continued from a checkpoint
    statuses: dict[str, int] = field(default_factory=dict)  # final statuses reached in this call
    failed: list[str] = field(default_factory=list)  # names of runs that raised
    interrupted: list[str] = field(default_factory=list)  # names of runs left interrupted by Ctrl-C
    restarted: int = 0  # of those, started again from scratch: their checkpoints' numerics differed
    stale: int = 0  # runs a dead driver had left "running"
    stopped: bool = False  # Ctrl-C or SIGTERM ended the sweep early
    wall_s: float = 0.0


class _Driver:
    def __init__(self, spec: SweepSpec, store: Store, display: SweepDisplay, checkpoint_every: int,
                 keep_checkpoints: bool, fuse: bool | None = None, restart_mismatched: bool = False) -> None:
        self.spec, self.store, self.display, self.fuse = spec, store, display, fuse
        self.checkpoint_every, self.keep_checkpoints = checkpoint_every, keep_checkpoints
        self.restart_mismatched = restart_mismatched
        self.restart: dict[str, str] = {}  # run_key -> why its checkpoint is discarded (numerics differ)
        self.active: dict[str, PlannedRun] = {}
        self.last_epoch: dict[str, int | None] = {}  # last recorded epoch of each active run
        self.numerics: dict[str, dict | None] = {}  # last numerics recorded per run in this call
        self.labels_saved: set[str] = set()  # runs whose label file was written in this call
        self.result = SweepResult(total=len(spec.runs))
        self.env = environment()

    def _save_labels(self, key: str, blob: bytes) -> None:
        """The training labels a streamed run's checkpoint carries, written once per run and call to
        ``store.labels_dir/<run_key>/labels.npy`` (rethinkgen.data.stream.labels): the checkpoints are
        deleted when the run finishes, the labels stay with its summary's ``labels_sha256``."""
        from rethinkgen.data.stream.labels import save_labels
        from rethinkgen.sweep.checkpoint import decode

        self.labels_saved.add(key)  # once: the labels never change during a run
        state = decode(blob).get("state") or {}
        if "labels" in state:
            labels = state["labels"]
            save_labels(self.store.labels_dir / key, labels.numpy() if hasattr(labels, "numpy") else labels)

    def ckpt_path(self, run_key: str) -> Path:
        return self.store.checkpoint_dir / f"{run_key}.pt"

    def has_checkpoint(self, run_key: str) -> bool:
        from rethinkgen.sweep.checkpoint import checkpoint_exists

        return checkpoint_exists(self.ckpt_path(run_key))

    # ---------------------------------------------------------------- preparing runs
    def prepare(self, run: PlannedRun) -> RunTask:
        """Bring the store in line with the run's newest intact checkpoint and mark it running."""
        with GUARD.shield():  # all of it or (on Ctrl-C before it starts) nothing
            return self._prepare(run)

    def _prepare(self, run: PlannedRun) -> RunTask:
        key, path = run.run_key, self.ckpt_path(run.run_key)
        if key in self.restart:  # --restart-mismatched: its checkpoint's numerics are not this executor's
            self.display.warn(f"{run.name}: training from scratch, {self.restart[key]}")
            self.result.restarted += 1
            loaded, notes = None, []
        else:
            loaded, notes = load_checkpoint(path, key)
        for note in notes:
            self.display.warn(f"{run.name}: {note}")
        if loaded is not None:
            payload = loaded.payload
            self.store.truncate_run(key, payload["epoch"], payload["step"])
            rows, losses = _history(payload)
            self.store.record_epoch(key, rows, losses, durable=True)
            resume, resumed_from = loaded.blob, int(payload["epoch"])
            self.result.resumed += 1
        else:
            self.store.truncate_run(key)
            remove_checkpoints(path)
            resume, resumed_from = None, None
        self.last_epoch[key] = resumed_from
        self.active[key] = run
        self.store.start_run(key, device=run.config.device, **self.env)
        self.result.started += 1
        self.display.run_started(key, run.name, run.config.epochs, resumed_from)
        return RunTask(run_key=key, name=run.name, config=run.config, resume=resume,
                       checkpoint_every=self.checkpoint_every, restart_mismatched=self.restart_mismatched,
                       measures=self.spec.measures)

    def items(self, todo: list[PlannedRun], executor: Executor) -> Iterator[WorkItem]:
        """Work items, prepared lazily (only when an executor is ready to start them): runs that can
        train together form fused groups (see :func:`plan_groups` and :func:`fuses`), else one run each."""
        fused = [run for run in todo if fuses(run.config, self.fuse, executor)]
        groups = plan_groups(fused, group_key(), executor.max_group, executor.parallelism()) if fused else []
        in_groups = {id(run) for run in fused}
        groups += [[run] for run in todo if id(run) not in in_groups]
        for runs in groups:
            yield WorkItem([self.prepare(run) for run in runs])

    # ------------------------------------------------------------------------ events
    def on_event(self, event: Event) -> None:
        with GUARD.shield():  # Ctrl-C waits until the event is fully recorded
            self._record(event)

    def _record(self, event: Event) -> None:
        key = event.run_key
        run = self.active.get(key) if key is not None else None
        if run is None:  # late news of a run already closed (e.g. a reaped worker): nothing to record
            return
        if event.kind == "started":
            env = {k: event.data.get(k) for k in ("code_version", "hardware", "torch_version")}
            self.store.set_environment(key, **env)
        elif event.kind == "restarted":  # the worker found the checkpoint's numerics differ from its own
            self.store.truncate_run(key)  # (Ray: only the worker knows its machine): from scratch
            remove_checkpoints(self.ckpt_path(key))
            self.last_epoch[key] = None
            self.result.restarted += 1
            self.result.resumed -= 1  # the driver had handed it a checkpoint
            self.display.warn(f"{run.name}: training from scratch, {event.data.get('reason', '')}")
        elif event.kind == "epoch":
            epoch, last = int(event.data["row"]["epoch"]), self.last_epoch.get(key)
            if last is not None and epoch > last + 1:  # events were lost: never leave a hole in the rows
                self.store.fail_run(key, f"epoch {epoch} arrived after epoch {last}: events were lost; a rerun "
                                         "resumes from the last checkpoint")
                self.active.pop(key)
                self.result.failed.append(run.name)
                self.display.run_failed(key, run.name, "lost epoch events")
                return
            self.last_epoch[key] = epoch
            blob = event.data.get("checkpoint")
            if blob is not None:
                path = self.ckpt_path(key)
                try:
                    write_atomic(path, blob)  # renamed into place BEFORE the epoch row commits
                except OSError as exc:
                    raise RethinkgenError(f"cannot write checkpoint {path}: {exc.strerror}; free disk space or "
                                          "fix the folder's permissions, then run the same command to "
                                          "resume") from None
            if blob is not None and key not in self.labels_saved and _streams(run.config):
                self._save_labels(key, blob)
            numerics = event.data.get("numerics")
            if numerics is not None and numerics != self.numerics.get(key):
                self.store.set_numerics(key, numerics)  # once per attempt (train.numerics)
                self.numerics[key] = numerics
            self.store.record_epoch(key, event.data["row"], event.data.get("step_losses", ()))
            self.display.epoch_recorded(key, event.data["row"], event.data.get("step_losses", ()))
        elif event.kind == "finished":
            summary = event.data["summary"]
            measured = summary.pop("measures", None)  # computed by the worker when the spec asks for them
            if measured:
                self.store.add_measures(key, measured["epoch"], measured["results"])
            self.store.finish_run(key, summary)
            if not self.keep_checkpoints:
                remove_checkpoints(self.ckpt_path(key))
            self.active.pop(key)
            status = summary["status"]
            self.result.statuses[status] = self.result.statuses.get(status, 0) + 1
            self.display.run_finished(key, run.name, summary)
        elif event.kind == "failed":
            self.store.fail_run(key, event.data["error"])
            self.active.pop(key)
            self.result.failed.append(run.name)
            self.display.run_failed(key, run.name, event.data["error"])


def fuses(config: Any, fuse: bool | None, executor: Executor) -> bool:
    """Whether a run goes to the fused trainer: ``fuse`` True / False forces it; None (the default)
    fuses runs that train on a GPU — ``device = "cuda"``, or ``"auto"`` where the executor has one.

    On a CPU, fusing does not pay for a real sweep: ``configs/quick.toml`` with ``--jobs 2`` took 37.2 s
    fused against 31.8 s run by run (groups leave workers idle while their slowest run finishes, and
    vmapped convolutions are slower than plain ones on the CPU; docs/sections/performance.md). On a GPU, one
    small run leaves the device mostly idle, which is what fusing is for.
    """
    if fuse is not None:
        return fuse
    return config.device == "cuda" or (config.device == "auto" and executor.accelerated())


def numerics_mismatches(runs: list[PlannedRun], known: dict[str, dict[str, Any]], executor: Executor,
                        has_checkpoint: Callable[[str], bool]) -> list[tuple[PlannedRun, list[str], list[str]]]:
    """Runs that would resume from a checkpoint whose numerics (as the store recorded them) differ from
    what ``executor`` gives them: (run, differences, fixes) each. Executors that cannot say in advance
    (Ray: the worker's machine is unknown) give none; their workers check (``worker.resume_state``).
    TF32 is left to the worker: it is a setting of the worker process, not of the driver."""
    from rethinkgen.train.numerics import COMPARED, Numerics, differences, fixes

    out = []
    for run in runs:
        saved = (known.get(run.run_key) or {}).get("numerics")
        if not saved or not has_checkpoint(run.run_key):
            continue
        here = executor.planned_numerics(run.config)
        if here is None:
            continue
        diffs = differences(saved, here, tuple(f for f in COMPARED if f != "tf32"))
        if diffs:
            out.append((run, diffs, fixes(Numerics.from_dict(saved), here, "sweep")))
    return out


def precision_not_applied(finished: list[PlannedRun], known: dict[str, dict[str, Any]]) -> list[str]:
    """One warning per (stored, asked) pair of autocast dtypes where ``finished`` runs (reused from the store,
    not trained again) set ``precision`` (the spec or ``--precision``) but were computed in another dtype:
    ``precision`` is not part of the run key, so the finished run is the result and the precision asked for
    is not applied to it. Automatic precision (None) asks for nothing: a finished GPU run reused on a CPU is
    the designed case and warns about nothing."""
    from rethinkgen.train.numerics import Numerics
    from rethinkgen.train.resolve import autocast_name

    pairs: dict[tuple, int] = {}
    for run in finished:
        saved = (known.get(run.run_key) or {}).get("numerics")
        if run.config.precision is None or not saved:
            continue
        then, asked = Numerics.from_dict(saved).autocast, autocast_name(run.config, "cpu")  # set: any device
        if then != asked:
            pairs[(then, run.config.precision)] = pairs.get((then, run.config.precision), 0) + 1
    words = {None: "float32 (no autocast)"}
    return [f"{n} finished run(s) in the store were computed in {words.get(then, f'{then} autocast')}, not in the "
            f"{asked} asked for: precision is not part of the run key, so they are reused as they are; to compute "
            f"them in {asked} too, run the sweep into another --store" for (then, asked), n in pairs.items()]


def refusal(mismatched: list[tuple[PlannedRun, list[str], list[str]]], *, planning: bool = False) -> str:
    """The message that refuses to resume ``mismatched`` (from :func:`numerics_mismatches`): each run, each
    difference and the options that restore the checkpoints' numerics. ``planning``: worded for ``sweep plan``,
    which says what ``sweep run`` would refuse, without claiming that anything was stopped."""
    lines = [f"{run.name} ({run.run_key[:10]}): " + "; ".join(diffs) for run, diffs, _ in mismatched[:20]]
    if len(mismatched) > 20:
        lines.append(f"... and {len(mismatched) - 20} more")
    hints = list(dict.fromkeys(h for _, _, fx in mismatched for h in fx))
    fix = (f"run with {' and '.join(hints)}, or pass " if hints else "pass ") + \
        "--restart-mismatched to discard these checkpoints and train the runs from scratch here"
    return (f"cannot resume {len(mismatched)} run(s): their checkpoints were trained with other numerics than "
            "this sweep would continue them with, which would change their numbers mid-run"
            + ("" if planning else " (nothing was started)")
            + ":\n  - " + "\n  - ".join(lines) + f"\nFix: {fix}.")


def plan_groups(runs: list[PlannedRun], key: Callable[[Any], Hashable], max_group: int | Callable[[Any], int],
                parallelism: int = 1) -> list[list[PlannedRun]]:
    """``runs`` split into groups of equal ``key(config)`` as :func:`rethinkgen.train.fused.group_runs`
    splits configs (at most ``max_group`` runs each — a number, or a function of the configs of a key's
    runs such as :meth:`Executor.max_group` — cut further to keep ``parallelism`` workers busy)."""
    from rethinkgen.train.fused import group_runs

    configs = [run.config for run in runs]
    if callable(max_group):  # sized per key, by all the runs that may be grouped together
        members: dict[Hashable, list[Any]] = {}
        keys = [key(c) for c in configs]
        for k, c in zip(keys, configs, strict=True):
            members.setdefault(k, []).append(c)
        limits = {k: max_group(cs) for k, cs in members.items()}
        by_config = {id(c): limits[k] for k, c in zip(keys, configs, strict=True)}
        indices = group_runs(configs, lambda c: by_config[id(c)], parallelism, key=key)
    else:
        indices = group_runs(configs, max_group, parallelism, key=key)
    return [[runs[i] for i in group] for group in indices]


def _history(payload: dict[str, Any]) -> tuple[list[dict[str, Any]], list]:
    """The rows and losses to re-commit on resume: the whole history when the trainer's state carries
    it (``metrics`` and ``step_losses``, so epoch commits lost to a power cut come back), else the
    checkpoint's own epoch row (the one that may not have committed before the crash)."""
    state = payload.get("state") or {}
    metrics, losses = state.get("metrics"), state.get("step_losses")
    epoch = int(payload["epoch"])
    if isinstance(metrics, list) and isinstance(losses, list) and metrics \
            and all(isinstance(r, dict) and "epoch" in r for r in metrics) and metrics[-1]["epoch"] == epoch:
        return [dict(r) for r in metrics], [tuple(p) for p in losses]
    return [dict(payload["row"])], [tuple(p) for p in payload["step_losses"]]


class _Heartbeat(threading.Thread):
    """Beats the heart of the active runs every ``interval`` seconds on its own connection."""

    def __init__(self, path: Path, driver: _Driver, interval: float) -> None:
        super().__init__(name="rethinkgen-heartbeat", daemon=True)
        self.path, self.driver, self.interval = path, driver, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        store = None
        try:
            store = Store(self.path)
            while not self.stopped.wait(self.interval):
                with contextlib.suppress(Exception):
                    store.heartbeat(list(self.driver.active))
        except Exception:  # a heartbeat is informative only; never take the sweep down
            return
        finally:
            if store is not None:
                store.close()


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """SIGTERM (a batch system's stop) behaves like Ctrl-C, and both wait for a shielded event."""
    installed = GUARD.install()
    try:
        yield
    finally:
        if installed:
            GUARD.uninstall()


def missing_data(runs: list[PlannedRun], executor: Executor) -> list[str]:
    """One message per dataset of ``runs`` whose files are not where the runs will look (each names the
    folders looked at and the fetch command). Ray's workers may run on other machines with their own
    data folders: they check when they load, so a Ray sweep is not checked here."""
    from rethinkgen.data.sources import check_available
    from rethinkgen.errors import RethinkgenError

    if executor.name == "ray":
        return []
    problems: dict[tuple, str] = {}
    for run in runs:
        several = (run.config.world_size or 1) > 1
        where = (run.config.data, run.config.data_dir, several)
        if where in problems:
            continue
        try:
            check_available(run.config.data, run.config.data_dir)
            if several:  # data rank 0 would prepare for longer than the other ranks wait (imagenet archives)
                from rethinkgen.train.streaming.data import check_ready

                check_ready(run.config)
        except RethinkgenError as exc:
            problems[where] = f"{str(exc)} (needed by {run.name})"
        else:
            problems[where] = ""
    return [text for text in problems.values() if text]


def _drive(spec: SweepSpec, store: Store, driver: _Driver, executor: Executor, display: SweepDisplay,
           beat: _Heartbeat) -> None:
    result = driver.result
    known_before = {r["run_key"]: r.get("status") for r in store.runs()}
    missing = missing_data([run for run in spec.runs if known_before.get(run.run_key) not in FINISHED], executor)
    if missing:  # before any work, the store untouched (design §3: a missing dataset names the fetch command)
        from rethinkgen.errors import DatasetNotFoundError

        raise DatasetNotFoundError("the data of these runs is missing (nothing was started):\n  - "
                                   + "\n  - ".join(missing))
    stale = store.recover_stale()
    result.stale = len(stale)
    if stale:
        display.warn(f"{len(stale)} run(s) were left running by a driver that stopped; resuming them")
    store.add_runs(spec.name, spec.runs)
    known = {r["run_key"]: r for r in store.runs()}
    todo = [run for run in spec.runs if (known.get(run.run_key) or {}).get("status") not in FINISHED]
    result.skipped = len(spec.runs) - len(todo)
    mismatched = numerics_mismatches(todo, known, executor, driver.has_checkpoint)
    if mismatched and not driver.restart_mismatched:  # before any work (design: errors name the fix)
        from rethinkgen.train.numerics import NumericsMismatchError

        raise NumericsMismatchError(refusal(mismatched), [d for _, diffs, _ in mismatched for d in diffs])
    driver.restart = {run.run_key: "its checkpoint's numerics differ from this executor's (" + "; ".join(diffs)
                      + ")" for run, diffs, _ in mismatched}
    if store.checkpoint_dir.is_dir():
        for stray in store.checkpoint_dir.glob("*.tmp-*"):
            with contextlib.suppress(OSError):
                stray.unlink()  # a write that a crash cut short; the real files are intact
    display.start(spec.name, len(spec.runs), result.skipped, executor.describe())
    for note in precision_not_applied([run for run in spec.runs if run not in todo], known):
        display.warn(note)
    if spec.measures:
        from rethinkgen.measures.records import lacking_note

        note = lacking_note(store, [run.run_key for run in spec.runs if run not in todo], spec.measures)
        if note:
            display.warn(note)
    if not todo:
        return  # nothing to do: do not even start workers or a Ray cluster
    beat.start()
    executor.run(driver.items(todo, executor), driver.on_event)


def run_sweep(spec: SweepSpec, store_path: str | Path, *, executor: Executor | None = None,
              display: SweepDisplay | None = None, checkpoint_every: int = 1, keep_checkpoints: bool = False,
              heartbeat_s: float = HEARTBEAT_S, fuse: bool | None = None,
              restart_mismatched: bool = False) -> SweepResult:
    """Run every unfinished run of ``spec`` into the store at ``store_path`` (see the module docstring).

    Returns a :class:`SweepResult`; a Ctrl-C or SIGTERM is absorbed (``result.stopped``) after
    everything delivered is committed. Raises StoreError / StoreLockedError before any run starts when
    the store cannot be opened or another sweep holds it. ``fuse=True`` trains runs that share an
    architecture and data shape together with the fused multi-run trainer (design §5; the numbers agree
    with separate training within float tolerance), ``fuse=False`` trains every run alone, and ``None``
    (default) fuses the runs that train on a GPU (:func:`fuses`).

    A run whose checkpoint was trained with other numerics than the executor gives it (device type,
    autocast, CPU threads, compile, channels_last; :mod:`rethinkgen.train.numerics`) is not resumed:
    the sweep raises :class:`~rethinkgen.train.numerics.NumericsMismatchError` before starting anything,
    naming each run, each difference and the fix — unless ``restart_mismatched``, which discards such
    checkpoints and trains those runs from scratch. (Ray workers check when they start a run.)
    """
    if checkpoint_every < 1:
        raise RethinkgenError(f"--checkpoint-every must be >= 1 epoch, got {checkpoint_every}")
    executor = executor or LocalExecutor()
    display = display or SweepDisplay(quiet=True)
    t0 = time.perf_counter()
    store = Store(store_path)
    try:
        lock = SweepLock(store_path).acquire()
    except BaseException:
        store.close()
        raise
    driver = _Driver(spec, store, display, checkpoint_every, keep_checkpoints, fuse, restart_mismatched)
    result = driver.result
    beat = _Heartbeat(Path(store_path), driver, heartbeat_s)
    reason = "interrupted (Ctrl-C or SIGTERM); run the same command to resume"
    try:
        with _signals_as_interrupt():
            try:
                _drive(spec, store, driver, executor, display, beat)
            except KeyboardInterrupt:
                result.stopped = True
            except BaseException as exc:
                reason = f"the sweep stopped on an error ({type(exc).__name__}: {exc}); fix it and rerun"
                raise
    finally:
        beat.stopped.set()
        try:
            if driver.active:
                result.interrupted = [run.name for run in driver.active.values()]
            with contextlib.suppress(Exception):  # we hold the lock: every "running" run is ours
                store.interrupt_runs([r["run_key"] for r in store.runs(status="running")], reason)
        finally:
            display.stop()
            if beat.is_alive():
                beat.join(timeout=5)
            store.close()
            lock.release()
            result.wall_s = time.perf_counter() - t0
    return result


def _streams(config: Any) -> bool:
    from rethinkgen.train.streaming.select import streams

    return streams(config)
