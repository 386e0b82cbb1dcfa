"""Empirical Rademacher complexity by fitting random ±1 labels (paper §2.2, equation 1).

    R̂_n(H) = E_σ [ sup_{h ∈ H} (1/n) Σ_i σ_i h(x_i) ],   σ_i i.i.d. uniform on {−1, +1}.

The sup is estimated by *fitting*: for each of m labelings σ a model of the class is trained on
(x_i, σ_i) and the correlation ``(1/n) Σ σ_i h(x_i)`` of its outputs on the same sample, with h mapped
into [−1, 1] (clipped, or their signs), is recorded. A fit is at best the sup, so the estimate is a
lower bound of R̂_n(H) (exact when it reaches 1, the largest value possible). The paper's point: for
the networks it trains — and, by Theorem 1, for a two-layer ReLU network with 2n + d weights — it is
1, so Rademacher bounds are vacuous for them; a linear class with d << n has a small one, about d/n
for least squares.

Fit functions have the signature ``fit(X, sigma, seed) -> predictions`` with X (n, ...) the sample,
sigma (n,) float64 in {−1, +1}, returning the outputs on X ((n,) tensor, any real values), or a float:
the correlation itself (the trainer adapter, which sees only accuracies, returns ``2·acc − 1``).
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from rethinkgen import seeding
from rethinkgen.errors import ConfigError

__all__ = [
    "FIT_CLASSES",
    "RademacherResult",
    "empirical_rademacher",
    "linear_fit",
    "random_signs",
    "theorem1_fit",
    "trainer_fit",
]

FitFn = Callable[[torch.Tensor, torch.Tensor, int], "torch.Tensor | float"]
OUTPUTS = ("clip", "sign")


@dataclass
class RademacherResult:
    """Estimate of R̂_n(H) from m random labelings (paper eq. 1)."""

    fit: str  # the model class
    n: int
    m: int
    mean: float  # the estimate: mean correlation over the m labelings
    std: float  # sample standard deviation over labelings (0 when m = 1)
    stderr: float  # std / sqrt(m)
    min: float
    max: float
    output: str  # "clip" or "sign": how outputs were mapped into [-1, 1]
    seed: int
    values: list[float] = field(default_factory=list)
    time_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def random_signs(n: int, seed: int, trial: int) -> torch.Tensor:
    """σ (n,) float64 i.i.d. uniform on {−1, +1}: labeling ``trial`` of ``seed`` (stream "corruption")."""
    bits = seeding.rng(seed, "corruption", 100, trial).integers(0, 2, size=n)
    return torch.from_numpy(2.0 * bits - 1.0)


def _correlation(out, sigma: torch.Tensor, output: str) -> float:
    if isinstance(out, int | float):
        return float(out)
    h = torch.as_tensor(out).detach().to(torch.float64).reshape(-1).cpu()
    if h.shape[0] != sigma.shape[0]:
        raise ConfigError(f"the fit returned {h.shape[0]} outputs for {sigma.shape[0]} points")
    h = h.clamp(-1.0, 1.0) if output == "clip" else torch.sign(h)
    return float((sigma * h).mean())


def empirical_rademacher(fit_fn: FitFn, X, m: int, seed: int = 0, *, output: str = "clip",
                         name: str | None = None) -> RademacherResult:
    """Estimate the empirical Rademacher complexity (paper eq. 1) of the class ``fit_fn`` fits on X.

    Parameters
    ----------
    fit_fn : ``fit(X, sigma, seed) -> outputs on X (n,) or the correlation (float)``.
    X : (n, ...) the sample.
    m : number of random labelings σ.
    seed : the labelings (stream "corruption") and the seed handed to ``fit_fn``.
    output : "clip" (h clipped to [−1, 1], default) or "sign". A fit function with an attribute
        ``output_kind`` (the trainer adapter: "sign") overrides it in the result.

    Returns
    -------
    :class:`RademacherResult`: mean correlation over the m labelings, its std and standard error.
    """
    if m < 1:
        raise ConfigError(f"m (number of random labelings) must be >= 1, got {m}")
    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    X = torch.as_tensor(X)
    n = int(X.shape[0])
    if n < 1:
        raise ConfigError("the sample X is empty")
    start = time.perf_counter()
    values = []
    for trial in range(m):
        sigma = random_signs(n, seed, trial)
        values.append(_correlation(fit_fn(X, sigma, seed), sigma, output))
    arr = np.asarray(values)
    std = float(arr.std(ddof=1)) if m > 1 else 0.0
    output = getattr(fit_fn, "output_kind", output)  # fits that return the correlation say how
    return RademacherResult(
        fit=name or getattr(fit_fn, "__name__", "fit"), n=n, m=m, mean=float(arr.mean()), std=std,
        stderr=std / math.sqrt(m), min=float(arr.min()), max=float(arr.max()), output=output, seed=seed,
        values=values, time_s=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------------------------
# Fit functions


def theorem1_fit(X, sigma, seed: int = 0) -> torch.Tensor:
    """The two-layer ReLU class of Theorem 1 (2n + d weights): fits any σ exactly, so R̂_n = 1."""
    from rethinkgen.theory.expressivity import interpolate

    net, _ = interpolate(X, sigma, seed=seed)
    with torch.no_grad():
        return net(X)


def linear_fit(X, sigma, seed: int = 0) -> torch.Tensor:
    """Affine functions ``h(x) = wᵀx + c`` fitted by least squares (minimum norm): h = P σ with P the
    projector on the span of X's columns and 1, so the correlation before clipping is ‖Pσ‖²/n ≈ (d+1)/n."""
    Xf = torch.as_tensor(X).reshape(len(sigma), -1).to(torch.float64)
    A = torch.cat([Xf, torch.ones(len(sigma), 1, dtype=torch.float64)], dim=1)
    coef = torch.linalg.pinv(A) @ sigma.to(torch.float64)
    return A @ coef


def trainer_fit(config=None, *, workdir: str | Path | None = None, **overrides) -> FitFn:
    """A fit function that trains a model with the project's trainer on the 2-class problem (x_i, σ_i).

    ``config`` is a :class:`rethinkgen.train.config.TrainConfig` (keyword ``overrides`` replace its
    fields) naming the model, the optimisation and the dataset the sample came from: its defaults (lr,
    epochs, preprocessing) are resolved for that dataset first; then the sample with labels
    ``(σ + 1)/2`` is written to an ``.npz`` file and trained on as dataset ``npz`` (true labels, no
    subset). h = the predicted class as ±1, so the correlation is ``2·train_acc − 1`` (train
    accuracy in eval mode on the sample, labels trained on), which the fit returns.
    """
    from rethinkgen.train.config import TrainConfig
    from rethinkgen.train.loop import resolve_config, train

    base = (config or TrainConfig()).replace(**overrides) if overrides else (config or TrainConfig())
    resolved = resolve_config(base)  # defaults of the sample's own dataset and model
    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="rethinkgen-rademacher-"))
    folder.mkdir(parents=True, exist_ok=True)
    summaries: list[dict] = []

    def fit(X, sigma, seed: int = 0) -> float:
        x = torch.as_tensor(X).detach().cpu().numpy()
        y = ((sigma.detach().cpu().numpy() + 1) // 2).astype(np.int64)
        digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:16]
        path = folder / f"sigma-{digest}.npz"  # a file per labeling: the trainer caches data by path
        k = min(len(y), 64)
        np.savez(path, x=x, y=y, x_test=x[:k], y_test=y[:k])
        cfg = resolved.replace(data="npz", data_dir=None, data_options={"path": str(path), "num_classes": 2},
                               corruption="true_labels", level=None, n_train=None, n_test=None, seed=seed)
        summary = train(cfg, progress=False)
        summaries.append(summary)
        path.unlink(missing_ok=True)
        return 2.0 * float(summary["train_acc"]) - 1.0

    fit.__name__ = f"trainer:{resolved.model}"
    fit.output_kind = "sign"  # type: ignore[attr-defined]  # h = ±1 predicted class
    fit.summaries = summaries  # type: ignore[attr-defined]
    fit.config = resolved  # type: ignore[attr-defined]
    return fit


FIT_CLASSES: dict[str, FitFn] = {"theorem1": theorem1_fit, "linear": linear_fit}
