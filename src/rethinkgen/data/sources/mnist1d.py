"""MNIST-1D, generated offline with the ``mnist1d`` package: the embedded CPU-sized default.

MNIST-1D (Greydanus, 2020) turns 10 digit-like 1-D templates into length-40 signals by padding,
scaling, translation, correlated and i.i.d. noise and shear. The default arguments (5,000 samples,
generator seed 42, an 80/20 split) give the standard set: 4,000 training and 1,000 test signals,
layout "signal" (N, 1, 40), 10 classes. It stands in for CIFAR-10 where no GPU is at hand: a
random-label run fits in seconds on a CPU (design §6).

Generation takes about 3 s for 5,000 samples, so the arrays are cached as ``.npz`` under
``data_dir/mnist1d/`` keyed by the generator arguments and the package version (written to a
temporary file and renamed); the cache is an optimisation only — an unwritable or damaged cache is
ignored and the set regenerated. The package seeds numpy's and ``random``'s *global* generators;
we save and restore both around it, so loading never changes anyone else's random state.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rethinkgen.data.dataset import Dataset
from rethinkgen.errors import ConfigError

DEFAULT_N_SAMPLES = 5000  # the package's default: 4,000 train + 1,000 test
NUM_CLASSES = 10
SUBDIR = "mnist1d"
_GLOBAL_RNG_LOCK = threading.Lock()


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("mnist1d")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


def generator_args(n_samples: int = DEFAULT_N_SAMPLES, generator_seed: int | None = None) -> dict[str, Any]:
    """The package's default arguments with ``num_samples`` (and ``seed`` if given) replaced."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # only used for downloading the pickled copy; we generate
    args["num_samples"] = n_samples
    if generator_seed is not None:
        args["seed"] = generator_seed
    return args


def generate(args: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset`` with ``args``; x float32 (N, 1, 40), y int64."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    with _GLOBAL_RNG_LOCK:  # make_dataset seeds the global generators: restore them afterwards
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            d = make_dataset(ObjectView(dict(args)))
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
    return {
        "x": np.asarray(d["x"], dtype=np.float32)[:, None, :],
        "y": np.asarray(d["y"], dtype=np.int64),
        "x_test": np.asarray(d["x_test"], dtype=np.float32)[:, None, :],
        "y_test": np.asarray(d["y_test"], dtype=np.int64),
    }


def cache_path(data_dir: Path, args: dict[str, Any]) -> Path:
    """``data_dir/mnist1d/mnist1d-<version>-n<N>-s<seed>-<hash of all args>.npz``."""
    key = json.dumps({"args": args, "version": package_version()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    name = f"mnist1d-{package_version()}-n{args['num_samples']}-s{args['seed']}-{digest}.npz"
    return Path(data_dir) / SUBDIR / name


def _read_cache(path: Path, args: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None if the file is absent, unreadable or not what ``args`` generate."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    except Exception:  # absent, truncated, or not ours: regenerate
        return None
    x, y, xt, yt = arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"]
    length = args["final_seq_length"]
    ok = (x.dtype == xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
          and x.shape[1:] == xt.shape[1:] == (1, length) and len(x) == len(y) and len(xt) == len(yt)
          and len(x) + len(xt) == args["num_samples"])
    return arrays if ok else None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    """Write atomically (temporary file + rename); False (and no file) if that is impossible."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        return True
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        return False


def load(data_dir: Path | None, seed: int = 0, *, n_samples: int = DEFAULT_N_SAMPLES,
         generator_seed: int | None = None, cache: bool = True) -> Dataset:
    """MNIST-1D as a :class:`Dataset` (layout "signal", x (N, 1, 40) float32, 10 classes).

    Parameters
    ----------
    n_samples : total signals generated (a positive multiple of 10; the package splits 80/20).
    generator_seed : the package generator's seed; None keeps its default (42), i.e. the standard set.
        The run ``seed`` is deliberately not used: every run sees the same MNIST-1D.
    cache : read/write the ``.npz`` cache under ``data_dir/mnist1d`` (ignored if ``data_dir`` is None).
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 10 \
            or n_samples % NUM_CLASSES:
        raise ConfigError(f"mnist1d: n_samples must be a positive multiple of {NUM_CLASSES} (the generator "
                          f"makes n_samples/10 signals per class), got {n_samples!r}")
    if generator_seed is not None and (isinstance(generator_seed, bool)
                                       or not isinstance(generator_seed, int | np.integer)):
        raise ConfigError(f"mnist1d: generator_seed must be an int or None, got {generator_seed!r}")
    args = generator_args(int(n_samples), None if generator_seed is None else int(generator_seed))
    path = cache_path(data_dir, args) if (cache and data_dir is not None) else None
    arrays = _read_cache(path, args) if path is not None and path.is_file() else None
    cached = arrays is not None
    if arrays is None:
        arrays = generate(args)
        if path is not None:
            _write_cache(path, arrays)
    return Dataset(
        name="mnist1d",
        x_train=torch.from_numpy(arrays["x"]), y_train=torch.from_numpy(arrays["y"]),
        x_test=torch.from_numpy(arrays["x_test"]), y_test=torch.from_numpy(arrays["y_test"]),
        num_classes=NUM_CLASSES, layout="signal",
        meta={"source": "mnist1d", "generator_args": args, "mnist1d_version": package_version(),
              "cache": str(path) if path is not None else None, "from_cache": cached},
    )
