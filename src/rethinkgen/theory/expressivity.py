"""Finite-sample expressivity: Theorem 1 of Zhang et al. (2017), §4 and Appendix C.

    "There exists a two-layer neural network with ReLU activations and 2n + d weights that can
    represent any function on a sample of size n in d dimensions."

:func:`interpolate` builds that network for given points ``X`` (n, d) and targets, exactly as the
proof does:

1. **Projection.** Pick ``a`` in R^d so that the projections ``x_i = <a, z_i>`` are distinct and sort
   the points by them. We draw ``n_directions`` seeded Gaussian directions (unit norm) and keep the one
   with the largest *minimum gap* between sorted projections, relative to their spread — the gap
   bounds the smallest eigenvalue below (Lemma 1), so this is the conditioning knob.
2. **Biases.** Interleave ``b_1 < x_1 < b_2 < x_2 < ... < b_n < x_n``: ``b_{i+1} = x_i + θ (x_{i+1} − x_i)``
   (a fraction θ of the gap to the right of ``x_i``) and ``b_1 = x_1 − (1 − θ) ḡ`` with ḡ the mean gap.
3. **Weights.** ``c(z_i) = (A w)_i`` with ``A_ij = max(x_i − b_j, 0)``: lower triangular (``x_i > b_j``
   exactly when ``j ≤ i``) with diagonal ``x_i − b_i > 0``, so ``A w = y`` has one solution
   (Lemma 1: A's smallest eigenvalue is ``min_i (x_i − b_i)``).

The network ``c(x) = Σ_j w_j max(<a, x> − b_j, 0)`` has d + n + n weights (``a``, ``b``, ``w``):
**2n + d**. For C outputs (class targets as one-hot rows) ``w`` is (n, C): **d + n + nC**.

Solving ``A w = y`` in O(n) (``solver="slopes"``)
-------------------------------------------------
``f(t) = Σ_j w_j max(t − b_j, 0)`` is piecewise linear in t with knots ``b_j``; on (b_i, b_{i+1}) its
slope is ``s_i = w_1 + ... + w_i``, so ``w_i = s_i − s_{i−1}`` (the change of slope at ``b_i``).
Walking from ``x_i`` over the knot ``b_{i+1}`` to ``x_{i+1}``::

    y_1     = s_1 (x_1 − b_1)
    y_{i+1} = y_i + s_i (b_{i+1} − x_i) + s_{i+1} (x_{i+1} − b_{i+1})

so ``s_{i+1} = (y_{i+1} − y_i − s_i p_i) / q_i`` with ``p_i = b_{i+1} − x_i = θ g_i`` and
``q_i = x_{i+1} − b_{i+1} = (1 − θ) g_i``. This *is* forward substitution on A (the same solution,
checked against ``torch.linalg.solve_triangular`` in the tests), but in O(n) time and memory instead
of O(n²), and it shows how errors travel: an error in ``s_i`` reaches ``s_{i+1}`` multiplied by
``−p_i/q_i = −θ/(1 − θ)``. With θ < 1/2 errors shrink geometrically; θ = 1/2 (biases at the midpoints)
is neutral and makes the slopes zig-zag (``s_{i+1} = 2·secant_i − s_i``), and θ > 1/2 makes ``w``
grow like (θ/(1 − θ))^n — exponentially — whatever the solver. As θ → 0 the slopes become the
secants ``(y_{i+1} − y_i)/g_i`` and ``w`` the jumps between consecutive secants (divided second
differences of y): the piecewise-linear interpolant. The default θ = 0.05 keeps the paper's strict
interleaving with a margin, damps errors 19-fold per step, and makes Lemma 1's eigenvalue
``min_i (x_i − b_i) = 0.95·min gap`` (midpoints would halve it).

Numerics. ``w`` is large by nature: a label flip across a gap g needs a slope of about 1/g, and the
smallest gap of n random projections is about spread/n². Evaluating the network sums terms of size
``|w_j| (t − b_j)`` that cancel to O(|y|); the achievable accuracy in float64 is about
``2^-53 · max_i Σ_j |w_j| max(x_i − b_j, 0)``, which the report gives as ``cancellation`` (relative to
max|y|). So the module keeps ``a, b, w`` in float64 and evaluates in float64 (inputs are cast), and the
projection uses an elementwise product and row sum, whose result for a row does not depend on the
batch it is in (a BLAS matrix-vector product's does), so the sample's projections at evaluation time
are bit-identical to those the weights were solved for.

Solvers, measured. θ matters far more than the solver: on n = 5000 random class labels (d = 1, 40,
784) θ = 1/2 gave ‖w‖ 100–170× larger and max residuals ≈ 3e-7 against ≈ 2e-9 for θ ∈ [0.001, 0.2]. The
slopes solution agrees with ``solve_triangular``'s to ~1e-9 relative and computing it in extended
precision changes nothing, so it is the exact solution rounded; yet ``solve_triangular``'s w, which
absorbs the rounding of each row's sum, is often evaluated by the network with a 3× smaller residual
(max residual / (2^-53·cancellation) ≤ 1.2 for it, ≤ 7.4 for slopes, over 72 cases with n = 2000; in a
few one-hot cases slopes was better). So the default ``solver="auto"`` computes both while A fits in
512 MiB (n ≤ 8192) and keeps the one the network fits better; beyond that, slopes (O(n)).

Depth k
-------
:func:`to_depth_k` turns the network into a depth-k ReLU network with hidden widths O(n/k + C) that
computes the same function everywhere (see :class:`DeepInterpolatingNet`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from rethinkgen import seeding
from rethinkgen.errors import ConfigError, RethinkgenError

__all__ = [
    "DeepInterpolatingNet",
    "DuplicatePointsError",
    "InterpolatingNet",
    "InterpolationReport",
    "interpolate",
    "slopes_solve",
    "to_depth_k",
    "triangular_solve",
]

EPS64 = float(np.finfo(np.float64).eps)
CHUNK_ELEMENTS = 1 << 22  # rows x hidden units evaluated at once (32 MiB of float64)
DEFAULT_THETA = 0.05
DEFAULT_DIRECTIONS = 16
AUTO_TRIANGULAR_MAX = 8192  # solver="auto" also tries solve_triangular up to this n (A: 512 MiB)


class DuplicatePointsError(RethinkgenError, ValueError):
    """Identical input points carry different targets: no function (so no network) can fit them."""


# ----------------------------------------------------------------------------------------------
# The networks


def _project(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """t = <a, x> per row, (N, d) -> (N,), in float64; the result of a row is independent of N."""
    x = x.reshape(x.shape[0], -1).to(dtype=torch.float64, device=a.device).contiguous()
    if x.shape[1] != a.shape[0]:
        raise ConfigError(f"the network takes inputs with {a.shape[0]} values, got {x.shape[1]}")
    return (x * a).sum(dim=1)


def _chunk_rows(n_rows: int, width: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, width)) if n_rows else 1


class InterpolatingNet(nn.Module):
    """Theorem 1's network ``c(x) = Σ_j w_j max(<a, x> − b_j, 0)`` (Zhang et al. 2017, Appendix C).

    Parameters (float64): ``a`` (d,), ``b`` (n,) increasing, ``w`` (n, C). ``forward`` takes (N, d)
    or (N, *shape) inputs of any float dtype (flattened, cast to float64) and returns (N, C) float64,
    or (N,) when built for scalar targets. Parameter count: d + n + nC (2n + d when C = 1).
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor, w: torch.Tensor, *, scalar_output: bool) -> None:
        super().__init__()
        self.a = nn.Parameter(a.to(torch.float64).clone(), requires_grad=False)  # (d,)
        self.b = nn.Parameter(b.to(torch.float64).clone(), requires_grad=False)  # (n,)
        self.w = nn.Parameter(w.to(torch.float64).clone().reshape(b.shape[0], -1), requires_grad=False)
        self.scalar_output = scalar_output

    @property
    def n_hidden(self) -> int:
        return int(self.b.shape[0])

    @property
    def num_outputs(self) -> int:
        return int(self.w.shape[1])

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d) -> (N,) projections <a, x> in float64."""
        return _project(x, self.a)

    def _hidden_matmul(self, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``relu(t − b) @ w`` for t (N,), in row chunks through one reused buffer (N, C)."""
        t = t.to(self.b.device, torch.float64)
        n_rows, rows = t.shape[0], _chunk_rows(t.shape[0], self.n_hidden)
        out = t.new_empty((n_rows, w.shape[1]))
        buf = t.new_empty((min(rows, n_rows), self.n_hidden))  # reused: no allocator churn
        for i in range(0, n_rows, rows):
            h = buf[:min(rows, n_rows - i)]
            torch.sub(t[i:i + h.shape[0], None], self.b[None, :], out=h)
            h.relu_()
            torch.matmul(h, w, out=out[i:i + h.shape[0]])
        return out

    def forward_projected(self, t: torch.Tensor) -> torch.Tensor:
        """The network as a function of the projection t (N,) -> (N, C) (or (N,)), in row chunks."""
        y = self._hidden_matmul(t, self.w)
        return y[:, 0] if self.scalar_output else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_projected(self.project(x))

    def cancellation(self, t: torch.Tensor) -> torch.Tensor:
        """(N,) ``max_c Σ_j |w_jc| max(t − b_j, 0)``: the size of the terms that cancel in c(x)."""
        return self._hidden_matmul(t, self.w.abs()).amax(dim=1) if t.shape[0] else t.new_zeros((0,))


class DeepInterpolatingNet(nn.Module):
    """A depth-k ReLU network computing the same function as an :class:`InterpolatingNet`.

    **Depth** counts affine maps (weight layers): the Theorem-1 network ``x -> relu(<a,x> − b) -> w``
    has depth 2 (one hidden ReLU layer), as in the paper's "two-layer neural network"; a depth-k
    network has k − 1 hidden ReLU layers. The hidden units ``relu(t − b_j)``, t = <a, x>, sorted by
    ``b_j``, are split into L = k − 1 consecutive blocks B_1..B_L of n/L (±1) units. Hidden layer ℓ:

    - the block units ``h_j = relu(t − b_j)``, j in B_ℓ (layer 1 reads t from x through ``a``; later
      layers from the carriers, ``t = t⁺ − t⁻``);
    - ℓ < L: the carriers ``t⁺ = relu(t)``, ``t⁻ = relu(−t)`` (2 units);
    - ℓ ≥ 2: for every output c the running sum ``P_c = Σ_{j in B_1..B_{ℓ−1}} w_jc h_j`` as
      ``relu(P_c)``, ``relu(−P_c)`` (2C units), formed from the previous layer's carriers and block.

    The output layer adds the last block to the carried sum. Since ``relu(u) − relu(−u) = u`` for every
    u (and is exact in floating point, one term being 0), the network equals the depth-2 one *everywhere*
    in exact arithmetic; in float64 the block units are bit-identical to the depth-2 hidden units and
    only the order of the final summation differs. Hidden widths: |B_1| + 2, |B_ℓ| + 2 + 2C, and
    |B_L| + 2C for the last (k = 2 is the depth-2 network itself).

    Parameter count (``param_count``) is that of the corresponding standard ReLU network
    (:meth:`to_sequential`) counting every *non-zero* weight and bias, with the first layer's rows, all
    equal to ±a, counted as the one shared vector ``a`` (d weights) — the convention that gives
    Theorem 1's 2n + d, which is what k = 2 gives. In general it is about d + 3n + 3nC (each w_j appears
    in the two sum carriers and once more, each later block unit reads t⁺ and t⁻): O(n + d) in total and
    O(nC/k) per layer beyond the first. ``dense_param_count`` counts the dense matrices in full.
    """

    def __init__(self, net: InterpolatingNet, k: int) -> None:
        super().__init__()
        n = net.n_hidden
        if not isinstance(k, int) or k < 2:
            raise ConfigError(f"depth k must be an integer >= 2 (2 = Theorem 1's network), got {k!r}")
        if k - 1 > n:
            raise ConfigError(f"depth {k} needs k - 1 = {k - 1} non-empty blocks but the network has only "
                              f"{n} hidden units; use --depth <= {n + 1}")
        self.k = k
        self.a = nn.Parameter(net.a.detach().clone(), requires_grad=False)
        self.b = nn.Parameter(net.b.detach().clone(), requires_grad=False)
        self.w = nn.Parameter(net.w.detach().clone(), requires_grad=False)
        self.scalar_output = net.scalar_output
        bounds = np.linspace(0, n, k, dtype=np.float64).round().astype(int)  # L + 1 block boundaries
        self.blocks: list[tuple[int, int]] = [(int(bounds[i]), int(bounds[i + 1])) for i in range(k - 1)]

    @property
    def num_outputs(self) -> int:
        return int(self.w.shape[1])

    @property
    def widths(self) -> list[int]:
        """Widths of the k − 1 hidden layers."""
        L, C = len(self.blocks), self.num_outputs
        out = []
        for ell, (lo, hi) in enumerate(self.blocks, start=1):
            out.append((hi - lo) + (2 if ell < L else 0) + (2 * C if ell >= 2 else 0))
        return out

    @property
    def param_count(self) -> int:
        """Non-zero weights and biases, the first layer's ±a rows counted once as ``a`` (d numbers)."""
        d, L, C = self.a.shape[0], len(self.blocks), self.num_outputs
        sizes = [hi - lo for lo, hi in self.blocks]
        count = d + sizes[0]  # shared a; the block's biases -b_j (the carriers' biases are 0)
        for ell in range(2, L + 1):
            count += 3 * sizes[ell - 1]  # block units: weights +1 (t⁺), -1 (t⁻) and the bias -b_j
            if ell < L:
                count += 4  # t carriers: relu(t⁺ - t⁻), relu(t⁻ - t⁺)
            count += 2 * C * (sizes[ell - 2] + (2 if ell >= 3 else 0))  # ±(P⁺ - P⁻ + Σ w_j h_j)
        count += C * (sizes[-1] + (2 if L >= 2 else 0))  # output: P⁺ - P⁻ + Σ_{B_L} w_j h_j
        return count

    @property
    def dense_param_count(self) -> int:
        dims = [self.a.shape[0], *self.widths, self.num_outputs]
        return sum(dims[i] * dims[i + 1] + dims[i + 1] for i in range(len(dims) - 1))

    def summary(self) -> dict:
        return {"depth": self.k, "hidden_layers": self.k - 1, "widths": self.widths,
                "max_width": max(self.widths), "param_count": self.param_count,
                "dense_param_count": self.dense_param_count,
                "blocks": [hi - lo for lo, hi in self.blocks]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = _project(x, self.a)
        rows = _chunk_rows(t.shape[0], max(self.widths))
        y = t.new_empty((t.shape[0], self.num_outputs))  # preallocated: chunks write into it
        for i in range(0, t.shape[0], rows):
            y[i:i + rows] = self._forward_t(t[i:i + rows])
        return y[:, 0] if self.scalar_output else y

    def _forward_t(self, t: torch.Tensor) -> torch.Tensor:
        relu, L = torch.relu, len(self.blocks)
        lo, hi = self.blocks[0]
        h = relu(t[:, None] - self.b[None, lo:hi])  # layer 1 block
        tp, tm = relu(t), relu(-t)  # layer 1 carriers
        pp = pm = None
        prev = (lo, hi)
        for ell in range(2, L + 1):
            lo, hi = self.blocks[ell - 1]
            s = h @ self.w[prev[0]:prev[1]]  # (N, C)
            if pp is not None:
                s = (pp - pm) + s
            pp, pm = relu(s), relu(-s)
            t_ell = tp - tm  # exact: one of the two is 0
            h = relu(t_ell[:, None] - self.b[None, lo:hi])
            if ell < L:
                tp, tm = relu(t_ell), relu(-t_ell)
            prev = (lo, hi)
        y = h @ self.w[prev[0]:prev[1]]
        return y if pp is None else (pp - pm) + y

    def to_sequential(self) -> nn.Sequential:
        """The same network as a plain ``nn.Sequential`` of float64 ``nn.Linear`` and ``nn.ReLU`` layers.

        Dense weight matrices (``dense_param_count`` numbers): meant for small n, to check that the
        construction is an ordinary ReLU network. Takes flattened (N, d) float64 inputs; returns (N, C),
        or (N,) for a network built on scalar targets.
        """
        d, C, L = self.a.shape[0], self.num_outputs, len(self.blocks)
        widths = self.widths
        layers: list[nn.Module] = []
        # layout of every hidden layer: [block units | t⁺, t⁻ (ℓ < L) | P⁺_1..P⁺_C, P⁻_1..P⁻_C (ℓ ≥ 2)]
        prev_layout: dict[str, slice] = {}
        in_dim = d
        for ell, (lo, hi) in enumerate(self.blocks, start=1):
            m = hi - lo
            W = torch.zeros(widths[ell - 1], in_dim, dtype=torch.float64)
            bias = torch.zeros(widths[ell - 1], dtype=torch.float64)
            layout = {"block": slice(0, m)}
            pos = m
            if ell < L:
                layout["t"] = slice(pos, pos + 2)
                pos += 2
            if ell >= 2:
                layout["p"] = slice(pos, pos + 2 * C)
                pos += 2 * C
            if ell == 1:
                W[:m] = self.a
                if L > 1:
                    W[m] = self.a
                    W[m + 1] = -self.a
            else:
                tin = prev_layout["t"].start
                W[:m, tin], W[:m, tin + 1] = 1.0, -1.0
                if ell < L:
                    W[m, tin], W[m, tin + 1] = 1.0, -1.0
                    W[m + 1, tin], W[m + 1, tin + 1] = -1.0, 1.0
                plo, phi = self.blocks[ell - 2]
                for c in range(C):
                    for sign, row in ((1.0, layout["p"].start + c), (-1.0, layout["p"].start + C + c)):
                        W[row, prev_layout["block"]] = sign * self.w[plo:phi, c]
                        if "p" in prev_layout:
                            W[row, prev_layout["p"].start + c] = sign
                            W[row, prev_layout["p"].start + C + c] = -sign
            bias[:m] = -self.b[lo:hi]
            lin = nn.Linear(in_dim, widths[ell - 1], dtype=torch.float64)
            with torch.no_grad():
                lin.weight.copy_(W)
                lin.bias.copy_(bias)
            layers += [lin, nn.ReLU()]
            prev_layout, in_dim = layout, widths[ell - 1]
        W = torch.zeros(C, in_dim, dtype=torch.float64)
        lo, hi = self.blocks[-1]
        W[:, prev_layout["block"]] = self.w[lo:hi].T
        if "p" in prev_layout:
            for c in range(C):
                W[c, prev_layout["p"].start + c] = 1.0
                W[c, prev_layout["p"].start + C + c] = -1.0
        lin = nn.Linear(in_dim, C, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(W)
            lin.bias.zero_()
        layers.append(lin)
        if self.scalar_output:
            layers.append(nn.Flatten(start_dim=0))
        return nn.Sequential(*layers)


def to_depth_k(net: InterpolatingNet, k: int) -> DeepInterpolatingNet:
    """Theorem 1's network as a depth-k ReLU network of hidden width O(n/k + C) (paper §4: "a depth k
    network in which each layer has only O(n/k) parameters"); see :class:`DeepInterpolatingNet`."""
    return DeepInterpolatingNet(net, k)


# ----------------------------------------------------------------------------------------------
# Solving A w = y


def triangular_solve(x: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Solve ``A w = y`` with A = [max(x_i − b_j, 0)] by ``torch.linalg.solve_triangular`` (float64).

    O(n²) memory (A is built densely): the reference the O(n) :func:`slopes_solve` is checked against.
    x, b: (n,) sorted and interleaved; y: (n, C). Returns w (n, C).
    """
    A = torch.relu(x[:, None] - b[None, :]).tril()
    return torch.linalg.solve_triangular(A, y.reshape(len(x), -1).to(torch.float64), upper=False)


def slopes_solve(x: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Solve ``A w = y`` in O(n) through the slopes ``s_i = w_1 + ... + w_i`` (module docstring).

    x, b: (n,) float64 with b_1 < x_1 < b_2 < ... < b_n < x_n; y: (n, C). Returns w (n, C) float64.
    """
    xs = x.to(torch.float64).cpu().numpy()
    bs = b.to(torch.float64).cpu().numpy()
    ys = y.reshape(len(xs), -1).to(torch.float64).cpu().numpy()
    n = len(xs)
    s = np.empty_like(ys)
    s[0] = ys[0] / (xs[0] - bs[0])
    p = bs[1:] - xs[:-1]  # run from x_i to the knot b_{i+1}, at the old slope
    q = xs[1:] - bs[1:]  # run from b_{i+1} to x_{i+1}, at the new slope
    dy = ys[1:] - ys[:-1]
    prev = s[0]
    for i in range(n - 1):
        prev = (dy[i] - prev * p[i]) / q[i]
        s[i + 1] = prev
    w = np.diff(s, axis=0, prepend=np.zeros((1, s.shape[1])))
    return torch.from_numpy(w)


SOLVERS = {"slopes": slopes_solve, "triangular": triangular_solve}


# ----------------------------------------------------------------------------------------------
# The construction


@dataclass
class InterpolationReport:
    """What :func:`interpolate` built and how well it fits (Theorem 1 / Lemma 1 quantities)."""

    n: int  # distinct points = hidden units
    n_input: int  # points given (before merging duplicates)
    n_merged: int  # duplicate points with equal targets that were merged
    d: int  # input dimension
    num_outputs: int  # C (1 for scalar targets)
    param_count: int
    param_formula: str  # "2n + d" (one output) or "d + n + n*C"
    max_residual: float  # max_i |c(z_i) − y_i| over all given points, network evaluated in float64
    rel_residual: float  # ||c(Z) − Y||_F / ||Y||_F
    min_eigenvalue: float  # Lemma 1: min_i (x_i − b_i), the smallest eigenvalue of A
    min_eigenvalue_rel: float  # ... divided by the spread x_n − x_1
    weight_norm: float  # ||w||_F
    max_abs_weight: float
    min_gap: float  # min_i (x_{i+1} − x_i) of the sorted projections
    min_gap_rel: float  # ... divided by the spread
    spread: float  # x_n − x_1
    cancellation: float  # max_i Σ_j |w_j| max(x_i − b_j, 0) / max|y|: float64 error ≈ this × 1.1e-16
    label_accuracy: float | None  # class targets: share of points whose output argmax is their class
    theta: float  # biases at x_i + θ (x_{i+1} − x_i)
    solver: str  # the solver whose solution was kept
    solver_residuals: dict  # max residual on the sample of each solver tried ("auto" tries two)
    n_directions: int
    direction_index: int
    candidate_gaps_rel: list[float] = field(default_factory=list)  # min gap / spread of every candidate
    direction_rule: str = ""
    bias_rule: str = ""
    seed: int = 0
    time_s: float = 0.0  # construction time (projection, solve), without the residual check
    check_time_s: float = 0.0  # evaluating the network on the sample

    def to_dict(self) -> dict:
        return asdict(self)


def _as_targets(y, n: int, num_classes: int | None) -> tuple[torch.Tensor, bool]:
    """Targets as (n, C) float64 and whether the output is scalar."""
    y = torch.as_tensor(y)
    if y.shape[0] != n:
        raise ConfigError(f"got {n} points but {y.shape[0]} targets; give one target per point")
    if num_classes is not None:
        if y.dim() != 1 or y.is_floating_point() and not bool((y == y.round()).all()):
            raise ConfigError("with num_classes, y must be a 1-D tensor of integer class ids")
        y = y.long()
        if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ConfigError(f"class ids must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}]")
        return torch.nn.functional.one_hot(y, num_classes).to(torch.float64), False
    if y.dim() == 1:
        return y.to(torch.float64)[:, None], True
    if y.dim() == 2:
        return y.to(torch.float64), False
    raise ConfigError(f"y must be (n,) values, (n, C) values or (n,) class ids with num_classes; got {tuple(y.shape)}")


def _merge_duplicates(X: torch.Tensor, Y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Indices of the distinct points to keep. Duplicates share a projection (it is deterministic per
    row), so only points with equal projections are compared. Raises DuplicatePointsError for
    identical points with different targets."""
    order = torch.argsort(t, stable=True)
    ts = t[order]
    same = (ts[1:] == ts[:-1]).nonzero().flatten()
    if len(same) == 0:
        return torch.arange(len(t))
    drop = torch.zeros(len(t), dtype=torch.bool)
    conflicts = []
    # runs of equal projections
    run_starts = same[torch.cat([torch.tensor([True]), same[1:] != same[:-1] + 1])]
    for start in run_starts.tolist():
        end = start
        while end + 1 < len(ts) and ts[end + 1] == ts[start]:
            end += 1
        group = order[start:end + 1].tolist()
        kept: list[int] = []
        for i in sorted(group):
            match = next((k for k in kept if torch.equal(X[k], X[i])), None)
            if match is None:
                kept.append(i)
            elif torch.equal(Y[match], Y[i]):
                drop[i] = True
            else:
                conflicts.append((match, i))
    if conflicts:
        shown = ", ".join(f"{i} and {j}" for i, j in conflicts[:10])
        more = f" (and {len(conflicts) - 10} more pairs)" if len(conflicts) > 10 else ""
        raise DuplicatePointsError(
            f"points {shown}{more} are identical but have different targets, so no function can fit them; "
            "remove or relabel the duplicates (identical points with equal targets are merged automatically)")
    return (~drop).nonzero().flatten()


def interpolate(
    X,
    y,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    theta: float = DEFAULT_THETA,
    n_directions: int = DEFAULT_DIRECTIONS,
    solver: str = "auto",
) -> tuple[InterpolatingNet, InterpolationReport]:
    """Build Theorem 1's two-layer ReLU network that fits ``y`` on ``X`` exactly (paper §4, App. C).

    Parameters
    ----------
    X : (n, d) or (n, *shape) points (flattened), any float dtype; computations in float64.
    y : (n,) real targets -> one output; (n, C) real targets -> C outputs; or (n,) class ids with
        ``num_classes`` = C -> C outputs fitted to one-hot rows (predict with argmax).
    seed : seeds the candidate directions (stream ``"init"``).
    theta : bias position inside each gap, 0 < θ < 1 (module docstring: θ < 1/2 is stable).
    n_directions : seeded Gaussian directions tried; the one with the largest min gap / spread is kept.
    solver : ``"slopes"`` (O(n) time and memory), ``"triangular"`` (``torch.linalg.solve_triangular``
        on the dense A: O(n²) memory) or ``"auto"`` (default): both when n <= 8192 (A takes at most
        512 MiB), keeping the one whose network has the smaller residual on the sample, else slopes.

    Returns
    -------
    (net, report): an :class:`InterpolatingNet` with ``net(X) ≈ y`` and an :class:`InterpolationReport`.

    Examples
    --------
    >>> X = torch.randn(100, 5, dtype=torch.float64)
    >>> labels = torch.randint(0, 3, (100,))
    >>> net, rep = interpolate(X, labels, num_classes=3)
    >>> bool((net(X).argmax(1) == labels).all()), rep.param_count == 5 + 100 + 100 * 3, rep.rel_residual < 1e-8
    (True, True, True)
    """
    start = time.perf_counter()
    if not 0.0 < theta < 1.0:
        raise ConfigError(f"theta must lie strictly between 0 and 1 (paper: b_i < x_i < b_(i+1)), got {theta}")
    if solver not in (*SOLVERS, "auto"):
        raise ConfigError(f"unknown solver {solver!r}; valid: auto, {', '.join(SOLVERS)}")
    if n_directions < 1:
        raise ConfigError(f"n_directions must be >= 1, got {n_directions}")
    X = torch.as_tensor(X)
    if X.dim() < 2 or X.shape[0] == 0:
        raise ConfigError(f"X must be (n, d) with n >= 1, got shape {tuple(X.shape)}")
    X = X.reshape(X.shape[0], -1).to(torch.float64).contiguous()
    if not bool(torch.isfinite(X).all()):
        raise ConfigError("X contains NaN or infinite values")
    n_input, d = X.shape
    Y, scalar = _as_targets(y, n_input, num_classes)
    if not bool(torch.isfinite(Y).all()):
        raise ConfigError("y contains NaN or infinite values")

    gen = seeding.rng(seed, "init")
    dirs = torch.from_numpy(gen.standard_normal((n_directions, d)))
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    keep = _merge_duplicates(X, Y, _project(X, dirs[0]))
    Xu, Yu = X[keep], Y[keep]
    n = Xu.shape[0]

    best, candidate_gaps = None, []
    for i in range(n_directions):
        t = _project(Xu, dirs[i])
        ts, order = torch.sort(t)
        spread = float(ts[-1] - ts[0])
        gap = float((ts[1:] - ts[:-1]).min()) if n > 1 else math.inf
        rel = gap / spread if n > 1 and spread > 0 else (math.inf if n == 1 else 0.0)
        candidate_gaps.append(rel)
        if best is None or rel > best[0]:
            best = (rel, i, ts, order, spread, gap)
    rel, index, xs, order, spread, gap = best
    if n > 1 and not gap > 0:
        raise RethinkgenError(
            f"all {n_directions} random directions gave two distinct points the same projection "
            "(the points differ by less than float64 resolution); pass a larger n_directions or another seed")
    ys = Yu[order]
    # biases: b_{i+1} = x_i + θ g_i (in the gap right of x_i), b_1 = x_1 − (1 − θ) · mean gap
    mean_gap = spread / (n - 1) if n > 1 else max(1.0, abs(float(xs[0])))
    b = torch.empty_like(xs)
    b[0] = xs[0] - (1.0 - theta) * mean_gap
    b[1:] = xs[:-1] + theta * (xs[1:] - xs[:-1])
    if n > 1 and not bool(((b[1:] > xs[:-1]) & (b[1:] < xs[1:])).all()):
        raise RethinkgenError("a gap between projections is too small to hold a bias in float64; "
                              "use a theta nearer 0.5 or another seed")
    tried: dict[str, float] = {}
    names = (["slopes", "triangular"] if n <= AUTO_TRIANGULAR_MAX else ["slopes"]) if solver == "auto" else [solver]
    net, used, best = None, names[0], math.inf
    for name in names:
        candidate = InterpolatingNet(dirs[index], b, SOLVERS[name](xs, b, ys), scalar_output=scalar)
        if len(names) > 1:  # keep the solution the network itself evaluates best on the sample
            with torch.no_grad():
                tried[name] = float((candidate.forward_projected(xs).reshape(n, -1) - ys).abs().max())
        if net is None or tried[name] < best:
            net, used, best = candidate, name, tried.get(name, math.inf)
    w = net.w.detach()
    build_time = time.perf_counter() - start

    check = time.perf_counter()
    with torch.no_grad():
        t_all = net.project(X)
        pred = net.forward_projected(t_all).reshape(n_input, -1)
        canc = float(net.cancellation(t_all).max())
    err = pred - Y
    y_scale = float(Y.abs().max())
    y_norm = float(Y.norm())
    max_res = float(err.abs().max())
    min_eig = float((xs - b).min())
    C = Y.shape[1]
    report = InterpolationReport(
        n=n, n_input=n_input, n_merged=n_input - n, d=d, num_outputs=C,
        param_count=sum(p.numel() for p in net.parameters()),
        param_formula="2n + d" if C == 1 else "d + n + n*C",
        max_residual=max_res,
        rel_residual=float(err.norm()) / y_norm if y_norm > 0 else max_res,
        min_eigenvalue=min_eig, min_eigenvalue_rel=min_eig / spread if spread > 0 else math.inf,
        weight_norm=float(w.norm()), max_abs_weight=float(w.abs().max()),
        min_gap=gap, min_gap_rel=rel, spread=spread,
        cancellation=canc / y_scale if y_scale > 0 else 0.0,
        label_accuracy=float((pred.argmax(dim=1) == Y.argmax(dim=1)).double().mean()) if num_classes else None,
        theta=theta, solver=used, solver_residuals=tried, n_directions=n_directions, direction_index=index,
        candidate_gaps_rel=candidate_gaps,
        direction_rule=(f"best of {n_directions} seeded unit Gaussian directions (seed {seed}, stream 'init') "
                        "by min gap / spread of the sorted projections"),
        bias_rule=f"b_(i+1) = x_i + {theta:g}*(x_(i+1) - x_i); b_1 = x_1 - {1 - theta:g}*mean gap",
        seed=seed, time_s=build_time, check_time_s=time.perf_counter() - check,
    )
    return net, report
