"""Surgery: channel groups, pruning, Net2Net replication, optimizer state and depth changes are exact."""

from collections import Counter

import pytest
import torch

from thesis_lib.models import WIDE_BASELINE, BlockSpec, ResNetConfig, ResNetSpec, StageSpec, build_resnet
from thesis_lib.surgery import channel_groups, conv_edges


def channel_dims(model: torch.nn.Module) -> set[tuple[str, int]]:
    """Every (key, dim) of the state dict that indexes channels (all dims of weights, dim 0 of vectors)."""
    dims = set()
    for key, tensor in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        dims.add((key, 0))
        if key.endswith("weight") and tensor.dim() > 1:
            dims.add((key, 1))
    return dims


def assert_groups_cover_model(model: torch.nn.Module) -> None:
    groups = channel_groups(model)
    state = model.state_dict()
    counts = Counter(member for group in groups for member in group.members)
    assert max(counts.values()) == 1, [m for m, c in counts.items() if c > 1]
    not_channels = {("stem_conv.weight", 1), ("classifier.weight", 0), ("classifier.bias", 0)}
    assert set(counts) == channel_dims(model) - not_channels
    for group in groups:
        for key, dim in group.members:
            assert state[key].shape[dim] == group.size, (group.name, key, dim)


def test_channel_groups_of_wide_resnet32_cover_every_channel_dim_once():
    model = build_resnet(WIDE_BASELINE)
    groups = channel_groups(model)
    streams = [g for g in groups if g.kind == "stream"]
    internal = [g for g in groups if g.kind == "internal"]
    assert [(g.name, g.size, g.stage) for g in streams] == [
        ("stage0.stream", 16, 0), ("stage1.stream", 32, 1), ("stage2.stream", 64, 2)]
    assert len(internal) == 15 and all(g.size == w for g, w in zip(internal, [16] * 5 + [32] * 5 + [64] * 5))
    assert [g.name for g in groups] == [g.name for g in streams + internal]
    assert_groups_cover_model(model)

    stage1 = streams[1]
    assert stage1.producers == ("stages.1.blocks.0.conv2", "stages.1.blocks.0.shortcut_conv") + tuple(
        f"stages.1.blocks.{b}.conv2" for b in range(1, 5))
    assert stage1.readers == tuple(f"stages.1.blocks.{b}.conv1" for b in range(1, 5)) + (
        "stages.2.blocks.0.conv1", "stages.2.blocks.0.shortcut_conv")
    assert stage1.bns == tuple(p.replace("conv", "bn") for p in stage1.producers)
    assert streams[2].readers[-1] == "classifier"
    first = internal[0]
    assert (first.name, first.stage, first.block) == ("stage0.block0.layer1", 0, 0)
    assert first.members == (("stages.0.blocks.0.conv1.weight", 0), ("stages.0.blocks.0.bn1.weight", 0),
                             ("stages.0.blocks.0.bn1.bias", 0), ("stages.0.blocks.0.bn1.running_mean", 0),
                             ("stages.0.blocks.0.bn1.running_var", 0), ("stages.0.blocks.0.conv2.weight", 1))


def odd_spec() -> ResNetSpec:
    """Bottleneck-like stem segment, an l=3 block, a bare shortcut block, a stage with no blocks, l=1."""
    return ResNetSpec(
        in_channels=2, stem_width=3, num_classes=4,
        stages=(
            StageSpec(5, (BlockSpec((4, 2), (1, 3, 1), 1, 1), BlockSpec((3,), (3, 3)))),
            StageSpec(6, (BlockSpec((), (), 2, 3), BlockSpec((), (3,)))),
            StageSpec(6, ()),
            StageSpec(7, (BlockSpec((4,), (3, 1), 2, 1), BlockSpec((), (), 1, 1))),
        ),
    )


def test_stream_segments_and_names_of_an_irregular_spec():
    model = build_resnet(odd_spec())
    groups = {g.name: g for g in channel_groups(model)}
    assert list(groups) == ["stem", "stage0.stream", "stage1.stream", "stage3.stream",
                            "stage3.block1.stream", "stage0.block0.layer1", "stage0.block0.layer2",
                            "stage0.block1.layer1", "stage3.block0.layer1"]
    assert [groups[n].size for n in groups] == [3, 5, 6, 7, 7, 4, 2, 3, 4]
    assert groups["stem"].stage is None and groups["stage1.stream"].stage == 1
    # stage 2 has no blocks: the stage-1 stream flows through it into stage 3's transition block
    assert groups["stage1.stream"].readers == ("stages.1.blocks.1.conv1", "stages.3.blocks.0.conv1",
                                               "stages.3.blocks.0.shortcut_conv")
    assert groups["stage1.stream"].producers == ("stages.1.blocks.0.shortcut_conv", "stages.1.blocks.1.conv1")
    assert groups["stage3.block1.stream"].readers == ("classifier",)
    assert_groups_cover_model(model)


@pytest.mark.parametrize("spec", [odd_spec(), ResNetConfig(stages=2, blocks=(2, 1), layers_per_block=3,
                                                             widths=(2, 3), bottleneck=True).to_spec()])
def test_conv_edges_match_the_modules(spec):
    model = build_resnet(spec)
    sizes = {g.name: g.size for g in channel_groups(model)}
    modules = dict(model.named_modules())
    edges = conv_edges(model)
    assert [e.name for e in edges] == [name for name, m in modules.items()
                                       if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    for edge in edges:
        layer = modules[edge.name]
        out_width, in_width = layer.weight.shape[:2]
        assert in_width == (spec.in_channels if edge.in_group is None else sizes[edge.in_group])
        assert out_width == (spec.num_classes if edge.out_group is None else sizes[edge.out_group])
        if edge.bn is None:
            assert edge.name == "classifier" and edge.kernel_size == 1
        else:
            assert layer.kernel_size == (edge.kernel_size,) * 2 and layer.stride == (edge.stride,) * 2
            assert modules[edge.bn].num_features == out_width
