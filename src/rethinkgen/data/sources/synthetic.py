"""Synthetic Gaussian data with a planted linear label rule: learnable true labels of any shape.

Inputs are Gaussian with a spiked covariance: a ``signal_dim``-dimensional latent ``u`` spread over
all D coordinates through a random orthonormal basis ``Q`` (D, k), plus isotropic noise::

    z = sqrt(1 - noise) * sqrt(D / k) * u @ Q.T + sqrt(noise) * e,    u ~ N(0, I_k), e ~ N(0, I_D)
    y = argmax_c (z @ Q @ V.T)_c                                      (a fixed projection W = V Q.T)

so every coordinate has unit variance and the label is a fixed linear function of the input (the
"true labels" of a randomization test are learnable; replacing them by random labels removes that).
``V`` (K, k) has orthonormal rows when k >= K, which makes the classes equally likely. For the
"image" layout the values are mapped into (0, 1) by a sigmoid (the layout promises pixels in [0, 1]);
the label rule applies to ``z`` = logit of those pixels.

Everything is drawn from the "data" stream of the seed (:func:`rethinkgen.seeding.rng`), with
separate sub-streams for the rule, the training and the test inputs; rows are drawn one after
another, so a larger ``n_train`` extends the same training set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import torch

from rethinkgen.data.dataset import Dataset
from rethinkgen.errors import ConfigError
from rethinkgen.seeding import rng

LAYOUT_BY_NDIM = {1: "vector", 2: "signal", 3: "image"}
DEFAULT_SHAPE = (3, 32, 32)


def parse_shape(shape: int | str | Sequence[int]) -> tuple[int, ...]:
    """``(3, 32, 32)``, ``[784]``, ``784``, ``"3x32x32"`` or ``"1,40"`` -> a tuple of 1 to 3 positive ints."""
    try:
        if isinstance(shape, str):
            dims = tuple(int(p) for p in re.split(r"[x×,\s]+", shape.strip("()[] ")) if p)
        elif isinstance(shape, int | np.integer) and not isinstance(shape, bool):
            dims = (int(shape),)
        else:
            dims = tuple(int(d) for d in shape)
            if any(isinstance(d, bool) or int(d) != d for d in shape):
                raise ValueError
    except (TypeError, ValueError):
        dims = ()
    if not 1 <= len(dims) <= 3 or any(d < 1 for d in dims):
        raise ConfigError(f"synthetic: shape must be 1 to 3 positive ints — (D,) vector, (C, L) signal or "
                          f"(C, H, W) image, e.g. (3, 32, 32) or '1x40' — got {shape!r}")
    return dims


def layout(shape: int | str | Sequence[int] = DEFAULT_SHAPE, **_options: object) -> str:
    """The layout ``load(shape=shape)`` returns: 1 dim vector, 2 signal, 3 image."""
    return LAYOUT_BY_NDIM[len(parse_shape(shape))]


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"synthetic: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def planted_rule(seed: int, dim: int, signal_dim: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q (D, k) orthonormal columns, V (K, k)) of the label rule ``y = argmax(z @ Q @ V.T)``."""
    g = rng(seed, "data", 10)
    q, _ = np.linalg.qr(g.standard_normal((dim, signal_dim)))
    if signal_dim >= num_classes:  # orthonormal rows: classes equally likely
        v = np.linalg.qr(g.standard_normal((signal_dim, num_classes)))[0].T
    else:
        v = g.standard_normal((num_classes, signal_dim))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
    return q.astype(np.float32), v.astype(np.float32)


def sample(seed: int, stream: int, n: int, q: np.ndarray, v: np.ndarray,
           noise: float) -> tuple[np.ndarray, np.ndarray]:
    """n inputs z (n, D) float32 and labels (n,) int64 from sub-stream ``stream`` of the "data" stream."""
    dim, k = q.shape
    rows = rng(seed, "data", stream).standard_normal((n, k + dim), dtype=np.float32)  # row by row
    u, e = rows[:, :k], rows[:, k:]
    z = math.sqrt((1.0 - noise) * dim / k) * (u @ q.T) + math.sqrt(noise) * e
    y = np.argmax((z @ q) @ v.T, axis=1).astype(np.int64)
    return z.astype(np.float32, copy=False), y


def load(data_dir: object = None, seed: int = 0, *, n_train: int = 1000, n_test: int = 500,
         shape: int | str | Sequence[int] = DEFAULT_SHAPE, num_classes: int = 10,
         signal_dim: int | None = None, noise: float = 0.5) -> Dataset:
    """Generate the synthetic set (``data_dir`` unused; ``n_train``/``n_test`` are generated sizes).

    Parameters
    ----------
    shape : input shape; its length picks the layout (1 vector, 2 signal, 3 image in (0, 1)).
    num_classes : K >= 2.
    signal_dim : k, dimension of the latent that decides the label; None: K (capped at D).
    noise : share of each coordinate's variance that is isotropic noise, in [0, 1].
    """
    dims = parse_shape(shape)
    n_train = _positive_int("n_train", n_train)
    n_test = _positive_int("n_test", n_test)
    num_classes = _positive_int("num_classes", num_classes, 2)
    dim = math.prod(dims)
    k = min(num_classes, dim) if signal_dim is None else _positive_int("signal_dim", signal_dim)
    if k > dim:
        raise ConfigError(f"synthetic: signal_dim={k} exceeds the input dimension {dim}")
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not 0.0 <= noise <= 1.0:
        raise ConfigError(f"synthetic: noise must be a number in [0, 1], got {noise!r}")
    q, v = planted_rule(seed, dim, k, num_classes)
    layout = LAYOUT_BY_NDIM[len(dims)]
    splits = []
    for stream, n in ((11, n_train), (12, n_test)):
        z, y = sample(seed, stream, n, q, v, float(noise))
        x = torch.from_numpy(z).reshape(n, *dims)
        if layout == "image":
            x = torch.sigmoid(x)
        splits.append((x, torch.from_numpy(y)))
    (x_train, y_train), (x_test, y_test) = splits
    return Dataset(
        name="synthetic", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        num_classes=num_classes, layout=layout,  # type: ignore[arg-type]
        meta={"source": "synthetic", "shape": list(dims), "signal_dim": k, "noise": float(noise),
              "seed": seed, "rule": "y = argmax(z @ Q @ V.T), z = logit(x) for images"},
    )
