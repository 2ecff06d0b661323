"""Training: one readable loop driven by a `TrainConfig`, and the same loop for N seeds at once (torch.func.vmap).

`train(config)` builds the model and the data from the config, runs the optimiser for the configured number of
steps, evaluates on the full training and test sets every `eval_every` steps, keeps the checkpoints asked for,
and returns a `TrainResult`. A run whose loss becomes non-finite or explodes ends with status ``"diverged"`` and
the step it happened at; it never raises, so a sweep survives its unstable corners.

`train_seeds(config, seeds)` trains one copy per seed in a single vectorised pass: parameters of the N models
are stacked (`torch.func.stack_module_state`), one batched forward pass gives every copy's loss (hand-batched
matrix products for the MLP, `torch.func.vmap` otherwise), back-propagating their sum gives every copy its own
gradient, and one fused optimiser updates the stacked tensors. Optimiser updates are element-wise, so each copy
follows the arithmetic of its own `train` run (up to the rounding of batched matrix products). Models with
BatchNorm (running statistics are written in place during training) fall back to a loop of `train` calls.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .data import DATASETS, Dataset, load_dataset
from .models import MLP, MODELS, build_model, count_parameters

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "learning_rate",
    "loss_function",
    "paper_recipe",
    "train",
    "train_seeds",
    "vmappable",
]

OPTIMIZERS = ("sgd", "gd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "linear")
LOSSES = ("ce", "mse")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (and, with the code version, its cache key).

    The defaults are the MNIST-1D MLP recipe of Greydanus (2020): Adam, learning rate 1e-2, batch 100, 6000 steps.
    """

    # what is trained, on what
    model: str = "mlp"  # architecture, one of models.MODELS
    model_config: Mapping = field(default_factory=dict)  # its options, e.g. {"depth": 2, "width": 100}
    dataset: str = "mnist1d"  # one of data.DATASETS
    # optimiser
    optimizer: str = "adam"  # "sgd" (minibatch, momentum), "gd" (full batch, momentum), "adam", "adamw"
    lr: float = 1e-2  # peak learning rate
    momentum: float = 0.9  # heavy-ball momentum of sgd/gd (0 = none); unused by adam
    weight_decay: float = 0.0  # coupled L2 for sgd/gd/adam, decoupled for adamw
    schedule: str = "constant"  # after warmup: "constant", "cosine" (to 0) or "linear" (to 0)
    warmup_steps: int = 0  # linear warmup from lr/warmup_steps to lr
    batch_size: int | None = 100  # minibatch size; None = full batch (required by "gd")
    # length
    steps: int | None = 6000  # number of optimiser steps (set exactly one of steps / epochs)
    epochs: int | None = None  # alternatively, passes over the training set
    # objective and randomness
    loss: str = "ce"  # "ce" (cross-entropy) or "mse" (½‖f(x) − onehot(y)‖², mean over samples)
    seed: int = 0  # initialisation seed; the data order uses a separate stream derived from it
    dtype: str = "float32"  # "float32" or "float64"
    # what is recorded
    checkpoint_steps: tuple[int, ...] = ()  # keep the weights after these many steps (0 = initialisation)
    eval_every: int = 500  # full train/test evaluation every this many steps (and at the end)
    divergence_factor: float = 100.0  # diverged when loss is non-finite or > this × the first loss

    def __post_init__(self) -> None:
        def bad(name, expected):
            return ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: expected {expected}")

        object.__setattr__(self, "model_config", dict(self.model_config))
        object.__setattr__(self, "checkpoint_steps", tuple(sorted(set(self.checkpoint_steps))))
        for name, options in (
            ("model", MODELS),
            ("dataset", DATASETS),
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("loss", LOSSES),
            ("dtype", tuple(DTYPES)),
        ):
            if getattr(self, name) not in options:
                raise bad(name, f"one of {options}")
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(
                f"set exactly one of steps and epochs, got steps={self.steps}, epochs={self.epochs}"
            )
        for name in ("steps", "epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise bad(name, "a positive integer or None")
        if self.optimizer == "gd" and self.batch_size is not None:
            raise ValueError("optimizer 'gd' is full-batch: set batch_size=None (or use 'sgd')")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise bad("lr", "a positive number")
        if not 0 <= self.momentum < 1:
            raise bad("momentum", "a number in [0, 1)")
        if self.weight_decay < 0:
            raise bad("weight_decay", "a non-negative number")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise bad("warmup_steps", "a non-negative integer")
        if not isinstance(self.eval_every, int) or self.eval_every < 1:
            raise bad("eval_every", "a positive integer")
        if not self.divergence_factor > 1:
            raise bad("divergence_factor", "a number > 1")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise bad("seed", "an integer")
        if any(not isinstance(s, int) or s < 0 for s in self.checkpoint_steps):
            raise bad("checkpoint_steps", "non-negative integers")

    def __hash__(self) -> int:  # model_config is a dict: hash the canonical JSON form instead
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of every field."""
        out = asdict(self)
        out["checkpoint_steps"] = list(self.checkpoint_steps)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys raise."""
        unknown = sorted(set(d) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}")
        d = dict(d)
        if "checkpoint_steps" in d:
            d["checkpoint_steps"] = tuple(d["checkpoint_steps"])
        return cls(**d)

    def num_steps(self, num_train: int) -> int:
        """Total optimiser steps on a training set of `num_train` samples."""
        return self.steps if self.steps is not None else self.epochs * self.steps_per_epoch(num_train)

    def steps_per_epoch(self, num_train: int) -> int:
        """Minibatches per pass (the last one may be smaller); 1 for full batch."""
        return 1 if self.batch_size is None else math.ceil(num_train / self.batch_size)


@dataclass(frozen=True)
class TrainResult:
    """The outcome of one training run.

    Attributes:
        config: the configuration trained.
        status: ``"finished"`` or ``"diverged"``.
        diverged_step: the step whose loss was non-finite or exploded (None if finished).
        history: one dict per evaluation: step, lr, train_loss, train_acc, test_loss, test_acc, and
            batch_loss (mean minibatch loss since the previous evaluation).
        final: the last evaluation's metrics (NaN when diverged).
        state_dict: final weights (parameters and buffers, detached CPU copies).
        checkpoints: {step: state_dict} for each reached step of `config.checkpoint_steps`.
        num_parameters: trainable parameters of the model.
        wall_time: seconds spent (for `train_seeds`, the vectorised run's time divided by the number of seeds).
        trained_with: ``"single"`` (`train`) or ``"vmap"`` (`train_seeds`).
    """

    config: TrainConfig
    status: str
    diverged_step: int | None
    history: tuple[dict, ...]
    final: dict
    state_dict: dict[str, Tensor]
    checkpoints: dict[int, dict[str, Tensor]]
    num_parameters: int
    wall_time: float
    trained_with: str


# ----------------------------------------------------------------------------------------------------------------
# Pieces shared by both loops


def loss_function(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The training objective by name, as `loss_fn(outputs, targets)` -> mean over the batch.

    ``"ce"``: cross-entropy of the logits. ``"mse"``: ½ Σ_c (f_c(x) − onehot(y)_c)², mean over samples (its
    Hessian with respect to the outputs is the identity).
    """
    if name == "ce":
        return F.cross_entropy
    if name == "mse":
        return _mse
    raise ValueError(f"unknown loss {name!r}; expected one of {LOSSES}")


def _mse(outputs: Tensor, targets: Tensor) -> Tensor:
    onehot = F.one_hot(targets, outputs.shape[-1]).to(outputs.dtype)
    return 0.5 * (outputs - onehot).pow(2).sum(-1).mean()


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate for optimiser step `step` (0-based): linear warmup over `warmup_steps`, then the schedule
    (constant, or cosine / linear decay to 0 at `total_steps`)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr * (1 - progress)


def make_optimizer(config: TrainConfig, params: Sequence[Tensor]) -> torch.optim.Optimizer:
    """The optimiser of `config` over `params` (leaf tensors or parameters, all on one device).

    On CPU and CUDA it is PyTorch's fused implementation (one kernel per step instead of a dozen per tensor):
    the same element-wise update as the default one up to rounding, with far less per-step overhead, which
    dominates for models as small as the MNIST-1D MLP (about 25 % of a step of `train`).
    """
    params = list(params)
    fused = bool(params) and params[0].device.type in ("cpu", "cuda")
    if config.optimizer in ("sgd", "gd"):
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=fused
        )
    optimizer = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def data_generator(seed: int) -> torch.Generator:
    """The data-order stream of a run: separate from the initialisation seed, and a function of it only."""
    return torch.Generator().manual_seed(seed + 0x5EED_0000_0000)


def batch_indices(config: TrainConfig, num_train: int, total_steps: int, gen: torch.Generator):
    """Yield the training-sample indices of each step: a fresh permutation per epoch, cut into batches
    (the whole set, in order, for full batch)."""
    if config.batch_size is None:
        everything = torch.arange(num_train)
        for _ in range(total_steps):
            yield everything
        return
    step = 0
    while step < total_steps:
        order = torch.randperm(num_train, generator=gen)
        for start in range(0, num_train, config.batch_size):
            if step == total_steps:
                return
            yield order[start : start + config.batch_size]
            step += 1


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn, inputs: Tensor, targets: Tensor, batch_size: int = 1000) -> dict:
    """Mean loss and accuracy of `model` on a data set, in eval mode (the model's modes are restored)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        like = next(model.parameters())
        total_loss, correct = 0.0, 0
        for start in range(0, len(inputs), batch_size):
            x = inputs[start : start + batch_size].to(device=like.device, dtype=like.dtype)
            y = targets[start : start + batch_size].to(like.device)
            out = model(x)
            total_loss += float(loss_fn(out, y)) * len(y)
            correct += int((out.argmax(-1) == y).sum())
    finally:
        for m, mode in modes:
            m.training = mode
    return {"loss": total_loss / len(inputs), "acc": correct / len(inputs)}


def _snapshot(named: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in named.items()}


def _diverged(loss: float, first: float | None, factor: float) -> bool:
    return not math.isfinite(loss) or (first is not None and loss > factor * max(first, 1e-12))


def _resolve_data(config: TrainConfig, data: Dataset | None, data_root) -> Dataset:
    if data is None:
        return load_dataset(config.dataset, data_root)
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a landscape.data.Dataset, got {type(data).__name__}")
    return data


NAN_METRICS = {"train_loss": math.nan, "train_acc": math.nan, "test_loss": math.nan, "test_acc": math.nan}


# ----------------------------------------------------------------------------------------------------------------
# One run


def train(
    config: TrainConfig,
    *,
    data: Dataset | None = None,
    data_root=None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train one model as `config` says and return its `TrainResult` (never raises on divergence).

    Args:
        config: the run's configuration.
        data: the data set (default: `load_dataset(config.dataset, data_root)`).
        data_root: where the data set is (image data sets) or cached (MNIST-1D).
        device: where to train (default CPU). Same config and seed on the same device → the same numbers.
        progress: show a progress bar over the steps.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    start_time = time.perf_counter()
    data = _resolve_data(config, data, data_root)
    device = torch.device("cpu" if device is None else device)
    dtype = DTYPES[config.dtype]
    x_train, y_train = data.x_train.to(device, dtype), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device, dtype), data.y_test.to(device)
    total_steps = config.num_steps(len(x_train))

    model = _model_for(config, data, dtype, device)
    loss_fn = loss_function(config.loss)
    optimizer = make_optimizer(config, list(model.parameters()))
    batches = batch_indices(config, len(x_train), total_steps, data_generator(config.seed))

    history: list[dict] = []
    checkpoints: dict[int, dict[str, Tensor]] = {}
    status, diverged_step, first_loss = "finished", None, None
    batch_losses: list[float] = []

    def record(step: int, lr: float) -> dict:
        train_m = evaluate(model, loss_fn, x_train, y_train)
        test_m = evaluate(model, loss_fn, x_test, y_test)
        row = {
            "step": step,
            "lr": lr,
            "batch_loss": sum(batch_losses) / len(batch_losses) if batch_losses else math.nan,
            "train_loss": train_m["loss"],
            "train_acc": train_m["acc"],
            "test_loss": test_m["loss"],
            "test_acc": test_m["acc"],
        }
        batch_losses.clear()
        history.append(row)
        return row

    model.train()
    record(0, learning_rate(config, 0, total_steps))
    if 0 in config.checkpoint_steps:
        checkpoints[0] = _snapshot(model.state_dict())
    for step, idx in enumerate(tqdm(batches, total=total_steps, disable=not progress, desc="train"), start=1):
        lr = learning_rate(config, step - 1, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = loss_fn(model(x_train[idx]), y_train[idx])
        loss_value = float(loss.detach())
        if _diverged(loss_value, first_loss, config.divergence_factor):
            status, diverged_step = "diverged", step
            break
        first_loss = loss_value if first_loss is None else first_loss
        batch_losses.append(loss_value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step in config.checkpoint_steps:
            checkpoints[step] = _snapshot(model.state_dict())
        if step % config.eval_every == 0 or step == total_steps:
            row = record(step, lr)
            if not math.isfinite(row["train_loss"]):
                status, diverged_step = "diverged", step
                break

    final = dict(NAN_METRICS)
    if status == "finished":
        final = {k: history[-1][k] for k in NAN_METRICS}
    return TrainResult(
        config=config,
        status=status,
        diverged_step=diverged_step,
        history=tuple(history),
        final=final,
        state_dict=_snapshot(model.state_dict()),
        checkpoints=checkpoints,
        num_parameters=count_parameters(model),
        wall_time=time.perf_counter() - start_time,
        trained_with="single",
    )


# ----------------------------------------------------------------------------------------------------------------
# N seeds at once


def vmappable(model: nn.Module) -> bool:
    """Whether `train_seeds` can vectorise this model: no module writes buffers during training (BatchNorm)."""
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _model_for(config: TrainConfig, data, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """The freshly initialised model of a config (its seed sets the initialisation)."""
    return build_model(
        config.model,
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        seed=config.seed,
        dtype=dtype,
        **config.model_config,
    ).to(device)


def train_seeds(
    config: TrainConfig,
    seeds: Sequence[int],
    *,
    data: Dataset | None = None,
    data_root=None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> list[TrainResult]:
    """Train `replace(config, seed=s)` for every seed in one vectorised pass; one `TrainResult` per seed.

    Each copy gets its own initialisation and data order (those of its own `train` run). The parameters of the
    N copies are stacked along a new leading dimension, one batched forward pass computes every copy's
    minibatch loss L_i(θ_i), and ordinary back-propagation of Σ_i L_i gives each copy exactly its own gradient
    (∂/∂θ_i Σ_j L_j = ∇L_i(θ_i), as L_j does not depend on θ_i for j ≠ i). One optimiser then updates the stacked
    tensors; its update is element-wise, so each copy follows the arithmetic of its own `train` run up to the
    rounding of batched matrix products. The MLP's forward pass is hand-batched (`torch.baddbmm`); other models
    use `torch.func.vmap` over `torch.func.functional_call`.

    A copy that diverges is marked ``"diverged"`` at its step, its weights are those `train` would return, and the
    others continue. Models with BatchNorm fall back to a loop of `train` calls (same results, no speed-up).

    Args:
        config: the shared configuration (its own `seed` is ignored).
        seeds: distinct integer seeds.
        data, data_root, device, progress: as for `train`.
    """
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds!r}")
    configs = [replace(config, seed=s) for s in seeds]
    start_time = time.perf_counter()
    data = _resolve_data(config, data, data_root)
    device = torch.device("cpu" if device is None else device)
    dtype = DTYPES[config.dtype]
    models = [_model_for(c, data, dtype, device) for c in configs]
    if not vmappable(models[0]) or len(seeds) == 1:
        return [train(c, data=data, device=device, progress=progress) for c in configs]

    x_train, y_train = data.x_train.to(device, dtype), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device, dtype), data.y_test.to(device)
    n_seeds, total_steps = len(seeds), config.num_steps(len(x_train))
    params, buffers = torch.func.stack_module_state(models)  # {name: (N, ...)}, parameters are leaves
    forward = _stacked_forward(models[0])
    per_sample_loss = _per_sample_loss(config.loss)
    leaves = list(params.values())
    optimizer = make_optimizer(config, leaves)
    streams = [batch_indices(c, len(x_train), total_steps, data_generator(c.seed)) for c in configs]

    def losses_of(x: Tensor, y: Tensor) -> Tensor:
        """Mean loss of each copy i on its own batch (x[i], y[i]): shape (N,)."""
        return per_sample_loss(forward(params, buffers, x), y).mean(-1)

    history: list[list[dict]] = [[] for _ in seeds]
    checkpoints: list[dict[int, dict]] = [{} for _ in seeds]
    final_state: list[dict[str, Tensor] | None] = [None] * n_seeds  # kept when a copy diverges
    diverged_step: list[int | None] = [None] * n_seeds
    first_loss: list[float | None] = [None] * n_seeds
    batch_losses: list[list[float]] = [[] for _ in seeds]

    def state_of(i: int) -> dict[str, Tensor]:
        return _snapshot({**{k: v[i] for k, v in params.items()}, **{k: v[i] for k, v in buffers.items()}})

    def mark_diverged(i: int, step: int) -> None:
        diverged_step[i], final_state[i] = step, state_of(i)

    @torch.no_grad()
    def split_metrics(x: Tensor, y: Tensor) -> list[dict]:
        chunk = max(1, 2000 // n_seeds)  # ~2000 rows of activations at a time: quick products, cache-sized
        outputs = torch.cat(
            [
                forward(params, buffers, x[s : s + chunk].expand(n_seeds, -1, *x.shape[1:]))
                for s in range(0, len(x), chunk)
            ],
            dim=1,
        )  # (N, n, classes): every copy on the whole set
        losses = per_sample_loss(outputs, y.expand(n_seeds, -1)).mean(-1)
        accs = (outputs.argmax(-1) == y).double().mean(-1)
        return [{"loss": loss, "acc": acc} for loss, acc in zip(losses.tolist(), accs.tolist(), strict=True)]

    def record(step: int, lr: float) -> None:
        train_m, test_m = split_metrics(x_train, y_train), split_metrics(x_test, y_test)
        for i in range(n_seeds):
            if diverged_step[i] is not None:
                continue
            bl = batch_losses[i]
            history[i].append(
                {
                    "step": step,
                    "lr": lr,
                    "batch_loss": sum(bl) / len(bl) if bl else math.nan,
                    "train_loss": train_m[i]["loss"],
                    "train_acc": train_m[i]["acc"],
                    "test_loss": test_m[i]["loss"],
                    "test_acc": test_m[i]["acc"],
                }
            )
            bl.clear()
            if not math.isfinite(train_m[i]["loss"]):
                mark_diverged(i, step)

    record(0, learning_rate(config, 0, total_steps))
    if 0 in config.checkpoint_steps:
        for i in range(n_seeds):
            checkpoints[i][0] = state_of(i)
    for step in tqdm(range(1, total_steps + 1), disable=not progress, desc=f"train x{n_seeds}"):
        lr = learning_rate(config, step - 1, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = torch.cat([next(s) for s in streams]).to(device)  # each copy's own data order, N × batch
        x = x_train.index_select(0, idx).view(n_seeds, -1, *x_train.shape[1:])
        losses = losses_of(x, y_train.index_select(0, idx).view(n_seeds, -1))
        for i, value in enumerate(losses.tolist()):
            if diverged_step[i] is not None:
                continue
            if _diverged(value, first_loss[i], config.divergence_factor):
                mark_diverged(i, step)  # before this step's update, as `train` stops
            else:
                first_loss[i] = value if first_loss[i] is None else first_loss[i]
                batch_losses[i].append(value)
        if all(d is not None for d in diverged_step):
            break
        # copy i's parameters reach only its own loss, so each gets exactly ∇L_i; assigning the gradients
        # (instead of zero_grad + backward) skips per-step bookkeeping that costs as much as a small product
        grads = torch.autograd.grad(losses.sum(), leaves)
        for leaf, grad in zip(leaves, grads, strict=True):
            leaf.grad = grad.contiguous()  # the fused optimiser reads gradients in the parameters' layout
        optimizer.step()
        if step in config.checkpoint_steps:
            for i in range(n_seeds):
                if diverged_step[i] is None:
                    checkpoints[i][step] = state_of(i)
        if step % config.eval_every == 0 or step == total_steps:
            record(step, lr)

    wall_time = (time.perf_counter() - start_time) / n_seeds
    results = []
    for i, c in enumerate(configs):
        finished = diverged_step[i] is None
        results.append(
            TrainResult(
                config=c,
                status="finished" if finished else "diverged",
                diverged_step=diverged_step[i],
                history=tuple(history[i]),
                final={k: history[i][-1][k] for k in NAN_METRICS} if finished else dict(NAN_METRICS),
                state_dict=state_of(i) if finished else final_state[i],
                checkpoints=checkpoints[i],
                num_parameters=count_parameters(models[i]),
                wall_time=wall_time,
                trained_with="vmap",
            )
        )
    return results


def _per_sample_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss of `loss_function(name)` per sample, for stacked outputs (N, batch, classes) and targets
    (N, batch): returns (N, batch), and the mean over the batch is each copy's loss."""
    if name == "ce":  # cross_entropy wants the classes in dim 1
        return lambda outputs, targets: F.cross_entropy(outputs.transpose(1, 2), targets, reduction="none")
    if name == "mse":
        return lambda outputs, targets: (
            0.5 * (outputs - F.one_hot(targets, outputs.shape[-1]).to(outputs.dtype)).pow(2).sum(-1)
        )
    raise ValueError(f"unknown loss {name!r}; expected one of {LOSSES}")


_StackedForward = Callable[[Mapping[str, Tensor], Mapping[str, Tensor], Tensor], Tensor]


def _stacked_forward(model: nn.Module) -> _StackedForward:
    """`forward(params, buffers, x)`: outputs (N, batch, ...) of N stacked copies of `model`, copy i on x[i].

    `params` and `buffers` hold the copies' tensors stacked along dim 0 (`torch.func.stack_module_state`).
    A plain `MLP` is batched by hand (one `torch.baddbmm` per layer, no vmap overhead); any other model goes
    through `torch.func.vmap` of `torch.func.functional_call`.
    """

    def stateless(layer: nn.Module) -> bool:
        return next(layer.parameters(), None) is None and next(layer.buffers(), None) is None

    hand_batched = type(model) is MLP and all(
        (isinstance(layer, nn.Linear) and layer.bias is not None) or stateless(layer)
        for layer in model.children()
    )
    if hand_batched:

        def mlp_forward(params, buffers, x):
            # Feature-major activations (N, features, batch): every product then has a wide output (the batch,
            # or the layer's inputs for the weight gradient), where a (batch, 10) output of the last layer runs
            # several times slower in BLAS; the weight gradient comes out in the weight's own layout (no copy).
            hidden = x.flatten(2).transpose(1, 2)
            for name, layer in model.named_children():
                if isinstance(layer, nn.Linear):  # yᵀ = W xᵀ + b for each copy
                    weight, bias = params[f"{name}.weight"], params[f"{name}.bias"]
                    hidden = torch.baddbmm(bias.unsqueeze(2), weight, hidden)
                else:  # element-wise activation
                    hidden = layer(hidden)
            return hidden.transpose(1, 2)

        return mlp_forward

    template = copy.deepcopy(model).to("meta")

    def one_copy(p, b, x):
        return torch.func.functional_call(template, (p, b), (x,))

    return torch.func.vmap(one_copy)


# ----------------------------------------------------------------------------------------------------------------
# Recipes


def paper_recipe(name: str, **overrides) -> TrainConfig:
    """The training recipe of the paper's reference models on MNIST-1D (see the reference accuracies).

    ``"mlp"``: Greydanus (2020) MLP, 2 × 100 ReLU, Adam 1e-2, batch 100, 6000 steps.
    ``"resnet18"``: ResNet-18-1D, width × 0.25, GroupNorm (vmappable), SGD 0.05 + momentum 0.9, weight decay
    5e-4, cosine, batch 128, 30 epochs.
    ``"transformer"``: d=64, 2 layers, 4 heads, patch 4, mean pooling, AdamW 1e-3, weight decay 0.05, 200 warmup
    steps then cosine, batch 128, 100 epochs.
    `overrides` replace fields of the recipe.
    """
    recipes = {
        "mlp": TrainConfig(model="mlp", model_config={"depth": 2, "width": 100, "activation": "relu"}),
        "resnet18": TrainConfig(
            model="resnet18",
            model_config={"width_multiplier": 0.25, "norm": "group"},
            optimizer="sgd",
            lr=0.05,
            momentum=0.9,
            weight_decay=5e-4,
            schedule="cosine",
            batch_size=128,
            steps=None,
            epochs=30,
            eval_every=250,
        ),
        "transformer": TrainConfig(
            model="transformer",
            model_config={"patch_size": 4, "dim": 64, "depth": 2, "heads": 4, "pooling": "mean"},
            optimizer="adamw",
            lr=1e-3,
            weight_decay=0.05,
            schedule="cosine",
            warmup_steps=200,
            batch_size=128,
            steps=None,
            epochs=100,
            eval_every=500,
        ),
    }
    if name not in recipes:
        raise ValueError(f"unknown recipe {name!r}; expected one of {tuple(recipes)}")
    return replace(recipes[name], **overrides)
