"""Generalization measures by name: complexity measures of a trained network (beyond the paper).

Zhang et al. (2017) conclude that classical complexity measures cannot tell a network that generalizes
(true labels) from the same network that memorized (random labels). Since then, large studies ranked
dozens of measures by how well they predict the generalization gap: Jiang et al., "Fantastic
generalization measures and where to find them" (ICLR 2020; their equation numbers are cited as
"Jiang eq. N") and Dziugaite et al., "In search of robust measures of generalization" (NeurIPS 2020).
A randomization sweep is a natural testbed: the same architectures, with gaps from 0 to 90 points.

Every measure registers a :class:`MeasureSpec` with :func:`register_measure`; it is a function of a
:class:`~rethinkgen.measures.context.MeasureContext` (the trained model, its initial weights and its
training data) returning one float:

>>> from rethinkgen.measures import list_measures
>>> list_measures("pacbayes*")
['pacbayes_flatness', 'pacbayes_init', 'pacbayes_mag_flatness']

Conventions shared by all measures (those of Jiang et al. and Dziugaite et al.'s code):

- **BatchNorm** is folded into the layer that feeds it (its eval-mode affine map merged into that
  layer's weight and bias; :func:`rethinkgen.measures.layers.fold_batchnorm`), for the trained and the
  initial network alike; every weight-based and perturbation-based measure sees the folded network.
- **Convolutions** enter the norm measures through their kernel reshaped to a matrix
  ``(out_channels, in_channels·k_h·k_w)`` (Jiang et al. §C; Dziugaite et al.'s code), not the exact
  operator norm of the convolution.
- "Weights" are the kernels of the convolutions and linear layers (biases excluded) and the layers are
  counted in module order (d = their number); parameter-free layers (ReLU, pooling, LRN) count as
  1-Lipschitz, as Bartlett et al. assume.
- Data-dependent measures use the training set with the labels the network was trained on (the
  corrupted ones), preprocessed as for evaluation, the network in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rethinkgen.registry import Registry

if TYPE_CHECKING:
    from rethinkgen.measures.context import MeasureContext

__all__ = ["MEASURES", "MeasureSpec", "describe_measures", "list_measures", "register_measure",
           "validate_names"]


@dataclass(frozen=True)
class MeasureSpec:
    """A registered measure: how to compute it and what it means."""

    name: str  # registry name, e.g. "pacbayes_flatness"
    compute: Callable[[MeasureContext], float]  # context -> value
    formula: str  # the definition, in plain text with Unicode maths
    units: str  # units of the value ("nats", "count", "dimensionless", ...)
    reference: str  # where the definition comes from
    description: str  # one line for `rethinkgen list measures`
    settings: tuple[str, ...] = ()  # MeasureSettings fields it depends on (stored with its value)
    cost: str = "weights"  # "weights" (no data) | "forward" (passes over the data) | "search" (many passes)


MEASURES: Registry[MeasureSpec] = Registry("measure")


def register_measure(*, formula: str, units: str, reference: str, description: str,
                     settings: Sequence[str] = (), cost: str = "weights",
                     name: str | None = None) -> Callable[[Callable], Callable]:
    """Decorator registering ``compute(context) -> float`` in :data:`MEASURES` (duplicates raise)."""
    if cost not in ("weights", "forward", "search"):
        raise ValueError(f"cost must be weights, forward or search, got {cost!r}")

    def wrap(compute: Callable) -> Callable:
        key = name or compute.__name__
        MEASURES.register(key)(MeasureSpec(key, compute, formula, units, reference, description,
                                           tuple(settings), cost))
        return compute

    return wrap


def list_measures(pattern: str = "*") -> list[str]:
    """Registered measure names matching a shell-style pattern, in registry (documentation) order."""
    import fnmatch

    return [n for n in _ORDER if n in MEASURES and fnmatch.fnmatch(n, pattern)] + \
        [n for n in MEASURES.names(pattern) if n not in _ORDER]


def describe_measures(pattern: str = "*") -> list[MeasureSpec]:
    """The specs of :func:`list_measures` (for the CLI and the docs)."""
    return [MEASURES.get(n) for n in list_measures(pattern)]


def validate_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple in registry order, without duplicates; "all" stands for every measure.

    Raises ``UnknownNameError`` listing the valid names for an unknown one.
    """
    if any(n == "all" for n in names):
        return tuple(list_measures())
    for n in names:
        MEASURES.get(n)  # raises with the valid names
    wanted = set(names)
    return tuple(n for n in list_measures() if n in wanted)


# The order of the listing and the report: Jiang et al.'s families (count, norms, margin, sharpness).
_ORDER = ("params", "l2_norm", "log_prod_fro", "dist_init", "log_prod_spec", "log_sum_spec", "path_norm",
          "spectral_complexity", "inverse_margin", "input_grad_norm", "sharpness", "pacbayes_flatness",
          "pacbayes_init", "pacbayes_mag_flatness")

# Import the measure modules so that they register (the registry is filled at import).
from rethinkgen.measures import norms, output, perturbation  # noqa: E402,F401
