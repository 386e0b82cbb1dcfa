"""Image folders (torchvision's ImageFolder layout): decoding as torchvision does, classes, sizes, the
tensor cache keyed by the tree, every corruption, training, and the errors that name the fix."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from data_files import write_image_tree
from rethinkgen.data.corruptions import CORRUPTIONS, apply_corruption
from rethinkgen.data.sources import dataset_layout, interface, load_dataset
from rethinkgen.errors import ConfigError, DatasetNotFoundError, UnsafeFileError


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "pets"
    return root, write_image_tree(root)


def test_a_jpeg_png_tree_loads_and_is_cached(tmp_path, tree):
    root, written = tree
    cache_dir = tmp_path / "cache"
    ds = load_dataset("folder", cache_dir, path=root, size=16)
    assert ds.layout == "image" and ds.x_train.shape == (24, 3, 16, 16) and ds.x_test.shape == (9, 3, 16, 16)
    assert ds.num_classes == 3 and ds.meta["classes"] == ["cat", "dog", "fish"]
    assert torch.bincount(ds.y_train).tolist() == [8, 8, 8] and torch.bincount(ds.y_test).tolist() == [3, 3, 3]
    assert ds.x_train.dtype == torch.float32 and 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0
    assert ds.meta["image_modes"] == {"L": 1, "RGB": 31, "RGBA": 1} and ds.meta["skipped_files"] == 1
    assert "1 L" in ds.meta["conversion"] and "1 RGBA (alpha dropped)" in ds.meta["conversion"]
    assert ds.meta["test_split"] == "val" and ds.meta["from_cache"] is False
    cache = ds.meta["cache"]
    assert os.path.dirname(cache) == str(cache_dir / "folder-cache") and os.path.isfile(cache)
    again = load_dataset("folder", cache_dir, path=root, size=16)
    assert again.meta["from_cache"] is True and again.meta["cache"] == cache
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)
    assert again.meta["conversion"] == ds.meta["conversion"]


def test_decoding_matches_torchvision_imagefolder(tmp_path, tree):
    from torchvision import datasets, transforms

    root, _ = tree
    ds = load_dataset("folder", tmp_path / "c", path=root, size=16, cache=False)
    reference = datasets.ImageFolder(str(root / "train"), transform=transforms.Compose(
        [transforms.Resize(16), transforms.CenterCrop(16), transforms.PILToTensor()]))
    assert reference.classes == ds.meta["classes"]
    for i in (0, 1, 8, 9, 23):  # includes the grayscale (0) and RGBA (8) files
        image, label = reference[i]
        assert torch.equal(ds.x_train[i], image.float() / 255) and ds.y_train[i] == label


def test_the_cache_follows_the_tree_and_the_options(tmp_path, tree):
    root, written = tree
    first = load_dataset("folder", tmp_path, path=root, size=12)
    assert load_dataset("folder", tmp_path, path=root, size=12).meta["from_cache"] is True
    assert load_dataset("folder", tmp_path, path=root, size=14).meta["from_cache"] is False  # another option
    Image.new("RGB", (20, 30), (10, 20, 30)).save(root / "train" / "dog" / "new.png")  # the tree changes
    grown = load_dataset("folder", tmp_path, path=root, size=12)
    assert grown.meta["from_cache"] is False and grown.n_train == first.n_train + 1
    stat = written["train"][3].stat()  # a file rewritten in place (same name): its size or mtime changes
    Image.new("RGB", (25, 25), (0, 0, 0)).save(written["train"][3])
    os.utime(written["train"][3], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = load_dataset("folder", tmp_path, path=root, size=12)
    assert changed.meta["from_cache"] is False and not torch.equal(changed.x_train[3], grown.x_train[3])
    # another version of a file copied over it with its size and times kept (`cp -p`; BMPs of one
    # size and mode have one byte count): only its ctime tells, and it must
    bmp = root / "train" / "dog" / "same-size.bmp"
    Image.new("RGB", (20, 20), (0, 0, 0)).save(bmp)
    before = load_dataset("folder", tmp_path, path=root, size=12)
    st = bmp.stat()
    Image.new("RGB", (20, 20), (255, 255, 255)).save(bmp)
    os.utime(bmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (bmp.stat().st_size, bmp.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    copied = load_dataset("folder", tmp_path, path=root, size=12)
    assert copied.meta["from_cache"] is False and not torch.equal(copied.x_train, before.x_train)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # an unwritable cache folder: loading still works
    assert load_dataset("folder", blocker, path=root, size=12).meta["from_cache"] is False


@pytest.mark.parametrize("name", CORRUPTIONS.names())
def test_every_corruption_applies(tmp_path, tree, name):
    root, _ = tree
    ds = load_dataset("folder", tmp_path, path=root, size=8)
    out = apply_corruption(ds, name, 0.5 if name == "partial_labels" else None, seed=1)
    x, y = out.dataset.x_train, out.dataset.y_train
    assert x.shape == ds.x_train.shape and torch.equal(out.dataset.y_test, ds.y_test)
    if name in ("shuffled_pixels", "random_pixels"):  # pixels (with their 3 channels) move over all 8x8 positions
        before = {tuple(p) for p in ds.x_train[0].reshape(3, -1).T.tolist()}
        after = {tuple(p) for p in x[0].reshape(3, -1).T.tolist()}
        assert before == after and not torch.equal(x, ds.x_train)
    elif CORRUPTIONS.get(name).target == "labels" and name != "true_labels":
        assert set(y.tolist()) <= {0, 1, 2}


def test_a_folder_dataset_trains(tmp_path, tree):
    from rethinkgen.train.config import TrainConfig
    from rethinkgen.train.loop import train

    root, _ = tree
    summary = train(TrainConfig(data="folder", data_dir=str(tmp_path), data_options={"path": str(root), "size": 8},
                                model="mlp_1x512", epochs=30, lr=0.05, batch_size=8, device="cpu", seed=0))
    assert summary["status"] == "converged" and summary["train_acc"] == 1.0
    assert summary["test_acc"] >= 8 / 9  # each class has its own colour
    data = summary["data"]
    assert data["classes"] == ["cat", "dog", "fish"] and data["class_counts_train"] == [8, 8, 8]
    assert data["input_shape"] == [3, 8, 8] and data["from_cache"] is False and os.path.isfile(data["cache"])


def test_grayscale_trees_give_one_channel_and_16_bit_files_keep_their_range(tmp_path):
    root = tmp_path / "gray"
    for split, n in (("train", 3), ("test", 1)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("L", (10, 12), 40 if c == "a" else 200).save(root / split / c / f"{i}.png")
    wide = np.full((12, 10), 51400, dtype=np.uint16)  # 0.784 of the 16-bit range
    Image.fromarray(wide).save(root / "train" / "b" / "deep.png")
    ds = load_dataset("folder", tmp_path, path=root, cache=False)
    assert ds.input_shape == (1, 12, 10) and ds.meta["test_split"] == "test"
    assert float(ds.x_train[3].mean()) == pytest.approx(200 / 255)  # sorted: a/0, a/1, a/2, b/0, ... b/deep
    assert float(ds.x_train[6].mean()) == pytest.approx((51400 >> 8) / 255)  # 16-bit: the high byte, not clipped
    rgb = load_dataset("folder", tmp_path, path=root, channels="rgb", cache=False)
    assert rgb.input_shape == (3, 12, 10) and torch.equal(rgb.x_train[:, 1], ds.x_train[:, 0])


def _gray_tree(root, deep_files):
    """Two classes of 8-bit grey PNGs in train/ and test/, plus ``deep_files``: (split, class, name, uint16
    array) saved as 16-bit PNGs."""
    for split, n in (("train", 2), ("test", 1)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("L", (10, 12), 40 if c == "a" else 200).save(root / split / c / f"{i}.png")
    for split, c, name, values in deep_files:
        Image.fromarray(values).save(root / split / c / name)
    return root


def test_8_bit_values_saved_in_16_bit_files_are_read_as_8_bit(tmp_path):
    """A 16-bit PNG whose values are 0..255 (8-bit data in a 16-bit container, as some pipelines save
    it) decodes to the same pixels as the 8-bit PNG of those values; its high byte would be all zeros."""
    ramp = np.arange(120, dtype=np.uint16).reshape(12, 10) * 2  # 0 .. 238
    root = _gray_tree(tmp_path / "g", [("train", "b", "x16.png", ramp), ("test", "b", "y16.png", ramp)])
    Image.fromarray(ramp.astype(np.uint8)).save(root / "train" / "a" / "x8.png")
    ds = load_dataset("folder", tmp_path, path=root, cache=False)
    in_a = sorted(p.name for p in (root / "train" / "a").iterdir())  # files in class order, sorted by name
    in_b = sorted(p.name for p in (root / "train" / "b").iterdir())
    eight, sixteen = ds.x_train[in_a.index("x8.png")], ds.x_train[len(in_a) + in_b.index("x16.png")]
    assert float(sixteen.max()) == pytest.approx(238 / 255) and torch.equal(sixteen, eight)


def test_a_set_mixing_16_bit_range_and_8_bit_values_in_16_bit_files_is_refused(tmp_path):
    """No one rule reads both kinds right (the train split has a 16-bit-range file, the test split one
    with 8-bit values): refused naming one file of each and the fix."""
    deep = np.full((12, 10), 51400, dtype=np.uint16)
    shallow = np.full((12, 10), 200, dtype=np.uint16)
    root = _gray_tree(tmp_path / "g", [("train", "a", "deep.png", deep), ("test", "b", "shallow.png", shallow)])
    with pytest.raises(ConfigError, match=r"deep\.png uses the 16-bit range.*shallow\.png holds no value above "
                                          r"255.*one bit depth"):
        load_dataset("folder", tmp_path, path=root, cache=False)


@pytest.mark.parametrize("fit, size, shape", [("resize", "9x13", (3, 9, 13)), ("crop", 64, (3, 64, 64)),
                                              ("resize_crop", [10, 20], (3, 10, 20))])
def test_fit_modes(tmp_path, tree, fit, size, shape):
    root, _ = tree
    ds = load_dataset("folder", tmp_path, path=root, size=size, fit=fit, cache=False)
    assert ds.input_shape == shape
    if fit == "crop":  # images smaller than 64x64 are centre-padded with zeros, as CenterCrop pads
        assert float(ds.x_train[:, :, 0, :].max()) == 0.0


def test_errors_name_the_fix(tmp_path, tree):
    root, written = tree
    with pytest.raises(ConfigError, match=r"different sizes .* size=32"):
        load_dataset("folder", tmp_path, path=root)
    with interface("cli"), pytest.raises(ConfigError, match="--data-option size=32"):
        load_dataset("folder", tmp_path, path=root)
    with interface("cli"), pytest.raises(ConfigError, match="--data-option path=ROOT"):
        load_dataset("folder", tmp_path)
    (root / "test" / "cat").mkdir(parents=True)
    with pytest.raises(ConfigError, match="both val/ and test/.*test_split='val'"):
        dataset_layout("folder", {"path": str(root), "size": 8})
    assert load_dataset("folder", tmp_path, path=root, size=8, test_split="val").n_test == 9
    (root / "test" / "cat").rmdir()
    (root / "test").rmdir()
    (root / "val" / "bird").mkdir()
    Image.new("RGB", (8, 8)).save(root / "val" / "bird" / "0.png")
    with pytest.raises(ConfigError, match="bird .* no training folder"):
        load_dataset("folder", tmp_path, path=root, size=8)
    (root / "val" / "bird" / "0.png").unlink()
    (root / "val" / "bird").rmdir()
    written["train"][5].write_bytes(b"not a jpeg at all")
    with pytest.raises(UnsafeFileError, match=written["train"][5].name):
        load_dataset("folder", tmp_path, path=root, size=8, cache=False)
    (root / "train" / "eel").mkdir()
    with pytest.raises(ConfigError, match="eel .* hold no images"):
        dataset_layout("folder", {"path": str(root), "size": 8})
    with pytest.raises(ConfigError, match="fit must be one of"):
        load_dataset("folder", tmp_path, path=root, size=8, fit="squash")


def test_layout_errors_say_what_the_tree_must_look_like(tmp_path):
    flat = tmp_path / "flat"
    for c in ("cat", "dog"):
        (flat / c).mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="it holds cat, dog: if those are class folders, move them into "
                                                   "ROOT/train/"):
        load_dataset("folder", tmp_path, path=flat)
    (flat / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(flat / "train" / "cat" / "0.png")
    with pytest.raises(DatasetNotFoundError, match="no val/ or test/"):
        load_dataset("folder", tmp_path, path=flat)
    (flat / "val" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(flat / "val" / "cat" / "0.png")
    with pytest.raises(ConfigError, match="single class"):
        load_dataset("folder", tmp_path, path=flat)
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        load_dataset("folder", tmp_path, path=tmp_path / "missing")


def test_links_that_would_repeat_or_lose_images_are_refused_by_name(tmp_path, tree):
    root, written = tree
    loop = root / "train" / "cat" / "again"
    loop.symlink_to(root / "train" / "cat")  # os.walk(followlinks=True) went round it ~40 times
    with pytest.raises(ConfigError, match=r"cat/again is the folder .*cat again .*counted twice"):
        dataset_layout("folder", {"path": str(root), "size": 8})
    loop.unlink()
    shortcut = root / "train" / "dog" / "cats"  # another class's folder: its images under two labels
    shortcut.symlink_to(root / "train" / "cat")
    with pytest.raises(ConfigError, match="dog/cats is the folder .*cat again"):
        load_dataset("folder", tmp_path, path=root, size=8)
    shortcut.unlink()
    dead = root / "train" / "dog" / "gone.png"
    dead.symlink_to(tmp_path / "nowhere.png")  # was a FileNotFoundError traceback from the cache key
    with pytest.raises(ConfigError, match="gone.png is a link to .*nowhere.png, which does not exist"):
        load_dataset("folder", tmp_path, path=root, size=8)
    dead.unlink()
    elsewhere = tmp_path / "fish_elsewhere"  # a class folder that is a link to another disk is fine
    (root / "train" / "fish").rename(elsewhere)
    (root / "train" / "fish").symlink_to(elsewhere)
    assert load_dataset("folder", tmp_path, path=root, size=8, cache=False).n_train == 24


def test_an_image_that_cannot_be_converted_is_named(tmp_path, tree):
    root, _ = tree
    path = root / "train" / "cat" / "float.tif"
    Image.fromarray(np.zeros((20, 20), np.float32), "F").save(path)
    with pytest.raises(UnsafeFileError, match=r"float\.tif: 32-bit float images are not supported"):
        load_dataset("folder", tmp_path, path=root, size=8, cache=False)


def test_the_cache_is_readable_as_the_users_files_and_a_failed_write_is_ignored(tmp_path, tree, monkeypatch):
    from rethinkgen.data.sources import folder

    root, _ = tree
    old = os.umask(0o022)
    try:
        ds = load_dataset("folder", tmp_path, path=root, size=8)
    finally:
        os.umask(old)
    assert os.stat(ds.meta["cache"]).st_mode & 0o777 == 0o644  # mkstemp made it 0o600: others could not read it

    def disk_full(*args, **kwargs):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(folder.torch, "save", disk_full)
    again = load_dataset("folder", tmp_path, path=root, size=9)
    assert again.meta["from_cache"] is False and again.input_shape == (3, 9, 9)
    assert not [p for p in (tmp_path / "folder-cache").iterdir() if p.name.endswith(".tmp")]


def test_a_test_folder_named_otherwise_is_pointed_to(tmp_path, tree):
    root, _ = tree
    (root / "val").rename(root / "validation")  # the message named no option that loads it
    with interface("cli"), pytest.raises(DatasetNotFoundError, match="--data-option test_split=validation"):
        load_dataset("folder", tmp_path, path=root, size=8)
    assert load_dataset("folder", tmp_path, path=root, size=8, test_split="validation", cache=False).n_test == 9
