"""Feature maps applied before min-norm kernel interpolation (paper Section 5).

The paper reports MNIST with no preprocessing (1.2% test error) and after a "Gabor wavelet transform"
(0.6%), and CIFAR-10 on the features of a random convolutional network with 32,000 random filters
(17%; 15% with an ℓ2 penalty). The maps here:

- ``raw``: the inputs flattened, unchanged (pixels in [0, 1] as loaded).
- ``wavelet``: the scattering transform of Bruna & Mallat (Morlet/Gabor wavelets, modulus, local
  averaging; orders 0-2) from ``kymatio`` — 2-D for images (J = 2, L = 8 orientations by default:
  81 channels on a 7×7 grid for 28×28 MNIST, 3,969 features), 1-D for signals. We import kymatio's
  torch frontend class directly: ``from kymatio.torch import Scattering2D`` fails with scipy ≥ 1.15
  (``sph_harm`` was removed there; kymatio 0.3.0 imports its 3-D module eagerly).
- ``random-conv``: one convolutional layer with F random Gaussian filters (k×k, zero mean, unit norm),
  ReLU, then average pooling to a g×g grid (default 2×2 quadrants, as in Coates & Ng's single-layer
  networks), flattened: F·g² features (F·g for signals). Computed in blocks of filters and of samples,
  so the only large allocation is the (N, F·g²) output, whose size is checked first.

A :class:`FeatureMap` is built once (random filters drawn from ``seed``) and applied to train and test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from rethinkgen.errors import ConfigError, RethinkgenError
from rethinkgen.registry import Registry
from rethinkgen.seeding import stream_seed

SAMPLE_BATCH = 1024  # images per forward pass of the wavelet / random-conv maps
FILTER_BLOCK = 512  # random filters convolved at once (bounds the (B, F, H, W) activation)


@dataclass
class FeatureMap:
    """x (N, *input_shape) float32 -> (N, dim) float32, applied in batches of ``batch`` samples."""

    name: str
    input_shape: tuple[int, ...]
    dim: int
    fn: Callable[[torch.Tensor], torch.Tensor]  # one batch (B, *input_shape) -> (B, dim)
    description: str
    params: dict = field(default_factory=dict)
    batch: int = SAMPLE_BATCH

    def __call__(self, x: torch.Tensor, device: str | torch.device | None = None) -> torch.Tensor:
        """Features of every row of ``x``, on ``device`` for the computation (default: x's), returned on CPU
        when x is on the CPU."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ConfigError(f"{self.name} features were built for inputs {self.input_shape}, got "
                              f"{tuple(x.shape[1:])}")
        dev = torch.device(device) if device is not None else x.device
        check_feature_memory(x.shape[0], self.dim, self.name)
        out = torch.empty(x.shape[0], self.dim, dtype=torch.float32, device=x.device)
        with torch.inference_mode():
            for i0 in range(0, x.shape[0], self.batch):
                xb = x[i0:i0 + self.batch].to(dev, torch.float32)
                out[i0:i0 + self.batch] = self.fn(xb).reshape(xb.shape[0], -1).to(out.device)
        return out


@dataclass(frozen=True)
class FeatureSpec:
    """A registered feature map: ``build(input_shape, layout, *, filters, seed, **options) -> FeatureMap``."""

    name: str
    build: Callable[..., FeatureMap]
    layouts: tuple[str, ...]
    description: str


FEATURES: Registry[FeatureSpec] = Registry("feature map")


def check_feature_memory(n: int, dim: int, name: str, limit_bytes: int | None = None) -> None:
    """Refuse a feature matrix (n, dim) float32 that would not fit in half of the available memory."""
    from rethinkgen.theory.kernels import available_memory

    need = n * dim * 4
    limit = available_memory("cpu") // 2 if limit_bytes is None else limit_bytes
    if need > limit:
        raise RethinkgenError(
            f"{name} features for {n:,} samples × {dim:,} dimensions need {need / 1e9:.1f} GB (float32), "
            f"more than the {limit / 1e9:.1f} GB allowed here; use fewer --filters, a smaller --n, "
            "or --features raw")


def build_feature_map(name: str, input_shape: tuple[int, ...], layout: str, *, filters: int | None = None,
                      seed: int = 0, **options) -> FeatureMap:
    """The feature map ``name`` for inputs of ``input_shape`` (without batch dim) and ``layout``.

    Unknown names raise listing the valid ones; a layout the map cannot handle raises ConfigError.
    """
    spec = FEATURES.get(name)
    if layout not in spec.layouts:
        raise ConfigError(f"--features {name} works on layouts {', '.join(spec.layouts)}, not {layout!r}; "
                          "use --features raw")
    return spec.build(tuple(input_shape), layout, filters=filters, seed=seed, **options)


# --- raw -----------------------------------------------------------------------------------------------

def _build_raw(input_shape, layout, *, filters=None, seed=0, **options) -> FeatureMap:
    if options:
        raise ConfigError(f"raw features take no options, got {sorted(options)}")
    dim = math.prod(input_shape)
    return FeatureMap("raw", input_shape, dim, lambda xb: xb.reshape(xb.shape[0], -1),
                      "inputs flattened, unchanged", {}, batch=65536)


FEATURES.register("raw")(FeatureSpec("raw", _build_raw, ("image", "signal", "vector"),
                                     "the inputs flattened, no preprocessing"))


# --- wavelet (scattering) ---------------------------------------------------------------------------------

def _kymatio_class(kind: str):
    try:
        if kind == "2d":
            from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D as cls
        else:
            from kymatio.scattering1d.frontend.torch_frontend import ScatteringTorch1D as cls
    except ImportError as e:  # pragma: no cover - kymatio is a declared extra
        raise RethinkgenError(f"--features wavelet needs kymatio ({e}); install it with: "
                              "pip install 'rethinkgen[wavelet]'  (or pip install kymatio)") from None
    return cls


def _build_wavelet(input_shape, layout, *, filters=None, seed=0, J: int | None = None, L: int = 8,
                   max_order: int = 2, **options) -> FeatureMap:
    if options:
        raise ConfigError(f"unknown wavelet options {sorted(options)}; valid: J, L, max_order")
    if layout == "image":
        c, hh, ww = input_shape
        J = 2 if J is None else int(J)
        if 2 ** J > min(hh, ww):
            raise ConfigError(f"wavelet scale J = {J} needs images of at least {2 ** J} pixels, "
                              f"got {hh}×{ww}")
        scat = _kymatio_class("2d")(J=J, shape=(hh, ww), L=L, max_order=max_order)
        probe = scat(torch.zeros(1, c, hh, ww))
        desc = (f"2-D scattering (Morlet wavelets), J={J}, L={L}, order ≤ {max_order}: "
                f"{tuple(probe.shape[2:])} per channel")
    else:  # signal
        c, length = input_shape
        J = 2 if J is None else int(J)
        import warnings

        with warnings.catch_warnings():  # short signals: kymatio warns about border effects
            warnings.simplefilter("ignore", UserWarning)
            scat = _kymatio_class("1d")(J=J, shape=(length,), Q=1, max_order=max_order)
            probe = scat(torch.zeros(1, c, length))
        desc = (f"1-D scattering (Morlet wavelets), J={J}, Q=1, order ≤ {max_order}: "
                f"{tuple(probe.shape[2:])} per channel")
    dim = probe[0].numel()
    state = {"scat": scat, "device": torch.device("cpu")}

    def fn(xb: torch.Tensor) -> torch.Tensor:
        if xb.device != state["device"]:
            state["scat"] = state["scat"].to(xb.device)
            state["device"] = xb.device
        return state["scat"](xb.contiguous()).reshape(xb.shape[0], -1)

    return FeatureMap("wavelet", input_shape, dim, fn, desc, {"J": J, "L": L, "max_order": max_order},
                      batch=SAMPLE_BATCH)


FEATURES.register("wavelet")(FeatureSpec(
    "wavelet", _build_wavelet, ("image", "signal"),
    "scattering transform (Gabor/Morlet wavelets, modulus, averaging) via kymatio"))


# --- random-conv ---------------------------------------------------------------------------------------

def random_filters(n_filters: int, channels: int, size: tuple[int, ...], seed: int) -> torch.Tensor:
    """(F, C, *size) Gaussian filters, each with zero mean and unit ℓ2 norm, from the "init" stream."""
    g = torch.Generator().manual_seed(stream_seed(seed, "init", 7))
    w = torch.randn(n_filters, channels, *size, generator=g)
    w = w - w.flatten(1).mean(1).view(-1, *([1] * (w.dim() - 1)))
    return w / w.flatten(1).norm(dim=1).view(-1, *([1] * (w.dim() - 1))).clamp_min(1e-12)


def _build_random_conv(input_shape, layout, *, filters=None, seed=0, kernel_size: int = 5, grid: int = 2,
                       filter_block: int = FILTER_BLOCK, **options) -> FeatureMap:
    if options:
        raise ConfigError(f"unknown random-conv options {sorted(options)}; "
                          "valid: kernel_size, grid, filter_block")
    n_filters = 1024 if filters is None else int(filters)
    if n_filters < 1:
        raise ConfigError(f"--filters must be >= 1, got {n_filters}")
    two_d = layout == "image"
    c = input_shape[0]
    spatial = input_shape[1:]
    if any(s < kernel_size for s in spatial):
        raise ConfigError(f"random-conv kernel size {kernel_size} exceeds the input size {spatial}")
    size = (kernel_size,) * len(spatial)
    w = random_filters(n_filters, c, size, seed)
    cells = grid ** len(spatial)
    dim = n_filters * cells
    conv = F.conv2d if two_d else F.conv1d
    if two_d:
        def pool(a):
            return F.adaptive_avg_pool2d(a, (grid, grid))
    else:
        def pool(a):
            return F.adaptive_avg_pool1d(a, grid)
    state = {"w": w}

    def fn(xb: torch.Tensor) -> torch.Tensor:
        if state["w"].device != xb.device:
            state["w"] = state["w"].to(xb.device)
        ww = state["w"]
        out = torch.empty(xb.shape[0], n_filters, cells, dtype=xb.dtype, device=xb.device)
        for f0 in range(0, n_filters, filter_block):
            a = conv(xb, ww[f0:f0 + filter_block]).relu_()  # (B, f, *spatial')
            out[:, f0:f0 + filter_block] = pool(a).flatten(2)
        return out.reshape(xb.shape[0], dim)

    act_bytes = 4 * min(n_filters, filter_block) * math.prod(spatial)  # activation bytes per sample
    batch = max(16, min(SAMPLE_BATCH, (1 << 28) // max(1, act_bytes)))
    shape = "×".join(map(str, size))
    cells_s = "×".join([str(grid)] * len(spatial))
    desc = (f"random conv net: {n_filters} Gaussian {shape} filters (zero mean, unit norm), valid "
            f"convolution, ReLU, average pooling to {cells_s}: {dim} features")
    params = {"filters": n_filters, "kernel_size": kernel_size, "grid": grid, "seed": seed}
    return FeatureMap("random-conv", input_shape, dim, fn, desc, params, batch=batch)


FEATURES.register("random-conv")(FeatureSpec(
    "random-conv", _build_random_conv, ("image", "signal"),
    "one layer of F random Gaussian filters, ReLU, average pooling to a g×g grid (paper: F = 32,000)"))
