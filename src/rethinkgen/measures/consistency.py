"""Does a run rebuilt for ``rethinkgen measure`` match what the store recorded when it trained?

``rethinkgen measure --store`` rebuilds each run from its config: the training data is prepared again
(corruption and preprocessing are seeded) and the initial weights are drawn again from the run's seed
(they are not stored). Both are only right if the code that does so has not changed since the run
trained. A checkpoint of another code version can load without complaint while its data or its
initialisation differ, and every data-dependent measure (margins, flatness, sharpness) or
initialisation-dependent one (``dist_init``, ``pacbayes_init``) would then be silently wrong. The store
holds what is needed to tell: the final epoch's train accuracy and the untrained model's train loss
(epoch 0), both measured in eval mode on the training set with the labels trained on.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["INIT_MEASURES", "check_against_store"]

#: Measures that depend on the initial weights (re-drawn, never stored).
INIT_MEASURES = ("dist_init", "pacbayes_init")
ACC_TOLERANCE = 0.005  # |Δ train accuracy| accepted (other batch sizes and kernels flip borderline samples)
ACC_TOLERANCE_AUTOCAST = 0.02  # the same when the run evaluated in reduced precision (bf16 autocast, TF32)
LOSS_RTOL = 1e-4  # relative |Δ loss| of the untrained model (float32 runs only: two inits differ by ~1e-2)


def _eval(model: torch.nn.Module, ctx: Any) -> tuple[float, float]:
    """(mean cross-entropy in nats, accuracy) of ``model`` (eval mode) on the context's training set."""
    loss, correct = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for start, stop in ctx.batches(ctx.n_train):
            logits = model(ctx.x_train[start:stop]).float()
            y = ctx.y_train[start:stop]
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
    return loss / ctx.n_train, correct / ctx.n_train


def check_against_store(ctx: Any, run: dict[str, Any], epoch_rows: list[dict[str, Any]],
                        numerics: dict[str, Any] | None, check_init: bool = True) -> tuple[str | None, str | None]:
    """(data problem, initialisation problem): a sentence each, None when the rebuilt run matches.

    ``run``: the store's run (``train_acc`` of its final epoch); ``epoch_rows``: its epoch rows (row 0:
    the untrained model); ``numerics``: its summary's record (``autocast``, ``tf32``: the loss check is
    skipped for runs evaluated in reduced precision, where two initialisations are not told apart).
    """
    data_problem = init_problem = None
    stored_acc = run.get("train_acc")
    # reduced precision (bf16 autocast, TF32 matmuls): looser accuracy, no loss comparison
    autocast = bool((numerics or {}).get("autocast")) or bool((numerics or {}).get("tf32"))
    if stored_acc is not None:
        acc = float((ctx.margins > 0).double().mean())  # the margins' pass, which the margin measures reuse
        if abs(acc - float(stored_acc)) > (ACC_TOLERANCE_AUTOCAST if autocast else ACC_TOLERANCE):
            data_problem = (f"its final weights classify {100 * acc:.2f}% of the training set prepared now, the store "
                            f"recorded {100 * float(stored_acc):.2f}%: the data or the labels this code prepares "
                            "differ from those it trained on (another code version?)")
    first = epoch_rows[0] if epoch_rows and epoch_rows[0].get("epoch") == 0 else None
    stored_loss = None if first is None else first.get("train_eval_loss")
    if stored_loss is not None and not autocast and data_problem is None and check_init:
        loss, _ = _eval(ctx.init_model, ctx)
        if abs(loss - float(stored_loss)) > LOSS_RTOL * abs(float(stored_loss)):
            init_problem = (f"the initial weights drawn now give a training loss of {loss:.6f}, the store recorded "
                            f"{float(stored_loss):.6f} for the untrained model: this code initialises the model "
                            "differently from the code that trained it, so the distance from initialisation is "
                            "unknown")
    return data_problem, init_problem
