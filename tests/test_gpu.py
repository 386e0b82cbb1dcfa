"""The GPU path on a real CUDA device: fused sweeps, exact resume, the numerics refusal between CUDA and
the CPU, and the group memory estimate. Marked ``gpu`` (deselected by default): run them with
``pytest -m gpu`` on a machine with CUDA (``benchmarks/gpu_session.sh`` does, with the whole suite).

Each test names its device. Tolerances: fused against separate training on CUDA in float32 (``amp =
false``) with cuDNN's default TF32 convolutions, relative 1e-2 on losses and 2 points of accuracy after
a few epochs (batched and grouped kernels sum in another order, and TF32 keeps 10 mantissa bits); a
fused sweep resumed one epoch apart, relative 1e-3; a resume on the same device with deterministic
kernels (the MLP: cuBLAS matrix products, bf16 autocast) is bit for bit.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from typer.testing import CliRunner

from rethinkgen.sweep.cli import sweep_app
from rethinkgen.sweep.executors import LocalExecutor
from rethinkgen.sweep.progress import SweepDisplay
from rethinkgen.sweep.runner import run_sweep
from rethinkgen.sweep.sizing import RESERVE, run_memory
from rethinkgen.sweep.spec import parse_spec
from rethinkgen.sweep.store import Store
from rethinkgen.train.config import TrainConfig
from rethinkgen.train.fused import train_group
from rethinkgen.train.loop import resolve_config, train
from rethinkgen.train.numerics import NumericsMismatchError
from test_sweep_runner import InterruptAt, snapshot

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

MLP_SPEC = """
name = "gpu-mlp"
[defaults]
data = "mnist1d"
n_train = 512
n_test = 200
batch_size = 64
log_every = 2
epochs = 5
device = "cuda"
[grid]
seed = [0, 1]
corruption = ["true_labels", "random_labels"]
"""
# CIFAR-sized synthetic images (3x32x32, centre crop 28) for the convnets: no data files needed.
IMAGE_SPEC = """
name = "gpu-{model}"
[defaults]
data = "synthetic"
data_options = {{ shape = "3x32x32" }}
crop = 28
n_train = 512
n_test = 256
batch_size = 128
epochs = 2
lr = 0.01
model = "{model}"
device = "cuda"
amp = {amp}
corruption = "partial_labels"
[grid]
level = [0.0, 0.5, 1.0]
"""


def sweep(path, spec, **kwargs):
    kwargs.setdefault("display", SweepDisplay(quiet=True))
    return run_sweep(spec, path, executor=LocalExecutor(threads=1), **kwargs)


def within(snap: dict, reference: dict, rel: float = 1e-2, acc: float = 0.02) -> None:
    """Same runs, statuses and epochs; losses within ``rel``, accuracies within ``acc``."""
    assert set(snap) == set(reference)
    for key, (status, summary, rows, _losses) in snap.items():
        ref_status, ref_summary, ref_rows, _ = reference[key]
        assert (status, summary["epochs"]) == (ref_status, ref_summary["epochs"])
        for row, ref in zip(rows, ref_rows, strict=True):
            for name, value in ref.items():
                if value is None or not isinstance(value, float) or name == "lr":
                    continue
                tolerance = dict(abs=acc) if "acc" in name else dict(rel=rel, abs=1e-3)
                assert row[name] == pytest.approx(value, **tolerance), (key, row["epoch"], name)


@pytest.mark.parametrize("model", ["mlp_1x512", "alexnet_small", "inception_small"])
def test_a_fused_sweep_on_cuda_records_what_separate_runs_record(tmp_path, model, monkeypatch):
    text = MLP_SPEC.replace("[grid]", "amp = false\n[grid]") if model == "mlp_1x512" else \
        IMAGE_SPEC.format(model=model, amp="false")
    spec = parse_spec(text)  # float32 (no bf16 autocast): tolerances that say something
    alone = sweep(tmp_path / "alone.db", spec, fuse=False)
    assert not alone.failed
    fused_module = importlib.import_module("rethinkgen.train.fused")
    real, groups = fused_module.train_group, []
    monkeypatch.setattr(fused_module, "train_group", lambda configs, **kw: groups.append(len(configs))
                        or real(configs, **kw))
    fused = sweep(tmp_path / "fused.db", spec)  # --fuse auto: runs on a GPU are fused
    assert not fused.failed and groups == [len(spec.runs)]
    within(snapshot(tmp_path / "fused.db"), snapshot(tmp_path / "alone.db"))
    with Store.open(tmp_path / "fused.db") as s:
        numerics = [r["numerics"] for r in s.runs()]
    assert all(n["device"] == "cuda" and n["autocast"] is None and n["threads"] is None for n in numerics)


@pytest.mark.parametrize("model", ["alexnet_small", "inception_small"])
def test_a_fused_bf16_group_of_convnets_trains_on_cuda(tmp_path, model):
    spec = parse_spec(IMAGE_SPEC.format(model=model, amp="true"))
    result = sweep(tmp_path / "r.db", spec)
    assert not result.failed and sum(result.statuses.values()) == len(spec.runs)
    assert set(result.statuses) <= {"converged", "max_epochs"}  # none diverged
    with Store.open(tmp_path / "r.db") as s:
        for run in s.runs():
            assert (run["numerics"]["device"], run["numerics"]["autocast"]) == ("cuda", "bfloat16")
            assert len(s.epoch_rows(run["run_key"])) == 3  # epochs 0, 1, 2


def test_a_resumed_cuda_sweep_is_bit_identical_on_the_same_device(tmp_path):
    spec = parse_spec(MLP_SPEC)
    assert not sweep(tmp_path / "ref.db", spec, fuse=False).failed
    display = InterruptAt(index=1, epoch=2)
    assert sweep(tmp_path / "r.db", spec, fuse=False, display=display).stopped
    again = sweep(tmp_path / "r.db", spec, fuse=False)
    assert again.resumed == 1 and not again.failed
    assert snapshot(tmp_path / "r.db") == snapshot(tmp_path / "ref.db")


def test_a_resumed_fused_cuda_sweep_stays_within_tolerance(tmp_path):
    spec = parse_spec(MLP_SPEC.replace("[grid]", "amp = false\n[grid]"))
    assert not sweep(tmp_path / "ref.db", spec).failed
    assert sweep(tmp_path / "r.db", spec, display=InterruptAt(index=0, epoch=2)).stopped
    again = sweep(tmp_path / "r.db", spec)
    assert again.resumed >= 1 and not again.failed
    within(snapshot(tmp_path / "r.db"), snapshot(tmp_path / "ref.db"), rel=1e-3, acc=0.01)


class Grab:
    def __init__(self, epoch: int) -> None:
        self.epoch, self.ckpt = epoch, None

    def on_epoch_end(self, row, step_losses, state):
        if row["epoch"] == self.epoch:
            self.ckpt = state.checkpoint()


def test_a_cuda_checkpoint_is_refused_on_the_cpu_and_a_cpu_one_on_cuda():
    config = TrainConfig(data="mnist1d", n_train=256, n_test=100, epochs=3, device="cuda")
    on_gpu, on_cpu = Grab(1), Grab(1)
    assert train(config, callbacks=[on_gpu])["numerics"]["autocast"] == "bfloat16"
    with pytest.raises(NumericsMismatchError, match="device: trained with cuda, here cpu") as info:
        train(config.replace(device="cpu"), resume=on_gpu.ckpt)
    assert "device='cuda' on a machine that has one" in str(info.value)
    train(config.replace(device="cpu"), callbacks=[on_cpu])
    with pytest.raises(NumericsMismatchError, match="device: trained with cpu, here cuda") as info:
        train(config, resume=on_cpu.ckpt)
    assert "autocast: trained with float32 (no autocast), here bfloat16 autocast" in str(info.value)


def test_a_sweep_stopped_on_cuda_is_refused_on_the_cpu_until_restarted(tmp_path):
    path = tmp_path / "r.db"
    assert sweep(path, parse_spec(MLP_SPEC), fuse=False, display=InterruptAt(index=0, epoch=2)).stopped
    on_cpu = parse_spec(MLP_SPEC.replace('device = "cuda"', 'device = "cpu"'))
    assert [r.run_key for r in on_cpu.runs] == [r.run_key for r in parse_spec(MLP_SPEC).runs]  # same runs
    with pytest.raises(NumericsMismatchError) as info:
        sweep(path, on_cpu, fuse=False)
    assert "device: trained with cuda, here cpu" in str(info.value) and "--device cuda" in str(info.value)
    result = sweep(path, on_cpu, fuse=False, restart_mismatched=True)
    assert result.restarted == 1 and not result.failed
    with Store.open(path) as s:
        assert {r["numerics"]["device"] for r in s.runs()} == {"cpu"}


@pytest.mark.parametrize("model", ["mlp_1x512", "alexnet_small"])
def test_the_fused_group_memory_estimate_covers_the_measured_peak(model):
    """The peak *reserved* memory: a captured step's private pool is reserved, not allocated, between
    replays, and no other allocation can use it (4160 = 32 x 128 + 64: a last batch runs uncaptured)."""
    configs = [resolve_config(TrainConfig(data="synthetic", data_options={"shape": "3x32x32"}, crop=28, n_train=4160,
                                          n_test=1024, model=model, lr=0.01, epochs=1, device="cuda",
                                          corruption="partial_labels", level=p)) for p in (0.0, 0.3, 0.6, 1.0)]
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_reserved()
    train_group(configs)
    peak = torch.cuda.max_memory_reserved() - before
    estimate = run_memory(configs[0]).group(len(configs))
    assert 0 < peak <= estimate + RESERVE, (peak, estimate)


def test_plan_names_the_gpu_and_the_groups(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(IMAGE_SPEC.format(model="alexnet_small", amp="true"))
    result = CliRunner().invoke(sweep_app, ["plan", str(spec)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert torch.cuda.get_device_name(0) in result.output and "together (fused)" in result.output
