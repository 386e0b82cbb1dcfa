"""The one frozen config of a training run, its defaults, and its ``run_key``.

Defaults live here, each with its unit and meaning. ``None`` means "resolved from the dataset or the
model" (see :func:`resolve`); the resolved config is what gets stored with every result, and
``run_key`` (sha256 of its canonical JSON, minus fields that do not name the experiment: data_dir,
eval_batch_size, device, precision, ...: ``KEY_EXCLUDED``) makes reruns idempotent (design §3). How a run
is computed on its device (autocast, threads, ...) is recorded apart, as its numerics
(:mod:`rethinkgen.train.numerics`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

from rethinkgen.errors import ConfigError
from rethinkgen.train.validate import DEVICES, PRECISIONS, STANDARDIZE  # noqa: F401  (re-exported: the allowed values)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines one randomization-test run (paper §2, Appendix A).

    Examples
    --------
    >>> cfg = TrainConfig(model="mlp_1x512", corruption="partial_labels", level=0.2, seed=3)
    >>> cfg.replace(seed=4).seed, cfg.lr is None  # None: resolved from the dataset and model
    (4, True)
    >>> cfg.level = 0.5
    Traceback (most recent call last):
    dataclasses.FrozenInstanceError: cannot assign to field 'level'
    """

    # --- data --------------------------------------------------------------------------------
    data: str = "mnist1d"  # dataset registry name (`rethinkgen list datasets`)
    data_dir: str | None = None  # folder of file-based datasets; None: $RETHINKGEN_DATA or ~/.cache/rethinkgen
    data_options: dict | None = None  # source options, e.g. {"n_samples": 10000} (mnist1d), {"path": "x.npz"} (npz)
    n_train: int | None = None  # training samples used (a seeded subset); None: all
    n_test: int | None = None  # test samples used (a seeded subset); None: all
    crop: int | None = None  # side of the centre crop (random crop with `augment`); None: dataset default, 0: none
    standardize: str | None = None  # "per_image" (paper App. A) | "per_feature" | "inception" ([-1, 1]) | "none";
    # None: dataset default
    # --- corruption (paper §2.1) ------------------------------------------------------------------
    corruption: str = "true_labels"  # corruption registry name (`rethinkgen list corruptions`)
    level: float | None = None  # label-corruption probability p in [0, 1] (partial_labels only)
    exclude_true_class: bool = False  # corrupted labels drawn from the K-1 other classes (not the paper's)
    # --- model -------------------------------------------------------------------------------
    model: str = "mlp_1x512"  # model registry name (`rethinkgen list models`)
    dropout: float = 0.0  # dropout probability in the model's hidden layers; 0: off (paper, CIFAR-10)
    # --- optimisation (paper App. A: SGD, momentum 0.9, lr x0.95 per 50,000-image epoch) ------
    epochs: int | None = None  # maximum passes over the training set; None: dataset default
    batch_size: int = 128  # samples per SGD step (not stated in the paper; 128 as in the authors' demo)
    lr: float | None = None  # initial learning rate; None: dataset default, else the model's paper value
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 0.0  # L2 coefficient added to the gradient (paper: on/off, value not stated)
    lr_decay: float = 0.95  # multiplicative learning-rate decay factor
    lr_decay_every: int | None = None  # samples seen per decay; None: dataset default, 0: once per epoch
    augment: bool = False  # random crop (images) instead of the centre crop (Table 1 "random crop")
    flip: bool = False  # random horizontal flips (images)
    # --- stopping and logging ------------------------------------------------------------------
    target_train_acc: float = 1.0  # stop when eval-mode accuracy on the (corrupted) train set reaches it
    eval_every: int | None = None  # SGD steps between train-set evaluations (convergence step); None: per epoch
    log_every: int = 10  # SGD steps between recorded training losses (Figure 1a)
    eval_batch_size: int | None = None  # samples per evaluation pass (None: by device and layout, train.resolve)
    seed: int = 0  # the one seed; split into corruption / init / order / augment / dropout streams
    device: str = "auto"  # "auto" (cuda -> mps -> cpu) | "cpu" | "cuda" | "mps"
    amp: bool = True  # precision unset: autocast on CUDA in the model's dtype (resolve.CUDA_AUTOCAST: bf16)
    precision: str | None = None  # "float32" (no autocast) | "bfloat16" (bf16 autocast on every device, the CPU
    # too: slow there, for tests and to reproduce a GPU run); None: automatic (as amp says, CUDA only)
    compile: bool = False  # torch.compile the model (CUDA only; no gain measured on CPU)
    channels_last: bool | None = None  # channels-last memory format for images; None: on CUDA only
    cuda_graphs: bool | None = None  # captured step (train.step); None: CUDA w/o dropout/compile; True: CPU too
    # --- streamed data and several processes (ImageNet, Table 2) ---------------------------------
    world_size: int | None = None  # DDP processes (ranks, one per GPU) training the run; None: 1 (torchrun: its
    # WORLD_SIZE); the batch is split among them. Recorded in the run's numerics, not in its key
    workers: int | None = None  # DataLoader worker processes per rank decoding streamed images; None: by CPUs
    train_eval_samples: int | None = None  # streamed data: the per-epoch training-set evaluation on a fixed
    # seeded subset of at most this many images (ImageNet: 1.28M eval-mode images a row otherwise); None: all

    def __post_init__(self) -> None:
        """Refuse impossible values at once (the one validator, :mod:`rethinkgen.train.validate`), and store
        numbers as their field's plain type (``lr=1`` and ``lr=1.0`` are one run)."""
        from rethinkgen.train import validate

        validate.check_config(self)
        for f in fields(self):
            value = getattr(self, f.name)
            plain = validate.normalized(f.name, value)
            if plain is not value and (type(plain) is not type(value) or plain != value):
                object.__setattr__(self, f.name, plain)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping, refusing unknown keys (they would silently do nothing)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; valid keys: {', '.join(sorted(known))}")
        return cls(**values)


# Fields that do not name the experiment, so they are left out of the run key: where its data lives, the
# evaluation batch, the device, the autocast precision, the memory format, the captured step and the number
# of DDP processes — whose effect on the floats (the order of float operations; bf16 rounding in the autocast
# regions; the learning rate read as float32 by a captured step; per-process BatchNorm batches) each run
# records as its numerics (rethinkgen.train.numerics; a resume with other numerics is refused) — and the
# DataLoader workers, which change nothing computed (each image's augmentation is drawn from its own seed).
# ``precision`` is here for the device's reason: the automatic precision (None) is already bf16 on CUDA and
# float32 on the CPU under one key, and ``precision="bfloat16"`` on the CPU computes what that CUDA run does,
# so it must name the same experiment (and every key stored before the field existed stays as it was).
KEY_EXCLUDED = frozenset({"data_dir", "device", "eval_batch_size", "precision", "channels_last", "cuda_graphs",
                          "world_size", "workers"})


# Fields added after run keys were first stored: left out of the canonical JSON while None (their
# default), so every run that does not set them keeps the key it always had.
KEY_OMITTED_IF_NONE = frozenset({"eval_every", "train_eval_samples"})


def field_names() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def canonical_json(config: TrainConfig) -> str:
    """Sorted-key, compact JSON of the config without the fields in ``KEY_EXCLUDED`` (and those in
    ``KEY_OMITTED_IF_NONE`` while they are None)."""
    values = {k: v for k, v in config.to_dict().items()
              if k not in KEY_EXCLUDED and not (k in KEY_OMITTED_IF_NONE and v is None)}
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def run_key(config: TrainConfig) -> str:
    """sha256 hex digest of the canonical JSON of a *resolved* config (design §3).

    Examples
    --------
    >>> from rethinkgen.train.resolve import resolve_config
    >>> cfg = resolve_config(TrainConfig(data="mnist1d", corruption="random_labels", seed=1))
    >>> key = run_key(cfg)
    >>> len(key), key == run_key(cfg.replace(device="cpu"))  # the experiment, wherever it runs
    (64, True)
    >>> key == run_key(cfg.replace(seed=2))
    False
    """
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()
