"""The exact solve of (K + reg·I) α = Y: a blocked, right-looking Cholesky factorisation in place.

:func:`cholesky_rows_` factors K held as lower block rows (views into a dense matrix, or packed lower
storage: about n²/2 entries) with GEMMs on block × block tiles. When float32 round-off breaks positive
definiteness, :func:`factor_with_jitter_` adds a tiny jitter to the not-yet-factored diagonal and
resumes; :func:`factor_with_global_jitter_` rebuilds with jitter on the whole diagonal when that is
not enough. :func:`solve_exact` (dense K you hold) and :func:`solve_exact_packed` (from the inputs)
return α and K α with the original K.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from rethinkgen.errors import RethinkgenError
from rethinkgen.theory.kernels.functions import _diag_value, get_kernel, kernel_matvec
from rethinkgen.theory.kernels.memory import BLOCK, _dtype_name, block_bounds, resolve_dtype


class NotPositiveDefiniteError(RethinkgenError):
    """The Cholesky factorisation met a non-positive pivot (``index``: its 0-based row; ``block``: the
    row block being factored, whose rows and all later ones are still unfactored)."""

    def __init__(self, index: int, dtype: torch.dtype, block: int = 0) -> None:
        self.index = index
        self.block = block
        fixes = ["add a small ridge (--reg 1e-6)"] + (["use --dtype float64"] if dtype == torch.float32 else [])
        super().__init__(
            f"the kernel matrix is not numerically positive definite in {_dtype_name(dtype)} "
            f"(pivot {index}); " + ", ".join(fixes) + ", or a smaller --bandwidth")


def cholesky_rows_(rows: list[torch.Tensor], bounds: list[tuple[int, int]], start: int = 0) -> None:
    """Right-looking blocked Cholesky of a symmetric matrix stored as lower block rows, in place.

    ``rows[i]`` is the (i1 − i0, i1) block row K[i0:i1, :i1] (columns up to and including the diagonal
    block) — either views into a dense n×n tensor or separate tensors (packed lower storage, half the
    memory). On return the lower triangles hold L (K = L Lᵀ); the strict upper triangles of the diagonal
    blocks are never written. Every update is a GEMM on (block × block) tiles, so no temporary grows
    with n. Raises :class:`NotPositiveDefiniteError` with the failing row and block k; at that point
    blocks < k hold L and blocks ≥ k hold the untouched Schur complement, so the factorisation can be
    resumed with ``start=k`` (e.g. after adding jitter to the remaining diagonal).
    """
    nb = len(bounds)
    for k in range(start, nb):
        k0, k1 = bounds[k]
        d = rows[k][:, k0:k1]
        l11, info = torch.linalg.cholesky_ex(d.tril())
        if int(info) != 0:
            raise NotPositiveDefiniteError(k0 + int(info) - 1, d.dtype, k)
        d.copy_(l11 + d.triu(1))
        for i in range(k + 1, nb):  # panel: L_ik = A_ik L_kk^{-T}
            p = rows[i][:, k0:k1]
            p.copy_(torch.linalg.solve_triangular(l11.T, p, upper=True, left=False))
        for i in range(k + 1, nb):  # trailing update of the lower triangle: A_ij -= L_ik L_jkᵀ
            i0, i1 = bounds[i]
            li = rows[i][:, k0:k1]
            for j in range(k + 1, i):
                j0, j1 = bounds[j]
                rows[i][:, j0:j1].addmm_(li, rows[j][:, k0:k1].T, alpha=-1.0)
            rows[i][:, i0:i1].sub_((li @ li.T).tril())


def solve_rows(rows: list[torch.Tensor], bounds: list[tuple[int, int]], y: torch.Tensor) -> torch.Tensor:
    """Solve L Lᵀ x = y for the factor held in lower block rows (see :func:`cholesky_rows_`). y: (n, C)."""
    z = y.clone()
    for i, (i0, i1) in enumerate(bounds):  # forward: L z = y
        rhs = z[i0:i1]
        if i0:
            rhs -= rows[i][:, :i0] @ z[:i0]
        z[i0:i1] = torch.linalg.solve_triangular(rows[i][:, i0:i1].tril(), rhs, upper=False)
    for i in reversed(range(len(bounds))):  # backward: Lᵀ x = z
        i0, i1 = bounds[i]
        rhs = z[i0:i1]
        for j in range(i + 1, len(bounds)):
            j0, j1 = bounds[j]
            rhs -= rows[j][:, i0:i1].T @ z[j0:j1]
        z[i0:i1] = torch.linalg.solve_triangular(rows[i][:, i0:i1].tril().T, rhs, upper=True)
    return z


def _dense_rows(a: torch.Tensor, block: int) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    if a.dim() != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"need a square matrix, got {tuple(a.shape)}")
    bounds = block_bounds(a.shape[0], block)
    return [a[i0:i1, :i1] for i0, i1 in bounds], bounds


def cholesky_inplace_(a: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """Factor a dense symmetric positive definite ``a`` = L Lᵀ in place (right-looking, ``block`` columns).

    Reads and overwrites only the lower triangle and the diagonal: on return ``a.tril()`` is L and the
    strict upper triangle is untouched (LAPACK ``potrf`` with uplo='L' semantics), so the original
    matrix can be restored (:func:`restore_from_upper_`) or multiplied (:func:`symmetric_matvec_from_upper`).
    Temporaries are O(block²). Raises :class:`NotPositiveDefiniteError` with the failing row.
    """
    rows, bounds = _dense_rows(a, block)
    cholesky_rows_(rows, bounds)
    return a


def cholesky_solve_inplace(l: torch.Tensor, y: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """Solve L Lᵀ x = y where L is the lower triangle of ``l`` (its upper triangle is ignored). y: (n, C)."""
    rows, bounds = _dense_rows(l, block)
    return solve_rows(rows, bounds, y)


def restore_from_upper_(a: torch.Tensor, diag: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """Undo :func:`cholesky_inplace_`: refill the lower triangle from the untouched upper one and ``diag``."""
    for i0, i1 in block_bounds(a.shape[0], block):
        a[i0:i1, :i0] = a[:i0, i0:i1].T
        d = a[i0:i1, i0:i1]
        d.copy_(d.triu(1) + d.triu(1).T + torch.diag(diag[i0:i1]))
    return a


def symmetric_matvec_from_upper(a: torch.Tensor, diag: torch.Tensor, v: torch.Tensor,
                                block: int = BLOCK) -> torch.Tensor:
    """K v for the symmetric K whose strict upper triangle is ``a.triu(1)`` and diagonal ``diag``."""
    n = a.shape[0]
    out = diag.unsqueeze(1) * v
    for i0, i1 in block_bounds(n, block):
        d = a[i0:i1, i0:i1].triu(1)
        out[i0:i1] += d @ v[i0:i1] + d.T @ v[i0:i1]
        if i1 < n:
            u = a[i0:i1, i1:]  # (b, n - i1), strictly above the diagonal
            out[i0:i1] += u @ v[i1:]
            out[i1:] += u.T @ v[i0:i1]
    return out


@dataclass
class ExactSolution:
    """What the exact solvers return: α (n, C), K α with the original K, the jitter used, notes, timings."""

    alpha: torch.Tensor
    k_alpha: torch.Tensor
    jitter: float  # absolute value added to the diagonal on top of ``reg`` (0.0 if none was needed)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def jitter_schedule(dtype: torch.dtype) -> tuple[float, ...]:
    """Relative jitters (× mean diagonal) tried, in order, when the Cholesky fails."""
    if dtype == torch.float32:
        return (1e-6, 1e-5, 1e-4, 1e-3)
    return (1e-12, 1e-10, 1e-8, 1e-6)


def factor_with_jitter_(rows: list[torch.Tensor], bounds: list[tuple[int, int]], mean_diag: float, *,
                        retry_jitter: bool = True,
                        log: Callable[[str], None] | None = None) -> tuple[float, list[str]]:
    """:func:`cholesky_rows_`, retrying failed pivots with diagonal jitter; returns (jitter, notes).

    On a non-positive pivot in block k (usual in float32 for smooth kernels), blocks < k are already
    factored and blocks ≥ k hold the Schur complement S of the rows so far; adding δ to S's diagonal
    is the same as adding δ to K's diagonal from row k0 on. So we add the next jitter of
    :func:`jitter_schedule` (× mean diag K) there and resume at block k — nothing is rebuilt or
    refactored. The result is the exact factor of K + D, D diagonal, 0 before the first failing block
    and at most the returned jitter after it; the notes say where. With ``retry_jitter=False`` the
    first failure raises :class:`NotPositiveDefiniteError`.
    """
    say = log or (lambda s: None)
    dtype = rows[0].dtype
    schedule = jitter_schedule(dtype) if retry_jitter else ()
    jitter, start, notes = 0.0, 0, []
    for attempt in range(len(schedule) + 1):
        try:
            cholesky_rows_(rows, bounds, start)
            break
        except NotPositiveDefiniteError as e:
            if attempt == len(schedule):
                raise
            new = schedule[attempt] * mean_diag
            for r, (i0, i1) in zip(rows[e.block:], bounds[e.block:], strict=True):
                r[:, i0:i1].diagonal().add_(new - jitter)
            row0 = bounds[e.block][0]
            notes.append(f"Cholesky met a non-positive pivot in {_dtype_name(dtype)} at row {e.index} "
                         f"(jitter {jitter:.3g}); added jitter {new:.3g} (= {schedule[attempt]:.0e}·mean "
                         f"diag K) to the diagonal from row {row0} on and resumed there")
            say(notes[-1])
            jitter, start = new, e.block
    return jitter, notes


def factor_with_global_jitter_(rebuild: Callable[[float], tuple[list[torch.Tensor], list[tuple[int, int]]]],
                               mean_diag: float, dtype: torch.dtype, notes: list[str],
                               log: Callable[[str], None] | None = None
                               ) -> tuple[list[torch.Tensor], list[tuple[int, int]], float]:
    """The fallback of :func:`factor_with_jitter_`: jitter on the *whole* diagonal, factored from scratch.

    Jitter added only from the failing block on (the in-place resume) cannot repair a Schur complement
    that float32 round-off in the leading, unjittered rows has already made indefinite: on the 60,000
    wavelet-feature MNIST system, resuming failed even at 1e-3 while 1e-4 on the whole diagonal works.
    ``rebuild(δ)`` returns fresh block rows of K + (reg + δ)·I; the schedule of :func:`jitter_schedule`
    is tried from its start. Returns the factored rows, their bounds and the jitter δ. Only one set of
    rows is alive at a time (the caller must have dropped its own, see :func:`solve_exact_packed`).
    """
    say = log or (lambda s: None)
    failure = (0, 0)
    for eps in jitter_schedule(dtype):
        jitter = eps * mean_diag
        rows, bounds = rebuild(jitter)
        failure = _try_factor_(rows, bounds)
        if failure is None:
            notes.append(f"rebuilt K with jitter {jitter:.3g} (= {eps:.0e}·mean diag K) on the whole diagonal "
                         "(resuming with jitter on the trailing rows only had failed) and factored it")
            say(notes[-1])
            return rows, bounds, jitter
        notes.append(f"rebuilt K with jitter {jitter:.3g} (= {eps:.0e}·mean diag K) on the whole diagonal: "
                     f"still a non-positive pivot at row {failure[0]}")
        say(notes[-1])
        del rows  # before the next rebuild: never two n×n factors at once
    raise NotPositiveDefiniteError(failure[0], dtype, failure[1])


def _try_factor_(rows: list[torch.Tensor], bounds: list[tuple[int, int]]) -> tuple[int, int] | None:
    """:func:`cholesky_rows_` from the start; None, or the failing (row, block). Returns no exception:
    its traceback would keep the failed rows (gigabytes) alive while the caller rebuilds them."""
    try:
        cholesky_rows_(rows, bounds, 0)
    except NotPositiveDefiniteError as e:
        return e.index, e.block
    return None


def _factor_or_none(rows: list[torch.Tensor], bounds: list[tuple[int, int]], mean_diag: float,
                    retry_jitter: bool, log: Callable[[str], None]) -> float | None:
    """:func:`factor_with_jitter_`; None when even its largest jitter failed (and ``retry_jitter``).
    Returns outside the ``except`` so that the failure's traceback (which holds the rows) is gone."""
    try:
        return factor_with_jitter_(rows, bounds, mean_diag, retry_jitter=retry_jitter, log=log)[0]
    except NotPositiveDefiniteError:
        if not retry_jitter:
            raise
    return None


def solve_exact(k: torch.Tensor, y: torch.Tensor, reg: float = 0.0, dtype: str | torch.dtype | None = None,
                *, block: int = BLOCK, retry_jitter: bool = True) -> ExactSolution:
    """Solve (K + reg·I) α = Y for a dense K by the blocked in-place Cholesky; **overwrites** K's lower part.

    ``k``: (n, n) symmetric, both triangles filled (e.g. :func:`kernel_matrix`), float32 or float64;
    the solve runs in ``dtype`` (default: K's dtype; a different dtype converts K, costing a copy).
    ``y``: (n, C) targets (one-hot for classification). If the factorisation fails (a non-positive
    pivot, usual in float32 for smooth kernels), jitter is added to the remaining diagonal and the
    factorisation resumes (:func:`factor_with_jitter_`); the jitter is returned and a note says where.
    With ``retry_jitter=False`` the failure raises :class:`NotPositiveDefiniteError`.

    Returns α (n, C) and K α, where K is the original kernel matrix **without** reg/jitter (from the
    kept upper triangle), so the residual ‖Kα − Y‖/‖Y‖ and the RKHS norm αᵀKα are those of K.
    :func:`solve_exact_packed` does the same from the inputs with half the memory.
    """
    if dtype is not None:
        dt = resolve_dtype(dtype)
        if k.dtype != dt:
            k = k.to(dt)
    n = k.shape[0]
    y = y.to(device=k.device, dtype=k.dtype)
    y = y.unsqueeze(1) if y.dim() == 1 else y
    if y.shape[0] != n:
        raise ValueError(f"K is {n}×{n} but Y has {y.shape[0]} rows")
    diag = k.diagonal().clone()
    if reg:
        k.diagonal().add_(reg)
    t0 = time.perf_counter()
    rows, bounds = _dense_rows(k, block)
    mean_diag = float(diag.double().mean())
    notes: list[str] = []
    jitter = _factor_or_none(rows, bounds, mean_diag, retry_jitter, notes.append)
    if jitter is None:

        def rebuild(jitter: float) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
            restore_from_upper_(k, diag + reg + jitter, block)
            return _dense_rows(k, block)

        rows, bounds, jitter = factor_with_global_jitter_(rebuild, mean_diag, k.dtype, notes)
    t1 = time.perf_counter()
    alpha = solve_rows(rows, bounds, y)
    k_alpha = symmetric_matvec_from_upper(k, diag, alpha, block)
    return ExactSolution(alpha=alpha, k_alpha=k_alpha, jitter=jitter, notes=notes,
                         timings={"factor_s": t1 - t0, "residual_s": time.perf_counter() - t1})


def packed_rows(x: torch.Tensor, kernel: str, h: float, block: int = BLOCK,
                diag_add: float = 0.0) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    """K(x, x) as packed lower block rows: rows[i] = K[i0:i1, :i1] (about n²/2 + n·block/2 entries).

    The diagonal gets its exact kernel value plus ``diag_add`` (ridge + jitter).
    """
    spec = get_kernel(kernel)
    x_sq = (x * x).sum(1)
    bounds = block_bounds(x.shape[0], block)
    rows = []
    for i0, i1 in bounds:
        r = spec.fn(x[i0:i1], x[:i1], x_sq[i0:i1], x_sq[:i1], float(h))
        r[:, i0:i1].diagonal().copy_(_diag_value(spec, x_sq[i0:i1]) + diag_add)
        rows.append(r)
    return rows, bounds


def solve_exact_packed(x: torch.Tensor, y: torch.Tensor, kernel: str, h: float, reg: float = 0.0, *,
                       block: int = BLOCK, retry_jitter: bool = True,
                       log: Callable[[str], None] | None = None) -> ExactSolution:
    """Solve (K(x, x) + reg·I) α = Y with K built and factored in packed lower block rows.

    Memory ≈ (n²/2 + n·block/2) entries — 7.7 GB for n = 60,000 in float32 (the dense matrix would be
    14.4 GB), 15.4 GB in float64. ``x`` (n, D) and ``y`` (n, C) in the solve's dtype and device. A failed
    pivot is retried with jitter in place (:func:`factor_with_jitter_`). K α is recomputed
    afterwards block by block (:func:`kernel_matvec`, half the kernel evaluations), with the original K.
    """
    say = log or (lambda s: None)
    spec = get_kernel(kernel)
    y = y.to(device=x.device, dtype=x.dtype)
    y = y.unsqueeze(1) if y.dim() == 1 else y
    mean_diag = float(_diag_value(spec, (x * x).sum(1)).double().mean())
    t0 = time.perf_counter()
    rows, bounds = packed_rows(x, spec.name, h, block, diag_add=reg)
    timings = {"kernel_s": time.perf_counter() - t0}
    gb = sum(r.numel() for r in rows) * x.element_size() / 1e9
    say(f"kernel matrix (packed lower, {gb:.1f} GB) built in {timings['kernel_s']:.1f} s")
    t0 = time.perf_counter()
    notes: list[str] = []

    def log(note: str) -> None:
        notes.append(note)
        say(note)

    jitter = _factor_or_none(rows, bounds, mean_diag, retry_jitter, log)
    if jitter is None:  # resuming with jitter failed: rebuild with jitter on the whole diagonal
        del rows  # the failed factor goes first (7.7 GB at n = 60,000)

        def rebuild(jitter: float) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
            return packed_rows(x, spec.name, h, block, diag_add=reg + jitter)

        rows, bounds, jitter = factor_with_global_jitter_(rebuild, mean_diag, x.dtype, notes, log=say)
    timings["factor_s"] = time.perf_counter() - t0
    say(f"Cholesky factorisation done in {timings['factor_s']:.1f} s")
    t0 = time.perf_counter()
    alpha = solve_rows(rows, bounds, y)
    del rows
    timings["triangular_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    k_alpha = kernel_matvec(x, alpha, spec.name, h, row_block=block)
    timings["residual_s"] = time.perf_counter() - t0
    return ExactSolution(alpha=alpha, k_alpha=k_alpha, jitter=jitter, notes=notes, timings=timings)
