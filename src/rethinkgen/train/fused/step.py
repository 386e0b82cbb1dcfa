"""The static step of a fused group: the K runs' SGD step on static tensors, captured as a CUDA graph.

The group's counterpart of :mod:`rethinkgen.train.step` (read it first): the epoch's data orders
(``order``, (S, K, B) int64), learning rates (``lr``, (S, K) float32) and each augmented run's crop and
flip draws go to preallocated device tables once per epoch; a device-side counter picks the step's
row; the stacked parameters, BatchNorm statistics and momentum buffers of the group are updated in
place; the K losses of every step go into an (S, K) table and a running sum.

The update is :meth:`FusedGroup._sgd_step`'s: torch's fused SGD kernel when the runs share momentum,
weight decay and — at every step of the epoch — the learning rate, else the per-run arithmetic
(:meth:`FusedGroup.per_run_update`) with the rates as a (K,) device tensor. The eager step makes that
choice step by step, the static one once per epoch (a graph records one of them); they differ only in
an epoch where the runs' rates agree at some steps and not at others (runs resumed at different
sample counts across a decay boundary), and there within float tolerance. Which batch the runs read
(one shared batch, or one per run) is also fixed per epoch, as in the eager step; when either choice
changes, the step is captured again.

On the CPU (``cuda_graphs=True`` forced) the static step runs uncaptured and gives the eager group's
numbers bit for bit (tests/test_step.py); on CUDA within float tolerance (module docstring of
:mod:`rethinkgen.train.step`). A group rebuilds its static step when runs leave it (the stacked tensors
are sliced anew).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from rethinkgen.train.metrics import autocast_context
from rethinkgen.train.step import StepGraph, fused_sgd_update, to_device

if TYPE_CHECKING:
    from rethinkgen.train.fused.group import FusedGroup

__all__ = ["FusedStaticStep"]


class FusedStaticStep:
    """The static SGD step of the active runs of a :class:`~rethinkgen.train.fused.group.FusedGroup`:
    :meth:`begin_epoch` fills the tables, :meth:`step` takes step ``i`` (captured for full batches when
    ``capture``). The momentum buffers are the group's own (``group.momentum``), so the runs'
    checkpoints read them as they are."""

    def __init__(self, group: FusedGroup, capture: bool) -> None:
        dev, k, bs = group.device, len(group.runs), group.batch_size
        self.group, self.capture, self.batch_size = group, capture, bs
        self.n_full, self.last = divmod(group.n_train, bs)
        self.n_steps = self.n_full + (self.last > 0)
        self.params = [group.params[n] for n in group.param_names]
        self.buffers = [group.momentum[n] for n in group.param_names]
        self.order = torch.zeros(self.n_full, k, bs, dtype=torch.long, device=dev)  # (S_full, K, B)
        self.order_last = torch.zeros(k, self.last, dtype=torch.long, device=dev)  # (K, b)
        self.lr = torch.zeros(self.n_steps, k, dtype=torch.float32, device=dev)  # (S, K)
        self.losses = torch.zeros(self.n_steps, k, device=dev)  # (S, K) every step's minibatch losses
        self.loss_sum = torch.zeros(k, device=dev)  # (K,) summed step by step, as the eager epoch does
        self.counter = torch.zeros(1, dtype=torch.long, device=dev)
        self.draws: list[dict[str, torch.Tensor] | None] = []  # per run: its (S_full, B) draw tables
        self.draws_last: list[dict[str, torch.Tensor] | None] = []
        for aug in group.augment:
            pre = aug[0] if aug is not None else None
            kinds = [] if pre is None else (([("top", torch.long), ("left", torch.long)] if pre.augment else [])
                                            + ([("flip", torch.bool)] if pre.flip else []))
            self.draws.append({n: torch.zeros(self.n_full, bs, dtype=t, device=dev) for n, t in kinds}
                              if pre is not None else None)
            self.draws_last.append({n: torch.zeros(self.last, dtype=t, device=dev) for n, t in kinds}
                                   if pre is not None else None)
        self.variant: tuple[bool, bool] | None = None  # (same order, one update for all runs) of the graph
        self.full: StepGraph | None = None

    def begin_epoch(self, perms: torch.Tensor, lrs: list[list[float]], generators: list[torch.Generator | None],
                    same_order: bool) -> None:
        """The epoch's orders ``perms`` (K, N) int64 on the CPU, learning rates ``lrs`` (S lists of K
        floats) and each augmented run's draws from its generator (made now, batch by batch)."""
        g, bs, cut = self.group, self.batch_size, self.n_full * self.batch_size
        to_device(perms[:, :cut].reshape(len(g.runs), self.n_full, bs).transpose(0, 1).contiguous(), self.order)
        to_device(perms[:, cut:].contiguous(), self.order_last)
        to_device(torch.tensor(lrs, dtype=torch.float32), self.lr)
        for tables, last, generator, aug in zip(self.draws, self.draws_last, generators, g.augment, strict=True):
            if tables is None or not tables:
                continue
            rows = [aug[0].draw(bs if j < self.n_full else self.last, generator) for j in range(self.n_steps)]
            for name, table in tables.items():
                if self.n_full:
                    table.copy_(torch.stack([r[name] for r in rows[:self.n_full]]))
                if self.last:
                    last[name].copy_(rows[-1][name])
        uniform = len(set(g.momenta)) == 1 and len(set(g.decays)) == 1 and all(len(set(row)) == 1 for row in lrs)
        variant = (same_order, uniform)
        if variant != self.variant:  # a graph records one choice: capture again for another
            self.variant, self.full = variant, StepGraph(self._full_step, g.device, self.capture)
        self.counter.zero_()
        self.loss_sum.zero_()

    def step(self, i: int) -> None:
        """Step ``i`` of the epoch (steps must be taken in order)."""
        if i < self.n_full:
            self.full()
        else:
            self._step(self.order_last, self.draws_last)

    def _full_step(self) -> None:
        i = self.counter
        draws = [None if d is None else {n: t.index_select(0, i)[0] for n, t in d.items()} for d in self.draws]
        self._step(self.order.index_select(0, i)[0], draws)

    def _step(self, index: torch.Tensor, draws: list[dict[str, torch.Tensor] | None]) -> None:
        """Forward, backward and update of every run on its samples ``index`` (K, B), as
        ``FusedGroup._sgd_step``; the K losses go into the tables."""
        g = self.group
        same_order, uniform = self.variant
        i = self.counter
        xb, shared = g._inputs(index, lambda k, pre, rows: pre.apply_draws(rows, draws[k]), same_order)
        yb = g.y_train.gather(1, index)  # (K, B)
        forward = g.forward_shared if shared else g.forward_each
        with autocast_context(g.device.type, g.autocast, cache=False):
            logits = forward(g.params, g.stats, xb)  # (K, B, C)
        losses = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none")
        losses = losses.view(yb.shape).mean(dim=1)  # (K,)
        grads = [gr if gr.is_contiguous() else gr.contiguous() for gr in torch.autograd.grad(losses.sum(), self.params)]
        with torch.no_grad():
            lr = self.lr.index_select(0, i)[0]  # (K,)
            if uniform:
                fused_sgd_update(self.params, grads, self.buffers, lr=lr[:1], momentum=g.momenta[0],
                                 weight_decay=g.decays[0])
            else:
                g.per_run_update(grads, lr.neg())
            losses = losses.detach()
            self.losses.index_copy_(0, i, losses.view(1, -1))
            self.loss_sum.add_(losses)
            self.counter.add_(1)
