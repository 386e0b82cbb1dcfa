"""Benchmark: the streamed ImageNet pipeline and Inception V3 training from a JPEG tree (issue 13, Table 2).

Measured in one process, through the trainer's own code (``StreamTrainer``: its DataLoader, its
``model_input``, its ``_sgd_step``), on a tree of JPEGs (``--tree``: a real ILSVRC-2012 copy in either
layout; by default a generated one with ImageNet-like sizes, 300-500 pixels a side, quality 90):

1. **pipeline alone** — images/s the DataLoader workers deliver to the device: read, decode (Pillow),
   RandomResizedCrop + flip at ``--size``, collate, copy, /255, [-1, 1], channels-last;
2. **step alone** — images/s of SGD steps on one batch already on the device (bf16 autocast and
   channels-last on CUDA, as the trainer does there);
3. **training from JPEGs** — images/s of the two together, as an epoch runs;
4. **evaluation** — images/s of eval-mode forward passes (each epoch evaluates the 1,281,167 training
   and 50,000 validation images once).

It prints the ratios training / step alone (how much the pipeline slows training; 1.00 = not at all) and
pipeline / training, and the projected time of one ImageNet epoch: 1,281,167 training images at the
training rate plus 1,331,167 evaluated at the evaluation rate. The issue's target on one H200 is
>= 3,000 images/s training Inception V3 at 299x299 (bf16, channels-last).

    python benchmarks/imagenet_pipeline.py                       # CPU: small batches, few steps
    python benchmarks/imagenet_pipeline.py --device cuda          # GPU: batch 256, workers = CPUs
    python benchmarks/imagenet_pipeline.py --device cuda --tree /data/ILSVRC2012 --steps 50
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _bench import load, machine

from rethinkgen.data.stream.loader import default_workers
from rethinkgen.data.stream.transforms import model_input
from rethinkgen.train.config import TrainConfig
from rethinkgen.train.metrics import autocast_context
from rethinkgen.train.resolve import resolve_config
from rethinkgen.train.streaming.distributed import DistContext
from rethinkgen.train.streaming.trainer import StreamTrainer

TRAIN_IMAGES = 1_281_167  # ILSVRC-2012
VAL_IMAGES = 50_000


def jpeg_tree(folder: Path, n_images: int, classes: int = 4, seed: int = 0) -> Path:
    """A train/<wnid>/ + val/<wnid>/ tree of ``n_images`` training JPEGs of ImageNet-like sizes (once)."""
    from PIL import Image

    done = folder / f".complete-{n_images}"
    if done.exists():
        return folder
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_images), ("val", max(classes, n_images // 10))):
        for i in range(n):
            h, w = int(rng.integers(300, 501)), int(rng.integers(300, 501))
            # smooth content (upsampled noise) compresses and decodes like a photograph, not like white noise
            small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
            path = folder / split / f"n{i % classes:08d}" / f"{split}_{i}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=90)
            path.write_bytes(buf.getvalue())
    done.write_text("")
    return folder


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(n_images: int, seconds: float) -> float:
    return n_images / seconds if seconds > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--tree", type=Path, default=None, help="an ImageNet copy or JPEG tree (default: generated)")
    ap.add_argument("--images", type=int, default=None, help="training JPEGs to generate (CPU 160, GPU 4096)")
    ap.add_argument("--model", default="inception_v3")
    ap.add_argument("--size", type=int, default=299)
    ap.add_argument("--batch", type=int, default=None, help="images per step (CPU 8, GPU 256)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (CPU 3, GPU 30)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (CPU 1, GPU 5)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader processes (default: CPUs, at most 16)")
    ap.add_argument("--no-augment", action="store_true", help="resize + centre crop (the paper's ablation)")
    ap.add_argument("--no-amp", action="store_true", help="float32 on CUDA instead of bf16 autocast")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of this process")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cuda = a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    batch, steps = a.batch or (256 if cuda else 8), a.steps or (30 if cuda else 3)
    warmup = a.warmup or (5 if cuda else 1)
    workers = a.workers if a.workers is not None else default_workers()
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    n_images = a.images or max((4096 if cuda else 160), batch * (steps + warmup))
    tree = a.tree or jpeg_tree(Path(tempfile.gettempdir()) / "rethinkgen-bench-jpeg", n_images)
    config = resolve_config(TrainConfig(data="imagenet", data_dir=str(tree), model=a.model, crop=a.size,
                                        batch_size=batch, augment=not a.no_augment, flip=not a.no_augment,
                                        device=device.type, workers=workers, amp=not a.no_amp, epochs=1))
    print(f"machine: {machine()}; {load()}")
    print(f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if cuda else ''}; model {a.model} at "
          f"{a.size}x{a.size}, batch {batch}, {workers} DataLoader workers, augmentation "
          f"{'off' if a.no_augment else 'RandomResizedCrop + flip'}; tree {tree}")
    trainer = StreamTrainer(config, DistContext(device=device))
    print(f"numerics: {trainer.numerics.describe()}; {trainer.setup.n_train} training JPEGs")
    loader = trainer._loader()
    loader.sampler.set_epoch(1)

    # 0. one image at a time in this process (one core): decode, then the training transform
    from rethinkgen.data.stream.loader import decode_rgb

    data = trainer._dataset("train", True)
    paths = [data.index.path(i) for i in range(min(64, len(data)))]
    data.transform.training(decode_rgb(paths[0]), 1, 0)  # imports torchvision's transforms: not timed
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        t0 = time.perf_counter()
        images = [decode_rgb(p) for p in paths]
        decode_ms = (time.perf_counter() - t0) / len(paths) * 1000
        t0 = time.perf_counter()
        for i, image in enumerate(images):
            data.transform.training(image, 1, i)
        transform_ms = (time.perf_counter() - t0) / len(paths) * 1000
        torch.set_num_threads(a.threads or torch.get_num_threads())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    # 1. pipeline alone (the first batch pays for starting the workers: not timed)
    batches = iter(loader)
    need = warmup + steps
    x, _, _ = next(batches)
    t0, seen = time.perf_counter(), 0
    for _ in range(need - 1):
        try:
            x, _, _ = next(batches)
        except StopIteration:
            loader.sampler.set_epoch(loader.sampler.epoch + 1)
            batches = iter(loader)
            x, _, _ = next(batches)
        model_input(x, device, config.standardize, trainer.channels_last)
        seen += x.shape[0]
    sync(device)
    pipeline = rate(seen, time.perf_counter() - t0)

    # 2. step alone, on one batch already on the device
    xb = model_input(x, device, config.standardize, trainer.channels_last)
    yb = torch.randint(0, trainer.setup.num_classes, (xb.shape[0],), device=device)
    for _ in range(warmup):
        trainer._sgd_step(xb, yb, 0.01)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer._sgd_step(xb, yb, 0.01)
    sync(device)
    step_alone = rate(steps * xb.shape[0], time.perf_counter() - t0)

    # 3. training from JPEGs: pipeline and step together
    def train_steps(n: int) -> int:
        count = 0
        while count < n:
            loader.sampler.set_epoch(loader.sampler.epoch + 1)
            for x, y, _ in loader:
                trainer._sgd_step(model_input(x, device, config.standardize, trainer.channels_last),
                                  y.to(device, non_blocking=True), 0.01)
                count += 1
                if count == n:
                    break
        return count

    train_steps(warmup)
    sync(device)
    t0 = time.perf_counter()
    done = train_steps(steps)
    sync(device)
    training = rate(done * batch, time.perf_counter() - t0)

    # 4. evaluation forward passes (eval mode, inference, the trainer's eval batch)
    eval_batch = min(trainer.eval_batch_size, 4 * batch)
    xe = xb[:1].expand(eval_batch, *xb.shape[1:]).contiguous(
        memory_format=torch.channels_last if trainer.channels_last else torch.contiguous_format)
    trainer.model.eval()
    with torch.inference_mode(), autocast_context(device.type, trainer.autocast):
        trainer.forward(xe)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(max(1, steps // 2)):
            trainer.forward(xe)
        sync(device)
    evaluation = rate(max(1, steps // 2) * eval_batch, time.perf_counter() - t0)

    epoch_s = TRAIN_IMAGES / training + (TRAIN_IMAGES + VAL_IMAGES) / evaluation
    label = "GPU" if cuda else "CPU"
    per_image = decode_ms + transform_ms
    print(f"[{label}] one image on one core: decode {decode_ms:.2f} ms + transform {transform_ms:.2f} ms = "
          f"{per_image:.2f} ms -> at most {1000 / per_image * cores:,.0f} images/s from this machine's {cores} "
          "cores (load permitting)")
    print(f"[{label}] pipeline alone (decode + augment -> device): {pipeline:10.1f} images/s")
    print(f"[{label}] SGD step alone:                              {step_alone:10.1f} images/s")
    print(f"[{label}] training from JPEGs:                         {training:10.1f} images/s "
          f"({training / step_alone:.2f} x the step alone; the pipeline delivers {pipeline / training:.2f} x "
          "what training takes)")
    print(f"[{label}] evaluation (eval-mode forward):              {evaluation:10.1f} images/s")
    print(f"[{label}] projected ImageNet epoch: {TRAIN_IMAGES:,} training images in "
          f"{TRAIN_IMAGES / training / 3600:.2f} h"
          f" + evaluation of {TRAIN_IMAGES + VAL_IMAGES:,} images in "
          f"{(TRAIN_IMAGES + VAL_IMAGES) / evaluation / 3600:.2f} h = {epoch_s / 3600:.2f} h")
    if cuda:
        target = 3000.0
        print(f"[{label}] target >= {target:,.0f} images/s training: {'met' if training >= target else 'NOT met'} "
              f"({training / target:.2f} x)")


if __name__ == "__main__":
    main()
