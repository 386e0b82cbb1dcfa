"""The numerics of a run: what changes its numbers besides its config (design §2, "run identity").

``run_key`` names the *experiment* (the resolved config) and stays the same wherever the run trains:
a finished run is a result on any machine. But the *floats* of a run also depend on how it is
computed, and a run whose numbers change half-way through is neither the one nor the other:

- **device type** (cpu, cuda, mps): other kernels, other summation orders;
- **autocast dtype**: ``config.precision`` when it is set ("bfloat16" on every device, the CPU included;
  "float32": none), else on CUDA when ``amp`` the model's dtype (``resolve.CUDA_AUTOCAST``: bf16, 3
  significant digits in the autocast regions), float32 throughout on the CPU and MPS;
- **CPU intra-op threads**: torch splits reductions and matrix products by thread, so the same run
  with 1 and with 2 threads differs in the last bits (CPU runs only; on a GPU the threads only feed it);
- **graph**: ``torch.compile`` of the forward (fused kernels, other rounding), the training step
  captured as a CUDA graph (``cuda_graph``: the eager kernels replayed, but the learning rate read as
  float32 and cuDNN free to pick other algorithms; rethinkgen.train.step), or eager. The static step
  forced on the CPU (``cuda_graphs=True``) gives the eager numbers bit for bit and is recorded as eager;
- **channels_last**: NHWC image tensors pick other convolution kernels;
- **TF32** (CUDA only): float32 convolutions / matrix products rounded to TF32 inputs
  (``torch.backends.cudnn.allow_tf32``, ``torch.backends.cuda.matmul.allow_tf32``).
- **world size**: the DDP processes a run is split over (``torchrun``, :mod:`rethinkgen.train.streaming`):
  each computes BatchNorm statistics on its share of the batch and the gradients are averaged across
  them.

:func:`plan_numerics` is the one place where the trainers decide these (the single trainer and the
fused group read their autocast, memory format and compile switches from it), so what is recorded is
what was done. Every run records its :class:`Numerics` in its summary, its checkpoints and the
results store. A *resume* whose numerics differ from its checkpoint's is refused
(:class:`NumericsMismatchError`, naming each difference and the fix); a finished run is reused
anywhere, and the report shows its numerics.

What is bit-identical and what is equal within tolerance (docs: Sweeps, "Numerics"):

- the same config, seed and numerics on the CPU give the same numbers bit for bit, also across a
  resume from any epoch checkpoint (tests/test_sweep_runner.py, tests/test_numerics.py);
- fused groups give separate training's numbers within float tolerance (batched kernels sum in
  another order), and a resumed fused sweep its uninterrupted numbers within float tolerance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from rethinkgen.errors import ConfigError
from rethinkgen.train.resolve import autocast_name, step_mode, use_channels_last

__all__ = ["COMPARED", "Numerics", "NumericsMismatchError", "check_resume", "describe", "differences", "fixes",
           "numerics_here", "plan_numerics"]

# The fields a resume must keep. Each names its own fix (see ``_FIXES``).
COMPARED = ("device", "autocast", "threads", "graph", "channels_last", "tf32", "world_size")


@dataclass(frozen=True)
class Numerics:
    """How one run is computed (see the module docstring); recorded per run, compared on resume."""

    device: str  # device type: "cpu" | "cuda" | "mps"
    autocast: str | None = None  # dtype of the autocast regions ("bfloat16"); None: float32 throughout
    threads: int | None = None  # torch intra-op threads (CPU runs only; None on accelerators)
    graph: str | None = None  # "torch.compile" (compiled forward) | "cuda_graph" (captured step); None: eager
    channels_last: bool = False  # image tensors and weights stored NHWC (channels last)
    tf32: str | None = None  # CUDA: TF32 for "conv", "matmul", "conv+matmul" or "off"; None off CUDA
    world_size: int = 1  # DDP processes training the run together (each BatchNorm sees batch_size / world_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Numerics:
        """From a recorded dict; keys this version does not know are ignored, missing ones take defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """:attr:`autocast` as a ``torch.dtype`` (None: float32 throughout)."""
        return getattr(torch, self.autocast) if self.autocast else None

    def describe(self) -> str:
        """One line, e.g. ``cpu, float32, 2 threads`` or ``cuda, bf16 autocast, channels_last, TF32 conv``."""
        return describe(self.to_dict())


class NumericsMismatchError(ConfigError):
    """A resume would continue a run with other numerics than it was trained with.

    ``differences`` lists one line per differing field; the message names the fix.
    """

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences


def _tf32() -> str:
    parts = [name for name, on in (("conv", torch.backends.cudnn.allow_tf32),
                                   ("matmul", torch.backends.cuda.matmul.allow_tf32)) if on]
    return "+".join(parts) or "off"


def plan_numerics(config: Any, device: torch.device | str, layout: str, threads: int | None = None,
                  step: str | None = None) -> Numerics:
    """The numerics a run of ``config`` (a resolved :class:`~rethinkgen.train.config.TrainConfig`) gets
    on ``device`` for data of ``layout`` ("image" | "signal" | "vector").

    Autocast as :func:`rethinkgen.train.resolve.autocast_name` decides: ``config.precision`` when set, else on
    CUDA when ``config.amp``, in the model's dtype (never automatically on the CPU, where bf16 was measured
    3-17x slower without bf16 hardware, design §6); the training
    step captured as a CUDA graph when ``step`` (default: :func:`rethinkgen.train.resolve.step_mode`) is
    "captured"; channels-last storage of images as
    :func:`rethinkgen.train.resolve.use_channels_last` decides (``config.channels_last``, else CUDA
    only); ``torch.compile`` on CUDA when ``config.compile``.
    ``threads``: the intra-op threads the run will have (default: this process's
    ``torch.get_num_threads()``); recorded for CPU runs only.
    """
    kind = torch.device(device).type
    cuda = kind == "cuda"
    channels_last = use_channels_last(config, layout, kind)
    step = step if step is not None else step_mode(config, kind)
    return Numerics(
        device=kind,
        autocast=autocast_name(config, kind),
        threads=(threads if threads is not None else torch.get_num_threads()) if kind == "cpu" else None,
        graph="torch.compile" if cuda and config.compile else ("cuda_graph" if step == "captured" else None),
        channels_last=channels_last,
        tf32=_tf32() if cuda else None,
        world_size=int(getattr(config, "world_size", None) or 1),
    )


def numerics_here(config: Any, threads: int | None = None) -> Numerics | None:
    """The numerics a run of ``config`` gets in this process (its device from ``config.device``, "auto":
    cuda -> mps -> cpu), without loading its data; None when the device or dataset cannot be resolved
    here (the trainer then raises its own error, naming the fix)."""
    from rethinkgen.data.sources import dataset_layout
    from rethinkgen.errors import RethinkgenError
    from rethinkgen.train.loop import select_device

    try:
        device = select_device(config.device)
        layout = dataset_layout(config.data, config.data_options, config.data_dir)
    except RethinkgenError:
        return None
    return plan_numerics(config, device, layout, threads=threads)


def describe(numerics: dict[str, Any] | None) -> str:
    """One line for a recorded numerics dict (``"unrecorded"`` for None: runs of older versions)."""
    if not numerics:
        return "unrecorded"
    n = Numerics.from_dict(numerics)
    parts = [n.device, f"{'bf16' if n.autocast == 'bfloat16' else n.autocast} autocast" if n.autocast else "float32"]
    if n.threads is not None:
        parts.append(f"{n.threads} thread{'s' if n.threads != 1 else ''}")
    if n.channels_last:
        parts.append("channels_last")
    if n.graph:
        parts.append(_GRAPH_WORDS.get(n.graph, n.graph))
    if n.tf32 is not None:
        parts.append(f"TF32 {n.tf32}")
    if n.world_size != 1:
        parts.append(f"{n.world_size} DDP processes")
    return ", ".join(parts)


_GRAPH_WORDS = {"cuda_graph": "CUDA graph"}  # how describe() and the refusals name a graph value


def _value(field: str, value: Any) -> str:
    if field == "threads":
        return "no thread count (not a CPU run)" if value is None else f"{value} thread{'s' if value != 1 else ''}"
    if field == "autocast":
        return "float32 (no autocast)" if value is None else f"{value} autocast"
    if field == "graph":
        return "eager" if value is None else _GRAPH_WORDS.get(value, value)
    if field == "channels_last":
        return "channels_last" if value else "contiguous (NCHW)"
    if field == "tf32":
        return "no TF32 setting (not CUDA)" if value is None else f"TF32 {value}"
    if field == "world_size":
        return f"{value} DDP process{'es' if value != 1 else ''}"
    return str(value)


def differences(saved: dict[str, Any] | None, now: Numerics, compared: tuple[str, ...] = COMPARED) -> list[str]:
    """One line per field of ``compared`` in which ``saved`` (a recorded dict) and ``now`` differ, e.g.
    ``threads: trained with 2 threads, here 1 thread``. An unrecorded ``saved`` (None: a checkpoint of
    an older version) differs in nothing: there is nothing to compare."""
    if not saved:
        return []
    then = Numerics.from_dict(saved)
    out = []
    for name in compared:
        a, b = getattr(then, name), getattr(now, name)
        if a != b:
            out.append(f"{name}: trained with {_value(name, a)}, here {_value(name, b)}")
    return out


def fixes(saved: Numerics, now: Numerics, context: str) -> list[str]:
    """How to get the checkpoint's numerics back, per differing field (``context``: "sweep" or "train",
    command-line options; "library", what to set in Python)."""
    sweep = context in ("sweep", "train")
    out = []
    if saved.device != now.device:
        where = "" if saved.device == "cpu" else " on a machine that has one"
        if saved.threads is not None:  # back to the CPU: with its thread count too
            out.append(f"--device cpu --threads {saved.threads}" if sweep
                       else f"device='cpu' after torch.set_num_threads({saved.threads})")
        else:
            out.append(f"--device {saved.device}{where}" if sweep else f"device={saved.device!r}{where}")
    if saved.device == now.device == "cpu" and saved.threads != now.threads and saved.threads is not None:
        out.append(f"--threads {saved.threads}" if sweep else f"torch.set_num_threads({saved.threads}) first")
    if saved.device == now.device == "cuda" and saved.tf32 != now.tf32 and saved.tf32 is not None:
        out.append(f"torch.backends.cudnn.allow_tf32 = {'conv' in saved.tf32} and "
                     f"torch.backends.cuda.matmul.allow_tf32 = {'matmul' in saved.tf32} in the training process")
    if saved.world_size != now.world_size:
        out.append(f"--world-size {saved.world_size}" if sweep
                   else f"{saved.world_size} processes (torchrun --nproc-per-node {saved.world_size})")
    if saved.device == now.device and saved.autocast != now.autocast:
        precision = saved.autocast or "float32"
        out.append(f"--precision {precision}" if sweep else f"precision={precision!r}")
    if saved.device == now.device and (saved.graph, saved.channels_last) != (now.graph, now.channels_last):
        out.append("the rethinkgen version and settings (compile, channels_last, cuda_graphs) it was trained with")
    return out


def check_resume(saved: dict[str, Any] | None, now: Numerics, *, run: str = "this run",
                 context: str = "library", compared: tuple[str, ...] = COMPARED) -> None:
    """Raise :class:`NumericsMismatchError` when a checkpoint recorded with ``saved`` numerics would be
    continued with ``now``; the message names each difference and the fix for ``context`` ("sweep":
    command-line options and ``--restart-mismatched``; "train": ``rethinkgen train --resume`` options,
    or ``--overwrite`` to start over; "library": what to set before ``train``)."""
    diffs = differences(saved, now, compared)
    if not diffs:
        return
    then = Numerics.from_dict(saved)
    hints = fixes(then, now, context)
    restart = {"sweep": "--restart-mismatched to discard the checkpoint and train the run from scratch here",
               "train": "start it over with the options it was started with and --overwrite (the checkpoint "
                        "is then discarded)"}.get(context, "train(config) without resume= to train it from scratch")
    fix = (f"run with {' and '.join(hints)}, or " if hints else "") + restart
    raise NumericsMismatchError(
        f"cannot resume {run}: its checkpoint was trained with other numerics ({then.describe()}) than it "
        f"would continue with here ({now.describe()}), which would change its numbers mid-run:\n  - "
        + "\n  - ".join(diffs) + f"\nFix: {fix}.", diffs)
