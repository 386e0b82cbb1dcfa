"""MNIST from the standard IDX files (gzip-compressed or plain).

MNIST (LeCun & Cortes) is the paper's Section 5 dataset: a Gaussian-kernel interpolant of all 60,000
raw training images reaches 1.2% test error (Zhang et al. 2017, §5). The distribution format is IDX:
a big-endian header ``00 00 <type> <ndim>`` (magic 0x00000803 for ubyte images with 3 dimensions,
0x00000801 for ubyte labels with 1), then one big-endian uint32 per dimension, then the bytes.

Files are looked for in ``data_dir``, ``data_dir/mnist`` and ``data_dir/MNIST/raw`` (torchvision's
layout); each may be plain or ``.gz`` (detected from the content, not the name).
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
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
SHA256 = {  # of the *uncompressed* official files
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MAGIC_IMAGES = 0x00000803  # unsigned byte, 3 dimensions (n, rows, cols)
MAGIC_LABELS = 0x00000801  # unsigned byte, 1 dimension (n,)
SIDE = 28
NUM_CLASSES = 10
GZIP_MAGIC = b"\x1f\x8b"


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


def candidate_dirs(data_dir: Path) -> list[Path]:
    return [data_dir, data_dir / "mnist", data_dir / "MNIST" / "raw"]


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_files(data_dir: Path) -> dict[str, Path]:
    """role -> path of the four IDX files, all from the first folder that holds all four."""
    dirs = candidate_dirs(data_dir)
    for folder in dirs:
        found = {role: _find_file(folder, name) for role, name in FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    names = ", ".join(f"{n}[.gz]" for n in FILES.values())
    raise DatasetNotFoundError(
        f"mnist: no complete set of MNIST IDX files ({names}) in {', '.join(str(d) for d in dirs)}. "
        f"Fetch them with: {fetch_command('mnist', data_dir)}")


def _read_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    raw_x, raw_y = read_bytes(images_path), read_bytes(labels_path)
    x = parse_idx(raw_x, MAGIC_IMAGES, images_path)
    y = parse_idx(raw_y, MAGIC_LABELS, labels_path)
    if x.shape[1:] != (SIDE, SIDE):
        raise UnsafeFileError(f"{images_path}: images are {x.shape[1:]}, expected ({SIDE}, {SIDE})")
    if x.shape[0] != y.shape[0]:
        raise UnsafeFileError(f"{images_path} holds {x.shape[0]} images but {labels_path} holds "
                              f"{y.shape[0]} labels")
    if y.size and y.max() >= NUM_CLASSES:
        raise UnsafeFileError(f"{labels_path}: labels must lie in 0..{NUM_CLASSES - 1}, found max {y.max()}")
    digests = {images_path.name: hashlib.sha256(raw_x).hexdigest(),
               labels_path.name: hashlib.sha256(raw_y).hexdigest()}
    return x, y, digests


def load(data_dir: Path, seed: int = 0) -> Dataset:
    """MNIST as a :class:`Dataset`: x (N, 1, 28, 28) float32 in [0, 1], y int64 in 0..9.

    ``meta["official"]`` says whether all four files match the official SHA-256 sums (files in the
    same format but with other content, e.g. Fashion-MNIST, load too). ``seed`` is unused.
    """
    files = find_files(Path(data_dir))
    x_train, y_train, d1 = _read_split(files["train_images"], files["train_labels"])
    x_test, y_test, d2 = _read_split(files["test_images"], files["test_labels"])
    digests = {**d1, **d2}
    official = all(digests.get(n + ".gz", digests.get(n)) == h for n, h in SHA256.items())
    return Dataset(
        name="mnist",
        x_train=_to_images(x_train), y_train=torch.from_numpy(y_train.astype(np.int64)),
        x_test=_to_images(x_test), y_test=torch.from_numpy(y_test.astype(np.int64)),
        num_classes=NUM_CLASSES, layout="image",
        meta={"source": "mnist", "path": str(files["train_images"].parent.resolve()), "sha256": digests,
              "official": official},
    )


def _to_images(x: np.ndarray) -> torch.Tensor:
    """uint8 (n, 28, 28) -> float32 (n, 1, 28, 28) in [0, 1]."""
    out = x.astype(np.float32)
    out /= 255.0
    return torch.from_numpy(out).unsqueeze(1)


def fetch(data_dir: Path, *, mirrors: tuple[str, ...] | list[str] = MIRRORS, log: Log | None = None) -> Path:
    """Download the four ``.gz`` files into ``data_dir/mnist``, each verified by the SHA-256 of its content.

    Files already there (plain or ``.gz``) that verify are kept; each missing one is taken from the
    first mirror that delivers it intact. Returns ``data_dir/mnist``.
    """
    log = log or stderr_log
    folder = Path(data_dir) / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for name, sha in SHA256.items():
        existing = _find_file(folder, name)
        if existing is not None:
            checksum_verifier(sha, gunzip=_is_gzip(existing))(existing)
            log(f"mnist: {existing} verified")
            continue
        urls = [m.rstrip("/") + f"/{name}.gz" for m in mirrors]
        download(urls, folder / f"{name}.gz", verify=checksum_verifier(sha, gunzip=True), log=log)
    log(f"mnist: ready in {folder}")
    return folder


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC
