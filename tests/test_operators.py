import pytest
import torch
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader, TensorDataset

from conftest import assert_unchanged, make_problem, snapshot
from landscape import DenseOperator, HessianOperator, ScaledOperator, dense_hessian


def reference_hessian(model, loss_fn, inputs, targets):
    """Full-batch Hessian by torch.func.hessian of the loss as a function of the flattened parameters."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    buffers = dict(model.named_buffers())

    def loss(theta):
        chunks = torch.split(theta, [s.numel() for s in shapes])
        state = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return loss_fn(functional_call(model, {**state, **buffers}, (inputs,)), targets)

    # reverse-over-reverse with the math attention kernel: the fused kernels are not twice differentiable
    with sdpa_kernel(SDPBackend.MATH):
        return torch.func.jacrev(torch.func.jacrev(loss))(flat)


def test_products_match_torch_func_hessian(problem):
    model, loss_fn, x, y = problem
    H = reference_hessian(model, loss_fn, x, y)
    op = HessianOperator(model, loss_fn, (x, y))
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(op.dim, generator=gen, dtype=torch.float64)
    V = torch.randn(op.dim, 5, generator=gen, dtype=torch.float64)
    assert op.shape == H.shape
    torch.testing.assert_close(op @ v, H @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-10, atol=1e-12)
    assert op.num_matvecs == 6
    torch.testing.assert_close(dense_hessian(model, loss_fn, (x, y)), H, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cache_graph", [True, False])
def test_unequal_batches_equal_full_batch(problem, cache_graph):
    model, loss_fn, x, y = problem
    full = HessianOperator(model, loss_fn, (x, y))
    batches = [(x[:5], y[:5]), (x[5:16], y[5:16]), (x[16:], y[16:])]
    split = HessianOperator(model, loss_fn, batches, cache_graph=cache_graph)
    V = torch.randn(full.dim, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(split @ V, full @ V, rtol=1e-10, atol=1e-12)
    H_split = dense_hessian(model, loss_fn, batches)
    torch.testing.assert_close(H_split, full.to_dense(), rtol=1e-10, atol=1e-12)


def test_dataloader_and_one_shot_iterator(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    full = HessianOperator(model, loss_fn, (x, y)).to_dense()
    loader = DataLoader(TensorDataset(x, y), batch_size=7)  # 24 = 7 + 7 + 7 + 3
    torch.testing.assert_close(HessianOperator(model, loss_fn, loader).to_dense(), full)
    once = iter([(x[:10], y[:10]), (x[10:], y[10:])])
    op = HessianOperator(model, loss_fn, once, cache_graph=False)
    torch.testing.assert_close(op.to_dense(), full)
    torch.testing.assert_close(op.to_dense(), full)  # readable more than once


def test_leaves_model_untouched(problem):
    model, loss_fn, x, y = problem
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    before = snapshot(model)
    op = HessianOperator(model, loss_fn, (x, y))
    op @ torch.ones(op.dim, dtype=torch.float64)
    dense_hessian(model, loss_fn, (x, y))
    assert_unchanged(model, before)


def test_evaluates_in_eval_mode():
    model, loss_fn, x, y = make_problem("cnn")
    model.train()
    H_eval = reference_hessian(model.eval(), loss_fn, x, y)
    model.train()
    op = HessianOperator(model, loss_fn, (x, y))
    torch.testing.assert_close(op.to_dense(), H_eval, rtol=1e-10, atol=1e-12)
    assert model.training


def test_dtype_follows_model():
    model, loss_fn, x, y = make_problem("mlp")
    op64 = HessianOperator(model, loss_fn, (x.float(), y))  # inputs cast to the model's dtype
    assert (op64 @ torch.ones(op64.dim)).dtype == torch.float64
    model32 = model.float()
    op32 = HessianOperator(model32, loss_fn, (x, y))
    assert op32.dtype == torch.float32
    assert (op32 @ torch.ones(op32.dim, dtype=torch.float64)).dtype == torch.float32


def test_parameter_subset_is_a_block_of_the_hessian(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    H = reference_hessian(model, loss_fn, x, y)
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for p in model.parameters()]
    start = sum(sizes[:2])  # parameters "2.weight", "2.bias"
    op = HessianOperator(model, loss_fn, (x, y), params=names[2:])
    assert op.dim == sum(sizes[2:])
    torch.testing.assert_close(op.to_dense(), H[start:, start:], rtol=1e-10, atol=1e-12)
    op_t = HessianOperator(model, loss_fn, (x, y), params=list(model.parameters())[2:])
    torch.testing.assert_close(op_t.to_dense(), H[start:, start:], rtol=1e-10, atol=1e-12)


def test_scaled_and_dense_operators():
    A = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    A = A + A.T
    s = torch.arange(1.0, 7.0, dtype=torch.float64)
    scaled = ScaledOperator(A, s)
    torch.testing.assert_close(scaled.to_dense(), torch.diag(s) @ A @ torch.diag(s))
    torch.testing.assert_close(torch.as_tensor(DenseOperator(A).to_scipy() @ torch.ones(6).numpy()), A.sum(1))


def test_bad_input_has_clear_errors(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    op = HessianOperator(model, loss_fn, (x, y))
    with pytest.raises(ValueError, match="cannot multiply a tensor of shape"):
        op @ torch.ones(op.dim + 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="NaN or inf"):
        op @ torch.full((op.dim,), float("nan"), dtype=torch.float64)
    with pytest.raises(ValueError, match="data is empty"):
        HessianOperator(model, loss_fn, [])
    with pytest.raises(ValueError, match="data is empty"):
        HessianOperator(model, loss_fn, [], cache_graph=False)
    with pytest.raises(ValueError, match="must return a scalar"):
        HessianOperator(
            model, lambda out, t: torch.nn.functional.cross_entropy(out, t, reduction="none"), (x, y)
        )
    with pytest.raises(ValueError, match="not finite"):
        HessianOperator(model, lambda out, t: out.sum() * float("inf"), (x, y))
    with pytest.raises(ValueError, match="disagree on the batch size"):
        HessianOperator(model, loss_fn, (x, y[:-1]))
    with pytest.raises(TypeError, match="pair of tensors"):
        HessianOperator(model, loss_fn, [x])
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        HessianOperator(lambda t: t, loss_fn, (x, y))
    with pytest.raises(ValueError, match="unknown parameter names"):
        HessianOperator(model, loss_fn, (x, y), params=["nope"])


def test_stale_operator_raises_after_parameters_change(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    op = HessianOperator(model, loss_fn, (x, y))
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(RuntimeError, match="changed after this HessianOperator was built"):
        op @ torch.ones(op.dim, dtype=torch.float64)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_batched_and_looped_blocks_agree(kind):
    model, loss_fn, x, y = make_problem(kind)
    V = torch.randn(
        sum(p.numel() for p in model.parameters()),
        4,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(2),
    )
    batched = HessianOperator(model, loss_fn, (x, y), batched=True) @ V
    looped = HessianOperator(model, loss_fn, (x, y), batched=False) @ V
    torch.testing.assert_close(batched, looped, rtol=1e-12, atol=1e-14)
