"""The paper's learning-rate schedule: lr_0 x 0.95 per epoch (Appendix A).

The paper's epoch is 50,000 CIFAR-10 images, so the decay is counted in *samples seen*: the rate after
``s`` samples is ``lr_0 * decay ** floor(s / every)``. ``every = 0`` means once per epoch of the data
actually used; small datasets keep the CIFAR-10 unit (50,000 samples) so they are not starved of
learning rate before they fit random labels (design §6).
"""

from __future__ import annotations

import math
import re


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


LR_FLOOR = 1e-3  # a schedule that takes the rate below this fraction of its start early is flagged ...
HORIZON_EPOCHS = 5  # ... within the first this many epochs (or the whole run, if shorter) ...
HORIZON_FRACTION = 0.1  # ... or within this fraction of the run's epochs, if that is longer


def starved_at(config, n_train: int) -> tuple[int, float] | None:
    """(epoch, log10 of lr / lr_0 at its last SGD step) for the first epoch whose last step runs below
    ``LR_FLOOR`` of the starting rate, if that epoch lies within the horizon: the first
    ``max(HORIZON_EPOCHS, ceil(HORIZON_FRACTION · epochs))`` epochs, at most ``epochs``. None otherwise.

    The paper's x0.95 per 50,000-sample epoch gets there only after 135 epochs (a 1,350-epoch budget);
    ``lr_decay_every`` mistaken for steps per epoch (x0.95 every 390 samples on CIFAR-10) after 2.
    """
    if config.lr_decay >= 1.0 or n_train <= 0:
        return None
    epochs = max(1, config.epochs or 1)
    horizon = min(epochs, max(HORIZON_EPOCHS, math.ceil(HORIZON_FRACTION * epochs)))
    period = decay_period(config.lr_decay_every, n_train)
    last_batch = n_train - (math.ceil(n_train / config.batch_size) - 1) * config.batch_size
    per_decay = math.log10(config.lr_decay)  # < 0

    def log10_ratio(epoch: int) -> float:  # at the epoch's last step, which starts after epoch·n − last_batch
        return ((epoch * n_train - last_batch) // period) * per_decay

    needed = math.floor(math.log10(LR_FLOOR) / per_decay) + 1  # decays that go below the floor
    epoch = max(1, math.ceil((needed * period + last_batch) / n_train))
    while epoch > 1 and log10_ratio(epoch - 1) < math.log10(LR_FLOOR):  # float rounding of ``needed``
        epoch -= 1
    while log10_ratio(epoch) >= math.log10(LR_FLOOR) and epoch <= horizon:
        epoch += 1
    return (epoch, log10_ratio(epoch)) if epoch <= horizon else None


def schedule_warnings(config, n_train: int) -> list[str]:
    """Warnings about a resolved config's schedule on ``n_train`` training samples (empty when sane).

    Flags a schedule that leaves the learning rate below ``LR_FLOOR`` of its start early in the run
    (:func:`starved_at`): e.g. ``lr_decay_every=1`` (x0.95 per *sample*: 1e-89 after 4,000 samples), or
    a decay every "epoch" given in steps. Such a run ends at ``max_epochs`` near chance, where it looks
    like a network that cannot memorize. A pure function of the config and the training-set size
    (``Trainer.summary`` records its result).
    """
    starved = starved_at(config, n_train)
    if starved is None:
        return []
    epoch, log10_ratio = starved
    period = decay_period(config.lr_decay_every, n_train)
    when = "within the first epoch" if epoch == 1 else f"by the end of epoch {epoch} of {config.epochs}"
    ratio = re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{10 ** log10_ratio:.1g}") if log10_ratio > -300 \
        else f"1e{log10_ratio:.0f}"
    return [f"the learning rate falls to {ratio} of its start (lr {config.lr:g}) {when}: "
            f"x{config.lr_decay:g} every {period:,} sample{'s' if period > 1 else ''} seen, {n_train:,} "
            "samples per epoch. The run "
            "cannot learn after that and will look like a network that cannot fit. lr_decay_every "
            "(--lr-decay-every) counts samples seen: 0 decays once per epoch; the paper's x0.95 per epoch is "
            "every 50,000 samples (one CIFAR-10 epoch)"]
