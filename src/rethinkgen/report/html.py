"""Render the report as one self-contained ``index.html`` (no scripts, no external resources).

Every string that comes from a config, a run or the store passes through :func:`esc`
(``html.escape`` with quotes), so a run named ``<script>alert(1)</script>`` shows as text. Images are
PNG files beside the page (``<img src="fig1a_mnist1d.png">``), or base64 ``data:`` URIs with
``embed=True`` so that the page alone carries everything.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rethinkgen.report import paper
from rethinkgen.report.figures import Plot
from rethinkgen.report.findings import Finding
from rethinkgen.report.runs import slug
from rethinkgen.report.tables import Table

NUMERIC_KINDS = ("pct", "delta", "int", "float", "sci", "seconds", "ratio")
#: Columns of free text that may be long (run names, setting lists): they wrap anywhere if they must.
LONG_TEXT = ("name", "variant", "features", "error")
_BREAK_AFTER = re.compile(r"([_/,=.;])")


def esc(value: Any) -> str:
    """HTML-escape any value (quotes included, so it is safe inside attributes too)."""
    return html.escape("" if value is None else str(value), quote=True)


@dataclass
class FigureEntry:
    plot: Plot
    image: str | None  # PNG file name in the report folder (None: no figure, see plot.reason)


@dataclass
class TableEntry:
    table: Table
    csv: str  # file names in the report folder
    md: str


@dataclass
class Section:
    """Everything shown for one dataset: the findings, then ``items`` (figures and tables) in order."""

    data: str
    compare: bool  # paper columns shown (the paper's data)
    n_runs: int
    figures: list[FigureEntry]
    tables: list[TableEntry]
    findings: list[Finding]
    summary: TableEntry | None = None
    items: list[FigureEntry | TableEntry] | None = None  # display order (None: figures, then tables)


@dataclass
class Page:
    source: str  # the store path, as given
    generated_at: str
    provenance: list[tuple[str, str]]  # (label, value), all shown escaped
    sections: list[Section]
    kernel_table: TableEntry | None
    unfinished: list[dict[str, Any]]  # runs that are not evidence: name, status, attempts, why, error
    messages: list[str] = field(default_factory=list)  # shown at the top (empty / partial store)
    empty: bool = False


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1280px;
padding:1.2rem 1.5rem 3rem;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}
h2{border-bottom:2px solid #0072B2;padding-bottom:.2rem;margin-top:2.4rem}
h3{margin-top:1.8rem}.sub{color:#555;margin-top:0}
.box{background:#f5f7fa;border:1px solid #d8dee6;border-radius:6px;padding:.7rem 1rem;margin:1rem 0}
.warn{background:#fff6e5;border-color:#E69F00}.empty{background:#fdeeee;border-color:#D55E00;font-size:1.1rem}
dl.prov{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:.2rem 0}
dl.prov dt{font-weight:600}dl.prov dd{margin:0}
figure{margin:1.2rem 0}figure img{max-width:100%;height:auto;border:1px solid #e3e3e3;box-sizing:border-box}
figcaption{color:#333;font-size:.92rem;max-width:1000px}
.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;font-size:.8rem;margin:.4rem 0}
th,td{border:1px solid #d0d0d0;padding:.2rem .35rem;text-align:left;vertical-align:top}
th{background:#eef2f6;hyphens:auto}td.long{overflow-wrap:anywhere;min-width:8rem}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.notrun td{color:#888;font-style:italic}.ok{color:#009E73;font-weight:700}
.bad{color:#D55E00;font-weight:700}
.unk{color:#888;font-weight:700}ul.notes{font-size:.85rem;color:#444}code{background:#f0f0f0;padding:0 .2rem}
pre{white-space:pre-wrap;font-size:.8rem;max-height:10rem;overflow:auto;background:#f7f7f7;padding:.4rem}
"""


def _img_src(image: str, out_dir: Path, embed: bool) -> str:
    if embed:
        data = base64.b64encode((out_dir / image).read_bytes()).decode("ascii")
        return f"data:image/png;base64,{data}"
    return image


def _cell(text: str, kind: str, *, long: bool = False) -> str:
    """One table cell: numbers right-aligned on one line; text escaped, with line-break opportunities
    after ``_ / , = . ;`` (so ``inception_small_nobn`` or a run name can wrap without a scrollbar)."""
    if kind in NUMERIC_KINDS:
        return f"<td class=num>{esc(text)}</td>"
    body = _BREAK_AFTER.sub(r"\1<wbr>", esc(text)) if len(text) > 12 else esc(text)
    return f'<td class="long">{body}</td>' if long else f"<td>{body}</td>"


def render_table(entry: TableEntry) -> str:
    t = entry.table
    parts = [f'<h3 id="{esc(t.key)}">{esc(t.title)}</h3>',
             f'<p class="sub">Files: <a href="{esc(entry.csv)}">{esc(entry.csv)}</a> · '
             f'<a href="{esc(entry.md)}">{esc(entry.md)}</a></p>']
    if not t.rows:
        parts.append("<p>No rows: the store holds no runs for this table.</p>")
        return "\n".join(parts)
    columns = [c for c in t.columns if c.on_page]
    head = "".join(f"<th>{esc(c.title)}</th>" for c in columns)
    body = []
    for row in t.rows:
        cls = ' class="notrun"' if row.get("status") == "not run" else ""
        cells = "".join(_cell(t.cell(row, c), c.kind, long=c.key in LONG_TEXT) for c in columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    parts.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
                 + "\n".join(body) + "</tbody></table></div>")
    notes = list(t.notes)
    hidden = [c.title for c in t.columns if not c.on_page]
    if hidden:
        notes.append(f"also in the CSV and Markdown files: {', '.join(hidden)}")
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return "\n".join(parts)


def render_figure(entry: FigureEntry, out_dir: Path, embed: bool) -> str:
    plot = entry.plot
    if entry.image is None:
        return (f'<h3>{esc(plot.title)}</h3><p class="box">Not drawn: {esc(plot.reason)}.</p>')
    parts = [f"<h3>{esc(plot.title)}</h3>", "<figure>",
             f'<img src="{esc(_img_src(entry.image, out_dir, embed))}" alt="{esc(plot.title)}">',
             f"<figcaption>{esc(plot.caption)} File: <a href=\"{esc(entry.image)}\">{esc(entry.image)}</a>"
             "</figcaption>", "</figure>"]
    if plot.notes:
        shown = plot.notes[:25]
        more = len(plot.notes) - len(shown)
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in shown)
                     + (f"<li>… and {more} more</li>" if more > 0 else "") + "</ul>")
    return "\n".join(parts)


def render_findings(findings: Sequence[Finding], compare: bool) -> str:
    where = "these runs" if compare else "these runs (the paper's claims are about CIFAR-10 and ImageNet)"
    items = []
    for f in findings:
        cls = {True: "ok", False: "bad", None: "unk"}[f.ok]
        details = "".join(f"<li>{esc(d)}</li>" for d in f.details[:20])
        if len(f.details) > 20:
            details += f"<li>… and {len(f.details) - 20} more</li>"
        why = f" <em>({esc(f.why)})</em>" if f.ok is None and f.why else ""
        left = (f'<li class="left">left out, not evidence: {esc(f.left_out)}</li>' if f.left_out else "")
        items.append(f'<li><span class="{cls}">{esc(f.verdict)}</span> — {esc(f.claim)} [{esc(f.mark)}]{why}'
                     + (f'<ul class="notes">{details}{left}</ul>' if details or left else "") + "</li>")
    return (f'<div class="box"><strong>The paper\'s findings, checked on {esc(where)}</strong>'
            f"<ul>{''.join(items)}</ul>"
            '<p class="sub">✓ agrees: every check agrees · ✗ differs: a check on runs that reached their '
            "target disagrees · ? inconclusive: a check could not be decided (e.g. runs stopped at "
            "max_epochs) or no run of its kind finished as intended. Diverged, failed and unfinished runs "
            "never count.</p></div>")


def inline(text: str) -> str:
    """Escape ``text`` for HTML and show its `backtick` spans as <code> (no literal backticks)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


def render_marks() -> str:
    rows = "".join(f"<dt>[{esc(m)}]</dt><dd>{esc(paper.mark_meaning(m))}</dd>" for m in paper.MARKS)
    return f'<dl class="prov">{rows}</dl>'


def render(page: Page, out_dir: Path, *, embed: bool = False) -> str:
    ref = paper.load_reference()["paper"]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>rethinkgen report</title>", f"<style>{CSS}</style></head><body>",
           "<h1>Randomization tests: our runs beside the paper</h1>",
           f'<p class="sub">{esc(ref["authors"])}, “{esc(ref["title"])}”, {esc(ref["venue"])} '
           f'(arXiv:{esc(ref["arxiv"])}). Report of store <code>{esc(page.source)}</code>, made '
           f"{esc(page.generated_at)}.</p>"]
    for message in page.messages:
        out.append(f'<div class="box {"empty" if page.empty else "warn"}">{inline(message)}</div>')
    out.append('<div class="box" id="provenance"><strong>Made from</strong><dl class="prov">'
               + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in page.provenance) + "</dl></div>")
    if page.sections or page.kernel_table:
        out.append("<h2>How to read this report</h2>")
        out.append(
            "<p>Each dataset in the store gets its own section with the paper's figures and tables drawn "
            "from the stored runs. Only CIFAR-10 runs are compared number by number with the paper (columns "
            "“paper” and “Δ” = ours − paper, in percentage points); the kernel table compares MNIST and "
            "CIFAR-10. Other datasets get the same plots and tables without paper columns: the paper has "
            "no numbers for them, only its qualitative findings, which each section checks. Several seeds "
            "of one setting are shown as mean ± spread. A run is evidence only if it finished as intended: "
            "diverged, failed and unfinished runs are listed with their status and enter no number, figure "
            "or finding; runs that stopped at max_epochs before reaching the target train accuracy are "
            "shown as such (hollow markers, ▲, no Δ) and make a finding inconclusive rather than "
            "different. Each paper number carries the certainty mark of our reference sheet:</p>")
        out.append(render_marks())
        nav = "".join(f'<li><a href="#data-{esc(slug(s.data))}">{esc(s.data)}</a> ({s.n_runs} runs)</li>'
                      for s in page.sections)
        if page.kernel_table:
            nav += '<li><a href="#kernels">Kernel interpolation (Table 3)</a></li>'
        if page.unfinished:
            nav += '<li><a href="#unfinished">Runs that are not evidence</a></li>'
        out.append(f"<ul>{nav}</ul>")
    for section in page.sections:
        out.append(f'<h2 id="data-{esc(slug(section.data))}">Dataset: {esc(section.data)}</h2>')
        if section.compare:
            out.append("<p>This is the paper's dataset: tables show the paper's numbers and the difference "
                       "beside ours, and Figure 1c shows the paper's expected endpoints.</p>")
        else:
            out.append(f"<p>The paper has no runs on {esc(section.data)}: the figures and tables below have "
                       "no paper columns. Compare the shapes with the paper's qualitative findings.</p>")
        out.append(render_findings(section.findings, section.compare))
        items = section.items if section.items is not None else [*section.figures, *section.tables]
        for item in items:
            out.append(render_figure(item, out_dir, embed) if isinstance(item, FigureEntry)
                       else render_table(item))
        if section.summary is not None:
            out.append(f"<details><summary>All {section.n_runs} runs on {esc(section.data)}</summary>"
                       + render_table(section.summary) + "</details>")
    if page.kernel_table:
        out.append('<h2 id="kernels">Kernel interpolation (Section 5, Table 3)</h2>')
        out.append("<p>Minimum-norm interpolation, α = K⁻¹y (paper eq. 3), stored by "
                   "<code>rethinkgen kernel fit --store PATH</code>.</p>")
        out.append(render_table(page.kernel_table))
    if page.unfinished:
        out.append('<h2 id="unfinished">Runs that are not evidence</h2>')
        out.append("<p>These runs are in the store but did not finish as intended (diverged, failed, "
                   "interrupted, pending or still running). They are left out of every figure, table cell "
                   "and finding above.</p>")
        rows = "".join(
            f"<tr><td>{esc(r.get('name'))}</td><td>{esc(r.get('data'))}</td><td>{esc(r.get('status'))}</td>"
            f"<td class=num>{esc(r.get('attempts'))}</td><td class=num>{esc(r.get('epochs_done'))}</td>"
            f"<td>{esc(r.get('why'))}"
            f"{'<pre>' + esc(r.get('error')) + '</pre>' if r.get('error') else ''}</td></tr>"
            for r in page.unfinished)
        out.append('<div class="scroll"><table><thead><tr><th>run</th><th>data</th><th>status</th>'
                   "<th>attempts</th><th>epochs recorded</th><th>why it is left out</th></tr></thead>"
                   f"<tbody>{rows}</tbody></table></div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
