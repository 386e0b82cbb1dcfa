"""A last minibatch of one sample that the model cannot train on, refused before training starts.

An epoch of N samples in minibatches of B ends with a batch of N mod B samples (on each of W DDP
processes: ceil(N / W) samples, as ``DistributedSampler`` pads them, in batches of B / W). When that is
1, a BatchNorm layer that sees a single value per channel in training mode raises ("Expected more than 1
value per channel when training"): Inception V3's auxiliary head normalises a 1x1 map, and so does
ResNet-18's last stage on 8-pixel inputs. The run would fail at the end of its first epoch, after the
whole epoch's work (hours of ImageNet). :func:`check_last_batch` finds this before any work: it runs the
model on a one-sample batch on the ``meta`` device (shapes only, no memory, no arithmetic).
"""

from __future__ import annotations

import torch

from rethinkgen.errors import ConfigError

__all__ = ["check_last_batch"]


def check_last_batch(model: str, input_shape: tuple[int, ...], num_classes: int, dropout: float, layout: str,
                     n: int, batch_size: int, processes: int = 1) -> None:
    """ConfigError when the last minibatch of an epoch of ``n`` samples in global batches of ``batch_size``
    (split over ``processes``) holds one sample on a process and ``model`` (registry name, built for
    ``input_shape`` (C, ...), ``num_classes`` and ``layout``) cannot train on one sample."""
    share = -(-n // processes)  # samples per process (DistributedSampler pads; one process: all n)
    per_process = batch_size // processes
    if share % per_process != 1:
        return
    from rethinkgen.models import create_model

    with torch.device("meta"):
        net = create_model(model, tuple(input_shape), num_classes, dropout=dropout, layout=layout)
    net.train()
    try:
        net(torch.empty((1, *input_shape), device="meta"))
    except ValueError as exc:
        better = next(b for b in range(per_process + 1, per_process + share + 2) if share % b != 1) * processes
        where = f" on each of the {processes} processes" if processes > 1 else ""
        raise ConfigError(f"the last minibatch of every epoch would hold 1 sample{where} ({n:,} samples in batches "
                          f"of {batch_size}), and {model} cannot train on one ({exc}); choose a batch size that "
                          f"leaves more, e.g. --batch-size {better}, or another number of samples (--n-train)"
                          ) from None
