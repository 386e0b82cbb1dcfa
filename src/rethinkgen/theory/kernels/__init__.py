"""Minimum-norm kernel interpolation (paper Section 5, "implicit regularization: linear models").

SGD from zero on a model that is linear in its features stays in the span of the data, w = Xᵀα, and
when it interpolates it solves equation (3), ``K α = y`` with ``K = X Xᵀ`` (the kernel trick). Its
solution is the minimum-RKHS-norm interpolant f(x) = Σ_i α_i k(x_i, x). The paper solves (3) on MNIST
with no preprocessing (1.2% test error) and on Gabor-wavelet features (0.6%), one-hot targets, no ridge.

This module builds kernel matrices in row blocks with torch and solves (3) in one of two ways:

- exact: a blocked, right-looking Cholesky factorisation **in place** (:func:`cholesky_rows_`, GEMMs
  on 4,096×4,096 tiles, no temporary that grows with n). :func:`solve_exact_packed` (what
  :func:`fit_min_norm` uses) builds K directly in *packed lower block rows* — only the lower triangle
  is ever stored, about n²/2 entries: 7.7 GB for n = 60,000 in float32 (15.4 GB in float64), where the
  dense matrix would take 14.4 (28.8) GB. :func:`solve_exact` factors a dense K you already hold,
  overwriting only its lower triangle: the strict upper triangle keeps the original values, so K α
  needs no recomputation. Both refuse before allocating when the memory is not there, and when
  float32 round-off breaks positive definiteness they add a tiny jitter to the not-yet-factored
  diagonal and resume where they stopped (:func:`factor_with_jitter_`), saying so in the result.
- :func:`solve_iterative`: conjugate gradients on a :class:`KernelOperator` whose products with K are
  computed block by block on the fly (memory O(n·block)), for n beyond what fits in memory.

Why not numpy/scipy: their bundled OpenBLAS segfaulted in ``X @ X.T`` and ``?potrf`` at n ≳ 23,000 on
these machines, and LAPACK through torch (``torch.linalg.cholesky``) always allocates its output.
:func:`fit_min_norm` ties it together and reports test error, RKHS norm √(αᵀKα) per class and overall,
relative residual ‖Kα − Y‖/‖Y‖, time and peak memory — and checks them: identical training points
with different labels are refused by name, a negative αᵀKα or an unconverged CG is a numerical failure
(``status``), never a number.

Layout: ``functions.py`` (kernels, K, K v), ``memory.py`` (devices, dtypes, memory refusal),
``cholesky.py`` (the exact solve), ``cg.py`` (conjugate gradients), ``duplicates.py`` (duplicate and
near-duplicate training points), ``fit.py`` (:func:`fit_min_norm`), ``bandwidth.py`` (choosing h).
"""

from rethinkgen.theory.kernels.bandwidth import BANDWIDTH_FACTORS, BandwidthChoice, select_bandwidth
from rethinkgen.theory.kernels.cg import CGSolution, KernelOperator, solve_iterative
from rethinkgen.theory.kernels.cholesky import (
    ExactSolution,
    NotPositiveDefiniteError,
    cholesky_inplace_,
    cholesky_rows_,
    cholesky_solve_inplace,
    factor_with_global_jitter_,
    factor_with_jitter_,
    jitter_schedule,
    packed_rows,
    restore_from_upper_,
    solve_exact,
    solve_exact_packed,
    solve_rows,
    symmetric_matvec_from_upper,
)
from rethinkgen.theory.kernels.duplicates import (
    ConflictingDuplicatesError,
    Duplicates,
    NearPair,
    closest_pairs,
    find_duplicates,
)
from rethinkgen.theory.kernels.fit import (
    INACCURATE,
    STATUSES,
    KernelFitError,
    KernelResult,
    check_duplicates,
    check_reg,
    fit_min_norm,
    one_hot,
)
from rethinkgen.theory.kernels.functions import (
    KERNELS,
    ROW_BLOCK,
    KernelSpec,
    get_kernel,
    kernel_block,
    kernel_matrix,
    kernel_matvec,
    median_bandwidth,
)
from rethinkgen.theory.kernels.memory import (
    BLOCK,
    MEMORY_HEADROOM,
    available_memory,
    block_bounds,
    check_exact_memory,
    exact_solve_bytes,
    peak_memory_bytes,
    resolve_device,
    resolve_dtype,
)

__all__ = [
    "BANDWIDTH_FACTORS", "BLOCK", "INACCURATE", "KERNELS", "MEMORY_HEADROOM", "ROW_BLOCK", "STATUSES",
    "BandwidthChoice", "CGSolution", "ConflictingDuplicatesError", "Duplicates", "ExactSolution",
    "KernelFitError", "KernelOperator", "KernelResult", "KernelSpec", "NearPair", "NotPositiveDefiniteError",
    "available_memory", "block_bounds", "check_duplicates", "check_exact_memory", "check_reg", "cholesky_inplace_",
    "cholesky_rows_", "cholesky_solve_inplace", "closest_pairs", "exact_solve_bytes",
    "factor_with_global_jitter_", "factor_with_jitter_", "find_duplicates", "fit_min_norm", "get_kernel",
    "jitter_schedule", "kernel_block", "kernel_matrix", "kernel_matvec", "median_bandwidth", "one_hot",
    "packed_rows", "peak_memory_bytes", "resolve_device", "resolve_dtype", "restore_from_upper_",
    "select_bandwidth", "solve_exact", "solve_exact_packed", "solve_iterative", "solve_rows",
    "symmetric_matvec_from_upper",
]
