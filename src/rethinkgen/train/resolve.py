"""Fill a config's ``None`` defaults from the dataset and model specs, and validate it.

Resolution order for each default (design §6: defaults are chosen per dataset):
explicit value > the dataset's default > the model's paper value (Appendix A) > the global default.
"""

from __future__ import annotations

from rethinkgen.errors import ConfigError
from rethinkgen.train.config import TrainConfig
from rethinkgen.train.validate import config_problems

FALLBACK_EPOCHS = 100  # when a dataset states no default
FALLBACK_DECAY_EVERY = 50_000  # one CIFAR-10 epoch: the paper's "x0.95 per epoch"
EVAL_BATCH = 2048  # samples per evaluation pass: vectors and signals, and anything on a GPU
EVAL_BATCH_CPU_IMAGES = 256  # images on the CPU: a convnet's activations at 2048 CIFAR images take ~1 GB

# Corruptions whose level is fixed by their name.
FIXED_LEVEL = {"true_labels": 0.0, "random_labels": 1.0}


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Return ``config`` with every ``None`` default filled in, after validating it.

    Raises ConfigError naming the field and the allowed values for anything impossible.
    """
    from rethinkgen.data.corruptions import CORRUPTIONS
    from rethinkgen.data.sources import DATASETS, dataset_layout
    from rethinkgen.models import MODELS

    dataset = DATASETS.get(config.data)
    model = MODELS.get(config.model)
    corruption = CORRUPTIONS.get(config.corruption)
    defaults = dict(dataset.defaults)
    level = _resolve_level(config, corruption)
    resolved = config.replace(
        lr=config.lr if config.lr is not None else defaults.get("lr", model.paper_lr),
        epochs=config.epochs if config.epochs is not None else defaults.get("epochs", FALLBACK_EPOCHS),
        lr_decay_every=(config.lr_decay_every if config.lr_decay_every is not None
                        else defaults.get("lr_decay_every", FALLBACK_DECAY_EVERY)),
        crop=config.crop if config.crop is not None else (dataset.crop or 0),
        standardize=config.standardize or dataset.standardize,
        level=level,
    )
    layout = dataset_layout(config.data, config.data_options, config.data_dir)
    validate(resolved, dataset_layout=layout, model_layouts=model.layouts)
    if dataset.index is not None and resolved.crop:  # streamed: the input shape is known before any file is read
        _check_model_input(resolved)
    return resolved


def _check_model_input(config: TrainConfig) -> None:
    """The model's own checks of a streamed run's input, (3, crop, crop), before the data is indexed (1.28
    million files for ImageNet): the model is built on the ``meta`` device (no memory, no weights drawn)
    and its ConfigError (e.g. Inception V3 below 299×299) raised as it is."""
    import torch

    from rethinkgen.models import create_model

    with torch.device("meta"):
        create_model(config.model, (3, config.crop, config.crop), 2, dropout=config.dropout, layout="image")


def eval_batch_size(config: TrainConfig, layout: str, device_type: str) -> int:
    """The evaluation batch of a run on ``device_type``: the config's, else large, except for images on
    the CPU, where a small batch is as fast and keeps a CIFAR-10-sized worker under 2 GB
    (benchmarks/memory.py). Chosen where the run trains (a sweep's driver may have no GPU), so
    ``resolve_config`` leaves a ``None`` in place; the field is not part of the run key."""
    if config.eval_batch_size is not None:
        return config.eval_batch_size
    return EVAL_BATCH_CPU_IMAGES if layout == "image" and device_type == "cpu" else EVAL_BATCH


def use_channels_last(config: TrainConfig, layout: str, device_type: str) -> bool:
    """Whether a run stores images (inputs, activations, conv weights) channels-last: the config's
    ``channels_last``, else on CUDA only (faster convolutions there; no gain measured on the CPU).
    Never for signals and vectors (``validate`` refuses ``channels_last=True`` for them)."""
    if layout != "image":
        return False
    return config.channels_last if config.channels_last is not None else device_type == "cuda"


# The autocast dtype (a torch dtype name) of each model's CUDA runs when ``config.amp`` is on and
# ``config.precision`` is unset; None: float32 throughout.
# Models not listed take DEFAULT_CUDA_AUTOCAST. Today every model keeps bfloat16, the value before this
# table existed; the only measurement so far (one H200, eager steps, ../shared/gpu/README.md) had
# inception_small at batch 128 *slower* in bf16 than in fp32 (11.5 vs 9.6 ms), but those steps waited on
# the host, so it does not say what bf16 costs in a captured step. `benchmarks/gpu_steps.py` times both
# per model on a GPU; its numbers (not yet taken) will fill this table. Never applied automatically on the
# CPU (bf16 is 3-17x slower there, design §6) or MPS: there only ``precision="bfloat16"`` asks for it.
DEFAULT_CUDA_AUTOCAST: str | None = "bfloat16"
CUDA_AUTOCAST: dict[str, str | None] = {}


def autocast_name(config: TrainConfig, device_type: str) -> str | None:
    """The name of the torch dtype of a run's autocast regions (forward and loss, training and evaluation)
    on ``device_type``, or None (float32 throughout). Recorded as the run's numerics (``train.numerics``).

    ``config.precision``: "float32" gives None on every device; "bfloat16" gives "bfloat16" on every
    device, the CPU included (slow there: for tests, and to reproduce a GPU run's precision); None
    (automatic) gives the model's entry of :data:`CUDA_AUTOCAST` on CUDA when ``config.amp``, else None.
    (``validate`` refuses ``precision="bfloat16"`` with ``amp=False``.)

    Examples
    --------
    >>> cfg = TrainConfig(model="mlp_1x512")
    >>> autocast_name(cfg, "cuda"), autocast_name(cfg, "cpu")
    ('bfloat16', None)
    >>> autocast_name(cfg.replace(precision="bfloat16"), "cpu"), autocast_name(cfg.replace(amp=False), "cuda")
    ('bfloat16', None)
    """
    if config.precision is not None:
        return None if config.precision == "float32" else config.precision
    if device_type != "cuda" or not config.amp:
        return None
    return CUDA_AUTOCAST.get(config.model, DEFAULT_CUDA_AUTOCAST)


def autocast_dtype(config: TrainConfig, device_type: str):
    """:func:`autocast_name` as a ``torch.dtype`` (None: float32 throughout)."""
    name = autocast_name(config, device_type)
    if name is None:
        return None
    import torch

    return getattr(torch, name)


STEP_MODES = ("eager", "static", "captured")


def step_mode(config: TrainConfig, device_type: str) -> str:
    """How a run takes its SGD steps on ``device_type`` (rethinkgen.train.step):

    - ``"eager"``: the model, the loss and ``torch.optim.SGD`` called step by step from Python;
    - ``"static"``: the same operations on static tensors (the epoch's data order, augmentation draws and
      learning rates in device tables, read by a device-side step counter), uncaptured;
    - ``"captured"``: the static step captured once as a CUDA graph and replayed.

    ``config.cuda_graphs``: True asks for the static step everywhere (captured on CUDA, run uncaptured on
    the CPU — where the tests check it), False for the eager one; None (default) captures on CUDA unless
    the run uses dropout or ``compile`` (eager there: dropout draws inside a graph and a compiled forward
    under capture are not verified on a device yet). Data streamed from disk always takes eager steps.
    Raises ConfigError for a device without the static step (MPS: no tensor learning rate in torch's fused
    SGD checked there).
    """
    from rethinkgen.train.streaming.select import streams

    if streams(config):  # streamed data (imagenet): batches come from DataLoader workers, not device tables
        return "eager"
    wanted = config.cuda_graphs
    if wanted is None:
        wanted = device_type == "cuda" and config.dropout == 0 and not config.compile
    if not wanted:
        return "eager"
    if device_type not in ("cpu", "cuda"):
        raise ConfigError(f"cuda_graphs=True needs a CUDA device or the CPU, not {device_type}; "
                          "leave cuda_graphs unset (or False) there")
    return "captured" if device_type == "cuda" else "static"


def _resolve_level(config: TrainConfig, corruption) -> float | None:
    name = config.corruption
    if name in FIXED_LEVEL:
        fixed = FIXED_LEVEL[name]
        if config.level is not None and config.level != fixed:
            raise ConfigError(f"corruption {name} has level {fixed}; use partial_labels with --level "
                              f"{config.level} for a partial corruption")
        return fixed
    if corruption.takes_level:
        if config.level is None:
            raise ConfigError(f"corruption {name} needs a level: pass --level P with P in [0, 1]")
        return float(config.level)
    if config.level is not None:
        raise ConfigError(f"corruption {name} takes no level (got {config.level}); only partial_labels does")
    return None


def validate(c: TrainConfig, *, dataset_layout: str, model_layouts: tuple[str, ...]) -> None:
    """Raise one ConfigError listing every impossible value of a resolved config: the field values (the
    one validator, :mod:`rethinkgen.train.validate`; a resolved config has no ``None`` defaults left) and
    the combinations with the dataset's layout."""
    problems = config_problems(c)

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    need(c.world_size is None or c.batch_size % c.world_size == 0,
         f"batch_size {c.batch_size} is split over world_size={c.world_size} processes: use a multiple of it")
    from rethinkgen.train.streaming.select import streams

    if (c.world_size or 1) > 1 or c.workers is not None:
        need(streams(c), f"world_size and workers are for data streamed from disk (imagenet); {c.data} lives in "
             "memory and trains on one process (a sweep runs many such runs at once)")
    if c.train_eval_samples is not None:
        need(streams(c), f"train_eval_samples is for data streamed from disk (imagenet); {c.data} lives in memory, "
             "where every row evaluates the whole training set (Figure 1b's convergence step is measured on it)")
    need(dataset_layout in model_layouts,
         f"model {c.model} takes {'/'.join(model_layouts)} inputs but dataset {c.data} is {dataset_layout} data; "
         "choose a model for it with `rethinkgen list models`")
    need(not (c.cuda_graphs and c.compile),
         "cuda_graphs=True and compile=True cannot be combined (a compiled forward inside a captured step is "
         "not supported); choose one of them")
    for flag, on in (("augment (random crop)", c.augment), ("flip", c.flip), ("crop", c.crop > 0),
                     ("channels_last", bool(c.channels_last))):
        need(not on or dataset_layout == "image",
             f"{flag} needs image data; dataset {c.data} has layout {dataset_layout}")
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
