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


def say(text: str) -> None:
    """One message; one line when not on a terminal (a log file), never folded at 80 columns."""
    console.print(text, highlight=False, soft_wrap=not console.is_terminal)


def quick_spec_path() -> Path:
    """The packaged ``configs/quick.toml``."""
    return Path(str(resources.files("rethinkgen") / "configs" / "quick.toml"))


def demo_command(
    out: Annotated[Path, typer.Option(help="folder for the results store and the report")] = Path("rethinkgen-demo"),
    spec: Annotated[Path | None, typer.Option(help="sweep spec [default: configs/quick.toml]")] = None,
    jobs: Annotated[int | None, typer.Option(help="worker processes [default: one per core, at most 2]",
                                             show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet/--no-quiet", help="log lines instead of the live display")]
    = False,
) -> None:
    """Run configs/quick.toml on mnist1d (offline, CPU) and write the report; prints where index.html is."""
    import os
    import time

    from rethinkgen.files import ensure_writable_dir
    from rethinkgen.report.build import build_report
    from rethinkgen.sweep.executors import make_executor
    from rethinkgen.sweep.progress import SweepDisplay
    from rethinkgen.sweep.runner import run_sweep
    from rethinkgen.sweep.spec import load_spec
    from rethinkgen.train.validate import check_option

    check_option("--jobs", jobs, minimum=1, integer=True)
    t0 = time.perf_counter()
    spec = spec or quick_spec_path()
    plan = load_spec(spec)
    ensure_writable_dir(out, "--out")
    store = out / "results.sqlite"
    jobs = jobs or max(1, min(2, os.cpu_count() or 1))
    say(f"[bold]rethinkgen demo[/]: {len(plan.runs)} runs of {spec.name} → {store} ({jobs} workers)")
    display = SweepDisplay(console, quiet=True if quiet else None)
    # Runs of a few seconds: a checkpoint every 25 epochs bounds the work lost to a crash at seconds.
    result = run_sweep(plan, store, executor=make_executor("local", jobs=jobs), display=display,
                       checkpoint_every=25)
    index = build_report(store, out / "report")
    console.print()
    say(f"{len(plan.runs) - len(result.failed)} of {len(plan.runs)} runs done "
        f"({time.perf_counter() - t0:.0f} s in all). [bold green]Report:[/] {index.resolve()}")
