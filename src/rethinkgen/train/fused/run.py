"""One run of a fused group: its config, callbacks, history, and its checkpoints in the single
trainer's format (so ``train(config, resume=ckpt)`` continues a fused run alone, and vice versa)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from rethinkgen.train.config import TrainConfig
from rethinkgen.train.history import RunHistory, make_checkpoint, read_checkpoint, resume_numerics, run_summary
from rethinkgen.train.loop import make_optimizer
from rethinkgen.train.schedule import decay_period, last_step_lr

if TYPE_CHECKING:
    from rethinkgen.train.fused.group import FusedGroup

__all__ = ["Run"]


class Run:
    """One run of a group: its config, callbacks and :class:`RunHistory`, and where its tensors are in
    the group's stacks. ``checkpoint()`` / ``restore()`` speak the single trainer's format (a
    ``state_dict`` of the run's model and of a ``torch.optim.SGD`` over its parameters)."""

    def __init__(self, group: FusedGroup, slot: int, config: TrainConfig, realized_noise_rate: float,
                 callbacks: list[Any], data_info: dict | None = None) -> None:
        self.group, self.config, self.callbacks = group, config, callbacks
        self.realized_noise_rate = realized_noise_rate
        self.data_info = data_info or {}  # the source's record (rethinkgen.data.describe.data_info)
        self.period = decay_period(config.lr_decay_every, group.n_train)
        self.slot: int | None = slot  # index in the group's stacked tensors; None once the run has left
        self.final: tuple[dict, dict] | None = None  # its (model state, momentum) when it left
        self.history = RunHistory()
        self.numerics = group.numerics  # what its checkpoints and summary record; checked on resume
        self.epoch_evaluations: list[list[float]] = []  # (step, train accuracy) inside the last epoch

    @property
    def device(self) -> torch.device:
        return self.group.device

    def model_state_dict(self) -> dict[str, torch.Tensor]:
        """The run's current weights and BatchNorm statistics, as the single trainer's model ``state_dict``
        (copies of its slice of the group's stacks)."""
        return self.group.run_tensors(self)[0]

    def checkpoint(self) -> dict[str, Any]:
        """A snapshot in the single trainer's checkpoint format: ``train(config, resume=ckpt)`` continues it."""
        state, momentum = self.group.run_tensors(self)
        return make_checkpoint(self.history, self.config, state, self._optimizer_state(state, momentum),
                               self.numerics)

    def _optimizer_state(self, state: dict[str, torch.Tensor], momentum: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The ``state_dict`` the single trainer's optimizer would have for this run."""
        c, h, group = self.config, self.history, self.group
        tensors = [state[name] for name in group.param_names]
        optimizer = make_optimizer(tensors, c, group.device)  # the single trainer's optimizer and flags
        if h.step > 0:  # lr of the last step, as the single trainer leaves it in the param group
            optimizer.param_groups[0]["lr"] = last_step_lr(c.lr, c.lr_decay, self.period, h.samples_seen,
                                                           group.n_train, c.batch_size)
            if c.momentum != 0:
                for tensor, name in zip(tensors, group.param_names, strict=True):
                    optimizer.state[tensor]["momentum_buffer"] = momentum[name]
        return optimizer.state_dict()

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from a checkpoint of either trainer (raises ConfigError for another run's)."""
        self.history, model_state, optimizer_state = read_checkpoint(ckpt, self.config)
        self.numerics = resume_numerics(ckpt, self.numerics, self.config)
        self.group.load_run(self, model_state, optimizer_state)

    def summary(self) -> dict[str, Any]:
        return {**run_summary(self.history, self.config, n_params=self.group.n_params,
                              realized_noise_rate=self.realized_noise_rate,
                              n_train=self.group.n_train, device=self.group.device,
                              numerics=self.numerics),
                "data": self.data_info}
