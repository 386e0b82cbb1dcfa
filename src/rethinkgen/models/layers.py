"""Small building blocks shared by the paper's convnets.

The paper's models were written in TensorFlow, whose ``padding="SAME"`` pads a strided window
*asymmetrically* when the total padding is odd (the extra row/column goes at the bottom/right).
A 3×3 stride-2 window on a 28-pixel side needs one pixel of padding, all of it after the image;
PyTorch's symmetric ``padding=1`` would give the same 14×14 output but shift every window by one
pixel. :class:`SamePad2d` reproduces TensorFlow's placement exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rethinkgen.errors import ConfigError


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's ``"SAME"`` along one axis of length ``size``.

    The output length is ``ceil(size / stride)``; e.g. ``tf_same_padding(28, 3, 2) == (0, 1)``.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_out(size: int, stride: int) -> int:
    """Output length of a ``"SAME"`` window with ``stride`` on an axis of length ``size``."""
    return -(-size // stride)


class SamePad2d(nn.Module):
    """Pads (N, C, H, W) like TensorFlow ``"SAME"`` for a ``kernel``×``kernel`` window with ``stride``.

    ``value`` is the fill: 0 before a convolution, ``-inf`` before a max-pool (as TF, which ignores
    the padding in max-pooling). Padding is computed from the input's size at every call, so any
    image size works; it is a no-op when no padding is needed.
    """

    def __init__(self, kernel: int, stride: int, value: float = 0.0) -> None:
        super().__init__()
        self.kernel, self.stride, self.value = kernel, stride, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H + ph, W + pw)
        top, bottom = tf_same_padding(x.shape[-2], self.kernel, self.stride)
        left, right = tf_same_padding(x.shape[-1], self.kernel, self.stride)
        if top == bottom == left == right == 0:
            return x
        return F.pad(x, (left, right, top, bottom), value=self.value)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, value={self.value}"


def max_pool_same(kernel: int = 3, stride: int = 2) -> nn.Sequential:
    """TensorFlow ``max_pool(ksize=kernel, strides=stride, padding="SAME")``: side n -> ceil(n / stride)."""
    return nn.Sequential(SamePad2d(kernel, stride, float("-inf")), nn.MaxPool2d(kernel, stride))


def check_image(model: str, input_shape: tuple[int, ...], min_side: int) -> tuple[int, int, int]:
    """(C, H, W) of an image input, refusing shapes that are not images or are smaller than ``min_side``."""
    if len(input_shape) != 3:
        raise ConfigError(f"model {model!r} takes images (C, H, W), got input_shape {input_shape}")
    c, h, w = input_shape
    if min(h, w) < min_side:
        raise ConfigError(
            f"model {model!r} needs images of at least {min_side}×{min_side} pixels, got {h}×{w}; "
            "use a larger crop (or no crop) or an MLP"
        )
    return c, h, w
