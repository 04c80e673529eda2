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
`Net2NetHook` applies a growth schedule inside one resumable `Trainer` run; chapter 6.2's experiment
"net2net_grow" (`thesis_lib.chapters.ch06_2_net2net`) uses it to grow the narrow baseline within one run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
from torch import nn

from ..models import ResNet, ResNetSpec, device_of, require_thesis_resnet
from ..surgery import (
    ChannelGroup,
    block_inserted_spec,
    channel_groups,
    insert_block,
    insert_layer,
    layer_inserted_spec,
    map_channels,
    resized_spec,
)
from ..training import TrainConfig, Trainer, TrainingHook, make_optimizer

INITS = ("net2net", "random")
DEEPEN_KINDS = ("block", "layer")


def check_init(init: str) -> None:
    """Reject an `init` that is not one of INITS ("net2net": function-preserving, "random": fresh new units),
    with a ValueError that lists them; the growth operators and chapter 6.2's steps check it first."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; use one of {INITS}")


def _seed_from(generator: torch.Generator | None) -> int:
    """A seed drawn from `generator` (the global RNG when None), to make the fresh init of new units reproducible."""
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


def widen_groups(
    model: ResNet,
    sizes: Mapping[str, int],
    *,
    noise: float = 0.0,
    init: str = "net2net",
    generator: torch.Generator | None = None,
) -> ResNet:
    """Grow the named channel groups to the given sizes; the primitive behind `widen` and `widen_group`.

    init="net2net": Net2WiderNet through one random map per group (see the module docstring); with
    noise = 0 the new net computes the same function as `model`. noise > 0 breaks the symmetry between a
    channel and its copies (thesis 2.5): each new channel's incoming conv filter gets Gaussian noise with
    standard deviation noise * std(teacher's weight tensor) (population std), drawn from `generator`. The
    original channels are not perturbed.
    init="random" (the chapter 6.2 baseline): the same maps through `map_channels(new_channels="fresh")`:
    every old weight and BN statistic stays at its old index, the new units get the thesis ResNet's fresh
    init (He-normal convs, seeded from `generator`) and nothing is divided, so the function changes.
    All random draws use `generator` (the global RNG when None). `model` itself is left untouched.
    """
    check_init(init)
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


def _add_symmetry_breaking_noise(
    teacher: ResNet, student: ResNet, grown: Sequence[ChannelGroup], noise: float, generator: torch.Generator | None
) -> None:
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    with torch.no_grad():
        for group in grown:
            for key, _ in group.producer_members:
                weight = student_state[key]
                if weight.dim() != 4:
                    continue
                new_filters = weight[group.size :]
                scale = noise * float(teacher_state[key].float().std(correction=0))
                draw = torch.randn(new_filters.shape, generator=generator, dtype=weight.dtype)
                new_filters.add_(draw.to(weight.device), alpha=scale)


def widen_group(
    model: ResNet,
    group: str,
    new_size: int,
    *,
    noise: float = 0.0,
    init: str = "net2net",
    generator: torch.Generator | None = None,
) -> ResNet:
    """Grow one channel group (e.g. one block's internal width "stage0.block1.layer1") to `new_size`."""
    return widen_groups(model, {group: new_size}, noise=noise, init=init, generator=generator)


def _scaled_width(width: int, scale: Fraction) -> int:
    """ceil(width * scale) in exact arithmetic (so 10 * 1.1 is 11, not 12)."""
    return -(-(width * scale.numerator) // scale.denominator)


def widen(
    model: ResNet,
    stages: int | Sequence[int] | None = None,
    factor: float | None = None,
    widths: Sequence[int] | None = None,
    noise: float = 0.0,
    init: str = "net2net",
    generator: torch.Generator | None = None,
    blocks: str | Sequence[int] = "all",
) -> ResNet:
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
    spec = require_thesis_resnet(model, "widen").spec
    sizes = widened_sizes(spec, stages, factor, widths, blocks)
    return widen_groups(model, sizes, noise=noise, init=init, generator=generator)


def widened_sizes(
    spec: ResNetSpec,
    stages: int | Sequence[int] | None = None,
    factor: float | None = None,
    widths: Sequence[int] | None = None,
    blocks: str | Sequence[int] = "all",
) -> dict[str, int]:
    """The new size of every channel group `widen` grows (arguments as there; shapes only)."""
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
    groups = channel_groups(spec)
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
    return sizes


def widened_spec(
    spec: ResNetSpec,
    stages: int | Sequence[int] | None = None,
    factor: float | None = None,
    widths: Sequence[int] | None = None,
    blocks: str | Sequence[int] = "all",
) -> ResNetSpec:
    """The architecture `widen` builds (same arguments, no weights): for costing a candidate growth."""
    return resized_spec(spec, widened_sizes(spec, stages, factor, widths, blocks))


def deepen(
    model: ResNet,
    stage: int,
    position: int | None = None,
    init: str = "net2net",
    kind: str = "block",
    block: int | None = None,
    data: torch.Tensor | None = None,
    kernel_size: int = 3,
    generator: torch.Generator | None = None,
) -> ResNet:
    """Insert a residual block (kind="block") or one layer inside a block (kind="layer") into `stage`.

    kind="block": a stride-1 block with identity shortcut at `position` of the stage (None: at its end),
    laid out by `surgery.insert_block`. init="net2net" zeroes its last BN's gamma and beta, so its main
    path adds exactly 0 and the net's function is unchanged in eval and train mode (the block's final
    ReLU sees the stream, which is a ReLU output already); the other weights keep the fresh init (He-normal convs),
    so gradients reach them once gamma moves. init="random": the block as freshly initialised (gamma = 1).

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
    measured ones). init="random": the layer as freshly initialised.

    Random draws (the fresh init of the new weights) are seeded from `generator`.
    """
    check_init(init)
    spec = require_thesis_resnet(model, "deepen").spec
    deepened_spec(spec, stage, position, kind, block, kernel_size)  # checks the arguments before any surgery
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
    if init == "net2net" and data is None:
        raise ValueError("kind='layer' with init='net2net' needs data=, a batch of training images for its BN")
    after_layer = len(spec.stages[stage].blocks[block].kernels) - 1 if position is None else position
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_from(generator))
        student, conv_name = insert_layer(model, stage, block, after_layer, kernel_size)
    if init == "net2net":
        _make_identity_layer(student, conv_name, data)
    return student


def deepened_spec(
    spec: ResNetSpec,
    stage: int,
    position: int | None = None,
    kind: str = "block",
    block: int | None = None,
    kernel_size: int = 3,
) -> ResNetSpec:
    """The architecture `deepen` builds (same arguments, no weights): for costing a candidate growth."""
    if kind not in DEEPEN_KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {DEEPEN_KINDS}")
    if not 0 <= stage < len(spec.stages):
        raise ValueError(f"unknown stage {stage}; the model has stages 0..{len(spec.stages) - 1}")
    if kind == "block":
        return block_inserted_spec(spec, stage, position)
    blocks = spec.stages[stage].blocks
    if block is None or not 0 <= block < len(blocks):
        raise ValueError(f"kind='layer' needs block= one of 0..{len(blocks) - 1} of stage {stage}, got {block}")
    layers = len(blocks[block].kernels)
    if layers == 0:
        raise ValueError(f"stage {stage} block {block} is a bare shortcut; it has no layer to follow")
    if kernel_size % 2 == 0:
        raise ValueError(f"the identity layer needs an odd kernel size (centre (k-1)//2), got {kernel_size}")
    return layer_inserted_spec(spec, stage, block, layers - 1 if position is None else position, kernel_size)


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
            student(data.to(device_of(student)))
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


def rebuild_optimizer(
    target: Trainer | nn.Module,
    model: nn.Module | None = None,
    *,
    config: TrainConfig | None = None,
    lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
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
        return deepen(
            model, self.stage, self.position, self.init, self.kind, self.block, data, self.kernel_size, generator
        )


class Net2NetHook(TrainingHook):
    """Grow the model inside a `Trainer` run: train narrow (or shallow), then widen / deepen, keep training.

    `schedule` maps an epoch number e (1-based, as in the history's "epoch" column) to the steps applied,
    in order, at the end of epoch e. After the steps the trainer gets a fresh optimizer via
    `rebuild_optimizer` (zero momentum, learning rate times `lr_scale`). The random maps, noise and new
    weights come from the hook's own generator (seeded by `seed`); its state travels in the checkpoint,
    so a resumed run grows exactly as an uninterrupted one. DeepenStep(kind="layer") measures its BN
    statistics on the first `data_size` training images.
    """

    changes_shapes = True

    def __init__(
        self,
        schedule: Mapping[int, Sequence[WidenStep | DeepenStep]],
        lr_scale: float = 1.0,
        seed: int = 0,
        data_size: int = 256,
    ) -> None:
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

    def on_train_start(self, trainer: Trainer) -> None:
        require_thesis_resnet(trainer.model, "Net2NetHook")  # now, not at the growth epoch after hours of training

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        steps = self.schedule.get(int(record["epoch"]), [])
        if not steps:
            return
        model = trainer.model
        data = trainer.data.train_x[: self.data_size]
        for step in steps:
            model = step.apply(model, self.generator, data)
        rebuild_optimizer(trainer, model, lr_scale=self.lr_scale)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
