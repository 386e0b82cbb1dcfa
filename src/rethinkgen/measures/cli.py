"""``rethinkgen measure --store PATH`` and ``rethinkgen list measures`` (thin: parse, call, print)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["list_measures_command", "measure_command"]


def list_measures_command(pattern: Annotated[str, typer.Argument(help="shell pattern, e.g. 'pacbayes*'")] = "*",
                          ) -> None:
    """Generalization measures: name, units, cost, reference, definition (docs/sections/measures.md)."""
    from rethinkgen.cli import _print_listing, console
    from rethinkgen.measures import describe_measures

    rows = [[spec.name, spec.units, spec.cost, spec.reference, f"{spec.description}: {spec.formula}"]
            for spec in describe_measures(pattern)]  # plain text: _print_listing escapes console markup
    _print_listing(["name", "units", "cost", "reference", "definition"], rows)
    console.print("cost: weights = from the weights alone; forward = passes over the training data; search = "
                  "many passes (sharpness, PAC-Bayes), on a seeded training subset", highlight=False)


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or ["all"]:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out


def measure_command(
    store: Annotated[Path, typer.Option("--store", help="results store written by `rethinkgen sweep run`")],
    measures: Annotated[list[str] | None, typer.Option("--measures", "-m", help="measure names, comma-separated "
                        "or repeated (rethinkgen list measures); default: all")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    subset: Annotated[int, typer.Option(help="training samples for sharpness, PAC-Bayes flatness and the "
                                        "input gradient (seeded)")] = 2048,
    force: Annotated[bool, typer.Option("--force", help="recompute measures already stored")] = False,
) -> None:
    """Measure every finished run of a store from its saved final checkpoint; skips what is stored."""
    from rich.console import Console
    from rich.markup import escape

    from rethinkgen.measures import validate_names
    from rethinkgen.measures.context import MeasureSettings
    from rethinkgen.measures.records import measure_store

    names = validate_names(_split(measures))  # unknown names fail here, before any work
    settings = MeasureSettings(subset=subset)
    console = Console()

    def report(run: dict, results: list) -> None:
        total = sum(r.seconds for r in results)
        errors = [r.name for r in results if r.error]
        console.print(f"  {run.get('name') or run['run_key'][:12]}: {len(results)} measure(s) in {total:.1f} s"
                      + (f"; failed: {', '.join(errors)}" if errors else ""), highlight=False)

    console.print(f"measuring {len(names)} measure(s) of the finished runs in {store}", highlight=False)
    result = measure_store(store, names, device=device, force=force, settings=settings, on_run=report)
    console.print(f"measured {result.measured} run(s), {result.skipped} already had them; {result.seconds:.1f} s",
                  highlight=False)
    for name, n in sorted(result.failed.items()):
        console.print(f"[yellow]{name} failed on {n} run(s); its error is stored in the measures table "
                      "(`rethinkgen export`)[/]")
    for line in result.unusable:
        console.print(f"[red]cannot measure {escape(line)}[/]", highlight=False)
    if result.unusable:
        console.print("[yellow]those runs' checkpoints do not fit the model or data this code builds (a checkpoint "
                      "of another code version, or the data moved); the other runs were measured. Rerun the "
                      "sweep into a new store with this code, or measure with the code version that trained "
                      "them.[/]", highlight=False)
    if result.no_checkpoint or result.unusable:
        if not result.no_checkpoint:
            raise typer.Exit(1)
        shown = ", ".join(result.no_checkpoint[:5]) + (" …" if len(result.no_checkpoint) > 5 else "")
        console.print(f"[yellow]{len(result.no_checkpoint)} run(s) have no checkpoint of their final epoch ({shown}). "
                      "A sweep deletes a run's checkpoint when it finishes unless run with --keep-checkpoints. To "
                      "measure such runs, add `measures = [...]` to the spec and run it into a new store (the "
                      "measures are then computed as each run ends), or keep checkpoints in future sweeps.[/]",
                      highlight=False)
        raise typer.Exit(1)
