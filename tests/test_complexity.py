"""Norm, margin and agreement baselines against closed forms."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from landscape import complexity
from landscape.models import build_model


def tiny_mlp(seed=0):
    return build_model("mlp", input_shape=(3,), num_classes=2, seed=seed, depth=1, width=4).double()


def test_path_norm_is_the_sum_over_paths_of_squared_weights():
    model = tiny_mlp()
    w1, b1, w2, b2 = (p.detach() for p in model.parameters())
    # f_{θ²}(1) = W2² (W1² 1 + b1²) + b2², summed over the outputs (every term non-negative: ReLU passes it)
    expected = float(
        (w2.square() @ (w1.square() @ torch.ones(3, dtype=torch.float64) + b1.square()) + b2.square()).sum()
    )
    assert complexity.path_norm(model, (3,)) == pytest.approx(expected, rel=1e-12)


def test_norm_measures_match_their_definitions():
    model, init = tiny_mlp(0), tiny_mlp(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (50,), generator=g)
    out = complexity.norm_measures(model, init, x, y, (3,))
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, nn.Linear)]
    spectral = [float(torch.linalg.svdvals(w)[0]) ** 2 for w in weights]
    frobenius = [float(w.square().sum()) for w in weights]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    theta0 = torch.cat([p.detach().reshape(-1) for p in init.parameters()])
    logits = model(x).detach()
    margins = logits.gather(1, y[:, None]).squeeze(1) - logits.scatter(1, y[:, None], -math.inf).amax(1)
    gamma = float(torch.quantile(margins, 0.1))
    assert out["num_params"] == theta.numel()
    assert out["param_norm"] == pytest.approx(float(theta.square().sum()))
    assert out["dist_from_init"] == pytest.approx(float((theta - theta0).norm()))
    assert out["log_prod_spectral"] == pytest.approx(sum(map(math.log, spectral)))
    assert out["log_sum_frobenius"] == pytest.approx(math.log(2 * math.sqrt(frobenius[0] * frobenius[1])))
    assert out["margin"] == pytest.approx(gamma)
    if gamma > 0:
        assert out["inverse_margin"] == pytest.approx(1 / gamma**2)
        assert out["log_spectral_over_margin"] == pytest.approx(
            sum(map(math.log, spectral)) - math.log(gamma**2)
        )
    else:
        assert out["inverse_margin"] == math.inf


def test_margin_is_the_quantile_of_correct_minus_best_other():
    model = nn.Linear(2, 3, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.eye(3, 2, dtype=torch.float64))
    x = torch.tensor([[3.0, 1.0], [1.0, 2.0], [0.0, 5.0]], dtype=torch.float64)  # logits = (x0, x1, 0)
    y = torch.tensor([0, 1, 0])
    # margins: 3 − 1 = 2, 2 − 1 = 1, 0 − 5 = −5; the median is 1
    assert complexity.output_margin(model, x, y, quantile=0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="quantile must lie in"):
        complexity.output_margin(model, x, y, quantile=1.0)


def test_gradient_noise_is_the_variance_of_per_sample_gradients():
    model = tiny_mlp()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (40,), generator=g)
    grads = []
    for i in range(40):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    grads = torch.stack(grads)
    expected = float((grads - grads.mean(0)).square().sum(1).mean())
    assert complexity.gradient_noise(model, F.cross_entropy, x, y, chunk_size=7) == pytest.approx(
        expected, rel=1e-10
    )


def test_disagreement_and_distance():
    model = tiny_mlp()
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert complexity.disagreement(model, copy.deepcopy(model), x) == 0.0
    flipped = copy.deepcopy(model)
    with torch.no_grad():
        flipped[-1].weight.neg_()
        flipped[-1].bias.neg_()
    # with 2 classes, negating the logits flips every prediction (ties have measure zero)
    assert complexity.disagreement(model, flipped, x) == 1.0
    assert complexity.distance_from_init(model, model) == 0.0
    with pytest.raises(ValueError, match="differ in size"):
        complexity.distance_from_init(
            model, build_model("mlp", input_shape=(3,), num_classes=2, depth=1, width=5)
        )
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        complexity.linear_layers(nn.ReLU())
