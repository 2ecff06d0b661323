"""Training: one readable loop driven by a `TrainConfig`, and the same loop for N seeds at once (torch.func.vmap).

`train(config)` builds the model and the data from the config (or starts from given weights), runs the optimiser
for the configured number of steps, evaluates on the full training and test sets every `eval_every` steps (with
an optional hook that adds its own values, e.g. λmax, to each evaluation), keeps the checkpoints asked for, and
returns a `TrainResult`. Two rules end a run early, the same for every loop of the project (`_RunLog`): a loss
that becomes non-finite or explodes ends it with status ``"diverged"`` at that step (it never raises, so a sweep
survives its unstable corners), and ``config.stop_loss`` ends it with status ``"reached"`` at the first
evaluation whose full training loss is at most that value (to compare networks at equal training loss;
``config.stop_refine`` evaluates every step near the target, so the stop lands on the first step below it).

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

from .data import DATASETS, Dataset, load_dataset
from .models import MLP, MODELS, build_model, count_parameters
from .progress import progress_bar

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
    stop_loss: float | None = None  # stop at the first evaluation whose full training loss is <= this
    # check the training loss at every step once an evaluation's is <= stop_refine × stop_loss, so that the stop
    # lands on the first step below stop_loss, not up to eval_every steps past it (None: at evaluations only)
    stop_refine: float | None = None

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
        if self.stop_loss is not None and not (
            isinstance(self.stop_loss, (int, float))
            and not isinstance(self.stop_loss, bool)
            and math.isfinite(self.stop_loss)
        ):
            raise bad("stop_loss", "a finite number or None")
        if self.stop_refine is not None:
            if self.stop_loss is None:
                raise ValueError(f"TrainConfig.stop_refine={self.stop_refine!r} needs stop_loss to be set")
            if not (
                isinstance(self.stop_refine, (int, float))
                and not isinstance(self.stop_refine, bool)
                and 1 <= self.stop_refine < math.inf
            ):
                raise bad("stop_refine", "a finite number >= 1 or None")
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
        status: ``"finished"`` (every step taken), ``"reached"`` (stopped at the first evaluation whose full
            training loss was <= ``config.stop_loss``) or ``"diverged"``.
        diverged_step: the step whose loss was non-finite or exploded (None otherwise).
        reached_step: the step where the training loss reached ``config.stop_loss`` (None otherwise).
        history: one dict per evaluation: step, lr, train_loss, train_acc, test_loss, test_acc, and
            batch_loss (mean minibatch loss since the previous evaluation).
        final: the last evaluation's metrics (NaN when diverged).
        state_dict: final weights (parameters and buffers, detached CPU copies).
        checkpoints: {step: state_dict} for each reached step of `config.checkpoint_steps`.
        num_parameters: trainable parameters of the model.
        wall_time: seconds spent (for `train_seeds`, the vectorised run's time divided by the number of seeds).
        trained_with: ``"single"`` (`train`) or ``"vmap"`` (`train_seeds`).
        started_from: ``"initialisation"`` (the config's own) or ``"given weights"`` (``train(start=...)``: the
            config alone does not determine the run, so `results.save_result` refuses to store it).
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
    reached_step: int | None = None
    started_from: str = "initialisation"


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


def _resolve_data(config: TrainConfig, data: Dataset | None, data_root) -> Dataset:
    if data is None:
        return load_dataset(config.dataset, data_root)
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a landscape.data.Dataset, got {type(data).__name__}")
    return data


NAN_METRICS = {"train_loss": math.nan, "train_acc": math.nan, "test_loss": math.nan, "test_acc": math.nan}


class _RunLog:
    """The bookkeeping of one run, shared by `train` and each copy of `train_seeds`: the history, the
    checkpoints, and the two rules that end a run early.

    - Divergence (the one rule): a minibatch loss that is non-finite or exceeds ``divergence_factor`` × the
      first minibatch loss (the run ends at that step with the weights it had before the step's update), or a
      non-finite full training loss at an evaluation (it ends there, with the weights evaluated).
    - Stop (``config.stop_loss``): the first evaluation whose full training loss is <= ``stop_loss``. With
      ``config.stop_refine``, once an evaluation has seen a training loss <= ``stop_refine × stop_loss``
      (`refining`), the training loss is also checked at every step in between (a stop check, which adds a
      history row only when it stops the run), so the run stops at the first step whose loss is <= ``stop_loss``.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.history: list[dict] = []
        self.checkpoints: dict[int, dict[str, Tensor]] = {}
        self.status = "finished"
        self.diverged_step: int | None = None
        self.reached_step: int | None = None
        self.first_loss: float | None = None
        self.batch_losses: list[float] = []

    @property
    def running(self) -> bool:
        return self.diverged_step is None and self.reached_step is None

    @property
    def refining(self) -> bool:
        """Whether the run is close enough to ``stop_loss`` to be evaluated at every step (``stop_refine``)."""
        refine, stop = self.config.stop_refine, self.config.stop_loss
        if not (self.running and refine is not None and self.history):
            return False
        return self.history[-1]["train_loss"] <= refine * stop

    def batch_loss(self, step: int, value: float) -> bool:
        """Record step `step`'s minibatch loss; False (the run has diverged) if it breaks the divergence rule."""
        first = self.first_loss
        if not math.isfinite(value) or (
            first is not None and value > self.config.divergence_factor * max(first, 1e-12)
        ):
            self.status, self.diverged_step = "diverged", step
            return False
        self.first_loss = value if first is None else first
        self.batch_losses.append(value)
        return True

    def evaluation(
        self, step: int, lr: float, train_m: Mapping, test_m: Mapping, extra: Mapping | None = None
    ):
        """Append the history row of an evaluation at `step`; applies the divergence and stop rules."""
        bl = self.batch_losses
        row = {
            "step": step,
            "lr": lr,
            "batch_loss": sum(bl) / len(bl) if bl else math.nan,
            "train_loss": train_m["loss"],
            "train_acc": train_m["acc"],
            "test_loss": test_m["loss"],
            "test_acc": test_m["acc"],
            **(extra or {}),
        }
        bl.clear()
        self.history.append(row)
        stop = self.config.stop_loss
        if not math.isfinite(row["train_loss"]):
            self.status, self.diverged_step = "diverged", step
        elif stop is not None and row["train_loss"] <= stop:
            self.status, self.reached_step = "reached", step
        return row

    def result(
        self, state: dict, num_parameters: int, wall_time: float, trained_with: str, started_from: str
    ) -> TrainResult:
        final = dict(NAN_METRICS)
        if self.status != "diverged":
            final = {k: self.history[-1][k] for k in NAN_METRICS}
        return TrainResult(
            config=self.config,
            status=self.status,
            diverged_step=self.diverged_step,
            history=tuple(self.history),
            final=final,
            state_dict=state,
            checkpoints=self.checkpoints,
            num_parameters=num_parameters,
            wall_time=wall_time,
            trained_with=trained_with,
            reached_step=self.reached_step,
            started_from=started_from,
        )


def _is_evaluation(config: TrainConfig, step: int, total_steps: int) -> bool:
    return step % config.eval_every == 0 or step == total_steps


# ----------------------------------------------------------------------------------------------------------------
# One run


def train(
    config: TrainConfig,
    *,
    data: Dataset | None = None,
    data_root=None,
    device: torch.device | str | None = None,
    start: nn.Module | Mapping[str, Tensor] | None = None,
    on_eval: Callable[[int, nn.Module], Mapping] | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train one model as `config` says and return its `TrainResult` (never raises on divergence).

    The loop, top to bottom: build the model (or take `start`), evaluate at step 0, then for each step set the
    learning rate, take the minibatch loss, apply the divergence rule, back-propagate, step the optimiser, keep
    a checkpoint if asked, and every ``config.eval_every`` steps (and at the last) evaluate the full training
    and test sets, which applies the stop rule (``config.stop_loss``). See `_RunLog` for both rules.

    Args:
        config: the run's configuration.
        data: the data set (default: `load_dataset(config.dataset, data_root)`).
        data_root: where the data set is (image data sets) or cached (MNIST-1D).
        device: where to train (default: that of `start` if it is a module, else the CPU). Same config and seed
            on the same device → the same numbers.
        start: where training starts instead of the config's initialisation: a module (copied, never modified;
            its architecture is used and the config's model fields are ignored) or a state dict for the config's
            model. The data order still comes from ``config.seed``.
        on_eval: ``on_eval(step, model) -> dict`` called at every evaluation (model in train mode, do not
            modify it); its values are added to that history row (e.g. λmax along the trajectory).
        progress: show a progress bar over the steps (None: the library default, `landscape.set_progress`).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    start_time = time.perf_counter()
    data = _resolve_data(config, data, data_root)
    if isinstance(start, nn.Module):
        model = copy.deepcopy(start)
        like = next(model.parameters())
        device, dtype = (like.device if device is None else torch.device(device)), like.dtype
        model.to(device)
    else:
        device = torch.device("cpu" if device is None else device)
        dtype = DTYPES[config.dtype]
        model = _model_for(config, data, dtype, device)
        if start is not None:
            if not isinstance(start, Mapping):
                raise TypeError(f"start must be a module or a state dict, got {type(start).__name__}")
            model.load_state_dict(start)
    x_train, y_train = data.x_train.to(device, dtype), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device, dtype), data.y_test.to(device)
    total_steps = config.num_steps(len(x_train))
    loss_fn = loss_function(config.loss)
    optimizer = make_optimizer(config, list(model.parameters()))
    batches = batch_indices(config, len(x_train), total_steps, data_generator(config.seed))
    log = _RunLog(config)

    def evaluation(step: int, lr: float, train_m: Mapping | None = None) -> None:
        train_m = evaluate(model, loss_fn, x_train, y_train) if train_m is None else train_m
        test_m = evaluate(model, loss_fn, x_test, y_test)
        log.evaluation(step, lr, train_m, test_m, on_eval(step, model) if on_eval is not None else None)

    model.train()
    if 0 in config.checkpoint_steps:
        log.checkpoints[0] = _snapshot(model.state_dict())
    evaluation(0, learning_rate(config, 0, total_steps))
    bar = progress_bar(progress, total=total_steps, desc="train", leave=True)
    for step, idx in enumerate(batches if log.running else (), start=1):
        lr = learning_rate(config, step - 1, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = loss_fn(model(x_train[idx]), y_train[idx])
        if not log.batch_loss(step, float(loss.detach())):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.update()
        if step in config.checkpoint_steps:
            log.checkpoints[step] = _snapshot(model.state_dict())
        if _is_evaluation(config, step, total_steps):
            evaluation(step, lr)
        elif log.refining:  # a stop check: the training loss only, a history row only when it is the stop
            train_m = evaluate(model, loss_fn, x_train, y_train)
            if train_m["loss"] <= config.stop_loss:
                evaluation(step, lr, train_m)
        if not log.running:
            break
    bar.close()
    started_from = "initialisation" if start is None else "given weights"
    wall_time = time.perf_counter() - start_time
    return log.result(
        _snapshot(model.state_dict()), count_parameters(model), wall_time, "single", started_from
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
    progress: bool | None = None,
) -> list[TrainResult]:
    """Train `replace(config, seed=s)` for every seed in one vectorised pass; one `TrainResult` per seed.

    Each copy gets its own initialisation and data order (those of its own `train` run). The parameters of the
    N copies are stacked along a new leading dimension, one batched forward pass computes every copy's
    minibatch loss L_i(θ_i), and ordinary back-propagation of Σ_i L_i gives each copy exactly its own gradient
    (∂/∂θ_i Σ_j L_j = ∇L_i(θ_i), as L_j does not depend on θ_i for j ≠ i). One optimiser then updates the stacked
    tensors; its update is element-wise, so each copy follows the arithmetic of its own `train` run up to the
    rounding of batched matrix products. The MLP's forward pass is hand-batched (`torch.baddbmm`); other models
    use `torch.func.vmap` over `torch.func.functional_call`.

    Each copy follows `train`'s rules (`_RunLog`): a copy that diverges, or reaches ``config.stop_loss``, ends
    at that step with the weights `train` would return, and the others continue. Models with BatchNorm fall back to a loop of `train` calls (same results, no speed-up).

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

    logs = [_RunLog(c) for c in configs]
    final_state: list[dict[str, Tensor] | None] = [None] * n_seeds  # kept when a copy stops early

    def state_of(i: int) -> dict[str, Tensor]:
        return _snapshot({**{k: v[i] for k, v in params.items()}, **{k: v[i] for k, v in buffers.items()}})

    @torch.no_grad()
    def split_metrics(x: Tensor, y: Tensor) -> list[dict]:
        chunk = (
            250  # samples per product, the same for any number of copies: a copy's metrics never depend on N
        )
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

    def evaluation(step: int, lr: float, stop_check: bool = False) -> None:
        """Every running copy's history row at `step`; as a stop check (`_RunLog` ``stop_refine``), only the
        rows of refining copies whose training loss is at the target, as `train` does."""
        refining = [log.refining for log in logs]
        train_m = split_metrics(x_train, y_train)
        due = [
            log.running and (not stop_check or (refining[i] and train_m[i]["loss"] <= log.config.stop_loss))
            for i, log in enumerate(logs)
        ]
        if not any(due):
            return
        test_m = split_metrics(x_test, y_test)
        for i, log in enumerate(logs):
            if due[i]:
                log.evaluation(step, lr, train_m[i], test_m[i])
                if not log.running:
                    final_state[i] = state_of(i)

    if 0 in config.checkpoint_steps:
        for i, log in enumerate(logs):
            log.checkpoints[0] = state_of(i)
    evaluation(0, learning_rate(config, 0, total_steps))
    for step in progress_bar(
        progress, iterable=range(1, total_steps + 1), desc=f"train x{n_seeds}", leave=True
    ):
        if not any(log.running for log in logs):
            break
        lr = learning_rate(config, step - 1, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = torch.cat([next(s) for s in streams]).to(device)  # each copy's own data order, N × batch
        x = x_train.index_select(0, idx).view(n_seeds, -1, *x_train.shape[1:])
        losses = losses_of(x, y_train.index_select(0, idx).view(n_seeds, -1))
        for i, (log, value) in enumerate(zip(logs, losses.tolist(), strict=True)):
            if log.running and not log.batch_loss(step, value):
                final_state[i] = state_of(i)  # before this step's update, as `train` stops
        if not any(log.running for log in logs):
            break
        # copy i's parameters reach only its own loss, so each gets exactly ∇L_i; assigning the gradients
        # (instead of zero_grad + backward) skips per-step bookkeeping that costs as much as a small product
        grads = torch.autograd.grad(losses.sum(), leaves)
        for leaf, grad in zip(leaves, grads, strict=True):
            leaf.grad = grad.contiguous()  # the fused optimiser reads gradients in the parameters' layout
        optimizer.step()
        if step in config.checkpoint_steps:
            for i, log in enumerate(logs):
                if log.running:
                    log.checkpoints[step] = state_of(i)
        if _is_evaluation(config, step, total_steps):
            evaluation(step, lr)
        elif any(log.refining for log in logs):
            evaluation(step, lr, stop_check=True)

    wall_time = (time.perf_counter() - start_time) / n_seeds
    return [
        log.result(
            state_of(i) if final_state[i] is None else final_state[i],
            count_parameters(models[i]),
            wall_time,
            "vmap",
            "initialisation",
        )
        for i, log in enumerate(logs)
    ]


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
