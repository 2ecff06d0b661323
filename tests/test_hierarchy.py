"""Papyan's class / cross-class decomposition of the cross-entropy Gauss–Newton matrix against a dense float64
computation from per-sample Jacobians."""

import pytest
import torch
from torch.func import functional_call, jacrev

from landscape import GGNOperator
from landscape.hierarchy import class_structure

C = 3


def _problem(n: int = 14, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, C)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = torch.arange(n) % C  # every class present, unequal counts when n % C != 0
    return model, x, y


def _dense_parts(model, x, y):
    """G_class, G_cross, G_within and G from the N·C vectors h_{i,c'} built one by one."""
    params = dict(model.named_parameters())

    def logits(flat, xi):
        pieces, start = {}, 0
        for name, p in params.items():
            pieces[name] = flat[start : start + p.numel()].reshape(p.shape)
            start += p.numel()
        return functional_call(model, pieces, (xi[None],))[0]

    theta = torch.cat([p.detach().reshape(-1) for p in params.values()])
    D, N = theta.numel(), x.shape[0]
    h = torch.zeros(N, C, D, dtype=torch.float64)
    for i in range(N):
        J = jacrev(logits)(theta, x[i])  # (C, D)
        p = torch.softmax(logits(theta, x[i]).detach(), 0)
        for c2 in range(C):
            h[i, c2] = p[c2].sqrt() * J.T @ (torch.eye(C, dtype=torch.float64)[c2] - p)
    G = torch.einsum("icd,ice->de", h, h) / N
    delta = torch.stack([h[y == c].mean(0) for c in range(C)])  # (C, C, D)
    pi = torch.stack([(y == c).double().mean() for c in range(C)])
    dc = delta.mean(1)
    G_class = C * torch.einsum("c,cd,ce->de", pi, dc, dc)
    centred = delta - dc[:, None]
    G_cross = torch.einsum("c,ckd,cke->de", pi, centred, centred)
    return G_class, G_cross, G - G_class - G_cross, G, delta


def test_parts_match_dense_decomposition_and_sum_to_the_ggn():
    model, x, y = _problem()
    G_class, G_cross, G_within, G, delta = _dense_parts(model, x, y)
    # the dense G from h is the GGN itself (the identity diag p − ppᵀ = Σ p_c' (e_c' − p)(e_c' − p)ᵀ)
    ggn = GGNOperator(model, torch.nn.functional.cross_entropy, (x, y)).to_dense()
    torch.testing.assert_close(G, ggn, rtol=1e-10, atol=1e-12)
    # two batches of unequal size: the sums are accumulated across batches
    s = class_structure(model, [(x[:5], y[:5]), (x[5:], y[5:])])
    torch.testing.assert_close(s.cross_means, delta, rtol=1e-10, atol=1e-12)
    M, K = s.class_factor(), s.cross_factor()
    torch.testing.assert_close(M @ M.T, G_class, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(K @ K.T, G_cross, rtol=1e-10, atol=1e-12)
    # the within-class part is a sum of covariances: positive semi-definite, and not zero here
    within = torch.linalg.eigvalsh(G_within)
    assert float(within.min()) > -1e-10 * float(within.max())
    assert float(within.max()) > 1e-3 * float(torch.linalg.eigvalsh(G).max())
    torch.testing.assert_close(s.class_eigenvalues, torch.linalg.eigvalsh(G_class).flip(0)[:C].clamp_min(0))
    torch.testing.assert_close(s.cross_eigenvalues[:4], torch.linalg.eigvalsh(G_cross).flip(0)[:4])
    assert s.class_trace == pytest.approx(float(G_class.trace()), rel=1e-10)
    assert s.cross_trace == pytest.approx(float(G_cross.trace()), rel=1e-10)
    assert s.counts.tolist() == [5, 5, 4]


def test_class_overlap_is_one_in_the_span_and_small_outside():
    model, x, y = _problem()
    s = class_structure(model, (x, y))
    M = s.class_factor()
    inside = M @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert s.class_overlap(inside) == pytest.approx(1.0, abs=1e-10)
    # a vector orthogonal to every class mean has no overlap
    Q, _ = torch.linalg.qr(M)
    v = torch.randn(s.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    outside = v - Q @ (Q.T @ v)
    assert s.class_overlap(outside) == pytest.approx(0.0, abs=1e-10)
    both = s.class_overlap(torch.stack([inside, outside], 1))
    assert both.shape == (2,)
    with pytest.raises(ValueError, match="shape"):
        s.class_overlap(torch.zeros(3))


def test_without_cross_keeps_the_same_class_means():
    model, x, y = _problem()
    full, light = class_structure(model, (x, y)), class_structure(model, (x, y), cross=False)
    torch.testing.assert_close(light.class_means, full.class_means, rtol=1e-10, atol=1e-12)
    assert light.cross_means is None
    with pytest.raises(ValueError, match="cross=True"):
        light.cross_eigenvalues  # noqa: B018


def test_float32_model_matches_float64():
    model, x, y = _problem()
    exact = class_structure(model, (x, y)).class_eigenvalues
    approx = class_structure(model.float(), (x.float(), y)).class_eigenvalues
    torch.testing.assert_close(approx, exact, rtol=1e-4, atol=1e-6)


def test_bad_input_is_named():
    model, x, y = _problem()
    with pytest.raises(ValueError, match="label 7"):
        class_structure(model, (x, torch.full_like(y, 7)))
    with pytest.raises(ValueError, match="integer class indices"):
        class_structure(model, (x, y.double()))
    with pytest.raises(ValueError, match="num_classes = 4"):
        class_structure(model, (x, y), num_classes=4)
    with pytest.raises(ValueError, match="num_classes must be"):
        class_structure(model, (x, y), num_classes=1)
    with pytest.raises(ValueError, match="empty"):
        class_structure(model, [])
