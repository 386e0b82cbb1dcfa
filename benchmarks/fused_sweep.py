"""Benchmark: an 11-run label-corruption sweep fused into one group against the same runs one by one.

The sweep: MNIST-1D (4,000 training signals), ``mlp_1x512``, ``partial_labels`` at levels 0, 0.1, ...,
1.0, the dataset's defaults (lr 0.1, batch 128, momentum 0.9), at most ``--epochs`` epochs, stopping at
100% training accuracy as usual — so runs leave the fused group at different epochs. Timed side by
side in one process: ``[train(c) for c in configs]`` and ``train_group(configs)``, wall seconds for
the whole sweep (data loading included in both; MNIST-1D is generated once per process first),
alternated ``--repeats`` times, best of each shown. The script also checks that both give the same
statuses, epochs and accuracies.

    python benchmarks/fused_sweep.py               # --epochs 40 --repeats 2
    python benchmarks/fused_sweep.py --epochs 300  # the full default budget (slow on 2 cores)
"""

from __future__ import annotations

import argparse

import torch
from _bench import Clock, load, machine, table

from rethinkgen.train.config import TrainConfig
from rethinkgen.train.fused import train_group
from rethinkgen.train.loop import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--model", default="mlp_1x512")
    ap.add_argument("--levels", type=int, default=11, help="levels 0, 1/(L-1), ..., 1")
    ap.add_argument("--repeats", type=int, default=2, help="alternated timings; the best of each is shown")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    levels = [i / (a.levels - 1) for i in range(a.levels)]
    configs = [TrainConfig(data="mnist1d", model=a.model, corruption="partial_labels", level=round(p, 6),
                           epochs=a.epochs, device="cpu") for p in levels]
    print(f"machine: {machine()}")
    print(f"before: {load()}")
    print(f"sweep: mnist1d, {a.model}, partial_labels levels {', '.join(f'{p:g}' for p in levels)}, "
          f"max {a.epochs} epochs", flush=True)
    train(configs[0].replace(epochs=1))  # generate MNIST-1D and warm up, outside the timings
    seq_times, fused_times, loads = [], [], []
    for _ in range(a.repeats):  # alternated, best of each (other processes share the cores)
        with Clock() as sequential:
            alone = [train(c) for c in configs]
        seq_times.append(sequential)
        loads.append(load())
        with Clock() as fused:
            together = train_group(configs)
        fused_times.append(fused)
    sequential = min(seq_times, key=lambda c: c.wall)
    fused = min(fused_times, key=lambda c: c.wall)
    middle = loads[-1]
    same = all(f["status"] == s["status"] and f["epochs"] == s["epochs"] for f, s in zip(together, alone, strict=True))
    gap = max(abs(f[k] - s[k]) for f, s in zip(together, alone, strict=True) for k in ("train_acc", "test_acc"))
    epochs = [s["epochs"] for s in alone]
    print(table([
        ["sequential (11 x train)", f"{sequential.wall:.1f}", f"{sequential.cpu:.1f}", "1.0x"],
        ["fused (train_group)", f"{fused.wall:.1f}", f"{fused.cpu:.1f}", f"{sequential.wall / fused.wall:.1f}x"],
    ], ["sweep", "wall s", "cpu s", "speed-up (wall)"]))
    print(f"epochs per run: {epochs} (total {sum(epochs)}); same statuses and epochs: {same}; "
          f"largest train/test accuracy gap: {gap:.2g}")
    print("all timings (wall s): sequential " + ", ".join(f"{c.wall:.1f}" for c in seq_times) +
          "; fused " + ", ".join(f"{c.wall:.1f}" for c in fused_times))
    print(f"between: {middle}")
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
