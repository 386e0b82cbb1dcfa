"""The paper's learning-rate schedule: lr_0 x 0.95 per epoch (Appendix A).

The paper's epoch is 50,000 CIFAR-10 images, so the decay is counted in *samples seen*: the rate after
``s`` samples is ``lr_0 * decay ** floor(s / every)``. ``every = 0`` means once per epoch of the data
actually used; small datasets keep the CIFAR-10 unit (50,000 samples) so they are not starved of
learning rate before they fit random labels (design §6).
"""

from __future__ import annotations


def decay_period(lr_decay_every: int, n_train: int) -> int:
    """Samples per decay step (``lr_decay_every``, or the epoch size when it is 0)."""
    return lr_decay_every if lr_decay_every > 0 else n_train


def lr_at(lr0: float, decay: float, period_samples: int, samples_seen: int) -> float:
    """Learning rate after ``samples_seen`` samples: lr0 * decay ** floor(samples_seen / period)."""
    return lr0 * decay ** (samples_seen // period_samples)
