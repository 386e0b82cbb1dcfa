"""Benchmark: the fused group's BatchNorm (plain reductions) against torch's, in a vmapped step.

The step: ``--runs`` stacked ``inception_small`` models (16 BatchNorm layers) under
``torch.func.vmap(functional_call)`` on one shared batch of ``--batch`` 3x28x28 images, forward and
backward (``torch.autograd.grad``), as the fused trainer runs it. Two templates of the same model,
timed alternately in one process, best of ``--repeats`` rounds: torch's ``nn.BatchNorm2d`` (what the
fused trainer used before; it fails on CUDA for channels-last inputs, see
``rethinkgen/train/fused/batchnorm.py``) and :class:`~rethinkgen.train.fused.batchnorm.StackableBatchNorm`.
Prints milliseconds per step and their ratio. ``--device cuda`` measures a GPU (fp32, channels-last).

    python benchmarks/fused_batchnorm.py                  # CPU, 4 runs, batch 8
    python benchmarks/fused_batchnorm.py --device cuda --runs 11 --batch 128
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from _bench import load, machine
from torch.func import functional_call, stack_module_state, vmap

from rethinkgen.models import create_model
from rethinkgen.train.fused.batchnorm import vmappable


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="steps per timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    print(f"machine: {machine()}; {load()}")
    torch.manual_seed(0)
    models = [create_model("inception_small", (3, 28, 28), 10) for _ in range(a.runs)]
    params, stats = stack_module_state(models)
    params = {n: p.detach().to(device).requires_grad_() for n, p in params.items()}
    stats = {n: b.to(device) for n, b in stats.items()}
    x = torch.randn(a.batch, 3, 28, 28, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.runs, a.batch), device=device)
    templates = {"torch nn.BatchNorm2d": models[0].to("meta"),
                 "native": vmappable(models[0], "native").to("meta"),
                 "reductions": vmappable(models[0], "reductions").to("meta")}

    def step(template: torch.nn.Module) -> None:
        out = vmap(lambda p, s, xb: functional_call(template, (p, s), (xb,)), in_dims=(0, 0, None))(params, stats, x)
        loss = F.cross_entropy(out.flatten(0, 1), y.flatten())
        torch.autograd.grad(loss, list(params.values()))

    best: dict[str, float] = {}
    for _ in range(a.repeats):
        for name, template in templates.items():
            try:
                step(template)  # warm-up
            except RuntimeError as exc:  # torch's BatchNorm on CUDA with channels-last inputs
                best[name] = float("nan")
                print(f"{name}: {str(exc).splitlines()[0]}")
                continue
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(a.steps):
                step(template)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best[name] = min(best.get(name, float("inf")), (time.perf_counter() - t0) / a.steps)
    for name, seconds in best.items():
        print(f"{name:22s} {1000 * seconds:9.1f} ms/step")
    for name in ("native", "reductions"):
        print(f"ratio {name} / torch: {best[name] / best['torch nn.BatchNorm2d']:.2f}")


if __name__ == "__main__":
    main()
