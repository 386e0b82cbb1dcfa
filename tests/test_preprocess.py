"""Preprocessing of the paper's Appendix A: centre crop, per-image standardisation, augmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rethinkgen.data.preprocess import PAD, Preprocessor
from rethinkgen.errors import ConfigError


def pre(layout="image", shape=(3, 8, 8), *, crop=None, standardize="none", augment=False, flip=False,
        x_train=None) -> Preprocessor:
    return Preprocessor(layout, shape, crop=crop, standardize=standardize, augment=augment, flip=flip,
                        x_train=x_train)


def unique_images(n: int, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    """Images whose every entry is distinct, so a window is identified by its values."""
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w)


def np_per_image_standardization(x: np.ndarray) -> np.ndarray:
    """Direct reference of TensorFlow's per_image_standardization, image by image, in float64."""
    out = np.empty_like(x, dtype=np.float64)
    for i, img in enumerate(x.astype(np.float64)):
        adjusted = max(img.std(), 1.0 / math.sqrt(img.size))  # population std
        out[i] = (img - img.mean()) / adjusted
    return out


def window_offsets(out: torch.Tensor, x: torch.Tensor) -> list[tuple[int, int]]:
    """For each output image, the (top, left) of the window of its input it equals (asserts one exists)."""
    ch, cw = out.shape[-2:]
    found = []
    for o, img in zip(out, x, strict=True):
        hits = [(t, l) for t in range(img.shape[-2] - ch + 1) for l in range(img.shape[-1] - cw + 1)
                if torch.equal(o, img[:, t:t + ch, l:l + cw])]
        assert len(hits) == 1, "output is not a crop of its input"
        found.append(hits[0])
    return found


# --- standardisation --------------------------------------------------------------------------


def test_per_image_standardization_matches_numpy_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 8, 8, generator=g) * torch.linspace(0.1, 2, 6)[:, None, None, None]
    x[2] = 0.7  # a constant image: std 0 -> floored at 1/sqrt(192), output 0
    x[3] = x[3] * 1e-4  # tiny std below the floor 1/sqrt(192)
    out = pre(standardize="per_image").eval(x)
    ref = np_per_image_standardization(x.numpy())
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(out[2], torch.zeros_like(out[2]))
    assert out[3].abs().max() < 1e-2  # divided by the floor, not by its own tiny std
    assert out[0].std(correction=0) < 0.5  # std 0.1/sqrt(12) is below the floor 1/sqrt(192)
    assert out[5].mean().abs() < 1e-5 and out[5].std(correction=0).item() == pytest.approx(1, abs=1e-4)


def test_per_image_standardization_after_the_centre_crop():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    p = pre(shape=(3, 32, 32), crop=28, standardize="per_image")
    ref = np_per_image_standardization(x[:, :, 2:30, 2:30].numpy())
    np.testing.assert_allclose(p.eval(x).numpy(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout, shape", [("signal", (2, 40)), ("vector", (30,))])
def test_per_image_standardization_on_signals_and_vectors(layout, shape):
    x = torch.rand(5, *shape, generator=torch.Generator().manual_seed(2)) * 3 + 1
    out = pre(layout, shape, standardize="per_image").eval(x)
    np.testing.assert_allclose(out.numpy(), np_per_image_standardization(x.numpy()), rtol=1e-5, atol=1e-5)


def test_per_feature_standardization_uses_cropped_training_statistics():
    g = torch.Generator().manual_seed(3)
    x_train = torch.rand(500, 2, 6, 6, generator=g) * 4 + torch.arange(36.0).reshape(6, 6)
    x_train[:, 1, 3, 3] = 5.0  # a constant entry: std 0 counts as 1
    p = pre(shape=(2, 6, 6), crop=4, standardize="per_feature", x_train=x_train)
    z = p.eval(x_train)
    assert z.shape == (500, 2, 4, 4)
    assert z.mean(dim=0).abs().max() < 1e-4
    std = z.std(dim=0, correction=0)
    want_std = torch.ones(2, 4, 4)
    want_std[1, 2, 2] = 0.0  # the constant entry (1, 3, 3) of the uncropped input
    assert (std - want_std).abs().max() < 1e-4
    assert torch.isfinite(z).all()
    # new inputs use the training statistics, not their own
    crop = x_train[:, :, 1:5, 1:5]
    x_new = torch.rand(3, 2, 6, 6, generator=g)
    want = (x_new[:, :, 1:5, 1:5] - crop.mean(0)) / crop.std(0, correction=0).where(crop.std(0) > 0, 1.0)
    assert torch.allclose(p.eval(x_new), want, atol=1e-4)


def test_per_feature_on_vectors():
    x_train = torch.randn(1000, 5, generator=torch.Generator().manual_seed(4)) * torch.arange(1.0, 6.0) + 3
    p = pre("vector", (5,), standardize="per_feature", x_train=x_train)
    z = p.eval(x_train)
    assert torch.allclose(z.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(z.std(0, correction=0), torch.ones(5), atol=1e-4)
    x_const = torch.cat([x_train, torch.full((1000, 1), 0.1)], dim=1)  # 0.1 is inexact in binary
    z = pre("vector", (6,), standardize="per_feature", x_train=x_const).eval(x_const)
    assert torch.equal(z[:, 5], torch.zeros(1000))


def test_none_is_the_identity_and_inputs_are_not_modified():
    x = torch.rand(4, 3, 8, 8)
    x0 = x.clone()
    assert torch.equal(pre(standardize="none").eval(x), x)
    pre(standardize="per_image", crop=6).eval(x)
    pre(standardize="per_image", crop=6, augment=True, flip=True).train_batch(x, torch.Generator())
    assert torch.equal(x, x0)


# --- crops and flips --------------------------------------------------------------------------


@pytest.mark.parametrize("side, crop, offset", [(32, 28, 2), (8, 5, 1), (8, 8, 0), (7, 4, 1)])
def test_centre_crop_picks_the_centre(side, crop, offset):
    x = unique_images(2, h=side, w=side)
    p = pre(shape=(3, side, side), crop=crop)
    assert p.output_shape == (3, crop, crop)
    assert torch.equal(p.eval(x), x[:, :, offset:offset + crop, offset:offset + crop])


def test_output_shape_without_crop():
    assert pre(shape=(3, 8, 8)).output_shape == (3, 8, 8)
    assert pre(shape=(3, 8, 8), crop=0, augment=True).output_shape == (3, 8, 8)
    assert pre("signal", (1, 40)).output_shape == (1, 40)
    assert pre("vector", (17,)).output_shape == (17,)


def test_random_crops_are_windows_of_the_input_and_vary():
    x = unique_images(64)
    p = pre(crop=5, augment=True)
    out = p.train_batch(x, torch.Generator().manual_seed(0))
    assert out.shape == (64, 3, 5, 5)
    offsets = window_offsets(out, x)
    assert len(set(offsets)) > 8  # 16 possible windows
    assert {t for t, _ in offsets} == {0, 1, 2, 3} and {l for _, l in offsets} == {0, 1, 2, 3}


def test_random_crops_are_reproducible_from_the_generator():
    x = unique_images(32)
    p = pre(crop=5, augment=True, flip=True)
    a = p.train_batch(x, torch.Generator().manual_seed(7))
    b = p.train_batch(x, torch.Generator().manual_seed(7))
    c = p.train_batch(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pad4_random_crop_when_augmenting_without_a_crop():
    x = unique_images(64) + 1  # no zeros inside the image, so padding is visible
    p = pre(crop=None, augment=True)
    out = p.train_batch(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    offsets = window_offsets(out, F.pad(x, (PAD,) * 4))
    assert len(set(offsets)) > 20  # 81 possible windows
    assert all(0 <= t <= 2 * PAD and 0 <= l <= 2 * PAD for t, l in offsets)
    assert (out == 0).any()  # some windows reach into the zero padding


def test_flip_mirrors_about_half_the_images():
    x = unique_images(400)
    out = pre(flip=True).train_batch(x, torch.Generator().manual_seed(2))
    same = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    mirrored = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)])
    assert (same ^ mirrored).all()
    assert abs(mirrored.float().mean().item() - 0.5) < 3 * math.sqrt(0.25 / 400)


def test_flip_with_centre_crop_and_random_crop():
    x = unique_images(64)
    out = pre(crop=6, flip=True).train_batch(x, torch.Generator().manual_seed(3))
    centre = x[:, :, 1:7, 1:7]
    assert all(torch.equal(o, c) or torch.equal(o, c.flip(-1)) for o, c in zip(out, centre, strict=True))
    out = pre(crop=6, augment=True, flip=True).train_batch(x, torch.Generator().manual_seed(3))
    windows = [[img[:, t:t + 6, l:l + 6] for t in range(3) for l in range(3)] for img in x]
    plain = [any(torch.equal(o, v) for v in w) for o, w in zip(out, windows, strict=True)]
    mirrored = [any(torch.equal(o.flip(-1), v) for v in w) for o, w in zip(out, windows, strict=True)]
    assert all(a != b for a, b in zip(plain, mirrored, strict=True))  # each is a window or a mirrored one
    assert 0 < sum(mirrored) < len(mirrored)


@pytest.mark.parametrize("crop, augment, flip", [(5, True, False), (None, True, True), (6, False, True)])
def test_draws_made_ahead_for_an_epoch_give_the_batches_of_train_batch(crop, augment, flip):
    """CPU, exact: an epoch's draws made batch by batch up front (as the captured step does) and applied
    later give the batches train_batch makes from the same generator, batch after batch."""
    x = unique_images(40) + 1
    p = pre(crop=crop, augment=augment, flip=flip, standardize="per_image")
    batches = [x[:16], x[16:32], x[32:]]  # the last one smaller
    live = [p.train_batch(b, g) for g in [torch.Generator().manual_seed(4)] for b in batches]
    g = torch.Generator().manual_seed(4)
    draws = [p.draw(b.shape[0], g) for b in batches]
    assert set(draws[0]) == ({"top", "left"} if augment else set()) | ({"flip"} if flip else set())
    assert all(torch.equal(p.apply_draws(b, d), out) for b, d, out in zip(batches, draws, live, strict=True))
    if augment:  # offsets cover the range a window can take
        room = (8 - crop) if crop else 2 * PAD
        tops = torch.cat([d["top"] for d in draws])
        assert tops.min() >= 0 and tops.max() <= room and len(set(tops.tolist())) > 1


def test_train_batch_without_augmentation_is_eval():
    x = torch.rand(8, 3, 8, 8)
    p = pre(crop=6, standardize="per_image")
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert torch.equal(p.train_batch(x, g), p.eval(x))
    assert torch.equal(g.get_state(), state)  # nothing drawn


def test_train_batch_standardizes_after_the_crop():
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    p = pre(crop=5, augment=True, standardize="per_image")
    raw = pre(crop=5, augment=True).train_batch(x, torch.Generator().manual_seed(9))
    out = p.train_batch(x, torch.Generator().manual_seed(9))
    np.testing.assert_allclose(out.numpy(), np_per_image_standardization(raw.numpy()), rtol=1e-5, atol=1e-5)


# --- dtype and device -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("standardize", ["per_image", "per_feature", "none"])
def test_dtype_is_preserved(dtype, standardize):
    x = torch.rand(10, 3, 8, 8).to(dtype)
    p = pre(crop=6, standardize=standardize, augment=True, flip=True, x_train=x.float())
    assert p.eval(x).dtype == dtype
    assert p.train_batch(x, torch.Generator().manual_seed(0)).dtype == dtype


def test_per_feature_statistics_survive_a_bfloat16_call():
    """A bfloat16 batch must not leave the float32 statistics rounded to bfloat16 for every later call:
    float32 results before and after it are bit-identical. The bfloat16 batch itself is standardised
    in float32 (as per-image standardisation is): equal to the float32 result on the same rounded
    inputs within one bfloat16 rounding of the output (relative 1e-2, absolute 1e-2)."""
    g = torch.Generator().manual_seed(3)
    x = 100 + 10 * torch.rand(50, 3, 8, 8, generator=g)  # large mean: bfloat16 keeps ~3 significant digits
    p = pre(standardize="per_feature", x_train=x)
    before = p.eval(x)
    low = x.to(torch.bfloat16)
    out = p.eval(low)
    assert out.dtype == torch.bfloat16
    assert torch.equal(p.eval(x), before)
    torch.testing.assert_close(out.float(), p.eval(low.float()), rtol=1e-2, atol=1e-2)


CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                        reason="needs a CUDA device")])


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_device_is_preserved_with_a_cpu_generator(device):
    x = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    p = pre(crop=6, standardize="per_feature", augment=True, flip=True, x_train=x.to(device))
    xd = x.to(device)
    out = p.train_batch(xd, torch.Generator().manual_seed(1))
    assert out.device == xd.device and p.eval(xd).device == xd.device
    # the same numbers as on the CPU
    cpu = pre(crop=6, standardize="per_feature", augment=True, flip=True, x_train=x)
    assert torch.allclose(out.cpu(), cpu.train_batch(x, torch.Generator().manual_seed(1)), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_generator_on_cuda_inputs():
    x = torch.rand(256, 3, 32, 32, device="cuda")
    p = pre(shape=(3, 32, 32), crop=28, standardize="per_image", augment=True, flip=True)
    g = torch.Generator(device="cuda").manual_seed(0)
    out = p.train_batch(x, g)
    assert out.device.type == "cuda" and out.shape == (256, 3, 28, 28)
    ref = np_per_image_standardization(p.eval(x).cpu().numpy())
    np.testing.assert_allclose(p.eval(x).cpu().numpy(), ref, rtol=1e-4, atol=1e-4)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout, shape", [("signal", (1, 40)), ("vector", (40,))])
@pytest.mark.parametrize("option", ["augment", "flip"])
def test_augmentation_needs_images(layout, shape, option):
    with pytest.raises(ConfigError, match=f"random-crop augmentation needs image data.*layout {layout}"):
        pre(layout, shape, **{option: True})


@pytest.mark.parametrize("layout, shape", [("signal", (1, 40)), ("vector", (40,))])
def test_crop_needs_images(layout, shape):
    with pytest.raises(ConfigError, match=f"crop needs image data.*layout {layout}"):
        pre(layout, shape, crop=20)


def test_crop_larger_than_the_image():
    with pytest.raises(ConfigError, match="crop 40 is larger than the 32x32"):
        pre(shape=(3, 32, 32), crop=40)


def test_random_crop_needs_room():
    with pytest.raises(ConfigError, match="no room"):
        pre(shape=(3, 32, 32), crop=32, augment=True)


def test_negative_crop():
    with pytest.raises(ConfigError, match="crop must be"):
        pre(crop=-1)


def test_unknown_standardize_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="per_image, per_feature, inception, none"):
        pre(standardize="whiten")


def test_per_feature_needs_training_inputs():
    with pytest.raises(ConfigError, match="x_train"):
        pre(standardize="per_feature")


def test_shape_and_layout_mismatches():
    with pytest.raises(ConfigError, match="layout image needs a 3-D input shape"):
        pre("image", (3, 8))
    with pytest.raises(ConfigError, match="layout must be one of"):
        pre("video", (3, 8, 8, 8))
    with pytest.raises(ConfigError, match="do not match"):
        pre().eval(torch.rand(2, 3, 7, 8))
    with pytest.raises(ConfigError, match="do not match"):
        pre(standardize="per_feature", x_train=torch.rand(4, 1, 8, 8))


@pytest.mark.parametrize("standardize", ["per_image", "per_feature", "none"])
def test_large_sets_are_preprocessed_in_chunks_with_the_same_result(standardize):
    from rethinkgen.data import preprocess

    x = torch.rand(2 * preprocess._CHUNK + 37, 3, 10, 10)  # three chunks, the last one partial
    pre = Preprocessor("image", (3, 10, 10), crop=8, standardize=standardize, augment=False, flip=False,
                       x_train=x)
    whole = pre._standardize(pre._centre_crop(x))  # the unchunked computation
    chunked = pre.eval(x)
    assert chunked.shape == (x.shape[0], 3, 8, 8) and chunked.is_contiguous()
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
