"""The streamed dataset, its samplers and ``DataLoader``: ImageNet read from disk batch by batch.

Decoding and augmentation run in ``DataLoader`` worker processes (``workers`` per rank), each image
decoded by :func:`decode_rgb` (the ``folder`` source's Pillow decoding and RGB conversion) and transformed by
:class:`~rethinkgen.data.stream.transforms.ImageTransform`; batches come back as uint8 (B, 3, S, S)
tensors in pinned memory (a quarter of float32's bytes) and are finished on the device
(:func:`~rethinkgen.data.stream.transforms.model_input`).

Order (design §2, "separate streams for data order"): the training order of epoch e is torch's
``DistributedSampler`` with ``shuffle=True``, seeded from the run's "order" stream and set to epoch e
(a permutation of all N images per epoch, split over the ranks: rank r takes every W-th image, padded
to equal counts as DistributedSampler pads). The sampler yields ``(index, epoch)`` pairs, so a
persistent worker knows which epoch an image belongs to and draws that epoch's crop. Evaluation shards
the images over the ranks without padding (rank r: r, r + W, ...), so every image counts once.

Labels are an array handed to the dataset; workers index it and never draw
(:mod:`~rethinkgen.data.stream.labels`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from rethinkgen.data.sources.imagenet import ImageIndex
from rethinkgen.data.stream.pixels import PixelCorruption
from rethinkgen.data.stream.transforms import ImageTransform
from rethinkgen.errors import RethinkgenError

__all__ = ["EpochOrder", "Shard", "StreamedImages", "batches", "channel_moments", "decode_rgb", "default_workers",
           "make_loader"]

MOMENT_SAMPLE = 10_000  # training images on which the Gaussian corruption's mean and variance are estimated


def decode_rgb(path: str | os.PathLike) -> torch.Tensor:
    """One image file as RGB, uint8 (3, H, W): :func:`~rethinkgen.data.sources.images.open_image` (Pillow, its
    format read from the content, so ImageNet's PNG named ``.JPEG`` decodes too) and
    :func:`~rethinkgen.data.sources.images.convert_channels` (grey replicated, alpha dropped, CMYK and
    palettes converted, 16-bit reduced to its high byte), shared with the ``folder`` source. The tensor is
    a channels-last view of Pillow's (H, W, 3) array, the layout torchvision's uint8 resize is fastest on.
    UnsafeFileError names a file that cannot be decoded."""
    from rethinkgen.data.sources.images import convert_channels, open_image

    rgb = np.array(convert_channels(open_image(path), 3), dtype=np.uint8)  # (H, W, 3), writable
    return torch.from_numpy(rgb).permute(2, 0, 1)


class StreamedImages(torch.utils.data.Dataset):
    """Images of one split with the labels to use: item ``(index, epoch)`` -> (image, label, index).

    ``train_mode``: training transform (augmentation of that epoch) instead of the evaluation one.
    The image is uint8 (3, S, S), or float32 for Gaussian inputs; the label int64; the index int64.
    """

    def __init__(self, index: ImageIndex, labels: np.ndarray, split: str, transform: ImageTransform,
                 train_mode: bool, corruption: PixelCorruption | None = None) -> None:
        if len(labels) != len(index):
            raise ValueError(f"{len(labels)} labels for {len(index)} images")
        self.index, self.split, self.transform = index, split, transform
        self.labels = np.ascontiguousarray(labels, dtype=np.int64)
        self.train_mode, self.corruption = train_mode, corruption

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        i, epoch = key
        if self.corruption is not None and not self.corruption.needs_image:
            return self.corruption(None, self.split, i), int(self.labels[i]), int(i)
        image = decode_rgb(self.index.path(i))
        x = self.transform.training(image, epoch, i) if self.train_mode else self.transform.evaluation(image)
        if self.corruption is not None:
            x = self.corruption(x, self.split, i)
        return x, int(self.labels[i]), int(i)


class EpochOrder(Sampler):
    """This rank's training order: ``DistributedSampler(shuffle=True, seed=order_seed)`` set to the epoch,
    as ``(index, epoch)`` pairs (module docstring)."""

    def __init__(self, n: int, world_size: int, rank: int, order_seed: int) -> None:
        self.sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True,
                                          seed=order_seed, drop_last=False)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.set_epoch(self.epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((int(i), self.epoch) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class Shard(Sampler):
    """Images ``rank, rank + W, ...`` of ``indices`` (default: all n), each once, as ``(index, 0)``."""

    def __init__(self, n: int, world_size: int = 1, rank: int = 0, indices: np.ndarray | None = None) -> None:
        base = np.arange(n) if indices is None else np.asarray(indices)
        self.indices = base[rank::world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((int(i), 0) for i in self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def default_workers(local_ranks: int = 1) -> int:
    """Worker processes per rank: the CPUs this process may use, shared by the ranks of the node, at most 16."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(16, cpus // max(1, local_ranks)))


def make_loader(dataset: StreamedImages, sampler: Sampler, batch_size: int, workers: int,
                pin_memory: bool = False) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` in ``sampler``'s order (batches of ``batch_size``, the last one
    smaller), with ``workers`` persistent worker processes (0: in this process)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None, drop_last=False)


def batches(loader: DataLoader) -> Iterator[Any]:
    """The batches of ``loader``. A RethinkgenError raised in a worker process (an image that cannot be
    decoded, named) is raised here as itself, with its own message: the ``DataLoader`` re-raises it as
    "Caught UnsafeFileError in DataLoader worker process 0. Original Traceback ..." with the worker's
    whole traceback in the message, which the command line would print instead of the one line that
    names the file."""
    try:
        yield from loader
    except RethinkgenError as exc:
        raise _unwrapped(exc) from None


def _unwrapped(exc: RethinkgenError) -> RethinkgenError:
    """``exc`` with the message it had in the worker (the last ``module.Name: message`` of the traceback
    torch put in its message), or ``exc`` itself when it did not come from a worker."""
    text = str(exc)
    marker = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    if not text.startswith("Caught ") or marker not in text:
        return exc
    try:
        return type(exc)(text.rsplit(marker, 1)[1].rstrip())
    except Exception:  # an error class that does not take one message
        return exc


def channel_moments(index: ImageIndex, transform: ImageTransform, seed: int, workers: int = 0,
                    sample: int = MOMENT_SAMPLE) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) variance, float64 (3,) each, in [0, 1] pixel units, of the training
    images at the training resolution (evaluation transform), over a seeded sample of at most ``sample``
    images (the "data" stream, sub-stream 2): what ``gaussian`` inputs match (paper §2.1)."""
    from rethinkgen.seeding import rng

    n = len(index)
    chosen = np.arange(n) if n <= sample else np.sort(rng(seed, "data", 2).permutation(n)[:sample])
    data = StreamedImages(index, np.zeros(n, dtype=np.int64), "train", transform, train_mode=False)
    loader = make_loader(data, Shard(n, indices=chosen), batch_size=64, workers=workers)
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    for x, _, _ in batches(loader):
        v = x.to(torch.float64).div_(255.0).transpose(0, 1).reshape(3, -1)  # (3, B*S*S)
        total += v.sum(dim=1)
        squares += v.square().sum(dim=1)
        count += v.shape[1]
    mean = total / count
    return mean.numpy(), (squares / count - mean.square()).clamp_min(0).numpy()
