"""SGD finds the minimum-norm interpolant of an overparameterized linear model (paper §5).

Zhang et al. (2017), §5 "Implicit regularization: an appeal to linear models": for least squares
``min_w (1/n) Σ_i loss(wᵀx_i, y_i)`` with d ≥ n, the SGD update ``w_{t+1} = w_t − η e_t x_{i_t}``
started at ``w_0 = 0`` keeps ``w`` in the span of the data, ``w = Xᵀα``; if it interpolates,
``XXᵀα = y`` (eq. 3), whose solution is the minimum-ℓ2-norm solution of ``Xw = y``, i.e. the
pseudo-inverse solution ``w* = X⁺y``. Other interpolants exist and have larger norm.

:func:`sgd_least_squares` runs exactly that SGD and measures, every epoch: the distance to ``X⁺y``, the
component of ``w`` outside the row span of X (zero up to rounding), the training residual and ‖w‖.
:func:`other_interpolants` builds interpolants that are not the minimum-norm one — fitted also to random
labels on extra points (the paper's example), with a random null-space component added, or in the span
of random directions instead of the data ("random centres") — and compares their norms (and test
error, when a test set is given) to ``X⁺y``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from rethinkgen import seeding
from rethinkgen.errors import ConfigError

__all__ = ["SGDResult", "other_interpolants", "planted_problem", "row_space_projector", "sgd_least_squares"]


def _as_f64(a, name: str, dim: int) -> np.ndarray:
    arr = torch.as_tensor(a).detach().to(torch.float64).cpu().numpy()
    if arr.ndim != dim:
        raise ConfigError(f"{name} must be {dim}-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} contains NaN or infinite values")
    return arr


def row_space_projector(X: np.ndarray) -> tuple[np.ndarray, int]:
    """An orthonormal basis Q (d, r) of the row span of X (n, d), by SVD, and the rank r."""
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    tol = s.max(initial=0.0) * max(X.shape) * np.finfo(np.float64).eps
    r = int((s > tol).sum())
    return vt[:r].T, r


@dataclass
class SGDResult:
    """Outcome of :func:`sgd_least_squares` (all norms ℓ2, float64)."""

    w: torch.Tensor  # (d,) the final SGD iterate
    w_min_norm: torch.Tensor  # (d,) X⁺y
    n: int
    d: int
    rank: int
    lr: float
    epochs: int
    steps: int
    batch_size: int
    distance: float  # ||w − X⁺y||
    rel_distance: float  # ... / ||X⁺y||
    null_component: float  # ||(I − P) w||, P the projector on the row span of X
    residual: float  # ||Xw − y|| / ||y||
    norm: float  # ||w||
    min_norm: float  # ||X⁺y||
    min_norm_residual: float  # ||X X⁺y − y|| / ||y|| (0 when the system is consistent)
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, step, distance, ... (epoch 0 = w_0)
    time_s: float = 0.0

    def to_dict(self, with_vectors: bool = False) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("w", "w_min_norm")}
        if with_vectors:
            out["w"], out["w_min_norm"] = self.w.tolist(), self.w_min_norm.tolist()
        return out


def sgd_least_squares(
    X,
    y,
    *,
    lr: float | None = None,
    epochs: int = 100,
    seed: int = 0,
    batch_size: int = 1,
    w0=None,
    tol: float = 0.0,
) -> SGDResult:
    """Plain SGD (no momentum, no weight decay) on ``(1/2)(xᵢᵀw − yᵢ)²``, in float64 (paper §5).

    Parameters
    ----------
    X : (n, d) inputs.
    y : (n,) targets.
    lr : step size η; default ``1 / max_i ||x_i||²``, for which single-sample SGD is a randomized
        Kaczmarz method and converges linearly on a consistent system (η < 2 / max ||x_i||² is stable).
    epochs : passes over the data, each in a fresh random order (stream ``"order"`` of ``seed``).
    batch_size : samples per step (the update averages their gradients); 1 = the paper's update.
    w0 : starting point, default 0 (the paper's; another start keeps its null-space component forever).
    tol : stop early once ||Xw − y|| / ||y|| <= tol (0: run all epochs).

    Returns
    -------
    :class:`SGDResult` with per-epoch ``history``: distance to ``X⁺y``, the null-space component, the
    residual and ||w||.
    """
    start = time.perf_counter()
    Xn, yn = _as_f64(X, "X", 2), _as_f64(y, "y", 1)
    n, d = Xn.shape
    if yn.shape[0] != n:
        raise ConfigError(f"X has {n} rows but y has {yn.shape[0]} values")
    if epochs < 0 or batch_size < 1:
        raise ConfigError(f"epochs must be >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    row_norm2 = (Xn * Xn).sum(axis=1)
    if lr is None:
        lr = 1.0 / float(row_norm2.max()) if row_norm2.max() > 0 else 1.0
    if not lr > 0:
        raise ConfigError(f"lr must be > 0, got {lr}")
    w_star = np.linalg.pinv(Xn) @ yn
    Q, rank = row_space_projector(Xn)
    y_norm = float(np.linalg.norm(yn)) or 1.0
    w_star_norm = float(np.linalg.norm(w_star))
    w = np.zeros(d) if w0 is None else _as_f64(w0, "w0", 1).copy()
    if w.shape[0] != d:
        raise ConfigError(f"w0 must have {d} entries, got {w.shape[0]}")

    def measure(epoch: int, step: int) -> dict:
        dist = float(np.linalg.norm(w - w_star))
        null = float(np.linalg.norm(w - Q @ (Q.T @ w)))
        return {"epoch": epoch, "step": step, "distance": dist,
                "rel_distance": dist / w_star_norm if w_star_norm > 0 else dist,
                "null_component": null, "residual": float(np.linalg.norm(Xn @ w - yn)) / y_norm,
                "norm": float(np.linalg.norm(w))}

    gen = seeding.rng(seed, "order")
    history = [measure(0, 0)]
    step = 0
    for epoch in range(1, epochs + 1):
        order = gen.permutation(n)
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is detected below
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size]
                if len(idx) == 1:
                    j = idx[0]
                    err = float(Xn[j] @ w) - yn[j]  # e_t: the prediction error
                    w -= lr * err * Xn[j]
                else:
                    xb = Xn[idx]
                    w -= lr * (xb.T @ (xb @ w - yn[idx])) / len(idx)
                step += 1
            row = measure(epoch, step)
        history.append(row)
        if not math.isfinite(row["residual"]):
            raise ConfigError(f"SGD diverged at epoch {epoch} with lr {lr:g}; use lr < 2 / max ||x_i||² "
                              f"= {2.0 / row_norm2.max():.3g}")
        if tol > 0 and row["residual"] <= tol:
            break
    last = history[-1]
    return SGDResult(
        w=torch.from_numpy(w.copy()), w_min_norm=torch.from_numpy(w_star), n=n, d=d, rank=rank, lr=float(lr),
        epochs=last["epoch"], steps=step, batch_size=batch_size, distance=last["distance"],
        rel_distance=last["rel_distance"], null_component=last["null_component"], residual=last["residual"],
        norm=last["norm"], min_norm=w_star_norm,
        min_norm_residual=float(np.linalg.norm(Xn @ w_star - yn)) / y_norm,
        history=history, time_s=time.perf_counter() - start,
    )


def planted_problem(n: int = 100, d: int = 400, *, noise: float = 0.0, n_test: int = 1000, seed: int = 0):
    """An overparameterized linear regression problem: x ~ N(0, I_d / d), y = xᵀw_true + noise·N(0,1).

    ``w_true`` ~ N(0, I_d) (so ‖w_true‖ ≈ √d). Returns (X, y, X_test, y_test, w_true) as float64
    tensors; test targets are noiseless. Draws from stream ``"data"`` of ``seed``.
    """
    if n < 1 or d < 1 or n_test < 0:
        raise ConfigError(f"need n >= 1, d >= 1, n_test >= 0; got n={n}, d={d}, n_test={n_test}")
    gen = seeding.rng(seed, "data")
    w_true = gen.standard_normal(d)
    X = gen.standard_normal((n, d)) / math.sqrt(d)
    X_test = gen.standard_normal((n_test, d)) / math.sqrt(d)
    y = X @ w_true + noise * gen.standard_normal(n)
    y_test = X_test @ w_true
    return tuple(torch.from_numpy(a) for a in (X, y, X_test, y_test, w_true))


def other_interpolants(
    X,
    y,
    *,
    X_test=None,
    y_test=None,
    n_extra: int | None = None,
    null_scale: float = 1.0,
    seed: int = 0,
) -> list[dict]:
    """Interpolants of ``Xw = y`` other than ``X⁺y``, and their norms (paper §5).

    Rows (dicts with ``name``, ``description``, ``norm``, ``norm_ratio`` = ‖w‖ / ‖X⁺y‖, ``residual``
    = ‖Xw − y‖/‖y‖ and, given a test set, ``test_mse``):

    - ``min_norm``: ``X⁺y`` — what SGD from 0 converges to.
    - ``random_test_labels``: the minimum-norm solution of the system augmented with ``n_extra`` extra
      points labelled at random (the paper: "forcing the model to also fit random labels on the test
      data"). The extra points are ``X_test`` (its first ``n_extra`` rows) when given, else Gaussian
      points of the same per-coordinate scale as X; labels ~ N(0, var(y)). Needs n + n_extra ≤ d.
    - ``random_null_space``: ``X⁺y + z`` with z a random vector in the null space of X scaled to
      ``null_scale·‖X⁺y‖``.
    - ``random_span``: w in the span of n random Gaussian directions instead of the data rows
      (``w = Rᵀβ`` with ``XRᵀβ = y``) — the linear analogue of "a kernel with random centres".

    Every interpolant w satisfies Xw = y, and ‖X⁺y‖ ≤ ‖w‖ (X⁺y is the unique minimum-norm one).
    Random draws from stream ``"corruption"`` of ``seed``.
    """
    Xn, yn = _as_f64(X, "X", 2), _as_f64(y, "y", 1)
    n, d = Xn.shape
    if yn.shape[0] != n:
        raise ConfigError(f"X has {n} rows but y has {yn.shape[0]} values")
    if d <= n:
        raise ConfigError(f"other interpolants need an overparameterized problem (d > n); got n={n}, d={d}")
    Xt = _as_f64(X_test, "X_test", 2) if X_test is not None else None
    yt = _as_f64(y_test, "y_test", 1) if y_test is not None else None
    if n_extra is None:
        n_extra = min(d - n, Xt.shape[0] if Xt is not None else n, n)
    if not 1 <= n_extra <= d - n:
        raise ConfigError(f"n_extra must be in [1, d - n] = [1, {d - n}], got {n_extra}")
    gen = seeding.rng(seed, "corruption")
    y_norm = float(np.linalg.norm(yn)) or 1.0
    w_star = np.linalg.pinv(Xn) @ yn
    star_norm = float(np.linalg.norm(w_star))
    candidates: list[tuple[str, str, np.ndarray]] = [("min_norm", "X⁺y: the minimum-norm interpolant", w_star)]

    # fitted also to random labels on extra points
    if Xt is not None and Xt.shape[0] >= n_extra:
        extra, where = Xt[:n_extra], f"the first {n_extra} test points"
    else:
        extra = gen.standard_normal((n_extra, d)) * Xn.std(axis=0, keepdims=True).clip(min=1e-12)
        where = f"{n_extra} Gaussian points"
    labels = gen.standard_normal(n_extra) * (yn.std() if n > 1 else 1.0)
    w_aug = np.linalg.pinv(np.vstack([Xn, extra])) @ np.concatenate([yn, labels])
    candidates.append(("random_test_labels", f"min-norm fit of the training data plus random labels on {where}",
                       w_aug))

    # plus a random null-space component
    Q, _ = row_space_projector(Xn)
    z = gen.standard_normal(d)
    z -= Q @ (Q.T @ z)
    z *= null_scale * max(star_norm, 1e-300) / max(float(np.linalg.norm(z)), 1e-300)
    candidates.append(("random_null_space", f"X⁺y plus a random null-space vector of norm {null_scale:g}·‖X⁺y‖",
                       w_star + z))

    # in the span of random directions ("random centres")
    R = gen.standard_normal((n, d))
    beta = np.linalg.solve(Xn @ R.T, yn)
    candidates.append(("random_span", "w in the span of n random directions (random centres), X w = y",
                       R.T @ beta))

    rows = []
    for name, description, w in candidates:
        norm = float(np.linalg.norm(w))
        row = {"name": name, "description": description, "norm": norm,
               "norm_ratio": norm / star_norm if star_norm > 0 else math.inf,
               "residual": float(np.linalg.norm(Xn @ w - yn)) / y_norm}
        if Xt is not None and yt is not None:
            row["test_mse"] = float(np.mean((Xt @ w - yt) ** 2))
        rows.append(row)
    return rows
