"""bf16 autocast for a vmapped forward: the casts autocast would make, made before ``vmap``.

Under ``torch.func.vmap`` autocast does not reach convolutions: vmap's batching layer sits above the
autocast layer in PyTorch's dispatcher and decomposes ``conv2d`` into ``convolution``, which autocast
does not wrap, so a vmapped convolution runs in float32 inside a bf16 autocast region (measured on the
CPU with torch 2.14: exactly the float32 result; the same dispatcher order holds for CUDA; for
``nn.Linear`` see pytorch/pytorch#192617, whose bias addition stays in float32 under vmap). A fused
convnet group with ``amp`` would then compute in float32 while its runs record bf16 autocast, and
differ from the same runs trained alone (which autocast does reach) by more than bf16 rounding.

:func:`autocast_vmapped` wraps the vmapped forward so that the weights and biases of every
convolution and linear layer are cast to the autocast dtype first, and (forward pre-hooks installed by
:func:`low_precision_parameters`) each such layer's input to its weight's dtype — what autocast's
``conv*``/``linear`` wrappers do per call (gradients flow back to the float32 parameters through the
casts). Everything else keeps its autocast behaviour: BatchNorm layers are
:class:`~rethinkgen.train.fused.batchnorm.StackableBatchNorm` (statistics in float32, output in the
input's dtype), pooling and ReLU follow their input, and the ops autocast keeps in float32 (``pow``,
``exp``, losses) still are, since their batch rules call them through the dispatcher again.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["LOW_PRECISION_MODULES", "autocast_vmapped", "low_precision_parameters"]

# The layers whose autocast wrappers vmap bypasses, and which autocast runs in the low-precision dtype.
LOW_PRECISION_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _input_to_weight_dtype(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the layer's input in its weight's dtype (autocast casts both; under vmap it
    casts neither, and an input left in float32 by a float32-list op such as ``pow`` would meet bf16
    weights)."""
    x, *rest = args
    return (x.to(module.weight.dtype), *rest) if x.is_floating_point() else args


def low_precision_parameters(model: nn.Module) -> frozenset[str]:
    """Names (as in ``model.named_parameters()``) of the weights and biases of its convolution and
    linear layers: what autocast casts to its low-precision dtype. Installs on each of these layers a
    forward pre-hook that casts its input to its weight's dtype (a no-op while both are float32), so
    call it on the template the vmapped forward runs (a copy: :func:`~rethinkgen.train.fused.batchnorm.vmappable`)."""
    names = []
    for prefix, module in model.named_modules():
        if isinstance(module, LOW_PRECISION_MODULES):
            module.register_forward_pre_hook(_input_to_weight_dtype)
            names += [f"{prefix}.{name}" if prefix else name for name, _ in module.named_parameters(recurse=False)]
    return frozenset(names)


def autocast_vmapped(forward: Callable[..., torch.Tensor], names: frozenset[str],
                     dtype: torch.dtype = torch.bfloat16) -> Callable[..., torch.Tensor]:
    """``forward(params, stats, x)`` (a vmapped ``functional_call`` of a template prepared by
    :func:`low_precision_parameters`) with the parameters in ``names`` cast to ``dtype`` first, and
    so, through the pre-hooks, the inputs of those layers. Call it inside the autocast region, as the
    unwrapped forward; outputs come back in ``dtype`` where autocast's would."""

    def cast(params: dict[str, torch.Tensor], stats: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return forward({n: (p.to(dtype) if n in names else p) for n, p in params.items()}, stats, x)

    return cast
