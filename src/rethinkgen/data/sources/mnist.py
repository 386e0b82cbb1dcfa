"""MNIST from the standard IDX files (gzip-compressed or plain).

MNIST (LeCun & Cortes) is the paper's Section 5 dataset: a Gaussian-kernel interpolant of all 60,000
raw training images reaches 1.2% test error (Zhang et al. 2017, §5). The format and its checks are in
:mod:`~rethinkgen.data.sources.idx`. Files are looked for in ``data_dir``, ``data_dir/mnist`` and
``data_dir/MNIST/raw`` (torchvision's layout).
"""

from __future__ import annotations

from pathlib import Path

from rethinkgen.data.dataset import Dataset
from rethinkgen.data.sources import idx
from rethinkgen.data.sources.download import Log
from rethinkgen.data.sources.idx import FILES, MAGIC_IMAGES, MAGIC_LABELS, parse_idx, read_bytes

__all__ = ["FILES", "MAGIC_IMAGES", "MAGIC_LABELS", "MIRRORS", "SHA256", "SPEC", "fetch", "load",
           "parse_idx", "read_bytes"]

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
SPEC = idx.IdxSet(name="mnist", title="MNIST", subdirs=("mnist", "MNIST/raw"), sha256=SHA256, mirrors=MIRRORS,
                  class_names=tuple(str(d) for d in range(10)), fetch_subdir="mnist")


def load(data_dir: Path, seed: int = 0) -> Dataset:
    """MNIST as a :class:`Dataset`: x (N, 1, 28, 28) float32 in [0, 1], y int64 in 0..9.

    ``meta["official"]`` says whether all four files match the official SHA-256 sums (files in the
    same format but with other content load too). ``seed`` is unused.
    """
    return idx.load(SPEC, Path(data_dir))


def fetch(data_dir: Path, *, mirrors: tuple[str, ...] | list[str] = MIRRORS, log: Log | None = None) -> Path:
    """Verify an existing copy, or download the four ``.gz`` files into ``data_dir/mnist`` (each checked
    against the SHA-256 of its decompressed content); returns the folder holding them."""
    return idx.fetch(SPEC, Path(data_dir), mirrors=mirrors, log=log)
