"""A fused group: K runs' stacked parameters, BatchNorm statistics and momentum buffers, trained
together step by step (see the package docstring for what each run keeps of its own)."""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.sgd import sgd

from rethinkgen.seeding import stream_seed
from rethinkgen.train.allocator import keep_freed_memory
from rethinkgen.train.config import TrainConfig
from rethinkgen.train.fused.autocast import autocast_vmapped, low_precision_parameters
from rethinkgen.train.fused.batchnorm import vmappable
from rethinkgen.train.fused.grouping import why_not_fused
from rethinkgen.train.fused.inputs import Inputs, SharedInputs, intern
from rethinkgen.train.fused.mlp import linear_plan, mlp_forward
from rethinkgen.train.fused.run import Run
from rethinkgen.train.fused.step import FusedStaticStep
from rethinkgen.train.loop import make_optimizer, select_device, train
from rethinkgen.train.metrics import TOPK, autocast_context, summarize, topk_correct
from rethinkgen.train.numerics import plan_numerics
from rethinkgen.train.progress import Progress
from rethinkgen.train.resolve import STEP_MODES, eval_batch_size, resolve_config, step_mode
from rethinkgen.train.rng import seeded
from rethinkgen.train.schedule import last_step_lr, lr_at

__all__ = ["FusedGroup", "train_group"]


def train_group(configs: Sequence[TrainConfig], *, callbacks: Sequence[Sequence[Any] | None] | None = None,
                resumes: Sequence[dict | None] | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Train the runs ``configs`` at once and return their summaries, in order.

    ``callbacks[k]`` is the list of callbacks of run k (as ``train(callbacks=...)``), ``resumes[k]`` a
    checkpoint dict of run k from either trainer (or None). Each run's rows, step losses, callbacks and
    summary are those :func:`rethinkgen.train.loop.train` gives it alone, within float tolerance. Runs
    that cannot be fused (:func:`why_not_fused`) are trained one after another with ``train``.
    An exception raised by a callback stops the whole group.
    """
    configs = [resolve_config(c) for c in configs]
    k = len(configs)
    callbacks = [list(cbs or ()) for cbs in callbacks] if callbacks is not None else [[] for _ in configs]
    resumes = list(resumes) if resumes is not None else [None] * k
    if len(callbacks) != k or len(resumes) != k:
        raise ValueError(f"train_group: {k} configs but {len(callbacks)} callback lists and {len(resumes)} resumes")
    finished = [r is not None and r.get("status") is not None for r in resumes]
    todo = [i for i in range(k) if not finished[i]]
    if len(todo) < 2 or why_not_fused(configs) is not None:
        return [train(c, callbacks=cb, resume=r, progress=progress)
                for c, cb, r in zip(configs, callbacks, resumes, strict=True)]
    summaries: list[dict[str, Any] | None] = [None] * k
    for i in range(k):
        if finished[i]:  # a finished run's checkpoint: its summary, no callbacks (as train does)
            summaries[i] = train(configs[i], resume=resumes[i])
    device = select_device(configs[0].device)
    group = FusedGroup([configs[i] for i in todo], device, [callbacks[i] for i in todo],
                       [resumes[i] for i in todo])
    if device.type == "cpu":  # after the data is loaded (as the single trainer)
        keep_freed_memory()
    for i, summary in zip(todo, group.fit(progress), strict=True):
        summaries[i] = summary
    return summaries  # type: ignore[return-value]


class FusedGroup:
    """K fusable runs: stacked parameters, BatchNorm statistics and momentum buffers, per-run data, the
    training rounds. ``step``: "eager", "static" or "captured" instead of what ``resolve.step_mode``
    chooses for the configs (benchmarks compare them)."""

    def __init__(self, configs: list[TrainConfig], device: torch.device, callbacks: list[list[Any]],
                 resumes: list[dict | None], step: str | None = None) -> None:
        from rethinkgen.models import count_params, create_model

        first = configs[0]
        self.device = device
        # cuda_graphs is shared by the group (SHARED_FIELDS); ``step`` overrides it as in Trainer (benchmarks)
        self.step_mode = step_mode(first, device.type) if step is None else step
        if self.step_mode not in STEP_MODES or (self.step_mode == "captured" and device.type != "cuda"):
            raise ValueError(f"step must be one of {', '.join(STEP_MODES)} ('captured' on CUDA only), got {step!r}")
        self.static: FusedStaticStep | None = None  # built at the first epoch, again after runs leave
        self.batch_size = first.batch_size
        # ---- data: prepared per run exactly as the single trainer does, equal tensors kept once
        train_pool: list[torch.Tensor] = []
        test_pool: list[torch.Tensor] = []
        train_which, test_which, noise, data_infos = [], [], [], []
        labels, changed, test_labels = [], [], []
        self.augment: list[tuple[Any, torch.Tensor] | None] = []  # (preprocessor, raw inputs) per run
        raw_pool: list[torch.Tensor] = []
        shared_inputs = SharedInputs(device)
        for c in configs:
            d = shared_inputs.prepare(c)
            train_which.append(intern(train_pool, d.x_train))
            test_which.append(intern(test_pool, d.x_test))
            labels.append(d.y_train)
            changed.append(d.changed)
            test_labels.append(d.y_test)
            noise.append(d.realized_noise_rate)
            data_infos.append(d.data_info)
            if d.x_train_raw is not None:
                self.augment.append((d.preprocessor, raw_pool[intern(raw_pool, d.x_train_raw)]))
            else:
                self.augment.append(None)
            self.num_classes, self.layout, input_shape = d.num_classes, d.layout, d.input_shape
            del d
        del shared_inputs
        self.numerics = plan_numerics(first, device, self.layout, step=self.step_mode)  # recorded per run
        self.autocast = self.numerics.autocast_dtype  # None: float32 (on the CPU unless precision="bfloat16")
        self.use_amp = self.autocast is not None
        self.channels_last = self.numerics.channels_last
        self.eval_batch_size = eval_batch_size(first, self.layout, device.type)  # samples per pass, all runs
        self.x_train = Inputs(train_pool, train_which, device, self.channels_last)
        self.x_test = Inputs(test_pool, test_which, device, self.channels_last)
        del train_pool, test_pool
        self.n_train = self.x_train.n
        self.steps_per_epoch = -(-self.n_train // self.batch_size)
        from rethinkgen.train.last_batch import check_last_batch

        check_last_batch(first.model, input_shape, self.num_classes, first.dropout, self.layout, self.n_train,
                         self.batch_size)  # as the single trainer: its BatchNorm would raise at the epoch's end
        self.y_train = torch.stack(labels)  # (K, N)
        self.changed = torch.stack(changed)  # (K, N) bool
        self.y_test = torch.stack(test_labels)  # (K, M)
        # ---- models: each initialised as the single trainer does, then stacked
        from torch.func import functional_call, stack_module_state, vmap

        # after the data: the first SGD(fused=True) loads ~150 MB of modules, which would otherwise add
        # to the peak of loading and preprocessing (benchmarks/memory.py)
        self.fused_sgd = make_optimizer([torch.zeros(1, device=device)], first, device).defaults["fused"]
        models = []
        for c in configs:
            with seeded(stream_seed(c.seed, "init"), torch.device("cpu")):  # as the single trainer
                models.append(create_model(c.model, input_shape, self.num_classes, dropout=c.dropout,
                                           layout=self.layout))
        self.n_params = count_params(models[0])
        stacked, stats = stack_module_state(models)
        self.param_names = list(stacked)
        self.params = {n: p.detach().to(device).requires_grad_() for n, p in stacked.items()}  # (K, ...)
        self.stats = {n: b.to(device) for n, b in stats.items()}  # BatchNorm running statistics (K, ...)
        self.momentum = {n: torch.zeros_like(p, requires_grad=False) for n, p in self.params.items()}
        # the model's structure without weights; BatchNorm layers as plain reductions (fused/batchnorm.py:
        # torch's batch_norm queries a vmapped channels-last tensor's memory format on CUDA and fails)
        self.template = template = vmappable(models[0].to("meta"))
        self.state_names = list(template.state_dict())  # the single model's state_dict order
        del models, stacked, stats

        def one(params: dict[str, torch.Tensor], stats: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(template, (params, stats), (x,))  # BatchNorm updates ``stats`` in place

        plan = linear_plan(template)
        if plan is not None:  # MLPs: batched matmuls directly, without vmap's per-call overhead
            forward_each = functools.partial(mlp_forward, plan, shared=False)
            forward_shared = functools.partial(mlp_forward, plan, shared=True)
        else:  # any other model: vmap (grouped convolutions for the convnets)
            forward_each, forward_shared = vmap(one, in_dims=(0, 0, 0)), vmap(one, in_dims=(0, 0, None))
            if self.use_amp:  # autocast does not reach convolutions under vmap: cast them as it would
                low = low_precision_parameters(template)
                forward_each, forward_shared = (autocast_vmapped(f, low, self.autocast)
                                                for f in (forward_each, forward_shared))
        if self.numerics.graph == "torch.compile":
            forward_each, forward_shared = torch.compile(forward_each), torch.compile(forward_shared)
        self.forward_each, self.forward_shared = forward_each, forward_shared
        # ---- runs
        self.runs = [Run(self, i, c, noise[i], callbacks[i], data_infos[i]) for i, c in enumerate(configs)]
        self.all_runs = list(self.runs)
        for run, ckpt in zip(self.runs, resumes, strict=True):
            if ckpt is not None:
                run.restore(ckpt)
        self._hyper()

    # ------------------------------------------------------------------ per-run tensors
    def _hyper(self) -> None:
        """Per-run momentum and weight decay of the active runs, on the device (K,)."""
        cs = [r.config for r in self.runs]
        self.momenta = [c.momentum for c in cs]
        self.decays = [c.weight_decay for c in cs]
        self.momentum_t = torch.tensor(self.momenta, dtype=torch.float32, device=self.device)
        self.decay_t = torch.tensor(self.decays, dtype=torch.float32, device=self.device)
        self.views = {n: (len(self.runs),) + (1,) * (p.dim() - 1) for n, p in self.params.items()}

    def run_tensors(self, run: Run) -> tuple[OrderedDict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(model state_dict, momentum buffers) of one run: fresh copies, never views of the stacks."""
        if run.slot is None:
            state, momentum = run.final
            return (OrderedDict((n, t.clone()) for n, t in state.items()),
                    {n: t.clone() for n, t in momentum.items()})
        state = OrderedDict()
        for name in self.state_names:
            stack = self.params[name] if name in self.params else self.stats[name]
            state[name] = stack[run.slot].detach().clone()
        return state, {n: b[run.slot].clone() for n, b in self.momentum.items()}

    def load_run(self, run: Run, model_state: dict[str, torch.Tensor], optimizer_state: dict[str, Any]) -> None:
        """Copy a run's checkpointed weights, BatchNorm statistics and momentum buffers into its slot."""
        missing = set(self.state_names) ^ set(model_state)
        if missing:
            from rethinkgen.errors import ConfigError

            raise ConfigError(f"checkpoint does not fit the model (keys differ: {sorted(missing)[:4]}); "
                              "delete it or use its config")
        entries = optimizer_state.get("state", {})
        with torch.no_grad():
            for name in self.state_names:
                stack = self.params[name] if name in self.params else self.stats[name]
                stack[run.slot].copy_(model_state[name])
            for i, name in enumerate(self.param_names):
                buf = entries.get(i, {}).get("momentum_buffer")
                if buf is not None:
                    self.momentum[name][run.slot].copy_(buf)

    def _leave(self, done: list[Run]) -> None:
        """Slice finished runs out of every stacked tensor (the static step, built on them, goes too)."""
        self.static = None
        for run in done:
            run.final = self.run_tensors(run)
        keep = [r.slot for r in self.runs if not r.history.finished]
        for run in done:
            run.slot = None
        self.runs = [r for r in self.runs if not r.history.finished]
        if not keep:
            return
        index = torch.tensor(keep, device=self.device, dtype=torch.long)
        self.params = {n: p.detach()[index].requires_grad_() for n, p in self.params.items()}
        self.stats = {n: b[index] for n, b in self.stats.items()}
        self.momentum = {n: b[index] for n, b in self.momentum.items()}
        self.y_train, self.changed, self.y_test = self.y_train[index], self.changed[index], self.y_test[index]
        self.x_train, self.x_test = self.x_train.keep(keep), self.x_test.keep(keep)
        self.augment = [self.augment[s] for s in keep]
        for i, run in enumerate(self.runs):
            run.slot = i
        self._hyper()

    # ------------------------------------------------------------------ one epoch of every active run
    def _inputs(self, index: torch.Tensor, augmented: Callable[[int, Any, torch.Tensor], torch.Tensor],
                same_order: bool) -> tuple[torch.Tensor, bool]:
        """This step's inputs: ((B, ...), True) when every run reads the same batch (one input tensor, the
        same data order, no augmentation), else ((K, B, ...), False). ``augmented(k, preprocessor, raw
        rows)`` makes run k's augmented batch (from its generator, or from pre-drawn offsets)."""
        if not any(self.augment):
            if same_order and self.x_train.shared is not None:
                return self.x_train.shared[index[0]], True  # (B, ...)
            return self.x_train.rows(index), False  # (K, B, ...)
        plain = self.x_train.rows(index) if not all(self.augment) else None
        parts = []
        for k, aug in enumerate(self.augment):
            if aug is None:
                parts.append(plain[k])
            else:
                pre, raw = aug
                xb = augmented(k, pre, raw[index[k]])
                parts.append(xb.contiguous(memory_format=torch.channels_last) if self.channels_last else xb)
        return torch.stack(parts), False

    def train_epoch(self) -> list[tuple[float, list[list[float]]]]:
        """One epoch of every active run (each its own next epoch); per run (mean loss, logged losses), and
        in ``run.epoch_evaluations`` the (step, train accuracy) pairs of its evaluations inside the epoch
        (``eval_every``; as the single trainer's)."""
        runs, n, bs, dev = self.runs, self.n_train, self.batch_size, self.device
        k = len(runs)
        orders = [torch.Generator().manual_seed(stream_seed(r.config.seed, "order", r.history.epoch + 1)) for r in runs]
        perms = torch.stack([torch.randperm(n, generator=g) for g in orders])  # (K, N), on the CPU
        generators: list[torch.Generator | None] = [
            torch.Generator(device=dev).manual_seed(stream_seed(r.config.seed, "augment", r.history.epoch + 1))
            if self.augment[i] is not None else None for i, r in enumerate(runs)]
        # runs of one seed at the same epoch draw the same order (e.g. the corruption levels of a sweep)
        same_order = len({(r.config.seed, r.history.epoch) for r in runs}) == 1
        starts = list(range(0, n, bs))
        lrs = [[lr_at(r.config.lr, r.config.lr_decay, r.period, r.history.samples_seen + s) for r in runs]
               for s in starts]
        due = self._evaluations_due(len(starts))  # step index -> slots of the runs evaluated after it
        evaluations: list[tuple[int, list[int], torch.Tensor]] = []
        self.template.train()
        if self.step_mode != "eager":  # the static step (captured on CUDA): rethinkgen.train.fused.step
            if self.static is None:
                self.static = FusedStaticStep(self, capture=self.step_mode == "captured")
            self.static.begin_epoch(perms, lrs, generators, same_order)
            for i in range(len(starts)):
                self.static.step(i)
                if i in due:
                    evaluations.append((i, due[i], self._train_accuracy(due[i])))
            loss_sum, step_loss = self.static.loss_sum, self.static.losses
        else:
            perms = perms.to(dev)
            lr_table = torch.tensor(lrs, dtype=torch.float32, device=dev).neg_()  # (S, K): -lr, one copy per epoch
            loss_sum = torch.zeros(k, device=dev)
            step_loss = torch.empty(len(starts), k, device=dev)  # every step's losses; read once at the end
            for i, start in enumerate(starts):
                index = perms[:, start:start + bs]  # (K, B)
                xb, shared = self._inputs(index, lambda j, pre, rows: pre.train_batch(rows, generators[j]),
                                          same_order)
                losses = self._sgd_step(xb, shared, self.y_train.gather(1, index), lrs[i], lr_table[i])
                loss_sum += losses
                step_loss[i] = losses
                if i in due:
                    evaluations.append((i, due[i], self._train_accuracy(due[i])))
        # the one host sync of the epoch: every step's losses, their sums and the evaluated accuracies
        host = torch.cat([step_loss.flatten(), loss_sum, *(acc for _, _, acc in evaluations)]).cpu().tolist()
        per_step = [host[i * k:(i + 1) * k] for i in range(len(starts))]
        sums, accs = host[len(starts) * k:(len(starts) + 1) * k], iter(host[(len(starts) + 1) * k:])
        for run in runs:
            run.epoch_evaluations = []
        for i, slots, _ in evaluations:
            for j in slots:
                runs[j].epoch_evaluations.append([runs[j].history.step + i + 1, next(accs)])
        results = []
        for j, run in enumerate(runs):
            h = run.history
            first_step = h.step
            logged = [[first_step + i + 1, per_step[i][j]] for i in range(len(starts))
                      if (first_step + i + 1) % run.config.log_every == 0]
            h.step += len(starts)
            h.samples_seen += n
            h.epoch += 1
            results.append((sums[j] / max(len(starts), 1), logged))
        return results

    def _sgd_step(self, xb: torch.Tensor, shared: bool, yb: torch.Tensor, lrs: list[float],
                  neg_lr: torch.Tensor) -> torch.Tensor:
        """One SGD step of every active run: inputs ``xb`` ((B, ...) read by all runs when ``shared``, else
        (K, B, ...)), labels ``yb`` (K, B), the runs' learning rates ``lrs`` (and negated on the device,
        ``neg_lr`` (K,)). Returns the K minibatch losses, detached, on the device (no host sync). Forward,
        backward and update, nothing else: the unit the static step (rethinkgen.train.fused.step) replaces."""
        names = self.param_names
        plist = [self.params[name] for name in names]
        blist = [self.momentum[name] for name in names]
        forward = self.forward_shared if shared else self.forward_each
        with autocast_context(self.device.type, self.autocast):
            logits = forward(self.params, self.stats, xb)  # (K, B, C)
        losses = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none")
        losses = losses.view(yb.shape).mean(dim=1)  # (K,): each run's minibatch mean
        grads = [g if g.is_contiguous() else g.contiguous()  # bmm gives W's gradient transposed; the
                 for g in torch.autograd.grad(losses.sum(), plist)]  # fused CPU kernel needs it contiguous
        with torch.no_grad():
            if len(set(self.momenta)) == 1 and len(set(self.decays)) == 1 and len(set(lrs)) == 1:
                # One set of hyperparameters: torch's own SGD kernel with the single trainer's flags
                # (fused on the CPU and CUDA), elementwise on the stacked tensors. Buffers start at zero, so
                # the first step's m·0 + g is exactly SGD's buf = g.
                sgd(plist, grads, blist, fused=self.fused_sgd, weight_decay=self.decays[0],
                    momentum=self.momenta[0], lr=lrs[0], dampening=0.0, nesterov=False, maximize=False)
            else:  # per-run hyperparameters: the same operations with (K, 1, ...) tensors
                self.per_run_update(grads, neg_lr)
        return losses.detach()

    @torch.no_grad()
    def per_run_update(self, grads: list[torch.Tensor], neg_lr: torch.Tensor) -> None:
        """SGD with each run's own momentum, weight decay and learning rate (``neg_lr`` (K,): −lr, on the
        device) on the stacked tensors: torch's SGD arithmetic with (K, 1, ...) tensors
        (``g += wd·p``; ``buf = m·buf + g``; ``p −= lr·buf``; buffers start at zero)."""
        for name, g in zip(self.param_names, grads, strict=True):
            p, buf, view = self.params[name], self.momentum[name], self.views[name]
            if any(self.decays):
                g = g + p * self.decay_t.view(view)
            buf.mul_(self.momentum_t.view(view)).add_(g)
            p.addcmul_(buf, neg_lr.view(view))

    # ------------------------------------------------------------------ evaluation
    def _evaluations_due(self, n_steps: int) -> dict[int, list[int]]:
        """{step index in this epoch: slots of the runs whose training set is evaluated after that step}:
        every ``eval_every``-th step of each run's own count, but not the epoch's last (the row is)."""
        due: dict[int, list[int]] = {}
        for j, run in enumerate(self.runs):
            every = run.config.eval_every
            if every:
                for i in range(n_steps - 1):
                    if (run.history.step + i + 1) % every == 0:
                        due.setdefault(i, []).append(j)
        return due

    def _train_accuracy(self, slots: list[int]) -> torch.Tensor:
        """Training-set accuracies (K',) of the runs at ``slots``, in eval mode, left on the device."""
        subset = None if len(slots) == len(self.runs) else torch.tensor(slots, device=self.device)
        _, correct, _ = self._predict(self.x_train, self.y_train, subset, top5=False)
        return correct.float().mean(dim=1)

    def _predict(self, inputs: Inputs, y: torch.Tensor, runs: torch.Tensor | None, top5: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Per-sample loss, top-1 and top-5 correctness (K', M) of the runs ``runs`` (None: all active) on
        ``inputs`` (top-5: None unless ``top5``), in eval mode (BatchNorm: running statistics, not
        updated); the template's mode is restored."""
        params = self.params if runs is None else {n: p[runs] for n, p in self.params.items()}
        stats = self.stats if runs is None else {n: b[runs] for n, b in self.stats.items()}
        was_training = self.template.training
        self.template.eval()
        if runs is not None:
            y = y[runs]
        # written into preallocated (K', M) outputs: small per-chunk results kept in a list would sit
        # between the chunks' freed activations in the malloc heap and keep it from being reused
        losses = torch.empty(y.shape, device=self.device)
        correct = torch.empty(y.shape, dtype=torch.bool, device=self.device)
        correct5 = torch.empty(y.shape, dtype=torch.bool, device=self.device) if top5 else None
        with torch.inference_mode(), autocast_context(self.device.type, self.autocast):
            # eval_batch_size samples *in all*, split over the runs: the activations of a chunk stay the
            # size of one run's (K times larger ones fall out of the cache and run several times slower)
            chunk = max(1, self.eval_batch_size // y.shape[0])
            for start in range(0, y.shape[1], chunk):
                x, shared = inputs.chunk(start, start + chunk, runs)
                logits = (self.forward_shared if shared else self.forward_each)(params, stats, x).float()  # (K', b, C)
                target = y[:, start:start + chunk]
                losses[:, start:start + chunk] = F.cross_entropy(logits.flatten(0, 1), target.flatten(),
                                                                 reduction="none").view(target.shape)
                correct[:, start:start + chunk] = logits.argmax(dim=-1) == target
                if correct5 is not None:
                    correct5[:, start:start + chunk] = topk_correct(logits.flatten(0, 1), target.flatten()
                                                                    ).view(target.shape)
        self.template.train(was_training)
        return losses, correct, correct5

    def evaluate_rows(self, runs: list[Run], train_losses: list[float | None]) -> list[dict[str, Any]]:
        """The per-epoch rows of ``runs`` (all active, or a subset for epoch 0), as Trainer.evaluate_row."""
        subset = None
        if len(runs) != len(self.runs):
            subset = torch.tensor([r.slot for r in runs], device=self.device, dtype=torch.long)
        top5 = self.num_classes > TOPK
        tr_loss, tr_ok, tr_ok5 = self._predict(self.x_train, self.y_train, subset, top5)
        te_loss, te_ok, te_ok5 = self._predict(self.x_test, self.y_test, subset, top5)
        changed = self.changed if subset is None else self.changed[subset]
        rows = []
        for j, (run, train_loss) in enumerate(zip(runs, train_losses, strict=True)):
            c, h = run.config, run.history
            tr = summarize(tr_loss[j], tr_ok[j], changed[j], tr_ok5[j] if top5 else None, self.num_classes)
            te = summarize(te_loss[j], te_ok[j], None, te_ok5[j] if top5 else None, self.num_classes)
            rows.append({
                "epoch": h.epoch, "step": h.step, "samples_seen": h.samples_seen,
                "lr": last_step_lr(c.lr, c.lr_decay, run.period, h.samples_seen, self.n_train, c.batch_size),
                "train_loss": train_loss, "train_eval_loss": tr.loss, "train_acc": tr.acc,
                "train_acc_corrupted": tr.acc_changed, "train_acc_clean": tr.acc_unchanged,
                "test_loss": te.loss, "test_acc": te.acc, "wall_time_s": h.wall_time_s,
                "train_acc_top5": tr.acc_top5, "test_acc_top5": te.acc_top5,
            })
        return rows

    # ------------------------------------------------------------------ the group's life
    def _record(self, run: Run, row: dict[str, Any], logged: list, bar: Progress) -> None:
        run.history.finish_epoch(row, run.config, run.epoch_evaluations)
        run.epoch_evaluations = []
        for cb in run.callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(row, logged, run)
        bar.update(id(run), row)

    def _retire(self) -> None:
        done = [r for r in self.runs if r.history.finished]
        if not done:
            return
        self._leave(done)
        for run in done:
            summary = run.summary()
            for cb in run.callbacks:
                if hasattr(cb, "on_train_end"):
                    cb.on_train_end(summary)

    def fit(self, progress: bool = False) -> list[dict[str, Any]]:
        with Progress([(id(r), r.config, r.history.epoch) for r in self.runs], enabled=progress) as bar:
            fresh = [r for r in self.runs if r.history.untrained]
            if fresh:  # epoch 0: the untrained models
                for run, row in zip(fresh, self.evaluate_rows(fresh, [None] * len(fresh)), strict=True):
                    self._record(run, row, [], bar)
            self._retire()
            while len(self.runs) > 1:
                t0 = time.perf_counter()
                results = self.train_epoch()
                elapsed = time.perf_counter() - t0
                for run, (_, logged) in zip(self.runs, results, strict=True):
                    run.history.wall_time_s += elapsed
                    run.history.step_losses.extend(logged)
                t0 = time.perf_counter()
                rows = self.evaluate_rows(self.runs, [loss for loss, _ in results])
                elapsed = time.perf_counter() - t0
                for run, row, (_, logged) in zip(list(self.runs), rows, results, strict=True):
                    run.history.wall_time_s += elapsed
                    row["wall_time_s"] = run.history.wall_time_s
                    self._record(run, row, logged, bar)
                self._retire()
        solo = {id(run): self._finish_alone(run, progress) for run in self.runs}  # the last run, if any
        summaries = [solo[id(run)] if id(run) in solo else run.summary() for run in self.all_runs]
        # the stacks, data and captured step go now: the runs point back to the group (a reference
        # cycle), which Python's cyclic collector may free long after, holding the GPU memory till then
        self._release()
        return summaries

    def _finish_alone(self, run: Run, progress: bool) -> dict[str, Any]:
        """The group's last run goes on in the single trainer, resumed from its own checkpoint: one run
        gains nothing from batched kernels (and a random-label run often trains alone for hundreds of
        epochs after the others converged). Its callbacks and history carry over unchanged."""
        ckpt = run.checkpoint()
        self._release()  # the trainer loads its own copy of the data
        return train(run.config, callbacks=run.callbacks, resume=ckpt, progress=progress)

    def _release(self) -> None:
        """Drop the group's data and stacked tensors (the runs' histories stay)."""
        self.params, self.stats, self.momentum = {}, {}, {}
        self.static = None
        self.x_train = self.x_test = self.y_train = self.y_test = self.changed = None  # type: ignore[assignment]
        self.augment = []


