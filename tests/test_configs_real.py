"""The ready specs for real images (configs/real): Figure 1's grid on MNIST and Fashion-MNIST, GPU- and
CPU-sized, packaged with rethinkgen, and (slow) the CPU-sized Fashion-MNIST spec run for real."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from data_files import REAL_FASHION
from rethinkgen.report import paper
from rethinkgen.report.figures import level_lines
from rethinkgen.sweep.spec import load_spec

REAL = Path(__file__).resolve().parents[1] / "configs" / "real"
SPECS = {"mnist": "mnist", "fashion-mnist": "fashion_mnist"}
LEVELS = {0.0, 0.2, 0.4, 0.6, 0.8, 1.0}


def _levels(spec, model: str) -> set[float]:
    """p of every label-corruption run of ``model``, counting true/random labels as 0 and 1 (as the report)."""
    out = set()
    for r in spec.runs:
        c = r.config
        if c.model == model:
            out |= {c.level} if c.corruption == "partial_labels" else \
                {0.0} if c.corruption == "true_labels" else {1.0} if c.corruption == "random_labels" else set()
    return out


@pytest.mark.parametrize("stem, data", sorted(SPECS.items()))
def test_gpu_spec_runs_figure1_with_the_papers_models(stem, data):
    spec = load_spec(REAL / f"figure1-{stem}.toml")
    models = {"mlp_1x512", "mlp_3x512", "alexnet_small"}
    assert {r.config.data for r in spec.runs} == {data} and {r.config.model for r in spec.runs} == models
    assert all(r.config.n_train is None and r.config.lr == 0.01 and r.config.standardize == "per_image"
               and r.config.weight_decay == 0 and not r.config.augment for r in spec.runs)
    for model in models:
        mine = {r.config.corruption for r in spec.runs if r.config.model == model}
        assert mine >= set(paper.FIGURE1_CORRUPTIONS) and _levels(spec, model) == LEVELS


@pytest.mark.parametrize("stem, data", sorted(SPECS.items()))
def test_cpu_spec_is_the_same_grid_for_one_mlp_on_10000_images(stem, data):
    spec = load_spec(REAL / f"figure1-{stem}-cpu.toml")
    assert {r.config.data for r in spec.runs} == {data} and {r.config.model for r in spec.runs} == {"mlp_1x512"}
    assert {r.config.n_train for r in spec.runs} == {10000} and len(spec.runs) == 9
    assert {r.config.corruption for r in spec.runs} >= set(paper.FIGURE1_CORRUPTIONS)
    assert _levels(spec, "mlp_1x512") == LEVELS


def test_the_report_draws_one_level_line_from_the_cpu_spec():
    runs = [{"config": r.config.to_dict(), "status": "converged", "run_key": r.run_key, "train_acc": 1.0,
             "test_acc": 0.5}
            for r in load_spec(REAL / "figure1-fashion-mnist-cpu.toml").runs]
    lines = level_lines(runs)
    assert len(lines) == 1 and set(next(iter(lines.values()))) == LEVELS


def test_real_specs_are_packaged():
    packaged = resources.files("rethinkgen") / "configs" / "real"
    names = sorted(p.name for p in packaged.iterdir() if p.name.endswith(".toml"))
    assert names == sorted(p.name for p in REAL.glob("*.toml")) and len(names) == 4
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"configs/real/*.toml"' in pyproject  # package data: installed wheels carry them too


@pytest.mark.slow
@pytest.mark.timeout(2400)  # about 15 min on 2 quiet cores: at the suite's 900 s per-test limit (pyproject.toml)
@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason=f"real Fashion-MNIST not found at {REAL_FASHION}")
def test_cpu_spec_fits_random_labels_on_fashion_mnist(tmp_path):
    """The CPU-sized spec for real (about 15 minutes on 2 quiet cores): random labels are fit and test error
    rises with the label-corruption level."""
    from rethinkgen.sweep.executors import make_executor
    from rethinkgen.sweep.runner import run_sweep
    from rethinkgen.sweep.store import Store

    spec = load_spec(REAL / "figure1-fashion-mnist-cpu.toml", overrides={"data_dir": str(REAL_FASHION)})
    run_sweep(spec, tmp_path / "s.db", executor=make_executor("local", jobs=2))
    with Store(tmp_path / "s.db", readonly=True) as store:
        by = {(r["config"]["corruption"], r["config"]["level"]): r for r in store.runs()}
    assert by[("random_labels", 1.0)]["train_acc"] == 1.0
    errors = [1 - by[key]["test_acc"] for key in [("true_labels", 0.0)] + [("partial_labels", p) for p in
                                                                             (0.2, 0.4, 0.6, 0.8)]]
    assert errors == sorted(errors) and 1 - by[("random_labels", 1.0)]["test_acc"] > 0.85
