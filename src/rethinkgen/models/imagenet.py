"""The ImageNet networks of Table 2: Inception V3 (Szegedy et al., 2016) and ResNet-50 (He et al., 2016).

Both are torchvision's own modules, built with ``weights=None`` (no pretrained weights are ever
downloaded: the randomization tests train from scratch) and torchvision's initialisation:

- ``inception_v3``: ``torchvision.models.inception_v3(weights=None, aux_logits=True,
  transform_input=False, init_weights=True, dropout=p)``, the network of the paper's Table 2 (App. A:
  "Inception V3 ... 299×299 inputs"). In train mode it returns ``InceptionOutputs(logits,
  aux_logits)``, both ``(N, K)``; the trainers then minimise ``CE(logits) + 0.4 · CE(aux_logits)``
  (:func:`rethinkgen.train.losses.training_loss`; the weight 0.4 of TF-slim's Inception training,
  whose setup the paper reused, and of PyTorch's fine-tuning tutorial). In eval mode it returns the
  logits only. ``transform_input=False``: inputs are used as the pipeline gives them (torchvision's
  ``True`` re-normalises from ImageNet mean/std to [-1, 1] and is only meant for its pretrained
  weights). Dropout (Table 2's "dropout" column) acts on the pooled 2048 features before the last FC
  layer; with ``dropout=0`` the Dropout layer is removed. The auxiliary head needs the 17×17 maps of a
  299×299 input (its 5×5 convolution follows a 5×5/3 average pool), so smaller inputs are refused.
- ``resnet50``: ``torchvision.models.resnet50(weights=None)`` with torchvision's ImageNet stem at any
  size (input 224×224 in the usual recipe); dropout, if > 0, on the pooled features before the FC
  layer, as ``resnet18``; ReLUs made non-inplace.

Parameter counts are the ones torchvision documents, which include BatchNorm's γ and β (the models
carry ``count_batchnorm = True`` for :func:`rethinkgen.models.count_params`): 27,161,264 for
Inception V3 with its auxiliary head and 25,557,032 for ResNet-50, each with 1,000 classes on
3-channel input.
"""

from __future__ import annotations

from torch import nn

from rethinkgen.models import register_model
from rethinkgen.models.layers import check_image

INCEPTION_SIDE = 299  # the input side of Inception V3 (Szegedy et al., 2016; paper App. A)
RESNET_SIDE = 224  # the input side of ResNet-50 in torchvision's recipe
AUX_WEIGHT = 0.4  # weight of the auxiliary classifier's loss (TF-slim inception_v3 training)
IMAGENET_CLASSES = 1000
INCEPTION_V3_PARAMS = 27_161_264  # torchvision, aux head included, 1000 classes, BN affine counted
RESNET50_PARAMS = 25_557_032  # torchvision, 1000 classes, BN affine counted


def _first_conv(conv: nn.Conv2d, c: int) -> nn.Conv2d:
    """``conv`` rebuilt for ``c`` input channels (same kernel, stride, padding and bias)."""
    return nn.Conv2d(c, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)


@register_model(
    layouts=("image",), paper_lr=0.1, natural_input=(3, INCEPTION_SIDE, INCEPTION_SIDE),
    natural_classes=IMAGENET_CLASSES, count_batchnorm=True, aux_logits=True,
    description="torchvision Inception V3 (Table 2, ImageNet): auxiliary logits in training "
                "(loss + 0.4 x aux), transform_input=False, >= 299x299 inputs; never pretrained",
)
def inception_v3(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    from torchvision.models import inception_v3 as tv_inception_v3  # torchvision import is slow: only when used

    c, _, _ = check_image("inception_v3", input_shape, INCEPTION_SIDE)
    model = tv_inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=True,
                            num_classes=num_classes, dropout=dropout)
    if c != 3:  # torchvision's init draws a truncated normal (std 0.1) for convolutions
        model.Conv2d_1a_3x3.conv = _first_conv(model.Conv2d_1a_3x3.conv, c)
        nn.init.trunc_normal_(model.Conv2d_1a_3x3.conv.weight, mean=0.0, std=0.1, a=-2, b=2)
    if dropout == 0:
        model.dropout = nn.Identity()  # no Dropout module at all (as every other model without dropout)
    model.count_batchnorm = True
    return model


@register_model(
    layouts=("image",), paper_lr=0.1, natural_input=(3, RESNET_SIDE, RESNET_SIDE),
    natural_classes=IMAGENET_CLASSES, count_batchnorm=True,
    description="torchvision ResNet-50 with its ImageNet stem (224x224 in the usual recipe); never pretrained",
)
def resnet50(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    from torchvision.models import resnet50 as tv_resnet50

    # 32: the network halves the image five times; below that the last stages see less than one pixel
    c, _, _ = check_image("resnet50", input_shape, 32)
    model = tv_resnet50(weights=None, num_classes=num_classes)
    if c != 3:
        model.conv1 = _first_conv(model.conv1, c)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    if dropout > 0:  # on the pooled (N, 2048, 1, 1) features, so parameter names stay fc.weight/fc.bias
        model.avgpool = nn.Sequential(model.avgpool, nn.Dropout(dropout))
    model.count_batchnorm = True
    return model
