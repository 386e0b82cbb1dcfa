"""Paper §5 (SGD finds the minimum-norm solution) and §2.2 eq. 1 (Rademacher complexity)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from rethinkgen.errors import ConfigError
from rethinkgen.theory.minnorm import other_interpolants, planted_problem, sgd_least_squares
from rethinkgen.theory.rademacher import (
    empirical_rademacher,
    linear_fit,
    random_signs,
    theorem1_fit,
    trainer_fit,
)


def test_sgd_converges_to_pseudo_inverse_solution():
    X, y, *_ = planted_problem(60, 300, seed=1)
    res = sgd_least_squares(X, y, epochs=80, seed=0)
    w_pinv = torch.linalg.pinv(X) @ y
    assert torch.allclose(res.w_min_norm, w_pinv, atol=1e-10)
    assert res.rel_distance < 1e-8
    assert float((res.w - w_pinv).norm() / w_pinv.norm()) < 1e-8
    assert res.residual < 1e-8
    assert res.null_component < 1e-10 * res.min_norm  # stays in the span of the data
    assert max(h["null_component"] for h in res.history) < 1e-10 * res.min_norm
    dist = [h["distance"] for h in res.history]
    assert dist[0] == pytest.approx(res.min_norm) and dist[-1] < 1e-6 * dist[0]
    assert dist[10] < dist[1] < dist[0]
    assert res.rank == 60 and res.steps == 80 * 60


def test_sgd_from_nonzero_start_keeps_its_null_space_part():
    X, y, *_ = planted_problem(30, 120, seed=2)
    w0 = torch.from_numpy(np.random.default_rng(0).standard_normal(120))
    res = sgd_least_squares(X, y, epochs=150, seed=0, w0=w0)
    assert res.residual < 1e-8  # it still interpolates ...
    assert res.null_component > 0.5  # ... but not with the minimum norm
    assert res.norm > res.min_norm


def test_minibatch_sgd_and_errors():
    X, y, *_ = planted_problem(40, 100, seed=3)
    res = sgd_least_squares(X, y, epochs=400, batch_size=8, seed=0, lr=2.0)
    assert res.rel_distance < 1e-3 and res.null_component < 1e-10
    with pytest.raises(ConfigError, match="diverged"):
        sgd_least_squares(X, y, epochs=50, lr=100.0)
    with pytest.raises(ConfigError, match="rows"):
        sgd_least_squares(X, y[:-1])


def test_other_interpolants_have_larger_norm():
    X, y, Xt, yt, _ = planted_problem(50, 300, seed=4)
    rows = {r["name"]: r for r in other_interpolants(X, y, X_test=Xt, y_test=yt, seed=0)}
    assert set(rows) == {"min_norm", "random_test_labels", "random_null_space", "random_span"}
    base = rows["min_norm"]["norm"]
    assert base == pytest.approx(float((torch.linalg.pinv(X) @ y).norm()))
    for name, r in rows.items():
        assert r["residual"] < 1e-10, name  # all interpolate the training data
        if name != "min_norm":
            assert r["norm"] > base * 1.05, name
            assert r["test_mse"] > rows["min_norm"]["test_mse"], name
    assert rows["random_null_space"]["norm_ratio"] == pytest.approx(np.sqrt(2))
    rows = other_interpolants(X, y, n_extra=10)  # no test set: Gaussian extra points
    assert "test_mse" not in rows[0] and rows[1]["norm"] > rows[0]["norm"]
    with pytest.raises(ConfigError, match="d > n"):
        other_interpolants(X[:, :40], y)


# -------------------------------------------------------------------------------------- Rademacher


def test_random_signs_are_balanced_and_seeded():
    s = random_signs(1000, 0, 0)
    assert set(s.tolist()) == {-1.0, 1.0} and abs(float(s.mean())) < 0.1
    assert torch.equal(s, random_signs(1000, 0, 0)) and not torch.equal(s, random_signs(1000, 0, 1))


def test_rademacher_theorem1_class_is_one():
    X = torch.randn(400, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = empirical_rademacher(theorem1_fit, X, m=5, seed=0, output="sign")
    assert res.mean == 1.0 and res.std == 0.0 and res.m == 5
    res = empirical_rademacher(theorem1_fit, X, m=3, seed=1)
    assert res.mean > 1 - 1e-8


def test_rademacher_linear_class_is_small():
    n, d = 2000, 5
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    res = empirical_rademacher(linear_fit, X, m=20, seed=0)
    assert res.mean < 0.02  # ≈ (d + 1)/n = 0.003
    assert res.mean > 0 and res.stderr == pytest.approx(res.std / np.sqrt(20))
    assert res.mean == pytest.approx((d + 1) / n, abs=5 * res.stderr + 1e-3)
    # a linear class with d >= n shatters too
    small = empirical_rademacher(linear_fit, X[:5], m=4, seed=0)
    assert small.mean == pytest.approx(1.0)


def test_rademacher_errors():
    X = torch.randn(10, 2)
    with pytest.raises(ConfigError):
        empirical_rademacher(linear_fit, X, m=0)
    with pytest.raises(ConfigError):
        empirical_rademacher(linear_fit, X, m=2, output="tanh")


def test_rademacher_with_the_trainer():
    """The trainer adapter: an MLP fits random ±1 labels of 64 MNIST-1D signals."""
    from rethinkgen.data.sources import load_dataset
    from rethinkgen.train.config import TrainConfig

    ds = load_dataset("mnist1d", n_train=64, n_test=8, seed=0)
    fit = trainer_fit(TrainConfig(data="mnist1d", model="mlp_1x512", epochs=150, batch_size=32, device="cpu"))
    res = empirical_rademacher(fit, ds.x_train, m=2, seed=0, name="mlp_1x512")
    assert len(fit.summaries) == 2 and res.output == "sign"
    for s, v in zip(fit.summaries, res.values, strict=True):
        assert v == pytest.approx(2 * s["train_acc"] - 1)
    assert res.mean > 0.9  # random labels are memorized: R̂_n ≈ 1


# --------------------------------------------------------------------------------------------- CLI


def _app() -> typer.Typer:
    from rethinkgen.theory.cli import theory_app

    app = typer.Typer()
    app.add_typer(theory_app, name="theory")

    @app.callback()
    def _root() -> None:
        pass

    return app


def test_cli_sgd_minnorm_json_and_table():
    runner = CliRunner()
    result = runner.invoke(_app(), ["theory", "sgd-minnorm", "--n", "30", "--d", "90", "--epochs", "60", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["sgd"]["rel_distance"] < 1e-6 and out["sgd"]["null_component"] < 1e-10
    norms = {r["name"]: r["norm"] for r in out["interpolants"]}
    assert min(norms, key=norms.get) == "min_norm"
    table = runner.invoke(_app(), ["theory", "sgd-minnorm", "--n", "20", "--d", "60", "--epochs", "5"])
    assert table.exit_code == 0 and "null part" in table.output and "random_span" in table.output
    bad = runner.invoke(_app(), ["theory", "sgd-minnorm", "--n", "50", "--d", "40"])
    assert isinstance(bad.exception, ConfigError)


def test_cli_rademacher_linear_and_theorem1():
    runner = CliRunner()
    result = runner.invoke(_app(), ["theory", "rademacher", "--data", "synthetic", "--class", "theorem1",
                                    "--n", "200", "--m", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["mean"] > 1 - 1e-8
    result = runner.invoke(_app(), ["theory", "rademacher", "--data", "mnist1d", "--class", "linear",
                                    "--n", "400", "--m", "4"])
    assert result.exit_code == 0, result.output
    assert "R̂_n estimate" in result.output
    bad = runner.invoke(_app(), ["theory", "rademacher", "--class", "nonsense"])
    assert isinstance(bad.exception, ConfigError) and "theorem1" in str(bad.exception)
