"""``build_report(store, out_dir)``: read a results store, write figures, tables and ``index.html``.

Runs are grouped by dataset. Every dataset gets Figures 1a/1b/1c/2, Table 1, the corruption-level
table and the per-run summary; paper columns appear only for the paper's data (Table 1: CIFAR-10;
kernel table: MNIST and CIFAR-10). Runs that are not evidence (diverged, failed, unfinished; see
``evidence.py``) are listed with their status, never plotted, averaged or counted in a finding.

A dataset's section is made by the functions of :data:`SECTION_PARTS`, in order; another part adds
its own (``SECTION_PARTS.append(fn)``; ``fn(data, runs, out)`` writes its files into ``out`` and
returns ``FigureEntry`` / ``TableEntry`` items, shown in that order). Output files
(all in ``out_dir``): ``index.html``, ``fig1a_<data>.png`` ..., ``table1_<data>.csv|.md``,
``levels_<data>.csv|.md``, ``runs_<data>.csv|.md``, ``table3_kernels.csv|.md``, and where the store
holds generalization measures ``measures_<data>.csv|.md|.png`` (section of :mod:`rethinkgen.report.measures`).
"""

from __future__ import annotations

import datetime as _dt
import platform
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rethinkgen.errors import ConfigError
from rethinkgen.report import figures, findings, measures, tables
from rethinkgen.report.evidence import REASONS, evidence_status, is_evidence, left_out_text
from rethinkgen.report.html import FigureEntry, Page, Section, TableEntry, render
from rethinkgen.report.runs import by_data, cfg, finite, run_wall_time, seeds_of, slug
from rethinkgen.report.style import save

PAPER_DATA = "cifar10"  # Table 1 and Figures 1/2 are compared with the paper only on this dataset


def load_store(store_path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(runs, kernel results) of a store; each run carries its ``history`` and ``step_losses``.

    Raises the store's RethinkgenError (naming the fix) when ``store_path`` is not a results store.
    """
    from rethinkgen.sweep.store import Store

    with Store.open(store_path, readonly=True) as store:
        runs = store.runs()
        for run in runs:
            run["history"] = store.epoch_rows(run["run_key"])
            run["step_losses"] = store.step_losses(run["run_key"])
        measures.attach_measures(store, runs)
        kernels = store.kernel_results()
    return runs, kernels


def build_report(store_path: str | Path, out_dir: str | Path, *, embed_images: bool = False) -> Path:
    """Write the report of the store at ``store_path`` into ``out_dir``; return the path of index.html.

    ``embed_images`` also puts every PNG into the page as a base64 data URI (one file to share); the
    PNGs are written either way.
    """
    runs, kernels = load_store(store_path)
    return build_from_data(runs, kernels, out_dir, source=str(store_path), embed_images=embed_images)


def build_from_data(runs: Sequence[dict], kernel_results: Sequence[dict], out_dir: str | Path, *,
                    source: str = "(in memory)", embed_images: bool = False) -> Path:
    """The report of plain run dicts (see ``runs.py``) and kernel-result dicts; returns index.html."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder for the report (it is created if missing)")
    out.mkdir(parents=True, exist_ok=True)
    evidence = [r for r in runs if is_evidence(r)]
    left_out = [r for r in runs if not is_evidence(r)]
    sections = [_section(data, group, out) for data, group in by_data(runs).items()]
    kernel_entry = _table_entry(tables.table3(kernel_results), out) if kernel_results else None
    messages = []
    empty = not runs and not kernel_results
    if empty:
        messages.append(f"The store {source} holds no runs and no kernel results yet, so there is nothing "
                        "to report. Fill it with `rethinkgen sweep run configs/quick.toml --store "
                        f"{source}` (or `rethinkgen kernel fit ... --store {source}`), then run "
                        f"`rethinkgen report --store {source} --out {out}` again.")
    elif runs and not evidence:
        messages.append(f"None of the {len(runs)} runs in the store finished as intended yet "
                        f"({left_out_text(runs)}): there are no results to plot. The runs are listed at the "
                        "end of the page.")
    if left_out and evidence:
        counts = Counter(str(r.get("status")) for r in left_out)
        messages.append(f"{len(left_out)} of {len(runs)} runs are not evidence ("
                        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                        + "). They are listed at the end with their status and left out of every figure, "
                        "table cell and finding"
                        + ("; rerun the sweep to resume the unfinished ones." if any(
                            evidence_status(r) == "unfinished" for r in left_out) else "."))
    if runs and not kernel_results:
        messages.append("No kernel results in this store (the paper's Section 5: 1.2% and 0.6% on MNIST, "
                        "46%, 17% and 15% on CIFAR-10); add them with `rethinkgen kernel fit ... --store "
                        f"{source}`.")
    page = Page(
        source=source,
        generated_at=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        provenance=provenance(runs, kernel_results),
        sections=sections,
        kernel_table=kernel_entry,
        unfinished=[_left_out_row(r) for r in left_out],
        messages=messages,
        empty=empty,
    )
    index = out / "index.html"
    text = measures.add_section(render(page, out, embed=embed_images), runs, out, embed=embed_images)
    index.write_text(text, encoding="utf-8")
    return index


def _table_entry(table: tables.Table, out: Path) -> TableEntry:
    csv_path, md_path = table.write(out)
    return TableEntry(table, csv_path.name, md_path.name)


def _figures_part(data: str, runs: list[dict], out: Path) -> list:
    entries = []
    for plot in figures.all_figures(runs, data):
        image = None
        if plot.figure is not None:
            image = f"{plot.key}_{slug(data)}.png"
            save(plot.figure, out / image)
        entries.append(FigureEntry(plot, image))
    return entries


def _tables_part(data: str, runs: list[dict], out: Path) -> list:
    entries = []
    for table in (tables.table1(runs, data, compare=data == PAPER_DATA), tables.table_levels(runs, data)):
        if table.rows:
            entries.append(_table_entry(table, out))
    return entries


def _table2_part(data: str, runs: list[dict], out: Path) -> list:
    """ImageNet: the paper's Table 2 beside our Inception V3 runs (rethinkgen.report.table2)."""
    from rethinkgen.report.table2 import TABLE2_DATA, table2

    return [_table_entry(table2(runs, data), out)] if data == TABLE2_DATA else []


#: The parts of a dataset's section, in order: each ``fn(data, runs, out)`` returns FigureEntry and
#: TableEntry items (written into ``out``) that the page shows after the findings.
SECTION_PARTS: list[Callable[[str, list[dict], Path], list]] = [_figures_part, _table2_part, _tables_part]


def _section(data: str, runs: list[dict], out: Path) -> Section:
    compare = data == PAPER_DATA
    items = [item for part in SECTION_PARTS for item in part(data, runs, out)]
    summary = _table_entry(tables.summary_table(runs, data), out)
    return Section(data=data, compare=compare, n_runs=len(runs),
                   figures=[i for i in items if isinstance(i, FigureEntry)],
                   tables=[i for i in items if isinstance(i, TableEntry)],
                   findings=findings.all_findings(runs), summary=summary, items=items)


def _left_out_row(run: dict) -> dict[str, Any]:
    history = run.get("history") or []
    error = run.get("error")
    if error and len(error) > 3000:
        error = "…" + error[-3000:]
    state = evidence_status(run)
    return {"name": run.get("name") or run.get("run_key"), "data": cfg(run, "data"),
            "status": run.get("status"), "attempts": run.get("attempts"),
            "epochs_done": max((row.get("epoch") or 0 for row in history), default=0),
            "why": REASONS.get(state), "error": error}


def _distinct(values: Sequence[Any]) -> str:
    seen = sorted({str(v) for v in values if v not in (None, "")})
    return "; ".join(seen) if seen else "not recorded"


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours} h {minutes} min" if hours else f"{minutes} min {sec} s") + f" ({seconds:,.0f} s)"


def _numerics(runs: Sequence[dict]) -> str:
    """How the runs were computed (``rethinkgen.train.numerics``: device type, autocast dtype, threads, ...), each
    way with its number of runs, e.g. ``cpu, bf16 autocast, 1 thread (1 run); cpu, float32, 2 threads (5 runs)``:
    the device a run was given ("auto", "cpu") does not say its precision (``TrainConfig.precision``)."""
    from rethinkgen.train.numerics import describe

    counts = Counter(describe(r["numerics"]) for r in runs if r.get("numerics"))
    return "; ".join(f"{text} ({n} run{'s' if n != 1 else ''})" for text, n in sorted(counts.items())) \
        or "not recorded"


def provenance(runs: Sequence[dict], kernel_results: Sequence[dict]) -> list[tuple[str, str]]:
    """What the report was made from: runs, seeds, hardware, devices and numerics, versions, total compute
    time."""
    import matplotlib

    import rethinkgen

    counts = Counter(str(r.get("status")) for r in runs)
    run_time = sum(run_wall_time(r) for r in runs)
    kernel_time = sum(float(k["time_s"]) for k in kernel_results if finite(k.get("time_s")))
    items = [
        ("runs", f"{len(runs)}" + (" (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")"
                                   if runs else "")),
        ("datasets", _distinct([cfg(r, "data") for r in runs])),
        ("models", _distinct([cfg(r, "model") for r in runs])),
        ("sweeps", _distinct([r.get("sweep") for r in runs])),
        ("seeds", ", ".join(str(s) for s in seeds_of(runs)) or "none"),
        ("kernel results", str(len(kernel_results))),
        ("hardware", _distinct([r.get("hardware") for r in runs]
                               + [k.get("hardware") for k in kernel_results])),
        ("devices", _distinct([r.get("device") for r in runs])),
        ("numerics", _numerics(runs)),
        ("torch version", _distinct([r.get("torch_version") for r in runs]
                                    + [k.get("torch_version") for k in kernel_results])),
        ("code version", _distinct([r.get("code_version") for r in runs]
                                   + [k.get("code_version") for k in kernel_results])),
        ("total compute time", _duration(run_time + kernel_time)
         + f" — training {_duration(run_time)}, kernels {_duration(kernel_time)}"),
        ("report made with", f"rethinkgen {getattr(rethinkgen, '__version__', '?')}, Python "
                             f"{platform.python_version()}, matplotlib {matplotlib.__version__}"),
    ]
    return items
