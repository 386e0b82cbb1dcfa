"""Conjugate gradients on a kernel operator whose products with K are computed block by block.

For n beyond what an exact solve can hold: memory O(n·block) for the operator, O(n·C) for CG itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from rethinkgen.theory.kernels.functions import ROW_BLOCK, kernel_matrix, kernel_matvec


class KernelOperator:
    """v ↦ (K(X, X) + reg·I) v without storing K (rows built ``row_block`` at a time), or from a dense K.

    ``dense=True`` builds K once (n² memory) and makes each product a cheap GEMM.
    """

    def __init__(self, x: torch.Tensor, kernel: str, h: float, reg: float = 0.0, *, dense: bool = False,
                 row_block: int = ROW_BLOCK) -> None:
        self.x, self.kernel, self.h, self.reg, self.row_block = x, kernel, float(h), float(reg), row_block
        self.n = x.shape[0]
        self.k = kernel_matrix(x, None, kernel, h, row_block=row_block) if dense else None
        self.calls = 0

    def kernel_matvec(self, v: torch.Tensor) -> torch.Tensor:
        """K v (no reg)."""
        self.calls += 1
        if self.k is not None:
            return self.k @ v
        return kernel_matvec(self.x, v, self.kernel, self.h, row_block=self.row_block)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        out = self.kernel_matvec(v)
        return out.add_(v, alpha=self.reg) if self.reg else out


@dataclass
class CGSolution:
    """What :func:`solve_iterative` returns."""

    alpha: torch.Tensor  # (n, C)
    iterations: int
    converged: bool
    rel_residual: torch.Tensor  # (C,) final ‖(K+reg)α − y‖/‖y‖ per column (CG's recursive estimate)


def solve_iterative(matvec: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, *, tol: float = 1e-6,
                    max_iter: int = 1000, precond: torch.Tensor | None = None,
                    callback: Callable[[int, torch.Tensor], None] | None = None) -> CGSolution:
    """Conjugate gradients for A α = Y, all C columns at once (independent step sizes per column).

    ``matvec`` computes A V for V (n, C) (e.g. a :class:`KernelOperator`); ``precond`` an optional
    Jacobi preconditioner (n,) = diag(A). Stops when every column's relative residual ≤ ``tol`` or
    after ``max_iter`` products. Memory O(n·C) on top of the operator.
    """
    y = y.unsqueeze(1) if y.dim() == 1 else y
    inv = None if precond is None else 1.0 / precond.unsqueeze(1)
    alpha = torch.zeros_like(y)
    r = y.clone()
    z = r if inv is None else r * inv
    p = z.clone()
    rz = (r * z).sum(0)
    ynorm = y.norm(dim=0).clamp_min(torch.finfo(y.dtype).tiny)
    rel = r.norm(dim=0) / ynorm
    it = 0
    while it < max_iter and bool((rel > tol).any()):
        ap = matvec(p)
        it += 1
        step = rz / (p * ap).sum(0).clamp_min(torch.finfo(y.dtype).tiny)
        active = (rel > tol).to(y.dtype)  # freeze converged columns
        step = step * active
        alpha.addcmul_(p, step)
        r.sub_(ap * step)
        z = r if inv is None else r * inv
        rz_new = (r * z).sum(0)
        p = z + p * (rz_new / rz.clamp_min(torch.finfo(y.dtype).tiny))
        rz = rz_new
        rel = r.norm(dim=0) / ynorm
        if callback is not None:
            callback(it, rel)
    return CGSolution(alpha=alpha, iterations=it, converged=bool((rel <= tol).all()), rel_residual=rel)
