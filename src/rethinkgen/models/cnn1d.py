"""A small 1-D CNN for MNIST-1D (not a paper model).

It is ``ConvBase`` of the MNIST-1D paper (Greydanus & Kobak, "Scaling down deep learning with
MNIST-1D", ICML 2024; the notebook's baseline CNN): three Conv1d layers of 25 channels, kernel 5
stride 2 then kernel 3 stride 2 twice, padding 1, each followed by a ReLU, then a linear layer on
the flattened features. On MNIST-1D's (1, 40) signals the lengths go 40 -> 19 -> 10 -> 5 and the
model has 5,210 parameters (150 + 1,900 + 1,900 + 1,260). Any (C, L) input with L >= 3 works.
PyTorch default initialisation; dropout (if > 0) before the linear layer.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from rethinkgen.errors import ConfigError
from rethinkgen.models import register_model

CHANNELS = 25
# (kernel, stride, padding) of the three convolutions
CONVS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))


def conv_out(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1


class CNN1d(nn.Module):
    """Input ``(N, C, L)`` (MNIST-1D: (N, 1, 40)), output logits ``(N, num_classes)``."""

    def __init__(self, input_shape: tuple[int, int], num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        c, length = input_shape
        layers: list[tuple[str, nn.Module]] = []
        for i, (k, s, p) in enumerate(CONVS, start=1):
            layers += [(f"conv{i}", nn.Conv1d(c, CHANNELS, k, s, p)), (f"relu{i}", nn.ReLU())]
            c, length = CHANNELS, conv_out(length, k, s, p)
        self.features = nn.Sequential(OrderedDict(layers))  # (N, 25, 5) on length 40
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.head = nn.Linear(CHANNELS * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)  # (N, 125)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.head(x)  # (N, K)


@register_model(
    layouts=("signal",),
    paper_lr=0.1,
    description="1-D CNN for MNIST-1D: 3 conv1d of 25 channels, stride 2 -> linear (MNIST-1D ConvBase)",
)
def cnn1d(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    if len(input_shape) != 2:
        raise ConfigError(f"model 'cnn1d' takes signals (C, L), got input_shape {input_shape}")
    if input_shape[1] < 3:
        raise ConfigError(f"model 'cnn1d' needs signals of length >= 3, got {input_shape[1]}")
    return CNN1d((input_shape[0], input_shape[1]), num_classes, dropout)
