"""Measures on the network's outputs: the output margin and the input-gradient norm.

Both use the network in eval mode on the training inputs with the labels it was trained on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rethinkgen.measures import register_measure
from rethinkgen.measures.context import MeasureContext

__all__ = ["output_margins"]


def output_margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """(N,) float32 margins ``f(x)[y] − max_{j≠y} f(x)[j]`` of ``model`` (eval mode) on ``(x, y)``, in
    logit units; positive where the sample is classified correctly."""
    model.eval()
    out = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            logits = model(x[start:start + batch_size]).float()  # (B, K)
            yb = y[start:start + batch_size]
            true = logits.gather(1, yb[:, None]).squeeze(1)
            others = logits.scatter(1, yb[:, None], float("-inf")).amax(dim=1)
            out[start:start + logits.shape[0]] = true - others
    return out


@register_measure(
    formula="1 / γ², γ the q-quantile of the training margins f(x)[y] − max_{j≠y} f(x)[j] (q = 0.1)",
    units="1 / logit²",
    reference="Jiang et al., ICLR 2020, App. C, eq. (22) '1/margin' (10th percentile of the margins)",
    description="inverse squared output margin at the q-quantile of the training set",
    settings=("margin_quantile",),
    cost="forward",
)
def inverse_margin(ctx: MeasureContext) -> float:
    """Infinite when γ ≤ 0 (more than a fraction q of the training set is misclassified)."""
    gamma = ctx.margin
    return math.inf if gamma <= 0 else 1.0 / gamma**2


@register_measure(
    formula="mean over the training subset of ‖∇_x ℓ(f(x), y)‖₂, ℓ the cross-entropy",
    units="nats per input unit (preprocessed inputs)",
    reference="Drucker & LeCun 1992 (input-gradient penalty); Novak et al., ICLR 2018 (input-output "
              "Jacobian norm tracks generalization)",
    description="mean ℓ2 norm of the loss gradient with respect to the input",
    settings=("subset",),
    cost="forward",
)
def input_grad_norm(ctx: MeasureContext) -> float:
    x_all, y_all = ctx.subset
    total = 0.0
    for start, stop in ctx.batches(x_all.shape[0]):
        x = x_all[start:stop].detach().clone().requires_grad_(True)
        loss = F.cross_entropy(ctx.folded(x).float(), y_all[start:stop], reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)  # eval mode: samples are independent, so ∂(Σℓ)/∂x_i = ∂ℓ_i/∂x_i
        total += float(torch.linalg.vector_norm(grad.flatten(1).double(), dim=1).sum())
    return total / x_all.shape[0]
