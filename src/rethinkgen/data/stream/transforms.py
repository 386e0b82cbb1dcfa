"""Inception preprocessing for streamed images (paper App. A: "The TensorFlow Inception data
preprocessing ... [is] reused"; "the input pipeline is extended to disable augmentation").

On one decoded image, uint8 (3, H, W), with ``torchvision.transforms.v2``:

- **training, with augmentation** (Table 2 "data aug: yes"): ``RandomResizedCrop(size)`` — a crop of
  8%–100% of the area and aspect ratio 3/4–4/3, resized to size×size (bilinear, antialiased) — then,
  with ``flip``, ``RandomHorizontalFlip``. This is torchvision's ImageNet recipe; TF-slim's Inception
  preprocessing also distorts colours, which is not done here.
- **evaluation, and training without augmentation** (the paper's ablation): ``Resize(resize)`` of the
  shorter side then ``CenterCrop(size)``; ``resize`` defaults to ``size / 0.875`` (342 for 299, 256 for
  224: torchvision's evaluation transforms for Inception V3 and ResNet-50). ``flip`` alone adds random
  flips to these training images.

Each training image's random draws come from a seed of its own, derived from (the run's "augment"
stream, the epoch, the image's index): an image gets the same crop in a given epoch whichever
DataLoader worker or DDP rank decodes it, and however many there are, so a resumed run sees exactly
the images an uninterrupted one would. The draws run inside ``torch.random.fork_rng``: the worker's
global generator is left as it was.

:func:`model_input` turns a collated batch into the network's input on the device: float32, pixels
/255, standardised (``"inception"``: [-1, 1] as TF-slim's Inception; ``"per_image"``; ``"none"``) and
channels-last where asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rethinkgen.errors import ConfigError

__all__ = ["STREAM_STANDARDIZE", "ImageTransform", "eval_resize", "model_input"]

STREAM_STANDARDIZE = ("inception", "per_image", "none")  # "per_feature" needs the whole set in memory
CROP_FRACTION = 0.875  # evaluation: centre crop of 87.5% of the resized shorter side


def eval_resize(size: int, resize: int | None = None) -> int:
    """The shorter side the evaluation transform resizes to: ``resize``, else round(size / 0.875)."""
    return int(resize) if resize else int(round(size / CROP_FRACTION))


@dataclass(frozen=True)
class ImageTransform:
    """The per-image transforms of a run (module docstring). Picklable, for DataLoader workers."""

    size: int  # side of the square network input (299: Inception V3)
    resize: int  # shorter side before the evaluation centre crop
    augment: bool  # random resized crops for training images
    flip: bool  # random horizontal flips for training images
    augment_seed: int  # the run's "augment" stream seed

    def __post_init__(self) -> None:
        if self.size < 1 or self.resize < self.size:
            raise ConfigError(f"the evaluation resize ({self.resize}) must be at least the crop ({self.size})")

    def _image_seed(self, epoch: int, index: int) -> int:
        state = np.random.SeedSequence([self.augment_seed, int(epoch), int(index)]).generate_state(1, np.uint64)[0]
        return int(state >> np.uint64(1))

    def evaluation(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (3, H, W) -> uint8 (3, size, size): resize the shorter side, centre crop."""
        from torchvision.transforms.v2 import functional as TF

        image = TF.resize(image, [self.resize], antialias=True)
        return TF.center_crop(image, [self.size, self.size])

    def training(self, image: torch.Tensor, epoch: int, index: int) -> torch.Tensor:
        """uint8 (3, H, W) -> uint8 (3, size, size) for image ``index`` in ``epoch`` (seeded per image)."""
        if not self.augment and not self.flip:
            return self.evaluation(image)
        from torchvision.transforms import v2

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._image_seed(epoch, index))
            if self.augment:
                image = v2.RandomResizedCrop(self.size, antialias=True)(image)
            else:
                image = self.evaluation(image)
            if self.flip:
                image = v2.RandomHorizontalFlip()(image)
        return image


def model_input(x: torch.Tensor, device: torch.device, standardize: str, channels_last: bool) -> torch.Tensor:
    """A collated batch (B, 3, H, W) uint8 (or float32 Gaussian inputs in [0, 1] units) -> float32 network
    input on ``device``: /255, standardised, channels-last if asked. The copy to the device does not
    wait (pinned memory)."""
    from rethinkgen.data.preprocess import _per_image_standardization

    x = x.to(device, non_blocking=True)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    if standardize == "inception":
        x = x.mul_(2.0).sub_(1.0)
    elif standardize == "per_image":
        x = _per_image_standardization(x)
    elif standardize != "none":
        raise ConfigError(f"standardize={standardize!r} is not available for streamed images; use one of "
                          f"{', '.join(STREAM_STANDARDIZE)}")
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
