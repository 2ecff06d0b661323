"""Reference problems shared by every benchmark script (built deterministically from a seed)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass
class Problem:
    name: str
    model: nn.Module
    loss_fn: object
    inputs: Tensor
    targets: Tensor

    @property
    def data(self) -> tuple[Tensor, Tensor]:
        return self.inputs, self.targets

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def p1_mlp(dtype: torch.dtype = torch.float64, seed: int = 0) -> Problem:
    """P1: tanh MLP 40-64-64-10 on 512 fixed samples (small enough for an exact dense Hessian)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(40, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))
    model = model.to(dtype)
    inputs = torch.randn(512, 40, generator=gen, dtype=dtype)
    targets = torch.randint(0, 10, (512,), generator=gen)
    return Problem("P1 tanh MLP 40-64-64-10, 512 samples", model, F.cross_entropy, inputs, targets)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet-style CNN with BatchNorm: stem 32, blocks 32, 64 (x2), 128 (x2); about 0.68M parameters."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.blocks = nn.Sequential(
            BasicBlock(32, 32, 1),
            BasicBlock(32, 64, 2),
            BasicBlock(64, 64, 1),
            BasicBlock(64, 128, 2),
            BasicBlock(128, 128, 1),
        )
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def p2_resnet(dtype: torch.dtype = torch.float32, seed: int = 0, warm_bn: bool = True) -> Problem:
    """P2: the ResNet-style CNN (BatchNorm in eval, running statistics set by a few train-mode passes), one batch
    of 128 random 3x32x32 images with random labels."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SmallResNet().to(dtype)
    inputs = torch.randn(128, 3, 32, 32, generator=gen, dtype=dtype)
    targets = torch.randint(0, 10, (128,), generator=gen)
    if warm_bn:
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(inputs)
    model.eval()
    return Problem(
        "P2 ResNet-style CNN + BatchNorm (eval), batch 128 of 3x32x32",
        model,
        F.cross_entropy,
        inputs,
        targets,
    )
