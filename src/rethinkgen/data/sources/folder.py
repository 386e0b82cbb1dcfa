"""Images in class folders — torchvision's ``ImageFolder`` layout — as a :class:`Dataset`.

::

    ROOT/train/<class>/<image>    training images, one folder per class (any depth below it)
    ROOT/val/<class>/<image>      test images (or ROOT/test/...; the option test_split picks one
                                  when both exist)

The classes are the sorted names of the training class folders (as ``ImageFolder`` numbers them); a
test folder may lack some of them but not add any. Files with torchvision's image extensions are read
(others, and hidden files, are skipped and counted); every image is decoded, converted to RGB or
grayscale and brought to one stated size by :mod:`~rethinkgen.data.sources.images`, then scaled to
[0, 1] (8-bit values / 255).

Decoding a tree is slow, so the decoded uint8 arrays are cached as one tensor file,
``DATA_DIR/folder-cache/<root name>-<key>.pt``, whose key hashes every image's relative path, size and
modification time, the options, and the Pillow and torchvision versions: adding, removing or
touching a file, or changing an option, makes a new entry. The cache is read with
``torch.load(weights_only=True)`` (no code can run) and written atomically; an unreadable or
unwritable cache is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rethinkgen.data.dataset import Dataset
from rethinkgen.data.sources.images import GRAY_MODES, IMG_EXTENSIONS, ImageFit, decode_many, is_image_file, parse_size
from rethinkgen.data.sources.messages import option
from rethinkgen.errors import ConfigError, DatasetNotFoundError, UnsafeFileError

__all__ = ["CACHE_SUBDIR", "TEST_SPLITS", "TreeSplit", "find_splits", "layout", "load", "scan_split", "tree_key"]

TRAIN_SPLIT = "train"
TEST_SPLITS = ("val", "test")
CACHE_SUBDIR = "folder-cache"
CACHE_FORMAT = 2  # bump when what the cache holds changes (2: 8-bit values in 16-bit files kept)


@dataclass(frozen=True)
class TreeSplit:
    """The images of one split: paths (sorted) and their class names; files skipped for their extension."""

    root: Path
    files: tuple[Path, ...]
    class_of: tuple[str, ...]  # class folder name of each file
    classes: tuple[str, ...]  # sorted class folder names (holding at least one image)
    skipped: int  # non-image files


def _path_hint() -> str:
    return option("path", "ROOT", placeholder=True)


def _walk(class_dir: Path, seen: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(folder, file names) below ``class_dir``, symlinks followed, sorted as ImageFolder sorts ``os.walk``.

    A folder reached a second time (through a link, e.g. one pointing to a parent) is refused: followed
    again, its images would be counted twice, or up to the OS's link-depth limit in a loop."""
    found = []
    for folder, dirs, names in os.walk(class_dir, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            raise ConfigError(f"folder: {folder} is the folder {seen[real]} again (through a symbolic link): its "
                              "images would be counted twice; remove the link")
        seen[real] = Path(folder)
        dirs.sort()
        found.append((folder, names))
    return sorted(found)


def scan_split(split_dir: Path) -> TreeSplit:
    """The class folders of ``split_dir`` and their image files (recursively, symlinks followed, sorted).

    Raises ConfigError for a folder reached twice through links, and for a link to an image that does
    not exist (both named)."""
    class_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[Path] = []
    class_of: list[str] = []
    skipped = 0
    seen: dict[str, Path] = {}
    for d in class_dirs:
        for folder, names in _walk(d, seen):  # the order ImageFolder uses
            for name in sorted(names):
                path = Path(folder) / name
                if is_image_file(name):
                    if not path.is_file():
                        what = f"a link to {os.readlink(path)}, which does not exist" if path.is_symlink() else \
                            "not a regular file"
                        raise ConfigError(f"folder: {path} is {what}; remove it or restore the image")
                    files.append(path)
                    class_of.append(d.name)
                elif not name.startswith("."):
                    skipped += 1
    present = tuple(sorted(set(class_of)))
    return TreeSplit(split_dir, tuple(files), tuple(class_of), present, skipped)


def find_splits(root: Path, test_split: str | None) -> tuple[Path, Path]:
    """(train folder, test folder) of ``root``, with errors that say what the layout must be."""
    if not root.is_dir():
        raise DatasetNotFoundError(f"folder: {root} is not a folder (looked at {root.resolve()}); give the root "
                                   f"of an image tree: {_path_hint()} holding train/<class>/... and val/<class>/...")
    train = root / TRAIN_SPLIT
    if not train.is_dir():
        subdirs = sorted(d.name for d in root.iterdir() if d.is_dir())
        hint = (f"; it holds {', '.join(subdirs[:5])}{', ...' if len(subdirs) > 5 else ''}: if those are class "
                "folders, move them into ROOT/train/ and the test images into ROOT/val/<class>/") if subdirs else ""
        raise DatasetNotFoundError(f"folder: no {train} folder{hint}. The layout is ROOT/train/<class>/<image> and "
                                   "ROOT/val/<class>/<image> (or ROOT/test/...)")
    if test_split is not None:
        if str(test_split) == TRAIN_SPLIT:
            raise ConfigError(f"folder: test_split cannot be the training folder; use one of {', '.join(TEST_SPLITS)}")
        if not (root / str(test_split)).is_dir():
            raise DatasetNotFoundError(f"folder: test_split={test_split!r} but there is no folder "
                                       f"{root / str(test_split)}")
        return train, root / str(test_split)
    present = [s for s in TEST_SPLITS if (root / s).is_dir()]
    if len(present) > 1:
        raise ConfigError(f"folder: {root} has both val/ and test/; say which one is the test set: "
                          f"{option('test_split', 'val')} or {option('test_split', 'test')}")
    if not present:
        others = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name != TRAIN_SPLIT
                        and not d.name.startswith("."))
        hint = f"; if {others[0]}/ holds them, say so: {option('test_split', others[0])}" if others else ""
        raise DatasetNotFoundError(f"folder: {root} has train/ but no val/ or test/ folder with the test images "
                                   f"(ROOT/val/<class>/<image>); rethinkgen measures test accuracy on it{hint}")
    return train, root / present[0]


def _check_classes(train: TreeSplit, test: TreeSplit) -> None:
    if not train.files:
        raise ConfigError(f"folder: {train.root} holds no images in class folders (<class>/<image> with one of "
                          f"the extensions {', '.join(IMG_EXTENSIONS)})")
    empty = sorted(d.name for d in train.root.iterdir() if d.is_dir() and not d.name.startswith(".")
                   and d.name not in train.classes)
    if empty:
        raise ConfigError(f"folder: training class folder(s) {', '.join(empty)} in {train.root} hold no images; "
                          "a class without training images cannot be learned: remove the folder(s)")
    if len(train.classes) < 2:
        raise ConfigError(f"folder: {train.root} has a single class ({train.classes[0]}); a classification set "
                          "needs at least 2 class folders")
    extra = sorted(set(test.classes) - set(train.classes))
    if extra:
        raise ConfigError(f"folder: test class folder(s) {', '.join(extra)} in {test.root} have no training folder "
                          f"in {train.root}; a class never seen in training cannot be learned: remove them or add "
                          "their training images")
    if not test.files:
        raise ConfigError(f"folder: {test.root} holds no images in class folders")


def tree_key(splits: list[TreeSplit], options: dict[str, Any]) -> str:
    """sha256 of every image's (relative path, size, mtime, ctime), the options and the decoder versions.
    The ctime (set by the system on every write, never by ``cp -p`` or ``touch``) sees a file replaced
    by another version with the same size and modification time."""
    import PIL
    import torchvision

    h = hashlib.sha256()
    h.update(json.dumps({"format": CACHE_FORMAT, "pillow": PIL.__version__, "torchvision": torchvision.__version__,
                         **options}, sort_keys=True, default=str).encode())
    for split in splits:
        for path in split.files:
            st = path.stat()
            h.update(f"{path.relative_to(split.root.parent)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n".encode())
    return h.hexdigest()


def _survey(files: tuple[Path, ...]) -> tuple[Counter, Counter]:
    """(Counter of PIL modes, Counter of (width, height)) from the files' headers (no pixels decoded)."""
    from PIL import Image

    modes: Counter = Counter()
    sizes: Counter = Counter()
    for path in files:
        try:
            with Image.open(path) as img:
                modes[img.mode] += 1
                sizes[img.size] += 1
        except Exception as e:  # noqa: BLE001 - any decoder error names the file
            raise UnsafeFileError(f"{path}: cannot read this image ({type(e).__name__}: {e}); remove or replace "
                                  "the file") from e
    return modes, sizes


def _channels(option_value: Any, modes: Counter) -> int:
    if option_value in (None, "auto"):
        return 1 if modes and all(m in GRAY_MODES for m in modes) else 3
    text = str(option_value).lower()
    if text in ("1", "gray", "grey", "l"):
        return 1
    if text in ("3", "rgb"):
        return 3
    raise ConfigError(f"folder: channels must be auto, rgb (3) or gray (1), got {option_value!r}")


def _size(size: Any, sizes: Counter, fit: str) -> tuple[int, int] | None:
    parsed = parse_size(size, "folder: size")
    if parsed is None and len(sizes) > 1:
        (w0, h0), (w1, h1) = min(sizes, key=lambda s: s[0] * s[1]), max(sizes, key=lambda s: s[0] * s[1])
        raise ConfigError(f"folder: the images have {len(sizes)} different sizes (from {h0}x{w0} to {h1}x{w1}, "
                          f"height x width); state the size they are brought to: {option('size', 32)} (S x S; "
                          f"fit={fit}) or {option('size', '32x48')} (H x W)")
    return parsed


def _conversions(modes: Counter, channels: int) -> str:
    target = "RGB" if channels == 3 else "grayscale (L)"
    changed = {m: n for m, n in sorted(modes.items()) if m != ("RGB" if channels == 3 else "L")}
    if not changed:
        return f"all {sum(modes.values())} images already {target}"
    notes = {"RGBA": " (alpha dropped)", "LA": " (alpha dropped)", "P": " (palette expanded)",
             **{m: " (16-bit: high byte kept)" for m in ("I;16", "I;16B", "I;16L", "I;16N")},
             "I": " (high byte of 16 bits kept)",
             "L": " (grayscale, replicated to 3 channels)" if channels == 3 else "",
             "RGB": " (luminance, ITU-R 601-2)" if channels == 1 else ""}
    return "; ".join(f"{n} {m}{notes.get(m, '')}" for m, n in changed.items()) + f" -> {target}"


def _read_cache(path: Path) -> dict[str, Any] | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # absent, truncated or not ours: decode again
        return None
    ok = isinstance(blob, dict) and blob.get("format") == CACHE_FORMAT and all(
        isinstance(blob.get(k), torch.Tensor) for k in ("x_train", "y_train", "x_test", "y_test"))
    return blob if ok else None


def _write_cache(path: Path, blob: dict[str, Any]) -> bool:
    """Write ``blob`` to a new file beside ``path``, then rename it into place (readers never see half a
    file). The file is created with mode 0o666 less the umask, as any file the user writes (mkstemp's
    0o600 would hide a cache in a shared data folder from the other users)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
        os.replace(tmp, path)
        return True
    except (OSError, RuntimeError):  # torch.save reports a full disk as RuntimeError
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        return False


def _decode(train: TreeSplit, test: TreeSplit, size: Any, fit: str, channels: Any,
            workers: int | None) -> dict[str, Any]:
    """Survey the headers, decide size and channels, decode everything: the blob the cache holds."""
    modes, sizes = _survey(train.files + test.files)
    how = ImageFit(_size(size, sizes, fit), fit, _channels(channels, modes))
    index = {c: i for i, c in enumerate(train.classes)}
    (w, h), _ = sizes.most_common(1)[0]
    sixteen_bit: dict[str, Path] = {}  # one rule for 16-bit files across both splits
    return {
        "format": CACHE_FORMAT,
        "x_train": torch.from_numpy(decode_many(train.files, how, workers, sixteen_bit)),
        "y_train": torch.tensor([index[c] for c in train.class_of], dtype=torch.int64),
        "x_test": torch.from_numpy(decode_many(test.files, how, workers, sixteen_bit)),
        "y_test": torch.tensor([index[c] for c in test.class_of], dtype=torch.int64),
        "info": {"image_modes": dict(modes), "conversion": _conversions(modes, how.channels),
                 "distinct_sizes": len(sizes), "most_common_size": [h, w],
                 "size": list(how.size) if how.size else None, "channels": how.channels},
    }


def _tree(data_dir: Path | None, path: str | Path | None, size: Any, fit: str, channels: Any,
          test_split: str | None) -> tuple[Path, TreeSplit, TreeSplit]:
    """Check the options, find the root and its splits, scan and check the classes (no image is read)."""
    if path is None:
        raise ConfigError(f"folder: say which image tree to load: {_path_hint()} (ROOT/train/<class>/<image>, "
                          "ROOT/val/<class>/<image>)")
    ImageFit(parse_size(size, "folder: size"), fit)
    _channels(channels, Counter())
    root = Path(path).expanduser()
    if not root.exists() and not root.is_absolute() and data_dir is not None and (Path(data_dir) / root).is_dir():
        root = Path(data_dir) / root
    train_dir, test_dir = find_splits(root, test_split)
    train, test = scan_split(train_dir), scan_split(test_dir)
    _check_classes(train, test)
    return root, train, test


def layout(data_dir: Path | None, *, path: str | Path | None = None, size: Any = None, fit: str = "resize_crop",
           channels: str | int = "auto", test_split: str | None = None, **_options: object) -> str:
    """"image", after the checks that need no decoding (so a bad tree fails before any run starts)."""
    _tree(data_dir, path, size, fit, channels, test_split)
    return "image"


def load(data_dir: Path | None, seed: int = 0, *, path: str | Path | None = None, size: Any = None,
         fit: str = "resize_crop", channels: str | int = "auto", test_split: str | None = None,
         cache: bool = True, workers: int | None = None) -> Dataset:
    """An image tree as a :class:`Dataset`: x (N, C, H, W) float32 in [0, 1], y int64 (``seed`` is unused).

    Parameters
    ----------
    path : the tree's root (ROOT/train/<class>/..., ROOT/val|test/<class>/...); relative paths are also
        looked for under ``data_dir``.
    size : S or "HxW" (or [H, W]): the size every image is brought to; None keeps the images' own size,
        which must then be the same for all.
    fit : "resize_crop" (cover H x W keeping the aspect ratio, centre crop), "resize" (stretch) or
        "crop" (centre crop, no resize).
    channels : "auto" (grayscale if every image is, else RGB), "rgb" / 3 or "gray" / 1.
    test_split : "val" or "test"; None: the one that exists.
    cache : read/write the decoded tensor file under ``data_dir/folder-cache``.
    workers : decoding threads (default min(8, CPUs)).

    Raises
    ------
    DatasetNotFoundError
        no such tree, or no train/ or test folder.
    ConfigError
        layout, classes or sizes; the message names the option that fixes it.
    UnsafeFileError
        a file that cannot be decoded (named).
    """
    root, train, test = _tree(data_dir, path, size, fit, channels, test_split)
    test_dir = test.root
    key = tree_key([train, test], {"size": parse_size(size), "fit": fit, "channels": str(channels).lower()})
    cache_file = (Path(data_dir) / CACHE_SUBDIR / f"{root.resolve().name}-{key[:16]}.pt") \
        if cache and data_dir is not None else None
    blob = _read_cache(cache_file) if cache_file is not None and cache_file.is_file() else None
    from_cache = blob is not None
    if blob is None:
        blob = _decode(train, test, size, fit, channels, workers)
        if cache_file is not None:
            _write_cache(cache_file, blob)
    info = blob["info"]
    c, out_h, out_w = blob["x_train"].shape[1:]
    h, w = info["most_common_size"]
    resized = f"brought to {out_h}x{out_w} by {fit}" if info["size"] is not None else "kept at their size"
    meta = {"source": "folder", "path": str(root.resolve()), "test_split": test_dir.name,
            "classes": list(train.classes), "class_mapping": None,
            "layout_found": f"image folders: {info['distinct_sizes']} distinct size(s) (most common {h}x{w}), "
                            f"{resized}; {c} channel(s)",
            "scaling": "decoded 8-bit pixels divided by 255 -> [0, 1]", **info,
            "skipped_files": train.skipped + test.skipped, "fit": fit,
            "cache": str(cache_file) if cache_file is not None else None, "from_cache": from_cache, "tree_key": key}
    return Dataset(
        name="folder",
        x_train=_to_float(blob["x_train"]), y_train=blob["y_train"],
        x_test=_to_float(blob["x_test"]), y_test=blob["y_test"],
        num_classes=len(train.classes), layout="image", meta=meta,
    )


def _to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1]."""
    return x.to(torch.float32).div_(255.0)
