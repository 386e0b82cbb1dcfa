"""Benchmark: our trainer against the common public training loop, same model, data, batch and machine.

The common loop is a faithful re-implementation of what the public randomization-test code does
(pluskid/fitting-random-labels, ``train.py`` + ``cifar10_data.py``, itself the pattern of the PyTorch
examples): a ``torchvision.datasets.CIFAR10``-style dataset whose ``__getitem__`` turns one uint8 HWC
array into a PIL image and runs ``torchvision.transforms`` (here CenterCrop(28) -> ToTensor ->
Normalize, the paper's 28x28 crop), a ``torch.utils.data.DataLoader`` with ``batch_size=128``,
``shuffle=True`` and ``num_workers=1`` (as that repo), cross-entropy, ``torch.optim.SGD`` (momentum
0.9), and per-batch accuracy / ``loss.item()`` bookkeeping. Ours is :class:`rethinkgen.train.loop.Trainer`
on the same synthetic CIFAR-10 files (read by the ``cifar10`` source, preprocessed once, batches by
indexing). Both start from the same initial weights.

Measured side by side in one run, each loop in a fresh process with its own environment (OpenMP reads
``OMP_WAIT_POLICY`` when torch loads): the common loop as published (torch's defaults) and with
rethinkgen's passive OpenMP wait, ours as the CLI runs it and with torch's defaults. The best of
``--repeats`` epochs each after a warm-up (other processes share the cores), samples per second:

- *ours (training)*: the SGD steps of an epoch;
- *ours (epoch)*: the same plus what our trainer does at every epoch end and the common loop does not:
  evaluating the *whole* training set and the test set in eval mode (paper Figure 1's training
  accuracy).

    python benchmarks/common_loop.py                       # mlp_1x512 and alexnet_small, 10,000 samples
    python benchmarks/common_loop.py --models mlp_1x512 --n-train 50000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _bench import Clock, fake_cifar10, load, machine, table

from rethinkgen.seeding import stream_seed
from rethinkgen.train.config import TrainConfig
from rethinkgen.train.loop import Trainer, resolve_config

BATCH = 128


# ------------------------------------------------------------------------------ the common loop
class CIFAR10Like(torch.utils.data.Dataset):
    """``torchvision.datasets.CIFAR10``'s storage and ``__getitem__``: HWC uint8 -> PIL -> transform."""

    def __init__(self, root: Path, n: int, transform) -> None:
        data, targets = [], []
        for i in range(1, 6):
            with open(root / "cifar-10-batches-py" / f"data_batch_{i}", "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            data.append(entry["data"])
            targets.extend(entry["labels"])
        self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))[:n]  # HWC, as torchvision
        self.targets = targets[:n]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        from PIL import Image

        img, target = self.data[index], self.targets[index]
        img = Image.fromarray(img)
        return self.transform(img), target


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    _, pred = output.topk(1, 1, True, True)
    return pred.t().eq(target.view(1, -1)).view(-1).float().sum(0).mul_(100.0 / target.size(0))


def common_epoch(model: torch.nn.Module, loader, optimizer, warmup: int = 0) -> int:
    """One epoch of the public loop (``train_epoch`` of fitting-random-labels); returns samples seen."""
    model.train()
    seen, loss_sum, acc_sum = 0, 0.0, 0.0
    for i, (inputs, target) in enumerate(loader):
        if warmup and i >= warmup:
            break
        output = model(inputs)
        loss = F.cross_entropy(output, target)
        acc_sum += float(accuracy(output.data, target)) * inputs.size(0)
        loss_sum += loss.item() * inputs.size(0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += inputs.size(0)
    return seen


def run_common(model_name: str, root: Path, n: int, workers: int, repeats: int) -> float:
    from torchvision import transforms

    from rethinkgen.models import create_model

    normalize = transforms.Normalize(mean=[x / 255.0 for x in [125.3, 123.0, 113.9]],
                                     std=[x / 255.0 for x in [63.0, 62.1, 66.7]])
    transform = transforms.Compose([transforms.CenterCrop(28), transforms.ToTensor(), normalize])
    dataset = CIFAR10Like(root, n, transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers)
    with torch.random.fork_rng():
        torch.manual_seed(stream_seed(0, "init"))
        model = create_model(model_name, (3, 28, 28), 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    common_epoch(model, loader, optimizer, warmup=3)
    best = 0.0
    for _ in range(repeats):
        with Clock() as clock:
            seen = common_epoch(model, loader, optimizer)
        best = max(best, seen / clock.wall)
    return best


# ------------------------------------------------------------------------------ ours
def run_ours(model_name: str, root: Path, n: int, n_test: int, repeats: int) -> tuple[float, float, float]:
    """(training samples/s, whole-epoch samples/s, setup seconds): best epoch after a warm-up epoch."""
    config = resolve_config(TrainConfig(data="cifar10", data_dir=str(root), model=model_name, n_train=n,
                                        n_test=n_test, epochs=2, lr=0.01, device="cpu"))
    with torch.random.fork_rng():
        with Clock() as setup:
            trainer = Trainer(config, torch.device("cpu"))
        trainer.train_epoch()  # warm-up epoch
        steps = evaluation = float("inf")
        for _ in range(repeats):
            with Clock() as clock:
                trainer.train_epoch()
            steps = min(steps, clock.wall)
            with Clock() as clock:
                trainer.evaluate_row(0.0)
            evaluation = min(evaluation, clock.wall)
    return n / steps, n / (steps + evaluation), setup.wall


# Environments the loops run in, each in a fresh process: OpenMP reads OMP_WAIT_POLICY when torch loads.
ENVIRONMENTS = {
    # the public loop as its users run it: torch's defaults (OpenMP threads spin while they wait)
    "common (as published)": ("common", {"OMP_WAIT_POLICY": None}),
    # the same loop given the one environment fix rethinkgen's CLI applies to itself
    "common + OMP_WAIT_POLICY=PASSIVE": ("common", {"OMP_WAIT_POLICY": "PASSIVE"}),
    # ours as `rethinkgen` runs it (the CLI sets the passive wait before torch loads)
    "ours (rethinkgen CLI environment)": ("ours", {"OMP_WAIT_POLICY": "PASSIVE"}),
    # ours as a library call from a plain Python session (torch's defaults)
    "ours (torch defaults)": ("ours", {"OMP_WAIT_POLICY": None}),
}


def child(loop: str, model: str, a: argparse.Namespace, root: Path) -> dict:
    if a.threads:
        torch.set_num_threads(a.threads)
    if loop == "common":
        return {"train": run_common(model, root, a.n_train, a.workers, a.repeats)}
    train_rate, epoch_rate, setup = run_ours(model, root, a.n_train, a.n_test, a.repeats)
    return {"train": train_rate, "epoch": epoch_rate, "setup": setup}


def spawn(loop: str, env_changes: dict, model: str, a: argparse.Namespace, root: Path) -> dict:
    env = dict(os.environ)
    for name, value in env_changes.items():
        env.pop(name, None) if value is None else env.__setitem__(name, value)
    args = [sys.executable, __file__, "--child", loop, "--models", model, "--data-dir", str(root),
            "--n-train", str(a.n_train), "--n-test", str(a.n_test), "--workers", str(a.workers),
            "--repeats", str(a.repeats)] + (["--threads", str(a.threads)] if a.threads else [])
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mlp_1x512", "alexnet_small"])
    ap.add_argument("--n-train", type=int, default=10_000, help="training samples per epoch (<= 50,000)")
    ap.add_argument("--n-test", type=int, default=2_000, help="test samples our trainer evaluates per epoch")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers of the common loop")
    ap.add_argument("--repeats", type=int, default=2, help="epochs timed per loop; the best is shown")
    ap.add_argument("--data-dir", default=None, help="where the synthetic CIFAR-10 files go (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    root = fake_cifar10(Path(a.data_dir) if a.data_dir else None)
    if a.child:
        print(json.dumps(child(a.child, a.models[0], a, root)))
        return
    print(f"machine: {machine()}")
    print(f"before: {load()}")
    print(f"data: synthetic CIFAR-10 files (uint8 3x32x32, centre crop 28), {a.n_train:,} training samples, "
          f"batch {BATCH}; common loop with num_workers={a.workers}; each loop in a fresh process", flush=True)
    rows = []
    for name in a.models:
        results = {}
        for label, (loop, env) in ENVIRONMENTS.items():
            results[label] = spawn(loop, env, name, a, root)
            print(f"  {name} / {label}: {results[label]['train']:,.0f} samples/s ({load()})", file=sys.stderr,
                  flush=True)
        published, passive = results["common (as published)"], results["common + OMP_WAIT_POLICY=PASSIVE"]
        for label in ("ours (rethinkgen CLI environment)", "ours (torch defaults)"):
            ours = results[label]
            rows.append([name, label, f"{published['train']:,.0f}", f"{passive['train']:,.0f}",
                         f"{ours['train']:,.0f}", f"{ours['train'] / published['train']:.1f}x",
                         f"{ours['train'] / passive['train']:.1f}x", f"{ours['epoch']:,.0f}",
                         f"{ours['epoch'] / published['train']:.1f}x"])
    print(table(rows, ["model", "ours run as", "common loop as published samples/s",
                       "common loop + passive wait", "ours training samples/s", "vs published", "vs + passive",
                       f"ours epoch + eval of {a.n_train:,}+{a.n_test:,} samples/s", "epoch vs published"]))
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
