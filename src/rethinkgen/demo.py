"""``rethinkgen demo``: the paper's randomization tests on the offline MNIST-1D, end to end.

Runs the ready spec ``configs/quick.toml`` (MLP and 1-D CNN: corruption types, label-corruption
levels, a small regularizer ablation) into a results store, then builds the HTML report. Runs that
are already in the store are skipped, so a second call only rebuilds the report.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()


def quick_spec_path() -> Path:
    """The packaged ``configs/quick.toml``."""
    return Path(str(resources.files("rethinkgen") / "configs" / "quick.toml"))


def demo_command(
    out: Annotated[Path, typer.Option(help="folder for the results store and the report")] = Path("rethinkgen-demo"),
    spec: Annotated[Path | None, typer.Option(help="sweep spec [default: configs/quick.toml]")] = None,
    jobs: Annotated[int, typer.Option(help="worker processes")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", help="no live display")] = False,
) -> None:
    """Run configs/quick.toml on mnist1d (offline, CPU) and write the report; prints where index.html is."""
    from rethinkgen.report.build import build_report
    from rethinkgen.sweep.runner import run_sweep

    spec = spec or quick_spec_path()
    out.mkdir(parents=True, exist_ok=True)
    store = out / "results.sqlite"
    console.print(f"[bold]rethinkgen demo[/]: {spec.name} → {store}")
    run_sweep(spec, store, jobs=jobs, quiet=quiet)
    index = build_report(store, out / "report")
    console.print(f"\n[bold green]report:[/] {index.resolve()}")
