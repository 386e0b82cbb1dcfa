"""Stacked MLPs as batched matrix products: K runs' Linear layers in one ``baddbmm`` each.

For models that are a ``Sequential`` of Flatten / Linear / ReLU (the paper's MLPs) this is faster
than ``vmap(functional_call)``: no per-call overhead, and with shared inputs the first layer of all
runs is one GEMM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["linear_plan", "mlp_forward"]


def linear_plan(model: torch.nn.Module) -> list[tuple[str, str | None]] | None:
    """The layers of a Sequential of Flatten / Linear / ReLU as (op, name) pairs; None for other models."""
    if not isinstance(model, torch.nn.Sequential):
        return None
    plan: list[tuple[str, str | None]] = []
    for name, module in model.named_children():
        if isinstance(module, torch.nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
            plan.append(("flatten", None))
        elif isinstance(module, torch.nn.Linear):
            plan.append(("linear", name))
        elif isinstance(module, torch.nn.ReLU):
            plan.append(("relu", None))
        elif isinstance(module, torch.nn.Identity):
            continue
        else:
            return None
    return plan


def mlp_forward(plan: list[tuple[str, str | None]], params: dict[str, torch.Tensor], stats: dict,
                 x: torch.Tensor, shared: bool) -> torch.Tensor:
    """K stacked MLPs on per-run inputs (K, B, ...) or on shared inputs (B, ...): logits (K, B, C).

    Each Linear is one ``baddbmm`` (bias + x @ W^T per run), what ``F.linear``'s addmm does per run.
    """
    for op, name in plan:
        if op == "flatten":
            x = x.flatten(1) if shared else x.flatten(2)
        elif op == "relu":
            x = torch.relu(x)
        else:
            weight, bias = params[f"{name}.weight"], params.get(f"{name}.bias")  # (K, O, I), (K, O)
            if shared:  # one input for all runs: the K layers as one (B, I) @ (I, K·O) GEMM, whose
                k, o, i = weight.shape  # weight gradient is one GEMM too (the per-run bmm's are small)
                x = F.linear(x, weight.reshape(k * o, i), None if bias is None else bias.reshape(k * o))
                x = x.view(x.shape[0], k, o).transpose(0, 1)  # (K, B, O)
                shared = False
                continue
            if bias is None:
                x = torch.bmm(x, weight.transpose(1, 2))
            else:
                x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
    return x
