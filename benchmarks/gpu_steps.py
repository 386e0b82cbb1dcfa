"""Benchmark: the eager, static and captured SGD steps of the trainers, side by side in one process.

For each model, batch size and precision, one training epoch of ``--steps`` full batches (CIFAR-10-shaped
synthetic 3x32x32 images centre-cropped to 28x28, per-image standardisation, random labels) is timed in
rethinkgen's own trainers, after a warm-up epoch (which, for the captured step, holds the warm-up steps
and the capture), the modes' epochs interleaved round by round, best of ``--repeats``:

- ``Trainer(config, device, step=mode)`` for one run;
- ``FusedGroup(configs, device, ..., step=mode)`` for ``--runs`` label-corruption runs (levels 0 to 1);

with ``mode`` in ``eager`` (model, loss and ``torch.optim.SGD`` called step by step), ``static`` (the
same operations on static tensors, rethinkgen.train.step, uncaptured) and ``captured`` (the static step
as a CUDA graph; CUDA only). Each epoch ends with the trainers' one host read-back. Prints ms per step,
samples/s (all runs of a group together) and the ratio to the eager step measured in the same process;
``--json`` writes the rows. The precisions (``--precision fp32 bf16``; bf16 = autocast on CUDA) are what
``rethinkgen.train.resolve.CUDA_AUTOCAST`` is to be chosen from.

    python benchmarks/gpu_steps.py --device cuda                                  # the GPU table (~minutes)
    python benchmarks/gpu_steps.py --device cpu --models mlp_1x512 --batches 128 --steps 8 --runs 4

``measure(...)`` returns the rows, for ``benchmarks/gpu.py`` to call as a stage.
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import torch
from _bench import load, machine

from rethinkgen.train.config import TrainConfig
from rethinkgen.train.fused.group import FusedGroup
from rethinkgen.train.loop import Trainer
from rethinkgen.train.resolve import resolve_config

MODELS = ("mlp_1x512", "alexnet_small", "inception_small")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _configs(model: str, batch: int, steps: int, runs: int, amp: bool, device: str) -> list[TrainConfig]:
    base = TrainConfig(data="synthetic", data_options={"shape": "3x32x32"}, crop=28, standardize="per_image",
                       n_train=batch * steps, n_test=batch, model=model, batch_size=batch, lr=0.01, epochs=10,
                       amp=amp, device=device, log_every=10)
    levels = [i / max(runs - 1, 1) for i in range(runs)]
    return [resolve_config(base.replace(corruption="partial_labels", level=p)) for p in levels]


def _best_epochs(epochs: dict[str, object], device: torch.device, repeats: int) -> dict[str, float]:
    """Best wall seconds per mode of ``repeats`` rounds, each round timing one epoch of every mode in
    turn (interleaved, so a change of machine load hits every mode alike), after one warm-up epoch each."""
    for epoch in epochs.values():
        epoch()
    _sync(device)
    best = dict.fromkeys(epochs, float("inf"))
    for _ in range(repeats):
        for mode, epoch in epochs.items():
            t0 = time.perf_counter()
            epoch()
            _sync(device)
            best[mode] = min(best[mode], time.perf_counter() - t0)
    return best


def measure(models=MODELS, batches=(128, 512), precisions=("fp32", "bf16"), steps: int = 40, runs: int = 11,
            repeats: int = 3, device: str = "cuda", single: bool = True, fused: bool = True) -> list[dict]:
    """The rows of the table (see the module docstring); one dict per (trainer, model, batch, precision,
    mode) with ``ms_per_step``, ``samples_per_s`` and ``vs_eager`` (or ``error``)."""
    dev = torch.device(device)
    modes = ["eager", "static"] + (["captured"] if dev.type == "cuda" else [])
    rows: list[dict] = []
    for model in models:
        for batch in batches:
            for precision in precisions:
                if precision == "bf16" and dev.type != "cuda":
                    continue  # autocast is never applied on the CPU (resolve.autocast_dtype)
                configs = _configs(model, batch, steps, runs, precision == "bf16", device)
                kinds = ([("single", 1)] if single else []) + ([(f"fused{runs}", runs)] if fused else [])
                for kind, k in kinds:
                    where = dict(trainer=kind, model=model, batch=batch, precision=precision)
                    try:
                        if k == 1:
                            epochs = {m: Trainer(configs[0], dev, step=m).train_epoch for m in modes}
                        else:
                            epochs = {m: FusedGroup(configs, dev, [[] for _ in configs], [None] * k, step=m).train_epoch
                                      for m in modes}
                        seconds = _best_epochs(epochs, dev, repeats)
                    except Exception as e:  # noqa: BLE001 - a row says what failed, the table goes on
                        rows.append({**where, "error": repr(e)[:300]})
                        print(rows[-1], flush=True)
                        continue
                    finally:
                        epochs = None
                        gc.collect()  # a FusedGroup and its runs point to each other: free their GPU memory now
                        if dev.type == "cuda":
                            torch.cuda.empty_cache()
                    for mode in modes:
                        rows.append({**where, "mode": mode, "ms_per_step": 1e3 * seconds[mode] / steps,
                                     "samples_per_s": k * batch * steps / seconds[mode],
                                     "vs_eager": seconds["eager"] / seconds[mode]})
                        print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict) -> str:
    ratio = f"{r['vs_eager']:.2f}x eager" if r.get("vs_eager") else "-"
    return (f"{r['trainer']:>8} {r['model']:>15} batch {r['batch']:>4} {r['precision']:>4} {r['mode']:>8}: "
            f"{r['ms_per_step']:8.2f} ms/step {r['samples_per_s']:>10,.0f} samples/s  {ratio}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--batches", nargs="+", type=int, default=[128, 512])
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=40, help="full batches per timed epoch")
    ap.add_argument("--runs", type=int, default=11, help="runs of the fused group")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs (the best is kept)")
    ap.add_argument("--no-single", action="store_true")
    ap.add_argument("--no-fused", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--json", default=None, help="write the rows to this file")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    where = torch.cuda.get_device_name(0) if a.device == "cuda" else "the CPU"
    print(f"machine: {machine()}; {load()}; steps on {where}")
    rows = measure(a.models, a.batches, a.precision, a.steps, a.runs, a.repeats, a.device,
                   single=not a.no_single, fused=not a.no_fused)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
