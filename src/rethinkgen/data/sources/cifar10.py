"""CIFAR-10 from the official python distribution (``cifar-10-batches-py``), unpickled safely.

CIFAR-10 (Krizhevsky, 2009) is the paper's main dataset (Zhang et al. 2017, §2, Figure 1, Table 1):
50,000 training and 10,000 test 32×32 colour images in 10 classes. The official files are Python 2
pickles (protocol 2) of a dict ``{b"batch_label", b"labels", b"data", b"filenames"}`` whose ``data``
is a numpy uint8 array (10000, 3072) — 1024 red, then 1024 green, then 1024 blue values per row, each
plane row-major 32×32 — and whose ``labels`` is a list of 10,000 ints in 0..9.

Python 3 re-saves of these files (any pickle protocol 2-5, str or bytes keys, labels as a list, an
array or numpy scalars) load too. Unpickling can run arbitrary code, so the files are read by
:class:`~rethinkgen.data.sources.safe_pickle.SafeUnpickler`, which only rebuilds numpy arrays and
scalars and refuses any other callable before it is called, naming it. ``data fetch`` verifies
what it finds: the official files by their MD5 sums (as published with torchvision), any other copy
by reading it with that loader.
"""

from __future__ import annotations

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
    file_digest,
    stderr_log,
)
from rethinkgen.data.sources.messages import option
from rethinkgen.data.sources.safe_pickle import SafeUnpickler, safe_unpickle
from rethinkgen.errors import DatasetNotFoundError, UnsafeFileError

__all__ = ["FILES", "FOLDER", "SafeUnpickler", "fetch", "find_folder", "load", "read_batch", "read_meta",
           "safe_unpickle", "verify_folder"]

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
FILE_MD5 = {  # of each official file (the list torchvision checks against)
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}


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
    y = _labels(labels, path)
    if y.shape[0] != data.shape[0]:
        raise UnsafeFileError(f"{path}: {data.shape[0]} images but {y.shape[0]} labels")
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise UnsafeFileError(f"{path}: labels must lie in 0..{NUM_CLASSES - 1}, found {y.min()}..{y.max()}")
    return data, y


def _labels(labels: Any, path: Path) -> np.ndarray:
    """A batch's labels — a list or tuple of ints or numpy integer scalars, or an integer array (n,) or
    (n, 1) — as int64."""
    if isinstance(labels, np.ndarray):
        if labels.ndim == 2 and labels.shape[1] == 1:  # an (n, 1) column, as the npz source accepts
            labels = labels[:, 0]
        ok = labels.dtype.kind in "iu" and labels.ndim == 1
        desc = f"an array of {labels.dtype} {labels.shape}"
    elif isinstance(labels, list | tuple):
        bad = next((v for v in labels if not isinstance(v, int | np.integer) or isinstance(v, bool)), None)
        ok, desc = bad is None, f"a {type(labels).__name__} holding {type(bad).__name__} {bad!r}"
    else:
        ok, desc = False, type(labels).__name__
    if not ok:
        raise UnsafeFileError(f"{path}: 'labels' must be a list (or 1-D array) of integers, found {desc}")
    return np.asarray(labels, dtype=np.int64).reshape(-1)


def read_meta(path: Path | str) -> dict[str, Any]:
    """``batches.meta`` -> {"label_names": [str]*10, "num_cases_per_batch": int, "num_vis": 3072}."""
    path = Path(path)
    d = _str_keys(safe_unpickle(path), path)
    names = d.get("label_names")
    if isinstance(names, np.ndarray) and names.ndim == 1 and names.dtype.kind in "US":
        names = names.tolist()  # a re-save that stored np.array(label_names)
    if not isinstance(names, list | tuple) or len(names) != NUM_CLASSES or \
            not all(isinstance(n, bytes | str) for n in names):
        raise UnsafeFileError(f"{path}: 'label_names' must list {NUM_CLASSES} names (strings), found "
                              f"{type(names).__name__} {names!r:.120}")
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
    test batch of 10,000); without it, batches only have to agree with ``batches.meta`` (smaller
    copies in the same format). ``seed`` is unused: the files are fixed.

    Raises DatasetNotFoundError (files missing: where it looked, the fetch command) and UnsafeFileError
    (a file that is not a well-formed CIFAR-10 batch, or that would run code; the row-count message
    quotes ``batches.meta`` and names the ``strict`` option).
    """
    folder = find_folder(Path(data_dir))
    meta = read_meta(folder / META)
    names = (*TRAIN_BATCHES, TEST_BATCH)
    batches = [read_batch(folder / name) for name in names]
    rows = {name: b[0].shape[0] for name, b in zip(names, batches, strict=True)}
    _check_rows(folder, rows, meta["num_cases_per_batch"], strict)
    x_train = np.concatenate([b[0] for b in batches[:-1]])
    y_train = np.concatenate([b[1] for b in batches[:-1]])
    x_test, y_test = batches[-1]
    return Dataset(
        name="cifar10",
        x_train=_to_images(x_train), y_train=torch.from_numpy(y_train),
        x_test=_to_images(x_test), y_test=torch.from_numpy(y_test),
        num_classes=NUM_CLASSES, layout="image",
        meta={"source": "cifar10", "path": str(folder.resolve()), "label_names": meta["label_names"],
              "strict": strict, "layout_found": "CIFAR-10 rows (N, 3072) uint8: R, G, B planes of 32x32 -> "
              "(N, 3, 32, 32)", "scaling": "uint8 0..255 divided by 255 -> [0, 1]",
              "classes": meta["label_names"], "class_mapping": None},
    )


def _check_rows(folder: Path, rows: dict[str, int], declared: Any, strict: bool) -> None:
    """Every batch must hold the rows ``batches.meta`` declares (and, if ``strict``, the official 10,000)."""
    found = ", ".join(f"{name} {n:,}" for name, n in rows.items())
    says = f"batches.meta says num_cases_per_batch = {declared!r}"
    if strict:
        if all(n == ROWS_PER_BATCH for n in rows.values()):
            return
        raise UnsafeFileError(
            f"{folder}: the official CIFAR-10 has {ROWS_PER_BATCH:,} rows in every batch, these files hold {found} "
            f"({says}). A smaller or re-made copy in the same format loads with {option('strict', False)}; "
            "for the official set, delete the folder and fetch it again")
    if all(n == declared and n > 0 for n in rows.values()):
        return
    raise UnsafeFileError(f"{folder}: {says}, but the batches hold {found}: they do not belong together. "
                          "Delete the folder and fetch the dataset again")


def _to_images(data: np.ndarray) -> torch.Tensor:
    """uint8 (n, 3072) rows (R plane, G plane, B plane) -> float32 (n, 3, 32, 32) in [0, 1]."""
    x = data.astype(np.float32)  # a fresh writable copy (pickled arrays may be read-only)
    x /= 255.0
    return torch.from_numpy(x).reshape(-1, 3, 32, 32)


def verify_folder(folder: Path, log: Log) -> str:
    """Check a complete batches folder before it is called ready; return what was verified.

    The official files are recognised by the MD5 of each file. Any other copy (a Python 3 re-save, a
    subset) is read in full with the safe loader (strict=False): it is ready if it loads, and the
    message says how to load it. Raises UnsafeFileError if it does not load.
    """
    differ = [name for name, md5 in FILE_MD5.items() if file_digest(folder / name, "md5") != md5]
    if not differ:
        return f"the {len(FILE_MD5)} files match the official MD5 sums"
    ds = load(folder, strict=False)  # raises on anything malformed or unsafe
    official_size = ds.n_train == 5 * ROWS_PER_BATCH and ds.n_test == ROWS_PER_BATCH
    hint = "" if official_size else f"; load it with {option('strict', False)}"
    log(f"cifar10: {folder}: not the official files (MD5 differs for {', '.join(differ)})")
    return (f"read in full with the safe loader: {ds.n_train:,} training and {ds.n_test:,} test images in the "
            f"CIFAR-10 format{hint}")


def fetch(data_dir: Path, *, urls: tuple[str, ...] | list[str] = URLS, md5: str = TARBALL_MD5,
          log: Log | None = None) -> Path:
    """Verify an existing copy, or download (or reuse) ``cifar-10-python.tar.gz``, verify and extract it.

    A complete batches folder already in ``data_dir`` or ``data_dir/cifar-10-batches-py`` is verified
    with :func:`verify_folder` and used. Otherwise the tarball in ``data_dir`` (the offline route: copy
    the official tarball there first) or the downloaded one is checked against its MD5, extracted to a
    temporary folder (tarfile's "data" filter refuses unsafe members), the batches are read back with
    the safe loader, and only then is the folder renamed to ``data_dir/cifar-10-batches-py``.
    """
    log = log or stderr_log
    data_dir = Path(data_dir)
    for folder in (data_dir, data_dir / FOLDER):
        if all((folder / f).is_file() for f in FILES):
            what = verify_folder(folder, log)
            log(f"cifar10: {folder} is complete; {what}")
            log(f"cifar10: ready in {folder}")
            return folder
    target = data_dir / FOLDER
    if target.exists():
        raise DatasetNotFoundError(f"cifar10: {target} exists but is incomplete; remove it and run "
                                   f"{fetch_command('cifar10', data_dir)} again")
    data_dir.mkdir(parents=True, exist_ok=True)
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
