"""The trainer: one randomization-test run (paper §2, Figure 1; Appendix A optimisation).

SGD with momentum on the (possibly corrupted) training set, the paper's x0.95 learning-rate decay
counted in samples seen, evaluation of the whole training set in eval mode after every epoch (and,
with ``eval_every``, after every ``eval_every``-th step), and a stop at the end of the epoch in which
an evaluation first reaches ``target_train_acc`` — that evaluation's step is the run's *convergence
step* (Figure 1b), exact up to ``min(eval_every, steps per epoch)`` steps (history.py).

Randomness: the model is initialised from the "init" stream, and each epoch reseeds its data order,
augmentation and dropout from ``(seed, epoch)``; torch's global generators are seeded only inside
:func:`rethinkgen.train.rng.seeded`, which gives the caller's state back. A checkpoint taken at an
epoch end therefore resumes to exactly the numbers of an uninterrupted run on the CPU.

The step (forward, backward, optimizer) is kept apart from the epoch's bookkeeping (order, learning
rate, counters, logged losses, evaluations), which reads the device back once per epoch. It is either
eager (:meth:`Trainer._sgd_step`) or static (:class:`rethinkgen.train.step.StaticStep`: the same
operations on static tensors, captured as a CUDA graph on CUDA), as ``resolve.step_mode`` decides.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from typing import Any

import torch

from rethinkgen.seeding import stream_seed
from rethinkgen.train.allocator import keep_freed_memory
from rethinkgen.train.config import TrainConfig
from rethinkgen.train.data import PreparedData, prepare_data
from rethinkgen.train.history import RunHistory, make_checkpoint, read_checkpoint, resume_numerics, run_summary
from rethinkgen.train.losses import training_loss
from rethinkgen.train.metrics import autocast_context, evaluate, predict_correct
from rethinkgen.train.numerics import plan_numerics
from rethinkgen.train.progress import Progress
from rethinkgen.train.resolve import STEP_MODES, eval_batch_size, resolve_config, step_mode
from rethinkgen.train.rng import seeded
from rethinkgen.train.schedule import decay_period, last_step_lr, lr_at
from rethinkgen.train.step import StaticStep
from rethinkgen.train.streaming.run import train_streamed
from rethinkgen.train.streaming.select import streams

__all__ = ["train", "resolve_config", "select_device", "Trainer"]


def select_device(name: str = "auto") -> torch.device:
    """cuda -> mps -> cpu for "auto"; otherwise the named device (design §3: never hard-code one)."""
    if name != "auto":
        if name == "cuda" and not torch.cuda.is_available():
            from rethinkgen.errors import ConfigError

            raise ConfigError("device cuda was asked for but torch sees no CUDA device; use --device cpu or auto")
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class _ContiguousSGD(torch.optim.SGD):
    """``torch.optim.SGD`` that hands its kernel gradients and momentum buffers laid out as their
    parameters: torch's fused CPU kernel (2.14) walks parameter, gradient and momentum buffer in memory
    order, so a tensor with other strides (a transposed view from bmm; a default-layout gradient or
    momentum buffer of a channels-last weight) would be added to the wrong entries; the fused CUDA
    kernel refuses such lists (``check_fast_path_restrictions``: same sizes and strides). Momentum
    buffers of other strides come from checkpoints: a fused group's (its stacked tensors are
    contiguous) resumed by a channels-last trainer; they are laid out anew when loaded."""

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.stride() != p.stride():
                    p.grad = torch.empty_like(p).copy_(p.grad)  # empty_like keeps p's strides (dense p)
        return super().step(closure)

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for p in group["params"]:
                buf = self.state.get(p, {}).get("momentum_buffer")
                if buf is not None and buf.stride() != p.stride():
                    self.state[p]["momentum_buffer"] = torch.empty_like(p).copy_(buf)


def make_optimizer(params: Iterable[torch.Tensor], config: TrainConfig, device: torch.device) -> torch.optim.SGD:
    """SGD with the config's momentum and weight decay. On the CPU and CUDA torch's fused one-pass kernel
    (on the CPU the same numbers as the default single-tensor loop, bit for bit, and about 3x faster for
    mlp_1x512's 1.2M weights; on CUDA one kernel instead of foreach's three, and the kernel the captured
    step uses, rethinkgen.train.step)."""
    if device.type in ("cpu", "cuda"):
        return _ContiguousSGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                              fused=True)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


class Trainer:
    """State of one run: data, model, optimizer and the history so far.

    The model is initialised here and dropout masks drawn in :meth:`train_epoch`, each from a seeded
    stream inside :func:`rethinkgen.train.rng.seeded`: the caller's global torch RNG is left as it was.

    ``step``: "eager", "static" or "captured" (``resolve.STEP_MODES``) instead of what
    ``resolve.step_mode`` chooses for the config (benchmarks compare them; "captured" needs CUDA).
    """

    def __init__(self, config: TrainConfig, device: torch.device, step: str | None = None) -> None:
        from rethinkgen.models import count_params, create_model
        from rethinkgen.train.last_batch import check_last_batch

        self.config = config
        self.device = device
        self.step_mode = step_mode(config, device.type) if step is None else step  # before loading the data
        if self.step_mode not in STEP_MODES or (self.step_mode == "captured" and device.type != "cuda"):
            raise ValueError(f"step must be one of {', '.join(STEP_MODES)} ('captured' on CUDA only), "
                             f"got {step!r} on {device.type}")
        self.data: PreparedData = prepare_data(config, device)
        # recorded, checked on resume; decides autocast (resolve.autocast_name), memory format, compile
        self.numerics = plan_numerics(config, device, self.data.layout, step=self.step_mode)
        self.autocast = self.numerics.autocast_dtype  # None: float32 (on the CPU unless precision="bfloat16")
        self.use_amp = self.autocast is not None
        self.eval_batch_size = eval_batch_size(config, self.data.layout, device.type)
        self.channels_last = self.numerics.channels_last
        check_last_batch(config.model, self.data.input_shape, self.data.num_classes, config.dropout,
                         self.data.layout, self.data.n_train, config.batch_size)
        with seeded(stream_seed(config.seed, "init"), torch.device("cpu")):  # built on the CPU, then moved
            model = create_model(config.model, self.data.input_shape, self.data.num_classes,
                                 dropout=config.dropout, layout=self.data.layout)
        self.n_params = count_params(model)
        self.model = model.to(device, memory_format=torch.channels_last) if self.channels_last else model.to(device)
        if self.channels_last:
            self.data.x_train = self.data.x_train.contiguous(memory_format=torch.channels_last)
            self.data.x_test = self.data.x_test.contiguous(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if self.numerics.graph == "torch.compile" else self.model
        self.optimizer = make_optimizer(self.model.parameters(), config, device)
        self.static = None if self.step_mode == "eager" else StaticStep(self, capture=self.step_mode == "captured")
        self.period = decay_period(config.lr_decay_every, self.data.n_train)
        self.history = RunHistory()
        self.epoch_evaluations: list[list[float]] = []  # (step, train accuracy) inside the last epoch

    # ---------------------------------------------------------------- checkpoints
    def model_state_dict(self) -> dict[str, torch.Tensor]:
        """The run's current weights and BatchNorm statistics (the model's ``state_dict``, not copied)."""
        return self.model.state_dict()

    def checkpoint(self) -> dict[str, Any]:
        """A ``torch.save``-able snapshot from which :func:`train` (or the fused trainer) resumes exactly."""
        return make_checkpoint(self.history, self.config, copy.deepcopy(self.model.state_dict()),
                               copy.deepcopy(self.optimizer.state_dict()), self.numerics)

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from ``ckpt`` (from either trainer's ``checkpoint()``); raises ConfigError for a
        checkpoint of another run or format, NumericsMismatchError for an unfinished run's checkpoint
        trained with other numerics (rethinkgen.train.numerics)."""
        self.history, model_state, optimizer_state = read_checkpoint(ckpt, self.config)
        self.numerics = resume_numerics(ckpt, self.numerics, self.config)
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(copy.deepcopy(optimizer_state))  # torch keeps the tensors it is given
        if self.static is not None:  # the momentum buffers into the static ones the step updates
            self.static.load_optimizer_state()

    # ---------------------------------------------------------------- one epoch
    def _batch(self, index: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.data.x_train_raw is None:
            return self.data.x_train[index]
        xb = self.data.preprocessor.train_batch(self.data.x_train_raw[index], generator)
        return xb.contiguous(memory_format=torch.channels_last) if self.channels_last else xb

    def train_epoch(self) -> tuple[float, list[list[float]]]:
        """One pass over the training set in a fresh seeded order; returns (mean loss, logged losses).

        With ``eval_every``, the training set is also evaluated (eval mode) after every
        ``eval_every``-th step but the epoch's last (the epoch-end row is that evaluation); the
        (step, accuracy) pairs are left in ``self.epoch_evaluations`` for :meth:`fit`.
        """
        c, h = self.config, self.history
        epoch = h.epoch + 1
        order = torch.Generator().manual_seed(stream_seed(c.seed, "order", epoch))
        perm = torch.randperm(self.data.n_train, generator=order)  # (N,), on the CPU
        augment = None
        if self.data.x_train_raw is not None:
            augment = torch.Generator(device=self.device).manual_seed(stream_seed(c.seed, "augment", epoch))
        starts = range(0, self.data.n_train, c.batch_size)
        lrs = [lr_at(c.lr, c.lr_decay, self.period, h.samples_seen + s) for s in starts]  # each step's rate
        first, last = h.step, len(starts) - 1
        self.model.train()
        logged: list[tuple[int, torch.Tensor]] = []
        evaluations: list[tuple[int, torch.Tensor]] = []
        with seeded(stream_seed(c.seed, "dropout", epoch), self.device):  # dropout draws from the global RNG
            if self.static is not None:
                self.static.begin_epoch(perm, lrs, augment)
            else:
                perm = perm.to(self.device)
                loss_sum = torch.zeros((), device=self.device)
            for j, start in enumerate(starts):
                step = first + j + 1
                if self.static is not None:
                    self.static.step(j)
                else:
                    loss = self._sgd_step(perm[start:start + c.batch_size], augment, lrs[j])  # (B,) indices
                    loss_sum += loss
                    if step % c.log_every == 0:
                        logged.append((step, loss))
                if c.eval_every and step % c.eval_every == 0 and j != last:
                    evaluations.append((step, self._train_accuracy()))
        if self.static is not None:
            self.static.end_epoch(lrs[-1])
            loss_sum = self.static.loss_sum
            logged = [(first + j + 1, self.static.losses[j]) for j in range(len(starts))
                      if (first + j + 1) % c.log_every == 0]
        h.epoch, h.step, h.samples_seen = epoch, h.step + len(starts), h.samples_seen + self.data.n_train
        # the epoch's one host sync: loss sum, logged losses and evaluated accuracies together
        values = torch.stack([loss_sum, *(v for _, v in logged), *(a for _, a in evaluations)]).tolist()
        losses, accs = values[1:1 + len(logged)], values[1 + len(logged):]
        self.epoch_evaluations = [[s, a] for (s, _), a in zip(evaluations, accs, strict=True)]
        return values[0] / len(starts), [[s, v] for (s, _), v in zip(logged, losses, strict=True)]

    def _sgd_step(self, index: torch.Tensor, augment: torch.Generator | None, lr: float) -> torch.Tensor:
        """One SGD step on the samples ``index`` (B,) at learning rate ``lr``; returns the minibatch loss
        (a detached 0-d tensor on the device: no host sync). Forward, backward and optimizer step, nothing
        else: the unit the static step (rethinkgen.train.step) replaces."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast_context(self.device.type, self.autocast):
            output = self.forward(self._batch(index, augment))  # (B, K), or ((B, K), (B, K)) with aux logits
        loss = training_loss(output, self.data.y_train[index])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _train_accuracy(self) -> torch.Tensor:
        """Accuracy on the whole training set (labels trained on) in eval mode, a 0-d device tensor;
        the model goes back to train mode after."""
        d = self.data
        _, correct = predict_correct(self.forward, d.x_train, d.y_train, self.eval_batch_size, self.autocast)
        return correct.float().mean()

    # ---------------------------------------------------------------- evaluation
    def evaluate_row(self, train_loss: float | None) -> dict[str, Any]:
        """The per-epoch metrics row (keys fixed: the results store relies on them)."""
        c, d, h = self.config, self.data, self.history
        tr = evaluate(self.forward, d.x_train, d.y_train, self.eval_batch_size, d.changed, self.autocast, d.num_classes)
        te = evaluate(self.forward, d.x_test, d.y_test, self.eval_batch_size, None, self.autocast, d.num_classes)
        lr_now = last_step_lr(c.lr, c.lr_decay, self.period, h.samples_seen, d.n_train, c.batch_size)
        return {
            "epoch": h.epoch, "step": h.step, "samples_seen": h.samples_seen, "lr": lr_now,
            "train_loss": train_loss, "train_eval_loss": tr.loss, "train_acc": tr.acc,
            "train_acc_corrupted": tr.acc_changed, "train_acc_clean": tr.acc_unchanged,
            "test_loss": te.loss, "test_acc": te.acc, "wall_time_s": h.wall_time_s,
            "train_acc_top5": tr.acc_top5, "test_acc_top5": te.acc_top5,
        }

    # ---------------------------------------------------------------- the run
    def fit(self, callbacks: Iterable[Any] = (), progress: bool = False) -> dict[str, Any]:
        callbacks, h = list(callbacks), self.history
        with Progress([(0, self.config, h.epoch)], enabled=progress) as bar:
            if h.untrained:  # epoch 0: the untrained model
                self._record(self.evaluate_row(None), [], callbacks, bar)
            while not h.finished:
                t0 = time.perf_counter()
                train_loss, logged = self.train_epoch()
                h.wall_time_s += time.perf_counter() - t0
                h.step_losses.extend(logged)
                t0 = time.perf_counter()
                row = self.evaluate_row(train_loss)
                h.wall_time_s += time.perf_counter() - t0
                row["wall_time_s"] = h.wall_time_s
                self._record(row, logged, callbacks, bar, self.epoch_evaluations)
        summary = self.summary()
        for cb in callbacks:
            if hasattr(cb, "on_train_end"):
                cb.on_train_end(summary)
        return summary

    def _record(self, row, logged, callbacks, bar, evaluations=()) -> None:
        self.history.finish_epoch(row, self.config, evaluations)
        for cb in callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(row, logged, self)
        bar.update(0, row)

    def summary(self) -> dict[str, Any]:
        return {**run_summary(self.history, self.config, n_params=self.n_params,
                              realized_noise_rate=self.data.realized_noise_rate,
                              n_train=self.data.n_train, device=self.device,
                              numerics=self.numerics),
                "data": self.data.data_info}  # layout found, scaling, classes and mapping (data.describe)


def train(config: TrainConfig | None = None, *, callbacks: Iterable[Any] = (), resume: dict | None = None,
          progress: bool = False, run_dir: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Train one run and return its summary (see the module docstring).

    ``train(TrainConfig(...))`` or ``train(data="mnist1d", corruption="random_labels", ...)``; keyword
    overrides replace fields of ``config``. ``resume`` is a dict from ``Trainer.checkpoint()``. Datasets
    streamed from disk (``imagenet``) are trained by :func:`rethinkgen.train.streaming.run.train_streamed`,
    which writes the run's label file into ``run_dir`` (ignored for the others).
    """
    config = (config or TrainConfig()).replace(**overrides) if overrides else (config or TrainConfig())
    resolved = resolve_config(config)
    if streams(resolved):  # ImageNet: read from disk by DataLoader workers, on one or several processes
        return train_streamed(resolved, callbacks=callbacks, resume=resume, progress=progress, run_dir=run_dir)
    device = select_device(resolved.device)
    trainer = Trainer(resolved, device)
    if device.type == "cpu":  # after the data is loaded: no per-step page faults on the activations
        keep_freed_memory()  # (rethinkgen.train.allocator)
    if resume is not None:
        trainer.restore(resume)
    if trainer.history.finished:  # the checkpoint is of a finished run
        return trainer.summary()
    return trainer.fit(callbacks, progress)
