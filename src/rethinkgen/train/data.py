"""From a resolved config to device tensors ready for training (design §1, §5).

source -> corruption -> preprocessing, once per run; the whole set then lives on the device and
batches are taken by indexing (no DataLoader, no per-sample Python).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

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


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, data_dir: str | None, n_train, n_test, seed: int, options: tuple) -> Dataset:
    from rethinkgen.data.sources import load_dataset

    return load_dataset(name, data_dir, n_train=n_train, n_test=n_test, seed=seed, **dict(options))


def load_source(config: TrainConfig) -> Dataset:
    """The (uncorrupted) dataset of a config; cached per process, never mutated by callers."""
    return _load_cached(config.data, config.data_dir, config.n_train, config.n_test, config.seed,
                        _options_key(config.data_options))


def prepare_data(config: TrainConfig, device: torch.device) -> PreparedData:
    """Load, corrupt (paper §2.1) and preprocess (Appendix A) the data of a *resolved* config."""
    from rethinkgen.data.corruptions import apply_corruption
    from rethinkgen.data.preprocess import Preprocessor

    source = load_source(config)
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
    )
