"""The training loss with auxiliary logits (Inception V3, Table 2) and the trainer that uses it (CPU)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rethinkgen.models import MODELS, ModelSpec
from rethinkgen.train.config import TrainConfig
from rethinkgen.train.loop import Trainer, resolve_config
from rethinkgen.train.losses import AUX_WEIGHT, main_logits, training_loss


def test_aux_loss_is_main_plus_0_4_aux_by_hand():
    # logits (1, 2): main [0, ln 3] -> p(class 0) = 1/4; aux [0, 0] -> p = 1/2
    main = torch.tensor([[0.0, math.log(3.0)]])
    aux = torch.zeros(1, 2)
    target = torch.tensor([0])
    assert training_loss(main, target).item() == pytest.approx(math.log(4.0), abs=1e-6)
    assert training_loss((main, aux), target).item() == pytest.approx(math.log(4.0) + 0.4 * math.log(2.0), abs=1e-6)
    assert AUX_WEIGHT == 0.4
    assert main_logits((main, aux)) is main and main_logits(main) is main
    low = training_loss((main.bfloat16(), aux.bfloat16()), target)  # autocast outputs are taken in float32
    assert low.dtype == torch.float32


class TwoHeads(nn.Module):
    """Linear main and auxiliary classifiers; (logits, aux_logits) in train mode, logits in eval mode."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.main, self.aux = nn.Linear(d, k), nn.Linear(d, k)

    def forward(self, x):
        x = x.flatten(1)
        return (self.main(x), self.aux(x)) if self.training else self.main(x)


@pytest.fixture
def two_heads(monkeypatch):
    spec = ModelSpec("two_heads_test", lambda shape, k, p: TwoHeads(math.prod(shape), k), ("vector", "image"),
                     None, 0.1, "test model with an auxiliary head", aux_logits=True)
    monkeypatch.setitem(MODELS._items, spec.name, spec)
    return spec.name


def test_trainer_minimises_main_plus_aux_loss(two_heads):
    config = resolve_config(TrainConfig(data="synthetic", data_options={"shape": [12]}, n_train=64, n_test=16,
                                        model=two_heads, epochs=1, batch_size=16, lr=0.5, device="cpu"))
    trainer = Trainer(config, torch.device("cpu"))
    index = torch.arange(16)
    x, y = trainer.data.x_train[index], trainer.data.y_train[index]
    model = trainer.model
    with torch.no_grad():
        expected = (nn.functional.cross_entropy(model.main(x), y)
                    + 0.4 * nn.functional.cross_entropy(model.aux(x), y)).item()
    aux_before = model.aux.weight.detach().clone()
    loss = trainer._sgd_step(index, None, config.lr)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert not torch.equal(model.aux.weight, aux_before)  # the auxiliary head is trained
    summary = trainer.fit()  # evaluation uses the main logits (eval mode returns a tensor)
    assert summary["status"] == "max_epochs" and 0.0 <= summary["test_acc"] <= 1.0


def test_the_static_step_trains_auxiliary_logits_as_the_eager_one(two_heads):
    """cuda_graphs=True runs the static step (uncaptured on the CPU): the same loss with auxiliary logits."""
    from rethinkgen.train.loop import train

    base = dict(data="synthetic", data_options={"shape": [12]}, n_train=64, n_test=16, model=two_heads, epochs=2,
                batch_size=16, lr=0.5, device="cpu")
    eager, static = train(**base, cuda_graphs=False), train(**base, cuda_graphs=True)
    for a, b in zip(eager["step_losses"], static["step_losses"], strict=True):
        assert a[0] == b[0] and a[1] == pytest.approx(b[1], rel=1e-5)
    assert eager["metrics"][-1]["train_loss"] == pytest.approx(static["metrics"][-1]["train_loss"], rel=1e-5)
