"""Benchmark: achieved training FLOP/s of ``mlp_1x512`` against this machine's own matmul FLOP/s.

The run: our :class:`rethinkgen.train.loop.Trainer`, ``mlp_1x512`` on CIFAR-shaped input (synthetic
CIFAR-10 files, centre crop 28 -> 2,352 features), batch 128, CPU, torch's default threads.
FLOPs counted from the layer shapes, per step of b samples (biases and elementwise work not counted):
forward ``2·b·in·out`` per Linear, weight gradients ``2·b·in·out`` per Linear, input gradients
``2·b·in·out`` for every Linear but the first (nothing needs the gradient of the input).

The machine's limit, measured in the same run and alternated with the training epochs (so both see the
same load): ``torch.mm`` of exactly the step's five matrix products (same shapes, same transposes,
preallocated outputs), and a large square ``torch.mm`` (2048³) for reference. Then a profile of a few
steps splits the step's time into matmuls, activation, loss, optimizer, indexing and the rest.

    python benchmarks/flops.py                 # 3 rounds of one 10,000-sample epoch
    python benchmarks/flops.py --n-train 50000 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _bench import Clock, fake_cifar10, load, machine, table

from rethinkgen.train.config import TrainConfig
from rethinkgen.train.loop import Trainer, resolve_config, train

BATCH = 128
LAYERS = [(2352, 512), (512, 10)]  # mlp_1x512 on 3x28x28


def step_flops(b: int) -> int:
    forward = sum(2 * b * i * o for i, o in LAYERS)
    weight_grads = forward
    input_grads = sum(2 * b * i * o for i, o in LAYERS[1:])
    return forward + weight_grads + input_grads


def epoch_flops(n: int) -> int:
    full, rest = divmod(n, BATCH)
    return full * step_flops(BATCH) + (step_flops(rest) if rest else 0)


def mm_rate(repeats: int = 200) -> float:
    """FLOP/s of the five matrix products of one training step, as torch.mm with preallocated outputs."""
    (d, h), (_, k) = LAYERS
    g = torch.Generator().manual_seed(0)
    x, w1 = torch.randn(BATCH, d, generator=g), torch.randn(h, d, generator=g)
    a, w2 = torch.randn(BATCH, h, generator=g), torch.randn(k, h, generator=g)
    go = torch.randn(BATCH, k, generator=g)
    gh = torch.randn(BATCH, h, generator=g)
    products = [(x, w1.t()), (a, w2.t()), (go.t(), a), (go, w2), (gh.t(), x)]  # fwd1, fwd2, dW2, dA, dW1
    outs = [torch.empty(p.shape[0], q.shape[1]) for p, q in products]
    flops = sum(2 * p.shape[0] * p.shape[1] * q.shape[1] for p, q in products)
    for _ in range(10):
        for (p, q), out in zip(products, outs, strict=True):
            torch.mm(p, q, out=out)
    t0 = time.perf_counter()
    for _ in range(repeats):
        for (p, q), out in zip(products, outs, strict=True):
            torch.mm(p, q, out=out)
    return flops * repeats / (time.perf_counter() - t0)


def square_rate(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b, out=out)
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def profile_steps(trainer: Trainer) -> list[list[str]]:
    """Share of one epoch's self CPU time per kind of work (torch.profiler)."""
    kinds = {
        "matmul (addmm/mm)": ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm"),
        "activation (relu fwd/bwd)": ("aten::clamp_min", "aten::relu", "aten::threshold_backward"),
        "cross-entropy fwd/bwd": ("aten::_log_softmax", "aten::_log_softmax_backward_data", "aten::nll_loss_forward",
                                  "aten::nll_loss_backward"),
        "optimizer (fused SGD step)": ("aten::_fused_sgd_", "aten::add_", "aten::mul_", "aten::_foreach_add_",
                                       "aten::_foreach_mul_"),
        "batch indexing": ("aten::index", "aten::gather", "aten::index_select"),
        "reductions (bias grads, loss sum)": ("aten::sum", "aten::add"),
        "allocation": ("aten::empty", "aten::empty_strided", "aten::zeros", "aten::empty_like"),
    }
    with Clock() as clock, torch.profiler.profile() as prof:
        trainer.train_epoch()
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total_ops = sum(self_us.values())
    rows, named = [], 0.0
    for kind, ops in kinds.items():
        us = sum(self_us.get(op, 0.0) for op in ops)
        named += us
        rows.append([kind, f"{100 * us / 1e6 / clock.wall:.1f}%"])
    known = {op for ops in kinds.values() for op in ops}
    others = sorted(((us, op) for op, us in self_us.items() if op not in known), reverse=True)[:3]
    rows.append([f"other torch ops (top: {', '.join(op for _, op in others)})",
                 f"{100 * (total_ops - named) / 1e6 / clock.wall:.1f}%"])
    rows.append(["Python + dispatch + profiler (wall - ops)", f"{100 * (1 - total_ops / 1e6 / clock.wall):.1f}%"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    root = fake_cifar10(Path(a.data_dir) if a.data_dir else None)
    print(f"machine: {machine()}")
    print(f"before: {load()}", flush=True)
    config = resolve_config(TrainConfig(data="cifar10", data_dir=str(root), model="mlp_1x512", n_train=a.n_train,
                                        n_test=1000, epochs=1, lr=0.01, device="cpu"))
    train(config.replace(n_train=1000, n_test=100))  # applies the trainer's process settings, warms up
    flops = epoch_flops(a.n_train)
    rates, refs = [], []
    with torch.random.fork_rng():
        trainer = Trainer(config, torch.device("cpu"))
        trainer.train_epoch()  # warm-up
        for _ in range(a.rounds):
            refs.append(mm_rate())
            with Clock() as clock:
                trainer.train_epoch()
            rates.append(flops / clock.wall)
        with Clock() as ev:
            trainer.evaluate_row(0.0)
        square = square_rate()
        breakdown = profile_steps(trainer)
    rate, ref = statistics.median(rates), statistics.median(refs)
    ratios = [r / m for r, m in zip(rates, refs, strict=True)]
    eval_share = ev.wall / (ev.wall + flops / rate)
    print(f"training: {a.n_train:,} samples per epoch, {flops / a.n_train / 1e6:.2f} MFLOP per sample "
          f"({step_flops(BATCH) / 1e9:.3f} GFLOP per step of {BATCH})")
    print(table([
        ["mlp_1x512 training (our trainer, SGD steps)", f"{rate / 1e9:.1f}", "", ""],
        ["torch.mm of the step's five products", f"{ref / 1e9:.1f}", f"{100 * rate / ref:.0f}%", "target >= 70%"],
        ["torch.mm 2048x2048x2048", f"{square / 1e9:.1f}", f"{100 * rate / square:.0f}%", ""],
    ], ["", "GFLOP/s (median)", "training / this", ""]))
    print("per round (training, mm reference) GFLOP/s: " +
          ", ".join(f"({r / 1e9:.1f}, {m / 1e9:.1f})" for r, m in zip(rates, refs, strict=True)) +
          f"; ratio per round: {', '.join(f'{100 * q:.0f}%' for q in ratios)}")
    print(f"epoch-end evaluation (whole {a.n_train:,}-sample train set + 1,000 test) takes {ev.wall:.2f} s, "
          f"{100 * eval_share:.0f}% of an epoch")
    print("where one epoch's time goes (torch.profiler, self CPU time / wall):")
    print(table(breakdown, ["work", "share of wall"]))
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
