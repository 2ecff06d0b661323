r"""Data-parallel curvature products on `torch.distributed`: each rank holds a shard of the data set.

`DataParallelMixin` turns any `CurvatureOperator` into the operator of the mean loss over the *union* of the
shards of all ranks of a process group: `DistributedHessianOperator` (the `HessianOperator`) and
`DistributedGGNOperator` (the `GGNOperator`); every estimator (`top_eigenvalues`, `hessian_trace`,
`spectral_density`, ...) runs on them unchanged, on every rank at once.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from .curvature import GGNOperator
from .operators import HessianOperator

__all__ = ["DataParallelMixin", "DistributedGGNOperator", "DistributedHessianOperator"]

# The parameter dtypes told apart in the construction-time check (other dtypes share the code -1).
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class DataParallelMixin:
    r"""Data parallelism for any `CurvatureOperator`, mixed in before it (``class D(DataParallelMixin,
    GGNOperator)``): the curvature of the mean loss over a data set sharded across the ranks of a
    `torch.distributed` process group.

    Rank r holds the batches :math:`b \in S_r` of its own shard (any data format `HessianOperator` accepts;
    shards may be uneven, and empty on some ranks: the mixin overrides `CurvatureOperator._empty_data` to allow
    that, and reduces the local block of `CurvatureOperator._summed_matmat`). The operator is

    .. math::  C = \frac1N \sum_r \sum_{b \in S_r} C_b, \qquad N = \sum_r \sum_{b \in S_r} n_b,

    with :math:`C_b` the operator's matrix summed over the :math:`n_b` samples of batch b: exactly the
    single-process operator on the concatenation of all shards (up to the order of the floating-point sums). A
    product :math:`CV` of a block `V` of shape (D, m) computes this rank's unnormalised block
    :math:`\sum_{b \in S_r} C_b V` (a zero block for an empty shard), makes it contiguous, sums it over the ranks
    with one ``all_reduce(SUM)`` and divides by N. (Gloo sums the ranks' memory element by element: blocks of
    different layouts, such as an empty shard's zero block against the transposed result of a batched backward
    pass, or strided views with gaps, would be summed scrambled and silently; NCCL refuses them.)

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
    2·D·m values per rank). Memory per rank: what the operator caches for this rank's batches only (with
    `cache_graph=True`: for the Hessian their graphs), the D × m result block (and one D × m copy when the local
    block is not contiguous), plus the backend's internal buffers.

    Backends: gloo with the model on the CPU; NCCL with the model on a GPU (the blocks are on the model's device,
    where NCCL needs them). The device and dtype come from the model's parameters.

    Args:
        model, loss_fn, data, ...: as for the operator mixed into (for `HessianOperator`: params, cache_graph,
            batched, unpack, reduction, check_reduction, mode, progress); `data` is this rank's shard and may be
            empty. A progress bar on every rank is rarely wanted: e.g. ``progress=(rank == 0)``.
        group: the process group whose ranks hold the shards (default: the world group). Every rank of the
            group must build the operator with the same model architecture and `params`.

    Attributes:
        rank, world_size: this process's rank in `group` and the group's size.
        local_num_samples: the samples of this rank's shard; `num_samples` is N, of all shards together.

    Raises:
        RuntimeError: `torch.distributed` is not initialised, or this process is not a member of `group`.
        ValueError: the ranks disagree on D or on the dtype; the shards of all ranks are empty (N = 0); an NCCL
            group with a model that is not on a GPU.
    """

    def __init__(self, *args, group: dist.ProcessGroup | None = None, **kwargs) -> None:
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
        super().__init__(*args, **kwargs)
        if dist.get_backend(group) == "nccl" and self.device.type != "cuda":
            raise ValueError(
                f"an NCCL process group needs the model on a GPU, but its parameters are on {self.device}: move "
                "the model to this rank's GPU, or use a gloo group for a CPU model"
            )
        self.local_num_samples = self._count_samples()
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

    def _empty_data(self) -> None:
        """An empty shard is allowed here; only an empty union of all shards is an error (`_gather_counts`)."""

    def _matmat(self, V: Tensor) -> Tensor:
        total, _ = self._summed_matmat(V)
        total = total.contiguous()  # one layout on every rank: gloo sums memory element by element
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=self.group)
        return total.div_(self.num_global_samples)


class DistributedHessianOperator(DataParallelMixin, HessianOperator):
    r"""Hessian of the mean loss over a data set sharded across the ranks of a `torch.distributed` process group.

    .. math::  H = \frac1N \sum_r \sum_{b \in S_r} n_b \, \nabla^2_\theta \bar L_b(\theta),
               \qquad N = \sum_r \sum_{b \in S_r} n_b,

    exactly the single-process `HessianOperator` on the concatenation of all shards :math:`S_r` (up to the order
    of the floating-point sums). Arguments: those of `HessianOperator`, `data` being this rank's shard, and
    `group`. Products, communication, memory, backends and errors: `DataParallelMixin`.
    """


class DistributedGGNOperator(DataParallelMixin, GGNOperator):
    """`GGNOperator` of the mean loss over the shards of all ranks of a process group (see `DataParallelMixin`)."""
