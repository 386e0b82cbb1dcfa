"""The ``rethinkgen`` command line: thin, it parses, calls the library and prints.

Errors derived from RethinkgenError are printed as one message naming the fix and exit with status 2.
"""

from __future__ import annotations

import os

# Passive OpenMP waits (before torch is imported): spinning threads are 15-20x slower on a busy CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from rethinkgen.cli_help import PlainHelpGroup
from rethinkgen.console import console, err_console, say  # noqa: E402  (names kept: tests patch them here)
from rethinkgen.errors import RethinkgenError
from rethinkgen.train.cli import _parse_options, print_summary, train  # noqa: E402,F401  (print_summary: API)


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
    """Models with their parameter counts (without BatchNorm's affine parameters, as Table 1 counts; inception_v3
    and resnet50 with them, as torchvision counts)."""
    from rethinkgen.models import MODELS, describe_models

    rows = [[info.name, ", ".join(info.layouts), f"{info.params:,}",
             f"{info.paper_params:,}" if info.paper_params else "–", f"{MODELS.get(info.name).paper_lr:g}",
             info.description] for info in describe_models(pattern)]
    _print_listing(["name", "inputs", "params", "Table 1", "paper lr", "description"], rows)
    console.print("params: on 3×28×28 images (the paper's CIFAR-10 crop) or (1, 40) signals; 10 classes; "
                  "Table 1: the paper's count; inception_v3 / resnet50 on 3×299×299 / 3×224×224, 1000 classes, "
                  "BatchNorm γ/β counted as torchvision counts them", highlight=False)


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
                                              "fashion_mnist; imagenet is only looked for, never downloaded)",
                                        show_default=False)],
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
    from rethinkgen.data.describe import inspect_dataset, inspect_streamed, inspection_rows
    from rethinkgen.data.sources import DATASETS, load_dataset

    spec = DATASETS.get(name)
    if spec.index is not None:  # streamed from disk (imagenet): described from its file lists
        info = inspect_streamed(name, spec.index(data_dir, seed, n_train=n_train, n_test=n_test), spec.crop)
    else:
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
app.command()(train)  # rethinkgen.train.cli: the command, its options and the run folder's life


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
