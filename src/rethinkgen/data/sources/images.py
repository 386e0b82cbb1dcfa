"""Image files -> uint8 pixel arrays of one stated size: decoding, channel conversion, resize and crop.

The steps of torchvision's ``ImageFolder`` pipeline, reusable one image at a time (a loader that
streams, e.g. for ImageNet) or for a whole list of files in parallel (:func:`decode_many`):

1. :func:`open_image` — decode with Pillow (JPEG, PNG, BMP, PPM/PGM, TIFF, WebP; torchvision's
   ``IMG_EXTENSIONS``), refusing undecodable files by name;
2. :func:`convert_channels` — to 3-channel RGB or 1-channel grayscale. As torchvision's
   ``pil_loader`` does, alpha is dropped (``convert("RGB")``), grayscale is replicated to RGB and a
   palette is expanded. 16-bit grayscale is reduced to 8 bits by its high byte (value // 256) instead
   of clipped — unless no pixel exceeds 255: such a file holds 8-bit values saved in a 16-bit container
   (its high byte would be an all-black image), and its values are kept. One decoded set must not mix
   the two rules (:func:`decode_many` refuses, naming a file of each);
3. :func:`fit_image` — to the stated (H, W): ``"resize_crop"`` resizes so the image covers H×W
   keeping its aspect ratio, then takes the centre H×W (torchvision's ``Resize`` + ``CenterCrop``, the
   usual evaluation transform); ``"resize"`` stretches to H×W; ``"crop"`` takes the centre H×W without
   resizing (zero-padded where the image is smaller, as ``CenterCrop`` pads);
4. :func:`to_array` — (C, H, W) uint8.

Resizing is bilinear with antialiasing (``torchvision.transforms.functional.resize`` on the PIL
image). Pillow releases the GIL while decoding and resizing, so :func:`decode_many` uses threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rethinkgen.data.sources.messages import option
from rethinkgen.errors import ConfigError, UnsafeFileError

__all__ = ["FITS", "IMG_EXTENSIONS", "ImageFit", "convert_channels", "decode_many", "fit_image",
           "is_image_file", "open_image", "parse_size", "sixteen_bit_rule", "to_array"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
FITS = ("resize_crop", "resize", "crop")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N")  # single-channel (plus alpha) modes


def is_image_file(path: Path | str) -> bool:
    """Whether ``path`` has one of :data:`IMG_EXTENSIONS` (case-insensitive) and is not hidden."""
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def parse_size(size: object, where: str = "size") -> tuple[int, int] | None:
    """``32``, ``"32"``, ``"24x32"``, ``[24, 32]`` -> (H, W); None stays None (keep the images' size)."""
    if size is None:
        return None
    try:
        if isinstance(size, str):
            parts = [int(p) for p in size.lower().replace("×", "x").replace(",", "x").split("x") if p.strip()]
        elif isinstance(size, int) and not isinstance(size, bool):
            parts = [size]
        else:
            parts = [int(p) for p in size]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise ConfigError(f"{where} must be a side S (S x S images) or H x W, e.g. 32 or \"24x32\"; got {size!r}")
    return parts[0], parts[1]


@dataclass(frozen=True)
class ImageFit:
    """How every image is brought to one array shape."""

    size: tuple[int, int] | None  # (H, W); None: images must already share one size
    fit: str = "resize_crop"  # one of FITS
    channels: int = 3  # 3 (RGB) or 1 (grayscale)

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ConfigError(f"fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels!r}")


def open_image(path: Path | str):
    """The decoded ``PIL.Image`` of ``path``; an undecodable file raises UnsafeFileError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            img.load()
        return img
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UnsafeFileError(f"{path}: cannot decode this image ({type(e).__name__}: {e}); remove or replace "
                              "the file") from e


SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def sixteen_bit_rule(img) -> str | None:
    """How a 16-bit grayscale image becomes 8 bits: ``"high_byte"`` (value // 256, values above 255
    present), ``"8bit_values"`` (no value above 255: 8-bit data in a 16-bit file, kept as is), or None
    for any other mode."""
    if img.mode not in SIXTEEN_BIT_MODES:
        return None
    lo, hi = img.getextrema()
    return "high_byte" if hi > 255 else "8bit_values"


def convert_channels(img, channels: int):
    """``img`` as mode "RGB" (channels=3) or "L" (channels=1); see the module docstring for the rules."""
    return _converted(img, channels)[0]


def _converted(img, channels: int):
    """(:func:`convert_channels` of ``img``, its :func:`sixteen_bit_rule`), the rule found once."""
    from PIL import Image

    rule = sixteen_bit_rule(img)
    if rule is not None:  # 16-bit grey: the high byte, or 8-bit values kept; never clipped
        values = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        img = Image.fromarray((values >> 8 if rule == "high_byte" else values).astype(np.uint8), mode="L")
    elif img.mode == "F":
        raise UnsafeFileError("32-bit float images are not supported: save 8-bit (or 16-bit) images")
    want = "RGB" if channels == 3 else "L"
    return (img if img.mode == want else img.convert(want)), rule


def fit_image(img, size: tuple[int, int] | None, fit: str = "resize_crop"):
    """``img`` brought to ``size`` (H, W) by ``fit`` (see the module docstring); None leaves it as is."""
    if size is None:
        return img
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    h, w = size
    if fit == "resize":
        return F.resize(img, [h, w], interpolation=InterpolationMode.BILINEAR, antialias=True)
    if fit == "resize_crop":
        width, height = img.size
        if h == w:  # torchvision's Resize(S): the shorter side to S, the longer one in proportion (truncated)
            img = F.resize(img, [h], interpolation=InterpolationMode.BILINEAR, antialias=True)
        else:  # the smallest size covering H x W with the image's aspect ratio
            scale = max(h / height, w / width)
            new = [max(h, int(height * scale)), max(w, int(width * scale))]
            if new != [height, width]:
                img = F.resize(img, new, interpolation=InterpolationMode.BILINEAR, antialias=True)
    elif fit != "crop":
        raise ConfigError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    return F.center_crop(img, [h, w])


def to_array(img) -> np.ndarray:
    """A PIL image in mode "RGB" or "L" -> uint8 (C, H, W)."""
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def _load(path: Path | str, how: ImageFit) -> tuple[np.ndarray, str | None]:
    """:func:`load_image` and the file's :func:`sixteen_bit_rule`."""
    try:
        img, rule = _converted(open_image(path), how.channels)
    except UnsafeFileError as e:
        raise UnsafeFileError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
    return to_array(fit_image(img, how.size, how.fit)), rule


def load_image(path: Path | str, how: ImageFit) -> np.ndarray:
    """One file decoded, converted and fitted: uint8 (C, H, W); errors name the file."""
    return _load(path, how)[0]


def _check_sixteen_bit(rules: dict[str, Path], rule: str | None, path: Path) -> None:
    """Record ``path``'s 16-bit rule in ``rules`` (rule -> first file); refuse a set that mixes both."""
    if rule is None:
        return
    rules.setdefault(rule, path)
    if len(rules) > 1:
        raise ConfigError(f"16-bit images of two kinds: {rules['high_byte']} uses the 16-bit range (values "
                          f"above 255) but {rules['8bit_values']} holds no value above 255 (8-bit values in a "
                          "16-bit file), and no one rule reads both right: save the images with one bit depth "
                          "(e.g. all as 8-bit PNG)")


def decode_many(paths: Sequence[Path], how: ImageFit, workers: int | None = None,
                sixteen_bit: dict[str, Path] | None = None) -> np.ndarray:
    """All ``paths`` decoded with :func:`load_image` into one uint8 (N, C, H, W) array (threads: ``workers``,
    default min(8, CPUs)). Every image must come out at one shape (guaranteed when ``how.size`` is set).

    ``sixteen_bit`` (rule -> first file; pass one dict for every split of a dataset) records how 16-bit
    grayscale files were read; ConfigError when they mix 16-bit-range files with 8-bit values in 16-bit
    files (see the module docstring)."""
    n = len(paths)
    if n == 0:
        raise ConfigError("no images to decode")
    rules: dict[str, Path] = {} if sixteen_bit is None else sixteen_bit
    first, rule = _load(paths[0], how)
    _check_sixteen_bit(rules, rule, Path(paths[0]))
    out = np.empty((n, *first.shape), dtype=np.uint8)
    out[0] = first

    def one(i: int) -> None:
        a, rule = _load(paths[i], how)
        if rule is not None:
            with lock:
                _check_sixteen_bit(rules, rule, Path(paths[i]))
        if a.shape != first.shape:
            raise ConfigError(f"{paths[i]} is {a.shape[1]}x{a.shape[2]} but {paths[0]} is "
                              f"{first.shape[1]}x{first.shape[2]}: state one size for all images "
                              f"({option('size', 'S', placeholder=True)})")
        out[i] = a

    lock = threading.Lock()
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or n < 16:
        for i in range(1, n):
            one(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(1, n)))
    return out
