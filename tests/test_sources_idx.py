"""MNIST and Fashion-MNIST from IDX files: parsing, checks, where they are looked for, verified fetching."""

from __future__ import annotations

import dataclasses
import gzip
import shutil

import numpy as np
import pytest
import torch

from data_files import REAL_FASHION, REAL_MNIST, idx_bytes, quiet, write_idx_set
from rethinkgen.data.sources import fashion_mnist, fetch_dataset, idx, load_dataset, mnist
from rethinkgen.errors import DatasetNotFoundError, UnsafeFileError

needs_real_mnist = pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"real MNIST not found at {REAL_MNIST}")
needs_real_fashion = pytest.mark.skipif(not REAL_FASHION.is_dir(),
                                        reason=f"real Fashion-MNIST not found at {REAL_FASHION}")


@pytest.fixture
def no_system_copy(monkeypatch, tmp_path):
    """Fashion-MNIST without the Debian folder (which may exist on the machine running the tests)."""
    monkeypatch.setattr(fashion_mnist, "SPEC", dataclasses.replace(fashion_mnist.SPEC,
                                                                   system_dirs=(str(tmp_path / "no-system"),)))


@pytest.mark.parametrize("gz, sub", [(True, ""), (False, ""), (True, "mnist"), (False, "MNIST/raw")])
def test_mnist_idx_plain_and_gzip(tmp_path, gz, sub):
    arrays = write_idx_set(tmp_path / sub if sub else tmp_path, gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.layout == "image" and ds.x_train.shape == (30, 1, 28, 28) and ds.x_test.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(ds.x_train[:, 0].numpy() * 255, arrays["train_images"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test.numpy(), arrays["test_labels"])
    assert ds.meta["official"] is False
    assert ds.meta["scaling"].startswith("uint8") and ds.meta["classes"] == [str(d) for d in range(10)]


def test_an_empty_split_is_refused_before_training(tmp_path):
    from rethinkgen.errors import ConfigError

    write_idx_set(tmp_path, n_test=0)  # a well-formed IDX file may declare 0 images
    with pytest.raises(ConfigError, match="mnist: the test set is empty"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("damage, match", [
    ("magic", "magic"), ("truncated", "truncated"), ("count", "labels"), ("label_range", "0..9"),
    ("gzip_truncated", "gzip"), ("side", r"\(28, 28\)"),
])
def test_mnist_damaged_files(tmp_path, damage, match):
    arrays = write_idx_set(tmp_path, gz=False)
    images, labels = tmp_path / idx.FILES["train_images"], tmp_path / idx.FILES["train_labels"]
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
    write_idx_set(tmp_path / "mnist")
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
    write_idx_set(bad_mirror)  # right names, wrong content
    data_dir = tmp_path / "data"
    with pytest.raises(UnsafeFileError, match="sha256"):
        mnist.fetch(data_dir, mirrors=[bad_mirror.as_uri() + "/"], log=quiet)
    folder = mnist.fetch(data_dir, mirrors=["file:///nonexistent/", REAL_MNIST.resolve().as_uri()], log=quiet)
    assert folder == data_dir / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.gz" for n in idx.FILES.values())
    messages = []
    mnist.fetch(data_dir, mirrors=[], log=messages.append)  # present and verified: no download
    assert "match the official SHA-256 sums" in messages[0] and messages[-1] == f"mnist: ready in {folder}"


def test_fetch_refuses_an_existing_copy_that_is_not_official(tmp_path):
    write_idx_set(tmp_path / "mnist")
    messages = []
    with pytest.raises(UnsafeFileError, match="sha256"):
        fetch_dataset("mnist", tmp_path, log=messages.append)
    assert not any("ready" in m for m in messages)


# ---------------------------------------------------------------------------------------------------
# Fashion-MNIST
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sub", ["", "fashion-mnist", "FashionMNIST/raw"])
def test_fashion_mnist_folders(tmp_path, sub, no_system_copy):
    arrays = write_idx_set(tmp_path / sub if sub else tmp_path, seed=3)
    ds = load_dataset("fashion_mnist", tmp_path)
    assert ds.name == "fashion_mnist" and ds.layout == "image" and ds.input_shape == (1, 28, 28)
    np.testing.assert_array_equal(ds.y_train.numpy(), arrays["train_labels"])
    assert ds.meta["official"] is False and ds.meta["classes"][0] == "T-shirt/top"


def test_fashion_mnist_missing_lists_every_place_and_the_fetch_command(tmp_path, monkeypatch, no_system_copy):
    monkeypatch.setenv("RETHINKGEN_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion_mnist", tmp_path / "mine")
    msg = str(err.value)
    for place in (tmp_path / "mine", tmp_path / "mine" / "fashion-mnist", tmp_path / "mine" / "FashionMNIST/raw"):
        assert str(place) in msg
    assert str(tmp_path / "no-system") in msg  # the system folder (Debian's, patched here) is looked at last
    assert f"rethinkgen data fetch fashion_mnist --data-dir {tmp_path / 'mine'}" in msg
    # $RETHINKGEN_DATA is where it looks without --data-dir
    write_idx_set(tmp_path / "env" / "fashion-mnist")
    assert load_dataset("fashion_mnist").n_train == 30


def test_fashion_mnist_found_in_the_system_folder(tmp_path, monkeypatch):
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    write_idx_set(system, seed=5)
    monkeypatch.setattr(fashion_mnist, "SPEC", dataclasses.replace(fashion_mnist.SPEC, system_dirs=(str(system),)))
    ds = load_dataset("fashion_mnist", tmp_path / "empty")
    assert ds.meta["path"] == str(system.resolve())


@needs_real_fashion
def test_real_fashion_mnist():
    ds = load_dataset("fashion_mnist", REAL_FASHION)
    assert (ds.n_train, ds.n_test) == (60000, 10000) and ds.meta["official"] is True
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10 and torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.x_train.mean().item() == pytest.approx(0.2860, abs=1e-4)  # the published mean


@needs_real_fashion
def test_fashion_mnist_fetch_verifies_downloads_and_existing_copies(tmp_path, no_system_copy):
    data_dir = tmp_path / "data"
    bad = tmp_path / "bad"
    write_idx_set(bad)  # the official names with other content
    with pytest.raises(UnsafeFileError, match="sha256"):
        fashion_mnist.fetch(data_dir, mirrors=[bad.as_uri() + "/"], log=quiet)
    assert not any((data_dir / "fashion-mnist").glob("*.gz"))  # nothing unverified left behind
    # the real files, as the official mirror serves them (gzip), through file:// URLs
    folder = fashion_mnist.fetch(data_dir, mirrors=["file:///nonexistent/", REAL_FASHION.resolve().as_uri()],
                                 log=quiet)
    assert folder == data_dir / "fashion-mnist" and load_dataset("fashion_mnist", data_dir).meta["official"]
    # a copy found elsewhere (e.g. plain, uncompressed) is verified, not downloaded
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in idx.FILES.values():
        (plain / name).write_bytes(gzip.decompress((REAL_FASHION / f"{name}.gz").read_bytes()))
    messages = []
    assert fetch_dataset("fashion_mnist", plain, log=messages.append) == plain
    assert "match the official SHA-256 sums" in messages[0]
    (plain / idx.FILES["test_labels"]).write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 4)
    with pytest.raises(UnsafeFileError, match="t10k-labels"):
        fetch_dataset("fashion_mnist", plain, log=quiet)
    shutil.rmtree(plain)
