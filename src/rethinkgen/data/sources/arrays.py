"""The user's own arrays: a ``.npz`` file, or a folder of ``.npy`` files — randomization tests on any data.

Four arrays, found by name (case-insensitive; the first column is what messages call them):

==========  ===========================================================
``x``       x, x_train, train_x, train_images, images: training inputs (N, ...)
``y``       y, y_train, train_y, train_labels, labels: training labels (N,)
``x_test``  x_test, test_x, test_images: test inputs (M, ...)
``y_test``  y_test, test_y, test_labels: test labels (M,)
==========  ===========================================================

A held-out split named ``x_val``/``y_val`` (or ``val_x``, ``x_valid``, ...) is the test set when the
file has no test arrays — the paper's ImageNet test set is the validation set too; the names used are
recorded (``meta["arrays"]``).

(Keras' ``mnist.npz`` — ``x_train``, ``y_train``, ``x_test``, ``y_test`` — loads as it is.) A folder
holds the same names as ``.npy`` files (``x_train.npy``, ...). Files are read with
``allow_pickle=False``: they can never run code.

What rethinkgen decides, and records in ``Dataset.meta`` (shown by ``rethinkgen data inspect``, copied
into each run's summary):

- the layout (:mod:`~rethinkgen.data.sources.layouts`): NCHW, NHWC, NHW, NCL, NLC or ND, from the shape
  and dtype, or the option ``layout``; an ambiguous shape is refused naming that option;
- the scaling: uint8 divided by 255, float images in [0, 1] kept, or the option ``scale``;
- the classes (:mod:`~rethinkgen.data.sources.labels`): those present in the training labels, mapped to
  0..K-1 when stored otherwise, or the option ``num_classes``.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from rethinkgen.data.dataset import Dataset
from rethinkgen.data.sources.labels import encode_labels
from rethinkgen.data.sources.layouts import LayoutDecision, decide_layout, scale_inputs
from rethinkgen.data.sources.messages import option
from rethinkgen.errors import ConfigError, DatasetNotFoundError, UnsafeFileError

KEYS = ("x", "y", "x_test", "y_test")
ALIASES = {  # role -> accepted array names, lower case
    "x": ("x", "x_train", "train_x", "train_images", "images"),
    "y": ("y", "y_train", "train_y", "train_labels", "labels"),
    "x_test": ("x_test", "test_x", "test_images"),
    "y_test": ("y_test", "test_y", "test_labels"),
}
HELD_OUT = {  # role -> names of a validation split, used as the test set when no test arrays exist
    "x_test": ("x_val", "val_x", "x_valid", "valid_x", "val_images"),
    "y_test": ("y_val", "val_y", "y_valid", "valid_y", "val_labels"),
}
ZIP_MAGIC = b"PK\x03\x04"  # np.savez writes a zip archive
NPY_MAGIC = b"\x93NUMPY"


def _path_hint() -> str:
    return (f"{option('path', 'FILE', placeholder=True)} (a .npz holding x, y, x_test, y_test, or a folder of "
            "those as .npy files)")


def resolve_path(path: str | Path | None, data_dir: Path | None) -> Path:
    """``path`` if given (a relative path is taken as is, else under ``data_dir``), else ``data_dir``
    itself when it is a ``.npz`` file."""
    if path is None:
        if data_dir is not None and Path(data_dir).suffix == ".npz":
            return Path(data_dir).expanduser()
        raise ConfigError(f"npz: say which arrays to load: {_path_hint()}")
    p = Path(path).expanduser()
    if not p.exists() and not p.is_absolute() and data_dir is not None and (Path(data_dir) / p).exists():
        return Path(data_dir) / p
    return p


class ArrayStore:
    """The named arrays of a ``.npz`` archive or of a folder of ``.npy`` files, read without pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise DatasetNotFoundError(f"npz: {path} not found (looked at {path.resolve()}); give {_path_hint()}")
        self.is_dir = path.is_dir()
        self.where = f"npz {path}"
        if self.is_dir:
            members = {p.stem: p for p in sorted(path.iterdir()) if p.suffix == ".npy" and p.is_file()}
        else:
            members = {n[:-4]: n for n in self._zip_names()}
        self.members: dict[str, Any] = members
        self.names = self._match_roles()

    def _zip_names(self) -> list[str]:
        with open(self.path, "rb") as f:
            magic = f.read(6)
        if magic[:4] != ZIP_MAGIC:
            kind = "a single .npy array (needs four: x, y, x_test, y_test)" if magic == NPY_MAGIC else \
                "not a .npz (zip) archive"
            raise ConfigError(f"{self.where}: not a readable .npz file ({kind}); save it with "
                              "np.savez(path, x=..., y=..., x_test=..., y_test=...)")
        try:
            with zipfile.ZipFile(self.path) as z:
                return [n for n in z.namelist() if n.endswith(".npy")]
        except (OSError, zipfile.BadZipFile, EOFError) as e:
            raise ConfigError(f"{self.where}: not a readable .npz file ({e})") from e

    def _match_roles(self) -> dict[str, str]:
        by_lower: dict[str, list[str]] = {}
        for name in self.members:
            by_lower.setdefault(name.lower(), []).append(name)
        names, missing = {}, []
        for role, aliases in ALIASES.items():
            found = [n for a in aliases for n in by_lower.get(a, [])]
            if not found and role in HELD_OUT:
                found = [n for a in HELD_OUT[role] for n in by_lower.get(a, [])]
            if len(found) > 1:
                raise ConfigError(f"{self.where}: both {' and '.join(found)} could be {role}; keep one of them")
            if not found:
                held_out = f"; or a validation split {', '.join(HELD_OUT[role])}" if role in HELD_OUT else ""
                missing.append(f"{role} (or {', '.join(a for a in aliases if a != role)}{held_out})")
            else:
                names[role] = found[0]
        if missing:
            what = "arrays (.npy files)" if self.is_dir else "arrays"
            raise ConfigError(f"{self.where}: missing {what} {'; '.join(missing)} (found "
                              f"{', '.join(sorted(self.members)) or 'none'}); the data needs {', '.join(KEYS)}")
        return names

    @contextmanager
    def _open(self, role: str) -> Iterator[IO[bytes]]:
        member = self.members[self.names[role]]
        if self.is_dir:
            with open(member, "rb") as f:
                yield f
        else:
            with zipfile.ZipFile(self.path) as z, z.open(member) as f:
                yield f

    def header(self, role: str) -> tuple[tuple[int, ...], np.dtype]:
        """(shape, dtype) of an array from its .npy header alone (no data is read)."""
        try:
            with self._open(role) as f:
                version = np.lib.format.read_magic(f)
                reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = reader(f)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise ConfigError(f"{self.where}: array {self.names[role]} is not readable ({e})") from e
        return tuple(shape), dtype

    def read(self, role: str) -> np.ndarray:
        """The array playing ``role``; object arrays (which need pickle) raise UnsafeFileError."""
        name = self.names[role]
        try:
            if self.is_dir:
                return np.load(self.members[name], allow_pickle=False)
            with np.load(self.path, allow_pickle=False) as f:
                return f[name]
        except ValueError as e:  # object arrays need pickle, which we refuse
            if "pickle" in str(e):
                raise UnsafeFileError(f"{self.where}: array {name!r} cannot be loaded without pickle ({e}); "
                                      "store plain numeric (or fixed-width string) arrays") from e
            raise ConfigError(f"{self.where}: array {name!r} is not readable ({e})") from e
        except (OSError, zipfile.BadZipFile, EOFError) as e:
            raise ConfigError(f"{self.where}: array {name!r} is not readable ({e})") from e

    def sha256(self) -> str:
        """Of the .npz file; of the four .npy files' digests, in role order, for a folder."""
        if not self.is_dir:
            return _file_sha256(self.path)
        h = hashlib.sha256()
        for role in KEYS:
            h.update(_file_sha256(self.members[self.names[role]]).encode())
        return h.hexdigest()


def _decide(store: ArrayStore, layout: str | None) -> tuple[LayoutDecision, tuple[int, ...], tuple[int, ...]]:
    """The layout decision for x, checked against x_test; returns (decision, x shape, x_test shape)."""
    (shape, dtype), (test_shape, _) = store.header("x"), store.header("x_test")
    decision = decide_layout(shape, dtype, layout, where=f"{store.where}: {store.names['x']}")
    if len(test_shape) != len(shape) or decision.standard_shape(test_shape)[1:] != decision.standard_shape(shape)[1:]:
        raise ConfigError(f"{store.where}: {store.names['x']} is {shape} but {store.names['x_test']} is {test_shape}; "
                          "train and test samples must have the same shape")
    if shape[0] == 0:
        raise ConfigError(f"{store.where}: {store.names['x']} is empty")
    if test_shape[0] == 0:
        raise ConfigError(f"{store.where}: {store.names['x_test']} is empty; rethinkgen measures test accuracy on "
                          "it: store at least one test sample")
    return decision, shape, test_shape


def _labels(store: ArrayStore, num_classes: Any, n: int, m: int):
    y, y_test = store.read("y"), store.read("y_test")
    for key, labels, rows in (("y", y, n), ("y_test", y_test, m)):
        if labels.shape[:1] != (rows,):
            x_key = "x" if key == "y" else "x_test"
            raise ConfigError(f"{store.where}: {store.names[x_key]} has {rows} rows but {store.names[key]} has "
                              f"{labels.shape[0] if labels.ndim else 0} labels")
    return encode_labels(y, y_test, num_classes=num_classes, where=store.where,
                         train_key=store.names["y"], test_key=store.names["y_test"])


def _check_convention(store: ArrayStore, decision: LayoutDecision, scale: Any) -> None:
    """Train and test inputs must come out in one value convention. Images always do (every automatic
    scaling gives pixels in [0, 1]: uint8 / 255, float in [0, 1] kept, ...), and so does a stated
    ``scale``; signals and vectors do unless one is uint8 (divided by 255) and the other is not (kept)."""
    if scale is not None or decision.layout == "image":
        return
    dtypes = [store.header(role)[1].newbyteorder("=") for role in ("x", "x_test")]
    if (dtypes[0] == np.uint8) != (dtypes[1] == np.uint8):
        raise ConfigError(f"{store.where}: {store.names['x']} is {dtypes[0]} and {store.names['x_test']} is "
                          f"{dtypes[1]}: uint8 inputs are divided by 255, others kept, so train and test would "
                          f"differ in scale; store both with the same dtype, or state the scale of both "
                          f"({option('scale', 255)} or {option('scale', 'none')})")


_VALUES_CHECKED: set[tuple] = set()  # (file identity, layout, scale) whose values passed scale_inputs


def _scaled(store: ArrayStore, decision: LayoutDecision, scale: Any) -> tuple[dict, dict]:
    """({role: float32 inputs in the Dataset's layout}, {role: how they were scaled}) for x and x_test.

    A rule that depends on the values (uint16 images: 0..255 are 8-bit pixels, else 16-bit) must come
    out the same for both arrays of one dtype; otherwise ConfigError names the ``scale`` option."""
    inputs, scalings = {}, {}
    for role in ("x", "x_test"):
        where = f"{store.where}: {store.names[role]}"
        inputs[role], scalings[role] = scale_inputs(decision.to_standard(store.read(role)), decision.layout, scale,
                                                    where=where)
    dtypes = {store.header(role)[1].newbyteorder("=") for role in ("x", "x_test")}
    if len(dtypes) == 1 and scalings["x"] != scalings["x_test"]:
        raise ConfigError(f"{store.where}: {store.names['x']} and {store.names['x_test']} are both {dtypes.pop()} "
                          f"but their values call for different scales ({scalings['x']} vs {scalings['x_test']}); "
                          f"state one: {option('scale', 65535)} for 16-bit pixels or {option('scale', 255)} for "
                          "8-bit ones")
    return inputs, scalings


def _check_values(store: ArrayStore, decision: LayoutDecision, scale: Any) -> None:
    """Run the value checks of ``load`` (range of float images, NaN, one scale for both arrays) once per
    file version and options. Only arrays whose values can fail them are read (not uint8 or bool)."""
    native = (np.uint8, np.bool_)
    if all(store.header(role)[1].newbyteorder("=") in native for role in ("x", "x_test")):
        return
    files = [store.members[store.names[r]] for r in ("x", "x_test")] if store.is_dir else [store.path]
    key = (tuple((str(Path(f).resolve()), Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in files),
           decision.found, str(scale))
    if key in _VALUES_CHECKED:
        return
    _scaled(store, decision, scale)
    _VALUES_CHECKED.add(key)


def layout(data_dir: Path | None, *, path: str | Path | None = None, layout: str | None = None,
           scale: float | str | None = None, num_classes: int | None = None, **_options: object) -> str:
    """The layout ``load`` would return, after every check ``load`` makes: the layout from the arrays'
    headers, the labels (small), and the values where they can fail (float or wide-integer inputs; once
    per file version), so a config naming bad data fails before any run starts."""
    store = ArrayStore(resolve_path(path, data_dir))
    decision, shape, test_shape = _decide(store, layout)
    _labels(store, num_classes, shape[0], test_shape[0])
    _check_convention(store, decision, scale)
    _check_values(store, decision, scale)
    return decision.layout


def load(data_dir: Path | None, seed: int = 0, *, path: str | Path | None = None, layout: str | None = None,
         scale: float | str | None = None, num_classes: int | None = None) -> Dataset:
    """Load the user's arrays as a :class:`Dataset`; ``seed`` is unused.

    Parameters
    ----------
    path : a ``.npz`` file or a folder of ``.npy`` files (relative paths also under ``data_dir``).
    layout : "NCHW" | "NHWC" | "NHW" | "NCL" | "NLC" | "ND"; None decides from the shape (or refuses).
    scale : None (uint8 / 255, float images kept in [0, 1]), "none" (values kept), or a divisor.
    num_classes : None (the labels present in the training set) or K (labels are indices 0..K-1).

    Raises
    ------
    ConfigError
        a layout, value or label problem; the message names the option that fixes it.
    DatasetNotFoundError
        no such file or folder.
    UnsafeFileError
        an array that needs pickle (object arrays).
    """
    store = ArrayStore(resolve_path(path, data_dir))
    decision, shape, test_shape = _decide(store, layout)
    y, y_test, classes = _labels(store, num_classes, shape[0], test_shape[0])
    _check_convention(store, decision, scale)
    inputs, scalings = _scaled(store, decision, scale)
    scaling = scalings["x"] if scalings["x"] == scalings["x_test"] else \
        f"{store.names['x']}: {scalings['x']}; {store.names['x_test']}: {scalings['x_test']}"
    meta = {"source": "npz", "path": str(store.path.resolve()), "sha256": store.sha256(),
            "arrays": dict(store.names), "test_split": f"{store.names['x_test']}, {store.names['y_test']}",
            "stored_shape": list(shape), "stored_dtype": str(store.header("x")[1]),
            "layout_found": decision.found, "layout_reason": decision.reason, "scaling": scaling,
            **classes.as_meta()}
    return Dataset(
        name="npz", x_train=torch.from_numpy(inputs["x"]), y_train=torch.from_numpy(y),
        x_test=torch.from_numpy(inputs["x_test"]), y_test=torch.from_numpy(y_test),
        num_classes=classes.num_classes, layout=decision.layout,  # type: ignore[arg-type]
        meta=meta,
    )


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
