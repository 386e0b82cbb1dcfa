"""The static training step (rethinkgen.train.step, rethinkgen.train.fused.step) against the eager one.

CPU tests force ``cuda_graphs=True``: the static step (static tables, a device-side step counter, the
learning rate as a device tensor, torch's fused SGD kernel, pre-drawn augmentation) then runs
uncaptured, and must give the eager step's numbers **bit for bit** — the same operations in the same
order. The gpu-marked tests at the end run the captured step on CUDA, where the numbers agree within
float tolerance (stated per test).
"""

from __future__ import annotations

import contextlib
import gc
import weakref

import pytest
import torch

from rethinkgen.errors import ConfigError
from rethinkgen.train import resolve as resolve_module
from rethinkgen.train.config import TrainConfig, run_key
from rethinkgen.train.fused import step as fused_step_module
from rethinkgen.train.fused import train_group, why_not_fused
from rethinkgen.train.loop import Trainer, train
from rethinkgen.train.numerics import NumericsMismatchError, describe, plan_numerics
from rethinkgen.train.resolve import autocast_dtype, resolve_config, step_mode

# MNIST-1D, 300 samples in batches of 64: 4 full batches and a last one of 44.
MLP = dict(data="mnist1d", n_train=300, n_test=100, model="mlp_1x512", lr=0.1, device="cpu", batch_size=64,
           log_every=2)
# Tiny synthetic images: 80 samples in batches of 32 (2 full, one of 16), 12x12 cropped to 10x10.
IMG = dict(data="synthetic", data_options={"shape": "3x12x12"}, n_train=80, n_test=32, device="cpu",
           batch_size=32, crop=10, log_every=1)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def numbers(summary: dict) -> tuple:
    return ([{k: v for k, v in r.items() if k != "wall_time_s"} for r in summary["metrics"]],
            summary["step_losses"], summary["status"], summary["converged_step"])


class StepKind:
    """Records which step each epoch of a Trainer took."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def on_epoch_end(self, row, step_losses, state):
        self.kinds.append(type(state.static).__name__ if state.static is not None else "eager")


SINGLE = {
    # dropout (global RNG), weight decay, eval_every between epoch ends, a partial last batch
    "mlp": TrainConfig(**MLP, corruption="partial_labels", level=0.3, epochs=3, dropout=0.2, weight_decay=1e-3,
                       eval_every=3),
    # BatchNorm (running statistics updated in place), random crops and flips drawn ahead
    "inception_bn_augment": TrainConfig(**IMG, model="inception_small", lr=0.05, epochs=2, augment=True, flip=True),
    # pad-4 random crops (no crop), no momentum (no buffers), random labels
    "alexnet_pad_crop": TrainConfig(**{**IMG, "crop": 0}, model="alexnet_small", lr=0.05, epochs=2, augment=True,
                                    momentum=0.0, corruption="random_labels"),
}


@pytest.mark.parametrize("name", list(SINGLE))
def test_static_step_gives_the_eager_numbers_bit_for_bit_on_the_cpu(name):
    """CPU, exact equality: rows, logged losses, status and convergence step."""
    config = SINGLE[name]
    eager_kind, static_kind = StepKind(), StepKind()
    eager = train(config, callbacks=[eager_kind])
    static = train(config.replace(cuda_graphs=True), callbacks=[static_kind])
    assert set(eager_kind.kinds) == {"eager"} and set(static_kind.kinds) == {"StaticStep"}
    assert numbers(static) == numbers(eager)
    assert static["run_key"] == eager["run_key"]  # the switch does not name another experiment


class Interrupt(Exception):
    pass


class StopAt:
    """Keeps the checkpoint of epoch ``epoch``, then interrupts the run (or only keeps it: ``stop=False``)."""

    def __init__(self, epoch: int, stop: bool = True) -> None:
        self.epoch, self.stop, self.ckpt = epoch, stop, None

    def on_epoch_end(self, row, step_losses, state):
        if row["epoch"] == self.epoch:
            self.ckpt = state.checkpoint()
            if self.stop:
                raise Interrupt


def checkpoint_at(config: TrainConfig, epoch: int) -> dict:
    stop = StopAt(epoch)
    with pytest.raises(Interrupt):
        train(config, callbacks=[stop])
    return stop.ckpt


def test_static_checkpoints_are_the_eager_ones_and_resume_exactly_both_ways():
    """CPU, exact: a static run's checkpoint holds what an eager run's does (weights, momentum buffers,
    the last step's learning rate), and either resumes in either step to the uninterrupted numbers."""
    config = TrainConfig(**MLP, corruption="random_labels", epochs=4, weight_decay=5e-4)
    static_config = config.replace(cuda_graphs=True)
    full = train(config)
    eager_ckpt, static_ckpt = checkpoint_at(config, 2), checkpoint_at(static_config, 2)
    for name, tensor in eager_ckpt["model"].items():
        assert torch.equal(static_ckpt["model"][name], tensor), name
    eager_opt, static_opt = eager_ckpt["optimizer"], static_ckpt["optimizer"]
    assert eager_opt["param_groups"] == static_opt["param_groups"]  # lr of the last step included
    assert eager_opt["state"].keys() == static_opt["state"].keys() and eager_opt["state"]
    for i, entry in eager_opt["state"].items():
        assert torch.equal(static_opt["state"][i]["momentum_buffer"], entry["momentum_buffer"])
    for ckpt in (eager_ckpt, static_ckpt):
        for target in (config, static_config):
            assert numbers(train(target, resume=ckpt)) == numbers(full)


def test_a_static_trainer_restored_from_an_untrained_checkpoint_starts_from_zero_momentum():
    """CPU, exact: a checkpoint taken before any step (epoch 0) has no momentum buffers; the static
    buffers of a trainer that already trained must be reset, not kept."""
    config = resolve_config(TrainConfig(**MLP, epochs=2, cuda_graphs=True))
    fresh = Trainer(config, torch.device("cpu"))
    ckpt = fresh.checkpoint()
    used = Trainer(config, torch.device("cpu"))
    used.train_epoch()
    assert any(b.abs().sum() > 0 for b in used.static.buffers)
    used.restore(ckpt)
    assert all(b.abs().sum() == 0 for b in used.static.buffers)
    assert used.train_epoch() == Trainer(config, torch.device("cpu")).train_epoch()


FUSED = {
    # per-run learning rates, weight decays and momenta (the per-run update), own inputs, eval_every
    "mlp_per_run": [
        TrainConfig(**MLP, corruption="true_labels", epochs=4),
        TrainConfig(**MLP, corruption="random_labels", epochs=4),
        TrainConfig(**{**MLP, "lr": 0.05}, corruption="partial_labels", level=0.3, weight_decay=5e-4, epochs=2,
                    eval_every=3),
        TrainConfig(**MLP, corruption="gaussian", momentum=0.5, seed=1, epochs=3),
    ],
    # one set of hyperparameters (torch's fused kernel), one shared input batch
    "mlp_uniform_shared": [TrainConfig(**MLP, corruption="true_labels", epochs=3),
                           TrainConfig(**MLP, corruption="random_labels", epochs=3)],
    # BatchNorm under vmap, one run augmented (crops and flips drawn ahead), runs leaving at different epochs
    "inception_bn_augment": [
        TrainConfig(**IMG, model="inception_small", lr=0.05, corruption="true_labels", epochs=2),
        TrainConfig(**IMG, model="inception_small", lr=0.05, corruption="random_labels", augment=True, flip=True,
                    epochs=2),
        TrainConfig(**IMG, model="inception_small", lr=0.05, corruption="random_labels", epochs=1),
    ],
}


@pytest.mark.parametrize("name", list(FUSED))
def test_fused_static_step_gives_the_eager_groups_numbers_bit_for_bit_on_the_cpu(name, monkeypatch):
    """CPU, exact equality of every run's rows and logged losses; the static step really ran."""
    configs = FUSED[name]
    taken = []
    original = fused_step_module.FusedStaticStep.step
    monkeypatch.setattr(fused_step_module.FusedStaticStep, "step",
                        lambda self, i: (taken.append(i), original(self, i))[1])
    eager = train_group(configs)
    assert taken == []
    static = train_group([c.replace(cuda_graphs=True) for c in configs])
    assert taken  # the group took its steps through the static step
    for s, e in zip(static, eager, strict=True):
        assert numbers(s) == numbers(e)


def test_fused_static_group_resumes_exactly_from_its_checkpoints():
    """CPU, exact: every run of a static group checkpointed at epoch 1 and resumed in a static group
    gives the uninterrupted group's numbers."""
    configs = [c.replace(cuda_graphs=True) for c in FUSED["mlp_per_run"]]
    full = train_group(configs)
    stops = [StopAt(1, stop=i == len(configs) - 1) for i in range(len(configs))]  # the last run's stops it
    with pytest.raises(Interrupt):
        train_group(configs, callbacks=[[s] for s in stops])
    ckpts = [s.ckpt for s in stops]
    assert all(c is not None and c["epoch"] == 1 for c in ckpts)
    resumed = train_group(configs, resumes=ckpts)
    for r, f in zip(resumed, full, strict=True):
        assert numbers(r) == numbers(f)


@contextlib.contextmanager
def no_cyclic_gc():
    """Python's cyclic garbage collector off: objects go only when their reference count drops to 0."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_static_step_and_a_finished_group_free_their_tensors_without_the_cyclic_collector():
    """CPU (the static step uncaptured; on CUDA the same objects hold the graph's private memory pool and
    the run's data on the device): a dropped Trainer with a static step, its model and its static step go
    at once, and so do a fused group's static step and stacked tensors when ``train_group`` returns —
    not when Python's cyclic collector next looks at old objects (in a sweep worker: maybe never before
    the next run needs the GPU memory)."""
    Trainer(resolve_config(TrainConfig(**MLP)), torch.device("cpu")).train_epoch()  # one-time lazy set-up

    def single() -> list[weakref.ref]:
        trainer = Trainer(resolve_config(TrainConfig(**MLP, cuda_graphs=True)), torch.device("cpu"))
        trainer.train_epoch()
        assert trainer.static is not None
        return [weakref.ref(x) for x in (trainer, trainer.model, trainer.static, trainer.static.order)]

    class Refs:
        def __init__(self) -> None:
            self.refs: list[weakref.ref] = []

        def on_epoch_end(self, row, step_losses, run) -> None:
            g = run.group
            if g.static is not None:
                self.refs += [weakref.ref(g.static), weakref.ref(g.static.order),
                              weakref.ref(g.params[g.param_names[0]]), weakref.ref(g.y_train)]

    with no_cyclic_gc():
        assert [r() for r in single()] == [None] * 4
        refs = Refs()
        train_group([c.replace(cuda_graphs=True, epochs=1) for c in FUSED["mlp_per_run"]],
                    callbacks=[[refs]] + [[]] * (len(FUSED["mlp_per_run"]) - 1))
        assert len(refs.refs) == 4 and [r() for r in refs.refs] == [None] * 4


def test_step_mode_and_autocast_are_chosen_per_device(monkeypatch):
    """No device needed: what runs where."""
    plain = TrainConfig()
    assert step_mode(plain, "cpu") == "eager" and step_mode(plain, "mps") == "eager"
    assert step_mode(plain, "cuda") == "captured"
    assert step_mode(plain.replace(dropout=0.1), "cuda") == "eager"  # dropout inside a graph: unverified
    assert step_mode(plain.replace(compile=True), "cuda") == "eager"
    assert step_mode(plain.replace(cuda_graphs=False), "cuda") == "eager"
    assert step_mode(plain.replace(cuda_graphs=True), "cpu") == "static"  # forced on the CPU: uncaptured
    with pytest.raises(ConfigError, match="cuda_graphs"):
        step_mode(plain.replace(cuda_graphs=True), "mps")
    with pytest.raises(ConfigError, match="cuda_graphs=True and compile=True"):
        resolve_config(TrainConfig(cuda_graphs=True, compile=True))
    # precision unset: bf16 autocast on CUDA only, by the model's table entry (forced: tests/test_precision.py)
    assert autocast_dtype(plain, "cpu") is None and autocast_dtype(plain, "mps") is None
    assert autocast_dtype(plain, "cuda") == torch.bfloat16
    assert autocast_dtype(plain.replace(amp=False), "cuda") is None
    monkeypatch.setitem(resolve_module.CUDA_AUTOCAST, "mlp_1x512", None)
    assert autocast_dtype(plain, "cuda") is None and autocast_dtype(plain.replace(model="mlp_3x512"), "cuda")


def test_the_numerics_record_a_captured_step_and_a_resume_across_it_is_refused():
    """No device needed for the plan; the refusal on the CPU with a checkpoint that claims a captured step."""
    config = resolve_config(TrainConfig(**MLP, epochs=3))
    assert plan_numerics(config, "cuda", "signal").graph == "cuda_graph"  # the default on CUDA
    assert plan_numerics(config, "cuda", "signal", step="eager").graph is None  # benchmarks' override
    assert plan_numerics(config.replace(cuda_graphs=False), "cuda", "signal").graph is None
    assert plan_numerics(config.replace(dropout=0.1), "cuda", "signal").graph is None
    assert plan_numerics(config.replace(cuda_graphs=True), "cpu", "signal").graph is None  # bit for bit: eager
    assert plan_numerics(config.replace(compile=True), "cuda", "signal").graph == "torch.compile"
    assert "CUDA graph" in describe(plan_numerics(config, "cuda", "signal").to_dict())
    ckpt = checkpoint_at(config, 1)
    ckpt["numerics"] = {**ckpt["numerics"], "graph": "cuda_graph"}
    with pytest.raises(NumericsMismatchError) as info:
        train(config, resume=ckpt)
    assert "graph: trained with CUDA graph, here eager" in str(info.value)
    assert "cuda_graphs" in str(info.value)


def test_the_switch_is_outside_the_run_key_but_shared_by_a_group():
    cfg = resolve_config(TrainConfig(**MLP))
    assert run_key(cfg) == run_key(cfg.replace(cuda_graphs=True)) == run_key(cfg.replace(cuda_graphs=False))
    assert "cuda_graphs" in why_not_fused([cfg, cfg.replace(cuda_graphs=True, seed=1)])


def test_a_captured_step_is_refused_off_cuda():
    with pytest.raises(ValueError, match="captured"):
        Trainer(resolve_config(TrainConfig(**MLP)), torch.device("cpu"), step="captured")


def test_bf16_autocast_is_not_applied_on_the_cpu_unless_forced():
    """CPU: amp=True (the default) trains in float32 — the same numbers as amp=False and as
    precision="float32", bit for bit; only precision="bfloat16" autocasts there (tests/test_precision.py)."""
    config = TrainConfig(**MLP, epochs=1, cuda_graphs=True)
    trainer = Trainer(resolve_config(config), torch.device("cpu"))
    assert trainer.autocast is None and not trainer.use_amp
    assert numbers(train(config)) == numbers(train(config.replace(amp=False))) \
        == numbers(train(config.replace(precision="float32")))
    assert Trainer(resolve_config(config.replace(precision="bfloat16")), torch.device("cpu")).use_amp


# ---------------------------------------------------------------------------------------- CUDA
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# fp32: the graph replays the eager kernels, but reads the learning rate as float32 (the eager step passes
# a double) and cuDNN may pick other algorithms: relative 1e-4 on losses over a few epochs of these tiny
# problems. bf16 autocast: 3 significant digits in the forward: relative 2e-2.
FP32, BF16 = dict(rel=1e-4, abs=1e-6), dict(rel=2e-2, abs=1e-3)
# 10 full batches per epoch: 3 warm-up steps, a capture, replays
GPU_IMG = {**IMG, "device": "cuda", "n_train": 320, "n_test": 320}


def assert_close(a: dict, b: dict, tol: dict, acc_abs: float) -> None:
    rows_a, losses_a, *_ = numbers(a)
    rows_b, losses_b, *_ = numbers(b)
    assert len(rows_a) == len(rows_b)
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key, value in rb.items():
            if value is None or key in ("epoch", "step", "samples_seen"):
                assert ra[key] == value, key
            elif "acc" in key:
                assert ra[key] == pytest.approx(value, abs=acc_abs), key
            else:
                assert ra[key] == pytest.approx(value, **tol), key
    assert [s for s, _ in losses_a] == [s for s, _ in losses_b]
    assert [v for _, v in losses_a] == pytest.approx([v for _, v in losses_b], **tol)


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("model, extra", [("mlp_1x512", {}), ("inception_small", {"augment": True, "flip": True})])
@pytest.mark.gpu
@needs_cuda
def test_captured_step_matches_the_eager_step_on_cuda(model, extra, amp):
    """CUDA: captured (the default there) vs eager (cuda_graphs=False), fp32 within FP32, bf16 within
    BF16; accuracies within 2 samples in 320 (fp32) / 10 (bf16). The graph is really captured."""
    config = TrainConfig(**GPU_IMG, model=model, lr=0.05, epochs=2, amp=amp, corruption="random_labels", **extra)
    kinds, graphs = StepKind(), []

    class Captured:
        def on_epoch_end(self, row, step_losses, state):
            graphs.append(state.static is not None and state.static.full.graph is not None)

    captured = train(config, callbacks=[kinds, Captured()])
    eager = train(config.replace(cuda_graphs=False))
    assert set(kinds.kinds) == {"StaticStep"} and graphs[-1]
    assert_close(captured, eager, BF16 if amp else FP32, acc_abs=(10 if amp else 2) / 320)


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
@pytest.mark.gpu
@needs_cuda
def test_captured_fused_group_matches_the_eager_group_on_cuda(amp):
    """CUDA: a fused inception_small group (BatchNorm under vmap, channels-last, one augmented run),
    captured vs eager: per run within FP32 / BF16, accuracies within 2 / 10 samples in 320."""
    configs = [TrainConfig(**GPU_IMG, model="inception_small", lr=0.05, amp=amp, epochs=2, corruption=c, **x)
               for c, x in (("true_labels", {}), ("random_labels", {}), ("random_labels", {"augment": True}))]
    captured = train_group(configs)
    eager = train_group([c.replace(cuda_graphs=False) for c in configs])
    for a, b in zip(captured, eager, strict=True):
        assert_close(a, b, BF16 if amp else FP32, acc_abs=(10 if amp else 2) / 320)


@pytest.mark.gpu
@needs_cuda
def test_captured_run_resumes_on_cuda():
    """CUDA, fp32: a captured run stopped after epoch 2 and resumed (a new trainer, a new capture, the
    checkpoint's weights and momentum copied into the static tensors) gives the uninterrupted run's
    numbers within FP32 (the same kernels; cuDNN may not be deterministic)."""
    config = TrainConfig(**GPU_IMG, model="inception_small", lr=0.05, epochs=4, amp=False,
                         corruption="random_labels", augment=True)
    full = train(config)
    resumed = train(config, resume=checkpoint_at(config, 2))
    assert_close(resumed, full, FP32, acc_abs=2 / 320)


@pytest.mark.gpu
@needs_cuda
def test_a_captured_epoch_never_waits_on_the_host():
    """CUDA: after the capture, every step of an epoch runs under torch's sync debug mode "error" (any
    host synchronisation inside a step raises)."""
    config = resolve_config(TrainConfig(**GPU_IMG, model="inception_small", lr=0.05, epochs=2, augment=True))
    trainer = Trainer(config, torch.device("cuda"))
    trainer.train_epoch()  # warm-up steps and the capture
    assert trainer.static.full.graph is not None
    perm = torch.randperm(trainer.data.n_train)
    generator = torch.Generator(device="cuda").manual_seed(0)
    trainer.static.begin_epoch(perm, [0.05] * trainer.static.n_steps, generator)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for j in range(trainer.static.n_steps):
            trainer.static.step(j)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(trainer.static.losses).all()


def test_the_step_benchmark_runs_on_the_cpu(monkeypatch):
    """benchmarks/gpu_steps.py end to end at toy sizes (its numbers mean nothing here; no time is
    asserted): every mode of both trainers gives a row, none an error."""
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    monkeypatch.delitem(sys.modules, "gpu_steps", raising=False)
    import gpu_steps

    rows = gpu_steps.measure(models=["mlp_1x512"], batches=[16], precisions=["fp32", "bf16"], steps=2, runs=2,
                             repeats=1, device="cpu")
    assert [(r["trainer"], r["mode"]) for r in rows] == [("single", "eager"), ("single", "static"),
                                                         ("fused2", "eager"), ("fused2", "static")]
    assert all("error" not in r and r["samples_per_s"] > 0 and r["precision"] == "fp32" for r in rows)
