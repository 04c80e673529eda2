"""MorphNet (thesis section 2.7, Gordon et al. 2018): resource regularizers on BN gammas and the search loop.

Every conv j of the network (and the classifier, a 1x1 "conv" at 1x1 resolution) reads one channel group
and writes another (`thesis_lib.surgery.conv_edges` / `channel_groups`). With A_in, A_out the numbers of
*alive* channels of these groups (eq. 2.10: a channel is alive when |gamma| of its BN exceeds a threshold)
and coefficient c_j,

    F(j) = c_j * A_in * A_out                                          (eq. 2.9 / 2.10, the resource)
    G(j) = c_j * (A_in * sum |gamma_out| + A_out * sum |gamma_in|)     (eq. 2.11, the regularizer)

with c_j = 2 * H_out * W_out * kh * kw for FLOPs (2 FLOPs per multiply-accumulate, the convention of
`thesis_lib.models.count_flops`) and c_j = kh * kw for the model size (weight entries). F and G of the
network are sums over j (eq. 2.8, 2.12). Channels joined by a residual addition form one group: it is
alive where any of its BNs is alive, and G uses the elementwise maximum of |gamma| over the group's BNs
(the channel union of the original implementation). The image input counts as always alive with no gamma
(A_in = image channels, its gamma sum 0); the classifier's outputs are the num_classes class scores with
no gamma.

With every channel alive, F (flops) equals `count_flops(model, input_size)` exactly and F (size) equals the
number of conv and linear weight entries (no biases, no BN).

The search (algorithm 2.2): train with loss + lambda * G (eq. 2.13), shrink to the alive widths C', expand
by the largest width multiplier omega with F(omega * C') <= zeta (eq. 2.6), repeat; then train the found
structure from scratch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..data import Dataset
from ..models import ResNet, ResNetConfig, ResNetSpec, StageSpec, build_resnet, count_parameters, require_thesis_resnet
from ..surgery import INTERNAL, STREAM, channel_groups, conv_edges, same_width_segments, select_channels
from ..training import TrainConfig, Trainer, TrainingHook, seeded_model

RESOURCES = ("flops", "size")
DEFAULT_GAMMA_THRESHOLD = 1e-2
# lambda = DEFAULT_RELATIVE_STRENGTH / F(initial network): about 7e-9 for the 16/32/64 ResNet-32 on
# 32x32 images (1.4e8 FLOPs) and 3e-8 for the 8/16/32 one (DESIGN.md section 3).
DEFAULT_RELATIVE_STRENGTH = 1.0
# Builds one phase's Trainer in `morphnet_search`: (model, config, hooks, phase name) -> Trainer.
TrainerFactory = Callable[[ResNet, TrainConfig, list[TrainingHook], str], Trainer]


def _check_resource(resource: str) -> None:
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}; use one of {RESOURCES}")


def resource_coefficient(resource: str, kernel_size: tuple[int, int], output_size: tuple[int, int]) -> int:
    """c_j of eq. 2.9: 2 * H_out * W_out * kh * kw for "flops", kh * kw for "size"."""
    _check_resource(resource)
    kh, kw = kernel_size
    if resource == "size":
        return kh * kw
    height, width = output_size
    return 2 * height * width * kh * kw


def _conv_costs(coefficients: torch.Tensor, alive_in: torch.Tensor, alive_out: torch.Tensor) -> torch.Tensor:
    """F(j) per conv (eq. 2.10), elementwise over convs."""
    return coefficients * alive_in * alive_out


def _conv_penalties(
    coefficients: torch.Tensor,
    alive_in: torch.Tensor,
    gamma_sum_in: torch.Tensor,
    alive_out: torch.Tensor,
    gamma_sum_out: torch.Tensor,
) -> torch.Tensor:
    """G(j) per conv (eq. 2.11), elementwise over convs."""
    return coefficients * (alive_in * gamma_sum_out + alive_out * gamma_sum_in)


def _meta_model(spec: ResNetSpec) -> ResNet:
    """The architecture of `spec` without memory or initialisation cost (shapes only)."""
    with torch.device("meta"):
        return build_resnet(spec)


@lru_cache(maxsize=256)
def _output_sizes_cached(geometry_json: str, input_size: tuple[int, int, int]) -> dict[str, tuple[int, int]]:
    model = _meta_model(ResNetSpec.from_json(geometry_json)).eval()
    sizes: dict[str, tuple[int, int]] = {}
    handles = [
        module.register_forward_hook(
            lambda _module, _inputs, output, name=name: sizes.__setitem__(name, tuple(output.shape[-2:]))
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return sizes


def conv_output_sizes(spec: ResNetSpec, input_size: Sequence[int]) -> dict[str, tuple[int, int]]:
    """(H_out, W_out) of every conv of `spec` (by module name) for one image of shape `input_size` (C, H, W).

    Measured by forward hooks on a shape-only (meta device) forward pass. Cached per geometry: the spec
    with every width set to 1 (kernels, strides and blocks decide the resolutions, widths do not).
    """
    input_size = tuple(int(v) for v in input_size)
    if len(input_size) != 3 or min(input_size) < 1:
        raise ValueError(f"input_size must be (channels, height, width) of positive ints, got {input_size}")
    if input_size[0] != spec.in_channels:
        raise ValueError(f"input_size has {input_size[0]} channels but the network reads {spec.in_channels}")
    return dict(_output_sizes_cached(unit_width_spec(spec).to_json(), input_size))


class _GroupGammas:
    """max over a group's BNs of |gamma|, for every channel of every group, as one differentiable vector.

    The BN modules are looked up once; their current weights are read on every call, so the vector always
    reflects the model's present gammas and gradients flow to those BN weights only.
    """

    def __init__(self, model: ResNet, groups: Sequence[Any]) -> None:
        self.groups = list(groups)
        self.bn_modules: list[nn.BatchNorm2d] = []
        bn_offset: dict[str, int] = {}
        for group in self.groups:
            for bn_name in group.bns:
                if bn_name not in bn_offset:
                    bn_offset[bn_name] = sum(m.num_features for m in self.bn_modules)
                    self.bn_modules.append(model.get_submodule(bn_name))
        members = max(len(group.bns) for group in self.groups)
        rows = []
        for group in self.groups:
            if not group.bns:
                raise ValueError(f"channel group {group.name!r} has no BN, so MorphNet has no gamma for it")
            for channel in range(group.size):
                positions = [bn_offset[bn] + channel for bn in group.bns]
                rows.append(positions + [positions[0]] * (members - len(positions)))
        self.index = torch.tensor(rows, dtype=torch.long)
        self.group_of_channel = torch.tensor(
            [g for g, group in enumerate(self.groups) for _ in range(group.size)], dtype=torch.long
        )

    def __call__(self) -> torch.Tensor:
        gammas = torch.cat([bn.weight for bn in self.bn_modules]).abs()
        if self.index.device != gammas.device:  # the model moved (e.g. to the GPU) after construction
            self.index = self.index.to(gammas.device)
            self.group_of_channel = self.group_of_channel.to(gammas.device)
        return gammas.index_select(0, self.index.flatten()).view(self.index.shape).amax(dim=1)

    def per_group(self, values: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip((g.name for g in self.groups), values.split([g.size for g in self.groups])))


class MorphNetRegularizer:
    """MorphNet's resource F (eq. 2.10) and its regularizer G (eq. 2.11) for one ResNet.

    `penalty()` is differentiable and its gradient reaches only BN weights (gammas). `cost()` counts hard
    alive channels (|gamma| > `gamma_threshold`); the main path of a block with an internal group that has no
    alive channel contributes nothing (a transition block's shortcut conv still counts), since surgery removes
    such a main path (so `cost()` equals `count_flops` of the network
    `select_channels(model, alive_channels(model))` whenever every stream keeps an alive channel).
    """

    def __init__(
        self,
        model: ResNet,
        resource: str = "flops",
        gamma_threshold: float = DEFAULT_GAMMA_THRESHOLD,
        input_size: Sequence[int] = (3, 32, 32),
    ) -> None:
        _check_resource(resource)
        require_thesis_resnet(model, "MorphNetRegularizer")
        if not gamma_threshold >= 0:
            raise ValueError(f"gamma_threshold must be >= 0, got {gamma_threshold}")
        self.model = model
        self.resource = resource
        self.gamma_threshold = float(gamma_threshold)
        self.input_size = tuple(int(v) for v in input_size)
        self.groups = channel_groups(model)
        self.edges = conv_edges(model)
        self._gammas = _GroupGammas(model, self.groups)
        output_sizes = conv_output_sizes(model.spec, self.input_size)
        group_index = {group.name: g for g, group in enumerate(self.groups)}
        fixed_counts: list[int] = []

        def slot(group_name: str | None, fixed_count: int) -> int:
            """Index into [per-group values..., fixed channel counts...] for one side of a conv."""
            if group_name is not None:
                return group_index[group_name]
            fixed_counts.append(fixed_count)
            return len(self.groups) + len(fixed_counts) - 1

        coefficients, in_slots, out_slots = [], [], []
        for edge in self.edges:
            module = model.get_submodule(edge.name)
            if isinstance(module, nn.Linear):
                kernel, output, fixed_in, fixed_out = (1, 1), (1, 1), module.in_features, module.out_features
            else:
                kernel, output = tuple(module.kernel_size), output_sizes[edge.name]
                fixed_in, fixed_out = module.in_channels, module.out_channels
            coefficients.append(resource_coefficient(resource, kernel, output))
            in_slots.append(slot(edge.in_group, fixed_in))
            out_slots.append(slot(edge.out_group, fixed_out))
        self.coefficients = coefficients
        self._coefficients = torch.tensor(coefficients, dtype=torch.long)
        self._in_slots = torch.tensor(in_slots, dtype=torch.long)
        self._out_slots = torch.tensor(out_slots, dtype=torch.long)
        self._fixed_counts = torch.tensor(fixed_counts, dtype=torch.long)
        blocks: dict[tuple[int, int], list[int]] = {}
        for g, group in enumerate(self.groups):
            if group.kind == INTERNAL:
                blocks.setdefault((group.stage, group.block), []).append(g)
        self._block_internal_groups = list(blocks.values())

    def _alive_and_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per group: the number of alive channels and sum |gamma| (max over the group's BNs)."""
        gammas = self._gammas()
        alive = (gammas > self.gamma_threshold).to(gammas.dtype)
        counts = torch.zeros(len(self.groups), dtype=gammas.dtype, device=gammas.device)
        sums = torch.zeros_like(counts)
        counts = counts.index_add(0, self._gammas.group_of_channel, alive)
        sums = sums.index_add(0, self._gammas.group_of_channel, gammas)
        return counts, sums

    def _per_conv(self, per_group: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per conv, the value of the group it reads and of the group it writes; `fixed` gives the values of
        the sides without a group (image channels, class scores)."""
        if self._in_slots.device != per_group.device:  # the model moved after construction
            for name in ("_coefficients", "_in_slots", "_out_slots", "_fixed_counts"):
                setattr(self, name, getattr(self, name).to(per_group.device))
        values = torch.cat([per_group, fixed.to(per_group.dtype)])
        return values.index_select(0, self._in_slots), values.index_select(0, self._out_slots)

    def penalty(self) -> torch.Tensor:
        """G(W) = sum_j G(j) (eq. 2.11, 2.12): a scalar tensor, differentiable in the BN gammas."""
        counts, sums = self._alive_and_sums()
        alive_in, alive_out = self._per_conv(counts.detach(), self._fixed_counts)
        gamma_in, gamma_out = self._per_conv(sums, torch.zeros_like(self._fixed_counts))
        coefficients = self._coefficients.to(counts.dtype)
        return _conv_penalties(coefficients, alive_in, gamma_in, alive_out, gamma_out).sum()

    @torch.no_grad()
    def alive_counts(self) -> dict[str, int]:
        """Alive channels per group name (|gamma| > threshold in any of the group's BNs)."""
        counts, _ = self._alive_and_sums()
        return {group.name: int(count) for group, count in zip(self.groups, counts.tolist())}

    def _cost_from_counts(self, counts: torch.Tensor) -> int:
        """F = sum_j F(j) (eq. 2.8, 2.10) for the given alive channels per group; every internal group of a
        block counts as empty when one of them is (surgery removes that block's main path)."""
        counts = counts.to(torch.long)
        for group_indices in self._block_internal_groups:
            if bool((counts[group_indices] == 0).any()):
                counts[group_indices] = 0
        alive_in, alive_out = self._per_conv(counts, self._fixed_counts)
        return int(_conv_costs(self._coefficients, alive_in, alive_out).sum())

    @torch.no_grad()
    def cost(self) -> int:
        """F = sum_j F(j) (eq. 2.8, 2.10) with hard-thresholded alive counts."""
        counts, _ = self._alive_and_sums()
        return self._cost_from_counts(counts)

    def full_cost(self) -> int:
        """F with every channel alive: count_flops of the model (flops) or its weight entries (size)."""
        return self._cost_from_counts(torch.tensor([group.size for group in self.groups], device=self._in_slots.device))


def spec_cost(spec: ResNetSpec | ResNetConfig, resource: str = "flops", input_size: Sequence[int] = (3, 32, 32)) -> int:
    """F of a whole architecture (every channel alive), without allocating its weights."""
    _check_resource(resource)
    spec = spec.to_spec() if isinstance(spec, ResNetConfig) else spec
    return MorphNetRegularizer(_meta_model(spec), resource, 0.0, input_size).full_cost()


def alive_channels(model: ResNet, gamma_threshold: float = DEFAULT_GAMMA_THRESHOLD) -> dict[str, list[int]]:
    """Indices of alive channels per group, for `surgery.select_channels` (groups with every channel alive
    are left out, so they stay whole).

    A stream group with no alive channel keeps its one channel of largest |gamma|: a residual stream cannot
    be removed. An internal group with none is empty, which removes its block's main path. The stream
    segments of one stage keep one index set (`surgery.same_width_segments`), as the spec needs.
    """
    groups = channel_groups(model)
    group_gammas = _GroupGammas(model, groups)
    with torch.no_grad():
        gammas = group_gammas.per_group(group_gammas())
    keep: dict[str, list[int]] = {}
    for group in groups:
        values = gammas[group.name]
        alive = torch.nonzero(values > gamma_threshold).flatten().tolist()
        if not alive and group.kind == STREAM:
            alive = [int(values.argmax())]
        if len(alive) < group.size:
            keep[group.name] = alive
    sizes = {group.name: group.size for group in groups}
    return {name: kept for name, kept in same_width_segments(model.spec, keep).items() if len(kept) < sizes[name]}


def shrink_to_alive(model: ResNet, gamma_threshold: float = DEFAULT_GAMMA_THRESHOLD) -> ResNet:
    """A new model with only the alive channels (step 2 of algorithm 2.2), weights carried by surgery."""
    return select_channels(model, alive_channels(model, gamma_threshold))


def alive_spec(model: ResNet, gamma_threshold: float = DEFAULT_GAMMA_THRESHOLD) -> ResNetSpec:
    """The learned widths C' (algorithm 2.2, step 2): blocks whose internal widths reach zero disappear."""
    return shrink_to_alive(model, gamma_threshold).spec


# Added to a float omega * width before the floor, so that a product meant to be whole but computed just
# below it (0.57 * 100 = 56.99999999999999) floors to that whole number, not to one channel fewer; far
# smaller than any real fraction of a channel. A Fraction omega is exact and gets no guard.
FLOOR_ROUNDING_GUARD = 1e-9


def _scaled_width_down(width: int, omega: Fraction | float) -> int:
    """floor(omega * width) (eq. 2.6's width multiplier), at least 1; exact for rational omega. Rounds down,
    unlike net2net's `_scaled_width`, which rounds up."""
    scaled = Fraction(omega) * width if isinstance(omega, Fraction) else omega * width + FLOOR_ROUNDING_GUARD
    return max(1, math.floor(scaled))


def scale_spec(spec: ResNetSpec, omega: float | Fraction) -> ResNetSpec:
    """Every width (stem, streams, internal) multiplied by omega and rounded down (floor, as in section 2.7:
    omega * O = {floor(omega O_1), ...}), at least 1. Kernels, strides, shortcuts and blocks are kept."""
    if not omega > 0:
        raise ValueError(f"the width multiplier omega must be > 0, got {omega}")
    stages = tuple(
        StageSpec(
            width=_scaled_width_down(stage.width, omega),
            blocks=tuple(
                replace(block, widths=tuple(_scaled_width_down(w, omega) for w in block.widths))
                for block in stage.blocks
            ),
        )
        for stage in spec.stages
    )
    return replace(spec, stem_width=_scaled_width_down(spec.stem_width, omega), stages=stages)


def unit_width_spec(spec: ResNetSpec) -> ResNetSpec:
    """`spec` with every width 1: the smallest network of this structure."""
    return scale_spec(spec, Fraction(1, max(_spec_widths(spec)) + 1))


def _spec_widths(spec: ResNetSpec) -> set[int]:
    widths = {spec.stem_width}
    for stage in spec.stages:
        widths.add(stage.width)
        for block in stage.blocks:
            widths.update(block.widths)
    return widths


def _check_budget(spec: ResNetSpec, budget: float, resource: str, input_size: Sequence[int]) -> None:
    """A budget that some width multiplier of `spec` meets: positive and at least F of every width 1."""
    _check_resource(resource)
    if not budget > 0:
        raise ValueError(f"budget must be > 0, got {budget}")
    smallest = spec_cost(unit_width_spec(spec), resource, input_size)
    if smallest > budget:
        raise ValueError(
            f"budget {budget:g} is below the {resource} of the smallest network of this structure (every "
            f"width 1: {smallest}); raise the budget or remove blocks"
        )


def width_multiplier(
    spec: ResNetSpec, budget: float, resource: str = "flops", input_size: Sequence[int] = (3, 32, 32)
) -> tuple[float, ResNetSpec]:
    """The largest omega with F(omega * C) <= budget (algorithm 2.2, step 3) and that scaled spec.

    The scaled spec only changes where omega * w crosses an integer for some width w, so the search runs
    over those breakpoints n / w (cost grows with omega: bisection). The omega returned is the smallest
    breakpoint giving the returned spec; the next breakpoint exceeds the budget.
    """
    _check_budget(spec, budget, resource, input_size)

    def cost_at(omega: Fraction) -> int:
        return spec_cost(scale_spec(spec, omega), resource, input_size)

    upper = Fraction(1)
    while cost_at(upper) <= budget:
        upper *= 2
    candidates = sorted({Fraction(n, w) for w in _spec_widths(spec) for n in range(1, math.floor(upper * w) + 1)})
    low, high = 0, len(candidates) - 1  # candidates[0] gives every width 1 (fits); candidates[-1] = upper does not
    while high - low > 1:
        middle = (low + high) // 2
        if cost_at(candidates[middle]) <= budget:
            low = middle
        else:
            high = middle
    return float(candidates[low]), scale_spec(spec, candidates[low])


def uniform_config(spec: ResNetSpec) -> ResNetConfig | None:
    """The `ResNetConfig` (s, N, l, k, b) that expands to exactly `spec`, or None if the spec is not uniform."""
    if not all(stage.blocks for stage in spec.stages):
        return None
    layers = {len(block.kernels) for stage in spec.stages for block in stage.blocks}
    if len(layers) != 1:
        return None
    for bottleneck in (False, True):
        internal = [stage.blocks[0].widths[0] if stage.blocks[0].widths else stage.width for stage in spec.stages]
        widths = tuple(internal) if bottleneck else tuple(stage.width for stage in spec.stages)
        try:
            config = ResNetConfig(
                stages=len(spec.stages),
                blocks=tuple(len(s.blocks) for s in spec.stages),
                layers_per_block=next(iter(layers)),
                widths=widths,
                bottleneck=bottleneck,
                in_channels=spec.in_channels,
                num_classes=spec.num_classes,
            )
        except ValueError:
            continue
        if config.to_spec() == spec:
            return config
    return None


@dataclass
class MorphNetHook(TrainingHook):
    """Adds lambda * G(W) to the training loss (eq. 2.13) and records F and the alive channels per epoch.

    lambda = `strength` if given, else `relative_strength` / F(initial model) with every channel alive (the
    default 1.0 gives about 7e-9 for the 16/32/64 ResNet-32 on CIFAR, DESIGN.md section 3). The initial
    cost is fixed at the first `on_train_start` and saved in `state_dict`, so a resumed run uses the same
    lambda. A regularizer is (re)built whenever the trainer's model object changes. `input_size` defaults
    to the training images' shape.

    Epoch record columns: morphnet_cost (F, hard-thresholded), morphnet_alive (alive channels, all
    groups), morphnet_penalty (G), morphnet_strength (lambda), morphnet_alive_groups (JSON per group).
    Train with `TrainConfig(bn_weight_decay=False)`, as morph-net does: weight decay on the gammas would
    pull them towards zero as well and confound the regularizer's effect.
    """

    resource: str = "flops"
    relative_strength: float = DEFAULT_RELATIVE_STRENGTH
    gamma_threshold: float = DEFAULT_GAMMA_THRESHOLD
    input_size: tuple[int, ...] | None = None
    strength: float | None = None

    def __post_init__(self) -> None:
        _check_resource(self.resource)
        if self.strength is not None and not self.strength >= 0:
            raise ValueError(f"strength must be >= 0, got {self.strength}")
        if not self.relative_strength >= 0:
            raise ValueError(f"relative_strength must be >= 0, got {self.relative_strength}")
        self.initial_cost: int | None = None
        self._regularizer: MorphNetRegularizer | None = None

    def regularizer(self, trainer: Trainer) -> MorphNetRegularizer:
        """The regularizer of the trainer's current model."""
        if self._regularizer is None or self._regularizer.model is not trainer.model:
            input_size = self.input_size or tuple(trainer.data.train_x.shape[1:])
            self._regularizer = MorphNetRegularizer(trainer.model, self.resource, self.gamma_threshold, input_size)
        return self._regularizer

    @property
    def effective_strength(self) -> float:
        """lambda of eq. 2.13 (known after `on_train_start`)."""
        if self.strength is not None:
            return self.strength
        if self.initial_cost is None:
            raise RuntimeError("lambda is fixed by the first on_train_start (it needs the initial cost)")
        return self.relative_strength / self.initial_cost

    def on_train_start(self, trainer: Trainer) -> None:
        if self.initial_cost is None:
            self.initial_cost = self.regularizer(trainer).full_cost()

    def loss_term(
        self, trainer: Trainer, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor
    ) -> torch.Tensor:
        return self.effective_strength * self.regularizer(trainer).penalty()

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        regularizer = self.regularizer(trainer)
        counts = regularizer.alive_counts()
        with torch.no_grad():
            record["morphnet_penalty"] = float(regularizer.penalty())
        record["morphnet_cost"] = regularizer.cost()
        record["morphnet_alive"] = sum(counts.values())
        record["morphnet_strength"] = self.effective_strength
        record["morphnet_alive_groups"] = json.dumps(counts)

    def state_dict(self) -> dict[str, Any]:
        return {"initial_cost": self.initial_cost, "strength": self.strength}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.initial_cost = state["initial_cost"]
        self.strength = state["strength"]


@dataclass(frozen=True)
class SearchStructure:
    """One structure met by the search: the seed, or iteration i's shrunk (C') or expanded (omega C') net."""

    iteration: int
    kind: str
    spec: ResNetSpec
    cost: int
    flops: int
    size: int
    params: int
    omega: float | None = None

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """Residual-stream width per stage."""
        return tuple(stage.width for stage in self.spec.stages)

    @property
    def config(self) -> ResNetConfig | None:
        """The uniform (s, N, l, k, b) description, where the widths are uniform per stage."""
        return uniform_config(self.spec)

    def to_dict(self) -> dict[str, Any]:
        config = self.config
        return {
            "iteration": self.iteration,
            "kind": self.kind,
            "cost": self.cost,
            "flops": self.flops,
            "size": self.size,
            "params": self.params,
            "omega": self.omega,
            "stage_widths": list(self.stage_widths),
            "blocks": [len(s.blocks) for s in self.spec.stages],
            "config_widths": list(config.widths) if config is not None else None,
            "spec": self.spec.to_dict(),
        }


@dataclass
class SearchResult:
    """What `morphnet_search` found: every structure, the regularized runs and the final retraining."""

    resource: str
    budget: float
    structures: list[SearchStructure]
    search_histories: list[pd.DataFrame]
    retrain_history: pd.DataFrame
    model: ResNet

    @property
    def final_spec(self) -> ResNetSpec:
        return self.structures[-1].spec

    def to_json(self) -> str:
        """Resource, budget, every structure (with its spec) and the final test accuracy, as JSON."""
        return json.dumps(
            {
                "resource": self.resource,
                "budget": self.budget,
                "structures": [structure.to_dict() for structure in self.structures],
                "final_test_acc": float(self.retrain_history["test_acc"].iloc[-1]),
            },
            sort_keys=True,
        )


def _structure(
    iteration: int, kind: str, spec: ResNetSpec, resource: str, input_size: tuple[int, ...], omega: float | None = None
) -> SearchStructure:
    flops, size = spec_cost(spec, "flops", input_size), spec_cost(spec, "size", input_size)
    return SearchStructure(
        iteration,
        kind,
        spec,
        flops if resource == "flops" else size,
        flops,
        size,
        count_parameters(_meta_model(spec)),
        omega,
    )


def morphnet_search(
    seed_spec: ResNetSpec | ResNetConfig,
    data: Dataset,
    train_config: TrainConfig,
    *,
    resource: str = "flops",
    budget: float | None = None,
    iterations: int = 3,
    relative_strength: float = DEFAULT_RELATIVE_STRENGTH,
    strength: float | None = None,
    gamma_threshold: float = DEFAULT_GAMMA_THRESHOLD,
    regularize_epochs: int | None = None,
    retrain_config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    trainer_factory: TrainerFactory | None = None,
) -> SearchResult:
    """Algorithm 2.2: `iterations` times train with lambda * G (from a fresh seeded init of the current
    structure, `regularize_epochs` epochs, default `train_config.epochs`), shrink to the alive widths,
    expand by the largest width multiplier within `budget` (default: the seed's own cost); then train the
    last expanded structure from scratch with `retrain_config` (default `train_config`), no regularizer.
    Each iteration's lambda is `strength`, else `relative_strength` / F(the structure it trains). Every
    structure (seed, shrunk_i, expanded_i) is recorded with its cost, FLOPs, size, parameters and spec.
    The regularized phases train without weight decay on the BN gammas and betas (`bn_weight_decay=False`,
    as morph-net does); the retraining is ordinary training and keeps `retrain_config`'s setting.

    `trainer_factory(model, config, hooks, phase)` builds each phase's Trainer (phases "regularize_<i>" and
    "retrain"), e.g. a run context's checkpointing trainer, so that a killed search resumes where it
    stopped; by default a plain Trainer on `data` and `device`.
    """
    _check_resource(resource)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    spec = seed_spec.to_spec() if isinstance(seed_spec, ResNetConfig) else seed_spec
    input_size = tuple(int(v) for v in data.train_x.shape[1:])
    if spec.in_channels != input_size[0] or spec.num_classes != data.num_classes:
        raise ValueError(
            f"the seed network reads {spec.in_channels} channels into {spec.num_classes} classes, but "
            f"{data.name} has {input_size[0]} channels and {data.num_classes} classes"
        )
    seed = _structure(0, "seed", spec, resource, input_size)
    budget = seed.cost if budget is None else budget
    _check_budget(spec, budget, resource, input_size)  # before any training, not after the first phase
    regularize_config = replace(
        train_config,
        epochs=train_config.epochs if regularize_epochs is None else regularize_epochs,
        bn_weight_decay=False,
    )
    if trainer_factory is None:

        def trainer_factory(model: ResNet, config: TrainConfig, hooks: list[TrainingHook], phase: str) -> Trainer:
            return Trainer(
                model, data, config, hooks=hooks, device=device, progress=progress, description=f"MorphNet {phase}"
            )

    structures, histories = [seed], []
    for iteration in range(1, iterations + 1):
        hook = MorphNetHook(
            resource=resource,
            relative_strength=relative_strength,
            gamma_threshold=gamma_threshold,
            input_size=input_size,
            strength=strength,
        )
        trainer = trainer_factory(
            seeded_model(spec, train_config.seed), regularize_config, [hook], f"regularize_{iteration}"
        )
        histories.append(trainer.fit().assign(iteration=iteration))
        shrunk = alive_spec(trainer.model, gamma_threshold)
        omega, spec = width_multiplier(shrunk, budget, resource, input_size)
        structures.append(_structure(iteration, "shrunk", shrunk, resource, input_size))
        structures.append(_structure(iteration, "expanded", spec, resource, input_size, omega))
    retrain_config = retrain_config or train_config
    final = trainer_factory(seeded_model(spec, retrain_config.seed), retrain_config, [], "retrain")
    retrain_history = final.fit()
    return SearchResult(resource, float(budget), structures, histories, retrain_history, final.model)
