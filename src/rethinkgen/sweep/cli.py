"""``rethinkgen sweep plan|run|status`` and ``rethinkgen export`` (thin: parse, call the library, print).

Bad input raises :class:`~rethinkgen.errors.RethinkgenError` subclasses, which the main CLI prints
without a traceback (exit status 2). ``sweep run`` exits 1 when some run failed and 130 when it was
interrupted (after committing everything and marking the unfinished runs interrupted).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rethinkgen.cli_help import PlainHelpGroup
from rethinkgen.errors import RethinkgenError

__all__ = ["sweep_app", "export_command", "export_tables", "main"]

sweep_app = typer.Typer(
    name="sweep", cls=PlainHelpGroup, no_args_is_help=True, add_completion=False,
    help="Grids of randomization tests from a TOML spec: plan them, run them (resumably), inspect a store.")

SPEC_ARG = typer.Argument(..., help="sweep spec (TOML): [defaults], [grid], [[experiment]]", show_default=False)
DEVICE_OPT = typer.Option(None, "--device", help="device for every run: auto | cpu | cuda | mps "
                          "(not part of the run key)")
PRECISION_OPT = typer.Option(None, "--precision", help="autocast precision for every run: float32 | bfloat16 "
                             "(bf16 on any device; slow on the CPU) [default: bf16 on CUDA, float32 elsewhere] "
                             "(not part of the run key; recorded in its numerics)")
DATA_DIR_OPT = typer.Option(None, "--data-dir", help="folder of file-based datasets (not part of the run key)")
OUTPUT_PANEL = "Display, checkpoints and output"


WORLD_SIZE_OPT = typer.Option(None, "--world-size", help="DDP processes (GPUs of one node) for every run of a "
                              "dataset streamed from disk (imagenet; not part of the run key)")


def _overrides(device: str | None, data_dir: Path | None, world_size: int | None = None,
               precision: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if precision is not None:
        out["precision"] = precision
    if world_size is not None:
        out["world_size"] = world_size
    if device is not None:
        out["device"] = device
    if data_dir is not None:
        out["data_dir"] = str(Path(data_dir).expanduser().resolve())
    return out


def open_results_store(path: Path) -> Any:
    """Open an existing results store read-only, refusing with the fix what is not one (before any work):
    a missing path, an empty (0-byte) file, an SQLite file without rethinkgen's tables, another file."""
    from rethinkgen.sweep.store import Store, StoreError

    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise StoreError(f"{path} is empty (0 bytes): no sweep has written to it, so it is not a rethinkgen results "
                         f"store yet. Stores are written by `rethinkgen sweep run SPEC --store {path}` (or `kernel "
                         "fit --store`); check the path")
    store = Store.open(path, readonly=True)
    try:
        found = store.conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'runs'")
        is_store = found.fetchone()[0] == 1
    except Exception:
        store.close()
        raise
    if not is_store:
        store.close()
        raise StoreError(f"{path} is an SQLite database but not a rethinkgen results store (it has no runs table); "
                         "pass the file that `rethinkgen sweep run --store` wrote")
    return store


def say(console: Console, text: str) -> None:
    """One message (rich markup); one line, however long, when not on a terminal (a log file)."""
    console.print(text, highlight=False, soft_wrap=not console.is_terminal)


def print_runs(console: Console, title: str | None, columns: list[str], rows: list[list[str]],
               justify: dict[str, str] | None = None) -> None:
    """Rows of runs (plain text; the column ``"run"`` holds the run name) as a table when every name fits
    on one line of it; otherwise each run name on a line of its own with the other cells under it —
    never a name cut or folded, so rows that differ only at the end of their names stay distinct."""
    from rich.measure import Measurement

    name_at = columns.index("run")
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify=(justify or {}).get(col, "left"), no_wrap=True)
    for row in rows:
        table.add_row(*map(escape, row))
    unbounded = console.options.update_width(100_000)  # measurements are clamped to the width given
    if Measurement.get(console, unbounded, table).minimum <= console.width:
        console.print(table)
        return
    if title:
        say(console, f"[bold]{escape(title)}[/]")
    for row in rows:
        details = "  ".join(f"#{row[i]}" if col == "#" else f"{col} {row[i]}"
                            for i, col in enumerate(columns) if i != name_at and row[i])
        console.print(escape(row[name_at]), highlight=False, soft_wrap=True)
        say(console, f"    {escape(details)}")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


EXECUTOR_OPT = typer.Option("local", "--executor", help="local | ray")
THREADS_OPT = typer.Option(None, "--threads", help="torch threads per run (default: cores / jobs; equal thread "
                           "counts give bit-identical CPU results)")
JOBS_OPT = typer.Option(None, "--jobs", "-j", help="local: worker processes (default 1 = in this process); "
                        "ray: CPUs of the local cluster it starts")
WORKERS_PER_GPU_OPT = typer.Option(None, "--workers-per-gpu", help="N worker processes on each visible GPU, each "
                                   "pinned to its GPU (local: --jobs = N x GPUs; ray: 1/N GPU per task); "
                                   "default: one process, or --jobs")
FUSE_OPT = typer.Option("auto", "--fuse", help="auto | on | off: train runs that share a model and data shape "
                        "together (fused multi-run training; same numbers within float tolerance); auto: on a GPU "
                        "only, in groups sized by its free memory")
FUSE_MODES = {"auto": None, "on": True, "off": False}


def _fuse_mode(fuse: str) -> bool | None:
    if fuse not in FUSE_MODES:
        raise RethinkgenError(f"--fuse must be one of auto, on, off; got {fuse!r}")
    return FUSE_MODES[fuse]


@sweep_app.command("plan")
def plan_command(
    spec: Path = SPEC_ARG,
    store: Path | None = typer.Option(None, "--store", help="results store: show each run's status in it"),
    device: str | None = DEVICE_OPT,
    precision: str | None = PRECISION_OPT,
    data_dir: Path | None = DATA_DIR_OPT,
    world_size: int | None = WORLD_SIZE_OPT,
    executor: str = EXECUTOR_OPT,
    jobs: int | None = JOBS_OPT,
    workers_per_gpu: int | None = WORKERS_PER_GPU_OPT,
    fuse: str = FUSE_OPT,
    threads: int | None = THREADS_OPT,
) -> None:
    """Validate a spec, list its expanded runs (with --store: what is already done) and say how `sweep run`
    with the same options would train them: which runs together, on which device, in how much memory,
    computed how (precision, memory format, captured step, CPU threads)."""
    from rethinkgen.sweep.checkpoint import checkpoint_exists
    from rethinkgen.sweep.executors import make_executor
    from rethinkgen.sweep.plan import fused_alternative, numerics_lines, plan_table, work_plan
    from rethinkgen.sweep.runner import missing_data, numerics_mismatches, precision_not_applied, refusal
    from rethinkgen.sweep.spec import load_spec
    from rethinkgen.sweep.store import FINISHED
    from rethinkgen.train.validate import check_option

    plan = load_spec(spec, overrides=_overrides(device, data_dir, world_size, precision))
    check_option("--threads", threads, minimum=1, integer=True)
    ex = make_executor(executor, jobs=jobs, threads=threads, workers_per_gpu=workers_per_gpu)  # before any output
    fuse_mode = _fuse_mode(fuse)
    known: dict[str, dict[str, Any]] = {}
    epochs_done: dict[str, int] = {}
    checkpoints: Path | None = None
    if store is not None and Path(store).exists() and Path(store).stat().st_size > 0:  # empty: all runs new
        with open_results_store(store) as s:
            known = {r["run_key"]: r for r in s.runs()}
            epochs_done = s.last_epochs()
            checkpoints = s.checkpoint_dir
    console = Console()
    experiments = sorted({e for r in plan.runs for e in r.experiments})
    say(console, f"sweep [bold]{escape(plan.name)}[/] ({escape(str(spec))}): {len(plan.runs)} runs in "
                 f"{len(experiments)} experiment(s): {escape(', '.join(experiments))}")
    if plan.description:
        say(console, escape(plan.description))
    columns = ["#", "run", "key", "epochs", "lr"] + (["status"] if store is not None else [])
    rows: list[list[str]] = []
    counts: dict[str, int] = {}
    for i, run in enumerate(plan.runs):
        cells = [str(i), run.name, run.run_key[:10], str(run.config.epochs), f"{run.config.lr:g}"]
        if store is not None:
            row = known.get(run.run_key)
            status = row["status"] if row else "new"
            counts[status] = counts.get(status, 0) + 1
            if row and status not in ("converged", "max_epochs", "diverged") and run.run_key in epochs_done:
                status += f" (epoch {epochs_done[run.run_key]})"
            cells.append(status)
        rows.append(cells)
    print_runs(console, None, columns, rows, justify={"#": "right", "epochs": "right", "lr": "right"})
    if store is not None:
        say(console, escape(f"in store {store}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))))
    todo = [run for run in plan.runs if (known.get(run.run_key) or {}).get("status") not in FINISHED]
    # what `sweep run` with these options would say about the store's runs before training (runner._drive)
    for note in precision_not_applied([run for run in plan.runs if run not in todo], known):
        say(console, "[yellow]warning:[/] " + escape(note))

    def has_checkpoint(key: str) -> bool:  # as the sweep's driver asks it
        return checkpoints is not None and checkpoint_exists(checkpoints / f"{key}.pt")

    if todo:
        items = work_plan(todo, ex, fuse_mode)
        say(console, escape(_device_line(ex, todo)))
        console.print(plan_table(items, ex))
        for line in numerics_lines(items):
            say(console, escape(line))
        if all(len(item.runs) == 1 for item in items):
            say(console, escape(fused_alternative(todo)))
        for problem in missing_data(todo, ex):  # `sweep run` would refuse; planning for another machine is fine
            say(console, "[yellow]missing data:[/] " + escape(problem))
        mismatched = numerics_mismatches(todo, known, ex, has_checkpoint)
        if mismatched:  # `sweep run` refuses these before training anything
            say(console, "[red]sweep run with these options would refuse:[/] "
                + escape(refusal(mismatched, planning=True)))
    else:
        say(console, "nothing to run: every run is finished in the store")


def _device_line(ex: Any, runs: list) -> str:
    """The device the plan is made for (a GPU's name and free memory, as sizing uses it)."""
    import torch

    from rethinkgen.sweep.sizing import MAX_GROUP_CUDA

    if not ex.accelerated():
        line = "device: cpu (no GPU " + ("for these tasks)" if ex.name == "ray" else "visible to torch)")
        if any(run.config.device == "cuda" for run in runs):
            line += (f"; runs with device = \"cuda\" are planned with groups of at most {MAX_GROUP_CUDA} (free "
                     "memory unknown here) and will need a GPU")
        return line
    memory = ex.device_memory()
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "GPU"
    share = ex.gpu_share()
    per = f"{memory / 1e9:.1f} GB free for each group" if memory is not None else "memory known to the workers only"
    return f"device: {name}; {per}" + (f" ({share} workers per GPU)" if share > 1 else "")


@sweep_app.command("run")
def run_command(
    spec: Path = SPEC_ARG,
    store: Path = typer.Option(..., "--store", help="results store (SQLite file; its folder must exist)"),
    executor: str = EXECUTOR_OPT,
    jobs: int | None = JOBS_OPT,
    workers_per_gpu: int | None = WORKERS_PER_GPU_OPT,
    address: str | None = typer.Option(None, "--address", help="ray: cluster address (ray://HOST:10001 or "
                                       "auto); without it a local cluster starts"),
    device: str | None = DEVICE_OPT,
    precision: str | None = PRECISION_OPT,
    data_dir: Path | None = DATA_DIR_OPT,
    world_size: int | None = WORLD_SIZE_OPT,
    threads: int | None = THREADS_OPT,
    gpus_per_run: float | None = typer.Option(None, "--gpus-per-run", help="ray: GPU fraction per run "
                                              "(default 0.25 when the cluster has GPUs)"),
    fuse: str = FUSE_OPT,
    restart_mismatched: bool = typer.Option(
        False, "--restart-mismatched/--refuse-mismatched", show_default=False, rich_help_panel="Resuming",
        help="runs whose checkpoint was trained with other numerics (device, autocast, CPU threads, compile) than "
             "they would continue with here: discard the checkpoint and train them from scratch [default: refuse, "
             "naming the difference and the option that restores it]"),
    quiet: bool = typer.Option(False, "--quiet/--no-quiet", "-q", rich_help_panel=OUTPUT_PANEL,
                               help="log lines instead of the live display"),
    checkpoint_every: int = typer.Option(1, "--checkpoint-every", rich_help_panel=OUTPUT_PANEL,
                                         help="epochs between checkpoints"),
    keep_checkpoints: bool = typer.Option(False, "--keep-checkpoints/--drop-checkpoints", show_default=False,
                                          rich_help_panel=OUTPUT_PANEL,
                                          help="keep finished runs' checkpoints (their final weights) or delete "
                                               "them [default: delete]"),
    tensorboard: Path | None = typer.Option(None, "--tensorboard", metavar="DIR", rich_help_panel=OUTPUT_PANEL,
                                            help="also write each run's scalars for TensorBoard to DIR/<run name> "
                                                 "(overrides the spec's `tensorboard`; needs tensorboard)"),
) -> None:
    """Run every unfinished run of SPEC into the store; rerunning resumes where it stopped."""
    from rethinkgen.sweep.executors import make_executor
    from rethinkgen.sweep.progress import SweepDisplay
    from rethinkgen.sweep.runner import run_sweep
    from rethinkgen.sweep.spec import load_spec
    from rethinkgen.train.validate import check_option

    check_option("--jobs", jobs, minimum=1, integer=True)
    check_option("--workers-per-gpu", workers_per_gpu, minimum=1, integer=True)
    check_option("--threads", threads, minimum=1, integer=True)
    check_option("--checkpoint-every", checkpoint_every, minimum=1, integer=True)
    fuse_mode = _fuse_mode(fuse)
    # every problem, before any run
    plan = load_spec(spec, overrides=_overrides(device, data_dir, world_size, precision))
    sinks = _tensorboard_sinks(tensorboard or (Path(plan.tensorboard) if plan.tensorboard else None))
    ex = make_executor(executor, jobs=jobs, address=address, threads=threads, gpus_per_run=gpus_per_run,
                       workers_per_gpu=workers_per_gpu)
    console = Console(soft_wrap=not sys.stdout.isatty())
    display = SweepDisplay(console, quiet=True if quiet else None, sinks=sinks)
    result = run_sweep(plan, store, executor=ex, display=display, checkpoint_every=checkpoint_every,
                       keep_checkpoints=keep_checkpoints, fuse=fuse_mode,
                       restart_mismatched=restart_mismatched)
    done = ", ".join(f"{n} {s}" for s, n in sorted(result.statuses.items())) or "none"
    restarted = f"; restarted from scratch (numerics differed): {result.restarted}" if result.restarted else ""
    console.print(f"finished in this call: {done}; failed: {len(result.failed)}; skipped (already done): "
                  f"{result.skipped}; resumed from a checkpoint: {result.resumed}{restarted}; "
                  f"{result.wall_s:.1f} s", highlight=False)
    if result.stopped or result.interrupted:
        console.print(f"[yellow]interrupted[/]: {len(result.interrupted)} run(s) marked interrupted; everything "
                      f"delivered is committed. Run the same command to resume.", highlight=False)
        raise typer.Exit(130)
    if result.failed:
        console.print(f"[red]{len(result.failed)} run(s) failed[/]; see `rethinkgen sweep status --store "
                      f"{store}`; a rerun retries them from their last checkpoint", highlight=False)
        raise typer.Exit(1)


def _tensorboard_sinks(root: Path | None) -> list[Any]:
    """The TensorBoard sink of a sweep (checked before any run: package installed, folder writable)."""
    if root is None:
        return []
    from rethinkgen.files import ensure_writable_dir
    from rethinkgen.train.tensorboard import TensorBoardRuns

    runs = TensorBoardRuns(root)
    ensure_writable_dir(root, "--tensorboard")
    return [runs]


@sweep_app.command("status")
def status_command(
    store: Path = typer.Option(..., "--store", help="results store to summarize"),
) -> None:
    """Summarize a store: runs per status and sweep, running runs, failures with their last error line."""
    from rethinkgen.sweep.store import STATUSES, is_stale, lock_holder

    holder = lock_holder(store)
    now = time.time()
    with open_results_store(store) as s:
        runs = s.runs()
        last_epoch = s.last_epochs()
        n_kernel = len(s.kernel_results())
    console = Console()
    say(console, escape(f"store {store}: {len(runs)} runs, {n_kernel} kernel results; "
                        + (f"a sweep is running ({holder})" if holder else "no sweep is running")))

    def effective(r: dict[str, Any]) -> str:
        if r["status"] == "running" and (holder is None or is_stale(r, now)):
            return "stale"
        return r["status"]

    columns = [*STATUSES, "stale"]
    per_sweep: dict[str, dict[str, int]] = {}
    for r in runs:
        counts = per_sweep.setdefault(r["sweep"] or "—", dict.fromkeys(columns, 0))
        counts[effective(r)] += 1
    table = Table(title="runs by status")
    table.add_column("sweep", overflow="fold")
    used = [c for c in columns if any(v[c] for v in per_sweep.values())]
    for c in used:
        table.add_column(c, justify="right")
    for name, counts in per_sweep.items():
        table.add_row(escape(name), *(str(counts[c]) for c in used))
    if runs:
        console.print(table)
        console.print(_numerics_summary(runs), highlight=False)
    active = [r for r in runs if r["status"] in ("running", "interrupted")]
    if active:
        rows = []
        for r in active:
            epochs = (r["config"] or {}).get("epochs")
            done = f"{last_epoch.get(r['run_key'], '—')}/{epochs}"
            rows.append([r["name"], r["run_key"][:10], effective(r), done, str(r["attempts"]),
                         _age(now - r["heartbeat_at"]) + " ago" if r["heartbeat_at"] else "—"])
        print_runs(console, "running / interrupted", ["run", "key", "status", "epoch", "attempts", "heartbeat"],
                   rows)
    failed = [r for r in runs if r["status"] == "failed"]
    if failed:
        rows = []
        for r in failed:
            lines = (r["error"] or "").strip().splitlines()
            rows.append([r["name"], r["run_key"][:10], str(r["attempts"]), lines[-1] if lines else ""])
        print_runs(console, "failed", ["run", "key", "attempts", "last error line"], rows)


def _numerics_summary(runs: list[dict[str, Any]]) -> str:
    """How the store's runs were computed (rethinkgen.train.numerics), e.g. ``numerics: 4 run(s) cpu,
    float32, 1 thread``, with a warning when finished runs differ (equal within float tolerance only)."""
    from rethinkgen.train.numerics import describe

    counts: dict[str, int] = {}
    finished: set[str] = set()
    for r in runs:
        if r.get("numerics") is None and r["status"] == "pending":
            continue
        text = describe(r.get("numerics"))
        counts[text] = counts.get(text, 0) + 1
        if r["status"] in ("converged", "max_epochs", "diverged"):
            finished.add(text)
    if not counts:
        return "numerics: no run has trained yet"
    line = "numerics: " + "; ".join(f"{n} run(s) {text}" for text, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    if len(finished) > 1:
        line += (f"\n[yellow]note[/]: the finished runs were computed {len(finished)} ways; numbers of different "
                 "devices, autocast or thread counts agree within float tolerance, not bit for bit")
    return line


EXPORT_TABLES = ("runs", "run_tags", "epochs", "step_losses", "summaries", "measures", "kernel_results")


def export_tables(store: Any, fmt: str, out_dir: str | Path) -> list[Path]:
    """Write every table of a :class:`~rethinkgen.sweep.store.Store` to ``out_dir/<table>.csv`` or
    ``.parquet``; returns the files."""
    import csv

    if fmt not in ("csv", "parquet"):
        raise RethinkgenError(f"unknown export format {fmt!r}; use csv or parquet")
    pa = pq = None
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise RethinkgenError("parquet export needs pyarrow: pip install 'rethinkgen[parquet]' "
                                  "(or pip install pyarrow), or use --format csv") from None
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RethinkgenError(f"cannot create export folder {out}: {exc.strerror}") from None
    files = []
    for name in EXPORT_TABLES:
        columns, rows = store.table(name)
        target = out / f"{name}.{fmt}"
        if fmt == "csv":
            with open(target, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(columns)
                writer.writerows(rows)
        else:
            data = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
            pq.write_table(pa.table(data) if rows else pa.table({c: pa.array([], pa.string()) for c in columns}),
                           target)
        files.append(target)
    return files


def export_command(
    store: Path = typer.Option(..., "--store", help="results store to export"),
    format: str = typer.Option("csv", "--format", help="csv | parquet (parquet needs pyarrow)"),
    out: Path = typer.Option(..., "--out", help="folder for one file per table"),
) -> None:
    """Write the store's tables (runs, run_tags, epochs, step_losses, summaries, measures, kernel_results)
    as CSV or Parquet files into a folder."""
    from rethinkgen.files import ensure_writable_dir

    if format not in ("csv", "parquet"):
        raise RethinkgenError(f"unknown export format {format!r}; use csv or parquet")
    with open_results_store(store) as s:
        ensure_writable_dir(out, "--out")  # a read-only folder fails here, before any table is read
        files = export_tables(s, format, out)
    console = Console()
    for f in files:
        console.print(f"wrote {f}", highlight=False)


def main(argv: list[str] | None = None) -> None:
    """``python -m rethinkgen.sweep.cli ...``: the sweep commands alone (the main CLI mounts them too)."""
    try:
        code = sweep_app(args=argv, standalone_mode=False)
    except RethinkgenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
