"""Small AlexNet of Table 1: the TensorFlow CIFAR-10 tutorial model (paper App. A).

"two (convolution 5x5 -> max-pool 3x3 -> local-response-normalization) modules followed by two
fully connected layers with 384 and 192 hidden units, respectively. Finally a 10-way linear layer
is used for prediction." With 64 filters per convolution, TensorFlow ``SAME`` padding and 3×3
stride-2 pooling (28 -> 14 -> 7), the count on 3×28×28 is exactly Table 1's 1,387,786:
conv1 4,864 + conv2 102,464 + fc384 1,204,608 + fc192 73,920 + fc10 1,930.

Details follow the tutorial (``cifar10.py``): conv 5×5 stride 1 ``SAME`` with bias -> ReLU ->
max-pool 3×3 stride 2 ``SAME`` -> LRN(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75), twice;
then the flattened features -> FC 384 -> ReLU -> FC 192 -> ReLU -> FC K. (The tutorial puts the
second LRN before the second pool; the paper's sentence puts LRN after the pool in both modules,
which is what we do. The order does not change the parameter count.) Weights use PyTorch's default
initialisation, not the tutorial's truncated normals.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from rethinkgen.models import register_model
from rethinkgen.models.layers import check_image, max_pool_same, same_out

# TensorFlow tutorial LRN: depth_radius=4 (a window of 2·4+1 = 9 channels), bias=1, alpha=0.001/9,
# beta=0.75, computing x / (bias + alpha · Σ_window x²)^beta. PyTorch's LocalResponseNorm divides
# alpha by the window size, so alpha_torch = alpha_tf · size reproduces TensorFlow's formula.
LRN_DEPTH_RADIUS = 4
LRN_SIZE = 2 * LRN_DEPTH_RADIUS + 1
LRN_ALPHA_TF = 0.001 / 9.0
LRN_BETA = 0.75
LRN_BIAS = 1.0


def tf_lrn() -> nn.LocalResponseNorm:
    """``tf.nn.lrn(depth_radius=4, bias=1.0, alpha=0.001/9.0, beta=0.75)`` as a PyTorch module."""
    return nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA_TF * LRN_SIZE, beta=LRN_BETA, k=LRN_BIAS)


class AlexNetSmall(nn.Module):
    """Input ``(N, C, H, W)`` (paper: 3×28×28), output logits ``(N, num_classes)``."""

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0, width: int = 64
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(c, width, 5, padding=2)),  # (N, 64, H, W)
                    ("relu1", nn.ReLU()),
                    ("pool1", max_pool_same(3, 2)),  # (N, 64, H/2, W/2), rounded up
                    ("norm1", tf_lrn()),
                    ("conv2", nn.Conv2d(width, width, 5, padding=2)),
                    ("relu2", nn.ReLU()),
                    ("pool2", max_pool_same(3, 2)),  # (N, 64, H/4, W/4), rounded up
                    ("norm2", tf_lrn()),
                ]
            )
        )
        flat = width * same_out(same_out(h, 2), 2) * same_out(same_out(w, 2), 2)  # 64·7·7 = 3136 on 28×28
        head: list[tuple[str, nn.Module]] = [("fc1", nn.Linear(flat, 384)), ("relu3", nn.ReLU())]
        if dropout > 0:
            head.append(("drop1", nn.Dropout(dropout)))
        head += [("fc2", nn.Linear(384, 192)), ("relu4", nn.ReLU())]
        if dropout > 0:
            head.append(("drop2", nn.Dropout(dropout)))
        head.append(("head", nn.Linear(192, num_classes)))
        self.classifier = nn.Sequential(OrderedDict(head))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, 64, 7, 7) on 28×28
        return self.classifier(torch.flatten(x, 1))  # (N, K)


@register_model(
    layouts=("image",),
    paper_params=1_387_786,
    paper_lr=0.01,
    description="small AlexNet: 2x(conv5x5 64 -> maxpool3x3/2 -> LRN) -> FC 384 -> FC 192 (TF tutorial)",
)
def alexnet_small(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    return AlexNetSmall(check_image("alexnet_small", input_shape, 8), num_classes, dropout)
