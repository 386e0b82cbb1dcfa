"""The static training step: one SGD step on tensors that never move, captured once as a CUDA graph.

Why: on a GPU the eager step waits on the host. Measured on an H200 (../shared/gpu/README.md), an
``inception_small`` step costs 11.5 ms at batch 128 and 10.8 ms at batch 512: the device idles while
Python launches a few hundred small kernels. A CUDA graph (``torch.cuda.CUDAGraph``) records those
launches once and replays them with one call, so the step costs what its kernels cost.

What a graph needs, and how the step provides it (design §5):

- **static tensors**: a replay reads and writes the addresses recorded at capture. The epoch's data
  order (``order``, (S, B) int64), learning rates (``lr``, (S,) float32) and augmentation draws
  (:meth:`rethinkgen.data.preprocess.Preprocessor.draw`, per batch) are copied into preallocated device
  tables once per epoch; a device-side step counter (``counter``, (1,) int64) picks the step's row
  inside the step (``index_select``) and is incremented there. Parameters and BatchNorm statistics are
  updated in place; momentum buffers are preallocated (zeros: ``m·0 + g`` is exactly SGD's first
  ``buf = g``). Each step's loss goes into a (S,) table and a running sum, read back once per epoch.
- **no host synchronisation**: the learning rate is a device tensor given to torch's fused SGD kernel
  (``torch._fused_sgd_`` with a tensor ``lr``; ``torch.optim.SGD`` in torch 2.14 has no ``capturable``
  flag, and its ``step`` reads a tensor ``lr`` back to the host), the gradients come from
  ``torch.autograd.grad``, and nothing in the step asks the device for a value.
- **random numbers**: the augmentation draws are made before the epoch's steps, batch by batch from the
  run's seeded ``augment`` generator in the eager step's order, so the captured step applies exactly the
  eager step's crops and flips. (Dropout draws from torch's default CUDA generator, which CUDA graphs
  advance per replay; by default a run with dropout keeps the eager step, see ``resolve.step_mode``.)
- **capture**: the first :data:`WARMUP_STEPS` full batches run uncaptured on a side stream (lazy
  initialisation, cuDNN/cuBLAS workspaces, as the torch.cuda.graphs documentation asks), then the step
  is recorded once and replayed for every later full batch. An epoch's last, smaller batch runs the same
  step function uncaptured.

The same static step runs *uncaptured* on the CPU when ``cuda_graphs=True`` is forced there: the
capture is the only CUDA-only part, so CPU tests cover everything else. On the CPU it gives the eager
step's numbers bit for bit (the same operations in the same order, and the same fused SGD kernel, which
rounds the learning rate to float32 either way: tests/test_step.py). On CUDA the numbers agree within
float tolerance: the graph replays the eager step's kernels, but the kernel reads the learning rate as
float32 where the eager step passes it as a double, and cuDNN may choose other algorithms.
The step mode is therefore not part of the ``run_key``; a per-run record of the numerics (issue 10
item 4, being added apart) should record a captured step as such.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from rethinkgen.train.losses import training_loss
from rethinkgen.train.metrics import autocast_context

if TYPE_CHECKING:
    from rethinkgen.train.loop import Trainer

__all__ = ["WARMUP_STEPS", "StaticStep", "StepGraph", "fused_sgd_update", "to_device"]

WARMUP_STEPS = 3  # uncaptured steps before the capture (the torch.cuda.graphs documentation uses 3)


def to_device(host: torch.Tensor, out: torch.Tensor) -> None:
    """Copy ``host`` (a CPU tensor) into the static tensor ``out``: through pinned memory without waiting
    on CUDA (torch's pinned-memory allocator keeps the staging buffer until the copy has run). Nothing
    to copy (an epoch without a smaller last batch): nothing is pinned or copied."""
    if host.numel() == 0:
        return
    if out.device.type == "cuda":
        out.copy_(host.pin_memory(), non_blocking=True)
    else:
        out.copy_(host)


def like_param(g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``g`` laid out as ``p`` (torch's fused SGD kernels walk parameter, gradient and momentum buffer in
    memory order; see ``loop._ContiguousSGD``)."""
    return g if g.stride() == p.stride() else torch.empty_like(p).copy_(g)


def fused_sgd_update(params: list[torch.Tensor], grads: list[torch.Tensor], buffers: list[torch.Tensor], *,
                     lr: torch.Tensor, momentum: float, weight_decay: float) -> None:
    """``torch.optim.SGD``'s update (dampening 0, no Nesterov) by torch's fused kernel, with the learning
    rate read from the device tensor ``lr`` ((1,) float32 on the parameters' device): ``g += wd·p``;
    ``buf = m·buf + g``; ``p -= lr·buf``. ``buffers`` start at zero (empty when ``momentum`` is 0)."""
    torch._fused_sgd_(params, grads, buffers if momentum != 0 else [], weight_decay=weight_decay,
                      momentum=momentum, lr=lr, dampening=0.0, nesterov=False, maximize=False,
                      is_first_step=False)


class StepGraph:
    """Calls ``step`` (a function of static tensors only): uncaptured for its first ``warmup`` calls
    (on a side stream when capturing), then — when ``capture`` — records it once as a CUDA graph and
    replays the graph for every later call. Without ``capture`` every call runs ``step`` directly.

    A bound method ``step`` is held weakly: the static step that owns this graph (and whose method it
    replays) is then in no reference cycle, so dropping it frees its tables and the graph's private
    memory pool at once (``CUDAGraph``'s pool goes with the graph), not whenever Python's cyclic garbage
    collector next looks at old objects."""

    def __init__(self, step: Callable[[], None], device: torch.device, capture: bool,
                 warmup: int = WARMUP_STEPS) -> None:
        self._step = weakref.WeakMethod(step) if hasattr(step, "__self__") else (lambda: step)
        self.device, self.capture, self.warmup = device, capture, warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None

    def step(self) -> None:
        """The step itself, uncaptured."""
        self._step()()

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        if not self.capture:
            self.step()
            return
        with torch.cuda.device(self.device):
            current = torch.cuda.current_stream()
            if self.calls < self.warmup:
                side = torch.cuda.Stream()
                side.wait_stream(current)
                with torch.cuda.stream(side):
                    self.step()
                current.wait_stream(side)
                self.calls += 1
                return
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):  # records the step's kernels; runs none of them
                self.step()
            self.graph = graph
            graph.replay()  # this call's step


class StaticStep:
    """The static SGD step of one :class:`~rethinkgen.train.loop.Trainer` (see the module docstring).

    Per epoch: :meth:`begin_epoch` fills the tables, :meth:`step` runs step ``j`` (captured for full
    batches when ``capture``), :meth:`end_epoch` leaves the optimizer's state as ``torch.optim.SGD``
    would (so checkpoints keep their format); after a restore, :meth:`load_optimizer_state` copies the
    checkpoint's momentum buffers into the static ones.
    """

    def __init__(self, trainer: Trainer, capture: bool) -> None:
        c, d, dev = trainer.config, trainer.data, trainer.device
        # what the step reads of the trainer, not the trainer (which holds this step: no reference cycle)
        self.data, self.forward, self.optimizer = d, trainer.forward, trainer.optimizer
        self.device, self.autocast, self.channels_last = dev, trainer.autocast, trainer.channels_last
        self.batch_size = c.batch_size
        self.n_full, self.last = divmod(d.n_train, c.batch_size)  # full batches, size of the last one
        self.n_steps = self.n_full + (self.last > 0)
        self.momentum, self.weight_decay = c.momentum, c.weight_decay
        self.params: list[torch.Tensor] = list(trainer.optimizer.param_groups[0]["params"])
        self.buffers = [torch.zeros_like(p) for p in self.params] if c.momentum != 0 else []
        self.order = torch.zeros(self.n_full, c.batch_size, dtype=torch.long, device=dev)  # (S_full, B)
        self.order_last = torch.zeros(self.last, dtype=torch.long, device=dev)  # (b,)
        self.lr = torch.zeros(self.n_steps, dtype=torch.float32, device=dev)  # (S,)
        self.losses = torch.zeros(self.n_steps, device=dev)  # (S,) each step's minibatch loss
        self.loss_sum = torch.zeros((), device=dev)  # summed step by step, as the eager epoch does
        self.counter = torch.zeros(1, dtype=torch.long, device=dev)  # the step within the epoch
        self.pre = d.preprocessor if d.x_train_raw is not None else None
        kinds = ([("top", torch.long), ("left", torch.long)] if self.pre is not None and self.pre.augment else []) \
            + ([("flip", torch.bool)] if self.pre is not None and self.pre.flip else [])
        self.draws = {k: torch.zeros(self.n_full, c.batch_size, dtype=t, device=dev) for k, t in kinds}
        self.draws_last = {k: torch.zeros(self.last, dtype=t, device=dev) for k, t in kinds}
        self.full = StepGraph(self._full_step, dev, capture)

    # ------------------------------------------------------------------ per epoch
    def begin_epoch(self, perm: torch.Tensor, lrs: list[float], generator: torch.Generator | None) -> None:
        """The epoch's order ``perm`` (N,) int64 on the CPU, per-step learning rates ``lrs`` (S floats) and
        augmentation draws from ``generator`` (made now, batch by batch, in the eager step's order)."""
        cut = self.n_full * self.batch_size
        to_device(perm[:cut].view(self.n_full, self.batch_size), self.order)
        to_device(perm[cut:], self.order_last)
        to_device(torch.tensor(lrs, dtype=torch.float32), self.lr)
        if self.draws:
            rows = [self.pre.draw(self.batch_size if j < self.n_full else self.last, generator)
                    for j in range(self.n_steps)]
            for name, table in self.draws.items():
                if self.n_full:
                    table.copy_(torch.stack([r[name] for r in rows[:self.n_full]]))
                if self.last:
                    self.draws_last[name].copy_(rows[-1][name])
        self.counter.zero_()
        self.loss_sum.zero_()

    def step(self, j: int) -> None:
        """Step ``j`` of the epoch (steps must be taken in order)."""
        if j < self.n_full:
            self.full()
        else:
            self._step(self.order_last, self.draws_last)

    def end_epoch(self, last_lr: float) -> None:
        """Leave the optimizer as ``torch.optim.SGD`` would after the epoch's last step: that step's
        learning rate in its param group, the momentum buffers (these static tensors) in its state."""
        optimizer = self.optimizer
        optimizer.param_groups[0]["lr"] = last_lr
        for p, buf in zip(self.params, self.buffers, strict=False):
            optimizer.state[p]["momentum_buffer"] = buf

    def load_optimizer_state(self) -> None:
        """Copy the optimizer's momentum buffers (just restored from a checkpoint) into the static ones
        (zeros where it has none: before the first step), and put the static ones in their place."""
        state = self.optimizer.state
        with torch.no_grad():
            for p, buf in zip(self.params, self.buffers, strict=False):
                saved = state.get(p, {}).get("momentum_buffer")
                if saved is None:
                    buf.zero_()
                else:
                    buf.copy_(saved)
                    state[p]["momentum_buffer"] = buf

    # ------------------------------------------------------------------ the step
    def _full_step(self) -> None:
        i = self.counter
        self._step(self.order.index_select(0, i)[0], {k: t.index_select(0, i)[0] for k, t in self.draws.items()})

    def _step(self, index: torch.Tensor, draws: dict[str, torch.Tensor]) -> None:
        """Forward, backward and update on the samples ``index`` (B,), as ``Trainer._sgd_step``, reading
        everything else from static tensors; the loss goes into the tables."""
        d = self.data
        i = self.counter
        if self.pre is None:
            xb = d.x_train[index]
        else:
            xb = self.pre.apply_draws(d.x_train_raw[index], draws)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast_context(self.device.type, self.autocast, cache=False):
            output = self.forward(xb)  # (B, K), or ((B, K), (B, K)) with auxiliary logits (Inception V3)
        loss = training_loss(output, d.y_train[index])
        grads = torch.autograd.grad(loss, self.params)
        with torch.no_grad():
            grads = [like_param(g, p) for g, p in zip(grads, self.params, strict=True)]
            fused_sgd_update(self.params, grads, self.buffers, lr=self.lr.index_select(0, i),
                             momentum=self.momentum, weight_decay=self.weight_decay)
            loss = loss.detach()
            self.losses.index_copy_(0, i, loss.view(1))
            self.loss_sum.add_(loss)
            self.counter.add_(1)
