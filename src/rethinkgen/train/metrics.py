"""Whole-set evaluation in eval mode (paper Figure 1: training accuracy on the corrupted set).

Accuracy on the training set is measured against the labels trained on, in eval mode (BatchNorm uses
running statistics, dropout is off), in large ``inference_mode`` batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Evaluation:
    loss: float  # mean cross-entropy (nats)
    acc: float  # fraction correct in [0, 1]
    acc_changed: float | None  # on samples whose label was changed (None if there are none)
    acc_unchanged: float | None  # on the other samples (None if there are none)


def autocast_context(device_type: str, dtype: torch.dtype | None, cache: bool = True):
    """``torch.autocast`` to ``dtype`` on ``device_type`` (None: disabled, float32 throughout). ``cache``:
    torch's cast-weight cache, off inside a captured CUDA graph (torch.cuda.graphs documentation)."""
    return torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None,
                          cache_enabled=cache)


def predict_correct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                    autocast: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample loss (N,) and correctness (N,) of ``model`` on ``x``, ``y`` in eval mode, with
    ``autocast`` (a dtype, e.g. ``torch.bfloat16``; None: float32) around the forward."""
    was_training = model.training
    model.eval()
    # preallocated outputs, not a list of per-batch results: small tensors kept between the batches'
    # freed activations fragment the malloc heap, which then grows by a batch's activations per batch
    losses = torch.empty(y.shape, device=y.device)
    correct = torch.empty(y.shape, dtype=torch.bool, device=y.device)
    device_type = x.device.type
    with torch.inference_mode(), autocast_context(device_type, autocast):
        for start in range(0, x.shape[0], batch_size):
            logits = model(x[start:start + batch_size]).float()  # (B, K)
            target = y[start:start + batch_size]
            losses[start:start + batch_size] = F.cross_entropy(logits, target, reduction="none")
            correct[start:start + batch_size] = logits.argmax(dim=1) == target
    model.train(was_training)
    return losses, correct


def summarize(losses: torch.Tensor, correct: torch.Tensor, changed: torch.Tensor | None = None) -> Evaluation:
    """Reduce per-sample results to an :class:`Evaluation` (one host sync)."""
    acc_changed = acc_unchanged = None
    if changed is not None:
        n_changed = int(changed.sum())
        if n_changed:
            acc_changed = float(correct[changed].float().mean())
        if n_changed < changed.numel():
            acc_unchanged = float(correct[~changed].float().mean())
    return Evaluation(loss=float(losses.mean()), acc=float(correct.float().mean()),
                      acc_changed=acc_changed, acc_unchanged=acc_unchanged)


def evaluate(model, x, y, batch_size: int, changed=None, autocast: torch.dtype | None = None) -> Evaluation:
    losses, correct = predict_correct(model, x, y, batch_size, autocast)
    return summarize(losses, correct, changed)
