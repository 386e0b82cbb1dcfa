"""Multi-layer perceptrons of Table 1 ("MLP 1x512", "MLP 3x512"; paper App. A).

"MLP 1x512 means one hidden layer with 512 hidden units"; every hidden layer is fully connected
and followed by a ReLU. The input is flattened, so any layout works: on the paper's 3×28×28 crop
(2,352 features) the counts are 1,209,866 and 1,735,178 as in Table 1.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from rethinkgen.models import register_model


class MLP(nn.Sequential):
    """flatten -> [Linear(·, h) -> ReLU (-> Dropout)] per hidden width h -> Linear(·, K).

    Input ``(N, *input_shape)``, output logits ``(N, num_classes)``. Layers are named ``fc1``,
    ``relu1``, ``drop1`` ..., ``head``, so the parameter names do not depend on ``dropout``.
    """

    def __init__(
        self, in_features: int, hidden: Sequence[int], num_classes: int, dropout: float = 0.0
    ) -> None:
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        width = in_features
        for i, h in enumerate(hidden, start=1):
            layers += [(f"fc{i}", nn.Linear(width, h)), (f"relu{i}", nn.ReLU())]
            if dropout > 0:
                layers.append((f"drop{i}", nn.Dropout(dropout)))
            width = h
        layers.append(("head", nn.Linear(width, num_classes)))
        super().__init__(OrderedDict(layers))


_LAYOUTS = ("image", "signal", "vector")


@register_model(
    layouts=_LAYOUTS,
    paper_params=1_209_866,
    paper_lr=0.01,
    description="MLP, one hidden layer of 512 ReLUs (Table 1 'MLP 1x512')",
)
def mlp_1x512(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    return MLP(math.prod(input_shape), (512,), num_classes, dropout)


@register_model(
    layouts=_LAYOUTS,
    paper_params=1_735_178,
    paper_lr=0.01,
    description="MLP, three hidden layers of 512 ReLUs (Table 1 'MLP 3x512')",
)
def mlp_3x512(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    return MLP(math.prod(input_shape), (512, 512, 512), num_classes, dropout)
