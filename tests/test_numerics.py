"""Run identity knows the numerics (rethinkgen.train.numerics): recorded per run, checked on resume.

Every test here trains on the CPU (device="cpu"); CUDA numerics are *planned* for a torch.device("cuda")
without touching a GPU, which is how a checkpoint from a GPU machine looks to a CPU worker.
"""

from __future__ import annotations

import pytest
import torch

from rethinkgen.train.config import TrainConfig
from rethinkgen.train.fused import train_group
from rethinkgen.train.loop import resolve_config, train
from rethinkgen.train.numerics import Numerics, NumericsMismatchError, describe, differences, plan_numerics

SMALL = dict(data="mnist1d", n_train=256, n_test=100, model="mlp_1x512", lr=0.1, batch_size=32, device="cpu",
             corruption="partial_labels", level=0.4, epochs=3)


@pytest.fixture
def threads():
    """Set torch's intra-op thread count for a test and restore it afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


class Grab:
    """Keeps the checkpoint taken at the end of ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch, self.ckpt = epoch, None

    def on_epoch_end(self, row, step_losses, state):
        if row["epoch"] == self.epoch:
            self.ckpt = state.checkpoint()


def numbers(summary: dict) -> list:
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in summary["metrics"]] + [summary["step_losses"]]


def test_planned_numerics_follow_device_amp_compile_and_layout():
    config = resolve_config(TrainConfig(**SMALL))
    cpu = plan_numerics(config, "cpu", "signal", threads=3)
    assert cpu == Numerics(device="cpu", autocast=None, threads=3, graph=None, channels_last=False, tf32=None)
    assert plan_numerics(config, "cpu", "signal").threads == torch.get_num_threads()
    cuda = plan_numerics(config.replace(compile=True), torch.device("cuda"), "image")
    assert (cuda.device, cuda.autocast, cuda.threads, cuda.graph, cuda.channels_last) == \
        ("cuda", "bfloat16", None, "torch.compile", True)
    assert cuda.tf32 in ("off", "conv", "matmul", "conv+matmul")
    assert plan_numerics(config.replace(amp=False), "cuda", "signal").autocast is None
    assert not plan_numerics(config, "cuda", "signal").channels_last  # NHWC is for images only
    assert plan_numerics(config.replace(compile=True), "cpu", "image").graph is None  # compile: CUDA only
    assert describe(cpu.to_dict()) == "cpu, float32, 3 threads"
    assert describe(None) == "unrecorded"
    assert Numerics.from_dict({**cpu.to_dict(), "from_a_newer_version": 1}) == cpu


def test_summary_and_checkpoints_record_what_the_run_used(threads):
    threads(1)
    grab = Grab(epoch=1)
    summary = train(TrainConfig(**SMALL), callbacks=[grab])
    expected = {"device": "cpu", "autocast": None, "threads": 1, "graph": None, "channels_last": False, "tf32": None,
                "world_size": 1}
    assert summary["numerics"] == expected
    assert grab.ckpt["numerics"] == expected
    fused = train_group([TrainConfig(**SMALL), TrainConfig(**{**SMALL, "seed": 1})])
    assert [s["numerics"] for s in fused] == [expected, expected]


def test_a_resume_with_another_thread_count_is_refused_naming_the_fix(threads):
    """The demo's case: a run trained with 2 threads (1 worker x 2 threads) continued with 1 (2 workers x 1)."""
    threads(2)
    config = TrainConfig(**SMALL)
    grab = Grab(epoch=1)
    full = train(config, callbacks=[grab])
    threads(1)
    with pytest.raises(NumericsMismatchError) as info:
        train(config, resume=grab.ckpt)
    message = str(info.value)
    assert "threads: trained with 2 threads, here 1 thread" in message
    assert "torch.set_num_threads(2)" in message and "without resume=" in message
    assert info.value.differences == ["threads: trained with 2 threads, here 1 thread"]
    threads(2)  # the checkpoint's numerics again: the resume is exact
    assert numbers(train(config, resume=grab.ckpt)) == numbers(full)


def test_a_cuda_bf16_checkpoint_is_refused_on_the_cpu(threads):
    threads(1)
    config = TrainConfig(**SMALL)
    grab = Grab(epoch=1)
    train(config, callbacks=[grab])
    ckpt = dict(grab.ckpt, numerics=plan_numerics(resolve_config(config), "cuda", "signal").to_dict())
    with pytest.raises(NumericsMismatchError) as info:
        train(config, resume=ckpt)
    message = str(info.value)
    assert "device: trained with cuda, here cpu" in message
    assert "autocast: trained with bfloat16 autocast, here float32 (no autocast)" in message
    assert "device='cuda' on a machine that has one" in message
    # the fused trainer checks the same way, run by run
    with pytest.raises(NumericsMismatchError, match="device: trained with cuda, here cpu"):
        train_group([config, config.replace(seed=1)], resumes=[ckpt, None])


def test_a_checkpoint_without_a_numerics_record_still_resumes(threads):
    """Checkpoints written before numerics were recorded carry none: nothing to compare, resume as before."""
    threads(1)
    config = TrainConfig(**SMALL)
    grab = Grab(epoch=2)
    full = train(config, callbacks=[grab])
    old = {k: v for k, v in grab.ckpt.items() if k != "numerics"}
    assert numbers(train(config, resume=old)) == numbers(full)
    assert differences(None, plan_numerics(resolve_config(config), "cuda", "image")) == []
