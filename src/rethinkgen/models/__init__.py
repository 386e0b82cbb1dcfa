"""Models by name: the paper's CIFAR-10 networks (Table 1) and a few standard ones.

Every model registers a builder with :func:`register_model` (the pattern of timm's
``@register_model``); :func:`create_model` looks the name up, checks the input layout and builds it:

>>> model = create_model("mlp_1x512", (3, 28, 28), num_classes=10)
>>> count_params(model)  # Table 1: 1,209,866
1209866
>>> list_models("inception*")
['inception_small', 'inception_small_nobn', 'inception_v3']

A builder is ``build(input_shape, num_classes, dropout) -> nn.Module``; the module maps a batch
``(N, *input_shape)`` float32 to logits ``(N, num_classes)`` (a model registered with
``aux_logits=True``, Inception V3, returns ``(logits, aux_logits)`` in train mode; the trainers add
the auxiliary loss, :mod:`rethinkgen.train.losses`). Initialisation is PyTorch's default
for every layer and draws from torch's global RNG: callers that want reproducible weights build
inside ``torch.random.fork_rng()`` after ``torch.manual_seed(stream_seed(seed, "init"))`` (the
trainer does). The paper's models use no in-place activations, so they run under
``torch.func.functional_call`` (and, without BatchNorm, under ``torch.func.vmap``) and with
``channels_last`` inputs.

Models (``paper_params`` counts on the paper's 3×28×28 input, 10 classes; the ImageNet models of
Table 2 are counted on their natural input, 1,000 classes, BatchNorm's γ and β included as
torchvision counts them):

============================ ========================= ============ ========
name                         layouts                   paper_params paper_lr
============================ ========================= ============ ========
``mlp_1x512``                image, signal, vector     1,209,866    0.01
``mlp_3x512``                image, signal, vector     1,735,178    0.01
``alexnet_small``            image                     1,387,786    0.01
``inception_small``          image                     1,649,402    0.1
``inception_small_nobn``     image                     1,649,402    0.1
``cnn1d``                    signal                    --           0.1
``resnet18``                 image                     --           0.1
``inception_v3``             image (>= 299×299)        --           0.1
``resnet50``                 image                     --           0.1
============================ ========================= ============ ========

>>> count_params(create_model("resnet50", (3, 224, 224), num_classes=1000))  # torchvision's count
25557032
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from rethinkgen.errors import ConfigError
from rethinkgen.registry import Registry

__all__ = [
    "LAYOUTS",
    "MODELS",
    "ModelInfo",
    "ModelSpec",
    "count_params",
    "create_model",
    "describe_models",
    "infer_layout",
    "list_models",
    "register_model",
]

# The input layouts of rethinkgen.data.dataset.Dataset, and the number of dims of one sample.
LAYOUTS: tuple[str, ...] = ("image", "signal", "vector")
_LAYOUT_NDIM = {"image": 3, "signal": 2, "vector": 1}
# The input on which describe_models() counts parameters: the paper's 3×28×28 CIFAR-10 crop for
# models that take images, MNIST-1D's (1, 40) for signal-only models, 40 features for vectors.
_NATURAL_INPUT = {"image": (3, 28, 28), "signal": (1, 40), "vector": (40,)}

# Normalisation layers whose affine parameters Table 1 does not count.
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and what the paper says about it."""

    name: str  # registry name, e.g. "inception_small"
    build: Callable[[tuple[int, ...], int, float], nn.Module]  # (input_shape, num_classes, dropout) -> module
    layouts: tuple[str, ...]  # input layouts it accepts, among LAYOUTS
    paper_params: int | None  # Table 1 parameter count on 3×28×28 input, 10 classes; None: not a paper model
    paper_lr: float  # initial SGD learning rate (paper App. A for the paper models)
    description: str  # one line for `rethinkgen list models`
    natural_input: tuple[int, ...] | None = None  # input to describe it on; None: the layout's (3×28×28 ...)
    natural_classes: int = 10  # classes to describe it with (1,000 for the ImageNet models)
    count_batchnorm: bool = False  # its usual parameter count includes BatchNorm's γ, β (torchvision's)
    aux_logits: bool = False  # returns (logits, aux_logits) in train mode (Inception V3)


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(
    *,
    layouts: Sequence[str],
    paper_lr: float,
    description: str,
    paper_params: int | None = None,
    name: str | None = None,
    natural_input: Sequence[int] | None = None,
    natural_classes: int = 10,
    count_batchnorm: bool = False,
    aux_logits: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder ``build(input_shape, num_classes, dropout)`` in :data:`MODELS`.

    The name defaults to the function's name; a duplicate name raises ``ValueError``. The function
    itself is returned unchanged, so it can still be called directly. ``natural_input`` /
    ``natural_classes``: what :func:`describe_models` counts it on (default: the layout's input, 10
    classes); ``count_batchnorm``: its usual count includes BatchNorm's affine parameters (the built
    module must also carry ``count_batchnorm = True``); ``aux_logits``: it returns ``(logits,
    aux_logits)`` in train mode.
    """
    bad = [lay for lay in layouts if lay not in LAYOUTS]
    if bad or not layouts:
        raise ValueError(f"layouts must be a non-empty subset of {LAYOUTS}, got {tuple(layouts)}")

    def wrap(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or build.__name__
        spec = ModelSpec(key, build, tuple(layouts), paper_params, float(paper_lr), description,
                         tuple(natural_input) if natural_input is not None else None, int(natural_classes),
                         bool(count_batchnorm), bool(aux_logits))
        MODELS.register(key)(spec)
        return build

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching a shell-style pattern (``"mlp*"``).

    Examples
    --------
    >>> list_models("mlp*")
    ['mlp_1x512', 'mlp_3x512']
    """
    return MODELS.names(pattern)


def infer_layout(input_shape: Sequence[int]) -> str:
    """The layout of one sample's shape: 3 dims -> "image", 2 -> "signal", 1 -> "vector"."""
    for layout, ndim in _LAYOUT_NDIM.items():
        if len(input_shape) == ndim:
            return layout
    raise ConfigError(
        f"cannot infer the input layout of shape {tuple(input_shape)}: one sample must be (C, H, W) "
        "for images, (C, L) for signals or (D,) for vectors"
    )


def create_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int = 10,
    dropout: float = 0.0,
    layout: str | None = None,
) -> nn.Module:
    """Build the registered model ``name`` for samples of ``input_shape`` (no batch dim).

    Parameters
    ----------
    name : registry name (:func:`list_models`); unknown names raise ``UnknownNameError``.
    input_shape : shape of one sample: (C, H, W) image, (C, L) signal or (D,) vector.
    num_classes : K, the number of logits (>= 2).
    dropout : dropout probability in [0, 1) in the hidden layers; 0 inserts no Dropout (paper).
    layout : "image" | "signal" | "vector"; None infers it from ``len(input_shape)``.

    Returns
    -------
    An ``nn.Module`` in train mode mapping ``(N, *input_shape)`` to logits ``(N, num_classes)``.

    Raises ``ConfigError`` for a layout the model does not accept (the message lists the models that
    do), an input too small for the model, or out-of-range ``num_classes`` / ``dropout``.

    Examples
    --------
    >>> import torch
    >>> net = create_model("cnn1d", (1, 40), num_classes=10)  # MNIST-1D signals
    >>> net(torch.zeros(8, 1, 40)).shape
    torch.Size([8, 10])
    >>> create_model("alexnet_small", (40,))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    rethinkgen.errors.ConfigError: model 'alexnet_small' does not accept 'vector' inputs (it takes image); ...
    """
    spec = MODELS.get(name)
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"input_shape must be positive sizes, got {tuple(input_shape)}")
    if layout is None:
        layout = infer_layout(shape)
    elif layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    elif len(shape) != _LAYOUT_NDIM[layout]:
        raise ConfigError(
            f"layout {layout!r} needs {_LAYOUT_NDIM[layout]}-dim samples, got input_shape {shape}"
        )
    if layout not in spec.layouts:
        accept = [n for n in MODELS.names() if layout in MODELS.get(n).layouts]
        raise ConfigError(
            f"model {name!r} does not accept {layout!r} inputs (it takes {', '.join(spec.layouts)}); "
            f"models that accept {layout!r}: {', '.join(accept) or 'none'}"
        )
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    return spec.build(shape, int(num_classes), float(dropout))


def count_params(model: nn.Module, exclude_batchnorm: bool | None = None) -> int:
    """Number of parameters, counted as the model is usually counted.

    With ``exclude_batchnorm`` True the affine weights and biases of BatchNorm layers are left out, as
    Table 1 of the paper counts (small Inception: 1,649,402 with or without BatchNorm); False counts
    every parameter. None (default): True, except for models that carry ``count_batchnorm = True``
    (the torchvision ImageNet networks, counted as torchvision documents them: Inception V3
    27,161,264, ResNet-50 25,557,032). Shared parameters count once.
    """
    if exclude_batchnorm is None:
        exclude_batchnorm = not getattr(model, "count_batchnorm", False)
    skip: set[int] = set()
    if exclude_batchnorm:
        for module in model.modules():
            if isinstance(module, _BATCHNORM):
                skip.update(id(p) for p in module.parameters(recurse=False))
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or id(p) in skip:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


class ModelInfo(NamedTuple):
    """One row of :func:`describe_models`."""

    name: str
    layouts: tuple[str, ...]
    params: int  # count_params on the natural input (3×28×28 for image models, (1, 40) for signals), K=10
    # (the ImageNet models: 3×299×299 / 3×224×224, K=1000)
    paper_params: int | None  # Table 1's count, None for models not in the paper
    description: str


def natural_input_shape(name: str) -> tuple[int, ...]:
    """The input shape on which :func:`describe_models` counts a model's parameters."""
    spec = MODELS.get(name)
    return spec.natural_input or _NATURAL_INPUT[spec.layouts[0]]


def describe_models(pattern: str = "*") -> list[ModelInfo]:
    """(name, layouts, params, paper_params, description) for every registered model (for the CLI).

    Models are built on the ``meta`` device, so this allocates no weights and draws no random numbers.
    """
    rows = []
    for name in list_models(pattern):
        spec = MODELS.get(name)
        with torch.device("meta"):
            model = create_model(name, natural_input_shape(name), spec.natural_classes)
        rows.append(ModelInfo(name, spec.layouts, count_params(model), spec.paper_params, spec.description))
    return rows


# Import the model modules so that their builders register (the registry is filled at import).
from rethinkgen.models import alexnet_small, cnn1d, imagenet, inception_small, mlp, resnet  # noqa: E402,F401
