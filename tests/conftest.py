"""Small seeded float64 problems whose exact Hessians are cheap: an MLP, a CNN with BatchNorm, an attention net."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

torch.set_num_threads(1)


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


class TinyAttention(nn.Module):
    """One self-attention layer (2 heads) over 4 tokens of width 4, then mean pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = self.norm(x)
        h = x + self.attn(h, h, h, need_weights=False)[0]
        return self.head(h.mean(1))


class KeywordModel(nn.Module):
    """A HuggingFace-shaped model around `inner`: keyword inputs, an output object with .logits (and another
    field the output rule must ignore)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask):
        class Output:
            def __init__(self, logits):
                self.logits = logits
                self.hidden = logits * 0

        return Output(self.inner(input_ids * attention_mask))


def make_problem(kind: str, n: int = 24, seed: int = 0):
    """(model, loss_fn, inputs, targets) in float64."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
        inputs = torch.randn(n, 5, generator=gen)
    elif kind == "cnn":
        model = TinyCNN()
        inputs = torch.randn(n, 1, 4, 4, generator=gen)
        with torch.no_grad():  # non-trivial running statistics, then eval
            model.train()
            model(inputs)
    elif kind == "attention":
        model = TinyAttention()
        inputs = torch.randn(n, 4, 4, generator=gen)
    else:
        raise ValueError(kind)
    model = model.double().eval()
    targets = torch.randint(0, 3, (n,), generator=gen)
    return model, F.cross_entropy, inputs.double(), targets


@pytest.fixture(params=["mlp", "cnn", "attention"])
def problem(request):
    return make_problem(request.param)


@pytest.fixture
def mlp_problem():
    return make_problem("mlp")


def snapshot(model: nn.Module):
    """Everything a probe must leave untouched: parameters, buffers, .grad, requires_grad and modes."""
    return (
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [p.requires_grad for p in model.parameters()],
        [m.training for m in model.modules()],
    )


def assert_unchanged(model: nn.Module, before) -> None:
    after = snapshot(model)
    state_a, grads_a, req_a, modes_a = before
    state_b, grads_b, req_b, modes_b = after
    assert state_a.keys() == state_b.keys()
    for k in state_a:
        assert torch.equal(state_a[k], state_b[k]), f"{k} changed"
    for a, b in zip(grads_a, grads_b, strict=True):
        assert (a is None and b is None) or torch.equal(a, b), ".grad changed"
    assert req_a == req_b, "requires_grad changed"
    assert modes_a == modes_b, "train/eval mode changed"
