"""Small Inception of Table 1 (paper Figure 3, App. A), with and without BatchNorm.

Modules (Fig. 3):

- Conv module(c, k, s) = Conv k×k stride s with c filters and a bias -> BatchNorm -> ReLU;
- Inception(c1, c3) = concat[Conv module 1×1 c1, Conv module 3×3 c3]   (same size, c1 + c3 channels);
- Downsample(c3) = concat[Conv module 3×3 stride 2 c3, max-pool 3×3 stride 2]   (half size, c3 + C_in).

Stack on 28×28×3: Conv module 3×3 96 -> Inc(32,32) -> Inc(32,48) -> Down(80) -> Inc(112,48) ->
Inc(96,64) -> Inc(80,80) -> Inc(48,96) -> Down(96) -> Inc(176,160) -> Inc(176,160) -> global mean
pool (7×7) -> FC K. Spatial sizes 28 -> 14 -> 7; 336 channels at the end. Counting conv weights,
conv biases and the FC layer but no BatchNorm parameters gives Table 1's 1,649,402 for both
variants (with BN's γ, β: 1,652,826).

All windows use TensorFlow ``SAME`` padding (the paper's code was TensorFlow): stride-1 3×3 convs
pad 1 on each side; the stride-2 conv and the max-pool of a Downsample pad 28 -> 14 with the one
extra pixel at the bottom/right (see :mod:`rethinkgen.models.layers`), so both branches always
agree in size. PyTorch default initialisation; BatchNorm with PyTorch defaults (eps 1e-5,
momentum 0.1).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from rethinkgen.models import register_model
from rethinkgen.models.layers import SamePad2d, check_image, max_pool_same


class ConvModule(nn.Sequential):
    """Conv k×k/s (bias) -> BatchNorm (if ``bn``) -> ReLU, ``SAME``: (N, C, H, W) -> (N, c, H/s, W/s)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, bn: bool = True) -> None:
        layers: list[tuple[str, nn.Module]] = []
        if stride == 1:
            conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2)  # SAME for odd kernels
        else:
            layers.append(("pad", SamePad2d(kernel, stride, 0.0)))
            conv = nn.Conv2d(c_in, c_out, kernel, stride)
        layers.append(("conv", conv))
        if bn:
            layers.append(("bn", nn.BatchNorm2d(c_out)))
        layers.append(("relu", nn.ReLU()))
        super().__init__(OrderedDict(layers))
        self.out_channels = c_out


class Inception(nn.Module):
    """concat[Conv module 1×1 c1, Conv module 3×3 c3]: (N, C, H, W) -> (N, c1 + c3, H, W)."""

    def __init__(self, c_in: int, c1: int, c3: int, bn: bool = True) -> None:
        super().__init__()
        self.branch1 = ConvModule(c_in, c1, 1, bn=bn)
        self.branch3 = ConvModule(c_in, c3, 3, bn=bn)
        self.out_channels = c1 + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x)], dim=1)


class Downsample(nn.Module):
    """concat[Conv module 3×3/2 c3, max-pool 3×3/2]: (N, C, H, W) -> (N, c3 + C, ⌈H/2⌉, ⌈W/2⌉)."""

    def __init__(self, c_in: int, c3: int, bn: bool = True) -> None:
        super().__init__()
        self.conv = ConvModule(c_in, c3, 3, stride=2, bn=bn)
        self.pool = max_pool_same(3, 2)
        self.out_channels = c3 + c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


# The stack of Figure 3 after the first conv module: ("inc", c1, c3) or ("down", c3).
STACK: tuple[tuple, ...] = (
    ("inc", 32, 32),
    ("inc", 32, 48),
    ("down", 80),
    ("inc", 112, 48),
    ("inc", 96, 64),
    ("inc", 80, 80),
    ("inc", 48, 96),
    ("down", 96),
    ("inc", 176, 160),
    ("inc", 176, 160),
)


class InceptionSmall(nn.Module):
    """Input ``(N, C, H, W)`` (paper: 3×28×28), output logits ``(N, num_classes)``."""

    def __init__(
        self, in_channels: int, num_classes: int, dropout: float = 0.0, batchnorm: bool = True
    ) -> None:
        super().__init__()
        layers: list[tuple[str, nn.Module]] = [("stem", ConvModule(in_channels, 96, 3, bn=batchnorm))]
        c = 96
        n_inc = n_down = 0
        for kind, *widths in STACK:
            if kind == "inc":
                n_inc += 1
                block: nn.Module = Inception(c, *widths, bn=batchnorm)
                layers.append((f"inception{n_inc}", block))
            else:
                n_down += 1
                block = Downsample(c, *widths, bn=batchnorm)
                layers.append((f"downsample{n_down}", block))
            c = block.out_channels
        self.features = nn.Sequential(OrderedDict(layers))  # (N, 336, H/4, W/4)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean(dim=(2, 3))  # global mean pool: (N, 336)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.head(x)  # (N, K)


@register_model(
    layouts=("image",),
    paper_params=1_649_402,
    paper_lr=0.1,
    description="small Inception of Fig. 3 (conv/BN/ReLU modules, 28->14->7, 336 ch -> FC)",
)
def inception_small(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    c, _, _ = check_image("inception_small", input_shape, 8)
    return InceptionSmall(c, num_classes, dropout, batchnorm=True)


@register_model(
    layouts=("image",),
    paper_params=1_649_402,
    paper_lr=0.1,
    description="small Inception of Fig. 3 without BatchNorm (Table 1 'Inception w/o BatchNorm')",
)
def inception_small_nobn(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    c, _, _ = check_image("inception_small_nobn", input_shape, 8)
    return InceptionSmall(c, num_classes, dropout, batchnorm=False)
