"""Data sources: one loader per dataset, a registry by name, seeded subsets, verified downloads.

>>> ds = load_dataset("synthetic", shape=(1, 40), n_train=100, n_test=50, seed=0)
>>> ds.layout, tuple(ds.x_train.shape), ds.num_classes
('signal', (100, 1, 40), 10)

Datasets (``list_datasets()``; each loader module documents its format and checks):

- ``cifar10``: the paper's main dataset (Zhang et al. 2017, §2, Fig. 1, Table 1), from the official
  ``cifar-10-batches-py`` pickles, read by a restricted unpickler that can only rebuild numpy arrays;
- ``mnist``: the standard IDX files (plain or .gz), the paper's §5 kernel experiment;
- ``fashion_mnist``: Fashion-MNIST in the same IDX layout, real images where CIFAR-10 cannot be had;
- ``mnist1d``: generated offline with the ``mnist1d`` package — the CPU-sized default;
- ``synthetic``: Gaussian inputs of any shape with a planted linear label rule;
- ``npz``: the user's arrays, a ``.npz`` or a folder of ``.npy`` files, in any common layout
  (``load_dataset("npz", path="data.npz")``);
- ``folder``: the user's images in class folders, torchvision's ImageFolder layout
  (``load_dataset("folder", path="ROOT", size=32)``).
- ``imagenet``: a local ILSVRC-2012 copy (Table 2), streamed from disk by the trainer, never loaded
  into memory (its spec's ``index`` lists the files; :mod:`~rethinkgen.data.sources.imagenet`).

Every loader returns the full :class:`~rethinkgen.data.dataset.Dataset`; :func:`load_dataset` checks
the options, then draws seeded subsets (stream "data") when ``n_train``/``n_test`` ask for them.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rethinkgen.data.dataset import Dataset
from rethinkgen.data.sources import arrays, cifar10, fashion_mnist, folder, idx, imagenet, mnist, mnist1d, synthetic
from rethinkgen.data.sources.download import Log, stderr_log
from rethinkgen.data.sources.messages import interface, option
from rethinkgen.errors import ConfigError
from rethinkgen.registry import Registry
from rethinkgen.seeding import rng

__all__ = ["DATASETS", "DatasetSpec", "check_available", "dataset_layout", "dataset_options", "default_data_dir",
           "fetch_dataset", "interface", "list_datasets", "load_dataset", "take_subset"]

ENV_DATA_DIR = "RETHINKGEN_DATA"
SIZE_OPTIONS = ("n_train", "n_test")  # loaders that accept these generate exactly that many samples


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: how to load (and fetch) it and its paper defaults."""

    name: str
    load: Callable[..., Dataset]  # load(data_dir: Path | None, seed: int, **options) -> Dataset (full set)
    layout: str  # "image" | "signal" | "vector" ("any" for npz: decided by the file; see Dataset.layout)
    description: str  # one line for `rethinkgen data list`
    needs_files: bool  # False for generated ones (mnist1d, synthetic)
    fetch: Callable[[Path], Path] | None  # download + verify into data_dir; returns the folder
    locate: Callable[[Path], Any] | None = None  # finds the files in data_dir without reading them; raises
    #   DatasetNotFoundError naming where it looked and the fetch command (None: nothing to find up front)
    crop: int | None = None  # paper default centre crop (cifar10: 28, App. A), None for others
    standardize: str = "none"  # default preprocessing: "per_image" | "per_feature" | "none"
    defaults: dict = field(default_factory=dict)  # keys among "lr", "epochs", "lr_decay_every"
    index: Callable[..., Any] | None = None  # streamed sources: index(data_dir, seed, n_train=, n_test=) -> file
    # lists (imagenet.ImagenetSplits); their ``load`` refuses, the trainer streams (rethinkgen.data.stream)
    ready: Callable[[Path], Any] | None = None  # for a run of several processes: raises (naming the command
    #   that does it) when the data still needs a long preparation (imagenet: archives to extract), which rank
    #   0 alone would make while the others time out waiting; None: nothing to prepare


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _register(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name)(spec)


_register(DatasetSpec(
    name="cifar10", load=cifar10.load, layout="image", needs_files=True, fetch=cifar10.fetch,
    locate=cifar10.find_folder,
    description="CIFAR-10: 50,000/10,000 32x32 colour images, 10 classes (the paper's main set; "
                "official cifar-10-batches-py)",
    crop=28, standardize="per_image", defaults={"epochs": 300, "lr_decay_every": 50_000},
))
_register(DatasetSpec(
    name="mnist", load=mnist.load, layout="image", needs_files=True, fetch=mnist.fetch,
    locate=functools.partial(idx.find_files, mnist.SPEC),
    description="MNIST: 60,000/10,000 28x28 grey digits from the standard IDX files (paper §5 kernels)",
    standardize="none", defaults={"epochs": 100, "lr_decay_every": 60_000},
))
_register(DatasetSpec(
    name="fashion_mnist", load=fashion_mnist.load, layout="image", needs_files=True, fetch=fashion_mnist.fetch,
    locate=functools.partial(idx.find_files, fashion_mnist.SPEC),
    description="Fashion-MNIST: 60,000/10,000 28x28 grey photos of clothing, 10 classes, MNIST's IDX files "
                "(also found in /usr/share/datasets/fashion-mnist)",
    standardize="none", defaults={"epochs": 100, "lr_decay_every": 60_000},
))
_register(DatasetSpec(
    name="mnist1d", load=mnist1d.load, layout="signal", needs_files=False, fetch=None,
    description="MNIST-1D: 4,000/1,000 signals of length 40, 10 classes, generated offline (CPU default)",
    standardize="per_feature", defaults={"lr": 0.1, "epochs": 300, "lr_decay_every": 50_000},
))
_register(DatasetSpec(
    name="synthetic", load=synthetic.load, layout="image", needs_files=False, fetch=None,
    description="Gaussian inputs with a planted linear label rule; option shape: (C,H,W) image "
                "(default 3x32x32), (C,L) signal or (D,) vector",
    standardize="per_feature",
))
_register(DatasetSpec(
    name="imagenet", load=imagenet.load, layout="image", needs_files=True, fetch=imagenet.fetch,
    locate=imagenet.locate, ready=functools.partial(imagenet.locate, extracted=True),
    description="ILSVRC-2012 (Table 2): 1,281,167/50,000 images, 1,000 classes, from your local copy "
                "(torchvision's ImageNet root or train/<wnid>/, val/<wnid>/), streamed from disk; never downloaded",
    crop=299, standardize="inception", index=imagenet.index,
    # App. A: TF Inception training (no epoch count stated); lr x0.94 every 2 epochs as Inception V3's
    defaults={"lr": 0.1, "epochs": 100, "lr_decay_every": 2 * 1_281_167},
))
_register(DatasetSpec(
    name="npz", load=arrays.load, layout="any", needs_files=True, fetch=None,
    description="your own arrays: a .npz (or a folder of .npy) with x, y, x_test, y_test (option path); "
                "layout NCHW/NHWC/NHW/NCL/NLC/ND found or set (option layout)",
    standardize="none",
))
_register(DatasetSpec(
    name="folder", load=folder.load, layout="image", needs_files=True, fetch=None,
    description="your own images in class folders, ROOT/train/<class>/*.jpg and ROOT/val/<class>/... "
                "(options path, size); decoded once and cached",
    standardize="none",
))


def default_data_dir() -> Path:
    """``$RETHINKGEN_DATA`` if set, else ``~/.cache/rethinkgen``."""
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rethinkgen"


def _resolve_dir(data_dir: Path | str | None) -> Path:
    return default_data_dir() if data_dir is None else Path(data_dir).expanduser()


def _keyword_params(spec: DatasetSpec) -> dict[str, Any]:
    sig = inspect.signature(spec.load)
    return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def dataset_options(name: str) -> dict[str, Any]:
    """The options ``load_dataset(name, **options)`` accepts, with their defaults."""
    return {k: v for k, v in _keyword_params(DATASETS.get(name)).items() if k not in SIZE_OPTIONS}


def _check_options(name: str, options: dict[str, Any]) -> None:
    valid = sorted(dataset_options(name))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for dataset "
                          f"{name!r}; valid options: {', '.join(valid) if valid else 'none'}")


def dataset_layout(name: str, options: dict[str, Any] | None = None,
                   data_dir: Path | str | None = None) -> str:
    """The layout ``load_dataset(name, data_dir, **options)`` will return, without loading the data.

    Usually ``DATASETS.get(name).layout``; for ``synthetic`` it follows the ``shape`` option and for
    ``npz`` the headers of the arrays (the spec says "any"). For ``npz`` and ``folder`` the checks that
    need no decoding run too (layout, labels, class folders), so a config naming bad data fails here,
    before any run starts. Validate a config with this rather than the spec's layout.
    """
    spec = DATASETS.get(name)
    options = dict(options or {})
    _check_options(name, options)
    if name == "synthetic":
        return synthetic.layout(**options)
    if name == "npz":
        return arrays.layout(_resolve_dir(data_dir), **options)
    if name == "folder":
        return folder.layout(_resolve_dir(data_dir), **options)
    return spec.layout


def check_available(name: str, data_dir: Path | str | None = None) -> None:
    """Raise :class:`DatasetNotFoundError` (where it looked, the fetch command) when the files of dataset
    ``name`` are not in ``data_dir`` (None: ``$RETHINKGEN_DATA`` or ``~/.cache/rethinkgen``); cheap: the
    files are found, not read. Datasets without such a check (generated ones; ``npz`` and ``folder``,
    whose paths :func:`dataset_layout` checks) pass. Unknown names raise UnknownNameError."""
    spec = DATASETS.get(name)
    if spec.locate is not None:
        spec.locate(_resolve_dir(data_dir))


def list_datasets() -> list[tuple[str, str, str, bool]]:
    """(name, description, layout, needs_files) of every registered dataset, sorted by name."""
    return [(s.name, s.description, s.layout, s.needs_files) for s in map(DATASETS.get, DATASETS.names())]


def _check_count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be a positive int or None (all samples), got {value!r}")
    return int(value)


def take_subset(ds: Dataset, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                *, hint: str = "") -> Dataset:
    """A seeded subset: ``n_train`` training and ``n_test`` test samples (None keeps all).

    Indices are the first n of a permutation drawn from the "data" stream of ``seed`` (train and test
    from independent sub-streams), then sorted: the same seed gives the same subset, and a smaller
    subset is contained in a larger one. Not stratified. ``hint`` is appended to the error raised
    when more samples are asked for than the set has.
    """
    parts = {}
    for split, n, sub in (("train", n_train, 0), ("test", n_test, 1)):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        available = int(x.shape[0])
        if n is not None and n > available:
            raise ConfigError(f"n_{split}={n} but {ds.name} has only {available} {split}ing samples; "
                              f"use n_{split} <= {available} (or None for all){hint}")
        if n is not None and n < available:
            idx = np.sort(rng(seed, "data", sub).permutation(available)[:n])
            x, y = x[idx], y[idx]
        parts[split] = (x, y)
    meta = {**ds.meta, "n_train_available": ds.n_train, "n_test_available": ds.n_test, "subset_seed": seed}
    return replace(ds, x_train=parts["train"][0], y_train=parts["train"][1],
                   x_test=parts["test"][0], y_test=parts["test"][1], meta=meta)


def load_dataset(name: str, data_dir: Path | str | None = None, *, n_train: int | None = None,
                 n_test: int | None = None, seed: int = 0, **options: Any) -> Dataset:
    """Load dataset ``name`` (float32 inputs, int64 labels, CPU tensors), optionally a seeded subset.

    Parameters
    ----------
    name : a registered dataset (``list_datasets()``); unknown names raise UnknownNameError.
    data_dir : folder with the dataset's files; None: ``$RETHINKGEN_DATA`` or ``~/.cache/rethinkgen``.
    n_train, n_test : sample counts. For file datasets, a subset drawn with the "data" stream of
        ``seed`` (more than available raises ConfigError); for ``synthetic``, the sizes generated.
    seed : the run seed (subsets; the synthetic rule and inputs).
    **options : dataset-specific (``dataset_options(name)``), e.g. ``path=`` for npz,
        ``n_samples=`` for mnist1d, ``shape=`` for synthetic; unknown ones raise ConfigError.

    Raises
    ------
    DatasetNotFoundError : files missing; the message names the paths looked at and the fetch command.
    UnsafeFileError : a file is corrupt or holds something its format does not allow.
    """
    spec = DATASETS.get(name)
    params = _keyword_params(spec)
    _check_options(name, options)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative int, got {seed!r}")
    n_train, n_test = _check_count("n_train", n_train), _check_count("n_test", n_test)
    kwargs = dict(options)
    for key, value in (("n_train", n_train), ("n_test", n_test)):
        if key in params and value is not None:
            kwargs[key] = value
    ds = spec.load(_resolve_dir(data_dir), int(seed), **kwargs)
    for split, count in (("training", ds.n_train), ("test", ds.n_test)):
        if count == 0:  # the trainer's evaluation fails on an empty split only after the run started
            raise ConfigError(f"{name}: the {split} set is empty; rethinkgen trains on the training set and "
                              "measures accuracy on the test set: both need samples")
    sub_train = None if "n_train" in params else n_train
    sub_test = None if "n_test" in params else n_test
    hint = f"; or generate more with {option('n_samples', 'N', placeholder=True)}" if "n_samples" in params else ""
    return take_subset(ds, sub_train, sub_test, int(seed), hint=hint)


def fetch_dataset(name: str, data_dir: Path | str | None = None, *, log: Log | None = None) -> Path:
    """Download and verify dataset ``name`` into ``data_dir``; return the folder holding it.

    What is already there is verified before it is called ready (official checksums, or the safe loader
    for a CIFAR-10 copy that is not the official one). Generated datasets (mnist1d, synthetic) and user
    files (npz, folder) need nothing: a message says so and ``data_dir`` is returned. Messages go to
    ``log`` (default: stderr).
    """
    spec = DATASETS.get(name)
    log = log or stderr_log
    directory = _resolve_dir(data_dir)
    if spec.fetch is None:
        why = "it is generated offline" if not spec.needs_files else "it reads your own files (option path)"
        log(f"{name}: nothing to fetch: {why}")
        return directory
    if "log" in inspect.signature(spec.fetch).parameters:
        return spec.fetch(directory, log=log)
    return spec.fetch(directory)
