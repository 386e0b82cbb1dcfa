"""ResNet-18 (He et al., 2016) from torchvision, adapted to small images (not a paper model).

``torchvision.models.resnet18(weights=None, num_classes=K)``, with two changes:

- the first convolution takes ``C`` input channels (from ``input_shape``);
- for images whose smaller side is at most 64 pixels (CIFAR-10, MNIST) it is the usual "CIFAR
  variant": the 7×7 stride-2 stem convolution becomes 3×3 stride 1 and the stem max-pool is
  removed, so a 28×28 input reaches the last stage at 4×4 instead of 1×1. Larger images keep
  torchvision's ImageNet stem.

Every ReLU is made non-inplace (torch.func friendliness); dropout (if > 0) acts on the pooled
features before the final FC layer. PyTorch/torchvision default initialisation (Kaiming normal
convs, BN γ=1, β=0).
On 3×28×28 with 10 classes: 11,173,962 parameters, 11,164,362 without BatchNorm's.
"""

from __future__ import annotations

from torch import nn

from rethinkgen.models import register_model
from rethinkgen.models.layers import check_image

SMALL_IMAGE_SIDE = 64  # images with min(H, W) <= this get the CIFAR stem


@register_model(
    layouts=("image",),
    paper_lr=0.1,
    description="torchvision ResNet-18; 3x3 stride-1 stem and no max-pool for images <= 64 px",
)
def resnet18(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    from torchvision.models import resnet18 as tv_resnet18  # torchvision import is slow: only when used

    c, h, w = check_image("resnet18", input_shape, 8)
    model = tv_resnet18(weights=None, num_classes=num_classes)
    if min(h, w) <= SMALL_IMAGE_SIDE:
        model.conv1 = nn.Conv2d(c, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision
    elif c != 3:
        model.conv1 = nn.Conv2d(c, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    if dropout > 0:  # on the pooled (N, 512, 1, 1) features, so parameter names stay fc.weight/fc.bias
        model.avgpool = nn.Sequential(model.avgpool, nn.Dropout(dropout))
    return model
