"""Benchmark: peak memory of a CIFAR-10-sized run worker on the CPU (target: under 2 GB).

Each scenario runs in a fresh child process (so its peak is its own) on synthetic CIFAR-10 files of
the official size — 50,000 + 10,000 uint8 3x32x32 images, read by the ``cifar10`` source, centre
crop 28, per-image standardisation — and reports the child's peak resident memory (``ru_maxrss``):

- ``data``: the trainer built (dataset loaded, corrupted, preprocessed, model and optimizer made);
- ``mlp_1x512`` / ``alexnet_small``: one epoch of training plus the epoch-end evaluation of all
  60,000 images (``alexnet_small`` on ``--alexnet-n`` training images, to keep the run short; the
  data held is the same);
- ``fused xK``: ``train_group`` of K ``mlp_1x512`` label-corruption runs (one shared copy of the
  inputs), one epoch.

    python benchmarks/memory.py
    python benchmarks/memory.py --scenarios data mlp_1x512
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _bench import fake_cifar10, load, machine, table

HERE = Path(__file__).resolve().parent


def child(scenario: str, root: str, k: int, alexnet_n: int) -> dict:
    import torch
    from _bench import Clock, peak_rss_mb

    from rethinkgen.train.config import TrainConfig
    from rethinkgen.train.fused import train_group
    from rethinkgen.train.loop import Trainer, resolve_config, train

    base = dict(data="cifar10", data_dir=root, epochs=1, lr=0.01, device="cpu")
    with Clock() as clock:
        if scenario == "data":
            with torch.random.fork_rng():
                Trainer(resolve_config(TrainConfig(**base, model="mlp_1x512")), torch.device("cpu"))
        elif scenario == "mlp_1x512":
            train(TrainConfig(**base, model="mlp_1x512"))
        elif scenario == "alexnet_small":
            train(TrainConfig(**base, model="alexnet_small", n_train=alexnet_n))
        elif scenario == "fused":
            levels = [i / max(k - 1, 1) for i in range(k)]
            train_group([TrainConfig(**base, model="mlp_1x512", corruption="partial_labels", level=p)
                         for p in levels])
        else:
            raise SystemExit(f"unknown scenario {scenario}")
    return {"peak_mb": peak_rss_mb(), "seconds": clock.wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=["data", "mlp_1x512", "alexnet_small", "fused"])
    ap.add_argument("--fused-k", type=int, default=6)
    ap.add_argument("--alexnet-n", type=int, default=5000)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    root = fake_cifar10(Path(a.data_dir) if a.data_dir else None)
    if a.child:
        print(json.dumps(child(a.child, str(root), a.fused_k, a.alexnet_n)))
        return
    print(f"machine: {machine()}")
    print(f"before: {load()}", flush=True)
    rows = []
    for scenario in a.scenarios:
        out = subprocess.run([sys.executable, str(HERE / "memory.py"), "--child", scenario, "--data-dir", str(root),
                              "--fused-k", str(a.fused_k), "--alexnet-n", str(a.alexnet_n)],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        name = f"fused x{a.fused_k} mlp_1x512" if scenario == "fused" else scenario
        rows.append([name, f"{result['peak_mb']:,.0f}", "yes" if result["peak_mb"] < 2000 else "NO",
                     f"{result['seconds']:.0f}"])
        print(f"  {name}: {result['peak_mb']:,.0f} MB", file=sys.stderr, flush=True)
    print(table(rows, ["CIFAR-10-sized worker (50,000 + 10,000 images)", "peak RSS MB", "< 2 GB", "s"]))
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
