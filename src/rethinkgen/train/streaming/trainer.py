"""The trainer of a streamed run (ImageNet, Table 2) on one process or several (DistributedDataParallel).

The same run as :class:`~rethinkgen.train.loop.Trainer` — SGD with momentum, the learning-rate decay
counted in samples, a row per epoch with the whole training set (labels trained on, eval mode,
evaluation transform) and the test set evaluated, the same status rules, checkpoints and summary —
with the images read from disk by DataLoader workers (:mod:`rethinkgen.data.stream`) instead of
indexed on the device. It subclasses ``Trainer`` to reuse its epoch loop (``fit``, ``_record``) and
replaces what touches the data.

With ``world_size`` W > 1 (torchrun), each rank runs this class: the model is wrapped in
``DistributedDataParallel`` for the training step (gradients averaged over ranks), each rank takes
``batch_size / W`` images of every step (the global batch stays ``batch_size``), evaluations count
their shard with rank 0's BatchNorm statistics (the model rank 0 saves) and the counts are summed over
ranks, so every rank computes the same rows and stops at the same epoch. Dropout draws from (seed,
epoch, rank); each image's augmentation from (seed, epoch, image), so the numbers do not depend on the
DataLoader workers.

The checkpoint carries the run's training labels (``labels``, int32, and ``labels_sha256``): a
resumed run trains on exactly the labels it started with, never redrawn.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rethinkgen.data.stream.labels import labels_sha256
from rethinkgen.data.stream.loader import EpochOrder, Shard, StreamedImages, batches, default_workers, make_loader
from rethinkgen.data.stream.transforms import model_input
from rethinkgen.errors import ConfigError
from rethinkgen.seeding import rng, stream_seed
from rethinkgen.train.config import TrainConfig
from rethinkgen.train.history import RunHistory, run_summary
from rethinkgen.train.last_batch import check_last_batch
from rethinkgen.train.loop import Trainer, make_optimizer
from rethinkgen.train.losses import training_loss
from rethinkgen.train.metrics import TOPK, autocast_context, topk_correct
from rethinkgen.train.numerics import plan_numerics
from rethinkgen.train.resolve import eval_batch_size
from rethinkgen.train.rng import seeded
from rethinkgen.train.schedule import decay_period, last_step_lr, lr_at
from rethinkgen.train.streaming.data import StreamSetup, prepare_stream
from rethinkgen.train.streaming.distributed import DistContext

__all__ = ["StreamTrainer", "train_eval_subset"]


class StreamTrainer(Trainer):
    """State of one streamed run on this rank (see the module docstring)."""

    def __init__(self, config: TrainConfig, ctx: DistContext, labels: np.ndarray | None = None) -> None:
        from rethinkgen.models import count_params, create_model

        # Trainer.__init__ is not called: it loads the whole set into memory
        self.config, self.ctx, self.device = config, ctx, ctx.device
        if config.batch_size % ctx.world_size:
            raise ConfigError(f"batch_size {config.batch_size} is split over {ctx.world_size} processes: use a "
                              f"multiple of {ctx.world_size}")
        self.workers = config.workers if config.workers is not None else default_workers(ctx.local_world_size)
        self.setup: StreamSetup = prepare_stream(config, ctx, self.workers, labels)
        self.train_files_sha256 = self.setup.splits.train.sha256()
        check_last_batch(config.model, self.setup.input_shape, self.setup.num_classes, config.dropout, "image",
                         self.setup.n_train, config.batch_size, ctx.world_size)
        self.numerics = plan_numerics(config, self.device, "image")  # eager steps (resolve.step_mode)
        self.autocast = self.numerics.autocast_dtype  # None: float32 (on the CPU unless precision="bfloat16")
        self.use_amp = self.autocast is not None
        self.channels_last = self.numerics.channels_last
        self.eval_batch_size = eval_batch_size(config, "image", self.device.type)
        with seeded(stream_seed(config.seed, "init"), torch.device("cpu")):  # the same weights on every rank
            model = create_model(config.model, self.setup.input_shape, self.setup.num_classes,
                                 dropout=config.dropout, layout="image")
        self.n_params = count_params(model)
        memory = torch.channels_last if self.channels_last else torch.preserve_format
        self.model = model.to(self.device, memory_format=memory)
        compiled = torch.compile(self.model) if self.numerics.graph == "torch.compile" else self.model
        self.forward = compiled  # evaluation: the plain module on this rank's shard
        self.train_forward = compiled
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_forward = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = make_optimizer(self.model.parameters(), config, self.device)
        self.step_mode, self.static = "eager", None  # Trainer's static (graph-captured) step reads in-memory data
        self.period = decay_period(config.lr_decay_every, self.setup.n_train)
        self.history = RunHistory()
        self.epoch_evaluations: list[list[float]] = []
        self.rank_batch = config.batch_size // ctx.world_size
        self._train_loader = None
        self.train_eval_index = train_eval_subset(config, self.setup.n_train)  # None: the whole training set

    # ---------------------------------------------------------------- data
    @property
    def labels(self) -> np.ndarray:
        """(N,) int64: the training labels of the run (the same array on every rank)."""
        return self.setup.labels.labels

    def _dataset(self, split: str, train_mode: bool) -> StreamedImages:
        s = self.setup
        if split == "train":
            index, labels = s.splits.train, s.labels.labels
        else:  # test labels are never corrupted
            index, labels = s.splits.test, s.splits.test.targets
        return StreamedImages(index, labels, split, s.transform, train_mode, s.corruption)

    def _loader(self):
        if self._train_loader is None:
            order = EpochOrder(self.setup.n_train, self.ctx.world_size, self.ctx.rank,
                               stream_seed(self.config.seed, "order"))
            self._train_loader = make_loader(self._dataset("train", True), order, self.rank_batch, self.workers,
                                             pin_memory=self.device.type == "cuda")
        return self._train_loader

    # ---------------------------------------------------------------- checkpoints
    def checkpoint(self) -> dict[str, Any]:
        ckpt = super().checkpoint()
        ckpt["labels"] = torch.from_numpy(self.labels.astype(np.int32))
        ckpt["labels_sha256"] = self.setup.labels.sha256
        ckpt["train_files_sha256"] = self.train_files_sha256  # the images those labels belong to, in order
        return ckpt

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from ``ckpt``; its training labels must be the ones this run holds (the caller builds
        the trainer with the checkpoint's labels: :func:`rethinkgen.train.streaming.run.checkpoint_labels`)."""
        if "labels_sha256" in ckpt and ckpt["labels_sha256"] != self.setup.labels.sha256:
            raise ConfigError("the checkpoint's training labels differ from the run's (sha256 "
                              f"{ckpt['labels_sha256'][:12]} vs {self.setup.labels.sha256[:12]}); build the "
                              "trainer with the checkpoint's labels")
        saved = ckpt.get("train_files_sha256")
        if saved is not None and saved != self.train_files_sha256:
            raise ConfigError(f"the training images in {self.setup.splits.meta.get('root')} are not the ones the run "
                              "started on (their list or classes changed: files added, removed or renamed), so its "
                              "stored labels would go to other images; restore the copy the run started from "
                              "(--data-dir) or start the run over")
        super().restore(ckpt)

    # ---------------------------------------------------------------- one epoch
    def train_epoch(self) -> tuple[float, list[list[float]]]:
        """One pass over the training set in this epoch's order (each rank its share); (mean loss over all
        ranks, logged losses averaged over ranks). ``eval_every`` evaluations land in ``epoch_evaluations``."""
        c, h, ctx = self.config, self.history, self.ctx
        epoch = h.epoch + 1
        loader = self._loader()
        loader.sampler.set_epoch(epoch)
        n_steps = len(loader)
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        logged: list[tuple[int, torch.Tensor]] = []
        evaluations: list[tuple[int, float]] = []
        with seeded(stream_seed(c.seed, "dropout", epoch, ctx.rank), self.device):
            for k, (x, y, _) in enumerate(batches(loader)):
                xb = model_input(x, self.device, c.standardize, self.channels_last)
                yb = y.to(self.device, non_blocking=True)
                loss = self._sgd_step(xb, yb, lr_at(c.lr, c.lr_decay, self.period, h.samples_seen))
                h.step += 1
                h.samples_seen += int(y.shape[0]) * ctx.world_size
                loss_sum += loss
                if h.step % c.log_every == 0:
                    logged.append((h.step, loss))
                if c.eval_every and h.step % c.eval_every == 0 and k != n_steps - 1:
                    evaluations.append((h.step, float(self._train_accuracy())))
        h.epoch = epoch
        values = torch.stack([loss_sum, *(v for _, v in logged)]).double()
        values = (ctx.all_sum(values) / ctx.world_size).tolist()  # the epoch's one host sync
        self.epoch_evaluations = [[s, a] for s, a in evaluations]
        return values[0] / max(n_steps, 1), [[s, v] for (s, _), v in zip(logged, values[1:], strict=True)]

    def _sgd_step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:  # type: ignore[override]
        """One SGD step on the batch ``x`` (b, 3, S, S), ``y`` (b,) of this rank (DDP averages the gradients);
        returns this rank's minibatch loss, a detached 0-d device tensor."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast_context(self.device.type, self.autocast):
            output = self.train_forward(x)  # (b, K), or ((b, K), (b, K)) with auxiliary logits
        loss = training_loss(output, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    # ---------------------------------------------------------------- evaluation
    def _counts(self, split: str) -> dict[str, float]:
        """Loss sum, top-1 / top-5 correct, count (and correct / count on changed labels for "train") of
        ``split`` in eval mode with the evaluation transform, summed over all ranks."""
        data = self._dataset(split, train_mode=False)
        subset = self.train_eval_index if split == "train" else None
        shard = Shard(len(data), self.ctx.world_size, self.ctx.rank, indices=subset)
        loader = make_loader(data, shard, self.eval_batch_size, self.workers, pin_memory=self.device.type == "cuda")
        changed = torch.from_numpy(self.setup.labels.changed) if split == "train" else None
        sums = torch.zeros(6, dtype=torch.float64, device=self.device)  # loss, top1, top5, n, changed top1, changed n
        self.ctx.broadcast_buffers(self.model)  # one model on every shard: rank 0's, the one it saves
        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode(), autocast_context(self.device.type, self.autocast):
            for x, y, idx in batches(loader):
                logits = self.forward(model_input(x, self.device, self.config.standardize, self.channels_last)).float()
                y = y.to(self.device, non_blocking=True)
                ok = logits.argmax(dim=1) == y
                part = [F.cross_entropy(logits, y, reduction="sum"), ok.sum(), topk_correct(logits, y).sum(),
                        torch.tensor(float(y.shape[0]), device=self.device)]
                if changed is not None:
                    mask = changed[idx].to(self.device)
                    part += [(ok & mask).sum(), mask.sum()]
                else:
                    part += [torch.zeros((), device=self.device)] * 2
                sums += torch.stack([p.double() for p in part])
        self.model.train(was_training)
        loss, top1, top5, n, ch_ok, ch_n = self.ctx.all_sum(sums).tolist()
        return {"loss": loss / n, "acc": top1 / n, "acc_top5": top5 / n if self.setup.num_classes > TOPK else None,
                "changed_acc": ch_ok / ch_n if ch_n else None,
                "unchanged_acc": (top1 - ch_ok) / (n - ch_n) if n > ch_n else None}

    def _train_accuracy(self) -> torch.Tensor:
        return torch.tensor(self._counts("train")["acc"])

    def evaluate_row(self, train_loss: float | None) -> dict[str, Any]:
        c, h = self.config, self.history
        tr, te = self._counts("train"), self._counts("test")
        lr_now = last_step_lr(c.lr, c.lr_decay, self.period, h.samples_seen, self.setup.n_train, c.batch_size)
        return {
            "epoch": h.epoch, "step": h.step, "samples_seen": h.samples_seen, "lr": lr_now,
            "train_loss": train_loss, "train_eval_loss": tr["loss"], "train_acc": tr["acc"],
            "train_acc_corrupted": tr["changed_acc"], "train_acc_clean": tr["unchanged_acc"],
            "test_loss": te["loss"], "test_acc": te["acc"], "wall_time_s": h.wall_time_s,
            "train_acc_top5": tr["acc_top5"], "test_acc_top5": te["acc_top5"],
        }

    # ---------------------------------------------------------------- summary
    def summary(self) -> dict[str, Any]:
        summary = run_summary(self.history, self.config, n_params=self.n_params,
                              realized_noise_rate=self.setup.labels.realized_noise_rate, n_train=self.setup.n_train,
                              device=self.device, numerics=self.numerics)
        summary["labels_sha256"] = self.setup.labels.sha256
        summary["data"] = self.setup.info()
        return summary


def train_eval_subset(config: TrainConfig, n_train: int) -> np.ndarray | None:
    """The training images each row evaluates: None (all ``n_train``) unless ``config.train_eval_samples``
    is smaller, then that many indices, sorted, drawn once from the run's "data" stream (sub-stream 3) —
    the same images in every epoch, on every rank and after a resume. Rows then give the training loss
    and accuracy (top-1, top-5, on changed and unchanged labels) of that subset, an estimate within about
    ±0.5/√k of the whole set's; convergence is decided on it too."""
    k = config.train_eval_samples
    if k is None or k >= n_train:
        return None
    return np.sort(rng(config.seed, "data", 3).choice(n_train, size=k, replace=False))


def checkpoint_labels(ckpt: dict[str, Any] | None) -> np.ndarray | None:
    """The training labels stored in a streamed run's checkpoint (checked against their sha256), or None."""
    if not ckpt or "labels" not in ckpt:
        return None
    labels = np.asarray(ckpt["labels"], dtype=np.int64) if not isinstance(ckpt["labels"], torch.Tensor) \
        else ckpt["labels"].numpy().astype(np.int64)
    if labels_sha256(labels) != ckpt.get("labels_sha256"):
        raise ConfigError("the checkpoint's training labels do not match their recorded sha256: the checkpoint is "
                          "damaged; delete it to start the run over")
    return copy.copy(labels)
