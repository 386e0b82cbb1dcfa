"""Tests of the model registry and the models (paper Table 1 architectures and parameter counts).

Like timm's test suite, the generic checks are parametrised over the whole registry, so a newly
registered model is tested by being registered.
"""

from __future__ import annotations

import copy
import doctest

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

import rethinkgen.models as models_pkg
from rethinkgen.errors import ConfigError, UnknownNameError
from rethinkgen.models import (
    MODELS,
    count_params,
    create_model,
    describe_models,
    infer_layout,
    list_models,
    register_model,
)
from rethinkgen.models.alexnet_small import LRN_ALPHA_TF, tf_lrn
from rethinkgen.models.layers import max_pool_same, tf_same_padding
from rethinkgen.train.losses import training_loss

ALL = list_models()
IMAGE_MODELS = [n for n in ALL if "image" in MODELS.get(n).layouts]
SAMPLE_SHAPE = {"image": (3, 28, 28), "signal": (1, 40), "vector": (40,)}
# models that refuse the paper's 28×28 crop: the smallest input they take (Inception V3's auxiliary head
# needs 299×299), or a small one (ResNet-50 takes any side >= 32)
MODEL_SHAPE = {"inception_v3": (3, 299, 299), "resnet50": (3, 64, 64)}
K = 7  # not 10, so a hard-coded class count would show

PAPER_COUNTS = {  # Table 1, on 3×28×28 inputs and 10 classes
    "mlp_1x512": 1_209_866,
    "mlp_3x512": 1_735_178,
    "alexnet_small": 1_387_786,
    "inception_small": 1_649_402,
    "inception_small_nobn": 1_649_402,
}


def sample_shape(name: str) -> tuple[int, ...]:
    return MODEL_SHAPE.get(name) or SAMPLE_SHAPE[MODELS.get(name).layouts[0]]


def logits_of(out):
    """The main logits of a model's output (Inception V3 returns (logits, aux_logits) in train mode)."""
    return out[0] if isinstance(out, tuple) else out


def build(name: str, shape=None, num_classes: int = K, dropout: float = 0.0, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return create_model(name, shape or sample_shape(name), num_classes, dropout)


def inputs(shape: tuple[int, ...], n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


# --- the whole registry ----------------------------------------------------------------------------


def test_registry_holds_the_interface_names():
    expected = {*PAPER_COUNTS, "cnn1d", "resnet18", "inception_v3", "resnet50"}
    assert expected <= set(ALL)
    assert list_models("mlp*") == ["mlp_1x512", "mlp_3x512"]
    assert list_models("inception*") == ["inception_small", "inception_small_nobn", "inception_v3"]


@pytest.mark.parametrize("name", ALL)
def test_forward_backward(name):
    model = build(name)
    x = inputs(sample_shape(name))
    out = model(x)
    if MODELS.get(name).aux_logits:  # (logits, aux_logits) in train mode, both (N, K)
        assert isinstance(out, tuple) and len(out) == 2 and out[1].shape == (2, K)
        assert torch.isfinite(out[1]).all()
    else:
        assert isinstance(out, torch.Tensor)
    training_loss(out, torch.tensor([0, K - 1])).backward()  # the auxiliary head's loss too
    out = logits_of(out)
    assert out.shape == (2, K)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


# the first accepted layout of every model is covered above; here the others
OTHER_LAYOUTS = [(n, lay) for n in ALL for lay in MODELS.get(n).layouts[1:]]


@pytest.mark.parametrize(("name", "layout"), OTHER_LAYOUTS)
def test_every_accepted_layout_builds(name, layout):
    shape = SAMPLE_SHAPE[layout]
    model = create_model(name, shape, num_classes=3, layout=layout)
    assert model(inputs(shape)).shape == (2, 3)


@pytest.mark.parametrize("name", ALL)
def test_init_is_deterministic_under_fork_rng(name):
    outer = torch.random.get_rng_state()
    a, b, c = build(name, seed=3), build(name, seed=3), build(name, seed=4)
    assert torch.equal(torch.random.get_rng_state(), outer)  # fork_rng left the global RNG alone
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    x = inputs(sample_shape(name))
    assert torch.equal(logits_of(a(x)), logits_of(b(x)))


@pytest.mark.parametrize("name", ALL)
def test_functional_call_and_vmap_match_forward(name):
    model = build(name).eval()
    x = inputs(sample_shape(name), n=3)
    with torch.no_grad():
        ref = model(x)
        params = dict(model.named_parameters())
        buffers = dict(model.named_buffers())
        assert torch.allclose(functional_call(model, (params, buffers), (x,)), ref, atol=1e-6)
        # two models evaluated at once with stacked parameters (how a sweep may batch runs)
        other = build(name, seed=9).eval()
        p, b = stack_module_state([model, other])
        base = copy.deepcopy(model).to("meta")
        out = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), in_dims=(0, 0, None))(p, b, x)
        assert torch.allclose(out[0], ref, atol=1e-5)
        assert torch.allclose(out[1], other(x), atol=1e-5)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_channels_last(name):
    model = build(name).eval()
    x = inputs(sample_shape(name))
    with torch.no_grad():
        ref = model(x)
        cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        out = cl(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_dropout(name):
    plain, dropped = build(name, dropout=0.0), build(name, dropout=0.5)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    drops = [m for m in dropped.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(m.p == 0.5 for m in drops)
    # Dropout draws nothing at build time, so the weights (and their names) are the same
    sp, sd = plain.state_dict(), dropped.state_dict()
    assert sp.keys() == sd.keys()
    assert all(torch.equal(sp[k], sd[k]) for k in sp)
    x = inputs(sample_shape(name), n=4)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        out_plain = logits_of(plain.train()(x))
        torch.manual_seed(0)
        out_dropped = logits_of(dropped.train()(x))
    assert not torch.allclose(out_plain, out_dropped)
    with torch.no_grad():
        assert torch.allclose(plain.eval()(x), dropped.eval()(x), atol=1e-6)


# --- Table 1 parameter counts -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_paper_parameter_counts(name):
    model = create_model(name, (3, 28, 28), num_classes=10)
    assert count_params(model) == PAPER_COUNTS[name]
    assert MODELS.get(name).paper_params == PAPER_COUNTS[name]


# torchvision's documented counts, BatchNorm's γ and β included (1,000 classes, 3 channels); checked
# against torchvision 0.29's modules: sum(p.numel() for p in model.parameters())
TORCHVISION_COUNTS = {"inception_v3": ((3, 299, 299), 27_161_264), "resnet50": ((3, 224, 224), 25_557_032)}


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_imagenet_parameter_counts(name):
    shape, count = TORCHVISION_COUNTS[name]
    with torch.device("meta"):
        model = create_model(name, shape, num_classes=1000)
    assert count_params(model) == count == sum(p.numel() for p in model.parameters())
    assert count_params(model, exclude_batchnorm=True) < count  # Table 1's counting is still available
    assert {r.name: r.params for r in describe_models(name)} == {name: count}


def test_inception_v3_is_torchvisions_table2_network():
    with torch.device("meta"):
        plain = create_model("inception_v3", (3, 299, 299), 1000)
        dropped = create_model("inception_v3", (3, 299, 299), 1000, dropout=0.2)
        gray = create_model("inception_v3", (1, 320, 300), 5)
    assert plain.aux_logits and plain.AuxLogits is not None and not plain.transform_input
    assert isinstance(plain.dropout, nn.Identity) and dropped.dropout.p == 0.2
    assert gray.Conv2d_1a_3x3.conv.in_channels == 1 and gray.fc.out_features == 5
    assert MODELS.get("inception_v3").aux_logits and not MODELS.get("resnet50").aux_logits
    with pytest.raises(ConfigError, match="at least 299"):
        create_model("inception_v3", (3, 298, 299))


def test_inception_v3_eval_mode_returns_main_logits_only():
    model = build("inception_v3").eval()
    with torch.no_grad():
        out = model(inputs((3, 299, 299), n=1))
    assert isinstance(out, torch.Tensor) and out.shape == (1, K)


def test_non_paper_models_have_no_paper_count():
    assert MODELS.get("cnn1d").paper_params is None
    assert MODELS.get("resnet18").paper_params is None
    assert count_params(create_model("cnn1d", (1, 40))) == 5_210  # MNIST-1D ConvBase


def test_batchnorm_counting():
    bn = create_model("inception_small", (3, 28, 28))
    nobn = create_model("inception_small_nobn", (3, 28, 28))
    assert any(isinstance(m, nn.BatchNorm2d) for m in bn.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._NormBase) for m in nobn.modules())
    assert count_params(bn) == count_params(nobn) == count_params(nobn, exclude_batchnorm=False)
    assert count_params(bn, exclude_batchnorm=False) == 1_652_826  # with BN's gamma and beta
    # resnet18 has no conv biases; its BN parameters are 2 per channel of every BN layer
    res = create_model("resnet18", (3, 28, 28), num_classes=10)
    bn_params = sum(2 * m.num_features for m in res.modules() if isinstance(m, nn.BatchNorm2d))
    assert count_params(res, exclude_batchnorm=False) - count_params(res) == bn_params


def test_count_params_counts_shared_parameters_once():
    lin = nn.Linear(4, 4)
    assert count_params(nn.Sequential(lin, nn.ReLU(), lin)) == 20


def test_paper_learning_rates():
    lrs = {n: MODELS.get(n).paper_lr for n in ALL}
    assert lrs["inception_small"] == lrs["inception_small_nobn"] == 0.1
    assert lrs["alexnet_small"] == lrs["mlp_1x512"] == lrs["mlp_3x512"] == 0.01
    assert lrs["cnn1d"] == lrs["resnet18"] == 0.1


# --- architecture details ---------------------------------------------------------------------------


def test_spatial_sizes_follow_the_paper():
    alex = create_model("alexnet_small", (3, 28, 28))
    assert alex.features(inputs((3, 28, 28))).shape == (2, 64, 7, 7)
    inc = create_model("inception_small", (3, 28, 28))
    feats = inc.features(inputs((3, 28, 28)))
    assert feats.shape == (2, 336, 7, 7)
    widths = [m.out_channels for m in inc.features]
    assert widths == [96, 64, 80, 160, 160, 160, 160, 144, 240, 336, 336]


@pytest.mark.parametrize("name", ["alexnet_small", "inception_small", "resnet18"])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (3, 9, 13)])
def test_other_image_sizes(name, shape):
    model = create_model(name, shape, num_classes=4)
    assert model(inputs(shape)).shape == (2, 4)


def test_resnet18_stem():
    small = create_model("resnet18", (1, 28, 28))
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1) and small.conv1.in_channels == 1
    assert isinstance(small.maxpool, nn.Identity)
    with torch.device("meta"):
        large = create_model("resnet18", (3, 96, 96))
    assert large.conv1.kernel_size == (7, 7) and isinstance(large.maxpool, nn.MaxPool2d)
    assert not any(isinstance(m, nn.ReLU) and m.inplace for m in small.modules())


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(28, 3, 2, (0, 1)), (14, 3, 2, (0, 1)), (7, 3, 2, (1, 1)), (28, 5, 1, (2, 2)), (28, 1, 1, (0, 0))],
)
def test_tf_same_padding(size, kernel, stride, expected):
    assert tf_same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("side", [6, 7])
def test_same_max_pool_matches_tensorflow_windows(side):
    # TF "SAME" 3x3/2: output i covers rows [2i - before, 2i - before + 3) clipped to the image
    x = inputs((2, side, side))
    before = 0 if side % 2 == 0 else 1  # TF pads even sides (0, 1) and odd sides (1, 1)
    n_out = -(-side // 2)
    ref = torch.empty(2, 2, n_out, n_out)
    for i in range(n_out):
        for j in range(n_out):
            r0, c0 = max(2 * i - before, 0), max(2 * j - before, 0)
            r1, c1 = 2 * i - before + 3, 2 * j - before + 3
            ref[:, :, i, j] = x[:, :, r0:r1, c0:c1].amax(dim=(2, 3))
    assert torch.equal(max_pool_same(3, 2)(x), ref)


def test_lrn_matches_tensorflow_formula():
    # tf.nn.lrn: x / (bias + alpha * sum_{|c' - c| <= 4} x_{c'}^2) ** beta, alpha NOT divided by the window
    x = inputs((12, 3, 3)) * 5
    sq = x**2
    ref = torch.empty_like(x)
    for c in range(12):
        window = sq[:, max(c - 4, 0) : c + 5].sum(dim=1)
        ref[:, c] = x[:, c] / (1.0 + LRN_ALPHA_TF * window) ** 0.75
    assert torch.allclose(tf_lrn()(x), ref, rtol=1e-5, atol=1e-6)


# --- errors -----------------------------------------------------------------------------------------


def test_layout_refusal_names_model_layout_and_alternatives():
    with pytest.raises(ConfigError) as err:
        create_model("cnn1d", (3, 28, 28))
    msg = str(err.value)
    assert "cnn1d" in msg and "'image'" in msg
    assert "alexnet_small" in msg and "mlp_1x512" in msg and "resnet18" in msg
    with pytest.raises(ConfigError) as err:
        create_model("inception_small", (40,))
    assert "inception_small" in str(err.value) and "'vector'" in str(err.value)
    assert "mlp_3x512" in str(err.value) and "cnn1d" not in str(err.value)


def test_layout_argument_is_checked():
    with pytest.raises(ConfigError, match="layout 'image' needs 3-dim"):
        create_model("mlp_1x512", (1, 40), layout="image")
    with pytest.raises(ConfigError, match="unknown layout"):
        create_model("mlp_1x512", (40,), layout="table")
    with pytest.raises(ConfigError, match="cannot infer"):
        create_model("mlp_1x512", (1, 2, 3, 4))
    assert [infer_layout(s) for s in [(3, 2, 2), (1, 5), (7,)]] == ["image", "signal", "vector"]


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        create_model("inception_big", (3, 28, 28))
    assert "inception_big" in str(err.value)
    assert all(name in str(err.value) for name in ALL)


def test_duplicate_registration_raises():
    n = len(MODELS)
    with pytest.raises(ValueError, match="duplicate"):

        @register_model(layouts=("vector",), paper_lr=0.1, description="clash")
        def mlp_1x512(input_shape, num_classes, dropout=0.0):
            raise AssertionError("never built")

    assert len(MODELS) == n
    assert MODELS.get("mlp_1x512").paper_params == 1_209_866


def test_register_model_refuses_unknown_layouts():
    with pytest.raises(ValueError, match="layouts"):
        register_model(layouts=("graph",), paper_lr=0.1, description="x")


@pytest.mark.parametrize("name", ["alexnet_small", "inception_small", "inception_small_nobn", "resnet18"])
def test_too_small_images_are_refused(name):
    with pytest.raises(ConfigError, match="at least 8"):
        create_model(name, (3, 7, 28))


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="length >= 3"):
        create_model("cnn1d", (1, 2))
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("mlp_1x512", (40,), num_classes=1)
    with pytest.raises(ConfigError, match="dropout"):
        create_model("mlp_1x512", (40,), dropout=1.0)
    with pytest.raises(ConfigError, match="positive"):
        create_model("mlp_1x512", (0, 4))


# --- describe_models and docs ------------------------------------------------------------------------


def test_describe_models():
    state = torch.random.get_rng_state()
    rows = describe_models()
    assert torch.equal(torch.random.get_rng_state(), state)  # built on "meta": no draws
    assert [r.name for r in rows] == ALL
    by_name = {r.name: r for r in rows}
    for name, count in PAPER_COUNTS.items():
        assert by_name[name].params == by_name[name].paper_params == count
    assert by_name["cnn1d"].params == 5_210 and by_name["cnn1d"].layouts == ("signal",)
    assert all(r.description for r in rows)
    name, layouts, params, paper_params, description = rows[0]  # plain 5-tuples too
    assert name == rows[0].name


def test_module_docstring_examples_run():
    result = doctest.testmod(models_pkg, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# --- fits MNIST-1D (trains: slow) --------------------------------------------------------------------


@pytest.mark.slow
def test_cnn1d_learns_mnist1d():
    mnist1d = pytest.importorskip("mnist1d.data")
    data = mnist1d.make_dataset(mnist1d.get_dataset_args())
    x = torch.tensor(data["x"], dtype=torch.float32)[:, None]
    y = torch.tensor(data["y"])
    xt = torch.tensor(data["x_test"], dtype=torch.float32)[:, None]
    yt = torch.tensor(data["y_test"])
    mu, sd = x.mean(0), x.std(0)
    x, xt = (x - mu) / sd, (xt - mu) / sd
    model = build("cnn1d", (1, 40), num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=MODELS.get("cnn1d").paper_lr, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        test_acc = (model(xt).argmax(1) == yt).float().mean().item()
    assert test_acc > 0.6  # chance is 0.1; about 0.9 is typical after 20 epochs
