"""The three architectures of the experiments, built by name: an MLP, ResNet-18 (1-D and 2-D), a tiny Transformer.

References:
    K. He, X. Zhang, S. Ren, J. Sun (2016), deep residual learning for image recognition (ResNet-18);
    H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein (2018), visualizing the loss landscape of neural nets
    (ResNet without skip connections);
    A. Dosovitskiy et al. (2021), an image is worth 16x16 words (patch tokens, CLS pooling);
    Y. Wu, K. He (2018), group normalization;
    R. Xiong et al. (2020), on layer normalization in the Transformer architecture (pre-LN);
    S. Greydanus (2020), scaling down deep learning (the MNIST-1D MLP: two hidden layers of 100 ReLU units).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "MODELS",
    "NORMS",
    "ResNet18",
    "Transformer",
    "build_model",
    "count_parameters",
    "group_count",
]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}
NORMS = ("batch", "group", "none")
MODELS = ("mlp", "resnet18", "transformer")


def _check_positive_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if not 1 <= len(shape) <= 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(
            f"input_shape must be (length,), (channels, length) or (channels, height, width), got {input_shape!r}"
        )
    return shape


# ----------------------------------------------------------------------------------------------------------------
# MLP


class MLP(nn.Sequential):
    """A fully connected network: `depth` hidden layers of `width` units, each followed by the activation.

    The children are only `nn.Linear` layers and element-wise activation modules, alternating, so code that walks
    the layers (permutation alignment, layer-wise rescaling) can iterate over the `nn.Sequential`. Inputs of any
    shape `(N, ...)` are flattened to `(N, in_features)` first.

    Args:
        in_features: size of one (flattened) input.
        num_classes: number of outputs.
        depth: number of hidden layers (the network has depth + 1 `nn.Linear` layers).
        width: units per hidden layer.
        activation: one of `ACTIVATIONS` (``"relu"``, ``"tanh"``, ``"gelu"``, ...).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int = 10,
        depth: int = 2,
        width: int = 100,
        activation: str = "relu",
    ) -> None:
        _check_positive_int("in_features", in_features)
        _check_positive_int("num_classes", num_classes)
        _check_positive_int("width", width)
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
            raise ValueError(f"depth must be a non-negative integer (hidden layers), got {depth!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {tuple(ACTIVATIONS)}")
        layers: list[nn.Module] = []
        fan_in = in_features
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), ACTIVATIONS[activation]()]
            fan_in = width
        layers.append(nn.Linear(fan_in, num_classes))
        super().__init__(*layers)
        self.in_features = in_features

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.flatten(1) if x.ndim > 2 else x)


# ----------------------------------------------------------------------------------------------------------------
# ResNet-18


def _norm_layer(norm: str, channels: int, dim: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm1d(channels) if dim == 1 else nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(group_count(channels), channels)
    return nn.Identity()


def group_count(channels: int) -> int:
    """GroupNorm groups for `channels`: 32 (Wu & He 2018), halved until each group holds at least 4 channels."""
    groups = math.gcd(channels, 32)
    while groups > 1 and channels // groups < 4:
        groups //= 2
    return groups


def _conv(dim: int, c_in: int, c_out: int, kernel: int, stride: int, bias: bool) -> nn.Module:
    conv = nn.Conv1d if dim == 1 else nn.Conv2d
    return conv(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=bias)


class BasicBlock(nn.Module):
    """Two 3-wide convolutions with normalisation; output = relu(F(x) + shortcut(x)), or relu(F(x)) without skip."""

    def __init__(self, dim: int, c_in: int, c_out: int, stride: int, norm: str, skip: bool) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = _conv(dim, c_in, c_out, 3, stride, bias)
        self.norm1 = _norm_layer(norm, c_out, dim)
        self.relu1 = nn.ReLU()
        self.conv2 = _conv(dim, c_out, c_out, 3, 1, bias)
        self.norm2 = _norm_layer(norm, c_out, dim)
        self.relu2 = nn.ReLU()
        self.skip = skip
        self.shortcut: nn.Module | None = None
        if skip:
            if stride != 1 or c_in != c_out:
                self.shortcut = nn.Sequential(
                    _conv(dim, c_in, c_out, 1, stride, bias), _norm_layer(norm, c_out, dim)
                )
            else:
                self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.norm2(self.conv2(self.relu1(self.norm1(self.conv1(x)))))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu2(out)


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016): a 3-wide stem, four stages of two `BasicBlock`s ([2, 2, 2, 2]; `blocks` sets the count) with widths
    64-128-256-512 × `width_multiplier` and strides 1-2-2-2, global average pooling and a linear head.

    The stem is the CIFAR variant (3-wide convolution, stride 1, no max-pool). Inputs `(N, L)` or `(N, C, L)` give
    the 1-D version (MNIST-1D), `(N, C, H, W)` the 2-D version (CIFAR-10).

    Args:
        input_shape: shape of one input: `(L,)`, `(C, L)` or `(C, H, W)`.
        num_classes: number of outputs.
        width_multiplier: scales every width (rounded, at least 1 channel).
        skip: keep the residual connections; `False` gives the plain twin of Li et al. (2018).
        blocks: `BasicBlock`s per stage: 2 is ResNet-18, 1 is ResNet-10 (the depth axis of Li et al.'s
            skip-connection comparison; 2 + 2·4·`blocks` weight layers).
        norm: ``"batch"`` (BatchNorm), ``"group"`` (GroupNorm, `group_count(channels)` groups) or ``"none"``
            (convolutions then carry biases).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (40,),
        num_classes: int = 10,
        width_multiplier: float = 1.0,
        skip: bool = True,
        norm: str = "batch",
        blocks: int = 2,
    ) -> None:
        super().__init__()
        shape = _check_input_shape(input_shape)
        _check_positive_int("num_classes", num_classes)
        _check_positive_int("blocks", blocks)
        if not isinstance(width_multiplier, (int, float)) or not width_multiplier > 0:
            raise ValueError(f"width_multiplier must be a positive number, got {width_multiplier!r}")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
        if not isinstance(skip, bool):
            raise TypeError(f"skip must be a bool, got {type(skip).__name__}")
        self.input_shape = shape
        self.dim = 2 if len(shape) == 3 else 1
        in_channels = 1 if len(shape) == 1 else shape[0]
        widths = [max(1, round(w * width_multiplier)) for w in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            _conv(self.dim, in_channels, widths[0], 3, 1, norm == "none"),
            _norm_layer(norm, widths[0], self.dim),
            nn.ReLU(),
        )
        layers = []
        c_in = widths[0]
        for stage, c_out in enumerate(widths):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(self.dim, c_in, c_out, stride, norm, skip))
                c_in = c_out
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if len(self.input_shape) == 1:
            x = x.unsqueeze(-2)  # (N, L) -> (N, 1, L)
        x = self.blocks(self.stem(x))
        return self.head(x.mean(dim=tuple(range(2, x.ndim))))


# ----------------------------------------------------------------------------------------------------------------
# Transformer


class Attention(nn.Module):
    """Multi-head self-attention written out (softmax(QKᵀ/√d) V), so it supports double backward and vmap."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        *batch, tokens, dim = x.shape
        head_dim = dim // self.heads
        qkv = self.qkv(x).reshape(*batch, tokens, 3, self.heads, head_dim).movedim(-3, 0).transpose(-3, -2)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (..., heads, tokens, head_dim)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(head_dim), dim=-1)
        out = (weights @ v).transpose(-3, -2).reshape(*batch, tokens, dim)
        return self.proj(out)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: x + Attn(LN(x)), then x + MLP(LN(x)) with a GELU MLP of `mlp_ratio` × width."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A tiny Transformer encoder classifier on patch tokens (ViT-style, pre-LN).

    A 1-D input `(N, L)` or `(N, C, L)` is cut into L / `patch_size` patches of C · patch_size values, an image
    `(N, C, H, W)` into (H/p)(W/p) patches of C · p² values; each patch is embedded linearly, learned position
    embeddings are added, `depth` pre-LN blocks follow, a final LayerNorm, pooling (mean over tokens, or a learned
    CLS token) and a linear head.

    Args:
        input_shape: shape of one input: `(L,)`, `(C, L)` or `(C, H, W)`; lengths must be divisible by
            `patch_size`.
        num_classes: number of outputs.
        patch_size: patch length (1-D) or side (2-D).
        dim: token width d.
        depth: number of blocks.
        heads: attention heads (must divide `dim`).
        mlp_ratio: hidden width of each block's MLP, as a multiple of `dim`.
        pooling: ``"mean"`` or ``"cls"``.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (40,),
        num_classes: int = 10,
        patch_size: int = 4,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: int = 4,
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        shape = _check_input_shape(input_shape)
        for label, value in (
            ("num_classes", num_classes),
            ("patch_size", patch_size),
            ("dim", dim),
            ("depth", depth),
            ("heads", heads),
            ("mlp_ratio", mlp_ratio),
        ):
            _check_positive_int(label, value)
        if dim % heads:
            raise ValueError(f"heads={heads} must divide dim={dim}")
        if pooling not in ("mean", "cls"):
            raise ValueError(f"unknown pooling {pooling!r}; expected 'mean' or 'cls'")
        spatial = shape[-1:] if len(shape) <= 2 else shape[1:]
        if any(s % patch_size for s in spatial):
            raise ValueError(
                f"patch_size={patch_size} must divide the spatial size {spatial} of inputs {shape}"
            )
        self.input_shape = shape
        self.patch_size = patch_size
        self.pooling = pooling
        channels = 1 if len(shape) == 1 else shape[0]
        num_tokens = math.prod(s // patch_size for s in spatial)
        patch_dim = channels * patch_size ** len(spatial)
        self.embed = nn.Linear(patch_dim, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if pooling == "cls" else None
        self.pos = nn.Parameter(0.02 * torch.randn(1, num_tokens + (pooling == "cls"), dim))
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patchify(self, x: Tensor) -> Tensor:
        """`(N, *input_shape)` -> `(N, tokens, patch_dim)`."""
        p = self.patch_size
        n = x.shape[0]
        if len(self.input_shape) == 1:
            x = x.unsqueeze(1)
        if x.ndim == 3:  # (N, C, L) -> (N, L/p, C*p)
            c, length = x.shape[1:]
            return x.reshape(n, c, length // p, p).transpose(1, 2).reshape(n, length // p, c * p)
        c, h, w = x.shape[1:]  # (N, C, H, W) -> (N, HW/p², C*p*p)
        x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n, (h // p) * (w // p), c * p * p)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(self.patchify(x))
        if self.cls is not None:
            tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = self.norm(self.blocks(tokens + self.pos))
        pooled = tokens[:, 0] if self.cls is not None else tokens.mean(dim=1)
        return self.head(pooled)


# ----------------------------------------------------------------------------------------------------------------
# Construction by name


def build_model(
    name: str,
    *,
    input_shape: Sequence[int] = (40,),
    num_classes: int = 10,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    **config,
) -> nn.Module:
    """Build one of `MODELS` by name, initialised deterministically from `seed`.

    The global torch random state is forked for the initialisation, so it is left as it was.

    Args:
        name: ``"mlp"``, ``"resnet18"`` or ``"transformer"``.
        input_shape: shape of one input (`(40,)` for MNIST-1D, `(3, 32, 32)` for CIFAR-10).
        num_classes: number of outputs.
        seed: initialisation seed.
        dtype: parameter dtype.
        **config: the architecture's own options: `MLP(depth, width, activation)`,
            `ResNet18(width_multiplier, skip, norm, blocks)`,
            `Transformer(patch_size, dim, depth, heads, mlp_ratio, pooling)`.

    Raises:
        ValueError: unknown name; TypeError: an option the architecture does not have.
    """
    builders = {"mlp": _build_mlp, "resnet18": ResNet18, "transformer": Transformer}
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    allowed = {
        "mlp": {"depth", "width", "activation"},
        "resnet18": {"width_multiplier", "skip", "norm", "blocks"},
        "transformer": {"patch_size", "dim", "depth", "heads", "mlp_ratio", "pooling"},
    }[name]
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise TypeError(f"{name} has no option(s) {unknown}; its options are {sorted(allowed)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builders[name](input_shape=input_shape, num_classes=num_classes, **config)
    return model.to(dtype)


def _build_mlp(input_shape: Sequence[int], num_classes: int, **config) -> MLP:
    return MLP(math.prod(_check_input_shape(input_shape)), num_classes, **config)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters (those with `requires_grad` unless `trainable_only=False`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
