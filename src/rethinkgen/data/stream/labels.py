"""The labels a streamed run trains on: drawn once from the seed, stored with the run, never redrawn.

Paper §2.1 and App. A: random labels must be "consistent across epochs" — the paper extended the
ImageNet input pipeline "to feed random labels that are consistent across epochs". A streamed run
therefore draws its training labels exactly once, in the process that builds the run (rank 0 under
DDP; the others receive rank 0's array), with :func:`rethinkgen.data.corruptions.draw_corrupted_labels`
— the function the in-memory corruptions use, so the same true labels, K and seed give the same
corrupted labels either way. The array travels to every DataLoader worker as data (workers read it,
they never draw), is stored with the run as ``labels.npy`` (and inside its checkpoints), and its
sha256 goes into the run summary. Test labels are never corrupted.

The sha256 is that of the ``.npy`` file :func:`save_labels` writes (``sha256sum labels.npy`` shows
it): int64 little-endian values after numpy's format-1.0 header.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rethinkgen.errors import ConfigError
from rethinkgen.files import write_bytes_atomic

__all__ = ["LABELS_FILE", "RunLabels", "draw_labels", "labels_sha256", "load_labels", "save_labels"]

LABELS_FILE = "labels.npy"


def _npy_bytes(labels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(labels, dtype="<i8"), allow_pickle=False)
    return buf.getvalue()


def labels_sha256(labels: np.ndarray) -> str:
    """sha256 hex digest of ``labels`` as :func:`save_labels` writes them (int64 ``.npy``)."""
    return hashlib.sha256(_npy_bytes(labels)).hexdigest()


@dataclass(frozen=True)
class RunLabels:
    """The training labels of one run and how they relate to the true ones."""

    labels: np.ndarray  # (N,) int64: the labels trained on
    true_labels: np.ndarray  # (N,) int64
    corruption: str  # registry name of the run's corruption
    level: float  # p (0 for true labels and input corruptions)

    @property
    def changed(self) -> np.ndarray:
        """(N,) bool: the trained-on label differs from the true one."""
        return self.labels != self.true_labels

    @property
    def realized_noise_rate(self) -> float:
        return float(self.changed.mean()) if self.labels.size else 0.0

    @property
    def sha256(self) -> str:
        return labels_sha256(self.labels)


def draw_labels(true_labels: np.ndarray, num_classes: int, corruption: str, level: float | None, seed: int,
                exclude_true_class: bool = False) -> RunLabels:
    """The labels a run of ``corruption`` trains on (label corruptions redraw, the others keep the true
    ones), from the ``"corruption"`` stream of ``seed`` (paper §2.1; design §2)."""
    from rethinkgen.data.corruptions import CORRUPTIONS, draw_corrupted_labels

    spec = CORRUPTIONS.get(corruption)
    y = np.asarray(true_labels, dtype=np.int64)
    p = float(level or 0.0)
    if spec.target == "labels" and corruption != "true_labels":
        p = 1.0 if corruption == "random_labels" else p
        labels, _ = draw_corrupted_labels(y, num_classes, p, seed, exclude_true_class)
    else:
        labels, p = y.copy(), 0.0
    return RunLabels(labels, y, corruption, p)


def save_labels(folder: str | os.PathLike, labels: np.ndarray) -> tuple[Path, str]:
    """Write ``folder/labels.npy`` atomically; returns (path, sha256 of the file)."""
    data = _npy_bytes(labels)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LABELS_FILE
    write_bytes_atomic(path, data)
    return path, hashlib.sha256(data).hexdigest()


def load_labels(path: str | os.PathLike, sha256: str | None = None) -> np.ndarray:
    """The labels stored at ``path`` (int64, no pickles); with ``sha256``, checked against it
    (ConfigError naming both digests when they differ)."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise ConfigError(f"{path} has sha256 {digest}, but the run recorded {sha256}: the label file was changed "
                          "or belongs to another run; restore it or delete the run's folder to start over")
    return np.load(io.BytesIO(data), allow_pickle=False).astype(np.int64, copy=False)
