"""The training loop every chapter uses (section 3.1.4 and 2.8 / 2.9).

SGD with momentum and weight decay (or LARS), constant or step learning-rate schedules, mixed precision
(bf16, or fp16 with a gradient scaler) and channels_last on CUDA, a per-epoch history, an atomic checkpoint
after every epoch with exact resume, and hooks through which later chapters add a loss term (group lasso,
MorphNet) or replace the model and optimizer between epochs (PruneTrain, Net2Net, batch adaptation).

The learning rate of step i of epoch e is `config.lr_at(e, i, steps) * trainer.lr_scale`; it is set on the
optimizer at the start of every epoch, and before every step while it changes within the epoch (warm-up,
polynomial decay: per iteration, as Goyal et al. and You et al. schedule them), so a hook that swaps the
optimizer or scales the batch needs no scheduler object to follow. `lr_at` is the schedule (constant, step
at whole epochs, or You et al.'s polynomial decay) times the batch scaling factor (none, linear or sqrt in
batch / reference batch), ramped up linearly over the warm-up iterations.

Weight decay, one policy for both optimizers: every parameter is decayed by `weight_decay`, 1-d ones (BN
gammas and betas, the classifier's bias) included as in the thesis's baseline and the original PruneTrain
code, unless `bn_weight_decay=False` exempts the BN parameters (MorphNet's phases). SGD and LARS read the
same param groups, so an SGD-vs-LARS comparison differs in the layer-wise rate only.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from . import distributed
from .data import Dataset, DeviceLoader
from .files import atomic_torch_save
from .models import (
    ResNet,
    ResNetSpec,
    build_resnet,
    count_flops,
    count_parameters,
    count_training_flops,
    ghost_batch_sizes,
)

PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("constant", "step", "poly")
OPTIMIZERS = ("sgd", "lars")
LR_SCALINGS = ("none", "linear", "sqrt")
DEFAULT_LR = {"sgd": 0.1, "lars": 5.0}
"""The global learning rate when none is given: the thesis's SGD rate, and LARS's own recipe (see `LARS`)."""
# Below this many forward FLOPs per batch a Trainer on the CPU uses 1 thread (cpu_threads="auto"): the
# thesis nets on 8x8 digits (about 0.1-0.4 GFLOPs per batch of 64); CIFAR batches are 10-100x larger.
SMALL_NET_FLOPS = 1e9
_TORCH_DEFAULT_THREADS = torch.get_num_threads()
POLY_POWER = 2
SEED_LIMIT = 2**63  # seeds are torch's int64 generator seeds: [0, 2^63)
COMPILE_MODES = ("off", "static", "always")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run. Defaults follow the thesis baseline (section 3.1.4).

    `lr` is the global rate of the optimizer at the reference batch; None takes `DEFAULT_LR` of the optimizer
    (0.1 for SGD, LARS's recipe for LARS). `lr_scaling` multiplies it by batch_size / lr_reference_batch
    ("linear", Goyal et al.) or its square root ("sqrt", Hoffer et al.); `warmup_epochs` ramps the rate of
    the first epochs linearly up to the schedule's (see `lr_at`). `schedule="poly"` decays it as
    (1 - epoch / epochs) ** 2 (You et al.'s LARS recipe); "step" decays it at the milestones, which must
    lie below `epochs` (the defaults 93 and 150 are the thesis's of 180 epochs: fewer epochs need their own
    milestones or another schedule, never a silent constant rate).

    `optimizer="lars"` trains with `LARS` (trust ratio `lars_trust`; `lars_clip`: LARC's clipping mode).

    `bn_weight_decay=False` puts the BN gammas and betas into a param group of their own without weight
    decay: MorphNet's regularized phases (section 2.7) need it, as in morph-net, because L2 on the gammas
    pulls on them as hard as the FLOP penalty does.

    `compile` runs the model's forward and backward through `torch.compile` (TorchInductor; on the CPU it
    needs a C++ compiler): "off"; "static" compiles only runs whose hooks keep the architecture (no hook
    with `changes_shapes`: not PruneTrain, Net2Net growth or batch adaptation), "always" compiles every
    run and recompiles after every change of shape (`compiles`). Why not "always": on the 2-core CPU,
    compiling the digits ResNet took 52 s, each recompile after a pruning step 23 s, and the compiled step
    saved 2.4 of 16 ms; PruneTrain reconfigures every 10 epochs, so a recompile pays only when ten epochs
    save more than it costs, which `benchmarks/epoch_time.py --recompile` measures on the GPU.

    `tf32` (CUDA only): whether fp32 convolutions and matmuls may run on TF32 tensor cores (Ampere and
    newer), which round their inputs to a 10-bit mantissa. Off by default, so fp32 means fp32 as on the
    thesis's GTX 1080 Ti and RTX 2080 Ti, which have no TF32; the fast path (`full-fast`) turns it on.
    """

    epochs: int = 180
    batch_size: int = 128
    lr: float | None = None
    lr_scaling: str = "none"
    lr_reference_batch: int = 128
    warmup_epochs: int = 0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    bn_weight_decay: bool = True
    schedule: str = "step"
    milestones: tuple[int, ...] = (93, 150)
    lr_decay: float = 0.1
    optimizer: str = "sgd"
    lars_trust: float = 0.001
    lars_clip: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    compile: str = "off"
    tf32: bool = False
    seed: int = 0
    augment: bool = True
    padding: int = 4
    flip: bool = True
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use one of {OPTIMIZERS}")
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.optimizer])
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:  # NaN fails every comparison
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1] (the factor of each milestone), got {self.lr_decay}")
        if not (self.lars_trust > 0 and math.isfinite(self.lars_trust)):
            raise ValueError(f"lars_trust must be a finite number > 0, got {self.lars_trust}")
        if not (isinstance(self.seed, int) and 0 <= self.seed < SEED_LIMIT):
            raise ValueError(f"seed must be an integer in [0, 2^63), got {self.seed}")
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0, got {self.padding}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; use one of {SCHEDULES}")
        if self.lr_scaling not in LR_SCALINGS:
            raise ValueError(f"unknown lr scaling {self.lr_scaling!r}; use one of {LR_SCALINGS}")
        if self.lr_reference_batch < 1:
            raise ValueError(f"lr_reference_batch must be >= 1, got {self.lr_reference_batch}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be >= 0 and below epochs ({self.epochs}), got {self.warmup_epochs}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use one of {PRECISIONS}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {self.compile!r}; use one of {COMPILE_MODES}")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        if self.milestones and self.milestones[0] < 1:
            raise ValueError(
                f"milestones must lie inside (0, epochs): epochs are counted from 1, got {list(self.milestones)}"
            )
        if self.schedule == "step" and self.milestones and self.milestones[-1] >= self.epochs:
            raise ValueError(
                f"milestones {self.milestones} must lie below epochs ({self.epochs}): a milestone at or "
                f"beyond epochs never takes effect; pass milestones=... for {self.epochs} epochs "
                "(the thesis decays at 52 % and 83 % of them) or schedule='constant'"
            )

    def lr_at(self, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        """Learning rate of step `step` (0-based) of the `steps_per_epoch` steps of 0-based `epoch`: lr x the
        batch factor x the schedule, where k = epoch * steps_per_epoch + step counts the iterations and
        K = epochs * steps_per_epoch is the run's: constant; "step": `lr_decay` per milestone passed (whole
        epochs, the thesis's schedule); "poly": (1 - k / K) ** 2 per iteration (You et al.); and during the
        W = warmup_epochs * steps_per_epoch warm-up iterations x (k + 1) / (W + 1), a linear ramp per
        iteration (Goyal et al.) after which epoch `warmup_epochs` is the first at the full rate. With one
        step per epoch (the defaults) it is the rate per epoch."""
        if steps_per_epoch < 1 or not 0 <= step < steps_per_epoch:
            raise ValueError(
                f"step must lie in 0..steps_per_epoch - 1 with steps_per_epoch >= 1, got {step} of {steps_per_epoch}"
            )
        iteration = epoch * steps_per_epoch + step
        rate = self.lr * batch_lr_factor(self.batch_size, self.lr_reference_batch, self.lr_scaling)
        if self.schedule == "step":
            rate *= self.lr_decay ** sum(1 for m in self.milestones if epoch >= m)
        elif self.schedule == "poly":
            rate *= (1 - iteration / (self.epochs * steps_per_epoch)) ** POLY_POWER
        warmup = self.warmup_epochs * steps_per_epoch
        if iteration < warmup:
            rate *= (iteration + 1) / (warmup + 1)
        return rate

    def lr_changes_within(self, epoch: int) -> bool:
        """Whether the rate moves between the steps of 0-based `epoch` (warm-up, poly), so the trainer sets it
        before every step, not only at the epoch's start."""
        return self.schedule == "poly" or epoch < self.warmup_epochs

    def compiles(self, changes_shapes: bool) -> bool:
        """Whether a run whose hooks do (or do not) change the architecture trains compiled (`compile`)."""
        return self.compile == "always" or (self.compile == "static" and not changes_shapes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        return data

    def matches(self, saved: Mapping[str, Any]) -> bool:
        """Whether `saved` (a checkpoint's `to_dict()`) describes this config. A field the checkpoint lacks
        (written before the field existed) matches when this config has it at its default, so adding a
        field never orphans the checkpoints of unfinished runs."""
        defaults = {item.name: item.default for item in fields(self)}
        current = self.to_dict()
        missing = set(current) - set(saved)
        return (
            set(saved) <= set(current)
            and all(current[key] == defaults[key] for key in missing)
            and {key: current[key] for key in saved} == dict(saved)
        )


def batch_lr_factor(batch_size: int, reference_batch: int, scaling: str) -> float:
    """The learning-rate factor for training at `batch_size` a rate set for `reference_batch`: 1 ("none"),
    the ratio ("linear", Goyal et al. 2017) or its square root ("sqrt", Hoffer et al. 2017)."""
    if scaling not in LR_SCALINGS:
        raise ValueError(f"unknown lr scaling {scaling!r}; use one of {LR_SCALINGS}")
    for name, value in (("batch size", batch_size), ("reference batch size", reference_batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    ratio = batch_size / reference_batch
    return {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[scaling]


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017; thesis section 2.9).

    One policy for every parameter tensor, 1-d ones (BN gammas and betas, biases) included, as torchlars
    and apex's LARC apply it: the decayed gradient g + wd p is multiplied by the local rate

        local = trust * ||p|| / (||g|| + wd * ||p||),   1 where ||p|| = 0 or ||g|| = 0,

    (a zero tensor such as the BN betas at their init, or a zero gradient, takes the plain step, as in both
    references) and then goes through SGD's momentum buffer and the global rate lr, so each tensor moves by
    about lr * trust of its norm per step whatever its gradient's size. `clip=True` is LARC's clipping mode
    (apex.parallel.LARC): the factor is min(local / lr, 1), so that no tensor steps faster than plain SGD at
    the rate lr. Weight decay comes from the param groups, as for SGD (module docstring).

    The recipe is trust 0.001 and a global rate of LARS's own order (`DEFAULT_LR["lars"]` = 5, a relative
    step of 0.5 % per tensor and step; You et al. use 1-10 with warm-up and polynomial decay at ImageNet
    scale); chapter 6.4 chooses its rate per profile on a validation split (`ch06_4_additive`).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust: float = 0.001,
        clip: bool = False,
    ) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust=trust, clip=clip))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            decay = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(p.grad)
                local = torch.where(
                    (w_norm > 0) & (g_norm > 0),
                    group["trust"] * w_norm / (g_norm + decay * w_norm),
                    torch.ones_like(w_norm),
                )
                if group["clip"]:
                    local = torch.clamp(local / group["lr"], max=1.0)
                grad = (p.grad.add(p, alpha=decay) if decay else p.grad) * local
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def optimizer_param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """The param groups of `config`'s optimizer: all parameters in `model.parameters()` order, or, with
    `bn_weight_decay=False`, the non-BN parameters and then the BN gammas and betas with weight decay 0."""
    if config.bn_weight_decay:
        return [{"params": list(model.parameters())}]
    bn_ids = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for p in m.parameters(recurse=False)
    }
    others = [p for p in model.parameters() if id(p) not in bn_ids]
    bn = [p for p in model.parameters() if id(p) in bn_ids]
    return [{"params": others}, {"params": bn, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of `config` over the model's parameters (groups from `optimizer_param_groups`)."""
    groups = optimizer_param_groups(model, config)
    if config.optimizer == "lars":
        return LARS(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            trust=config.lars_trust,
            clip=config.lars_clip,
        )
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


class TrainingHook:
    """Extension points of the training loop; every method is optional.

    - `loss_term` returns an extra differentiable loss (eq. 2.2 group lasso, eq. 2.11 MorphNet penalty);
    - `on_epoch_end` may add columns to the epoch's record and call `trainer.replace_model(...)` or change
      `trainer.batch_size` / `trainer.lr_scale` for the following epochs;
    - `on_model_replaced` is called on every hook after any hook replaced the model (PruneTrain's
      reconfiguration, a Net2Net growth), e.g. to adapt the batch to the new net (section 6.1);
    - `state_dict` / `load_state_dict` carry the hook's own state through a checkpoint, so a resumed run
      continues exactly.

    A hook that replaces the model by one of another shape sets `changes_shapes = True`: a Trainer with
    `compile="static"` then trains eagerly (see `TrainConfig`).
    """

    changes_shapes: bool = False

    def on_train_start(self, trainer: Trainer) -> None:
        """Called once before the first epoch trained in this process (also after a resume)."""

    def loss_term(
        self, trainer: Trainer, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor
    ) -> torch.Tensor | None:
        return None

    def after_step(self, trainer: Trainer) -> None:
        """Called after every optimizer step."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Called after the epoch's evaluation, before the checkpoint is written."""

    def on_model_replaced(self, trainer: Trainer, old_model: nn.Module, new_model: nn.Module) -> None:
        """Called after `trainer.replace_model` installed `new_model` (already `trainer.model`)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so wall-clock timings measure the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], object]) -> float:
    """Wall-clock seconds of `work()` with the device idle before and after (`synchronize`): no queued
    work from before is counted and none of its own is missed. The one timer of the package, the
    `plan` calibration's and the benchmarks'."""
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start


TENSORBOARD_ENV = "THESIS_TENSORBOARD"
BATCH_BAR_DELAY = 5.0  # seconds an epoch runs before its batches get a progress bar
TENSORBOARD_METRICS = ("test_acc", "test_loss", "train_acc", "train_loss")


class TensorBoardLogger:
    """An `epoch_callback` that writes every number of an epoch's record as a TensorBoard scalar into
    `log_dir` (step = epoch) and, once, `hparams` (e.g. the run's params) for TensorBoard's HParams tab,
    where each run is then one row with its params and last test accuracy and loss.

    A plain `Trainer` gets one by itself when THESIS_TENSORBOARD=1 and it has no `epoch_callback`: it logs
    into `runs/<description>` below the working directory (SummaryWriter's default folder)."""

    def __init__(self, log_dir: str | os.PathLike, hparams: Mapping[str, Any] | None = None) -> None:
        self.log_dir, self.hparams = Path(log_dir), dict(hparams or {})
        self._writer: Any = None

    def __call__(self, trainer: Trainer, record: Mapping[str, Any]) -> None:
        if self._writer is None:
            self._writer = self._open()
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self._writer.add_scalar(key, value, global_step=int(record["epoch"]))
        self._writer.flush()

    def _open(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError as error:
            raise RuntimeError(
                f"TensorBoard logging ({TENSORBOARD_ENV} or a TensorBoardLogger) needs TensorBoard: "
                f"pip install tensorboard (or unset {TENSORBOARD_ENV})"
            ) from error
        writer = SummaryWriter(log_dir=str(self.log_dir))
        if self.hparams:
            shown = {
                key: value if isinstance(value, (int, float, str, bool)) else json.dumps(value, default=str)
                for key, value in self.hparams.items()
            }
            for summary in hparams(shown, dict.fromkeys(TENSORBOARD_METRICS, 0.0)):
                writer.file_writer.add_summary(summary)
        return writer


@dataclass
class Trainer:
    """Trains `model` on `data` with `config`; `fit()` returns the per-epoch history as a DataFrame.

    With `checkpoint_path`, the full state (spec, weights, optimizer, scaler, history, hook states, RNG) is
    written atomically after every epoch; a new Trainer over the same path resumes after the last finished
    epoch and reproduces the uninterrupted run's history (exactly on the CPU).

    Hooks that change the architecture (PruneTrain, Net2Net growth) replace the model: after `fit()` the
    trained network is `trainer.model`, not the object passed in (which keeps its old shape and weights).

    Each epoch's record has, among others, train_loss (the mean cross-entropy of the epoch's batches) and
    train_objective (the same with the hooks' loss terms: what SGD minimised, e.g. PruneTrain's lasso).

    `epoch_callback(trainer, record)` runs after every epoch's checkpoint, for reporting (live progress,
    TensorBoard: `TensorBoardLogger`, which THESIS_TENSORBOARD=1 sets when there is no callback); it is no
    part of the run's state and is not checkpointed.

    The step calls `train_module`: the model itself, or its `torch.compile`d wrapper (`TrainConfig.compile`),
    rebuilt whenever the model is replaced; evaluation, hooks and checkpoints always use the bare
    `model`, whose parameters the wrapper shares. On CUDA the Trainer turns on cuDNN's autotuner
    (`torch.backends.cudnn.benchmark`), which picks the fastest convolution algorithm per shape.

    Under torchrun (a process group set up by `distributed.setup`) the Trainer, rank `rank` of `world_size`,
    trains data-parallel: the `train_module` is the model in DDP (compiled on top when `compiled`),
    `config.batch_size` is the global batch that the loader shares out over the ranks, the epoch's sums are
    added up over the ranks once per epoch, every rank evaluates the whole test set with rank 0's BN
    statistics (the same numbers on every rank, no test shard to gather), a replaced model is checked to be
    bit-identical on every rank before its DDP wrapper is rebuilt, and rank 0 alone writes checkpoints and
    calls `epoch_callback`. Each epoch's record gets allreduce_bytes_per_step and, on the CPU,
    allreduce_seconds_per_step (`distributed.CommStats`). See `thesis_lib.distributed`.

    `checkpoint_owner` names the run a checkpoint belongs to (the run store passes `<run hash>/<phase>`): it is
    saved with the checkpoint, and a resume refuses a checkpoint that names another owner, so a checkpoint
    copied or moved into another run's folder is never trained on and sealed as that run.

    `cpu_threads` (CPU only): torch's intra-op threads, set for the whole process when the Trainer is made.
    "auto" uses 1 thread for small nets (under `SMALL_NET_FLOPS` forward FLOPs per batch, e.g. the thesis
    nets on 8x8 digits), where more threads only add synchronisation (2 threads ran 4-10x slower than 1 on
    a 2-core laptop), and torch's default count for larger ones; an int sets that count; None leaves it.
    """

    model: nn.Module
    data: Dataset
    config: TrainConfig
    hooks: Sequence[TrainingHook] = ()
    device: str | torch.device = "cpu"
    checkpoint_path: Path | None = None
    progress: bool = True
    description: str = "train"
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_callback: Callable[[Trainer, dict[str, Any]], None] | None = None
    cpu_threads: int | Literal["auto"] | None = "auto"
    checkpoint_owner: str | None = None

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.comm_stats = (
            distributed.CommStats(timed=self.device.type == "cpu") if distributed.is_distributed() else None
        )
        if self.config.precision == "fp16" and self.device.type != "cuda":
            raise ValueError(
                "fp16 training with a gradient scaler needs CUDA; use precision='bf16' (CPU and "
                "CUDA) or 'fp32' on the CPU"
            )
        rank_batch = self.config.batch_size // self.world_size
        too_large = sorted(v for v in ghost_batch_sizes(self.model) if v > rank_batch)
        if too_large:
            raise ValueError(
                f"ghost batch norm's virtual batch {too_large[0]} is larger than the batch size "
                f"{rank_batch} of a rank; use a virtual batch of at most the batch size"
            )
        self.compiled = self.config.compiles(any(hook.changes_shapes for hook in self.hooks))
        if (
            self.compiled
            and self.device.type == "cpu"
            and not any(shutil.which(name) for name in (os.environ.get("CXX", "g++"), "g++", "clang++", "c++"))
        ):
            raise ValueError(
                "TrainConfig(compile=...) on the CPU needs a C++ compiler (g++ or clang++) for "
                "TorchInductor; install one or use compile='off'"
            )
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = self.config.tf32
        if self.epoch_callback is None and os.environ.get(TENSORBOARD_ENV) == "1":
            self.epoch_callback = TensorBoardLogger(Path("runs") / self.description.replace(" ", "_"))
        self.batch_size = self.config.batch_size
        self.lr_scale = 1.0
        self.epoch = 0
        self.step_count = 0
        self.data = self.data.to(self.device)
        if self.device.type == "cpu" and self.cpu_threads is not None:
            torch.set_num_threads(self._auto_threads() if self.cpu_threads == "auto" else int(self.cpu_threads))
        self._set_model(self.model.to(self.device), make_optimizer(self.model, self.config))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.config.precision == "fp16")
        self.train_loader = DeviceLoader(
            self.data.train_x,
            self.data.train_y,
            batch_size=self.batch_size,
            shuffle=True,
            augment=self.config.augment,
            padding=self.config.padding,
            flip=self.config.flip,
            seed=self.config.seed,
            rank=self.rank,
            world_size=self.world_size,
        )
        self._flops_cache: dict[tuple[str, str], int] = {}
        self._epoch_train_flops = 0
        self._hook_flops = 0
        self.after_shape_change = True  # the first epoch of a net runs new shapes (cuDNN's autotuner, compiling)
        if self.checkpoint_path is not None and Path(self.checkpoint_path).exists():
            self._load_checkpoint(Path(self.checkpoint_path))

    def _auto_threads(self) -> int:
        """1 for a net under SMALL_NET_FLOPS forward FLOPs per batch, else torch's default count (as it was
        when thesis_lib was imported)."""
        batch_flops = count_flops(self.model, tuple(self.data.train_x.shape[1:])) * self.config.batch_size
        return 1 if batch_flops < SMALL_NET_FLOPS else _TORCH_DEFAULT_THREADS

    def _set_model(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.config.channels_last and self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model, self.optimizer = model, optimizer
        wrapped = distributed.wrap(model, self.comm_stats) if self.comm_stats is not None else model
        self.train_module = torch.compile(wrapped) if self.compiled else wrapped

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """A fresh optimizer of this run's kind for `model` (hooks carry state into it via surgery)."""
        return make_optimizer(model, self.config)

    def replace_model(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Continue training with a reshaped model and its optimizer (PruneTrain, Net2Net), then tell every
        hook (`TrainingHook.on_model_replaced`). Under DDP every rank must install a bit-identical model
        (checked: a RuntimeError otherwise)."""
        old_model = self.model
        model = model.to(self.device)
        distributed.check_identical(model, f"the model installed at the end of epoch {self.epoch + 1}")
        self._set_model(model, optimizer)
        self.after_shape_change = True
        for hook in self.hooks:
            hook.on_model_replaced(self, old_model, self.model)

    @contextmanager
    def counting_hook_flops(self) -> Iterator[None]:
        """Count the FLOPs of a hook's own passes (e.g. `BatchAdaptation`'s memory probe) with
        torch.utils.flop_counter and add them to the epoch's `hook_flops`: training FLOPs are all the work a
        run executed, not only its optimizer steps."""
        with FlopCounterMode(display=False) as counter:
            yield
        self._hook_flops += int(counter.get_total_flops())

    def fit(self) -> pd.DataFrame:
        """Train the remaining epochs and return the whole history (one row per epoch). The trained model is
        `self.model`: hooks that prune or grow the net replace it (see the class docstring)."""
        for hook in self.hooks:
            hook.on_train_start(self)
        epochs = range(self.epoch, self.config.epochs)
        bar = tqdm(
            epochs,
            desc=self.description,
            disable=not self.progress or self.rank != 0,
            leave=False,
            initial=self.epoch,
            total=self.config.epochs,
        )
        for epoch in bar:
            record = self._train_epoch(epoch)
            bar.set_postfix(acc=f"{record['test_acc']:.3f}", loss=f"{record['train_loss']:.3f}")
        bar.close()
        return self.history_frame()

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)

    def _set_lr(self, epoch: int, step: int, steps: int) -> float:
        lr = self.config.lr_at(epoch, step, steps) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        loader = self.train_loader
        loader.batch_size = self.batch_size
        loader.set_epoch(epoch)
        steps = len(loader)
        lr = self._set_lr(epoch, 0, steps)
        per_step = self.config.lr_changes_within(epoch)
        loss_sum = torch.zeros((), device=self.device)
        total_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        self._epoch_train_flops = 0
        self.model.train()
        synchronize(self.device)
        start = time.perf_counter()
        # Batches get a bar of their own only when an epoch takes longer than BATCH_BAR_DELAY seconds (a
        # CIFAR epoch on the CPU), so short epochs show the epoch bar alone.
        batches = tqdm(
            loader,
            total=len(loader),
            desc=f"epoch {epoch + 1}",
            leave=False,
            delay=BATCH_BAR_DELAY,
            disable=not self.progress or self.rank != 0,
        )
        for step, (x, y) in enumerate(batches):
            if per_step and step:
                self._set_lr(epoch, step, steps)
            try:
                outputs, loss, total = self.train_step(x, y)
            except RuntimeError as error:
                if "without overflow" not in str(error):
                    raise
                raise FloatingPointError(  # an update of lr x gradient beyond the float range
                    f"training diverged in epoch {epoch + 1} (step {self.step_count + 1}) at lr {lr:g}: a weight "
                    f"update overflows ({error}); lower the learning rate. Nothing of this epoch is saved: the "
                    f"last checkpoint is that of epoch {epoch}"
                ) from error
            loss_sum += loss.float() * len(y)
            total_sum += total.float() * len(y)
            correct += (outputs.argmax(1) == y).sum()
            seen += len(y)
        synchronize(self.device)
        epoch_time = time.perf_counter() - start
        if self.comm_stats is not None:  # one all-reduce per epoch; then every rank evaluates rank 0's model
            loss_sum, total_sum, correct, seen, self._epoch_train_flops = distributed.sum_across_ranks(
                [loss_sum, total_sum, correct, seen, self._epoch_train_flops]
            )
            distributed.broadcast_buffers(self.model)
        train_loss = float(loss_sum) / seen
        test_loss, test_acc = self.evaluate()
        losses = {
            "training loss": train_loss,
            "training loss with the hooks' terms": float(total_sum) / seen,
            "test loss after the epoch's last step": test_loss,
        }
        diverged = {name: value for name, value in losses.items() if not math.isfinite(value)}
        if diverged:
            raise FloatingPointError(
                f"training diverged in epoch {epoch + 1} (steps {self.step_count - len(loader) + 1}.."
                f"{self.step_count}) at lr {lr:g}: {diverged}; lower the learning rate. Nothing of this epoch "
                f"is saved: the last checkpoint is that of epoch {epoch}"
            )
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": lr,
            "batch_size": self.batch_size,
            "train_loss": train_loss,
            "train_objective": float(total_sum) / seen,
            "train_acc": float(correct) / seen,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "epoch_time": epoch_time,
            "params": count_parameters(self.model),
            "flops": self.flops(),
            "train_flops": int(self._epoch_train_flops),
            "steps": self.step_count,
            "after_shape_change": self.after_shape_change,
            **(self.comm_stats.take() if self.comm_stats is not None else {}),
        }
        self.after_shape_change = False
        hook_start = time.perf_counter()
        for hook in self.hooks:
            hook.on_epoch_end(self, record)
        synchronize(self.device)
        record["hook_time"] = time.perf_counter() - hook_start
        record["hook_flops"], self._hook_flops = self._hook_flops, 0
        self.history.append(record)
        self.epoch = epoch + 1
        if self.checkpoint_path is not None:
            if self.rank == 0:
                self._save_checkpoint(Path(self.checkpoint_path))
            distributed.barrier()  # under DDP no rank goes on before rank 0's checkpoint is on disk
        if self.epoch_callback is not None and self.rank == 0:  # reporting only: not part of the run's state
            self.epoch_callback(self, record)
        return record

    def evaluate(self) -> tuple[float, float]:
        """Mean cross-entropy and accuracy of the current model on the held-out split (`data.test_*`), in
        eval mode at the training precision: what every epoch's test_loss / test_acc reports."""
        return evaluate(
            self.model,
            self.data.test_x,
            self.data.test_y,
            self.config.eval_batch_size,
            AUTOCAST_DTYPES.get(self.config.precision),
        )

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step on the batch (x, y); returns the detached outputs, cross-entropy and total loss.

        Nothing here waits for the device (no `.item()`, no branch on a tensor's value), so the host queues
        the steps of an epoch ahead of the GPU; the epoch's metrics are summed on the device and read once.
        The one exception is fp16's gradient scaler, whose inf check reads a flag every step.
        """
        if self.config.channels_last and self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        autocast_dtype = AUTOCAST_DTYPES.get(self.config.precision)
        with torch.autocast(
            self.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            outputs = self.train_module(x)
            loss = nn.functional.cross_entropy(outputs, y)
        self._epoch_train_flops += self.training_flops_per_image() * len(y)
        total = loss
        for hook in self.hooks:
            extra = hook.loss_term(self, outputs, y, loss)
            if extra is not None:
                total = total + extra
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step_count += 1
        for hook in self.hooks:
            hook.after_step(self)
        return outputs.detach(), loss.detach(), total.detach()

    def flops(self) -> int:
        """Forward FLOPs of one training image for the current model (cached per architecture)."""
        return self._counted("forward", count_flops)

    def training_flops_per_image(self) -> int:
        """Forward and backward FLOPs of one training image for the current model (`count_training_flops`,
        cached per architecture): an epoch's `train_flops` are this times the images of each step."""
        return self._counted("training", count_training_flops)

    def _counted(self, kind: str, count: Callable[[nn.Module, Sequence[int]], int]) -> int:
        spec = getattr(self.model, "spec", None)
        key = (kind, spec if isinstance(spec, ResNetSpec) else str(id(self.model)))  # specs are frozen, hashable
        if key not in self._flops_cache:
            self._flops_cache[key] = count(self.model, tuple(self.data.train_x.shape[1:]))
        return self._flops_cache[key]

    def _save_checkpoint(self, path: Path) -> None:
        state = {
            "epoch": self.epoch,
            "step_count": self.step_count,
            "batch_size": self.batch_size,
            "lr_scale": self.lr_scale,
            "after_shape_change": self.after_shape_change,
            "hook_flops": self._hook_flops,
            "spec": self.model.spec.to_dict() if isinstance(self.model, ResNet) else None,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "hooks": [hook.state_dict() for hook in self.hooks],
            "hook_types": [type(hook).__qualname__ for hook in self.hooks],
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "config": self.config.to_dict(),
            "owner": self.checkpoint_owner,
        }
        atomic_torch_save(state, path)

    def _load_checkpoint(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as error:  # a torn or foreign file: say so, never train over it silently
            raise RuntimeError(
                f"checkpoint {path} cannot be read ({error}); delete it to start this run afresh"
            ) from error
        if isinstance(state, dict) and "after_shape_change" not in state:
            raise RuntimeError(
                f"checkpoint {path} was written by thesis_lib before 0.3.0, whose history counts no training "
                "FLOPs; delete it to start this run afresh"
            )
        owner = state.get("owner") if isinstance(state, dict) else None
        if self.checkpoint_owner is not None and owner != self.checkpoint_owner:
            written_by = owner or "a run of a version that did not name it"
            raise RuntimeError(
                f"checkpoint {path} belongs to another run ({written_by}), not to "
                f"{self.checkpoint_owner}: it was copied or moved here; delete it to start this "
                "run afresh"
            )
        if not self.config.matches(state.get("config") or {}):
            raise RuntimeError(
                f"checkpoint {path} was written by a run with a different TrainConfig; "
                "use another checkpoint path or delete it"
            )
        hook_types = [type(hook).__qualname__ for hook in self.hooks]
        written_types = state.get("hook_types", hook_types)
        if len(state["hooks"]) != len(self.hooks) or any(
            saved and written != current  # a stateless hook (a kill switch, a logger) may differ
            for saved, written, current in zip(state["hooks"], written_types, hook_types)
        ):
            written = state.get("hook_types", f"{len(state['hooks'])} hooks")
            raise RuntimeError(
                f"checkpoint {path} was written with the hooks {written}, this run has "
                f"{hook_types}: it belongs to another run; delete it to start afresh"
            )
        model = build_resnet(ResNetSpec.from_dict(state["spec"])) if state["spec"] is not None else self.model
        model.load_state_dict(state["model"])
        model = model.to(self.device)
        optimizer = make_optimizer(model, self.config)
        optimizer.load_state_dict(state["optimizer"])
        self._set_model(model, optimizer)
        self.scaler.load_state_dict(state["scaler"])
        for hook, hook_state in zip(self.hooks, state["hooks"]):
            hook.load_state_dict(hook_state)
        self.epoch = state["epoch"]
        self.step_count = state["step_count"]
        self.batch_size = state["batch_size"]
        self.lr_scale = state["lr_scale"]
        self.after_shape_change = state["after_shape_change"]
        self._hook_flops = state["hook_flops"]
        self.history = list(state["history"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` in eval mode on (x, y)."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        with torch.autocast(xb.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            outputs = model(xb)
        loss_sum += float(nn.functional.cross_entropy(outputs.float(), yb, reduction="sum"))
        correct += int((outputs.argmax(1) == yb).sum())
    model.train(was_training)
    n = max(len(y), 1)
    return loss_sum / n, correct / n


def seeded_model(spec_or_config: Any, seed: int) -> ResNet:
    """Build a ResNet with its initial weights fixed by `seed` (the thesis's reproducible seeds, 3.1.4)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_resnet(spec_or_config)


def training_flops(history: pd.DataFrame) -> int:
    """Training FLOPs a run executed: every epoch's `train_flops` (forward and backward of the net it trained,
    times its images) and `hook_flops` (the hooks' own passes), summed over the epochs of the history."""
    return int(history["train_flops"].sum() + history["hook_flops"].sum())
