"""Fused multi-run training: K runs of one architecture trained at once in one process (design §5).

Small models leave a big device idle and pay per-step Python overhead once per run; a sweep's runs
(corruption levels, seeds, learning rates, weight decays) usually share the architecture and the data
shape, so they can take their SGD steps *together*: the K runs' parameters are stacked along a new
leading dimension (``torch.func.stack_module_state``) and the model runs once per step for all of
them — MLPs as one ``baddbmm`` per layer, every other model under ``torch.func.vmap(functional_call)``
(grouped convolutions for the convnets). Each run keeps everything that makes it *its* run, exactly
as :func:`rethinkgen.train.loop.train` would compute it alone:

- its initial weights (``torch.manual_seed(stream_seed(seed, "init"))`` before ``create_model``) and
  BatchNorm statistics;
- its data order (``torch.randperm`` from ``stream_seed(seed, "order", epoch)``), labels, inputs
  (input corruptions and seeded subsets give per-run inputs; identical inputs are stored once) and
  augmentation draws (``stream_seed(seed, "augment", epoch)``);
- its optimizer state: SGD with momentum and weight decay on the stacked tensors, step for step what
  ``torch.optim.SGD`` does (``g += wd·p``; ``buf = g`` at the first step, then ``buf = m·buf + g``;
  ``p -= lr·buf``), with its own learning rate, schedule (counted in its own samples seen), momentum
  and weight decay — torch's own SGD kernel (the single trainer's, fused on the CPU) on the stacked
  tensors whenever the runs' hyperparameters agree at a step;
- its stopping point: a run that converges, diverges or reaches its epoch limit leaves the group at
  that epoch's end (its tensors are sliced out) while the others go on; the last run left continues
  in the single trainer from its checkpoint (one run gains nothing from batched kernels);
- its records: the same per-epoch rows, logged step losses, callbacks (``on_epoch_end(row,
  step_losses, state)`` with ``state.checkpoint()`` in the *single trainer's* checkpoint format, so
  ``train(config, resume=ckpt)`` continues a fused run alone, and vice versa) and summary.

The numbers agree with separate training within float tolerance: batched kernels (bmm, grouped
convolutions) may sum in another order than the single-run ones, and these last-bit differences grow
over epochs as in any chaotic dynamics (tests/test_fused.py bounds them). ``wall_time_s`` of a
fused run is the elapsed time of the group while the run was in it (its share of the compute is that
time divided by the group size).

Runs that cannot be fused identically (:func:`why_not_fused` says why; :func:`train_group` then
trains them one after another with the single trainer):

- **dropout > 0**: the single trainer draws dropout masks from the global RNG, reseeded per epoch,
  in the order of its layers and steps; a vmapped model cannot reproduce those draws per run.
- **models with buffers other than BatchNorm statistics** (none of the registered models): fused
  training would not know how to stack them. BatchNorm itself fuses: each run's running mean and
  variance are stacked like its weights and updated in place under ``vmap`` from that run's own
  batch statistics (inception_small, resnet18).
- **different data shape or step structure**: ``data``, ``data_dir``, ``data_options``, ``n_train``,
  ``n_test``, ``crop``, ``model``, ``batch_size``, ``eval_batch_size``, ``device``, ``amp`` and
  ``compile`` must be equal (:data:`SHARED_FIELDS`); everything else may differ.

GPU path (same as the single trainer): bf16 autocast when ``amp`` (CUDA only), channels-last storage
of shared image tensors, optional ``torch.compile`` of the vmapped forward (``compile``, CUDA only),
and no host synchronisation inside the step loop: the epoch's permutations and learning-rate table
go to the device once per epoch, and step losses stay on the device until the epoch ends.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.sgd import sgd

from rethinkgen.seeding import stream_seed
from rethinkgen.train.allocator import keep_freed_memory
from rethinkgen.train.config import TrainConfig, run_key
from rethinkgen.train.data import PreparedData, load_source, prepare_data, source_key
from rethinkgen.train.loop import Trainer, make_optimizer, select_device, train
from rethinkgen.train.metrics import summarize
from rethinkgen.train.resolve import eval_batch_size, resolve_config
from rethinkgen.train.schedule import decay_period, lr_at

__all__ = ["SHARED_FIELDS", "can_fuse", "fuse_key", "group_runs", "train_group", "why_not_fused"]

# Config fields that must be equal within a group: they fix the architecture, the data shapes, the
# number of steps per epoch and the device. Every other field may differ between the runs.
SHARED_FIELDS = ("data", "data_dir", "data_options", "n_train", "n_test", "crop", "model", "batch_size",
                 "eval_batch_size", "device", "amp", "compile")


# ------------------------------------------------------------------------------ who can fuse
@functools.cache
def _model_refusal(model: str) -> str | None:
    """Why ``model`` cannot run under vmap over stacked parameters (None: it can)."""
    from rethinkgen.models import create_model, natural_input_shape

    with torch.device("meta"):  # no weights allocated, no random numbers drawn
        module = create_model(model, natural_input_shape(model), 10)
    norms = {id(b) for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)
             for b in m.buffers(recurse=False)}
    other = [name for name, b in module.named_buffers() if id(b) not in norms]
    if other:
        return (f"model {model} has buffers other than BatchNorm statistics ({', '.join(other[:3])}), which "
                "fused training does not know how to stack")
    return None


def _run_refusal(config: TrainConfig) -> str | None:
    """Why this run cannot be in any group (None: it can)."""
    if config.dropout > 0:
        return (f"dropout={config.dropout:g}: dropout masks are drawn from the global RNG in the single "
                "trainer's order, which a vmapped model cannot reproduce per run")
    return _model_refusal(config.model)


def _shared(config: TrainConfig) -> tuple:
    return tuple(json.dumps(getattr(config, name), sort_keys=True) for name in SHARED_FIELDS)


def why_not_fused(configs: Sequence[TrainConfig]) -> str | None:
    """None when ``configs`` can be trained as one fused group, else the reason (one line).

    A group of zero or one run is trivially fusable.
    """
    resolved = [resolve_config(c) for c in configs]
    for c in resolved:
        reason = _run_refusal(c)
        if reason is not None:
            return reason
    if resolved:
        first = resolved[0]
        for c in resolved[1:]:
            differ = [n for n in SHARED_FIELDS if getattr(c, n) != getattr(first, n)]
            if differ:
                values = ", ".join(f"{n}={getattr(first, n)!r} vs {getattr(c, n)!r}" for n in differ)
                return f"runs differ in {values}; fused runs must share {', '.join(SHARED_FIELDS)}"
    return None


def can_fuse(configs: Sequence[TrainConfig]) -> bool:
    """Whether :func:`train_group` trains ``configs`` fused (see :func:`why_not_fused` for the reason)."""
    return why_not_fused(configs) is None


def fuse_key(config: TrainConfig) -> Hashable:
    """A grouping key: runs with equal keys can be fused together; a run that can never be fused gets a
    key of its own (``("alone", run_key)``). Takes raw or resolved configs."""
    c = resolve_config(config)
    if _run_refusal(c) is not None:
        return ("alone", run_key(c))
    return ("fused", *_shared(c))


def group_runs(configs: Sequence[TrainConfig], max_group: int = 16, parallelism: int = 1,
               key: Callable[[TrainConfig], Hashable] | None = None) -> list[list[int]]:
    """Indices of ``configs`` split into fusable groups of at most ``max_group`` runs (in input order).

    Runs with equal ``key`` (default :func:`fuse_key`) go together; a key with more runs than
    ``max_group`` is split into near-equal chunks (17 runs, max 16 -> 9 + 8). Runs that cannot be fused
    come out alone. When there are fewer keys than ``parallelism`` (worker processes, Ray tasks), each
    key is cut into enough parts to keep every worker busy: one group of 11 on a single worker would
    leave the others idle.
    """
    if max_group < 1:
        raise ValueError(f"max_group must be >= 1, got {max_group}")
    key = key or fuse_key
    by_key: dict[Hashable, list[int]] = {}
    for i, c in enumerate(configs):
        by_key.setdefault(key(c), []).append(i)
    per_key = -(-parallelism // max(len(by_key), 1))
    groups = []
    for members in by_key.values():
        parts = min(len(members), max(-(-len(members) // max_group), per_key))
        size = -(-len(members) // parts)
        groups += [members[j:j + size] for j in range(0, len(members), size)]
    return groups


# ------------------------------------------------------------------------------ entry point
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
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        group = _FusedGroup([configs[i] for i in todo], device, [callbacks[i] for i in todo],
                            [resumes[i] for i in todo])
        if device.type == "cpu":  # after the data is loaded (as the single trainer)
            keep_freed_memory()
        for i, summary in zip(todo, group.fit(progress), strict=True):
            summaries[i] = summary
    return summaries  # type: ignore[return-value]


# ------------------------------------------------------------------------------ one run's view
class _ModelView:
    """What ``Trainer.checkpoint`` / ``restore`` need of a run's model: its slice of the stack."""

    def __init__(self, group: _FusedGroup, run: _Run) -> None:
        self.group, self.run = group, run

    def state_dict(self) -> OrderedDict[str, torch.Tensor]:
        return self.group.run_tensors(self.run)[0]

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.group.state_names) ^ set(state)
        if missing:
            from rethinkgen.errors import ConfigError

            raise ConfigError(f"checkpoint does not fit the model (keys differ: {sorted(missing)[:4]}); "
                              "delete it or use its config")
        with torch.no_grad():
            for name in self.group.state_names:
                stack = self.group.params[name] if name in self.group.params else self.group.stats[name]
                stack[self.run.slot].copy_(state[name])


class _OptimizerView:
    """What ``Trainer.checkpoint`` / ``restore`` need of a run's optimizer: a ``torch.optim.SGD`` state."""

    def __init__(self, group: _FusedGroup, run: _Run) -> None:
        self.group, self.run = group, run

    def state_dict(self) -> dict[str, Any]:
        c, run = self.run.config, self.run
        state, momentum = self.group.run_tensors(run)
        tensors = [state[name] for name in self.group.param_names]
        optimizer = make_optimizer(tensors, c, self.group.device)  # the single trainer's optimizer and flags
        if run.step > 0:  # lr of the last step, as the single trainer leaves it in the param group
            last_batch = self.group.n_train - (self.group.steps_per_epoch - 1) * c.batch_size
            optimizer.param_groups[0]["lr"] = lr_at(c.lr, c.lr_decay, run.period, run.samples_seen - last_batch)
            if c.momentum != 0:
                for tensor, name in zip(tensors, self.group.param_names, strict=True):
                    optimizer.state[tensor]["momentum_buffer"] = momentum[name]
        return optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        entries = state.get("state", {})
        with torch.no_grad():
            for i, name in enumerate(self.group.param_names):
                buf = entries.get(i, {}).get("momentum_buffer")
                if buf is not None:
                    self.group.momentum[name][self.run.slot].copy_(buf)


class _Run:
    """One run of a group. It has the Trainer's history attributes, so the Trainer's own bookkeeping
    methods (checkpoint format, restore, end-of-epoch status, summary) are reused unchanged."""

    start_history = Trainer.start_history
    checkpoint = Trainer.checkpoint
    restore = Trainer.restore
    _finish_epoch = Trainer._finish_epoch
    summary = Trainer.summary

    def __init__(self, group: _FusedGroup, slot: int, config: TrainConfig, data: SimpleNamespace,
                 callbacks: list[Any]) -> None:
        self.config, self.device, self.n_params = config, group.device, group.n_params
        self.data = data  # realized_noise_rate and data_info: what Trainer.summary reads
        self.model, self.optimizer = _ModelView(group, self), _OptimizerView(group, self)
        self.callbacks = callbacks
        self.period = decay_period(config.lr_decay_every, group.n_train)
        self.slot: int | None = slot  # index in the group's stacked tensors; None once the run has left
        self.final: tuple[dict, dict] | None = None  # its (model state, momentum) when it left
        self.start_history()


# ------------------------------------------------------------------------------ batched MLP
def _linear_plan(model: torch.nn.Module) -> list[tuple[str, str | None]] | None:
    """The layers of a Sequential of Flatten / Linear / ReLU as (op, name) pairs; None for other models."""
    if not isinstance(model, torch.nn.Sequential):
        return None
    plan: list[tuple[str, str | None]] = []
    for name, module in model.named_children():
        if isinstance(module, torch.nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
            plan.append(("flatten", None))
        elif isinstance(module, torch.nn.Linear):
            plan.append(("linear", name))
        elif isinstance(module, torch.nn.ReLU):
            plan.append(("relu", None))
        elif isinstance(module, torch.nn.Identity):
            continue
        else:
            return None
    return plan


def _mlp_forward(plan: list[tuple[str, str | None]], params: dict[str, torch.Tensor], stats: dict,
                 x: torch.Tensor, shared: bool) -> torch.Tensor:
    """K stacked MLPs on per-run inputs (K, B, ...) or on shared inputs (B, ...): logits (K, B, C).

    Each Linear is one ``baddbmm`` (bias + x @ W^T per run), what ``F.linear``'s addmm does per run.
    """
    for op, name in plan:
        if op == "flatten":
            x = x.flatten(1) if shared else x.flatten(2)
        elif op == "relu":
            x = torch.relu(x)
        else:
            weight, bias = params[f"{name}.weight"], params.get(f"{name}.bias")  # (K, O, I), (K, O)
            if shared:  # one input for all runs: the K layers as one (B, I) @ (I, K·O) GEMM, whose
                k, o, i = weight.shape  # weight gradient is one GEMM too (the per-run bmm's are small)
                x = F.linear(x, weight.reshape(k * o, i), None if bias is None else bias.reshape(k * o))
                x = x.view(x.shape[0], k, o).transpose(0, 1)  # (K, B, O)
                shared = False
                continue
            if bias is None:
                x = torch.bmm(x, weight.transpose(1, 2))
            else:
                x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
    return x


# ------------------------------------------------------------------------------ the group
def _intern(pool: list[torch.Tensor], x: torch.Tensor) -> int:
    """Index of a tensor equal to ``x`` in ``pool`` (appending it if there is none): equal inputs once."""
    for i, t in enumerate(pool):
        if t is x or (t.shape == x.shape and torch.equal(t, x)):
            return i
    pool.append(x)
    return len(pool) - 1


class _SharedInputs:
    """``prepare_data`` for the runs of a group, preprocessing each distinct input set once.

    A label corruption leaves the inputs untouched (``CorruptionSpec.target == "labels"``), so runs
    that differ only in their label corruption share one source and one preprocessed copy: only their
    labels are drawn again. Anything else goes through ``prepare_data`` as in the single trainer.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.memo: dict[tuple, tuple[Any, PreparedData]] = {}  # key -> (source kept alive, prepared data)

    def prepare(self, c: TrainConfig) -> PreparedData:
        from rethinkgen.data.corruptions import CORRUPTIONS, apply_corruption

        if CORRUPTIONS.get(c.corruption).target != "labels":
            return prepare_data(c, self.device)
        key = (source_key(c), c.crop, c.standardize, c.augment, c.flip)
        if key not in self.memo:
            source = load_source(c)  # large sources are not cached: loaded once here, for all the group
            self.memo[key] = (source, prepare_data(c, self.device, source))
            return self.memo[key][1]
        source, first = self.memo[key]
        corrupted = apply_corruption(source, c.corruption, c.level, seed=c.seed,
                                     exclude_true_class=c.exclude_true_class)
        return dataclasses.replace(
            first, y_train=corrupted.dataset.y_train.to(self.device),
            y_train_clean=corrupted.y_train_clean.to(self.device), changed=corrupted.changed.to(self.device),
            realized_noise_rate=float(corrupted.realized_noise_rate))


class _Inputs:
    """The distinct input tensors of the active runs, and which one each run reads.

    One distinct tensor (label corruptions of one dataset): kept as (N, ...) and broadcast over runs.
    Several (input corruptions, seeded subsets): stacked once into (U, N, ...) and gathered per run.
    """

    def __init__(self, pool: list[torch.Tensor] | torch.Tensor, which: list[int], device: torch.device,
                 channels_last: bool) -> None:
        used = sorted(set(which))
        remap = {u: i for i, u in enumerate(used)}
        self.which = [remap[u] for u in which]
        self.device, self.channels_last = device, channels_last
        self.shared: torch.Tensor | None = None
        self.stacked: torch.Tensor | None = None
        if len(used) == 1:
            x = pool[used[0]].clone() if isinstance(pool, torch.Tensor) else pool[used[0]]  # frees the stack
            self.shared = x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x
        elif isinstance(pool, torch.Tensor):  # already stacked: keep the rows in use
            self.stacked = pool if used == list(range(pool.shape[0])) else pool[used]
        else:
            self.stacked = torch.stack([pool[u] for u in used])  # (U, N, ...)
        self.index = torch.tensor(self.which, device=device)  # (K,)

    def keep(self, slots: list[int]) -> _Inputs:
        """The inputs of the runs at ``slots`` (after others left the group)."""
        pool = self.stacked if self.stacked is not None else [self.shared]
        return _Inputs(pool, [self.which[s] for s in slots], self.device, self.channels_last)

    @property
    def n(self) -> int:
        return int((self.shared if self.shared is not None else self.stacked[0]).shape[0])

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Per-run rows: ``index`` (K, B) -> inputs (K, B, ...)."""
        if self.shared is not None:
            return self.shared[index]
        return self.stacked[self.index[:, None], index]

    def chunk(self, start: int, stop: int, runs: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
        """Rows ``start:stop`` for evaluation: ((b, ...), shared=True) or ((K', b, ...), False)."""
        if self.shared is not None:
            return self.shared[start:stop], True
        index = self.index if runs is None else self.index[runs]
        return self.stacked[index, start:stop], False


class _FusedGroup:
    """K fusable runs: stacked parameters, BatchNorm statistics and momentum buffers, per-run data, the
    training rounds."""

    def __init__(self, configs: list[TrainConfig], device: torch.device, callbacks: list[list[Any]],
                 resumes: list[dict | None]) -> None:
        from rethinkgen.models import count_params, create_model

        first = configs[0]
        self.device = device
        self.use_amp = first.amp and device.type == "cuda"
        self.batch_size = first.batch_size
        # ---- data: prepared per run exactly as the single trainer does, equal tensors kept once
        train_pool: list[torch.Tensor] = []
        test_pool: list[torch.Tensor] = []
        train_which, test_which, noise = [], [], []
        labels, changed, test_labels = [], [], []
        self.augment: list[tuple[Any, torch.Tensor] | None] = []  # (preprocessor, raw inputs) per run
        raw_pool: list[torch.Tensor] = []
        shared_inputs = _SharedInputs(device)
        for c in configs:
            d = shared_inputs.prepare(c)
            train_which.append(_intern(train_pool, d.x_train))
            test_which.append(_intern(test_pool, d.x_test))
            labels.append(d.y_train)
            changed.append(d.changed)
            test_labels.append(d.y_test)
            noise.append(SimpleNamespace(realized_noise_rate=d.realized_noise_rate, data_info=d.data_info))
            if d.x_train_raw is not None:
                self.augment.append((d.preprocessor, raw_pool[_intern(raw_pool, d.x_train_raw)]))
            else:
                self.augment.append(None)
            self.num_classes, self.layout, input_shape = d.num_classes, d.layout, d.input_shape
            del d
        del shared_inputs
        self.channels_last = device.type == "cuda" and self.layout == "image"
        self.eval_batch_size = eval_batch_size(first, self.layout, device.type)  # samples per pass, all runs
        self.x_train = _Inputs(train_pool, train_which, device, self.channels_last)
        self.x_test = _Inputs(test_pool, test_which, device, self.channels_last)
        del train_pool, test_pool
        self.n_train = self.x_train.n
        self.steps_per_epoch = -(-self.n_train // self.batch_size)
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
            torch.manual_seed(stream_seed(c.seed, "init"))
            models.append(create_model(c.model, input_shape, self.num_classes, dropout=c.dropout, layout=self.layout))
        self.n_params = count_params(models[0])
        stacked, stats = stack_module_state(models)
        self.param_names = list(stacked)
        self.params = {n: p.detach().to(device).requires_grad_() for n, p in stacked.items()}  # (K, ...)
        self.stats = {n: b.to(device) for n, b in stats.items()}  # BatchNorm running statistics (K, ...)
        self.momentum = {n: torch.zeros_like(p, requires_grad=False) for n, p in self.params.items()}
        self.template = template = copy.deepcopy(models[0]).to("meta")
        self.state_names = list(template.state_dict())  # the single model's state_dict order
        del models, stacked, stats

        def one(params: dict[str, torch.Tensor], stats: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(template, (params, stats), (x,))  # BatchNorm updates ``stats`` in place

        plan = _linear_plan(template)
        if plan is not None:  # MLPs: batched matmuls directly, without vmap's per-call overhead
            forward_each = functools.partial(_mlp_forward, plan, shared=False)
            forward_shared = functools.partial(_mlp_forward, plan, shared=True)
        else:  # any other model: vmap (grouped convolutions for the convnets)
            forward_each, forward_shared = vmap(one, in_dims=(0, 0, 0)), vmap(one, in_dims=(0, 0, None))
        if first.compile and device.type == "cuda":
            forward_each, forward_shared = torch.compile(forward_each), torch.compile(forward_shared)
        self.forward_each, self.forward_shared = forward_each, forward_shared
        # ---- runs
        self.runs = [_Run(self, i, c, noise[i], callbacks[i]) for i, c in enumerate(configs)]
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

    def run_tensors(self, run: _Run) -> tuple[OrderedDict[str, torch.Tensor], dict[str, torch.Tensor]]:
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

    def _leave(self, done: list[_Run]) -> None:
        """Slice finished runs out of every stacked tensor."""
        for run in done:
            run.final = self.run_tensors(run)
        keep = [r.slot for r in self.runs if r.status is None]
        for run in done:
            run.slot = None
        self.runs = [r for r in self.runs if r.status is None]
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
    def _inputs(self, index: torch.Tensor, generators: list[torch.Generator | None],
                same_order: bool) -> tuple[torch.Tensor, bool]:
        """This step's inputs: ((B, ...), True) when every run reads the same batch (one input tensor, the
        same data order, no augmentation), else ((K, B, ...), False)."""
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
                xb = pre.train_batch(raw[index[k]], generators[k])
                parts.append(xb.contiguous(memory_format=torch.channels_last) if self.channels_last else xb)
        return torch.stack(parts), False

    def train_epoch(self) -> list[tuple[float, list[list[float]]]]:
        """One epoch of every active run (each its own next epoch); (mean loss, logged losses) per run."""
        runs, n, bs, dev = self.runs, self.n_train, self.batch_size, self.device
        k = len(runs)
        perms = torch.stack([
            torch.randperm(n, generator=torch.Generator().manual_seed(stream_seed(r.config.seed, "order", r.epoch + 1)))
            for r in runs]).to(dev)  # (K, N)
        generators: list[torch.Generator | None] = [
            torch.Generator(device=dev).manual_seed(stream_seed(r.config.seed, "augment", r.epoch + 1))
            if self.augment[i] is not None else None for i, r in enumerate(runs)]
        # runs of one seed at the same epoch draw the same order (e.g. the corruption levels of a sweep)
        same_order = len({(r.config.seed, r.epoch) for r in runs}) == 1
        starts = list(range(0, n, bs))
        lrs = [[lr_at(r.config.lr, r.config.lr_decay, r.period, r.samples_seen + s) for r in runs] for s in starts]
        lr_table = torch.tensor(lrs, dtype=torch.float32, device=dev).neg_()  # (S, K): -lr, one copy per epoch
        names = self.param_names
        plist = [self.params[name] for name in names]
        blist = [self.momentum[name] for name in names]
        views = [self.views[name] for name in names]
        same_m, same_wd = len(set(self.momenta)) == 1, len(set(self.decays)) == 1
        any_wd = any(self.decays)
        self.template.train()
        loss_sum = torch.zeros(k, device=dev)
        step_loss = torch.empty(len(starts), k, device=dev)  # every step's losses; read once at the end
        for i, start in enumerate(starts):
            index = perms[:, start:start + bs]  # (K, B)
            xb, shared = self._inputs(index, generators, same_order)
            yb = self.y_train.gather(1, index)  # (K, B)
            forward = self.forward_shared if shared else self.forward_each
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.use_amp):
                logits = forward(self.params, self.stats, xb)  # (K, B, C)
            losses = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none")
            losses = losses.view(yb.shape).mean(dim=1)  # (K,): each run's minibatch mean
            grads = [g if g.is_contiguous() else g.contiguous()  # bmm gives W's gradient transposed; the
                     for g in torch.autograd.grad(losses.sum(), plist)]  # fused CPU kernel needs it contiguous
            with torch.no_grad():
                if same_m and same_wd and len(set(lrs[i])) == 1:
                    # One set of hyperparameters: torch's own SGD kernel with the single trainer's flags
                    # (fused on the CPU), elementwise on the stacked tensors. Buffers start at zero, so
                    # the first step's m·0 + g is exactly SGD's buf = g.
                    sgd(plist, grads, blist, fused=self.fused_sgd, weight_decay=self.decays[0],
                        momentum=self.momenta[0], lr=lrs[i][0], dampening=0.0, nesterov=False, maximize=False)
                else:  # per-run hyperparameters: the same operations with (K, 1, ...) tensors
                    for p, g, buf, view in zip(plist, grads, blist, views, strict=True):
                        if any_wd:
                            g = g + p * self.decay_t.view(view)
                        buf.mul_(self.momentum_t.view(view)).add_(g)
                        p.addcmul_(buf, lr_table[i].view(view))
            detached = losses.detach()
            loss_sum += detached
            step_loss[i] = detached
        host = torch.cat([step_loss, loss_sum[None]]).cpu().tolist()  # the one host sync of the epoch
        per_step, sums = host[:-1], host[-1]
        results = []
        for j, run in enumerate(runs):
            first_step = run.step
            logged = [[first_step + i + 1, per_step[i][j]] for i in range(len(starts))
                      if (first_step + i + 1) % run.config.log_every == 0]
            run.step += len(starts)
            run.samples_seen += n
            run.epoch += 1
            results.append((sums[j] / max(len(starts), 1), logged))
        return results

    # ------------------------------------------------------------------ evaluation
    def _predict(self, inputs: _Inputs, y: torch.Tensor, runs: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample loss and correctness (K', M) of the runs ``runs`` (None: all active) on ``inputs``."""
        params = self.params if runs is None else {n: p[runs] for n, p in self.params.items()}
        stats = self.stats if runs is None else {n: b[runs] for n, b in self.stats.items()}
        self.template.eval()  # BatchNorm: running statistics, not updated
        if runs is not None:
            y = y[runs]
        # written into preallocated (K', M) outputs: small per-chunk results kept in a list would sit
        # between the chunks' freed activations in the malloc heap and keep it from being reused
        losses = torch.empty(y.shape, device=self.device)
        correct = torch.empty(y.shape, dtype=torch.bool, device=self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
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
        return losses, correct

    def evaluate_rows(self, runs: list[_Run], train_losses: list[float | None]) -> list[dict[str, Any]]:
        """The per-epoch rows of ``runs`` (all active, or a subset for epoch 0), as Trainer.evaluate_row."""
        subset = None
        if len(runs) != len(self.runs):
            subset = torch.tensor([r.slot for r in runs], device=self.device, dtype=torch.long)
        tr_loss, tr_ok = self._predict(self.x_train, self.y_train, subset)
        te_loss, te_ok = self._predict(self.x_test, self.y_test, subset)
        changed = self.changed if subset is None else self.changed[subset]
        rows = []
        for j, (run, train_loss) in enumerate(zip(runs, train_losses, strict=True)):
            c = run.config
            tr = summarize(tr_loss[j], tr_ok[j], changed[j])
            te = summarize(te_loss[j], te_ok[j], None)
            rows.append({
                "epoch": run.epoch, "step": run.step, "samples_seen": run.samples_seen,
                "lr": lr_at(c.lr, c.lr_decay, run.period, max(run.samples_seen - 1, 0)),
                "train_loss": train_loss, "train_eval_loss": tr.loss, "train_acc": tr.acc,
                "train_acc_corrupted": tr.acc_changed, "train_acc_clean": tr.acc_unchanged,
                "test_loss": te.loss, "test_acc": te.acc, "wall_time_s": run.wall_time_s,
            })
        return rows

    # ------------------------------------------------------------------ the group's life
    def _record(self, run: _Run, row: dict[str, Any], logged: list, bar: _GroupProgress) -> None:
        run._finish_epoch(row)
        for cb in run.callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(row, logged, run)
        bar.update(run, row)

    def _retire(self) -> None:
        done = [r for r in self.runs if r.status is not None]
        if not done:
            return
        self._leave(done)
        for run in done:
            summary = run.summary()
            for cb in run.callbacks:
                if hasattr(cb, "on_train_end"):
                    cb.on_train_end(summary)

    def fit(self, progress: bool = False) -> list[dict[str, Any]]:
        with _GroupProgress(self.runs, enabled=progress) as bar:
            fresh = [r for r in self.runs if r.epoch == 0 and not r.metrics]
            if fresh:  # epoch 0: the untrained models
                for run, row in zip(fresh, self.evaluate_rows(fresh, [None] * len(fresh)), strict=True):
                    self._record(run, row, [], bar)
            self._retire()
            while len(self.runs) > 1:
                t0 = time.perf_counter()
                results = self.train_epoch()
                elapsed = time.perf_counter() - t0
                for run, (_, logged) in zip(self.runs, results, strict=True):
                    run.wall_time_s += elapsed
                    run.step_losses.extend(logged)
                t0 = time.perf_counter()
                rows = self.evaluate_rows(self.runs, [loss for loss, _ in results])
                elapsed = time.perf_counter() - t0
                for run, row, (_, logged) in zip(list(self.runs), rows, results, strict=True):
                    run.wall_time_s += elapsed
                    row["wall_time_s"] = run.wall_time_s
                    self._record(run, row, logged, bar)
                self._retire()
        solo = {id(run): self._finish_alone(run, progress) for run in self.runs}  # the last run, if any
        return [solo[id(run)] if id(run) in solo else run.summary() for run in self.all_runs]

    def _finish_alone(self, run: _Run, progress: bool) -> dict[str, Any]:
        """The group's last run goes on in the single trainer, resumed from its own checkpoint: one run
        gains nothing from batched kernels (and a random-label run often trains alone for hundreds of
        epochs after the others converged). Its callbacks and history carry over unchanged."""
        ckpt = run.checkpoint()
        self._release()  # the trainer loads its own copy of the data
        return train(run.config, callbacks=run.callbacks, resume=ckpt, progress=progress)

    def _release(self) -> None:
        """Drop the group's data and stacked tensors (the runs' histories stay)."""
        self.params, self.stats, self.momentum = {}, {}, {}
        self.x_train = self.x_test = self.y_train = self.y_test = self.changed = None  # type: ignore[assignment]
        self.augment = []


class _GroupProgress:
    """One rich progress bar per run of the group (no-op when disabled)."""

    def __init__(self, runs: list[_Run], enabled: bool) -> None:
        self.runs, self.enabled, self.tasks = runs, enabled, {}

    def __enter__(self) -> _GroupProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeElapsedColumn())
            self.progress.__enter__()
            for run in self.runs:
                c = run.config
                title = f"{c.model} · {c.corruption}" + (f" p={c.level:g}" if c.corruption == "partial_labels" else "")
                self.tasks[id(run)] = self.progress.add_task(title, total=c.epochs, completed=run.epoch, info="")
        return self

    def update(self, run: _Run, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        loss = row["train_loss"]
        info = (f"loss {loss:.3f} · " if loss is not None else "") + \
            f"train {100 * row['train_acc']:.1f}% · test {100 * row['test_acc']:.1f}%"
        self.progress.update(self.tasks[id(run)], completed=row["epoch"], info=info)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.progress.__exit__(*exc)
