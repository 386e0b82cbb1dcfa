"""The paper's numbers in ``report/paper_reference.json`` are those of paper-reference.md, marks included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rethinkgen.report import paper

REFERENCE_MD = Path(__file__).resolve().parents[1].parent / "shared" / "paper-reference.md"


def test_table1_inception_rows():
    rows = [r for r in paper.table1_rows() if r["model"] == "inception_small"]
    got = [(r["random_crop"], r["weight_decay"], r["labels"], r["train_acc"], r["test_acc"]) for r in rows]
    assert got == [(True, True, "true", 100.0, 89.05), (True, False, "true", 100.0, 89.31),
                   (False, True, "true", 100.0, 86.03), (False, False, "true", 100.0, 85.75),
                   (False, False, "random", 100.0, 9.78)]
    assert {r["mark"] for r in paper.table1_rows()} == {"V2"}
    assert len(paper.table1_rows()) == 19


def test_lookups_and_parameter_counts():
    assert paper.paper_params("inception_small") == 1_649_402
    assert paper.paper_params("inception_small_nobn") == 1_649_402
    assert paper.paper_params("alexnet_small") == 1_387_786
    assert paper.paper_params("mlp_3x512") == 1_735_178
    assert paper.paper_params("mlp_1x512") == 1_209_866
    assert paper.paper_params("cnn1d") is None
    assert paper.table1_lookup("alexnet_small", True, False, "true")["test_acc"] == 79.66
    assert paper.table1_lookup("mlp_1x512", False, False, "random")["train_acc"] == 99.34
    assert paper.table1_lookup("mlp_1x512", True, False, "true") is None  # not in the paper
    assert paper.table4_lookup("mlp_1x512", False, True, "random")["train_acc"] == 99.21
    assert paper.table4_lookup("alexnet_small", False, True, "random")["converged"] is False
    # the random-crop Table 4 row was obtained with lr decay 0.999: it does not match a 0.95 run
    assert paper.table4_lookup("inception_small", True, False, "random", 0.95) is None
    assert paper.table4_lookup("inception_small", True, False, "random", 0.999)["train_acc"] == 99.93


def test_table2_imagenet_values_and_marks():
    rows = paper.table2_rows()
    no_reg = next(r for r in rows if r["labels"] == "true" and not r["data_aug"] and not r["weight_decay"])
    assert no_reg["top1_test"]["value"] == 59.80 and no_reg["top1_test"]["mark"] == "V"
    assert no_reg["top5_test"]["value"] == 80.38 and no_reg["top5_test"]["mark"] == "V"
    assert no_reg["top1_test"]["best"] == 63.16 and no_reg["top1_test"]["best_mark"] == "S"
    aug = next(r for r in rows if r["labels"] == "true" and r["data_aug"] and not r["weight_decay"])
    assert aug["top1_test"] == {"value": 72.95, "mark": "V"}
    rand = next(r for r in rows if r["labels"] == "random" and not r["dropout"] and not r["weight_decay"])
    assert rand["top1_train"] == {"value": 95.20, "mark": "V"}
    assert paper.load_reference()["table2"]["alexnet_2012_top5_test"] == {"value": 83.6, "mark": "V"}


def test_kernel_numbers_and_norms():
    got = {(r["data"], r["features"], r["regularized"]): (r["test_error"], r["mark"])
           for r in paper.kernel_rows()}
    assert got == {("mnist", "none", False): (1.2, "V"), ("mnist", "wavelet", False): (0.6, "V"),
                   ("cifar10", "none", False): (46.0, "V"), ("cifar10", "random_conv", False): (17.0, "V"),
                   ("cifar10", "random_conv", True): (15.0, "V")}
    assert paper.kernel_lookup("mnist", None, False)["norm"] == 220
    assert paper.kernel_lookup("mnist", "scattering", False)["norm"] == 390
    assert paper.kernel_lookup("cifar10", "random_conv_32000", True)["test_error"] == 15.0
    assert paper.kernel_lookup("mnist", "none", True) is None  # the paper gives no number


def test_figure1c_endpoints_are_derived_from_table1():
    points = {(p["model"], p["level"]): p for p in paper.figure1c_expected()}
    assert {p["mark"] for p in points.values()} == {"D"}
    for model in ("inception_small", "alexnet_small", "mlp_1x512"):
        true = paper.table1_lookup(model, False, False, "true")["test_acc"]
        rand = paper.table1_lookup(model, False, False, "random")["test_acc"]
        assert points[(model, 0.0)]["test_error"] == pytest.approx(100 - true)
        assert points[(model, 1.0)]["test_error"] == pytest.approx(100 - rand)


def test_every_mark_is_known():
    ref = paper.load_reference()
    marks = set()

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k.endswith("mark") and isinstance(v, str):
                    marks.add(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk({k: v for k, v in ref.items() if k != "marks"})
    assert marks <= set(paper.MARKS) and {"V", "V2", "D", "S", "R"} <= marks
    assert paper.mark_meaning("V2").startswith("table value confirmed")


def _md_table1() -> list[tuple]:
    text = REFERENCE_MD.read_text()
    block = text[text.index("## 1. Table 1"):text.index("## 2. Table 2")]
    rows, model = [], None
    names = {"Inception (small)": "inception_small", "Inception w/o BatchNorm": "inception_small_nobn",
             "Alexnet (small)": "alexnet_small", "MLP 3x512": "mlp_3x512", "MLP 1x512": "mlp_1x512"}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or not re.fullmatch(r"[\d.]+", cells[4]):
            continue
        labels = "random" if "random labels" in cells[0] else "true"
        if cells[0] in names:
            model = names[cells[0]]
        rows.append((model, cells[2] == "yes", cells[3] == "yes", labels, float(cells[4]), float(cells[5])))
    return rows


@pytest.mark.skipif(not REFERENCE_MD.is_file(), reason=f"{REFERENCE_MD} not present (the shared reference "
                                                       "sheet lives beside the repository)")
def test_table1_equals_the_reference_sheet():
    expected = _md_table1()
    got = [(r["model"], r["random_crop"], r["weight_decay"], r["labels"], r["train_acc"], r["test_acc"])
           for r in paper.table1_rows()]
    assert len(expected) == 19 and got == expected
