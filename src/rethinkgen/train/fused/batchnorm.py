"""BatchNorm for the vmapped (fused) forward: batch statistics from plain reductions, no memory-format query.

Why not ``torch.nn.BatchNorm2d`` under ``vmap``: functorch runs ``aten::batch_norm`` and
``aten::_batch_norm_impl_index`` as decompositions *on the batched tensor* (``OP_DECOMPOSE`` in
``aten/src/ATen/functorch/BatchRulesDecompositions.cpp``); only ``native_batch_norm`` further down has
a batch rule that unwraps it. ``_batch_norm_impl_index`` (``aten/src/ATen/native/Normalization.cpp``)
first picks a backend with ``_select_batch_norm_backend``: on a CUDA tensor with cuDNN available (float32
or float16 input in the sources read; bfloat16 was excluded there, so with bf16 autocast the crash
needs a torch that admits it) it picks cuDNN and then calls
``input.contiguous(input.suggest_memory_format())``. For a channels-last input that is
``contiguous(ChannelsLast)``, whose first step is ``is_contiguous(ChannelsLast)`` — and
``BatchedTensorImpl::is_contiguous_custom`` (``aten/src/ATen/functorch/BatchedTensorImpl.cpp``) raises
``NYI: querying is_contiguous inside of vmap for memory_format other than torch.contiguous_format``
for every format but the default. On the CPU the same function picks the native backend, whose
batch rule never asks, which is why a channels-last fused group trains on the CPU and crashed on
CUDA. (Read in torch's sources; the ``gpu``-marked test in tests/test_fused.py runs the fused group on
a device.)

:class:`StackableBatchNorm` computes the same function without that composite, in one of two
formulations:

- ``"reductions"`` (the default): ``var_mean``, broadcasting arithmetic and in-place updates of the
  running-statistics buffers — each op has a vmap batch rule and none looks at strides, so it cannot
  hit the query on any device, whatever torch's BatchNorm kernels do;
- ``"native"``: torch's ``native_batch_norm`` called directly — its batch rule
  (``aten/src/ATen/functorch/BatchRulesNorm.cpp``) unwraps the vmapped tensor before any kernel runs,
  so the query is skipped too, and torch's own kernels do the work (fewer passes over memory).

Both equal ``nn.BatchNorm2d`` within float rounding on the CPU (tests/test_fused.py). The default is
the one whose correctness does not depend on torch's device kernels; ``benchmarks/fused_batchnorm.py``
times both against torch's module (on the 2-core development machine, under load: 1.2-1.45x and
1.1-1.3x its step time in a vmapped inception_small step; to be measured on a GPU before choosing
there). :func:`vmappable` swaps it in for every BatchNorm layer of a (meta-device) template; the
state-dict names stay those of the original model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["GlobalAvgPool2d", "StackableBatchNorm", "vmappable"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)
FORMULATIONS = ("native", "reductions")


class StackableBatchNorm(nn.Module):
    """``nn.BatchNorm{1,2,3}d`` (Ioffe & Szegedy, 2015) computed from plain tensor operations.

    Input (N, C, *) of any memory format; output of the same shape and dtype. In training mode (or
    without running statistics) it normalises with the batch's per-channel mean and population
    variance over N and the spatial dimensions, and — when tracking — updates
    ``running_mean`` and ``running_var`` (unbiased) with ``momentum`` (``None``: cumulative average) and
    counts ``num_batches_tracked``, as ``nn.BatchNorm2d`` does; in eval mode it uses the running
    statistics. Statistics and normalisation are computed in float32 for float16/bfloat16 inputs
    (autocast), as torch's kernels accumulate them. Equal to ``nn.BatchNorm2d`` within float rounding
    (tests/test_fused.py).
    """

    def __init__(self, bn: _BatchNorm, formulation: str = "reductions") -> None:
        super().__init__()
        if formulation not in FORMULATIONS:
            raise ValueError(f"formulation must be one of {', '.join(FORMULATIONS)}, got {formulation!r}")
        self.formulation = formulation
        self.num_features, self.eps, self.momentum = bn.num_features, bn.eps, bn.momentum
        self.affine, self.track_running_stats = bn.affine, bn.track_running_stats
        # the same tensors under the same names, in the same order: state_dict keys do not change
        self.register_parameter("weight", bn.weight)
        self.register_parameter("bias", bn.bias)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, getattr(bn, name))
        self.train(bn.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.formulation == "native" and self.momentum is not None:
            return self._native(x)
        return self._reductions(x)

    def _native(self, x: torch.Tensor) -> torch.Tensor:
        """torch's ``native_batch_norm`` kernel, called directly (its vmap batch rule unwraps the tensor
        before any kernel runs; ``_batch_norm_impl_index``, the composite that queries, is skipped)."""
        work = x.float() if x.dtype in _LOW_PRECISION else x  # the batch rule's dummy weight takes x's dtype
        if self.training and self.running_mean is not None:
            self.num_batches_tracked.add_(1)
        use_batch = self.training or self.running_mean is None
        y, _, _ = torch.ops.aten.native_batch_norm(work, self.weight, self.bias, self.running_mean, self.running_var,
                                                   use_batch, self.momentum, self.eps)
        return y.to(x.dtype)

    def _reductions(self, x: torch.Tensor) -> torch.Tensor:
        """The same function from ``var_mean`` and broadcasting arithmetic (no BatchNorm kernel at all)."""
        dims = [0, *range(2, x.dim())]  # every dimension but the channels
        shape = [1, -1] + [1] * (x.dim() - 2)  # (1, C, 1, ...): broadcasts over (N, C, *)
        work = x.float() if x.dtype in _LOW_PRECISION else x
        use_batch = self.training or self.running_mean is None
        if use_batch:
            var, mean = torch.var_mean(work, dim=dims, correction=0)  # (C,), (C,): population variance
            if self.training and self.running_mean is not None:
                self._update_running(mean.detach(), var.detach(), x.numel() // x.shape[1])
        else:
            mean, var = self.running_mean, self.running_var
        scale = torch.rsqrt(var + self.eps)  # (C,): 1/σ, times γ when affine
        if self.weight is not None:
            scale = scale * self.weight
            y = torch.addcmul(self.bias.view(shape), work - mean.view(shape), scale.view(shape))  # (x−μ)·γ/σ + β
        else:
            y = (work - mean.view(shape)) * scale.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        """running ← (1 − m)·running + m·batch, with the unbiased batch variance (n values per channel)."""
        self.num_batches_tracked.add_(1)
        m = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked
        unbiased = var * (n / max(n - 1, 1))
        self.running_mean.mul_(1 - m).add_(mean * m)
        self.running_var.mul_(1 - m).add_(unbiased * m)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class GlobalAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d(1)``: (N, C, H, W) -> (N, C, 1, 1), the mean over H and W.

    torch computes output size 1 as exactly this mean, then (for a channels-last input) restrides the
    result in place with ``as_strided_`` — which has no vmap batch rule, so under ``vmap`` it falls back
    to a per-run loop (a performance warning, and a different backward). The mean alone has none of that.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1), keepdim=True)


def _replacement(module: nn.Module, batchnorm: str) -> nn.Module | None:
    if isinstance(module, _BatchNorm):
        return StackableBatchNorm(module, batchnorm)
    if isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1)):
        return GlobalAvgPool2d()
    return None


def vmappable(model: nn.Module, batchnorm: str = "reductions") -> nn.Module:
    """A copy of ``model`` whose ``nn.BatchNorm{1,2,3}d`` layers are :class:`StackableBatchNorm` (sharing
    their parameters and buffers, so state-dict names do not change) and whose global average pools
    are :class:`GlobalAvgPool2d`; the same function, runnable under ``vmap`` on any device and in any
    memory format. Other modules are kept as they are."""
    model = copy.deepcopy(model)
    whole = _replacement(model, batchnorm)
    if whole is not None:
        return whole
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            new = _replacement(child, batchnorm)
            if new is not None:
                setattr(module, name, new)
    return model
