"""The experiment of Section 5: :func:`fit_min_norm` solves K α = Y, checks the solution, reports on it.

Checked before the solve: identical training points with different labels (no interpolant exists:
refused, naming them) and with equal labels (merged: the same interpolant, without a singular K).
Checked after: the relative residual ‖Kα − Y‖/‖Y‖ (a ``reg = 0`` solve above 1e-2 is not an
interpolant), αᵀKα ≥ 0 per class (a negative quadratic form is a numerical failure, never clamped),
CG convergence. The result's ``status`` says which failed and ``problems`` why, naming near-duplicate
training points when they are the cause, with advice that fits the dtype.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from rethinkgen.errors import ConfigError, RethinkgenError
from rethinkgen.theory.kernels.cg import KernelOperator, solve_iterative
from rethinkgen.theory.kernels.cholesky import solve_exact_packed
from rethinkgen.theory.kernels.duplicates import (
    SHOWN,
    ConflictingDuplicatesError,
    closest_pairs,
    find_duplicates,
    resolution,
)
from rethinkgen.theory.kernels.functions import get_kernel, kernel_matvec, median_bandwidth
from rethinkgen.theory.kernels.memory import (
    BLOCK,
    _dtype_name,
    available_memory,
    check_exact_memory,
    peak_memory_bytes,
    resolve_device,
    resolve_dtype,
)

#: A ``reg = 0`` solve whose relative residual exceeds this is not an interpolant (status "inaccurate").
INACCURATE = 1e-2
#: ``status`` values: the first is a result, the others say why the α is not the interpolant.
STATUSES = ("ok", "not_converged", "inaccurate", "numerical_failure")


class KernelFitError(RethinkgenError):
    """A kernel fit finished but its α is not a result (``result.status`` != "ok"; ``result.problems``)."""

    def __init__(self, message: str, result: KernelResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class KernelResult:
    """One min-norm kernel interpolation (paper Section 5): what ``rethinkgen kernel fit`` reports."""

    n_train: int
    n_test: int
    dim: int  # input dimension after features
    kernel: str
    bandwidth: float | None  # h (None for the linear kernel)
    reg: float
    solver: str  # "exact" | "cg"
    dtype: str
    device: str
    test_error: float  # fraction of test points misclassified by argmax_c f_c(x)
    train_error: float  # on the training set, from K α (0 for an interpolant)
    norm: float  # RKHS norm of the solution: sqrt(Σ_c α_cᵀ K α_c); NaN when some α_cᵀ K α_c < 0
    norm_per_class: list[float]  # sqrt(α_cᵀ K α_c) per class c (NaN where negative: a numerical failure)
    rel_residual: float  # ‖K α − Y‖_F / ‖Y‖_F with the original K (no reg, no jitter)
    time_s: float  # wall time of the whole fit (kernel, solve, residual, prediction)
    peak_mem_bytes: int  # process peak RSS (CPU) or CUDA max allocated (GPU)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase (kernel_s, factor_s, ...)
    jitter: float = 0.0  # added to the diagonal by the exact solver's retry (0 if none)
    cg_iterations: int | None = None
    cg_converged: bool | None = None
    notes: list[str] = field(default_factory=list)
    status: str = "ok"  # one of STATUSES
    problems: list[str] = field(default_factory=list)  # why status is not "ok", with the fix
    quadratic_form: list[float] = field(default_factory=list)  # α_cᵀ K α_c per class, as computed
    duplicates_merged: int = 0  # exact duplicate training points (equal labels) solved as one
    alpha: torch.Tensor | None = field(default=None, repr=False)  # (n, C) coefficients (not serialised)

    def to_dict(self) -> dict:
        """JSON-able dict of every field except ``alpha``."""
        d = asdict(self)  # deep-copies alpha too; cheap next to the fit
        d.pop("alpha")
        return d


def one_hot(y: torch.Tensor, num_classes: int | None = None,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N,) int labels -> (N, C) one-hot targets in ``dtype``."""
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    return torch.nn.functional.one_hot(y.long(), num_classes).to(dtype)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def check_reg(reg: float) -> float:
    """``reg`` as a float, refused (ConfigError) unless finite and >= 0."""
    reg = float(reg)
    if not (math.isfinite(reg) and reg >= 0):
        raise ConfigError(f"--reg (the ridge λ) must be a finite number >= 0, got {reg:g}; 0 interpolates "
                          "(paper eq. 3)")
    return reg


def check_duplicates(x: torch.Tensor, y: torch.Tensor, reg: float, dtype: torch.dtype,
                     source: torch.Tensor | None = None) -> tuple[torch.Tensor | None, list[str]]:
    """Refuse identical training points with different targets (``reg = 0``); find those to merge.

    ``x`` (n, D) in the solve's ``dtype``, ``y`` (n, C); ``source`` the points before conversion (to
    tell whether float64 would keep a pair apart). Returns (the index of each point's first copy, or
    None when nothing is merged; notes). Raises :class:`ConflictingDuplicatesError` naming the pairs.
    """
    labels = y.argmax(1).cpu()
    dups = find_duplicates(x, y)
    notes: list[str] = []
    if dups.conflicting:
        what = (f"{dups.describe_conflicts(labels)} are identical in {_dtype_name(dtype)} but labelled "
                "differently")
        if reg > 0:
            notes.append(what + ": with the ridge the fit is defined, but it cannot interpolate them")
            return None, notes
        fixes = ["remove or relabel one point of each pair"]
        if source is not None and source.dtype == torch.float64 and dtype != torch.float64:
            apart = [(i, j) for i, j in dups.conflicting if not torch.equal(source[i], source[j])]
            if apart:
                fixes.append(f"--dtype float64 ({len(apart)} of the pairs differ in float64)")
        fixes.append("a ridge --reg > 0 (then the fit no longer interpolates)")
        raise ConflictingDuplicatesError(
            f"{what}: K α = Y has no solution, so no kernel interpolates them (K has two equal rows with "
            "different targets). Fix: " + "; or ".join(fixes) + ".", dups.conflicting)
    if dups.same:
        i, j = dups.same[0]
        notes.append(f"{len(dups.same)} training points are exact copies of others with the same label "
                     f"(e.g. {j} of {i}); K of the distinct points was solved and α split evenly among the "
                     "copies: the same interpolant and norm, without a singular K")
        return dups.first, notes
    return None, notes


def _near_duplicate_problem(x: torch.Tensor, y: torch.Tensor, kernel: str, h: float, dtype: torch.dtype,
                            log: Callable[[str], None]) -> str:
    """Name the closest training points and what would separate them (advice that fits ``dtype``)."""
    if kernel not in ("gaussian", "laplacian"):
        return ""
    log("looking for near-duplicate training points (one pass over the pairwise distances)")
    pairs = closest_pairs(x, y.argmax(1), kernel, h, count=1000)
    tiny = [p for p in pairs if p.one_minus_k < resolution(dtype)]
    if not tiny:
        fixes = ["a smaller --bandwidth", "a ridge --reg"]
        if dtype == torch.float32:
            fixes.insert(0, "--dtype float64")
        closest = f" (closest pair: 1 − k = {pairs[0].one_minus_k:.2g})" if pairs else ""
        return (f"no near-duplicate training points explain it{closest}: K is ill-conditioned at this bandwidth. "
                "Fix: " + "; or ".join(fixes))
    shown = "; ".join(f"{p.i} and {p.j} ({p.distance:.2g} apart, 1 − k = {p.one_minus_k:.2g}, "
                      f"{'same' if p.same_label else 'different'} labels)" for p in tiny[:SHOWN])
    fixes = []
    if dtype == torch.float32 and all(p.one_minus_k >= resolution(torch.float64) for p in tiny):
        fixes.append("--dtype float64 (it resolves these pairs)")
    fixes.append("remove one point of each pair")
    r, delta = resolution(dtype), min(p.distance for p in tiny)
    h_max = delta / math.sqrt(2 * r) if kernel == "gaussian" else delta / r  # 1 − k(δ) >= r
    fixes.append(f"a bandwidth below {h_max:.2g} (now {h:.3g}; 1 − k grows like "
                 + ("δ²/(2h²)" if kernel == "gaussian" else "δ/h") + ")")
    fixes.append("a ridge --reg")
    count = f"{len(tiny)} pairs" if len(tiny) < len(pairs) or len(pairs) < 1000 else "at least 1,000 pairs"
    return (f"{count} of training points are near-duplicates that K cannot tell apart in {_dtype_name(dtype)} "
            f"(1 − k below {resolution(dtype):.1g}); the closest: {shown}. Fix: " + "; or ".join(fixes))


def fit_min_norm(x_train: torch.Tensor, y_onehot: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                 kernel: str = "gaussian", bandwidth: float | None = None, reg: float = 0.0,
                 solver: str = "exact", dtype: str | torch.dtype = "float32",
                 device: str | torch.device = "auto",
                 *, block: int = BLOCK, cg_tol: float = 1e-6, cg_max_iter: int = 2000,
                 keep_alpha: bool = False, diagnose: bool = True,
                 log: Callable[[str], None] | None = None) -> KernelResult:
    """Solve (K + reg·I) α = Y (paper eq. 3, reg = 0: the minimum-norm interpolant) and evaluate it.

    Parameters
    ----------
    x_train : (n, ...) inputs, flattened to (n, D).
    y_onehot : (n, C) targets.
    x_test : (m, ...) inputs.
    y_test : (m,) int labels.
    kernel : "gaussian" | "laplacian" | "linear".
    bandwidth : h (None -> :func:`median_bandwidth` of x_train; ignored by "linear").
    reg : ridge added to the diagonal.
    solver : "exact" (in-place blocked Cholesky; refuses before allocating when n² doesn't fit) or "cg".
    dtype : "float32" | "float64".
    device : "auto" | "cpu" | "cuda".
    diagnose : when the solve is inaccurate, look for near-duplicate training points (one O(n²·D) pass)
        to name them.

    Returns
    -------
    :class:`KernelResult` with test error, RKHS norms √(α_cᵀKα_c), relative residual, time, memory, and
    ``status``: "ok", "not_converged" (CG stopped at ``cg_max_iter``), "inaccurate" (reg = 0 and
    relative residual > 1e-2: not an interpolant) or "numerical_failure" (α_cᵀKα_c < 0 for some class,
    or non-finite α); ``problems`` says why, naming near-duplicate points when they are the cause.

    Raises
    ------
    ConfigError : unknown solver, kernel or dtype; reg < 0; bandwidth <= 0.
    ConflictingDuplicatesError : identical training points with different labels and reg = 0 (named).
    RethinkgenError : the exact solve does not fit in memory (the fixes named).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(200, 5, generator=g); y = (x[:, 0] > 0.5).long()
    >>> r = fit_min_norm(x[:150], one_hot(y[:150], 2), x[150:], y[150:], bandwidth=0.5, dtype="float64",
    ...                  device="cpu")
    >>> r.status, r.train_error, r.rel_residual < 1e-6
    ('ok', 0.0, True)
    """
    t_start = time.perf_counter()
    say = log or (lambda s: None)
    spec = get_kernel(kernel)
    if solver not in ("exact", "cg"):
        raise ConfigError(f"unknown solver {solver!r}; valid: exact, cg")
    reg = check_reg(reg)
    dt = resolve_dtype(dtype)
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    xtr = _flat(x_train).to(device=dev, dtype=dt)
    xte = _flat(x_test).to(device=dev, dtype=dt)
    y = y_onehot.to(device=dev, dtype=dt)
    if y.dim() != 2 or y.shape[0] != xtr.shape[0]:
        raise ValueError(f"y_onehot must be (n, C) with n = {xtr.shape[0]}, got {tuple(y.shape)}")
    n, m = xtr.shape[0], xte.shape[0]
    if not spec.uses_bandwidth:
        h = None
    else:
        h = median_bandwidth(xtr) if bandwidth is None else float(bandwidth)
        if not h > 0:
            raise ConfigError(f"bandwidth must be > 0, got {h}")
    hk = 1.0 if h is None else h
    first, notes = check_duplicates(xtr, y, reg, dt, _flat(x_train))
    keep = None if first is None else (first == torch.arange(n)).nonzero().flatten()
    xs, ys = (xtr, y) if keep is None else (xtr[keep.to(dev)], y[keep.to(dev)])
    timings: dict[str, float] = {}
    jitter, cg_iters, cg_conv = 0.0, None, None

    if solver == "exact":
        check_exact_memory(xs.shape[0], dt, dev, block)
        sol = solve_exact_packed(xs, ys, spec.name, hk, reg, block=block, log=say)
        timings.update(sol.timings)
        alpha, k_alpha, jitter = sol.alpha, sol.k_alpha, sol.jitter
        notes += sol.notes
        del sol
    else:
        item = torch.empty((), dtype=dt).element_size()
        dense = xs.shape[0] ** 2 * item < 0.5 * available_memory(dev)
        t0 = time.perf_counter()
        op = KernelOperator(xs, spec.name, hk, reg, dense=dense)
        timings["kernel_s"] = time.perf_counter() - t0
        notes.append("CG with K stored densely" if dense
                     else "CG with K rebuilt block by block at every product")
        t0 = time.perf_counter()
        cg = solve_iterative(op, ys, tol=cg_tol, max_iter=cg_max_iter)
        timings["solve_s"] = time.perf_counter() - t0
        alpha, cg_iters, cg_conv = cg.alpha, cg.iterations, cg.converged
        say(f"CG: {cg_iters} iterations, converged={cg_conv}, in {timings['solve_s']:.1f} s")
        t0 = time.perf_counter()
        k_alpha = op.kernel_matvec(alpha)
        timings["residual_s"] = time.perf_counter() - t0
        del op
    if keep is not None:  # back to every training point: copies share their group's α evenly
        slot = torch.full((n,), -1, dtype=torch.long)
        slot[keep] = torch.arange(len(keep))
        group = slot[first].to(dev)
        copies = torch.bincount(group, minlength=len(keep)).to(alpha.dtype)
        alpha = (alpha / copies[:, None])[group]
        k_alpha = k_alpha[group]

    # Residual, norms and training error, all against the original K (no reg, no jitter).
    y64, ka64, a64 = y.double(), k_alpha.double(), alpha.double()
    rel_res = float((ka64 - y64).norm() / y64.norm())
    quad = (a64 * ka64).sum(0)  # α_cᵀ K α_c per class: >= 0 for a positive semidefinite K
    train_err = float((ka64.argmax(1) != y64.argmax(1)).double().mean())

    t0 = time.perf_counter()
    pred = kernel_matvec(xte, alpha, spec.name, hk, z=xtr) if m else torch.empty(0, y.shape[1], device=dev)
    timings["predict_s"] = time.perf_counter() - t0
    yt = y_test.to(dev)
    test_err = float((pred.argmax(1) != yt).double().mean()) if m else float("nan")

    status, problems = "ok", []
    negative = [c for c, v in enumerate(quad.tolist()) if not v >= 0]
    if not (bool(torch.isfinite(a64).all()) and bool(torch.isfinite(ka64).all())):
        status = "numerical_failure"
        problems.append(f"the solve produced non-finite α or K α in {_dtype_name(dt)}")
    elif negative:
        status = "numerical_failure"
        problems.append(f"α_cᵀ K α_c < 0 for class{'es' if len(negative) > 1 else ''} "
                        f"{', '.join(map(str, negative))} (down to {min(quad[c] for c in negative).item():.3g}): "
                        "impossible for a positive semidefinite K, so the solve failed numerically; those "
                        "norms are undefined (NaN), not 0")
    if cg_conv is False:
        status = status if status != "ok" else "not_converged"
        problems.append(f"CG stopped after {cg_iters} iterations before reaching tol {cg_tol:g}: α is not the "
                        "solution; raise --cg-max-iter or use --solver exact")
    if spec.name == "linear" and xtr.shape[1] < n:
        status = status if status != "ok" else "inaccurate"
        problems.append(f"the linear kernel K = X Xᵀ has rank ≤ {xtr.shape[1]} < n = {n}: K α = Y has no exact "
                        "solution (the paper's reason for a nonlinear kernel on raw MNIST); use gaussian or "
                        "laplacian, or features of dimension ≥ n")
    elif reg == 0 and not rel_res <= INACCURATE:
        status = status if status != "ok" else "inaccurate"
        why = f"relative residual {rel_res:.2g} > {INACCURATE:g}: K α = Y is not solved in {_dtype_name(dt)}"
        if diagnose:
            why += "; " + (_near_duplicate_problem(_flat(x_train), y, spec.name, hk, dt, say)
                           or "K is numerically singular")
        problems.append(why)
    if status == "numerical_failure" and diagnose and reg == 0 and not any("near-duplicate" in p for p in problems):
        near = _near_duplicate_problem(_flat(x_train), y, spec.name, hk, dt, say)
        if near:
            problems.append(near)
    per_class = [math.sqrt(v) if v >= 0 else math.nan for v in quad.tolist()]
    return KernelResult(
        n_train=n, n_test=m, dim=xtr.shape[1], kernel=spec.name, bandwidth=h, reg=reg, solver=solver,
        dtype=_dtype_name(dt), device=str(dev), test_error=test_err, train_error=train_err,
        norm=math.sqrt(sum(v * v for v in per_class)) if not negative else math.nan,
        norm_per_class=per_class, rel_residual=rel_res,
        time_s=time.perf_counter() - t_start, peak_mem_bytes=peak_memory_bytes(dev), timings=timings,
        jitter=jitter, cg_iterations=cg_iters, cg_converged=cg_conv, notes=notes, status=status,
        problems=problems, quadratic_form=quad.tolist(), duplicates_merged=0 if keep is None else n - len(keep),
        alpha=alpha.cpu() if keep_alpha else None)
