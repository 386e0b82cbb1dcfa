"""Whole-set evaluation in eval mode (paper Figure 1: training accuracy on the corrupted set; Table 2).

Accuracy on the training set is measured against the labels trained on, in eval mode (BatchNorm uses
running statistics, dropout is off), in large ``inference_mode`` batches. Beside the (top-1) accuracy,
the top-5 accuracy of Table 2 (ImageNet): the fraction of samples whose label is among the five
largest logits (:func:`topk_correct`). With five classes or fewer every label is among the top five,
so top-5 is then not reported (None).
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
    acc_top5: float | None = None  # fraction whose label is among the 5 largest logits (None: K <= 5)


TOPK = 5  # Table 2's top-5


def topk_correct(logits: torch.Tensor, target: torch.Tensor, k: int = TOPK) -> torch.Tensor:
    """(N,) bool: whether ``target[i]`` is among the ``k`` largest of ``logits[i]`` (N, K).

    The label's rank is the number of logits larger than its own plus the number of equal ones at a
    smaller class index; it is correct when that rank is below ``k``. Ties are thus broken towards the
    smaller index, as ``argmax`` breaks them (torch returns the first maximal index), so ``k=1`` is
    exactly ``argmax == target`` and top-k never falls below top-1, on every device (``torch.topk``'s
    order among equal values is unspecified and differs between CPU and CUDA). ``k`` larger than K
    counts every sample as correct.

    Examples
    --------
    >>> logits = torch.tensor([[0.0, 3.0, 2.0, 1.0], [3.0, 2.0, 1.0, 0.0]])
    >>> topk_correct(logits, torch.tensor([3, 3]), k=3).tolist()
    [True, False]
    >>> topk_correct(torch.zeros(2, 4), torch.tensor([0, 3]), k=2).tolist()  # all tied: indices 0, 1 first
    [True, False]
    """
    if k >= logits.shape[-1]:
        return torch.ones(target.shape, dtype=torch.bool, device=target.device)
    own = logits.gather(-1, target[:, None])  # (N, 1)
    before = torch.arange(logits.shape[-1], device=logits.device) < target[:, None]  # (N, K): smaller index
    rank = (logits > own).sum(dim=-1) + ((logits == own) & before).sum(dim=-1)  # (N,)
    return rank < k


def autocast_context(device_type: str, dtype: torch.dtype | None, cache: bool = True):
    """``torch.autocast`` to ``dtype`` on ``device_type`` (None: disabled, float32 throughout). ``cache``:
    torch's cast-weight cache, off inside a captured CUDA graph (torch.cuda.graphs documentation)."""
    return torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None,
                          cache_enabled=cache)


def predict_correct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                    autocast: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample loss (N,) and correctness (N,) of ``model`` on ``x``, ``y`` in eval mode, with
    ``autocast`` (a dtype, e.g. ``torch.bfloat16``; None: float32) around the forward."""
    losses, correct, _ = predict(model, x, y, batch_size, autocast, top5=False)
    return losses, correct


def predict(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
            autocast: torch.dtype | None = None, top5: bool = True
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-sample loss (N,) float32, top-1 correctness (N,) bool and top-5 correctness (N,) bool (None
    without ``top5``) of ``model`` on ``x``, ``y`` in eval mode, with ``autocast`` (a dtype; None: float32)."""
    was_training = model.training
    model.eval()
    # preallocated outputs, not a list of per-batch results: small tensors kept between the batches'
    # freed activations fragment the malloc heap, which then grows by a batch's activations per batch
    losses = torch.empty(y.shape, device=y.device)
    correct = torch.empty(y.shape, dtype=torch.bool, device=y.device)
    correct5 = torch.empty(y.shape, dtype=torch.bool, device=y.device) if top5 else None
    device_type = x.device.type
    with torch.inference_mode(), autocast_context(device_type, autocast):
        for start in range(0, x.shape[0], batch_size):
            logits = model(x[start:start + batch_size]).float()  # (B, K)
            target = y[start:start + batch_size]
            losses[start:start + batch_size] = F.cross_entropy(logits, target, reduction="none")
            correct[start:start + batch_size] = logits.argmax(dim=1) == target
            if correct5 is not None:
                correct5[start:start + batch_size] = topk_correct(logits, target)
    model.train(was_training)
    return losses, correct, correct5


def summarize(losses: torch.Tensor, correct: torch.Tensor, changed: torch.Tensor | None = None,
              correct5: torch.Tensor | None = None, num_classes: int | None = None) -> Evaluation:
    """Reduce per-sample results to an :class:`Evaluation` (one host sync). ``correct5`` (top-5
    correctness) is reported only when ``num_classes`` is above 5."""
    acc_changed = acc_unchanged = None
    if changed is not None:
        n_changed = int(changed.sum())
        if n_changed:
            acc_changed = float(correct[changed].float().mean())
        if n_changed < changed.numel():
            acc_unchanged = float(correct[~changed].float().mean())
    acc_top5 = None
    if correct5 is not None and num_classes is not None and num_classes > TOPK:
        acc_top5 = float(correct5.float().mean())
    return Evaluation(loss=float(losses.mean()), acc=float(correct.float().mean()),
                      acc_changed=acc_changed, acc_unchanged=acc_unchanged, acc_top5=acc_top5)


def evaluate(model, x, y, batch_size: int, changed=None, autocast: torch.dtype | None = None,
             num_classes: int | None = None) -> Evaluation:
    """:func:`predict` reduced by :func:`summarize` (top-5 when ``num_classes`` > 5)."""
    top5 = num_classes is not None and num_classes > TOPK
    losses, correct, correct5 = predict(model, x, y, batch_size, autocast, top5=top5)
    return summarize(losses, correct, changed, correct5, num_classes)
