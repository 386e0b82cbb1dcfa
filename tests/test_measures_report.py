"""The measures section of the report: Kendall's τ, the granulated ψ and Ψ on synthetic runs whose
rankings are known, the evidence rule, and the section in index.html (no store, no training)."""

from __future__ import annotations

import csv
import json
import math

import pytest

from rethinkgen.report import measures as rm
from rethinkgen.report.build import build_from_data

LEVELS, DECAYS, MODELS = (0.0, 0.5, 1.0), (0.0, 1e-3), ("mlp_1x512", "cnn1d")


def run(level, wd, model, gap, values, *, status="converged", corruption="partial_labels", seed=0):
    """A stored run as the report sees it; train accuracy 100%, test accuracy 100% − gap."""
    config = {"data": "mnist1d", "model": model, "corruption": corruption, "weight_decay": wd, "seed": seed,
              "level": level if corruption == "partial_labels" else None}
    return {"run_key": f"{model}-{corruption}-{level}-{wd}-{seed}-{status}", "name": f"{model} p={level} wd={wd}",
            "status": status, "config": config, "train_acc": 1.0, "test_acc": 1.0 - gap / 100, "epochs": 5,
            "converged_step": None, "measures": dict(values)}


def grid_runs() -> list[dict]:
    """12 runs: gap = 10 + 60 p + 10 [wd > 0] + 5 [cnn] (all distinct). Measures:
    l2_norm = gap (ranks like the gap), dist_init = −gap (reversed), path_norm = 60 p − 10 [wd] − 5 [cnn]
    (follows the level, reverses weight decay and model)."""
    out = []
    for level in LEVELS:
        for wd in DECAYS:
            for model in MODELS:
                w, m = float(wd > 0), float(model == "cnn1d")
                g = 10 + 60 * level + 10 * w + 5 * m
                out.append(run(level, wd, model, g, {"l2_norm": g, "dist_init": -g,
                                                     "path_norm": 60 * level - 10 * w - 5 * m}))
    return out


def rows_by_name(runs):
    return {row.name: row for row in rm.measure_rows(runs)}


def test_kendall_tau_by_hand():
    assert rm.kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(2 / 3)  # 5 concordant, 1 discordant
    # τ-b with a tie in x: C = 2, D = 0, pairs untied in x: 2, in y: 3 -> 2 / √6
    assert rm.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert rm.kendall_tau([1, math.inf, 2], [1, 3, 2]) == pytest.approx(1.0)  # infinity ranks last
    assert rm.kendall_tau([1], [2]) is None


def test_a_measure_that_does_not_vary_in_a_group_counts_zero_not_nothing():
    """Jiang et al.'s τ (eq. 3) is the mean sign product over all pairs: a measure that is constant in a
    group (``params`` across corruption levels) gets 0 there. Dropping such groups gave ``params`` the
    ψ of the one axis where it varies as its Ψ, ranking it above measures that do track the gap."""
    assert rm.kendall_tau([1, 1], [1, 2]) == 0.0 and rm.kendall_tau([3, 1, 2], [5, 5, 5]) == 0.0
    runs = grid_runs()
    for r in runs:  # a parameter count: differs between the models only, larger for the CNN (larger gap)
        r["measures"]["params"] = 2.0 if r["config"]["model"] == "cnn1d" else 1.0
    row = rows_by_name(runs)["params"]
    assert row.psi["level"] == (0.0, 4) and row.psi["weight_decay"] == (0.0, 6)
    assert row.psi["model"] == (pytest.approx(1.0), 6)
    assert row.big_psi == pytest.approx(1 / 3)  # not 1.0


def test_tau_and_psi_on_runs_whose_ranking_is_known():
    rows = rows_by_name(grid_runs())
    good, bad, mixed = rows["l2_norm"], rows["dist_init"], rows["path_norm"]
    assert good.n == bad.n == mixed.n == 12
    assert good.tau == pytest.approx(1.0) and bad.tau == pytest.approx(-1.0)
    assert good.psi == {"level": (pytest.approx(1.0), 4), "weight_decay": (pytest.approx(1.0), 6),
                        "model": (pytest.approx(1.0), 6)}
    assert good.big_psi == pytest.approx(1.0) and bad.big_psi == pytest.approx(-1.0)
    # path_norm: the 48 pairs of different levels are concordant (a level step moves both by >= 15), the
    # 18 pairs within a level all discordant: τ = (48 − 18) / 66.
    assert mixed.tau == pytest.approx(30 / 66)
    assert mixed.psi["level"][0] == pytest.approx(1.0)
    assert mixed.psi["weight_decay"][0] == pytest.approx(-1.0) and mixed.psi["model"][0] == pytest.approx(-1.0)
    assert mixed.big_psi == pytest.approx(-1 / 3)


def test_only_runs_that_finished_as_intended_count():
    base = grid_runs()
    extra = [run(0.25, 0.0, "mlp_1x512", 99.0, {"l2_norm": -1e9}, status="diverged"),
             run(0.75, 0.0, "mlp_1x512", 1.0, {"l2_norm": 1e9}, status="failed"),
             run(0.75, 0.0, "cnn1d", 1.0, {"l2_norm": 1e9}, status="interrupted")]
    assert rows_by_name(base + extra)["l2_norm"].tau == pytest.approx(1.0)
    assert rows_by_name(base + extra)["l2_norm"].n == 12
    done = {"train_acc": 0.9, "test_acc": 0.5}
    assert rm.counts_as_evidence({"status": "max_epochs", **done})
    assert not rm.counts_as_evidence({"status": "diverged", **done})
    assert not rm.counts_as_evidence({"status": "max_epochs"})  # the report's rule: no accuracies, no evidence


def test_a_named_label_run_and_its_partial_twin_count_once():
    base = grid_runs()
    twin = run(0.0, 0.0, "mlp_1x512", 10.0, {"l2_norm": 1e9}, corruption="true_labels")  # = partial p = 0
    row = rows_by_name(base + [twin])["l2_norm"]
    assert row.n == 12 and row.tau == pytest.approx(1.0)  # the partial_labels run is kept


def test_input_corruptions_count_overall_but_not_on_the_level_axis():
    base = grid_runs()
    noise = run(None, 0.0, "mlp_1x512", 95.0, {"l2_norm": 95.0}, corruption="gaussian")
    row = rows_by_name(base + [noise])["l2_norm"]
    assert row.n == 13 and row.tau == pytest.approx(1.0)
    assert row.psi["level"][1] == 4  # still the four (weight decay, model) groups of label runs


def test_section_is_written_into_the_report(tmp_path):
    runs = grid_runs()
    index = build_from_data(runs, [], tmp_path)
    page = index.read_text()
    assert 'id="measures"' in page and "Measures on mnist1d" in page
    assert page.index('id="measures"') < page.index("</body>")
    assert (tmp_path / "measures_mnist1d.png").stat().st_size > 10_000
    with open(tmp_path / "measures_mnist1d.csv") as f:
        table = {row["measure"]: row for row in csv.DictReader(f)}
    assert float(table["l2_norm"]["tau"]) == pytest.approx(1.0)
    assert float(table["path_norm"]["big_psi"]) == pytest.approx(-1 / 3)
    plot = rm.scatter_plot(runs, "mnist1d")
    panel = next(s for s in plot.series if s.label == "dist_init")
    assert sorted(panel.x) == pytest.approx(sorted(-g for g in panel.y))  # the stored values were drawn


def test_no_section_without_measures(tmp_path):
    runs = grid_runs()
    for r in runs:
        r["measures"] = {}
    page = build_from_data(runs, [], tmp_path).read_text()
    assert 'id="measures"' not in page and not (tmp_path / "measures_mnist1d.png").exists()


def test_a_measure_stored_with_mixed_settings_gets_no_tau_and_a_note():
    runs = grid_runs()
    for i, r in enumerate(runs):  # sharpness measured on half the runs with subset 2048, on half with 512
        r["measures"]["sharpness"] = r["measures"]["l2_norm"]
        r["measure_settings"] = {"l2_norm": None if i % 2 else "{}",
                                 "sharpness": json.dumps({"subset": 2048 if i % 2 else 512})}
    rows = rows_by_name(runs)
    assert rows["l2_norm"].tau == pytest.approx(1.0)  # no settings (None: a store older than the column)
    assert rows["sharpness"].tau is None and rows["sharpness"].big_psi is None
    notes = " ".join(rm.measure_table(runs, "mnist1d").notes)
    assert "sharpness: no τ" in notes and "--measures sharpness --force" in notes and "on 6 run(s)" in notes
    for r in runs:
        r["measure_settings"]["sharpness"] = json.dumps({"subset": 512})
    assert rows_by_name(runs)["sharpness"].tau == pytest.approx(1.0)  # one setting: ranked
