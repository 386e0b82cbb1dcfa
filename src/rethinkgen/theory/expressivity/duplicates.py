"""Points that Theorem 1's construction cannot tell apart: duplicates, near-duplicates, shared projections.

Theorem 1 needs the projections ``t_i = <a, z_i>`` of the n points to be distinct; in float64 they
must also be far enough apart for the fit to be exact. Identical points with equal targets are merged
(:func:`merge_duplicates`), with different targets refused (:class:`DuplicatePointsError`). When the
construction cannot meet its tolerance, :func:`close_pairs` names the pairs of points whose
projections lie closest, and :func:`advice` says what fixes them:

- *near-duplicates* (points closer than any projection can separate at this precision): merge them
  when their targets are equal (``merge_within``); remove or relabel one of each pair when not;
- *shared projections* (points far apart whose projections nearly coincide): another projection
  (``n_directions``, ``seed``);
- inputs given in float32 or lower: pass float64 if the data exist in it (rounding may have made
  distinct points near-duplicates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from rethinkgen.errors import RethinkgenError

EPS64 = float(np.finfo(np.float64).eps)
MAX_PAIRS_SHOWN = 10


class DuplicatePointsError(RethinkgenError, ValueError):
    """Identical input points carry different targets: no function (so no network) can fit them."""


class InterpolationError(RethinkgenError, ArithmeticError):
    """Theorem 1's network could not be built to fit the points within the tolerance in float64.

    ``pairs``: the closest pairs (:class:`ClosePair`) that cause it; ``max_residual`` and ``tolerance``
    (absolute; NaN when the construction stopped before solving).
    """

    def __init__(self, message: str, pairs: list[ClosePair], max_residual: float, tolerance: float) -> None:
        super().__init__(message)
        self.pairs = pairs
        self.max_residual = max_residual
        self.tolerance = tolerance


@dataclass(frozen=True)
class ClosePair:
    """Two given points (indices into X) next to each other in the sorted projection."""

    i: int
    j: int
    distance: float  # ||z_i − z_j||_2 in float64
    gap: float  # |<a, z_i> − <a, z_j>|
    same_target: bool
    # "near-duplicate" (no projection separates them enough) | "shared projection" (another projection
    # would) | "resolved" (their projections are far enough apart at this precision: not a cause)
    kind: str

    def describe(self) -> str:
        kind = "far enough apart: not the cause" if self.kind == "resolved" else self.kind
        return (f"points {self.i} and {self.j}: {self.distance:.2g} apart, projections {self.gap:.2g} apart, "
                f"{'equal' if self.same_target else 'different'} targets ({kind})")


def merge_duplicates(X: torch.Tensor, Y: torch.Tensor, t: torch.Tensor, merge_within: float = 0.0, *,
                     input_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Indices of the points to keep: one per group of identical points (or, with ``merge_within`` > 0,
    of points within that Euclidean distance of each other) that share a target.

    ``t`` (n,) are projections of ``X`` (n, d) on a unit vector, so two points within distance δ have
    projections within δ — plus the rounding of the two float64 sums, at most ``2·d·eps·max‖x‖`` — and
    only points that close in ``t`` are compared. Raises
    :class:`DuplicatePointsError` naming identical points with different targets (``input_dtype``, the
    dtype X was given in, adds the float64 hint). Near (not identical) points with different targets
    are kept: they are the caller's to fit or to report.
    """
    order = torch.argsort(t, stable=True)
    ts = t[order].cpu().numpy()
    n = len(ts)
    # identical rows have identical projections (rethinkgen's projection is row-independent); points
    # within merge_within may have projections up to the sums' rounding further apart than that
    window = merge_within
    if merge_within > 0 and n:
        window += 2 * X.shape[1] * EPS64 * float(X.norm(dim=1).max())
    parent = list(range(n))  # union-find over sorted positions

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    conflicts = []
    for offset in range(1, n):
        close = np.nonzero(ts[offset:] - ts[:-offset] <= window)[0]
        if len(close) == 0:
            break
        for p in close.tolist():
            a, b = int(order[p]), int(order[p + offset])
            same_point = bool(torch.equal(X[a], X[b]))
            if not same_point and float((X[a] - X[b]).norm()) > merge_within:
                continue
            if torch.equal(Y[a], Y[b]):
                ra, rb = root(p), root(p + offset)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
            elif same_point:
                conflicts.append(tuple(sorted((a, b))))
    if conflicts:
        conflicts.sort()
        shown = ", ".join(f"{i} and {j}" for i, j in conflicts[:MAX_PAIRS_SHOWN])
        more = (f" (and {len(conflicts) - MAX_PAIRS_SHOWN} more pairs)" if len(conflicts) > MAX_PAIRS_SHOWN
                else "")
        hint = ("" if input_dtype == torch.float64 else
                f"; X came as {str(input_dtype).removeprefix('torch.')}: if the data exist in float64, pass them "
                "as float64 (the points may differ only beyond this precision)")
        raise DuplicatePointsError(
            f"points {shown}{more} are identical but have different targets, so no function can fit them; "
            "remove or relabel the duplicates (identical points with equal targets are merged automatically)"
            + hint)
    keep = sorted(int(order[p]) for p in range(n) if root(p) == p)
    return torch.tensor(keep, dtype=torch.long)


def resolvable_gap(t_scale: float, rtol: float) -> float:
    """The smallest projection gap at which two points with targets ~max|y| apart can be fit to ``rtol``
    in float64: a projection is known to ~2^-53·max|t|, and the slope across the gap is ~Δy / gap."""
    return EPS64 * max(t_scale, 1e-300) / rtol


def close_pairs(X: torch.Tensor, Y: torch.Tensor, keep: torch.Tensor, ts: torch.Tensor, order: torch.Tensor,
                rtol: float, at_least: int = MAX_PAIRS_SHOWN) -> list[ClosePair]:
    """The neighbouring pairs of the sorted projection that float64 cannot resolve, closest first.

    ``keep`` maps the kept points to rows of ``X``/``Y``; ``ts``/``order`` are their sorted projections
    and the sorting permutation. Returned: every pair whose projection gap is below 10 ×
    :func:`resolvable_gap` (at least the ``at_least`` smallest gaps). A pair is a near-duplicate when
    its points are closer than that (no projection can separate them more than their distance), else
    it shares a projection that another direction would separate; a pair listed only to make up
    ``at_least`` whose gap is not below that limit is "resolved" (shown, but not a cause).
    """
    if len(ts) < 2:
        return []
    gaps = (ts[1:] - ts[:-1]).cpu().numpy()
    limit = 10 * resolvable_gap(float(ts.abs().max()), rtol)
    ranked = np.argsort(gaps, kind="stable")
    count = max(int((gaps < limit).sum()), min(at_least, len(gaps)))
    out = []
    for m in ranked[:count].tolist():
        a, b = int(keep[order[m]]), int(keep[order[m + 1]])
        i, j = min(a, b), max(a, b)
        dist = float((X[i] - X[j]).norm())
        kind = "near-duplicate" if dist <= limit else "shared projection" if gaps[m] < limit else "resolved"
        out.append(ClosePair(i, j, dist, float(gaps[m]), bool(torch.equal(Y[i], Y[j])), kind))
    return out


def advice(pairs: list[ClosePair], *, input_dtype: torch.dtype, theta: float, n_directions: int, seed: int,
           d: int) -> list[str]:
    """What would fix a failed fit caused by ``pairs`` (each item names the API argument and CLI flag)."""
    tips = []
    equal = [p for p in pairs if p.kind == "near-duplicate" and p.same_target]
    differ = [p for p in pairs if p.kind == "near-duplicate" and not p.same_target]
    shared = [p for p in pairs if p.kind == "shared projection"]
    if equal:
        within = _round_up(2 * max(p.distance for p in equal))
        tips.append(f"merge near-duplicates with equal targets: merge_within={within:g} (CLI: --merge-within "
                    f"{within:g}) treats points within {within:g} of each other with equal targets as one")
    if differ:
        tips.append(f"remove one point of each of the {len(differ)} near-duplicate pairs with different "
                    "targets (InterpolationError.pairs lists them all), or give both points of a pair the same "
                    "target and merge them: no float64 network can tell them apart at this tolerance (or loosen "
                    "the check: rtol, CLI --rtol)")
    if shared and d > 1:
        tips.append(f"use another projection: n_directions={max(4 * n_directions, 64)} (CLI --directions) or "
                    f"another seed (now {seed}): these points are far apart but their projections nearly "
                    "coincide")
    if input_dtype != torch.float64:
        tips.append(f"X came as {str(input_dtype).removeprefix('torch.')}: if the data exist in float64, pass "
                    "them as float64 (rounding may have made distinct points nearly equal)")
    if theta >= 0.5:
        tips.append(f"theta={theta:g} amplifies rounding errors by (θ/(1 − θ)) per point; use theta < 0.5 "
                    "(default 0.05)")
    if not tips and all(p.kind == "resolved" for p in pairs):
        tips.append("no two points are too close to tell apart: the float64 sums of the network round beyond "
                    "the tolerance; loosen the check (rtol, CLI --rtol), or try other projections "
                    f"(n_directions={max(4 * n_directions, 64)}, CLI --directions; or another seed, now {seed})")
    return tips


def _round_up(x: float) -> float:
    """``x`` rounded up to one significant digit (1.3e-12 -> 2e-12)."""
    if not x > 0:
        return 0.0
    p = 10.0 ** math.floor(math.log10(x))
    up = math.ceil(x / p) * p
    return up if up >= x else x  # subnormal x: the rounding may fall short of x
