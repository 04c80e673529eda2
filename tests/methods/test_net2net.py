"""Net2Net: wider and deeper students compute their teacher's function; baselines, noise, bad input, hook."""

import pytest
import torch

from thesis_lib.methods.net2net import (
    DeepenStep,
    Net2NetHook,
    WidenStep,
    deepen,
    deepened_spec,
    rebuild_optimizer,
    widen,
    widen_group,
    widen_groups,
    widened_spec,
    wider_index_map,
)
from thesis_lib.models import ResNetConfig, build_resnet, count_parameters
from thesis_lib.surgery import channel_groups, select_channels
from thesis_lib.training import TrainConfig, Trainer

from helpers import KillAfter, Killed, irregular_spec, toy_data

TOLERANCE = 1e-5


BASIC = ResNetConfig(stages=2, blocks=(2, 2), widths=(3, 4), in_channels=2, num_classes=5)


BOTTLENECK = ResNetConfig(
    stages=2, blocks=(1, 2), layers_per_block=3, widths=(2, 3), bottleneck=True, in_channels=2, num_classes=5
)


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every BN random gamma, beta and running statistics, so that no test passes by default values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.3 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.3 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return model


def teacher(config, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomise(build_resnet(config), seed)


def pruned_teacher() -> torch.nn.Module:
    """A non-uniform net: PruneTrain-style channel selection on stream and internal groups."""
    model = teacher(BASIC.with_(widths=(4, 6)), seed=3)
    return select_channels(
        model,
        {
            "stage0.stream": [0, 2, 3],
            "stage0.block1.layer1": [1],
            "stage1.stream": [0, 1, 4, 5],
            "stage1.block0.layer1": [2, 3, 5],
        },
    )


def images(model: torch.nn.Module, batch: int = 4, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, model.spec.in_channels, 8, 8, generator=generator)


def logit_gap(a: torch.nn.Module, b: torch.nn.Module, training: bool, batch: int = 4) -> float:
    """Max abs difference of the two nets' logits on the same images, both in train or eval mode."""
    x = images(a, batch)
    a.train(training)
    b.train(training)
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


TEACHERS = {
    "basic": lambda: teacher(BASIC),
    "bottleneck": lambda: teacher(BOTTLENECK),
    "pruned": pruned_teacher,
    "irregular": lambda: teacher(irregular_spec()),
}


@pytest.mark.parametrize("name", TEACHERS)
@pytest.mark.parametrize("stages", [None, 0, [1]])
def test_widen_preserves_logits_in_eval_and_train_mode(name, stages):
    model = TEACHERS[name]()
    student = widen(model, stages=stages, factor=1.7, generator=torch.Generator().manual_seed(5))
    assert count_parameters(student) > count_parameters(model)
    assert logit_gap(model, student, training=False) <= TOLERANCE
    assert logit_gap(model, student, training=True) <= TOLERANCE


def test_widen_group_grows_one_internal_width_only_and_preserves_logits():
    model = pruned_teacher()
    before = {g.name: g.size for g in channel_groups(model)}
    student = widen_group(model, "stage0.block1.layer1", 4, generator=torch.Generator().manual_seed(0))
    after = {g.name: g.size for g in channel_groups(student)}
    assert after == {**before, "stage0.block1.layer1": 4}
    assert logit_gap(model, student, training=False) <= TOLERANCE
    assert logit_gap(model, student, training=True) <= TOLERANCE


def test_wider_index_map_keeps_old_channels_and_draws_the_rest_from_them():
    g = wider_index_map(3, 500, torch.Generator().manual_seed(0))
    assert g[:3].tolist() == [0, 1, 2]
    assert set(g[3:].tolist()) == {0, 1, 2}  # uniform with replacement: 497 draws hit every old channel


def copy_producer_through(student, teacher_model, conv: str, bn: str, index_map: torch.Tensor, old: int) -> None:
    """Overwrite one producer's new output channels (conv filters, BN tensors) with teacher channels index_map[j]."""
    teacher_state, student_state = teacher_model.state_dict(), student.state_dict()
    with torch.no_grad():
        for key in [f"{conv}.weight"] + [f"{bn}.{t}" for t in ("weight", "bias", "running_mean", "running_var")]:
            student_state[key][old:] = teacher_state[key][index_map[old:]]


def test_independent_maps_for_the_producers_of_one_stream_break_preservation():
    model = teacher(BASIC)
    old, new = 3, 6
    student = widen_group(model, "stage0.stream", new, generator=torch.Generator().manual_seed(2))
    shared_map = wider_index_map(old, new, torch.Generator().manual_seed(2))  # the map widen_group drew
    conv, bn = "stages.0.blocks.1.conv2", "stages.0.blocks.1.bn2"

    copy_producer_through(student, model, conv, bn, shared_map, old)  # the same g: the edit is a no-op
    assert logit_gap(model, student, training=False) <= TOLERANCE

    own_map = shared_map.clone()
    own_map[old:] = (shared_map[old:] + 1) % old  # every new channel of this one producer copies another one
    copy_producer_through(student, model, conv, bn, own_map, old)
    assert logit_gap(model, student, training=False) > 100 * TOLERANCE  # measured: 1.1e-2
    assert logit_gap(model, student, training=True) > 100 * TOLERANCE  # measured: 0.28


def test_noise_is_the_replayed_normal_draw_times_noise_and_the_population_std():
    # One grown internal group (4 -> 8 channels) with one conv producer: the generator gives the index map's
    # 4 draws, then one N(0, 1) draw per new filter entry, scaled by noise x std(teacher's weight) with the
    # population (1/n) std. Over its n = 4 x 4 x 9 = 144 entries the sample (1/(n-1)) std is 0.35% larger.
    model, key, noise = teacher(BASIC), "stages.1.blocks.1.conv1.weight", 0.1
    clean = widen_group(model, "stage1.block1.layer1", 8, generator=torch.Generator().manual_seed(4))
    noisy = widen_group(model, "stage1.block1.layer1", 8, noise=noise, generator=torch.Generator().manual_seed(4))
    replay = torch.Generator().manual_seed(4)
    wider_index_map(4, 8, replay)
    draw = torch.randn((4, 4, 3, 3), generator=replay)
    weight = model.state_dict()[key].double()
    population_std = float(((weight - weight.mean()) ** 2).mean().sqrt())
    change = (noisy.state_dict()[key] - clean.state_dict()[key]).double()
    assert torch.equal(change[:4], torch.zeros_like(change[:4]))
    assert torch.allclose(change[4:], noise * population_std * draw.double(), rtol=1e-4, atol=1e-7)
    assert not torch.allclose(
        change[4:], noise * population_std * (144 / 143) ** 0.5 * draw.double(), rtol=1e-3, atol=0
    )
    for name, value in clean.state_dict().items():  # nothing but the new filters moves
        if name != key:
            assert torch.equal(noisy.state_dict()[name], value), name


def test_noise_perturbs_only_new_filters_by_an_amount_proportional_to_it():
    model = teacher(BASIC)
    clean = widen(model, factor=2, generator=torch.Generator().manual_seed(4))
    gaps = {}
    for noise in (1e-3, 1e-2):
        noisy = widen(model, factor=2, noise=noise, generator=torch.Generator().manual_seed(4))
        gaps[noise] = logit_gap(model, noisy, training=False)
        key = "stages.1.blocks.1.conv2.weight"
        clean_weight, noisy_weight = clean.state_dict()[key], noisy.state_dict()[key]
        assert torch.equal(noisy_weight[:4], clean_weight[:4])
        assert not torch.equal(noisy_weight[4:], clean_weight[4:])
        # Relative noise eps on the new filters moves the logits by less than eps times their size.
        with torch.no_grad():
            logit_size = float(model.eval()(images(model)).abs().max())
        assert 1e-6 * logit_size < gaps[noise] < noise * logit_size
    assert 6 < gaps[1e-2] / gaps[1e-3] < 16  # first order: ten times the noise, about ten times the change


@pytest.mark.parametrize("init", ["net2net", "random"])
def test_widened_net_has_the_shape_of_a_net_built_with_the_new_widths(init):
    config = BASIC.with_(stages=3, blocks=(2, 1, 1), widths=(4, 6, 8))
    by_factor = widen(teacher(config), factor=1.5, init=init)
    direct = build_resnet(config.with_(widths=(6, 9, 12)))
    assert by_factor.spec == direct.spec
    # stem 2*6*9 + 12, stage 0: 2 * (2*6*6*9 + 24), stage 1: 6*9*9 + 9*9*9 + 36 + 6*9*9 + 18,
    # stage 2: 9*12*9 + 12*12*9 + 48 + 9*12*9 + 24, classifier 12*5 + 5
    assert count_parameters(by_factor) == count_parameters(direct) == 120 + 1344 + 1755 + 3312 + 65


@pytest.mark.parametrize("init", ["net2net", "random"])
def test_bottleneck_net_widened_to_new_stream_widths_has_the_shape_of_the_new_config(init):
    """widths are stream widths (4k for bottleneck nets); stem and internal widths k scale along."""
    by_widths = widen(teacher(BOTTLENECK), widths=[12, 20], init=init)
    direct = build_resnet(BOTTLENECK.with_(widths=(3, 5)))
    assert by_widths.spec == direct.spec
    assert count_parameters(by_widths) == count_parameters(direct)


def test_widths_round_up_exactly():
    config = ResNetConfig(stages=2, blocks=(1, 1), widths=(1, 10), in_channels=1, num_classes=2)
    student = widen(teacher(config), factor=1.5)
    assert [s.width for s in student.spec.stages] == [2, 15]
    student = widen(teacher(config), factor=1.1)
    assert [s.width for s in student.spec.stages] == [2, 11]  # 10 * 1.1 is 11, not ceil(11.000000000000002)


def test_widening_one_stage_with_selected_blocks_leaves_the_other_internal_widths():
    model = teacher(BASIC)
    student = widen(model, stages=1, widths=[7], blocks=[1])
    assert student.spec.stages[1].width == 7
    assert [b.widths for b in student.spec.stages[1].blocks] == [(4,), (7,)]
    assert student.spec.stages[0] == model.spec.stages[0]
    assert logit_gap(model, student, training=False) <= TOLERANCE


def test_random_init_keeps_old_units_and_initialises_new_ones_without_dividing():
    model = teacher(BASIC)
    student = widen(model, factor=2, init="random", generator=torch.Generator().manual_seed(0))
    replicated = widen(model, factor=2, init="net2net", generator=torch.Generator().manual_seed(0))
    teacher_state, state, replicated_state = model.state_dict(), student.state_dict(), replicated.state_dict()
    for key, old in teacher_state.items():
        assert torch.equal(state[key][tuple(slice(0, n) for n in old.shape)], old), key
    classifier = state["classifier.weight"]
    assert not torch.allclose(classifier[:, 4:], replicated_state["classifier.weight"][:, 4:])
    assert torch.equal(state["stages.1.blocks.1.bn1.running_var"][4:], torch.ones(4))
    assert logit_gap(model, student, training=False) > 1e-3
    again = widen(model, factor=2, init="random", generator=torch.Generator().manual_seed(0))
    assert logit_gap(student, again, training=False) == 0.0  # the fresh init is drawn from the generator


@pytest.mark.parametrize("name", TEACHERS)
def test_inserting_a_zero_gamma_block_at_the_end_or_in_the_middle_preserves_logits(name):
    """deepen at every stage's end and, where a stage has two blocks or more, after its first one: the new
    block's last BN has gamma = beta = 0, so eval and train mode logits stay; a random block (init="random")
    of the same spec changes them."""
    model = TEACHERS[name]()
    for stage in range(len(model.spec.stages)):
        blocks = len(model.spec.stages[stage].blocks)
        for position in [None] + ([1] if blocks >= 2 else []):
            student = deepen(model, stage, position=position, generator=torch.Generator().manual_seed(stage))
            assert len(student.spec.stages[stage].blocks) == blocks + 1
            assert logit_gap(model, student, training=False) <= TOLERANCE, (stage, position)
            assert logit_gap(model, student, training=True) <= TOLERANCE, (stage, position)
    if name == "basic":
        student = deepen(model, stage=1, position=1, generator=torch.Generator().manual_seed(0))
        random_block = deepen(model, stage=1, position=1, init="random", generator=torch.Generator().manual_seed(0))
        assert random_block.spec == student.spec
        assert logit_gap(model, random_block, training=False) > 1e-3


@pytest.mark.parametrize(
    "name, stage, block, after_layer",
    [
        ("basic", 0, 1, 1),
        ("basic", 1, 0, 1),
        ("bottleneck", 1, 1, 1),
        ("bottleneck", 0, 0, 2),
        ("pruned", 1, 0, 1),
        ("irregular", 0, 0, 2),
        ("basic", 0, 1, 0),
        ("bottleneck", 1, 0, 0),
    ],
)
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_identity_layer_preserves_logits_in_eval_mode(name, stage, block, after_layer, kernel_size):
    model = TEACHERS[name]()
    data = images(model, batch=16, seed=7)
    student = deepen(model, stage, after_layer, kind="layer", block=block, data=data, kernel_size=kernel_size)
    old_layers = len(model.spec.stages[stage].blocks[block].kernels)
    assert len(student.spec.stages[stage].blocks[block].kernels) == old_layers + 1
    assert logit_gap(model, student, training=False) <= TOLERANCE


def test_identity_layer_bn_undoes_the_statistics_of_the_layer_it_follows():
    model = teacher(BASIC)
    data = images(model, batch=16, seed=7)
    captured = []
    bn = model.get_submodule("stages.0.blocks.1.bn1")
    handle = bn.register_forward_hook(lambda module, inputs, output: captured.append(torch.relu(output)))
    model.eval()
    with torch.no_grad():
        model(data)
    handle.remove()
    followed = captured[0].double()
    mean = followed.mean(dim=(0, 2, 3))
    var = ((followed - mean[None, :, None, None]) ** 2).mean(dim=(0, 2, 3))

    student = deepen(model, 0, 1, kind="layer", block=1, data=data)
    new_bn = student.get_submodule("stages.0.blocks.1.bn2")
    torch.testing.assert_close(new_bn.running_mean.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(new_bn.running_var.double(), var, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(new_bn.weight.double(), torch.sqrt(var + new_bn.eps), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(new_bn.bias.double(), mean, rtol=1e-5, atol=1e-6)
    weight = student.get_submodule("stages.0.blocks.1.conv2").weight
    assert float(weight.detach().sum()) == weight.shape[0]
    assert torch.equal(weight.detach()[:, :, 1, 1], torch.eye(weight.shape[0]))


@pytest.mark.parametrize("stage, block, after_layer", [(0, 1, 2), (1, 0, 0)])
def test_identity_layer_is_not_exact_where_documented(stage, block, after_layer):
    """After the last layer the old last layer gains a ReLU on the residual branch; before a strided 3x3
    conv the new layer takes the stride and sub-samples first."""
    model = teacher(BASIC)
    data = images(model, batch=16, seed=7)
    student = deepen(model, stage, after_layer, kind="layer", block=block, data=data)
    assert logit_gap(model, student, training=False) > 1e-3


def test_bad_input_is_a_clear_value_error():
    model = teacher(BASIC)
    with pytest.raises(ValueError, match="cannot widen it to 2"):
        widen(model, stages=0, widths=[2])
    with pytest.raises(ValueError, match="unknown stage 2"):
        widen(model, stages=2, factor=2)
    with pytest.raises(ValueError, match="unknown stage 5"):
        deepen(model, 5)
    with pytest.raises(ValueError, match="odd kernel"):
        deepen(model, 0, 1, kind="layer", block=0, data=images(model), kernel_size=2)
    with pytest.raises(ValueError, match="exactly one of factor"):
        widen(model, factor=2, widths=[4, 5])
    with pytest.raises(ValueError, match="exactly one of factor"):
        widen(model)
    with pytest.raises(ValueError, match="factor must be >= 1"):
        widen(model, factor=0.5)
    with pytest.raises(ValueError, match="widths has 1 entries"):
        widen(model, widths=[4])
    with pytest.raises(ValueError, match="unknown channel group"):
        widen_group(model, "stage7.stream", 9)
    with pytest.raises(ValueError, match="cannot widen it to 1"):
        widen_groups(model, {"stage1.stream": 1})
    with pytest.raises(ValueError, match="needs data="):
        deepen(model, 0, 1, kind="layer", block=0)
    with pytest.raises(ValueError, match="needs block="):
        deepen(model, 0, 1, kind="layer", data=images(model))
    with pytest.raises(ValueError, match="unknown init"):
        widen(model, factor=2, init="zeros")
    with pytest.raises(ValueError, match="init='net2net' only"):
        widen(model, factor=2, init="random", noise=0.1)
    with pytest.raises(ValueError, match="stage 2 has no blocks"):
        widen(teacher(irregular_spec()), stages=2, widths=[9])


@pytest.mark.cuda
def test_growing_a_model_on_cuda_preserves_its_logits(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = teacher(BOTTLENECK).cuda()
    data = images(model, batch=16, seed=7).cuda()
    wider = widen(model, factor=1.5, noise=0.0, generator=torch.Generator().manual_seed(0))
    deeper = deepen(wider, 1, generator=torch.Generator().manual_seed(0))
    student = deepen(deeper, 1, 1, kind="layer", block=0, data=data)
    assert next(student.parameters()).is_cuda
    x = images(model).cuda()
    model.eval()
    student.eval()
    with torch.no_grad():
        assert float((model(x) - student(x)).abs().max()) <= TOLERANCE
    noisy = widen(model, factor=1.5, noise=0.01, generator=torch.Generator().manual_seed(0))
    baseline = widen(model, factor=1.5, init="random", generator=torch.Generator().manual_seed(0))
    assert next(noisy.parameters()).is_cuda and next(baseline.parameters()).is_cuda


def test_rebuild_optimizer_starts_from_zero_momentum_and_scales_the_rate():
    model = teacher(BASIC)
    config = TrainConfig(epochs=1, lr=0.1, schedule="constant")
    optimizer = rebuild_optimizer(model, config=config, lr_scale=0.5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05) and not optimizer.state

    toy = ResNetConfig(stages=1, blocks=(1,), widths=(2,), in_channels=1, num_classes=3)
    trainer = Trainer(
        build_resnet(toy),
        toy_data(),
        TrainConfig(epochs=1, batch_size=16, schedule="constant", augment=False),
        progress=False,
    )
    trainer.fit()
    assert trainer.optimizer.state  # momentum buffers exist after training
    grown = widen(trainer.model, factor=2)
    new_optimizer = rebuild_optimizer(trainer, grown, lr_scale=0.1)
    assert trainer.model is grown and trainer.optimizer is new_optimizer and not new_optimizer.state
    assert trainer.lr_scale == pytest.approx(0.1)


def test_net2net_hook_grows_during_training_and_resumes_exactly(tmp_path):
    toy = ResNetConfig(stages=2, blocks=(1, 1), widths=(2, 3), in_channels=1, num_classes=3)
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05, schedule="constant", augment=False)
    schedule = {
        1: [WidenStep(factor=2, noise=0.01)],
        2: [
            WidenStep(stages=1, factor=1.5, noise=0.01),
            DeepenStep(stage=0),
            DeepenStep(stage=1, kind="layer", block=0, position=1),
        ],
    }

    def run(path, stop_after=None):
        torch.manual_seed(0)
        hooks = [KillAfter(stop_after or 99), Net2NetHook(schedule, lr_scale=0.5, seed=1)]
        trainer = Trainer(build_resnet(toy), toy_data(), config, hooks=hooks, checkpoint_path=path, progress=False)
        return trainer, trainer.fit()

    trainer, history = run(tmp_path / "whole.pt")
    assert history["params"].is_monotonic_increasing and history["params"].nunique() == 3
    assert [s.width for s in trainer.model.spec.stages] == [4, 9]
    assert len(trainer.model.spec.stages[0].blocks) == 2
    assert history["lr"].tolist() == pytest.approx([0.05, 0.025, 0.0125])

    with pytest.raises(Killed):  # after epoch 1's checkpoint: the resumed run grows at epoch 2 itself
        run(tmp_path / "resumed.pt", stop_after=1)
    resumed_trainer, resumed = run(tmp_path / "resumed.pt")
    assert resumed_trainer.model.spec == trainer.model.spec
    columns = ["train_loss", "test_loss", "test_acc", "params", "lr"]
    assert resumed[columns].equals(history[columns])


def test_noise_on_a_new_filter_is_the_generators_draw_times_the_population_std_of_the_teachers_weight():
    """The documented rule reproduced draw by draw: after the random map (one randint), the new filters of
    the group's only conv get noise * std(teacher weight, population) * randn. The conv has 3 * 3 * 3 * 3 =
    81 entries, where the sample std is 0.6 % larger: the comparison tells the two apart."""
    model = teacher(BASIC)
    key, noise = "stages.0.blocks.0.conv1.weight", 0.1
    noisy = widen_group(model, "stage0.block0.layer1", 5, noise=noise, generator=torch.Generator().manual_seed(2))
    clean = widen_group(model, "stage0.block0.layer1", 5, generator=torch.Generator().manual_seed(2))
    replay = torch.Generator().manual_seed(2)
    wider_index_map(3, 5, replay)
    weight = model.state_dict()[key]
    draw = torch.randn((2, *weight.shape[1:]), generator=replay)
    population_std = float(((weight - weight.mean()) ** 2).mean().sqrt())
    torch.testing.assert_close(
        noisy.state_dict()[key][3:], clean.state_dict()[key][3:] + noise * population_std * draw, rtol=1e-6, atol=1e-7
    )
    assert torch.equal(noisy.state_dict()[key][:3], weight)


@pytest.mark.parametrize(
    "growth",
    [
        {"factor": 1.5},
        {"stages": [0, 2], "factor": 1.25},
        {"stages": [1], "widths": [40], "blocks": [0]},
    ],
)
def test_widened_spec_is_the_architecture_widen_builds(growth):
    for spec in (ResNetConfig(in_channels=1).to_spec(), irregular_spec()):
        model = build_resnet(spec)
        if "widths" in growth and spec.stages[1].width > 40:
            continue
        assert widened_spec(spec, **growth) == widen(model, **growth).spec


def test_deepened_spec_is_the_architecture_deepen_builds_and_checks_the_same_arguments():
    model = build_resnet(ResNetConfig(stages=3, blocks=(1, 2, 1), widths=(4, 8, 12), in_channels=1))
    data = torch.randn(4, 1, 8, 8)
    for kwargs in ({"stage": 1}, {"stage": 2, "position": 1}, {"stage": 1, "kind": "layer", "block": 1}):
        assert deepened_spec(model.spec, **kwargs) == deepen(model, data=data, **kwargs).spec
    for bad, message in [({"stage": 5}, "unknown stage"), ({"stage": 1, "kind": "layer"}, "needs block")]:
        with pytest.raises(ValueError, match=message):
            deepened_spec(model.spec, **bad)
        with pytest.raises(ValueError, match=message):
            deepen(model, data=data, **bad)
