"""Fused BatchNorm groups with channels-last storage forced, on the CPU (device="cpu"): the layout the
fused trainer uses on CUDA (rethinkgen.train.fused.batchnorm), several epochs long, with a run leaving
the group early and across a resume, against the same runs trained alone.

Compared: every metrics row and logged loss (the evaluations run in eval mode, so they read the
BatchNorm running statistics): losses within relative 2e-3 as tests/test_fused.py (measured <= 3e-4),
accuracies within 0.04 (one sample of the smallest subset, e.g. 1 of the 55 corrupted training samples;
resnet18 flips one at epoch 3), and each run's
BatchNorm state from its checkpoints: ``num_batches_tracked`` exactly, the running means and variances
within 1e-2 of each tensor's largest value after the first epoch and 1e-1 after the last (measured
2e-5..1e-3 and 2e-2..6e-2). Why so loose at the end: on these 10x10 images the deep BatchNorm layers
normalise a few values per channel, and some channels are so ill-conditioned that one float32 backward
pass differs by up to 5e-4 between the fused formulation (plain reductions under vmap) and torch's CPU
kernel (which accumulates in double); SGD then amplifies that over the epochs, as it does any rounding.
A statistic that is not updated, or updated from another run's batch, is off by far more than that.
A group resumed from its epoch-1 checkpoints, every run at the same epoch, repeats the uninterrupted
group's operations: equal bit for bit.
"""

from __future__ import annotations

import copy

import pytest
import torch

from rethinkgen.train.config import TrainConfig
from rethinkgen.train.fused import can_fuse, train_group
from rethinkgen.train.loop import train
from test_fused import ABS, IMG, REL

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


ACC = 0.04  # accuracies: a sample or two (see the module docstring)


class Keep:
    """Keeps each epoch's checkpoint of one run (the single trainer's format, from either trainer)."""

    def __init__(self) -> None:
        self.ckpts: dict[int, dict] = {}

    def on_epoch_end(self, row, step_losses, state) -> None:
        self.ckpts[row["epoch"]] = state.checkpoint()


def configs(model: str, epochs: int) -> list[TrainConfig]:
    """Three runs of one group: own learning rates, a second seed (own order), an input corruption with
    inputs of its own, and a run that leaves the group after 2 epochs."""
    base = {**IMG, "n_train": 64, "n_test": 32, "channels_last": True, "model": model}
    return [TrainConfig(**base, lr=0.01, corruption="true_labels", epochs=epochs),
            TrainConfig(**base, lr=0.005, corruption="random_labels", epochs=epochs, seed=1),
            TrainConfig(**base, lr=0.01, corruption="shuffled_pixels", epochs=2)]


def assert_same_statistics(a: dict, b: dict, tol: float) -> None:
    """BatchNorm state of two checkpoints of one run: counts equal, statistics within ``tol`` x max|b|."""
    names = [n for n in b["model"] if n.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert names, "the model has no BatchNorm statistics"
    for name in names:
        x, ref = a["model"][name], b["model"][name]
        if name.endswith("num_batches_tracked"):
            assert int(x) == int(ref), name
        else:
            torch.testing.assert_close(x, ref, rtol=0, atol=tol * float(ref.abs().max()), msg=name)


def assert_close_run(fused: dict, alone: dict) -> None:
    """Same status, steps and epochs; every row's losses within REL, accuracies within ACC."""
    for key in ("status", "steps", "epochs", "converged_step", "n_params", "run_key", "realized_noise_rate"):
        assert fused[key] == alone[key], key
    for a, b in zip(fused["metrics"], alone["metrics"], strict=True):
        for key, value in b.items():
            if key == "wall_time_s" or value is None:
                continue
            if "acc" in key:
                assert abs(a[key] - value) <= ACC, (key, a["epoch"])
            else:
                assert a[key] == pytest.approx(value, rel=REL, abs=ABS), (key, a["epoch"])
    assert [s for s, _ in fused["step_losses"]] == [s for s, _ in alone["step_losses"]]
    assert [v for _, v in fused["step_losses"]] == pytest.approx([v for _, v in alone["step_losses"]], rel=REL)


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]


@pytest.mark.parametrize("model, epochs", [("inception_small", 4), ("resnet18", 3)])
def test_a_channels_last_batchnorm_group_equals_its_runs_trained_alone_and_resumes_exactly(model, epochs):
    runs = configs(model, epochs)
    assert can_fuse(runs)
    fused_keep = [Keep() for _ in runs]
    fused = train_group(runs, callbacks=[[k] for k in fused_keep])
    assert [s["epochs"] for s in fused] == [epochs, epochs, 2]  # the third left the group early
    for config, summary, keep in zip(runs, fused, fused_keep, strict=True):
        alone_keep = Keep()
        alone = train(config, callbacks=[alone_keep])
        assert summary["numerics"]["channels_last"] and alone["numerics"]["channels_last"]
        assert_close_run(summary, alone)
        last = config.epochs
        assert sorted(keep.ckpts) == sorted(alone_keep.ckpts) == list(range(last + 1))
        assert int(keep.ckpts[last]["model"][next(n for n in keep.ckpts[last]["model"]
                                                     if n.endswith("num_batches_tracked"))]) == 2 * last
        assert_same_statistics(keep.ckpts[1], alone_keep.ckpts[1], tol=1e-2)
        assert_same_statistics(keep.ckpts[last], alone_keep.ckpts[last], tol=1e-1)

    # stopped after epoch 1 and resumed as a group (every run at epoch 1): the same operations again
    resumed_keep = [Keep() for _ in runs]
    resumed = train_group(runs, callbacks=[[k] for k in resumed_keep], resumes=[k.ckpts[1] for k in fused_keep])
    for config, summary, again, keep, again_keep in zip(runs, fused, resumed, fused_keep, resumed_keep, strict=True):
        assert untimed(again["metrics"]) == untimed(summary["metrics"])
        assert again["step_losses"] == summary["step_losses"]
        assert sorted(again_keep.ckpts) == list(range(2, config.epochs + 1))
        final, ref = again_keep.ckpts[config.epochs]["model"], keep.ckpts[config.epochs]["model"]
        assert all(torch.equal(final[n], ref[n]) for n in ref)


def test_a_fused_checkpoint_resumes_alone_channels_last_with_its_momentum_laid_out_as_the_weights():
    """CPU, exact: a fused run's checkpoint holds contiguous momentum buffers (slices of the group's
    stacks). A channels-last single trainer resumed from it (as the group's last run continues alone, or
    a resumed sweep) must lay them out as its weights: torch's fused CPU SGD kernel walks parameter and
    buffer in memory order and would add momentum to the wrong entries (on CUDA the fused kernel refuses
    lists of other strides). So it gives bit for bit the numbers of the same checkpoint with
    channels-last buffers."""
    runs = configs("alexnet_small", 2)[:2]
    keep = Keep()
    train_group(runs, callbacks=[[keep], []])
    ckpt = keep.ckpts[1]
    convs = [s["momentum_buffer"] for s in ckpt["optimizer"]["state"].values() if s["momentum_buffer"].dim() == 4]
    assert convs and not any(b.is_contiguous(memory_format=torch.channels_last) for b in convs)
    laid_out = copy.deepcopy(ckpt)
    for state in laid_out["optimizer"]["state"].values():
        if state["momentum_buffer"].dim() == 4:
            state["momentum_buffer"] = state["momentum_buffer"].contiguous(memory_format=torch.channels_last)
    a, b = train(runs[0], resume=ckpt), train(runs[0], resume=laid_out)
    assert a["numerics"]["channels_last"] and a["epochs"] == 2
    assert untimed(a["metrics"]) == untimed(b["metrics"])
    assert a["step_losses"] == b["step_losses"]
