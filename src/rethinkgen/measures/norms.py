"""Count- and norm-based measures: parameters, Frobenius and spectral norms, path norm, Bartlett et al.

Notation (Jiang et al. 2020, §C): the network has d weight layers with matrices W_1 … W_d (after
BatchNorm folding; a convolution's kernel reshaped to (c_out, c_in·k_h·k_w)), W_i⁰ the same at
initialisation, ‖·‖_F the Frobenius norm, ‖·‖₂ the spectral norm (largest singular value,
``torch.linalg.matrix_norm(ord=2)``). Weights exclude biases, as in Dziugaite et al.'s code.
"""

from __future__ import annotations

import copy
import math

import torch

from rethinkgen.measures import register_measure
from rethinkgen.measures.context import MeasureContext

JIANG = "Jiang et al., ICLR 2020 (Fantastic generalization measures), App. C"


def _fro2(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.double(), ord="fro") ** 2)


@register_measure(
    formula="number of parameters, BatchNorm's affine parameters excluded (the paper's Table 1 counting)",
    units="count",
    reference=f"{JIANG}, eq. (20) 'params' (VC-dimension based)",
    description="number of parameters (Table 1 counting)",
)
def params(ctx: MeasureContext) -> float:
    """BatchNorm's γ, β are left out for every model, also those usually counted with them (the
    torchvision ImageNet networks, ``count_batchnorm``), so that one definition holds across models."""
    from rethinkgen.models import count_params

    return float(count_params(ctx.model, exclude_batchnorm=True))


@register_measure(
    formula="‖w‖₂ = √(Σ_i ‖W_i‖_F²), the Euclidean norm of all weights",
    units="weight units",
    reference=f"{JIANG}, eq. (42) 'param_norm' (there squared)",
    description="ℓ2 (Frobenius) norm of all weights",
)
def l2_norm(ctx: MeasureContext) -> float:
    return math.sqrt(sum(_fro2(w) for _, w, _ in ctx.weights))


@register_measure(
    formula="Σ_i log ‖W_i‖_F² (the log of the product of squared Frobenius norms)",
    units="log (weight units²)",
    reference=f"{JIANG}, eq. (37) 'log_prod_of_fro'",
    description="log product of the layers' squared Frobenius norms",
)
def log_prod_fro(ctx: MeasureContext) -> float:
    return sum(math.log(_fro2(w)) for _, w, _ in ctx.weights)


@register_measure(
    formula="‖w − w⁰‖₂ = √(Σ_i ‖W_i − W_i⁰‖_F²), the distance from the initial weights",
    units="weight units",
    reference=f"{JIANG}, eq. (40) 'fro_dist' (there squared); Nagarajan & Kolter 2019",
    description="ℓ2 distance of the weights from their initialisation",
)
def dist_init(ctx: MeasureContext) -> float:
    return math.sqrt(sum(_fro2(w - w0) for _, w, w0 in ctx.weights))


@register_measure(
    formula="Σ_i log ‖W_i‖₂² (the log of the product of squared spectral norms: a Lipschitz constant²)",
    units="log (weight units²)",
    reference=f"{JIANG}, eq. (32) 'log_prod_of_spec'; Bartlett et al. 2017",
    description="log product of the layers' squared spectral norms",
)
def log_prod_spec(ctx: MeasureContext) -> float:
    return sum(2.0 * math.log(s) for s in ctx.spectral_norms)


@register_measure(
    formula="log(d · (∏_i ‖W_i‖₂²)^(1/d)): the smallest Σ_i ‖W_i‖₂² over rescalings of the ReLU layers",
    units="log (weight units²)",
    reference=f"{JIANG}, eq. (35) 'log_sum_of_spec'",
    description="log sum of the layers' squared spectral norms, balanced over layers",
)
def log_sum_spec(ctx: MeasureContext) -> float:
    d = len(ctx.spectral_norms)
    return math.log(d) + sum(2.0 * math.log(s) for s in ctx.spectral_norms) / d


class ChannelAffine(torch.nn.Module):
    """z ↦ weight ⊙ z + bias over the channel axis (dim 1) of a ``(N, C, ...)`` input: an eval-mode
    BatchNorm with its statistics folded in. Not a BatchNorm with μ 0, σ² 1 and ε 0: torch 2.11 refuses
    ``eps=0`` in ``F.batch_norm``, and any ε > 0 would rescale the weight."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (z.dim() - 2)
        return z * self.weight.view(shape) + self.bias.view(shape)


@register_measure(
    formula="√(Σ_out f_{w²}(1)), f_{w²} the network with every parameter squared (biases too), on an "
            "all-ones input: √ of the sum over input-output paths of ∏ w² (exact for linear/conv/ReLU/avg-pool)",
    units="weight units^d (path products)",
    reference=f"Neyshabur et al., COLT 2015; {JIANG}, eq. (44) 'path_norm' (there squared)",
    description="ℓ2 path norm, √(1ᵀ f_{w²}(1))",
)
def path_norm(ctx: MeasureContext) -> float:
    """Max-pooling and LRN are applied as they are, as the references' code does: for those layers
    the value is no longer an exact sum over paths. A BatchNorm left unfolded (fed by no weight layer)
    is the affine layer z ↦ s ⊙ z + (β − s ⊙ μ), s = γ/√(σ² + ε), and enters squared as such: weight s²,
    bias (β − s ⊙ μ)² (squaring γ and β alone would keep the running mean and variance unsquared)."""
    net = copy.deepcopy(ctx.folded).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.pow_(2)
        for name, module in list(net.named_modules()):
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                original = ctx.folded.get_submodule(name)
                gamma = original.weight if original.weight is not None else torch.ones_like(original.running_var)
                beta = original.bias if original.bias is not None else torch.zeros_like(original.running_var)
                scale = gamma / torch.sqrt(original.running_var + original.eps)
                squared = ChannelAffine(scale.square(), (beta - scale * original.running_mean).square())
                parent, _, child = name.rpartition(".")
                setattr(net.get_submodule(parent) if parent else net, child, squared)
        ones = torch.ones((1, *ctx.x_train.shape[1:]), device=ctx.device, dtype=ctx.x_train.dtype)
        total = float(net(ones).double().sum())
    return math.sqrt(max(total, 0.0))


@register_measure(
    formula="R_A · ‖X‖_F / (γ · n), R_A = (∏_i ‖W_i‖₂) · (Σ_i (‖W_iᵀ‖_{2,1} / ‖W_i‖₂)^(2/3))^(3/2); "
            "‖·‖_{2,1} the sum of the rows' ℓ2 norms, X the (n, D) training inputs, γ the margin quantile",
    units="dimensionless",
    reference="Bartlett, Foster & Telgarsky, NeurIPS 2017, Theorem 1.1 (reference matrices M_i = 0, "
              "ρ_i = 1 for ReLU)",
    description="margin-normalized spectral complexity (Bartlett et al. 2017)",
    settings=("margin_quantile",),
    cost="forward",
)
def spectral_complexity(ctx: MeasureContext) -> float:
    """Infinite when the margin quantile γ is ≤ 0 (more than a fraction q of the training set is
    misclassified: the bound is vacuous)."""
    spec = ctx.spectral_norms
    row21 = [float(torch.linalg.vector_norm(w.double(), ord=2, dim=1).sum()) for _, w, _ in ctx.weights]
    r_a = math.prod(spec) * sum((r / s) ** (2.0 / 3.0) for r, s in zip(row21, spec, strict=True)) ** 1.5
    gamma = ctx.margin
    if gamma <= 0:
        return math.inf
    x_norm = float(torch.linalg.vector_norm(ctx.x_train.double()))
    return r_a * x_norm / (gamma * ctx.n_train)
