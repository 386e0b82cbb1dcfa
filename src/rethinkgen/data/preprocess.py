"""Input preprocessing of the paper's Appendix A: centre crop, per-image standardisation, augmentation.

Paper (App. A, CIFAR-10): "We divide the pixel values by 255 to scale them into [0, 1], crop from the
center to get 28x28 inputs, and then normalize them by subtracting the mean and dividing the adjusted
standard deviation independently for each image with the per_image_whitening function in TENSORFLOW".
Scaling to [0, 1] is done by the data sources; this module does the rest, on whole tensors on any
device (no per-sample Python), keeping the input dtype:

- ``crop``: centre ``crop×crop`` window of each image at evaluation (offset ``(H − crop) // 2``, as
  TensorFlow's ``resize_image_with_crop_or_pad``). With ``augment=True`` training batches take a
  uniformly random ``crop×crop`` window of each image instead (Table 1's "random crop"). With
  ``augment=True`` and no crop (``None`` or 0), training batches use the common CIFAR augmentation:
  zero-pad 4 pixels on each side and take a random window of the original size.
- ``flip``: each training image is mirrored left-right with probability 1/2.
- ``standardize``: ``"per_image"`` = TensorFlow's ``per_image_standardization``,
  ``(x − mean) / max(std, 1/sqrt(#values))`` over all values of each (cropped) image, population std;
  ``"per_feature"`` = subtract the training-set mean and divide by the training-set std of each input
  entry (computed once from the centre-cropped ``x_train``; a zero std counts as 1); ``"none"``.

Random draws in :meth:`Preprocessor.train_batch` come only from the ``torch.Generator`` passed in
(the trainer seeds it from the ``"augment"`` stream), in a fixed order: crop offsets, then flips.
:meth:`Preprocessor.draw` makes the same draws ahead and :meth:`Preprocessor.apply_draws` applies
them later (the captured training step, rethinkgen.train.step).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rethinkgen.data.dataset import LAYOUTS
from rethinkgen.errors import ConfigError

__all__ = ["PAD", "STANDARDIZE", "Preprocessor"]

STANDARDIZE = ("per_image", "per_feature", "none")
PAD = 4  # pixels of zero padding for random-crop augmentation without a crop (CIFAR convention)
_DIMS = {"image": 3, "signal": 2, "vector": 1}
_CHUNK = 4096  # samples per chunk when preprocessing a whole set or computing per-feature statistics
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class Preprocessor:
    """Crop, standardise and (for training batches) augment inputs of one dataset.

    Parameters
    ----------
    layout: ``"image"`` (N, C, H, W), ``"signal"`` (N, C, L) or ``"vector"`` (N, D).
    input_shape: the shape of one raw input, e.g. ``(3, 32, 32)``.
    crop: side of the square centre crop (images only); ``None`` or 0: no crop.
    standardize: ``"per_image"``, ``"per_feature"`` or ``"none"``.
    augment: random crops in :meth:`train_batch` (images only).
    flip: random horizontal flips in :meth:`train_batch` (images only).
    x_train: raw training inputs (N, *input_shape); required for ``"per_feature"`` statistics.

    Examples
    --------
    >>> import torch
    >>> pre = Preprocessor("image", (3, 32, 32), crop=28, standardize="per_image", augment=True, flip=True)
    >>> pre.output_shape
    (3, 28, 28)
    >>> x = torch.rand(5, 3, 32, 32)
    >>> pre.eval(x).shape, pre.train_batch(x, torch.Generator().manual_seed(0)).shape
    (torch.Size([5, 3, 28, 28]), torch.Size([5, 3, 28, 28]))
    """

    def __init__(
        self,
        layout: str,
        input_shape: tuple[int, ...],
        *,
        crop: int | None,
        standardize: str,
        augment: bool,
        flip: bool,
        x_train: torch.Tensor | None = None,
    ) -> None:
        if layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != _DIMS[layout]:
            raise ConfigError(f"layout {layout} needs a {_DIMS[layout]}-D input shape, got {input_shape}")
        if standardize not in STANDARDIZE:
            raise ConfigError(f"unknown standardize {standardize!r}; valid: {', '.join(STANDARDIZE)}")
        crop = int(crop or 0)
        if crop < 0:
            raise ConfigError(f"crop must be a positive side length (or 0 for none), got {crop}")
        if layout != "image":
            asked = [name for name, on in (("--augment", augment), ("--flip", flip), ("--crop", crop)) if on]
            if augment or flip:
                raise ConfigError(
                    f"random-crop augmentation needs image data; this dataset has layout {layout} "
                    f"(input shape {input_shape}): drop {' '.join(asked)}"
                )
            if crop:
                raise ConfigError(
                    f"crop needs image data; this dataset has layout {layout} (input shape {input_shape}): "
                    "use --crop 0"
                )
        if layout == "image":
            h, w = input_shape[1:]
            if crop > min(h, w):
                raise ConfigError(f"crop {crop} is larger than the {h}x{w} images; use --crop {min(h, w)} "
                                  "or smaller (0 for none)")
            if augment and crop and crop >= max(h, w):
                raise ConfigError(
                    f"random crops of {crop}x{crop} from {h}x{w} images have no room to move; use a smaller "
                    f"--crop, or --crop 0 for pad-{PAD} random crops of the full size"
                )
        self.layout = layout
        self.input_shape = input_shape
        self.crop = crop  # 0: none
        self.standardize = standardize
        self.augment = bool(augment)
        self.flip = bool(flip)
        if layout == "image" and crop:
            self.output_shape: tuple[int, ...] = (input_shape[0], crop, crop)
        else:
            self.output_shape = input_shape
        self._mean: torch.Tensor | None = None  # per-feature statistics, (*output_shape,), float32 on x_train's device
        self._std: torch.Tensor | None = None
        self._moments: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
        if standardize == "per_feature":
            if x_train is None:
                raise ConfigError("standardize='per_feature' needs the training inputs (x_train) for its "
                                  "statistics")
            self._check(x_train)
            self._mean, self._std = _feature_moments(self._centre_crop(x_train))

    def __repr__(self) -> str:
        return (f"Preprocessor(layout={self.layout!r}, input_shape={self.input_shape}, crop={self.crop}, "
                f"standardize={self.standardize!r}, augment={self.augment}, flip={self.flip})")

    # --- public -------------------------------------------------------------------------------

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation inputs: centre crop and standardise. (N, *input_shape) -> (N, *output_shape).

        Large inputs go through in chunks of 4,096 samples into one output tensor, so the temporaries
        of cropping and standardising stay a few MB instead of several copies of the whole set (a
        CIFAR-10-sized worker stays under 2 GB: benchmarks/memory.py)."""
        self._check(x)
        if x.shape[0] <= _CHUNK or (not self.crop and self.standardize == "none"):
            return self._standardize(self._centre_crop(x))
        out = torch.empty((x.shape[0], *self.output_shape), dtype=x.dtype, device=x.device)
        for start in range(0, x.shape[0], _CHUNK):
            out[start:start + _CHUNK] = self._standardize(self._centre_crop(x[start:start + _CHUNK]))
        return out

    def train_batch(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A training batch: random crop and/or flip where asked (else as :meth:`eval`), then standardise.

        ``generator`` may live on another device than ``x``; draws are made on its device and moved.
        The same as ``apply_draws(x, draw(x.shape[0], generator))``.
        """
        self._check(x)
        if not (self.augment or self.flip):
            return self.eval(x)
        return self.apply_draws(x, self.draw(x.shape[0], generator))

    def draw(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The random draws of one training batch of ``batch`` images, made on ``generator``'s device in
        :meth:`train_batch`'s order: ``"top"`` and ``"left"`` (B,) int64 crop offsets (with ``augment``),
        then ``"flip"`` (B,) bool (with ``flip``). Empty without augmentation.

        Drawing them ahead (a whole epoch's, batch by batch) and applying them later with
        :meth:`apply_draws` gives the numbers of :meth:`train_batch` exactly: the captured training step
        (rethinkgen.train.step) reads pre-drawn offsets from device tensors instead of a generator.
        """
        draws: dict[str, torch.Tensor] = {}
        if self.augment:
            h, w = self.input_shape[1:]
            if self.crop:
                ch = cw = self.crop
            else:  # pad-4 random crop back to the original size
                ch, cw, h, w = h, w, h + 2 * PAD, w + 2 * PAD
            draws["top"] = torch.randint(0, h - ch + 1, (batch,), generator=generator, device=generator.device)
            draws["left"] = torch.randint(0, w - cw + 1, (batch,), generator=generator, device=generator.device)
        if self.flip:
            draws["flip"] = torch.rand(batch, generator=generator, device=generator.device) < 0.5
        return draws

    def apply_draws(self, x: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """A training batch from raw inputs (B, *input_shape) and the draws of :meth:`draw` for B images:
        crop (random at the drawn offsets with ``augment``, else centred), flip the drawn images, then
        standardise. (B, *input_shape) -> (B, *output_shape), no host synchronisation."""
        self._check(x)
        x = self._crop_at(x, draws["top"], draws["left"]) if self.augment else self._centre_crop(x)
        if self.flip:
            x = torch.where(draws["flip"].to(x.device)[:, None, None, None], x.flip(-1), x)
        return self._standardize(x)

    # --- steps --------------------------------------------------------------------------------

    def _check(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ConfigError(f"inputs of shape {tuple(x.shape)} do not match the preprocessor's input shape "
                              f"(N, {', '.join(map(str, self.input_shape))})")

    def _centre_crop(self, x: torch.Tensor) -> torch.Tensor:
        if not self.crop:
            return x
        h, w = x.shape[-2:]
        top, left = (h - self.crop) // 2, (w - self.crop) // 2
        return x[..., top:top + self.crop, left:left + self.crop]

    def _crop_at(self, x: torch.Tensor, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
        """The window at (``top``, ``left``) (B,) of each image (of the zero-padded image without a crop):
        (B, C, H, W) -> (B, C, *output_shape[1:]), whole batch."""
        if self.crop:
            ch = cw = self.crop
        else:  # pad-4 random crop back to the original size
            ch, cw = x.shape[-2:]
            x = F.pad(x, (PAD, PAD, PAD, PAD))
        b, c, h, w = x.shape
        top, left = top.to(x.device), left.to(x.device)
        rows = top[:, None] + torch.arange(ch, device=x.device)  # (B, ch)
        cols = left[:, None] + torch.arange(cw, device=x.device)  # (B, cw)
        flat = (rows[:, :, None] * w + cols[:, None, :]).reshape(b, 1, ch * cw)  # (B, 1, ch*cw) into H*W
        # one gather over the flattened pixels (several times faster than 4-D advanced indexing on CPU)
        return x.reshape(b, c, h * w).gather(2, flat.expand(b, c, ch * cw)).reshape(b, c, ch, cw)

    def _standardize(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardize == "none":
            return x
        if self.standardize == "per_image":
            return _per_image_standardization(x)
        mean, std = self._moments_for(x)
        if x.dtype in _LOW_PRECISION:  # float16/bfloat16: standardise in float32, as per-image does
            return ((x.float() - mean) / std).to(x.dtype)
        return (x - mean) / std

    def _moments_for(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-feature mean and std on ``x``'s device, in its dtype (float32 for float16/bfloat16).

        The float32 statistics computed at construction stay the master copy; converted copies are
        cached per (device, dtype), so a bfloat16 batch never degrades a later float32 one."""
        assert self._mean is not None and self._std is not None
        dtype = torch.float32 if x.dtype in _LOW_PRECISION else x.dtype
        key = (x.device, dtype)
        if key not in self._moments:
            self._moments[key] = (self._mean.to(device=x.device, dtype=dtype),
                                  self._std.to(device=x.device, dtype=dtype))
        return self._moments[key]


def _per_image_standardization(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's ``per_image_standardization`` on each sample of (N, ...): population mean and std
    over all its values, std floored at ``1/sqrt(#values)`` (so constant images map to 0)."""
    n_values = math.prod(x.shape[1:])
    flat = x.reshape(x.shape[0], -1)
    work = flat.float() if flat.dtype in (torch.float16, torch.bfloat16) else flat
    var, mean = torch.var_mean(work, dim=1, correction=0, keepdim=True)
    adjusted = var.sqrt().clamp_min(1.0 / math.sqrt(max(n_values, 1)))
    return ((work - mean) / adjusted).to(x.dtype).reshape(x.shape)


def _feature_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std of each input entry over the N samples of (N, ...), as float32 tensors
    of shape x.shape[1:]; a zero std is replaced by 1. One pass over chunks of samples, the chunks'
    moments combined exactly in float64."""
    n = x.shape[0]
    if n == 0:
        raise ConfigError("standardize='per_feature' needs at least one training sample")
    counts, means, variances = [], [], []
    for start in range(0, n, _CHUNK):
        chunk = x[start:start + _CHUNK].float()
        var, mean = torch.var_mean(chunk, dim=0, correction=0)
        counts.append(chunk.shape[0])
        means.append(mean.double())
        variances.append(var.double())
    mean = sum(m * c for m, c in zip(means, counts, strict=True)) / n
    var = sum((v + (m - mean).square()) * c for m, v, c in zip(means, variances, counts, strict=True)) / n
    std = var.sqrt().float()
    return mean.float(), torch.where(std > 0, std, torch.ones_like(std))
