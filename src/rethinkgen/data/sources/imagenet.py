"""ILSVRC-2012 (ImageNet, the paper's Table 2 and App. A) from a local copy, as file lists to stream.

ImageNet cannot be downloaded automatically: its licence asks every user to register at
https://image-net.org and download it themselves (the docs say how). rethinkgen reads a copy in
either layout people keep it in, in the folder ``--data-dir`` names (or its ``imagenet/`` subfolder):

1. **torchvision's** ``ImageNet`` **root**: ``ILSVRC2012_devkit_t12.tar.gz`` beside
   ``ILSVRC2012_img_train.tar`` and ``ILSVRC2012_img_val.tar``, or the folders torchvision extracts
   them to (``meta.bin``, ``train/<wnid>/``, ``val/<wnid>/``). ``torchvision.datasets.ImageNet``
   itself does the work: it checks the archives' MD5 sums, reads the devkit's ``meta.mat`` (with
   scipy) and validation ground truth, extracts the archives on first use (hours for the 147 GB
   training archive, as with torchvision) and sorts the validation images into class folders. A
   validation folder extracted by hand (50,000 images, no class folders) is labelled from the devkit
   (``meta.bin``) in sorted file-name order, as torchvision sorts it, without moving any file.
2. **A plain tree**: ``train/<wnid>/<image>`` and ``val/<wnid>/<image>`` (``ImageFolder`` layout), found
   by the ``folder`` source's :func:`~rethinkgen.data.sources.folder.scan_split`.

Classes are the sorted training class folders (the WordNet ids, ``ImageFolder`` order: 1,000 for
ILSVRC-2012); a validation class that has no training folder is refused, and so is a class folder
without images (skipping it would renumber the classes after it). The images are never loaded
into memory: :func:`index` returns the sorted file lists and labels (:class:`ImageIndex`), which the
streamed pipeline (:mod:`rethinkgen.data.stream`) decodes batch by batch. ``n_train`` / ``n_test``
take seeded subsets of the lists, as for every source (stream "data": the first n of a permutation,
sorted).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rethinkgen.data.sources.folder import scan_split
from rethinkgen.data.sources.images import is_image_file
from rethinkgen.errors import ConfigError, DatasetNotFoundError
from rethinkgen.seeding import rng

__all__ = ["ARCHIVES", "ImageIndex", "ImagenetSplits", "HOW_TO_GET", "fetch", "find_root", "index", "load",
           "locate"]

ARCHIVES = {"devkit": "ILSVRC2012_devkit_t12.tar.gz", "train": "ILSVRC2012_img_train.tar",
            "val": "ILSVRC2012_img_val.tar"}  # torchvision.datasets.imagenet.ARCHIVE_META's names
META_FILE = "meta.bin"  # what torchvision writes after parsing the devkit
SUBFOLDER = "imagenet"  # DATA_DIR/imagenet is looked at too
HOW_TO_GET = (
    "ImageNet is not downloaded automatically (its licence asks you to register): sign in at "
    "https://image-net.org, download ILSVRC2012_devkit_t12.tar.gz, ILSVRC2012_img_train.tar and "
    "ILSVRC2012_img_val.tar (ILSVRC 2012, 'Training images (Task 1 & 2)', 'Validation images (all tasks)', "
    "'Development kit (Task 1 & 2)') into one folder and pass it as --data-dir (or put them in "
    "DATA_DIR/imagenet); a tree train/<wnid>/*.JPEG + val/<wnid>/*.JPEG works too. See docs: ImageNet."
)


@dataclass(frozen=True)
class ImageIndex:
    """The images of one split: paths relative to ``root`` and class indices, as compact arrays.

    ``files`` is a numpy bytes array (UTF-8), not a list of strings: a DataLoader worker that touches a
    list of a million Python strings copies it page by page (reference counts), an array it shares.
    """

    root: str  # folder the relative paths start from
    files: np.ndarray  # (N,) bytes, UTF-8 relative paths
    targets: np.ndarray  # (N,) int64 class indices into the training classes

    def __len__(self) -> int:
        return int(self.files.shape[0])

    def sha256(self) -> str:
        """sha256 of the relative paths in order, with their class indices: what a run's labels are matched to."""
        import hashlib

        digest = hashlib.sha256()
        for name in self.files:
            digest.update(name + b"\n")
        digest.update(np.ascontiguousarray(self.targets, dtype="<i8").tobytes())
        return digest.hexdigest()

    def path(self, i: int) -> str:
        """The absolute path of image ``i``."""
        return os.path.join(self.root, self.files[i].decode())

    def subset(self, n: int | None, seed: int, stream: int) -> ImageIndex:
        """The first ``n`` of a permutation from the "data" stream of ``seed`` (sub-stream ``stream``),
        sorted (None or n >= N: all); the same rule as ``sources.take_subset``."""
        if n is None or n >= len(self):
            return self
        keep = np.sort(rng(seed, "data", stream).permutation(len(self))[:n])
        return ImageIndex(self.root, self.files[keep], self.targets[keep])


@dataclass(frozen=True)
class ImagenetSplits:
    """Training and test (ILSVRC-2012 validation) indexes and what they were read from."""

    train: ImageIndex
    test: ImageIndex
    classes: tuple[str, ...]  # WordNet ids, sorted (class i is classes[i])
    class_names: tuple[str, ...]  # the first English name of each class ("" when unknown)
    layout: str  # "torchvision" | "folders"
    meta: dict[str, Any] = field(default_factory=dict)  # provenance (root, layout, counts)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def find_root(data_dir: str | os.PathLike | None) -> Path:
    """The ImageNet root under ``data_dir``: the folder itself if it holds one of the layouts, else its
    ``imagenet/`` subfolder; DatasetNotFoundError (saying where it looked and how to get ImageNet) else."""
    if data_dir is None:
        from rethinkgen.data.sources import default_data_dir

        data_dir = default_data_dir()
    base = Path(data_dir).expanduser()
    for root in (base, base / SUBFOLDER):
        if root.is_dir() and (any((root / a).exists() for a in ARCHIVES.values()) or (root / META_FILE).exists()
                              or (root / "train").is_dir()):
            return root
    raise DatasetNotFoundError(f"imagenet: no ILSVRC-2012 copy in {base} or {base / SUBFOLDER} (looked for "
                               f"{', '.join(ARCHIVES.values())}, {META_FILE} or a train/ folder). {HOW_TO_GET}")


def locate(data_dir: str | os.PathLike | None, *, extracted: bool = False) -> Path:
    """The ImageNet root under ``data_dir`` after the checks that read no image (a sweep makes them before
    it starts): DatasetNotFoundError naming what is missing, else the root.

    ``extracted``: also refuse (ConfigError naming the command that does it) a torchvision root whose
    archives are not extracted yet. A run of several processes asks for it: rank 0 would extract for
    hours while the others wait for it far beyond the process group's timeout."""
    root = find_root(data_dir)
    if extracted:
        pending = [ARCHIVES[s] for s in ("train", "val") if not (root / s).is_dir() and (root / ARCHIVES[s]).is_file()]
        if pending:
            raise ConfigError(f"imagenet: {' and '.join(pending)} in {root} are not extracted yet; torchvision "
                              "extracts them on first use (hours for the training archive), longer than the "
                              "processes of a run wait for each other. Extract them once, in one process: "
                              f"rethinkgen data fetch imagenet --data-dir {root}")
    if _torchvision_layout(root) or not (root / "train").is_dir():
        missing = _missing(root)
        if missing:
            raise DatasetNotFoundError(f"imagenet: {root} is a torchvision ImageNet root but lacks "
                                       f"{'; '.join(missing)}. {HOW_TO_GET}")
    elif not (root / "val").is_dir():
        raise DatasetNotFoundError(f"imagenet: {root} has train/ but no val/ folder: the test set of Table 2 is the "
                                   "ILSVRC-2012 validation set, val/<wnid>/<image>. " + HOW_TO_GET)
    _check_class_folders(root)
    return root


def _missing(root: Path) -> list[str]:
    """What the torchvision layout lacks, as phrases naming the files (empty: complete)."""
    out = []
    if not (root / META_FILE).is_file() and not (root / ARCHIVES["devkit"]).is_file():
        out.append(f"the devkit {ARCHIVES['devkit']} (class names and validation labels)")
    for split in ("train", "val"):
        if not (root / split).is_dir() and not (root / ARCHIVES[split]).is_file():
            out.append(f"{ARCHIVES[split]} (or its extracted {split}/ folder)")
    return out


def _torchvision_layout(root: Path) -> bool:
    return (root / META_FILE).is_file() or (root / ARCHIVES["devkit"]).is_file()


def _flat_val(folder: Path) -> bool:
    """A validation folder extracted by hand: images directly in it, no class folders."""
    with os.scandir(folder) as entries:
        names = [(e.name, e.is_dir()) for e in entries if not e.name.startswith(".")]
    return bool(names) and not any(is_dir for _, is_dir in names) and any(is_image_file(n) for n, _ in names)


def _has_image(folder: Path) -> bool:
    """Whether ``folder`` (or a folder below it, links followed) holds an image file; stops at the first."""
    for _, _, names in os.walk(folder, followlinks=True):
        if any(is_image_file(n) for n in names):
            return True
    return False


def _check_class_folders(root: Path) -> None:
    """ConfigError naming the class folders of ``train/`` and ``val/`` that hold no image, and images lying
    beside the class folders (in no class: ImageFolder would leave them out without a word).

    Such a folder (an interrupted extraction or copy) is not a class of the data: ImageFolder, and so the
    torchvision layout, refuses it, and skipping it would renumber every class after it (999 outputs
    instead of 1,000, and validation images of that class without a training class). Reads folder
    listings only, up to the first image of each class."""
    empty = []
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir() or _flat_val(folder):
            continue
        with os.scandir(folder) as entries:
            listed = [(e.name, e.is_dir()) for e in entries if not e.name.startswith(".")]
        classes = sorted(name for name, is_dir in listed if is_dir)
        loose = sorted(name for name, is_dir in listed if not is_dir and is_image_file(name))
        if classes and loose:
            raise ConfigError(f"imagenet: {folder} holds {len(loose)} image(s) beside its class folders (e.g. "
                              f"{loose[0]}; a sort into {split}/<wnid>/ that did not finish?): they belong to no "
                              f"class and would be left out. Sort them into their class folders (for val/, delete "
                              f"the folder and let torchvision sort {ARCHIVES['val']} with the devkit) or remove them")
        empty += [f"{split}/{c}" for c in classes if not _has_image(folder / c)]
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise ConfigError(f"imagenet: class folder(s) {shown} in {root} hold no images (an interrupted extraction "
                          "or copy?); a class without images would shift every class after it: restore their "
                          "images (from the archives, see docs: ImageNet) or remove the empty folders")


def _torchvision_split(root: Path, split: str) -> tuple[list[tuple[str, int]], list[str], dict[str, tuple]]:
    """(samples, wnids, wnid -> class names) from ``torchvision.datasets.ImageNet`` (extracting on first use)."""
    import torchvision.datasets as tvd
    from torchvision.datasets.imagenet import load_meta_file

    if not (root / split).is_dir():
        import sys

        print(f"imagenet: extracting {ARCHIVES[split]} into {root / split} with torchvision (once; the "
              "training archive takes hours)", file=sys.stderr)
    try:
        ds = tvd.ImageNet(str(root), split=split)
    except RuntimeError as exc:  # torchvision: archive absent or corrupted (MD5)
        raise DatasetNotFoundError(f"imagenet: {exc} Check the file's size and MD5 "
                                   "(torchvision.datasets.imagenet.ARCHIVE_META). " + HOW_TO_GET) from None
    except FileNotFoundError as exc:  # ImageFolder: a class folder of the extracted split without images
        raise ConfigError(f"imagenet: {root / split}: {exc}; restore the images of those classes (from "
                          f"{ARCHIVES[split]}) or remove their empty folders") from None
    return list(ds.samples), list(ds.wnids), dict(load_meta_file(str(root))[0])


def _as_index(root: Path, paths: list[str], targets: list[int] | np.ndarray) -> ImageIndex:
    rel = [os.path.relpath(p, root) for p in paths]
    return ImageIndex(str(root), np.array([r.encode() for r in rel], dtype=bytes),
                      np.asarray(targets, dtype=np.int64))


Read = tuple[ImageIndex, ImageIndex, tuple[str, ...], dict[str, tuple], list[str]]  # + unknown val classes


def _read_torchvision(root: Path) -> Read:
    from torchvision.datasets.imagenet import load_meta_file, parse_devkit_archive

    missing = _missing(root)
    if missing:
        raise DatasetNotFoundError(f"imagenet: {root} is a torchvision ImageNet root but lacks "
                                   f"{'; '.join(missing)}. {HOW_TO_GET}")
    train_samples, wnids, names = _torchvision_split(root, "train")
    index_of = {w: i for i, w in enumerate(wnids)}
    train = _as_index(root, [p for p, _ in train_samples], [t for _, t in train_samples])
    val_dir = root / "val"
    if val_dir.is_dir() and _flat_val(val_dir):  # labels from the devkit, in torchvision's sorted order
        if not (root / META_FILE).is_file():
            parse_devkit_archive(str(root))
        val_wnids = load_meta_file(str(root))[1]
        images = sorted(str(val_dir / n) for n in os.listdir(val_dir) if is_image_file(n))
        if len(images) != len(val_wnids):
            raise ConfigError(f"imagenet: {val_dir} holds {len(images)} images but the devkit labels "
                              f"{len(val_wnids)}; restore the folder from {ARCHIVES['val']} (or delete it and "
                              "let torchvision extract the archive)")
        test = _as_index(root, images, [index_of.get(w, -1) for w in val_wnids])
        val_classes = set(val_wnids)
    else:
        val_samples, val_wnid_list, _ = _torchvision_split(root, "val")
        test = _as_index(root, [p for p, _ in val_samples],
                         [index_of.get(val_wnid_list[t], -1) for _, t in val_samples])
        val_classes = set(val_wnid_list)
    return train, test, tuple(wnids), names, sorted(val_classes - set(wnids))


def _read_folders(root: Path) -> Read:
    val_dir = root / "val"
    if not val_dir.is_dir():
        raise DatasetNotFoundError(f"imagenet: {root} has train/ but no val/ folder: the test set of Table 2 "
                                   "is the ILSVRC-2012 validation set, val/<wnid>/<image>. " + HOW_TO_GET)
    if _flat_val(val_dir):
        raise ConfigError(f"imagenet: {val_dir} holds images but no class folders, so their labels are unknown: "
                          f"put the devkit {ARCHIVES['devkit']} in {root} (torchvision reads the labels from it), "
                          "or sort the images into val/<wnid>/")
    train_split, test_split = scan_split(root / "train"), scan_split(val_dir)  # the folder source's discovery
    wnids = train_split.classes
    index_of = {w: i for i, w in enumerate(wnids)}
    train = _as_index(root, list(train_split.files), [index_of[c] for c in train_split.class_of])
    test = _as_index(root, list(test_split.files), [index_of.get(c, -1) for c in test_split.class_of])
    return train, test, tuple(wnids), {}, sorted(set(test_split.classes) - set(wnids))


def index(data_dir: str | os.PathLike | None, seed: int = 0, *, n_train: int | None = None,
          n_test: int | None = None) -> ImagenetSplits:
    """The training and validation images of the ImageNet copy under ``data_dir`` (module docstring).

    Raises DatasetNotFoundError naming what is missing (and how to get ImageNet), ConfigError for a
    tree that cannot be labelled (a validation class without training images, a flat val/ without the
    devkit).
    """
    root = find_root(data_dir)
    _check_class_folders(root)  # before torchvision reads (or extracts) anything
    layout = "torchvision" if _torchvision_layout(root) or not (root / "train").is_dir() else "folders"
    train, test, wnids, names, unknown = (_read_torchvision if layout == "torchvision" else _read_folders)(root)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ConfigError(f"imagenet: validation images of class(es) {shown} have no training folder "
                          f"in {root / 'train'}; a class never trained on cannot be learned: restore the "
                          "training folders or remove those validation images")
    if len(wnids) < 2 or not len(train) or not len(test):
        raise ConfigError(f"imagenet: {root} has {len(wnids)} class(es), {len(train)} training and {len(test)} "
                          "validation images; it needs at least 2 classes and images in both splits")
    n_available = (len(train), len(test))
    train, test = train.subset(n_train, seed, 0), test.subset(n_test, seed, 1)
    class_names = tuple(names.get(w, ("",))[0] for w in wnids)
    meta = {"source": "imagenet", "root": str(root), "layout": layout, "num_classes": len(wnids),
            "n_train_available": n_available[0], "n_test_available": n_available[1], "subset_seed": seed}
    return ImagenetSplits(train, test, wnids, class_names, layout, meta)


def load(data_dir: Path | None, seed: int = 0, *, n_train: int | None = None, n_test: int | None = None,
         resize: int | None = None) -> Any:
    """Refuses: ImageNet is streamed from disk by the trainer, never loaded into memory as a tensor.

    ``resize``: the side the evaluation transform resizes to before its centre crop (None: the crop
    divided by 0.875, torchvision's 342 for 299, 256 for 224).
    """
    del data_dir, seed, n_train, n_test, resize
    raise ConfigError("imagenet streams its 1.28 million images from disk and cannot be loaded into memory "
                      "as one tensor; train on it with `rethinkgen train --data imagenet ...` or a sweep (the "
                      "trainer reads it with rethinkgen.data.stream)")


def fetch(data_dir: Path, *, log: Callable[[str], None] | None = None) -> Path:
    """Never downloads (the licence asks every user to register): checks the local copy in ``data_dir`` with
    :func:`locate` (its layout; DatasetNotFoundError naming what is missing and how to obtain ImageNet), then
    reads it as a run would (:func:`index`: torchvision checks the archives' MD5 sums and extracts them, once,
    in this process; the class folders are listed) and logs what it found; returns the root. Doing this
    once before a run of several processes spares its ranks the extraction."""
    from rethinkgen.data.sources.download import stderr_log

    root = locate(data_dir)
    splits = index(root)
    layout = "torchvision's ImageNet root" if splits.layout == "torchvision" else "train/ and val/ class folders"
    (log or stderr_log)(f"imagenet: local copy found in {root} ({layout}): {splits.num_classes:,} classes, "
                        f"{len(splits.train):,} training and {len(splits.test):,} validation images; nothing is "
                        "downloaded")
    return root
