"""The ``rethinkgen`` command line: thin, it parses, calls the library and prints.

Errors derived from RethinkgenError are printed as one message naming the fix and exit with status 2.
"""

from __future__ import annotations

import os

# Passive OpenMP waits (before torch is imported): spinning threads are 15-20x slower on a busy CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rethinkgen.cli_help import PlainHelpGroup
from rethinkgen.errors import ConfigError, RethinkgenError

console = Console()
err_console = Console(stderr=True)


def say(to: Console, text: str) -> None:
    """Print one message (rich markup) as one line when not on a terminal: a log file gets one line per
    event, never a message folded at 80 columns."""
    to.print(text, highlight=False, soft_wrap=not to.is_terminal)


class _FriendlyErrors(PlainHelpGroup):
    """Turn RethinkgenError anywhere below into a one-line message and exit status 2 (and help as
    :mod:`rethinkgen.cli_help` fixes it)."""

    def invoke(self, ctx):
        from rethinkgen.data.sources.messages import interface

        try:
            with interface("cli"):  # data errors name options as typed here: --data-option key=value
                return super().invoke(ctx)
        except RethinkgenError as e:
            say(err_console, f"[bold red]error:[/] {escape(str(e))}")
            raise typer.Exit(2) from None


app = typer.Typer(cls=_FriendlyErrors, no_args_is_help=True, add_completion=False,
                  help="Randomization tests of Zhang et al., 'Understanding deep learning requires "
                       "rethinking generalization' (ICLR 2017): train, sweep, report, theory.")
list_app = typer.Typer(no_args_is_help=True, help="List the registered datasets, models, corruptions and measures.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch and inspect datasets.")
app.add_typer(list_app, name="list")
app.add_typer(data_app, name="data")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from rethinkgen import __version__

        try:
            torch = f"torch {version('torch')}"
        except PackageNotFoundError:
            torch = "torch not installed"
        print(f"rethinkgen {__version__} ({torch}, Python {sys.version.split()[0]})")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """Randomization tests of Zhang et al., 'Understanding deep learning requires rethinking generalization'
    (ICLR 2017): train, sweep, report, theory."""


# ------------------------------------------------------------------------------------------- list
WIDE = 110  # console columns below which a listing puts the descriptions under the table


def _listing_table(columns: list[str], rows: list[list[str]], keep: list[int], wide: bool) -> Table:
    table = Table(*(columns[i] for i in keep)) if wide else \
        Table(*(columns[i] for i in keep), box=box.SIMPLE_HEAD, pad_edge=False)
    for column, i in zip(table.columns, keep, strict=True):
        column.overflow = "fold"  # wrap long values, never end them with "…"
        column.no_wrap = i == 0 or not any(" " in row[i] for row in rows)  # names and numbers stay whole
    for row in rows:
        table.add_row(*(escape(row[i]) for i in keep))  # plain text: "[y]" is not console markup
    return table


def _print_listing(columns: list[str], rows: list[list[str]]) -> None:
    """A table whose last column is a description. On a narrow console the description, and then as many
    columns from the right as it takes for the rest to fit, follow the table as "name: ..." lines: no
    name, number or word is ever cut, folded or dropped."""
    from rich.measure import Measurement

    wide = console.width >= WIDE
    keep = list(range(len(columns) if wide else len(columns) - 1))
    table = _listing_table(columns, rows, keep, wide)
    unbounded = console.options.update_width(10_000)  # Measurement is clamped to the width it is given
    while not wide and len(keep) > 1 and Measurement.get(console, unbounded, table).minimum > console.width:
        keep.pop()
        table = _listing_table(columns, rows, keep, wide)
    console.print(table)
    if not wide:
        moved = range(len(keep), len(columns) - 1)
        for row in rows:
            details = "".join(f"{columns[i]} {row[i]}; " for i in moved)
            console.print(f"[bold]{escape(row[0])}[/]: {escape(details + row[-1])}", highlight=False)


@list_app.command("datasets")
def list_datasets_cmd() -> None:
    """Datasets: name, layout, whether files are needed, description."""
    from rethinkgen.data.sources import DATASETS

    rows = []
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        rows.append([name, spec.layout, "yes" if spec.needs_files else "no (generated)", spec.description])
    _print_listing(["name", "layout", "needs files", "description"], rows)


@list_app.command("models")
def list_models_cmd(pattern: Annotated[str, typer.Argument(help="shell pattern, e.g. 'mlp*'")] = "*") -> None:
    """Models with their parameter counts (Table 1 counting: no BatchNorm affine parameters)."""
    from rethinkgen.models import MODELS, describe_models

    rows = [[info.name, ", ".join(info.layouts), f"{info.params:,}",
             f"{info.paper_params:,}" if info.paper_params else "–", f"{MODELS.get(info.name).paper_lr:g}",
             info.description] for info in describe_models(pattern)]
    _print_listing(["name", "inputs", "params", "Table 1", "paper lr", "description"], rows)
    console.print("params: on 3×28×28 images (the paper's CIFAR-10 crop) or (1, 40) signals; 10 classes; "
                  "Table 1: the paper's count", highlight=False)


@list_app.command("corruptions")
def list_corruptions_cmd() -> None:
    """Corruptions of paper §2.1: what they change and whether they take a level p."""
    from rethinkgen.data.corruptions import CORRUPTIONS

    rows = []
    for name in CORRUPTIONS.names():
        spec = CORRUPTIONS.get(name)
        rows.append([name, spec.target, "p in [0, 1]" if spec.takes_level else "–", spec.description])
    _print_listing(["name", "changes", "level", "description"], rows)


# ------------------------------------------------------------------------------------------- data
@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="dataset to download, or to verify where a copy is found (those "
                                              "with `needs files` in `rethinkgen list datasets`: cifar10, mnist, "
                                              "fashion_mnist)", show_default=False)],
    data_dir: Annotated[Path | None, typer.Option(help="target folder [default: $RETHINKGEN_DATA or "
                                                       "~/.cache/rethinkgen]")] = None,
) -> None:
    """Download a dataset into --data-dir, or verify the copy already there, before saying it is ready."""
    from rethinkgen.data.sources import default_data_dir, fetch_dataset

    fetch_dataset(name, data_dir or default_data_dir(), log=lambda m: console.print(m, highlight=False))


@data_app.command("inspect")
def data_inspect(
    name: Annotated[str, typer.Argument(help="dataset name (rethinkgen list datasets)")],
    data_dir: Annotated[Path | None, typer.Option(help="folder of file-based datasets")] = None,
    data_option: Annotated[list[str] | None, typer.Option(
        help="source option KEY=VALUE, repeatable: path=FILE, layout=NHWC, num_classes=K, size=32 ...")] = None,
    n_train: Annotated[int | None, typer.Option(help="a seeded subset of the training set")] = None,
    n_test: Annotated[int | None, typer.Option(help="a seeded subset of the test set")] = None,
    seed: Annotated[int, typer.Option(help="seed of the subset")] = 0,
    as_json: Annotated[bool, typer.Option("--json/--no-json", help="print the record as JSON")] = False,
) -> None:
    """How rethinkgen reads a dataset: layout found, scaling, shapes, value range, classes and their
    counts, and what each corruption will change on it."""
    from rethinkgen.data.describe import inspect_dataset, inspection_rows
    from rethinkgen.data.sources import load_dataset

    ds = load_dataset(name, data_dir, n_train=n_train, n_test=n_test, seed=seed,
                      **(_parse_options(data_option) or {}))
    info = inspect_dataset(ds)
    if as_json:
        print(json.dumps(info, indent=2, default=str))
        return
    table = Table(show_header=False, box=box.SIMPLE, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, text in inspection_rows(info):
        table.add_row(label, text)
    console.print(table, highlight=False)
    effects = Table("corruption", "what it changes on this data", box=box.SIMPLE_HEAD, pad_edge=False)
    effects.columns[0].no_wrap = True
    effects.columns[1].overflow = "fold"
    for corruption, text in info["effects"].items():
        effects.add_row(corruption, text)
    console.print(effects, highlight=False)


# ------------------------------------------------------------------------------------------ train
DATA, CORR, OPT, RUN = "Data", "Corruption (paper §2.1)", "Model and optimisation", "Run and output"
def _parse_options(pairs: list[str] | None) -> dict[str, Any] | None:
    if not pairs:
        return None
    options: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--data-option takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _opt(panel: str, *decls: str, **kwargs: Any) -> Any:
    return typer.Option(*decls, rich_help_panel=panel, **kwargs)


@app.command()
def train(
    ctx: typer.Context,
    data: Annotated[str, _opt(DATA, help="dataset name (rethinkgen list datasets)")] = "mnist1d",
    data_dir: Annotated[Path | None, _opt(DATA, metavar="DIR", help="folder of file-based datasets")] = None,
    data_option: Annotated[list[str] | None, _opt(DATA, metavar="KEY=VALUE", help="source option, "
                                                  "repeatable, e.g. path=x.npz")] = None,
    n_train: Annotated[int | None, _opt(DATA, help="use a seeded subset of the training set")] = None,
    n_test: Annotated[int | None, _opt(DATA, help="use a seeded subset of the test set")] = None,
    corruption: Annotated[str, _opt(CORR, help="corruption name (rethinkgen list corruptions)")] = "true_labels",
    level: Annotated[float | None, _opt(CORR, metavar="P", help="label-corruption probability p in [0, 1], for "
                                        "partial_labels")] = None,
    exclude_true_class: Annotated[bool, _opt(CORR, "--exclude-true-class/--include-true-class",
                                             show_default=False,
                                             help="draw a corrupted label from the other classes only (always "
                                                  "changed), or from all [default: all, as the paper]")] = False,
    model: Annotated[str, _opt(OPT, help="model name (rethinkgen list models)")] = "mlp_1x512",
    dropout: Annotated[float, _opt(OPT, help="dropout probability in hidden layers")] = 0.0,
    epochs: Annotated[int | None, _opt(OPT, help="maximum epochs [default: per dataset]")] = None,
    batch_size: Annotated[int, _opt(OPT, help="samples per SGD step")] = 128,
    lr: Annotated[float | None, _opt(OPT, help="initial learning rate [default: per dataset/model]")] = None,
    momentum: Annotated[float, _opt(OPT, help="SGD momentum")] = 0.9,
    weight_decay: Annotated[float, _opt(OPT, help="L2 coefficient")] = 0.0,
    lr_decay: Annotated[float, _opt(OPT, help="learning-rate decay factor")] = 0.95,
    lr_decay_every: Annotated[int | None, _opt(OPT, help="samples seen per decay; 0: once per epoch [default: "
                                                         "per dataset]")] = None,
    augment: Annotated[bool, _opt(OPT, "--augment/--no-augment", help="random-crop augmentation (images)")] = False,
    flip: Annotated[bool, _opt(OPT, "--flip/--no-flip", help="random horizontal flips (images)")] = False,
    target_train_acc: Annotated[float, _opt(OPT, help="stop at this training accuracy (0-1)")] = 1.0,
    seed: Annotated[int, _opt(OPT, help="the run's seed")] = 0,
    log_every: Annotated[int, _opt(OPT, help="steps between recorded training losses")] = 10,
    eval_every: Annotated[int | None, _opt(OPT, metavar="N", help="SGD steps between evaluations of the whole "
                                           "training set, the resolution of the convergence step [default: "
                                           "once per epoch]")] = None,
    device: Annotated[str, _opt(RUN, help="auto | cpu | cuda | mps")] = "auto",
    threads: Annotated[int | None, _opt(RUN, help="CPU threads [default: torch's; on --resume: the run's]")]
    = None,
    out: Annotated[Path | None, _opt(RUN, metavar="DIR", help="output folder [default: runs/<run key>]")] = None,
    resume: Annotated[Path | None, _opt(RUN, metavar="DIR", help="continue the interrupted run in DIR")] = None,
    overwrite: Annotated[bool, _opt(RUN, "--overwrite/--no-overwrite", help="replace the run --out holds")] = False,
    tensorboard: Annotated[Path | None, _opt(RUN, metavar="DIR", help="also write TensorBoard scalars to "
                                             "DIR/<name of --out> (needs tensorboard)")] = None,
    quiet: Annotated[bool, _opt(RUN, "--quiet/--no-quiet", help="no progress display")] = False,
    as_json: Annotated[bool, _opt(RUN, "--json/--no-json", help="print the summary as JSON")] = False,
) -> None:
    """Train one run into a folder: summary.json, metrics.csv, step_losses.csv (paper §2, Figure 1).

    The files follow the epochs; Ctrl-C or SIGTERM leave an interrupted run that --resume continues.
    """
    from rethinkgen.train.config import TrainConfig

    if resume is not None:
        _refuse_config_options(ctx, allowed={"resume", "threads", "device", "data_dir", "quiet", "as_json",
                                             "tensorboard"})
        return _resume_run(resume, threads=threads, device=device if _given(ctx, "device") else None,
                           data_dir=data_dir, tensorboard=tensorboard, quiet=quiet, as_json=as_json)
    config = TrainConfig(
        data=data, data_dir=str(data_dir) if data_dir else None, data_options=_parse_options(data_option),
        n_train=n_train, n_test=n_test, corruption=corruption, level=level,
        exclude_true_class=exclude_true_class, model=model, dropout=dropout, epochs=epochs,
        batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay, lr_decay=lr_decay,
        lr_decay_every=lr_decay_every, augment=augment, flip=flip, target_train_acc=target_train_acc,
        log_every=log_every, eval_every=eval_every, seed=seed, device=device)
    _start_run(config, out=out, overwrite=overwrite, threads=threads, tensorboard=tensorboard, quiet=quiet,
               as_json=as_json)


# ------------------------------------------------------------------- train: the run folder's life
def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _refuse_config_options(ctx: typer.Context, allowed: set[str]) -> None:
    given = sorted(p.opts[0] for p in ctx.command.params
                   if p.name not in allowed and p.name != "ctx" and _given(ctx, p.name))
    if given:
        raise ConfigError(f"--resume continues the run with the config saved in its folder; drop "
                          f"{', '.join(given)} (only --threads, --device, --data-dir, --tensorboard, --quiet "
                          "and --json may be given with it)")


def _start_run(config, *, out: Path | None, overwrite: bool, threads: int | None, tensorboard: Path | None,
               quiet: bool, as_json: bool) -> None:
    """Validate, check the output folder, then train (every check before any work)."""
    from rethinkgen.train.config import run_key
    from rethinkgen.train.resolve import resolve_config
    from rethinkgen.train.run_dir import RunDir

    _check_threads(threads)
    _check_tensorboard(tensorboard)
    resolved = resolve_config(config)
    key = run_key(resolved)
    folder = RunDir(out or Path("runs") / key[:12])
    folder.prepare(key, overwrite=overwrite)  # takes the folder's lock
    try:
        _run_into(folder, resolved, state=None, threads=threads, tensorboard=tensorboard, quiet=quiet,
                  as_json=as_json)
    finally:
        folder.unlock()


def _resume_run(path: Path, *, threads: int | None, device: str | None, data_dir: Path | None,
                tensorboard: Path | None, quiet: bool, as_json: bool) -> None:
    from rethinkgen.train.run_dir import RunDir

    _check_threads(threads)
    _check_tensorboard(tensorboard)
    folder = RunDir(path)
    if folder.path.is_dir():
        folder.lock()  # released when the run ends (_run_into), or below on a refusal
    try:
        _resume_locked(folder, path, threads=threads, device=device, data_dir=data_dir, tensorboard=tensorboard,
                       quiet=quiet, as_json=as_json)
    finally:
        folder.unlock()


def _resume_locked(folder, path: Path, *, threads: int | None, device: str | None, data_dir: Path | None,
                   tensorboard: Path | None, quiet: bool, as_json: bool) -> None:
    from rethinkgen.train.run_dir import FINISHED

    config, state, old, unreadable = _load_resume(folder)
    if old.get("status") in FINISHED:
        say(err_console, f"{path} holds a finished run (status {old['status']}); nothing to resume")
        if as_json:
            print(json.dumps(old, indent=2))
        return
    changes = {k: v for k, v in (("device", device), ("data_dir", str(data_dir) if data_dir else None)) if v}
    config = config.replace(**changes) if changes else config
    saved = (state or {}).get("numerics") or {}
    threads = threads or saved.get("threads") or old.get("threads")  # the checkpoint's count first
    if state is not None:  # numerics refused here, before the folder is touched (train.numerics)
        from rethinkgen.train.numerics import check_resume, numerics_here

        here = numerics_here(config, threads=threads)
        if here is not None:
            check_resume(saved, here, run=f"the run in {path}", context="train")
    tensorboard = tensorboard or (Path(old["tensorboard"]) if old.get("tensorboard") else None)
    if state is None and unreadable:
        say(err_console, f"{path}: its checkpoint could not be read; starting the run again from epoch 0 (on the "
            "CPU it gives the same numbers again)")
    elif state is None:
        say(err_console, f"{path}: no checkpoint was saved (stopped before its first epoch); starting the run "
            "again")
    else:
        say(err_console, f"{path}: resuming after epoch {state['epoch']}")
    _run_into(folder, config, state=state, threads=threads, tensorboard=tensorboard, quiet=quiet, as_json=as_json)


def _load_resume(folder) -> tuple[Any, dict | None, dict, list[str]]:
    """``folder.load_resume()`` plus the notes on checkpoints it could not read, printed as one-line warnings
    (not Python warnings with a source line)."""
    import warnings

    from rethinkgen.sweep.checkpoint import CheckpointWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckpointWarning)
        config, state, old = folder.load_resume()
    notes = []
    for w in caught:
        if issubclass(w.category, CheckpointWarning):
            notes.append(str(w.message))
            say(err_console, f"[yellow]warning:[/] {escape(str(w.message))}")
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return config, state, old, notes


def _run_into(folder, config, *, state: dict | None, threads: int | None, tensorboard: Path | None, quiet: bool,
              as_json: bool) -> None:
    """Train ``config`` (from ``state`` if given) writing ``folder`` as it goes; exit 130 when
    interrupted and 1 when the run failed, after saving the last finished epoch."""
    import torch

    from rethinkgen.train.loop import train as train_run
    from rethinkgen.train.run_dir import RunDirWriter

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    extra: dict[str, Any] = {"threads": torch.get_num_threads()}
    if tensorboard is not None:
        extra["tensorboard"] = str(tensorboard)
    writer = RunDirWriter(folder, config, extra=extra)
    live = not quiet and not as_json and sys.stderr.isatty()
    callbacks: list[Any] = [writer, _WarnOnce()]
    if not quiet and not as_json and not live:
        callbacks.append(_ProgressLines(config))
    sink = None
    if tensorboard is not None:
        from rethinkgen.train.tensorboard import TensorBoardSink, run_folder

        sink = TensorBoardSink(run_folder(tensorboard, folder.path.resolve().name), fresh=state is None)
        callbacks.append(sink)
    try:
        writer.start(state)
        with _sigterm_as_interrupt():
            summary = train_run(config, callbacks=callbacks, resume=state, progress=live)
        writer.finish(summary)
    except KeyboardInterrupt:
        with _signals_ignored():
            writer.stop("interrupted")
        say(err_console, f"[yellow]interrupted[/] {_when(writer)}; saved in {folder.path}. "
            f"Continue with: rethinkgen train --resume {folder.path}")
        raise typer.Exit(130) from None
    except Exception as exc:
        with _signals_ignored():
            writer.stop("failed", exc)
        say(err_console, f"[red]failed[/] {_when(writer)}; what was done is saved in "
            f"{folder.path} (rethinkgen train --resume {folder.path} retries from there)")
        raise
    finally:
        torch.set_num_threads(before)
        if sink is not None:
            sink.close()
    if as_json:
        from rethinkgen.train.run_dir import public_summary

        print(json.dumps(public_summary({**summary, "threads": writer.extra["threads"]}), indent=2))
    else:
        print_summary(summary, folder.path)


def _check_tensorboard(tensorboard: Path | None) -> None:
    """TensorBoard importable and its folder writable, before any work."""
    if tensorboard is not None:
        from rethinkgen.files import ensure_writable_dir
        from rethinkgen.train.tensorboard import require_tensorboard

        require_tensorboard()
        ensure_writable_dir(tensorboard, "--tensorboard")


def _when(writer) -> str:
    return "before its first epoch" if writer.state is None else f"after epoch {writer.state['epoch']}"


def _check_threads(threads: int | None) -> None:
    from rethinkgen.train.validate import check_option

    check_option("--threads", threads, minimum=1, integer=True)


class _WarnOnce:
    """Print the run's warnings (e.g. a schedule that starves the learning rate, train.schedule) as soon as
    the data is loaded, before the first epoch trains: the run can be stopped at once."""

    def on_epoch_end(self, row: dict[str, Any], step_losses: list, trainer: Any) -> None:
        if row["epoch"] == 0:
            for warning in trainer.summary().get("warnings") or ():
                say(err_console, f"[yellow]warning:[/] {escape(warning)}")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a batch system's stop, `kill`) ends the run like Ctrl-C: saved, status interrupted."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_ignored():
    """A second Ctrl-C / SIGTERM must not cut the saving of the first one short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _ProgressLines:
    """Progress of a run when stderr is not a terminal (a batch job's log): one plain line for epoch 0,
    then at most one every ``every_s`` seconds, and the last epoch."""

    def __init__(self, config, every_s: float = 30.0, clock=None) -> None:
        import time

        self.total, self.every_s, self.clock = config.epochs, every_s, clock or time.monotonic
        self.last = -float("inf")

    def on_epoch_end(self, row: dict[str, Any], step_losses: list, trainer: Any) -> None:
        now = self.clock()
        status = trainer.history.status
        if now - self.last < self.every_s and status is None:
            return
        self.last = now
        loss = row.get("train_loss")
        text = (f"epoch {row['epoch']}/{self.total} · step {row['step']}"
                + (f" · loss {loss:.4f}" if loss is not None else "")
                + f" · train {_pct(row['train_acc'])} · test {_pct(row['test_acc'])}"
                + f" · {row.get('wall_time_s', 0.0):.1f} s"
                + (f" · {status}" if status else ""))
        print(text, file=sys.stderr, flush=True)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def print_summary(summary: dict[str, Any], folder: Path | None = None) -> None:
    c = summary["config"]
    table = Table(title=f"{c['model']} on {c['data']} · {c['corruption']}"
                  + (f" (p={c['level']:g})" if c["corruption"] == "partial_labels" else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("status", summary["status"])
    diverged = summary["status"] == "diverged"  # accuracies of NaN outputs (one class): not results
    table.add_row("train accuracy (labels trained on)", "– (diverged)" if diverged else _pct(summary["train_acc"]))
    table.add_row("test accuracy (true labels)", "– (diverged)" if diverged else _pct(summary["test_acc"]))
    table.add_row("convergence step", str(summary["converged_step"] or "–"))
    table.add_row("epochs / steps", f"{summary['epochs']} / {summary['steps']}")
    table.add_row("realized noise rate", f"{summary['realized_noise_rate']:.4f}")
    table.add_row("parameters", f"{summary['n_params']:,}")
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s on {summary['device']}")
    console.print(table)
    if diverged:
        say(console, f"[yellow]diverged:[/] the loss became NaN or infinite by epoch {summary['epochs']}, so the "
            f"network's outputs are not numbers and its accuracies are not results; a smaller --lr (now "
            f"{c['lr']:g}) usually avoids it")
    for warning in summary.get("warnings") or ():
        say(console, f"[yellow]warning:[/] {escape(warning)}")
    if folder is not None:
        say(console, f"wrote {folder}/summary.json, metrics.csv and step_losses.csv")


# -------------------------------------------------------------------------------- optional parts
def _mount_optional() -> None:
    """Mount the sweep, report and theory commands (each lives in its own part of the package)."""
    from rethinkgen.report.cli import report_command
    from rethinkgen.sweep.cli import export_command, sweep_app
    from rethinkgen.theory.cli import kernel_app, theory_app

    app.add_typer(sweep_app, name="sweep", help="Run a grid of runs from a TOML spec into a results store.")
    app.command("export")(export_command)
    app.command("report")(report_command)
    app.add_typer(theory_app, name="theory", help="Theorem 1: exact finite-sample interpolation; SGD min-norm.")
    app.add_typer(kernel_app, name="kernel", help="Section 5: min-norm kernel interpolation.")
    _mount_measures()


def _mount_measures() -> None:
    """``rethinkgen measure`` and ``rethinkgen list measures`` (generalization measures, rethinkgen.measures)."""
    from rethinkgen.measures.cli import list_measures_command, measure_command

    app.command("measure")(measure_command)
    list_app.command("measures")(list_measures_command)


_mount_optional()

from rethinkgen.demo import demo_command  # noqa: E402

app.command("demo")(demo_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
