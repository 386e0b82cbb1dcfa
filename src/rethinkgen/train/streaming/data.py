"""What a streamed run reads: file lists, the labels it trains on, transforms and pixel corruption.

Built once per run by :func:`prepare_stream`. Under DDP, rank 0 does the work — indexing the copy
(torchvision may extract archives on first use: never two processes at once), drawing the labels,
estimating the Gaussian corruption's moments — and broadcasts the results, so every rank holds rank 0's
arrays (design §2: random labels identical on every rank). An error on rank 0 is raised on every rank
(none is left waiting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rethinkgen.data.stream.labels import RunLabels, draw_labels
from rethinkgen.data.stream.pixels import INPUT_CORRUPTIONS, PixelCorruption
from rethinkgen.data.stream.transforms import STREAM_STANDARDIZE, ImageTransform, eval_resize
from rethinkgen.errors import ConfigError, RethinkgenError
from rethinkgen.seeding import stream_seed
from rethinkgen.train.config import TrainConfig
from rethinkgen.train.streaming.distributed import DistContext

__all__ = ["StreamSetup", "check_ready", "on_main", "prepare_stream"]


@dataclass
class StreamSetup:
    """Everything a streamed run reads besides the images themselves."""

    splits: Any  # rethinkgen.data.sources.imagenet.ImagenetSplits (train / test indexes, classes)
    labels: RunLabels  # the training labels (drawn once), true labels beside them
    transform: ImageTransform
    corruption: PixelCorruption | None  # input corruption of train and test images, or None
    moments: tuple[list[float], list[float]] | None  # gaussian: per-channel (mean, var) it matches

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.transform.size, self.transform.size)

    @property
    def n_train(self) -> int:
        return len(self.splits.train)

    def info(self) -> dict[str, Any]:
        """The data record of the run's summary."""
        return {**self.splits.meta, "classes_first": list(self.splits.classes[:3]), "n_train": self.n_train,
                "n_test": len(self.splits.test), "input_shape": list(self.input_shape),
                "eval_resize": self.transform.resize, "augment": self.transform.augment, "flip": self.transform.flip,
                "gaussian_moments": self.moments}


def on_main(ctx: DistContext, fn, *args: Any) -> Any:
    """``fn(*args)`` run on rank 0 and its result broadcast; rank 0's RethinkgenError raised on every rank."""
    result, error = None, None
    if ctx.main:
        try:
            result = fn(*args)
        except RethinkgenError as exc:
            error = exc
    if ctx.distributed:
        result, error = ctx.broadcast((result, error))
    if error is not None:
        raise error
    return result


def _check_options(config: TrainConfig) -> dict[str, Any]:
    from rethinkgen.data.sources import dataset_options

    options = dict(config.data_options or {})
    valid = dataset_options(config.data)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"unknown data option(s) {', '.join(unknown)} for dataset {config.data!r}; valid: "
                          f"{', '.join(sorted(valid)) or 'none'}")
    if config.standardize not in STREAM_STANDARDIZE:
        raise ConfigError(f"standardize={config.standardize!r} needs the whole set in memory; streamed data takes "
                          f"{', '.join(STREAM_STANDARDIZE)}")
    if not config.crop:
        raise ConfigError(f"{config.data} images come in many sizes: set crop, the side of the network's input "
                          "(299 for inception_v3, 224 for resnet50)")
    return options


def _index(config: TrainConfig) -> Any:
    from rethinkgen.data.sources import DATASETS

    return DATASETS.get(config.data).index(config.data_dir, config.seed, n_train=config.n_train, n_test=config.n_test)


def check_ready(config: TrainConfig) -> None:
    """For a run of several processes: the streamed data's own check (``DatasetSpec.ready``, imagenet:
    ``locate(..., extracted=True)``) that it needs no long preparation, which rank 0 alone would make while
    the others time out waiting."""
    from rethinkgen.data.sources import DATASETS, _resolve_dir

    spec = DATASETS.get(config.data)
    if spec.ready is not None:
        spec.ready(_resolve_dir(config.data_dir))


def _moments(splits: Any, transform: ImageTransform, seed: int, workers: int) -> tuple[list[float], list[float]]:
    from rethinkgen.data.stream.loader import channel_moments

    mean, var = channel_moments(splits.train, transform, seed, workers)
    return mean.tolist(), var.tolist()


def prepare_stream(config: TrainConfig, ctx: DistContext, workers: int = 0,
                   labels: np.ndarray | None = None) -> StreamSetup:
    """The :class:`StreamSetup` of a resolved config (module docstring). ``labels``: the run's stored
    training labels (from its checkpoint) instead of drawing them."""
    options = _check_options(config)
    if ctx.distributed:  # every rank refuses data that rank 0 would prepare for longer than the others wait
        check_ready(config)
    splits = on_main(ctx, _index, config)
    transform = ImageTransform(size=config.crop, resize=eval_resize(config.crop, options.get("resize")),
                               augment=config.augment, flip=config.flip,
                               augment_seed=stream_seed(config.seed, "augment"))
    true = splits.train.targets

    def draw() -> RunLabels:
        if labels is not None:
            if len(labels) != len(true):
                raise ConfigError(f"the run's stored labels are for {len(labels)} images, its data has {len(true)}; "
                                  "the dataset changed since the run started: restore it or start the run over")
            return RunLabels(np.asarray(labels, dtype=np.int64), true, config.corruption, float(config.level or 0.0))
        return draw_labels(true, splits.num_classes, config.corruption, config.level, config.seed,
                           config.exclude_true_class)

    run_labels = on_main(ctx, draw)
    corruption, moments = None, None
    if config.corruption in INPUT_CORRUPTIONS:
        if config.corruption == "gaussian":
            moments = on_main(ctx, _moments, splits, transform, config.seed, workers)
        corruption = PixelCorruption(config.corruption, config.seed, (3, config.crop, config.crop),
                                     tuple(np.asarray(m) for m in moments) if moments else None)
    return StreamSetup(splits, run_labels, transform, corruption, moments)
