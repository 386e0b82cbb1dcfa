"""Which axes of a user's array are samples, channels and positions — and how its values are scaled.

Arrays come in every layout people save them in. One sample array ``x`` is read as:

=========  =================================  ===========================  =========
``layout``  stored shape                       becomes (:class:`Dataset`)    kind
=========  =================================  ===========================  =========
``NCHW``   (N, C, H, W) images, PyTorch       (N, C, H, W)                 image
``NHWC``   (N, H, W, C) images, TF / PIL      (N, C, H, W)                 image
``NHW``    (N, H, W) grayscale images         (N, 1, H, W)                 image
``NCL``    (N, C, L) signals, PyTorch         (N, C, L)                    signal
``NLC``    (N, L, C) signals, channels last   (N, C, L)                    signal
``ND``     (N, D) vectors (or any (N, ...)    (N, D), flattened            vector
           flattened)
=========  =================================  ===========================  =========

Without a ``layout`` option the layout is decided from the shape and dtype (:func:`decide_layout`),
only where one reading is clearly meant; otherwise the load is refused with the option that settles it.
The decision and its reason are recorded (``Dataset.meta["layout_found"]``, ``["layout_reason"]``).

Values (:func:`scale_inputs`): 8-bit pixels (uint8) are divided by 255, 16-bit image pixels by 65,535,
integer images holding 0..255 (uint16 ones too: 8-bit values stored wide) by 255; float images must
already lie in [0, 1]. Float signals and
vectors are kept. The option ``scale`` (a divisor, or ``"none"``) overrides this. The scaling applied
is recorded (``Dataset.meta["scaling"]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rethinkgen.data.sources.messages import option, option_name
from rethinkgen.errors import ConfigError

__all__ = ["LAYOUTS", "CHANNEL_SIZES", "LayoutDecision", "decide_layout", "native_order", "scale_inputs"]

LAYOUTS = {  # option value -> (ndim of the stored array, Dataset layout)
    "NCHW": (4, "image"), "NHWC": (4, "image"), "NHW": (3, "image"),
    "NCL": (3, "signal"), "NLC": (3, "signal"), "ND": (2, "vector"),
}
CHANNEL_SIZES = (1, 2, 3, 4)  # grey, grey+alpha, RGB, RGBA: what a channel axis of an image holds
SIGNAL_MAX_CHANNELS = 4  # (N, A, B) with A <= 4 < B reads as A-channel signals of length B


@dataclass(frozen=True)
class LayoutDecision:
    """How a stored array maps to a :class:`~rethinkgen.data.dataset.Dataset` layout."""

    found: str  # a key of LAYOUTS
    reason: str  # why (the option, or the rule that decided)

    @property
    def layout(self) -> str:
        """"image" | "signal" | "vector"."""
        return LAYOUTS[self.found][1]

    def standard_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The (N, ...) shape of the array in the Dataset's layout."""
        n = shape[0]
        if self.found == "NHWC":
            return (n, shape[3], shape[1], shape[2])
        if self.found == "NHW":
            return (n, 1, shape[1], shape[2])
        if self.found == "NLC":
            return (n, shape[2], shape[1])
        if self.found == "ND":
            return (n, int(np.prod(shape[1:], dtype=np.int64)))
        return tuple(shape)

    def to_standard(self, x: np.ndarray) -> np.ndarray:
        """``x`` rearranged into the Dataset's layout (a contiguous array; a view where nothing moves)."""
        if self.found == "NHWC":
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if self.found == "NHW":
            return x[:, None]
        if self.found == "NLC":
            return np.ascontiguousarray(x.transpose(0, 2, 1))
        if self.found == "ND":
            return x.reshape(x.shape[0], -1)
        return x


def _ask(where: str, shape: tuple[int, ...], dtype: np.dtype, readings: list[tuple[str, str]]) -> ConfigError:
    alternatives = " or ".join(f"{what} ({option('layout', name)})" for name, what in readings)
    return ConfigError(f"{where} has shape {shape} ({dtype}), which could be {alternatives}; rethinkgen "
                       f"does not guess: say which with {option_name('layout')}")


def decide_layout(shape: tuple[int, ...], dtype: np.dtype | str, given: str | None = None, *,
                  where: str = "x") -> LayoutDecision:
    """Decide the layout of a stored sample array from its ``shape`` and ``dtype`` (or ``given``).

    Rules without ``given`` (N is the first axis; "channel-like" means a size in CHANNEL_SIZES):

    - 2-D: vectors (N, D).
    - 3-D (N, A, B): A == 1: one-channel signals; 8/16-bit integers, or A == B: grayscale images
      (N, H, W); A <= 4 < B: A-channel signals (N, C, L); B <= 4 < A: B-channel signals stored channels
      last (N, L, C); anything else is refused. 8/16-bit integers whose shape is that of 2-4-channel
      signals ((N, 3, 100), (N, 100, 2)) fit both readings (3x100 images or 3-channel signals) and are
      refused too.
    - 4-D (N, A, B, C): channels first if only A is channel-like, last if only C is; if both or neither
      are, the reading whose spatial axes are square (and the other's are not) wins; else refused.

    Raises ConfigError naming the ``layout`` option for shapes with no or several plausible readings,
    and for a ``given`` layout that does not fit the array's number of dimensions.
    """
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype).newbyteorder("=")  # ">u2" (FITS, MATLAB, IDL files) is uint16 too
    ndim = len(shape)
    if given is not None:
        key = str(given).upper()
        if key not in LAYOUTS:
            raise ConfigError(f"{where}: unknown layout {given!r}; valid layouts: {', '.join(LAYOUTS)} "
                              "(N = samples, C = channels, H x W = pixels, L = signal length, D = features)")
        want = LAYOUTS[key][0]
        if not (ndim == want or (key == "ND" and ndim >= 2)):
            raise ConfigError(f"{where} has shape {shape} ({ndim}-D) but layout {key} describes {want}-D arrays; "
                              f"drop {option_name('layout')} or give one of: {_fitting(ndim)}")
        return LayoutDecision(key, f"given ({option('layout', key)})")
    if ndim == 2:
        return LayoutDecision("ND", "2-D: one feature vector per sample")
    if ndim == 3:
        return _decide_3d(shape, dtype, where)
    if ndim == 4:
        return _decide_4d(shape, dtype, where)
    raise ConfigError(f"{where} has shape {shape}; expected (N, D) vectors, (N, C, L) or (N, L, C) signals, "
                      f"or (N, H, W), (N, H, W, C) or (N, C, H, W) images (see {option_name('layout')}: "
                      f"{', '.join(LAYOUTS)}; layout ND flattens any (N, ...) array)")


def _fitting(ndim: int) -> str:
    names = [k for k, (d, _) in LAYOUTS.items() if d == ndim or (k == "ND" and ndim >= 2)]
    return ", ".join(names) or "none (reshape the array)"


def native_order(x: np.ndarray) -> np.ndarray:
    """``x`` in the machine's byte order (a copy only when it is not): a big-endian ``>u2`` array is then
    ``uint16`` to every dtype comparison, and ``torch.from_numpy`` accepts it."""
    return x if x.dtype.isnative else x.astype(x.dtype.newbyteorder("="))


def _decide_3d(shape: tuple[int, ...], dtype: np.dtype, where: str) -> LayoutDecision:
    _, a, b = shape
    if a == 1:
        return LayoutDecision("NCL", "(N, 1, L): one-channel signals")
    signal_like = 1 < min(a, b) <= SIGNAL_MAX_CHANNELS < max(a, b)  # (N, 3, 100): channels and positions?
    if dtype in (np.uint8, np.uint16) and not signal_like:
        return LayoutDecision("NHW", f"(N, H, W) of {dtype}: pixel values, read as grayscale images")
    if a == b:
        return LayoutDecision("NHW", "(N, H, W) with H = W: square grayscale images")
    pixels = dtype in (np.uint8, np.uint16)  # signal-like shape, but stored as pixels: both readings fit
    if a <= SIGNAL_MAX_CHANNELS < b and not pixels:
        return LayoutDecision("NCL", f"(N, C, L) with C = {a} channels and L = {b} positions: signals")
    if b <= SIGNAL_MAX_CHANNELS < a and not pixels:
        return LayoutDecision("NLC", f"(N, L, C) with L = {a} positions and C = {b} channels last: signals")
    readings = [("NHW", f"grayscale {a}x{b} images"), ("NCL", f"{a}-channel signals of length {b}"),
                ("NLC", f"{b}-channel signals of length {a}")]
    if pixels:  # signal-like: the image reading and the one signal reading with few channels
        readings = readings[:1] + ([readings[1]] if a < b else [readings[2]])
    raise _ask(where, shape, dtype, readings)


def _decide_4d(shape: tuple[int, ...], dtype: np.dtype, where: str) -> LayoutDecision:
    _, a, b, c = shape
    first, last = a in CHANNEL_SIZES, c in CHANNEL_SIZES
    if first != last:
        found = "NCHW" if first else "NHWC"
        n_ch, h, w = (a, b, c) if first else (c, a, b)
        return LayoutDecision(found, f"{'channels first' if first else 'channels last'}: {n_ch} channel(s) "
                                     f"of {h}x{w} pixels")
    square_first, square_last = b == c, a == b
    if square_first != square_last:
        found = "NCHW" if square_first else "NHWC"
        n_ch, side = (a, b) if square_first else (c, a)
        return LayoutDecision(found, f"{'channels first' if square_first else 'channels last'}: the only "
                                     f"reading with square images ({n_ch} channel(s) of {side}x{side} pixels)")
    raise _ask(where, shape, dtype, [("NCHW", f"{a}-channel {b}x{c} images"),
                                     ("NHWC", f"{c}-channel {a}x{b} images")])


def _divisor(scale: object, where: str) -> float | None:
    """None for "none", a positive divisor for a number (or numeric string)."""
    if isinstance(scale, str) and scale.strip().lower() == "none":
        return None
    try:
        value = float(scale)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(scale, bool) or not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{where}: scale must be a positive divisor (e.g. {option('scale', 255)}), "
                          f"\"none\" (keep the values) or unset (automatic), got {scale!r}")
    return value


def scale_inputs(x: np.ndarray, layout: str, scale: object = None, *, where: str = "x") -> tuple[np.ndarray, str]:
    """``x`` as float32 in the dataset's value convention, and a one-line description of what was done.

    ``scale``: None (automatic, see the module docstring), ``"none"`` (values kept), or a positive
    number every value is divided by. Raises ConfigError for non-numeric or non-finite inputs, and for
    images whose values cannot be pixels in [0, 1] without an explicit ``scale``.
    """
    if x.dtype.kind not in "buif":
        raise ConfigError(f"{where} must hold numbers, found dtype {x.dtype}")
    x = native_order(x)
    if scale is not None:
        divisor = _divisor(scale, where)
        out = x.astype(np.float32)
        if divisor is not None:
            out /= np.float32(divisor)
        how = f"divided by {divisor:g} ({option('scale', scale)})" if divisor is not None else \
            f"{x.dtype} values kept ({option('scale', 'none')})"
        return _finite(out, where), how
    if x.dtype == np.bool_:
        return x.astype(np.float32), "bool -> 0.0 / 1.0"
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0), "uint8 0..255 divided by 255 -> [0, 1]"
    if layout != "image":
        return _finite(x.astype(np.float32), where), f"{x.dtype} values kept" + \
            ("" if x.dtype == np.float32 else " (as float32)")
    if x.dtype.kind == "f":
        _finite(x, where)
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if x.dtype == np.uint16 and hi > 255:  # 0..255 in uint16 are 8-bit pixels stored wide (below)
        return x.astype(np.float32) / np.float32(65535.0), "uint16 0..65535 divided by 65535 -> [0, 1]"
    if x.dtype.kind in "iu":
        if lo >= 0 and hi <= 255:
            return (x.astype(np.float32) / np.float32(255.0),
                    f"{x.dtype} values in 0..255 read as 8-bit pixels, divided by 255 -> [0, 1]")
        raise ConfigError(f"{where}: {x.dtype} image values in {lo:g}..{hi:g} are not 8-bit pixels; say how to "
                          f"scale them: {option('scale', int(hi) if hi > 0 else 1)} (divide by the maximum) or "
                          f"{option('scale', 'none')} (keep them)")
    out = x.astype(np.float32)
    if lo >= 0.0 and hi <= 1.0:
        return out, f"{x.dtype} in [0, 1], kept"
    hint = f"{option('scale', 255)} if they are 8-bit pixel values, or " if lo >= 0.0 and hi <= 255.0 else ""
    raise ConfigError(f"{where}: float images with values in [{lo:g}, {hi:g}]; image pixels are in [0, 1]: "
                      f"pass {hint}{option('scale', 'none')} to keep them as they are (e.g. already "
                      "standardized)")


def _finite(x: np.ndarray, where: str) -> np.ndarray:
    if x.size and not np.isfinite(x).all():
        raise ConfigError(f"{where} contains NaN or infinite values")
    return x
