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

Checked, not assumed
--------------------
:func:`interpolate` evaluates the network it built on every given point and compares the max residual
with ``rtol · max|y|`` (default rtol 1e-6). Points so close along the projection that float64 cannot
separate them (near-duplicates, or far-apart points that share a projection) make that fail: it
raises :class:`InterpolationError` naming the pairs and the fix (``duplicates.py``), never returning
an inexact network.

Layout: ``networks.py`` (the depth-2 and depth-k networks), ``solvers.py`` (A w = y),
``duplicates.py`` (merging, close pairs, advice), ``construction.py`` (:func:`interpolate`).

Depth k
-------
:func:`to_depth_k` turns the network into a depth-k ReLU network with hidden widths O(n/k + C) that
computes the same function everywhere (see :class:`DeepInterpolatingNet`).
"""

from rethinkgen.theory.expressivity.construction import (
    AUTO_TRIANGULAR_MAX,
    DEFAULT_DIRECTIONS,
    DEFAULT_RTOL,
    DEFAULT_THETA,
    InterpolationReport,
    interpolate,
)
from rethinkgen.theory.expressivity.duplicates import (
    EPS64,
    ClosePair,
    DuplicatePointsError,
    InterpolationError,
    merge_duplicates,
)
from rethinkgen.theory.expressivity.networks import DeepInterpolatingNet, InterpolatingNet, to_depth_k
from rethinkgen.theory.expressivity.solvers import SOLVERS, slopes_solve, triangular_solve

__all__ = [
    "AUTO_TRIANGULAR_MAX",
    "DEFAULT_DIRECTIONS",
    "DEFAULT_RTOL",
    "DEFAULT_THETA",
    "EPS64",
    "SOLVERS",
    "ClosePair",
    "DeepInterpolatingNet",
    "DuplicatePointsError",
    "InterpolatingNet",
    "InterpolationError",
    "InterpolationReport",
    "interpolate",
    "merge_duplicates",
    "slopes_solve",
    "to_depth_k",
    "triangular_solve",
]
