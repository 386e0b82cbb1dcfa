"""Input corruptions of paper §2.1 for streamed images, one image at a time, at the training resolution.

Applied by a DataLoader worker to each image after its crop (so "one permutation at the training
resolution": the positions permuted are the H×W pixels the network sees, the C channels of a pixel
moving together), to training *and* test images (design §2):

- ``shuffled_pixels``: one permutation of the H×W positions for every image, drawn once from the
  ``"corruption"`` stream (sub-stream 3, as the in-memory corruption; at the same resolution it is the
  very same permutation);
- ``random_pixels``: a permutation of its own for each image, fixed for the run: image ``i`` of split
  ``s`` draws it from a generator seeded by (corruption sub-stream 4, s, i), so it is the same in every
  epoch, worker and rank;
- ``gaussian``: each image replaced by Gaussian noise whose per-channel mean and variance match the
  training set (estimated on a seeded sample of training images at the training resolution, see
  :func:`rethinkgen.data.stream.loader.channel_moments`); image ``i`` of split ``s`` draws its noise
  from (sub-stream 5, s, i), so it too is fixed for the run, and no image is decoded at all.

Pixel values are in [0, 1] units: shuffled and random pixels keep the decoded uint8 values; Gaussian
inputs are float32 (not clipped), standardised afterwards like images.
"""

from __future__ import annotations

import numpy as np
import torch

from rethinkgen import seeding

__all__ = ["INPUT_CORRUPTIONS", "PixelCorruption"]

INPUT_CORRUPTIONS = ("shuffled_pixels", "random_pixels", "gaussian")
_SHUFFLE, _RANDOM_PIXELS, _GAUSSIAN = 3, 4, 5  # sub-streams of "corruption" (rethinkgen.data.corruptions)
_SPLITS = {"train": 0, "test": 1}


def _image_generator(base: int, index: int) -> torch.Generator:
    """A CPU generator for image ``index``, seeded from ``base`` (a split's stream) and the index."""
    state = np.random.SeedSequence([base, int(index)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))


class PixelCorruption:
    """One of :data:`INPUT_CORRUPTIONS` for images of ``shape`` (C, H, W); see the module docstring.

    ``moments``: (mean, var) per channel, (C,) each, in [0, 1] pixel units (``gaussian`` only).
    Picklable (DataLoader workers get a copy) and stateless: the output depends on (image, split,
    index) only.
    """

    def __init__(self, name: str, seed: int, shape: tuple[int, int, int],
                 moments: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        if name not in INPUT_CORRUPTIONS:
            raise ValueError(f"{name!r} is not an input corruption; valid: {', '.join(INPUT_CORRUPTIONS)}")
        self.name, self.shape = name, tuple(int(s) for s in shape)
        c, h, w = self.shape
        self.perm = None
        if name == "shuffled_pixels":  # out[..., j] = x[..., perm[j]], as the in-memory corruption
            self.perm = torch.from_numpy(seeding.rng(seed, "corruption", _SHUFFLE).permutation(h * w))
        sub = {"random_pixels": _RANDOM_PIXELS, "gaussian": _GAUSSIAN}.get(name)
        self.bases = {s: seeding.stream_seed(seed, "corruption", sub, k) for s, k in _SPLITS.items()} if sub else {}
        self.mean = self.std = None
        if name == "gaussian":
            if moments is None:
                raise ValueError("gaussian needs the training set's per-channel (mean, var)")
            mean, var = (np.asarray(m, dtype=np.float64).reshape(c) for m in moments)
            self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
            self.std = torch.tensor(np.sqrt(var), dtype=torch.float32)[:, None, None]

    @property
    def needs_image(self) -> bool:
        """False for ``gaussian``: the image is never decoded."""
        return self.name != "gaussian"

    def __call__(self, x: torch.Tensor | None, split: str, index: int) -> torch.Tensor:
        """Image ``index`` of ``split`` ("train" | "test"): ``x`` (C, H, W) uint8 at the training resolution
        (None for ``gaussian``) -> the corrupted image, (C, H, W) uint8 (float32 for ``gaussian``)."""
        c, h, w = self.shape
        if self.name == "gaussian":
            noise = torch.randn((c, h, w), generator=_image_generator(self.bases[split], index))
            return noise.mul_(self.std).add_(self.mean)
        if tuple(x.shape) != self.shape:
            raise ValueError(f"image {index} of {split} is {tuple(x.shape)}, expected {self.shape}")
        if self.name == "shuffled_pixels":
            perm = self.perm
        else:
            perm = torch.randperm(h * w, generator=_image_generator(self.bases[split], index))
        return x.reshape(c, h * w)[:, perm].reshape(c, h, w)
