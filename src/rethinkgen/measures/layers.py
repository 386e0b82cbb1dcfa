"""Networks as the measures see them: BatchNorm folded, weights as matrices, the initial weights.

BatchNorm convention (Jiang et al. 2020; Dziugaite et al. 2020, whose code takes it from Neyshabur's
``generalization-bounds``): in eval mode a BatchNorm is the affine map ``z ↦ s ⊙ (z − μ) + β`` with
``s = γ / √(σ² + ε)`` (running mean μ and variance σ², affine γ, β). When its input is the output of a
convolution or linear layer ``z = W x + b``, the pair equals one layer with weight ``diag(s) W`` and
bias ``s ⊙ (b − μ) + β``; :func:`fold_batchnorm` makes that replacement (the BatchNorm becomes an
identity), so the folded network computes exactly the same function with fewer parameters. Which
layer feeds a BatchNorm is found by running one sample through the network and matching tensors, so
no model-specific code is needed. A BatchNorm fed by anything else (none of the registered models)
stays, and counts as a layer whose weight matrix is ``diag(s)``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from rethinkgen.seeding import stream_seed

__all__ = ["active_layers", "fold_batchnorm", "initial_model", "uncovered_parameters", "weight_matrices",
           "WEIGHT_LAYERS"]

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def initial_model(name: str, input_shape: Sequence[int], num_classes: int, *, seed: int, dropout: float = 0.0,
                  layout: str | None = None) -> nn.Module:
    """The run's network at initialisation, drawn exactly as the trainer draws it.

    :class:`rethinkgen.train.loop.Trainer` (and the fused trainer) call ``torch.manual_seed(
    stream_seed(seed, "init"))`` and then ``create_model``; this does the same inside
    ``torch.random.fork_rng``, so the caller's global RNG is untouched. Returns the model on the CPU.
    """
    from rethinkgen.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, "init"))
        return create_model(name, tuple(input_shape), num_classes, dropout=dropout, layout=layout)


def _feeders(model: nn.Module, example: torch.Tensor) -> dict[str, str | None]:
    """BatchNorm name -> name of the weight layer whose output tensor is its input (None if none)."""
    names = {module: name for name, module in model.named_modules()}
    # id(output) -> (output kept alive, layer name, its version counter when the layer returned it)
    produced: dict[int, tuple[torch.Tensor, str, int]] = {}
    found: dict[str, str | None] = {}

    def after_layer(module, _inputs, output):
        produced[id(output)] = (output, names[module], output._version)

    def before_bn(module, inputs):
        entry = produced.get(id(inputs[0]))
        # the same tensor, not modified in place since (an in-place ReLU in between returns the same object)
        same = entry is not None and entry[0] is inputs[0] and entry[2] == inputs[0]._version
        found[names[module]] = entry[1] if same else None

    hooks = []
    for module in model.modules():
        if isinstance(module, WEIGHT_LAYERS):
            hooks.append(module.register_forward_hook(after_layer))
        elif isinstance(module, _BATCHNORM):
            hooks.append(module.register_forward_pre_hook(before_bn))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return found


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm folded into the layer that feeds it.

    ``example``: one input batch ``(B, *input_shape)`` on the model's device (used to trace which layer
    feeds which BatchNorm, then to check that the folded copy computes the same outputs). The original
    model is not modified. A layer without bias gains one. Models without BatchNorm come back as an
    eval-mode copy. Raises ConfigError when the folded copy's outputs differ from the original's, or for a
    BatchNorm without running statistics (it normalizes by the batch even in eval mode).
    """
    from rethinkgen.errors import ConfigError

    batch_stats = [name for name, m in model.named_modules() if isinstance(m, _BATCHNORM) and m.running_var is None]
    if batch_stats:
        raise ConfigError(f"BatchNorm {', '.join(batch_stats[:4])} keeps no running statistics "
                          "(track_running_stats=False): in eval mode it normalizes by the batch, so the network is "
                          "not one function of its input and has no weights to fold; measure a model whose "
                          "BatchNorm tracks running statistics (PyTorch's default)")
    original = copy.deepcopy(model).eval()
    model = copy.deepcopy(model).eval()
    if not any(isinstance(m, _BATCHNORM) for m in model.modules()):
        return model
    feeders = _feeders(model, example)
    uses = {}
    for feeder in feeders.values():
        if feeder is not None:
            uses[feeder] = uses.get(feeder, 0) + 1
    with torch.no_grad():
        for bn_name, feeder in feeders.items():
            if feeder is None or uses[feeder] != 1:
                continue  # not fed by a weight layer (or shared): the BatchNorm stays as it is
            bn, layer = model.get_submodule(bn_name), model.get_submodule(feeder)
            mean = bn.running_mean if bn.running_mean is not None else torch.zeros_like(bn.weight)
            var = bn.running_var if bn.running_var is not None else torch.ones_like(bn.weight)
            gamma = bn.weight if bn.weight is not None else torch.ones_like(mean)
            beta = bn.bias if bn.bias is not None else torch.zeros_like(mean)
            scale = gamma / torch.sqrt(var + bn.eps)  # (C,)
            shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            layer.weight.mul_(scale.reshape(shape))
            bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(mean)
            new_bias = scale * (bias - mean) + beta
            if layer.bias is None:
                layer.bias = nn.Parameter(new_bias.clone())
            else:
                layer.bias.copy_(new_bias)
            parent_name, _, child = bn_name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, nn.Identity())
        before, after = original(example), model(example)
    if not torch.allclose(after, before, rtol=1e-4, atol=1e-4 * float(before.abs().max()) + 1e-6):
        raise ConfigError("folding BatchNorm into the layers that feed it changed the network's outputs (a layer's "
                          "output also feeds something other than its BatchNorm); this model is not supported "
                          "by the weight-based measures")
    return model


def active_layers(model: nn.Module, example: torch.Tensor) -> set[str]:
    """Names of the weight layers and BatchNorms that run in ``model``'s eval-mode forward pass on
    ``example`` ``(B, *input_shape)``: the network whose function the measures describe. Layers used
    only in training (Inception V3's auxiliary classifier) are not part of it."""
    names = {module: name for name, module in model.named_modules()}
    ran: set[str] = set()
    hooks = [m.register_forward_pre_hook(lambda module, _inputs: ran.add(names[module]))
             for m in model.modules() if isinstance(m, WEIGHT_LAYERS + _BATCHNORM)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return ran


def uncovered_parameters(model: nn.Module) -> list[str]:
    """``"name (ModuleType)"`` of every parameter that no weight layer or BatchNorm owns (a
    ``ConvTranspose2d``, ``LayerNorm``, an ``nn.Parameter`` of a custom module): the weight-based
    measures would leave it out without a word, so they refuse such a model."""
    owner: dict[int, str] = {}
    covered: set[int] = set()
    for module in model.modules():
        for p in module.parameters(recurse=False):
            owner[id(p)] = type(module).__name__
            if isinstance(module, WEIGHT_LAYERS + _BATCHNORM):
                covered.add(id(p))
    return [f"{name} ({owner[id(p)]})" for name, p in model.named_parameters() if id(p) not in covered]


def weight_matrices(model: nn.Module, example: torch.Tensor | None = None) -> list[tuple[str, torch.Tensor]]:
    """(name, matrix) of every weight layer in module order, detached.

    Linear: its weight ``(out, in)``. Convolution: its kernel ``(out, in/groups, *k)`` reshaped to
    ``(out, in/groups·∏k)`` (Jiang et al.; Dziugaite et al.'s ``get_reshaped_weights``). A BatchNorm
    left unfolded: ``diag(γ/√(σ²+ε))``. With ``example`` (one input batch), only the layers that run in
    the eval-mode forward pass (:func:`active_layers`).
    """
    active = None if example is None else active_layers(model, example)
    out = []
    for name, module in model.named_modules():
        if active is not None and name not in active:
            continue
        if isinstance(module, WEIGHT_LAYERS):
            w = module.weight.detach()
            out.append((name, w.reshape(w.shape[0], -1)))
        elif isinstance(module, _BATCHNORM):
            var = module.running_var if module.running_var is not None else torch.ones(module.num_features)
            gamma = module.weight.detach() if module.weight is not None else torch.ones_like(var)
            out.append((name, torch.diag(gamma / torch.sqrt(var + module.eps))))
    return out
