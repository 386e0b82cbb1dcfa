"""Corruptions of the randomization tests (paper §2.1, design §2)."""

from __future__ import annotations

import math

import pytest
import torch

from rethinkgen.data.corruptions import (
    CORRUPTIONS,
    CorruptedData,
    apply_corruption,
    describe_corruptions,
)
from rethinkgen.data.dataset import Dataset
from rethinkgen.errors import ConfigError, UnknownNameError

SHAPES = {"image": (3, 4, 5), "signal": (2, 7), "vector": (9,)}


def make_dataset(layout: str = "image", n_train: int = 200, n_test: int = 50, k: int = 10,
                 seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[layout]
    return Dataset(
        name="toy",
        x_train=torch.rand((n_train, *shape), generator=g),
        y_train=torch.randint(0, k, (n_train,), generator=g),
        x_test=torch.rand((n_test, *shape), generator=g),
        y_test=torch.randint(0, k, (n_test,), generator=g),
        num_classes=k,
        layout=layout,
        meta={"source": "test"},
    )


def encoded_dataset(layout: str, n_train: int = 12, n_test: int = 5) -> Dataset:
    """Inputs whose value encodes (sample, position, channel): 1000*n + 10*position + channel."""
    shape = SHAPES[layout]
    c = shape[0] if layout != "vector" else 1
    n_pos = math.prod(shape) // c

    def x(n: int, offset: int) -> torch.Tensor:
        s = torch.arange(n)[:, None, None] + offset
        p = torch.arange(n_pos)[None, None, :]
        ch = torch.arange(c)[None, :, None]
        return (1000 * s + 10 * p + ch).float().reshape(n, *shape)

    y, y_test = torch.zeros(n_train, dtype=torch.int64), torch.zeros(n_test, dtype=torch.int64)
    return Dataset("enc", x(n_train, 0), y, x(n_test, 100), y_test, 10, layout)


def decode(x: torch.Tensor, layout: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sample, position, channel) of every entry, each shaped (N, C, P)."""
    n = x.shape[0]
    v = x.reshape(n, 1, -1) if layout == "vector" else x.reshape(n, x.shape[1], -1)
    v = v.round().long()
    return v // 1000, (v % 1000) // 10, v % 10


def level_for(name: str) -> float | None:
    return 0.5 if CORRUPTIONS.get(name).takes_level else None


# --- registry ---------------------------------------------------------------------------------


def test_registry_has_the_paper_corruptions():
    assert CORRUPTIONS.names() == sorted(
        ["true_labels", "partial_labels", "random_labels", "shuffled_pixels", "random_pixels", "gaussian"]
    )


def test_describe_corruptions_lists_every_spec():
    rows = describe_corruptions()
    assert [r["name"] for r in rows] == CORRUPTIONS.names()
    by_name = {r["name"]: r for r in rows}
    assert set(by_name["gaussian"]) == {"name", "takes_level", "target", "description"}
    assert [n for n, r in by_name.items() if r["takes_level"]] == ["partial_labels"]
    assert {n for n, r in by_name.items() if r["target"] == "inputs"} == {
        "shuffled_pixels", "random_pixels", "gaussian"}
    assert all(r["description"] for r in rows)


# --- label corruptions ------------------------------------------------------------------------


def test_partial_labels_rates_match_the_paper_definition():
    n, k, p = 20_000, 10, 0.5
    ds = make_dataset("vector", n_train=n, k=k)
    out = apply_corruption(ds, "partial_labels", p, seed=3)
    assert isinstance(out, CorruptedData) and out.level == p and out.corruption == "partial_labels"
    rate_c = out.corrupted.float().mean().item()
    rate_x = out.changed.float().mean().item()
    sigma = lambda q: math.sqrt(q * (1 - q) / n)  # noqa: E731
    assert abs(rate_c - p) < 3 * sigma(p)
    expect = p * (1 - 1 / k)  # the uniform class may equal the true one
    assert abs(rate_x - expect) < 3 * sigma(expect)
    assert out.realized_noise_rate == pytest.approx(rate_x)
    assert torch.equal(out.y_train_clean, ds.y_train)
    assert torch.equal(out.changed, out.dataset.y_train != ds.y_train)
    assert not (out.changed & ~out.corrupted).any()  # only corrupted samples can change
    assert out.dataset.y_train.dtype == torch.int64
    assert out.dataset.y_train.min() >= 0 and out.dataset.y_train.max() < k
    # inputs untouched, shared
    assert out.dataset.x_train is ds.x_train and out.dataset.x_test is ds.x_test


@pytest.mark.parametrize("exclude", [False, True])
def test_corrupted_sets_are_nested_across_levels(exclude):
    ds = make_dataset("vector", n_train=3000)
    levels = [0.0, 0.1, 0.25, 0.5, 0.8, 1.0]
    outs = [apply_corruption(ds, "partial_labels", p, seed=11, exclude_true_class=exclude) for p in levels]
    assert not outs[0].corrupted.any() and torch.equal(outs[0].dataset.y_train, ds.y_train)
    assert outs[-1].corrupted.all()
    for lo, hi in zip(outs, outs[1:], strict=False):
        assert lo.corrupted.sum() < hi.corrupted.sum()
        assert not (lo.corrupted & ~hi.corrupted).any()  # nested
        m = lo.corrupted
        assert torch.equal(lo.dataset.y_train[m], hi.dataset.y_train[m])  # same new labels


def test_exclude_true_class_changes_every_corrupted_label_uniformly():
    n, k = 20_000, 4
    ds = make_dataset("vector", n_train=n, k=k)
    out = apply_corruption(ds, "partial_labels", 0.6, seed=5, exclude_true_class=True)
    assert torch.equal(out.changed, out.corrupted)
    assert out.realized_noise_rate == pytest.approx(out.corrupted.float().mean().item())
    # new labels spread over the K-1 other classes
    y0, y1 = ds.y_train[out.corrupted], out.dataset.y_train[out.corrupted]
    for c in range(k):
        new = y1[y0 == c]
        counts = torch.bincount(new, minlength=k).float()
        assert counts[c] == 0
        share = counts[torch.arange(k) != c] / new.numel()
        assert (share - 1 / (k - 1)).abs().max() < 0.05


def test_without_exclusion_the_new_label_can_be_the_true_one():
    ds = make_dataset("vector", n_train=20_000, k=10)
    out = apply_corruption(ds, "partial_labels", 1.0, seed=2)
    same = (out.dataset.y_train == ds.y_train).float().mean().item()
    assert abs(same - 0.1) < 3 * math.sqrt(0.09 / 20_000)


def test_random_labels_equal_partial_labels_at_one():
    ds = make_dataset("image", n_train=500)
    for exclude in (False, True):
        r = apply_corruption(ds, "random_labels", seed=7, exclude_true_class=exclude)
        p = apply_corruption(ds, "partial_labels", 1.0, seed=7, exclude_true_class=exclude)
        assert r.level == 1.0 and r.corruption == "random_labels"
        assert r.corrupted.all()
        assert torch.equal(r.dataset.y_train, p.dataset.y_train)
        assert torch.equal(r.changed, p.changed)
    assert apply_corruption(ds, "random_labels", 1.0, seed=7).level == 1.0  # the implied level is accepted


def test_true_labels_change_nothing():
    ds = make_dataset("signal")
    out = apply_corruption(ds, "true_labels", seed=4)
    assert out.level == 0.0 and out.realized_noise_rate == 0.0
    assert not out.corrupted.any() and not out.changed.any()
    assert torch.equal(out.dataset.y_train, ds.y_train)
    assert out.dataset.x_train is ds.x_train
    assert apply_corruption(ds, "true_labels", 0.0).level == 0.0  # the implied level is accepted


@pytest.mark.parametrize("name", CORRUPTIONS.names())
def test_deterministic_in_the_seed_and_different_across_seeds(name):
    ds = make_dataset("image", n_train=300)
    a = apply_corruption(ds, name, level_for(name), seed=1)
    b = apply_corruption(ds, name, level_for(name), seed=1)
    c = apply_corruption(ds, name, level_for(name), seed=2)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a.dataset, field), getattr(b.dataset, field))
    assert torch.equal(a.corrupted, b.corrupted)
    if name == "true_labels":
        return
    target = CORRUPTIONS.get(name).target
    if target == "labels":
        assert not torch.equal(a.dataset.y_train, c.dataset.y_train)
    else:
        assert not torch.equal(a.dataset.x_train, c.dataset.x_train)
        assert not torch.equal(a.dataset.x_test, c.dataset.x_test)


@pytest.mark.parametrize("layout", sorted(SHAPES))
@pytest.mark.parametrize("name", CORRUPTIONS.names())
def test_test_labels_are_never_corrupted(name, layout):
    ds = make_dataset(layout)
    before = {f: getattr(ds, f).clone() for f in ("x_train", "y_train", "x_test", "y_test")}
    out = apply_corruption(ds, name, level_for(name), seed=0)
    assert torch.equal(out.dataset.y_test, before["y_test"])
    for f, v in before.items():  # the input dataset is not modified in place
        assert torch.equal(getattr(ds, f), v)
    assert ds.meta == {"source": "test"}
    assert out.dataset.meta["corruption"]["name"] == name and out.dataset.meta["source"] == "test"
    assert out.dataset.x_train.shape == ds.x_train.shape and out.dataset.x_test.shape == ds.x_test.shape
    assert out.dataset.x_train.dtype == torch.float32
    assert out.corrupted.shape == out.changed.shape == (ds.n_train,)
    assert out.corrupted.dtype == out.changed.dtype == torch.bool
    assert torch.equal(out.y_train_clean, before["y_train"])
    if CORRUPTIONS.get(name).target == "inputs":
        assert torch.equal(out.dataset.y_train, before["y_train"])
        assert out.level == 0.0 and out.realized_noise_rate == 0.0
        assert not out.corrupted.any() and not out.changed.any()
        assert not torch.equal(out.dataset.x_test, before["x_test"])  # test inputs are transformed too


# --- input corruptions ------------------------------------------------------------------------


@pytest.mark.parametrize("layout", sorted(SHAPES))
def test_shuffled_pixels_is_one_permutation_for_all_images_train_and_test(layout):
    ds = encoded_dataset(layout)
    out = apply_corruption(ds, "shuffled_pixels", seed=3)
    perms = []
    for x, x0 in ((out.dataset.x_train, ds.x_train), (out.dataset.x_test, ds.x_test)):
        s, p, c = decode(x, layout)
        s0, _, c0 = decode(x0, layout)
        assert torch.equal(s, s0)  # every image keeps its own values
        assert torch.equal(c, c0)  # channels are not mixed ...
        assert (p == p[:, :1]).all()  # ... and move together
        assert (p == p[:1]).all()  # the same permutation for every image
        perms.append(p[0, 0])
    assert torch.equal(perms[0], perms[1])  # train and test alike
    perm = perms[0]
    assert torch.equal(perm.sort().values, torch.arange(perm.numel()))
    assert not torch.equal(perm, torch.arange(perm.numel()))


@pytest.mark.parametrize("layout", sorted(SHAPES))
def test_random_pixels_permutes_each_image_independently(layout):
    ds = encoded_dataset(layout, n_train=40, n_test=20)
    out = apply_corruption(ds, "random_pixels", seed=3)
    for x, x0 in ((out.dataset.x_train, ds.x_train), (out.dataset.x_test, ds.x_test)):
        n = x.shape[0]
        s, p, c = decode(x, layout)
        s0, _, c0 = decode(x0, layout)
        assert torch.equal(s, s0) and torch.equal(c, c0)
        assert (p == p[:, :1]).all()  # channels of a position move together
        perms = p[:, 0]  # (N, P)
        assert torch.equal(perms.sort(dim=1).values, torch.arange(perms.shape[1]).expand(n, -1))
        assert len({tuple(r.tolist()) for r in perms}) == n  # all different
        # each image keeps its multiset of values
        flat, flat0 = x.reshape(n, -1), x0.reshape(n, -1)
        assert torch.equal(flat.sort(dim=1).values, flat0.sort(dim=1).values)


def test_random_pixels_handles_more_samples_than_one_chunk():
    ds = make_dataset("vector", n_train=5000, n_test=10)
    out = apply_corruption(ds, "random_pixels", seed=0)
    assert torch.equal(out.dataset.x_train.sort(dim=1).values, ds.x_train.sort(dim=1).values)
    assert not torch.equal(out.dataset.x_train[4096:], ds.x_train[4096:])


def test_gaussian_matches_per_channel_training_moments():
    g = torch.Generator().manual_seed(0)
    mean, std = torch.tensor([0.2, 0.5, 0.8]), torch.tensor([0.1, 0.2, 0.3])
    x_train = torch.rand(2000, 3, 4, 4, generator=g) * std[:, None, None] * math.sqrt(12)
    x_train = x_train - x_train.mean(dim=(0, 2, 3), keepdim=True) + mean[:, None, None]
    x_test = torch.rand(500, 3, 4, 4, generator=g)  # other moments: the test draws follow the train set
    y = torch.zeros(2000, dtype=torch.int64)
    ds = Dataset("g", x_train, y, x_test, torch.zeros(500, dtype=torch.int64), 10, "image")
    want_var = x_train.double().var(dim=(0, 2, 3), correction=0)
    out = apply_corruption(ds, "gaussian", seed=9)
    for x in (out.dataset.x_train, out.dataset.x_test):
        assert x.dtype == torch.float32
        per_c = x.double().permute(1, 0, 2, 3).reshape(3, -1)
        n = per_c.shape[1]
        assert (per_c.mean(dim=1) - mean.double()).abs().le(4 * std.double() / math.sqrt(n)).all()
        assert torch.allclose(per_c.var(dim=1), want_var, rtol=4 * math.sqrt(2 / n))
        # a fresh draw: nothing is copied from the real inputs, and nothing is clipped to [0, 1]
        assert (x > 1).any() and (x < 0).any()
    assert not torch.equal(out.dataset.x_train[:500], out.dataset.x_test)


def test_gaussian_on_vectors_uses_one_mean_and_variance():
    g = torch.Generator().manual_seed(1)
    x_train = torch.randn(4000, 6, generator=g) * 0.1 + torch.linspace(0, 5, 6)  # features far apart
    ds = Dataset("v", x_train, torch.zeros(4000, dtype=torch.int64), x_train[:10].clone(),
                 torch.zeros(10, dtype=torch.int64), 10, "vector")
    out = apply_corruption(ds, "gaussian", seed=0)
    x = out.dataset.x_train.double()
    assert x.mean().item() == pytest.approx(x_train.double().mean().item(), abs=0.05)
    assert x.var().item() == pytest.approx(x_train.double().var(correction=0).item(), rel=0.05)
    per_feature = x.mean(dim=0)
    assert (per_feature - per_feature.mean()).abs().max() < 0.2  # no per-feature structure left


# --- errors -----------------------------------------------------------------------------------


def test_partial_labels_needs_a_level():
    with pytest.raises(ConfigError, match="--level"):
        apply_corruption(make_dataset(), "partial_labels")


@pytest.mark.parametrize("level", [1.5, -0.1, float("nan"), float("inf")])
def test_level_out_of_range(level):
    with pytest.raises(ConfigError, match=r"level must be in \[0, 1\]"):
        apply_corruption(make_dataset(), "partial_labels", level)


def test_level_message_names_the_value():
    with pytest.raises(ConfigError, match=r"^level must be in \[0, 1\], got 1.5$"):
        apply_corruption(make_dataset(), "partial_labels", 1.5)


def test_level_must_be_a_number():
    with pytest.raises(ConfigError, match="number"):
        apply_corruption(make_dataset(), "partial_labels", "half")


@pytest.mark.parametrize(
    "name, level",
    [("true_labels", 0.3), ("random_labels", 0.5), ("random_labels", 0.0), ("shuffled_pixels", 0.5),
     ("random_pixels", 1.0), ("gaussian", 0.0)],
)
def test_level_refused_by_corruptions_without_one(name, level):
    with pytest.raises(ConfigError, match="takes no level"):
        apply_corruption(make_dataset(), name, level)


def test_unknown_corruption_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="partial_labels"):
        apply_corruption(make_dataset(), "label_noise", 0.5)


@pytest.mark.parametrize("name", ["shuffled_pixels", "random_pixels", "gaussian"])
def test_exclude_true_class_refused_for_input_corruptions(name):
    with pytest.raises(ConfigError, match="exclude_true_class"):
        apply_corruption(make_dataset(), name, exclude_true_class=True)


def test_exclude_true_class_needs_two_classes():
    with pytest.raises(ConfigError, match="2 classes"):
        apply_corruption(make_dataset(k=1), "random_labels", exclude_true_class=True)


# --- every stored image layout, through the npz source -------------------------------------------

STORED = {  # name -> (channels, how an (N, C, H, W) array is stored)
    "NCHW": (3, lambda a: a), "NHWC": (3, lambda a: a.transpose(0, 2, 3, 1)), "NHW": (1, lambda a: a[:, 0]),
    "NHWC one channel": (1, lambda a: a.transpose(0, 2, 3, 1)), "NCHW one channel": (1, lambda a: a),
}


def _stored_images(tmp_path, name: str, n: int = 30, h: int = 5, w: int = 6):
    """An npz whose uint8 pixel value encodes (pixel position, channel) + 1, stored in layout ``name``."""
    import numpy as np

    from rethinkgen.data.sources import load_dataset

    c, store = STORED[name]
    position = np.arange(h * w).reshape(1, 1, h, w)
    channel = np.arange(c).reshape(1, c, 1, 1)
    images = np.broadcast_to(position * c + channel + 1, (n, c, h, w)).astype(np.uint8)
    labels = np.arange(n) % 2
    np.savez(tmp_path / "d.npz", x=store(images), y=labels, x_test=store(images[:7]), y_test=labels[:7])
    return load_dataset("npz", path=tmp_path / "d.npz")


def _sources(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(source pixel position, source channel) of every value of (N, C, H, W) inputs, each (N, C, H*W)."""
    c = x.shape[1]
    v = (x * 255).round().long().reshape(x.shape[0], c, -1) - 1
    return v // c, v % c


@pytest.mark.parametrize("stored", sorted(STORED))
@pytest.mark.parametrize("name", ["shuffled_pixels", "random_pixels"])
def test_pixel_corruptions_permute_all_hxw_positions_in_every_stored_layout(tmp_path, stored, name):
    ds = _stored_images(tmp_path, stored)
    c, h, w = ds.input_shape
    assert (c, h, w) == (STORED[stored][0], 5, 6)
    out = apply_corruption(ds, name, seed=2).dataset
    perms = []
    for x in (out.x_train, out.x_test):
        src_pos, src_ch = _sources(x)
        assert torch.equal(src_ch, torch.arange(c)[None, :, None].expand_as(src_ch))  # channels keep their index
        assert (src_pos == src_pos[:, :1]).all()  # ... and move together with their pixel
        per_image = src_pos[:, 0]  # (N, H*W): where each pixel came from
        assert torch.equal(per_image.sort(1).values, torch.arange(h * w).expand_as(per_image))
        rows_moved = (per_image // w != torch.arange(h * w) // w).float().mean()
        assert rows_moved > 0.5  # pixels change rows: H x W positions are permuted, not W columns or C channels
        perms.append(per_image)
    distinct = len({tuple(p.tolist()) for p in torch.cat(perms)})
    assert distinct == (1 if name == "shuffled_pixels" else out.n_train + out.n_test)
