"""The thesis ResNet (section 3.1.3), built from an explicit per-layer width spec.

`ResNetConfig` holds the thesis's hyperparameters s (stages), N (blocks per stage), l (conv+BN layers per
block), k (widths per stage) and b (bottleneck). It expands into a `ResNetSpec`, which names every width
of the network explicitly. Pruned, widened and deepened networks are again `ResNetSpec`s, so every
network in this project can be rebuilt, saved, counted and trained the same way.

Structure (table 3.1): a stem conv + BN + ReLU, then the stages. A block is a chain of conv + BN layers
with ReLU between them; its last BN output is added to the shortcut and passed through a ReLU. The first
block of every later stage is a transition block (stride 2) whose shortcut is one more conv + BN; the
thesis's parameter table pins that shortcut to a 3x3 conv. Global average pooling and a linear classifier
end the network. Convs have no bias.

Initialisation: convs He-normal on the fan-out, BN gamma 1 and beta 0, the classifier PyTorch's default
(as in the original PruneTrain code and He et al.).

Ghost batch norm (Hoffer et al. 2017, thesis section 2.9) is a model option: `ghost_batch` in the config or
spec makes every BN a `GhostBatchNorm2d`, which normalises virtual sub-batches of that size in training.
It has the parameters and buffers of an ordinary BN, so surgery, counting and checkpoints treat it alike.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

BOTTLENECK_EXPANSION = 4


def _check_ghost_batch(ghost_batch: int | None) -> None:
    if ghost_batch is not None and (
        isinstance(ghost_batch, bool) or not isinstance(ghost_batch, int) or ghost_batch < 1
    ):
        raise ValueError(f"ghost_batch must be None (ordinary BN) or a whole number >= 1, got {ghost_batch!r}")


@dataclass(frozen=True)
class BlockSpec:
    """One residual block.

    `kernels[i]` is the kernel size of the block's i-th conv; `widths[i]` is the output width of the i-th
    conv for every conv but the last, whose output is the stage's residual stream. So a block of l layers
    has l kernels and l - 1 internal widths. A block with no layers (`kernels == ()`) is a bare shortcut:
    what is left of a transition block whose main path was pruned away.
    """

    widths: tuple[int, ...]
    kernels: tuple[int, ...]
    stride: int = 1
    shortcut_kernel: int | None = None  # None: identity shortcut; else a conv + BN of this kernel size

    @property
    def has_shortcut_conv(self) -> bool:
        return self.shortcut_kernel is not None

    @property
    def has_main_path(self) -> bool:
        return len(self.kernels) > 0


@dataclass(frozen=True)
class StageSpec:
    """One stage (the thesis's phase): its residual-stream width and its blocks, first block first."""

    width: int
    blocks: tuple[BlockSpec, ...]


@dataclass(frozen=True)
class ResNetSpec:
    """Every width of a ResNet. `stem_width` is the stem conv's output width (the stream that enters stage
    0). Stage indices are 0-based everywhere."""

    in_channels: int
    stem_width: int
    stages: tuple[StageSpec, ...]
    num_classes: int
    stem_kernel: int = 3
    ghost_batch: int | None = None  # None: ordinary BN; else ghost BN over virtual batches of this size

    def __post_init__(self) -> None:
        validate_spec(self)

    def to_dict(self) -> dict[str, Any]:
        ghost = {} if self.ghost_batch is None else {"ghost_batch": self.ghost_batch}
        return {
            **ghost,
            "in_channels": self.in_channels,
            "stem_width": self.stem_width,
            "stem_kernel": self.stem_kernel,
            "num_classes": self.num_classes,
            "stages": [
                {
                    "width": stage.width,
                    "blocks": [
                        {
                            "widths": list(block.widths),
                            "kernels": list(block.kernels),
                            "stride": block.stride,
                            "shortcut_kernel": block.shortcut_kernel,
                        }
                        for block in stage.blocks
                    ],
                }
                for stage in self.stages
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResNetSpec:
        stages = tuple(
            StageSpec(
                width=int(stage["width"]),
                blocks=tuple(
                    BlockSpec(
                        widths=tuple(int(w) for w in block["widths"]),
                        kernels=tuple(int(k) for k in block["kernels"]),
                        stride=int(block["stride"]),
                        shortcut_kernel=block["shortcut_kernel"],
                    )
                    for block in stage["blocks"]
                ),
            )
            for stage in data["stages"]
        )
        return cls(
            in_channels=int(data["in_channels"]),
            stem_width=int(data["stem_width"]),
            stages=stages,
            num_classes=int(data["num_classes"]),
            stem_kernel=int(data.get("stem_kernel", 3)),
            ghost_batch=data.get("ghost_batch"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ResNetSpec:
        return cls.from_dict(json.loads(text))

    def stream_widths(self) -> list[int]:
        """Width of the residual stream entering each stage (the stem's width for stage 0)."""
        inputs, width = [], self.stem_width
        for stage in self.stages:
            inputs.append(width)
            width = stage.width
        return inputs


def validate_spec(spec: ResNetSpec) -> None:
    """Raise ValueError naming the first inconsistency of a spec."""
    for name in ("in_channels", "stem_width", "num_classes", "stem_kernel"):
        if getattr(spec, name) < 1:
            raise ValueError(f"ResNetSpec.{name} must be >= 1, got {getattr(spec, name)}")
    _check_ghost_batch(spec.ghost_batch)
    if not spec.stages:
        raise ValueError("ResNetSpec needs at least one stage")
    width_in = spec.stem_width
    for s, stage in enumerate(spec.stages):
        if stage.width < 1:
            raise ValueError(f"stage {s}: stream width must be >= 1, got {stage.width}")
        for b, block in enumerate(stage.blocks):
            where = f"stage {s} block {b}"
            if len(block.widths) != max(len(block.kernels) - 1, 0):
                raise ValueError(
                    f"{where}: {len(block.kernels)} layers need {max(len(block.kernels) - 1, 0)} internal "
                    f"widths, got {len(block.widths)}"
                )
            if any(w < 1 for w in block.widths):
                raise ValueError(f"{where}: internal widths must be >= 1, got {block.widths}")
            if any(k < 1 for k in block.kernels):
                raise ValueError(f"{where}: kernel sizes must be >= 1, got {block.kernels}")
            if block.stride < 1:
                raise ValueError(f"{where}: stride must be >= 1, got {block.stride}")
            needs_projection = block.stride != 1 or width_in != stage.width
            if needs_projection and not block.has_shortcut_conv:
                raise ValueError(
                    f"{where}: maps width {width_in} -> {stage.width} with stride {block.stride}, "
                    "so it needs a shortcut conv (set shortcut_kernel)"
                )
            if not block.has_main_path and not block.has_shortcut_conv:
                raise ValueError(f"{where}: a block without layers is the identity; drop it from the stage")
            width_in = stage.width
        if width_in != stage.width:
            raise ValueError(f"stage {s} has no block that maps width {width_in} to its stream width {stage.width}")


@dataclass(frozen=True)
class ResNetConfig:
    """The thesis's ResNet hyperparameters (section 3.1.3).

    stages = s, blocks = N per stage, layers_per_block = l, widths = k per stage, bottleneck = b.
    Basic blocks have l 3x3 convs at the stage width. Bottleneck blocks (He et al.) have a 1x1 conv, l - 2
    3x3 convs and a 1x1 conv; internal widths are k and the stream is 4k wide, and their shortcut convs
    are 1x1. The first block of every stage after the first has stride 2 and a shortcut conv (3x3 for
    basic blocks, as the thesis's parameter table requires).
    """

    stages: int = 3
    blocks: tuple[int, ...] = (5, 5, 5)
    layers_per_block: int = 2
    widths: tuple[int, ...] = (16, 32, 64)
    bottleneck: bool = False
    in_channels: int = 3
    num_classes: int = 10
    ghost_batch: int | None = None

    def __post_init__(self) -> None:
        _check_ghost_batch(self.ghost_batch)
        object.__setattr__(self, "blocks", tuple(int(n) for n in self.blocks))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.stages < 1:
            raise ValueError(f"stages (s) must be >= 1, got {self.stages}")
        if len(self.widths) != self.stages:
            raise ValueError(
                f"widths has {len(self.widths)} entries but stages (s) = {self.stages}; give one width per stage"
            )
        if len(self.blocks) != self.stages:
            raise ValueError(
                f"blocks has {len(self.blocks)} entries but stages (s) = {self.stages}; give one N per stage"
            )
        if any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be positive, got {self.widths}")
        if any(n < 1 for n in self.blocks):
            raise ValueError(f"every stage needs at least one block, got blocks={self.blocks}")
        minimum_layers = 3 if self.bottleneck else 2
        if self.layers_per_block < minimum_layers:
            kind = "bottleneck" if self.bottleneck else "basic"
            raise ValueError(
                f"{kind} blocks need layers_per_block (l) >= {minimum_layers}, got {self.layers_per_block}"
            )
        if self.in_channels < 1 or self.num_classes < 2:
            raise ValueError(
                f"need in_channels >= 1 and num_classes >= 2, got {self.in_channels} and {self.num_classes}"
            )

    def to_spec(self) -> ResNetSpec:
        """Expand the hyperparameters into the explicit width spec."""
        layers = self.layers_per_block
        if self.bottleneck:
            kernels = (1,) + (3,) * (layers - 2) + (1,)
            shortcut_kernel = 1
        else:
            kernels = (3,) * layers
            shortcut_kernel = 3
        stem_width = self.widths[0]
        stages, width_in = [], stem_width
        for s, (n_blocks, k) in enumerate(zip(self.blocks, self.widths)):
            stream = k * BOTTLENECK_EXPANSION if self.bottleneck else k
            blocks = []
            for b in range(n_blocks):
                stride = 2 if (s > 0 and b == 0) else 1
                projection = stride != 1 or (b == 0 and width_in != stream)
                blocks.append(
                    BlockSpec(
                        widths=(k,) * (layers - 1),
                        kernels=kernels,
                        stride=stride,
                        shortcut_kernel=shortcut_kernel if projection else None,
                    )
                )
            stages.append(StageSpec(width=stream, blocks=tuple(blocks)))
            width_in = stream
        return ResNetSpec(
            in_channels=self.in_channels,
            stem_width=stem_width,
            stages=tuple(stages),
            num_classes=self.num_classes,
            ghost_batch=self.ghost_batch,
        )

    def with_(self, **changes: Any) -> ResNetConfig:
        """A copy with some fields changed (keeps the validation)."""
        return replace(self, **changes)


WIDE_BASELINE = ResNetConfig(stages=3, blocks=(5, 5, 5), widths=(16, 32, 64))
NARROW_BASELINE = ResNetConfig(stages=3, blocks=(5, 5, 5), widths=(8, 16, 32))


class GhostBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over virtual sub-batches of `virtual_batch` images (Hoffer et al. 2017, "ghost BN").

    In training, a batch of n > virtual_batch images is cut into consecutive virtual batches (the last one
    may be smaller); each is normalised with its own mean and biased variance, in one call of the fused BN
    kernel (the virtual batches become channels of a reshaped tensor, no Python loop over them). The
    running statistics move once per step, by the momentum, towards the mean over the virtual batches of
    their means and unbiased variances. A batch of at most `virtual_batch` images and evaluation mode are
    ordinary BN, so one virtual batch equals `nn.BatchNorm2d` exactly. Parameters and buffers are those of
    `nn.BatchNorm2d`: state dicts move between the two.
    """

    def __init__(self, num_features: int, virtual_batch: int, **kwargs: Any) -> None:
        super().__init__(num_features, **kwargs)
        _check_ghost_batch(virtual_batch)
        if self.momentum is None:
            raise ValueError("GhostBatchNorm2d needs a numeric momentum (the cumulative average is not supported)")
        self.virtual_batch = virtual_batch

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, virtual_batch={self.virtual_batch}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] <= self.virtual_batch:
            return super().forward(x)
        full = x.shape[0] // self.virtual_batch * self.virtual_batch
        parts = [(x[:full], full // self.virtual_batch)] + ([(x[full:], 1)] if full < x.shape[0] else [])
        outputs, means, variances = zip(*(self._normalise(part, ghosts) for part, ghosts in parts))
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.copy_(torch.cat(means).mean(0))
                self.running_var.copy_(torch.cat(variances).mean(0))
                self.num_batches_tracked.add_(1)
        return torch.cat(outputs)

    def _normalise(self, x: torch.Tensor, ghosts: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalise `ghosts` equal virtual batches of x at once; return the output and each virtual batch's
        updated running mean and variance (rows of a (ghosts, C) tensor)."""
        size, channels, rest = x.shape[0] // ghosts, x.shape[1], x.shape[2:]
        grouped = x.reshape(ghosts, size, channels, *rest).transpose(0, 1).reshape(size, ghosts * channels, *rest)
        running_mean = self.running_mean.repeat(ghosts) if self.track_running_stats else None
        running_var = self.running_var.repeat(ghosts) if self.track_running_stats else None
        weight = self.weight.repeat(ghosts) if self.weight is not None else None
        bias = self.bias.repeat(ghosts) if self.bias is not None else None
        out = nn.functional.batch_norm(grouped, running_mean, running_var, weight, bias, True, self.momentum, self.eps)
        out = out.reshape(size, ghosts, channels, *rest).transpose(0, 1).reshape(ghosts * size, channels, *rest)
        if running_mean is None:
            return out, torch.empty(0), torch.empty(0)
        return out, running_mean.view(ghosts, channels), running_var.view(ghosts, channels)


def batch_norm(width: int, ghost_batch: int | None = None) -> nn.BatchNorm2d:
    """The BN layer of the thesis ResNet: ordinary, or ghost BN over virtual batches of `ghost_batch`."""
    return nn.BatchNorm2d(width) if ghost_batch is None else GhostBatchNorm2d(width, ghost_batch)


def ghost_batch_sizes(model: nn.Module) -> set[int]:
    """The virtual batch sizes of the ghost BN layers in `model` (empty for ordinary BN)."""
    return {m.virtual_batch for m in model.modules() if isinstance(m, GhostBatchNorm2d)}


def _conv(in_width: int, out_width: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free conv with He et al.'s normal init on the fan-out (std sqrt(2 / (out * k * k))), as the
    original PruneTrain code and He et al.'s CIFAR ResNets initialise: PruneTrain's lambda (eq. 2.3) and
    the effect of its fixed threshold on |w| depend on the scale of the initial weights."""
    conv = nn.Conv2d(in_width, out_width, kernel, stride=stride, padding=kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class ResidualBlock(nn.Module):
    """conv1, bn1, ..., convL, bnL with ReLU between layers; shortcut_conv / shortcut_bn when projecting."""

    def __init__(self, in_width: int, out_width: int, spec: BlockSpec, ghost_batch: int | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.num_layers = len(spec.kernels)
        widths = (in_width,) + spec.widths + (out_width,)
        for i, kernel in enumerate(spec.kernels, start=1):
            stride = spec.stride if i == 1 else 1
            setattr(self, f"conv{i}", _conv(widths[i - 1], widths[i], kernel, stride))
            setattr(self, f"bn{i}", batch_norm(widths[i], ghost_batch))
        if spec.has_shortcut_conv:
            self.shortcut_conv = _conv(in_width, out_width, spec.shortcut_kernel, spec.stride)
            self.shortcut_bn = batch_norm(out_width, ghost_batch)

    def layers(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        """The main path's (conv, bn) pairs in order."""
        return [(getattr(self, f"conv{i}"), getattr(self, f"bn{i}")) for i in range(1, self.num_layers + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut_bn(self.shortcut_conv(x)) if self.spec.has_shortcut_conv else x
        if not self.spec.has_main_path:
            return torch.relu(shortcut)
        out = x
        for i, (conv, bn) in enumerate(self.layers(), start=1):
            out = bn(conv(out))
            if i < self.num_layers:
                out = torch.relu(out)
        return torch.relu(out + shortcut)


class Stage(nn.Module):
    def __init__(self, in_width: int, spec: StageSpec, ghost_batch: int | None = None) -> None:
        super().__init__()
        widths_in = [in_width] + [spec.width] * (len(spec.blocks) - 1)
        self.blocks = nn.ModuleList(
            ResidualBlock(w, spec.width, b, ghost_batch) for w, b in zip(widths_in, spec.blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class ResNet(nn.Module):
    """A ResNet whose every width is given by `spec` (see module docstring for the structure)."""

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stem_conv = _conv(spec.in_channels, spec.stem_width, spec.stem_kernel)
        self.stem_bn = batch_norm(spec.stem_width, spec.ghost_batch)
        self.stages = nn.ModuleList(
            Stage(w_in, stage, spec.ghost_batch) for w_in, stage in zip(spec.stream_widths(), spec.stages)
        )
        self.classifier = nn.Linear(spec.stages[-1].width, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_bn(self.stem_conv(x)))
        for stage in self.stages:
            x = stage(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


def require_thesis_resnet(model: object, user: str, check_shapes: bool = True) -> ResNet:
    """`model` if it is a thesis_lib ResNet, else a TypeError naming its full class, what `user` supports
    and the ResNetConfig that builds the nearest thesis net (read off a torchvision-style ResNet).
    With `check_shapes`, a ResNet whose tensors no longer have the shapes its spec says is a ValueError
    (`spec_mismatch`): a tool outside thesis_lib changed them, and every channel index would be wrong."""
    if isinstance(model, ResNet):
        mismatch = spec_mismatch(model) if check_shapes else None
        if mismatch:
            raise ValueError(
                f"{user}: the net's spec no longer matches its modules ({mismatch}); a tool outside "
                "thesis_lib (e.g. Torch-Pruning) changed its shapes without updating model.spec. "
                "Change shapes with thesis_lib.surgery (prune_channels, widen, deepen), or rebuild "
                "the net with build_resnet from a ResNetSpec of its new widths and load its weights"
            )
        return model
    kind = type(model)
    stages = [
        getattr(model, f"layer{i}") for i in range(1, 5) if isinstance(getattr(model, f"layer{i}", None), nn.Sequential)
    ]
    if stages and all(len(stage) and hasattr(stage[0], "conv1") for stage in stages):
        bottleneck = hasattr(stages[0][0], "conv3")
        widths = tuple(int(stage[0].conv1.out_channels) for stage in stages)
        classes = getattr(getattr(model, "fc", None), "out_features", 10)
        hint = (
            f"ResNetConfig(stages={len(stages)}, blocks={tuple(len(stage) for stage in stages)}, "
            f"widths={widths}, bottleneck={bottleneck}, layers_per_block={3 if bottleneck else 2}, "
            f"in_channels=3, num_classes={classes})"
        )
    else:
        hint = "ResNetConfig(stages=3, blocks=(5, 5, 5), widths=(16, 32, 64), in_channels=3, num_classes=10)"
    raise TypeError(
        f"{user} works on thesis_lib.models.ResNet only (built by build_resnet from a ResNetConfig or "
        f"ResNetSpec, whose spec names every channel group), got {kind.__module__}.{kind.__qualname__}; "
        f"build the nearest thesis net with build_resnet({hint}) (its stem is a 3x3 conv, "
        "without max pooling) and train that"
    )


def spec_mismatch(model: ResNet) -> str | None:
    """The first tensor of `model` whose shape differs from what `model.spec` builds (a net built on the meta
    device, so nothing is allocated), or None when every shape matches."""
    expected = _spec_shapes(model.spec.to_json())
    actual = {name: tuple(tensor.shape) for name, tensor in model.state_dict(keep_vars=True).items()}
    if actual == expected:
        return None
    for name, shape in expected.items():
        if name not in actual:
            return f"{name} is missing"
        if actual[name] != shape:
            return f"{name} has shape {actual[name]}, the spec says {shape}"
    return f"{sorted(set(actual) - set(expected))[0]} is not in the spec"


@functools.lru_cache(maxsize=64)
def _spec_shapes(spec_json: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = build_resnet(ResNetSpec.from_json(spec_json))
    return {name: tuple(tensor.shape) for name, tensor in net.state_dict().items()}


def build_resnet(config: ResNetConfig | ResNetSpec) -> ResNet:
    """Build a freshly initialised ResNet (He-normal fan-out convs, see `_conv`) from a config or a spec."""
    spec = config.to_spec() if isinstance(config, ResNetConfig) else config
    if not isinstance(spec, ResNetSpec):
        raise TypeError(f"build_resnet needs a ResNetConfig or ResNetSpec, got {type(config).__name__}")
    return ResNet(spec)


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's parameters (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BN running statistics are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, input_size: Sequence[int]) -> int:
    """Forward FLOPs of one image of shape `input_size` (C, H, W), counted by torch.utils.flop_counter.

    Convs and the classifier's matmul count 2 FLOPs per multiply-accumulate; BN, ReLU, additions and
    pooling are not counted (the convention of the FLOP counter and of MorphNet's cost, eq. 2.10).
    """
    parameter = next(model.parameters())
    x = torch.zeros(1, *input_size, device=parameter.device, dtype=parameter.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def spec_flops(spec: ResNetSpec, input_size: Sequence[int]) -> int:
    """`count_flops` of the architecture `spec` without its weights: the net is built on PyTorch's meta
    device (shapes only, no memory, no initialisation), so a planner can cost many candidates cheaply."""
    with torch.device("meta"):
        model = build_resnet(spec)
    return count_flops(model, input_size)


def count_training_flops(model: nn.Module, input_size: Sequence[int]) -> int:
    """FLOPs of one training image of shape `input_size` (C, H, W): the forward pass and the backward pass
    to every parameter, counted by torch.utils.flop_counter as `count_flops` counts the forward pass.

    The backward of a conv or matmul costs a weight gradient and, except for the first layer (whose input
    needs none), an input gradient, each as large as the forward product: about 3x `count_flops`. The
    count runs in eval mode through `torch.autograd.grad`, so the model's `.grad`, BN statistics and mode
    are left as they were; the optimizer step and the elementwise work of BN, ReLU and the hooks' penalty
    terms are not counted (the convention of `count_flops`).
    """
    parameter = next(model.parameters())
    x = torch.zeros(2, *input_size, device=parameter.device, dtype=parameter.dtype)
    trainable = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            torch.autograd.grad(model(x).sum(), trainable)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def parameter_table(
    stages: Sequence[int] = (1, 2, 3), blocks: Sequence[int] = range(1, 11), widths: Sequence[int] = (16, 32, 64)
) -> list[dict[str, int]]:
    """Parameter counts of the thesis's s x N grid (section 6.1): one row per (s, N)."""
    rows = []
    for s in stages:
        for n in blocks:
            config = ResNetConfig(stages=s, blocks=(n,) * s, widths=tuple(widths[:s]))
            rows.append({"stages": s, "blocks": n, "parameters": count_parameters(build_resnet(config))})
    return rows


def structure_table(model: ResNet) -> list[dict[str, Any]]:
    """Table 3.1 for any spec: one row per stem, block and classifier with input and output channels.

    The `phase` column numbers the stages from 1, as the thesis's table does (stage index + 1)."""
    spec = model.spec
    rows = [
        {
            "phase": "",
            "layer": f"Conv {spec.stem_kernel}x{spec.stem_kernel} + BN",
            "in": spec.in_channels,
            "out": spec.stem_width,
        }
    ]
    for s, (width_in, stage) in enumerate(zip(spec.stream_widths(), spec.stages)):
        for b, block in enumerate(stage.blocks):
            kind = "transition block" if block.has_shortcut_conv else "basic block"
            rows.append({"phase": s + 1, "layer": kind, "in": width_in if b == 0 else stage.width, "out": stage.width})
    rows.append({"phase": "", "layer": "Linear", "in": spec.stages[-1].width, "out": spec.num_classes})
    return rows
