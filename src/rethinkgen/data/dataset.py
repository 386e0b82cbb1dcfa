"""The in-memory dataset every source returns and every corruption consumes.

Inputs are float32 tensors on the CPU, laid out by ``layout``:

- ``"image"``:  (N, C, H, W), pixel values scaled to [0, 1] (CIFAR-10, MNIST);
- ``"signal"``: (N, C, L), a 1-D signal per channel (MNIST-1D: (N, 1, 40));
- ``"vector"``: (N, D), plain feature vectors (user arrays, synthetic vectors).

The *positions* that pixel corruptions permute are the H×W pixels of an image (channels of a pixel
stay together), the L entries of a signal, or the D entries of a vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

Layout = Literal["image", "signal", "vector"]
LAYOUTS: tuple[str, ...] = ("image", "signal", "vector")


@dataclass
class Dataset:
    """Train and test split of one dataset, as float32/int64 CPU tensors."""

    name: str
    x_train: torch.Tensor  # (N, *input_shape) float32
    y_train: torch.Tensor  # (N,) int64 in [0, num_classes)
    x_test: torch.Tensor  # (M, *input_shape) float32
    y_test: torch.Tensor  # (M,) int64
    num_classes: int
    layout: Layout
    meta: dict = field(default_factory=dict)  # provenance: path, checksum, generator args ...

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        want = {"image": 4, "signal": 3, "vector": 2}[self.layout]
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.dim() != want:
                raise ValueError(f"{self.name} {split}: layout {self.layout} needs {want}-D x, got {tuple(x.shape)}")
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"{self.name} {split}: {x.shape[0]} inputs but {y.shape[0]} labels")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"{self.name}: train inputs {tuple(self.x_train.shape[1:])} != test inputs "
                             f"{tuple(self.x_test.shape[1:])}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. (3, 32, 32) or (1, 40) or (D,)."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])
