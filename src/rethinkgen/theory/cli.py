"""``rethinkgen theory ...``: Theorem 1 live, SGD's minimum-norm solution, Rademacher complexity.

Thin: parses, calls :mod:`rethinkgen.theory.expressivity`, :mod:`~rethinkgen.theory.minnorm` and
:mod:`~rethinkgen.theory.rademacher`, prints a rich table or JSON. Bad input raises RethinkgenError
subclasses (the main app prints them and exits 2). Also re-exports ``kernel_app`` (the kernel
commands, ``rethinkgen kernel ...``) so the main CLI mounts both from here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.table import Table

from rethinkgen.errors import ConfigError
from rethinkgen.theory.kernel_cli import kernel_app  # the kernel commands (paper §5), mounted beside

__all__ = ["kernel_app", "theory_app"]

console = Console()
theory_app = typer.Typer(no_args_is_help=True, add_completion=False,
                         help="Theorem 1 (exact interpolation by a ReLU net with 2n + d weights), SGD's "
                              "min-norm solution (§5) and Rademacher complexity (eq. 1).")

LABELS = ("true", "random")


def _emit(payload: dict, as_json: bool, table: Table | None = None, notes: list[str] = ()) -> None:
    if as_json:
        print(json.dumps(payload, indent=2, default=float))
        return
    if table is not None:
        console.print(table)
    for note in notes:
        console.print(note, highlight=False, markup=False)


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 and (abs(v) >= 1e-3 or v == 0) else f"{v:.3e}"
    return str(v)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}%"


def _kv_table(title: str, rows: list[tuple[str, object]]) -> Table:
    table = Table("quantity", "value", title=title, title_justify="left")
    for k, v in rows:
        table.add_row(k, _fmt(v))
    return table


def _load(data: str, data_dir: Path | None, n: int | None, n_test: int | None, seed: int):
    from rethinkgen.data.sources import load_dataset

    return load_dataset(data, data_dir, n_train=n, n_test=n_test, seed=seed)


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"--{name} must be >= 1, got {value}")


# --------------------------------------------------------------------------------- interpolate
def _check_interpolate_options(*, theta: float, directions: int, rtol: float, merge_within: float) -> None:
    """The options ``interpolate`` would refuse, refused by their flag names before the data is loaded."""
    import math

    if not 0.0 < theta < 1.0:
        raise ConfigError(f"--theta must lie strictly between 0 and 1 (b_i < x_i < b_(i+1)), got {theta}")
    if directions < 1:
        raise ConfigError(f"--directions must be >= 1, got {directions}")
    if not (math.isfinite(rtol) and rtol > 0):
        raise ConfigError(f"--rtol must be a positive number, got {rtol}")
    if not (math.isfinite(merge_within) and merge_within >= 0):
        raise ConfigError(f"--merge-within must be a distance >= 0, got {merge_within}")


@theory_app.command("interpolate")
def interpolate_command(
    data: Annotated[str, typer.Option("--data", help="dataset name (`rethinkgen list datasets`)")] = "mnist1d",
    n: Annotated[int | None, typer.Option("--n", help="training points the net is built on (default: all)")] = None,
    n_test: Annotated[int | None, typer.Option("--n-test", help="test points evaluated (default: all)")] = None,
    labels: Annotated[str, typer.Option("--labels", help="true | random (paper §2.1: random labels)")] = "true",
    depth: Annotated[int, typer.Option("--depth", help="also build the depth-k form (2 = Theorem 1's net)")] = 2,
    seed: Annotated[int, typer.Option("--seed", help="subset, random labels and direction seed")] = 0,
    theta: Annotated[float, typer.Option("--theta", help="bias position inside each gap, in (0, 1)")] = 0.05,
    directions: Annotated[int, typer.Option("--directions", help="random directions tried for a")] = 16,
    rtol: Annotated[float, typer.Option("--rtol", help="the fit is verified: max residual <= rtol × max|y| "
                                        "on every training point, else an error names the cause")] = 1e-6,
    merge_within: Annotated[float, typer.Option("--merge-within", help="merge points this close with equal "
                                                "labels into one hidden unit (0: identical points only)")] = 0.0,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="folder of file-based datasets")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Theorem 1 on real data: a two-layer ReLU net with d + n + nC weights that fits n training points
    exactly — with true or random labels — and its test accuracy (paper §4, Appendix C)."""
    from rethinkgen.theory.expressivity import interpolate, to_depth_k

    if labels not in LABELS:
        raise ConfigError(f"--labels must be one of {', '.join(LABELS)}, got {labels!r}")
    _check_positive("n", n)
    _check_positive("n-test", n_test)
    if depth < 2:
        raise ConfigError(f"--depth must be >= 2 (2 = Theorem 1's two-layer network), got {depth}")
    _check_interpolate_options(theta=theta, directions=directions, rtol=rtol, merge_within=merge_within)
    start = time.perf_counter()
    ds = _load(data, data_dir, n, n_test, seed)
    y = ds.y_train
    if labels == "random":
        from rethinkgen.data.corruptions import apply_corruption

        y = apply_corruption(ds, "random_labels", seed=seed).dataset.y_train
    x = ds.x_train.reshape(ds.n_train, -1)
    net, rep = interpolate(x, y, num_classes=ds.num_classes, seed=seed, theta=theta, n_directions=directions,
                           rtol=rtol, merge_within=merge_within)
    with torch.no_grad():
        test_pred = net(ds.x_test.reshape(ds.n_test, -1)).argmax(dim=1) if ds.n_test else None
    train_acc = rep.label_accuracy  # argmax of the network's outputs on the n training points vs their labels
    test_acc = float((test_pred == ds.y_test).double().mean()) if test_pred is not None else None
    result = {
        "data": data, "labels": labels, "n": rep.n, "n_input": rep.n_input, "n_merged": rep.n_merged,
        "n_test": ds.n_test, "d": rep.d, "num_classes": ds.num_classes, "param_count": rep.param_count,
        "param_formula": rep.param_formula, "train_acc": train_acc, "test_acc": test_acc,
        "max_residual": rep.max_residual, "tolerance": rep.tolerance, "rel_residual": rep.rel_residual,
        "min_eigenvalue": rep.min_eigenvalue, "min_eigenvalue_rel": rep.min_eigenvalue_rel,
        "min_gap": rep.min_gap, "min_gap_rel": rep.min_gap_rel, "weight_norm": rep.weight_norm,
        "cancellation": rep.cancellation, "theta": rep.theta, "direction_rule": rep.direction_rule,
        "bias_rule": rep.bias_rule, "build_time_s": rep.time_s,
    }
    if depth > 2:
        deep = to_depth_k(net, depth)
        with torch.no_grad():
            deep_train = deep(x)
            shallow_train = net(x)
            test_x = ds.x_test.reshape(ds.n_test, -1)
            diff_test = float((deep(test_x) - net(test_x)).abs().max()) if ds.n_test else None
        result["depth_k"] = {
            **deep.summary(),
            "train_acc": float((deep_train.argmax(dim=1) == y).double().mean()),
            "max_diff_train": float((deep_train - shallow_train).abs().max()),
            "max_diff_test": diff_test,
        }
    result["time_s"] = time.perf_counter() - start
    rows = [
        ("data", f"{data} ({labels} labels)"), ("points n (distinct)", rep.n), ("input dimension d", rep.d),
        ("outputs C", rep.num_outputs), (f"parameters ({rep.param_formula})", rep.param_count),
        ("training accuracy", _pct(train_acc)), (f"test accuracy ({ds.n_test} points)", _pct(test_acc)),
        ("max residual on the sample", rep.max_residual),
        (f"  ... checked against (rtol {rep.rtol:g} x max|y|)", rep.tolerance),
        ("relative residual", rep.rel_residual),
        ("Lemma 1: min eigenvalue min(x_i - b_i)", rep.min_eigenvalue),
        ("  ... / spread of projections", rep.min_eigenvalue_rel),
        ("min projection gap / spread", rep.min_gap_rel), ("weight norm ||w||", rep.weight_norm),
        ("cancellation (error ~ this x 1.1e-16)", rep.cancellation), ("build time (s)", rep.time_s),
        ("total time (s)", result["time_s"]),
    ]
    if rep.n_merged:
        rows.insert(2, ("duplicates merged", rep.n_merged))
    if "depth_k" in result:
        dk = result["depth_k"]
        rows += [(f"depth-{depth}: hidden widths", ", ".join(map(str, dk["widths"])) if len(dk["widths"]) <= 8
                  else f"{dk['widths'][0]}, ..., {dk['widths'][-1]} (max {dk['max_width']})"),
                 (f"depth-{depth}: parameters (non-zero)", dk["param_count"]),
                 (f"depth-{depth}: training accuracy", _pct(dk["train_acc"])),
                 (f"depth-{depth}: max |deep - shallow| (train)", dk["max_diff_train"])]
    _emit(result, as_json, _kv_table("Theorem 1: exact finite-sample interpolation", rows),
          [f"a: {rep.direction_rule}", f"b: {rep.bias_rule}"])


# ------------------------------------------------------------------------------------ sgd-minnorm
@theory_app.command("sgd-minnorm")
def sgd_minnorm_command(
    n: Annotated[int, typer.Option("--n", help="training points")] = 100,
    d: Annotated[int, typer.Option("--d", help="parameters (d > n: overparameterized)")] = 400,
    epochs: Annotated[int, typer.Option("--epochs", help="SGD passes over the data")] = 100,
    lr: Annotated[float | None, typer.Option("--lr", help="step size (default 1/max||x_i||^2)")] = None,
    noise: Annotated[float, typer.Option("--noise", help="label noise std of the planted problem")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="data, SGD order and interpolants seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Paper §5: SGD from w = 0 on least squares with d > n stays in the span of the data and converges to
    the minimum-norm solution X⁺y; other interpolants have larger norm."""
    from rethinkgen.theory.minnorm import other_interpolants, planted_problem, sgd_least_squares

    _check_positive("n", n)
    _check_positive("d", d)
    if d <= n:
        raise ConfigError(f"--d must exceed --n for an overparameterized problem (got n={n}, d={d})")
    X, y, X_test, y_test, _ = planted_problem(n, d, noise=noise, n_test=1000, seed=seed)
    res = sgd_least_squares(X, y, lr=lr, epochs=epochs, seed=seed)
    rows = other_interpolants(X, y, X_test=X_test, y_test=y_test, seed=seed)
    payload = {"n": n, "d": d, "noise": noise, "seed": seed, "sgd": res.to_dict(), "interpolants": rows}
    if as_json:
        _emit(payload, True)
        return
    shown = sorted({0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, res.epochs} & {h["epoch"] for h in res.history})
    table = Table("epoch", "steps", "‖w−X⁺y‖", "relative", "null part", "residual", "‖w‖",
                  title=f"SGD on least squares, n={n}, d={d}, lr={res.lr:.3g}, w0 = 0", title_justify="left")
    for h in res.history:
        if h["epoch"] in shown:
            table.add_row(str(h["epoch"]), f"{h['step']:,}", _fmt(h["distance"]), _fmt(h["rel_distance"]),
                          _fmt(h["null_component"]), _fmt(h["residual"]), _fmt(h["norm"]))
    console.print(table)
    table2 = Table("interpolant", "‖w‖", "‖w‖/‖X⁺y‖", "residual", "test MSE",
                   title="Other interpolants (all fit the training data)", title_justify="left")
    for r in rows:
        table2.add_row(r["name"], _fmt(r["norm"]), _fmt(r["norm_ratio"]), _fmt(r["residual"]),
                       _fmt(r.get("test_mse")))
    console.print(table2)
    notes = [f"{r['name']}: {r['description']}" for r in rows]
    notes.append(f"distance = ‖w − X⁺y‖ (relative: / ‖X⁺y‖), null part = ‖(I − P)w‖ outside the row span "
                 f"of X, residual = ‖Xw − y‖/‖y‖; test MSE on 1,000 noiseless test points (Var y ≈ 1; predicting 0 "
                 f"scores ≈ 1); rank(X) = {res.rank}; SGD took {res.time_s:.2f} s")
    _emit(payload, False, None, notes)


# ------------------------------------------------------------------------------------- rademacher
@theory_app.command("rademacher")
def rademacher_command(
    data: Annotated[str, typer.Option("--data", help="dataset name (`rethinkgen list datasets`)")] = "mnist1d",
    fit_class: Annotated[str, typer.Option("--class", help="theorem1 | linear | a model name (trained with "
                                           "the trainer, e.g. mlp_1x512)")] = "theorem1",
    n: Annotated[int, typer.Option("--n", help="sample size")] = 500,
    m: Annotated[int, typer.Option("--m", help="random ±1 labelings")] = 10,
    output: Annotated[str, typer.Option("--output", help="clip | sign: outputs mapped into [-1, 1]")] = "clip",
    epochs: Annotated[int | None, typer.Option("--epochs", help="max epochs per fit (model classes)")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="learning rate (model classes)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="sample subset and labelings seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | mps (model classes)")] = "auto",
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="folder of file-based datasets")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Paper eq. (1): empirical Rademacher complexity of a model class on n points, estimated by fitting
    m random ±1 labelings and averaging the correlation (1/n) Σ σ_i h(x_i)."""
    from rethinkgen.theory.rademacher import FIT_CLASSES, empirical_rademacher, trainer_fit

    _check_positive("n", n)
    _check_positive("m", m)
    ds = _load(data, data_dir, n, 1, seed)
    if fit_class in FIT_CLASSES:
        fit, name, x = FIT_CLASSES[fit_class], fit_class, ds.x_train.reshape(ds.n_train, -1)
    else:
        from rethinkgen.models import MODELS
        from rethinkgen.train.config import TrainConfig

        if fit_class not in MODELS:
            raise ConfigError(f"unknown --class {fit_class!r}; valid: {', '.join(FIT_CLASSES)} or a model: "
                              f"{', '.join(MODELS.names())}")
        fields = {"data": data, "model": fit_class, "device": device, "seed": seed,
                  "data_dir": str(data_dir) if data_dir else None}
        if epochs is not None:
            fields["epochs"] = epochs
        if lr is not None:
            fields["lr"] = lr
        fit = trainer_fit(TrainConfig(**fields))
        name, x = fit_class, ds.x_train
    res = empirical_rademacher(fit, x, m, seed, output=output, name=name)
    payload = {"data": data, **res.to_dict()}
    fits = [{k: s.get(k) for k in ("status", "epochs", "steps", "train_acc", "wall_time_s")}
            for s in getattr(fit, "summaries", [])]
    if fits:
        payload["fits"] = fits
        payload["config"] = fit.config.to_dict()
    rows = [("data", data), ("class", name), ("sample size n", res.n), ("labelings m", res.m),
            ("R̂_n estimate (mean correlation)", res.mean), ("std over labelings", res.std),
            ("standard error", res.stderr), ("min / max", f"{res.min:.4g} / {res.max:.4g}"),
            ("outputs", res.output), ("time (s)", res.time_s)]
    if fits:
        rows.insert(8, ("fits (status: count)", ", ".join(
            f"{st}: {sum(f['status'] == st for f in fits)}" for st in sorted({f["status"] for f in fits}))))
        rows.insert(9, ("epochs per fit (min / max)",
                        f"{min(f['epochs'] for f in fits)} / {max(f['epochs'] for f in fits)}"))
    notes = ["A fit is at best the sup of eq. (1): the estimate is a lower bound of R̂_n (1 is the maximum)."]
    if fits:
        notes.append(f"each fit: {fit_class} trained by the trainer on (x_i, (σ_i + 1)/2) with lr "
                     f"{fit.config.lr:g}, up to {fit.config.epochs} epochs; h = ±1 predicted class, so the "
                     "correlation is 2·train_acc − 1")
    if fit_class == "linear":
        notes.append(f"least squares: E[correlation before clipping] = (d + 1)/n = "
                     f"{(x.shape[1] + 1) / res.n:.4g} when d + 1 <= n")
    _emit(payload, as_json, _kv_table("Empirical Rademacher complexity (paper eq. 1)", rows), notes)
