"""Fused multi-run training: K runs of one architecture trained at once in one process (design §5).

Small models leave a big device idle and pay per-step Python overhead once per run; a sweep's runs
(corruption levels, seeds, learning rates, weight decays) usually share the architecture and the data
shape, so they can take their SGD steps *together*: the K runs' parameters are stacked along a new
leading dimension (``torch.func.stack_module_state``) and the model runs once per step for all of
them — MLPs as one ``baddbmm`` per layer, every other model under ``torch.func.vmap(functional_call)``
(grouped convolutions for the convnets). Each run keeps everything that makes it *its* run, exactly
as :func:`rethinkgen.train.loop.train` would compute it alone:

- its initial weights (``create_model`` under ``rng.seeded(stream_seed(seed, "init"))``, as the single
  trainer) and BatchNorm statistics;
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
- its evaluations: the training set after every ``eval_every``-th step of its own count (its
  convergence step at its own resolution) and the per-epoch rows;
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
  batch statistics (inception_small, resnet18), by :mod:`~rethinkgen.train.fused.batchnorm` (torch's
  own BatchNorm cannot run under ``vmap`` on CUDA with channels-last inputs).
- **different data shape or step structure**: ``data``, ``data_dir``, ``data_options``, ``n_train``,
  ``n_test``, ``crop``, ``model``, ``batch_size``, ``eval_batch_size``, ``device``, ``amp``, ``precision``,
  ``compile``, ``channels_last`` and ``cuda_graphs`` must be equal (:data:`SHARED_FIELDS`); everything
  else may differ.

GPU path (same as the single trainer): autocast in the model's dtype when ``amp`` (CUDA only,
``resolve.autocast_dtype``; ``precision="bfloat16"`` forces it on the CPU too, where the tests run it;
under ``vmap`` autocast does not reach convolutions and linear layers, so
:mod:`~rethinkgen.train.fused.autocast` casts them as it would), channels-last storage of shared image
tensors and augmented batches (``channels_last``; None: CUDA only), optional ``torch.compile`` of the
vmapped forward (``compile``, CUDA only), the group's step captured as a CUDA graph (``cuda_graphs``;
:mod:`~rethinkgen.train.fused.step`), and no host synchronisation inside the step loop: the epoch's
permutations, learning-rate table and augmentation draws go to the device once per epoch, and step
losses and evaluated accuracies stay on the device until the epoch ends.

Modules: :mod:`~rethinkgen.train.fused.grouping` (who can fuse, and the split of a sweep into groups),
:mod:`~rethinkgen.train.fused.inputs` (each distinct input set prepared once),
:mod:`~rethinkgen.train.fused.mlp` (stacked MLPs as batched matmuls),
:mod:`~rethinkgen.train.fused.batchnorm` (BatchNorm and global pooling that run under ``vmap`` anywhere),
:mod:`~rethinkgen.train.fused.autocast` (autocast for the vmapped forward),
:mod:`~rethinkgen.train.fused.run` (one run's history and checkpoints),
:mod:`~rethinkgen.train.fused.step` (the static / captured step of a group),
:mod:`~rethinkgen.train.fused.group` (the group and :func:`train_group`).
"""

from __future__ import annotations

from rethinkgen.train.fused.group import FusedGroup, train_group
from rethinkgen.train.fused.grouping import SHARED_FIELDS, can_fuse, fuse_key, group_runs, why_not_fused
from rethinkgen.train.fused.inputs import SharedInputs

__all__ = ["SHARED_FIELDS", "FusedGroup", "SharedInputs", "can_fuse", "fuse_key", "group_runs", "train_group",
           "why_not_fused"]

_FusedGroup = FusedGroup  # the name tests outside this package patch (tests/test_sweep_runner.py)
