"""Writers of small data files in the real formats, shared by the tests of rethinkgen.data.sources.

CIFAR-10 batches are emitted opcode by opcode as Python 2's cPickle wrote the official ones; IDX files
byte for byte as the format defines them; image trees as JPEG/PNG files of mixed sizes and modes.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from rethinkgen.data.sources import cifar10, idx

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
REAL_MNIST = SHARED / "data" / "mnist"
REAL_FASHION = SHARED / "data" / "fashion-mnist"
CASES = SHARED / "cases"
LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def quiet(_message: str) -> None:
    pass


# --- CIFAR-10 as Python 2 + numpy 1.x pickled it (protocol 2) ----------------------------------------

def py2_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def py2_str(s: bytes) -> bytes:  # a Python 2 str: SHORT_BINSTRING / BINSTRING
    return (b"U" + bytes([len(s)]) if len(s) < 256 else b"T" + struct.pack("<i", len(s))) + s


def py2(obj) -> bytes:
    """Protocol-2 opcodes for the objects in a CIFAR-10 batch, as Python 2 + numpy 1.x emitted them."""
    if isinstance(obj, bytes):
        return py2_str(obj)
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        return py2_int(obj)
    if obj is None:
        return b"N"
    if isinstance(obj, list):
        return b"](" + b"".join(py2(v) for v in obj) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(py2(k) + py2(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, np.ndarray):
        assert obj.dtype == np.uint8 and obj.ndim == 2
        dtype = (b"cnumpy\ndtype\n" + py2_str(b"u1") + b"K\x00K\x01\x87R"
                 + b"(K\x03" + py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
        shape = py2_int(obj.shape[0]) + py2_int(obj.shape[1]) + b"\x86"
        return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + py2_str(b"b")
                + b"\x87R(K\x01" + shape + dtype + b"\x89" + py2_str(obj.tobytes()) + b"tb")
    raise TypeError(type(obj))


def py2_pickle(obj) -> bytes:
    return b"\x80\x02" + py2(obj) + b"."


def write_cifar(root: Path, rows: int = 20, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A cifar-10-batches-py folder with `rows` rows per batch; returns (x_train, y_train, x_test, y_test)."""
    g = np.random.default_rng(seed)
    folder = root / cifar10.FOLDER
    folder.mkdir(parents=True)
    xs, ys = [], []
    for name in (*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH):
        data = g.integers(0, 256, (rows, 3072), dtype=np.uint8)
        labels = [int(v) for v in g.integers(0, 10, rows)]
        batch = {b"batch_label": b"training batch", b"labels": labels, b"data": data,
                 b"filenames": [f"img_{i}.png".encode() for i in range(rows)]}
        (folder / name).write_bytes(py2_pickle(batch))
        xs.append(data)
        ys.append(labels)
    meta = {b"num_cases_per_batch": rows, b"label_names": [n.encode() for n in LABEL_NAMES], b"num_vis": 3072}
    (folder / cifar10.META).write_bytes(py2_pickle(meta))
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], np.array(ys[5])


# --- IDX (MNIST, Fashion-MNIST) -----------------------------------------------------------------------

def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()


def write_idx_set(folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = True, seed: int = 0):
    """The four IDX files (random content) in ``folder``; returns the arrays by role."""
    g = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": g.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": g.integers(0, 10, n_train, dtype=np.uint8),
              "test_images": g.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": g.integers(0, 10, n_test, dtype=np.uint8)}
    for role, arr in arrays.items():
        name = idx.FILES[role]
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(arr)))
        else:
            (folder / name).write_bytes(idx_bytes(arr))
    return arrays


# --- image trees (torchvision's ImageFolder layout) ------------------------------------------------------

def write_image_tree(root: Path, classes=("cat", "dog", "fish"), per_class: int = 8, test_per_class: int = 3,
                     test_split: str = "val", seed: int = 0) -> dict[str, list[Path]]:
    """ROOT/train/<class>/ and ROOT/<test_split>/<class>/ with JPEG and PNG files of odd sizes.

    Each class has its own dominant colour (so true labels are learnable). The first training image of
    the first class is grayscale (mode L) and the first of the second class RGBA; a README.txt is
    dropped in to be skipped. Returns {split: [paths]}.
    """
    from PIL import Image

    g = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {"train": [], test_split: []}
    colours = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (200, 200, 40)]
    for split, count in (("train", per_class), (test_split, test_per_class)):
        for ci, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = int(g.integers(17, 61)), int(g.integers(17, 61))  # odd sizes, not square
                base = np.array(colours[ci % len(colours)], dtype=np.float64)
                pixels = np.clip(base + g.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
                img = Image.fromarray(pixels, "RGB")
                ext = ".png" if i % 2 else ".jpg"
                if split == "train" and i == 0 and ci == 0:
                    img, ext = img.convert("L"), ".png"
                elif split == "train" and i == 0 and ci == 1:
                    img, ext = img.convert("RGBA"), ".png"
                path = folder / f"img_{i:03d}{ext}"
                img.save(path, quality=95) if ext == ".jpg" else img.save(path)
                written[split].append(path)
    (root / "train" / classes[0] / "README.txt").write_text("not an image")
    return written
