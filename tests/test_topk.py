"""Top-1 and top-5 accuracy (Table 2), the best test accuracy along training, their columns in the store
(with the migration of stores written before them) and in the report. CPU only."""

from __future__ import annotations

import sqlite3

import pytest
import torch
from torch import nn

from rethinkgen.sweep.store import Store
from rethinkgen.train.config import TrainConfig
from rethinkgen.train.history import best_along_training
from rethinkgen.train.loop import train
from rethinkgen.train.metrics import evaluate, topk_correct

# Seven classes; each row is a sample's logits, ranked by hand (largest first):
LOGITS = torch.tensor([
    [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # ranks 0,1,2,3,4,5,6
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],  # ranks 6,5,4,3,2,1,0
    [0.0, 9.0, 0.5, 8.0, 0.2, 7.0, 0.1],  # ranks 1,3,5,2,4,6,0
    [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0],  # ranks 5,4,2,0,3,6,1
])
TARGETS = torch.tensor([0, 1, 2, 6])
# sample 0: class 0 is largest -> top-1 and top-5; sample 1: class 1 is 6th -> neither;
# sample 2: class 2 (0.5) is 3rd -> top-5 only; sample 3: class 6 (2.0) is 5th -> top-5 only
TOP1 = [True, False, False, False]
TOP5 = [True, False, True, True]


def test_topk_correct_by_hand():
    assert topk_correct(LOGITS, TARGETS, k=1).tolist() == TOP1
    assert topk_correct(LOGITS, TARGETS).tolist() == TOP5
    assert topk_correct(LOGITS, TARGETS, k=6).tolist() == [True, True, True, True]
    assert topk_correct(LOGITS[:, :3], torch.tensor([0, 1, 2, 0]), k=5).all()  # k > K: every label


# Ties, ranked by hand: equal logits rank by class index, as argmax (the first maximal index) ranks them.
TIED = torch.tensor([
    [0.0] * 8,  # all equal: ranks are the indices 0..7
    [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0],  # the five 1.0 are classes 0,2,4,6,7 (ranks 0-4); class 1 is 5th
    [0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.0],  # six tied maxima 1..6: class 6 is ranked 5th (rank 5)
])
TIED_TARGETS = torch.tensor([0, 7, 6])
TIED_TOP1 = [True, False, False]
TIED_TOP5 = [True, True, False]


def test_topk_correct_breaks_ties_as_argmax_so_top5_never_falls_below_top1():
    """torch.topk orders equal values as it likes (on the CPU, topk(5) of 8 zeros omits index 0, the
    argmax): top-5 below top-1. Hand-ranked ties, CPU, exact."""
    assert topk_correct(TIED, TIED_TARGETS, k=1).tolist() == TIED_TOP1
    assert topk_correct(TIED, TIED_TARGETS).tolist() == TIED_TOP5
    assert topk_correct(TIED, TIED_TARGETS, k=1).tolist() == (TIED.argmax(dim=1) == TIED_TARGETS).tolist()
    assert topk_correct(TIED, torch.tensor([5, 1, 5]), k=5).tolist() == [False, False, True]
    assert topk_correct(TIED, torch.tensor([4, 1, 0]), k=8).all()  # k = K: every label
    assert topk_correct(TIED, torch.tensor([4, 1, 0]), k=100).all()  # k > K
    ev = evaluate(nn.Identity(), TIED, TIED_TARGETS, batch_size=2, num_classes=8)
    assert ev.acc == pytest.approx(1 / 3) and ev.acc_top5 == pytest.approx(2 / 3)


def test_evaluate_reports_top1_and_top5_by_hand():
    ev = evaluate(nn.Identity(), LOGITS, TARGETS, batch_size=3, num_classes=7)  # two batches: 3 + 1
    assert ev.acc == pytest.approx(1 / 4) and ev.acc_top5 == pytest.approx(3 / 4)
    assert evaluate(nn.Identity(), LOGITS[:, :5], TARGETS % 5, 4, num_classes=5).acc_top5 is None  # K <= 5


def test_best_along_training_takes_the_best_row_per_column():
    rows = [{"test_acc": 0.1, "test_acc_top5": None}, {"test_acc": 0.6, "test_acc_top5": 0.8},
            {"test_acc": 0.5, "test_acc_top5": 0.9}]
    assert best_along_training(rows, "test_acc") == 0.6 and best_along_training(rows, "test_acc_top5") == 0.9
    assert best_along_training([{"test_acc": None}], "test_acc") is None


def test_run_summary_has_top5_and_the_best_test_accuracy_along_training():
    summary = train(TrainConfig(data="mnist1d", n_train=500, n_test=300, model="mlp_1x512", lr=0.1, epochs=4,
                                device="cpu"))
    rows = summary["metrics"]
    assert all(r["train_acc_top5"] >= r["train_acc"] and r["test_acc_top5"] >= r["test_acc"] for r in rows)
    assert summary["test_acc_top5"] == rows[-1]["test_acc_top5"]
    assert summary["train_acc_top5"] == rows[-1]["train_acc_top5"]
    assert summary["best_test_acc"] == max(r["test_acc"] for r in rows)
    assert summary["best_test_acc_top5"] == max(r["test_acc_top5"] for r in rows)
    assert rows[-1]["train_acc_top5"] > rows[0]["train_acc_top5"]  # it learns


V1_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE runs (
    run_key TEXT PRIMARY KEY, name TEXT, sweep TEXT, config_json TEXT, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, created_at REAL, started_at REAL, finished_at REAL,
    heartbeat_at REAL, error TEXT, code_version TEXT, hardware TEXT, torch_version TEXT, device TEXT);
CREATE TABLE epochs (
    run_key TEXT NOT NULL, epoch INTEGER NOT NULL, step INTEGER, samples_seen INTEGER, lr REAL,
    train_loss REAL, train_eval_loss REAL, train_acc REAL, train_acc_corrupted REAL, train_acc_clean REAL,
    test_loss REAL, test_acc REAL, wall_time_s REAL, PRIMARY KEY (run_key, epoch));
CREATE TABLE summaries (
    run_key TEXT PRIMARY KEY, status TEXT, train_acc REAL, test_acc REAL, best_test_acc REAL,
    converged_step INTEGER, converged_epoch INTEGER, steps INTEGER, epochs INTEGER, n_params INTEGER,
    realized_noise_rate REAL, wall_time_s REAL, summary_json TEXT);
CREATE TABLE run_tags (run_key TEXT NOT NULL, sweep TEXT NOT NULL, experiment TEXT NOT NULL,
    PRIMARY KEY (run_key, sweep, experiment));
CREATE TABLE step_losses (run_key TEXT NOT NULL, step INTEGER NOT NULL, loss REAL, PRIMARY KEY (run_key, step));
INSERT INTO runs (run_key, name, sweep, config_json, status) VALUES ('k1', 'old', 's', '{}', 'converged');
INSERT INTO epochs (run_key, epoch, train_acc, test_acc) VALUES ('k1', 1, 0.9, 0.4);
INSERT INTO summaries (run_key, status, train_acc, test_acc, best_test_acc) VALUES ('k1', 'converged', 0.9, 0.4, 0.5);
"""


@pytest.fixture
def old_store(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(V1_TABLES)
    conn.commit()
    conn.close()
    return path


def test_a_version_1_store_reads_read_only_with_none_for_top5(old_store):
    with Store.open(old_store, readonly=True) as store:
        (run,) = store.runs()
        assert (run["train_acc"], run["best_test_acc"], run["best_test_acc_top5"]) == (0.9, 0.5, None)
        (row,) = store.epoch_rows("k1")
        assert (row["test_acc"], row["test_acc_top5"]) == (0.4, None)


def test_a_version_1_store_is_migrated_when_opened_for_writing(old_store):
    with Store(old_store) as store:
        (run,) = store.runs()
        assert run["best_test_acc"] == 0.5 and run["test_acc_top5"] is None  # old rows kept
        store.record_epoch("k1", {"epoch": 2, "train_acc": 0.95, "test_acc": 0.45, "train_acc_top5": 0.99,
                                  "test_acc_top5": 0.7})
        store.finish_run("k1", {"status": "converged", "train_acc": 0.95, "test_acc": 0.45, "best_test_acc": 0.5,
                                "test_acc_top5": 0.7, "train_acc_top5": 0.99, "best_test_acc_top5": 0.75})
        assert [r["test_acc_top5"] for r in store.epoch_rows("k1")] == [None, 0.7]
        assert store.run("k1")["best_test_acc_top5"] == 0.75
    conn = sqlite3.connect(old_store)
    assert {"train_acc_top5", "test_acc_top5"} <= {r[1] for r in conn.execute("PRAGMA table_info(epochs)")}
    conn.close()
    with Store(old_store) as store:  # a second open migrates nothing more
        assert store.run("k1")["train_acc_top5"] == 0.99


def test_the_run_table_of_the_report_shows_top5_when_runs_have_it():
    from rethinkgen.report.tables import summary_table

    base = {"name": "r", "status": "converged", "config": {"model": "inception_v3", "data": "imagenet"},
            "train_acc": 0.9, "test_acc": 0.6, "best_test_acc": 0.65}
    with_top5 = summary_table([{**base, "train_acc_top5": 0.99, "test_acc_top5": 0.8,
                                "best_test_acc_top5": 0.85}], "imagenet")
    assert "| 85.00 |" in with_top5.to_markdown() and "best test top-5 (%)" in with_top5.to_markdown()
    assert "top-5" not in summary_table([base], "imagenet").to_markdown()


def _imagenet_run(labels, augment, dropout, wd, seed=0, status="max_epochs", **numbers):
    corruption = "random_labels" if labels == "random" else "true_labels"
    config = {"data": "imagenet", "model": "inception_v3", "corruption": corruption, "augment": augment,
              "flip": augment, "dropout": dropout, "weight_decay": wd, "seed": seed}
    return {"name": f"{labels}-{seed}", "status": status, "config": config, "history": [], "step_losses": [],
            **numbers}


def test_table2_puts_every_paper_row_beside_ours():
    from rethinkgen.report import paper
    from rethinkgen.report.table2 import table2

    runs = [_imagenet_run("true", False, 0.0, 0.0, seed=s, train_acc=0.99, test_acc=0.60 + 0.02 * s,
                          train_acc_top5=1.0, test_acc_top5=0.8, best_test_acc=0.63, best_test_acc_top5=0.845)
            for s in (0, 1)]
    runs.append(_imagenet_run("random", False, 0.2, 4e-5, status="diverged", train_acc=float("nan")))
    table = table2(runs)
    assert [(r["labels"], r["data_aug"], r["dropout"], r["weight_decay"]) for r in table.rows] == [
        (r["labels"], r["data_aug"], r["dropout"], r["weight_decay"]) for r in paper.table2_rows()]  # paper order
    none = table.rows[3]  # original labels, no regularizer: the paper's 59.80 (63.16) top-1 test
    assert (none["seeds"], none["top1_test"], none["paper_top1_test"]) == (2, "61.00 (63.00)", "59.80 (63.16)")
    assert none["top5_test"] == "80.00 (84.50)" and none["paper_top5_test"] == "80.38 (84.49)"
    assert none["delta_top1_test"] == pytest.approx(61.0 - 59.80)
    assert none["paper_mark"].split()[2:4] == ["[V]", "([S])"]  # 59.80 [V], (63.16) [S]
    diverged = table.rows[4]  # random labels, dropout + wd: a diverged run is no evidence
    assert diverged["seeds"] == 0 and diverged["top1_train"] is None and diverged["paper_top1_train"] == "91.18"
    assert "diverged" in diverged["status"] and table.rows[0]["status"] == "not run"
    markdown = table.to_markdown()
    assert "59.80 (63.16)" in markdown and "83.6" in markdown


def test_table2_keeps_runs_with_crops_or_flips_alone_out_of_every_row():
    """"data aug" is crops and flips together; a run with flips alone sat in the no-augmentation row (and
    crops alone in the augmentation one), averaged with the paper's setting as another seed."""
    from rethinkgen.report.table2 import table2

    plain = _imagenet_run("true", False, 0.0, 0.0, seed=0, train_acc=0.99, test_acc=0.60)
    flips = _imagenet_run("true", False, 0.0, 0.0, seed=1, train_acc=0.90, test_acc=0.70)
    flips["config"]["flip"] = True
    crops = _imagenet_run("true", True, 0.0, 0.0, seed=0, train_acc=0.90, test_acc=0.70)
    crops["config"]["flip"] = False
    rows = table2([plain, flips, crops]).rows
    assert (rows[3]["seeds"], rows[3]["top1_test"]) == (1, "60.00")  # true labels, no regularizer: plain only
    assert rows[1]["seeds"] == 0  # true labels, data aug only: crops without flips are not it


def test_table2_never_averages_runs_of_other_settings_as_seeds():
    """Two sweeps of one paper row at two learning rates (same seed) are two rows, each beside the
    paper's numbers and named by its setting; they were averaged as two "seeds" of one row."""
    from rethinkgen.report import paper
    from rethinkgen.report.table2 import table2

    slow = _imagenet_run("true", False, 0.0, 0.0, seed=0, train_acc=0.99, test_acc=0.60)
    fast = _imagenet_run("true", False, 0.0, 0.0, seed=0, train_acc=0.90, test_acc=0.50)
    slow["config"]["lr"], fast["config"]["lr"] = 0.1, 0.4
    again = _imagenet_run("true", False, 0.0, 0.0, seed=1, train_acc=0.99, test_acc=0.62)
    again["config"]["lr"] = 0.1
    table = table2([slow, fast, again])
    rows = [r for r in table.rows if (r["labels"], r["data_aug"], r["dropout"], r["weight_decay"])
            == ("true", False, False, False)]
    got = [(r["variant"], r["seeds"], r["top1_test"]) for r in rows]
    assert got == [("lr=0.1", 2, "61.00"), ("lr=0.4", 1, "50.00")]
    assert all(r["paper_top1_test"] == "59.80 (63.16)" for r in rows)
    assert len(table.rows) == len(paper.table2_rows()) + 1 and "other settings" in table.to_markdown()


def test_the_report_of_an_imagenet_store_has_table2(tmp_path):
    from rethinkgen.report.build import build_from_data

    runs = [_imagenet_run("true", True, 0.2, 4e-5, train_acc=0.92, test_acc=0.77, train_acc_top5=0.99,
                          test_acc_top5=0.93, best_test_acc=0.78, best_test_acc_top5=0.94, n_params=27_161_264)]
    index = build_from_data(runs, [], tmp_path)
    text = (tmp_path / "table2_imagenet.md").read_text()
    assert "77.00 (78.00)" in text and "77.84" in text  # ours beside the paper's 77.84
    assert "Table 2" in index.read_text()
