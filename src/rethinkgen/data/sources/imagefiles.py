"""Image files in class folders (torchvision's ``ImageFolder`` layout): finding them and decoding one.

The piece every image-tree source shares (the in-memory ``folder`` source and the streamed
``imagenet`` source), kept in one place:

- :func:`scan_split` — the class folders of a split (``split_dir/<class>/...``, any depth below the
  class folder, symlinks followed) and their image files, in ``ImageFolder``'s order: classes are the
  sorted folder names, files sorted within a class (``torchvision.datasets.folder.find_classes`` and
  ``make_dataset``, which this calls). Hidden files are skipped, as are files without one of
  torchvision's image extensions (:data:`IMG_EXTENSIONS`; counted in ``skipped``).
- :func:`decode_rgb` — one file (or its bytes) to a ``(3, H, W)`` uint8 tensor with Pillow (its wheels
  bundle libjpeg-turbo), converted as torchvision's ``pil_loader`` converts: ``convert("RGB")`` —
  grayscale replicated, alpha dropped, palettes expanded, CMYK converted — after 16-bit samples are
  reduced to their high byte (instead of clipped). The format is read from the file's content, so
  ImageNet's PNG named ``.JPEG`` decodes too. (``torchvision.io``'s decoders are deprecated since
  torchvision 0.29.) An undecodable file raises UnsafeFileError naming it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from rethinkgen.errors import ConfigError, UnsafeFileError

__all__ = ["IMG_EXTENSIONS", "TreeSplit", "decode_rgb", "is_image_file", "scan_split"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has one of :data:`IMG_EXTENSIONS` (case-insensitive) and is not hidden."""
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


@dataclass(frozen=True)
class TreeSplit:
    """The images of one split of an ImageFolder tree, in ``ImageFolder``'s order."""

    root: Path  # the split folder (``ROOT/train``)
    files: tuple[str, ...]  # file paths (strings: a million Path objects would cost half a GB)
    class_of: tuple[str, ...]  # class folder name of each file
    classes: tuple[str, ...]  # sorted class folder names (each holding at least one image)
    skipped: int  # files skipped for their extension (hidden files are not counted)


def scan_split(split_dir: str | os.PathLike, allow_empty_classes: bool = False) -> TreeSplit:
    """The class folders of ``split_dir`` and their image files (see the module docstring).

    Raises ConfigError when ``split_dir`` has no class folder, or (unless ``allow_empty_classes``) when a
    class folder holds no image: a class without images cannot be learned, and would shift the class
    indices of every later class. Empty class folders are dropped from ``classes`` when allowed.
    """
    from torchvision.datasets.folder import find_classes, make_dataset

    root = Path(split_dir)
    try:
        classes, _ = find_classes(root)
    except FileNotFoundError:
        raise ConfigError(f"{root} holds no class folders: an image tree is ROOT/<split>/<class>/<image>") from None
    classes = [c for c in classes if not c.startswith(".")]
    skipped = 0

    def valid(path: str) -> bool:
        nonlocal skipped
        if is_image_file(path):
            return True
        skipped += not os.path.basename(path).startswith(".")
        return False

    try:
        samples = make_dataset(root, {c: i for i, c in enumerate(classes)}, is_valid_file=valid,
                               allow_empty=allow_empty_classes)
    except FileNotFoundError as exc:  # torchvision names the empty classes
        raise ConfigError(f"{root}: {exc} A class folder without images cannot be learned: remove it or "
                          "add its images.") from None
    present = sorted({classes[i] for _, i in samples})
    return TreeSplit(root, tuple(p for p, _ in samples), tuple(classes[i] for _, i in samples), tuple(present),
                     skipped)


def decode_rgb(source: str | os.PathLike | bytes, name: str | None = None) -> torch.Tensor:
    """``source`` (a path, or the file's bytes) decoded to RGB: uint8 (3, H, W) (module docstring).

    The tensor is a channels-last view of Pillow's (H, W, 3) array (no copy; torchvision's uint8 resize
    is fastest on that layout). ``name`` names the file in errors (default: the path). Raises
    UnsafeFileError for a file Pillow cannot decode.
    """
    import io

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    raw = isinstance(source, bytes | bytearray)
    name = name or ("<image bytes>" if raw else os.fspath(source))
    try:
        with Image.open(io.BytesIO(source) if raw else source) as img:
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit grey: the high byte, not a clip
                values = np.asarray(img, dtype=np.int64)
                img = Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8), mode="L")
            rgb = np.array(img.convert("RGB"), dtype=np.uint8)  # (H, W, 3), writable; alpha dropped, grey replicated
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnsafeFileError(f"{name}: cannot decode this image ({type(exc).__name__}: {exc}); remove or "
                              "replace the file") from None
    return torch.from_numpy(rgb).permute(2, 0, 1)
