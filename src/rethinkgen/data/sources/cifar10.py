"""CIFAR-10 from the official python distribution (``cifar-10-batches-py``), unpickled safely.

CIFAR-10 (Krizhevsky, 2009) is the paper's main dataset (Zhang et al. 2017, §2, Figure 1, Table 1):
50,000 training and 10,000 test 32×32 colour images in 10 classes. The official files are Python 2
pickles (protocol 2) of a dict ``{b"batch_label", b"labels", b"data", b"filenames"}`` whose ``data``
is a numpy uint8 array (10000, 3072) — 1024 red, then 1024 green, then 1024 blue values per row, each
plane row-major 32×32 — and whose ``labels`` is a list of 10,000 ints in 0..9.

Unpickling can run arbitrary code, so :class:`SafeUnpickler` only resolves the three globals a numpy
array needs (``numpy.core.multiarray._reconstruct`` — ``numpy._core`` in numpy 2 —, ``numpy.ndarray``,
``numpy.dtype``) and refuses everything else with :class:`UnsafeFileError` before it is called.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rethinkgen.data.dataset import Dataset
from rethinkgen.data.sources.download import (
    Log,
    checksum_verifier,
    download,
    extract_tar,
    fetch_command,
    stderr_log,
)
from rethinkgen.errors import DatasetNotFoundError, UnsafeFileError

FOLDER = "cifar-10-batches-py"  # what the official tarball extracts to
TARBALL = "cifar-10-python.tar.gz"
URLS = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"  # published on the CIFAR-10 page
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
FILES = (*TRAIN_BATCHES, TEST_BATCH, META)
ROWS_PER_BATCH = 10_000  # rows of every official batch
COLUMNS = 3 * 32 * 32  # values per image: 3 colour planes of 32x32
NUM_CLASSES = 10


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object for the only globals a pickled uint8 numpy array references."""
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # written by numpy 1.x (the official files)
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # written by numpy 2.x
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays, lists, dicts, strings and numbers — nothing else.

    ``encoding="bytes"`` reads Python 2 ``str`` objects (keys, raw array bytes) as ``bytes``, as the
    CIFAR-10 page prescribes. Any other global (``os.system``, ``builtins.eval``, ...) raises
    :class:`UnsafeFileError` naming the file and the global, before anything is called.
    """

    def __init__(self, file, path: Path | str) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        obj = self._allowed.get((module, name))
        if obj is None:
            raise UnsafeFileError(f"{self.path}: refusing to load the pickle: it references the global "
                                  f"{module}.{name}, which a CIFAR-10 batch never needs (it could run code). "
                                  "Delete the file and fetch the official one.")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(f"{self.path}: refusing to load the pickle: it uses persistent ids")


def safe_unpickle(path: Path | str) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler`; malformed files raise :class:`UnsafeFileError`."""
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, path).load()
    except UnsafeFileError:
        raise
    except Exception as e:  # UnpicklingError, EOFError, ValueError, TypeError from malformed streams
        raise UnsafeFileError(f"{path}: not a valid CIFAR-10 pickle ({type(e).__name__}: {e}); "
                              "delete it and fetch the dataset again") from e


def _str_keys(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise UnsafeFileError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def read_batch(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (data uint8 (n, 3072), labels int64 (n,)), with every check we can make."""
    path = Path(path)
    d = _str_keys(safe_unpickle(path), path)
    for key in ("data", "labels"):
        if key not in d:
            raise UnsafeFileError(f"{path}: no {key!r} entry (found {sorted(d)}); not a CIFAR-10 batch")
    data, labels = d["data"], d["labels"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == COLUMNS):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UnsafeFileError(f"{path}: 'data' must be a uint8 array (n, {COLUMNS}), found {desc}")
    if not isinstance(labels, list | np.ndarray) or not all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) for v in labels):
        raise UnsafeFileError(f"{path}: 'labels' must be a list of ints")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if y.shape[0] != data.shape[0]:
        raise UnsafeFileError(f"{path}: {data.shape[0]} images but {y.shape[0]} labels")
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise UnsafeFileError(f"{path}: labels must lie in 0..{NUM_CLASSES - 1}, found {y.min()}..{y.max()}")
    return data, y


def read_meta(path: Path | str) -> dict[str, Any]:
    """``batches.meta`` -> {"label_names": [str]*10, "num_cases_per_batch": int, "num_vis": 3072}."""
    path = Path(path)
    d = _str_keys(safe_unpickle(path), path)
    names = d.get("label_names")
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise UnsafeFileError(f"{path}: 'label_names' must list {NUM_CLASSES} names")
    if d.get("num_vis", COLUMNS) != COLUMNS:
        raise UnsafeFileError(f"{path}: num_vis is {d.get('num_vis')}, expected {COLUMNS}")
    return {"label_names": [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names],
            "num_cases_per_batch": d.get("num_cases_per_batch")}


def find_folder(data_dir: Path) -> Path:
    """The folder holding the batch files: ``data_dir`` itself or ``data_dir/cifar-10-batches-py``."""
    candidates = [data_dir, data_dir / FOLDER]
    for folder in candidates:
        if all((folder / f).is_file() for f in FILES):
            return folder
    looked = ", ".join(str(c) for c in candidates)
    partial = [c for c in candidates if any((c / f).is_file() for f in FILES)]
    missing = f" ({partial[0]} lacks {', '.join(f for f in FILES if not (partial[0] / f).is_file())})" \
        if partial else ""
    tar_hint = f" (found {data_dir / TARBALL}: the fetch command verifies and extracts it)" \
        if (data_dir / TARBALL).is_file() else ""
    raise DatasetNotFoundError(
        f"cifar10: no complete CIFAR-10 python batches ({', '.join(FILES)}) in {looked}{missing}. "
        f"Fetch them with: {fetch_command('cifar10', data_dir)}{tar_hint}")


def load(data_dir: Path, seed: int = 0, *, strict: bool = True) -> Dataset:
    """CIFAR-10 as a :class:`Dataset`: x (N, 3, 32, 32) float32 in [0, 1], y int64 in 0..9.

    ``strict`` (default) also requires the official sizes (five training batches of 10,000 rows and a
    test batch of 10,000); without it, batches only have to agree with each other and with
    ``batches.meta`` (small hand-made copies in the same format). ``seed`` is unused: the files are fixed.
    """
    folder = find_folder(Path(data_dir))
    meta = read_meta(folder / META)
    batches = [read_batch(folder / name) for name in (*TRAIN_BATCHES, TEST_BATCH)]
    rows = {name: b[0].shape[0] for name, b in zip((*TRAIN_BATCHES, TEST_BATCH), batches, strict=True)}
    want = ROWS_PER_BATCH if strict else meta["num_cases_per_batch"]
    bad = {name: n for name, n in rows.items() if n != want}
    if bad or not all(rows.values()):
        hint = "" if strict else " (set strict=True to also demand the official 10,000)"
        raise UnsafeFileError(f"{folder}: every batch must hold {want} rows as batches.meta says{hint}; "
                              f"found {rows}. Delete the folder and fetch the dataset again.")
    x_train = np.concatenate([b[0] for b in batches[:-1]])
    y_train = np.concatenate([b[1] for b in batches[:-1]])
    x_test, y_test = batches[-1]
    return Dataset(
        name="cifar10",
        x_train=_to_images(x_train), y_train=torch.from_numpy(y_train),
        x_test=_to_images(x_test), y_test=torch.from_numpy(y_test),
        num_classes=NUM_CLASSES, layout="image",
        meta={"source": "cifar10", "path": str(folder.resolve()), "label_names": meta["label_names"],
              "strict": strict},
    )


def _to_images(data: np.ndarray) -> torch.Tensor:
    """uint8 (n, 3072) rows (R plane, G plane, B plane) -> float32 (n, 3, 32, 32) in [0, 1]."""
    x = data.astype(np.float32)  # a fresh writable copy (pickled arrays may be read-only)
    x /= 255.0
    return torch.from_numpy(x).reshape(-1, 3, 32, 32)


def fetch(data_dir: Path, *, urls: tuple[str, ...] | list[str] = URLS, md5: str = TARBALL_MD5,
          log: Log | None = None) -> Path:
    """Download (or reuse) ``cifar-10-python.tar.gz`` in ``data_dir``, verify its MD5, extract it.

    Returns ``data_dir/cifar-10-batches-py``. An existing tarball is verified and extracted without
    downloading (the offline route: copy the official tarball into ``data_dir`` first). Extraction goes
    to a temporary folder (tarfile's "data" filter refuses unsafe members), the batches are read back
    with the safe loader, and only then is the folder renamed into place.
    """
    log = log or stderr_log
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / FOLDER
    if all((target / f).is_file() for f in FILES):
        log(f"cifar10: {target} is already complete; nothing to fetch")
        return target
    if target.exists():
        raise DatasetNotFoundError(f"cifar10: {target} exists but is incomplete; remove it and run "
                                   f"{fetch_command('cifar10', data_dir)} again")
    tarball = data_dir / TARBALL
    verify = checksum_verifier(md5, "md5")
    if tarball.is_file():
        log(f"cifar10: verifying the existing {tarball}")
        verify(tarball)
    else:
        download(urls, tarball, verify=verify, log=log)
    log(f"cifar10: extracting {tarball}")
    tmp = extract_tar(tarball, data_dir)
    try:
        if not all((tmp / FOLDER / f).is_file() for f in FILES):
            raise UnsafeFileError(f"{tarball}: the archive lacks {FOLDER}/ with {', '.join(FILES)}; "
                                  "it is not the official CIFAR-10 python tarball: delete it")
        load(tmp, strict=False)  # every file well-formed (raises otherwise)
        tmp.joinpath(FOLDER).rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"cifar10: ready in {target}")
    return target
