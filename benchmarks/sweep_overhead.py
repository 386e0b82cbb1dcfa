"""What the sweep machinery costs per run: the store, the checkpoints and the Ray executor.

Trains the same small MNIST-1D sweep several ways in one process, one torch thread everywhere, and
prints times and ratios against calling the trainer directly (no store, no checkpoints):

- ``bare``: ``rethinkgen.train.loop.train(config)`` for each run, nothing written;
- ``store``: the in-process sweep with the SQLite store but no checkpoints (``checkpoint_every`` huge);
- ``store+ckpt``: the default in-process sweep (a checkpoint and one transaction per epoch);
- ``ray``: the default sweep through the Ray executor on a local 1-CPU cluster that is already up
  (cluster start-up is reported separately); runs one at a time, like the in-process sweep.

    python benchmarks/sweep_overhead.py [--runs 4] [--epochs 20] [--n-train 1000] [--no-ray]

Ratios, not pass/fail: the absolute per-epoch overhead (milliseconds) is what to compare with the
length of a real epoch (seconds to minutes for CIFAR-10 models).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch


def spec_text(runs: int, epochs: int, n_train: int) -> str:
    seeds = ", ".join(str(s) for s in range(runs))
    # target_train_acc just under 1 is never reached with random labels in this many epochs: fixed length
    return (f'name = "overhead"\n[defaults]\ndata = "mnist1d"\nn_train = {n_train}\nn_test = 500\n'
            f'epochs = {epochs}\ncorruption = "random_labels"\nlr = 0.01\ndevice = "cpu"\n'
            f"[grid]\nseed = [{seeds}]\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--dir", type=Path, default=None, help="where the stores go (default: a temp folder)")
    args = parser.parse_args()

    from rethinkgen.sweep.executors import LocalExecutor
    from rethinkgen.sweep.progress import SweepDisplay
    from rethinkgen.sweep.runner import run_sweep
    from rethinkgen.sweep.spec import parse_spec
    from rethinkgen.train.loop import train

    torch.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp(prefix="sweep-overhead-", dir=args.dir))
    spec = parse_spec(spec_text(args.runs, args.epochs, args.n_train))
    epochs_total = sum(r.config.epochs + 1 for r in spec.runs)  # + epoch 0
    quiet = SweepDisplay(quiet=True, console=None)
    quiet.console.quiet = True

    train(spec.runs[0].config, progress=False)  # warm-up: imports, data cache, allocator

    def bare() -> float:
        t0 = time.perf_counter()
        for run in spec.runs:
            summary = train(run.config, progress=False)
            assert summary["epochs"] == run.config.epochs, "a run stopped early: the timing would be unfair"
        return time.perf_counter() - t0

    def sweep(name: str, executor, **kwargs) -> float:
        t0 = time.perf_counter()
        result = run_sweep(spec, workdir / f"{name}.db", executor=executor, display=quiet, **kwargs)
        elapsed = time.perf_counter() - t0
        assert result.started == len(spec.runs) and not result.failed, result
        return elapsed

    times = {"bare": bare()}
    times["store"] = sweep("store", LocalExecutor(threads=1), checkpoint_every=10**9)
    times["store+ckpt"] = sweep("full", LocalExecutor(threads=1))
    times["bare"] = min(times["bare"], bare())  # the better of two, before and after
    ray_start = None
    if not args.no_ray:
        import ray

        from rethinkgen.sweep.executors import RayExecutor

        t0 = time.perf_counter()
        ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING")
        ray_start = time.perf_counter() - t0
        try:
            times["ray"] = sweep("ray", RayExecutor(threads=1))
        finally:
            ray.shutdown()
    shutil.rmtree(workdir, ignore_errors=True)

    n = len(spec.runs)
    print(f"sweep: {n} MNIST-1D runs x {args.epochs} epochs (+ epoch 0), n_train {args.n_train}, mlp_1x512, "
          f"1 torch thread; stores in {workdir.parent}")
    print(f"{'mode':<12} {'total s':>8} {'per run s':>10} {'ratio':>6} {'overhead/run s':>15} "
          f"{'overhead/epoch ms':>18}")
    for mode, t in times.items():
        extra = t - times["bare"]
        print(f"{mode:<12} {t:8.2f} {t / n:10.3f} {t / times['bare']:6.2f} {extra / n:15.3f} "
              f"{1000 * extra / epochs_total:18.1f}")
    if ray_start is not None:
        print(f"ray: local 1-CPU cluster start-up {ray_start:.1f} s (once per sweep command, not included above); "
              f"ray vs in-process sweep: {times['ray'] / times['store+ckpt']:.2f}x")


if __name__ == "__main__":
    main()
