"""Corruptions at ImageNet scale (paper §2.1, App. A): labels drawn once and stored with the run, pixel
corruptions per image at the training resolution. CPU only, exact comparisons (integers and permutations)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from rethinkgen.data.corruptions import apply_corruption
from rethinkgen.data.dataset import Dataset
from rethinkgen.data.stream.labels import draw_labels, labels_sha256, load_labels, save_labels
from rethinkgen.data.stream.pixels import PixelCorruption
from rethinkgen.errors import ConfigError

TRUE = np.arange(5000) % 1000  # 1,000 classes, as ILSVRC-2012


def test_random_labels_are_the_in_memory_corruptions_draws():
    streamed = draw_labels(TRUE, 1000, "random_labels", None, seed=3)
    x = torch.zeros(len(TRUE), 1)
    in_memory = apply_corruption(Dataset("t", x, torch.from_numpy(TRUE), x[:2], torch.tensor([0, 1]), 1000,
                                         "vector"), "random_labels", seed=3)
    assert np.array_equal(streamed.labels, in_memory.dataset.y_train.numpy())
    assert 0.99 < streamed.realized_noise_rate < 1.0  # p (1 - 1/K) = 0.999
    again = draw_labels(TRUE, 1000, "random_labels", None, seed=3)
    assert np.array_equal(again.labels, streamed.labels) and again.sha256 == streamed.sha256
    assert draw_labels(TRUE, 1000, "random_labels", None, seed=4).sha256 != streamed.sha256


def test_partial_labels_are_nested_and_input_corruptions_keep_the_labels():
    half = draw_labels(TRUE, 1000, "partial_labels", 0.5, seed=0)
    full = draw_labels(TRUE, 1000, "partial_labels", 1.0, seed=0)
    assert abs(half.realized_noise_rate - 0.5 * 0.999) < 0.03
    assert np.array_equal(half.labels[half.changed], full.labels[half.changed])  # nested across p
    for name in ("true_labels", "shuffled_pixels", "random_pixels", "gaussian"):
        kept = draw_labels(TRUE, 1000, name, None, seed=0)
        assert np.array_equal(kept.labels, TRUE) and kept.level == 0.0 and kept.realized_noise_rate == 0.0


def test_label_file_sha256_is_the_files(tmp_path):
    labels = draw_labels(TRUE, 1000, "random_labels", None, seed=1).labels
    path, digest = save_labels(tmp_path / "run", labels)
    assert path.name == "labels.npy"
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == labels_sha256(labels)
    assert np.array_equal(np.load(path), labels)
    assert np.array_equal(load_labels(path, digest), labels)
    path.write_bytes(path.read_bytes()[:-8] + np.int64(7).tobytes())
    with pytest.raises(ConfigError, match="sha256"):
        load_labels(path, digest)


SHAPE = (3, 6, 5)


def image(seed: int) -> torch.Tensor:
    return torch.randint(0, 256, SHAPE, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_shuffled_pixels_is_one_permutation_of_positions_with_channels_together():
    shuffle = PixelCorruption("shuffled_pixels", 7, SHAPE)
    a, b = image(0), image(1)
    pa, pb = shuffle(a, "train", 0), shuffle(b, "test", 99)
    perm = shuffle.perm
    assert sorted(perm.tolist()) == list(range(30))
    assert torch.equal(pa.reshape(3, -1), a.reshape(3, -1)[:, perm])  # the same permutation for every image
    assert torch.equal(pb.reshape(3, -1), b.reshape(3, -1)[:, perm])  # and for the test set
    # the in-memory corruption draws the same permutation at the same resolution
    x = a[None].float()
    mem = apply_corruption(Dataset("t", x, torch.tensor([0]), x, torch.tensor([0]), 2, "image"), "shuffled_pixels",
                           seed=7).dataset.x_train[0]
    assert torch.equal(mem, pa.float())


def test_random_pixels_is_a_fixed_permutation_per_image():
    random = PixelCorruption("random_pixels", 7, SHAPE)
    a = image(0)
    first, again = random(a, "train", 5), random(a.clone(), "train", 5)
    assert torch.equal(first, again)  # the same image index: the same permutation (every epoch, worker, rank)
    other = random(a, "train", 6)
    assert not torch.equal(first, other)
    for out in (first, other, random(a, "test", 5)):
        # a permutation of the H*W positions: each channel's values move together
        cols = out.reshape(3, -1).T.tolist()
        assert sorted(cols) == sorted(a.reshape(3, -1).T.tolist())


def test_gaussian_inputs_match_the_moments_and_are_fixed_per_image():
    mean, var = np.array([0.4, 0.5, 0.6]), np.array([0.01, 0.04, 0.09])
    gauss = PixelCorruption("gaussian", 1, (3, 64, 64), moments=(mean, var))
    assert not gauss.needs_image
    x = gauss(None, "train", 3)
    assert x.dtype == torch.float32 and torch.equal(x, gauss(None, "train", 3))
    assert not torch.equal(x, gauss(None, "test", 3))
    flat = x.reshape(3, -1).double()
    assert torch.allclose(flat.mean(1), torch.tensor(mean, dtype=torch.float64), atol=0.02)
    assert torch.allclose(flat.var(1), torch.tensor(var, dtype=torch.float64), rtol=0.1)
