"""From a resolved config to device tensors ready for training (design §1, §5).

source -> corruption -> preprocessing, once per run; the whole set then lives on the device and
batches are taken by indexing (no DataLoader, no per-sample Python).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from rethinkgen.data.dataset import Dataset
from rethinkgen.train.config import TrainConfig


@dataclass
class PreparedData:
    """Everything the training loop reads, already on ``device``."""

    x_train: torch.Tensor  # (N, *shape) preprocessed for evaluation (centre crop, standardized)
    x_train_raw: torch.Tensor | None  # (N, *raw_shape) before preprocessing; kept only for augmentation
    y_train: torch.Tensor  # (N,) labels trained on (possibly corrupted)
    y_train_clean: torch.Tensor  # (N,) true labels
    changed: torch.Tensor  # (N,) bool: trained-on label differs from the true one
    x_test: torch.Tensor  # (M, *shape) preprocessed
    y_test: torch.Tensor  # (M,) true labels (never corrupted)
    num_classes: int
    layout: str
    preprocessor: object  # rethinkgen.data.preprocess.Preprocessor
    realized_noise_rate: float
    data_info: dict = field(default_factory=dict)  # the source's record (rethinkgen.data.describe.data_info)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])


def _hashable(value):
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _options_key(options: dict | None) -> tuple:
    return tuple(sorted((k, _hashable(v)) for k, v in (options or {}).items()))


CACHE_ENTRIES = 4  # sources kept per process, most recently used first
CACHE_MAX_BYTES = 256 * 2**20  # larger sources (CIFAR-10: 737 MB as float32) are not kept between runs


_cache: OrderedDict[tuple, Dataset] = OrderedDict()


def source_key(config: TrainConfig) -> tuple:
    """What identifies the (uncorrupted) source of a config: equal keys load equal datasets."""
    return (config.data, config.data_dir, config.n_train, config.n_test, config.seed,
            _options_key(config.data_options))


def _nbytes(ds: Dataset) -> int:
    return sum(t.numel() * t.element_size() for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))


def load_source(config: TrainConfig) -> Dataset:
    """The (uncorrupted) dataset of a config; never mutated by callers.

    Small sources are cached per process (a sweep worker's next run skips the loading). A source larger
    than ``CACHE_MAX_BYTES`` is loaded again each time instead: kept, it would sit in memory beside the
    preprocessed copy for the whole run (a CIFAR-10 worker would need 2.6 GB instead of 1.9).
    """
    from rethinkgen.data.sources import load_dataset

    key = source_key(config)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    name, data_dir, n_train, n_test, seed, options = key
    ds = load_dataset(name, data_dir, n_train=n_train, n_test=n_test, seed=seed, **dict(options))
    if _nbytes(ds) <= CACHE_MAX_BYTES:
        _cache[key] = ds
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return ds


def prepare_data(config: TrainConfig, device: torch.device, source: Dataset | None = None) -> PreparedData:
    """Load, corrupt (paper §2.1) and preprocess (Appendix A) the data of a *resolved* config
    (``source``: the config's already loaded source, see :func:`load_source`)."""
    from rethinkgen.data.corruptions import apply_corruption
    from rethinkgen.data.describe import data_info
    from rethinkgen.data.preprocess import Preprocessor

    source = source if source is not None else load_source(config)
    corrupted = apply_corruption(source, config.corruption, config.level, seed=config.seed,
                                 exclude_true_class=config.exclude_true_class)
    ds = corrupted.dataset
    x_train_raw = ds.x_train.to(device)
    pre = Preprocessor(ds.layout, ds.input_shape, crop=config.crop or None, standardize=config.standardize,
                       augment=config.augment, flip=config.flip, x_train=x_train_raw)
    return PreparedData(
        x_train=pre.eval(x_train_raw),
        x_train_raw=x_train_raw if (config.augment or config.flip) else None,
        y_train=ds.y_train.to(device),
        y_train_clean=corrupted.y_train_clean.to(device),
        changed=corrupted.changed.to(device),
        x_test=pre.eval(ds.x_test.to(device)),
        y_test=ds.y_test.to(device),
        num_classes=ds.num_classes,
        layout=ds.layout,
        preprocessor=pre,
        realized_noise_rate=float(corrupted.realized_noise_rate),
        data_info=data_info(source),
    )
