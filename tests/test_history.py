"""The run record both trainers share (rethinkgen.train.history): status, checkpoints, summary.

Pure bookkeeping, no training except where a test says so; every tensor is on the CPU.
"""

from __future__ import annotations

import math

import pytest
import torch

from rethinkgen.errors import ConfigError
from rethinkgen.train.config import TrainConfig, run_key
from rethinkgen.train.history import (
    CHECKPOINT_VERSION,
    RunHistory,
    convergence_resolution,
    make_checkpoint,
    read_checkpoint,
    run_summary,
)
from rethinkgen.train.numerics import Numerics
from rethinkgen.train.resolve import resolve_config

CPU = Numerics(device="cpu", threads=2)  # how the runs below are computed (recorded, compared on resume)
CONFIG = resolve_config(TrainConfig(data="mnist1d", n_train=256, n_test=200, epochs=3, device="cpu",
                                    target_train_acc=0.9))


def row(epoch: int, step: int, train_acc: float, train_loss: float | None = 1.0, eval_loss: float = 1.0) -> dict:
    return {"epoch": epoch, "step": step, "samples_seen": 32 * step, "lr": 0.1, "train_loss": train_loss,
            "train_eval_loss": eval_loss, "train_acc": train_acc, "train_acc_corrupted": None,
            "train_acc_clean": None, "test_loss": 2.0, "test_acc": 0.5, "wall_time_s": 0.0}


def advance(h: RunHistory, steps: int = 8) -> None:
    h.epoch += 1
    h.step += steps
    h.samples_seen += 32 * steps


def test_status_follows_the_epoch_rows():
    h = RunHistory()
    h.finish_epoch(row(0, 0, 0.1, train_loss=None), CONFIG)  # the untrained model: no training loss
    assert h.status is None and not h.untrained
    advance(h)
    h.finish_epoch(row(1, 8, 0.5), CONFIG)
    assert h.status is None
    advance(h)
    h.finish_epoch(row(2, 16, 0.9), CONFIG)  # reaches target_train_acc = 0.9 exactly
    assert (h.status, h.converged_step, h.converged_epoch) == ("converged", 16, 2)


def test_an_evaluation_inside_the_epoch_sets_the_convergence_step():
    h = RunHistory(epoch=1, step=8)
    h.finish_epoch(row(1, 8, 0.85), CONFIG, evaluations=[(3, 0.5), (5, 0.92), (6, 0.97)])
    # the first evaluation at or above 0.9, although the epoch ended below it
    assert (h.status, h.converged_step, h.converged_epoch, h.converged_train_acc) == ("converged", 5, 1, 0.92)
    h = RunHistory(epoch=1, step=8)
    h.finish_epoch(row(1, 8, 0.95), CONFIG, evaluations=[(3, 0.5), (6, 0.8)])
    assert (h.converged_step, h.converged_train_acc) == (8, 0.95)  # the epoch end was the first


def test_convergence_resolution_is_the_largest_gap_between_evaluations():
    assert convergence_resolution(None, 391) == 391  # once per epoch
    assert convergence_resolution(10, 391) == 10
    assert convergence_resolution(1000, 391) == 391  # epoch ends are evaluations too


def test_epoch_limit_and_divergence():
    h = RunHistory(epoch=3, step=24)
    h.finish_epoch(row(3, 24, 0.5), CONFIG)  # epochs = 3
    assert h.status == "max_epochs" and h.converged_step is None
    for bad in (dict(train_loss=math.nan), dict(eval_loss=math.inf)):
        h = RunHistory(epoch=1, step=8)
        h.finish_epoch(row(1, 8, 0.95, **bad), CONFIG)  # a diverged run never counts as converged
        assert h.status == "diverged" and h.converged_step is None


def test_checkpoint_round_trip_copies_the_lists():
    h = RunHistory(epoch=2, step=16, samples_seen=512, wall_time_s=1.5, metrics=[row(0, 0, 0.1), row(1, 8, 0.4)],
                   step_losses=[[3, 2.0], [6, 1.5]])
    model, optimizer = {"w": torch.ones(2)}, {"state": {}, "param_groups": []}
    ckpt = make_checkpoint(h, CONFIG, model, optimizer, CPU)
    assert ckpt["version"] == CHECKPOINT_VERSION and ckpt["run_key"] == run_key(CONFIG)
    assert ckpt["numerics"] == CPU.to_dict()
    h.metrics.append(row(2, 16, 0.5))  # later training must not change the snapshot
    h.step_losses[0][1] = 99.0
    back, model_back, optimizer_back = read_checkpoint(ckpt, CONFIG)
    assert len(back.metrics) == 2 and back.step_losses == [[3, 2.0], [6, 1.5]]
    assert (back.epoch, back.step, back.samples_seen, back.wall_time_s) == (2, 16, 512, 1.5)
    assert model_back is model and optimizer_back is optimizer


def test_foreign_and_unknown_checkpoints_are_refused_with_the_fix():
    ckpt = make_checkpoint(RunHistory(), CONFIG, {}, {}, CPU)
    with pytest.raises(ConfigError, match="another run"):
        read_checkpoint(ckpt, CONFIG.replace(seed=1))
    with pytest.raises(ConfigError, match="version 99.*from scratch"):
        read_checkpoint({**ckpt, "version": 99}, CONFIG)


def test_version_1_checkpoints_still_load():
    """Version 1 (before converged_train_acc) converged only at epoch ends: the accuracy is that row's."""
    v1 = {"version": 1, "run_key": run_key(CONFIG), "model": {}, "optimizer": {}, "epoch": 2, "step": 16,
          "samples_seen": 512, "wall_time_s": 3.0, "metrics": [row(0, 0, 0.1), row(1, 8, 0.5), row(2, 16, 0.95)],
          "step_losses": [[10, 1.0]], "status": "converged", "converged_step": 16, "converged_epoch": 2}
    h, _, _ = read_checkpoint(v1, CONFIG)
    assert (h.status, h.converged_step, h.converged_train_acc, h.epoch) == ("converged", 16, 0.95, 2)
    h, _, _ = read_checkpoint({**v1, "status": None, "converged_step": None, "converged_epoch": None}, CONFIG)
    assert h.status is None and h.converged_train_acc is None


def test_summary_reads_the_history():
    h = RunHistory(epoch=1, step=8, metrics=[row(0, 0, 0.2), {**row(1, 8, 0.9), "test_acc": 0.4}], status="converged",
                   converged_step=8, converged_epoch=1)
    s = run_summary(h, CONFIG, n_params=10, realized_noise_rate=0.0, n_train=8 * CONFIG.batch_size,
                    device=torch.device("cpu"), numerics=CPU)
    assert (s["status"], s["train_acc"], s["test_acc"], s["best_test_acc"]) == ("converged", 0.9, 0.4, 0.5)
    assert (s["steps"], s["epochs"], s["converged_step"], s["run_key"]) == (8, 1, 8, run_key(CONFIG))
    assert (s["eval_every"], s["convergence_resolution_steps"]) == (None, 8)
    assert s["numerics"] == CPU.to_dict()


def test_resume_numerics_refuses_an_unfinished_run_with_other_numerics_and_keeps_a_finished_ones():
    from rethinkgen.train.history import resume_numerics
    from rethinkgen.train.numerics import NumericsMismatchError

    ckpt = make_checkpoint(RunHistory(epoch=1, step=8), CONFIG, {}, {}, CPU)
    one_thread = Numerics(device="cpu", threads=1)
    with pytest.raises(NumericsMismatchError, match="threads: trained with 2 threads, here 1 thread"):
        resume_numerics(ckpt, one_thread, CONFIG)
    assert resume_numerics(ckpt, CPU, CONFIG) == CPU
    finished = {**ckpt, "status": "converged"}  # only read back: it keeps what it was trained with
    assert resume_numerics(finished, one_thread, CONFIG) == CPU
    assert resume_numerics({**ckpt, "numerics": None}, one_thread, CONFIG) == one_thread  # older: unrecorded
