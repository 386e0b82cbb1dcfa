"""Table 2 of the paper (appendix B): Inception V3 on ImageNet, top-1 and top-5, beside our runs.

Every row of the paper's Table 2 appears — (labels, data augmentation, dropout, weight decay) — with the
paper's top-1/top-5 train and test accuracy and, in parentheses, its best test accuracy along training
("potential early stopping", §3.1), each with its certainty mark (``paper_reference.json``). Our runs
on ``imagenet`` fill the rows they match: true or random labels, data augmentation (random resized crop
*and* flip; a run with only one of them matches no row), ``dropout > 0`` and ``weight_decay > 0`` (the
paper's yes/no; it states no coefficient). Runs that match one paper row but differ in another
setting (learning rate, epochs, batch size, the dropout or weight-decay coefficient, ...) are not
averaged together: each setting gets its own row under the paper's, named in an "other settings"
column, as Table 1 does. Within a setting, one run per seed; only runs that are evidence (finished as
intended, :mod:`rethinkgen.report.evidence`) enter a cell, as the mean over seeds; the best test
accuracy along training is each run's ``best_test_acc`` / ``best_test_acc_top5``. Runs that match no
paper row (another model, partial labels) are left to the other tables.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from rethinkgen.report import paper
from rethinkgen.report.evidence import is_evidence
from rethinkgen.report.runs import cfg, describe, labels_kind, one_per_seed, pct, setting_key, varying_fields
from rethinkgen.report.tables import Column, Table, _mean_sd, _status_text

__all__ = ["TABLE2_DATA", "TABLE2_MODEL", "table2"]

TABLE2_DATA = "imagenet"
TABLE2_MODEL = "inception_v3"
CELLS = ("top1_train", "top5_train", "top1_test", "top5_test")
OURS = {"top1_train": "train_acc", "top5_train": "train_acc_top5", "top1_test": "test_acc",
        "top5_test": "test_acc_top5"}  # Table 2 cell -> our summary field
BEST = {"top1_test": "best_test_acc", "top5_test": "best_test_acc_top5"}


def _setting(run: dict) -> tuple[str, bool, bool, bool] | None:
    kind = labels_kind(run)
    if kind is None or cfg(run, "model") != TABLE2_MODEL:
        return None
    if bool(cfg(run, "augment")) != bool(cfg(run, "flip")):  # crops without flips, or flips alone: no paper row
        return None
    return (kind, bool(cfg(run, "augment")), (cfg(run, "dropout") or 0) > 0, (cfg(run, "weight_decay") or 0) > 0)


def _paper_cell(cell: dict[str, Any] | None) -> tuple[float | None, float | None, str]:
    if not cell:
        return None, None, ""
    mark = f"[{cell['mark']}]" + (f" ([{cell['best_mark']}])" if "best_mark" in cell else "")
    return cell.get("value"), cell.get("best"), mark


def _with_best(value: float | None, best: float | None) -> str | None:
    if value is None:
        return None
    return f"{value:.2f}" + (f" ({best:.2f})" if best is not None else "")


def _row(ref: dict[str, Any], group: list[dict], variant: str) -> dict[str, Any]:
    """One row: the paper's row ``ref`` beside the runs ``group`` of one setting (one per seed)."""
    good = one_per_seed(r for r in group if is_evidence(r))
    row: dict[str, Any] = {"labels": ref["labels"], "data_aug": ref["data_aug"], "dropout": ref["dropout"],
                           "weight_decay": ref["weight_decay"], "variant": variant, "seeds": len(good),
                           "status": _status_text(group) if group else "not run"}
    marks = []
    for name in CELLS:
        ours, _ = _mean_sd([pct(r.get(OURS[name])) for r in good])
        best = _mean_sd([pct(r.get(BEST[name])) for r in good])[0] if name in BEST else None
        value, paper_best, mark = _paper_cell(ref.get(name))
        row[name] = _with_best(ours, best)
        row[f"paper_{name}"] = _with_best(value, paper_best)
        if name.endswith("_test"):
            row[f"delta_{name}"] = ours - value if ours is not None and value is not None else None
        marks.append(mark)
    row["paper_mark"] = " ".join(marks)
    return row


def table2(runs: Sequence[dict], data: str = TABLE2_DATA) -> Table:
    """Table 2 rows (paper order) with ours beside the paper's; see the module docstring."""
    groups: dict[tuple, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if cfg(run, "data") == data:
            key = _setting(run)
            if key is not None:
                groups[key][setting_key(run, drop=("corruption",))].append(run)
    row_fields = ("augment", "flip", "dropout", "weight_decay")  # the paper row's yes/no settle these
    varying = varying_fields([k for settings in groups.values() for k in settings], exclude=row_fields)
    rows = []
    for ref in paper.table2_rows():
        key = (ref["labels"], ref["data_aug"], ref["dropout"], ref["weight_decay"])
        for setting, group in sorted(groups[key].items(), key=lambda item: str(item[0])) or [((), [])]:
            rows.append(_row(ref, group, describe(setting, varying) if setting else ""))
    columns = [Column("labels", "labels"), Column("data_aug", "data aug", "bool"), Column("dropout", "dropout", "bool"),
               Column("weight_decay", "weight decay", "bool")]
    if varying:
        columns.append(Column("variant", "other settings"))
    columns += [Column("seeds", "seeds", "int"), Column("status", "status")]
    for name, title in zip(CELLS, ("top-1 train", "top-5 train", "top-1 test", "top-5 test"), strict=True):
        columns += [Column(name, f"{title} (%)"), Column(f"paper_{name}", f"paper {title} (%)")]
        if name.endswith("_test"):
            columns.append(Column(f"delta_{name}", f"Δ {title}", "delta"))
    columns.append(Column("paper_mark", "marks (top-1/5 train, test)"))
    alexnet = paper.load_reference()["table2"]["alexnet_2012_top5_test"]
    notes = ["accuracies in percent; in parentheses the best test accuracy along training (Table 2's early-stopping "
             "reference; ours: the best epoch row)",
             "Δ = ours − paper in percentage points (final accuracies, not the parentheses)",
             "data aug = random resized crop + flip; dropout and weight decay as yes/no (the paper states no "
             "coefficients; configs/paper/table2.toml gives ours)",
             f"the ILSVRC-2012 winner (Krizhevsky et al., 2012) reported {alexnet['value']}% top-5 test "
             f"[{alexnet['mark']}]; random guessing gives 0.1% top-1",
             "marks: certainty of the paper's numbers ([V] verified, [S] secondary source, [R] recalled only)"]
    return Table(f"table2_{data}", "Table 2 — Inception V3 on ImageNet, top-1/top-5 (beside the paper's)",
                 columns, rows, notes)
