"""DistributedHessianOperator and DistributedGGNOperator against the single-process operators on all data.

Two ranks of a gloo group in spawned processes (rendezvous through a file, gloo on the loopback interface);
each worker writes its results to a file the test reads back.
"""

from __future__ import annotations

import copy
import time
import traceback
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import make_problem
from landscape import GGNOperator, HessianOperator, hessian_trace, top_eigenvalues
from landscape.distributed import DistributedGGNOperator, DistributedHessianOperator

N, BATCH, SPLIT = 24, 5, 7  # rank 0 holds samples [0, 7), rank 1 [7, 24): 7 and 17 in batches of 5
# The cases the ranks compute, and the single-process operator each equals.
CASES = {"uneven": "hessian", "empty_rank": "hessian", "ggn": "ggn"}
JOIN_TIMEOUT_S = 120


def _batches(x, y):
    return [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]


def _probe_blocks(dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (D, 3) block and a transposed, non-contiguous (D, 4) block, both seeded."""
    gen = torch.Generator().manual_seed(1)
    V = torch.randn(dim, 3, generator=gen, dtype=torch.float64)
    W = torch.randn(4, dim, generator=gen, dtype=torch.float64).T
    return V, W


class _CountingCollectives:
    """Wraps `dist.all_gather` / `dist.all_reduce` (in this worker process) to record each call and whether the
    tensor sent was contiguous."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []
        for name, position in (("all_gather", 1), ("all_reduce", 0)):
            setattr(dist, name, self._wrap(name, position, getattr(dist, name)))

    def _wrap(self, name: str, position: int, original):
        def wrapped(*args, **kwargs):
            self.calls.append((name, args[position].is_contiguous()))
            return original(*args, **kwargs)

        return wrapped

    def take(self) -> list[tuple[str, bool]]:
        calls, self.calls = self.calls, []
        return calls


def _values(op) -> dict:
    """Products with the two probe blocks and a vector, the top two eigenvalues and a trace estimate."""
    V, W = _probe_blocks(op.dim)
    return {
        "HV": op @ V,
        "HW": op @ W,
        "Hv": op @ V[:, 0],
        "eig": top_eigenvalues(op, k=2, tol=1e-8, seed=0).values,
        "trace": hessian_trace(op, 20, seed=0).estimate,
    }


def _measure(op, counter: _CountingCollectives) -> dict:
    """`_values` of a distributed operator, with the collectives of its construction and of one product."""
    out = {"construction": counter.take()}
    op @ _probe_blocks(op.dim)[0]
    out["product"] = counter.take()
    out.update(_values(op))
    out["num_samples"] = (op.local_num_samples, op.num_samples)
    counter.take()
    return out


def _error(build, kind: type[Exception] = ValueError) -> str:
    try:
        build()
    except kind as err:
        return str(err)
    return "no error raised"


def _worker(rank: int, world_size: int, rendezvous: str, result_dir: str) -> None:
    results = {}
    try:
        dist.init_process_group(
            "gloo", init_method=rendezvous, rank=rank, world_size=world_size, timeout=timedelta(seconds=60)
        )
        try:
            counter = _CountingCollectives()
            model, loss_fn, x, y = make_problem("mlp", n=N)
            # uneven shards in two data formats: a list of batches (7 samples), a DataLoader (17 samples)
            if rank == 0:
                shard = _batches(x[:SPLIT], y[:SPLIT])
            else:
                dataset = torch.utils.data.TensorDataset(x[SPLIT:], y[SPLIT:])
                shard = torch.utils.data.DataLoader(dataset, batch_size=BATCH)
            results["uneven"] = _measure(DistributedHessianOperator(model, loss_fn, shard), counter)
            results["ggn"] = _measure(DistributedGGNOperator(model, loss_fn, shard), counter)
            # an empty rank 0 (a pair of empty tensors); products rebuilt at every call (cache_graph=False)
            shard = (x[:0], y[:0]) if rank == 0 else _batches(x, y)
            op = DistributedHessianOperator(model, loss_fn, shard, cache_graph=False)
            results["empty_rank"] = _measure(op, counter)
            # errors raised on every rank alike (after the one construction-time collective)
            results["all_empty"] = _error(lambda: DistributedHessianOperator(model, loss_fn, (x[:0], y[:0])))
            params = ["2.weight"] if rank == 0 else None
            results["dim_mismatch"] = _error(
                lambda: DistributedHessianOperator(model, loss_fn, (x, y), params=params)
            )
            results["dtype_mismatch"] = _error(
                lambda: DistributedHessianOperator(
                    copy.deepcopy(model).float() if rank == 0 else model, loss_fn, (x, y)
                )
            )
            # a subgroup holding rank 1 only: there the operator is the Hessian of rank 1's data alone
            subgroup = dist.new_group([1])
            if rank == 0:
                results["subgroup"] = _error(
                    lambda: DistributedHessianOperator(model, loss_fn, (x, y), group=subgroup), RuntimeError
                )
            else:
                op = DistributedHessianOperator(model, loss_fn, _batches(x, y), group=subgroup)
                results["subgroup"] = (op.rank, op.world_size, op.num_samples, op @ _probe_blocks(op.dim)[0])
        finally:
            dist.destroy_process_group()
    except BaseException:
        results = {"error": traceback.format_exc()}
        raise
    finally:
        torch.save(results, f"{result_dir}/rank{rank}.pt")


def _run_ranks(tmp_path, world_size: int) -> list[dict]:
    """Start `world_size` spawned ranks, wait at most JOIN_TIMEOUT_S, and read back what each wrote."""
    context = mp.start_processes(
        _worker,
        args=(world_size, f"file://{tmp_path}/rendezvous", str(tmp_path)),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    try:
        while not context.join(timeout=max(deadline - time.monotonic(), 0.1)):
            if time.monotonic() > deadline:
                pytest.fail(f"the ranks did not finish within {JOIN_TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world_size)]
    for r, res in enumerate(results):
        assert "error" not in res, f"rank {r} failed:\n{res.get('error')}"
    return results


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("dist")
    with pytest.MonkeyPatch.context() as mp_env:
        mp_env.setenv("GLOO_SOCKET_IFNAME", "lo")  # loopback only
        mp_env.setenv("OMP_NUM_THREADS", "1")
        return _run_ranks(tmp_path, 2)


@pytest.fixture(scope="module")
def reference():
    """`_values` of the single-process operators on all N samples."""
    model, loss_fn, x, y = make_problem("mlp", n=N)
    return {
        "hessian": _values(HessianOperator(model, loss_fn, _batches(x, y))),
        "ggn": _values(GGNOperator(model, loss_fn, _batches(x, y))),
    }


@pytest.mark.parametrize("case", list(CASES))
def test_products_equal_single_process(two_ranks, reference, case):
    expected = reference[CASES[case]]
    for res in (r[case] for r in two_ranks):
        for key in ("HV", "HW", "Hv"):
            torch.testing.assert_close(res[key], expected[key], rtol=0, atol=1e-12)
    assert [r[case]["num_samples"] for r in two_ranks] == (
        [(0, N), (N, N)] if case == "empty_rank" else [(SPLIT, N), (N - SPLIT, N)]
    )


def test_ggn_case_is_not_the_hessian(reference):
    """The GGN case checks something of its own: on this network the GGN and the Hessian differ."""
    assert (reference["ggn"]["HV"] - reference["hessian"]["HV"]).abs().max() > 1e-3


@pytest.mark.parametrize("case", list(CASES))
def test_solvers_agree_on_every_rank(two_ranks, reference, case):
    expected = reference[CASES[case]]
    first, second = (r[case] for r in two_ranks)
    assert torch.equal(first["eig"], second["eig"])  # bit for bit: the products are identical on every rank
    assert first["trace"] == second["trace"]
    torch.testing.assert_close(first["eig"], expected["eig"], rtol=1e-10, atol=0)
    assert first["trace"] == pytest.approx(expected["trace"], rel=1e-10)


@pytest.mark.parametrize("case", list(CASES))
def test_one_collective_at_construction_one_all_reduce_per_product(two_ranks, case):
    for res in (r[case] for r in two_ranks):
        assert res["construction"] == [("all_gather", True)]
        assert res["product"] == [("all_reduce", True)]  # contiguous, whatever the local block's layout


def test_errors_raised_on_every_rank(two_ranks):
    for res in two_ranks:
        assert "all 2 ranks are empty" in res["all_empty"]
        assert "disagree on the number of parameters D: {0: 18, 1: 57}" in res["dim_mismatch"]
        assert (
            "disagree on the parameters' dtype: {0: 'torch.float32', 1: 'torch.float64'}"
            in res["dtype_mismatch"]
        )


def test_subgroup(two_ranks, reference):
    assert "not a member of `group`" in two_ranks[0]["subgroup"]
    rank, world_size, num_samples, HV = two_ranks[1]["subgroup"]
    assert (rank, world_size, num_samples) == (0, 1, N)
    torch.testing.assert_close(HV, reference["hessian"]["HV"], rtol=0, atol=1e-12)


@pytest.fixture
def single_rank(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_world_size_one_equals_hessian_operator(single_rank, reference):
    model, loss_fn, x, y = make_problem("mlp", n=N)
    op = DistributedHessianOperator(model, loss_fn, (x, y))
    V, W = _probe_blocks(op.dim)
    torch.testing.assert_close(op @ V, reference["hessian"]["HV"], rtol=0, atol=1e-12)
    torch.testing.assert_close(op @ W, reference["hessian"]["HW"], rtol=0, atol=1e-12)
    assert (op.rank, op.world_size, op.num_samples) == (0, 1, N)


def test_world_size_one_empty_data_is_an_error(single_rank):
    model, loss_fn, *_ = make_problem("mlp", n=N)
    with pytest.raises(ValueError, match="global sample count 0"):
        DistributedHessianOperator(model, loss_fn, [])


def test_not_initialised_is_an_error():
    model, loss_fn, x, y = make_problem("mlp", n=N)
    with pytest.raises(RuntimeError, match="not initialised"):
        DistributedHessianOperator(model, loss_fn, (x, y))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="NCCL needs a GPU")
def test_nccl_world_size_one_on_gpu(tmp_path, reference):
    dist.init_process_group("nccl", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1)
    try:
        model, loss_fn, x, y = make_problem("mlp", n=N)
        with pytest.raises(ValueError, match="NCCL process group needs the model on a GPU"):
            DistributedHessianOperator(model, loss_fn, (x, y))
        op = DistributedHessianOperator(model.cuda(), loss_fn, _batches(x, y))
        V, W = _probe_blocks(op.dim)
        torch.testing.assert_close((op @ V.cuda()).cpu(), reference["hessian"]["HV"], rtol=0, atol=1e-12)
        torch.testing.assert_close((op @ W.cuda()).cpu(), reference["hessian"]["HW"], rtol=0, atol=1e-12)
        values = top_eigenvalues(op, k=2, tol=1e-8, seed=0).values.cpu()
        torch.testing.assert_close(values, reference["hessian"]["eig"], rtol=1e-10, atol=0)
    finally:
        dist.destroy_process_group()
