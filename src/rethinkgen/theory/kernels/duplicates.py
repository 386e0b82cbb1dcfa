"""Training points a kernel cannot tell apart: exact duplicates and near-duplicates, named.

Two identical training points give K two identical rows: with different labels ``K α = Y`` has no
solution at all (no interpolant exists), with equal labels K is singular but the interpolant is the
one of the distinct points. :func:`find_duplicates` finds them exactly in O(n·D) (an integer hash of
each row's bits, then an exact comparison of rows with equal hashes). Near-duplicates (distinct but
so close that k(x_i, x_j) rounds to k(x_i, x_i)) make K numerically singular; :func:`closest_pairs`
finds the closest pairs in one blocked pass over the distances (as costly as building K, so it is
run only to explain a failed solve).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from rethinkgen.errors import RethinkgenError

HASH_BLOCK_ELEMENTS = 1 << 24  # entries hashed at once (128 MiB of int64)
SHOWN = 10  # pairs quoted in a message


class ConflictingDuplicatesError(RethinkgenError, ValueError):
    """Identical training points carry different labels: ``K α = Y`` has no solution (``pairs``)."""

    def __init__(self, message: str, pairs: list[tuple[int, int]]) -> None:
        super().__init__(message)
        self.pairs = pairs


@dataclass
class Duplicates:
    """Groups of identical rows: ``conflicting`` pairs (i, j) with different labels, ``same`` pairs with
    equal labels (j a later copy of i), and ``first`` (n,): the index of each row's first copy."""

    conflicting: list[tuple[int, int]] = field(default_factory=list)
    same: list[tuple[int, int]] = field(default_factory=list)
    first: torch.Tensor | None = None

    def describe_conflicts(self, labels: torch.Tensor) -> str:
        shown = ", ".join(f"{i} and {j} (labels {int(labels[i])}, {int(labels[j])})"
                          for i, j in self.conflicting[:SHOWN])
        more = f" and {len(self.conflicting) - SHOWN} more pairs" if len(self.conflicting) > SHOWN else ""
        return f"training points {shown}{more}"


def _row_hashes(x: torch.Tensor) -> torch.Tensor:
    """(n,) int64: a hash of each row's bit pattern; identical rows get identical hashes, whatever the
    memory layout (integer sums are exact and associative)."""
    x = x.reshape(x.shape[0], -1)
    n, d = x.shape
    int_dtype = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
                 torch.bfloat16: torch.int16}.get(x.dtype)
    if int_dtype is None:
        x, int_dtype = x.to(torch.float64), torch.int64
    gen = torch.Generator(device="cpu").manual_seed(0x5EED)
    mult = (torch.randint(1, 2**62, (d,), generator=gen, dtype=torch.int64) | 1).to(x.device)
    out = torch.empty(n, dtype=torch.int64, device=x.device)
    rows = max(1, HASH_BLOCK_ELEMENTS // max(d, 1))
    for i0 in range(0, n, rows):
        block = (x[i0:i0 + rows] + 0.0).contiguous()  # -0.0 -> 0.0: equal values, equal bits
        bits = block.view(int_dtype).to(torch.int64)
        out[i0:i0 + rows] = (bits * mult).sum(1)  # wraps modulo 2^64
    return out


def find_duplicates(x: torch.Tensor, targets: torch.Tensor) -> Duplicates:
    """Exact duplicate rows of ``x`` (n, ...) and whether their ``targets`` (n,) or (n, C) agree.

    O(n·D) time, O(n) memory beyond one hashed block. Rows are compared exactly (bit for bit, -0.0 = 0.0)
    in the dtype given: points distinct in float64 may be duplicates in float32.
    """
    n = x.shape[0]
    first = torch.arange(n)
    out = Duplicates(first=first)
    if n < 2:
        return out
    h = _row_hashes(x).cpu()
    order = torch.argsort(h, stable=True)
    hs = h[order].numpy()
    boundaries = np.flatnonzero(np.diff(hs)) + 1
    flat = x.reshape(n, -1)
    targets = targets.cpu()
    for run in np.split(order.numpy(), boundaries):
        if len(run) < 2:
            continue
        groups: list[list[int]] = []  # rows of equal hash, split into groups of identical rows
        for i in sorted(int(k) for k in run):
            group = next((g for g in groups if torch.equal(flat[g[0]], flat[i])), None)
            if group is None:
                groups.append([i])  # a new row (or a hash collision)
            else:
                group.append(i)
        for group in groups:
            i = group[0]
            for j in group[1:]:
                first[j] = i
                (out.same if torch.equal(targets[i], targets[j]) else out.conflicting).append((i, j))
    out.same.sort()
    out.conflicting.sort()
    return out


@dataclass(frozen=True)
class NearPair:
    """Two distinct training points and how close the kernel sees them."""

    i: int
    j: int
    distance: float  # ||x_i − x_j||, float64
    one_minus_k: float  # 1 − k(x_i, x_j)/k(x_i, x_i) in float64: the 2×2 block's smallest eigenvalue
    same_label: bool


def one_minus_k(kernel: str, distance: float, h: float) -> float:
    """1 − k(δ) for the distance kernels, in float64 with expm1 (exact for tiny δ)."""
    if kernel == "gaussian":
        return -math.expm1(-distance * distance / (2.0 * h * h))
    if kernel == "laplacian":
        return -math.expm1(-distance / h)
    return math.nan


def closest_pairs(x: torch.Tensor, labels: torch.Tensor, kernel: str, h: float, *, count: int = SHOWN,
                  row_block: int = 2048) -> list[NearPair]:
    """Close pairs of distinct rows of ``x`` (n, D), closest first, by one blocked pass (float64).

    Each point is paired with its nearest earlier point (so a point next to a near-duplicate pair is
    listed with one of the two, not both); the ``count`` closest of these pairs are returned, each
    pair once. Exact duplicates (distance 0) are skipped: :func:`find_duplicates` names those.
    """
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    n = x.shape[0]
    sq = (x * x).sum(1)
    best: list[tuple[float, int, int]] = []
    for i0 in range(0, n, row_block):
        i1 = min(i0 + row_block, n)
        d2 = torch.addmm(sq[None, :], x[i0:i1], x.T, alpha=-2.0).add_(sq[i0:i1, None])
        idx = torch.arange(i0, i1, device=x.device)
        d2.masked_fill_(torch.arange(n, device=x.device)[None, :] >= idx[:, None], math.inf)  # only j < i
        d2.clamp_(min=0.0)
        vals, cols = d2.min(dim=1)
        for r in torch.argsort(vals)[:count].tolist():
            j = int(cols[r])
            dist = float((x[i0 + r] - x[j]).norm())  # exact difference, not the GEMM's cancellation
            if dist > 0:
                best.append((dist, j, i0 + r))
        best = sorted(best)[:count]
    labels = labels.cpu()
    return [NearPair(i, j, d, one_minus_k(kernel, d, h), bool(labels[i] == labels[j])) for d, i, j in best]


def resolution(dtype: torch.dtype) -> float:
    """The smallest 1 − k a K entry can hold apart from 1 in ``dtype`` with some accuracy (10³·eps)."""
    return 1e3 * float(np.finfo(np.float32 if dtype == torch.float32 else np.float64).eps)
