"""Image sets in the IDX format of MNIST (LeCun et al.), shared by ``mnist`` and ``fashion_mnist``.

IDX is a big-endian header ``00 00 <type> <ndim>`` (magic 0x00000803 for unsigned-byte images with 3
dimensions, 0x00000801 for unsigned-byte labels with 1), one big-endian uint32 per dimension, then the
bytes. A set is four files — ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` — each plain or gzip-compressed (recognised by
its content, not its name). An :class:`IdxSet` says where a set is looked for, its official checksums
(SHA-256 of the *uncompressed* files: recompressing, as Debian's packages do, keeps them valid), its
download mirrors and its class names.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rethinkgen.data.dataset import Dataset
from rethinkgen.data.sources.download import Log, checksum_verifier, download, fetch_command, stderr_log
from rethinkgen.errors import DatasetNotFoundError, UnsafeFileError

FILES = {  # role -> standard file name (without .gz)
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MAGIC_IMAGES = 0x00000803  # unsigned byte, 3 dimensions (n, rows, cols)
MAGIC_LABELS = 0x00000801  # unsigned byte, 1 dimension (n,)
SIDE = 28
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class IdxSet:
    """One dataset in the four-file IDX layout."""

    name: str  # registry name, e.g. "fashion_mnist"
    title: str  # for messages, e.g. "Fashion-MNIST"
    subdirs: tuple[str, ...]  # looked at under a data folder, after the folder itself
    sha256: dict[str, str]  # standard file name -> SHA-256 of its uncompressed content
    mirrors: tuple[str, ...]  # URL prefixes, tried in order, each holding the four .gz files
    class_names: tuple[str, ...]
    fetch_subdir: str  # where `data fetch` puts the files, under the data folder
    system_dirs: tuple[str, ...] = ()  # absolute folders also looked at (e.g. a distribution's package)


def read_bytes(path: Path | str) -> bytes:
    """The file's content, decompressed if it is gzip (recognised by its first two bytes)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; truncated -> EOFError
        raise UnsafeFileError(f"{path}: broken gzip data ({e}); delete it and fetch the dataset again") from e


def parse_idx(data: bytes, expected_magic: int, path: Path | str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a uint8 array of the shape its header declares, checking magic and size."""
    if len(data) < 4:
        raise UnsafeFileError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise UnsafeFileError(f"{path}: IDX magic number is {magic:#010x}, expected {expected_magic:#010x} "
                              f"({'images' if expected_magic == MAGIC_IMAGES else 'labels'}); "
                              "is it the right file?")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UnsafeFileError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "too long"
        raise UnsafeFileError(f"{path}: {state}: its header declares shape {dims} ({expected} bytes) but it "
                              f"holds {len(data)} bytes; delete it and fetch the dataset again")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def candidate_dirs(spec: IdxSet, data_dir: Path) -> list[Path]:
    """Folders looked at, in order: ``data_dir``, its ``subdirs``, then the ``system_dirs``."""
    dirs = [data_dir, *(data_dir / s for s in spec.subdirs), *(Path(s) for s in spec.system_dirs)]
    return list(dict.fromkeys(dirs))


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_files(spec: IdxSet, data_dir: Path) -> dict[str, Path]:
    """role -> path of the four IDX files, all from the first folder that holds all four."""
    dirs = candidate_dirs(spec, data_dir)
    for folder in dirs:
        found = {role: _find_file(folder, name) for role, name in FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    names = ", ".join(f"{n}[.gz]" for n in FILES.values())
    raise DatasetNotFoundError(
        f"{spec.name}: no complete set of {spec.title} IDX files ({names}) in {', '.join(str(d) for d in dirs)}. "
        f"Fetch them with: {fetch_command(spec.name, data_dir)}")


def _read_split(spec: IdxSet, images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    raw_x, raw_y = read_bytes(images_path), read_bytes(labels_path)
    x = parse_idx(raw_x, MAGIC_IMAGES, images_path)
    y = parse_idx(raw_y, MAGIC_LABELS, labels_path)
    if x.shape[1:] != (SIDE, SIDE):
        raise UnsafeFileError(f"{images_path}: images are {x.shape[1:]}, expected ({SIDE}, {SIDE})")
    if x.shape[0] != y.shape[0]:
        raise UnsafeFileError(f"{images_path} holds {x.shape[0]} images but {labels_path} holds "
                              f"{y.shape[0]} labels")
    k = len(spec.class_names)
    if y.size and y.max() >= k:
        raise UnsafeFileError(f"{labels_path}: labels must lie in 0..{k - 1}, found max {y.max()}")
    digests = {images_path.name: hashlib.sha256(raw_x).hexdigest(),
               labels_path.name: hashlib.sha256(raw_y).hexdigest()}
    return x, y, digests


def load(spec: IdxSet, data_dir: Path) -> Dataset:
    """The set as a :class:`Dataset`: x (N, 1, 28, 28) float32 in [0, 1] (uint8 / 255), y int64.

    ``meta["official"]`` says whether all four files match the official SHA-256 sums (files in the same
    format with other content load too, and say so).
    """
    files = find_files(spec, Path(data_dir))
    x_train, y_train, d1 = _read_split(spec, files["train_images"], files["train_labels"])
    x_test, y_test, d2 = _read_split(spec, files["test_images"], files["test_labels"])
    digests = {**d1, **d2}
    official = all(digests.get(n + ".gz", digests.get(n)) == h for n, h in spec.sha256.items())
    return Dataset(
        name=spec.name,
        x_train=_to_images(x_train), y_train=torch.from_numpy(y_train.astype(np.int64)),
        x_test=_to_images(x_test), y_test=torch.from_numpy(y_test.astype(np.int64)),
        num_classes=len(spec.class_names), layout="image",
        meta={"source": spec.name, "path": str(files["train_images"].parent.resolve()), "sha256": digests,
              "official": official, "layout_found": "IDX (N, 28, 28) uint8 -> (N, 1, 28, 28)",
              "scaling": "uint8 0..255 divided by 255 -> [0, 1]", "classes": list(spec.class_names),
              "class_mapping": None},
    )


def _to_images(x: np.ndarray) -> torch.Tensor:
    """uint8 (n, 28, 28) -> float32 (n, 1, 28, 28) in [0, 1]."""
    out = x.astype(np.float32)
    out /= 255.0
    return torch.from_numpy(out).unsqueeze(1)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def verify_file(spec: IdxSet, path: Path, name: str) -> None:
    """Raise UnsafeFileError unless ``path`` holds the official content of standard file ``name``."""
    checksum_verifier(spec.sha256[name], gunzip=_is_gzip(path))(path)


def fetch(spec: IdxSet, data_dir: Path, *, mirrors: tuple[str, ...] | list[str] | None = None,
          log: Log | None = None) -> Path:
    """Make the official files available and verified; return the folder holding them.

    A complete set already in one of the folders :func:`find_files` looks at is verified (SHA-256 of each
    file's decompressed content) and used; otherwise the four ``.gz`` files go to
    ``data_dir/<fetch_subdir>``: each file already there that verifies is kept, each missing one is
    downloaded from the first mirror that delivers it intact. Nothing is reported ready unverified.
    """
    log = log or stderr_log
    mirrors = spec.mirrors if mirrors is None else tuple(mirrors)
    try:
        found = find_files(spec, Path(data_dir))
    except DatasetNotFoundError:
        found = None
    if found is not None:
        for role, path in found.items():
            verify_file(spec, path, FILES[role])
        folder = found["train_images"].parent
        log(f"{spec.name}: the {len(found)} files in {folder} match the official SHA-256 sums")
        log(f"{spec.name}: ready in {folder}")
        return folder
    folder = Path(data_dir) / spec.fetch_subdir
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        existing = _find_file(folder, name)
        if existing is not None:
            verify_file(spec, existing, name)
            log(f"{spec.name}: {existing} verified")
            continue
        urls = [m.rstrip("/") + f"/{name}.gz" for m in mirrors]
        download(urls, folder / f"{name}.gz", verify=checksum_verifier(spec.sha256[name], gunzip=True), log=log)
    log(f"{spec.name}: ready in {folder}")
    return folder
