"""Models: structure, closed-form parameter counts, the skip/no-skip twin, attention against torch's reference,
patching, deterministic construction, and exact second derivatives (HVPs against the dense float64 Hessian)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from landscape.models import (
    ACTIVATIONS,
    MLP,
    Attention,
    BasicBlock,
    ResNet18,
    Transformer,
    build_model,
    count_parameters,
    group_count,
)
from landscape.operators import HessianOperator, dense_hessian


def test_mlp_is_a_sequential_of_linear_and_activations():
    model = MLP(40, 10, depth=3, width=16, activation="tanh")
    assert isinstance(model, nn.Sequential)
    kinds = [type(m) for m in model]
    assert kinds == [nn.Linear, nn.Tanh] * 3 + [nn.Linear]
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [16, 16, 16, 10]
    x = torch.randn(5, 40, generator=torch.Generator().manual_seed(0))
    manual = x
    for m in model:
        manual = m(manual)
    torch.testing.assert_close(model(x), manual)
    # image-shaped inputs are flattened
    assert MLP(12, 3, depth=1, width=4)(torch.zeros(2, 3, 2, 2)).shape == (2, 3)


def test_mlp_parameter_count_closed_form():
    # Greydanus' MNIST-1D MLP: 40-100-100-10
    assert count_parameters(build_model("mlp")) == (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10)
    assert count_parameters(MLP(7, 3, depth=0)) == 7 * 3 + 3


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_activations(activation):
    model = MLP(4, 2, depth=1, width=3, activation=activation)
    assert isinstance(model[1], ACTIVATIONS[activation])


def _resnet18_count(
    dim: int, in_channels: int, m: float, norm: str, skip: bool, classes: int = 10, blocks: int = 2
) -> int:
    """Closed form: conv weights c_in·c_out·k^dim, norm affine 2c (none: conv bias c), the head."""
    k = 3**dim
    widths = [round(w * m) for w in (64, 128, 256, 512)]

    def conv(c_in, c_out, kk):
        return c_in * c_out * kk + (c_out if norm == "none" else 0) + (2 * c_out if norm != "none" else 0)

    total = conv(in_channels, widths[0], k)
    c_in = widths[0]
    for stage, c_out in enumerate(widths):
        for i in range(blocks):
            total += conv(c_in, c_out, k) + conv(c_out, c_out, k)
            if skip and (c_in != c_out or (stage > 0 and i == 0)):
                total += conv(c_in, c_out, 1)
            c_in = c_out
    return total + widths[-1] * classes + classes


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
@pytest.mark.parametrize("skip", [True, False])
def test_resnet18_parameter_counts(norm, skip):
    one_d = ResNet18((40,), 10, width_multiplier=0.25, skip=skip, norm=norm)
    assert count_parameters(one_d) == _resnet18_count(1, 1, 0.25, norm, skip)
    two_d = ResNet18((3, 8, 8), 10, width_multiplier=0.125, skip=skip, norm=norm)
    assert count_parameters(two_d) == _resnet18_count(2, 3, 0.125, norm, skip)
    ten = ResNet18((40,), 10, width_multiplier=0.25, skip=skip, norm=norm, blocks=1)  # ResNet-10
    assert count_parameters(ten) == _resnet18_count(1, 1, 0.25, norm, skip, blocks=1)
    assert sum(isinstance(m, nn.Conv1d) and m.kernel_size == (3,) for m in ten.modules()) == 9  # + head = 10


def test_resnet_blocks_must_be_positive():
    with pytest.raises(ValueError, match="blocks must be a positive integer, got 0"):
        ResNet18((40,), blocks=0)


def test_resnet18_cifar_has_the_standard_size():
    # the CIFAR ResNet-18 (3x3 stem, BatchNorm) has 11,173,962 parameters
    model = build_model("resnet18", input_shape=(3, 32, 32))
    assert count_parameters(model) == 11_173_962
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet18_norm_choice():
    def kinds(norm):
        return {type(m) for m in ResNet18((40,), width_multiplier=0.25, norm=norm).modules()}

    assert nn.BatchNorm1d in kinds("batch")
    assert nn.GroupNorm not in kinds("batch")
    assert nn.GroupNorm in kinds("group")
    assert nn.BatchNorm1d not in kinds("group")
    none = kinds("none")
    assert nn.BatchNorm1d not in none
    assert nn.GroupNorm not in none
    assert nn.BatchNorm2d in {type(m) for m in ResNet18((3, 8, 8), width_multiplier=0.125).modules()}


def test_group_count():
    assert [group_count(c) for c in (1, 2, 8, 16, 32, 64, 128, 256, 512, 24)] == [
        1,
        1,
        2,
        4,
        8,
        16,
        32,
        32,
        32,
        4,
    ]


def test_basic_block_skip_is_really_removed():
    # with the residual branch zeroed, a block is relu(x) with the skip and relu(0) = 0 without it
    x = torch.randn(3, 8, 10, generator=torch.Generator().manual_seed(0))
    for skip, expected in ((True, F.relu(x)), (False, torch.zeros_like(x))):
        block = BasicBlock(1, 8, 8, stride=1, norm="none", skip=skip)
        with torch.no_grad():
            block.conv2.weight.zero_()
            block.conv2.bias.zero_()
        torch.testing.assert_close(block(x), expected)
    assert BasicBlock(1, 8, 16, stride=2, norm="none", skip=False).shortcut is None


def test_attention_matches_torch_multihead_attention():
    gen = torch.Generator().manual_seed(0)
    ours = Attention(16, heads=4).double()
    ref = nn.MultiheadAttention(16, 4, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 5, 16, generator=gen, dtype=torch.float64)
    expected, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(ours(x), expected)


def test_transformer_structure_and_patches():
    model = build_model("transformer")  # d=64, 2 layers, 4 heads, patch 4 on length 40
    assert model.pos.shape == (1, 10, 64)
    assert len(model.blocks) == 2
    assert model.blocks[0].attn.heads == 4
    assert model.cls is None
    x = torch.arange(2 * 40, dtype=torch.float32).reshape(2, 40)
    patches = model.patchify(x)
    assert patches.shape == (2, 10, 4)
    torch.testing.assert_close(patches[1, 3], x[1, 12:16])
    cls = Transformer((3, 8, 8), patch_size=4, dim=16, heads=2, pooling="cls")
    assert cls.pos.shape == (1, 4 + 1, 16)
    assert cls.cls.shape == (1, 1, 16)
    img = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    patches = cls.patchify(img)  # patch (row 1, col 0) = index 2; values ordered channel, row, column
    torch.testing.assert_close(patches[0, 2], img[0, :, 4:8, 0:4].reshape(-1))
    assert cls(img).shape == (2, 10)


def test_transformer_mean_pooling_without_positions_is_permutation_invariant():
    model = Transformer((8,), num_classes=3, patch_size=2, dim=8, heads=2).double()
    with torch.no_grad():
        model.pos.zero_()
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    perm = torch.tensor([3, 0, 2, 1])
    shuffled = x.reshape(4, 4, 2)[:, perm].reshape(4, 8)
    torch.testing.assert_close(model(x), model(shuffled))


def test_build_model_is_deterministic_and_leaves_global_rng():
    state = torch.get_rng_state()
    a, b = build_model("transformer", seed=3), build_model("transformer", seed=3)
    c = build_model("transformer", seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    for (name, pa), pb, _pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))
    assert build_model("mlp", dtype=torch.float64)[0].weight.dtype == torch.float64


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_model("vgg")
    with pytest.raises(TypeError, match=r"mlp has no option\(s\) \['heads'\]"):
        build_model("mlp", heads=2)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        build_model("mlp", activation="swish")
    with pytest.raises(ValueError, match="unknown norm 'layer'"):
        build_model("resnet18", norm="layer")
    with pytest.raises(ValueError, match="heads=3 must divide dim=64"):
        build_model("transformer", heads=3)
    with pytest.raises(ValueError, match="patch_size=3 must divide"):
        build_model("transformer", patch_size=3)
    with pytest.raises(ValueError, match="unknown pooling"):
        build_model("transformer", pooling="max")
    with pytest.raises(ValueError, match="input_shape"):
        build_model("resnet18", input_shape=(1, 2, 3, 4))


def _reference_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Dense Hessian by reverse-over-reverse `torch.autograd.functional.hessian` of a functional call.

    (Not `operators.dense_hessian`: torch.func's second derivatives through layer_norm are wrong in torch 2.14,
    see `test_torch_func_layer_norm_second_derivative_is_wrong`.)
    """
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(flat):
        chunks = torch.split(flat, [s.numel() for s in shapes])
        state = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return F.cross_entropy(torch.func.functional_call(model, state, (x,)), y)

    return torch.autograd.functional.hessian(loss, theta)


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("mlp", {"depth": 2, "width": 6, "activation": "gelu"}),
        ("resnet18", {"width_multiplier": 1 / 32, "norm": "group"}),
        ("transformer", {"patch_size": 4, "dim": 8, "depth": 1, "heads": 2, "pooling": "cls"}),
    ],
)
def test_models_have_exact_hessian_vector_products(name, config):
    """Double backward works through every architecture: HVPs equal the dense float64 Hessian."""
    gen = torch.Generator().manual_seed(0)
    input_shape = (16,) if name == "resnet18" else (8,)  # 16 -> 8 -> 4 -> 2: no length-1 GroupNorm
    model = build_model(name, input_shape=input_shape, num_classes=3, dtype=torch.float64, **config).eval()
    x = torch.randn(6, *input_shape, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=gen)
    # torch.func (dense_hessian) is exact for these except through layer_norm (see the test below)
    H = (
        _reference_hessian(model, x, y)
        if name == "transformer"
        else dense_hessian(model, F.cross_entropy, (x, y))
    )
    scale = float(H.abs().max())
    torch.testing.assert_close(H, H.T, rtol=0, atol=1e-12 * scale)
    op = HessianOperator(model, F.cross_entropy, (x, y))
    V = torch.randn(op.dim, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(op @ V, H @ V, rtol=0, atol=1e-11 * scale * op.dim**0.5)


def test_torch_func_layer_norm_second_derivative_is_wrong():
    """Documents a torch bug that matters here: torch.func.hessian through F.layer_norm (weight and input
    together) disagrees with autograd's double backward, which this test checks against a hand-written
    layer norm. If torch fixes it, this test fails and the Transformer can use dense_hessian again."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    c = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    theta = torch.randn(9, generator=gen, dtype=torch.float64)

    def builtin(t):
        return (F.layer_norm(x * t[8], (4,), t[:4], t[4:8]) ** 3 * c).sum()

    def by_hand(t):
        z = x * t[8]
        z = (z - z.mean(-1, keepdim=True)) / torch.sqrt(z.var(-1, unbiased=False, keepdim=True) + 1e-5)
        return ((z * t[:4] + t[4:8]) ** 3 * c).sum()

    exact = torch.autograd.functional.hessian(by_hand, theta)
    torch.testing.assert_close(torch.autograd.functional.hessian(builtin, theta), exact)
    assert not torch.allclose(torch.func.hessian(builtin)(theta), exact)
