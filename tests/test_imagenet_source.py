"""The ``imagenet`` source and its streamed pipeline on generated JPEG trees in both real layouts (torchvision's
ImageNet root with the three archives; a plain train/<wnid>, val/<wnid> tree). CPU only; exact comparisons."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import imagenet_files as files
import rethinkgen
from rethinkgen.data.sources import DATASETS, load_dataset
from rethinkgen.data.sources.folder import scan_split
from rethinkgen.data.sources.imagenet import index
from rethinkgen.data.stream.labels import draw_labels
from rethinkgen.data.stream.loader import EpochOrder, Shard, StreamedImages, decode_rgb, make_loader
from rethinkgen.data.stream.transforms import ImageTransform, eval_resize, model_input
from rethinkgen.errors import ConfigError, DatasetNotFoundError

CLASSES = files.WNIDS
SRC = Path(rethinkgen.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return files.plain_tree(tmp_path_factory.mktemp("plain"))


@pytest.fixture
def archives(tmp_path, monkeypatch):
    md5 = files.torchvision_root(tmp_path / "ilsvrc")
    files.patch_md5(monkeypatch, md5)
    return tmp_path / "ilsvrc"


def test_plain_tree_loads_in_imagefolder_order(plain):
    splits = index(plain)
    assert splits.layout == "folders" and splits.classes == CLASSES and splits.num_classes == 4
    assert (len(splits.train), len(splits.test)) == (24, 12)
    assert splits.train.targets.tolist() == [c for c in range(4) for _ in range(6)]
    assert splits.test.targets.tolist() == [c for c in range(4) for _ in range(3)]
    assert splits.train.path(0).endswith("train/n01440764/n01440764_0.JPEG")
    assert splits.meta["layout"] == "folders" and splits.meta["n_train_available"] == 24


def test_torchvision_root_is_parsed_and_extracted_by_torchvision(archives):
    splits = index(archives)  # torchvision verifies the MD5s, reads meta.mat, extracts and sorts val/
    assert splits.layout == "torchvision" and splits.classes == CLASSES
    assert splits.class_names == ("tench", "goldfish", "great white shark", "tiger shark")  # non-leaf synset skipped
    assert (archives / "meta.bin").is_file() and (archives / "train" / CLASSES[0]).is_dir()
    assert splits.train.targets.tolist() == [c for c in range(4) for _ in range(6)]
    # each validation image carries the devkit's label for its file (sorted file names, as torchvision)
    truth = files.val_labels_of(archives)
    for path, target in zip(splits.test.files, splits.test.targets, strict=True):
        number = int(path.decode().split("_")[-1].split(".")[0])  # ILSVRC2012_val_000000NN.JPEG
        assert target == truth[number - 1]
    again = index(archives)  # extracted: read from the folders without the archives' work
    assert np.array_equal(again.test.targets, splits.test.targets)


def test_a_validation_folder_extracted_by_hand_is_labelled_from_the_devkit(archives):
    import shutil
    import tarfile

    (archives / "ILSVRC2012_img_val.tar").rename(archives / "val.tar")
    with tarfile.open(archives / "val.tar") as tar:
        tar.extractall(archives / "val", filter="data")  # flat: 12 images, no class folders
    splits = index(archives)
    truth = files.val_labels_of(archives)
    assert splits.test.targets.tolist() == truth  # sorted file names = archive order
    assert all(b"/" not in p.split(b"val/", 1)[1] for p in splits.test.files)  # no file was moved
    shutil.rmtree(archives / "val")


def test_missing_parts_are_named(tmp_path, archives):
    with pytest.raises(DatasetNotFoundError, match="no ILSVRC-2012 copy .*image-net.org"):
        index(tmp_path / "nothing")
    (archives / "ILSVRC2012_img_val.tar").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"lacks ILSVRC2012_img_val.tar \(or its extracted val/ folder\)"):
        index(archives)
    (archives / "ILSVRC2012_devkit_t12.tar.gz").unlink()
    (archives / "ILSVRC2012_img_train.tar").unlink()
    with pytest.raises(DatasetNotFoundError):
        index(archives)


def test_fetch_checks_the_local_copy_and_never_downloads(plain, tmp_path):
    """`rethinkgen data fetch imagenet` on a complete copy says where it is found (exit 0), and on a folder
    without one names what it looked for and how to obtain ImageNet (exit 2), downloading nothing."""
    from typer.testing import CliRunner

    from rethinkgen import cli
    from rethinkgen.data.sources import fetch_dataset

    said = []
    assert fetch_dataset("imagenet", plain, log=said.append) == plain
    assert len(said) == 1 and str(plain) in said[0] and "train/ and val/ class folders" in said[0]
    result = CliRunner().invoke(cli.app, ["data", "fetch", "imagenet", "--data-dir", str(plain)])
    assert result.exit_code == 0, result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError, match="no ILSVRC-2012 copy in .*image-net.org"):
        fetch_dataset("imagenet", empty, log=said.append)
    result = CliRunner().invoke(cli.app, ["data", "fetch", "imagenet", "--data-dir", str(empty)])
    assert result.exit_code == 2 and "ILSVRC2012_img_train.tar" in result.output
    assert list(empty.iterdir()) == []


def test_plain_tree_errors(tmp_path):
    tree = files.plain_tree(tmp_path / "t", n_train=2, n_val=1)
    (tree / "val" / "n09999999").mkdir()
    (tree / "val" / "n09999999" / "x.JPEG").write_bytes(files.image_bytes(0, 0))
    with pytest.raises(ConfigError, match="n09999999 have no training folder"):
        index(tree)
    flat = files.plain_tree(tmp_path / "f", n_train=2, n_val=0)
    import shutil

    shutil.rmtree(flat / "val")
    (flat / "val").mkdir()
    (flat / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(files.image_bytes(0, 0))
    with pytest.raises(ConfigError, match="no class folders, so their labels are unknown"):
        index(flat)


def test_a_class_folder_without_images_is_refused_in_both_layouts_before_anything_is_read(tmp_path, archives):
    """An empty class folder was silently skipped (every later class renumbered, 3 classes instead of 4) in a
    plain tree, and raised torchvision's bare FileNotFoundError in an extracted torchvision root."""
    import shutil

    from rethinkgen.data.sources.imagenet import locate

    tree = files.plain_tree(tmp_path / "t", n_train=2, n_val=1)
    shutil.rmtree(tree / "train" / CLASSES[1])
    (tree / "train" / CLASSES[1]).mkdir()
    shutil.rmtree(tree / "val" / CLASSES[1])  # the case that trained on 3 classes without a word
    for check in (index, locate):  # locate: the check a sweep makes before it starts
        with pytest.raises(ConfigError, match=f"train/{CLASSES[1]} in .* hold no images"):
            check(tree)
    (tree / "train" / CLASSES[1] / "a.JPEG").write_bytes(files.image_bytes(1, 0))
    (tree / "val" / CLASSES[2] / "notes.txt").write_text("not an image")
    for path in (tree / "val" / CLASSES[2]).glob("*.JPEG"):
        path.unlink()
    with pytest.raises(ConfigError, match=f"val/{CLASSES[2]} in .* hold no images"):
        index(tree)
    index(archives)  # extracts train/ and val/ with torchvision
    for path in (archives / "train" / CLASSES[3]).iterdir():
        path.unlink()
    with pytest.raises(ConfigError, match=f"train/{CLASSES[3]} in .* hold no images"):
        index(archives)


def test_images_beside_the_class_folders_are_refused_not_left_out(tmp_path):
    """A validation folder half sorted into val/<wnid>/ (a sort script that did not finish): the images still
    lying in val/ were silently left out of the test set (ImageFolder reads class folders only). CPU."""
    tree = files.plain_tree(tmp_path / "t", n_train=2, n_val=2)
    for path in (tree / "val" / CLASSES[3]).iterdir():
        path.rename(tree / "val" / path.name)
    (tree / "val" / CLASSES[3]).rmdir()
    with pytest.raises(ConfigError, match=r"val holds 2 image\(s\) beside its class folders"):
        index(tree)


def test_an_image_that_cannot_be_decoded_in_a_worker_is_named_in_one_line(tmp_path):
    """A truncated JPEG decoded by a DataLoader worker surfaced as the DataLoader's "Caught UnsafeFileError in
    DataLoader worker process 0. Original Traceback ..." dump; the error is now the worker's own, naming the
    file. CPU, 1 worker."""
    from rethinkgen.errors import UnsafeFileError
    from rethinkgen.train.loop import train

    tree = files.plain_tree(tmp_path / "t", n_train=2, n_val=1)
    bad = tree / "train" / CLASSES[1] / f"{CLASSES[1]}_0.JPEG"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated
    with pytest.raises(UnsafeFileError) as caught:
        train(data="imagenet", data_dir=str(tree), model="mlp_1x512", crop=16, epochs=1, batch_size=4,
              device="cpu", workers=1)
    message = str(caught.value)
    assert message.startswith(f"{bad}: cannot decode this image") and "\n" not in message, message


def test_a_crop_the_model_cannot_take_is_refused_before_the_data_is_indexed(tmp_path):
    """Inception V3 with --crop 75 used to index the whole tree (minutes for ImageNet's 1.28 million files),
    create the run folder and then fail in the model builder. Now resolve_config (which the CLI and a sweep
    call before anything else) refuses it; tmp_path holds no data, so nothing was read. CPU."""
    from rethinkgen.train.config import TrainConfig
    from rethinkgen.train.resolve import resolve_config

    with pytest.raises(ConfigError, match="inception_v3' needs images of at least 299×299 pixels, got 75×75"):
        resolve_config(TrainConfig(data="imagenet", data_dir=str(tmp_path), model="inception_v3", crop=75))
    resolve_config(TrainConfig(data="imagenet", data_dir=str(tmp_path), model="resnet50", crop=75))  # >= 32: fine


def test_data_fetch_verifies_and_extracts_a_copy_once_so_several_processes_need_not(tmp_path, archives):
    """A run of several processes let rank 0 extract the archives for hours while the other ranks waited
    beyond the process group's timeout. Now `rethinkgen data fetch imagenet` verifies and extracts (it only
    looked at the layout), and a multi-process run refuses archives that are not extracted, naming that
    command, before torchrun (or a sweep) starts. CPU."""
    import subprocess
    import sys

    from rethinkgen.data.sources import fetch_dataset
    from rethinkgen.data.sources.imagenet import locate

    with pytest.raises(ConfigError, match="not extracted yet.*rethinkgen data fetch imagenet --data-dir"):
        locate(archives, extracted=True)
    launch = subprocess.run([sys.executable, "-m", "rethinkgen", "train", "--nproc-per-node", "2", "--data", "imagenet",
                             "--data-dir", str(archives), "--model", "mlp_1x512", "--crop", "16", "--out",
                             str(tmp_path / "run")], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(SRC)})
    assert launch.returncode != 0 and "are not extracted yet" in launch.stderr, launch.stderr[-2000:]
    assert "torch.distributed" not in launch.stderr and not (tmp_path / "run").exists()  # before torchrun
    from rethinkgen.sweep.runner import run_sweep
    from rethinkgen.sweep.spec import parse_spec
    from rethinkgen.sweep.store import Store

    spec = parse_spec(f"""
name = "two-ranks"
[defaults]
data = "imagenet"
data_dir = "{archives}"
model = "mlp_1x512"
crop = 16
batch_size = 8
device = "cpu"
world_size = 2
""")
    with pytest.raises(DatasetNotFoundError, match="nothing was started(.|\\n)*are not extracted yet"):
        run_sweep(spec, tmp_path / "s.db")
    with Store.open(tmp_path / "s.db") as store:
        assert store.runs() == []
    logged = []
    assert fetch_dataset("imagenet", archives, log=logged.append) == archives
    assert logged == [f"imagenet: local copy found in {archives} (torchvision's ImageNet root): 4 classes, 24 "
                      "training and 12 validation images; nothing is downloaded"]
    assert (archives / "train" / CLASSES[0]).is_dir() and locate(archives, extracted=True) == archives


def test_data_inspect_describes_imagenet_from_its_file_lists(plain):
    """`rethinkgen data inspect imagenet` refused ("cannot be loaded into memory"), though it is the command
    that shows the layout found, the classes and their counts before a week of training. CPU."""
    import json

    from typer.testing import CliRunner

    from rethinkgen import cli

    result = CliRunner().invoke(cli.app, ["data", "inspect", "imagenet", "--data-dir", str(plain), "--json",
                                          "--n-train", "20"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert (info["num_classes"], info["n_train"], info["n_test"]) == (4, 20, 12)
    assert info["classes"] == list(CLASSES) and info["layout_found"] == "folders layout"
    assert sum(info["class_counts_train"]) == 20 and info["class_counts_test"] == [3, 3, 3, 3]
    assert info["input_shape"] == [3, 299, 299] and info["subset"]["n_train_available"] == 24
    assert "299x299 = 89,401 pixel positions" in info["effects"]["shuffled_pixels"]


def test_train_names_missing_data_before_it_makes_the_run_folder(tmp_path):
    """`rethinkgen train` on a tree without val/ made the run folder, wrote a "failed" summary and said "what
    was done is saved ... --resume retries from there" (nothing was done; a resume fails again). CPU."""
    import shutil

    from typer.testing import CliRunner

    from rethinkgen import cli

    tree = files.plain_tree(tmp_path / "t", n_train=1, n_val=1)
    shutil.rmtree(tree / "val")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli.app, ["train", "--data", "imagenet", "--data-dir", str(tree), "--model",
                                          "mlp_1x512", "--crop", "16", "--out", str(out), "--quiet"])
    assert result.exit_code != 0 and "has train/ but no val/ folder" in result.output
    assert "--resume" not in result.output and not out.exists()


def test_a_last_batch_of_one_image_the_model_cannot_train_on_is_refused_before_training(plain, tmp_path):
    """9 images in batches of 4 leave a last batch of 1; ResNet-18 on 8-pixel crops normalises a 1x1 map
    there (Inception V3's auxiliary head does at 299), and the run failed with BatchNorm's "Expected more
    than 1 value per channel" after the epoch's work. CPU; shapes checked on the meta device."""
    from rethinkgen.train.last_batch import check_last_batch
    from rethinkgen.train.loop import train

    run = dict(data="imagenet", data_dir=str(plain), model="resnet18", crop=8, n_test=4, epochs=1, device="cpu",
               workers=0)
    with pytest.raises(ConfigError, match=r"last minibatch .* 1 sample \(9 samples in batches of 4\).*--batch-size 5"):
        train(**run, n_train=9, batch_size=4)
    from typer.testing import CliRunner

    from rethinkgen import cli

    result = CliRunner().invoke(cli.app, ["train", "--data", "imagenet", "--data-dir", str(plain), "--model",
                                          "resnet18", "--crop", "8", "--n-train", "9", "--batch-size", "4",
                                          "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "nothing was trained; fix what the error below names" in result.output
    assert "--resume" not in result.output  # a resume would fail the same way
    assert train(**run, n_train=10, batch_size=4)["status"] == "max_epochs"  # last batch of 2: trains
    check_last_batch("mlp_1x512", (3, 8, 8), 4, 0.0, "image", 9, 4)  # no BatchNorm: one sample is fine
    # 2 processes: ceil(9 / 2) = 5 images each in batches of 8 / 2 = 4 -> 1 left on each
    with pytest.raises(ConfigError, match="on each of the 2 processes .*--batch-size 10"):
        check_last_batch("resnet18", (3, 8, 8), 4, 0.0, "image", 9, 8, processes=2)


def test_the_source_is_registered_and_never_loads_into_memory(plain):
    spec = DATASETS.get("imagenet")
    assert spec.index is not None and spec.crop == 299 and spec.standardize == "inception"
    with pytest.raises(ConfigError, match="streams"):
        load_dataset("imagenet", plain)
    sub = index(plain, seed=3, n_train=10, n_test=5)
    assert len(sub.train) == 10 and len(sub.test) == 5
    assert np.array_equal(index(plain, seed=3, n_train=10).train.files, sub.train.files)  # seeded


def test_decode_rgb_converts_gray_cmyk_and_png_named_jpeg(plain):
    split = scan_split(plain / "train")
    assert split.classes == CLASSES and split.skipped == 0 and len(split.files) == 24
    for path in split.files:
        image = decode_rgb(path)
        assert image.dtype == torch.uint8 and image.shape[0] == 3 and image.shape[1] in (33, 40, 50, 64, 90)
    gray = decode_rgb(plain / "train" / CLASSES[0] / f"{CLASSES[0]}_1.JPEG")  # saved as grayscale JPEG
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_transforms_give_the_training_resolution_and_seed_each_image(plain):
    t = ImageTransform(size=24, resize=eval_resize(24), augment=True, flip=True, augment_seed=5)
    assert t.resize == 27  # round(24 / 0.875)
    image = decode_rgb(index(plain).train.path(3))
    a, b = t.training(image, epoch=1, index=3), t.training(image, epoch=1, index=3)
    assert a.shape == (3, 24, 24) and torch.equal(a, b)  # per (epoch, image): the same crop wherever decoded
    assert any(not torch.equal(a, t.training(image, epoch=e, index=3)) for e in (2, 3, 4))  # new crops per epoch
    state = torch.random.get_rng_state()
    t.training(image, 1, 3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is left alone
    plain_t = ImageTransform(24, 27, augment=False, flip=False, augment_seed=5)
    assert torch.equal(plain_t.training(image, 1, 3), plain_t.evaluation(image))  # "no augmentation" ablation
    x = model_input(torch.stack([a, b]), torch.device("cpu"), "inception", channels_last=True)
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(x, a.float()[None] / 127.5 - 1, atol=1e-6)


def _labels_seen(data, sampler, workers, epochs):
    out = []
    for epoch in epochs:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        seen = {}
        for _, y, i in make_loader(data, sampler, batch_size=5, workers=workers):
            seen.update(zip(i.tolist(), y.tolist(), strict=True))
        out.append(seen)
    return out


def test_random_labels_are_the_same_in_every_epoch_and_both_workers(plain):
    splits = index(plain)
    labels = draw_labels(splits.train.targets, 4, "random_labels", None, seed=11)
    t = ImageTransform(16, 18, augment=True, flip=True, augment_seed=1)
    data = StreamedImages(splits.train, labels.labels, "train", t, train_mode=True)
    order = EpochOrder(len(data), 1, 0, order_seed=9)
    by_epoch = _labels_seen(data, order, workers=2, epochs=[1, 2])
    expected = dict(enumerate(labels.labels.tolist()))
    assert by_epoch[0] == by_epoch[1] == expected  # every image, its drawn label, in each epoch
    assert labels.realized_noise_rate > 0.5  # they are not the true labels
    # two ranks: disjoint shares that cover the set, each image with the same label
    shares = [_labels_seen(data, EpochOrder(len(data), 2, r, 9), workers=0, epochs=[1])[0] for r in (0, 1)]
    assert not set(shares[0]) & set(shares[1]) and {**shares[0], **shares[1]} == expected
    test = StreamedImages(splits.test, splits.test.targets, "test", t, train_mode=False)
    assert _labels_seen(test, Shard(len(test)), 0, [0])[0] == dict(enumerate(splits.test.targets.tolist()))


def test_epoch_order_is_seeded_set_per_epoch_and_split_like_distributed_sampler():
    one = EpochOrder(10, 1, 0, order_seed=4)
    one.set_epoch(1)
    first = [i for i, _ in one]
    one.set_epoch(2)
    assert sorted(first) == list(range(10)) and [i for i, _ in one] != first
    one.set_epoch(1)
    assert [i for i, _ in one] == first and {e for _, e in one} == {1}
    halves = []
    for rank in (0, 1):
        o = EpochOrder(10, 2, rank, order_seed=4)
        o.set_epoch(1)
        halves.append([i for i, _ in o])
    assert halves[0] == first[0::2] and halves[1] == first[1::2]  # the same global order, interleaved
    assert list(Shard(7, 3, 1)) == [(1, 0), (4, 0)]


def test_a_streamed_run_trains_and_records_its_labels(plain, tmp_path):
    from rethinkgen.data.stream.labels import load_labels
    from rethinkgen.train.loop import train

    summary = train(data="imagenet", data_dir=str(plain), model="mlp_1x512", crop=16, epochs=2, batch_size=8,
                    lr=0.05, corruption="random_labels", device="cpu", workers=0, augment=True, flip=True,
                    run_dir=str(tmp_path / "run"))
    assert summary["status"] == "max_epochs" and summary["steps"] == 6 and len(summary["metrics"]) == 3
    labels = load_labels(summary["labels_file"], summary["labels_sha256"])
    assert np.array_equal(labels, draw_labels(index(plain).train.targets, 4, "random_labels", None, 0).labels)
    assert summary["data"]["layout"] == "folders" and summary["data"]["input_shape"] == [3, 16, 16]
    row = summary["metrics"][-1]
    assert row["train_acc_top5"] is None and 0 <= row["test_acc"] <= 1  # 4 classes: no top-5
    assert summary["numerics"]["world_size"] == 1


def test_a_sweep_trains_a_streamed_run_and_stores_its_label_checksum(plain, tmp_path):
    """The sweep kept only the labels' sha256: the label file went with the deleted checkpoints."""
    from rethinkgen.data.stream.labels import load_labels
    from rethinkgen.sweep.runner import run_sweep
    from rethinkgen.sweep.spec import parse_spec
    from rethinkgen.sweep.store import Store

    spec = parse_spec(f"""
name = "streamed"
[defaults]
data = "imagenet"
data_dir = "{plain}"
model = "mlp_1x512"
crop = 16
epochs = 2
batch_size = 8
lr = 0.05
device = "cpu"
workers = 0
[grid]
corruption = ["random_labels", "shuffled_pixels"]
""")
    result = run_sweep(spec, tmp_path / "s.db", keep_checkpoints=True)
    assert result.statuses == {"max_epochs": 2} and not result.failed
    with Store.open(tmp_path / "s.db") as store:
        runs = {r["config"]["corruption"]: r for r in store.runs()}
        summary = store.summary(runs["random_labels"]["run_key"])
        expected = draw_labels(index(plain).train.targets, 4, "random_labels", None, 0)
        assert summary["labels_sha256"] == expected.sha256 and summary["data"]["layout"] == "folders"
        assert len(store.epoch_rows(runs["shuffled_pixels"]["run_key"])) == 3
        # the label file stays with the run (a sweep's checkpoints are deleted when it finishes)
        label_file = store.labels_dir / runs["random_labels"]["run_key"] / "labels.npy"
        assert np.array_equal(load_labels(label_file, summary["labels_sha256"]), expected.labels)
    from rethinkgen.sweep.checkpoint import decode, load_checkpoint

    loaded, _ = load_checkpoint(tmp_path / "s.db.ckpt" / f"{runs['random_labels']['run_key']}.pt")
    state = decode(loaded.blob)["state"]
    assert np.array_equal(state["labels"].numpy(), expected.labels)  # the labels travel with the checkpoint


def test_inception_standardization_maps_pixels_to_minus_one_one():
    from rethinkgen.data.preprocess import Preprocessor

    u8 = torch.tensor([0, 51, 153, 255], dtype=torch.uint8).reshape(1, 1, 2, 2).expand(2, 3, 2, 2)
    x = u8.float() / 255  # pixels in [0, 1]
    expected = torch.tensor([-1.0, -0.6, 0.2, 1.0]).reshape(1, 1, 2, 2).expand(2, 3, 2, 2)
    pre = Preprocessor("image", (3, 2, 2), crop=0, standardize="inception", augment=False, flip=False)
    assert torch.allclose(pre.eval(x), expected, atol=1e-6)
    assert torch.allclose(model_input(u8, torch.device("cpu"), "inception", False), expected, atol=1e-6)


def test_a_streamed_run_resumed_from_an_epoch_checkpoint_gives_the_same_rows(plain):
    from rethinkgen.train.loop import train

    base = dict(data="imagenet", data_dir=str(plain), model="mlp_1x512", crop=16, epochs=3, batch_size=8, lr=0.05,
                corruption="random_labels", device="cpu", workers=1, augment=True, flip=True, seed=4)
    saved = {}

    class Grab:
        def on_epoch_end(self, row, logged, trainer):
            if row["epoch"] == 1:
                saved["ckpt"] = trainer.checkpoint()

    straight = train(**base, callbacks=[Grab()])
    assert np.array_equal(saved["ckpt"]["labels"].numpy(), draw_labels(index(plain).train.targets, 4,
                                                                      "random_labels", None, 4).labels)
    resumed = train(**base, resume=saved["ckpt"])
    def numbers(rows):
        return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]

    assert numbers(resumed["metrics"]) == numbers(straight["metrics"])  # CPU, one process: bit for bit
    assert resumed["step_losses"] == straight["step_losses"] and resumed["labels_sha256"] == straight["labels_sha256"]


def test_a_resume_on_changed_training_images_is_refused(tmp_path):
    """The stored labels are matched to the training images by position; a resume only checked their count,
    so a copy with one image renamed into another class (same count) trained on labels of other images. CPU."""
    from rethinkgen.train.loop import train

    tree = files.plain_tree(tmp_path / "t", n_train=3, n_val=1)
    base = dict(data="imagenet", data_dir=str(tree), model="mlp_1x512", crop=8, epochs=2, batch_size=4,
                corruption="random_labels", device="cpu", workers=0)
    saved = {}

    class Grab:
        def on_epoch_end(self, row, logged, trainer):
            if row["epoch"] == 1:
                saved["ckpt"] = trainer.checkpoint()

    train(**base, callbacks=[Grab()])
    assert train(**base, resume=saved["ckpt"])["status"] == "max_epochs"  # the same images: resumes
    moved = tree / "train" / CLASSES[0] / f"{CLASSES[0]}_0.JPEG"
    moved.rename(tree / "train" / CLASSES[1] / "moved.JPEG")
    with pytest.raises(ConfigError, match="not the ones the run started on"):
        train(**base, resume=saved["ckpt"])


def test_a_sweep_is_told_before_it_starts_what_of_imagenet_is_missing(tmp_path, archives):
    from rethinkgen.data.sources import check_available

    check_available("imagenet", archives)  # the three archives: found, nothing read
    (archives / "ILSVRC2012_devkit_t12.tar.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="lacks the devkit ILSVRC2012_devkit_t12.tar.gz"):
        check_available("imagenet", archives)
    with pytest.raises(DatasetNotFoundError, match="image-net.org"):
        check_available("imagenet", tmp_path / "none")
