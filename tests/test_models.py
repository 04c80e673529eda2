"""The thesis ResNet: parameter table (section 6.1), FLOPs, specs and bad configs."""

import math

import pytest
import torch
from torch import nn

from thesis_lib import models
from thesis_lib.models import (
    NARROW_BASELINE,
    WIDE_BASELINE,
    GhostBatchNorm2d,
    ResNetConfig,
    ResNetSpec,
    build_resnet,
    count_flops,
    count_parameters,
    ghost_batch_sizes,
    parameter_table,
)

from helpers import thesis_parameter_count


def test_parameter_table_matches_thesis_for_every_s_and_n():
    rows = parameter_table()
    assert len(rows) == 30
    for row in rows:
        assert row["parameters"] == thesis_parameter_count(row["stages"], row["blocks"]), row
    named = {(r["stages"], r["blocks"]): r["parameters"] for r in rows}
    assert named[(3, 4)] == 390_170 and named[(3, 10)] == 973_466


def test_baselines_of_table_3_1():
    wide, narrow = build_resnet(WIDE_BASELINE), build_resnet(NARROW_BASELINE)
    assert count_parameters(wide) == thesis_parameter_count(3, 5)  # 98,522 + 4 x 97,216 = 487,386
    assert [s.width for s in wide.spec.stages] == [16, 32, 64]
    assert [s.width for s in narrow.spec.stages] == [8, 16, 32]
    assert [len(s.blocks) for s in wide.spec.stages] == [5, 5, 5]


# Table 3.1 of the thesis ("Struktur des Netzes"), transcribed: (phase, layer, in, out) of the wide net and
# (in, out) of the narrow one; phase "" for the stem conv and the linear layer.
TABLE_3_1 = (
    [("", "Conv 3x3 + BN", 3, 16, 3, 8)]
    + [(1, "basic block", 16, 16, 8, 8)] * 5
    + [(2, "transition block", 16, 32, 8, 16)]
    + [(2, "basic block", 32, 32, 16, 16)] * 4
    + [(3, "transition block", 32, 64, 16, 32)]
    + [(3, "basic block", 64, 64, 32, 32)] * 4
    + [("", "Linear", 64, 10, 32, 10)]
)


def test_structure_table_is_table_3_1_of_the_thesis():
    wide, narrow = (models.structure_table(build_resnet(config)) for config in (WIDE_BASELINE, NARROW_BASELINE))
    assert [(r["phase"], r["layer"], r["in"], r["out"]) for r in wide] == [row[:4] for row in TABLE_3_1]
    assert [(r["phase"], r["layer"], r["in"], r["out"]) for r in narrow] == [row[:2] + row[4:] for row in TABLE_3_1]
    # another spec: a 2-stage net with one block per stage and 4 classes has 1 + 2 + 1 rows
    small = models.structure_table(
        build_resnet(ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=4))
    )
    assert [(r["in"], r["out"]) for r in small] == [(1, 4), (4, 4), (4, 8), (8, 4)]
    assert [r["layer"] for r in small] == ["Conv 3x3 + BN", "basic block", "transition block", "Linear"]


def test_flops_of_resnet32_equal_hand_count():
    # 2 FLOPs per multiply-accumulate; 3x3 convs at 32x32, 16x16, 8x8 and a 3x3 shortcut per transition.
    macs = 32 * 32 * 9 * 3 * 16  # stem
    macs += 10 * 32 * 32 * 9 * 16 * 16  # stage 0: 5 blocks x 2 convs
    macs += 16 * 16 * 9 * (16 * 32 + 32 * 32 + 16 * 32) + 8 * 16 * 16 * 9 * 32 * 32  # stage 1
    macs += 8 * 8 * 9 * (32 * 64 + 64 * 64 + 32 * 64) + 8 * 8 * 8 * 9 * 64 * 64  # stage 2
    macs += 64 * 10  # classifier
    assert count_flops(build_resnet(WIDE_BASELINE), (3, 32, 32)) == 2 * macs


def test_spec_round_trip_rebuilds_same_architecture():
    model = build_resnet(ResNetConfig(stages=2, blocks=(2, 3), widths=(4, 8), layers_per_block=3))
    spec = ResNetSpec.from_json(model.spec.to_json())
    assert spec == model.spec
    rebuilt = build_resnet(spec)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 16, 16)
    model.eval(), rebuilt.eval()
    torch.testing.assert_close(rebuilt(x), model(x))


def test_member_names_follow_design():
    keys = build_resnet(WIDE_BASELINE).state_dict().keys()
    assert "stages.1.blocks.0.conv1.weight" in keys
    assert "stages.1.blocks.0.shortcut_conv.weight" in keys
    assert "stages.0.blocks.0.shortcut_conv.weight" not in keys
    assert "classifier.weight" in keys


def test_bottleneck_and_deeper_blocks():
    model = build_resnet(ResNetConfig(blocks=(1, 1, 1), widths=(4, 8, 16), bottleneck=True, layers_per_block=4))
    block = model.spec.stages[0].blocks[0]
    assert block.kernels == (1, 3, 3, 1) and block.widths == (4, 4, 4)
    assert model.spec.stages[2].width == 64 and block.shortcut_kernel == 1
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(widths=(16, -32, 64)), "positive"),
        (dict(stages=2), "stages"),
        (dict(blocks=(5, 5)), "one N per stage"),
        (dict(layers_per_block=1), "layers_per_block"),
        (dict(bottleneck=True, layers_per_block=2), "bottleneck"),
    ],
)
def test_bad_configs_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNetConfig(**kwargs)


def test_inconsistent_spec_is_refused():
    data = build_resnet(WIDE_BASELINE).spec.to_dict()
    data["stages"][1]["blocks"][0]["shortcut_kernel"] = None
    with pytest.raises(ValueError, match="needs a shortcut conv"):
        ResNetSpec.from_dict(data)


def test_convs_are_he_normal_on_the_fan_out_and_bn_starts_as_identity():
    """He et al. and the original PruneTrain code: std sqrt(2 / (out_channels * kh * kw)), BN gamma 1, beta 0."""
    torch.manual_seed(0)
    model = build_resnet(WIDE_BASELINE)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 15 * 2 + 2
    for conv in convs:
        out_channels, _, kh, kw = conv.weight.shape
        expected = math.sqrt(2.0 / (out_channels * kh * kw))
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.1 if conv.weight.numel() > 2000 else 0.3)
        assert abs(conv.weight.mean().item()) < 0.2 * expected
    stage3 = model.stages[2].blocks[1].conv1.weight  # 64 x 64 x 3 x 3: 36,864 draws
    assert stage3.std().item() == pytest.approx(math.sqrt(2.0 / (64 * 9)), rel=0.02)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def _bn_pair(channels: int = 3, virtual_batch: int = 4) -> tuple[nn.BatchNorm2d, GhostBatchNorm2d]:
    """An ordinary and a ghost BN with the same non-trivial affine parameters and running statistics."""
    plain, ghost = nn.BatchNorm2d(channels), GhostBatchNorm2d(channels, virtual_batch)
    with torch.no_grad():
        for bn in (plain, ghost):
            bn.weight.copy_(torch.linspace(0.5, 1.5, channels))
            bn.bias.copy_(torch.linspace(-0.2, 0.2, channels))
            bn.running_mean.copy_(torch.full((channels,), 0.3))
            bn.running_var.copy_(torch.full((channels,), 2.0))
    return plain, ghost


def test_ghost_bn_with_one_virtual_batch_is_ordinary_bn_exactly():
    plain, ghost = _bn_pair(virtual_batch=8)
    x = torch.randn(8, 3, 5, 5, generator=torch.Generator().manual_seed(1)) * 3 + 1
    assert torch.equal(ghost(x), plain(x))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(getattr(ghost, name), getattr(plain, name)), name
    ghost.eval(), plain.eval()
    assert torch.equal(ghost(x[:3]), plain(x[:3]))


def test_ghost_bn_normalises_each_virtual_batch_on_its_own_and_averages_the_running_statistics():
    """10 images, virtual batch 4: the batches [0:4], [4:8] and the rest [8:10] are normalised as if each
    went through its own ordinary BN; the running statistics move once, by the momentum, towards the mean
    of the three batches' means and unbiased variances."""
    _, ghost = _bn_pair(virtual_batch=4)
    x = torch.randn(10, 3, 5, 5, generator=torch.Generator().manual_seed(2)) * 2 + 0.5
    x.requires_grad_(True)
    out = ghost(x)
    chunks = (x[0:4], x[4:8], x[8:10])
    expected, means, variances = [], [], []
    for chunk in chunks:
        plain, _ = _bn_pair()
        expected.append(plain(chunk))
        means.append(chunk.detach().mean((0, 2, 3)))
        variances.append(chunk.detach().var((0, 2, 3), unbiased=True))
    torch.testing.assert_close(out, torch.cat(expected), rtol=1e-5, atol=1e-5)
    momentum = 0.1
    torch.testing.assert_close(ghost.running_mean, (1 - momentum) * 0.3 + momentum * torch.stack(means).mean(0))
    torch.testing.assert_close(ghost.running_var, (1 - momentum) * 2.0 + momentum * torch.stack(variances).mean(0))
    assert int(ghost.num_batches_tracked) == 1
    # ghost BN is not ordinary BN over the whole batch, and gradients reach the input and the affine params
    plain, _ = _bn_pair()
    assert (out - plain(x)).abs().max() > 1e-2
    out.square().sum().backward()
    assert x.grad is not None and ghost.weight.grad is not None and ghost.weight.grad.abs().sum() > 0


def test_ghost_bn_is_a_model_option_that_rebuilds_counts_and_loads_like_ordinary_bn():
    config = ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=10)
    ghost_net, plain_net = build_resnet(config.with_(ghost_batch=16)), build_resnet(config)
    bns = [m for m in ghost_net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 6 and all(isinstance(m, GhostBatchNorm2d) and m.virtual_batch == 16 for m in bns)
    assert ghost_batch_sizes(ghost_net) == {16} and ghost_batch_sizes(plain_net) == set()
    assert count_parameters(ghost_net) == count_parameters(plain_net)
    assert count_flops(ghost_net, (1, 8, 8)) == count_flops(plain_net, (1, 8, 8))
    assert ResNetSpec.from_json(ghost_net.spec.to_json()) == ghost_net.spec
    assert "ghost_batch" not in plain_net.spec.to_dict()  # ordinary nets keep the spec JSON they always had
    plain_net.load_state_dict(ghost_net.state_dict(), strict=True)


@pytest.mark.parametrize("value", [0, -4, 2.5, True])
def test_bad_ghost_batch_is_a_clear_error(value):
    with pytest.raises(ValueError, match="ghost_batch"):
        ResNetConfig(ghost_batch=value)


def test_methods_on_a_torchvision_resnet_fail_at_once_naming_the_class_and_the_equivalent_config():
    from types import SimpleNamespace

    torchvision = pytest.importorskip("torchvision")
    from thesis_lib.methods.morphnet import MorphNetRegularizer
    from thesis_lib.methods.net2net import deepen, widen
    from thesis_lib.methods.prunetrain import PruneTrain
    from thesis_lib.surgery import channel_groups

    foreign = torchvision.models.resnet18()
    attempts = [
        lambda: widen(foreign, factor=2.0),
        lambda: deepen(foreign, stage=0),
        lambda: channel_groups(foreign),
        lambda: MorphNetRegularizer(foreign),
        lambda: PruneTrain().on_train_start(SimpleNamespace(model=foreign, step_count=0)),
    ]
    for attempt in attempts:
        with pytest.raises(
            TypeError,
            match=r"got torchvision\.models\.resnet\.ResNet; build the nearest thesis net "
            r"with build_resnet\(ResNetConfig\(stages=4, blocks=\(2, 2, 2, 2\), "
            r"widths=\(64, 128, 256, 512\), bottleneck=False",
        ):
            attempt()


@pytest.mark.parametrize("mode", [True, False], ids=["train", "eval"])
def test_count_flops_leaves_the_mode_and_the_running_statistics_as_they_were(mode):
    """count_flops runs a forward pass: it must not switch a training model to eval for good, nor let a
    train-mode forward move the BN running statistics."""
    model = build_resnet(ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=3))
    with torch.no_grad():
        model.stem_bn.running_mean.fill_(0.5)
    model.train(mode)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    count_flops(model, (1, 8, 8))
    assert model.training is mode and all(m.training is mode for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
