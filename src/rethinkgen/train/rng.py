"""Torch's global random generators, borrowed and given back.

Parameter initialisers and dropout draw from the global generator of their device and take no
generator argument, so the trainers must seed it to make a run reproducible (design §2: one seed,
separate streams). They do so only inside :func:`seeded`, which restores the caller's generator states
afterwards: code that uses rethinkgen — ``train``, ``train_group`` or :class:`~rethinkgen.train.loop.Trainer`
directly — finds its own random stream where it left it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["seeded"]


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with the CPU generator and ``device``'s default generator seeded with ``seed`` (the
    draws ``torch.manual_seed(seed)`` would give there), then restore both generators' states."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type="cuda"):
            torch.random.default_generator.manual_seed(seed)
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
            yield
    elif device.type == "mps":
        state = torch.mps.get_rng_state()
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            torch.mps.manual_seed(seed)
            try:
                yield
            finally:
                torch.mps.set_rng_state(state)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            yield
