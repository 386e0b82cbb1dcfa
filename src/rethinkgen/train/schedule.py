"""The paper's learning-rate schedule: lr_0 x 0.95 per epoch (Appendix A).

The paper's epoch is 50,000 CIFAR-10 images, so the decay is counted in *samples seen*: the rate after
``s`` samples is ``lr_0 * decay ** floor(s / every)``. ``every = 0`` means once per epoch of the data
actually used; small datasets keep the CIFAR-10 unit (50,000 samples) so they are not starved of
learning rate before they fit random labels (design §6).
"""

from __future__ import annotations

import math


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


LR_FLOOR = 1e-3  # a schedule that takes the rate below this fraction of its start in the first epoch is flagged


def schedule_warnings(config, n_train: int) -> list[str]:
    """Warnings about a resolved config's schedule on ``n_train`` training samples (empty when sane).

    Flags a schedule that leaves the learning rate below ``LR_FLOOR`` of its start within the first
    epoch — e.g. ``lr_decay_every=1`` (x0.95 per *sample*: 1e-89 after 4,000 samples), which ends the
    run at ``max_epochs`` near chance, where it looks like a network that cannot memorize. A pure
    function of the config and the training-set size (``Trainer.summary`` records its result).
    """
    if config.lr_decay >= 1.0 or n_train <= 0:
        return []
    period = decay_period(config.lr_decay_every, n_train)
    last_batch_start = (math.ceil(n_train / config.batch_size) - 1) * config.batch_size
    decays = last_batch_start // period  # decay steps taken before the first epoch's last SGD step
    log10_ratio = decays * math.log10(config.lr_decay)
    if log10_ratio >= math.log10(LR_FLOOR):
        return []
    return [f"the learning rate falls to 1e{log10_ratio:.0f} of its start (lr {config.lr:g}) within the first "
            f"epoch: x{config.lr_decay:g} every {period:,} sample{'s' if period > 1 else ''} seen, {n_train:,} "
            "samples per epoch. The run "
            "cannot learn after that and will look like a network that cannot fit. lr_decay_every "
            "(--lr-decay-every) counts samples seen: 0 decays once per epoch; the paper's x0.95 per epoch is "
            "every 50,000 samples (one CIFAR-10 epoch)"]
