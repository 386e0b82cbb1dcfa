"""Kernel fits that check themselves (issue 12; ../shared/cases/kernel_duplicate_points): duplicate and
near-duplicate training points named, a negative αᵀKα reported as a numerical failure, CG stopping
early reported, advice that fits the dtype. All on the CPU in float32/float64 as named per test."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from rethinkgen.errors import ConfigError
from rethinkgen.theory import kernels as K
from test_theory_kernels import _blobs, _gen


def _duplicate_case(kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The arrays of ../shared/cases/kernel_duplicate_points/make_npz.py (same seed and construction):
    400 points in d = 20, 10 classes; rows 1, 3, ..., 99 copy rows 0, 2, ..., 98 ("conflict": with the
    next label, "same": with the same label) or sit 1e-7 from them with the next label ("near")."""
    rng = np.random.default_rng(0)
    n, d, k = 400, 20, 10
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, k, n)
    xt = rng.normal(size=(200, d)).astype(np.float32)
    yt = rng.integers(0, k, 200)
    a, ya = x.copy(), y.copy()
    a[1::2][:50] = a[0::2][:50]
    ya[1::2][:50] = (ya[0::2][:50] + 1) % k
    if kind == "same":
        ya = y.copy()
        ya[1::2][:50] = ya[0::2][:50]
    if kind == "near":
        c = x.astype(np.float64)
        c[1::2][:50] = c[0::2][:50] + 1e-7
        a = c.astype(np.float32)
    return torch.from_numpy(a), torch.from_numpy(ya), torch.from_numpy(xt), torch.from_numpy(yt)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conflicting_duplicates_are_named_before_any_solve(dtype, monkeypatch):
    x, y, xt, yt = _duplicate_case("conflict")

    def no_solve(*args, **kwargs):
        raise AssertionError("the solve started")

    monkeypatch.setattr("rethinkgen.theory.kernels.fit.solve_exact_packed", no_solve)
    with pytest.raises(K.ConflictingDuplicatesError) as e:
        K.fit_min_norm(x, K.one_hot(y, 10), xt, yt, bandwidth=6.0, dtype=dtype, device="cpu")
    msg = str(e.value)
    assert e.value.pairs == [(2 * i, 2 * i + 1) for i in range(50)]
    assert f"training points 0 and 1 (labels {int(y[0])}, {int(y[1])})" in msg and "and 40 more pairs" in msg
    assert f"identical in {dtype}" in msg and "remove or relabel" in msg and "--reg > 0" in msg
    assert "--dtype float64" not in msg  # the points are identical in float64 too
    # with a ridge the fit is defined: a note names them, nothing is refused
    monkeypatch.undo()
    r = K.fit_min_norm(x, K.one_hot(y, 10), xt, yt, bandwidth=6.0, reg=1e-3, dtype=dtype, device="cpu")
    assert r.status == "ok" and any("0 and 1" in note and "cannot interpolate them" in note for note in r.notes)


def test_duplicates_that_only_float32_makes_are_named_with_the_float64_fix():
    x, y, xt, yt = _duplicate_case("conflict")
    x = x.double()
    x[1::2][:50] += 1e-12  # distinct in float64, identical once rounded to float32
    with pytest.raises(K.ConflictingDuplicatesError, match=r"--dtype float64 \(50 of the pairs differ"):
        K.fit_min_norm(x, K.one_hot(y, 10), xt, yt, bandwidth=6.0, dtype="float32", device="cpu")


def test_duplicates_with_equal_labels_are_solved_as_one_point():
    x, y, xt, yt = _duplicate_case("same")
    kw = dict(bandwidth=6.0, dtype="float64", device="cpu", keep_alpha=True)
    r = K.fit_min_norm(x, K.one_hot(y, 10), xt, yt, **kw)
    assert r.status == "ok" and r.duplicates_merged == 50 and r.jitter == 0.0 and r.train_error == 0.0
    assert any("50 training points are exact copies" in note for note in r.notes)
    distinct = torch.tensor([i for i in range(400) if not (i % 2 == 1 and i < 100)])
    ref = K.fit_min_norm(x[distinct], K.one_hot(y[distinct], 10), xt, yt, **kw)
    assert r.norm == pytest.approx(ref.norm, rel=1e-10) and r.test_error == ref.test_error
    torch.testing.assert_close(r.alpha[0] + r.alpha[1], ref.alpha[0])  # split evenly between the copies
    torch.testing.assert_close(r.alpha[0], r.alpha[1])
    assert r.rel_residual < 1e-9


def test_near_duplicates_fail_as_numerics_with_the_pairs_and_dtype_advice():
    x, y, xt, yt = _duplicate_case("near")
    r32 = K.fit_min_norm(x, K.one_hot(y, 10), xt, yt, bandwidth=6.0, dtype="float32", device="cpu")
    r64 = K.fit_min_norm(x, K.one_hot(y, 10), xt, yt, bandwidth=6.0, dtype="float64", device="cpu")
    for r in (r32, r64):
        assert r.status in ("inaccurate", "numerical_failure"), r.status
        text = " ".join(r.problems)
        assert "50 pairs of training points are near-duplicates" in text
        assert re.search(r"\b(\d+) and (\d+) \(4\.\de-07 apart", text)
        assert "--dtype float64" not in text  # 1 − k ≈ 3e-15: float64 cannot resolve them either
    # a negative quadratic form is a numerical failure, never a norm of 0
    negative = [c for c, v in enumerate(r32.quadratic_form) if v < 0]
    assert negative and r32.status == "numerical_failure" and math.isnan(r32.norm)
    assert all(math.isnan(r32.norm_per_class[c]) for c in negative) and 0.0 not in r32.norm_per_class
    assert any("α_cᵀ K α_c < 0" in p and "undefined (NaN), not 0" in p for p in r32.problems)
    # the advice works: the bandwidth it names interpolates
    h_max = float(re.search(r"a bandwidth below ([0-9.e+-]+)", " ".join(r64.problems)).group(1))
    ok = K.fit_min_norm(x, K.one_hot(y, 10), xt, yt, bandwidth=0.9 * h_max, dtype="float64", device="cpu")
    assert ok.status == "ok" and ok.train_error == 0.0 and ok.rel_residual < 1e-2


def test_cg_stopping_before_convergence_is_reported_not_a_result(tmp_path):
    x, y = _blobs(300, seed=11)
    r = K.fit_min_norm(x, K.one_hot(y, 3, torch.float64), x[:20], y[:20], "gaussian", 1.0, solver="cg",
                       dtype="float64", device="cpu", cg_tol=1e-10, cg_max_iter=3)
    assert r.cg_iterations == 3 and r.cg_converged is False and r.status == "not_converged"
    assert any("CG stopped after 3 iterations before reaching tol 1e-10" in p for p in r.problems)
    done = K.fit_min_norm(x, K.one_hot(y, 3, torch.float64), x[:20], y[:20], "gaussian", 1.0, solver="cg",
                          dtype="float64", device="cpu", cg_tol=1e-10, cg_max_iter=2000)
    assert done.cg_converged and done.status == "ok" and done.cg_iterations > 3
    # the command fails, says why, and records nothing
    from typer.testing import CliRunner

    from rethinkgen.theory.kernel_cli import kernel_app

    store = tmp_path / "k.db"
    res = CliRunner().invoke(kernel_app, ["fit", "--data", "mnist1d", "--n", "300", "--n-test", "50",
                                          "--bandwidth", "median", "--solver", "cg", "--cg-max-iter", "2",
                                          "--store", str(store), "--device", "cpu"])
    assert res.exit_code != 0 and isinstance(res.exception, K.KernelFitError)
    assert "not_converged" in str(res.exception) and "nothing was recorded in the store" in str(res.exception)
    assert "problem: CG stopped after 2 iterations" in res.output
    assert not store.exists()


def test_cli_names_conflicting_duplicates_of_an_npz_before_choosing_h(tmp_path):
    from typer.testing import CliRunner

    from rethinkgen.theory.kernel_cli import kernel_app

    x, y, xt, yt = _duplicate_case("conflict")
    path = tmp_path / "dup_conflict.npz"
    np.savez(path, x=x.numpy(), y=y.numpy(), x_test=xt.numpy(), y_test=yt.numpy())
    logs = []
    from rethinkgen.theory.kernel_cli import kernel_experiment

    with pytest.raises(K.ConflictingDuplicatesError, match="training points 0 and 1"):
        kernel_experiment("npz", data_dir=path, bandwidth="auto", dtype="float64", device="cpu", log=logs.append)
    assert not any("choosing the bandwidth" in line for line in logs)  # named before the search
    res = CliRunner().invoke(kernel_app, ["fit", "--data", "npz", "--data-dir", str(path), "--dtype", "float64",
                                          "--device", "cpu"])
    assert res.exit_code != 0 and isinstance(res.exception, K.ConflictingDuplicatesError)


def test_bad_reg_is_refused_before_loading_data(tmp_path):
    from rethinkgen.theory.kernel_cli import kernel_experiment

    for reg in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match=r"--reg \(the ridge λ\) must be a finite number >= 0"):
            kernel_experiment("npz", data_dir=tmp_path / "missing.npz", reg=reg, log=lambda s: None)


def test_closest_pairs_across_row_blocks_equal_brute_force():
    g = _gen(12)
    x = torch.randn(300, 5, generator=g, dtype=torch.float64)
    x[250], x[200], x[5] = x[3] + 1e-9, x[10] + 2e-9, x[299] + 3e-9  # pairs in different row blocks
    pairs = K.closest_pairs(x, torch.zeros(300), "gaussian", 1.0, count=6, row_block=64)
    diff = (x[:, None, :] - x[None, :, :]).norm(dim=2)  # exact differences, no GEMM cancellation
    i, j = torch.triu_indices(300, 300, 1)
    want = sorted(zip(diff[i, j].tolist(), i.tolist(), j.tolist(), strict=True))[:3]
    assert [(p.i, p.j) for p in pairs[:3]] == [(a, b) for _, a, b in want] == [(3, 250), (10, 200), (5, 299)]
    assert [p.distance for p in pairs[:3]] == pytest.approx([d for d, _, _ in want], rel=1e-6)
    assert len({(p.i, p.j) for p in pairs}) == 6 and all(p.i < p.j for p in pairs)  # each pair once
    assert all(p.distance > 0.1 for p in pairs[3:])  # then the next nearest neighbours, in order
    assert [p.distance for p in pairs] == sorted(p.distance for p in pairs)
    assert pairs[0].one_minus_k == pytest.approx(0.5 * pairs[0].distance ** 2, rel=1e-6)
