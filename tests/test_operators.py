import copy

import pytest
import torch
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader, TensorDataset

from conftest import KeywordModel, assert_unchanged, make_problem, snapshot
from landscape import DenseOperator, HessianOperator, ScaledOperator, dense_hessian
from landscape.operators import CurvatureOperator


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
    for mode in ("eval", "train"):
        op = HessianOperator(model, loss_fn, (x, y), mode=mode)
        op @ torch.ones(op.dim, dtype=torch.float64)
        dense_hessian(model, loss_fn, (x, y), mode=mode)
    assert_unchanged(model, before)


def test_evaluates_in_eval_mode():
    model, loss_fn, x, y = make_problem("cnn")
    model.train()
    H_eval = reference_hessian(model.eval(), loss_fn, x, y)
    model.train()
    with pytest.warns(UserWarning, match=r"train mode with bn.*eval-mode curvature.*mode='train'"):
        op = HessianOperator(model, loss_fn, (x, y))
    torch.testing.assert_close(op.to_dense(), H_eval, rtol=1e-10, atol=1e-12)
    assert model.training
    torch.testing.assert_close(HessianOperator(model, loss_fn, (x, y), mode="eval").to_dense(), H_eval)


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
    with pytest.raises(TypeError, match=r"\(inputs, targets\) pair"):
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


# ---------------------------------------------------------------------------------------------------------------
# Reductions, modes, batch formats (issue 13)


def _sum_ce(out, t):
    return torch.nn.functional.cross_entropy(out, t, reduction="sum")


def test_summed_loss_is_detected_and_accepted_when_declared(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    batches = [(x[:10], y[:10]), (x[10:], y[10:])]
    mean_op = HessianOperator(model, loss_fn, batches)
    with pytest.raises(ValueError, match=r"looks like a sum.*reduction='sum'"):
        HessianOperator(model, _sum_ce, batches)
    with pytest.raises(ValueError, match=r"looks like a sum"):
        HessianOperator(model, _sum_ce, batches, cache_graph=False)
    summed = HessianOperator(model, _sum_ce, batches, reduction="sum")
    torch.testing.assert_close(summed.to_dense(), mean_op.to_dense(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dense_hessian(model, _sum_ce, batches, reduction="sum"), mean_op.to_dense())
    with pytest.raises(ValueError, match=r"looks like a mean.*reduction='mean'"):
        HessianOperator(model, loss_fn, batches, reduction="sum")
    with pytest.raises(ValueError, match="unknown reduction"):
        HessianOperator(model, loss_fn, batches, reduction="none")


def test_loss_that_is_neither_mean_nor_sum_is_an_error(mlp_problem):
    model, _, x, y = mlp_problem

    def sum_plus_penalty(out, t):
        return _sum_ce(out, t) + 10.0

    with pytest.raises(ValueError, match="neither a mean nor a sum"):
        HessianOperator(model, sum_plus_penalty, (x, y))
    op = HessianOperator(model, sum_plus_penalty, (x, y), check_reduction=False)  # the user knows better
    assert op.dim > 0


def _train_mode_reference(model, loss_fn, x, y):
    """Hessian with BatchNorm on batch statistics: functional_call without running statistics, in train mode."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    model.train()
    bn = model.bn
    saved = {k: bn._buffers[k] for k in ("running_mean", "running_var", "num_batches_tracked")}
    for k in saved:
        bn._buffers[k] = None
    try:

        def loss(theta):
            chunks = torch.split(theta, [s.numel() for s in shapes])
            state = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
            return loss_fn(functional_call(model, state, (x,)), y)

        return torch.autograd.functional.hessian(loss, flat)
    finally:
        bn._buffers.update(saved)
        model.eval()


def test_train_mode_uses_batch_statistics_and_leaves_running_statistics():
    model, loss_fn, x, y = make_problem("cnn")
    H_train = _train_mode_reference(model, loss_fn, x, y)
    H_eval = reference_hessian(model, loss_fn, x, y)
    assert (H_train - H_eval).abs().max() > 1e-3  # the two quantities differ on this problem
    before = snapshot(model)
    op = HessianOperator(model, loss_fn, (x, y), mode="train")
    torch.testing.assert_close(op.to_dense(), H_train, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dense_hessian(model, loss_fn, (x, y), mode="train"), H_train)
    lazy = HessianOperator(model, loss_fn, (x, y), mode="train", cache_graph=False)
    torch.testing.assert_close(lazy.to_dense(), H_train, rtol=1e-10, atol=1e-12)
    assert_unchanged(model, before)  # running statistics, num_batches_tracked and modes as they were


def test_train_mode_refuses_dropout(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    with_dropout = torch.nn.Sequential(torch.nn.Dropout(0.1), *model).double()
    with pytest.raises(ValueError, match=r"mode='train' with dropout.*probability to 0"):
        HessianOperator(with_dropout, loss_fn, (x, y), mode="train")
    with_dropout[0].p = 0.0  # switched off: the train-mode loss is deterministic again
    op = HessianOperator(with_dropout, loss_fn, (x, y), mode="train")
    torch.testing.assert_close(op.to_dense(), HessianOperator(model, loss_fn, (x, y)).to_dense())
    with pytest.raises(ValueError, match="unknown mode"):
        HessianOperator(model, loss_fn, (x, y), mode="training")


class _TwoInputModel(torch.nn.Module):
    def __init__(self, inner, output="tensor"):
        super().__init__()
        self.inner, self.output = inner, output

    def forward(self, x, mask):
        out = self.inner(x * mask)
        return {"tensor": out, "tuple": (out, out.sum()), "dict": {"logits": out, "aux": 1}}[self.output]


def test_batch_formats_and_model_outputs(mlp_problem):
    from landscape import unpack_first_two, unpack_inputs_then_target

    model, loss_fn, x, y = mlp_problem
    mask = torch.ones_like(x)
    mask[:, 0] = 0
    expected = HessianOperator(model, loss_fn, [(x[:10] * mask[:10], y[:10]), (x[10:] * mask[10:], y[10:])])
    H = expected.to_dense()
    halves = [slice(0, 10), slice(10, None)]
    dict_batches = [{"input_ids": x[i], "attention_mask": mask[i], "labels": y[i]} for i in halves]
    hf = KeywordModel(model)
    torch.testing.assert_close(HessianOperator(hf, loss_fn, dict_batches).to_dense(), H)
    torch.testing.assert_close(dense_hessian(hf, loss_fn, dict_batches), H)
    for output in ("tensor", "tuple", "dict"):
        two = _TwoInputModel(model, output)
        nested = [((x[i], mask[i]), y[i]) for i in halves]
        torch.testing.assert_close(HessianOperator(two, loss_fn, nested).to_dense(), H)
    flat = [(x[i], mask[i], y[i]) for i in halves]
    with pytest.raises(TypeError, match=r"ambiguous.*unpack_inputs_then_target"):
        HessianOperator(_TwoInputModel(model), loss_fn, flat)
    op = HessianOperator(_TwoInputModel(model), loss_fn, flat, unpack=unpack_inputs_then_target)
    torch.testing.assert_close(op.to_dense(), H)
    extra = [(x[i] * mask[i], y[i], torch.arange(3)) for i in halves]
    torch.testing.assert_close(HessianOperator(model, loss_fn, extra, unpack=unpack_first_two).to_dense(), H)
    with pytest.raises(TypeError, match="exactly one target entry"):
        HessianOperator(hf, loss_fn, [{"input_ids": x, "attention_mask": mask}])
    with pytest.raises(TypeError, match="cannot read the model output"):
        HessianOperator(torch.nn.Sequential(model, _Wrap()), loss_fn, (x, y))


class _Wrap(torch.nn.Module):
    def forward(self, out):
        return {"scores": out}


def test_datasets_of_samples_are_batched(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    full = HessianOperator(model, loss_fn, (x, y)).to_dense()

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(zip(x, y, strict=True))

    torch.testing.assert_close(HessianOperator(model, loss_fn, Stream()).to_dense(), full)
    torch.testing.assert_close(HessianOperator(model, loss_fn, TensorDataset(x, y)).to_dense(), full)
    torch.testing.assert_close(dense_hessian(model, loss_fn, Stream()), full)


def test_replaced_parameter_is_detected(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    op = HessianOperator(model, loss_fn, (x, y))
    model[0].weight = torch.nn.Parameter(model[0].weight.detach() + 1)
    with pytest.raises(RuntimeError, match=r"parameter '0\.weight' was replaced"):
        op @ torch.ones(op.dim, dtype=torch.float64)


def test_non_finite_loss_is_the_same_error_for_dense_hessian(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    bad = x.clone()
    bad[0, 0] = float("nan")
    for build in (HessianOperator, dense_hessian):
        with pytest.raises(ValueError, match="the loss is not finite"):
            build(model, loss_fn, (bad, y))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_products_come_back_in_float32(mlp_problem, dtype):
    model, loss_fn, x, y = mlp_problem
    half = copy.deepcopy(model).to(dtype)
    op = HessianOperator(half, loss_fn, (x, y))
    assert op.dtype == dtype
    assert op.work_dtype == torch.float32
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0))
    hv = op @ v
    assert hv.dtype == torch.float32
    reference = HessianOperator(copy.deepcopy(half).float(), loss_fn, (x.float(), y)) @ v
    assert float((hv - reference).norm() / reference.norm()) < 0.1  # half-precision products: ~1e-2 noise


class _SecondMoment(CurvatureOperator):
    """C = (1/N) Σ_i x_i x_iᵀ on a model with one parameter per input feature: the base's data handling with a
    closed-form product (`_prepare` keeps the batch's inputs, `_product` is X_bᵀ X_b V)."""

    def _prepare(self, inputs, targets, n):
        return inputs

    def _product(self, X, V):
        return X.T @ (X @ V)


@pytest.mark.parametrize("cache_graph", [True, False])
def test_curvature_operator_base_weights_batches_and_checks_its_data(cache_graph):
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 1, bias=False).double()  # D = 5: one parameter per input feature
    x = torch.randn(24, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.zeros(24, 1, dtype=torch.float64)
    mse = torch.nn.functional.mse_loss
    batches = [(x[:5], y[:5]), (x[5:5], y[5:5]), (x[5:16], y[5:16]), (x[16:], y[16:])]  # uneven, one empty
    op = _SecondMoment(model, mse, batches, cache_graph=cache_graph)
    assert (op.cache_graph, op.num_samples, op.dim) == (cache_graph, 24, 5)
    torch.testing.assert_close(op.to_dense(), x.T @ x / 24, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="data is empty: no samples to define the loss on"):
        _SecondMoment(model, mse, [(x[:0], y[:0])], cache_graph=cache_graph)
    with torch.no_grad():
        model.weight.add_(1.0)
    if cache_graph:  # the states were built from the old parameters
        with pytest.raises(RuntimeError, match="parameters changed after this _SecondMoment was built"):
            op @ torch.ones(5, dtype=torch.float64)
    else:
        torch.testing.assert_close(op.to_dense(), x.T @ x / 24, rtol=1e-12, atol=1e-14)


def test_half_precision_large_batches_do_not_overflow():
    # n_b · loss and the sum over batches exceed float16's 65504: weights and sums are applied in float32
    model = torch.nn.Linear(4, 1, bias=False).half()
    x = torch.ones(40000, 4)
    batches = [(x[i : i + 10000], torch.zeros(10000, 1)) for i in range(0, 40000, 10000)]
    op = HessianOperator(model, torch.nn.functional.mse_loss, batches)
    hv = op @ torch.eye(4)[:, 0]
    torch.testing.assert_close(hv, torch.full((4,), 2.0))  # H = 2 x xᵀ for x = 1


def test_failed_product_restores_the_model_at_once(monkeypatch):
    model, loss_fn, x, y = make_problem("cnn")
    op = HessianOperator(model, loss_fn, (x, y), mode="train", cache_graph=False)

    def out_of_memory(*args):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(op, "_product", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError) as caught:
        op @ torch.ones(op.dim, dtype=torch.float64)
    assert caught.value is not None  # the traceback is still held, as in a notebook
    assert model.bn.running_mean is not None
    assert not model.training


def test_train_mode_refuses_sync_batchnorm(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    synced = torch.nn.Sequential(*model[:1], torch.nn.SyncBatchNorm(6), *model[1:]).double()
    with pytest.raises(ValueError, match="SyncBatchNorm"):
        HessianOperator(synced, loss_fn, (x, y), mode="train")


def test_half_precision_products_scale_tiny_vectors_before_the_cast():
    from landscape import DenseOperator

    g = torch.Generator().manual_seed(0)
    A = torch.randn(64, 64, generator=g, dtype=torch.float64)
    A = (A + A.T) / 2
    op = DenseOperator(A.half())
    # entries ~1e-7: subnormal in float16 (smallest normal 6e-5, smallest subnormal 6e-8), so a plain cast keeps
    # about one bit of each
    x = 1e-7 * torch.randn(64, 2, generator=g, dtype=torch.float64)
    exact = A.half().double() @ x
    got = op @ x
    assert got.dtype == torch.float64
    assert float((got - exact).norm() / exact.norm()) < 5e-3
    plain = (A.half() @ x.half()).double()  # what an unscaled cast gives
    assert float((plain - exact).norm() / exact.norm()) > 0.1
