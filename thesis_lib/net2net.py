"""Net2Net (thesis section 2.5): grow a trained ResNet wider or deeper without changing its function.

Wider (Net2WiderNet, eq. 2.4): every channel group that grows gets one random map g with g(j) = j for
the old channels and g(j) drawn uniformly, with replacement, from the old channels for each new one.
Producers (conv output filters, BN gamma, beta, running mean and var) are copied through g; readers
(conv input slices, the classifier's columns) are copied through g and divided by the replication count
of g(j). A residual stream is one channel group (`thesis_lib.surgery.channel_groups`), so every layer that
writes or reads it uses the same g; that is what keeps the sum of the residual additions intact. The
widened net computes the same logits in eval mode and, since replicated channels have equal batch
statistics, in train mode too.

Deeper (Net2DeeperNet, eq. 2.5): either a whole residual block whose last BN has gamma = beta = 0 (its
main path adds exactly zero, and the block's final ReLU acts on the stream, which is already a ReLU
output), or one conv + BN + ReLU layer inside a block whose conv is the identity kernel (a 1 at spatial
index (k - 1) // 2 on the channel diagonal) and whose BN undoes its own normalisation.

All shape changes go through `thesis_lib.surgery`; this module only chooses the maps and the new weights.
The random-init baselines of chapter 6.2 are here too, so that both arms of the comparison share the code.
`Net2NetHook` applies a growth schedule inside one resumable `Trainer` run; the experiment "net2net_grow"
(chapter 6.2) uses it to grow the narrow baseline into a wider and / or deeper net within one cached run.
`net2net_plan` fixes the growths per profile; `label_runs`, `panel_frame`, `reach_table` and
`final_accuracy_comparisons` turn the sweeps into the chapter's figures, tables and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping, Sequence, Union

import pandas as pd
import torch
from torch import nn

from .experiments import RunContext, RunOutput, experiment, get_profile, summarize_training
from .models import ResNet
from .surgery import ChannelGroup, channel_groups, insert_block, insert_layer, map_channels
from .training import TrainConfig, Trainer, TrainingHook, make_optimizer, seeded_model

INITS = ("net2net", "random")
DEEPEN_KINDS = ("block", "layer")


def _check_init(init: str) -> None:
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; use one of {INITS}")


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _seed_from(generator: torch.Generator | None) -> int:
    """A seed drawn from `generator` (the global RNG when None), to make PyTorch's default init reproducible."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def wider_index_map(old_size: int, new_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The random map g of eq. 2.4 as an index tensor: new channel j is old channel g[j].

    g[j] = j for j < old_size; every further entry is drawn uniformly with replacement from range(old_size).
    """
    if old_size < 1:
        raise ValueError(f"cannot widen a group of size {old_size}; it has no channel to copy")
    if new_size < old_size:
        raise ValueError(f"new size {new_size} is smaller than the current size {old_size}; widening only grows")
    extra = torch.randint(0, old_size, (new_size - old_size,), generator=generator)
    return torch.cat([torch.arange(old_size), extra])


def widen_groups(model: ResNet, sizes: Mapping[str, int], *, noise: float = 0.0, init: str = "net2net",
                 generator: torch.Generator | None = None) -> ResNet:
    """Grow the named channel groups to the given sizes; the primitive behind `widen` and `widen_group`.

    init="net2net": Net2WiderNet through one random map per group (see the module docstring); with
    noise = 0 the new net computes the same function as `model`. noise > 0 breaks the symmetry between a
    channel and its copies (thesis 2.5): each new channel's incoming conv filter gets Gaussian noise with
    standard deviation noise * std(teacher's weight tensor) (population std), drawn from `generator`. The
    original channels are not perturbed.
    init="random" (the chapter 6.2 baseline): the same maps through `map_channels(new_channels="fresh")`:
    every old weight and BN statistic stays at its old index, the new units get PyTorch's default init
    (seeded from `generator`) and nothing is divided, so the function changes.
    All random draws use `generator` (the global RNG when None). `model` itself is left untouched.
    """
    _check_init(init)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if noise > 0 and init != "net2net":
        raise ValueError("noise breaks the symmetry of replicated channels; it applies to init='net2net' only")
    groups = {group.name: group for group in channel_groups(model)}
    for name, size in sizes.items():
        if name not in groups:
            raise ValueError(f"unknown channel group {name!r}; the model has {sorted(groups)}")
        if size < groups[name].size:
            raise ValueError(f"group {name!r} has {groups[name].size} channels; cannot widen it to {size}")
    grown = {name: size for name, size in sizes.items() if size > groups[name].size}
    index_maps = {name: wider_index_map(groups[name].size, size, generator) for name, size in grown.items()}
    if init == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed_from(generator))
            return map_channels(model, index_maps, divide_readers=False, new_channels="fresh")
    student = map_channels(model, index_maps, divide_readers=True)
    if noise > 0:
        _add_symmetry_breaking_noise(model, student, [groups[name] for name in grown], noise, generator)
    return student


def _add_symmetry_breaking_noise(teacher: ResNet, student: ResNet, grown: Sequence[ChannelGroup], noise: float,
                                 generator: torch.Generator | None) -> None:
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    with torch.no_grad():
        for group in grown:
            for key, _ in group.producer_members:
                weight = student_state[key]
                if weight.dim() != 4:
                    continue
                new_filters = weight[group.size:]
                scale = noise * float(teacher_state[key].float().std(correction=0))
                draw = torch.randn(new_filters.shape, generator=generator, dtype=weight.dtype)
                new_filters.add_(draw.to(weight.device), alpha=scale)


def widen_group(model: ResNet, group: str, new_size: int, *, noise: float = 0.0, init: str = "net2net",
                generator: torch.Generator | None = None) -> ResNet:
    """Grow one channel group (e.g. one block's internal width "stage0.block1.layer1") to `new_size`."""
    return widen_groups(model, {group: new_size}, noise=noise, init=init, generator=generator)


def _scaled_width(width: int, scale: Fraction) -> int:
    """ceil(width * scale) in exact arithmetic (so 10 * 1.1 is 11, not 12)."""
    return -(-(width * scale.numerator) // scale.denominator)


def widen(model: ResNet, stages: int | Sequence[int] | None = None, factor: float | None = None,
          widths: Sequence[int] | None = None, noise: float = 0.0, init: str = "net2net",
          generator: torch.Generator | None = None, blocks: str | Sequence[int] = "all") -> ResNet:
    """Widen the residual stream of the given stages (all when None) and their blocks' internal widths.

    Give exactly one of:
    - `factor` >= 1: every widened width w becomes ceil(w * factor), computed exactly on the factor's
      decimal value (1 * 1.5 -> 2, 10 * 1.1 -> 11);
    - `widths`: one new stream width per selected stage (in the order of `stages`), each >= the current
      one. The stage's internal widths (and the stem's width for stage 0 when the stem is its own
      segment, as in bottleneck nets) scale by the same ratio, rounded up; so a ResNetConfig net widened
      to widths k' has the shape of ResNetConfig(widths=k').
    `blocks` picks which blocks of each selected stage get wider internal widths: "all", or a sequence of
    block indices (empty: widen only the stream). A stage without blocks has no stream of its own (it
    passes the previous stage's through); `factor` skips it, `widths` must leave it as it is.
    See `widen_groups` for `noise`, `init` and `generator`.
    """
    spec = model.spec
    if stages is None:
        selected = list(range(len(spec.stages)))
    elif isinstance(stages, int):
        selected = [stages]
    else:
        selected = [int(s) for s in stages]
    for stage in selected:
        if not 0 <= stage < len(spec.stages):
            raise ValueError(f"unknown stage {stage}; the model has stages 0..{len(spec.stages) - 1}")
    if len(set(selected)) != len(selected):
        raise ValueError(f"stages must not repeat, got {selected}")
    if (factor is None) == (widths is None):
        raise ValueError("give exactly one of factor (e.g. 1.5) or widths (one new stream width per stage)")
    if factor is not None:
        if not factor >= 1:
            raise ValueError(f"factor must be >= 1 (widen only grows), got {factor}")
        scales = {stage: Fraction(repr(float(factor))) for stage in selected}
    else:
        widths = [int(w) for w in widths]
        if len(widths) != len(selected):
            raise ValueError(f"widths has {len(widths)} entries for {len(selected)} stages {selected}")
        scales = {}
        for stage, width in zip(selected, widths):
            current = spec.stages[stage].width
            if width < current:
                raise ValueError(f"stage {stage} is {current} channels wide; cannot widen it to {width}")
            scales[stage] = Fraction(width, current)
    if blocks != "all":
        if isinstance(blocks, str):
            raise ValueError(f"blocks must be 'all' or a sequence of block indices, got {blocks!r}")
        blocks = [int(b) for b in blocks]
        for stage in selected:
            count = len(spec.stages[stage].blocks)
            if any(not 0 <= b < count for b in blocks):
                raise ValueError(f"block indices {blocks} out of range for stage {stage} with {count} blocks")
    groups = channel_groups(model)
    if widths is not None:
        owners = {0 if group.name == "stem" else group.stage for group in groups}
        for stage, width in zip(selected, widths):
            if stage not in owners and width != spec.stages[stage].width:
                raise ValueError(f"stage {stage} has no blocks: its stream is the previous stage's; widen that one")
    sizes = {}
    for group in groups:
        stage = 0 if group.name == "stem" else group.stage
        if stage not in scales:
            continue
        if group.kind == "internal" and blocks != "all" and group.block not in blocks:
            continue
        sizes[group.name] = _scaled_width(group.size, scales[stage])
    return widen_groups(model, sizes, noise=noise, init=init, generator=generator)


def deepen(model: ResNet, stage: int, position: int | None = None, init: str = "net2net", kind: str = "block",
           block: int | None = None, data: torch.Tensor | None = None, kernel_size: int = 3,
           generator: torch.Generator | None = None) -> ResNet:
    """Insert a residual block (kind="block") or one layer inside a block (kind="layer") into `stage`.

    kind="block": a stride-1 block with identity shortcut at `position` of the stage (None: at its end),
    laid out by `surgery.insert_block`. init="net2net" zeroes its last BN's gamma and beta, so its main
    path adds exactly 0 and the net's function is unchanged in eval and train mode (the block's final
    ReLU sees the stream, which is a ReLU output already); the other weights keep PyTorch's default init,
    so gradients reach them once gamma moves. init="random": the block as PyTorch initialises it (gamma = 1).

    kind="layer" (eq. 2.5): a conv + BN (+ ReLU) layer inserted into block `block` after its layer
    `position` (None: after layer l - 1, i.e. before the block's last conv). init="net2net": the conv is
    the identity (kernel_size must be odd: a 1 at (k - 1) // 2 on the channel diagonal, and its padding
    keeps the size); the BN gets gamma = sqrt(var + eps), beta = mean and the same running statistics,
    where mean and (biased) var are measured per channel on `data` (a batch of training images) passed
    through the net in eval mode up to the new layer. In eval mode the new BN is then the identity for
    every input, and the ReLU after it is the identity on non-negative inputs: the output of a ReLU'ed
    layer (1 <= position <= l - 1) or the block's input, which is a ReLU output (position 0). Exact in
    eval mode for 1 <= position <= l - 1, and for position 0 when the block has stride 1 or its first conv
    is 1x1 (position 0 hands the block's stride to the new layer, and sub-sampling before a k x k conv
    equals a strided k x k conv only for k = 1). Not exact: position = l (the old last layer gains a ReLU
    on the residual branch) and train mode on batches other than `data` (batch statistics replace the
    measured ones). init="random": the layer as PyTorch initialises it.

    Random draws (PyTorch's default init of the new weights) are seeded from `generator`.
    """
    _check_init(init)
    if kind not in DEEPEN_KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {DEEPEN_KINDS}")
    spec = model.spec
    if not 0 <= stage < len(spec.stages):
        raise ValueError(f"unknown stage {stage}; the model has stages 0..{len(spec.stages) - 1}")
    if kind == "block":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed_from(generator))
            student, name = insert_block(model, stage, position)
        if init == "net2net":
            new_block = student.get_submodule(name)
            last_bn = getattr(new_block, f"bn{new_block.num_layers}")
            with torch.no_grad():
                last_bn.weight.zero_()
                last_bn.bias.zero_()
        return student
    blocks = spec.stages[stage].blocks
    if block is None or not 0 <= block < len(blocks):
        raise ValueError(f"kind='layer' needs block= one of 0..{len(blocks) - 1} of stage {stage}, got {block}")
    layers = len(blocks[block].kernels)
    if layers == 0:
        raise ValueError(f"stage {stage} block {block} is a bare shortcut; it has no layer to follow")
    after_layer = layers - 1 if position is None else position
    if kernel_size % 2 == 0:
        raise ValueError(f"the identity layer needs an odd kernel size (centre (k-1)//2), got {kernel_size}")
    if init == "net2net" and data is None:
        raise ValueError("kind='layer' with init='net2net' needs data=, a batch of training images for its BN")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_from(generator))
        student, conv_name = insert_layer(model, stage, block, after_layer, kernel_size)
    if init == "net2net":
        _make_identity_layer(student, conv_name, data)
    return student


def _make_identity_layer(student: ResNet, conv_name: str, data: torch.Tensor) -> None:
    """Set the inserted conv to the identity and its BN to undo its normalisation (eq. 2.5)."""
    conv = student.get_submodule(conv_name)
    block_prefix, conv_leaf = conv_name.rsplit(".", 1)
    bn = student.get_submodule(f"{block_prefix}.{conv_leaf.replace('conv', 'bn')}")
    centre = (conv.kernel_size[0] - 1) // 2
    with torch.no_grad():
        conv.weight.zero_()
        channels = torch.arange(conv.out_channels, device=conv.weight.device)
        conv.weight[channels, channels, centre, centre] = 1.0
    captured: list[torch.Tensor] = []
    handle = conv.register_forward_hook(lambda module, inputs, output: captured.append(output.detach()))
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad():
            student(data.to(_device_of(student)))
    finally:
        handle.remove()
        student.train(was_training)
    activations = captured[0]
    mean = activations.mean(dim=(0, 2, 3))
    var = activations.var(dim=(0, 2, 3), unbiased=False)
    with torch.no_grad():
        bn.weight.copy_(torch.sqrt(var + bn.eps))
        bn.bias.copy_(mean)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)


def rebuild_optimizer(target: Union[Trainer, nn.Module], model: nn.Module | None = None, *,
                      config: TrainConfig | None = None, lr_scale: float = 1.0) -> torch.optim.Optimizer:
    """A fresh optimizer for a grown model.

    Momentum: every parameter starts with zero momentum (an empty optimizer state), carried or new alike.
    A replicated reader's weights were divided by the replication count, so its old momentum would no
    longer match it; a fresh state is also what the random-init baseline gets, which keeps the chapter
    6.2 comparison fair.
    Learning rate: the thesis (2.5) fixes no rate for the student; `lr_scale` multiplies the run's rate
    from now on (1.0 keeps the schedule unchanged).

    With a `Trainer` as target: builds the trainer's kind of optimizer for `model`, multiplies
    `trainer.lr_scale` by `lr_scale` (the trainer sets lr = schedule * lr_scale every epoch, and the
    checkpoint keeps it) and installs both via `trainer.replace_model`; the new rate takes effect when the
    trainer sets it at the start of the next epoch. With a model as target: returns
    `make_optimizer(target, config)` with its learning rate multiplied by `lr_scale`.
    """
    if not lr_scale > 0:
        raise ValueError(f"lr_scale must be > 0, got {lr_scale}")
    if isinstance(target, Trainer):
        if model is None:
            raise ValueError("rebuild_optimizer(trainer, model): give the grown model to install")
        model = model.to(target.device)
        optimizer = target.make_optimizer(model)
        target.lr_scale *= lr_scale
        target.replace_model(model, optimizer)
        return optimizer
    if config is None:
        raise ValueError("rebuild_optimizer(model, config=...): give the TrainConfig to build the optimizer from")
    optimizer = make_optimizer(target, config)
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * lr_scale
    return optimizer


@dataclass(frozen=True)
class WidenStep:
    """One `widen` call of a growth schedule (arguments as in `widen`)."""

    stages: int | tuple[int, ...] | None = None
    factor: float | None = None
    widths: tuple[int, ...] | None = None
    noise: float = 0.0
    init: str = "net2net"
    blocks: str | tuple[int, ...] = "all"

    def apply(self, model: ResNet, generator: torch.Generator, data: torch.Tensor) -> ResNet:
        return widen(model, self.stages, self.factor, self.widths, self.noise, self.init, generator, self.blocks)


@dataclass(frozen=True)
class DeepenStep:
    """One `deepen` call of a growth schedule (arguments as in `deepen`; data comes from the trainer)."""

    stage: int
    position: int | None = None
    init: str = "net2net"
    kind: str = "block"
    block: int | None = None
    kernel_size: int = 3

    def apply(self, model: ResNet, generator: torch.Generator, data: torch.Tensor) -> ResNet:
        return deepen(model, self.stage, self.position, self.init, self.kind, self.block, data,
                      self.kernel_size, generator)


class Net2NetHook(TrainingHook):
    """Grow the model inside a `Trainer` run: train narrow (or shallow), then widen / deepen, keep training.

    `schedule` maps an epoch number e (1-based, as in the history's "epoch" column) to the steps applied,
    in order, at the end of epoch e. After the steps the trainer gets a fresh optimizer via
    `rebuild_optimizer` (zero momentum, learning rate times `lr_scale`). The random maps, noise and new
    weights come from the hook's own generator (seeded by `seed`); its state travels in the checkpoint,
    so a resumed run grows exactly as an uninterrupted one. DeepenStep(kind="layer") measures its BN
    statistics on the first `data_size` training images.
    """

    def __init__(self, schedule: Mapping[int, Sequence[WidenStep | DeepenStep]], lr_scale: float = 1.0,
                 seed: int = 0, data_size: int = 256) -> None:
        for epoch, steps in schedule.items():
            if int(epoch) < 1:
                raise ValueError(f"schedule epochs are 1-based epoch numbers, got {epoch}")
            for step in steps:
                if not isinstance(step, (WidenStep, DeepenStep)):
                    raise ValueError(f"schedule steps must be WidenStep or DeepenStep, got {type(step).__name__}")
        if not lr_scale > 0:
            raise ValueError(f"lr_scale must be > 0, got {lr_scale}")
        if data_size < 1:
            raise ValueError(f"data_size must be >= 1, got {data_size}")
        self.schedule = {int(epoch): list(steps) for epoch, steps in schedule.items()}
        self.lr_scale = lr_scale
        self.data_size = data_size
        self.generator = torch.Generator().manual_seed(seed)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        steps = self.schedule.get(int(record["epoch"]), [])
        if not steps:
            return
        model = trainer.model
        data = trainer.data.train_x[:self.data_size]
        for step in steps:
            model = step.apply(model, self.generator, data)
        rebuild_optimizer(trainer, model, lr_scale=self.lr_scale)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())


# Chapter 6.2 experiments: grow the narrow baseline inside one cached, resumable training run.

OPERATIONS = ("widen_one", "widen_all", "deepen", "widen_deepen")
DEFAULT_NOISE = 0.05


def default_grow_epoch(epochs: int) -> int:
    """The epoch after which `net2net_grow` grows by default: a third of the run, at least epoch 1.

    On `full` (after epoch 60 of 180, first lr decay after epoch 93) and `quick` (after 3 of 10, decay
    after 5) the grown net trains some epochs at the full rate before the first decay. On `smoke` (after
    1 of 2, decay after 1) the growth coincides with the decay, so the new units only see the decayed rate.
    """
    if epochs < 2:
        raise ValueError(f"growing needs at least 2 epochs (one before, one after), got {epochs}")
    return max(1, epochs // 3)


def growth_steps(operation: str, init: str, wide_widths: Sequence[int], noise: float = 0.0,
                 stage: int | None = None) -> list[WidenStep | DeepenStep]:
    """The steps of one chapter 6.2 growth (applied together after the grow epoch).

    operation: "widen_one" widens `stage` (default: the last, which holds most parameters) to its width
    in `wide_widths`; "widen_all" widens every stage to `wide_widths` (the narrow net becomes the wide
    baseline's architecture); "deepen" appends one zero-gamma (init="net2net") or default-initialised
    (init="random") residual block to the end of every stage; "widen_deepen" widens all stages, then
    deepens each. `noise` applies to the widening of init="net2net" (see `widen_groups`).
    """
    _check_init(init)
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; use one of {OPERATIONS}")
    if stage is not None and operation != "widen_one":
        raise ValueError(f"stage picks the stage of operation 'widen_one'; {operation!r} takes no stage")
    if noise and not _noise_applies(operation, init):
        raise ValueError("noise breaks the symmetry of widened channels; it applies to init='net2net' with a "
                         f"widening operation only, not to {operation!r} with init={init!r}")
    stages = len(wide_widths)
    steps: list[WidenStep | DeepenStep] = []
    if operation == "widen_one":
        chosen = stages - 1 if stage is None else int(stage)
        if not 0 <= chosen < stages:
            raise ValueError(f"unknown stage {stage}; the model has stages 0..{stages - 1}")
        steps.append(WidenStep(stages=chosen, widths=(int(wide_widths[chosen]),), noise=noise, init=init))
    if operation in ("widen_all", "widen_deepen"):
        steps.append(WidenStep(stages=tuple(range(stages)), widths=tuple(int(w) for w in wide_widths),
                               noise=noise, init=init))
    if operation in ("deepen", "widen_deepen"):
        steps.extend(DeepenStep(stage=s, init=init) for s in range(stages))
    return steps


def _noise_applies(operation: str, init: str) -> bool:
    return init == "net2net" and operation != "deepen"


def grow_grid(profile: Any, operations: Sequence[str] = OPERATIONS, inits: Sequence[str] = INITS,
              noise: float = DEFAULT_NOISE, grow_epoch: int | None = None) -> list[dict[str, Any]]:
    """Params of `net2net_grow` for every (operation, init) and every seed of `profile`.

    Params that equal the experiment's defaults are left out, so that equal growths always share one
    cached run: `noise` is passed only where it applies (init="net2net" with a widening operation) and
    differs from DEFAULT_NOISE, `grow_epoch` only when given.
    """
    seeds = get_profile(profile).seeds
    grid = []
    for operation in operations:
        for init in inits:
            params: dict[str, Any] = {"operation": operation, "init": init}
            if _noise_applies(operation, init) and noise != DEFAULT_NOISE:
                params["noise"] = noise
            if grow_epoch is not None:
                params["grow_epoch"] = grow_epoch
            grid.extend({**params, "seed": seed} for seed in seeds)
    return grid


@dataclass(frozen=True)
class Net2NetPlan:
    """Chapter 6.2's comparison on one profile: the growths that run (each with both inits, every seed of
    the profile) and the `tolerance` below a baseline's mean final accuracy that counts as reaching it."""

    operations: tuple[str, ...]
    tolerance: float = 0.01

    def __post_init__(self) -> None:
        unknown = [operation for operation in self.operations if operation not in OPERATIONS]
        if unknown or not self.operations:
            raise ValueError(f"operations must be a non-empty subset of {OPERATIONS}, got {self.operations}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance is an accuracy difference in [0, 1), got {self.tolerance}")

    def grid(self, profile: Any) -> list[dict[str, Any]]:
        """Params of the "net2net_grow" runs (see `grow_grid`)."""
        return grow_grid(profile, operations=self.operations)

    def groups(self) -> list[str]:
        """Every compared group in display order: both baselines, then (operation, init) as in `label_runs`."""
        return list(SCRATCH_ARMS.values()) + [f"{operation}, {init}" for operation in self.operations
                                              for init in INITS]


NET2NET_PLANS: dict[str, Net2NetPlan] = {
    "smoke": Net2NetPlan(operations=("widen_all", "deepen")),
    "quick": Net2NetPlan(operations=OPERATIONS),
    "full": Net2NetPlan(operations=OPERATIONS),
}


def net2net_plan(profile: Any) -> Net2NetPlan:
    """Chapter 6.2's growths for `profile` (a name or Profile); smoke keeps two operations to stay fast."""
    name = get_profile(profile).name
    if name not in NET2NET_PLANS:
        raise ValueError(f"no Net2Net plan for profile {name!r}; plans exist for {sorted(NET2NET_PLANS)}")
    return NET2NET_PLANS[name]


SCRATCH_ARMS = {"wide": "wide from scratch", "narrow": "narrow from scratch"}
INIT_ARMS = {"net2net": "Net2Net init", "random": "random init"}
ARM_ORDER = (*SCRATCH_ARMS.values(), *INIT_ARMS.values())
BASELINE_OPERATION = "-"


def label_runs(baselines: pd.DataFrame, grown: pd.DataFrame) -> pd.DataFrame:
    """Baseline and grown rows (sweep summaries or histories) in one frame with three label columns.

    `arm`: "wide from scratch" / "narrow from scratch" for baselines (column model), "Net2Net init" /
    "random init" for grown runs (column init); `group`: the arm for baselines, "operation, init" for
    grown runs; `operation`: BASELINE_OPERATION ("-") for baselines.
    """
    for frame, column, known in [(baselines, "model", SCRATCH_ARMS), (grown, "init", INIT_ARMS)]:
        if column not in frame:
            raise ValueError(f"label_runs needs a {column!r} column; pass the frames of the baseline and "
                             "net2net_grow sweeps in that order")
        unknown = set(frame[column]) - set(known)
        if unknown:
            raise ValueError(f"unknown {column} value(s) {sorted(unknown)}; expected {sorted(known)}")
    scratch = baselines.assign(operation=BASELINE_OPERATION, arm=baselines["model"].map(SCRATCH_ARMS))
    scratch["group"] = scratch["arm"]
    grew = grown.assign(arm=grown["init"].map(INIT_ARMS), group=grown["operation"] + ", " + grown["init"])
    return pd.concat([scratch, grew], ignore_index=True)


def cumulative_time(history: pd.DataFrame, by: Sequence[str] = ()) -> pd.Series:
    """Training seconds until the end of every epoch: epoch_time + hook_time (training plus growth, without
    evaluation) summed in row order within each run, the runs told apart by the columns `by` (none: one run)."""
    seconds = history["epoch_time"] + history["hook_time"]
    if not by:
        return seconds.cumsum()
    return seconds.groupby([history[column] for column in by], sort=False).cumsum()


def panel_frame(history: pd.DataFrame, operation: str) -> pd.DataFrame:
    """The rows of one figure panel: both baselines and both inits of `operation`, ordered by ARM_ORDER
    (so every panel gives an arm the same colour), with `mean_cumulative_time`, the mean over seeds of
    `cumulative_time` per group and epoch (the x position of that epoch in the accuracy-time figure).

    `history` is `label_runs` of the histories with a `cumulative_time` column.
    """
    rows = history[history["operation"].isin([operation, BASELINE_OPERATION])]
    frame = pd.concat([rows[rows["arm"] == arm] for arm in ARM_ORDER], ignore_index=True)
    frame["mean_cumulative_time"] = frame.groupby(["group", "epoch"])["cumulative_time"].transform("mean")
    return frame


def architecture_table(summary: pd.DataFrame, groups: Sequence[str]) -> pd.DataFrame:
    """Parameters and forward FLOPs per image before and after the growth, one row per group in `groups`
    (equal for every seed, so the first run's); NaN "before" for the baselines, which never grow."""
    table = summary.groupby("group", sort=False).agg(
        params_before=("params_before", "first"), params_after=("final_params", "first"),
        flops_before=("flops_before", "first"), flops_after=("final_flops", "first"))
    scratch = [group for group in SCRATCH_ARMS.values() if group in table.index]
    table.loc[scratch, ["params_before", "flops_before"]] = float("nan")
    return table.reindex(groups)


def reach_targets(summary: pd.DataFrame, tolerance: float) -> dict[str, float]:
    """The accuracy each baseline model ("wide", "narrow") reaches: its mean final accuracy minus `tolerance`."""
    scratch = summary[summary["operation"] == BASELINE_OPERATION]
    means = scratch.groupby("model")["final_acc"].mean()
    return {model: float(means[model]) - tolerance for model in SCRATCH_ARMS if model in means.index}


def time_to_accuracy(history: pd.DataFrame, target: float) -> dict[str, float]:
    """First epoch, and the training seconds until its end, at which test accuracy reaches `target`.

    Seconds are the cumulative sum of epoch_time + hook_time (training plus growth, without evaluation).
    Both are NaN when the run never reaches `target`.
    """
    seconds = cumulative_time(history)
    reached = (history["test_acc"] >= target).to_numpy().nonzero()[0]
    if len(reached) == 0:
        return {"epoch": float("nan"), "seconds": float("nan")}
    first = int(reached[0])
    return {"epoch": float(history["epoch"].iloc[first]), "seconds": float(seconds.iloc[first])}


def reach_table(history: pd.DataFrame, targets: Mapping[str, float], groups: Sequence[str]) -> pd.DataFrame:
    """How soon the runs of each group reach each baseline's target accuracy (`reach_targets`).

    `time_to_accuracy` of every run (a group and seed of the labelled `history`), then per group (rows in
    the order of `groups`): "epoch to X" and "seconds to X", the means over the runs that reach target X
    (NaN if none does), "runs reaching X" and "runs", the group's number of runs.
    """
    rows = []
    for (group, seed), run_history in history.groupby(["group", "seed"], sort=False):
        row: dict[str, Any] = {"group": group, "seed": seed}
        for name, target in targets.items():
            reached = time_to_accuracy(run_history, target)
            row[f"epoch to {name}"], row[f"seconds to {name}"] = reached["epoch"], reached["seconds"]
        rows.append(row)
    runs = pd.DataFrame(rows)
    table = runs.groupby("group", sort=False).agg(
        **{f"{what} to {name}": (f"{what} to {name}", "mean") for name in targets for what in ("epoch", "seconds")},
        **{f"runs reaching {name}": (f"epoch to {name}", "count") for name in targets},
        runs=("seed", "count"))
    return table.reindex(groups)


def _reach_phrase(row: pd.Series, name: str) -> str:
    reached, runs = int(row[f"runs reaching {name}"]), int(row["runs"])
    if reached == 0:
        return f"none of {runs} runs reached the {name} net's accuracy"
    return (f"{reached} of {runs} runs reached the {name} net's accuracy after {row[f'epoch to {name}']:.1f} "
            f"epochs and {row[f'seconds to {name}']:.2f} s")


def reach_sentences(table: pd.DataFrame) -> list[str]:
    """One sentence per group of a `reach_table` (baselines first): how many runs reach each baseline's
    target and when; a grown group also says whether it got there sooner or later in seconds than the
    net trained from scratch (when both reach it)."""
    names = [name for name in SCRATCH_ARMS if f"runs reaching {name}" in table]
    sentences = [f"{SCRATCH_ARMS[name]}: {_reach_phrase(table.loc[SCRATCH_ARMS[name]], name)}."
                 for name in names if SCRATCH_ARMS[name] in table.index]
    for group, row in table.iterrows():
        if group in SCRATCH_ARMS.values():
            continue
        parts = []
        for name in names:
            phrase = _reach_phrase(row, name)
            reference = table.loc[SCRATCH_ARMS[name]]
            if row[f"runs reaching {name}"] > 0 and reference[f"runs reaching {name}"] > 0:
                sooner = row[f"seconds to {name}"] < reference[f"seconds to {name}"]
                phrase += f" ({'sooner' if sooner else 'later'} in seconds than the {name} net from scratch)"
            parts.append(phrase)
        sentences.append(f"{group}: " + "; ".join(parts) + ".")
    return sentences


def final_accuracy_comparisons(summary: pd.DataFrame, operations: Sequence[str], value: str = "final_acc",
                               what: str = "final accuracy") -> list[tuple[str, Any, Any]]:
    """The (label, a, b) pairs of chapter 6.2's Welch t-tests (for `stats.welch_table`): every grown group
    against the wide and the narrow net from scratch, then Net2Net against random init, per operation.
    `value` is the summary column compared, `what` names it in the labels."""
    samples = {group: part[value].to_numpy() for group, part in summary.groupby("group")}
    comparisons = []
    for operation in operations:
        pairs = [(f"{operation}, {init}", reference) for init in INITS for reference in SCRATCH_ARMS.values()]
        pairs.append((f"{operation}, net2net", f"{operation}, random"))
        for group, reference in pairs:
            missing = [name for name in (group, reference) if name not in samples]
            if missing:
                raise ValueError(f"no runs of group(s) {missing} in the summary; run the plan's grid and both "
                                 "baselines, and label them with label_runs")
            comparisons.append((f"{what}, {group} vs {reference}", samples[group], samples[reference]))
    return comparisons


@experiment("net2net_grow")
def net2net_grow_experiment(context: RunContext) -> RunOutput:
    """Chapter 6.2: train the narrow baseline, grow it after `grow_epoch`, train on to the profile's epochs.

    params: operation (see `growth_steps`), init ("net2net" | "random"), seed, optionally grow_epoch
    (default `default_grow_epoch(profile epochs)`; 1 <= grow_epoch < epochs), noise (only for init="net2net"
    with widening, default DEFAULT_NOISE; without it a copied channel and its original get equal gradients
    forever) and stage (operation "widen_one" only).
    The total number of epochs and the lr schedule are the profile's, as for the "baseline" runs, so both
    compare at equal epochs. After growing, the optimizer is rebuilt: momentum restarts at zero for every
    parameter (old and new alike, in both arms) and the learning rate follows the schedule unchanged
    (lr_scale 1). The growth's random draws come from a generator seeded with the run's seed.
    """
    params = dict(context.params)
    if "operation" not in params:
        raise ValueError(f"net2net_grow needs params operation= one of {OPERATIONS}")
    operation = params.pop("operation")
    init = params.pop("init", "net2net")
    seed = int(params.pop("seed", 0))
    noise = float(params.pop("noise", DEFAULT_NOISE if _noise_applies(operation, init) else 0.0))
    stage = params.pop("stage", None)
    epochs = context.profile.epochs
    grow_epoch = int(params.pop("grow_epoch", default_grow_epoch(epochs)))
    if params:
        raise ValueError(f"unknown net2net_grow params {sorted(params)}; use operation, init, seed, grow_epoch, "
                         "noise, stage")
    if not 1 <= grow_epoch < epochs:
        raise ValueError(f"grow_epoch must lie in 1..{epochs - 1} (the profile trains {epochs} epochs), "
                         f"got {grow_epoch}")
    wide_widths = context.resnet_config("wide").widths
    steps = growth_steps(operation, init, wide_widths, noise=noise, stage=stage)
    model = seeded_model(context.resnet_config("narrow"), seed)
    hook = Net2NetHook({grow_epoch: steps}, lr_scale=1.0, seed=seed)
    trainer = context.trainer(model, context.train_config(seed=seed), hooks=[hook])
    history = trainer.fit()
    before = history[history["epoch"] == grow_epoch].iloc[0]
    summary = {
        **summarize_training(history),
        "grow_epoch": grow_epoch,
        "noise": noise,
        "acc_at_growth": float(before["test_acc"]),
        "params_before": int(before["params"]),
        "flops_before": int(before["flops"]),
        "grown_spec": trainer.model.spec.to_json(),
    }
    return RunOutput(history=history, summary=summary, model=trainer.model)
