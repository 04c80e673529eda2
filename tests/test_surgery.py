"""Surgery: channel groups, pruning, Net2Net replication, optimizer state and depth changes are exact."""

import copy
from collections import Counter

import pytest
import torch

from thesis_lib.models import (
    NARROW_BASELINE,
    WIDE_BASELINE,
    BlockSpec,
    ResNetConfig,
    ResNetSpec,
    StageSpec,
    build_resnet,
    count_parameters,
)
from thesis_lib.surgery import (
    carry_optimizer_state,
    channel_groups,
    conv_edges,
    insert_block,
    insert_layer,
    map_channels,
    narrowed,
    remove_block,
    same_width_segments,
    select_channels,
    stream_segments,
)
from thesis_lib.training import seeded_model

from helpers import irregular_spec as odd_spec

TOLERANCE = 1e-5
SMALL_CONFIGS = {
    "basic": ResNetConfig(stages=2, blocks=(2, 2), widths=(5, 7), num_classes=4),
    "l3": ResNetConfig(stages=2, blocks=(2, 2), layers_per_block=3, widths=(5, 6), num_classes=4),
    "bottleneck": ResNetConfig(
        stages=2, blocks=(2, 2), layers_per_block=3, widths=(2, 3), bottleneck=True, num_classes=4
    ),
    # ghost BN over virtual batches of 2: `images` draws 4, so every train-mode check sees two ghost batches
    "ghost": ResNetConfig(stages=2, blocks=(2, 2), widths=(5, 7), num_classes=4, ghost_batch=2),
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
        ("stage0.stream", 16, 0),
        ("stage1.stream", 32, 1),
        ("stage2.stream", 64, 2),
    ]
    assert len(internal) == 15 and all(g.size == w for g, w in zip(internal, [16] * 5 + [32] * 5 + [64] * 5))
    assert [g.name for g in groups] == [g.name for g in streams + internal]
    assert_groups_cover_model(model)

    stage1 = streams[1]
    assert stage1.producers == ("stages.1.blocks.0.conv2", "stages.1.blocks.0.shortcut_conv") + tuple(
        f"stages.1.blocks.{b}.conv2" for b in range(1, 5)
    )
    assert stage1.readers == tuple(f"stages.1.blocks.{b}.conv1" for b in range(1, 5)) + (
        "stages.2.blocks.0.conv1",
        "stages.2.blocks.0.shortcut_conv",
    )
    assert stage1.bns == tuple(p.replace("conv", "bn") for p in stage1.producers)
    assert streams[2].readers[-1] == "classifier"
    first = internal[0]
    assert (first.name, first.stage, first.block) == ("stage0.block0.layer1", 0, 0)
    assert first.members == (
        ("stages.0.blocks.0.conv1.weight", 0),
        ("stages.0.blocks.0.bn1.weight", 0),
        ("stages.0.blocks.0.bn1.bias", 0),
        ("stages.0.blocks.0.bn1.running_mean", 0),
        ("stages.0.blocks.0.bn1.running_var", 0),
        ("stages.0.blocks.0.conv2.weight", 1),
    )


def test_stream_segments_and_names_of_an_irregular_spec():
    model = build_resnet(odd_spec())
    groups = {g.name: g for g in channel_groups(model)}
    assert list(groups) == [
        "stem",
        "stage0.stream",
        "stage1.stream",
        "stage3.stream",
        "stage3.block1.stream",
        "stage0.block0.layer1",
        "stage0.block0.layer2",
        "stage0.block1.layer1",
        "stage3.block0.layer1",
    ]
    assert [groups[n].size for n in groups] == [3, 5, 6, 7, 7, 4, 2, 3, 4]
    assert groups["stem"].stage is None and groups["stage1.stream"].stage == 1
    # stage 2 has no blocks: the stage-1 stream flows through it into stage 3's transition block
    assert groups["stage1.stream"].readers == (
        "stages.1.blocks.1.conv1",
        "stages.3.blocks.0.conv1",
        "stages.3.blocks.0.shortcut_conv",
    )
    assert groups["stage1.stream"].producers == ("stages.1.blocks.0.shortcut_conv", "stages.1.blocks.1.conv1")
    assert groups["stage3.block1.stream"].readers == ("classifier",)
    assert_groups_cover_model(model)


@pytest.mark.parametrize(
    "spec",
    [odd_spec(), ResNetConfig(stages=2, blocks=(2, 1), layers_per_block=3, widths=(2, 3), bottleneck=True).to_spec()],
)
def test_conv_edges_match_the_modules(spec):
    model = build_resnet(spec)
    sizes = {g.name: g.size for g in channel_groups(model)}
    modules = dict(model.named_modules())
    edges = conv_edges(model)
    assert [e.name for e in edges] == [
        name for name, m in modules.items() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
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
    keep = {
        g.name: random_subset(g.size, int(torch.randint(2, g.size + 1, (1,), generator=generator)), generator)
        for g in channel_groups(model)
        if g.size > 2
    }
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
    rebuilt = build_resnet(model.spec)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert [type(m) for m in rebuilt.modules()] == [type(m) for m in model.modules()]


def zero_channels(model: torch.nn.Module, group, channels: list[int], which: str) -> None:
    """Zero the slices of `channels` in the group's members: "all", "producer_bns" (gamma and beta of every
    producer BN) or "readers" (every reader's input slice)."""
    state = model.state_dict()
    index = torch.tensor(channels, dtype=torch.long)
    affine = {f"{bn}.{tensor}" for bn in group.bns for tensor in ("weight", "bias")}
    for key, dim in group.members:
        is_reader, is_affine = dim == 1, key in affine
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
        kept = sorted(
            random_subset(group.size, int(torch.randint(1, group.size, (1,), generator=generator)), generator)
        )
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
    smaller = select_channels(
        model, {"stem": [1], "stage0.stream": range(5), "stage1.stream": [3, 1], "stage1.block1.layer2": [2]}
    )
    spec = smaller.spec
    assert spec.stem_width == 1 and [s.width for s in spec.stages] == [5, 2]
    assert spec.stages[1].blocks[1].widths == (3, 1)
    assert smaller.stem_conv.weight.shape == (1, 3, 3, 3) and smaller.classifier.weight.shape == (4, 2)


def block_parameters(model: torch.nn.Module, stage: int, block: int, main_path_only: bool) -> int:
    prefix = f"stages.{stage}.blocks.{block}."
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if name.startswith(prefix) and not (main_path_only and "shortcut" in name)
    )


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
    assert torch.equal(smaller.stages[1].blocks[0].shortcut_conv.weight, model.stages[1].blocks[0].shortcut_conv.weight)
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
    producer = [edge for edge in conv_edges(wider) if edge.name == stream.producers[-1]][0]
    inconsistent = copy.deepcopy(wider)
    state = inconsistent.state_dict()
    shifted = torch.roll(torch.arange(stream.size), 1)
    for key, dim in stream.producer_members:
        if key.rsplit(".", 1)[0] in (producer.name, producer.bn):
            state[key].copy_(state[key].index_select(dim, shifted))
    x = images(model)
    assert (logits(inconsistent, x, False) - logits(wider, x, False)).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_fresh_new_channels_keep_first_occurrences_and_initialise_the_copies_afresh(kind):
    model = pruned_random_model(kind, seed=8)
    generator = torch.Generator().manual_seed(9)
    maps = {g.name: replicating_map(g.size, g.size + 2, generator) for g in channel_groups(model)}
    torch.manual_seed(11)
    fresh = map_channels(model, maps, divide_readers=False, new_channels="fresh")
    torch.manual_seed(11)
    initialised = build_resnet(fresh.spec).state_dict()  # what map_channels draws from the same global RNG
    copied = map_channels(model, maps, divide_readers=False).state_dict()

    is_copy = {}
    for name, index in maps.items():
        seen, flags = set(), []
        for old in index.tolist():
            flags.append(old in seen)
            seen.add(old)
        is_copy[name] = torch.tensor(flags)
    expected = dict(copied)
    for group in channel_groups(fresh):
        for key, dim in group.members:
            shape = [1] * expected[key].dim()
            shape[dim] = -1
            on_copy = is_copy[group.name].view(shape).expand_as(expected[key])
            expected[key] = torch.where(on_copy, initialised[key], expected[key])
    state = fresh.state_dict()
    for key in state:
        assert torch.equal(state[key], expected[key]), key
    running_var = "stages.1.blocks.1.bn1.running_var" if kind == "basic" else "stages.1.blocks.1.bn3.running_var"
    group = next(g for g in channel_groups(fresh) if running_var in dict(g.members))
    copies = is_copy[group.name]
    assert torch.equal(state[running_var][copies], torch.ones(int(copies.sum())))
    assert torch.equal(state[running_var][~copies], copied[running_var][~copies])
    assert not torch.equal(state["classifier.weight"], copied["classifier.weight"])

    with pytest.raises(ValueError, match="nothing to divide"):
        map_channels(model, maps, divide_readers=True, new_channels="fresh")
    with pytest.raises(ValueError, match="unknown new_channels 'zeros'"):
        map_channels(model, maps, divide_readers=False, new_channels="zeros")


def test_fresh_new_channels_change_nothing_when_no_index_repeats():
    model = pruned_random_model("l3", seed=4)
    keep = {g.name: list(range(g.size - 1, 0, -1)) for g in channel_groups(model)}  # reversed, channel 0 gone
    fresh = map_channels(model, keep, divide_readers=False, new_channels="fresh").state_dict()
    copied = map_channels(model, keep, divide_readers=False).state_dict()
    assert all(torch.equal(fresh[key], copied[key]) for key in copied)


def sgd_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    x = torch.randn(6, model.spec.in_channels, 8, 8, generator=generator).to(device)
    target = torch.randint(0, model.spec.num_classes, (6,), generator=generator).to(device)
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


def assert_carried(old: torch.nn.Module, new: torch.nn.Module, new_name_of) -> set[str]:
    """Every old tensor equals the new tensor `new_name_of(old key)` (None: the old tensor is gone); returns
    the new keys that were not carried (the fresh ones)."""
    new_state = new.state_dict()
    carried = set()
    for key, tensor in old.state_dict().items():
        new_key = new_name_of(key)
        if new_key is not None:
            assert torch.equal(new_state[new_key], tensor), (key, new_key)
            carried.add(new_key)
    return set(new_state) - carried


def shift_block(key: str, stage: int, first: int, by: int) -> str:
    """The key of a block of `stage` with index >= first after its index moved by `by`."""
    parts = key.split(".")
    if parts[0] == "stages" and int(parts[1]) == stage and int(parts[3]) >= first:
        parts[3] = str(int(parts[3]) + by)
    return ".".join(parts)


def zero_last_bn(block: torch.nn.Module) -> None:
    _, bn = block.layers()[-1]
    with torch.no_grad():
        bn.weight.zero_()
        bn.bias.zero_()


@pytest.mark.parametrize("kind, stage, position", [("basic", 1, 1), ("bottleneck", 0, None), ("l3", 0, 0)])
def test_inserted_block_with_zero_last_bn_keeps_the_function(kind, stage, position):
    model = pruned_random_model(kind, seed=10)
    old_blocks = model.spec.stages[stage].blocks
    deeper, name = insert_block(model, stage, position)
    index = len(old_blocks) if position is None else position
    assert name == f"stages.{stage}.blocks.{index}"
    new_blocks = deeper.spec.stages[stage].blocks
    assert new_blocks[:index] + new_blocks[index + 1 :] == old_blocks
    template = [b for b in old_blocks if not b.has_shortcut_conv][-1]
    assert (new_blocks[index].widths, new_blocks[index].kernels) == (template.widths, template.kernels)
    assert new_blocks[index].stride == 1 and new_blocks[index].shortcut_kernel is None
    fresh = assert_carried(model, deeper, lambda key: shift_block(key, stage, index, 1))
    assert fresh == {k for k in deeper.state_dict() if k.startswith(name + ".")}
    assert_spec_describes_model(deeper)

    zero_last_bn(deeper.get_submodule(name))
    assert_same_function(model, deeper)
    assert count_parameters(deeper) - count_parameters(model) == block_parameters(deeper, stage, index, False)


def test_insert_block_into_an_emptied_stage_and_with_an_explicit_layout():
    model = pruned_random_model("basic", seed=11)
    emptied = select_channels(model, {"stage0.block0.layer1": [], "stage0.block1.layer1": []})
    deeper, name = insert_block(emptied, 0, None)
    assert name == "stages.0.blocks.0"
    assert deeper.spec.stages[0].blocks == (BlockSpec((emptied.spec.stages[0].width,), (3, 3)),)
    layout = BlockSpec((3, 2), (1, 3, 5))
    deeper, name = insert_block(deeper, 1, 2, layout)
    assert deeper.spec.stages[1].blocks[2] == layout and name == "stages.1.blocks.2"
    assert deeper.get_submodule(name).conv3.weight.shape == (model.spec.stages[1].width, 2, 5, 5)

    with pytest.raises(ValueError, match="before its transition block"):
        insert_block(model, 1, 0)
    with pytest.raises(ValueError, match=r"position in 0..2, got 3"):
        insert_block(model, 0, 3)
    with pytest.raises(ValueError, match="stage 2 does not exist"):
        insert_block(model, 2)
    with pytest.raises(ValueError, match="plain blocks"):
        insert_block(model, 0, 1, BlockSpec((3,), (3, 3), stride=2, shortcut_kernel=1))


def test_remove_block_drops_a_zeroed_block_exactly():
    model = pruned_random_model("l3", seed=12)
    zero_last_bn(model.stages[1].blocks[1])
    shallower = remove_block(model, 1, 1)
    assert shallower.spec.stages[1].blocks == model.spec.stages[1].blocks[:1]
    assert_carried(model, shallower, lambda key: None if key.startswith("stages.1.blocks.1.") else key)
    assert_same_function(model, shallower)
    assert count_parameters(model) - count_parameters(shallower) == block_parameters(model, 1, 1, False)

    first_removed = remove_block(model, 0, 0)  # later blocks move down
    assert_carried(
        model, first_removed, lambda key: None if key.startswith("stages.0.blocks.0.") else shift_block(key, 0, 1, -1)
    )
    assert_spec_describes_model(first_removed)
    with pytest.raises(ValueError, match="transition block"):
        remove_block(model, 1, 0)
    with pytest.raises(ValueError, match=r"stage 0 has 2 blocks \(indices 0..1\), got block 2"):
        remove_block(model, 0, 2)


def identity_layer(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d) -> None:
    """Net2DeeperNet's identity: a centred one-hot kernel, and a BN that undoes its eval-mode normalisation."""
    centre = conv.kernel_size[0] // 2
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, centre, centre] = torch.eye(conv.out_channels)
        bn.weight.copy_(torch.sqrt(bn.running_var + bn.eps))
        bn.bias.copy_(bn.running_mean)


def test_insert_layer_carries_and_shifts_layers():
    model = pruned_random_model("basic", seed=13)
    deeper, name = insert_layer(model, 1, 1, after_layer=1, kernel_size=5)
    assert name == "stages.1.blocks.1.conv2"
    new_block, old_block = deeper.spec.stages[1].blocks[1], model.spec.stages[1].blocks[1]
    assert new_block.kernels == (3, 5, 3) and new_block.widths == old_block.widths * 2
    fresh = assert_carried(
        model,
        deeper,
        lambda key: (
            key.replace("blocks.1.conv2", "blocks.1.conv3").replace("blocks.1.bn2", "blocks.1.bn3")
            if key.startswith("stages.1.")
            else key
        ),
    )
    assert {k.rsplit(".", 1)[0] for k in fresh} == {name, "stages.1.blocks.1.bn2"}
    identity_layer(deeper.get_submodule(name), deeper.stages[1].blocks[1].bn2)
    x = images(model)
    assert (logits(model, x, False) - logits(deeper, x, False)).abs().max() <= TOLERANCE

    before_first, name = insert_layer(model, 1, 0, after_layer=0)  # the new first layer takes the stride
    transition = before_first.stages[1].blocks[0]
    assert name == "stages.1.blocks.0.conv1"
    assert transition.conv1.stride == (2, 2) and transition.conv2.stride == (1, 1)
    assert transition.conv1.weight.shape[:2] == (model.spec.stages[0].width,) * 2
    assert torch.equal(transition.conv2.weight, model.stages[1].blocks[0].conv1.weight)
    after_last, name = insert_layer(model, 0, 0, after_layer=2, kernel_size=1)
    assert after_last.stages[0].blocks[0].conv3.weight.shape == (model.spec.stages[0].width,) * 2 + (1, 1)
    for built in (before_first, after_last):
        assert_spec_describes_model(built)

    with pytest.raises(ValueError, match=r"after_layer must be in 0..2, got 3"):
        insert_layer(model, 0, 0, after_layer=3)
    with pytest.raises(ValueError, match="odd"):
        insert_layer(model, 0, 0, after_layer=1, kernel_size=2)
    bare = select_channels(model, {"stage1.block0.layer1": []})
    with pytest.raises(ValueError, match="bare shortcut"):
        insert_layer(bare, 1, 0, after_layer=0)


@pytest.mark.cuda
def test_surgery_on_cuda_keeps_device_and_function():
    model = pruned_random_model("bottleneck", seed=14).cuda()
    generator = torch.Generator().manual_seed(15)
    maps = {g.name: replicating_map(g.size, g.size + 2, generator) for g in channel_groups(model)}
    deeper, name = insert_block(map_channels(model, maps, divide_readers=True), 1)
    zero_last_bn(deeper.get_submodule(name))
    x = images(model).cuda()
    allow_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        for train in (False, True):
            difference = (logits(model, x, train) - logits(deeper, x, train)).abs().max().item()
            assert difference <= TOLERANCE, f"train={train}: {difference}"
    finally:
        torch.backends.cudnn.allow_tf32 = allow_tf32

    optimizer = make_sgd(deeper)
    sgd_step(deeper, optimizer, seed=0)
    keep = {"stage1.stream": [0, 2, 3]}
    pruned = select_channels(deeper, keep)
    new_optimizer = make_sgd(pruned)
    carry_optimizer_state(deeper, pruned, optimizer, new_optimizer, keep)
    assert {p.device.type for p in pruned.parameters()} == {"cuda"}
    assert len(new_optimizer.state) == len(list(pruned.parameters()))
    assert all(state["momentum_buffer"].is_cuda for state in new_optimizer.state.values())


def two_segment_net():
    """The multi-segment case of the protocol audit: stage 0's two blocks both have shortcut convs."""
    spec = ResNetSpec(
        in_channels=3,
        stem_width=4,
        num_classes=2,
        stages=(StageSpec(6, (BlockSpec((4,), (3, 3), 1, 1), BlockSpec((4,), (3, 3), 1, 1))),),
    )
    torch.manual_seed(0)
    return build_resnet(spec)


def test_segments_of_one_stage_must_keep_equal_widths_and_the_error_names_them():
    model = two_segment_net()
    assert stream_segments(model.spec) == {0: ["stage0.stream", "stage0.block1.stream"]}
    with pytest.raises(ValueError, match=r"stage 0 has 2 residual-stream segments.*'stage0.block1.stream': 3"):
        select_channels(model, {"stage0.block1.stream": [0, 1, 2]})


def test_same_width_segments_keeps_the_union_and_pruning_stays_exact():
    model = two_segment_net()
    with torch.no_grad():  # channels 3..5 dead in the second segment, channel 5 dead in the first
        model.stages[0].blocks[1].conv2.weight[3:] = 0
        model.stages[0].blocks[1].shortcut_conv.weight[3:] = 0
        model.classifier.weight[:, 3:] = 0
        model.stages[0].blocks[0].conv2.weight[5] = 0
        model.stages[0].blocks[0].shortcut_conv.weight[5] = 0
        model.stages[0].blocks[1].conv1.weight[:, 5] = 0
        model.stages[0].blocks[1].shortcut_conv.weight[:, 5] = 0
    keep = same_width_segments(model.spec, {"stage0.block1.stream": [0, 1, 2], "stage0.stream": [0, 1, 2, 3, 4]})
    assert keep == {"stage0.stream": [0, 1, 2, 3, 4], "stage0.block1.stream": [0, 1, 2, 3, 4]}
    assert same_width_segments(model.spec, {"stage0.block1.stream": [1]})["stage0.stream"] == list(range(6))
    smaller = select_channels(model.eval(), keep)
    assert smaller.spec.stages[0].width == 5
    x = torch.randn(3, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(smaller(x), model(x), rtol=0, atol=1e-6)


def test_narrowed_keeps_the_first_ceil_fraction_of_every_group_and_nothing_else():
    model = seeded_model(odd_spec(), 0).eval()
    half = narrowed(model, 0.5)
    sizes = {group.name: group.size for group in channel_groups(model)}
    for group in channel_groups(half):
        assert group.size == max(1, -(-sizes[group.name] // 2)), group.name
    x = torch.randn(3, 2, 9, 9, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(narrowed(model, 1.0).eval()(x), model(x))
    with pytest.raises(ValueError, match="fraction must lie in"):
        narrowed(model, 0.0)


# The thesis nets, a bottleneck net and an irregular pruned spec (a bare shortcut block, an empty stage).
DEPENDENCY_NETS = {
    "wide": WIDE_BASELINE.with_(blocks=(2, 2, 2), in_channels=1),
    "narrow": NARROW_BASELINE.with_(blocks=(2, 2, 2), in_channels=1),
    **{name: SMALL_CONFIGS[name].with_(in_channels=1) for name in ("l3", "bottleneck")},
}


def _dependency_graph_group(model: torch.nn.Module, group_name: str, graph) -> tuple[set[str], set[str], set[str]]:
    """(producing convs, batch norms, reading convs / linears) that Torch-Pruning's dependency graph
    prunes together with the first producer of our group `group_name`."""
    import torch_pruning as tp

    names = {module: name for name, module in model.named_modules()}
    group = next(g for g in channel_groups(model) if g.name == group_name)
    first = model.get_submodule(group.producers[0])
    producers, bns, readers = set(), set(), set()
    for dependency, _ in graph.get_pruning_group(first, tp.prune_conv_out_channels, idxs=[0]):
        module, handler = dependency.target.module, dependency.handler
        name = names.get(module)
        if name is None:  # an element-wise node (the residual addition) of the graph, no layer
            continue
        if isinstance(module, torch.nn.BatchNorm2d):
            bns.add(name)
        elif handler.__name__ == "prune_out_channels":
            producers.add(name)
        else:
            readers.add(name)
    return producers, bns, readers


@pytest.mark.parametrize("net", [*DEPENDENCY_NETS, "irregular"])
def test_channel_groups_match_torch_pruning_dependency_graph(net):
    """Every channel group is exactly the set of layers Torch-Pruning's DependencyGraph (traced from the
    forward pass, independent of our spec) couples with its first producer: no layer missing, none extra."""
    tp = pytest.importorskip("torch_pruning", reason="torch-pruning is a test dependency: pip install -e '.[test]'")
    model = (build_resnet(odd_spec()) if net == "irregular" else build_resnet(DEPENDENCY_NETS[net])).eval()
    channels = model.spec.in_channels
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, channels, 8, 8))
    groups = [group for group in channel_groups(model) if group.producers]
    assert len(groups) > 3
    for group in groups:
        producers, bns, readers = _dependency_graph_group(model, group.name, graph)
        assert producers == set(group.producers), group.name
        assert bns == set(group.bns), group.name
        assert readers == set(group.readers), group.name
