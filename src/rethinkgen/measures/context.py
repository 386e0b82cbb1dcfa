"""What a measure is computed from: the trained network, its initial weights, its training data.

:class:`MeasureContext` holds them and computes, once and only when a measure asks, the pieces several
measures share: the BatchNorm-folded networks and their weight matrices, the margins on the training
set, the seeded training subset, the PAC-Bayes noise scales. :class:`MeasureSettings` holds every
choice a measure makes (quantile, subset size, search ranges), with its default and source.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from typing import Any

import torch
from torch import nn

from rethinkgen.errors import ConfigError
from rethinkgen.seeding import stream_seed

__all__ = ["MeasureContext", "MeasureSettings"]


@dataclass(frozen=True)
class MeasureSettings:
    """Every free choice of the measures; stored with each value (only the fields a measure uses)."""

    margin_quantile: float = 0.1  # q: the margin γ is the q-quantile of the training margins (Jiang: 10th pct)
    subset: int = 2048  # training samples (seeded) for sharpness, PAC-Bayes flatness and the input gradient
    batch_size: int | None = None  # samples per pass (memory only); None: the trainer's evaluation batch
    flatness_delta: float = 0.1  # allowed rise of the training error (0-1 loss) under weight noise (Jiang)
    flatness_draws: int = 8  # Monte Carlo noise draws per noise scale σ (Dziugaite et al.'s code: 10)
    flatness_steps: int = 12  # at most this many bisection steps on log σ (the bracket shrinks 2^12-fold)
    flatness_tolerance: float = 0.0  # > 0: stop once the rise is within this of flatness_delta (Dziugaite's code
    # uses 0.01); off by default: an early stop leaves σ' on a coarse grid, and runs then tie in the rankings
    sigma_min: float = 1e-5  # search bracket of σ; a network still within the bound at sigma_max gets it
    sigma_max: float = 10.0
    magnitude_eps: float = 1e-3  # ε of the magnitude-aware noise N(0, σ²w² + ε²) (Jiang eq. 59-61)
    sharpness_radius: float = 5e-4  # ρ: the box |u_i| ≤ ρ(|w_i| + 1) (Keskar et al. 2017 use 1e-3 and 5e-4)
    sharpness_steps: int = 5  # projected sign-gradient ascent steps in the box (step 0.5 ρ(|w_i| + 1))

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 < self.margin_quantile < 1.0:
            problems.append(f"margin_quantile must be in (0, 1), got {self.margin_quantile}")
        for name in ("subset", "batch_size", "flatness_draws", "flatness_steps", "sharpness_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.flatness_delta < 1.0:
            problems.append(f"flatness_delta must be in (0, 1), got {self.flatness_delta}")
        if not 0.0 <= self.flatness_tolerance < self.flatness_delta:
            problems.append(f"flatness_tolerance must be in [0, flatness_delta), got {self.flatness_tolerance}")
        if not 0.0 < self.sigma_min < self.sigma_max:
            problems.append(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.magnitude_eps < 0 or self.sharpness_radius <= 0:
            problems.append("magnitude_eps must be >= 0 and sharpness_radius > 0")
        if problems:
            raise ConfigError("invalid measure settings: " + "; ".join(problems))

    def subset_of(self, names: tuple[str, ...]) -> dict[str, Any]:
        """The values of the fields ``names`` (what a measure's stored settings record)."""
        values = asdict(self)
        return {n: values[n] for n in names}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


class MeasureContext:
    """A trained network, its initialisation and its training data, on one device.

    Parameters
    ----------
    model : the trained network (it is copied; the original is never modified or put in eval mode).
    init_model : the same architecture with the run's initial weights (see :func:`rethinkgen.measures.
        layers.initial_model`).
    x_train : (N, *input_shape) float32 training inputs, preprocessed for evaluation.
    y_train : (N,) int64 labels the network was trained on (corrupted ones included).
    seed : the run's seed; every random draw of a measure comes from ``stream_seed(seed, "measure", ·)``.
    settings : the measures' free choices.
    """

    def __init__(self, model: nn.Module, init_model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                 *, seed: int = 0, settings: MeasureSettings | None = None) -> None:
        import copy

        if x_train.shape[0] != y_train.shape[0] or x_train.shape[0] == 0:
            raise ConfigError(f"x_train {tuple(x_train.shape)} and y_train {tuple(y_train.shape)} must hold the "
                              "same, non-zero number of samples")
        self.device = x_train.device
        self.model = copy.deepcopy(model).to(self.device).eval()
        self.init_model = copy.deepcopy(init_model).to(self.device).eval()
        self.x_train = x_train.contiguous()
        self.y_train = y_train.to(self.device)
        self.seed = int(seed)
        self.settings = settings or MeasureSettings()

    # ------------------------------------------------------------------ basics
    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def generator(self, purpose: str, *extra: int) -> torch.Generator:
        """A CPU generator seeded from (seed, "measure", purpose, *extra). On the CPU, so that a measure
        draws the same numbers whichever device it runs on (a CUDA generator gives other numbers for
        the same seed): draw on the CPU, then move the tensor."""
        g = torch.Generator()
        g.manual_seed(stream_seed(self.seed, "measure", zlib.crc32(purpose.encode()), *extra))
        return g

    @property
    def batch_size(self) -> int:
        """Samples per pass: the setting, else the trainer's evaluation batch (256 images on the CPU,
        2048 otherwise; :func:`rethinkgen.train.resolve.eval_batch_size`)."""
        from rethinkgen.train.resolve import EVAL_BATCH, EVAL_BATCH_CPU_IMAGES

        if self.settings.batch_size is not None:
            return self.settings.batch_size
        return EVAL_BATCH_CPU_IMAGES if self.x_train.dim() == 4 and self.device.type == "cpu" else EVAL_BATCH

    def batches(self, n: int):
        """(start, stop) slices of ``n`` samples in chunks of :attr:`batch_size`."""
        step = self.batch_size
        return [(i, min(i + step, n)) for i in range(0, n, step)]

    # ------------------------------------------------------------------ shared pieces (computed once)
    @cached_property
    def folded(self) -> nn.Module:
        """The trained network with BatchNorm folded into the layers feeding it (eval mode)."""
        from rethinkgen.measures.layers import fold_batchnorm

        return fold_batchnorm(self.model, self.x_train[:1])

    @cached_property
    def folded_init(self) -> nn.Module:
        from rethinkgen.measures.layers import fold_batchnorm

        return fold_batchnorm(self.init_model, self.x_train[:1])

    @cached_property
    def weights(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """(layer name, W, W⁰) for every weight layer of the folded networks that runs in their eval-mode
        forward pass (not a training-only auxiliary head); W as a 2-D matrix (out, fan_in): a
        convolution's kernel reshaped to (out_channels, in_channels·k_h·k_w)."""
        from rethinkgen.measures.layers import WEIGHT_LAYERS, uncovered_parameters, weight_matrices

        others = uncovered_parameters(self.folded)
        if others:
            kinds = ", ".join(t.__name__ for t in WEIGHT_LAYERS)
            raise ConfigError(f"the weight-based measures take the weights of {kinds} and BatchNorm layers; "
                              f"this model also has {', '.join(others[:4])}"
                              f"{' …' if len(others) > 4 else ''}, which they would leave out. The other measures "
                              "(margins, input gradient, sharpness, PAC-Bayes flatness) still apply")
        trained = weight_matrices(self.folded, self.x_train[:1])  # the layers of the eval-mode function
        initial = dict((name, w) for name, w in weight_matrices(self.folded_init, self.x_train[:1]))
        if [n for n, _ in trained] != list(initial):
            raise ConfigError("the trained and the initial network have different layers; pass the initial "
                              "weights of the same architecture")
        return [(name, w, initial[name]) for name, w in trained]

    @cached_property
    def spectral_norms(self) -> list[float]:
        """‖W_i‖₂ of every weight matrix (largest singular value, float64 ``torch.linalg.matrix_norm``)."""
        return [float(torch.linalg.matrix_norm(w.double(), ord=2)) for _, w, _ in self.weights]

    @cached_property
    def margins(self) -> torch.Tensor:
        """(N,) output margins f(x)[y] − max_{j≠y} f(x)[j] on the training set (logit units)."""
        from rethinkgen.measures.output import output_margins

        return output_margins(self.model, self.x_train, self.y_train, self.batch_size)

    @cached_property
    def margin(self) -> float:
        """γ: the ``margin_quantile``-quantile of :attr:`margins` (linear interpolation, as numpy)."""
        return float(torch.quantile(self.margins.double().cpu(), self.settings.margin_quantile))

    @cached_property
    def subset(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of ``min(settings.subset, N)`` training samples drawn without replacement (seeded)."""
        n = min(self.settings.subset, self.n_train)
        if n == self.n_train:
            return self.x_train, self.y_train
        g = torch.Generator().manual_seed(stream_seed(self.seed, "measure", zlib.crc32(b"subset")))
        index = torch.randperm(self.n_train, generator=g)[:n].sort().values.to(self.device)
        return self.x_train[index], self.y_train[index]

    @cached_property
    def folded_params(self) -> dict[str, torch.Tensor]:
        """Every parameter of the folded network (detached): what the perturbation measures perturb."""
        return {name: p.detach() for name, p in self.folded.named_parameters()}

    @cached_property
    def pacbayes_sigma(self) -> float:
        """σ' of Jiang eq. (52-53): the largest isotropic weight-noise scale within the error bound."""
        from rethinkgen.measures.perturbation import noise_scale

        return noise_scale(self, magnitude_aware=False)

    @cached_property
    def pacbayes_mag_sigma(self) -> float:
        """σ' of Jiang eq. (59-61): the same search with magnitude-aware noise N(0, σ²w² + ε²)."""
        from rethinkgen.measures.perturbation import noise_scale

        return noise_scale(self, magnitude_aware=True)
