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


def last_step_lr(lr0: float, decay: float, period_samples: int, samples_seen: int, n_train: int,
                 batch_size: int) -> float:
    """The learning rate of the last SGD step of an epoch that ended after ``samples_seen`` samples (whole
    epochs of ``n_train`` samples in batches of ``batch_size``; the last batch may be smaller); ``lr0``
    before any step. It is the per-epoch row's ``lr`` in both trainers."""
    if samples_seen == 0:
        return lr0
    last_batch = n_train - (-(-n_train // batch_size) - 1) * batch_size
    return lr_at(lr0, decay, period_samples, samples_seen - last_batch)
