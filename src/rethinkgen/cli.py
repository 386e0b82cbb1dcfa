"""The ``rethinkgen`` command line: thin, it parses, calls the library and prints.

Errors derived from RethinkgenError are printed as one message naming the fix and exit with status 2.
"""

from __future__ import annotations

import os

# Passive OpenMP waits (before torch is imported): spinning threads are 15-20x slower on a busy CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import csv  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from rethinkgen.errors import ConfigError, RethinkgenError

console = Console()
err_console = Console(stderr=True)


class _FriendlyErrors(typer.core.TyperGroup):
    """Turn RethinkgenError anywhere below into a one-line message and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RethinkgenError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, markup=True)
            raise typer.Exit(2) from None


app = typer.Typer(cls=_FriendlyErrors, no_args_is_help=True, add_completion=False,
                  help="Randomization tests of Zhang et al., 'Understanding deep learning requires "
                       "rethinking generalization' (ICLR 2017): train, sweep, report, theory.")
list_app = typer.Typer(no_args_is_help=True, help="List the registered datasets, models, corruptions and measures.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch and inspect datasets.")
app.add_typer(list_app, name="list")
app.add_typer(data_app, name="data")


# ------------------------------------------------------------------------------------------- list
WIDE = 110  # console columns below which a listing puts the descriptions under the table


def _print_listing(columns: list[str], rows: list[list[str]]) -> None:
    """A table whose last column is a description; on a narrow console the descriptions follow the table
    as "name: description" lines instead of wrapping into a column a few characters wide."""
    wide = console.width >= WIDE
    shown = columns if wide else columns[:-1]
    table = Table(*shown) if wide else Table(*shown, box=box.SIMPLE_HEAD, pad_edge=False)
    table.columns[0].no_wrap = True  # names are never cut or folded
    for column in table.columns:
        column.overflow = "fold"  # wrap long values, never end them with "…"
    for row in rows:
        table.add_row(*(row if wide else row[:-1]))
    console.print(table)
    if not wide:
        for row in rows:
            console.print(f"[bold]{row[0]}[/]: {row[-1]}", highlight=False)


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

    rows = [[info.name, "/".join(info.layouts), f"{info.params:,}",
             f"{info.paper_params:,}" if info.paper_params else "–", f"{MODELS.get(info.name).paper_lr:g}",
             info.description] for info in describe_models(pattern)]
    _print_listing(["name", "inputs", "params", "paper (Table 1)", "paper lr", "description"], rows)
    console.print("params: on 3×28×28 images (the paper's CIFAR-10 crop) or (1, 40) signals; 10 classes")


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
def data_fetch(name: str, data_dir: Annotated[Path | None, typer.Option(help="target folder")] = None) -> None:
    """Download a dataset into --data-dir and verify its checksum."""
    from rethinkgen.data.sources import default_data_dir, fetch_dataset

    folder = fetch_dataset(name, data_dir or default_data_dir())
    console.print(f"{name}: ready in {folder}")


# ------------------------------------------------------------------------------------------ train
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


@app.command()
def train(
    data: Annotated[str, typer.Option(help="dataset name (rethinkgen list datasets)")] = "mnist1d",
    model: Annotated[str, typer.Option(help="model name (rethinkgen list models)")] = "mlp_1x512",
    corruption: Annotated[str, typer.Option(help="corruption name (rethinkgen list corruptions)")] = "true_labels",
    level: Annotated[float | None, typer.Option(help="label-corruption probability p (partial_labels)")] = None,
    seed: Annotated[int, typer.Option(help="the run's seed")] = 0,
    epochs: Annotated[int | None, typer.Option(help="maximum epochs [default: per dataset]")] = None,
    batch_size: Annotated[int, typer.Option(help="samples per SGD step")] = 128,
    lr: Annotated[float | None, typer.Option(help="initial learning rate [default: per dataset/model]")] = None,
    momentum: Annotated[float, typer.Option(help="SGD momentum")] = 0.9,
    weight_decay: Annotated[float, typer.Option(help="L2 coefficient")] = 0.0,
    lr_decay: Annotated[float, typer.Option(help="learning-rate decay factor")] = 0.95,
    lr_decay_every: Annotated[int | None, typer.Option(help="samples per decay; 0: per epoch")] = None,
    augment: Annotated[bool, typer.Option("--augment", help="random-crop augmentation (images)")] = False,
    flip: Annotated[bool, typer.Option("--flip", help="random horizontal flips (images)")] = False,
    dropout: Annotated[float, typer.Option(help="dropout probability in hidden layers")] = 0.0,
    target_train_acc: Annotated[float, typer.Option(help="stop at this training accuracy (0-1)")] = 1.0,
    n_train: Annotated[int | None, typer.Option(help="use a seeded subset of the training set")] = None,
    n_test: Annotated[int | None, typer.Option(help="use a seeded subset of the test set")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="folder of file-based datasets")] = None,
    data_option: Annotated[list[str] | None, typer.Option(help="source option KEY=VALUE, repeatable")] = None,
    exclude_true_class: Annotated[bool, typer.Option(help="corrupted labels always differ")] = False,
    log_every: Annotated[int, typer.Option(help="steps between recorded training losses")] = 10,
    device: Annotated[str, typer.Option(help="auto|cpu|cuda|mps")] = "auto",
    out: Annotated[Path | None, typer.Option(help="output folder [default: runs/<run key>]")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Train one run and write DIR/summary.json and DIR/metrics.csv (paper §2, Figure 1)."""
    from rethinkgen.train.config import TrainConfig
    from rethinkgen.train.loop import train as train_run

    config = TrainConfig(
        data=data, data_dir=str(data_dir) if data_dir else None, data_options=_parse_options(data_option),
        n_train=n_train, n_test=n_test, corruption=corruption, level=level,
        exclude_true_class=exclude_true_class, model=model, dropout=dropout, epochs=epochs,
        batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay, lr_decay=lr_decay,
        lr_decay_every=lr_decay_every, augment=augment, flip=flip, target_train_acc=target_train_acc,
        log_every=log_every, seed=seed, device=device)
    summary = train_run(config, progress=not quiet and not as_json and sys.stderr.isatty())
    folder = out or Path("runs") / summary["run_key"][:12]
    write_run_outputs(summary, folder)
    if as_json:
        print(json.dumps(public_summary(summary), indent=2))
    else:
        print_summary(summary, folder)


def public_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without the per-epoch history (which goes to metrics.csv)."""
    return {k: v for k, v in summary.items() if k not in ("metrics", "step_losses")}


def write_run_outputs(summary: dict[str, Any], folder: Path) -> None:
    """DIR/summary.json, DIR/metrics.csv (one row per epoch) and DIR/step_losses.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(public_summary(summary), indent=2) + "\n")
    rows = summary["metrics"]
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(folder / "step_losses.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss"])
        writer.writerows(summary["step_losses"])


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def print_summary(summary: dict[str, Any], folder: Path | None = None) -> None:
    c = summary["config"]
    table = Table(title=f"{c['model']} on {c['data']} · {c['corruption']}"
                  + (f" (p={c['level']:g})" if c["corruption"] == "partial_labels" else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("status", summary["status"])
    table.add_row("train accuracy (labels trained on)", _pct(summary["train_acc"]))
    table.add_row("test accuracy (true labels)", _pct(summary["test_acc"]))
    table.add_row("convergence step", str(summary["converged_step"] or "–"))
    table.add_row("epochs / steps", f"{summary['epochs']} / {summary['steps']}")
    table.add_row("realized noise rate", f"{summary['realized_noise_rate']:.4f}")
    table.add_row("parameters", f"{summary['n_params']:,}")
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s on {summary['device']}")
    console.print(table)
    if folder is not None:
        console.print(f"wrote {folder}/summary.json and {folder}/metrics.csv")


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
