"""Which trainer trains a run, and why a run cannot join a fused group.

- The in-memory :class:`~rethinkgen.train.loop.Trainer` for sets that live on the device as one tensor.
- The fused multi-run trainer (:mod:`rethinkgen.train.fused`) for groups of such runs, except runs of
  models with auxiliary logits (Inception V3).
"""

from __future__ import annotations

from rethinkgen.train.config import TrainConfig

__all__ = ["streaming_refusal"]


def streaming_refusal(config: TrainConfig) -> str | None:
    """Why ``config`` (resolved) cannot be fused with other runs for reasons of this package, or None."""
    from rethinkgen.models import MODELS

    if MODELS.get(config.model).aux_logits:
        return (f"model {config.model} returns auxiliary logits in training, which the fused trainer's "
                "vmapped step does not compute")
    return None
