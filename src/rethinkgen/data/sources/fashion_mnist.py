"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): MNIST's format and sizes with photographs of clothing.

60,000 training and 10,000 test 28×28 grayscale images in 10 classes, in the four IDX files of MNIST
(:mod:`~rethinkgen.data.sources.idx`). A harder real image set than MNIST — an MLP reaches about 89%
test accuracy instead of 98% — and one that can be had where CIFAR-10 cannot: the randomization tests
of the paper (§2, Figure 1) on real images on a CPU.

Looked for in ``data_dir``, ``data_dir/fashion-mnist``, ``data_dir/FashionMNIST/raw`` (torchvision's
layout), then ``/usr/share/datasets/fashion-mnist`` (Debian's package ``dataset-fashion-mnist``).
``rethinkgen data fetch fashion_mnist`` verifies a copy it finds there, or downloads the files from
Zalando's repository (MIT licence), each checked against the SHA-256 of its decompressed content.
"""

from __future__ import annotations

from pathlib import Path

from rethinkgen.data.dataset import Dataset
from rethinkgen.data.sources import idx
from rethinkgen.data.sources.download import Log

__all__ = ["CLASS_NAMES", "MIRRORS", "SHA256", "SPEC", "SYSTEM_DIR", "fetch", "load"]

SHA256 = {  # of the *uncompressed* official files (the published MD5s are of the .gz, which repacks change)
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
MIRRORS = (  # the official locations: the project's repository and its S3 bucket
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"  # Debian: apt-get install dataset-fashion-mnist
SPEC = idx.IdxSet(name="fashion_mnist", title="Fashion-MNIST", subdirs=("fashion-mnist", "FashionMNIST/raw"),
                  sha256=SHA256, mirrors=MIRRORS, class_names=CLASS_NAMES, fetch_subdir="fashion-mnist",
                  system_dirs=(SYSTEM_DIR,))


def load(data_dir: Path, seed: int = 0) -> Dataset:
    """Fashion-MNIST as a :class:`Dataset`: x (N, 1, 28, 28) float32 in [0, 1], y int64 in 0..9
    (``meta["classes"]``: the class names). ``seed`` is unused."""
    return idx.load(SPEC, Path(data_dir))


def fetch(data_dir: Path, *, mirrors: tuple[str, ...] | list[str] = MIRRORS, log: Log | None = None) -> Path:
    """Verify a copy found where :func:`load` looks, or download the four ``.gz`` files into
    ``data_dir/fashion-mnist``; returns the folder holding them."""
    return idx.fetch(SPEC, Path(data_dir), mirrors=mirrors, log=log)
