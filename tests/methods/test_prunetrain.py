"""PruneTrain: group lasso (eq. 2.2), lambda (eq. 2.3), thresholding, channel union (fig. 2.7), training."""

import copy
import dataclasses
import json
import math

import pandas as pd
import pytest
import torch
from torch import nn

from thesis_lib.data import Dataset, load_dataset
from thesis_lib.methods.prunetrain import (
    PruneTrain,
    channel_sizes,
    channel_union,
    dead_channels,
    group_lasso,
    lasso_lambda,
    lasso_penalty_ratio,
    member_alive_channels,
    prune_plan,
    training_flops_summary,
    zero_small_weights_,
)
from thesis_lib.models import BlockSpec, ResNetConfig, ResNetSpec, StageSpec, build_resnet, count_parameters
from thesis_lib.surgery import same_width_segments, select_channels
from thesis_lib.training import TrainConfig, Trainer, TrainingHook, evaluate, seeded_model

from helpers import KillAfter, Killed

TIMING_COLUMNS = ["epoch_time", "hook_time"]


def slice_norm_by_loops(values: list) -> float:
    """L2 norm of a nested list of numbers, by plain Python."""
    flat, stack = [], [values]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            flat.append(item)
    return math.sqrt(sum(v * v for v in flat))


def group_lasso_by_loops(model: nn.Module) -> float:
    """Eq. 2.2 with explicit loops over every conv's filters and input slices (module walk, no surgery)."""
    total = 0.0
    for name, module in model.named_modules():
        weight = module.weight.detach().tolist() if isinstance(module, (nn.Conv2d, nn.Linear)) else None
        if weight is None:
            continue
        out_channels, in_channels = len(weight), len(weight[0])
        if isinstance(module, nn.Conv2d):
            total += sum(slice_norm_by_loops(weight[c]) for c in range(out_channels))
        if name != "stem_conv":
            total += sum(slice_norm_by_loops([weight[c][k] for c in range(out_channels)]) for k in range(in_channels))
    return total


def stem_shortcut_spec() -> ResNetSpec:
    """Two stages; stage 0's first block has a shortcut conv (a separate "stem" group), 3-layer blocks."""
    return ResNetSpec(
        in_channels=2,
        stem_width=3,
        num_classes=4,
        stages=(
            StageSpec(5, (BlockSpec((4, 2), (3, 1, 3), 1, 1), BlockSpec((3, 3), (3, 3, 3)))),
            StageSpec(6, (BlockSpec((4, 4), (3, 3, 3), 2, 3),)),
        ),
    )


def test_group_lasso_equals_loop_computation():
    for spec in (
        stem_shortcut_spec(),
        ResNetConfig(stages=2, blocks=(2, 1), widths=(4, 6), in_channels=1, num_classes=3).to_spec(),
    ):
        model = seeded_model(spec, seed=3)
        with torch.no_grad():
            model.stages[0].blocks[0].conv1.weight[1] = 0.0  # an all-zero filter contributes 0
        value = group_lasso(model)
        assert value.item() == pytest.approx(group_lasso_by_loops(model), rel=1e-5)
        value.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_fused_group_lasso_gradient_equals_per_slice_norms_and_follows_surgery():
    """The fused GL (one index_add per dimension) against autograd through one vector_norm per slice, on a
    net with an all-zero filter (whose gradient must be exactly 0, not NaN), then on its pruned copy: the
    cached slice layout must not outlive the architecture."""
    model = seeded_model(stem_shortcut_spec(), seed=5)
    with torch.no_grad():
        model.stages[0].blocks[0].conv1.weight[2] = 0.0
    group_lasso(model).backward()
    fused = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    reference = sum(
        torch.linalg.vector_norm(module.weight, dim=tuple(d for d in range(module.weight.ndim) if d != dim)).sum()
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
        for dim in (0, 1)
        if not (dim == 0 and isinstance(module, nn.Linear)) and not (dim == 1 and name == "stem_conv")
    )
    reference.backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(fused[name], p.grad, rtol=1e-5, atol=1e-6, msg=name)
    assert torch.count_nonzero(fused["stages.0.blocks.0.conv1.weight"][2]) == 0
    keep = {name: list(range(size - 1)) if size > 1 else [0] for name, size in channel_sizes(model).items()}
    pruned = select_channels(model, same_width_segments(model.spec, keep))
    assert group_lasso(pruned).item() == pytest.approx(group_lasso_by_loops(pruned), rel=1e-5)
    assert group_lasso(model).item() == pytest.approx(group_lasso_by_loops(model), rel=1e-5)


def test_lasso_lambda_numbers_and_ratio_at_step_zero():
    assert lasso_lambda(2.0, 10.0, 0.2) == pytest.approx(0.2 * 2.0 / (0.8 * 10.0))
    assert lasso_penalty_ratio(2.0, 10.0, 0.05) == pytest.approx(0.5 / 2.5)

    data = load_dataset("digits")
    model = seeded_model(ResNetConfig(stages=1, blocks=(1,), widths=(4,), in_channels=1), seed=0)
    x, y = data.train_x[:64], data.train_y[:64]
    outputs = model(x)
    loss = nn.functional.cross_entropy(outputs, y)
    hook = PruneTrain(lasso_ratio=0.3)
    trainer_view = type("TrainerView", (), {"model": model})()
    term = hook.loss_term(trainer_view, outputs, y, loss)
    assert isinstance(hook.lambda_, float)
    assert term.requires_grad
    ratio = term.item() / (loss.item() + term.item())
    assert ratio == pytest.approx(0.3, abs=1e-6)
    assert lasso_penalty_ratio(loss, group_lasso(model), hook.lambda_) == pytest.approx(0.3, abs=1e-6)
    first_lambda = hook.lambda_
    hook.loss_term(trainer_view, outputs, y, loss * 3)
    assert hook.lambda_ == first_lambda  # fixed after the first mini-batch


THESIS_INPUTS = {
    1: [0, 1, 2],
    2: [0, 1, 3, 5, 6, 7],
    3: [0, 1, 2, 4, 5, 6, 7],
    4: [0, 1, 3, 4, 6, 7],
    "fc": [0, 1, 3, 4, 5, 6],
}


THESIS_OUTPUTS = {
    1: [0, 1, 4, 5, 6, 7],
    2: [0, 1, 2, 4, 5, 6, 7],
    3: [0, 1, 2, 3, 5, 6, 7],
    4: [0, 1, 3, 4, 5, 6, 7],
    "fc": list(range(11)),
}


THESIS_MODULES = {
    1: "stem_conv",
    2: "stages.0.blocks.0.conv1",
    3: "stages.0.blocks.0.conv2",
    4: "stages.0.blocks.0.conv3",
    "fc": "classifier",
}


def test_channel_union_reproduces_thesis_worked_example():
    a, e = THESIS_OUTPUTS, THESIS_INPUTS
    assert channel_union([a[2], e[3]]) == [0, 1, 2, 4, 5, 6, 7]  # H = (2, 3): channel 3 goes
    assert channel_union([a[3], e[4]]) == list(range(8))  # H = (3, 4): input 5 of layer 4 stays
    assert channel_union([a[1], a[4], e[2], e["fc"]]) == [0, 1, 3, 4, 5, 6, 7]  # stream: channel 2 goes


def thesis_example_model() -> nn.Module:
    """The network of the worked example, its weights zeroed so that the alive lists are the thesis's."""
    spec = ResNetSpec(
        in_channels=3, stem_width=8, num_classes=11, stages=(StageSpec(8, (BlockSpec((8, 8), (3, 3, 3)),)),)
    )
    model = seeded_model(spec, seed=1)
    with torch.no_grad():
        for layer, name in THESIS_MODULES.items():
            weight = model.get_submodule(name).weight
            weight[[c for c in range(weight.shape[0]) if c not in THESIS_OUTPUTS[layer]]] = 0.0
            weight[:, [k for k in range(weight.shape[1]) if k not in THESIS_INPUTS[layer]]] = 0.0
        generator = torch.Generator().manual_seed(0)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                for tensor in (module.weight, module.bias, module.running_mean):
                    tensor.copy_(torch.randn(tensor.shape, generator=generator))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return model


def test_prune_plan_of_thesis_example_network_and_exact_removal():
    model = thesis_example_model()
    alive = member_alive_channels(model)
    assert alive["stage0.stream"] == {
        "stem_conv.out": THESIS_OUTPUTS[1],
        "stages.0.blocks.0.conv3.out": THESIS_OUTPUTS[4],
        "stages.0.blocks.0.conv1.in": THESIS_INPUTS[2],
        "classifier.in": THESIS_INPUTS["fc"],
    }
    assert alive["stage0.block0.layer1"] == {
        "stages.0.blocks.0.conv1.out": THESIS_OUTPUTS[2],
        "stages.0.blocks.0.conv2.in": THESIS_INPUTS[3],
    }
    plan = prune_plan(model)
    assert plan == {
        "stage0.stream": [0, 1, 3, 4, 5, 6, 7],
        "stage0.block0.layer1": [0, 1, 2, 4, 5, 6, 7],
        "stage0.block0.layer2": list(range(8)),
    }
    assert dead_channels(model) == {"stage0.stream": [2], "stage0.block0.layer1": [3], "stage0.block0.layer2": []}

    # Removing the dead channels keeps the outputs although the dead producers' BNs emit nonzero constants.
    smaller = select_channels(model, plan)
    x = torch.randn(5, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    model.eval(), smaller.eval()
    with torch.no_grad():
        torch.testing.assert_close(smaller(x), model(x), rtol=0, atol=1e-5)
    assert smaller.stem_conv.weight.shape[0] == 7 and smaller.stages[0].blocks[0].conv1.weight.shape[0] == 7


def test_prune_plan_empties_internal_group_but_keeps_one_stream_channel():
    model = seeded_model(ResNetConfig(stages=1, blocks=(2,), widths=(4,), in_channels=1), seed=0)
    with torch.no_grad():
        model.stages[0].blocks[1].conv1.weight.zero_()
        model.stages[0].blocks[1].conv2.weight.zero_()
        model.stages[0].blocks[0].conv1.weight[:2] = 0.0
        model.stages[0].blocks[0].conv2.weight[:, 1:] = 0.0
    plan = prune_plan(model)
    assert plan["stage0.block1.layer1"] == []
    assert plan["stage0.block0.layer1"] == [0, 2, 3]
    assert plan["stage0.stream"] == [0, 1, 2, 3]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.zero_()
    assert prune_plan(model) == {"stage0.stream": [0], "stage0.block0.layer1": [], "stage0.block1.layer1": []}


def test_thresholding_zeroes_exactly_small_magnitudes_in_place():
    model = seeded_model(ResNetConfig(stages=1, blocks=(1,), widths=(2,), in_channels=1), seed=0)
    conv = model.stages[0].blocks[0].conv1
    values = torch.tensor([-5e-5, 5e-5, -1e-4, 1e-4, -2e-4, 3e-3, 0.0, -0.99e-4, 1.01e-4])
    with torch.no_grad():
        conv.weight.view(-1)[:9] = values
        model.classifier.weight[0, 0] = -3e-5
        model.stages[0].blocks[0].bn1.weight.fill_(1e-6)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    zeroed = zero_small_weights_(model, 1e-4)
    after = dict(model.named_parameters())
    expected_first = torch.tensor([0.0, 0.0, -1e-4, 1e-4, -2e-4, 3e-3, 0.0, 0.0, 1.01e-4])
    assert torch.equal(conv.weight.view(-1)[:9], expected_first)
    assert model.classifier.weight[0, 0].item() == 0.0
    expected_count = 0
    for name, old in before.items():
        is_weight = name.endswith("weight") and old.ndim > 1
        small = (old.abs() < 1e-4) & is_weight
        expected_count += int((small & (old != 0)).sum())
        assert torch.equal(after[name].detach(), torch.where(small, torch.zeros_like(old), old)), name
    assert zeroed == expected_count
    assert torch.all(model.stages[0].blocks[0].bn1.weight == 1e-6)  # BN untouched


def test_an_exempt_group_keeps_its_small_weights_and_a_protected_group_its_channels():
    """The one-round exemption of new units (methods.search): the exempt group's producer filters and
    reader slices are not thresholded, every other small weight is; PruneTrain.protect keeps the group's
    channels at the next reconfiguration only."""
    model = seeded_model(ResNetConfig(stages=1, blocks=(1,), widths=(4,), in_channels=1), seed=0)
    block = model.stages[0].blocks[0]
    with torch.no_grad():
        block.conv1.weight[2:].fill_(1e-5)  # channels 2, 3 of "stage0.block0.layer1": dead filters ...
        block.conv2.weight[:, 2:].fill_(1e-5)  # ... and dead reader slices
    exempt = copy.deepcopy(model)
    zero_small_weights_(model, 1e-4)
    assert (block.conv1.weight[2:] == 0).all() and (block.conv2.weight[:, 2:] == 0).all()
    assert prune_plan(model)["stage0.block0.layer1"] == [0, 1]
    exempt_block = exempt.stages[0].blocks[0]
    with torch.no_grad():
        exempt.stem_conv.weight[0, 0, 0, 0] = 5e-5  # a small weight outside the exempt group
    zeroed = zero_small_weights_(exempt, 1e-4, exempt=["stage0.block0.layer1"])
    assert (exempt_block.conv1.weight[2:] == 1e-5).all() and (exempt_block.conv2.weight[:, 2:] == 1e-5).all()
    assert exempt.stem_conv.weight[0, 0, 0, 0] == 0 and zeroed >= 1
    assert prune_plan(exempt)["stage0.block0.layer1"] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="unknown channel groups"):
        zero_small_weights_(exempt, 1e-4, exempt=["stage9.block0.layer1"])

    pruning = PruneTrain(lasso_ratio=0.5, threshold=1e-4, interval=1)
    pruning.protect(["stage0.block0.layer1"])
    assert pruning.state_dict()["protected"] == ["stage0.block0.layer1"]
    restored = PruneTrain()
    restored.load_state_dict(pruning.state_dict())
    assert restored.protected == ["stage0.block0.layer1"]


def tiny_digits_model() -> nn.Module:
    return seeded_model(ResNetConfig(stages=2, blocks=(2, 1), widths=(8, 12), in_channels=1), seed=0)


def small_digits() -> Dataset:
    """512 training images of digits: 8 steps of 64 per epoch keep the runs below a few seconds."""
    data = load_dataset("digits")
    return dataclasses.replace(data, train_x=data.train_x[:512], train_y=data.train_y[:512])


def digits_config(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=64, lr=0.01, schedule="constant", augment=False)


def strong_prunetrain(**kwargs) -> PruneTrain:
    """A lasso ratio and threshold far above the defaults, so that a tiny net shrinks within 4 epochs."""
    return PruneTrain(lasso_ratio=0.95, threshold=5e-2, interval=2, **kwargs)


def main_paths(spec: ResNetSpec) -> list[list[bool]]:
    return [[block.has_main_path for block in stage.blocks] for stage in spec.stages]


def test_prunetrain_on_digits_shrinks_network_and_reconfiguration_is_exact():
    data = small_digits()
    captured = []

    class CompareOutputs(TrainingHook):
        def on_model_replaced(self, trainer, old_model, new_model):
            old_model.eval(), new_model.eval()
            with torch.no_grad():
                captured.append((old_model(data.test_x), new_model(data.test_x), old_model.spec, new_model.spec))

    trainer = Trainer(
        tiny_digits_model(), data, digits_config(7), hooks=[strong_prunetrain(), CompareOutputs()], progress=False
    )
    history = trainer.fit()

    # Epoch 7 is the run's last: no reconfiguration after its evaluation, so accuracy and size agree.
    assert history["reconfigured"].tolist() == [False, False, False, True, False, True, False]
    assert len(captured) == 2
    old_outputs, new_outputs, old_spec, new_spec = captured[0]
    assert main_paths(new_spec) == main_paths(old_spec)  # channels removed, no block dropped: exact
    assert history["removed_main_paths"].iloc[3] == 0
    torch.testing.assert_close(new_outputs, old_outputs, rtol=0, atol=1e-5)
    assert history["params_after"].iloc[-1] < 0.5 * history["params"].iloc[0]
    assert history["flops_after"].iloc[-1] < 0.5 * history["flops"].iloc[0]
    assert history["params"].iloc[4] == history["params_after"].iloc[3] < history["params"].iloc[3]
    assert json.loads(history["channels"].iloc[-1]) == channel_sizes(trainer.model)
    first, shrunk = json.loads(history["channels"].iloc[0]), json.loads(history["channels"].iloc[3])
    assert sum(first.values()) - sum(shrunk.values()) == history["removed_channels"].iloc[3] > 0
    assert history["lasso_lambda"].nunique() == 1
    unchanged = ~history["reconfigured"]
    assert (history.loc[unchanged, "params_after"] == history.loc[unchanged, "params"]).all()
    assert (history.loc[unchanged, "removed_channels"] == 0).all()


def test_resume_after_kill_reproduces_history(tmp_path):
    data = small_digits()
    config = digits_config(7)

    def hooks(kill_epoch: int) -> list[TrainingHook]:
        return [strong_prunetrain(), KillAfter(kill_epoch)]

    uninterrupted = Trainer(tiny_digits_model(), data, config, hooks=hooks(99), progress=False).fit()
    path = tmp_path / "run.pt"
    with pytest.raises(Killed):
        Trainer(tiny_digits_model(), data, config, hooks=hooks(5), checkpoint_path=path, progress=False).fit()
    resumed_trainer = Trainer(tiny_digits_model(), data, config, hooks=hooks(99), checkpoint_path=path, progress=False)
    assert resumed_trainer.epoch == 5 and resumed_trainer.hooks[0].lambda_ is not None
    assert count_parameters(resumed_trainer.model) < count_parameters(tiny_digits_model())  # pruned spec resumed
    resumed = resumed_trainer.fit()
    assert uninterrupted["reconfigured"].sum() >= 2
    pd.testing.assert_frame_equal(resumed.drop(columns=TIMING_COLUMNS), uninterrupted.drop(columns=TIMING_COLUMNS))


def test_training_flops_summary_against_hand_numbers():
    history = pd.DataFrame(
        {
            "flops": [100, 100, 50, 50],
            "flops_after": [100, 50, 50, 40],
            "train_flops": [3000, 3000, 1500, 1500],
            "hook_flops": [0, 0, 0, 0],
        }
    )
    summary = training_flops_summary(history)
    assert summary["training_flops"] == 9000
    assert summary["dense_training_flops"] == 12000  # the first (dense) epoch, four times
    assert summary["training_flops_removed"] == pytest.approx(0.25)
    assert summary["final_inference_flops"] == 40
    assert summary["inference_flops_removed"] == pytest.approx(0.6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lasso_ratio": 0.0}, "between 0 and 1"),
        ({"lasso_ratio": 1.0}, "between 0 and 1"),
        ({"lasso_ratio": -0.1}, "between 0 and 1"),
        ({"threshold": -1e-4}, ">= 0"),
        ({"interval": 0}, ">= 1"),
        ({"interval": 2.5}, "whole number"),
    ],
)
def test_bad_prunetrain_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PruneTrain(**kwargs)


def test_bad_function_arguments():
    model = seeded_model(ResNetConfig(stages=1, blocks=(1,), widths=(2,), in_channels=1), seed=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        lasso_lambda(1.0, 1.0, 1.5)
    with pytest.raises(ValueError, match="must be > 0"):
        lasso_lambda(1.0, 0.0, 0.2)
    with pytest.raises(ValueError, match=">= 0"):
        zero_small_weights_(model, -1.0)
    with pytest.raises(ValueError, match="empty"):
        training_flops_summary(pd.DataFrame({"flops": [], "train_flops": []}))


def test_prune_plan_gives_the_segments_of_one_stage_one_index_set():
    spec = ResNetSpec(
        in_channels=3,
        stem_width=4,
        num_classes=2,
        stages=(StageSpec(6, (BlockSpec((4,), (3, 3), 1, 1), BlockSpec((4,), (3, 3), 1, 1))),),
    )
    torch.manual_seed(0)
    model = build_resnet(spec)
    with torch.no_grad():  # channels 3..5 of the second segment dead in every member
        model.stages[0].blocks[1].conv2.weight[3:] = 0
        model.stages[0].blocks[1].shortcut_conv.weight[3:] = 0
        model.classifier.weight[:, 3:] = 0
    plan = prune_plan(model)
    assert plan["stage0.block1.stream"] == plan["stage0.stream"] == list(range(6))  # the first keeps all 6
    with torch.no_grad():
        model.stages[0].blocks[0].conv2.weight[4:] = 0
        model.stages[0].blocks[0].shortcut_conv.weight[4:] = 0
        model.stages[0].blocks[1].conv1.weight[:, 4:] = 0
        model.stages[0].blocks[1].shortcut_conv.weight[:, 4:] = 0
    plan = prune_plan(model)
    assert plan["stage0.block1.stream"] == plan["stage0.stream"] == [0, 1, 2, 3]
    assert select_channels(model, plan).spec.stages[0].width == 4


def test_a_weight_exactly_at_the_threshold_survives_thresholding_and_counts_alive():
    """Thresholding zeroes |w| < t only; so a slice whose largest weight is exactly t is alive (`>=`)."""
    torch.manual_seed(0)
    model = build_resnet(ResNetConfig(stages=1, blocks=(1,), widths=(3,), in_channels=1, num_classes=2))
    with torch.no_grad():
        conv = model.stages[0].blocks[0].conv1
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 0.25  # output filter 0 of the block's internal group: exactly at t
        conv.weight[1, 0, 1, 1] = 0.2499  # filter 1 just below
        model.stages[0].blocks[0].conv2.weight[:, :2] = 1.0  # both read by the next conv
    zero_small_weights_(model, 0.25)
    weight = conv.weight.detach()
    assert float(weight[0, 0, 1, 1]) == 0.25 and float(weight[1].abs().sum()) == 0.0
    alive = member_alive_channels(model, 0.25)["stage0.block0.layer1"]
    assert 0 in alive["stages.0.blocks.0.conv1.out"] and 1 not in alive["stages.0.blocks.0.conv1.out"]


def test_a_zero_filter_before_batch_norm_gets_the_gradient_amplified_by_gamma_over_sqrt_eps():
    """Why a conv's largest weight jumps from ~0.3 to ~200 right after a `quick` reconfiguration (issue 25):
    the channel union keeps channels whose producing filter is all zero (alive in a reader's input slice),
    and BN normalises such a channel's zero output by sqrt(0 + eps). Its backward is then gamma / sqrt(eps)
    (316 x gamma at eps 1e-5) times the centred upstream gradient, where a filter of ordinary scale gets
    ~1 / std: BN's scale invariance (the gradient of c * W is that of W divided by c) taken to its limit.
    One SGD step of lr 0.05 on a gradient of ~4,300 (measured at the first step after quick's second
    reconfiguration) gives a filter of norm ~200, and momentum 0.9 carries it about ten times further."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 2, 3, padding=1, bias=False)
    bn = nn.BatchNorm2d(2).train()
    with torch.no_grad():
        conv.weight[0].zero_()  # channel 0: a filter thresholded to zero, kept by the channel union
        bn.weight.fill_(0.7)
    x, upstream = torch.randn(16, 3, 8, 8), torch.randn(16, 2, 8, 8)

    def gradient(weight: torch.Tensor) -> torch.Tensor:
        weight = weight.clone().requires_grad_(True)
        out = bn(nn.functional.conv2d(x, weight, padding=1))
        (grad,) = torch.autograd.grad((out * upstream).sum(), weight)
        return grad

    grad = gradient(conv.weight.detach())
    # channel 0 by hand: BN's derivative at a zero-variance channel is gamma / sqrt(eps) times the centred gradient
    centred = upstream[:, :1] - upstream[:, :1].mean(dim=(0, 2, 3), keepdim=True)
    weight_zero = torch.zeros(1, 3, 3, 3, requires_grad=True)
    pre = nn.functional.conv2d(x, weight_zero, padding=1)
    (by_hand,) = torch.autograd.grad((pre * centred).sum() * 0.7 / math.sqrt(bn.eps), weight_zero)
    assert torch.allclose(grad[:1], by_hand, rtol=1e-4, atol=1e-3)
    # scale invariance on the other channel: c * W gets the gradient of W divided by c
    scaled = conv.weight.detach().clone()
    scaled[1] *= 0.5  # (small enough scales meet eps, where the invariance ends: the zero filter above)
    assert (gradient(scaled)[1] * 0.5 - grad[1]).norm() < 1e-3 * grad[1].norm()  # up to eps / variance
    assert grad[0].norm() > 50 * grad[1].norm()  # the zero filter's gradient dwarfs an ordinary one's


def test_accuracy_after_zeroing_is_that_of_the_thresholded_net_on_the_held_out_split():
    data = small_digits()
    pruning = strong_prunetrain()
    copies = {}

    class CopyBeforeZeroing(TrainingHook):  # runs before PruneTrain's on_epoch_end: the net right before zeroing
        def on_epoch_end(self, trainer, record):
            copies[record["epoch"]] = copy.deepcopy(trainer.model)

    trainer = Trainer(tiny_digits_model(), data, digits_config(5), hooks=[CopyBeforeZeroing(), pruning], progress=False)
    history = trainer.fit()

    zeroing_epochs = history.loc[history["test_acc_after_zeroing"].notna(), "epoch"].tolist()
    assert zeroing_epochs == [2, 4]  # every interval, never after the last epoch
    for epoch in zeroing_epochs:
        net = copies[epoch]
        before = evaluate(net, data.test_x, data.test_y)[1]
        zero_small_weights_(net, pruning.threshold)
        after = evaluate(net, data.test_x, data.test_y)[1]
        row = history.set_index("epoch").loc[epoch]
        assert row["test_acc"] == before and row["test_acc_after_zeroing"] == after
    # The strong threshold of this test changes the function, which the record makes visible.
    assert (history["test_acc_after_zeroing"] - history["test_acc"]).abs().max() > 0.01


def test_the_final_phase_adds_no_lasso_term_and_never_reconfigures():
    data = small_digits()
    pruning = strong_prunetrain(last_pruning_epoch=4)  # reconfigures after epoch 4 (see the test above)
    trainer = Trainer(tiny_digits_model(), data, digits_config(7), hooks=[pruning], progress=False)
    history = trainer.fit()

    assert history["lasso_active"].tolist() == [True] * 4 + [False] * 3
    pruning_epochs, final_phase = history.iloc[:4], history.iloc[4:]
    assert (pruning_epochs["train_objective"] > pruning_epochs["train_loss"]).all()  # the lasso term is in
    assert (final_phase["train_objective"] == final_phase["train_loss"]).all()  # and then it is not
    assert pruning_epochs["reconfigured"].any() and not final_phase["reconfigured"].any()
    assert final_phase["test_acc_after_zeroing"].isna().all() and (final_phase["zeroed_weights"] == 0).all()
    assert final_phase["params"].nunique() == 1 == final_phase["params_after"].nunique()
    assert final_phase["params"].iloc[0] == pruning_epochs["params_after"].iloc[-1]
    with pytest.raises(ValueError, match="last_pruning_epoch"):
        PruneTrain(last_pruning_epoch=0)
