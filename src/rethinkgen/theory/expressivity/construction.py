"""Theorem 1's construction, checked: :func:`interpolate` builds the network and verifies its fit.

The steps (projection, biases, weights) are those of the package docstring. After solving, the network
is evaluated on every given point in float64 and its max residual compared with a stated tolerance,
``rtol · max|y|``: a network that does not fit raises :class:`InterpolationError` naming the pairs of
points responsible and what fixes them (``duplicates.py``) — it is never returned silently.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch

from rethinkgen import seeding
from rethinkgen.errors import ConfigError
from rethinkgen.theory.expressivity.duplicates import (
    MAX_PAIRS_SHOWN,
    InterpolationError,
    advice,
    close_pairs,
    merge_duplicates,
    resolvable_gap,
)
from rethinkgen.theory.expressivity.networks import InterpolatingNet, _project
from rethinkgen.theory.expressivity.solvers import SOLVERS

DEFAULT_THETA = 0.05
DEFAULT_DIRECTIONS = 16
DEFAULT_RTOL = 1e-6  # max residual allowed, relative to max|y| (measured fits: 1e-12 to 3e-7)
AUTO_TRIANGULAR_MAX = 8192  # solver="auto" also tries solve_triangular up to this n (A: 512 MiB)


@dataclass
class InterpolationReport:
    """What :func:`interpolate` built and how well it fits (Theorem 1 / Lemma 1 quantities)."""

    n: int  # distinct points = hidden units
    n_input: int  # points given (before merging duplicates)
    n_merged: int  # duplicate points with equal targets that were merged
    d: int  # input dimension
    num_outputs: int  # C (1 for scalar targets)
    param_count: int
    param_formula: str  # "2n + d" (one output) or "d + n + n*C"
    max_residual: float  # max_i |c(z_i) − y_i| over all given points, network evaluated in float64
    rel_residual: float  # ||c(Z) − Y||_F / ||Y||_F
    min_eigenvalue: float  # Lemma 1: min_i (x_i − b_i), the smallest eigenvalue of A
    min_eigenvalue_rel: float  # ... divided by the spread x_n − x_1
    weight_norm: float  # ||w||_F
    max_abs_weight: float
    min_gap: float  # min_i (x_{i+1} − x_i) of the sorted projections
    min_gap_rel: float  # ... divided by the spread
    spread: float  # x_n − x_1
    cancellation: float  # max_i Σ_j |w_j| max(x_i − b_j, 0) / max|y|: float64 error ≈ this × 1.1e-16
    label_accuracy: float | None  # class targets: share of points whose output argmax is their class
    rtol: float  # the fit is checked: max_residual <= tolerance = rtol * max|y| (rtol when y = 0)
    tolerance: float
    theta: float  # biases at x_i + θ (x_{i+1} − x_i)
    solver: str  # the solver whose solution was kept
    solver_residuals: dict  # max residual on the sample of each solver tried ("auto" tries two)
    n_directions: int
    direction_index: int
    candidate_gaps_rel: list[float] = field(default_factory=list)  # min gap / spread of every candidate
    direction_rule: str = ""
    bias_rule: str = ""
    seed: int = 0
    merge_within: float = 0.0  # points this close with equal targets were merged (0: identical only)
    time_s: float = 0.0  # construction time (projection, solve), without the residual check
    check_time_s: float = 0.0  # evaluating the network on the sample

    def to_dict(self) -> dict:
        return asdict(self)


def _as_targets(y, n: int, num_classes: int | None) -> tuple[torch.Tensor, bool]:
    """Targets as (n, C) float64 and whether the output is scalar."""
    y = torch.as_tensor(y)
    if y.shape[0] != n:
        raise ConfigError(f"got {n} points but {y.shape[0]} targets; give one target per point")
    if num_classes is not None:
        if y.dim() != 1 or y.is_floating_point() and not bool((y == y.round()).all()):
            raise ConfigError("with num_classes, y must be a 1-D tensor of integer class ids")
        y = y.long()
        if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ConfigError(f"class ids must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}]")
        return torch.nn.functional.one_hot(y, num_classes).to(torch.float64), False
    if y.dim() == 1:
        return y.to(torch.float64)[:, None], True
    if y.dim() == 2:
        return y.to(torch.float64), False
    raise ConfigError(f"y must be (n,) values, (n, C) values or (n,) class ids with num_classes; got {tuple(y.shape)}")


def interpolate(
    X,
    y,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    theta: float = DEFAULT_THETA,
    n_directions: int = DEFAULT_DIRECTIONS,
    solver: str = "auto",
    rtol: float = DEFAULT_RTOL,
    merge_within: float = 0.0,
) -> tuple[InterpolatingNet, InterpolationReport]:
    """Build Theorem 1's two-layer ReLU network that fits ``y`` on ``X`` exactly (paper §4, App. C).

    Parameters
    ----------
    X : (n, d) or (n, *shape) points (flattened), any float dtype; computations in float64.
    y : (n,) real targets -> one output; (n, C) real targets -> C outputs; or (n,) class ids with
        ``num_classes`` = C -> C outputs fitted to one-hot rows (predict with argmax).
    seed : seeds the candidate directions (stream ``"init"``).
    theta : bias position inside each gap, 0 < θ < 1 (package docstring: θ < 1/2 is stable).
    n_directions : seeded Gaussian directions tried; the one with the largest min gap / spread is kept.
    solver : ``"slopes"`` (O(n) time and memory), ``"triangular"`` (``torch.linalg.solve_triangular``
        on the dense A: O(n²) memory) or ``"auto"`` (default): both when n <= 8192 (A takes at most
        512 MiB), keeping the one whose network has the smaller residual on the sample, else slopes.
    rtol : the fit is verified on every given point: max |c(z_i) − y_i| <= rtol · max|y| (rtol itself
        when y is all zeros), in float64. Default 1e-6.
    merge_within : points within this Euclidean distance of each other (transitively) that share a
        target are merged into one hidden unit; 0 (default) merges identical points only.

    Returns
    -------
    (net, report): an :class:`InterpolatingNet` with ``|net(X) − y| <= report.tolerance`` everywhere
    on the sample, and an :class:`InterpolationReport`.

    Raises
    ------
    ConfigError : bad arguments or shapes, NaN/inf in X or y.
    DuplicatePointsError : identical points with different targets (their indices named).
    InterpolationError : the network cannot be built to fit within ``rtol`` in float64 — points so
        close along the projection that float64 cannot separate them. The message names the closest
        pairs (indices, distance, projection gap) and the fix: merge near-duplicates with equal targets
        (``merge_within``), remove or relabel near-duplicates with different targets, another
        projection (``n_directions``, ``seed``) for far-apart points that share a projection, float64
        inputs. ``.pairs`` holds the pairs.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(100, 5, generator=g, dtype=torch.float64)
    >>> labels = torch.randint(0, 3, (100,), generator=g)
    >>> net, rep = interpolate(X, labels, num_classes=3)
    >>> bool((net(X).argmax(1) == labels).all()), rep.param_count == 5 + 100 + 100 * 3
    (True, True)
    >>> rep.max_residual <= rep.tolerance == 1e-6
    True
    """
    start = time.perf_counter()
    if not 0.0 < theta < 1.0:
        raise ConfigError(f"theta must lie strictly between 0 and 1 (paper: b_i < x_i < b_(i+1)), got {theta}")
    if solver not in (*SOLVERS, "auto"):
        raise ConfigError(f"unknown solver {solver!r}; valid: auto, {', '.join(SOLVERS)}")
    if n_directions < 1:
        raise ConfigError(f"n_directions must be >= 1, got {n_directions}")
    if not (math.isfinite(rtol) and rtol > 0):
        raise ConfigError(f"rtol must be a positive number, got {rtol}")
    if not (math.isfinite(merge_within) and merge_within >= 0):
        raise ConfigError(f"merge_within must be a distance >= 0, got {merge_within}")
    X = torch.as_tensor(X)
    if X.dim() < 2 or X.shape[0] == 0:
        raise ConfigError(f"X must be (n, d) with n >= 1, got shape {tuple(X.shape)}")
    input_dtype = X.dtype
    X = X.reshape(X.shape[0], -1).to(torch.float64).contiguous()
    if not bool(torch.isfinite(X).all()):
        raise ConfigError("X contains NaN or infinite values")
    n_input, d = X.shape
    Y, scalar = _as_targets(y, n_input, num_classes)
    if not bool(torch.isfinite(Y).all()):
        raise ConfigError("y contains NaN or infinite values")
    y_scale = float(Y.abs().max())
    tolerance = rtol * y_scale if y_scale > 0 else rtol

    gen = seeding.rng(seed, "init")
    dirs = torch.from_numpy(gen.standard_normal((n_directions, d)))
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    keep = merge_duplicates(X, Y, _project(X, dirs[0]), merge_within, input_dtype=input_dtype)
    Xu, Yu = X[keep], Y[keep]
    n = Xu.shape[0]

    best, candidate_gaps = None, []
    for i in range(n_directions):
        t = _project(Xu, dirs[i])
        ts, order = torch.sort(t)
        spread = float(ts[-1] - ts[0])
        gap = float((ts[1:] - ts[:-1]).min()) if n > 1 else math.inf
        rel = gap / spread if n > 1 and spread > 0 else (math.inf if n == 1 else 0.0)
        candidate_gaps.append(rel)
        if best is None or rel > best[0]:
            best = (rel, i, ts, order, spread, gap)
    rel, index, xs, order, spread, gap = best

    def fail(what: str, max_residual: float) -> InterpolationError:
        pairs = close_pairs(X, Y, keep, xs, order, rtol)
        needed = resolvable_gap(float(xs.abs().max()), rtol)
        tips = advice(pairs, input_dtype=input_dtype, theta=theta, n_directions=n_directions, seed=seed, d=d)
        lines = [f"Theorem 1's network does not fit these {n_input} points in float64: {what}.",
                 f"The closest projections (a float64 projection is known to ~{needed * rtol:.1g}; two points "
                 f"with different targets need projections ~{needed:.1g} apart to be fit to rtol {rtol:g}):"]
        lines += [f"  - {p.describe()}" for p in pairs[:MAX_PAIRS_SHOWN]]
        if len(pairs) > MAX_PAIRS_SHOWN:
            lines.append(f"  … and {len(pairs) - MAX_PAIRS_SHOWN} more pairs closer than {10 * needed:.1g} along "
                         "the projection (all of them in the error's .pairs)")
        lines.append("Fix: " + "; or ".join(tips) if tips else "Fix: remove one point of each pair above.")
        return InterpolationError("\n".join(lines), pairs, max_residual, tolerance)

    if n > 1 and not gap > 0:
        raise fail(f"all {n_directions} random directions give two distinct points the same projection",
                   math.nan)
    ys = Yu[order]
    # biases: b_{i+1} = x_i + θ g_i (in the gap right of x_i), b_1 = x_1 − (1 − θ) · mean gap
    mean_gap = spread / (n - 1) if n > 1 else max(1.0, abs(float(xs[0])))
    b = torch.empty_like(xs)
    b[0] = xs[0] - (1.0 - theta) * mean_gap
    b[1:] = xs[:-1] + theta * (xs[1:] - xs[:-1])
    if n > 1 and not bool(((b[1:] > xs[:-1]) & (b[1:] < xs[1:])).all()):
        raise fail(f"a gap between projections ({gap:.2g}) is too small to hold a bias strictly inside it",
                   math.nan)
    tried: dict[str, float] = {}
    names = (["slopes", "triangular"] if n <= AUTO_TRIANGULAR_MAX else ["slopes"]) if solver == "auto" else [solver]
    net, used, best_res = None, names[0], math.inf
    for name in names:
        candidate = InterpolatingNet(dirs[index], b, SOLVERS[name](xs, b, ys), scalar_output=scalar)
        if len(names) > 1:  # keep the solution the network itself evaluates best on the sample
            with torch.no_grad():
                tried[name] = float((candidate.forward_projected(xs).reshape(n, -1) - ys).abs().max())
        if net is None or tried[name] < best_res:
            net, used, best_res = candidate, name, tried.get(name, math.inf)
    w = net.w.detach()
    build_time = time.perf_counter() - start

    check = time.perf_counter()
    with torch.no_grad():
        t_all = net.project(X)
        pred = net.forward_projected(t_all).reshape(n_input, -1)
        canc = float(net.cancellation(t_all).max())
    err = pred - Y
    y_norm = float(Y.norm())
    max_res = float(err.abs().max())
    if not max_res <= tolerance:  # also catches NaN
        worst = int(err.abs().amax(dim=1).argmax())
        raise fail(f"max residual {max_res:.3g} at point {worst} exceeds the tolerance {tolerance:.3g} "
                   f"(rtol {rtol:g} × max|y| {y_scale:g})", max_res)
    min_eig = float((xs - b).min())
    C = Y.shape[1]
    report = InterpolationReport(
        n=n, n_input=n_input, n_merged=n_input - n, d=d, num_outputs=C,
        param_count=sum(p.numel() for p in net.parameters()),
        param_formula="2n + d" if C == 1 else "d + n + n*C",
        max_residual=max_res,
        rel_residual=float(err.norm()) / y_norm if y_norm > 0 else max_res,
        min_eigenvalue=min_eig, min_eigenvalue_rel=min_eig / spread if spread > 0 else math.inf,
        weight_norm=float(w.norm()), max_abs_weight=float(w.abs().max()),
        min_gap=gap, min_gap_rel=rel, spread=spread,
        cancellation=canc / y_scale if y_scale > 0 else 0.0,
        label_accuracy=float((pred.argmax(dim=1) == Y.argmax(dim=1)).double().mean()) if num_classes else None,
        rtol=rtol, tolerance=tolerance,
        theta=theta, solver=used, solver_residuals=tried, n_directions=n_directions, direction_index=index,
        candidate_gaps_rel=candidate_gaps,
        direction_rule=(f"best of {n_directions} seeded unit Gaussian directions (seed {seed}, stream 'init') "
                        "by min gap / spread of the sorted projections"),
        bias_rule=f"b_(i+1) = x_i + {theta:g}*(x_(i+1) - x_i); b_1 = x_1 - {1 - theta:g}*mean gap",
        seed=seed, merge_within=merge_within, time_s=build_time, check_time_s=time.perf_counter() - check,
    )
    return net, report
