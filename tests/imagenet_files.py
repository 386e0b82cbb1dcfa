"""Small ILSVRC-2012 look-alikes for tests, in both layouts rethinkgen reads (tests/test_imagenet_*.py).

- :func:`plain_tree`: ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``;
- :func:`torchvision_root`: the three archives torchvision's ``ImageNet`` parses — a devkit
  ``.tar.gz`` with ``data/meta.mat`` (a MATLAB struct array ``synsets`` with the real field order,
  including a non-leaf synset that must be skipped) and ``data/ILSVRC2012_validation_ground_truth.txt``,
  a training ``.tar`` of per-class ``.tar`` files, and a flat validation ``.tar`` — plus their MD5 sums
  (tests substitute them for the real ones in ``torchvision.datasets.imagenet.ARCHIVE_META``).

Images are small JPEGs of mixed sizes whose colour depends on the class; a few are grayscale, one is
CMYK and one is a PNG with a ``.JPEG`` name, as in the real set.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import numpy as np

WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361")  # the first four ILSVRC-2012 classes
NAMES = ("tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark", "tiger shark")
SIZES = ((40, 52), (64, 48), (33, 70), (50, 50), (90, 60))  # (H, W), mixed on purpose


def image_bytes(cls: int, i: int, kind: str = "RGB") -> bytes:
    """A JPEG (or PNG for kind="PNG") of a size from SIZES, coloured by class, with a little noise."""
    from PIL import Image

    h, w = SIZES[(cls + i) % len(SIZES)]
    gen = np.random.default_rng(1000 * cls + i)
    base = np.array([60 * cls, 255 - 60 * cls, 40 + 50 * (i % 3)], dtype=np.int64)
    pixels = np.clip(base + gen.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels)
    buf = io.BytesIO()
    if kind == "PNG":
        img.save(buf, "PNG")
    else:
        (img.convert(kind) if kind != "RGB" else img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _kind(cls: int, i: int) -> str:
    if (cls, i) == (0, 1):
        return "L"
    if (cls, i) == (1, 2):
        return "CMYK"
    if (cls, i) == (2, 0):
        return "PNG"  # a PNG named .JPEG (ImageNet has one: n02105855_2933.JPEG)
    return "RGB"


def plain_tree(root: Path, n_train: int = 6, n_val: int = 3, wnids=WNIDS) -> Path:
    """``root/train/<wnid>/<wnid>_<i>.JPEG`` (n_train per class) and ``root/val/<wnid>/...`` (n_val)."""
    for c, wnid in enumerate(wnids):
        for split, n, offset in (("train", n_train, 0), ("val", n_val, 100)):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / f"{wnid}_{offset + i}.JPEG").write_bytes(image_bytes(c, offset + i, _kind(c, i)))
    return root


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _meta_mat(wnids) -> bytes:
    """devkit data/meta.mat: leaf synsets 1..K (our classes), then one non-leaf synset (skipped)."""
    import scipy.io as sio

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    rows = [(i + 1, w, NAMES[i % len(NAMES)], "a fish", 0, np.zeros((0,), dtype=np.uint8), 0, 1300)
            for i, w in enumerate(wnids)]
    rows.append((len(wnids) + 1, "n01440000", "fish", "a group", len(wnids), np.arange(1, len(wnids) + 1), 1, 0))
    synsets = np.empty((len(rows),), dtype=[(f, object) for f in fields])
    for k, row in enumerate(rows):
        synsets[k] = row
    buf = io.BytesIO()
    sio.savemat(buf, {"synsets": synsets})
    return buf.getvalue()


def torchvision_root(root: Path, n_train: int = 6, n_val: int = 3, wnids=WNIDS) -> dict[str, str]:
    """The three ILSVRC-2012 archives in ``root``; returns {"train" | "val" | "devkit": md5 hex}."""
    root.mkdir(parents=True, exist_ok=True)
    gen = np.random.default_rng(7)
    val_labels = [c for c in range(len(wnids)) for _ in range(n_val)]
    gen.shuffle(val_labels)  # validation images in the archive are not ordered by class
    devkit = root / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(devkit, "w:gz") as tar:
        _add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", _meta_mat(wnids))
        truth = "".join(f"{c + 1}\n" for c in val_labels)  # ILSVRC2012_ID per validation image, in order
        _add(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth.encode())
    with tarfile.open(root / "ILSVRC2012_img_train.tar", "w") as tar:
        for c, wnid in enumerate(wnids):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as class_tar:
                for i in range(n_train):
                    _add(class_tar, f"{wnid}_{i}.JPEG", image_bytes(c, i, _kind(c, i)))
            _add(tar, f"{wnid}.tar", inner.getvalue())
    with tarfile.open(root / "ILSVRC2012_img_val.tar", "w") as tar:
        for k, c in enumerate(val_labels):
            _add(tar, f"ILSVRC2012_val_{k + 1:08d}.JPEG", image_bytes(c, 100 + k, "RGB"))
    return {key: hashlib.md5((root / name).read_bytes()).hexdigest()
            for key, name in (("train", "ILSVRC2012_img_train.tar"), ("val", "ILSVRC2012_img_val.tar"),
                              ("devkit", "ILSVRC2012_devkit_t12.tar.gz"))}


def val_labels_of(root: Path, n_val: int = 3, wnids=WNIDS) -> list[int]:
    """The class of each validation image of :func:`torchvision_root`, in file-name order."""
    gen = np.random.default_rng(7)
    labels = [c for c in range(len(wnids)) for _ in range(n_val)]
    gen.shuffle(labels)
    del root
    return labels


def patch_md5(monkeypatch, md5: dict[str, str]) -> None:
    """Make torchvision accept the test archives: their MD5 sums instead of the real ones."""
    import torchvision.datasets.imagenet as tv_imagenet

    meta = {k: (name, md5[k]) for k, (name, _) in tv_imagenet.ARCHIVE_META.items()}
    monkeypatch.setattr(tv_imagenet, "ARCHIVE_META", meta)


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))
