"""The record of one run: what it has done so far, its end-of-epoch status, checkpoint and summary.

Both trainers keep one :class:`RunHistory` per run — :class:`rethinkgen.train.loop.Trainer` for a run
trained alone, the fused trainer (:mod:`rethinkgen.train.fused`) for each run of a group — and write
and read checkpoints through :func:`make_checkpoint` / :func:`read_checkpoint`, so a checkpoint of a
run trained alone resumes in a fused group and vice versa.

Status (design §2; paper Figure 1b for the convergence step), decided at each epoch end:

- ``diverged``: the epoch's mean training loss or the evaluated training loss is not finite;
- ``converged``: an evaluation of the whole (corrupted) training set in eval mode reached
  ``target_train_acc``; ``converged_step`` is the step of the *first* such evaluation,
  ``converged_epoch`` the epoch it fell in and ``converged_train_acc`` the accuracy it measured. The
  training set is evaluated at every epoch end (the row) and, with ``eval_every``, also after every
  ``eval_every``-th SGD step (counted over the whole run), so the convergence step is the true first
  step at or above the target up to :func:`convergence_resolution` steps. A run that converges inside
  an epoch still finishes that epoch (rows stay whole epochs), so its last row may show a training
  accuracy just below the target again;
- ``max_epochs``: the epoch limit is reached without either;
- ``None``: the run goes on.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rethinkgen.train.config import TrainConfig, run_key
from rethinkgen.train.numerics import Numerics, check_resume
from rethinkgen.train.schedule import schedule_warnings

# Checkpoint format written by both trainers (a dict; torch.save-able, weights_only-loadable).
# Version 2 added converged_train_acc; version 1 checkpoints still load (see read_checkpoint).
CHECKPOINT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_HISTORY_FIELDS = ("epoch", "step", "samples_seen", "wall_time_s", "status", "converged_step", "converged_epoch",
                   "converged_train_acc")
TARGET_SLACK = 1e-12  # an accuracy this close below the target counts as reaching it (float rounding)


@dataclass
class RunHistory:
    """What one run has done so far (everything of a run that is neither weights nor optimizer state).

    Counters count completed SGD steps / samples / epochs; ``wall_time_s`` is seconds of training and
    evaluation (for a fused run: the group's elapsed time while the run was in it).
    """

    epoch: int = 0  # completed epochs
    step: int = 0  # completed SGD steps
    samples_seen: int = 0  # training samples consumed by those steps
    wall_time_s: float = 0.0  # seconds spent training and evaluating
    metrics: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch; epoch 0 = untrained model
    step_losses: list[list[float]] = field(default_factory=list)  # [step, minibatch loss] every log_every steps
    status: str | None = None  # converged | max_epochs | diverged once finished
    converged_step: int | None = None  # step of the first evaluation that reached target_train_acc
    converged_epoch: int | None = None  # the epoch that step fell in
    converged_train_acc: float | None = None  # the training accuracy that evaluation measured

    @property
    def finished(self) -> bool:
        return self.status is not None

    @property
    def untrained(self) -> bool:
        """No epoch recorded yet, not even epoch 0 (the untrained model's row)."""
        return self.epoch == 0 and not self.metrics

    def finish_epoch(self, row: dict[str, Any], config: TrainConfig,
                     evaluations: Sequence[tuple[int, float]] = ()) -> None:
        """Append an epoch's metrics row and decide the run's status (module docstring).

        ``evaluations`` are the epoch's evaluations of the training set before its end, as (step,
        accuracy) pairs in step order (``eval_every``); the row is the evaluation at the epoch's end.
        """
        self.metrics.append(row)
        losses = [row["train_loss"], row["train_eval_loss"]]
        if any(v is not None and not math.isfinite(v) for v in losses):
            self.status = "diverged"
            blank_non_finite_accuracies(row)
            return
        looks = [*evaluations, (self.step, row["train_acc"])]
        reached = next(((s, a) for s, a in looks if a >= config.target_train_acc - TARGET_SLACK), None)
        if reached is not None:
            self.status = "converged"
            self.converged_step, self.converged_train_acc = reached
            self.converged_epoch = self.epoch
        elif self.epoch >= config.epochs:
            self.status = "max_epochs"


TRAIN_ACCURACIES = ("train_acc", "train_acc_corrupted", "train_acc_clean", "train_acc_top5")
TEST_ACCURACIES = ("test_acc", "test_acc_top5")


def blank_non_finite_accuracies(row: dict[str, Any]) -> None:
    """Set a diverged row's accuracies to None (in place) where they were measured on non-finite outputs:
    the training ones when ``train_eval_loss`` is not finite, the test ones when ``test_loss`` is not.
    An argmax of NaN logits picks class 0, so those "accuracies" are the share of class 0 (design §2:
    a diverged run's numbers are not results), and would otherwise reach metrics.csv, the store and
    every export."""
    for loss, keys in (("train_eval_loss", TRAIN_ACCURACIES), ("test_loss", TEST_ACCURACIES)):
        value = row.get(loss)
        if value is not None and not math.isfinite(value):
            row.update({k: None for k in keys if k in row})


def convergence_resolution(eval_every: int | None, steps_per_epoch: int) -> int:
    """The largest number of SGD steps between two evaluations of the training set: the convergence
    step is the first evaluated step at or above the target, at most this many steps after the true one.

    Evaluations fall on every ``eval_every``-th step and on every epoch end (``steps_per_epoch`` apart).
    """
    return min(eval_every, steps_per_epoch) if eval_every else steps_per_epoch


# ------------------------------------------------------------------------------------ checkpoints
def make_checkpoint(history: RunHistory, config: TrainConfig, model_state: dict[str, torch.Tensor],
                    optimizer_state: dict[str, Any], numerics: Numerics) -> dict[str, Any]:
    """A ``torch.save``-able snapshot of a run at an epoch end, from which either trainer resumes it exactly.

    ``model_state`` is a ``state_dict`` of the run's model and ``optimizer_state`` one of a
    ``torch.optim.SGD`` over its parameters (both must be copies: training goes on mutating the
    originals). The history's lists are copied too. ``numerics`` (how the run is computed) is recorded:
    a resume with other numerics is refused (:func:`resume_numerics`).
    """
    ckpt: dict[str, Any] = {"version": CHECKPOINT_VERSION, "run_key": run_key(config), "model": model_state,
                            "optimizer": optimizer_state, "numerics": numerics.to_dict()}
    for name in _HISTORY_FIELDS:
        ckpt[name] = getattr(history, name)
    ckpt["metrics"] = [dict(r) for r in history.metrics]
    ckpt["step_losses"] = [list(p) for p in history.step_losses]
    return ckpt


def read_checkpoint(ckpt: dict[str, Any], config: TrainConfig) -> tuple[RunHistory, dict, dict]:
    """(history, model state, optimizer state) of a checkpoint of the run ``config``.

    Raises ConfigError if the checkpoint belongs to another run or has a format this version cannot read.
    """
    from rethinkgen.errors import ConfigError

    version = ckpt.get("version")
    if version not in READABLE_VERSIONS:
        raise ConfigError(f"checkpoint format version {version!r} cannot be read by this rethinkgen (it reads "
                          f"versions {', '.join(map(str, READABLE_VERSIONS))}); rerun the run from scratch, "
                          "or resume it with the rethinkgen that wrote it")
    if ckpt.get("run_key") != run_key(config):
        raise ConfigError("checkpoint belongs to another run (run_key differs); delete it or use its config")
    values = {name: ckpt.get(name) for name in _HISTORY_FIELDS}
    metrics = [dict(r) for r in ckpt["metrics"]]
    if version == 1 and values["status"] == "converged":  # v1 converged only at epoch ends: that row's accuracy
        values["converged_train_acc"] = next(r["train_acc"] for r in metrics if r["epoch"] == values["converged_epoch"])
    history = RunHistory(**values, metrics=metrics, step_losses=[list(p) for p in ckpt["step_losses"]])
    return history, ckpt["model"], ckpt["optimizer"]


def resume_numerics(ckpt: dict[str, Any], here: Numerics, config: TrainConfig) -> Numerics:
    """The numerics a run restored from ``ckpt`` has: a finished run is only read back and keeps the
    numerics it was trained with; an unfinished one continues only with those it was trained with —
    raises :class:`~rethinkgen.train.numerics.NumericsMismatchError` (naming each difference and the
    fix) when ``here`` differs. Checkpoints of versions that recorded none are not compared."""
    if ckpt.get("status") is None:
        check_resume(ckpt.get("numerics"), here, run=f"run {run_key(config)[:10]}")
        return here
    return Numerics.from_dict(ckpt["numerics"]) if ckpt.get("numerics") else here


# ---------------------------------------------------------------------------------------- summary
def run_summary(history: RunHistory, config: TrainConfig, *, n_params: int, realized_noise_rate: float,
                n_train: int, device: torch.device, numerics: Numerics) -> dict[str, Any]:
    """The summary of a run on ``n_train`` training samples (keys fixed: the results store and the CLI
    rely on them)."""
    steps_per_epoch = -(-n_train // config.batch_size)
    last = history.metrics[-1] if history.metrics else {}
    return {
        "status": history.status,
        "train_acc": last.get("train_acc"),
        "test_acc": last.get("test_acc"),
        "best_test_acc": best_along_training(history.metrics, "test_acc"),
        "train_acc_top5": last.get("train_acc_top5"),
        "test_acc_top5": last.get("test_acc_top5"),
        "best_test_acc_top5": best_along_training(history.metrics, "test_acc_top5"),
        "converged_step": history.converged_step,
        "converged_epoch": history.converged_epoch,
        "converged_train_acc": history.converged_train_acc,
        "eval_every": config.eval_every,  # None: the training set was evaluated once per epoch
        "convergence_resolution_steps": convergence_resolution(config.eval_every, steps_per_epoch),
        "steps": history.step,
        "epochs": history.epoch,
        "n_params": n_params,
        "realized_noise_rate": realized_noise_rate,
        "config": config.to_dict(),
        "run_key": run_key(config),
        "wall_time_s": history.wall_time_s,
        "metrics": list(history.metrics),
        "step_losses": list(history.step_losses),
        "device": str(device),
        "numerics": numerics.to_dict(),
        "torch_version": torch.__version__,
        "hardware": hardware_description(device),
        "warnings": schedule_warnings(config, n_train),  # train.schedule: a learning rate starved early
    }


def best_along_training(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    """The largest ``key`` over the epoch rows (epoch 0, the untrained model, included), None if no row
    has it: Table 2's parentheses, "the best test accuracy along the training process" (paper §3.1)."""
    values = [r[key] for r in rows if r.get(key) is not None]
    return max(values) if values else None


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
