"""MorphNet (section 2.7): resource F and regularizer G on BN gammas, alive widths, width multiplier, search."""

import json
import random

import pytest
import torch
from torch import nn

from thesis_lib.methods.morphnet import (
    MorphNetHook,
    MorphNetRegularizer,
    _conv_costs,
    _conv_penalties,
    alive_channels,
    alive_spec,
    conv_output_sizes,
    morphnet_search,
    resource_coefficient,
    scale_spec,
    shrink_to_alive,
    spec_cost,
    uniform_config,
    unit_width_spec,
    width_multiplier,
)
from thesis_lib.models import (
    BlockSpec,
    ResNetConfig,
    ResNetSpec,
    StageSpec,
    build_resnet,
    count_flops,
    count_parameters,
)
from thesis_lib.surgery import channel_groups, select_channels
from thesis_lib.training import TrainConfig, Trainer

from helpers import KillAfter, Killed, irregular_spec, next_breakpoint, thesis_parameter_count, weight_entries

INPUT = (1, 8, 8)


SMALL = ResNetConfig(stages=2, blocks=(2, 1), widths=(4, 6), in_channels=1, num_classes=10)


THREE_STAGES = ResNetConfig(stages=3, blocks=(2, 2, 1), widths=(4, 6, 8), in_channels=1, num_classes=10)


THREE_LAYERS = ResNetConfig(stages=2, blocks=(2, 2), layers_per_block=3, widths=(3, 5), in_channels=1, num_classes=10)


BOTTLENECK = ResNetConfig(
    stages=2, blocks=(1, 2), layers_per_block=3, widths=(2, 3), bottleneck=True, in_channels=1, num_classes=10
)


def randomize_gammas(model: nn.Module, seed: int, low: float = 0.5, high: float = 1.5) -> None:
    """|gamma| uniform in [low, high] with random signs, so every channel is alive at threshold 1e-2."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                magnitude = torch.empty(module.num_features).uniform_(low, high, generator=generator)
                sign = torch.randint(0, 2, (module.num_features,), generator=generator) * 2 - 1
                module.weight.copy_(magnitude * sign)


def random_pruned_model(config: ResNetConfig, seed: int):
    """`config`'s net with a random subset of every group kept; internal groups are sometimes emptied."""
    rng = random.Random(seed)
    model = build_resnet(config)
    keep = {}
    for group in channel_groups(model):
        lowest = 1 if group.kind == "stream" or rng.random() > 0.25 else 0
        count = rng.randint(lowest, group.size)
        keep[group.name] = sorted(rng.sample(range(group.size), count))
    return select_channels(model, keep)


def pruned_specs():
    return [random_pruned_model(config, seed) for seed, config in enumerate([THREE_STAGES, THREE_LAYERS] * 2)]


@pytest.mark.parametrize("config", [SMALL, THREE_STAGES, THREE_LAYERS, BOTTLENECK])
@pytest.mark.parametrize("input_size", [INPUT, (1, 9, 7)])
def test_all_alive_cost_equals_flop_counter_and_weight_count(config, input_size):
    model = build_resnet(config)
    randomize_gammas(model, seed=1)
    flops = MorphNetRegularizer(model, "flops", 1e-2, input_size)
    size = MorphNetRegularizer(model, "size", 1e-2, input_size)
    assert flops.cost() == flops.full_cost() == count_flops(model, input_size)
    assert size.cost() == size.full_cost() == weight_entries(model)


def test_all_alive_cost_of_pruned_non_uniform_specs():
    models = pruned_specs()
    assert any(not block.has_main_path for m in models for s in m.spec.stages for block in s.blocks)
    assert len({m.spec for m in models}) == len(models)
    for model in models:
        assert MorphNetRegularizer(model, "flops", 1e-2, INPUT).cost() == count_flops(model, INPUT)
        assert MorphNetRegularizer(model, "size", 1e-2, INPUT).cost() == weight_entries(model)
        assert spec_cost(model.spec, "flops", INPUT) == count_flops(model, INPUT)


def test_resnet32_on_cifar_size_input():
    model = build_resnet(ResNetConfig())
    assert MorphNetRegularizer(model, "flops", 1e-2, (3, 32, 32)).cost() == count_flops(model, (3, 32, 32))
    # the thesis's parameters less 2 x 1,232 BN parameters (16 + 10 x 16 + 11 x 32 + 11 x 64 channels) and 10 biases
    assert spec_cost(ResNetConfig(), "size") == weight_entries(model) == thesis_parameter_count(3, 5) - 2 * 1_232 - 10


@pytest.mark.parametrize("config", [THREE_STAGES, THREE_LAYERS])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zeroed_gammas_lower_cost_to_that_of_the_pruned_net(config, seed):
    model = build_resnet(config)
    randomize_gammas(model, seed)
    rng = random.Random(seed)
    keep = {}
    with torch.no_grad():
        for group in channel_groups(model):
            lowest = 1 if group.kind == "stream" else 0
            kept = sorted(rng.sample(range(group.size), rng.randint(lowest, group.size)))
            dead = [c for c in range(group.size) if c not in kept]
            for bn in group.bns:  # a channel dies only when it dies in every BN of its group
                model.get_submodule(bn).weight[dead] = 0.0
            keep[group.name] = kept
    pruned = select_channels(model, keep)
    for resource, reference in (("flops", count_flops(pruned, INPUT)), ("size", weight_entries(pruned))):
        regularizer = MorphNetRegularizer(model, resource, 1e-2, INPUT)
        assert regularizer.cost() == reference < regularizer.full_cost()
    assert alive_spec(model, 1e-2) == pruned.spec
    counts = MorphNetRegularizer(model, "flops", 1e-2, INPUT).alive_counts()
    assert counts == {name: len(kept) for name, kept in keep.items()}


def test_residual_group_stays_alive_while_any_member_bn_is_alive():
    model = build_resnet(SMALL)
    stream = next(g for g in channel_groups(model) if g.name == "stage0.stream")
    assert len(stream.bns) == 3  # stem_bn and the last BN of both blocks of stage 0
    regularizer = MorphNetRegularizer(model, "flops", 1e-2, INPUT)
    full = regularizer.cost()
    with torch.no_grad():
        for bn in stream.bns[:-1]:
            model.get_submodule(bn).weight[2] = 0.0
    assert regularizer.alive_counts()["stage0.stream"] == 4
    assert regularizer.cost() == full
    assert 2 not in alive_channels(model).get("stage0.stream", [])  # the group stays whole: not listed
    with torch.no_grad():
        model.get_submodule(stream.bns[-1]).weight[2] = 1e-3  # below the threshold: now dead everywhere
    assert regularizer.alive_counts()["stage0.stream"] == 3
    assert alive_channels(model)["stage0.stream"] == [0, 1, 3]
    assert regularizer.cost() == count_flops(select_channels(model, {"stage0.stream": [0, 1, 3]}), INPUT)


def test_dead_stream_keeps_its_strongest_channel():
    model = build_resnet(SMALL)
    stream = next(g for g in channel_groups(model) if g.name == "stage1.stream")
    with torch.no_grad():
        for bn in stream.bns:
            model.get_submodule(bn).weight.fill_(1e-3)
        model.get_submodule(stream.bns[0]).weight[4] = -5e-3
    assert alive_channels(model)["stage1.stream"] == [4]
    assert alive_spec(model).stages[1].width == 1


def test_penalty_with_unit_gammas_is_twice_the_flops_less_the_fixed_sides():
    # All gammas 1: a conv between two gamma groups contributes 2 c A_in A_out; the stem (image side has no
    # gamma) and the classifier (class side has no gamma) contribute c A_in A_out once.
    model = build_resnet(SMALL)
    regularizer = MorphNetRegularizer(model, "flops", 1e-2, INPUT)
    stem = 2 * 8 * 8 * 9 * 1 * 4
    classifier = 2 * 6 * 10
    expected = 2 * count_flops(model, INPUT) - stem - classifier
    assert regularizer.penalty().item() == pytest.approx(expected, rel=1e-6)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(-0.5)  # |gamma| counts; every channel still alive
    assert regularizer.penalty().item() == pytest.approx(expected / 2, rel=1e-6)


def test_penalty_gradient_reaches_only_bn_gammas_with_the_right_value():
    model = build_resnet(SMALL)
    randomize_gammas(model, seed=3)
    regularizer = MorphNetRegularizer(model, "flops", 1e-2, INPUT)
    regularizer.penalty().backward()
    bn_weights = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    for name, parameter in model.named_parameters():
        if name not in bn_weights:
            assert parameter.grad is None or not parameter.grad.any(), name
    for group in channel_groups(model):  # the max over a group's BNs passes the gradient to its largest member
        largest = torch.stack([model.get_submodule(bn).weight.detach().abs() for bn in group.bns]).argmax(0)
        grads = torch.stack([model.get_submodule(bn).weight.grad for bn in group.bns])
        assert (grads.gather(0, largest[None]) != 0).all(), group.name
        assert (grads != 0).sum() == group.size, group.name
    # Internal group of stage 1 block 0 (one BN): dG/dgamma_c = sign(gamma_c) (c_conv1 A_in + c_conv2 A_out),
    # conv1 reads the 4-wide stage-0 stream at stride 2 (4x4 output), conv2 writes the 6-wide stage-1 stream.
    bn1 = model.stages[1].blocks[0].bn1
    expected = (2 * 4 * 4 * 9) * 4 + (2 * 4 * 4 * 9) * 6
    assert torch.allclose(bn1.weight.grad, torch.sign(bn1.weight.detach()) * expected)


def test_port_of_the_reference_gamma_flop_test():
    """google-research/morph-net, network_regularizers/flop_regularizer_test.py, GammaFlopLossTest.

    Our ResNet cannot express that graph (7x5 kernels, a channel concat, two outputs), so the same conv
    shapes and gammas go through the regularizer's own per-conv functions: image 1x17x19x3; conv1 7x5 -> 13,
    conv2 1x1 -> 23 (both on the image), concat (36 channels), conv3 3x3 stride 2 -> 29, conv4 1x1 -> 31,
    'SAME' padding, threshold 0.45. Expected total penalty 1,410,376.375 and the test's per-conv costs.
    """
    gamma1 = torch.tensor([0.8] * 7 + [0.2] * 6)
    gamma2 = torch.tensor([-0.7] * 11 + [0.1] * 12)
    gamma3 = torch.tensor([0.6] * 10 + [-0.3] * 19)
    gamma4 = torch.tensor([-0.5] * 17 + [-0.4] * 14)
    concat = torch.cat([gamma1, gamma2]).abs()
    threshold = 0.45
    coefficients = torch.tensor(
        [
            resource_coefficient("flops", (7, 5), (17, 19)),
            resource_coefficient("flops", (1, 1), (17, 19)),
            resource_coefficient("flops", (3, 3), (9, 10)),  # 'SAME' with stride 2: ceil(17/2) x ceil(19/2)
            resource_coefficient("flops", (1, 1), (17, 19)),
        ],
        dtype=torch.float64,
    )
    image_channels = 3.0
    alive_in = torch.tensor(
        [image_channels, image_channels, (concat > threshold).sum(), (concat > threshold).sum()], dtype=torch.float64
    )
    gamma_in = torch.tensor([0.0, 0.0, concat.sum(), concat.sum()], dtype=torch.float64)
    outputs = [gamma1, gamma2, gamma3, gamma4]
    alive_out = torch.tensor([(g.abs() > threshold).sum() for g in outputs], dtype=torch.float64)
    gamma_out = torch.tensor([g.abs().sum() for g in outputs], dtype=torch.float64)
    penalty = _conv_penalties(coefficients, alive_in, gamma_in, alive_out, gamma_out).sum()
    assert penalty.item() == pytest.approx(1_410_376.375, rel=1e-6)
    costs = _conv_costs(coefficients, alive_in, alive_out).tolist()
    assert costs == [
        coefficients[0] * 7 * 3,
        coefficients[1] * 11 * 3,
        coefficients[2] * 10 * 18,
        coefficients[3] * 17 * 18,
    ]


def test_scale_spec_floors_and_keeps_at_least_one():
    spec = ResNetConfig(stages=3, blocks=(1, 1, 1), widths=(16, 32, 64)).to_spec()
    scaled = scale_spec(spec, 0.3)
    assert (scaled.stem_width, [s.width for s in scaled.stages]) == (4, [4, 9, 19])
    assert [s.blocks[0].widths for s in scaled.stages] == [(4,), (9,), (19,)]
    tiny = scale_spec(spec, 0.01)
    assert tiny.stem_width == 1 and [s.width for s in tiny.stages] == [1, 1, 1]
    assert (
        scale_spec(spec, 1.0) == spec
        and scale_spec(spec, 2.0) == ResNetConfig(widths=(32, 64, 128), blocks=(1, 1, 1)).to_spec()
    )


@pytest.mark.parametrize("resource", ["flops", "size"])
def test_width_multiplier_is_the_largest_within_budget(resource):
    measure = (lambda m: count_flops(m, INPUT)) if resource == "flops" else weight_entries
    for model in pruned_specs()[:1] + [build_resnet(SMALL)]:
        for factor in (0.4, 1.0, 2.7):
            budget = factor * measure(model)
            omega, spec = width_multiplier(model.spec, budget, resource, INPUT)
            assert spec == scale_spec(model.spec, omega)
            assert measure(build_resnet(spec)) <= budget
            assert measure(build_resnet(scale_spec(model.spec, next_breakpoint(model.spec, omega)))) > budget


def test_width_multiplier_grows_the_narrow_net_to_the_wide_budget():
    narrow = ResNetConfig(stages=3, blocks=(1, 1, 1), widths=(8, 16, 32)).to_spec()
    wide = ResNetConfig(stages=3, blocks=(1, 1, 1), widths=(16, 32, 64)).to_spec()
    omega, spec = width_multiplier(narrow, spec_cost(wide), "flops")
    assert (omega, spec) == (2.0, wide)


def test_bad_inputs_are_value_errors():
    model = build_resnet(SMALL)
    with pytest.raises(ValueError, match="unknown resource"):
        MorphNetRegularizer(model, "latency", 1e-2, INPUT)
    with pytest.raises(ValueError, match="unknown resource"):
        width_multiplier(model.spec, 1e6, "params", INPUT)
    with pytest.raises(ValueError, match="unknown resource"):
        MorphNetHook(resource="energy")
    with pytest.raises(ValueError, match="budget must be > 0"):
        width_multiplier(model.spec, 0, "flops", INPUT)
    smallest = spec_cost(scale_spec(model.spec, 0.01), "flops", INPUT)
    with pytest.raises(ValueError, match="smallest network"):
        width_multiplier(model.spec, smallest - 1, "flops", INPUT)
    assert width_multiplier(model.spec, smallest, "flops", INPUT)[1] == scale_spec(model.spec, 0.01)
    with pytest.raises(ValueError, match="channels"):
        MorphNetRegularizer(model, "flops", 1e-2, (3, 8, 8))
    with pytest.raises(ValueError, match="gamma_threshold"):
        MorphNetRegularizer(model, "flops", -1.0, INPUT)


def test_uniform_config_recovers_configs_and_rejects_pruned_specs():
    for config in (SMALL, THREE_LAYERS, BOTTLENECK, ResNetConfig()):
        assert uniform_config(config.to_spec()) == config
    assert uniform_config(pruned_specs()[0].spec) is None


def test_hook_adds_scaled_penalty_records_cost_and_resumes_exactly(digits, tmp_path):
    config = TrainConfig(epochs=2, batch_size=64, lr=0.05, schedule="constant", augment=False, seed=0)

    def trainer(path=None, armed=False, relative_strength=2.0):
        hook = MorphNetHook(relative_strength=relative_strength, gamma_threshold=0.9)
        torch.manual_seed(0)
        return Trainer(
            build_resnet(SMALL),
            digits,
            config,
            hooks=[hook, KillAfter(1 if armed else 99)],
            checkpoint_path=path,
            progress=False,
        ), hook

    straight, hook = trainer()
    history = straight.fit()
    initial = count_flops(build_resnet(SMALL), INPUT)
    assert hook.initial_cost == initial and hook.effective_strength == pytest.approx(2.0 / initial)
    regularizer = hook.regularizer(straight)
    last = history.iloc[-1]
    assert last["morphnet_cost"] == regularizer.cost() < initial  # threshold 0.9: the penalty killed channels
    assert last["morphnet_alive"] == sum(json.loads(last["morphnet_alive_groups"]).values())
    assert last["morphnet_alive"] < sum(g.size for g in regularizer.groups)
    # The term with every gamma 1: lambda = 2 / F(initial), G = 2 F less the stem's and the classifier's
    # single-sided FLOPs (2 x 8 x 8 x 9 x 1 x 4 and 2 x 6 x 10), as in the unit-gamma penalty test.
    with torch.no_grad():
        for module in straight.model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
    term = hook.loss_term(straight, None, None, None)
    assert term.item() == pytest.approx(2.0 / initial * (2 * initial - 2 * 8 * 8 * 9 * 4 - 2 * 6 * 10), rel=1e-6)

    path = tmp_path / "checkpoint.pt"
    interrupted, _ = trainer(path, armed=True)
    with pytest.raises(Killed):
        interrupted.fit()
    resumed, resumed_hook = trainer(path, relative_strength=2.0)
    assert resumed_hook.initial_cost == initial
    resumed_history = resumed.fit()
    columns = ["train_loss", "test_acc", "morphnet_cost", "morphnet_alive", "morphnet_penalty"]
    assert resumed_history[columns].equals(history[columns])


@pytest.mark.cuda
def test_regularizer_follows_its_model_to_cuda():
    model = build_resnet(SMALL)
    randomize_gammas(model, seed=4)
    regularizer = MorphNetRegularizer(model, "flops", 1e-2, INPUT)
    cpu_penalty, cpu_cost = regularizer.penalty().item(), regularizer.cost()
    model.cuda()
    penalty = regularizer.penalty()
    assert penalty.device.type == "cuda" and penalty.item() == pytest.approx(cpu_penalty, rel=1e-5)
    assert regularizer.cost() == cpu_cost
    penalty.backward()
    assert model.stem_bn.weight.grad.device.type == "cuda"
    assert alive_spec(model) == model.spec


class RecordingFactory:
    """A trainer factory that checkpoints every phase into a folder and can simulate a kill at one phase."""

    def __init__(self, data, folder, kill_at=None):
        self.data, self.folder, self.kill_at, self.phases, self.configs = data, folder, kill_at, [], []
        folder.mkdir(exist_ok=True)

    def __call__(self, model, config, hooks, phase):
        self.phases.append(phase)
        self.configs.append(config)
        if phase == self.kill_at:
            raise KeyboardInterrupt
        return Trainer(
            model, self.data, config, hooks=hooks, checkpoint_path=self.folder / f"{phase}.pt", progress=False
        )


def test_search_builds_every_phase_through_the_factory_and_resumes(digits, tmp_path):
    seed = ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=10)
    config = TrainConfig(epochs=1, batch_size=64, lr=0.05, schedule="constant", augment=False)
    arguments = dict(resource="size", iterations=2, relative_strength=5.0, gamma_threshold=0.9, progress=False)
    straight = RecordingFactory(digits, tmp_path / "straight")
    expected = morphnet_search(seed, digits, config, trainer_factory=straight, **arguments)
    assert straight.phases == ["regularize_1", "regularize_2", "retrain"]
    # morph-net's protocol: no weight decay on the BN gammas and betas while regularizing, the retraining as usual
    assert [c.bn_weight_decay for c in straight.configs] == [False, False, True]
    killed = RecordingFactory(digits, tmp_path / "resumed", kill_at="retrain")
    with pytest.raises(KeyboardInterrupt):
        morphnet_search(seed, digits, config, trainer_factory=killed, **arguments)
    resumed = morphnet_search(
        seed, digits, config, trainer_factory=RecordingFactory(digits, tmp_path / "resumed"), **arguments
    )
    assert [s.spec for s in resumed.structures] == [s.spec for s in expected.structures]
    assert resumed.structures[1].cost < resumed.structures[0].cost  # the search really shrank
    assert resumed.retrain_history["train_loss"].tolist() == expected.retrain_history["train_loss"].tolist()


def test_shrinking_a_stage_with_two_stream_segments_keeps_one_width():
    spec = ResNetSpec(
        in_channels=1,
        stem_width=4,
        num_classes=10,
        stages=(StageSpec(6, (BlockSpec((4,), (3, 3), 1, 1), BlockSpec((4,), (3, 3), 1, 1))),),
    )
    torch.manual_seed(0)
    model = build_resnet(spec)
    with torch.no_grad():  # the second segment's BNs: channels 2..5 below the threshold
        model.stages[0].blocks[1].bn2.weight[2:] = 1e-4
        model.stages[0].blocks[1].shortcut_bn.weight[2:] = 1e-4
        model.stages[0].blocks[0].bn2.weight[3:] = 1e-4
        model.stages[0].blocks[0].shortcut_bn.weight[3:] = 1e-4
    keep = alive_channels(model, 1e-2)
    assert keep["stage0.stream"] == keep["stage0.block1.stream"] == [0, 1, 2]  # union of [0, 1, 2] and [0, 1]
    assert shrink_to_alive(model, 1e-2).spec.stages[0].width == 3


def test_a_gamma_exactly_at_the_threshold_is_dead():
    """Alive means |gamma| > threshold (eq. 2.10): with threshold 0 a zeroed gamma is dead, so the cost is the
    pruned net's (a `>=` would count every zeroed channel alive)."""
    model = build_resnet(SMALL)
    randomize_gammas(model, 0)
    group = next(g for g in channel_groups(model) if g.kind == "internal")
    with torch.no_grad():
        for bn in group.bns:
            model.get_submodule(bn).weight[:2] = 0.0
    pruned = select_channels(model, {group.name: list(range(2, group.size))})
    assert MorphNetRegularizer(model, "flops", 0.0, INPUT).cost() == count_flops(pruned, INPUT)


def test_the_reference_tests_gammas_through_the_regularizer_on_a_net_it_can_build():
    """The reference test's first conv (gammas 0.8 x 7 and 0.2 x 6, threshold 0.45) as a ResNet the
    regularizer takes: an RGB 3x3 stem of 13 channels on a 17 x 17 image, a stage without blocks, a
    classifier of 10. By hand: sum |gamma| = 6.8, 7 alive; stem c = 2 * 17 * 17 * 3 * 3 = 5202, classifier
    c = 2. G = 5202 * (3 * 6.8) + 2 * (10 * 6.8) = 106,256.8; F = 5202 * 3 * 7 + 2 * 7 * 10 = 109,382,
    which is also the FLOP counter's count of the net shrunk to its alive channels."""
    model = build_resnet(ResNetSpec(in_channels=3, stem_width=13, num_classes=10, stages=(StageSpec(13, ()),)))
    with torch.no_grad():
        model.stem_bn.weight.copy_(torch.tensor([0.8] * 7 + [-0.2] * 6))
    regularizer = MorphNetRegularizer(model, resource="flops", gamma_threshold=0.45, input_size=(3, 17, 17))
    assert regularizer.penalty().item() == pytest.approx(106_256.8, rel=1e-6)
    assert regularizer.cost() == 109_382
    assert count_flops(shrink_to_alive(model, 0.45), (3, 17, 17)) == 109_382


def test_conv_output_sizes_of_the_irregular_spec_by_hand():
    # A k x k conv with padding k // 2 and stride s maps H to floor((H + 2 (k // 2) - k) / s) + 1:
    # stride 1 keeps 9; stage 2's stride-2 3x3 shortcut: (9 + 2 - 3) // 2 + 1 = 5; stage 4's stride-2 3x3 conv1
    # (5 + 2 - 3) // 2 + 1 = 3 and 1x1 shortcut (5 - 1) // 2 + 1 = 3. Stage 3 has no block, so no conv.
    spec = irregular_spec()
    nine, five, three = (9, 9), (5, 5), (3, 3)
    expected = {
        "stem_conv": nine,
        "stages.0.blocks.0.shortcut_conv": nine,
        "stages.0.blocks.0.conv1": nine,
        "stages.0.blocks.0.conv2": nine,
        "stages.0.blocks.0.conv3": nine,
        "stages.0.blocks.1.conv1": nine,
        "stages.0.blocks.1.conv2": nine,
        "stages.1.blocks.0.shortcut_conv": five,
        "stages.1.blocks.1.conv1": five,
        "stages.3.blocks.0.shortcut_conv": three,
        "stages.3.blocks.0.conv1": three,
        "stages.3.blocks.0.conv2": three,
        "stages.3.blocks.1.shortcut_conv": three,
    }
    assert conv_output_sizes(spec, (2, 9, 9)) == expected
    # even and non-square: 8 -> 4 -> 2 and 6 -> 3 -> 2; widths do not change resolutions
    sizes = conv_output_sizes(scale_spec(spec, 3), (2, 8, 6))
    assert sizes["stem_conv"] == (8, 6) and sizes["stages.1.blocks.1.conv1"] == (4, 3)
    assert sizes["stages.3.blocks.1.shortcut_conv"] == (2, 2)
    with pytest.raises(ValueError, match="3 channels but the network reads 2"):
        conv_output_sizes(spec, (3, 9, 9))


def test_unit_width_spec_keeps_the_structure_with_every_width_one():
    unit = unit_width_spec(irregular_spec())
    assert unit == ResNetSpec(
        in_channels=2,
        stem_width=1,
        num_classes=4,
        stages=(
            StageSpec(1, (BlockSpec((1, 1), (1, 3, 1), 1, 1), BlockSpec((1,), (3, 3)))),
            StageSpec(1, (BlockSpec((), (), 2, 3), BlockSpec((), (3,)))),
            StageSpec(1, ()),
            StageSpec(1, (BlockSpec((1,), (3, 1), 2, 1), BlockSpec((), (), 1, 1))),
        ),
    )
    # one stage, one block, 1 -> 2 classes: three 3x3 convs of 1 x 1 x 9 weights, three BNs of 2 parameters,
    # a 1 -> 2 linear layer with bias (4): 27 + 6 + 4 = 37 parameters
    smallest = unit_width_spec(
        ResNetConfig(stages=1, blocks=(1,), widths=(16,), in_channels=1, num_classes=2).to_spec()
    )
    assert count_parameters(build_resnet(smallest)) == 37
