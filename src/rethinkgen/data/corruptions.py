"""The randomization tests of Zhang et al. (2017), §2.1 and Figure 1: corrupted labels and inputs.

Each corruption is registered by name in :data:`CORRUPTIONS` and applied with
:func:`apply_corruption`, which returns a :class:`CorruptedData`: the dataset the network is trained
on, the true training labels, and per-sample masks of which labels were redrawn and which changed.

Semantics (design §2; paper §2.1, quoted in the docstrings below):

- **Label corruption at level p** (``partial_labels``): one uniform ``u_i`` per training sample and
  one candidate label per training sample are drawn once from the ``"corruption"`` stream, *whatever
  p is*; sample i is corrupted when ``u_i < p`` and then takes its candidate label, drawn uniformly
  from all K classes (so about ``p·(1 − 1/K)`` labels actually change). Corrupted sets are therefore
  nested across p for a fixed seed, and a sample corrupted at p keeps the same new label at p' > p.
  ``exclude_true_class=True`` draws the candidate from the K − 1 other classes instead.
- ``random_labels`` is exactly ``partial_labels`` at p = 1 (same draws); ``true_labels`` changes nothing.
- **Test labels are never corrupted**; pixel corruptions transform train *and* test inputs.
- The *positions* that pixel corruptions permute are the H×W pixels of an image (the C channels of a
  pixel move together), the L entries of a signal (channels together) or the D entries of a vector.

Everything is drawn from ``numpy`` Generators (``torch.Generator`` for the Gaussian draws, which
``torch.randn`` makes about twice as fast) seeded by :func:`rethinkgen.seeding.stream_seed` on the
``"corruption"`` stream, one sub-stream per use (table below), so no global RNG is touched and changing
one corruption's draws never changes another's. Train and test draws of the input corruptions use
separate sub-streams, so the corrupted test inputs do not depend on ``n_train``.

=====================  ==========================================
sub-stream (extra)     draws
=====================  ==========================================
0                      u_i ~ U[0, 1), one per training sample
1                      candidate label ~ U{0..K-1}
2                      offset ~ U{0..K-2} (``exclude_true_class``)
3                      the ``shuffled_pixels`` permutation
4, 0 / 4, 1            ``random_pixels`` permutations, train / test
5, 0 / 5, 1            ``gaussian`` draws, train / test
=====================  ==========================================
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from rethinkgen import seeding
from rethinkgen.data.dataset import Dataset
from rethinkgen.errors import ConfigError
from rethinkgen.registry import Registry

__all__ = [
    "CORRUPTIONS",
    "CorruptedData",
    "CorruptionSpec",
    "apply_corruption",
    "corruption_effect",
    "describe_corruptions",
]

# Sub-streams of the "corruption" stream (see the module docstring); fixed forever.
_U, _CANDIDATE, _OFFSET, _SHUFFLE, _RANDOM_PIXELS, _GAUSSIAN = range(6)
_CHUNK = 4096  # samples processed at once by the input corruptions (bounds peak memory)


@dataclass
class CorruptedData:
    """A dataset after a corruption, with what is needed to measure it (Figure 1).

    ``dataset.y_train`` holds the labels trained on; ``y_train_clean`` the true ones; ``dataset.y_test``
    is always the true test labels. ``corrupted``/``changed`` are (N,) bool masks over training samples.
    """

    dataset: Dataset  # inputs possibly replaced (train AND test for pixel corruptions)
    y_train_clean: torch.Tensor  # (N,) int64, the true training labels
    corrupted: torch.Tensor  # (N,) bool: a new label was drawn
    changed: torch.Tensor  # (N,) bool: trained-on label != true label
    corruption: str  # registry name
    level: float  # p (1.0 for random_labels, 0.0 for true_labels and input corruptions)

    @property
    def realized_noise_rate(self) -> float:
        """Fraction of training labels that differ from the true ones (≈ p·(1 − 1/K))."""
        if self.changed.numel() == 0:
            return 0.0
        return float(self.changed.float().mean())


CorruptionFn = Callable[[Dataset, float, int, bool], CorruptedData]


@dataclass(frozen=True)
class CorruptionSpec:
    """One registered corruption: ``fn(dataset, level, seed, exclude_true_class) -> CorruptedData``."""

    name: str
    fn: CorruptionFn
    takes_level: bool  # True only for partial_labels
    target: Literal["labels", "inputs"]
    description: str


CORRUPTIONS: Registry[CorruptionSpec] = Registry("corruption")


def _register(name: str, *, takes_level: bool, target: Literal["labels", "inputs"], description: str):
    def add(fn: CorruptionFn) -> CorruptionFn:
        CORRUPTIONS.register(name)(CorruptionSpec(name, fn, takes_level, target, description))
        return fn

    return add


# --- public entry points ----------------------------------------------------------------------


def apply_corruption(
    dataset: Dataset,
    name: str,
    level: float | None = None,
    *,
    seed: int = 0,
    exclude_true_class: bool = False,
) -> CorruptedData:
    """Apply the corruption ``name`` to ``dataset`` (paper §2.1), deterministically from ``seed``.

    Parameters
    ----------
    dataset: the clean data (not modified; tensors are shared where nothing changes).
    name: a name in :data:`CORRUPTIONS` (unknown names raise, listing the valid ones).
    level: the corruption probability p in [0, 1]; required by ``partial_labels``, refused by the
        others (except the level they imply: 0 for ``true_labels``, 1 for ``random_labels``).
    seed: the run's seed; only its ``"corruption"`` stream is used.
    exclude_true_class: draw corrupted labels from the K − 1 other classes (not the paper's choice).

    Examples
    --------
    >>> import torch
    >>> from rethinkgen.data.dataset import Dataset
    >>> x = torch.zeros(1000, 4)
    >>> y = torch.arange(1000) % 10
    >>> ds = Dataset("toy", x, y, x[:10], y[:10], 10, "vector")
    >>> out = apply_corruption(ds, "partial_labels", 0.5, seed=1)
    >>> 0.4 < out.corrupted.float().mean().item() < 0.6, out.level
    (True, 0.5)
    >>> bool((out.dataset.y_test == y[:10]).all())
    True
    """
    spec = CORRUPTIONS.get(name)
    p = _check_level(spec, level)
    if exclude_true_class and spec.target != "labels":
        raise ConfigError(
            f"exclude_true_class only applies to label corruptions; {name} corrupts inputs and keeps "
            "the labels: drop --exclude-true-class"
        )
    out = spec.fn(dataset, p, int(seed), bool(exclude_true_class))
    meta = dict(dataset.meta)
    meta["corruption"] = {"name": name, "level": out.level, "seed": int(seed),
                          "exclude_true_class": bool(exclude_true_class)}
    out.dataset = dataclasses.replace(out.dataset, meta=meta)
    return out


def describe_corruptions() -> list[dict[str, object]]:
    """One dict per registered corruption (name, takes_level, target, description), sorted by name."""
    rows = []
    for name in CORRUPTIONS.names():
        spec = CORRUPTIONS.get(name)
        rows.append({"name": spec.name, "takes_level": spec.takes_level, "target": spec.target,
                     "description": spec.description})
    return rows


def _position_text(layout: str, input_shape: tuple[int, ...]) -> tuple[int, str]:
    """(number of positions P, what they are) for one input of ``input_shape`` (see :func:`_positions`)."""
    if layout == "vector":
        return int(input_shape[0]), f"{input_shape[0]:,} vector entries"
    c, *space = input_shape
    n_pos = int(np.prod(space))
    where = f"{space[0]}x{space[1]} = {n_pos:,} pixel positions" if layout == "image" else \
        f"{n_pos:,} signal positions"
    unit = "pixel" if layout == "image" else "position"
    return n_pos, where + (" (one channel)" if c == 1 else f" (the {c} channels of a {unit} move together)")


def corruption_effect(name: str, layout: str, input_shape: tuple[int, ...], num_classes: int) -> str:
    """One line saying what corruption ``name`` changes on data of this layout, shape and class count.

    >>> corruption_effect("shuffled_pixels", "image", (1, 28, 28), 10)
    'one permutation of the 28x28 = 784 pixel positions (one channel), the same for every image, train and test'
    """
    spec = CORRUPTIONS.get(name)
    k = int(num_classes)
    if spec.target == "labels":
        if name == "true_labels":
            return "nothing: the true labels"
        changed = f"about {1 - 1 / k:.3f} of them change (1 - 1/K)" if k > 1 else "none can change"
        if name == "random_labels":
            return f"every training label redrawn uniformly from the K = {k} classes; {changed}; test labels kept"
        return (f"each training label redrawn with probability p uniformly from the K = {k} classes (about "
                f"p·{1 - 1 / k:.3f} change); test labels kept")
    n_pos, what = _position_text(layout, tuple(input_shape))
    if name == "shuffled_pixels":
        return f"one permutation of the {what}, the same for every {_noun(layout)}, train and test"
    if name == "random_pixels":
        return f"an independent permutation of the {what} for each {_noun(layout)}, train and test"
    if name == "gaussian":
        if layout == "vector":
            return f"all {n_pos:,} entries drawn from one Gaussian with the training set's mean and variance"
        c = input_shape[0]
        return (f"every value drawn from a Gaussian with its channel's training mean and variance "
                f"({c} channel{'s' if c > 1 else ''}), train and test")
    return spec.description


def _noun(layout: str) -> str:
    return {"image": "image", "signal": "signal"}.get(layout, "vector")


def _check_level(spec: CorruptionSpec, level: float | None) -> float:
    """Validate ``level`` for ``spec``; return the p the corruption is applied at."""
    implied = {"true_labels": 0.0, "random_labels": 1.0}.get(spec.name)
    if spec.takes_level:
        if level is None:
            raise ConfigError(
                f"{spec.name} needs a corruption level p in [0, 1]: pass --level P (e.g. --level 0.5)"
            )
    elif level is None:
        return 0.0 if implied is None else implied
    try:
        p = float(level)
    except (TypeError, ValueError):
        raise ConfigError(f"level must be a number in [0, 1], got {level!r}") from None
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ConfigError(f"level must be in [0, 1], got {level}")
    if not spec.takes_level and p != implied:
        hint = "use --corruption partial_labels --level P for label noise, or drop --level"
        raise ConfigError(f"{spec.name} takes no level (got {level}); {hint}")
    return p


# --- label corruptions ------------------------------------------------------------------------


def _corrupt_labels(
    dataset: Dataset, p: float, seed: int, exclude_true_class: bool, name: str
) -> CorruptedData:
    """Partial label corruption (paper §2.1) with draws that do not depend on p (nested sets)."""
    y = dataset.y_train.detach().cpu().to(torch.int64)
    n, k = int(y.shape[0]), int(dataset.num_classes)
    u = seeding.rng(seed, "corruption", _U).random(n)  # (N,) U[0, 1)
    corrupted = u < p
    y_np = y.numpy()
    if exclude_true_class:
        if k < 2:
            raise ConfigError(f"exclude_true_class needs at least 2 classes; {dataset.name} has {k}")
        offset = seeding.rng(seed, "corruption", _OFFSET).integers(k - 1, size=n)  # (N,) in [0, K-2]
        candidate = (y_np + 1 + offset) % k  # uniform over the K-1 other classes
    else:
        candidate = seeding.rng(seed, "corruption", _CANDIDATE).integers(k, size=n)  # (N,) in [0, K-1]
    y_new = torch.from_numpy(np.where(corrupted, candidate, y_np).astype(np.int64))
    y_new = y_new.to(dataset.y_train.device)
    y_clean = dataset.y_train.clone()
    corrupted_t = torch.from_numpy(corrupted).to(dataset.y_train.device)
    return CorruptedData(
        dataset=dataclasses.replace(dataset, y_train=y_new),
        y_train_clean=y_clean,
        corrupted=corrupted_t,
        changed=y_new != y_clean,
        corruption=name,
        level=float(p),
    )


@_register("true_labels", takes_level=False, target="labels",
           description="the original dataset without modification")
def _true_labels(dataset: Dataset, p: float, seed: int, exclude_true_class: bool) -> CorruptedData:
    del p, seed, exclude_true_class
    return _unchanged_labels(dataset, dataset, "true_labels")


@_register("partial_labels", takes_level=True, target="labels",
           description="each training label, with probability p (--level), replaced by a uniform random "
                       "class (may equal the true one: ≈ p·(1−1/K) change); sets nested across p")
def _partial_labels(dataset: Dataset, p: float, seed: int, exclude_true_class: bool) -> CorruptedData:
    return _corrupt_labels(dataset, p, seed, exclude_true_class, "partial_labels")


@_register("random_labels", takes_level=False, target="labels",
           description="all training labels replaced by uniform random classes (= partial_labels at p=1), "
                       "fixed across epochs")
def _random_labels(dataset: Dataset, p: float, seed: int, exclude_true_class: bool) -> CorruptedData:
    del p
    return _corrupt_labels(dataset, 1.0, seed, exclude_true_class, "random_labels")


# --- input corruptions ------------------------------------------------------------------------


def _unchanged_labels(dataset: Dataset, new: Dataset, name: str) -> CorruptedData:
    n = dataset.n_train
    device = dataset.y_train.device
    return CorruptedData(
        dataset=new,
        y_train_clean=dataset.y_train.clone(),
        corrupted=torch.zeros(n, dtype=torch.bool, device=device),
        changed=torch.zeros(n, dtype=torch.bool, device=device),
        corruption=name,
        level=0.0,
    )


def _positions(x: torch.Tensor) -> torch.Tensor:
    """View inputs as (N, C, P): C channels that move together, P positions (vectors: C = 1)."""
    return x.reshape(x.shape[0], 1, -1) if x.dim() == 2 else x.reshape(x.shape[0], x.shape[1], -1)


def _with_inputs(dataset: Dataset, fn: Callable[[torch.Tensor, str], torch.Tensor]) -> Dataset:
    """The dataset with ``fn(x, split)`` applied to train and test inputs (shapes kept)."""
    return dataclasses.replace(
        dataset,
        x_train=fn(dataset.x_train, "train").reshape(dataset.x_train.shape),
        x_test=fn(dataset.x_test, "test").reshape(dataset.x_test.shape),
    )


@_register("shuffled_pixels", takes_level=False, target="inputs",
           description="one random permutation of the pixel positions, the same for every image, "
                       "train and test (channels of a pixel stay together)")
def _shuffled_pixels(dataset: Dataset, p: float, seed: int, exclude_true_class: bool) -> CorruptedData:
    del p, exclude_true_class
    n_pos = _positions(dataset.x_train[:1]).shape[-1]
    perm = torch.from_numpy(seeding.rng(seed, "corruption", _SHUFFLE).permutation(n_pos))  # (P,)

    def shuffle(x: torch.Tensor, split: str) -> torch.Tensor:
        return _positions(x)[..., perm.to(x.device)]  # out[..., j] = x[..., perm[j]] (index_select is slower)

    return _unchanged_labels(dataset, _with_inputs(dataset, shuffle), "shuffled_pixels")


@_register("random_pixels", takes_level=False, target="inputs",
           description="an independent random permutation of the pixel positions for each image, "
                       "train and test (channels of a pixel stay together)")
def _random_pixels(dataset: Dataset, p: float, seed: int, exclude_true_class: bool) -> CorruptedData:
    del p, exclude_true_class

    def permute_each(x: torch.Tensor, split: str) -> torch.Tensor:
        gen = seeding.rng(seed, "corruption", _RANDOM_PIXELS, 0 if split == "train" else 1)
        xp = _positions(x)  # (N, C, P)
        n, c, n_pos = xp.shape
        out = torch.empty_like(xp)
        base = np.broadcast_to(np.arange(n_pos), (min(n, _CHUNK), n_pos))
        for start in range(0, n, _CHUNK):  # chunks of samples, not samples: bounds the index memory
            m = min(_CHUNK, n - start)
            idx = torch.from_numpy(gen.permuted(base[:m], axis=1)).to(x.device)  # (m, P), one perm per row
            out[start:start + m] = xp[start:start + m].gather(-1, idx[:, None, :].expand(m, c, n_pos))
        return out

    return _unchanged_labels(dataset, _with_inputs(dataset, permute_each), "random_pixels")


def _channel_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) variance of (N, C, P) inputs, as float64 (C,) tensors.

    One pass over chunks of samples; the chunks' moments are combined exactly in float64."""
    n, c, n_pos = x.shape
    stats = [(m, torch.var_mean(x[s:s + m], dim=(0, 2), correction=0))
             for s in range(0, n, _CHUNK) for m in [min(_CHUNK, n - s)]]
    if not stats:
        return torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
    counts = torch.tensor([m for m, _ in stats], dtype=torch.float64, device=x.device)[:, None]  # (K, 1)
    var = torch.stack([v for _, (v, _) in stats]).double()  # (K, C)
    mean = torch.stack([mu for _, (_, mu) in stats]).double()  # (K, C)
    total_mean = (counts * mean).sum(0) / counts.sum()
    total_var = (counts * (var + (mean - total_mean).square())).sum(0) / counts.sum()
    return total_mean, total_var


@_register("gaussian", takes_level=False, target="inputs",
           description="every input (train and test) replaced by Gaussian noise whose per-channel mean "
                       "and variance match the training set (vectors: one mean/variance)")
def _gaussian(dataset: Dataset, p: float, seed: int, exclude_true_class: bool) -> CorruptedData:
    """Paper §2.1: "A Gaussian distribution (with matching mean and variance to the original image
    dataset) is used to generate random pixels for each image". Images and signals match each
    channel's mean and variance over the training set (all samples and positions); vectors, which have
    no channels, match one mean and variance over all training entries. Values are not clipped.
    """
    del p, exclude_true_class
    mean, var = _channel_moments(_positions(dataset.x_train))  # (C,), (C,) float64
    std = var.sqrt()

    def draw(x: torch.Tensor, split: str) -> torch.Tensor:
        gen = torch.Generator().manual_seed(
            seeding.stream_seed(seed, "corruption", _GAUSSIAN, 0 if split == "train" else 1))
        z = torch.randn(tuple(_positions(x).shape), generator=gen)  # (N, C, P) float32, on the CPU
        z = z.to(device=x.device, dtype=x.dtype)
        return z.mul_(std.to(device=x.device, dtype=x.dtype)[:, None]).add_(
            mean.to(device=x.device, dtype=x.dtype)[:, None])

    return _unchanged_labels(dataset, _with_inputs(dataset, draw), "gaussian")
