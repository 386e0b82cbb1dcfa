"""Tests of rethinkgen.data.sources: loaders on small files in the real formats, safety, subsets, errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import random
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rethinkgen.data.sources import (
    DATASETS,
    cifar10,
    dataset_layout,
    dataset_options,
    default_data_dir,
    fetch_dataset,
    list_datasets,
    load_dataset,
    mnist,
    mnist1d,
    synthetic,
    take_subset,
)
from rethinkgen.data.sources.download import checksum_verifier, download, extract_tar, file_digest
from rethinkgen.errors import ConfigError, DatasetNotFoundError, UnknownNameError, UnsafeFileError

REAL_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
needs_real_mnist = pytest.mark.skipif(
    not REAL_MNIST.is_dir(), reason=f"real MNIST not found at {REAL_MNIST} (../shared/data/mnist from repo)")


def quiet(_message: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------------
# CIFAR-10: files written byte for byte as Python 2's cPickle (protocol 2) wrote the official ones
# ---------------------------------------------------------------------------------------------------

def _py2_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def _py2_str(s: bytes) -> bytes:  # a Python 2 str: SHORT_BINSTRING / BINSTRING
    return (b"U" + bytes([len(s)]) if len(s) < 256 else b"T" + struct.pack("<i", len(s))) + s


def _py2(obj) -> bytes:
    """Protocol-2 opcodes for the objects in a CIFAR-10 batch, as Python 2 + numpy 1.x emitted them."""
    if isinstance(obj, bytes):
        return _py2_str(obj)
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        return _py2_int(obj)
    if obj is None:
        return b"N"
    if isinstance(obj, list):
        return b"](" + b"".join(_py2(v) for v in obj) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2(k) + _py2(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, np.ndarray):
        assert obj.dtype == np.uint8 and obj.ndim == 2
        dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R"
                 + b"(K\x03" + _py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
        shape = _py2_int(obj.shape[0]) + _py2_int(obj.shape[1]) + b"\x86"
        return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _py2_str(b"b")
                + b"\x87R(K\x01" + shape + dtype + b"\x89" + _py2_str(obj.tobytes()) + b"tb")
    raise TypeError(type(obj))


def py2_pickle(obj) -> bytes:
    return b"\x80\x02" + _py2(obj) + b"."


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
    meta = {b"num_cases_per_batch": rows, b"label_names": [n.encode() for n in
            ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")],
            b"num_vis": 3072}
    (folder / cifar10.META).write_bytes(py2_pickle(meta))
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], np.array(ys[5])


def test_py2_pickle_writer_matches_the_standard_unpickler(tmp_path):
    # our hand-written py2 stream is what pickle itself understands (sanity of the fixture)
    arr = np.arange(6 * 3072, dtype=np.uint8).reshape(6, 3072)
    obj = pickle.loads(py2_pickle({b"data": arr, b"labels": [1, 2, 300, 70000]}), encoding="bytes")
    np.testing.assert_array_equal(obj[b"data"], arr)
    assert obj[b"labels"] == [1, 2, 300, 70000]


def test_cifar10_loads_py2_batches(tmp_path):
    x_train, y_train, x_test, y_test = write_cifar(tmp_path)
    ds = load_dataset("cifar10", tmp_path, strict=False)
    assert ds.layout == "image" and ds.num_classes == 10
    assert ds.x_train.shape == (100, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    # row layout: 1024 red, 1024 green, 1024 blue values, each plane row-major
    np.testing.assert_allclose(ds.x_train[7, 1, 2, 5].item(), x_train[7, 1024 + 2 * 32 + 5] / 255, rtol=1e-6)
    np.testing.assert_array_equal(ds.x_train.numpy() * 255, x_train.reshape(-1, 3, 32, 32).astype(np.float32))
    np.testing.assert_array_equal(ds.y_train.numpy(), y_train)
    np.testing.assert_array_equal(ds.y_test.numpy(), y_test)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.meta["label_names"][0] == "airplane"
    # data_dir may be the batches folder itself
    same = load_dataset("cifar10", tmp_path / cifar10.FOLDER, strict=False)
    assert torch.equal(same.x_test, ds.x_test)


def test_cifar10_strict_demands_official_sizes(tmp_path):
    write_cifar(tmp_path, rows=4)
    with pytest.raises(UnsafeFileError, match="10000"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_numpy2_protocol4_pickle_loads(tmp_path):
    # a batch re-pickled by Python 3 / numpy 2 references numpy._core.multiarray._reconstruct
    write_cifar(tmp_path, rows=4)
    path = tmp_path / cifar10.FOLDER / "data_batch_2"
    data = np.full((4, 3072), 7, dtype=np.uint8)
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [0, 1, 2, 9]}, protocol=4))
    x, y = cifar10.read_batch(path)
    np.testing.assert_array_equal(x, data)
    assert y.tolist() == [0, 1, 2, 9]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("variant", ["whole", "inside_dict", "eval"])
def test_cifar10_malicious_pickle_refused_without_running(tmp_path, variant):
    write_cifar(tmp_path, rows=4)
    marker = tmp_path / "pwned"
    path = tmp_path / cifar10.FOLDER / "data_batch_3"
    if variant == "whole":
        payload = pickle.dumps(_Evil(marker), protocol=2)
    elif variant == "inside_dict":  # a valid-looking batch with the payload as one more entry
        evil = b"cposix\nsystem\n" + _py2_str(f"touch {marker}".encode()) + b"\x85R"
        payload = (b"\x80\x02}(" + _py2(b"data") + _py2(np.zeros((4, 3072), np.uint8)) + _py2(b"labels")
                   + _py2([0] * 4) + _py2(b"x") + evil + b"u.")
    else:
        payload = b"\x80\x02cbuiltins\neval\n" + _py2_str(f"open({str(marker)!r}, 'w')".encode()) + b"\x85R."
    path.write_bytes(payload)
    with pytest.raises(UnsafeFileError) as err:
        load_dataset("cifar10", tmp_path, strict=False)
    assert str(path) in str(err.value)
    assert ("system" in str(err.value)) if variant != "eval" else ("builtins.eval" in str(err.value))
    assert not marker.exists()
    # the standard unpickler really would have run it (the test can fail)
    if variant == "whole":
        pickle.loads(payload)
        assert marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "bad_label", "columns", "labels_short", "not_a_dict"])
def test_cifar10_damaged_batches(tmp_path, damage):
    write_cifar(tmp_path, rows=4)
    path = tmp_path / cifar10.FOLDER / "test_batch"
    data = np.zeros((4, 3072), np.uint8)
    payload = {
        "truncated": path.read_bytes()[:-100],
        "bad_label": py2_pickle({b"data": data, b"labels": [0, 1, 10, 2]}),
        "columns": py2_pickle({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}),
        "labels_short": py2_pickle({b"data": data, b"labels": [0] * 3}),
        "not_a_dict": py2_pickle([1, 2, 3]),
    }[damage]
    path.write_bytes(payload)
    with pytest.raises(UnsafeFileError, match="test_batch"):
        load_dataset("cifar10", tmp_path, strict=False)


def test_cifar10_inconsistent_batch_sizes(tmp_path):
    write_cifar(tmp_path, rows=4)
    path = tmp_path / cifar10.FOLDER / "data_batch_5"
    path.write_bytes(py2_pickle({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0] * 3}))
    with pytest.raises(UnsafeFileError, match="data_batch_5"):
        load_dataset("cifar10", tmp_path, strict=False)


def test_cifar10_missing_names_paths_and_fetch_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and str(tmp_path / "nowhere" / cifar10.FOLDER) in msg
    assert f"rethinkgen data fetch cifar10 --data-dir {tmp_path / 'nowhere'}" in msg
    # a partial folder: the missing files are named
    write_cifar(tmp_path, rows=4)
    (tmp_path / cifar10.FOLDER / "data_batch_4").unlink()
    with pytest.raises(DatasetNotFoundError, match="lacks data_batch_4"):
        load_dataset("cifar10", tmp_path)


def _make_tarball(src_root: Path, dest: Path) -> str:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src_root / cifar10.FOLDER, arcname=cifar10.FOLDER)
    return file_digest(dest, "md5")


def test_cifar10_fetch_from_file_url_verifies_and_extracts(tmp_path):
    src = tmp_path / "src"
    _, y_train, _, _ = write_cifar(src, rows=4)
    tarball = tmp_path / "mirror" / cifar10.TARBALL
    tarball.parent.mkdir()
    md5 = _make_tarball(src, tarball)
    data_dir = tmp_path / "data"
    urls = ["file:///nonexistent/cifar-10-python.tar.gz", tarball.as_uri()]  # first mirror fails
    folder = cifar10.fetch(data_dir, urls=urls, md5=md5, log=quiet)
    assert folder == data_dir / cifar10.FOLDER
    np.testing.assert_array_equal(load_dataset("cifar10", data_dir, strict=False).y_train.numpy(), y_train)
    assert sorted(p.name for p in data_dir.iterdir()) == [cifar10.FOLDER, cifar10.TARBALL]  # no temp left
    # again: nothing to do
    messages = []
    assert cifar10.fetch(data_dir, urls=[], md5=md5, log=messages.append) == folder
    assert "already complete" in messages[0]


def test_cifar10_fetch_reuses_a_local_tarball_offline(tmp_path):
    src = tmp_path / "src"
    write_cifar(src, rows=4)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    md5 = _make_tarball(src, data_dir / cifar10.TARBALL)
    assert cifar10.fetch(data_dir, urls=[], md5=md5, log=quiet).is_dir()


def test_cifar10_fetch_refuses_wrong_checksum(tmp_path):
    src = tmp_path / "src"
    write_cifar(src, rows=4)
    tarball = tmp_path / cifar10.TARBALL
    _make_tarball(src, tarball)
    data_dir = tmp_path / "data"
    with pytest.raises(UnsafeFileError, match="md5"):
        cifar10.fetch(data_dir, urls=[tarball.as_uri()], log=quiet)  # the official md5: cannot match
    assert list(data_dir.iterdir()) == []  # neither the download nor its temp file remain


def test_cifar10_fetch_refuses_an_archive_without_the_batches(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    tarball = data_dir / cifar10.TARBALL
    with tarfile.open(tarball, "w:gz") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(UnsafeFileError, match="lacks cifar-10-batches-py"):
        cifar10.fetch(data_dir, urls=[], md5=file_digest(tarball, "md5"), log=quiet)
    assert sorted(p.name for p in data_dir.iterdir()) == [cifar10.TARBALL]  # temp folder removed


def test_extract_tar_refuses_path_traversal(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        for name in ("../escaped.txt", "/abs.txt"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeFileError, match="escaped.txt"):
        extract_tar(evil, dest)
    assert not (tmp_path / "escaped.txt").exists() and list(dest.iterdir()) == []


def test_download_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="copy it to"):
        download(["file:///nonexistent/x.bin"], tmp_path / "x.bin", log=quiet)
    with pytest.raises(UnsafeFileError, match="scheme"):
        download(["ftp://example.org/x.bin"], tmp_path / "x.bin", log=quiet)
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello")
    good = hashlib.sha256(b"hello").hexdigest()
    got = download([src.as_uri()], tmp_path / "x.bin", verify=checksum_verifier(good), log=quiet)
    assert got.read_bytes() == b"hello"
    with pytest.raises(UnsafeFileError, match="sha256"):
        download([src.as_uri()], tmp_path / "y.bin", verify=checksum_verifier("0" * 64), log=quiet)
    assert not (tmp_path / "y.bin").exists()


# ---------------------------------------------------------------------------------------------------
# MNIST: IDX files
# ---------------------------------------------------------------------------------------------------

def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()


def write_mnist(folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = True, seed: int = 0):
    g = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": g.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": g.integers(0, 10, n_train, dtype=np.uint8),
              "test_images": g.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": g.integers(0, 10, n_test, dtype=np.uint8)}
    for role, arr in arrays.items():
        name = mnist.FILES[role]
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(arr)))
        else:
            (folder / name).write_bytes(idx_bytes(arr))
    return arrays


@pytest.mark.parametrize("gz, sub", [(True, ""), (False, ""), (True, "mnist"), (False, "MNIST/raw")])
def test_mnist_idx_plain_and_gzip(tmp_path, gz, sub):
    arrays = write_mnist(tmp_path / sub if sub else tmp_path, gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.layout == "image" and ds.x_train.shape == (30, 1, 28, 28) and ds.x_test.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(ds.x_train[:, 0].numpy() * 255, arrays["train_images"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test.numpy(), arrays["test_labels"])
    assert ds.meta["official"] is False


@pytest.mark.parametrize("damage, match", [
    ("magic", "magic"), ("truncated", "truncated"), ("count", "labels"), ("label_range", "0..9"),
    ("gzip_truncated", "gzip"), ("side", r"\(28, 28\)"),
])
def test_mnist_damaged_files(tmp_path, damage, match):
    arrays = write_mnist(tmp_path, gz=False)
    images, labels = tmp_path / mnist.FILES["train_images"], tmp_path / mnist.FILES["train_labels"]
    if damage == "magic":  # labels where images belong
        images.write_bytes(idx_bytes(arrays["train_labels"]))
    elif damage == "truncated":
        images.write_bytes(images.read_bytes()[:-5])
    elif damage == "count":
        labels.write_bytes(idx_bytes(arrays["train_labels"][:-1]))
    elif damage == "label_range":
        labels.write_bytes(idx_bytes(np.full(30, 10, np.uint8)))
    elif damage == "gzip_truncated":
        images.unlink()
        (tmp_path / f"{images.name}.gz").write_bytes(gzip.compress(idx_bytes(arrays["train_images"]))[:-20])
    else:
        images.write_bytes(idx_bytes(np.zeros((30, 28, 27), np.uint8)))
    with pytest.raises(UnsafeFileError, match=match):
        load_dataset("mnist", tmp_path)


def test_mnist_missing(tmp_path):
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "mnist") in msg and f"rethinkgen data fetch mnist --data-dir {tmp_path}" in msg


@needs_real_mnist
def test_real_mnist():
    ds = load_dataset("mnist", REAL_MNIST)
    assert (ds.n_train, ds.n_test) == (60000, 10000)
    assert ds.meta["official"] is True
    assert ds.x_train.mean().item() * 255 == pytest.approx(33.318, abs=1e-3)
    assert torch.bincount(ds.y_train).tolist()[:2] == [5923, 6742]
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1


@needs_real_mnist
def test_mnist_fetch_from_mirrors_verifies_sha256(tmp_path):
    bad_mirror = tmp_path / "bad"
    write_mnist(bad_mirror)  # right names, wrong content
    data_dir = tmp_path / "data"
    with pytest.raises(UnsafeFileError, match="sha256"):
        mnist.fetch(data_dir, mirrors=[bad_mirror.as_uri() + "/"], log=quiet)
    folder = mnist.fetch(data_dir, mirrors=["file:///nonexistent/", REAL_MNIST.resolve().as_uri()], log=quiet)
    assert folder == data_dir / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.gz" for n in mnist.FILES.values())
    messages = []
    mnist.fetch(data_dir, mirrors=[], log=messages.append)  # present and verified: no download
    assert all("verified" in m for m in messages[:4])


# ---------------------------------------------------------------------------------------------------
# MNIST-1D (generated) and synthetic
# ---------------------------------------------------------------------------------------------------

def test_mnist1d_standard_set_and_cache(tmp_path):
    np_state = np.random.get_state()[1].copy()
    py_state = random.getstate()
    ds = load_dataset("mnist1d", tmp_path)
    assert np.array_equal(np.random.get_state()[1], np_state) and random.getstate() == py_state
    assert ds.layout == "signal" and ds.num_classes == 10
    assert ds.x_train.shape == (4000, 1, 40) and ds.x_test.shape == (1000, 1, 40)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert set(ds.y_train.tolist()) == set(range(10))
    assert ds.meta["generator_args"]["seed"] == 42 and ds.meta["from_cache"] is False
    cache = Path(ds.meta["cache"])
    assert cache.parent == tmp_path / "mnist1d" and cache.is_file()
    again = load_dataset("mnist1d", tmp_path)
    assert again.meta["from_cache"] is True
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)


def test_mnist1d_determinism_options_and_broken_cache(tmp_path):
    a = load_dataset("mnist1d", tmp_path / "a", n_samples=200)
    b = load_dataset("mnist1d", tmp_path / "b", n_samples=200)
    assert (a.n_train, a.n_test) == (160, 40)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    c = load_dataset("mnist1d", tmp_path / "a", n_samples=200, generator_seed=1)
    assert not torch.equal(a.x_train, c.x_train)
    Path(a.meta["cache"]).write_bytes(b"not an npz")  # damaged cache: regenerated, not an error
    d = load_dataset("mnist1d", tmp_path / "a", n_samples=200)
    assert d.meta["from_cache"] is False and torch.equal(d.x_train, a.x_train)
    blocker = tmp_path / "file"
    blocker.write_text("x")  # data_dir is a file: the cache cannot be written, loading still works
    assert load_dataset("mnist1d", blocker, n_samples=200).n_train == 160
    with pytest.raises(ConfigError, match="multiple of 10"):
        load_dataset("mnist1d", tmp_path, n_samples=55)


def _nearest_centroid_accuracy(ds) -> float:
    x, xt = ds.x_train.flatten(1), ds.x_test.flatten(1)
    centroids = torch.stack([x[ds.y_train == c].mean(0) for c in range(ds.num_classes)])
    return (torch.cdist(xt, centroids).argmin(1) == ds.y_test).float().mean().item()


@pytest.mark.parametrize("shape, layout", [((3, 32, 32), "image"), ((1, 40), "signal"), ((784,), "vector"),
                                           ("2x8x8", "image")])
def test_synthetic_shapes_and_learnable(shape, layout):
    ds = load_dataset("synthetic", shape=shape, seed=3)
    assert ds.layout == layout and (ds.n_train, ds.n_test) == (1000, 500) and ds.num_classes == 10
    if layout == "image":
        assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    counts = torch.bincount(ds.y_train, minlength=10)
    assert counts.min() > 50  # classes roughly balanced
    assert _nearest_centroid_accuracy(ds) > 0.5  # chance is 0.1


def test_synthetic_seeded_and_sizes():
    a = load_dataset("synthetic", shape=(20,), n_train=100, n_test=30, seed=1)
    b = load_dataset("synthetic", shape=(20,), n_train=100, n_test=30, seed=1)
    c = load_dataset("synthetic", shape=(20,), n_train=100, n_test=30, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert (a.n_train, a.n_test) == (100, 30)
    longer = load_dataset("synthetic", shape=(20,), n_train=150, n_test=30, seed=1)
    assert torch.equal(longer.x_train[:100], a.x_train) and torch.equal(longer.x_test, a.x_test)
    for bad in ({"shape": (0, 3)}, {"shape": "abc"}, {"noise": 1.5}, {"num_classes": 1},
                {"shape": (5,), "signal_dim": 6}):
        with pytest.raises(ConfigError):
            load_dataset("synthetic", **bad)


# ---------------------------------------------------------------------------------------------------
# npz: the user's arrays
# ---------------------------------------------------------------------------------------------------

def _save(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("shape, layout", [((8,), "vector"), ((2, 16), "signal"), ((3, 6, 6), "image")])
def test_npz_round_trip(tmp_path, shape, layout):
    g = np.random.default_rng(0)
    x, xt = g.random((12, *shape)).astype(np.float32), g.random((5, *shape)).astype(np.float32)
    y, yt = np.arange(12) % 4, np.array([0, 1, 2, 3, 3])
    path = _save(tmp_path / "d.npz", x=x, y=y, x_test=xt, y_test=yt)
    ds = load_dataset("npz", path=path)
    assert ds.layout == layout and ds.num_classes == 4 and ds.input_shape == shape
    np.testing.assert_array_equal(ds.x_train.numpy(), x)
    np.testing.assert_array_equal(ds.y_test.numpy(), yt)
    assert load_dataset("npz", path=path, num_classes=7).num_classes == 7
    assert load_dataset("npz", path="d.npz", data_dir=tmp_path).n_train == 12  # relative to data_dir
    assert load_dataset("npz", tmp_path / "d.npz").n_train == 12  # the file as data_dir


def test_npz_nhwc_uint8_images(tmp_path):
    g = np.random.default_rng(0)
    x = g.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    path = _save(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 1]), x_test=x[:2], y_test=np.array([0, 2]))
    ds = load_dataset("npz", path=path)
    assert ds.layout == "image" and ds.input_shape == (3, 5, 6)
    np.testing.assert_allclose(ds.x_train.numpy(), x.transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)


@pytest.mark.parametrize("case, error, match", [
    ("missing_key", ConfigError, r"missing arrays \['y_test'\]"),
    ("length", ConfigError, "5 rows but y has 4"),
    ("non_integer", ConfigError, "integer class indices"),
    ("negative", ConfigError, "negative"),
    ("num_classes", ConfigError, "above the largest label"),
    ("image_range", ConfigError, r"\[0, 1\]"),
    ("object", UnsafeFileError, "pickle"),
    ("one_hot", ConfigError, "argmax"),
    ("test_shape", ConfigError, "x_test inputs"),
])
def test_npz_errors(tmp_path, case, error, match):
    x, y = np.zeros((5, 3), np.float32), np.array([0, 1, 2, 0, 1])
    arrays = {"x": x, "y": y, "x_test": x[:2], "y_test": y[:2]}
    options = {}
    if case == "missing_key":
        del arrays["y_test"]
    elif case == "length":
        arrays["y"] = y[:4]
    elif case == "non_integer":
        arrays["y"] = y + 0.5
    elif case == "negative":
        arrays["y_test"] = np.array([0, -1])
    elif case == "num_classes":
        options["num_classes"] = 2
    elif case == "image_range":
        arrays["x"], arrays["x_test"] = np.full((5, 1, 2, 2), 3.0), np.zeros((2, 1, 2, 2))
    elif case == "object":
        arrays["y"] = np.array([0, 1, "a", None, 2], dtype=object)
    elif case == "one_hot":
        arrays["y"] = np.eye(3)[y]
    elif case == "test_shape":
        arrays["x_test"] = np.zeros((2, 4), np.float32)
    path = _save(tmp_path / "d.npz", **arrays)
    with pytest.raises(error, match=match):
        load_dataset("npz", path=path, **options)


def test_dataset_layout_without_loading(tmp_path):
    path = _save(tmp_path / "d.npz", x=np.zeros((3, 1, 7)), y=np.zeros(3, int), x_test=np.zeros((1, 1, 7)),
                 y_test=np.zeros(1, int))
    assert dataset_layout("npz", {"path": str(path)}) == "signal"
    assert dataset_layout("npz", {"path": "d.npz"}, tmp_path) == "signal"
    assert dataset_layout("synthetic", {"shape": [1, 40]}) == "signal"
    assert dataset_layout("synthetic", {"shape": "784"}) == "vector"
    assert dataset_layout("synthetic") == "image" and dataset_layout("mnist1d") == "signal"
    with pytest.raises(DatasetNotFoundError):
        dataset_layout("npz", {"path": str(tmp_path / "missing.npz")})


def test_npz_path_errors(tmp_path):
    with pytest.raises(ConfigError, match="path="):
        load_dataset("npz", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="nope.npz"):
        load_dataset("npz", path=tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="not a readable"):
        load_dataset("npz", path=tmp_path / "bad.npz")


# ---------------------------------------------------------------------------------------------------
# load_dataset: registry, options, subsets, directories
# ---------------------------------------------------------------------------------------------------

def test_unknown_name_and_option():
    with pytest.raises(UnknownNameError) as err:
        load_dataset("imagenet2")
    for name in ("cifar10", "mnist", "mnist1d", "synthetic", "npz"):
        assert name in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_dataset("synthetic", shap=(3,))
    assert "shap" in str(err.value)
    assert "valid options: noise, num_classes, shape, signal_dim" in str(err.value)
    with pytest.raises(ConfigError, match="valid options: cache, generator_seed, n_samples"):
        load_dataset("mnist1d", epochs=3)


def test_subsets_seeded_sorted_nested_and_bounded(tmp_path):
    write_cifar(tmp_path, rows=20)
    full = load_dataset("cifar10", tmp_path, strict=False)
    a = load_dataset("cifar10", tmp_path, n_train=30, n_test=7, seed=5, strict=False)
    b = load_dataset("cifar10", tmp_path, n_train=30, n_test=7, seed=5, strict=False)
    c = load_dataset("cifar10", tmp_path, n_train=30, n_test=7, seed=6, strict=False)
    assert (a.n_train, a.n_test) == (30, 7)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)

    def rows(sub, x_full):  # indices of the subset's rows in the full set
        flat = x_full.flatten(1)
        return [int((flat == r).all(1).nonzero()[0, 0]) for r in sub.flatten(1)]

    idx = rows(a.x_train, full.x_train)
    assert idx == sorted(idx) and len(set(idx)) == 30
    small = take_subset(full, 10, None, seed=5)
    assert set(rows(small.x_train, full.x_train)) <= set(idx)  # nested in the larger subset
    assert small.n_test == full.n_test
    assert a.meta["n_train_available"] == 100
    with pytest.raises(ConfigError, match="only 100 training samples"):
        load_dataset("cifar10", tmp_path, n_train=101, strict=False)
    with pytest.raises(ConfigError, match="n_test"):
        load_dataset("cifar10", tmp_path, n_test=0, strict=False)


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("RETHINKGEN_DATA", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    with pytest.raises(DatasetNotFoundError, match=f"--data-dir {tmp_path / 'd'}"):
        load_dataset("mnist")
    monkeypatch.delenv("RETHINKGEN_DATA")
    assert default_data_dir() == Path.home() / ".cache" / "rethinkgen"


def test_registry_and_listing():
    listing = {name: (layout, needs) for name, _, layout, needs in list_datasets()}
    assert listing == {"cifar10": ("image", True), "mnist": ("image", True), "mnist1d": ("signal", False),
                       "npz": ("any", True), "synthetic": ("image", False), "imagenet": ("image", True)}
    spec = DATASETS.get("cifar10")
    assert spec.crop == 28 and spec.standardize == "per_image"
    assert spec.defaults == {"epochs": 300, "lr_decay_every": 50000}
    assert DATASETS.get("mnist1d").defaults == {"lr": 0.1, "epochs": 300, "lr_decay_every": 50000}
    assert DATASETS.get("mnist1d").standardize == "per_feature"
    assert DATASETS.get("mnist").defaults == {"epochs": 100, "lr_decay_every": 60000}
    assert dataset_options("npz") == {"path": None, "num_classes": None}
    assert dataset_options("cifar10") == {"strict": True}


def test_fetch_generated_is_a_no_op(tmp_path):
    messages = []
    assert fetch_dataset("mnist1d", tmp_path, log=messages.append) == tmp_path
    assert "nothing to fetch" in messages[0]
    assert fetch_dataset("synthetic", tmp_path, log=quiet) == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_fetch_dataset_dispatches_with_log(tmp_path):
    src = tmp_path / "src"
    write_cifar(src, rows=4)
    data_dir = tmp_path / "data"
    shutil.copytree(src / cifar10.FOLDER, data_dir / cifar10.FOLDER)
    messages = []
    assert fetch_dataset("cifar10", data_dir, log=messages.append) == data_dir / cifar10.FOLDER
    assert "already complete" in messages[0]


def test_dataset_module_imports():
    assert synthetic.parse_shape("1x40") == (1, 40) and synthetic.parse_shape(784) == (784,)
    assert mnist1d.DEFAULT_N_SAMPLES == 5000
