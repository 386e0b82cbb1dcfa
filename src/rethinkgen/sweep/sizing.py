"""How many runs go into one fused group: the device's free memory over one run's memory (design §5).

On a GPU one small run leaves the device idle, so a sweep trains as many runs of a model at once as
fit. The driver plans the groups before any data is loaded, so one run's memory is *estimated* from
its config (:func:`run_memory`):

- **parameters**: weights, gradients and SGD momentum buffers, float32 (3 x 4 bytes per parameter),
  plus one more copy for the transient stacked gradient of the fused step (4 x in all);
- **activations**: every tensor autograd saves for the backward pass at the run's batch size,
  measured exactly by running the model's forward on the ``meta`` device (shapes only: no memory, no
  arithmetic) with ``torch.autograd.graph.saved_tensors_hooks``; counted as float32 (bf16 autocast
  saves some of them at half size, so this errs on the safe side), times ``BACKWARD_FACTOR`` for the
  gradients alive during the backward pass. With the step captured as a CUDA graph (the default on
  CUDA, ``resolve.step_mode``) the graph keeps that memory for good in its private pool, which no
  other allocation can use, while each epoch's last, smaller batch runs uncaptured from the ordinary
  pool: both are counted (times ``1 + b / B`` for a last batch of b of B samples);
- **inputs** on the device: the preprocessed training and test sets (and the raw training images when
  augmenting), float32. Runs that differ only in a label corruption share one copy per group; runs
  with input corruptions or seeded subsets hold their own.

:func:`group_limit` divides ``FILL`` of the memory a group may use (the GPU's free memory, shared
among the worker processes on it), less ``RESERVE`` (CUDA context, cuDNN workspaces, the evaluation
chunks), by one run's estimate (the largest among the runs that may be grouped: a group of label
corruptions can hold input-corrupted runs with inputs of their own), and caps the result at
``MAX_GROUP_CUDA``; on a CPU groups are
``MAX_GROUP_CPU`` runs. These constants are chosen, not tuned (``benchmarks/gpu.py`` prints each
fused group's estimate next to its measured peak, so a GPU session can check them).
"""

from __future__ import annotations

import functools
import inspect
import math
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BACKWARD_FACTOR", "FILL", "MAX_GROUP_CPU", "MAX_GROUP_CUDA", "RESERVE", "RunMemory", "activation_bytes",
           "group_limit", "group_memory", "run_memory"]

MAX_GROUP_CPU = 16  # runs per fused group on a CPU (chosen, not tuned: larger groups' activations leave the caches)
MAX_GROUP_CUDA = 64  # the most on a GPU (small models need many runs to fill it; chosen, not tuned)
FILL = 0.8  # fraction of the available device memory that groups are planned to fill
RESERVE = 2 * 1024**3  # bytes kept free: CUDA context, cuDNN workspaces, evaluation chunks, fragmentation
BACKWARD_FACTOR = 1.5  # saved activations -> peak during the backward pass (their gradients come and go)
FLOAT = 4  # bytes per float32 value

# Full sizes (train, test) and input shapes of the file-based datasets, for configs without n_train/n_test.
_KNOWN = {"cifar10": ((50_000, 10_000), (3, 32, 32)), "mnist": ((60_000, 10_000), (1, 28, 28))}


@dataclass(frozen=True)
class RunMemory:
    """Estimated device memory of one run of a fused group, in bytes (see the module docstring)."""

    params: int  # weights + gradients + momentum + the stacked step's transient gradient
    activations: int  # saved for backward at the batch size, float32, times BACKWARD_FACTOR (captured: + last batch)
    inputs: int  # preprocessed train + test inputs (+ raw training images when augmenting), float32
    own_inputs: bool  # True: each run holds its inputs (input corruption, seeded subset); False: shared
    labels: int  # train labels, corruption flags and test labels

    @property
    def per_run(self) -> int:
        """Bytes each additional run of the group adds."""
        return self.params + self.activations + self.labels + (self.inputs if self.own_inputs else 0)

    @property
    def shared(self) -> int:
        """Bytes the group holds once, whatever its size."""
        return 0 if self.own_inputs else self.inputs

    def group(self, k: int) -> int:
        """Bytes of a group of ``k`` runs (without ``RESERVE``)."""
        return self.shared + k * self.per_run


@functools.cache
def activation_bytes(model: str, input_shape: tuple[int, ...], batch_size: int,
                     num_classes: int = 10) -> tuple[int, int]:
    """(bytes autograd saves for one training step of ``model`` at ``batch_size``, parameter count).

    Runs the forward and the loss on the ``meta`` device in train mode: exact shapes, nothing
    allocated, no random numbers drawn. A saved view counts as its base tensor, once. Parameters (and
    views of them, e.g. a Linear's ``weight.t()``) are not counted here: :class:`RunMemory` counts them
    apart.
    """
    import torch
    import torch.nn.functional as F

    from rethinkgen.models import create_model

    with torch.device("meta"):
        module = create_model(model, input_shape, num_classes)
    params = {id(p) for p in module.parameters()}
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        base = t if t._base is None else t._base  # a view (flatten, weight.t()) holds its base's memory
        if id(base) not in params and id(base) not in seen:
            seen.add(id(base))
            total += base.numel() * FLOAT  # as float32, whatever autocast would make of it
        return t

    module.train()
    x = torch.empty(batch_size, *input_shape, device="meta")
    y = torch.zeros(batch_size, dtype=torch.long, device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(module(x), y)
    return total, sum(p.numel() for p in module.parameters())


def _npz_shapes(config: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes of ``x`` and ``x_test`` from the .npz headers (no array is read)."""
    from rethinkgen.data.sources.arrays import resolve_path

    file = resolve_path((config.data_options or {}).get("path"), config.data_dir)
    shapes = []
    with zipfile.ZipFile(file) as z:
        for name in ("x.npy", "x_test.npy"):
            with z.open(name) as f:
                version = np.lib.format.read_magic(f)
                reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shapes.append(tuple(reader(f)[0]))
    return shapes[0], shapes[1]


def data_shape(config: Any) -> tuple[int, int, tuple[int, ...]]:
    """(training samples, test samples, input shape before cropping) of a resolved config, without
    loading the data: the config's subset sizes, else the dataset's full sizes."""
    from rethinkgen.data.sources import DATASETS
    from rethinkgen.data.sources.mnist1d import DEFAULT_N_SAMPLES
    from rethinkgen.data.sources.synthetic import DEFAULT_SHAPE, parse_shape

    options = dict(config.data_options or {})
    if config.data in _KNOWN:
        (n, m), shape = _KNOWN[config.data]
    elif config.data == "mnist1d":
        total = int(options.get("n_samples", DEFAULT_N_SAMPLES))
        n, m, shape = total * 4 // 5, total - total * 4 // 5, (1, 40)
    elif config.data == "synthetic":  # generates exactly n_train / n_test samples (its defaults otherwise)
        defaults = {k: v.default for k, v in inspect.signature(DATASETS.get("synthetic").load).parameters.items()}
        n, m = config.n_train or defaults["n_train"], config.n_test or defaults["n_test"]
        shape = parse_shape(options.get("shape", DEFAULT_SHAPE))
    elif config.data == "npz":
        x, x_test = _npz_shapes(config)
        n, m, shape = x[0], x_test[0], tuple(x[1:])
    else:  # a dataset registered later: assume CIFAR-10's size (the paper's largest)
        (n, m), shape = _KNOWN["cifar10"]
    return min(n, config.n_train or n), min(m, config.n_test or m), tuple(shape)


def run_memory(config: Any) -> RunMemory:
    """The device memory one run of a fused group needs, estimated from its resolved config."""
    from rethinkgen.data.corruptions import CORRUPTIONS
    from rethinkgen.train.resolve import step_mode

    n, m, shape = data_shape(config)
    cropped = (shape[0], config.crop, config.crop) if len(shape) == 3 and config.crop else shape
    act, n_params = activation_bytes(config.model, tuple(cropped), config.batch_size)
    if step_mode(config, "cuda") == "captured":  # the graph's pool, and the last batch's step beside it
        act = act * (1 + (n % config.batch_size) / config.batch_size)
    per_sample = math.prod(cropped) * FLOAT
    inputs = (n + m) * per_sample + (n * math.prod(shape) * FLOAT if config.augment else 0)
    own = CORRUPTIONS.get(config.corruption).target != "labels" or config.n_train is not None \
        or config.n_test is not None
    return RunMemory(params=4 * FLOAT * n_params, activations=int(BACKWARD_FACTOR * act), inputs=inputs,
                     own_inputs=own, labels=n * 9 + m * 8)


def group_memory(configs: list[Any]) -> int:
    """Estimated bytes of one fused group of ``configs`` (the shared inputs once, each run's own part)."""
    memories = [run_memory(c) for c in configs]
    return max(m.shared for m in memories) + sum(m.per_run for m in memories)


def group_limit(configs: Any, available: int | None, cap: int = MAX_GROUP_CUDA) -> int:
    """The most runs in one fused group drawn from ``configs`` (a config, or the list of runs that may be
    grouped together, sized by the largest of them) on a device with ``available`` bytes for it (None:
    unknown, e.g. a Ray cluster's GPUs seen from the driver: ``cap``). At least 1."""
    if available is None:
        return cap
    memories = [run_memory(c) for c in (configs if isinstance(configs, list | tuple) else [configs])]
    per_run = max(m.per_run for m in memories)
    room = FILL * available - RESERVE - max(m.shared for m in memories)
    return max(1, min(cap, int(room // max(per_run, 1))))
