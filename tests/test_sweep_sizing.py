"""Sweeps that fill the GPU: group sizes from the device's memory, worker processes sharing a GPU, and
``sweep plan`` saying what trains together where. No GPU is needed: device memory and visible GPUs are
faked; the memory estimate's activations are checked against real CPU tensors (device="cpu")."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from rethinkgen.models import create_model
from rethinkgen.sweep import executors, pool
from rethinkgen.sweep.cli import sweep_app
from rethinkgen.sweep.executors import LocalExecutor, make_executor
from rethinkgen.sweep.plan import work_plan
from rethinkgen.sweep.sizing import (
    BACKWARD_FACTOR,
    FILL,
    MAX_GROUP_CPU,
    MAX_GROUP_CUDA,
    RESERVE,
    activation_bytes,
    group_limit,
    group_memory,
    run_memory,
)
from rethinkgen.sweep.spec import parse_spec
from rethinkgen.train.config import TrainConfig
from rethinkgen.train.numerics import _tf32
from rethinkgen.train.resolve import resolve_config

GIB = 1024**3
# Figure 1's label levels for small Inception on CIFAR-10 (resolved without the data files: sizes are known).
FIG1 = """
name = "f1"
[defaults]
data = "cifar10"
model = "inception_small"
corruption = "partial_labels"
device = "cuda"
[grid]
level = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
"""


def inception(**changes) -> TrainConfig:
    base = dict(data="cifar10", model="inception_small", corruption="partial_labels", level=0.5, device="cuda")
    return resolve_config(TrainConfig(**{**base, **changes}))


@pytest.mark.parametrize("model, shape", [("mlp_1x512", (3, 28, 28)), ("alexnet_small", (3, 28, 28)),
                                          ("inception_small", (3, 28, 28)), ("cnn1d", (1, 40))])
def test_meta_activation_count_equals_what_real_cpu_tensors_save(model, shape):
    """The estimate runs on the meta device; the same forward with real tensors on the CPU saves as much."""
    estimate, n_params = activation_bytes(model, shape, 4)
    torch.manual_seed(0)
    module = create_model(model, shape, 10).to("cpu").train()
    params = {id(p) for p in module.parameters()}
    seen, total = set(), 0

    def pack(t):
        nonlocal total
        base = t if t._base is None else t._base
        if id(base) not in params and id(base) not in seen:
            seen.add(id(base))
            total += base.numel() * 4
        return t

    x = torch.randn(4, *shape)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(module(x), torch.zeros(4, dtype=torch.long))
    loss.backward()  # what was saved is what the backward pass used
    assert estimate == total > 0
    assert n_params == sum(p.numel() for p in module.parameters())
    at = {b: activation_bytes(model, shape, b)[0] for b in (2, 8)}
    assert at[8] - estimate == 2 * (estimate - at[2]) > 0  # affine in the batch size


def test_run_memory_counts_parameters_activations_and_inputs():
    config = inception()
    act, n_params = activation_bytes("inception_small", (3, 28, 28), 128)
    m = run_memory(config)
    assert m.params == 16 * n_params
    # captured (the default on CUDA): the graph's private pool holds a full step's activations while the
    # epoch's last batch (50,000 = 390 x 128 + 80) runs uncaptured beside it
    assert m.activations == int(BACKWARD_FACTOR * act * (1 + 80 / 128))
    assert run_memory(inception(cuda_graphs=False)).activations == int(BACKWARD_FACTOR * act)  # eager
    assert run_memory(inception(dropout=0.1)).activations == int(BACKWARD_FACTOR * act)  # dropout: eager
    assert run_memory(inception(n_train=1280)).activations == int(BACKWARD_FACTOR * act)  # no last batch
    assert m.inputs == (50_000 + 10_000) * 3 * 28 * 28 * 4  # CIFAR-10 after the 28x28 crop, float32
    assert not m.own_inputs and m.shared == m.inputs  # label corruptions share the group's one copy
    assert m.group(11) == m.inputs + 11 * m.per_run
    gaussian = run_memory(inception(corruption="gaussian", level=None))
    assert gaussian.own_inputs and gaussian.per_run == m.per_run + m.inputs and gaussian.shared == 0
    augmented = run_memory(inception(augment=True))
    assert augmented.inputs == m.inputs + 50_000 * 3 * 32 * 32 * 4  # raw images kept for the random crops
    small = run_memory(inception(n_train=1000, n_test=500))
    assert small.own_inputs and small.inputs == 1500 * 3 * 28 * 28 * 4


def test_group_limit_divides_the_free_memory_by_one_runs_estimate():
    config = inception()
    m = run_memory(config)
    for free in (8 * GIB, 16 * GIB, 40 * GIB):
        expected = int((FILL * free - RESERVE - m.shared) // m.per_run)
        assert group_limit(config, free) == max(1, min(MAX_GROUP_CUDA, expected))
    assert group_limit(config, 16 * GIB) < group_limit(config, 40 * GIB) < MAX_GROUP_CUDA
    assert group_limit(config, 3 * GIB) == 1  # never less than one run
    assert group_limit(config, 10_000 * GIB) == MAX_GROUP_CUDA  # capped
    assert group_limit(config, None) == MAX_GROUP_CUDA  # unknown memory (a Ray cluster seen from the driver)
    # a key mixing label and input corruptions (Figure 1a): sized by its largest run, the shared copy once
    gaussian = inception(corruption="gaussian", level=None)
    g = run_memory(gaussian)
    assert group_limit([config, gaussian], 40 * GIB) == int((FILL * 40 * GIB - RESERVE - m.shared) // g.per_run)
    assert group_memory([config, config, gaussian]) == m.shared + 2 * m.per_run + g.per_run


@pytest.fixture
def gpu(monkeypatch):
    """A local executor that believes it has GPUs with ``free`` bytes (set the attribute)."""
    state = {"free": 10 * GIB, "gpus": ["0"]}
    monkeypatch.setattr(LocalExecutor, "accelerated", lambda self: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(state["gpus"]))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=0: (state["free"], 2 * state["free"]))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=0: "Fake GPU")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return state


def test_a_gpu_sweep_groups_as_many_runs_as_its_memory_holds(gpu):
    runs = parse_spec(FIG1).runs
    limit = group_limit(runs[0].config, 10 * GIB)
    assert 2 <= limit < 11  # 10 GiB does not hold all eleven Inception runs at once
    items = work_plan(runs, LocalExecutor(), fuse=None)
    sizes = [len(item.runs) for item in items]
    assert sum(sizes) == 11 and max(sizes) <= limit and len(items) == -(-11 // limit)
    assert all(item.device == "cuda" and item.memory == run_memory(runs[0].config).group(len(item.runs))
               == group_memory([r.config for r in item.runs]) for item in items)
    gpu["free"] = 140 * GIB  # an H200: all eleven together
    assert [len(item.runs) for item in work_plan(runs, LocalExecutor(), fuse=None)] == [11]
    cpu_runs = parse_spec(FIG1.replace('device = "cuda"', 'device = "cpu"')).runs
    assert [len(i.runs) for i in work_plan(cpu_runs, LocalExecutor(), fuse=True)] == [11]  # CPU cap: 16
    assert LocalExecutor().max_group(cpu_runs[0].config) == MAX_GROUP_CPU


def test_workers_per_gpu_pins_workers_and_shares_the_memory(gpu):
    gpu["gpus"] = ["0", "1"]
    ex = make_executor("local", workers_per_gpu=2)
    assert (ex.jobs, ex.gpu_share()) == (4, 2)
    assert [ex.gpu_of_worker(slot) for slot in range(4)] == ["0", "1", "0", "1"]
    assert ex.device_memory() == gpu["free"] // 2
    assert "4 worker processes" in ex.describe() and "2 per GPU on 2 GPU(s)" in ex.describe()
    assert make_executor("local", jobs=4, workers_per_gpu=2).jobs == 4
    with pytest.raises(executors.RethinkgenError, match="--jobs 3 and --workers-per-gpu 2 disagree"):
        make_executor("local", jobs=3, workers_per_gpu=2)
    os.environ["CUDA_VISIBLE_DEVICES"] = "5,7"  # the GPUs this process may use are the ones it pins to
    try:
        assert make_executor("local", workers_per_gpu=1).gpus == ["5", "7"]
    finally:
        del os.environ["CUDA_VISIBLE_DEVICES"]
    shared = LocalExecutor(jobs=3)  # plain --jobs: every worker on the first GPU
    assert shared.gpu_share() == 3 and shared.gpu_of_worker(0) is None
    assert shared.device_memory() == gpu["free"] // 3


def test_workers_per_gpu_without_a_gpu_names_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(executors.RethinkgenError, match="needs a CUDA device.*use --jobs N"):
        make_executor("local", workers_per_gpu=2)
    with pytest.raises(executors.RethinkgenError, match="--gpus-per-run is for --executor ray"):
        make_executor("local", gpus_per_run=0.5)


def test_a_pool_worker_sees_only_its_gpu_and_a_replacement_takes_the_dead_ones(monkeypatch):
    started = []

    class FakeProcess:
        def __init__(self, target, name, daemon, args):
            self.args = args
            started.append(self)

        def start(self):
            pass

    p = pool.ProcessPool(jobs=2, threads=1, gpu_of_worker=lambda slot: ["3", "4"][slot])
    monkeypatch.setattr(p.ctx, "Process", FakeProcess)
    first, second = p._spawn(), p._spawn()
    assert [proc.args[-1] for proc in started] == ["3", "4"]  # worker i on GPU i
    p.slots.pop(first)  # worker 0 died (what _bury does)
    p._spawn()
    assert started[-1].args[-1] == "3" and second in p.slots  # its replacement gets its GPU

    class Conn:
        def poll(self, timeout):
            return True

        def recv(self):
            return None  # "no more work": the worker returns at once

    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        pool._worker_main(0, Conn(), type("Stop", (), {"value": 0})(), 1, os.getppid(), gpu="4")
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "4"  # set before the worker's torch touches CUDA
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def test_plan_says_what_trains_together_on_which_device(gpu, tmp_path):
    spec = tmp_path / "f1.toml"
    spec.write_text(FIG1)
    result = CliRunner().invoke(sweep_app, ["plan", str(spec)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    limit = group_limit(parse_spec(FIG1).runs[0].config, 10 * GIB)
    assert "device: Fake GPU; 10.7 GB free for each group" in result.output
    assert "together (fused)" in result.output and f"│ inception_small │ {limit:>4} │" in result.output
    shared = CliRunner().invoke(sweep_app, ["plan", str(spec), "--jobs", "2"], env={"COLUMNS": "200"})
    assert "5.4 GB free for each group (2 workers per GPU)" in shared.output
    off = CliRunner().invoke(sweep_app, ["plan", str(spec), "--fuse", "off"], env={"COLUMNS": "200"})
    assert "each alone" in off.output and "fused training (--fuse on, one CPU process): 1 group(s)" in off.output


def test_plan_says_how_the_runs_will_be_computed(tmp_path):
    """`sweep plan` names each way its runs will be computed (train.numerics: not part of the run key), as
    the trainer will record it: for a GPU that is not here (device = "cuda"), bf16 autocast, channels-last
    and the captured step, except for runs with dropout (eager step) and under --precision float32; on
    this machine's CPU, float32 with the executor's threads. Planning only: no GPU is used."""
    spec = tmp_path / "f1.toml"
    spec.write_text(FIG1.replace("level = [", "dropout = [0.0, 0.5]\nlevel = ["))

    def computed(*options: str) -> list[str]:
        result = CliRunner().invoke(sweep_app, ["plan", str(spec), *options], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return sorted(line for line in result.output.splitlines() if line.startswith("computed as: "))

    tf32 = f"TF32 {_tf32()}"  # this process's cuDNN/cuBLAS switches, as a CUDA run here would record them
    assert computed() == [f"computed as: cuda, bf16 autocast, channels_last, CUDA graph, {tf32} (11 runs)",
                          f"computed as: cuda, bf16 autocast, channels_last, {tf32} (11 runs)"]
    assert computed("--precision", "float32") == [
        f"computed as: cuda, float32, channels_last, CUDA graph, {tf32} (11 runs)",
        f"computed as: cuda, float32, channels_last, {tf32} (11 runs)"]
    assert computed("--device", "cpu", "--threads", "1") == ["computed as: cpu, float32, 1 thread (22 runs)"]
    assert computed("--device", "cpu", "--precision", "bfloat16", "--threads", "1") == [
        "computed as: cpu, bf16 autocast, 1 thread (22 runs)"]
