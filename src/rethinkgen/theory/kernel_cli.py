"""``rethinkgen kernel fit``: minimum-norm kernel interpolation on a dataset (paper Section 5).

Loads a dataset (inputs as loaded: pixels in [0, 1], no preprocessing), applies a feature map
(``raw`` | ``wavelet`` | ``random-conv``), picks the bandwidth (a number, ``median``, or ``auto`` = a
grid around the median distance scored on held-out training points), solves K α = Y for one-hot Y
and prints test error, RKHS norms, relative residual, time and peak memory; ``--store`` records the
result in the results store's ``kernel_results`` table for the report.

:func:`kernel_experiment` is the same protocol as a function (used by ``benchmarks/mnist_kernel_paper.py``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from rethinkgen.errors import ConfigError
from rethinkgen.theory import kernels as K
from rethinkgen.theory.features import FEATURES, build_feature_map

kernel_app = typer.Typer(no_args_is_help=True, add_completion=False,
                         help="Section 5: minimum-norm kernel interpolation (solve K α = Y exactly, "
                              "report test error and the RKHS norm of the solution).")


@kernel_app.callback()
def _kernel_group() -> None:
    """Section 5: minimum-norm kernel interpolation (keeps ``fit`` a subcommand)."""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_bandwidth(value: str | float | None) -> str | float:
    """``"auto"`` | ``"median"`` | a positive number."""
    if value is None:
        return "auto"
    if isinstance(value, int | float):
        v = float(value)
    elif value in ("auto", "median"):
        return value
    else:
        try:
            v = float(value)
        except ValueError:
            raise ConfigError(f"--bandwidth must be a positive number, 'auto' or 'median', "
                              f"got {value!r}") from None
    if not v > 0:
        raise ConfigError(f"--bandwidth must be > 0, got {v}")
    return v


def kernel_experiment(data: str, *, n: int | None = None, n_test: int | None = None, kernel: str = "gaussian",
                      bandwidth: str | float = "auto", features: str = "raw", filters: int | None = None,
                      reg: float = 0.0, solver: str = "exact", dtype: str = "float32", device: str = "auto",
                      seed: int = 0, data_dir: Path | str | None = None, feature_options: dict | None = None,
                      val_fit: int | None = None, val_size: int | None = None,
                      factors: tuple[float, ...] = K.BANDWIDTH_FACTORS, cg_tol: float = 1e-6,
                      cg_max_iter: int = 2000, log=_stderr) -> tuple[K.KernelResult, dict]:
    """Load ``data``, map features, choose h, solve and evaluate; returns (result, config dict).

    ``bandwidth="auto"``: :func:`rethinkgen.theory.kernels.select_bandwidth` on the training points only
    (fit on ``val_fit`` = min(10,000, n − val) of them, score on ``val_size`` = min(5,000, n // 5)
    others, h from ``factors`` × median distance); the config records the grid and the choice.
    """
    from rethinkgen.data.sources import load_dataset  # lazy: the data layer is only needed here

    spec = K.get_kernel(kernel)  # unknown names and bad numbers fail before any loading
    FEATURES.get(features)
    if solver not in ("exact", "cg"):
        raise ConfigError(f"unknown solver {solver!r}; valid: exact, cg")
    reg = K.check_reg(reg)
    if not (cg_tol > 0 and cg_max_iter >= 1):
        raise ConfigError(f"--cg-tol must be > 0 and --cg-max-iter >= 1, got {cg_tol:g} and {cg_max_iter}")
    dt = K.resolve_dtype(dtype)
    dev = K.resolve_device(device)
    bw = parse_bandwidth(bandwidth)
    t0 = time.perf_counter()
    ds = load_dataset(data, data_dir, n_train=n, n_test=n_test, seed=seed)
    log(f"{data}: {ds.n_train:,} train, {ds.n_test:,} test, inputs {ds.input_shape} ({ds.layout}), "
        f"loaded in {time.perf_counter() - t0:.1f} s")
    fmap = build_feature_map(features, ds.input_shape, ds.layout, filters=filters, seed=seed,
                             **(feature_options or {}))
    t0 = time.perf_counter()
    x_tr = fmap(ds.x_train, device=dev)
    x_te = fmap(ds.x_test, device=dev)
    t_feat = time.perf_counter() - t0
    log(f"features {features}: {fmap.description}; {fmap.dim:,} per input, {t_feat:.1f} s")
    # identical training points with different labels: named now (indices into the whole training set),
    # before any bandwidth search or solve
    K.check_duplicates(x_tr.to(dt), K.one_hot(ds.y_train, ds.num_classes, dt), reg, dt, x_tr)
    config = {"data": data, "n_train": ds.n_train, "n_test": ds.n_test, "kernel": spec.name,
              "features": features, "feature_params": fmap.params, "filters": fmap.params.get("filters"),
              "reg": float(reg), "solver": solver, "dtype": dtype, "seed": seed, "bandwidth_rule": None,
              "preprocessing": "none (inputs as loaded)"}
    h: float | None
    if not spec.uses_bandwidth:
        h, config["bandwidth_rule"] = None, "not used"
    elif bw == "median":
        h = K.median_bandwidth(x_tr, seed=seed)
        config["bandwidth_rule"] = "median distance (median heuristic)"
        log(f"bandwidth h = {h:.4g} (median of pairwise distances on ≤ 2,000 training points)")
    elif bw == "auto":
        log("choosing the bandwidth on held-out training points:")
        choice = K.select_bandwidth(x_tr, ds.y_train, ds.num_classes, spec.name, factors=factors,
                                    n_fit=val_fit, n_val=val_size, seed=seed, reg=reg, dtype=dtype,
                                    device=dev, log=log)
        h = choice.bandwidth
        config["bandwidth_rule"] = (f"auto: grid {list(factors)} × median distance {choice.median:.4g}, "
                                    f"fit on {choice.n_fit:,} training points, scored on "
                                    f"{choice.n_val:,} other training points")
        config["bandwidth_grid"] = choice.grid
        config["bandwidth_notes"] = choice.notes
        chosen = next(g for g in choice.grid if g["bandwidth"] == h)
        log(f"chosen h = {h:.4g} ({chosen['factor']:g} × median), held-out error "
            f"{100 * chosen['val_error']:.2f}%")
    else:
        h = float(bw)
        config["bandwidth_rule"] = "given"
    config["bandwidth"] = h
    result = K.fit_min_norm(x_tr, K.one_hot(ds.y_train, ds.num_classes), x_te, ds.y_test, spec.name, h, reg,
                            solver, dtype, dev, cg_tol=cg_tol, cg_max_iter=cg_max_iter, log=log)
    result.timings["features_s"] = t_feat
    return result, config


def store_row(result: K.KernelResult, config: dict) -> dict:
    """The ``kernel_results`` row for :meth:`rethinkgen.sweep.store.Store.add_kernel_result`.

    ``kernel fit --store`` records only results whose status is "ok": a fit that failed numerically is
    printed with its problems and never becomes a number in the report.
    """
    return {"data": config["data"], "n_train": result.n_train, "n_test": result.n_test,
            "kernel": result.kernel, "bandwidth": result.bandwidth, "features": config["features"],
            "filters": config.get("filters"), "reg": result.reg, "solver": result.solver,
            "dtype": result.dtype, "test_error": result.test_error, "norm": result.norm,
            "norm_per_class": result.norm_per_class, "rel_residual": result.rel_residual,
            "time_s": result.time_s, "peak_mem_bytes": result.peak_mem_bytes,
            "config": {k: v for k, v in config.items() if k != "bandwidth_grid"}}


def _print_result(result: K.KernelResult, config: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table("quantity", "value", title=f"min-norm kernel interpolation: {config['data']}, {result.kernel} "
              f"kernel, {config['features']} features", title_justify="left")
    rows = [
        ("train / test points", f"{result.n_train:,} / {result.n_test:,}"),
        ("input dimension", f"{result.dim:,}"),
        ("bandwidth h", "—" if result.bandwidth is None
         else f"{result.bandwidth:.4g} ({config['bandwidth_rule']})"),
        ("ridge", f"{result.reg:g}" + (f" (+ jitter {result.jitter:.3g})" if result.jitter else "")),
        ("solver", f"{result.solver}, {result.dtype}, {result.device}"
                   + (f", {result.cg_iterations} CG iterations" if result.cg_iterations is not None else "")),
        ("test error", f"{100 * result.test_error:.2f}%"),
        ("train error", f"{100 * result.train_error:.2f}%"),
        ("RKHS norm √(Σ_c α_cᵀKα_c)", f"{result.norm:.4g}" if result.norm == result.norm
         else "undefined (some α_cᵀKα_c < 0)"),
        ("norm per class", ", ".join(f"{v:.3g}" if v == v else "undefined" for v in result.norm_per_class)),
        ("relative residual ‖Kα−Y‖/‖Y‖", f"{result.rel_residual:.2e}"),
        ("time", f"{result.time_s:.1f} s ("
         + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()) + ")"),
        ("peak memory", f"{result.peak_mem_bytes / 1e9:.2f} GB"),
    ]
    rows.insert(0, ("status", result.status if result.status == "ok"
                    else f"{result.status}: not a result (see the problems below)"))
    for r in rows:
        t.add_row(*r)
    console = Console()
    console.print(t)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    for problem in result.problems:
        console.print(f"problem: {problem}", highlight=False, markup=False)


@kernel_app.command("fit")
def fit_command(
    data: Annotated[str, typer.Option("--data", help="dataset name, e.g. mnist, mnist1d, cifar10")],
    n: Annotated[int | None, typer.Option("--n", help="training points (seeded subset); default all")] = None,
    n_test: Annotated[int | None, typer.Option("--n-test", help="test points; default all")] = None,
    kernel: Annotated[str, typer.Option(help="gaussian | laplacian | linear")] = "gaussian",
    bandwidth: Annotated[str, typer.Option(
        help="h, 'median' (median distance) or 'auto' (grid × median, scored on held-out training points)")]
    = "auto",
    features: Annotated[str, typer.Option(help="raw | wavelet | random-conv")] = "raw",
    filters: Annotated[int | None, typer.Option(help="random-conv: random filters F (paper: 32000)")] = None,
    reg: Annotated[float, typer.Option(help="ridge λ on K's diagonal (0: interpolate, paper eq. 3)")] = 0.0,
    solver: Annotated[str, typer.Option(help="exact (in-place Cholesky) | cg (conjugate gradients)")]
    = "exact",
    dtype: Annotated[str, typer.Option(help="float32 | float64")] = "float32",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    seed: Annotated[int, typer.Option(help="subset, held-out split and random filters")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help="dataset folder (default $RETHINKGEN_DATA)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON on stdout")] = False,
    store: Annotated[Path | None, typer.Option(help="record the result in this results store (SQLite)")]
    = None,
    cg_tol: Annotated[float, typer.Option("--cg-tol", help="cg: stop at this relative residual")] = 1e-6,
    cg_max_iter: Annotated[int, typer.Option("--cg-max-iter", help="cg: at most this many products with K; "
                                             "a run that stops here is reported as not converged")] = 2000,
) -> None:
    """Solve K α = Y (one-hot Y) exactly and report test error and the solution's RKHS norm (paper §5)."""
    result, config = kernel_experiment(data, n=n, n_test=n_test, kernel=kernel, bandwidth=bandwidth,
                                       features=features, filters=filters, reg=reg, solver=solver,
                                       dtype=dtype, device=device, seed=seed, data_dir=data_dir,
                                       cg_tol=cg_tol, cg_max_iter=cg_max_iter)
    key = None
    if result.status != "ok":
        if as_json:
            print(json.dumps({**result.to_dict(), "data": data, "features": features, "config": config,
                              "result_key": None}, indent=2, default=float))
        else:
            _print_result(result, config)
        raise K.KernelFitError(
            f"the kernel fit failed ({result.status}): " + " | ".join(result.problems)
            + ("; nothing was recorded in the store" if store is not None else ""), result)
    if store is not None:
        from rethinkgen.sweep.store import Store  # lazy: only with --store

        s = Store(store)
        try:
            key = s.add_kernel_result(store_row(result, config))
        finally:
            close = getattr(s, "close", None)
            if close is not None:
                close()
        _stderr(f"recorded in {store} (result_key {key[:12]})")
    if as_json:
        payload = {**result.to_dict(), "data": data, "features": features, "config": config,
                   "result_key": key}
        print(json.dumps(payload, indent=2, default=float))
    else:
        _print_result(result, config)
