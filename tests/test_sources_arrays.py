"""The user's arrays in every common layout (npz and .npy folders), value scaling, label encodings,
and the two shared case inputs (grayscale digits without a channel axis, labels stored as 1 and 2)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from data_files import CASES
from rethinkgen.data.corruptions import apply_corruption
from rethinkgen.data.sources import dataset_layout, interface, load_dataset
from rethinkgen.data.sources.layouts import decide_layout
from rethinkgen.errors import ConfigError, DatasetNotFoundError, UnsafeFileError

GRAY_CASE = CASES / "grayscale_without_channel_axis" / "mnist_nhw.npz"
LABEL_CASE = CASES / "labels_not_zero_based"
needs_cases = pytest.mark.skipif(not GRAY_CASE.is_file(), reason=f"case inputs not found under {CASES}")

# one small image set, (N, C, H, W) uint8 with H != W, from which every layout is written
N, M, C, H, W = 12, 5, 3, 5, 6
_g = np.random.default_rng(0)
IMAGES = _g.integers(0, 256, (N + M, C, H, W), dtype=np.uint8)
LABELS = np.arange(N + M) % 4


def _save(path, inputs, labels=LABELS, names=None):
    """Rows 0..N-1 as the training set, N.. as the test set, under ``names`` (default x, y, x_test, y_test)."""
    keys = {"x": "x", "y": "y", "x_test": "x_test", "y_test": "y_test", **(names or {})}
    np.savez(path, **{keys["x"]: inputs[:N], keys["y"]: labels[:N], keys["x_test"]: inputs[N:],
                      keys["y_test"]: labels[N:]})
    return path


def _expected(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images[:N].astype(np.float32) / np.float32(255))


# (stored array, layout option, expected Dataset inputs for the training rows, layout found)
CASES_BY_LAYOUT = {
    "NCHW uint8": (IMAGES, None, _expected(IMAGES), "NCHW"),
    "NHWC uint8": (IMAGES.transpose(0, 2, 3, 1), None, _expected(IMAGES), "NHWC"),
    "NCHW float": (IMAGES / 255.0, None, _expected(IMAGES), "NCHW"),
    "NHWC float32": ((IMAGES / np.float32(255)).transpose(0, 2, 3, 1), None, _expected(IMAGES), "NHWC"),
    "NHW uint8": (IMAGES[:, 0], None, _expected(IMAGES[:, :1]), "NHW"),
    "NHW float (said)": (IMAGES[:, 0] / 255.0, "NHW", _expected(IMAGES[:, :1]), "NHW"),
    "NHWC one channel": (IMAGES[:, :1].transpose(0, 2, 3, 1), None, _expected(IMAGES[:, :1]), "NHWC"),
    "NCHW one channel": (IMAGES[:, :1], None, _expected(IMAGES[:, :1]), "NCHW"),
    "NHW int64 0..255 (said)": (IMAGES[:, 0].astype(np.int64), "NHW", _expected(IMAGES[:, :1]), "NHW"),
    # big-endian 16-bit pixels, as FITS or MATLAB files hold them: were refused as "not 8-bit pixels"
    "NHW >u2 big-endian": ((IMAGES[:, 0].astype(np.uint16) * 257).astype(">u2"), None, _expected(IMAGES[:, :1]),
                           "NHW"),
    "NHWC >f4 big-endian": ((IMAGES / np.float32(255)).transpose(0, 2, 3, 1).astype(">f4"), None,
                            _expected(IMAGES), "NHWC"),
}


@pytest.mark.parametrize("case", sorted(CASES_BY_LAYOUT))
def test_every_image_layout_gives_the_same_dataset(tmp_path, case):
    stored, layout, expected, found = CASES_BY_LAYOUT[case]
    options = {"layout": layout} if layout else {}
    ds = load_dataset("npz", path=_save(tmp_path / "d.npz", stored), **options)
    assert ds.layout == "image" and ds.meta["layout_found"] == found
    assert ds.x_train.dtype == torch.float32 and ds.x_train.shape == expected.shape
    torch.testing.assert_close(ds.x_train, expected, rtol=0, atol=1e-7)  # float32 rounding of x/255 only
    assert ds.y_train.tolist() == LABELS[:N].tolist() and ds.y_test.tolist() == LABELS[N:].tolist()
    assert ds.num_classes == 4 and ds.meta["class_mapping"] is None
    assert dataset_layout("npz", {"path": str(tmp_path / "d.npz"), **options}) == "image"


def test_npy_folder_and_keras_names_give_the_same_dataset(tmp_path):
    x = IMAGES.transpose(0, 2, 3, 1)
    reference = load_dataset("npz", path=_save(tmp_path / "ref.npz", x))
    keras = load_dataset("npz", path=_save(tmp_path / "keras.npz", x, names={"x": "x_train", "y": "y_train"}))
    folder = tmp_path / "arrays"
    folder.mkdir()
    for name, arr in (("X_train", x[:N]), ("y_train", LABELS[:N]), ("X_test", x[N:]), ("y_test", LABELS[N:])):
        np.save(folder / f"{name}.npy", arr)
    from_npy = load_dataset("npz", path=folder)
    for ds in (keras, from_npy):
        assert torch.equal(ds.x_train, reference.x_train) and torch.equal(ds.x_test, reference.x_test)
        assert torch.equal(ds.y_train, reference.y_train) and ds.meta["layout_found"] == "NHWC"
    assert from_npy.meta["arrays"] == {"x": "X_train", "y": "y_train", "x_test": "X_test", "y_test": "y_test"}


def test_a_validation_split_is_the_test_set_only_when_there_is_no_test_split(tmp_path):
    """x_val/y_val (a common name for the held-out split) are the test set of a file without test arrays,
    and say so in the data record; beside test arrays they are ignored."""
    x = IMAGES.transpose(0, 2, 3, 1)
    reference = load_dataset("npz", path=_save(tmp_path / "ref.npz", x))
    val = load_dataset("npz", path=_save(tmp_path / "val.npz", x, names={"x_test": "x_val", "y_test": "y_val"}))
    assert torch.equal(val.x_test, reference.x_test) and torch.equal(val.y_test, reference.y_test)
    assert val.meta["arrays"]["x_test"] == "x_val" and val.meta["test_split"] == "x_val, y_val"
    both = tmp_path / "both.npz"
    np.savez(both, x=x[:N], y=LABELS[:N], x_test=x[N:], y_test=LABELS[N:], x_val=x[:3], y_val=LABELS[:3])
    assert load_dataset("npz", path=both).meta["test_split"] == "x_test, y_test"


@pytest.mark.parametrize("stored, layout, shape, found", [
    (np.random.default_rng(1).random((N + M, 2, 40)), None, (2, 40), "NCL"),
    (np.random.default_rng(1).random((N + M, 1, 7)), None, (1, 7), "NCL"),
    (np.random.default_rng(1).random((N + M, 2, 40)).transpose(0, 2, 1), None, (2, 40), "NLC"),
    (np.random.default_rng(1).random((N + M, 6, 40)).transpose(0, 2, 1), "NLC", (6, 40), "NLC"),
    (np.random.default_rng(1).random((N + M, 9)), None, (9,), "ND"),
    (IMAGES, "ND", (C * H * W,), "ND"),
])
def test_signals_and_vectors(tmp_path, stored, layout, shape, found):
    ds = load_dataset("npz", path=_save(tmp_path / "d.npz", stored), **({"layout": layout} if layout else {}))
    assert ds.input_shape == shape and ds.meta["layout_found"] == found
    reference = stored.transpose(0, 2, 1) if found == "NLC" else stored
    scale = 255.0 if stored.dtype == np.uint8 else 1.0
    np.testing.assert_allclose(ds.x_train.numpy(), reference[:N].reshape(N, *shape) / scale, rtol=1e-6)


@pytest.mark.parametrize("shape, dtype, found", [
    ((10, 28, 28), "float32", "NHW"), ((10, 28, 20), "uint8", "NHW"), ((10, 1, 40), "float32", "NCL"),
    ((10, 3, 100), "float64", "NCL"), ((10, 500, 2), "float32", "NLC"), ((10, 3, 32, 32), "float32", "NCHW"),
    ((10, 32, 32, 3), "uint8", "NHWC"),
    ((10, 28, 28, 1), "uint8", "NHWC"), ((10, 64, 7, 7), "float32", "NCHW"), ((10, 7, 7, 64), "float32", "NHWC"),
    ((10, 3, 4, 4), "float32", "NCHW"),  # both ends channel-like: only channels-first gives square images
])
def test_layout_rules(shape, dtype, found):
    assert decide_layout(shape, dtype).found == found


@pytest.mark.parametrize("shape, dtype, options", [
    ((10, 20, 30), "float32", ("NHW", "NCL", "NLC")),
    ((10, 3, 5, 4), "float32", ("NCHW", "NHWC")),
    ((10, 4, 4, 4), "uint8", ("NCHW", "NHWC")),
    ((10, 8, 9, 10), "float32", ("NCHW", "NHWC")),
    ((10, 3, 100), "uint8", ("NHW", "NCL")),  # 3x100 images or 3-channel signals: was read as images
    ((10, 100, 2), "uint16", ("NHW", "NLC")),  # (float: NLC signals; uint8/16 were taken as 100x2 images)
])
def test_ambiguous_shapes_are_refused_naming_the_option(tmp_path, shape, dtype, options):
    with pytest.raises(ConfigError) as err:
        decide_layout(shape, dtype)
    assert all(f"layout={o!r}" in str(err.value) for o in options)
    np.savez(tmp_path / "d.npz", x=np.zeros(shape, dtype), y=np.arange(shape[0]) % 2,
             x_test=np.zeros(shape, dtype), y_test=np.arange(shape[0]) % 2)
    with interface("cli"), pytest.raises(ConfigError) as err:  # before any data is read, as the CLI words it
        dataset_layout("npz", {"path": str(tmp_path / "d.npz")})
    assert all(f"--data-option layout={o}" in str(err.value) for o in options)


@pytest.mark.parametrize("stored, scale, expected_max, says", [
    (IMAGES / 1.0, 255, 1.0, "divided by 255"),  # 8-bit values stored as floats, said
    (IMAGES / 255.0 * 2 - 1, "none", 1.0, "values kept"),  # already standardized
    (IMAGES.astype(np.uint16) * 257, None, 1.0, "uint16 0..65535 divided by 65535"),  # 16-bit pixels
    (IMAGES.astype(np.uint16), None, 1.0, "uint16 values in 0..255 read as 8-bit pixels"),  # was / 65535
])
def test_scaling_option(tmp_path, stored, scale, expected_max, says):
    options = {} if scale is None else {"scale": scale}
    ds = load_dataset("npz", path=_save(tmp_path / "d.npz", stored), **options)
    assert float(ds.x_train.max()) == pytest.approx(expected_max, abs=1e-6) and says in ds.meta["scaling"]


@pytest.mark.parametrize("stored, match", [
    (IMAGES / 1.0, r"values in \[0, 255\].*scale=255"),
    (IMAGES / 255.0 * 2 - 1, r"scale='none'"),
    (IMAGES.astype(np.int32) * 1000, "not 8-bit pixels"),
])
def test_float_images_outside_0_1_are_refused_with_the_fix(tmp_path, stored, match):
    with pytest.raises(ConfigError, match=match):
        load_dataset("npz", path=_save(tmp_path / "d.npz", stored))


# ---------------------------------------------------------------------------------------------------
# labels
# ---------------------------------------------------------------------------------------------------

def _vectors(tmp_path, y, y_test, **options):
    x = np.random.default_rng(0).random((len(y), 4)).astype(np.float32)
    np.savez(tmp_path / "v.npz", x=x, y=y, x_test=x[: len(y_test)], y_test=y_test)
    return load_dataset("npz", path=tmp_path / "v.npz", **options)


@pytest.mark.parametrize("y, y_test, classes, mapped", [
    ([1, 2, 2, 1, 2], [2, 1], [1, 2], [0, 1, 1, 0, 1]),
    ([-1, 1, 1, -1, 1], [1, -1], [-1, 1], [0, 1, 1, 0, 1]),
    ([3, 7, 9, 9, 3], [7, 9], [3, 7, 9], [0, 1, 2, 2, 0]),
    (["cat", "dog", "cat", "eel", "dog"], ["eel", "cat"], ["cat", "dog", "eel"], [0, 1, 0, 2, 1]),
    ([True, False, True, True, False], [False, True], [0, 1], [1, 0, 1, 1, 0]),
    ([0.0, 2.0, 1.0, 1.0, 0.0], [2.0, 1.0], [0, 1, 2], [0, 2, 1, 1, 0]),
])
def test_label_encodings(tmp_path, y, y_test, classes, mapped, caplog):
    with caplog.at_level(logging.WARNING, "rethinkgen.data"):
        ds = _vectors(tmp_path, np.array(y), np.array(y_test))
    assert ds.num_classes == len(classes) and ds.meta["classes"] == classes
    assert ds.y_train.tolist() == mapped
    identity = classes == list(range(len(classes)))
    assert (ds.meta["class_mapping"] is None) == identity
    if not identity:
        assert ds.meta["class_mapping"] == {str(c): i for i, c in enumerate(classes)}


def test_a_mapping_is_said_once(tmp_path, caplog):
    y = np.array([5, 6, 5, 6])
    with caplog.at_level(logging.WARNING, "rethinkgen.data"):
        for _ in range(3):
            _vectors(tmp_path, y, y[:2])
    said = [r.getMessage() for r in caplog.records if "mapped in sorted order" in r.getMessage()]
    assert len(said) == 1 and "5->0, 6->1" in said[0]


def test_num_classes_takes_labels_as_indices(tmp_path):
    ds = _vectors(tmp_path, np.array([0, 1, 1, 0]), np.array([1, 0]), num_classes=5)
    assert ds.num_classes == 5 and ds.meta["classes"] == [0, 1, 2, 3, 4] and ds.meta["class_mapping"] is None
    with pytest.raises(ConfigError, match="num_classes=2 .* holds 7"):
        _vectors(tmp_path, np.array([0, 1, 1, 0]), np.array([7, 0]), num_classes=2)


@pytest.mark.parametrize("y, y_test, match", [
    ([1, 1, 1, 1], [1, 1], "are 1: a classification set needs at least 2 classes.*num_classes=K"),
    ([0, 1, 0, 1], [0, 2], r"label\(s\) 2 \(1 test samples\) that no training sample has.*num_classes=K"),
    ([0.5, 1.0, 0.0, 1.0], [0.0, 1.0], r"not whole numbers \(0.5 at index 0"),
    ([0, 1, np.nan, 1], [0, 1], "not whole numbers"),
    ([1e20, 2e20, 1e20, 2e20], [1e20, 2e20], "labels up to 2e\\+20 do not fit int64"),  # was: "all are -2**63"
    (["cat", "dog ", "cat", "dog "], ["dog"], r"label\(s\) 'dog' .*training classes: 'cat', 'dog '"),
])
def test_bad_labels_are_refused_with_the_fix(tmp_path, y, y_test, match):
    with pytest.raises(ConfigError, match=match):
        _vectors(tmp_path, np.array(y), np.array(y_test))


@pytest.mark.parametrize("case, error, match", [
    ("missing_key", ConfigError, r"missing arrays y_test \(or test_y, test_labels; or a validation split y_val, "),
    ("length", ConfigError, "5 rows but y has 4"),
    ("object", UnsafeFileError, "pickle"),
    ("one_hot", ConfigError, "argmax"),
    ("test_shape", ConfigError, "same shape"),
    ("two_names", ConfigError, "both x and x_train"),
    ("nan", ConfigError, "NaN"),
    ("empty_test", ConfigError, "x_test is empty"),  # was a ValueError inside the first evaluation
])
def test_npz_errors(tmp_path, case, error, match):
    x, y = np.zeros((5, 3), np.float32), np.array([0, 1, 2, 0, 1])
    arrays = {"x": x, "y": y, "x_test": x[:2], "y_test": y[:2]}
    if case == "missing_key":
        del arrays["y_test"]
    elif case == "length":
        arrays["y"] = y[:4]
    elif case == "object":
        arrays["y"] = np.array([0, 1, "a", None, 2], dtype=object)
    elif case == "one_hot":
        arrays["y"] = np.eye(3)[y]
    elif case == "test_shape":
        arrays["x_test"] = np.zeros((2, 4), np.float32)
    elif case == "two_names":
        arrays["x_train"] = x
    elif case == "nan":
        arrays["x"] = np.full((5, 3), np.nan, np.float32)
    elif case == "empty_test":
        arrays["x_test"], arrays["y_test"] = x[:0], y[:0]
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(error, match=match):
        load_dataset("npz", path=tmp_path / "d.npz")
    if case == "empty_test":  # before any run starts
        with pytest.raises(error, match=match):
            dataset_layout("npz", {"path": str(tmp_path / "d.npz")})


def test_path_errors_name_the_option_as_the_user_gives_it(tmp_path):
    with pytest.raises(ConfigError, match=r"path='FILE'|path=FILE"):
        load_dataset("npz", tmp_path)
    with interface("cli"), pytest.raises(ConfigError, match="--data-option path=FILE") as err:
        load_dataset("npz", tmp_path)
    assert "load_dataset(" not in str(err.value)
    with pytest.raises(DatasetNotFoundError, match="nope.npz"):
        load_dataset("npz", path=tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="not a readable"):
        load_dataset("npz", path=tmp_path / "bad.npz")
    _save(tmp_path / "d.npz", IMAGES)
    assert load_dataset("npz", path="d.npz", data_dir=tmp_path).n_train == N  # relative to data_dir
    assert load_dataset("npz", tmp_path / "d.npz").n_train == N  # the file as data_dir


# ---------------------------------------------------------------------------------------------------
# the shared case inputs
# ---------------------------------------------------------------------------------------------------

def _train(path, **changes):
    from rethinkgen.train.config import TrainConfig
    from rethinkgen.train.loop import train

    config = TrainConfig(data="npz", data_options={"path": str(path)}, model="mlp_1x512", epochs=3, lr=0.05,
                         device="cpu", seed=0, **changes)
    return train(config)


@needs_cases
def test_case_grayscale_digits_train_like_the_channel_axis_control(tmp_path):
    ds = load_dataset("npz", path=GRAY_CASE)
    assert ds.layout == "image" and ds.input_shape == (1, 28, 28) and ds.meta["layout_found"] == "NHW"
    assert float(ds.x_train.max()) == 1.0 and ds.meta["scaling"].startswith("uint8")
    control = tmp_path / "nchw.npz"  # the same pixels with the channel axis, (N, 1, 28, 28)
    with np.load(GRAY_CASE) as f:
        np.savez(control, x=f["x"][:, None], y=f["y"], x_test=f["x_test"][:, None], y_test=f["y_test"])
    reference = load_dataset("npz", path=control)
    assert torch.equal(ds.x_train, reference.x_train) and torch.equal(ds.y_test, reference.y_test)
    shuffled = apply_corruption(ds, "shuffled_pixels", seed=0).dataset.x_train  # 784 pixels move, not 28 columns
    moved_rows = (shuffled.reshape(-1, 784) != ds.x_train.reshape(-1, 784)).any(0).reshape(28, 28).any(1)
    assert int(moved_rows.sum()) > 20
    nhw, nchw = _train(GRAY_CASE), _train(control)  # 3 epochs of MLP 1x512 on 2,000 digits, CPU
    assert nhw["test_acc"] == nchw["test_acc"] and nhw["test_acc"] > 0.8  # was 0.15 read as a signal
    assert nhw["data"]["layout_found"] == "NHW" and nhw["data"]["input_shape"] == [1, 28, 28]
    assert nhw["data"]["scaling"] == "uint8 0..255 divided by 255 -> [0, 1]"


@needs_cases
def test_case_labels_one_and_two_make_two_classes():
    ds = load_dataset("npz", path=LABEL_CASE / "labels_1_2.npz")
    control = load_dataset("npz", path=LABEL_CASE / "labels_0_1.npz")
    assert ds.num_classes == 2 and ds.meta["class_mapping"] == {"1": 0, "2": 1}
    assert torch.equal(ds.y_train, control.y_train) and torch.equal(ds.y_test, control.y_test)
    noise = apply_corruption(ds, "random_labels", seed=0).realized_noise_rate  # p·(1 − 1/K) = 0.5 for K = 2
    assert 0.45 < noise < 0.55
    summary = _train(LABEL_CASE / "labels_1_2.npz", corruption="random_labels")
    assert summary["data"]["class_mapping"] == {"1": 0, "2": 1} and summary["data"]["num_classes"] == 2
    assert 0.45 < summary["realized_noise_rate"] < 0.55
    assert _train(LABEL_CASE / "labels_1_2.npz")["test_acc"] > 0.8  # a linear rule; was 0.30 with 3 classes


@needs_cases
def test_fused_runs_carry_the_data_record_too():
    from rethinkgen.train.config import TrainConfig
    from rethinkgen.train.fused import train_group

    path = str(LABEL_CASE / "labels_1_2.npz")
    configs = [TrainConfig(data="npz", data_options={"path": path}, model="mlp_1x512", epochs=1, device="cpu",
                           corruption=c, seed=0) for c in ("true_labels", "random_labels")]
    for summary in train_group(configs):
        assert summary["data"]["class_mapping"] == {"1": 0, "2": 1} and summary["data"]["layout_found"] == "ND"


def test_train_and_test_stored_with_other_dtypes_load_when_their_values_agree(tmp_path):
    # x_train.astype(np.float32) / 255 beside x_test / 255.0 (float64): both pixels in [0, 1]; was refused
    # as "stored differently" because the two scaling descriptions named different dtypes
    images = IMAGES / np.float32(255)
    np.savez(tmp_path / "d.npz", x=images[:N], y=LABELS[:N], x_test=images[N:].astype(np.float64),
             y_test=LABELS[N:])
    ds = load_dataset("npz", path=tmp_path / "d.npz")
    torch.testing.assert_close(ds.x_test, torch.from_numpy(images[N:]), rtol=0, atol=1e-7)
    assert ds.meta["scaling"] == "x: float32 in [0, 1], kept; x_test: float64 in [0, 1], kept"
    np.savez(tmp_path / "u.npz", x=IMAGES[:N], y=LABELS[:N], x_test=IMAGES[N:] / 255.0, y_test=LABELS[N:])
    mixed = load_dataset("npz", path=tmp_path / "u.npz")  # uint8 train, float64 test in [0, 1]
    torch.testing.assert_close(mixed.x_train, _expected(IMAGES), rtol=0, atol=1e-7)
    torch.testing.assert_close(mixed.x_test, torch.from_numpy((IMAGES[N:] / 255.0).astype(np.float32)))
    vectors = np.random.default_rng(0).random((N + M, 7)) * 10
    np.savez(tmp_path / "v.npz", x=vectors[:N].astype(np.float32), y=LABELS[:N], x_test=vectors[N:],
             y_test=LABELS[N:])
    assert load_dataset("npz", path=tmp_path / "v.npz").meta["scaling"].startswith("x: float32 values kept")
    # but uint8 vectors are divided by 255 and int64 ones kept: that mismatch is refused, before any run
    np.savez(tmp_path / "w.npz", x=IMAGES[:N, 0, 0].astype(np.uint8), y=LABELS[:N],
             x_test=IMAGES[N:, 0, 0].astype(np.int64), y_test=LABELS[N:])
    with interface("cli"), pytest.raises(ConfigError, match="x is uint8 and x_test is int64.*--data-option scale=255"):
        dataset_layout("npz", {"path": str(tmp_path / "w.npz")})
    assert load_dataset("npz", path=tmp_path / "w.npz", scale=255).meta["scaling"] == "divided by 255 (scale=255)"


def test_a_value_dependent_scale_is_the_same_for_train_and_test(tmp_path):
    # uint16 images holding 0..255 are 8-bit pixels, others 16-bit: a training set reaching 300 beside a
    # test set below 256 would be scaled 257 times apart
    x = IMAGES[:, 0].astype(np.uint16)
    x[0, 0, 0] = 300
    np.savez(tmp_path / "d.npz", x=x[:N], y=LABELS[:N], x_test=x[N:], y_test=LABELS[N:])
    with pytest.raises(ConfigError, match="both uint16 but their values call for different scales.*scale=65535"):
        dataset_layout("npz", {"path": str(tmp_path / "d.npz")})  # before any run
    ds = load_dataset("npz", path=tmp_path / "d.npz", scale=65535)
    assert float(ds.x_test.max()) == pytest.approx(float(IMAGES[N:, 0].max()) / 65535)
