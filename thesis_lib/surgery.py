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

from dataclasses import dataclass, field

from .models import BlockSpec, ResNet, ResNetSpec

STREAM = "stream"
INTERNAL = "internal"
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


@dataclass
class _Layout:
    """Which stream group each part of a spec reads and writes (the walk described in the docstring)."""

    stem_group: str
    block_groups: dict[tuple[int, int], tuple[str, str]]  # (stage, block) -> (group read, group written)
    stage_groups: list[str]  # the stream group leaving each stage
    stream_sizes: dict[str, int]  # stream groups in order of appearance
    stream_stages: dict[str, int | None] = field(default_factory=dict)


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


def conv_edges(model: ResNet) -> list[ConvEdge]:
    """Every conv in module order (stem; per block conv1..convL, then its shortcut conv), classifier last."""
    spec = model.spec
    layout = _layout(spec)
    edges = [ConvEdge("stem_conv", None, layout.stem_group, spec.stem_kernel, 1, "stem_bn")]
    for s, stage in enumerate(spec.stages):
        for b, block in enumerate(stage.blocks):
            prefix = block_name(s, b)
            read, written = layout.block_groups[(s, b)]
            groups = _layer_groups(s, b, block, read, written)
            for i, kernel in enumerate(block.kernels, start=1):
                stride = block.stride if i == 1 else 1
                edges.append(ConvEdge(f"{prefix}.conv{i}", groups[i - 1], groups[i], kernel, stride,
                                      f"{prefix}.bn{i}"))
            if block.has_shortcut_conv:
                edges.append(ConvEdge(f"{prefix}.shortcut_conv", read, written, block.shortcut_kernel,
                                      block.stride, f"{prefix}.shortcut_bn"))
    edges.append(ConvEdge("classifier", layout.stage_groups[-1], None, 1, 1, None))
    return edges


def channel_groups(model: ResNet) -> list[ChannelGroup]:
    """Every channel group of the model: the stream groups in order, then the internal groups in order."""
    spec = model.spec
    layout = _layout(spec)
    producers: dict[str, list[str]] = {}
    readers: dict[str, list[str]] = {}
    bns: dict[str, list[str]] = {}
    for edge in conv_edges(model):
        if edge.in_group is not None:
            readers.setdefault(edge.in_group, []).append(edge.name)
        if edge.out_group is not None:
            producers.setdefault(edge.out_group, []).append(edge.name)
            bns.setdefault(edge.out_group, []).append(edge.bn)

    def build(name: str, size: int, kind: str, stage: int | None, block: int | None) -> ChannelGroup:
        members = [(f"{conv}.weight", 0) for conv in producers.get(name, [])]
        members += [(f"{bn}.{tensor}", 0) for bn in bns.get(name, []) for tensor in _BN_TENSORS]
        members += [(f"{conv}.weight", 1) for conv in readers.get(name, [])]
        return ChannelGroup(name, size, tuple(members), kind, stage, block, tuple(producers.get(name, [])),
                            tuple(readers.get(name, [])), tuple(bns.get(name, [])))

    groups = [build(name, size, STREAM, layout.stream_stages[name], None)
              for name, size in layout.stream_sizes.items()]
    for s, stage in enumerate(spec.stages):
        for b, block in enumerate(stage.blocks):
            for i, width in enumerate(block.widths, start=1):
                groups.append(build(internal_group_name(s, b, i), width, INTERNAL, s, b))
    return groups
