"""Tests of rethinkgen.data.sources as a whole: the registry, options, subsets, data folders, downloads,
and the generated sets (MNIST-1D, synthetic). Each file format has its own test file (test_sources_*.py)."""

from __future__ import annotations

import hashlib
import io
import random
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from data_files import quiet, write_cifar
from rethinkgen.data.sources import (
    DATASETS,
    cifar10,
    dataset_layout,
    dataset_options,
    default_data_dir,
    fetch_dataset,
    list_datasets,
    load_dataset,
    mnist1d,
    synthetic,
    take_subset,
)
from rethinkgen.data.sources.download import checksum_verifier, download, extract_tar
from rethinkgen.errors import ConfigError, DatasetNotFoundError, UnknownNameError, UnsafeFileError


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
# load_dataset: registry, options, subsets, directories
# ---------------------------------------------------------------------------------------------------

def test_unknown_name_and_option():
    with pytest.raises(UnknownNameError) as err:
        load_dataset("imagenet2")
    for name in ("cifar10", "fashion_mnist", "folder", "mnist", "mnist1d", "synthetic", "npz"):
        assert name in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_dataset("synthetic", shap=(3,))
    assert "shap" in str(err.value)
    assert "valid options: noise, num_classes, shape, signal_dim" in str(err.value)
    with pytest.raises(ConfigError, match="valid options: cache, generator_seed, n_samples"):
        load_dataset("mnist1d", epochs=3)
    with pytest.raises(ConfigError, match="unknown option layuot for dataset 'npz'"):  # checked before any file
        dataset_layout("npz", {"path": "/nonexistent.npz", "layuot": "NHWC"})


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
    assert listing == {"cifar10": ("image", True), "fashion_mnist": ("image", True), "folder": ("image", True),
                       "mnist": ("image", True), "mnist1d": ("signal", False), "npz": ("any", True),
                       "synthetic": ("image", False)}
    spec = DATASETS.get("cifar10")
    assert spec.crop == 28 and spec.standardize == "per_image"
    assert spec.defaults == {"epochs": 300, "lr_decay_every": 50000}
    assert DATASETS.get("mnist1d").defaults == {"lr": 0.1, "epochs": 300, "lr_decay_every": 50000}
    assert DATASETS.get("mnist1d").standardize == "per_feature"
    assert DATASETS.get("mnist").defaults == {"epochs": 100, "lr_decay_every": 60000}
    assert DATASETS.get("fashion_mnist").defaults == {"epochs": 100, "lr_decay_every": 60000}
    assert dataset_options("npz") == {"path": None, "layout": None, "scale": None, "num_classes": None}
    assert dataset_options("cifar10") == {"strict": True}
    assert dataset_options("folder") == {"path": None, "size": None, "fit": "resize_crop", "channels": "auto",
                                         "test_split": None, "cache": True, "workers": None}


def test_fetch_generated_is_a_no_op(tmp_path):
    messages = []
    assert fetch_dataset("mnist1d", tmp_path, log=messages.append) == tmp_path
    assert "nothing to fetch" in messages[0]
    assert fetch_dataset("synthetic", tmp_path, log=quiet) == tmp_path
    assert fetch_dataset("folder", tmp_path, log=messages.append) == tmp_path
    assert "your own files" in messages[-1]
    assert list(tmp_path.iterdir()) == []


def test_fetch_dataset_dispatches_with_log(tmp_path):
    src = tmp_path / "src"
    write_cifar(src, rows=4)
    data_dir = tmp_path / "data"
    shutil.copytree(src / cifar10.FOLDER, data_dir / cifar10.FOLDER)
    messages = []
    assert fetch_dataset("cifar10", data_dir, log=messages.append) == data_dir / cifar10.FOLDER
    assert "read in full with the safe loader" in messages[-2] and "ready" in messages[-1]


def test_dataset_module_imports():
    assert synthetic.parse_shape("1x40") == (1, 40) and synthetic.parse_shape(784) == (784,)
    assert mnist1d.DEFAULT_N_SAMPLES == 5000
