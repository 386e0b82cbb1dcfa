"""The trainer: one randomization-test run (paper §2, Figure 1; Appendix A optimisation).

SGD with momentum on the (possibly corrupted) training set, the paper's x0.95 learning-rate decay
counted in samples seen, evaluation of the whole training set in eval mode after every epoch, and a
stop as soon as training accuracy reaches ``target_train_acc`` — the step at which that happens is
the run's *convergence step* (Figure 1b). Measured at epoch ends, so its resolution is one epoch.

Randomness: every torch draw happens inside ``torch.random.fork_rng`` (the caller's global RNG is
untouched); the model is initialised from the "init" stream, and each epoch reseeds its data order,
augmentation and dropout from ``(seed, epoch)``. A checkpoint taken at an epoch end therefore resumes
to exactly the numbers of an uninterrupted run on the CPU.
"""

from __future__ import annotations

import copy
import math
import platform
import time
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from rethinkgen.seeding import stream_seed
from rethinkgen.train.allocator import keep_freed_memory
from rethinkgen.train.config import TrainConfig, run_key
from rethinkgen.train.data import PreparedData, prepare_data
from rethinkgen.train.metrics import evaluate
from rethinkgen.train.resolve import eval_batch_size, resolve_config
from rethinkgen.train.schedule import decay_period, lr_at

CHECKPOINT_VERSION = 1

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
    """``torch.optim.SGD`` that hands its kernel contiguous gradients only: torch's fused CPU kernel
    (2.14) reads a strided gradient (e.g. a transposed view) in memory order, i.e. wrongly."""

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and not p.grad.is_contiguous():
                    p.grad = p.grad.contiguous()
        return super().step(closure)


def make_optimizer(params: Iterable[torch.Tensor], config: TrainConfig, device: torch.device) -> torch.optim.SGD:
    """SGD with the config's momentum and weight decay. On the CPU torch's fused one-pass kernel: the same
    numbers as the default single-tensor loop (bit for bit), about 3x faster for mlp_1x512's 1.2M weights."""
    if device.type == "cpu":
        return _ContiguousSGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                              fused=True)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


class Trainer:
    """State of one run: data, model, optimizer and the history so far.

    Construct it inside ``torch.random.fork_rng`` (``train`` does): the model is initialised here.
    """

    def __init__(self, config: TrainConfig, device: torch.device) -> None:
        from rethinkgen.models import count_params, create_model

        self.config = config
        self.device = device
        self.data: PreparedData = prepare_data(config, device)
        self.use_amp = config.amp and device.type == "cuda"
        self.eval_batch_size = eval_batch_size(config, self.data.layout, device.type)
        self.channels_last = device.type == "cuda" and self.data.layout == "image"
        torch.manual_seed(stream_seed(config.seed, "init"))
        model = create_model(config.model, self.data.input_shape, self.data.num_classes,
                             dropout=config.dropout, layout=self.data.layout)
        self.n_params = count_params(model)
        self.model = model.to(device, memory_format=torch.channels_last) if self.channels_last else model.to(device)
        if self.channels_last:
            self.data.x_train = self.data.x_train.contiguous(memory_format=torch.channels_last)
            self.data.x_test = self.data.x_test.contiguous(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if (config.compile and device.type == "cuda") else self.model
        self.optimizer = make_optimizer(self.model.parameters(), config, device)
        self.period = decay_period(config.lr_decay_every, self.data.n_train)
        self.start_history()

    def start_history(self) -> None:
        """The run's history before its first epoch (also used by the fused trainer's per-run state)."""
        self.epoch = self.step = self.samples_seen = 0
        self.wall_time_s = 0.0
        self.metrics: list[dict[str, Any]] = []  # one row per epoch, epoch 0 = the untrained model
        self.step_losses: list[list[float]] = []  # [step, minibatch loss] every log_every steps
        self.status: str | None = None  # converged | max_epochs | diverged once finished
        self.converged_step: int | None = None
        self.converged_epoch: int | None = None

    # ---------------------------------------------------------------- checkpoints
    def checkpoint(self) -> dict[str, Any]:
        """A ``torch.save``-able snapshot from which :func:`train` resumes exactly."""
        return {
            "version": CHECKPOINT_VERSION,
            "run_key": run_key(self.config),
            "model": copy.deepcopy(self.model.state_dict()),  # copies: training goes on mutating them
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "epoch": self.epoch,
            "step": self.step,
            "samples_seen": self.samples_seen,
            "wall_time_s": self.wall_time_s,
            "metrics": list(self.metrics),
            "step_losses": list(self.step_losses),
            "status": self.status,
            "converged_step": self.converged_step,
            "converged_epoch": self.converged_epoch,
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        from rethinkgen.errors import ConfigError

        if ckpt.get("run_key") != run_key(self.config):
            raise ConfigError("checkpoint belongs to another run (run_key differs); delete it or use its config")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(copy.deepcopy(ckpt["optimizer"]))  # torch keeps the tensors it is given
        for name in ("epoch", "step", "samples_seen", "wall_time_s", "status", "converged_step",
                     "converged_epoch"):
            setattr(self, name, ckpt[name])
        self.metrics = list(ckpt["metrics"])
        self.step_losses = [list(p) for p in ckpt["step_losses"]]

    # ---------------------------------------------------------------- one epoch
    def _batch(self, index: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.data.x_train_raw is None:
            return self.data.x_train[index]
        xb = self.data.preprocessor.train_batch(self.data.x_train_raw[index], generator)
        return xb.contiguous(memory_format=torch.channels_last) if self.channels_last else xb

    def train_epoch(self) -> tuple[float, list[list[float]]]:
        """One pass over the training set in a fresh seeded order; returns (mean loss, logged losses)."""
        c, epoch = self.config, self.epoch + 1
        order = torch.Generator().manual_seed(stream_seed(c.seed, "order", epoch))
        perm = torch.randperm(self.data.n_train, generator=order).to(self.device)  # (N,)
        augment = None
        if self.data.x_train_raw is not None:
            augment = torch.Generator(device=self.device).manual_seed(stream_seed(c.seed, "augment", epoch))
        torch.manual_seed(stream_seed(c.seed, "dropout", epoch))
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        logged: list[tuple[int, torch.Tensor]] = []
        n_batches = 0
        for start in range(0, self.data.n_train, c.batch_size):
            index = perm[start:start + c.batch_size]  # (B,)
            lr = lr_at(c.lr, c.lr_decay, self.period, self.samples_seen)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
                logits = self.forward(self._batch(index, augment))  # (B, K)
            loss = F.cross_entropy(logits.float(), self.data.y_train[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            self.samples_seen += int(index.shape[0])
            n_batches += 1
            loss_sum += loss.detach()
            if self.step % c.log_every == 0:
                logged.append((self.step, loss.detach()))
        self.epoch = epoch
        values = torch.stack([v for _, v in logged]).tolist() if logged else []
        return float(loss_sum) / max(n_batches, 1), [[s, v] for (s, _), v in zip(logged, values, strict=True)]

    # ---------------------------------------------------------------- evaluation
    def evaluate_row(self, train_loss: float | None) -> dict[str, Any]:
        """The per-epoch metrics row (keys fixed: the results store relies on them)."""
        c, d = self.config, self.data
        tr = evaluate(self.forward, d.x_train, d.y_train, self.eval_batch_size, d.changed, self.use_amp)
        te = evaluate(self.forward, d.x_test, d.y_test, self.eval_batch_size, None, self.use_amp)
        lr_now = lr_at(c.lr, c.lr_decay, self.period, max(self.samples_seen - 1, 0))
        return {
            "epoch": self.epoch, "step": self.step, "samples_seen": self.samples_seen, "lr": lr_now,
            "train_loss": train_loss, "train_eval_loss": tr.loss, "train_acc": tr.acc,
            "train_acc_corrupted": tr.acc_changed, "train_acc_clean": tr.acc_unchanged,
            "test_loss": te.loss, "test_acc": te.acc, "wall_time_s": self.wall_time_s,
        }

    def _finish_epoch(self, row: dict[str, Any]) -> None:
        self.metrics.append(row)
        losses = [row["train_loss"], row["train_eval_loss"]]
        if any(v is not None and not math.isfinite(v) for v in losses):
            self.status = "diverged"
        elif row["train_acc"] >= self.config.target_train_acc - 1e-12:
            self.status = "converged"
            self.converged_step, self.converged_epoch = self.step, self.epoch
        elif self.epoch >= self.config.epochs:
            self.status = "max_epochs"

    # ---------------------------------------------------------------- the run
    def fit(self, callbacks: Iterable[Any] = (), progress: bool = False) -> dict[str, Any]:
        callbacks = list(callbacks)
        bar = _Progress(self.config, enabled=progress)
        with bar:
            if self.epoch == 0 and not self.metrics:  # epoch 0: the untrained model
                self._record(self.evaluate_row(None), [], callbacks, bar)
            while self.status is None:
                t0 = time.perf_counter()
                train_loss, logged = self.train_epoch()
                self.wall_time_s += time.perf_counter() - t0
                self.step_losses.extend(logged)
                t0 = time.perf_counter()
                row = self.evaluate_row(train_loss)
                self.wall_time_s += time.perf_counter() - t0
                row["wall_time_s"] = self.wall_time_s
                self._record(row, logged, callbacks, bar)
        summary = self.summary()
        for cb in callbacks:
            if hasattr(cb, "on_train_end"):
                cb.on_train_end(summary)
        return summary

    def _record(self, row, logged, callbacks, bar) -> None:
        self._finish_epoch(row)
        for cb in callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(row, logged, self)
        bar.update(row)

    def summary(self) -> dict[str, Any]:
        last = self.metrics[-1] if self.metrics else {}
        tests = [r["test_acc"] for r in self.metrics if r.get("test_acc") is not None]
        return {
            "status": self.status,
            "train_acc": last.get("train_acc"),
            "test_acc": last.get("test_acc"),
            "best_test_acc": max(tests) if tests else None,
            "converged_step": self.converged_step,
            "converged_epoch": self.converged_epoch,
            "steps": self.step,
            "epochs": self.epoch,
            "n_params": self.n_params,
            "realized_noise_rate": self.data.realized_noise_rate,
            "data": self.data.data_info,  # layout found, scaling, classes and mapping (data.describe)
            "config": self.config.to_dict(),
            "run_key": run_key(self.config),
            "wall_time_s": self.wall_time_s,
            "metrics": list(self.metrics),
            "step_losses": list(self.step_losses),
            "device": str(self.device),
            "torch_version": torch.__version__,
            "hardware": hardware_description(self.device),
        }


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def train(config: TrainConfig | None = None, *, callbacks: Iterable[Any] = (), resume: dict | None = None,
          progress: bool = False, **overrides: Any) -> dict[str, Any]:
    """Train one run and return its summary (see the module docstring).

    ``train(TrainConfig(...))`` or ``train(data="mnist1d", corruption="random_labels", ...)``; keyword
    overrides replace fields of ``config``. ``resume`` is a dict from ``Trainer.checkpoint()``.
    """
    config = (config or TrainConfig()).replace(**overrides) if overrides else (config or TrainConfig())
    resolved = resolve_config(config)
    device = select_device(resolved.device)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        trainer = Trainer(resolved, device)
        if device.type == "cpu":  # after the data is loaded: no per-step page faults on the activations
            keep_freed_memory()  # (rethinkgen.train.allocator)
        if resume is not None:
            trainer.restore(resume)
        if trainer.status is not None:  # the checkpoint is of a finished run
            return trainer.summary()
        return trainer.fit(callbacks, progress)


class _Progress:
    """A rich progress bar over epochs showing loss and train/test accuracy (no-op when disabled)."""

    def __init__(self, config: TrainConfig, enabled: bool) -> None:
        self.enabled = enabled
        self.total = config.epochs
        self.title = f"{config.model} · {config.corruption}" + (
            f" p={config.level:g}" if config.level is not None and config.corruption == "partial_labels" else "")

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeElapsedColumn())
            self.progress.__enter__()
            self.task = self.progress.add_task(self.title, total=self.total, info="")
        return self

    def update(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        loss = row["train_loss"]
        info = (f"loss {loss:.3f} · " if loss is not None else "") + \
            f"train {100 * row['train_acc']:.1f}% · test {100 * row['test_acc']:.1f}%"
        self.progress.update(self.task, completed=row["epoch"], info=info)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.__exit__(*exc)
