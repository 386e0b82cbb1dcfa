"""``rethinkgen report --store PATH --out DIR``: the paper's figures and tables from a results store.

The lead's CLI mounts :func:`report_command` as the ``report`` command; it is also a plain function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report_command(
    store: Annotated[Path, typer.Option("--store", help="results store (SQLite file) written by "
                                        "`rethinkgen sweep run` / `rethinkgen kernel fit`")],
    out: Annotated[Path, typer.Option("--out", help="folder for index.html, the PNG figures and the "
                                      "CSV/Markdown tables (created if missing)")] = Path("report"),
    embed: Annotated[bool, typer.Option("--embed/--no-embed", help="also embed the figures in index.html "
                                        "as data URIs, so the page alone carries everything")] = False,
) -> Path:
    """Write Figures 1a-1c, Figure 2, Table 1 and the kernel table (beside the paper's numbers) as HTML."""
    from rethinkgen.files import ensure_writable_dir
    from rethinkgen.report.build import build_report
    from rethinkgen.sweep.cli import open_results_store

    open_results_store(store).close()  # what is not a results store (empty, missing, foreign) fails here
    ensure_writable_dir(out, "--out")  # and so does a read-only --out: before any figure is drawn
    index = build_report(store, out, embed_images=embed)
    typer.echo(f"report written: {index}")
    typer.echo(f"open it in a browser: {index.resolve().as_uri()}")
    return index
