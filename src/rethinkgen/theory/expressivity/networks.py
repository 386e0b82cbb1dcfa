"""Theorem 1's network and its depth-k form (Zhang et al. 2017, §4 and Appendix C).

:class:`InterpolatingNet` is ``c(x) = Σ_j w_j max(<a, x> − b_j, 0)`` with float64 parameters;
:class:`DeepInterpolatingNet` (:func:`to_depth_k`) computes the same function with k − 1 hidden
layers of width O(n/k + C). How the parameters are found is in ``construction.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rethinkgen.errors import ConfigError

CHUNK_ELEMENTS = 1 << 22  # rows x hidden units evaluated at once (32 MiB of float64)


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
