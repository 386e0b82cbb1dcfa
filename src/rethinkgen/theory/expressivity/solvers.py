"""Solving Theorem 1's lower-triangular system ``A w = y``, ``A_ij = max(x_i − b_j, 0)`` (Appendix C).

Two solvers of the same system: :func:`slopes_solve` in O(n) through the slopes of the piecewise
linear interpolant, and :func:`triangular_solve` by ``torch.linalg.solve_triangular`` on the dense A
(the reference). The expressivity package docstring explains how errors travel through each.
"""

from __future__ import annotations

import numpy as np
import torch


def triangular_solve(x: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Solve ``A w = y`` with A = [max(x_i − b_j, 0)] by ``torch.linalg.solve_triangular`` (float64).

    O(n²) memory (A is built densely): the reference the O(n) :func:`slopes_solve` is checked against.
    x, b: (n,) sorted and interleaved; y: (n, C). Returns w (n, C).
    """
    A = torch.relu(x[:, None] - b[None, :]).tril()
    return torch.linalg.solve_triangular(A, y.reshape(len(x), -1).to(torch.float64), upper=False)


def slopes_solve(x: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Solve ``A w = y`` in O(n) through the slopes ``s_i = w_1 + ... + w_i`` (package docstring).

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
    # Nearly coincident knots (q, p ~ 1e-16) can overflow to inf/nan here: no warning, the caller's
    # residual check in construction.interpolate reports the fit as inexact (NaN included), naming the close pairs.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for i in range(n - 1):
            prev = (dy[i] - prev * p[i]) / q[i]
            s[i + 1] = prev
    w = np.diff(s, axis=0, prepend=np.zeros((1, s.shape[1])))
    return torch.from_numpy(w)


SOLVERS = {"slopes": slopes_solve, "triangular": triangular_solve}
