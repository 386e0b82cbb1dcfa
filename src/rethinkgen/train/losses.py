"""The training loss of one SGD step, for models that return logits or ``(logits, aux_logits)``.

Cross-entropy on the logits (the paper's "training loss", Figure 1a). Inception V3 (Table 2) returns an
auxiliary classifier's logits beside the main ones in train mode, and is trained on
``CE(logits) + AUX_WEIGHT · CE(aux_logits)`` with ``AUX_WEIGHT = 0.4``: the weight of TF-slim's
Inception V3 training (``train_image_classifier.py``: the aux loss with ``weights=0.4``), whose setup
the paper reused for ImageNet (App. A), and of PyTorch's fine-tuning tutorial. The auxiliary head is
used in training only: in eval mode the model returns the logits alone, and every accuracy is the
main classifier's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rethinkgen.models.imagenet import AUX_WEIGHT

__all__ = ["AUX_WEIGHT", "main_logits", "training_loss"]


def main_logits(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The main classifier's logits (N, K) of a model's output (a tensor, or (logits, aux_logits))."""
    return output[0] if isinstance(output, tuple | list) else output


def training_loss(output: torch.Tensor | tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats, float32 0-d) of ``output`` against ``target`` (N,) int64.

    ``output`` is logits (N, K), or a pair (logits, aux_logits) of (N, K) tensors, whose loss is
    ``CE(logits) + 0.4 · CE(aux_logits)`` (module docstring). Logits in a low precision (autocast)
    are taken in float32.

    Examples
    --------
    >>> logits, aux = torch.zeros(2, 4), torch.zeros(2, 4)
    >>> round(training_loss(logits, torch.tensor([0, 1])).item(), 4)  # log 4
    1.3863
    >>> round(training_loss((logits, aux), torch.tensor([0, 1])).item(), 4)  # 1.4 log 4
    1.9408
    """
    if isinstance(output, tuple | list):
        logits, aux = output[0], output[1]
        loss = F.cross_entropy(logits.float(), target)
        if aux is not None:
            loss = loss + AUX_WEIGHT * F.cross_entropy(aux.float(), target)
        return loss
    return F.cross_entropy(output.float(), target)
