"""Perturbation measures: PAC-Bayes flatness (random weight noise) and sharpness (worst case in a box).

Both perturb every parameter of the BatchNorm-folded network (weights and biases) through
``torch.func.functional_call`` (the network itself is never modified) and evaluate on the seeded
training subset (``MeasureSettings.subset`` samples, the labels trained on).

PAC-Bayes flatness (Jiang et al. 2020, App. C, eq. 48-53; Dziugaite et al.'s ``_pacbayes_sigma``): σ' is
the largest σ such that adding u ~ N(0, σ² I) to the weights raises the expected training error (0-1
loss, a Monte Carlo mean over ``flatness_draws`` draws) by at most ``flatness_delta``. The search is a
bisection on log σ in [sigma_min, sigma_max] with ``flatness_steps`` steps (optionally stopping early once
the rise is within ``flatness_tolerance`` of the bound, as Dziugaite et al.'s code does with 0.01: off by
default, since σ' then lands on a coarse grid and different runs tie); the draws use common random
numbers (the same standard-normal tensors z at every σ, u = σ z), seeded from the run's seed, so the
estimated error rise is monotone in σ for a given seed and the search is reproducible. The
magnitude-aware variant (Jiang eq. 59-61) draws u_i ~ N(0, σ² w_i² + ε²).

Sharpness (Keskar et al., ICLR 2017, eq. 3, without their normalization by 1 + L): the largest rise of
the training cross-entropy over the box |u_i| ≤ ρ(|w_i| + 1), estimated by ``sharpness_steps``
projected sign-gradient ascent steps of size ρ(|w_i| + 1)/2 from u = 0 (full-subset gradients, so it is
deterministic). Jiang et al.'s sharpness measures search instead for the largest box α' keeping the
error within a bound; a fixed box costs one search less.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.func import functional_call

from rethinkgen.measures import register_measure
from rethinkgen.measures.context import MeasureContext

__all__ = ["noise_scale", "subset_error", "subset_loss"]

JIANG_PB = "Jiang et al., ICLR 2020, App. C"


def subset_error(ctx: MeasureContext, params: dict[str, torch.Tensor]) -> float:
    """Training error (fraction misclassified) of the folded network with ``params`` on the subset."""
    x_all, y_all = ctx.subset
    wrong = 0
    with torch.no_grad():
        for start, stop in ctx.batches(x_all.shape[0]):
            logits = functional_call(ctx.folded, params, (x_all[start:stop],))
            wrong += int((logits.argmax(dim=1) != y_all[start:stop]).sum())
    return wrong / x_all.shape[0]


def subset_loss(ctx: MeasureContext, params: dict[str, torch.Tensor]) -> float:
    """Mean cross-entropy (nats) of the folded network with ``params`` on the subset."""
    x_all, y_all = ctx.subset
    total = 0.0
    with torch.no_grad():
        for start, stop in ctx.batches(x_all.shape[0]):
            logits = functional_call(ctx.folded, params, (x_all[start:stop],)).float()
            total += float(F.cross_entropy(logits, y_all[start:stop], reduction="sum"))
    return total / x_all.shape[0]


def noise_scale(ctx: MeasureContext, *, magnitude_aware: bool) -> float:
    """σ': the largest noise scale keeping the mean training error within ``flatness_delta`` of the
    noiseless error (see the module docstring). Clamped to [sigma_min, sigma_max]."""
    s = ctx.settings
    base = ctx.folded_params
    err0 = subset_error(ctx, base)
    purpose = "pacbayes_mag" if magnitude_aware else "pacbayes"

    def rise(sigma: float) -> float:
        errors = []
        for draw in range(s.flatness_draws):
            g = ctx.generator(purpose, draw)  # the same z at every σ (common random numbers)
            noisy = {}
            for name, p in base.items():
                z = torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device)  # device-independent draws
                std = torch.sqrt(sigma**2 * p.square() + s.magnitude_eps**2) if magnitude_aware else sigma
                noisy[name] = p + std * z
            errors.append(subset_error(ctx, noisy))
        return sum(errors) / len(errors) - err0

    if rise(s.sigma_max) <= s.flatness_delta:
        return s.sigma_max
    if rise(s.sigma_min) > s.flatness_delta:
        return s.sigma_min
    lo, hi = math.log(s.sigma_min), math.log(s.sigma_max)
    for _ in range(s.flatness_steps):
        mid = 0.5 * (lo + hi)
        r = rise(math.exp(mid))
        if abs(r - s.flatness_delta) <= s.flatness_tolerance:
            return math.exp(mid)  # close enough to the bound (Dziugaite et al.'s stopping rule)
        if r <= s.flatness_delta:
            lo = mid
        else:
            hi = mid
    return math.exp(lo)


_PB_SETTINGS = ("subset", "flatness_delta", "flatness_draws", "flatness_steps", "flatness_tolerance", "sigma_min",
                "sigma_max")


@register_measure(
    formula="1 / σ'², σ' the largest σ with E_{u~N(0,σ²I)}[err(w+u)] − err(w) ≤ δ on the training subset (δ = 0.1)",
    units="1 / weight units²",
    reference=f"{JIANG_PB}, eq. (53) 'pacbayes.flatness'; Dziugaite et al., NeurIPS 2020",
    description="PAC-Bayes flatness: inverse squared largest weight noise within the error bound",
    settings=_PB_SETTINGS,
    cost="search",
)
def pacbayes_flatness(ctx: MeasureContext) -> float:
    return 1.0 / ctx.pacbayes_sigma**2


@register_measure(
    formula="‖w − w⁰‖₂² / (4σ'²) + log(m / σ') + 10, σ' as in pacbayes_flatness, m the training-set size",
    units="nats",
    reference=f"{JIANG_PB}, eq. (48) 'pacbayes.init'; Neyshabur et al. 2017",
    description="PAC-Bayes bound term with the prior centred at the initial weights",
    settings=_PB_SETTINGS,
    cost="search",
)
def pacbayes_init(ctx: MeasureContext) -> float:
    sigma = ctx.pacbayes_sigma
    dist2 = sum(float(torch.linalg.matrix_norm((w - w0).double()) ** 2) for _, w, w0 in ctx.weights)
    return dist2 / (4 * sigma**2) + math.log(ctx.n_train / sigma) + 10


@register_measure(
    formula="1 / σ'², σ' the largest σ with E_u[err(w+u)] − err(w) ≤ δ for u_i ~ N(0, σ²w_i² + ε²) (ε = 1e-3)",
    units="dimensionless (σ scales |w|)",
    reference=f"{JIANG_PB}, eq. (61) 'pacbayes.mag.flatness'",
    description="magnitude-aware PAC-Bayes flatness (noise proportional to |w|)",
    settings=_PB_SETTINGS + ("magnitude_eps",),
    cost="search",
)
def pacbayes_mag_flatness(ctx: MeasureContext) -> float:
    return 1.0 / ctx.pacbayes_mag_sigma**2


@register_measure(
    formula="max_{|u_i| ≤ ρ(|w_i|+1)} L(w+u) − L(w), L the training cross-entropy, by projected "
            "sign-gradient ascent (ρ = 5e-4, 5 steps)",
    units="nats",
    reference="Keskar et al., ICLR 2017, eq. (3) (ε-sharpness, unnormalized); Jiang et al., ICLR 2020, App. C",
    description="sharpness: worst-case loss rise in a small box around the weights",
    settings=("subset", "sharpness_radius", "sharpness_steps"),
    cost="search",
)
def sharpness(ctx: MeasureContext) -> float:
    s = ctx.settings
    base = ctx.folded_params
    box = {k: s.sharpness_radius * (p.abs() + 1.0) for k, p in base.items()}
    u = {k: torch.zeros_like(p) for k, p in base.items()}
    loss0 = subset_loss(ctx, base)
    best = loss0
    for _ in range(s.sharpness_steps):
        loss, grads = _loss_and_grad(ctx, base, {k: v.clone().requires_grad_(True) for k, v in u.items()})
        best = max(best, loss)
        with torch.no_grad():
            for k in u:
                u[k] = torch.clamp(u[k] + 0.5 * box[k] * grads[k].sign(), -box[k], box[k])
    final = subset_loss(ctx, {k: base[k] + u[k] for k in base})
    return max(best, final) - loss0


def _loss_and_grad(ctx: MeasureContext, base: dict[str, torch.Tensor], shift: dict[str, torch.Tensor]
                   ) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss at ``base + shift`` and its gradient with respect to ``shift``."""
    x_all, y_all = ctx.subset
    n = x_all.shape[0]
    total = 0.0
    grads = {k: torch.zeros_like(v) for k, v in shift.items()}
    keys = list(shift)
    for start, stop in ctx.batches(n):
        params = {k: base[k] + shift[k] for k in keys}
        logits = functional_call(ctx.folded, params, (x_all[start:stop],)).float()
        loss = F.cross_entropy(logits, y_all[start:stop], reduction="sum") / n
        parts = torch.autograd.grad(loss, [shift[k] for k in keys], allow_unused=True)
        for k, g in zip(keys, parts, strict=True):
            if g is not None:
                grads[k] += g
        total += float(loss.detach())
    return total, grads
