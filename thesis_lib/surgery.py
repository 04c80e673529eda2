"""Network surgery: the one place in the project that changes a ResNet's shape.

A *channel group* is a set of (state_dict key, dim) pairs that share one channel index space, so that
pruning (PruneTrain, section 2.4), Net2WiderNet (section 2.5, eq. 2.4 / 2.5) and MorphNet's alive counts
(section 2.7) act on whole groups at once:

* An internal group "stage{s}.block{b}.layer{i}" is the output of conv{i} of one block (i = 1 .. l-1):
  conv{i}'s output filters, bn{i}'s four per-channel tensors and conv{i+1}'s input slices.
* A stream group is one segment of a residual stream. Every tensor added by a residual addition shares
  its index space, so a segment holds the stem's or a shortcut conv's output, the last conv and BN of
  every block writing into it, and the input slices of every conv (and of the classifier) reading it.
  The stem starts the first segment; every block with a shortcut conv starts a new one (its conv1 and
  shortcut conv read the previous segment).

Stream names: the stem's segment is "stem" when stage 0's first block has a shortcut conv (bottleneck
nets: the stem's output is narrower than stage 0's stream), else "stage0.stream". A segment started by a
block of stage s is "stage{s}.stream", or "stage{s}.block{b}.stream" if that name is already taken (a
second shortcut-conv block in one stage). A stage with no blocks (all pruned away) starts no segment: the
stream passes through it, and its width is the width of the segment that reaches it.

When removing channels is exact (checked by tests/test_surgery.py), with BatchNorm in eval or train mode:

* A channel whose value is identically zero: every producer BN of its group has gamma = beta = 0 for it.
  Then BN outputs gamma * x_hat + beta = 0 whatever its conv wrote and whatever the running statistics
  are; a stream channel stays 0 through every addition and ReLU. Removing it changes nothing.
* A channel nobody reads: every reader's input slice (and the classifier's column) is zero.
* Dropping a block whose internal group was emptied drops what its main path adds to the stream. That
  is exact when the last BN outputs zero: gamma = beta = 0, or, if the last conv's input is already zero,
  beta = 0 and running_mean = 0 (train mode then gives beta, eval mode beta - gamma * mean / sqrt(var + eps)).
"""

from __future__ import annotations

import copy
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from .models import BlockSpec, ResNet, ResNetSpec, StageSpec, require_thesis_resnet

STREAM = "stream"
INTERNAL = "internal"
NEW_CHANNELS = ("copy", "fresh")
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class ChannelGroup:
    """Layers that share one channel index space (see the module docstring for the names).

    `members` are (state_dict key, dim) pairs: producers (conv weight dim 0 and the BN's weight, bias,
    running_mean, running_var) and readers (conv weight dim 1, classifier.weight dim 1).
    """

    name: str
    size: int
    members: tuple[tuple[str, int], ...]
    kind: str
    stage: int | None
    block: int | None
    producers: tuple[str, ...]
    readers: tuple[str, ...]
    bns: tuple[str, ...]

    @property
    def reader_members(self) -> tuple[tuple[str, int], ...]:
        """The members that read this group (input slices); Net2WiderNet divides these."""
        return tuple((key, dim) for key, dim in self.members if dim == 1)

    @property
    def producer_members(self) -> tuple[tuple[str, int], ...]:
        """The members that write or normalise this group (conv output filters and BN tensors)."""
        return tuple((key, dim) for key, dim in self.members if dim == 0)


@dataclass(frozen=True)
class ConvEdge:
    """One conv (or the classifier) with the groups it reads and writes.

    `in_group` is None for the stem (it reads the image), `out_group` is None for the classifier (it
    writes the class scores), `bn` is the BN right after the conv (None for the classifier).
    """

    name: str
    in_group: str | None
    out_group: str | None
    kernel_size: int
    stride: int
    bn: str | None


def block_name(stage: int, block: int) -> str:
    """Module name of a block, e.g. "stages.1.blocks.0"."""
    return f"stages.{stage}.blocks.{block}"


def internal_group_name(stage: int, block: int, layer: int) -> str:
    """Name of the group written by conv{layer} of a block (layer = 1 .. l-1)."""
    return f"stage{stage}.block{block}.layer{layer}"


@dataclass(frozen=True)
class _Layout:
    """Which stream group each part of a spec reads and writes (the walk described in the docstring)."""

    stem_group: str
    block_groups: dict[tuple[int, int], tuple[str, str]]  # (stage, block) -> (group read, group written)
    stage_groups: list[str]  # the stream group leaving each stage
    stream_sizes: dict[str, int]  # stream groups in order of appearance
    stream_stages: dict[str, int | None]  # the stage that starts each stream group (None: the stem)


def _layout(spec: ResNetSpec) -> _Layout:
    first_blocks = spec.stages[0].blocks
    stem_group = "stem" if first_blocks and first_blocks[0].has_shortcut_conv else "stage0.stream"
    current = stem_group
    sizes = {current: spec.stem_width}
    stages_of = {current: None if current == "stem" else 0}
    block_groups, stage_groups = {}, []
    for s, stage in enumerate(spec.stages):
        for b, block in enumerate(stage.blocks):
            read = current
            if block.has_shortcut_conv:
                current = f"stage{s}.stream"
                if current in sizes:
                    current = f"stage{s}.block{b}.stream"
                sizes[current] = stage.width
                stages_of[current] = s
            block_groups[(s, b)] = (read, current)
        stage_groups.append(current)
    return _Layout(stem_group, block_groups, stage_groups, sizes, stages_of)


def _layer_groups(stage: int, block: int, spec: BlockSpec, read: str, written: str) -> list[str]:
    """The group entering each layer of a block and the group leaving its last layer (length l + 1)."""
    internal = [internal_group_name(stage, block, i) for i in range(1, len(spec.kernels))]
    return [read] + internal + [written]


def _spec_of(model: ResNet | ResNetSpec, user: str) -> ResNetSpec:
    return model if isinstance(model, ResNetSpec) else require_thesis_resnet(model, user).spec


def conv_edges(model: ResNet | ResNetSpec) -> list[ConvEdge]:
    """Every conv in module order (stem; per block conv1..convL, then its shortcut conv), classifier last.
    Shapes only: a spec gives the same edges as a model built from it. No shape check (the group lasso
    calls this every step; `channel_groups` checks)."""
    spec = model if isinstance(model, ResNetSpec) else model.spec
    layout = _layout(spec)
    edges = [ConvEdge("stem_conv", None, layout.stem_group, spec.stem_kernel, 1, "stem_bn")]
    for s, stage in enumerate(spec.stages):
        for b, block in enumerate(stage.blocks):
            prefix = block_name(s, b)
            read, written = layout.block_groups[(s, b)]
            groups = _layer_groups(s, b, block, read, written)
            for i, kernel in enumerate(block.kernels, start=1):
                stride = block.stride if i == 1 else 1
                edges.append(ConvEdge(f"{prefix}.conv{i}", groups[i - 1], groups[i], kernel, stride, f"{prefix}.bn{i}"))
            if block.has_shortcut_conv:
                edges.append(
                    ConvEdge(
                        f"{prefix}.shortcut_conv",
                        read,
                        written,
                        block.shortcut_kernel,
                        block.stride,
                        f"{prefix}.shortcut_bn",
                    )
                )
    edges.append(ConvEdge("classifier", layout.stage_groups[-1], None, 1, 1, None))
    return edges


def channel_groups(model: ResNet | ResNetSpec) -> list[ChannelGroup]:
    """Every channel group of the model (or of a spec: shapes only): the stream groups in order, then the
    internal groups in order."""
    spec = _spec_of(model, "channel_groups")
    layout = _layout(spec)
    producers: dict[str, list[str]] = {}
    readers: dict[str, list[str]] = {}
    bns: dict[str, list[str]] = {}
    for edge in conv_edges(spec):
        if edge.in_group is not None:
            readers.setdefault(edge.in_group, []).append(edge.name)
        if edge.out_group is not None:
            producers.setdefault(edge.out_group, []).append(edge.name)
            bns.setdefault(edge.out_group, []).append(edge.bn)

    def build(name: str, size: int, kind: str, stage: int | None, block: int | None) -> ChannelGroup:
        members = [(f"{conv}.weight", 0) for conv in producers.get(name, [])]
        members += [(f"{bn}.{tensor}", 0) for bn in bns.get(name, []) for tensor in _BN_TENSORS]
        members += [(f"{conv}.weight", 1) for conv in readers.get(name, [])]
        return ChannelGroup(
            name,
            size,
            tuple(members),
            kind,
            stage,
            block,
            tuple(producers.get(name, [])),
            tuple(readers.get(name, [])),
            tuple(bns.get(name, [])),
        )

    groups = [build(name, size, STREAM, layout.stream_stages[name], None) for name, size in layout.stream_sizes.items()]
    for s, stage in enumerate(spec.stages):
        for b, block in enumerate(stage.blocks):
            for i, width in enumerate(block.widths, start=1):
                groups.append(build(internal_group_name(s, b, i), width, INTERNAL, s, b))
    return groups


IndexMap = torch.Tensor | Sequence[int]


@dataclass(frozen=True)
class _Gather:
    """Take channels `index` (old channel of each new channel) along `dim`; readers may divide by `divisor`.
    `repeat` marks the new channels whose old channel already appeared earlier in `index` (the copies)."""

    dim: int
    index: torch.Tensor
    repeat: torch.Tensor
    divisor: torch.Tensor | None = None


@dataclass(frozen=True)
class _Plan:
    """How to build a new model from an old one: its spec, where each new state key comes from (None:
    freshly initialised) and the channel gathers applied to old state tensors on the way; with
    `fresh_copies` the entries on copied channels keep the new model's fresh initialisation instead."""

    spec: ResNetSpec
    source_of: Callable[[str], str | None]
    gathers: Mapping[str, tuple[_Gather, ...]]
    fresh_copies: bool = False

    def transform(self, old_key: str, tensor: torch.Tensor, divide: bool = True) -> torch.Tensor:
        for gather in self.gathers.get(old_key, ()):
            tensor = tensor.index_select(gather.dim, gather.index.to(tensor.device))
            if divide and gather.divisor is not None:
                shape = [1] * tensor.dim()
                shape[gather.dim] = -1
                tensor = tensor / gather.divisor.to(tensor.device, tensor.dtype).view(shape)
        return tensor

    def copies_mask(self, old_key: str, tensor: torch.Tensor) -> torch.Tensor | None:
        """True at the entries of the gathered tensor that lie on a copied channel of any of its dims."""
        mask = None
        for gather in self.gathers.get(old_key, ()):
            shape = [1] * tensor.dim()
            shape[gather.dim] = -1
            on_copy = gather.repeat.to(tensor.device).view(shape)
            mask = on_copy if mask is None else mask | on_copy
        return mask


_BLOCK_KEY = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.(.+)$")
_LAYER_KEY = re.compile(r"^(conv|bn)(\d+)\.(.+)$")


def _renamer(
    old_block_of: Callable[[int, int], int | None], old_layer_of: Callable[[int, int, int], int | None] | None = None
) -> Callable[[str], str | None]:
    """Map a new state key to the old one, given where each new block (stage, block) and each new layer
    (stage, block, layer) came from; None where the new module is fresh. Stem and classifier keep their keys."""

    def source_of(key: str) -> str | None:
        match = _BLOCK_KEY.match(key)
        if match is None:
            return key
        stage, new_block, rest = int(match[1]), int(match[2]), match[3]
        old_block = old_block_of(stage, new_block)
        if old_block is None:
            return None
        layer = _LAYER_KEY.match(rest)
        if layer is not None and old_layer_of is not None:
            old_layer = old_layer_of(stage, new_block, int(layer[2]))
            if old_layer is None:
                return None
            rest = f"{layer[1]}{old_layer}.{layer[3]}"
        return f"{block_name(stage, old_block)}.{rest}"

    return source_of


def _apply_plan(model: ResNet, plan: _Plan) -> ResNet:
    """Build the planned model on the old model's device and dtype, in its train/eval mode, and copy every
    carried tensor (parameters, BN running statistics, num_batches_tracked) through the plan. With
    `plan.fresh_copies` the entries on copied channels keep the new model's fresh initialisation."""
    parameter = next(model.parameters())
    new_model = ResNet(plan.spec).to(device=parameter.device, dtype=parameter.dtype)
    new_model.train(model.training)
    old_state, new_state = model.state_dict(), new_model.state_dict()
    for key, fresh in new_state.items():
        source = plan.source_of(key)
        if source is None:
            continue
        carried = plan.transform(source, old_state[source])
        if carried.shape != fresh.shape:
            raise RuntimeError(
                f"surgery bug: {source} -> {key} gives shape {tuple(carried.shape)}, "
                f"the new model needs {tuple(fresh.shape)}"
            )
        if plan.fresh_copies:
            mask = plan.copies_mask(source, carried)
            if mask is not None:
                carried = torch.where(mask, fresh, carried)
        new_state[key] = carried
    new_model.load_state_dict(new_state)
    return new_model


def _check_index_maps(
    groups: Mapping[str, ChannelGroup], index_maps: Mapping[str, IndexMap]
) -> dict[str, torch.Tensor]:
    """Validate group names and indices; return each map as a 1-D int64 CPU tensor."""
    checked = {}
    for name, indices in index_maps.items():
        if name not in groups:
            known = ", ".join(list(groups)[:6])
            raise ValueError(
                f"unknown channel group {name!r}; the model's groups are {known}, ... (see channel_groups(model))"
            )
        group = groups[name]
        index = torch.as_tensor(indices).detach().cpu()
        if index.numel() == 0:
            index = index.reshape(0).long()
        if index.dim() != 1 or index.dtype.is_floating_point or index.dtype == torch.bool:
            raise ValueError(
                f"channel group {name!r}: give a 1-D sequence of integer channel indices, "
                f"got shape {tuple(index.shape)} of {index.dtype}"
            )
        index = index.long()
        outside = index[(index < 0) | (index >= group.size)]
        if outside.numel():
            raise ValueError(
                f"channel group {name!r} has {group.size} channels (indices 0..{group.size - 1}), "
                f"got index {outside[0].item()}"
            )
        if group.kind == STREAM and index.numel() == 0:
            where = "the stem" if group.stage is None else f"stage {group.stage}"
            raise ValueError(
                f"cannot remove every channel of the residual stream of {where} (group {name!r}); "
                "keep at least one channel"
            )
        checked[name] = index
    return checked


def _repeats(index: torch.Tensor, size: int) -> torch.Tensor:
    """True where index[j] already occurs in index[:j]: the copies of a replicating map."""
    positions = torch.arange(len(index))
    first = torch.full((size,), len(index), dtype=torch.long).scatter_reduce(0, index, positions, "amin")
    return first[index] != positions


def _channel_plan(
    model: ResNet, index_maps: Mapping[str, IndexMap], divide_readers: bool, fresh_copies: bool = False
) -> _Plan:
    """The plan of map_channels: new widths from the maps, emptied blocks dropped, gathers per member."""
    spec = model.spec
    groups = {group.name: group for group in channel_groups(model)}
    maps = _check_index_maps(groups, index_maps)
    new_spec, kept_blocks = _resized(spec, {name: len(index) for name, index in maps.items()})

    gathers: dict[str, list[_Gather]] = {}
    for name, index in maps.items():
        group = groups[name]
        repeat = _repeats(index, group.size)
        counts = torch.bincount(index, minlength=group.size)[index] if divide_readers else None
        for key, dim in group.producer_members:
            gathers.setdefault(key, []).append(_Gather(dim, index, repeat))
        for key, dim in group.reader_members:
            gathers.setdefault(key, []).append(_Gather(dim, index, repeat, counts))
    return _Plan(
        new_spec,
        _renamer(lambda s, b: kept_blocks[s][b]),
        {key: tuple(steps) for key, steps in gathers.items()},
        fresh_copies,
    )


def _resized(spec: ResNetSpec, sizes: Mapping[str, int]) -> tuple[ResNetSpec, list[list[int]]]:
    """The spec with the named groups resized (the others whole) and, per stage, the old indices of the
    blocks it keeps: an emptied internal group drops its block, or leaves a transition block's shortcut."""
    size = {group.name: group.size for group in channel_groups(spec)}
    unknown = sorted(set(sizes) - set(size))
    if unknown:
        raise ValueError(f"unknown channel groups {unknown}; the spec has {sorted(size)}")
    kinds = {group.name: group.kind for group in channel_groups(spec)}
    for name, n in sizes.items():
        if int(n) != n or n < (1 if kinds[name] == STREAM else 0):
            raise ValueError(f"group {name!r} cannot have {n} channels: a stream keeps >= 1, an internal group >= 0")
    size.update({name: int(n) for name, n in sizes.items()})
    _check_segment_sizes(spec, size)
    layout = _layout(spec)
    stages, kept_blocks = [], []
    for s, stage in enumerate(spec.stages):
        blocks, kept = [], []
        for b, block in enumerate(stage.blocks):
            internal = [internal_group_name(s, b, i) for i in range(1, len(block.kernels))]
            if block.has_main_path and all(size[name] > 0 for name in internal):
                blocks.append(replace(block, widths=tuple(size[name] for name in internal)))
            elif block.has_shortcut_conv:
                blocks.append(replace(block, widths=(), kernels=()))
            else:
                continue
            kept.append(b)
        stages.append(StageSpec(width=size[layout.stage_groups[s]], blocks=tuple(blocks)))
        kept_blocks.append(kept)
    return replace(spec, stem_width=size[layout.stem_group], stages=tuple(stages)), kept_blocks


def resized_spec(spec: ResNetSpec, sizes: Mapping[str, int]) -> ResNetSpec:
    """The architecture `map_channels` builds when the groups named in `sizes` get those many channels:
    shapes only, no weights (so a planner can cost a candidate without building it)."""
    return _resized(spec, sizes)[0]


def stream_segments(spec: ResNetSpec) -> dict[int, list[str]]:
    """Per stage, the residual-stream groups its blocks write: one, or several when a later block of the
    stage has a shortcut conv of its own (each such conv starts a new segment). The spec holds one stream
    width per stage, so all segments of a stage must keep equal sizes (`same_width_segments`)."""
    layout = _layout(spec)
    segments: dict[int, list[str]] = {}
    for name, stage in layout.stream_stages.items():
        if stage is not None:
            segments.setdefault(stage, []).append(name)
    return segments


def same_width_segments(spec: ResNetSpec, keep: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """`keep` (channels per group, as for `select_channels`) with every multi-segment stage's segments
    given one index set: the sorted union of the channels kept in any of them (a segment not named in
    `keep` keeps all its channels). The extra channels are ones some segment would have dropped; keeping
    them never changes the function, so a pruning stays exact."""
    out = {name: sorted(int(i) for i in indices) for name, indices in keep.items()}
    sizes = _layout(spec).stream_sizes
    for names in stream_segments(spec).values():
        if len(names) < 2 or not any(name in out for name in names):
            continue
        union = sorted(set().union(*(out.get(name, range(sizes[name])) for name in names)))
        for name in names:
            out[name] = list(union)
    return out


def _check_segment_sizes(spec: ResNetSpec, size: Mapping[str, int]) -> None:
    for stage, names in stream_segments(spec).items():
        widths = {name: size[name] for name in names}
        if len(set(widths.values())) > 1:
            raise ValueError(
                f"stage {stage} has {len(names)} residual-stream segments {names} (separated by shortcut convs) "
                f"and the spec holds one width per stage, but they would keep {widths} channels; give every "
                "segment of a stage the same number of channels (surgery.same_width_segments does)"
            )


def map_channels(
    model: ResNet, index_maps: Mapping[str, IndexMap], *, divide_readers: bool, new_channels: str = "copy"
) -> ResNet:
    """A new model whose channel j of group G is the old channel index_maps[G][j] (groups not named stay whole).

    Indices may repeat (Net2WiderNet replication) or form a subset (pruning). Producers (conv output
    filters, BN weight, bias and running statistics) are gathered with the map; readers' input slices are
    gathered too and, with `divide_readers`, divided by how often their old channel was replicated, so the
    next layer sums to the same value (Net2WiderNet, eq. 2.4 / 2.5). An empty map of an internal group
    removes its block's main path: the block is dropped, or, if it has a shortcut conv, kept as that
    shortcut alone. An empty stream group is a ValueError. The input model is left untouched.

    new_channels="fresh" (the random-init baseline of chapter 6.2) carries only the first occurrence of
    every old channel; a repeated index is a new channel with the fresh initialisation of a new model (drawn
    from the global RNG, like insert_block's new block), in every tensor that touches it: its filters, BN
    tensors (running mean 0, var 1) and its readers' input slices. Nothing is divided (divide_readers must
    be False), so the function changes wherever a fresh channel is read.
    """
    if new_channels not in NEW_CHANNELS:
        raise ValueError(f"unknown new_channels {new_channels!r}; use one of {NEW_CHANNELS}")
    fresh_copies = new_channels == "fresh"
    if fresh_copies and divide_readers:
        raise ValueError(
            "new_channels='fresh' initialises the copies afresh, so there is nothing to divide; "
            "pass divide_readers=False"
        )
    return _apply_plan(model, _channel_plan(model, index_maps, divide_readers, fresh_copies))


def select_channels(model: ResNet, keep: Mapping[str, Sequence[int] | torch.Tensor]) -> ResNet:
    """Pruning: a new model keeping only the channels `keep[G]` of each named group G (in ascending order).

    Exact when the removed channels are zero or unread (see the module docstring). A block whose internal
    group keeps no channel is dropped (a transition block keeps its shortcut conv).
    """
    sorted_keep = {}
    for name, indices in keep.items():
        values = torch.as_tensor(indices).detach().cpu().reshape(-1).tolist()
        repeated = sorted(value for value, count in Counter(values).items() if count > 1)
        if repeated:
            raise ValueError(
                f"select_channels: group {name!r} lists channel(s) {repeated} more than once; "
                "give each kept channel once (use map_channels to replicate channels)"
            )
        sorted_keep[name] = sorted(values)
    return map_channels(model, sorted_keep, divide_readers=False)


def narrowed(model: ResNet, fraction: float) -> ResNet:
    """`model` keeping the first ceil(fraction x width) channels (at least one) of every channel group, the
    stream segments of a stage alike: a uniformly pruned net of the same structure, e.g. to measure what a
    PruneTrain reconfiguration changes in step time or communication."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    keep = {group.name: list(range(max(1, math.ceil(group.size * fraction)))) for group in channel_groups(model)}
    return select_channels(model, same_width_segments(model.spec, keep))


def carry_optimizer_state(
    old_model: ResNet,
    new_model: ResNet,
    old_optimizer: torch.optim.Optimizer,
    new_optimizer: torch.optim.Optimizer,
    index_maps: Mapping[str, IndexMap],
) -> None:
    """Carry per-parameter optimizer state across `map_channels(old_model, index_maps, ...)` / `select_channels`.

    State tensors shaped like their parameter (SGD's momentum_buffer, Adam's moments) are gathered through
    the same index maps as the weights, so kept and replicated coordinates keep their history; they are
    never divided, because they are per-coordinate statistics, not contributions to a sum. Other state
    (e.g. a step count) is copied. Parameters of removed blocks vanish with them. The hyperparameters of
    each param group (lr, momentum, weight decay, ...) are copied group by group; PruneTrain's periodic
    reconfiguration (section 2.4) thus continues training as if the removed channels had never existed.
    """
    plan = _channel_plan(old_model, index_maps, divide_readers=False)
    if plan.spec != new_model.spec:
        raise ValueError(
            "new_model is not map_channels(old_model, index_maps): its spec differs from the one "
            "these index maps give; pass the index maps the new model was made with"
        )
    if len(old_optimizer.param_groups) != len(new_optimizer.param_groups):
        raise ValueError(
            f"the old optimizer has {len(old_optimizer.param_groups)} param groups, the new one "
            f"{len(new_optimizer.param_groups)}; build the new optimizer with matching groups"
        )
    for old_group, new_group in zip(old_optimizer.param_groups, new_optimizer.param_groups):
        new_group.update({key: value for key, value in old_group.items() if key != "params"})

    old_parameters = dict(old_model.named_parameters())
    optimized = {id(p) for group in new_optimizer.param_groups for p in group["params"]}
    for name, parameter in new_model.named_parameters():
        source = plan.source_of(name)
        old_parameter = old_parameters.get(source) if source is not None else None
        if id(parameter) not in optimized or old_parameter not in old_optimizer.state:
            continue
        carried = {}
        for key, value in old_optimizer.state[old_parameter].items():
            if torch.is_tensor(value) and value.shape == old_parameter.shape:
                carried[key] = plan.transform(source, value, divide=False).clone()
            else:
                carried[key] = value.clone() if torch.is_tensor(value) else copy.deepcopy(value)
        new_optimizer.state[parameter] = carried


def _check_stage(spec: ResNetSpec, stage: int) -> StageSpec:
    if not 0 <= stage < len(spec.stages):
        raise ValueError(f"stage {stage} does not exist: the model has stages 0..{len(spec.stages) - 1}")
    return spec.stages[stage]


def _check_block(spec: ResNetSpec, stage: int, block: int) -> BlockSpec:
    blocks = _check_stage(spec, stage).blocks
    if not 0 <= block < len(blocks):
        raise ValueError(f"stage {stage} has {len(blocks)} blocks (indices 0..{len(blocks) - 1}), got block {block}")
    return blocks[block]


def _with_blocks(spec: ResNetSpec, stage: int, blocks: Sequence[BlockSpec]) -> ResNetSpec:
    stages = list(spec.stages)
    stages[stage] = replace(stages[stage], blocks=tuple(blocks))
    return replace(spec, stages=tuple(stages))


def default_new_block(stage: StageSpec) -> BlockSpec:
    """The layout insert_block uses by default: the stage's last plain (identity-shortcut) block, else its
    last block with a main path (as a plain block), else a basic block of two 3x3 convs at the stream width."""
    plain = [b for b in stage.blocks if b.has_main_path and not b.has_shortcut_conv]
    with_main_path = [b for b in stage.blocks if b.has_main_path]
    if plain or with_main_path:
        template = (plain or with_main_path)[-1]
        return BlockSpec(widths=template.widths, kernels=template.kernels)
    return BlockSpec(widths=(stage.width,), kernels=(3, 3))


def insert_block(
    model: ResNet, stage: int, position: int | None = None, block: BlockSpec | None = None
) -> tuple[ResNet, str]:
    """A new model with a plain residual block (stride 1, identity shortcut) inserted into `stage` at
    `position` (None: at the end); later blocks shift by one. Every existing tensor is carried exactly; the
    new block keeps PyTorch's fresh initialisation (Net2DeeperNet then zeros its last BN's gamma and beta,
    which makes the block the identity). Returns the model and the new block's module name.
    """
    spec = model.spec
    new_spec, position = _block_inserted(spec, stage, position, block)

    def old_block_of(s: int, b: int) -> int | None:
        if s != stage or b < position:
            return b
        return None if b == position else b - 1

    plan = _Plan(new_spec, _renamer(old_block_of), {})
    return _apply_plan(model, plan), block_name(stage, position)


def _block_inserted(
    spec: ResNetSpec, stage: int, position: int | None, block: BlockSpec | None
) -> tuple[ResNetSpec, int]:
    blocks = list(_check_stage(spec, stage).blocks)
    position = len(blocks) if position is None else position
    if not 0 <= position <= len(blocks):
        raise ValueError(
            f"stage {stage} has {len(blocks)} blocks: insert at a position in 0..{len(blocks)}, got {position}"
        )
    if position == 0 and blocks and blocks[0].has_shortcut_conv:
        raise ValueError(f"position 0 of stage {stage} lies before its transition block; insert at 1 or later")
    block = default_new_block(spec.stages[stage]) if block is None else block
    if block.stride != 1 or block.has_shortcut_conv or not block.has_main_path:
        raise ValueError(
            f"insert_block inserts plain blocks (stride 1, identity shortcut, at least one layer), got {block}"
        )
    blocks.insert(position, block)
    return _with_blocks(spec, stage, blocks), position


def block_inserted_spec(
    spec: ResNetSpec, stage: int, position: int | None = None, block: BlockSpec | None = None
) -> ResNetSpec:
    """The architecture `insert_block` builds (same arguments, shapes only)."""
    return _block_inserted(spec, stage, position, block)[0]


def remove_block(model: ResNet, stage: int, block: int) -> ResNet:
    """A new model without the plain block `block` of `stage` (later blocks shift down by one). Exact when
    that block's main path outputs zero (e.g. its last BN has gamma = beta = 0). Transition blocks change the
    stream's width or resolution and cannot be removed; prune their main path with select_channels instead.
    """
    spec = model.spec
    removed = _check_block(spec, stage, block)
    if removed.has_shortcut_conv:
        raise ValueError(
            f"stage {stage} block {block} has a shortcut conv (a transition block) and cannot be "
            "removed; empty its internal group with select_channels to drop its main path"
        )
    blocks = [b for index, b in enumerate(spec.stages[stage].blocks) if index != block]

    def old_block_of(s: int, b: int) -> int:
        return b + 1 if s == stage and b >= block else b

    return _apply_plan(model, _Plan(_with_blocks(spec, stage, blocks), _renamer(old_block_of), {}))


def insert_layer(model: ResNet, stage: int, block: int, after_layer: int, kernel_size: int = 3) -> tuple[ResNet, str]:
    """A new model with one conv + BN layer inserted into a block's main path right after layer
    `after_layer` (0: before the first layer, which then gives its stride to the new layer; l: after the
    last). The new layer is conv{after_layer + 1}, as wide as the output it follows, so every old tensor
    keeps its shape and is carried exactly; later layers shift up by one. A ReLU follows every layer but
    the last, so an identity-initialised layer (Net2DeeperNet, section 2.5) after a ReLU'd layer keeps the
    function. Returns the model and the new conv's module name.
    """
    spec = model.spec
    new_spec = layer_inserted_spec(spec, stage, block, after_layer, kernel_size)
    new_layer = after_layer + 1

    def old_layer_of(s: int, b: int, layer: int) -> int | None:
        if (s, b) != (stage, block) or layer < new_layer:
            return layer
        return None if layer == new_layer else layer - 1

    plan = _Plan(new_spec, _renamer(lambda s, b: b, old_layer_of), {})
    return _apply_plan(model, plan), f"{block_name(stage, block)}.conv{new_layer}"


def layer_inserted_spec(spec: ResNetSpec, stage: int, block: int, after_layer: int, kernel_size: int = 3) -> ResNetSpec:
    """The architecture `insert_layer` builds (same arguments, shapes only)."""
    target = _check_block(spec, stage, block)
    layers = len(target.kernels)
    if not target.has_main_path:
        raise ValueError(f"stage {stage} block {block} is a bare shortcut with no layers to insert between")
    if not 0 <= after_layer <= layers:
        raise ValueError(
            f"stage {stage} block {block} has {layers} layers: after_layer must be in 0..{layers}, got {after_layer}"
        )
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be odd and positive so that the layer keeps the spatial size, got {kernel_size}"
        )
    stream_in = spec.stream_widths()[stage] if block == 0 else spec.stages[stage].width
    widths = (stream_in,) + target.widths + (spec.stages[stage].width,)
    new_widths = widths[: after_layer + 1] + (widths[after_layer],) + widths[after_layer + 1 :]
    new_kernels = target.kernels[:after_layer] + (kernel_size,) + target.kernels[after_layer:]
    blocks = list(spec.stages[stage].blocks)
    blocks[block] = replace(target, widths=new_widths[1:-1], kernels=new_kernels)
    return _with_blocks(spec, stage, blocks)
