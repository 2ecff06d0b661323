r"""Data-parallel Hessian products on `torch.distributed`: each rank holds a shard of the data set.

`DistributedHessianOperator` is the `HessianOperator` of the mean loss over the *union* of the shards of all
ranks of a process group; every estimator (`top_eigenvalues`, `hessian_trace`, `spectral_density`, ...) runs on
it unchanged, on every rank at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .operators import HessianOperator, LossFn, batch_size_of, iterate_batches, materialize

__all__ = ["DistributedHessianOperator"]

# The parameter dtypes told apart in the construction-time check (other dtypes share the code -1).
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class DistributedHessianOperator(HessianOperator):
    r"""Hessian of the mean loss over a data set sharded across the ranks of a `torch.distributed` process group.

    Rank r holds the batches :math:`b \in S_r` of its own shard (any data format `HessianOperator` accepts;
    shards may be uneven, and empty on some ranks). The operator is

    .. math::  H = \frac1N \sum_r \sum_{b \in S_r} n_b \, \nabla^2_\theta \bar L_b(\theta),
               \qquad N = \sum_r \sum_{b \in S_r} n_b,

    exactly the single-process `HessianOperator` on the concatenation of all shards (up to the order of the
    floating-point sums). A product :math:`HV` of a block `V` of shape (D, m) computes this rank's unnormalised
    block :math:`\sum_{b \in S_r} n_b H_b V` (a zero block for an empty shard), makes it contiguous, sums it over
    the ranks with one ``all_reduce(SUM)`` and divides by N. (Gloo sums the ranks' memory element by element:
    blocks of different layouts, such as an empty shard's zero block against the transposed result of a batched
    backward pass, or strided views with gaps, would be summed scrambled and silently; NCCL refuses them.)

    Same numbers on every rank: every rank receives the same reduced block, so all products are identical
    across ranks; the solvers are deterministic given their seed (random probes come from a seeded CPU
    `torch.Generator`). Running the same solver with the same arguments and seed on every rank therefore gives
    the same eigenvalues, traces and densities on every rank (on ranks with the same hardware and library
    versions; on mixed hardware the local linear algebra may round differently). Every rank must construct the
    operator and call the same products in the same order: a product called on some ranks only, or an error
    raised on one rank only (a bad batch in its shard, a parameter changed after construction), leaves the
    others waiting in the collective until the process group's timeout (`torchrun` stops the remaining workers
    when one fails).

    Communication: at construction, one ``all_gather`` of three integers per rank (its sample count, D and its
    dtype), from which N is summed and D and the dtype are checked to agree on every rank; per product of m
    vectors, one ``all_reduce`` of D·m values in the operator's dtype (a ring all-reduce sends and receives about
    2·D·m values per rank). Memory per rank: the graphs of this rank's batches only (with `cache_graph=True`),
    the D × m result block (and one D × m copy when the local block is not contiguous), plus the backend's
    internal buffers.

    Backends: gloo with the model on the CPU; NCCL with the model on a GPU (the blocks are on the model's device,
    where NCCL needs them). The device and dtype come from the model's parameters.

    Args:
        model, loss_fn, data, params, cache_graph, batched, unpack, reduction, check_reduction, mode, progress:
            as for `HessianOperator`; `data` is this rank's shard and may be empty. A progress bar on every rank
            is rarely wanted: e.g. ``progress=(rank == 0)``.
        group: the process group whose ranks hold the shards (default: the world group). Every rank of the
            group must build the operator with the same model architecture and `params`.

    Raises:
        RuntimeError: `torch.distributed` is not initialised, or this process is not a member of `group`.
        ValueError: the ranks disagree on D or on the dtype; the shards of all ranks are empty (N = 0); an NCCL
            group with a model that is not on a GPU.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data,
        params: Sequence[str] | Sequence[Tensor] | None = None,
        cache_graph: bool = True,
        batched: bool | None = None,
        *,
        unpack: Callable | None = None,
        reduction: str = "mean",
        check_reduction: bool = True,
        mode: str | None = None,
        progress: bool | None = None,
        group: dist.ProcessGroup | None = None,
    ) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "torch.distributed is not initialised: call torch.distributed.init_process_group(...) first "
                "(under torchrun, init_process_group('gloo') or ('nccl') reads the rendezvous from the environment)"
            )
        self.group = group
        self.rank = dist.get_rank(group)
        if self.rank < 0:
            raise RuntimeError(
                "this process is not a member of `group`: every rank of the group holds a shard"
            )
        self.world_size = dist.get_world_size(group)
        data = materialize(data)
        # Known before HessianOperator builds anything: an empty shard builds no graphs and sums a zero block.
        self._empty_shard = not any(batch_size_of(*b) > 0 for b in iterate_batches(data, unpack))
        super().__init__(
            model,
            loss_fn,
            data,
            params,
            cache_graph,
            batched,
            unpack=unpack,
            reduction=reduction,
            check_reduction=check_reduction,
            mode=mode,
            progress=progress,
        )
        if dist.get_backend(group) == "nccl" and self.device.type != "cuda":
            raise ValueError(
                f"an NCCL process group needs the model on a GPU, but its parameters are on {self.device}: move "
                "the model to this rank's GPU, or use a gloo group for a CPU model"
            )
        self.local_num_samples = super().num_samples
        self.num_global_samples = self._gather_counts()

    @property
    def num_samples(self) -> int:
        """N: the samples of all ranks' shards together (gathered once, at construction)."""
        return self.num_global_samples

    def _gather_counts(self) -> int:
        """The one construction-time collective: every rank's (sample count, D, dtype); returns N."""
        dtype_code = _DTYPES.index(self.dtype) if self.dtype in _DTYPES else -1
        mine = torch.tensor(
            [self.local_num_samples, self.dim, dtype_code], dtype=torch.int64, device=self.device
        )
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(gathered, mine, group=self.group)
        counts, dims, codes = torch.stack(gathered).cpu().T.tolist()
        if len(set(dims)) > 1:
            raise ValueError(
                f"the ranks disagree on the number of parameters D: {dict(enumerate(dims))} (rank: D); every rank "
                "must build the operator on the same model architecture and `params`"
            )
        if len(set(codes)) > 1:
            names = {r: str(_DTYPES[c]) if c >= 0 else "other" for r, c in enumerate(codes)}
            raise ValueError(
                f"the ranks disagree on the parameters' dtype: {names} (rank: dtype); convert the model to one "
                "dtype on every rank"
            )
        total = sum(counts)
        if total == 0:
            raise ValueError(
                f"the shards of all {self.world_size} ranks are empty (global sample count 0): no samples to "
                "define the loss on"
            )
        return total

    def _check_data_nonempty(self) -> None:
        """An empty shard is allowed here; only an empty union of all shards is an error (`_gather_counts`)."""

    def _gradient_graphs(self, progress: bool | None = False) -> Iterator[tuple[int, tuple[Tensor, ...]]]:
        if self._empty_shard:  # HessianOperator refuses empty data; here the other ranks hold the samples
            return iter(())
        return super()._gradient_graphs(progress)

    def _matmat(self, V: Tensor) -> Tensor:
        total, _ = self._summed_matmat(V)
        total = total.contiguous()  # one layout on every rank: gloo sums memory element by element
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=self.group)
        return total.div_(self.num_global_samples)
