"""Every measure against a value computed by hand on tiny networks with known weights (CPU, float32
networks, measures in float64; tolerances stated per test).

The hand computations are written out in the comments and in plain Python arithmetic (math, no torch),
so a wrong convention in the library (a missing square, a transposed norm, BatchNorm not folded) fails.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch
from torch import nn

from rethinkgen.errors import UnknownNameError
from rethinkgen.measures import MEASURES, MeasureSpec, list_measures, validate_names
from rethinkgen.measures.compute import compute_measures
from rethinkgen.measures.context import MeasureContext, MeasureSettings
from rethinkgen.measures.layers import fold_batchnorm, initial_model, weight_matrices
from rethinkgen.models.mlp import MLP

CPU = torch.device("cpu")
ALL = list_measures()


def _set(layer: nn.Linear | nn.Conv1d, weight, bias=None) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        if layer.bias is not None:
            layer.bias.copy_(torch.tensor(bias if bias is not None else [0.0] * layer.weight.shape[0]))


def _mlp(w1, w2, b1=None, b2=None) -> nn.Module:
    """2 inputs -> 2 ReLUs -> 2 logits (the MLP of rethinkgen.models.mlp: fc1, head)."""
    net = MLP(2, (2,), 2)
    _set(net.fc1, w1, b1)
    _set(net.head, w2, b2)
    return net


def _values(ctx: MeasureContext, names=("all",)) -> dict[str, float]:
    results = compute_measures(names, ctx)
    errors = {r.name: r.error for r in results if r.error}
    assert not errors, errors
    return {r.name: r.value for r in results}


# W1 = diag(3, 1), W2 = diag(1, 2), no biases; initial W1⁰ = I, W2⁰ = 0.
# On positive inputs every hidden unit is active, so f(x) = W2 W1 x = (3 x1, 2 x2).
X = [[1.0, 0.5], [0.5, 1.0], [1.0, 1.0], [0.25, 2.0]]
Y = [0, 1, 0, 1]
# logits: (3, 1), (1.5, 2), (3, 2), (0.75, 4) -> margins 2, 0.5, 1, 3.25 (sorted 0.5, 1, 2, 3.25)


@pytest.fixture
def mlp_ctx() -> MeasureContext:
    model = _mlp([[3, 0], [0, 1]], [[1, 0], [0, 2]])
    init = _mlp([[1, 0], [0, 1]], [[0, 0], [0, 0]])
    return MeasureContext(model, init, torch.tensor(X), torch.tensor(Y), seed=0,
                          settings=MeasureSettings(margin_quantile=0.5))


def test_norm_measures_of_a_two_layer_net_match_hand_values(mlp_ctx):
    v = _values(mlp_ctx, ["params", "l2_norm", "log_prod_fro", "dist_init", "log_prod_spec", "log_sum_spec",
                          "path_norm"])
    assert v["params"] == 12  # 2·2 + 2 weights and biases, twice
    assert v["l2_norm"] == pytest.approx(math.sqrt(9 + 1 + 1 + 4), rel=1e-12)
    assert v["log_prod_fro"] == pytest.approx(math.log(10) + math.log(5), rel=1e-12)
    # W1 − W1⁰ = diag(2, 0), W2 − W2⁰ = diag(1, 2): 4 + 1 + 4 = 9
    assert v["dist_init"] == pytest.approx(3.0, rel=1e-12)
    # spectral norms 3 and 2: log 9 + log 4; balanced sum: log(2 · √(9·4)) = log 12
    assert v["log_prod_spec"] == pytest.approx(math.log(36), rel=1e-12)
    assert v["log_sum_spec"] == pytest.approx(math.log(12), rel=1e-12)
    # paths x1 -> h1 -> o1: 3²·1² = 9 and x2 -> h2 -> o2: 1²·2² = 4 (the others have a zero weight)
    assert v["path_norm"] == pytest.approx(math.sqrt(13), rel=1e-6)


def test_margin_measures_match_hand_values(mlp_ctx):
    v = _values(mlp_ctx, ["inverse_margin", "spectral_complexity"])
    gamma = (1 + 2) / 2  # median of 0.5, 1, 2, 3.25 (q = 0.5, linear interpolation)
    assert v["inverse_margin"] == pytest.approx(1 / gamma**2, rel=1e-6)
    # Bartlett et al.: R_A = (3·2) · ((‖W1ᵀ‖_{2,1}/3)^(2/3) + (‖W2ᵀ‖_{2,1}/2)^(2/3))^(3/2), row sums 3+1, 1+2
    r_a = 6 * ((4 / 3) ** (2 / 3) + (3 / 2) ** (2 / 3)) ** 1.5
    x_norm = math.sqrt(sum(a * a + b * b for a, b in X))
    assert v["spectral_complexity"] == pytest.approx(r_a * x_norm / (gamma * len(X)), rel=1e-6)
    q10 = MeasureContext(mlp_ctx.model, mlp_ctx.init_model, mlp_ctx.x_train, mlp_ctx.y_train)  # default q = 0.1
    assert q10.margin == pytest.approx(0.5 + 0.3 * (1 - 0.5), rel=1e-6)  # numpy's linear quantile


def test_negative_margin_quantile_gives_infinite_margin_measures():
    model = _mlp([[3, 0], [0, 1]], [[1, 0], [0, 2]])
    ctx = MeasureContext(model, model, torch.tensor(X), torch.tensor([1, 0, 1, 0]),
                         settings=MeasureSettings(margin_quantile=0.5))  # every label now the wrong one
    v = _values(ctx, ["inverse_margin", "spectral_complexity"])
    assert v["inverse_margin"] == math.inf and v["spectral_complexity"] == math.inf


def test_input_gradient_norm_matches_hand_value(mlp_ctx):
    # f(x) = M x with M = diag(3, 2); ∇_x CE = Mᵀ (softmax(Mx) − e_y)
    norms = []
    for (x1, x2), y in zip(X, Y, strict=True):
        z = (3 * x1, 2 * x2)
        e = [math.exp(t - max(z)) for t in z]
        p = [t / sum(e) for t in e]
        r = [p[0] - (y == 0), p[1] - (y == 1)]
        norms.append(math.hypot(3 * r[0], 2 * r[1]))
    v = _values(mlp_ctx, ["input_grad_norm"])
    assert v["input_grad_norm"] == pytest.approx(sum(norms) / len(norms), rel=1e-5)


# ------------------------------------------------------------------------------- BatchNorm
# The BatchNorm ε of the hand-computed nets: positive (torch 2.11, the H200 image's release, refuses eps=0 in
# F.batch_norm) and below float32's resolution at every variance used here (0.25 to 4: one ulp >= 3e-8), so
# var + ε == var in float32 and the hand values stay exact.
EXACT_EPS = 1e-12


def _bn_net(w1, b1, w2, mean, var, gamma, beta) -> nn.Module:
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, eps=EXACT_EPS), nn.ReLU(), nn.Linear(2, 2))
    _set(net[0], w1, b1)
    _set(net[3], w2)
    with torch.no_grad():
        bn = net[1]
        bn.running_mean.copy_(torch.tensor(mean))
        bn.running_var.copy_(torch.tensor(var))
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
    return net


def test_batchnorm_is_folded_into_the_layer_that_feeds_it():
    # s = γ / √var = (3/2, 1/0.5) = (1.5, 2); W' = diag(s) W1 = diag(1.5, 4); b' = s(b − μ) + β = (0.5, 4)
    net = _bn_net([[1, 0], [0, 2]], [1, 1], [[1, 0], [0, 1]], [1, -1], [4, 0.25], [3, 1], [0.5, 0])
    folded = fold_batchnorm(net, torch.ones(1, 2))
    assert not any(isinstance(m, nn.BatchNorm1d) for m in folded.modules())
    assert folded[0].weight.tolist() == [[1.5, 0.0], [0.0, 4.0]]
    assert folded[0].bias.tolist() == [0.5, 4.0]
    x = torch.tensor([[0.3, -1.0], [2.0, 0.5], [-1.0, 1.0]])
    torch.testing.assert_close(folded(x), net.eval()(x), rtol=1e-6, atol=1e-6)
    assert isinstance(net[1], nn.BatchNorm1d)  # the original is untouched


def test_measures_of_a_batchnorm_net_use_the_folded_weights():
    net = _bn_net([[1, 0], [0, 2]], [1, 1], [[1, 0], [0, 1]], [1, -1], [4, 0.25], [3, 1], [0.5, 0])
    # initial network: W1⁰ = W2⁰ = I, default BatchNorm (μ 0, var 1, γ 1, β 0): folding changes nothing
    init = _bn_net([[1, 0], [0, 1]], [0, 0], [[1, 0], [0, 1]], [0, 0], [1, 1], [1, 1], [0, 0])
    ctx = MeasureContext(net, init, torch.tensor(X), torch.tensor(Y))
    v = _values(ctx, ["params", "l2_norm", "dist_init", "log_prod_spec", "path_norm"])
    assert v["params"] == 12  # BatchNorm's γ, β are not counted (Table 1 counting)
    assert v["l2_norm"] == pytest.approx(math.sqrt(1.5**2 + 4**2 + 1 + 1), rel=1e-6)  # = 4.5
    assert v["dist_init"] == pytest.approx(math.sqrt(0.5**2 + 3**2), rel=1e-6)  # diag(1.5, 4) − I
    assert v["log_prod_spec"] == pytest.approx(math.log(16) + math.log(1), abs=1e-6)
    # squared folded net on ones: h = (1.5² + 0.5², 4² + 4²) = (2.5, 32); head I² -> sum 34.5
    assert v["path_norm"] == pytest.approx(math.sqrt(34.5), rel=1e-6)


@pytest.mark.parametrize("name", ["inception_small", "resnet18"])
def test_folding_keeps_the_function_of_the_registered_batchnorm_models(name):
    from rethinkgen.models import create_model

    torch.manual_seed(0)
    model = create_model(name, (3, 12, 12), 10)
    with torch.no_grad():  # give every BatchNorm non-trivial statistics and affine parameters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    x = torch.randn(4, 3, 12, 12)
    folded = fold_batchnorm(model, x[:1])
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(folded(x), model.eval()(x), rtol=1e-4, atol=1e-4)


def test_a_convolution_enters_as_its_reshaped_kernel():
    conv = nn.Conv1d(1, 2, 3, bias=False)
    _set(conv, [[[1, 0, 0]], [[0, 2, 0]]])
    (name, w), = weight_matrices(nn.Sequential(conv))
    assert w.tolist() == [[1, 0, 0], [0, 2, 0]]  # (out, in·k): singular values 2 and 1
    net = nn.Sequential(conv, nn.Flatten(), nn.Linear(2 * 3, 2))
    _set(net[2], [[1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0]])
    ctx = MeasureContext(net, net, torch.ones(3, 1, 5), torch.tensor([0, 1, 0]))
    assert _values(ctx, ["log_prod_spec"])["log_prod_spec"] == pytest.approx(math.log(4) + math.log(1), abs=1e-6)


# ------------------------------------------------------------------------------- perturbations
def _two_logit(a: float) -> nn.Module:
    """x (1 feature) -> logits (a·x, −a·x): on x = 1 with label 0 the logit gap is 2a."""
    net = nn.Linear(1, 2)
    _set(net, [[a], [-a]], [0, 0])
    return net


def test_pacbayes_sigma_matches_the_gaussian_closed_form():
    # u ~ N(0, σ²) on w0, w1, b0, b1: the logit gap is 2a + N(0, 4σ²), so the error is Φ(−a/σ).
    # Error rise ≤ 0.1 <=> σ ≤ a / Φ⁻¹(0.9).
    a = 1.0
    settings = MeasureSettings(flatness_draws=2000, flatness_steps=8, sigma_min=0.1, sigma_max=10.0)
    ctx = MeasureContext(_two_logit(a), _two_logit(0.0), torch.ones(1, 1), torch.zeros(1, dtype=torch.long),
                         settings=settings)
    z = NormalDist().inv_cdf(0.9)
    assert ctx.pacbayes_sigma == pytest.approx(a / z, rel=0.06)  # Monte Carlo: 2,000 draws
    early = MeasureContext(ctx.model, ctx.init_model, ctx.x_train, ctx.y_train,
                           settings=MeasureSettings(flatness_draws=2000, flatness_tolerance=0.01))
    # stopping once the error rise is within 0.01 of 0.1: Φ(−a/σ) ∈ [0.09, 0.11], σ within [a/1.341, a/1.227]
    assert a / NormalDist().inv_cdf(0.91) * 0.97 <= early.pacbayes_sigma <= a / NormalDist().inv_cdf(0.89) * 1.03
    v = _values(ctx, ["pacbayes_flatness", "pacbayes_init"])
    sigma = ctx.pacbayes_sigma
    assert v["pacbayes_flatness"] == pytest.approx(1 / sigma**2, rel=1e-12)
    # ‖w − w⁰‖² = a² + a² (biases are not weights), m = 1
    assert v["pacbayes_init"] == pytest.approx(2 * a**2 / (4 * sigma**2) + math.log(1 / sigma) + 10, rel=1e-12)


def test_magnitude_aware_sigma_matches_the_gaussian_closed_form():
    # u_w ~ N(0, σ²a² + ε²), u_b ~ N(0, ε²): gap ~ N(2a, 2σ²a² + 4ε²); error 0.1 at 2a/√(·) = Φ⁻¹(0.9)
    a, eps = 1.0, 1e-3
    settings = MeasureSettings(flatness_draws=2000, flatness_steps=8, sigma_min=0.1, magnitude_eps=eps)
    ctx = MeasureContext(_two_logit(a), _two_logit(0.0), torch.ones(1, 1), torch.zeros(1, dtype=torch.long),
                         settings=settings)
    z = NormalDist().inv_cdf(0.9)
    expected = math.sqrt(((2 * a / z) ** 2 - 4 * eps**2) / (2 * a**2))
    assert ctx.pacbayes_mag_sigma == pytest.approx(expected, rel=0.06)


def test_sharpness_reaches_the_worst_corner_of_the_box():
    # loss = softplus(z1 − z0), z = (w0 + b0, w1 + b1) = (1, −1). Box |u| ≤ ρ(|p| + 1): 2ρ on the weights,
    # ρ on the biases; the worst corner lowers z0 and raises z1 by 3ρ each: z1 − z0 = −2 + 6ρ.
    rho = 0.01
    ctx = MeasureContext(_two_logit(1.0), _two_logit(0.0), torch.ones(1, 1), torch.zeros(1, dtype=torch.long),
                         settings=MeasureSettings(sharpness_radius=rho, sharpness_steps=5))
    softplus = lambda t: math.log1p(math.exp(t))  # noqa: E731
    expected = softplus(-2 + 6 * rho) - softplus(-2)
    assert _values(ctx, ["sharpness"])["sharpness"] == pytest.approx(expected, rel=1e-4)


def test_perturbation_measures_are_reproducible_from_the_seed(mlp_ctx):
    names = ["pacbayes_flatness", "pacbayes_mag_flatness", "sharpness"]
    first = _values(mlp_ctx, names)
    again = MeasureContext(mlp_ctx.model, mlp_ctx.init_model, mlp_ctx.x_train, mlp_ctx.y_train, seed=0,
                           settings=mlp_ctx.settings)
    assert _values(again, names) == first


# ------------------------------------------------------------------------------- registry, runs
def test_every_registered_measure_runs_on_a_trained_shape_network():
    torch.manual_seed(1)
    model, init = _mlp(torch.randn(2, 2).tolist(), torch.randn(2, 2).tolist()), _mlp([[1, 0], [0, 1]], [[1, 0], [0, 1]])
    ctx = MeasureContext(model, init, torch.rand(16, 2), torch.randint(0, 2, (16,)),
                         settings=MeasureSettings(flatness_steps=3, flatness_draws=2))
    results = compute_measures(["all"], ctx)
    assert [r.name for r in results] == ALL and len(ALL) == len(MEASURES)
    for r in results:
        assert r.error is None and r.value is not None, (r.name, r.error)
        assert set(r.settings) == set(MEASURES.get(r.name).settings)


def test_unknown_measure_names_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="valid measures: .*sharpness"):
        validate_names(["l2_norm", "sharpnes"])
    assert validate_names(["sharpness", "l2_norm", "l2_norm"]) == ("l2_norm", "sharpness")  # registry order


def test_a_failing_measure_is_recorded_and_the_others_still_run(mlp_ctx, monkeypatch):
    def boom(ctx):
        raise RuntimeError("no such layer")

    monkeypatch.setitem(MEASURES._items, "boom", MeasureSpec("boom", boom, "-", "-", "-", "-"))
    results = {r.name: r for r in compute_measures(["boom", "l2_norm"], mlp_ctx)}
    assert results["boom"].value is None and "no such layer" in results["boom"].error
    assert results["l2_norm"].value == pytest.approx(math.sqrt(15))


def test_initial_weights_are_those_the_trainer_draws():
    from rethinkgen.train.config import TrainConfig
    from rethinkgen.train.loop import Trainer, resolve_config

    config = resolve_config(TrainConfig(data="mnist1d", n_train=64, n_test=64, model="mlp_1x512", seed=7,
                                        device="cpu"))
    with torch.random.fork_rng(devices=[]):
        trainer = Trainer(config, CPU)
    init = initial_model("mlp_1x512", trainer.data.input_shape, 10, seed=7, layout=trainer.data.layout)
    for (name, a), (_, b) in zip(trainer.model.state_dict().items(), init.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    other = initial_model("mlp_1x512", trainer.data.input_shape, 10, seed=8, layout=trainer.data.layout)
    assert not torch.equal(other.head.weight, init.head.weight)


def test_params_leaves_batchnorm_out_also_for_models_usually_counted_with_it():
    """The torchvision ImageNet networks carry ``count_batchnorm = True`` (their documented counts include
    γ, β); ``params`` must still count as Table 1 does, or ψ across models compares two definitions."""
    net = _bn_net([[1, 0], [0, 2]], [1, 1], [[1, 0], [0, 1]], [0, 0], [1, 1], [1, 1], [0, 0])
    net.count_batchnorm = True
    ctx = MeasureContext(net, net, torch.tensor(X), torch.tensor(Y))
    assert _values(ctx, ["params"])["params"] == 12  # 2·2 + 2, twice; not + 4 for γ, β


class _WithAuxHead(nn.Module):
    """The 2-layer MLP of ``_mlp`` plus a linear head used only in training (as Inception V3's auxiliary
    classifier, with a BatchNorm that never runs in eval mode)."""

    def __init__(self, w1, w2) -> None:
        super().__init__()
        self.net = _mlp(w1, w2)
        self.aux = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        _set(self.aux[0], [[100, 0], [0, 100]])

    def forward(self, x):
        out = self.net(x)
        return (out, self.aux(x)) if self.training else out


def test_layers_outside_the_eval_function_are_not_weights():
    model = _WithAuxHead([[3, 0], [0, 1]], [[1, 0], [0, 2]])
    init = _WithAuxHead([[1, 0], [0, 1]], [[0, 0], [0, 0]])
    ctx = MeasureContext(model, init, torch.tensor(X), torch.tensor(Y))
    assert [name for name, _, _ in ctx.weights] == ["net.fc1", "net.head"]
    v = _values(ctx, ["l2_norm", "log_prod_spec", "log_sum_spec", "dist_init"])  # as the plain MLP's
    assert v["l2_norm"] == pytest.approx(math.sqrt(15), rel=1e-12)
    assert v["log_prod_spec"] == pytest.approx(math.log(36), rel=1e-12)
    assert v["log_sum_spec"] == pytest.approx(math.log(12), rel=1e-12)
    assert v["dist_init"] == pytest.approx(3.0, rel=1e-12)
    assert model.training  # the caller's model is left as it was


def test_an_in_place_op_between_a_layer_and_its_batchnorm_stops_the_folding_of_that_pair():
    """conv -> ReLU(inplace) -> BatchNorm: the ReLU returns the conv's own output tensor, so the trace
    took the conv for the BatchNorm's feeder, folded across the ReLU and refused the model. The pair is
    now left unfolded (the BatchNorm counts as its own diagonal layer) and the function is kept."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 3, 3), nn.ReLU(inplace=True), nn.BatchNorm1d(3), nn.Flatten(), nn.Linear(18, 2))
    with torch.no_grad():
        net[2].running_mean.uniform_(-1, 1)
        net[2].running_var.uniform_(0.5, 2)
        net[2].weight.uniform_(-2, 2)
    x = torch.randn(5, 1, 8)
    folded = fold_batchnorm(net, x[:1])
    assert isinstance(folded[2], nn.BatchNorm1d)
    torch.testing.assert_close(folded(x), net.eval()(x), rtol=1e-6, atol=1e-6)
    assert [name for name, _ in weight_matrices(folded)] == ["0", "2", "4"]


class _ScaledMLP(nn.Module):
    """The 2-layer MLP with a learnable output scale (an ``nn.Parameter`` of a custom module)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _mlp([[3, 0], [0, 1]], [[1, 0], [0, 2]])
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        return self.scale * self.net(x)


def test_weights_outside_linear_conv_and_batchnorm_are_refused_not_ignored():
    """A parameter the weight layers do not cover (here a ×10 output scale) used to be left out of every
    norm without a word: l2_norm, the spectral products and the path norm's weights saw the plain MLP."""
    model = _ScaledMLP()
    ctx = MeasureContext(model, _ScaledMLP(), torch.tensor(X), torch.tensor(Y))
    results = {r.name: r for r in compute_measures(["l2_norm", "log_prod_spec", "inverse_margin"], ctx)}
    for name in ("l2_norm", "log_prod_spec"):
        assert results[name].value is None and "scale (_ScaledMLP)" in results[name].error
    assert results["inverse_margin"].value is not None  # measures of the function still apply


def _linear_bn_batch_stats() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=False), nn.ReLU(), nn.Linear(3, 2))


def _conv_bn_batch_stats() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False), nn.Flatten(),
                         nn.Linear(2 * 4 * 4, 2))


@pytest.mark.parametrize("make", [_linear_bn_batch_stats, _conv_bn_batch_stats])
def test_a_batchnorm_without_running_statistics_is_named(make):
    """Such a BatchNorm normalizes by the batch even in eval mode. It used to fail with torch's
    "Expected more than 1 value per channel when training" (1-D) or be blamed on a layer feeding two
    places (2-D); the error now says what it is."""
    from rethinkgen.errors import ConfigError

    net = make()
    example = torch.randn(1, 4) if isinstance(net[0], nn.Linear) else torch.randn(1, 1, 6, 6)
    with pytest.raises(ConfigError, match=r"BatchNorm 1 keeps no running statistics \(track_running_stats=False\)"):
        fold_batchnorm(net, example)


def test_the_weight_noise_is_drawn_on_the_cpu_whatever_the_device(mlp_ctx, monkeypatch):
    """A CUDA generator gives other numbers than a CPU one for the same seed, so PAC-Bayes σ' measured at
    the end of a GPU run differed from the same run measured on the CPU. Every draw now comes from a CPU
    generator (checked here by spying on torch.randn: no draw asks for another device)."""
    from rethinkgen.measures import perturbation

    calls = []
    real = torch.randn

    def spy(*args, **kwargs):
        calls.append((kwargs.get("device"), kwargs["generator"].device))
        return real(*args, **kwargs)

    monkeypatch.setattr(perturbation.torch, "randn", spy)
    mlp_ctx.settings = MeasureSettings(margin_quantile=0.5, flatness_steps=2, flatness_draws=2)
    _values(mlp_ctx, ["pacbayes_flatness"])
    assert calls and all(device in (None, CPU, "cpu") and gen == CPU for device, gen in calls)
    monkeypatch.undo()
    here = torch.randn(5, generator=mlp_ctx.generator("pacbayes", 0))
    mlp_ctx.device = torch.device("meta")  # stands for an accelerator: the generator must not follow it
    g = mlp_ctx.generator("pacbayes", 0)
    assert g.device == CPU and torch.equal(torch.randn(5, generator=g), here)


def test_path_norm_squares_an_unfolded_batchnorm_as_the_affine_layer_it_is():
    """A BatchNorm fed by no weight layer (here on the input) stays unfolded: z ↦ s z + (β − s μ),
    s = γ/√var. Squaring only γ and β (as every parameter) left μ and var unsquared in the path norm."""
    net = nn.Sequential(nn.BatchNorm1d(1, eps=EXACT_EPS), nn.Linear(1, 1))
    with torch.no_grad():
        net[0].running_mean.fill_(2.0)
        net[0].running_var.fill_(4.0)
        net[0].weight.fill_(3.0)
        net[0].bias.fill_(1.0)
    _set(net[1], [[2.0]], [0.5])
    ctx = MeasureContext(net, net, torch.tensor([[1.0], [5.0]]), torch.tensor([0, 0]))
    s, b = 3.0 / 2.0, 1.0 - 1.5 * 2.0  # z ↦ 1.5 z − 2
    expected = 2.0**2 * (s**2 * 1.0 + b**2) + 0.5**2  # squared layers on the all-ones input
    assert _values(ctx, ["path_norm"])["path_norm"] == pytest.approx(math.sqrt(expected), rel=1e-6)
