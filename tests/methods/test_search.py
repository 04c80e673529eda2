"""Chapter 6.3's search: the growth rule on hand-made cases, and a whole PruneTrain + Net2Net run."""

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

from thesis_lib.data import load_dataset
from thesis_lib.methods.prunetrain import PruneTrain
from thesis_lib.methods.search import (
    GrowthPlan,
    GrowthRule,
    PruneGrow,
    grow,
    plan_growth,
    stage_channels,
    stage_layers,
    stage_saturation,
)
from thesis_lib.models import ResNetConfig, build_resnet, count_flops
from thesis_lib.surgery import channel_groups, select_channels
from thesis_lib.training import TrainConfig, Trainer, seeded_model

from helpers import KillAfter, Killed

INPUT = (1, 8, 8)
NET = ResNetConfig(stages=3, blocks=(1, 2, 1), widths=(4, 8, 12), in_channels=1, num_classes=10)
TIMING_COLUMNS = ["epoch_time", "hook_time", "prune_time", "grow_time"]


def stage_groups(model, stage: int) -> list:
    return [g for g in channel_groups(model) if g.stage == stage and g.kind in ("stream", "internal")]


def keep_fraction(model, stage: int, fraction: float):
    """The model with the first `fraction` of every channel group of `stage` kept (a hand-made pruning)."""
    keep = {g.name: list(range(max(1, int(g.size * fraction)))) for g in stage_groups(model, stage)}
    return select_channels(model, keep)


def test_stage_channels_and_saturation_count_stream_and_internal_widths():
    spec = NET.to_spec()
    assert [stage_channels(s) for s in spec.stages] == [4 + 4, 8 + 8 + 8, 12 + 12]
    pruned = keep_fraction(build_resnet(NET), 1, 0.5).spec
    assert stage_saturation(spec, pruned) == (1.0, 0.5, 1.0)


def test_unpruned_stages_grow_by_the_factor_rounded_up():
    model = build_resnet(NET)
    plan = plan_growth(
        model.spec, model.spec, budget=1e12, input_size=INPUT, rule=GrowthRule(widen_factor=1.3, deepen_saturation=2.0)
    )
    assert plan.widths == {0: math.ceil(4 * 1.3), 1: math.ceil(8 * 1.3), 2: math.ceil(12 * 1.3)} == {0: 6, 1: 11, 2: 16}
    assert plan.deepen == () and plan.saturation == (1.0, 1.0, 1.0) and plan.factor == pytest.approx(1.3)


def test_a_stage_pruned_to_half_does_not_grow_and_the_least_deep_saturated_stage_deepens():
    model = build_resnet(NET)
    pruned = keep_fraction(model, 1, 0.5)
    plan = plan_growth(pruned.spec, model.spec, budget=1e12, input_size=INPUT, rule=GrowthRule())
    assert sorted(plan.widths) == [0, 2] and plan.widths == {0: 6, 2: 18}
    # Stages 0 and 2 lost nothing and have one block each: the later one gets the new block.
    assert plan.deepen == (2,)


@pytest.mark.parametrize("kind", ["layer", "block"])
def test_the_budget_is_never_exceeded_width_goes_before_depth_and_the_spec_costs_equal_the_grown_nets(kind):
    model = build_resnet(NET)
    rule = GrowthRule(deepen_kind=kind)
    images = torch.randn(16, *INPUT, generator=torch.Generator().manual_seed(0))
    current = count_flops(model, INPUT)
    full = plan_growth(model.spec, model.spec, budget=1e12, input_size=INPUT, rule=rule)
    assert full.widths and full.deepen and full.deepen_kind == kind
    for budget in (current, current * 1.05, current * 1.3, (current + full.flops) / 2, full.flops - 1, full.flops):
        plan = plan_growth(model.spec, model.spec, budget=budget, input_size=INPUT, rule=rule)
        assert plan.flops <= budget
        if plan.grows:  # the plan costed specs only; the net really grown has exactly those FLOPs
            grown, _ = grow(model, plan, torch.Generator().manual_seed(3), images)
            assert count_flops(grown, INPUT) == plan.flops
    assert not plan_growth(model.spec, model.spec, budget=current, input_size=INPUT, rule=rule).grows
    just_below = plan_growth(model.spec, model.spec, budget=full.flops - 1, input_size=INPUT, rule=rule)
    assert just_below.widths == full.widths and just_below.deepen == ()  # the deepening is dropped first
    with pytest.raises(ValueError, match="above the budget"):
        plan_growth(model.spec, model.spec, budget=current - 1, input_size=INPUT, rule=rule)


def test_an_identity_layer_growth_keeps_the_function_and_names_its_new_group():
    """Deepening by eq. 2.5: stage 2 (one block of two 3x3 convs) gets an identity layer before its last
    conv; in eval mode the grown net computes the same logits, and the new group is that layer's output."""
    model = seeded_model(NET, 0).eval()
    images = torch.randn(32, *INPUT, generator=torch.Generator().manual_seed(1))
    plan = GrowthPlan(widths={}, deepen=(2,), saturation=(1.0, 1.0, 1.0), flops=0, deepen_kind="layer")
    grown, new_groups = grow(model, plan, torch.Generator().manual_seed(0), images)
    assert [len(b.kernels) for b in grown.spec.stages[2].blocks] == [3]
    assert [stage_layers(s) for s in grown.spec.stages] == [2, 4, 3]
    assert new_groups == ["stage2.block0.layer2"]
    group = {g.name: g for g in channel_groups(grown)}["stage2.block0.layer2"]
    assert group.producers == ("stages.2.blocks.0.conv2",) and group.size == 12
    torch.testing.assert_close(grown.eval()(images), model(images), rtol=1e-4, atol=1e-4)
    block_plan = dataclasses.replace(plan, deepen_kind="block")
    deeper, block_groups = grow(model, block_plan, torch.Generator().manual_seed(0), images)
    assert block_groups == ["stage2.block1.layer1"] and len(deeper.spec.stages[2].blocks) == 2
    torch.testing.assert_close(deeper.eval()(images), model(images), rtol=0, atol=0)


def test_the_rule_checks_its_knobs():
    for bad, message in [
        ({"saturation": 0}, "saturation"),
        ({"widen_factor": 1.0}, "widen_factor"),
        ({"deepen_saturation": 0}, "deepen_saturation"),
        ({"factor_steps": 0}, "factor_steps"),
        ({"window_rounds": 0}, "window_rounds"),
        ({"window_rounds": 1.5}, "window_rounds"),
        ({"deepen_kind": "stack"}, "deepen_kind"),
    ]:
        with pytest.raises(ValueError, match=message):
            GrowthRule(**bad)


def small_digits():
    data = load_dataset("digits")
    return dataclasses.replace(data, train_x=data.train_x[:384], train_y=data.train_y[:384])


NARROW = ResNetConfig(stages=3, blocks=(1, 1, 1), widths=(8, 16, 32), in_channels=1, num_classes=10)
WIDE = NARROW.with_(widths=(16, 32, 64))


def search_hook(seed: int = 0) -> PruneGrow:
    budget = count_flops(build_resnet(WIDE), INPUT)
    return PruneGrow(
        PruneTrain(lasso_ratio=0.9, threshold=0.1, interval=2), budget=budget, last_growth_epoch=4, seed=seed
    )


CONFIG = TrainConfig(epochs=6, batch_size=64, lr=0.05, schedule="step", milestones=(4,), augment=False)


def test_a_search_shrinks_grows_stays_within_budget_and_resumes_exactly(tmp_path):
    data = small_digits()
    whole = Trainer(seeded_model(NARROW, 0), data, CONFIG, hooks=[search_hook()], progress=False)
    history = whole.fit()
    budget = whole.hooks[0].budget
    assert history["removed_channels"].sum() > 0 and history["grown"].sum() >= 1
    assert (history["flops"] <= budget).all() and (history["flops_after"] <= budget).all()
    assert history["reconfigured"].iloc[-1] == False  # noqa: E712  (no change after the last evaluation)
    assert count_flops(whole.model, INPUT) == history["flops_after"].iloc[-1] == history["flops"].iloc[-1]
    grown_at = history.index[history["grown"]].tolist()
    # rounds end every 2 epochs; growth needs a window of 2 rounds and ends at epoch 4: only epoch 4 grows
    assert [history["epoch"][i] for i in grown_at] == [4] and history["growth_considered"].sum() == 1
    assert history["removed_channels"].iloc[: grown_at[0] + 1].sum() > 0  # pruning had spoken
    assert json.loads(history["growth"].iloc[grown_at[0]])["widths"]

    path = tmp_path / "search.pt"
    with pytest.raises(Killed):
        Trainer(
            seeded_model(NARROW, 0),
            data,
            CONFIG,
            hooks=[search_hook(), KillAfter(2)],
            checkpoint_path=path,
            progress=False,
        ).fit()
    resumed = Trainer(
        seeded_model(NARROW, 0),
        data,
        CONFIG,
        hooks=[search_hook(), KillAfter(99)],
        checkpoint_path=path,
        progress=False,
    )
    assert resumed.epoch == 2
    resumed_history = resumed.fit()
    pd.testing.assert_frame_equal(resumed_history.drop(columns=TIMING_COLUMNS), history.drop(columns=TIMING_COLUMNS))
    assert resumed.model.spec == whole.model.spec
    for a, b in zip(resumed.model.state_dict().values(), whole.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_no_growth_before_pruning_has_removed_a_channel():
    """A lasso that never removes a channel (threshold 0) leaves every stage saturated (s = 1): the former
    rule widened everything at the first round; now growth is never considered."""
    budget = count_flops(build_resnet(WIDE), INPUT)
    silent = PruneGrow(PruneTrain(lasso_ratio=0.9, threshold=0.0, interval=2), budget=budget, last_growth_epoch=4)
    history = Trainer(seeded_model(NARROW, 0), small_digits(), CONFIG, hooks=[silent], progress=False).fit()
    assert history["removed_channels"].sum() == 0
    assert not history["growth_considered"].any() and not history["grown"].any()
    assert (history["params_after"] == history["params"].iloc[0]).all()


def test_the_window_counts_the_rounds_since_the_start_or_the_last_growth():
    """Rounds end at epochs 2 and 4 (growth until 4): a one-round window asks the rule from the first round
    that removed a channel on, a three-round window never fills before epoch 4."""
    budget = count_flops(build_resnet(WIDE), INPUT)

    def considered(window_rounds: int) -> tuple[list[int], int]:
        hook = PruneGrow(
            PruneTrain(lasso_ratio=0.9, threshold=0.1, interval=2),
            budget=budget,
            rule=GrowthRule(window_rounds=window_rounds),
            last_growth_epoch=4,
        )
        history = Trainer(seeded_model(NARROW, 0), small_digits(), CONFIG, hooks=[hook], progress=False).fit()
        first_removal = int(history.loc[history["removed_channels"] > 0, "epoch"].iloc[0])
        return history.loc[history["growth_considered"].astype(bool), "epoch"].tolist(), first_removal

    asked, first_removal = considered(1)
    assert asked and asked[0] == first_removal <= 4
    assert considered(3)[0] == []


def test_a_start_above_the_budget_is_refused():
    hook = PruneGrow(PruneTrain(), budget=10)
    with pytest.raises(ValueError, match="above the budget"):
        Trainer(seeded_model(NARROW, 0), small_digits(), CONFIG, hooks=[hook], progress=False).fit()
    with pytest.raises(ValueError, match="budget"):
        PruneGrow(PruneTrain(), budget=0)
    with pytest.raises(ValueError, match="last_growth_epoch"):
        PruneGrow(PruneTrain(), budget=1e6, last_growth_epoch=0)


def test_a_search_is_deterministic_under_its_seed_and_a_reused_hook_starts_afresh():
    data = small_digits()

    def weights(hook):
        trainer = Trainer(seeded_model(NARROW, 0), data, CONFIG, hooks=[hook], progress=False)
        history = trainer.fit()
        return history, torch.cat([p.detach().flatten() for p in trainer.model.parameters()])

    hook = search_hook(seed=0)
    first_history, first = weights(hook)
    again_history, again = weights(hook)  # the same hook object for a second, fresh run
    other_history, other = weights(search_hook(seed=1))
    assert first_history["grown"].any()
    pd.testing.assert_frame_equal(
        first_history.drop(columns=TIMING_COLUMNS), again_history.drop(columns=TIMING_COLUMNS)
    )
    assert torch.equal(first, again)
    assert first.shape != other.shape or not torch.equal(first, other)  # another seed, other Net2Net maps


def test_a_stage_whose_saturation_equals_the_threshold_counts_as_saturated():
    """Stage 1 pruned to half has saturation exactly 0.5: with saturation=0.5 it is widened, with a
    threshold just above it is not (the rule is s >= saturation)."""
    model = build_resnet(NET)
    pruned = keep_fraction(model, 1, 0.5)
    at = plan_growth(
        pruned.spec, model.spec, budget=1e12, input_size=INPUT, rule=GrowthRule(saturation=0.5, deepen_saturation=2.0)
    )
    above = plan_growth(
        pruned.spec,
        model.spec,
        budget=1e12,
        input_size=INPUT,
        rule=GrowthRule(saturation=0.5001, deepen_saturation=2.0),
    )
    assert at.saturation[1] == 0.5
    assert sorted(at.widths) == [0, 1, 2] and sorted(above.widths) == [0, 2]


CONFIG_8 = TrainConfig(epochs=8, batch_size=64, lr=0.05, schedule="step", milestones=(6,), augment=False)


@pytest.mark.parametrize("kind", ["layer", "block"])
def test_a_digits_search_grows_after_pruning_acted_and_its_new_layer_survives_its_first_round(kind):
    """Rounds end at epochs 2, 4 and 6; growth needs pruning to have removed a channel (first at 4 here) and
    two rounds, so epoch 4 grows (deeper by `kind`), and the round at epoch 6 keeps every channel of the
    new group while it prunes elsewhere (this strong threshold even removes stage 2's main path)."""
    budget = count_flops(build_resnet(WIDE), INPUT)
    hook = PruneGrow(
        PruneTrain(lasso_ratio=0.9, threshold=0.1, interval=2),
        budget=budget,
        rule=GrowthRule(deepen_kind=kind),
        last_growth_epoch=4,
    )
    trainer = Trainer(seeded_model(NARROW, 0), small_digits(), CONFIG_8, hooks=[hook], progress=False)
    history = trainer.fit().set_index("epoch")
    assert history.loc[4, "removed_channels"] > 0  # pruning spoke (in the round that grows) ...
    assert history["growth_considered"].tolist() == [False, False, False, True, False, False, False, False]
    assert history.loc[2, "removed_channels"] == 0  # ... and not at epoch 2: no growth was asked there
    assert history["grown"].tolist() == history["growth_considered"].tolist()
    growth = json.loads(history.loc[4, "growth"])
    assert growth["deepen"] and growth["deepen_kind"] == kind
    new_groups = json.loads(history.loc[4, "new_groups"])
    sizes_after_growth = json.loads(history.loc[4, "channels"])
    assert json.loads(history.loc[6, "protected_groups"]) == new_groups
    after_round = json.loads(history.loc[6, "channels"])
    assert all(after_round[name] == sizes_after_growth[name] for name in new_groups)
    assert history.loc[6, "removed_channels"] > 0  # the round pruned elsewhere, not in the new group
    assert json.loads(history.loc[8, "protected_groups"]) == []  # the exemption lasted one round
    stage = growth["deepen"][0]
    layers = [json.loads(history.loc[e, "stage_layers"])[stage] for e in (3, 4, 6, 8)]
    assert layers[1] == layers[0] + (1 if kind == "layer" else 2) and layers[1] == layers[2] == layers[3]
