"""Kernels k(x, z) evaluated on row blocks (paper Section 5): the registry, matrices and products.

``gaussian`` exp(−‖x−z‖²/(2h²)), ``laplacian`` exp(−‖x−z‖/h) and ``linear`` x·z, evaluated with one GEMM
per block of rows; :func:`kernel_matrix` builds K (or fills a given buffer), :func:`kernel_matvec`
computes K v without storing K, :func:`median_bandwidth` is the median heuristic for h.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rethinkgen.registry import Registry

ROW_BLOCK = 2048  # rows of K built at once when forming kernel blocks (bounded temporaries)

@dataclass(frozen=True)
class KernelSpec:
    """A kernel k(x, z) evaluated on row blocks.

    ``fn(xb, z, xb_sq, z_sq, h)`` returns the (B, M) block k(xb_i, z_j); ``xb_sq``/``z_sq`` are the squared
    row norms (B,) and (M,), so distance kernels cost one GEMM.
    """

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]
    uses_bandwidth: bool
    description: str


KERNELS: Registry[KernelSpec] = Registry("kernel")


def _sqdist(xb: torch.Tensor, z: torch.Tensor, xb_sq: torch.Tensor, z_sq: torch.Tensor) -> torch.Tensor:
    d = torch.addmm(z_sq.unsqueeze(0), xb, z.T, alpha=-2.0)  # (B, M): ||z||² − 2 x·z
    d.add_(xb_sq.unsqueeze(1)).clamp_(min=0.0)
    return d


def _gaussian(xb, z, xb_sq, z_sq, h):
    d = _sqdist(xb, z, xb_sq, z_sq)
    return d.mul_(-1.0 / (2.0 * h * h)).exp_()


def _laplacian(xb, z, xb_sq, z_sq, h):
    d = _sqdist(xb, z, xb_sq, z_sq)
    return d.sqrt_().mul_(-1.0 / h).exp_()


def _linear(xb, z, xb_sq, z_sq, h):
    return xb @ z.T


for _spec in (
    KernelSpec("gaussian", _gaussian, True, "exp(-||x-z||² / (2h²))"),
    KernelSpec("laplacian", _laplacian, True, "exp(-||x-z|| / h)"),
    KernelSpec("linear", _linear, False, "x·z (the paper's K = X Xᵀ; rank ≤ dimension)"),
):
    KERNELS.register(_spec.name)(_spec)


def get_kernel(name: str) -> KernelSpec:
    """The registered kernel ``name``; unknown names raise listing the valid ones."""
    return KERNELS.get(name)


def _diag_value(kernel: KernelSpec, x_sq: torch.Tensor) -> torch.Tensor:
    """Exact k(x_i, x_i): 1 for distance kernels (avoids the round-off of ||x||² + ||x||² − 2x·x)."""
    return x_sq.clone() if kernel.name == "linear" else torch.ones_like(x_sq)


def kernel_block(xb: torch.Tensor, z: torch.Tensor, kernel: str | KernelSpec, h: float,
                 xb_sq: torch.Tensor | None = None, z_sq: torch.Tensor | None = None) -> torch.Tensor:
    """k(xb_i, z_j) for a block of rows: (B, D), (M, D) -> (B, M), in xb's dtype and device."""
    spec = get_kernel(kernel) if isinstance(kernel, str) else kernel
    xb_sq = (xb * xb).sum(1) if xb_sq is None else xb_sq
    z_sq = (z * z).sum(1) if z_sq is None else z_sq
    return spec.fn(xb, z, xb_sq, z_sq, float(h))


def kernel_matrix(x: torch.Tensor, z: torch.Tensor | None = None, kernel: str = "gaussian", h: float = 1.0, *,
                  out: torch.Tensor | None = None, row_block: int = ROW_BLOCK) -> torch.Tensor:
    """The kernel matrix K(x, z) (N, M), built ROW_BLOCK rows at a time.

    With ``z=None`` the symmetric K(x, x) is built: each entry is evaluated once (lower triangle, then
    mirrored), and the diagonal is set to its exact value. ``out`` may be a preallocated (N, M) tensor
    (e.g. the buffer :func:`solve_exact` factors in place).
    """
    spec = get_kernel(kernel)
    sym = z is None
    z = x if sym else z
    n, m = x.shape[0], z.shape[0]
    if out is None:
        out = torch.empty(n, m, dtype=x.dtype, device=x.device)
    elif out.shape != (n, m):
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {(n, m)}")
    x_sq = (x * x).sum(1)
    z_sq = x_sq if sym else (z * z).sum(1)
    for i0 in range(0, n, row_block):
        i1 = min(i0 + row_block, n)
        if sym:
            out[i0:i1, :i1] = spec.fn(x[i0:i1], z[:i1], x_sq[i0:i1], z_sq[:i1], float(h))
            blk = out[i0:i1, i0:i1]
            blk.copy_(blk.tril(-1) + blk.tril(-1).T + torch.diag(_diag_value(spec, x_sq[i0:i1])))
            out[:i0, i0:i1] = out[i0:i1, :i0].T
        else:
            out[i0:i1] = spec.fn(x[i0:i1], z, x_sq[i0:i1], z_sq, float(h))
    return out


def kernel_matvec(x: torch.Tensor, v: torch.Tensor, kernel: str, h: float, z: torch.Tensor | None = None,
                  *, row_block: int = ROW_BLOCK) -> torch.Tensor:
    """K(x, z) @ v computed block by block without storing K: (N, D), (M, C) -> (N, C).

    With ``z=None`` (the symmetric K(x, x)) each off-diagonal block is evaluated once and used for both
    of its products (half the kernel evaluations), and the diagonal uses the exact kernel value, as in
    :func:`kernel_matrix`. Temporaries: one (row_block, N) block.
    """
    spec = get_kernel(kernel)
    x_sq = (x * x).sum(1)
    if z is not None:
        z_sq = (z * z).sum(1)
        out = torch.empty(x.shape[0], v.shape[1], dtype=v.dtype, device=v.device)
        for i0 in range(0, x.shape[0], row_block):
            i1 = min(i0 + row_block, x.shape[0])
            out[i0:i1] = spec.fn(x[i0:i1], z, x_sq[i0:i1], z_sq, float(h)).to(v.dtype) @ v
        return out
    out = torch.zeros(x.shape[0], v.shape[1], dtype=v.dtype, device=v.device)
    for i0 in range(0, x.shape[0], row_block):
        i1 = min(i0 + row_block, x.shape[0])
        blk = spec.fn(x[i0:i1], x[:i1], x_sq[i0:i1], x_sq[:i1], float(h)).to(v.dtype)  # K[i0:i1, :i1]
        d = blk[:, i0:i1].tril(-1)
        d = d + d.T + torch.diag(_diag_value(spec, x_sq[i0:i1]).to(v.dtype))
        out[i0:i1] += blk[:, :i0] @ v[:i0] + d @ v[i0:i1]
        out[:i0] += blk[:, :i0].T @ v[i0:i1]
    return out


def median_bandwidth(x: torch.Tensor, max_points: int = 2000, seed: int = 0) -> float:
    """Median-heuristic bandwidth: the median of ||x_i − x_j|| over pairs i < j of a subsample.

    ``x`` is (N, D); at most ``max_points`` rows, drawn with numpy's generator seeded by ``seed``, are used.
    """
    x = x.reshape(x.shape[0], -1)
    if x.shape[0] > max_points:
        idx = np.random.default_rng(seed).choice(x.shape[0], max_points, replace=False)
        x = x[torch.as_tensor(np.sort(idx), device=x.device)]
    x = x.double()
    sq = (x * x).sum(1)
    d = _sqdist(x, x, sq, sq)
    iu = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
    vals = d[iu[0], iu[1]].sqrt()
    return float(vals.median()) if vals.numel() else 1.0
