"""Table 1, Table 3 (kernels), the corruption-level table and the per-run summary, from stored runs.

A :class:`Table` holds raw values (the stored numbers, accuracies turned into percent) and knows how to
write itself as CSV (full precision, machine-readable keys) and Markdown (rounded for reading). The HTML
page renders the same rows. Paper columns (the paper's value, ours minus the paper's, the certainty
mark) are added only where the runs are on the paper's data: CIFAR-10 for Table 1, MNIST and CIFAR-10
for the kernel table.

Only evidence (:mod:`rethinkgen.report.evidence`) enters a cell: a setting whose runs diverged, failed
or have not finished keeps its row, with its status and "—" for every number; a row whose runs
stopped at max_epochs before reaching the target shows their numbers but no Δ against the paper.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rethinkgen.report import paper
from rethinkgen.report.evidence import FINISHED, is_evidence, reached_target, stopped_at_budget
from rethinkgen.report.plot import MODEL_ORDER, left_out_levels, level_lines, model_sort
from rethinkgen.report.runs import (
    cfg,
    convergence_resolution,
    describe,
    finite,
    label_level,
    labels_kind,
    one_per_seed,
    pct,
    run_wall_time,
    setting_key,
    slug,
    spread,
    std,
    varying_fields,
)

MISSING = "—"


@dataclass
class Column:
    key: str
    title: str
    kind: str = "text"  # text | pct | delta | int | float | sci | seconds | bool | ratio
    spread_key: str | None = None  # key of a standard deviation shown as "mean ± sd"
    on_page: bool = True  # False: in the CSV and Markdown files only (keeps the HTML table narrow)


@dataclass
class Table:
    key: str  # file stem, e.g. "table1_cifar10"
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def csv_columns(self) -> list[str]:
        out = []
        for col in self.columns:
            out.append(col.key)
            if col.spread_key:
                out.append(col.spread_key)
        return out

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        keys = self.csv_columns()
        writer.writerow(keys)
        for row in self.rows:
            writer.writerow([_csv_value(row.get(k)) for k in keys])
        return buf.getvalue()

    def cell(self, row: dict[str, Any], col: Column) -> str:
        """The value of ``col`` in ``row`` as text for reading (Markdown and HTML)."""
        text = format_value(row.get(col.key), col.kind)
        sd = row.get(col.spread_key) if col.spread_key else None
        if finite(sd) and text != MISSING:
            text += f" ± {format_value(sd, 'pct' if col.kind in ('pct', 'delta') else col.kind)}"
        return text

    def to_markdown(self) -> str:
        head = [c.title for c in self.columns]
        lines = [f"### {self.title}", "", "| " + " | ".join(_md(h) for h in head) + " |",
                 "|" + "|".join("---" for _ in head) + "|"]
        for row in self.rows:
            lines.append("| " + " | ".join(_md(self.cell(row, c)) for c in self.columns) + " |")
        if self.notes:
            lines.append("")
            lines.extend(f"- {_md(n)}" for n in self.notes)
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        """Write ``KEY.csv`` and ``KEY.md`` into ``out_dir``; return both paths."""
        csv_path = out_dir / f"{self.key}.csv"
        md_path = out_dir / f"{self.key}.md"
        csv_path.write_text(self.to_csv(), encoding="utf-8")
        md_path.write_text(self.to_markdown(), encoding="utf-8")
        return csv_path, md_path


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _md(text: str) -> str:
    """A Markdown table cell: HTML (``<``, ``>``, ``&``) as entities, so a run named ``<script>`` stays text
    in any renderer; ``|`` and ``\\`` escaped so a name cannot split or end the cell; newlines as spaces."""
    return (html.escape(str(text), quote=False).replace("\\", "\\\\").replace("|", "\\|")
            .replace("`", "\\`").replace("\r", " ").replace("\n", " "))


def format_value(value: Any, kind: str) -> str:
    """Human-readable text of a raw value ("—" for missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if kind not in ("text", "bool") and not finite(value):
        return str(value)
    if kind == "pct":
        return f"{value:.2f}"
    if kind == "delta":
        return f"{value:+.2f}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "float":
        return f"{value:.4g}"
    if kind == "sci":
        return f"{value:.3g}"
    if kind == "ratio":
        return f"{value:.2f}×"
    if kind == "seconds":
        return f"{value:.1f}"
    if kind == "bool":
        return "yes" if value else "no"
    return str(value)


def _mean_sd(values: Sequence[Any]) -> tuple[float | None, float | None]:
    mean, _, _, n = spread([v for v in values if finite(v)])
    return (mean if n else None), std(values)


def _status_text(group: Sequence[dict]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for run in group:
        counts[str(run.get("status"))] += 1
    if len(counts) == 1 and len(group) == 1:
        return next(iter(counts))
    return ", ".join(f"{status} {n}/{len(group)}" for status, n in sorted(counts.items()))


# --- Table 1 ---------------------------------------------------------------------------------------

def table1(runs: Sequence[dict], data: str, *, compare: bool | None = None) -> Table:
    """Train and test accuracy per model × random crop × weight decay, plus the random-label rows.

    Rows are runs on true labels (p = 0) or random labels (p = 1), grouped over seeds (mean and sample
    standard deviation of the runs that are evidence; a setting with none shows its status and "—").
    With ``compare`` (default: ``data == "cifar10"``) every row of the paper's Table 1 appears -- rows we
    have not run show "not run" -- with the paper's value, ours minus the paper's (percentage points,
    only where every run reached the target) and the certainty mark; random-label rows with weight
    decay are compared with the appendix Table 4.
    """
    compare = (data == "cifar10") if compare is None else compare
    labelled = [r for r in runs if labels_kind(r) is not None]
    eligible = [r for r in labelled if is_evidence(r)]
    everyone: dict[tuple, list[dict]] = defaultdict(list)
    for run in labelled:
        everyone[setting_key(run, drop=("corruption",)) + (("labels", labels_kind(run)),)].append(run)
    groups = {k: one_per_seed([r for r in v if is_evidence(r)] or v) for k, v in everyone.items()}
    keys = list(groups)
    row_fields = ("model", "augment", "weight_decay", "dropout", "labels", "flip")
    varying = varying_fields(keys, exclude=row_fields)
    any_dropout = any((cfg(r, "dropout") or 0) > 0 for r in labelled)
    rows = []
    matched: set[int] = set()
    paper_rows = paper.table1_rows() if compare else []
    for key in keys:
        group = [r for r in groups[key] if is_evidence(r)]
        first = groups[key][0]
        model, augment = cfg(first, "model"), bool(cfg(first, "augment"))
        wd, dropout = cfg(first, "weight_decay") or 0.0, cfg(first, "dropout") or 0.0
        kind = labels_kind(first)
        train_mean, train_sd = _mean_sd([pct(r.get("train_acc")) for r in group])
        test_mean, test_sd = _mean_sd([pct(r.get("test_acc")) for r in group])
        params = [r.get("n_params") for r in group if r.get("n_params") is not None]
        row = {
            "model": model, "n_params": params[0] if params else None, "random_crop": augment,
            "weight_decay": wd, "dropout": dropout, "labels": kind, "variant": describe(key, varying),
            "seeds": len(group), "status": _status_text(everyone[key]),
            "train_acc": train_mean, "train_acc_sd": train_sd, "test_acc": test_mean, "test_acc_sd": test_sd,
        }
        fit = bool(group) and all(reached_target(r) for r in group)
        if compare:
            ref, source = None, None
            if dropout == 0 and not cfg(first, "flip"):
                ref = paper.table1_lookup(model, augment, wd > 0, kind)
                source = "Table 1"
                if ref is None:
                    ref = paper.table4_lookup(model, augment, wd > 0, kind, cfg(first, "lr_decay"))
                    source = "Table 4"
            _add_paper(row, ref, source, with_delta=fit)
            if ref is not None and source == "Table 1":
                matched.add(_paper_index(paper_rows, ref))
        rows.append(row)
    rows.sort(key=lambda r: _row_order(r, paper_rows))
    if compare:
        for i, ref in enumerate(paper_rows):
            if i in matched:
                continue
            row = {"model": ref["model"], "n_params": None, "random_crop": ref["random_crop"],
                   "weight_decay": None, "dropout": 0.0, "labels": ref["labels"], "variant": "",
                   "seeds": 0, "status": "not run", "train_acc": None, "test_acc": None}
            row["weight_decay_paper"] = ref["weight_decay"]
            _add_paper(row, ref, "Table 1")
            rows.append(row)
        rows.sort(key=lambda r: _row_order(r, paper_rows))
    columns = [Column("model", "model"), Column("n_params", "params (ours)", "int")]
    if compare:
        columns.append(Column("paper_params", "params (paper)", "int"))
    if compare or any(cfg(r, "augment") for r in labelled):
        columns.append(Column("random_crop", "random crop", "bool"))
    columns.append(Column("weight_decay", "weight decay", "text"))
    if any_dropout:
        columns.append(Column("dropout", "dropout", "float"))
    columns += [Column("labels", "labels")]
    if varying:
        columns.append(Column("variant", "other settings"))
    columns += [Column("seeds", "seeds", "int"), Column("status", "status"),
                Column("train_acc", "train acc (%)", "pct", "train_acc_sd")]
    if compare:
        columns += [Column("paper_train_acc", "paper train (%)", "pct"),
                    Column("delta_train_acc", "Δ train", "delta")]
    columns.append(Column("test_acc", "test acc (%)", "pct", "test_acc_sd"))
    if compare:
        columns += [Column("paper_test_acc", "paper test (%)", "pct"),
                    Column("delta_test_acc", "Δ test", "delta"), Column("paper_mark", "mark")]
    for row in rows:
        wd = row["weight_decay"]
        if wd is None:
            row["weight_decay"] = "yes" if row.get("weight_decay_paper") else "no"
        else:
            row["weight_decay"] = f"yes ({wd:g})" if wd > 0 else "no"
        row.pop("weight_decay_paper", None)
    notes = ["accuracies in percent; ours are the final eval-mode accuracies of each run (mean ± sample "
             "standard deviation over seeds when there are several); seeds = the runs averaged",
             "only runs that finished as intended enter a number: diverged, failed and unfinished runs are "
             "counted in the status column and nowhere else (— when none is left)"]
    if len(eligible) < len(labelled):
        notes.append(f"{len(labelled) - len(eligible)} of {len(labelled)} runs of this table are not evidence "
                     "(see the status column)")
    if compare:
        notes += ["Δ = ours − paper in percentage points, only where every run reached the target train "
                  "accuracy (a run stopped at max_epochs measures a shorter training than the paper's); the "
                  "paper's weight-decay coefficient is not stated",
                  "paper values are Table 1's unless the mark names the appendix Table 4 (random labels fit "
                  "with a regularizer)",
                  "mark: certainty of the paper's number ([V2] table value confirmed by two transcriptions; "
                  "[S] secondary source), see the legend on the page"]
        notes += [f"{r['model']} ({'random crop' if r['random_crop'] else 'no crop'}, {r['labels']} labels): "
                  f"{r['paper_source']}" for r in rows if ":" in (r.get("paper_source") or "")]
    title = f"Table 1 — train and test accuracy on {data}" + (" (beside the paper's)" if compare else "")
    return Table(f"table1_{slug(data)}", title, columns, rows, notes)


def _add_paper(row: dict, ref: dict | None, source: str | None, *, with_delta: bool = True) -> None:
    if ref is None:
        row.update(paper_train_acc=None, delta_train_acc=None, paper_test_acc=None, delta_test_acc=None,
                   paper_mark=None, paper_source=None, paper_params=paper.paper_params(row["model"]))
        return
    ptrain, ptest = ref.get("train_acc"), ref.get("test_acc")
    row.update(
        paper_train_acc=ptrain, paper_test_acc=ptest, paper_source=source,
        paper_mark=f"[{ref['mark']}]" + ("" if source == "Table 1" else f" {source}"),
        delta_train_acc=_delta(row.get("train_acc"), ptrain) if with_delta else None,
        delta_test_acc=_delta(row.get("test_acc"), ptest) if with_delta else None,
        paper_params=paper.paper_params(row["model"]),
    )
    if ref.get("note"):
        row["paper_source"] = f"{source}: {ref['note']}"


def _delta(ours: Any, theirs: Any) -> float | None:
    return ours - theirs if finite(ours) and finite(theirs) else None


def _paper_index(paper_rows: list[dict], ref: dict) -> int:
    for i, r in enumerate(paper_rows):
        if all(r[k] == ref[k] for k in ("model", "random_crop", "weight_decay", "labels")):
            return i
    return -1


def _row_order(row: dict, paper_rows: list[dict]) -> tuple:
    model = row["model"]
    morder = MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)
    wd = row["weight_decay"]
    wd_on = row.get("weight_decay_paper") if wd is None else (wd > 0 if isinstance(wd, float | int) else
                                                              str(wd).startswith("yes"))
    return (morder, model, row["labels"] == "random", not row["random_crop"], not wd_on,
            row.get("dropout") or 0, row.get("variant") or "", row["status"] == "not run")


# --- corruption levels (the numbers behind Figures 1b and 1c) ---------------------------------------

def table_levels(runs: Sequence[dict], data: str) -> Table:
    """Per model and label-corruption level: realized noise, train/test accuracy, steps to converge.

    Numbers come from runs that are evidence; a level whose runs all diverged, failed or are unfinished
    keeps its row with the status and "—". ``resolution`` is the number of SGD steps between the
    evaluations that decide convergence (the config's ``eval_every``, else one epoch).
    """
    rows = []
    lines = level_lines(runs)
    left = left_out_levels(runs)
    keys = sorted(set(lines) | set(left), key=lambda k: (model_sort(dict(k)["model"]), k))
    varying = varying_fields(keys, exclude=("model",))
    for key in keys:
        levels = lines.get(key, {})
        base = levels.get(0.0, {})
        for level in sorted(set(levels) | set(left.get(key, {}))):
            group = list(levels.get(level, {}).values())
            ratios = [r["converged_step"] / base[cfg(r, "seed")]["converged_step"] for r in group
                      if finite(r.get("converged_step")) and cfg(r, "seed") in base
                      and finite(base[cfg(r, "seed")].get("converged_step"))
                      and base[cfg(r, "seed")]["converged_step"] > 0]
            test_err, test_err_sd = _mean_sd([100 - pct(r["test_acc"]) for r in group])
            train_acc, train_sd = _mean_sd([pct(r.get("train_acc")) for r in group])
            noise, _ = _mean_sd([pct(r.get("realized_noise_rate")) for r in group])
            steps, _ = _mean_sd([r.get("converged_step") for r in group])
            if any(stopped_at_budget(r) for r in group):  # a mean over the others would drop the slowest
                steps, ratios = None, []
            resolutions = sorted({res for r in group if (res := convergence_resolution(r)) is not None})
            rows.append({
                "model": dict(key)["model"], "variant": describe(key, varying), "level": level,
                "seeds": len(group), "status": _status_text(group + left.get(key, {}).get(level, [])),
                "realized_noise": noise, "train_acc": train_acc, "train_acc_sd": train_sd,
                "test_error": test_err, "test_error_sd": test_err_sd, "converged_step": steps,
                "resolution": _range_text(resolutions),
                "relative_time": spread(ratios)[0] if ratios else None,
            })
    columns = [Column("model", "model")]
    if varying:
        columns.append(Column("variant", "other settings"))
    columns += [Column("level", "level p", "float"), Column("seeds", "seeds", "int"),
                Column("status", "status"), Column("realized_noise", "labels changed (%)", "pct"),
                Column("train_acc", "train acc (%)", "pct", "train_acc_sd"),
                Column("test_error", "test error (%)", "pct", "test_error_sd"),
                Column("converged_step", "steps to fit", "float"),
                Column("resolution", "checked every (steps)"),
                Column("relative_time", "relative to p = 0", "ratio")]
    notes = ["labels changed: the realized fraction of training labels that differ from the true ones "
             "(about 0.9·p for 10 classes, since a redrawn label can equal the true one)",
             "steps to fit: the first evaluated SGD step at which eval-mode accuracy on the whole corrupted "
             "training set reached the target; — when a run of the level did not reach it (a mean over the "
             "others would leave out the slowest). Accuracy is evaluated every 'checked every' steps, so the "
             "first step that reached it lies at most that many steps earlier",
             "only runs that finished as intended enter a number; seeds = the runs averaged"]
    return Table(f"levels_{slug(data)}", f"Label corruption levels on {data} (Figures 1b and 1c)", columns,
                 rows, notes)


def _range_text(values: Sequence[int]) -> str | None:
    if not values:
        return None
    return f"{values[0]:,}" if values[0] == values[-1] else f"{values[0]:,}–{values[-1]:,}"


# --- Table 3: kernels --------------------------------------------------------------------------------

def _error_pct(value: Any) -> float | None:
    """Stored kernel test errors are fractions in [0, 1]; as percent."""
    return 100.0 * float(value) if finite(value) else None


def _kernel_status(result: dict) -> str:
    """"ok", or why the stored fit is not a result ("not_converged", "inaccurate", "numerical_failure").

    Read from the row or its config (``rethinkgen kernel fit`` records only fits that succeeded; older
    stores have no status: their rows count as "ok").
    """
    return str(result.get("status") or (result.get("config") or {}).get("status") or "ok")


def table3(kernel_results: Sequence[dict]) -> Table:
    """Section 5 kernel interpolation results beside the paper's 1.2/0.6 (MNIST) and 46/17/15 (CIFAR-10).

    One row per stored result (``rethinkgen kernel fit --store``): test error in percent and the
    solution's norm; paper columns for MNIST and CIFAR-10 rows that match one of the paper's feature
    maps (raw pixels, wavelet, random conv features) and regularization (ℓ2 on/off). Paper results
    without a stored counterpart are listed as "not run".
    """
    rows = []
    matched = set()
    refs = paper.kernel_rows()
    for result in kernel_results:
        data = result.get("data")
        reg = result.get("reg")
        regularized = finite(reg) and reg > 0
        ref = paper.kernel_lookup(str(data), result.get("features"), regularized) \
            if data in ("mnist", "cifar10") else None
        status = _kernel_status(result)
        err = _error_pct(result.get("test_error")) if status == "ok" else None
        row = {
            "data": data, "n_train": result.get("n_train"), "n_test": result.get("n_test"),
            "kernel": result.get("kernel"), "bandwidth": result.get("bandwidth"),
            "features": result.get("features"), "filters": result.get("filters"), "reg": reg,
            "solver": result.get("solver"), "dtype": result.get("dtype"), "test_error": err,
            "norm": result.get("norm") if status == "ok" else None, "rel_residual": result.get("rel_residual"),
            "time_s": result.get("time_s"),
            "paper_test_error": ref["test_error"] if ref else None,
            "delta_test_error": (err - ref["test_error"]) if ref and err is not None else None,
            "paper_norm": ref.get("norm") if ref else None,
            "paper_mark": f"[{ref['mark']}]" if ref else None,
            "status": status,
        }
        if ref:
            matched.add(refs.index(ref))
        rows.append(row)
    for i, ref in enumerate(refs):
        if i in matched:
            continue
        rows.append({"data": ref["data"], "features": ref["features"], "kernel": ref.get("kernel"),
                     "filters": ref.get("filters"), "reg": "ℓ2" if ref["regularized"] else 0.0,
                     "paper_test_error": ref["test_error"], "paper_norm": ref.get("norm"),
                     "paper_mark": f"[{ref['mark']}]", "status": "not run"})
    rows.sort(key=lambda r: (r["data"] != "mnist", r["data"] != "cifar10", str(r["data"]),
                             paper.feature_kind(r.get("features")), str(r.get("reg")),
                             r["status"] == "not run"))
    columns = [Column("data", "data"), Column("n_train", "n train", "int"), Column("kernel", "kernel"),
               Column("bandwidth", "bandwidth", "float"), Column("features", "features"),
               Column("filters", "filters", "int"), Column("reg", "ℓ2 reg", "sci"),
               Column("status", "status"),
               Column("test_error", "test error (%)", "pct"), Column("paper_test_error", "paper (%)", "pct"),
               Column("delta_test_error", "Δ", "delta"), Column("norm", "norm", "float"),
               Column("paper_norm", "paper norm", "float"), Column("paper_mark", "mark"),
               Column("rel_residual", "rel. residual", "sci"), Column("time_s", "time (s)", "seconds")]
    notes = ["the paper's numbers use the full training sets (MNIST 60,000, CIFAR-10 50,000); compare "
             "n train",
             "paper norms (≈220 raw, ≈390 wavelet, MNIST) are the ℓ2 norms of the minimum-norm solutions; "
             "the paper does not name the MNIST kernel",
             "Δ = ours − paper in percentage points",
             "a fit whose status is not ok (CG stopped early, residual too large, negative αᵀKα) shows no "
             "test error or norm: its α is not the interpolant"]
    return Table("table3_kernels", "Table 3 — generalizing with kernels (Section 5)", columns, rows, notes)


# --- per-run summary ---------------------------------------------------------------------------------

def summary_table(runs: Sequence[dict], data: str) -> Table:
    """Every run of one dataset with its stored summary numbers; a run that is not evidence (diverged,
    failed, unfinished) shows its status, how far it got (steps, epochs, time) and "—" for results.
    Top-5 columns appear when some run has them; "best test" is the best test accuracy along training
    (Table 2's parentheses). The CSV and Markdown files also say how each run was computed ("computed as":
    its recorded numerics, :func:`rethinkgen.train.numerics.describe`, e.g. ``cpu, bf16 autocast, 1 thread``;
    precision and device are not part of the run key, so the tables of two stores put together could not
    tell such runs apart otherwise)."""
    from rethinkgen.train.numerics import describe

    rows = []
    for run in sorted(runs, key=lambda r: (str(cfg(r, "model")), str(cfg(r, "corruption")),
                                           label_level(r) if label_level(r) is not None else -1,
                                           str(r.get("name")), cfg(r, "seed") or 0)):
        good = is_evidence(run)
        rows.append({
            "name": run.get("name"), "sweep": run.get("sweep"), "model": cfg(run, "model"),
            "corruption": cfg(run, "corruption"), "level": cfg(run, "level"), "seed": cfg(run, "seed"),
            "status": run.get("status"), "train_acc": pct(run.get("train_acc")) if good else None,
            "test_acc": pct(run.get("test_acc")) if good else None,
            "best_test_acc": pct(run.get("best_test_acc")) if good else None,
            "train_acc_top5": pct(run.get("train_acc_top5")) if good else None,
            "test_acc_top5": pct(run.get("test_acc_top5")) if good else None,
            "best_test_acc_top5": pct(run.get("best_test_acc_top5")) if good else None,
            "converged_step": run.get("converged_step") if good else None,
            "resolution": convergence_resolution(run), "steps": run.get("steps"),
            "epochs": run.get("epochs"), "n_params": run.get("n_params"),
            "realized_noise_rate": pct(run.get("realized_noise_rate")),
            "wall_time_s": run_wall_time(run) if run.get("status") in FINISHED or run.get("history")
            else None,
            "numerics": describe(run["numerics"]) if run.get("numerics") else None,
            "run_key": (run.get("run_key") or "")[:12],
        })
    columns = [Column("name", "run"), Column("model", "model"), Column("corruption", "corruption"),
               Column("level", "level", "float"), Column("seed", "seed"), Column("status", "status"),
               Column("train_acc", "train acc (%)", "pct"), Column("test_acc", "test acc (%)", "pct"),
               Column("best_test_acc", "best test (%)", "pct")]
    if any(finite(r.get(k)) for r in rows for k in ("train_acc_top5", "test_acc_top5")):  # Table 2's top-5
        columns += [Column("train_acc_top5", "train top-5 (%)", "pct"),
                    Column("test_acc_top5", "test top-5 (%)", "pct"),
                    Column("best_test_acc_top5", "best test top-5 (%)", "pct")]
    columns += [Column("converged_step", "fit at step", "int"), Column("resolution", "checked every", "int"),
                Column("steps", "steps", "int"), Column("epochs", "epochs", "int"),
                Column("n_params", "params", "int"),
                Column("realized_noise_rate", "labels changed (%)", "pct"),
                Column("wall_time_s", "time (s)", "seconds"), Column("sweep", "sweep", on_page=False),
                Column("numerics", "computed as", on_page=False),
                Column("run_key", "run key", on_page=False)]
    notes = ["train/test accuracies and the fit step are shown only for runs that finished as intended "
             "(converged or max_epochs); a diverged run's accuracies are those of NaN outputs, not results"]
    return Table(f"runs_{slug(data)}", f"All runs on {data}", columns, rows, notes)
