"""The user's own arrays from a ``.npz`` file: randomization tests on any data.

The file holds four arrays: ``x`` (N, ...), ``y`` (N,), ``x_test`` (M, ...), ``y_test`` (M,). The
layout follows from ``x.ndim``: 4 -> "image" (N, C, H, W) — channels-last (N, H, W, C) images
with 1 or 3 channels are recognised (last axis 1 or 3, second not) and transposed —, 3 -> "signal"
(N, C, L), 2 -> "vector" (N, D). uint8 images are divided by 255; float images must already lie
in [0, 1]. Labels are class indices 0..K-1 with K = max label + 1 unless ``num_classes`` says more.
The file is read with ``allow_pickle=False``, so it can never run code.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from rethinkgen.data.dataset import Dataset
from rethinkgen.errors import ConfigError, DatasetNotFoundError, UnsafeFileError

KEYS = ("x", "y", "x_test", "y_test")
ZIP_MAGIC = b"PK\x03\x04"  # np.savez writes a zip archive
LAYOUT_BY_NDIM = {4: "image", 3: "signal", 2: "vector"}


def resolve_path(path: str | Path | None, data_dir: Path | None) -> Path:
    """``path`` if given (relative paths are taken as is, then under ``data_dir``), else ``data_dir``
    itself when it names a ``.npz`` file."""
    if path is None:
        if data_dir is not None and Path(data_dir).suffix == ".npz":
            return Path(data_dir).expanduser()
        raise ConfigError("npz: say which file to load: load_dataset('npz', path='my_data.npz') "
                          "(a .npz with arrays x, y, x_test, y_test), or pass the file as data_dir")
    p = Path(path).expanduser()
    if not p.is_file() and not p.is_absolute() and data_dir is not None and (Path(data_dir) / p).is_file():
        return Path(data_dir) / p
    return p


def _images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """(N, C, H, W) float; channels-last (1 or 3 channels) is transposed, uint8 scaled by 1/255."""
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # NHWC -> NCHW
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    x = x.astype(np.float32)
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ConfigError(f"npz {path}: {key} is a 4-D image array of floats in [{x.min():g}, {x.max():g}]; "
                          "images must be uint8 (0..255) or floats in [0, 1]: divide by 255 or store uint8")
    return x


def _inputs(x: np.ndarray, key: str, path: Path) -> tuple[np.ndarray, str]:
    if x.dtype.kind not in "uif" or x.dtype == np.bool_:
        raise ConfigError(f"npz {path}: {key} must hold numbers, found dtype {x.dtype}")
    layout = LAYOUT_BY_NDIM.get(x.ndim)
    if layout is None:
        raise ConfigError(f"npz {path}: {key} has shape {x.shape}; expected 2-D (N, D) vectors, "
                          "3-D (N, C, L) signals or 4-D (N, C, H, W) images")
    out = _images(x, key, path) if layout == "image" else x.astype(np.float32)
    if not np.isfinite(out).all():
        raise ConfigError(f"npz {path}: {key} contains NaN or infinite values")
    return out, layout


def _labels(y: np.ndarray, key: str, path: Path) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ConfigError(f"npz {path}: {key} must be 1-D class indices (N,), found shape {y.shape}"
                          + ("; for one-hot labels store y.argmax(1)" if y.ndim == 2 else ""))
    if y.dtype.kind in "ui":
        out = y.astype(np.int64)
    elif y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        out = y.astype(np.int64)  # integral floats (e.g. exported from MATLAB) are accepted
    else:
        raise ConfigError(f"npz {path}: {key} must hold integer class indices, found dtype {y.dtype}"
                          + (" with non-integer values" if y.dtype.kind == "f" else ""))
    if out.size and out.min() < 0:
        raise ConfigError(f"npz {path}: {key} has negative labels (min {out.min()}); "
                          "labels must be class indices 0..K-1")
    return out


def peek_layout(file: Path) -> str:
    """The layout of ``file``'s ``x`` from its .npy header alone (no array is read)."""
    try:
        with zipfile.ZipFile(file) as z, z.open("x.npy") as f:
            version = np.lib.format.read_magic(f)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape = reader(f)[0]
    except KeyError as e:
        raise ConfigError(f"npz {file}: no array 'x'; the file needs {', '.join(KEYS)}") from e
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ConfigError(f"npz {file}: not a readable .npz file ({e})") from e
    layout = LAYOUT_BY_NDIM.get(len(shape))
    if layout is None:
        raise ConfigError(f"npz {file}: x has shape {shape}; expected 2-D (N, D) vectors, "
                          "3-D (N, C, L) signals or 4-D (N, C, H, W) images")
    return layout


def layout(data_dir: Path | None, *, path: str | Path | None = None, **_options: object) -> str:
    """The layout ``load`` would return, read from the file's header."""
    file = resolve_path(path, data_dir)
    if not file.is_file():
        raise DatasetNotFoundError(f"npz: file {file} not found (looked at {file.resolve()}); "
                                   "give the path of a .npz holding arrays x, y, x_test, y_test")
    return peek_layout(file)


def _read_npz(file: Path) -> dict[str, np.ndarray]:
    """The four arrays of ``file``; never unpickles (object arrays raise UnsafeFileError)."""
    with open(file, "rb") as f:
        magic = f.read(4)
    if magic != ZIP_MAGIC:
        kind = "a single .npy array" if magic[:1] == b"\x93" else "not a .npz (zip) archive"
        raise ConfigError(f"npz {file}: not a readable .npz file ({kind}); save it with "
                          "np.savez(path, x=..., y=..., x_test=..., y_test=...)")
    try:
        with np.load(file, allow_pickle=False) as f:
            missing = [k for k in KEYS if k not in f.files]
            if missing:
                raise ConfigError(f"npz {file}: missing arrays {missing} (found {sorted(f.files)}); "
                                  f"the file needs {', '.join(KEYS)}")
            arrays = {}
            for k in KEYS:
                try:
                    arrays[k] = f[k]
                except ValueError as e:  # object arrays need pickle, which we refuse
                    raise UnsafeFileError(f"npz {file}: array {k!r} cannot be loaded without pickle ({e}); "
                                          "store plain numeric arrays") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ConfigError(f"npz {file}: not a readable .npz file ({e})") from e
    return arrays


def load(data_dir: Path | None, seed: int = 0, *, path: str | Path | None = None,
         num_classes: int | None = None) -> Dataset:
    """Load ``path`` (keys x, y, x_test, y_test) as a :class:`Dataset`; ``seed`` is unused."""
    file = resolve_path(path, data_dir)
    if not file.is_file():
        raise DatasetNotFoundError(f"npz: file {file} not found (looked at {file.resolve()}); "
                                   "give the path of a .npz holding arrays x, y, x_test, y_test")
    arrays = _read_npz(file)
    x, layout = _inputs(arrays["x"], "x", file)
    x_test, _ = _inputs(arrays["x_test"], "x_test", file)
    y, y_test = _labels(arrays["y"], "y", file), _labels(arrays["y_test"], "y_test", file)
    for xs, ys, kx, ky in ((x, y, "x", "y"), (x_test, y_test, "x_test", "y_test")):
        if xs.shape[0] != ys.shape[0]:
            raise ConfigError(f"npz {file}: {kx} has {xs.shape[0]} rows but {ky} has {ys.shape[0]} labels")
    if x.shape[1:] != x_test.shape[1:]:
        raise ConfigError(f"npz {file}: x inputs are {x.shape[1:]} but x_test inputs are {x_test.shape[1:]}")
    if x.shape[0] == 0:
        raise ConfigError(f"npz {file}: x is empty")
    top = int(max(y.max(initial=0), y_test.max(initial=0)))
    if num_classes is None:
        num_classes = top + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes <= top:
        raise ConfigError(f"npz {file}: num_classes={num_classes!r} must be an int above the largest "
                          f"label {top}")
    if num_classes < 2:
        raise ConfigError(f"npz {file}: labels span a single class; a classification set needs at least 2 "
                          "(or set num_classes)")
    return Dataset(
        name="npz", x_train=torch.from_numpy(x), y_train=torch.from_numpy(y),
        x_test=torch.from_numpy(x_test), y_test=torch.from_numpy(y_test),
        num_classes=int(num_classes), layout=layout,  # type: ignore[arg-type]
        meta={"source": "npz", "path": str(file.resolve()), "sha256": _sha256(file)},
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
