"""Surgery: channel groups, pruning, Net2Net replication, optimizer state and depth changes are exact."""

import copy
from collections import Counter

import pytest
import torch

from thesis_lib.models import (
    WIDE_BASELINE, BlockSpec, ResNetConfig, ResNetSpec, StageSpec, build_resnet, count_parameters,
)
from thesis_lib.surgery import carry_optimizer_state, channel_groups, conv_edges, map_channels, select_channels

TOLERANCE = 1e-5
SMALL_CONFIGS = {
    "basic": ResNetConfig(stages=2, blocks=(2, 2), widths=(5, 7), num_classes=4),
    "l3": ResNetConfig(stages=2, blocks=(2, 2), layers_per_block=3, widths=(5, 6), num_classes=4),
    "bottleneck": ResNetConfig(stages=2, blocks=(2, 2), layers_per_block=3, widths=(2, 3), bottleneck=True,
                               num_classes=4),
}


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


def randomize_batchnorm(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN affine parameters and running statistics, so that BN is no identity in eval mode."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            with torch.no_grad():
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def random_subset(size: int, keep: int, generator: torch.Generator) -> list[int]:
    return torch.randperm(size, generator=generator)[:keep].tolist()


def pruned_random_model(kind: str, seed: int) -> torch.nn.Module:
    """A small net of the given kind, randomly pruned to non-uniform widths, with random BN."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_resnet(SMALL_CONFIGS[kind])
    randomize_batchnorm(model, generator)
    keep = {g.name: random_subset(g.size, int(torch.randint(2, g.size + 1, (1,), generator=generator)), generator)
            for g in channel_groups(model) if g.size > 2}
    return select_channels(model, keep)


def images(model: torch.nn.Module, batch: int = 4, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, model.spec.in_channels, 8, 8, generator=generator)


def logits(model: torch.nn.Module, x: torch.Tensor, train: bool) -> torch.Tensor:
    """Outputs in eval or train mode, on a copy so that the running statistics stay as they are."""
    copied = copy.deepcopy(model).train(train)
    with torch.no_grad():
        return copied(x)


def assert_same_function(old: torch.nn.Module, new: torch.nn.Module) -> None:
    x = images(old)
    for train in (False, True):
        difference = (logits(old, x, train) - logits(new, x, train)).abs().max().item()
        assert difference <= TOLERANCE, f"train={train}: max abs logit difference {difference}"


def assert_spec_describes_model(model: torch.nn.Module) -> None:
    build_resnet(model.spec).load_state_dict(model.state_dict(), strict=True)


def zero_channels(model: torch.nn.Module, group, channels: list[int], which: str) -> None:
    """Zero the slices of `channels` in the group's members: "all", "producer_bns" (gamma and beta of every
    producer BN) or "readers" (every reader's input slice)."""
    state = model.state_dict()
    index = torch.tensor(channels, dtype=torch.long)
    for key, dim in group.members:
        is_reader = dim == 1
        is_affine = key.endswith((".weight", ".bias")) and key.rsplit(".", 2)[-2].split("_")[-1].startswith("bn")
        if which == "all" or (which == "readers" and is_reader) or (which == "producer_bns" and is_affine):
            state[key].index_fill_(dim, index, 0.0)


@pytest.mark.parametrize("kind", list(SMALL_CONFIGS))
@pytest.mark.parametrize("which", ["all", "producer_bns", "readers"])
def test_removing_zeroed_channels_leaves_logits_unchanged(kind, which):
    model = pruned_random_model(kind, seed=1)
    generator = torch.Generator().manual_seed(2)
    keep = {}
    for group in channel_groups(model):
        if group.size < 2:
            continue
        kept = sorted(random_subset(group.size, int(torch.randint(1, group.size, (1,), generator=generator)),
                                    generator))
        zero_channels(model, group, [c for c in range(group.size) if c not in kept], which)
        keep[group.name] = kept
    before = copy.deepcopy(model.state_dict())
    smaller = select_channels(model, keep)

    assert_same_function(model, smaller)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "input model changed"
    assert_spec_describes_model(smaller)
    new_sizes = {g.name: g.size for g in channel_groups(smaller)}
    assert new_sizes == {g.name: len(keep.get(g.name, range(g.size))) for g in channel_groups(model)}
    # every carried tensor is the old one restricted to the kept channels of each of its groups
    expected = dict(before)
    for group in channel_groups(model):
        for key, dim in group.members:
            if group.name in keep:
                expected[key] = expected[key].index_select(dim, torch.tensor(keep[group.name]))
    assert expected.keys() == smaller.state_dict().keys()
    assert all(torch.equal(expected[k], v) for k, v in smaller.state_dict().items())


def test_pruned_widths_reach_the_spec():
    model = build_resnet(SMALL_CONFIGS["bottleneck"])
    smaller = select_channels(model, {"stem": [1], "stage0.stream": range(5), "stage1.stream": [3, 1],
                                      "stage1.block1.layer2": [2]})
    spec = smaller.spec
    assert spec.stem_width == 1 and [s.width for s in spec.stages] == [5, 2]
    assert spec.stages[1].blocks[1].widths == (3, 1)
    assert smaller.stem_conv.weight.shape == (1, 3, 3, 3) and smaller.classifier.weight.shape == (4, 2)


def block_parameters(model: torch.nn.Module, stage: int, block: int, main_path_only: bool) -> int:
    prefix = f"stages.{stage}.blocks.{block}."
    return sum(p.numel() for name, p in model.named_parameters()
               if name.startswith(prefix) and not (main_path_only and "shortcut" in name))


def test_block_with_emptied_internal_group_is_removed_exactly():
    model = pruned_random_model("basic", seed=3)
    blocks = [(0, 1), (1, 0)]  # a plain block and a transition block
    for stage, block in blocks:
        layers = model.stages[stage].blocks[block]
        with torch.no_grad():
            layers.bn1.weight.zero_()
            layers.bn1.bias.zero_()  # conv2 now reads zeros, so bn2 outputs beta (train) or beta - gamma*mean/sd
            layers.bn2.bias.zero_()
            layers.bn2.running_mean.zero_()
    expected_parameters = count_parameters(model) - sum(block_parameters(model, s, b, True) for s, b in blocks)
    smaller = select_channels(model, {f"stage{s}.block{b}.layer1": [] for s, b in blocks})

    assert_same_function(model, smaller)
    assert [len(s.blocks) for s in smaller.spec.stages] == [1, 2]
    transition = smaller.spec.stages[1].blocks[0]
    assert transition.kernels == () and transition.widths == () and transition.shortcut_kernel == 3
    assert transition.stride == 2 and not hasattr(smaller.stages[1].blocks[0], "conv1")
    assert torch.equal(smaller.stages[1].blocks[0].shortcut_conv.weight,
                       model.stages[1].blocks[0].shortcut_conv.weight)
    assert torch.equal(smaller.stages[0].blocks[0].conv2.weight, model.stages[0].blocks[0].conv2.weight)
    assert_spec_describes_model(smaller)
    assert count_parameters(smaller) == expected_parameters
    assert count_parameters(build_resnet(smaller.spec)) == expected_parameters


def test_block_of_three_layers_is_removed_exactly_when_its_last_bn_is_zero():
    model = pruned_random_model("l3", seed=4)
    last_bn = model.stages[0].blocks[1].bn3
    with torch.no_grad():
        last_bn.weight.zero_()
        last_bn.bias.zero_()
    smaller = select_channels(model, {"stage0.block1.layer1": []})
    assert_same_function(model, smaller)
    assert len(smaller.spec.stages[0].blocks) == 1


def test_a_stage_pruned_to_no_blocks_passes_the_stream_on():
    model = pruned_random_model("basic", seed=5)
    for block in model.stages[0].blocks:
        with torch.no_grad():
            block.bn2.weight.zero_()
            block.bn2.bias.zero_()
    smaller = select_channels(model, {"stage0.block0.layer1": [], "stage0.block1.layer1": []})
    assert smaller.spec.stages[0].blocks == ()
    assert_same_function(model, smaller)
    names = [g.name for g in channel_groups(smaller) if g.kind == "stream"]
    assert names == ["stage0.stream", "stage1.stream"]
    assert channel_groups(smaller)[0].readers == ("stages.1.blocks.0.conv1", "stages.1.blocks.0.shortcut_conv")
    narrower = select_channels(smaller, {"stage0.stream": [0]})
    assert narrower.spec.stem_width == 1 and narrower.spec.stages[0].width == 1


def test_bad_channel_selections_are_clear_errors():
    model = build_resnet(SMALL_CONFIGS["bottleneck"])
    with pytest.raises(ValueError, match="every channel of the residual stream of stage 1"):
        select_channels(model, {"stage1.stream": []})
    with pytest.raises(ValueError, match="every channel of the residual stream of the stem"):
        map_channels(model, {"stem": []}, divide_readers=False)
    with pytest.raises(ValueError, match=r"has 2 channels \(indices 0..1\), got index 2"):
        select_channels(model, {"stage0.block0.layer1": [0, 2]})
    with pytest.raises(ValueError, match="got index -1"):
        map_channels(model, {"stage0.block0.layer1": [-1]}, divide_readers=True)
    with pytest.raises(ValueError, match=r"lists channel\(s\) \[1\] more than once"):
        select_channels(model, {"stage0.stream": [1, 0, 1]})
    with pytest.raises(ValueError, match="unknown channel group 'stage5.stream'"):
        select_channels(model, {"stage5.stream": [0]})
    with pytest.raises(ValueError, match="1-D sequence of integer"):
        map_channels(model, {"stem": [0.0, 1.0]}, divide_readers=False)


def replicating_map(size: int, new_size: int, generator: torch.Generator) -> torch.Tensor:
    """Every old channel at least once, extra copies at random, in random order (Net2WiderNet's g)."""
    extra = torch.randint(0, size, (new_size - size,), generator=generator)
    index = torch.cat([torch.arange(size), extra])
    return index[torch.randperm(new_size, generator=generator)]


@pytest.mark.parametrize("kind", list(SMALL_CONFIGS))
def test_replicating_every_group_with_divided_readers_preserves_logits(kind):
    model = pruned_random_model(kind, seed=6)
    generator = torch.Generator().manual_seed(7)
    maps = {g.name: replicating_map(g.size, g.size + 1 + g.size // 2, generator) for g in channel_groups(model)}
    wider = map_channels(model, maps, divide_readers=True)
    assert {g.name: g.size for g in channel_groups(wider)} == {n: len(m) for n, m in maps.items()}
    assert_spec_describes_model(wider)
    assert_same_function(model, wider)

    undivided = map_channels(model, maps, divide_readers=False)
    assert (logits(undivided, images(model), False) - logits(model, images(model), False)).abs().max() > 1e-2

    # negative control: one producer of a stream group that disagrees with the group's map breaks the net
    stream = channel_groups(wider)[1]
    producer = stream.producers[-1]
    inconsistent = copy.deepcopy(wider)
    state = inconsistent.state_dict()
    shifted = torch.roll(torch.arange(stream.size), 1)
    for key, dim in stream.producer_members:
        if key.startswith(producer) or key.startswith(producer.replace("conv", "bn")):
            state[key].copy_(state[key].index_select(dim, shifted))
    x = images(model)
    assert (logits(inconsistent, x, False) - logits(wider, x, False)).abs().max() > 1e-3


def sgd_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(6, model.spec.in_channels, 8, 8, generator=generator)
    target = torch.randint(0, model.spec.num_classes, (6,), generator=generator)
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model.train()(x), target).backward()
    optimizer.step()


def make_sgd(model: torch.nn.Module, lr: float = 0.05) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-3)


@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_sgd_after_surgery_continues_the_old_run_on_the_kept_coordinates(kind):
    model = pruned_random_model(kind, seed=8)
    optimizer = make_sgd(model)
    for step in range(2):
        sgd_step(model, optimizer, seed=step)
    generator = torch.Generator().manual_seed(9)
    keep = {}
    for group in channel_groups(model)[::2]:
        if group.size >= 2:
            keep[group.name] = sorted(random_subset(group.size, group.size - 1, generator))
            removed = [c for c in range(group.size) if c not in keep[group.name]]
            zero_channels(model, group, removed, "producer_bns")  # dead channels: same loss, same gradients
    dead_block = model.stages[0].blocks[1]
    _, last_bn = dead_block.layers()[-1]
    with torch.no_grad():
        last_bn.weight.zero_()
        last_bn.bias.zero_()
    keep["stage0.block1.layer1"] = []

    smaller = select_channels(model, keep)
    new_optimizer = make_sgd(smaller, lr=1.0)
    with pytest.raises(ValueError, match="spec differs"):
        carry_optimizer_state(model, smaller, optimizer, new_optimizer, {"stage0.block1.layer1": []})
    carry_optimizer_state(model, smaller, optimizer, new_optimizer, keep)
    assert new_optimizer.param_groups[0]["lr"] == 0.05
    last_stream = [g for g in channel_groups(model) if g.kind == "stream"][-1]
    kept_columns = torch.tensor(keep.get(last_stream.name, range(last_stream.size)))
    old_momentum = optimizer.state[model.classifier.weight]["momentum_buffer"]
    new_momentum = new_optimizer.state[smaller.classifier.weight]["momentum_buffer"]
    assert new_momentum.abs().sum() > 0 and torch.equal(new_momentum, old_momentum[:, kept_columns])

    sgd_step(model, optimizer, seed=5)
    sgd_step(smaller, new_optimizer, seed=5)
    expected_model = select_channels(model, keep)  # the old model's stepped weights on the kept coordinates
    for (name, expected), (new_name, actual) in zip(expected_model.named_parameters(), smaller.named_parameters()):
        assert name == new_name
        assert (expected - actual).abs().max().item() <= 1e-6, name
