"""Chapter 6.3: the prune_grow experiment and its retraining on smoke, the plan, and the notebook's helpers."""

import json
import math

import pandas as pd
import pytest

from thesis_lib.chapters.ch05_prunetrain import prunetrain_plan
from thesis_lib.chapters.ch06_3_prunetrain_net2net import (
    GROUP_ORDER,
    architecture_rounds,
    deepening_sentence,
    deepening_survival,
    final_accuracy_groups,
    found_architectures,
    lasso_share_sentence,
    phase_times,
    search_plan,
    uniform_growth_factor,
)
from thesis_lib.experiments import get_profile, run
from thesis_lib.methods.morphnet import width_multiplier
from thesis_lib.models import NARROW_BASELINE, ResNetSpec, build_resnet, count_flops, count_parameters
from thesis_lib.stats import adjust_pvalues

from helpers import timed_alone

STRONG = {"lasso_ratio": 0.9, "threshold": 5e-2}


def test_plans_take_chapter_5s_pruning_and_run_prune_until_the_last_decay_and_grow_until_a_round_before():
    for profile in ("smoke", "quick", "full"):
        plan, pruning = search_plan(profile), prunetrain_plan(profile)
        assert (plan.lasso_ratio, plan.threshold, plan.interval) == (
            pruning.lasso_ratio,
            pruning.threshold,
            pruning.interval,
        ), profile
        assert plan.training == pruning.training() and plan.params().items() >= pruning.training().items()
        config = get_profile(profile).train_config(**plan.training)
        assert plan.last_pruning_epoch == config.milestones[-1] < config.epochs, profile
        assert plan.last_growth_epoch == max(plan.interval, plan.last_pruning_epoch - plan.interval), profile
        assert plan.window_rounds == 2
    full, quick, smoke = search_plan("full"), search_plan("quick"), search_plan("smoke")
    # the thesis's full run: chapter 5's default point (ratio 0.2, threshold 1e-4, every 10 epochs) at batch 256
    assert (full.lasso_ratio, full.threshold, full.interval) == (0.2, 1e-4, 10) and full.training == {"batch_size": 256}
    # pruning until the second decay, growth until a round before it, then the final phase without the lasso
    assert (full.last_growth_epoch, full.last_pruning_epoch) == (140, 150)
    assert quick.training == {"epochs": 20} and (quick.last_growth_epoch, quick.last_pruning_epoch) == (14, 16)
    assert (smoke.last_growth_epoch, smoke.last_pruning_epoch) == (1, 1)
    assert len(quick.seeds) == len(full.seeds) == 5
    assert quick.grid()[3] == {**quick.params(), "seed": 3}


def test_prune_grow_on_smoke_reports_the_net_it_ends_with_and_retrains_it(isolated_results):
    # smoke's 8 steps remove no channel, so the search does not grow here (tests/methods/test_search.py
    # covers growth); this checks what the experiment reports and retrains
    params = {**search_plan("smoke").params(), **STRONG, "seed": 0}
    search = run("prune_grow", params, profile="smoke", progress=False)
    history, summary = search.history, search.summary
    smoke = get_profile("smoke")
    wide = build_resnet(smoke.resnet("wide", 1, 10))
    assert summary["budget"] == count_flops(wide, (1, 8, 8))
    assert not history["growth_considered"].any() and not history["reconfigured"].iloc[-1]
    assert history["lasso_active"].tolist() == [True, False]  # smoke's epoch 2 is the final phase
    assert history["train_objective"].iloc[1] == history["train_loss"].iloc[1]
    model = search.model()
    assert model.spec == ResNetSpec.from_json(summary["found_spec"])
    assert summary["found_params"] == count_parameters(model) == summary["final_params"]
    assert summary["found_flops"] == count_flops(model, (1, 8, 8)) <= summary["budget"]
    assert json.loads(summary["found_stage_widths"]) == [s.width for s in model.spec.stages]
    assert summary["search_time"] == pytest.approx(summary["train_time"] + history["hook_time"].sum())

    retrained = run("prune_grow_retrain", params, profile="smoke", progress=False)
    assert retrained.model().spec == model.spec
    assert retrained.summary["search_time"] == summary["search_time"]
    # what a user pays: every epoch and hook second of both runs, summed from their stored histories
    both = pd.concat([history, retrained.history])
    assert retrained.summary["total_time"] == pytest.approx((both["epoch_time"] + both["hook_time"]).sum())
    assert retrained.summary["retrain_time"] == pytest.approx(
        (retrained.history["epoch_time"] + retrained.history["hook_time"]).sum()
    )
    assert retrained.summary["search_acc"] == summary["final_acc"]
    assert retrained.summary["training_flops"] == (both["train_flops"] + both["hook_flops"]).sum()
    assert retrained.summary["epochs"] == len(both) and retrained.summary["search_training_flops"] > 0


def test_architecture_rounds_start_from_the_narrow_net_and_follow_the_history():
    history = pd.DataFrame(
        {
            "seed": [0, 0, 1, 1],
            "epoch": [1, 2, 1, 2],
            "stage_widths": ["[8, 16, 32]", "[12, 16, 30]", "[8, 16, 32]", "[8, 24, 32]"],
            "stage_blocks": ["[1, 1, 1]", "[2, 1, 1]", "[1, 1, 1]", "[1, 1, 0]"],
            "stage_layers": ["[2, 2, 2]", "[4, 2, 2]", "[2, 3, 2]", "[2, 2, 0]"],
        }
    )
    rounds = architecture_rounds(history, NARROW_BASELINE.with_(blocks=(1, 1, 1), in_channels=1))
    assert len(rounds) == 2 * 3 * 3
    start = rounds[rounds.epoch == 0]
    assert start["width"].tolist() == [8, 16, 32] * 2 and start["blocks"].tolist() == [1] * 6
    seed0 = rounds[(rounds.seed == 0) & (rounds.epoch == 2)]
    assert seed0["phase"].tolist() == [1, 2, 3] and seed0["width"].tolist() == [12, 16, 30]
    assert seed0["blocks"].tolist() == [2, 1, 1] and seed0["layers"].tolist() == [4, 2, 2]
    assert start["layers"].tolist() == [2] * 6
    seed1 = rounds[(rounds.seed == 1) & (rounds.epoch == 1)]
    assert seed1["layers"].tolist() == [2, 3, 2] and seed1["blocks"].tolist() == [1, 1, 1]  # an identity layer
    with pytest.raises(ValueError, match="stage_blocks"):
        architecture_rounds(history.drop(columns="stage_blocks"), NARROW_BASELINE)


def summary_frame(**extra):
    base = {
        "seed": [0, 1],
        "final_acc": [0.9, 0.8],
        "total_time": [10.0, 12.0],
        "final_params": [100, 120],
        "final_flops": [1000, 1100],
        "training_flops": [5e6, 6e6],
    }
    return timed_alone(pd.DataFrame({**base, **extra}))


def every_group(frames=None) -> dict:
    frames = frames or [summary_frame() for _ in GROUP_ORDER]
    return dict(zip(GROUP_ORDER, frames))


def test_final_accuracy_groups_and_tables_from_summaries():
    groups = final_accuracy_groups(every_group())
    assert groups["group"].tolist() == [g for g in GROUP_ORDER for _ in range(2)]
    some = final_accuracy_groups({"wide baseline": summary_frame(), "narrow baseline": summary_frame()})
    assert some["group"].drop_duplicates().tolist() == ["narrow baseline", "wide baseline"]  # GROUP_ORDER's order
    with pytest.raises(ValueError, match="unknown groups"):
        final_accuracy_groups({"MorphNet": summary_frame()})
    search = summary_frame(
        found_stage_widths=["[8]", "[9]"],
        found_stage_blocks=["[1]", "[2]"],
        found_stage_layers=["[2]", "[5]"],
        found_flops=[500, 750],
        found_params=[1, 2],
        budget=[1000, 1000],
        growths=[1, 2],
        reconfigurations=[2, 2],
        train_time=[8.0, 9.0],
        prune_time=[1.0, 0.5],
        grow_time=[1.0, 2.5],
        search_time=[10.0, 12.0],
    )
    assert found_architectures(search)["flops / budget"].tolist() == [0.5, 0.75]
    phases = phase_times(search)
    assert phases["train_share"].tolist() == [0.8, 0.75] and phases["grow_share"].tolist() == [0.1, 2.5 / 12]


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_sweeps_list_the_runs_of_the_former_planned_runs(profile):
    from thesis_lib.chapters import chapter
    from thesis_lib.chapters.ch03_baseline import baseline_grid
    from thesis_lib.chapters.ch06_3_prunetrain_net2net import sweeps

    seeds = (0, 1) if profile == "smoke" else (0, 1, 2, 3, 4)  # the former SEEDS: the run folders stay
    assert search_plan(profile).seeds == seeds
    grid = search_plan(profile).grid()
    former = [
        *(
            ("baseline", params)
            for model in ("narrow", "wide")
            for params in baseline_grid(profile, models=(model,), schedules=("step",), seeds=seeds)
        ),
        *(("prune_grow", params) for params in grid),
        *(("prune_grow_retrain", params) for params in grid),
        *(("prune_grow_scaled", params) for params in grid),
        *(("prune_grow", {**params, "deepen_kind": "block"}) for params in grid),
        *(("uniform_grow_prune", params) for params in search_plan(profile).uniform_grid()),
    ]
    assert {params["deepen_kind"] for params in grid} == {"layer"}
    known = sweeps(profile)
    assert list(known) == ["narrow", "wide", "search", "retrain", "scaled", "block_arm", "uniform"]
    assert [(experiment, params) for experiment, grid in known.values() for params in grid] == former
    planned = chapter("06_3_prunetrain_net2net").planned_runs(profile)
    assert [(r.experiment, dict(r.params)) for r in planned] == former
    assert {r.profile.name for r in planned} == {profile}
    assert search_plan("full").seeds == (0, 1, 2, 3, 4)


def test_figures_and_sentences_from_summaries_and_histories():
    from matplotlib.figure import Figure

    from thesis_lib.chapters.ch06_3_prunetrain_net2net import (
        accuracy_cost_curves,
        accuracy_cost_figure,
        accuracy_sentence,
        architecture_figure,
        final_accuracy_figure,
        growth_sentence,
    )

    history = pd.DataFrame(
        {
            "seed": [0, 0, 1, 1],
            "epoch": [1, 2, 1, 2],
            "test_acc": [0.5, 0.6, 0.4, 0.7],
            "train_acc": [0.5] * 4,
            "flops": [10, 12, 10, 11],
            "params": [5] * 4,
            "epoch_time": [1.0] * 4,
            "hook_time": [0.5, 0.0, 0.5, 0.0],
            "grown": [True, False, False, False],
            "stage_widths": ["[8, 16, 32]", "[12, 16, 32]", "[8, 16, 32]", "[8, 16, 32]"],
            "stage_blocks": ["[1, 1, 1]", "[1, 1, 2]", "[1, 1, 1]", "[1, 1, 1]"],
            "stage_layers": ["[2, 2, 2]", "[2, 2, 4]", "[2, 2, 2]", "[2, 2, 2]"],
        }
    )
    curves = accuracy_cost_curves(history, history, history)
    assert curves["group"].drop_duplicates().tolist() == list(GROUP_ORDER[:3])
    assert curves["mean_time"].tolist()[:2] == [1.5, 2.5]
    assert isinstance(accuracy_cost_figure(curves, ("smoke", "digits")), Figure)
    figure = architecture_figure(history, "smoke", ("smoke", "digits"))
    assert figure.legends[0].get_title().get_text() == "Mittel, Band: min-max über 2 Läufe"  # below the axes
    layer_ticks = figure.axes[1].get_yticks()
    assert all(float(tick).is_integer() for tick in layer_ticks)  # layer counts: integer ticks only
    groups = final_accuracy_groups(every_group())
    ticks = [t.get_text() for t in final_accuracy_figure(groups, ("smoke", "digits")).axes[0].get_yticklabels()]
    assert ticks[0] == "schmales\nBaseline-Netz" and len(ticks) == len(GROUP_ORDER)
    found = pd.DataFrame({"flops / budget": [0.5, 0.75]})
    assert growth_sentence(history, found) == "1 growths in 2 runs, at epochs [1]; found FLOPs / budget: 0.50 ... 0.75."
    assert accuracy_sentence(groups).startswith(
        "mean final accuracy: narrow baseline 0.850, wide baseline 0.850, PruneTrain + Net2Net 0.850, "
    )
    assert accuracy_sentence(groups).endswith("uniform growth + PruneTrain 0.850.")


def test_search_tests_weigh_accuracy_time_and_training_flops_each_as_one_family():
    from thesis_lib.chapters.ch06_3_prunetrain_net2net import SEARCH_PAIRS, search_tests

    frames = [
        summary_frame(final_acc=[0.9 - 0.01 * g, 0.8], training_flops=[5e6 + g, 6e6]) for g in range(len(GROUP_ORDER))
    ]
    groups = final_accuracy_groups(every_group(frames))
    tests = search_tests(groups)
    counts = tests.groupby("quantity", sort=False).size().to_dict()
    assert counts == {"final_acc": 7, "total_time": 6, "training_flops": 6}  # no cost test of search vs its retraining
    four = search_tests(groups[groups.group.isin(GROUP_ORDER[:4])])  # pairs of absent groups are left out
    assert four.groupby("quantity", sort=False).size().to_dict() == {
        "final_acc": 4,
        "total_time": 3,
        "training_flops": 3,
    }
    search, retrained = SEARCH_PAIRS[0]
    assert not tests[tests.quantity != "final_acc"].comparison.str.endswith(f"{search} vs {retrained}").any()
    for quantity, family in tests.groupby("quantity"):
        defined = family["p"].notna()
        assert family.loc[defined, "p_holm"].tolist() == pytest.approx(
            adjust_pvalues(family.loc[defined, "p"].to_numpy()).tolist()
        ), quantity


def test_the_lasso_share_sentence_reads_the_share_around_each_growth():
    """Shares 1 - loss / objective: epoch 1 0.5, before the growth (epoch 2) 0.4, after it 0.6, last active
    epoch 0.2; epoch 5 is the final phase (no lasso) and does not count."""
    history = pd.DataFrame(
        {
            "seed": [0] * 5,
            "epoch": [1, 2, 3, 4, 5],
            "train_loss": [1.0, 0.6, 0.4, 0.8, 0.5],
            "train_objective": [2.0, 1.0, 1.0, 1.0, 0.5],
            "lasso_active": [True, True, True, True, False],
            "grown": [False, True, False, False, False],
        }
    )
    text = lasso_share_sentence(history, 0.9)
    assert "(ratio r = 0.9 at the first batch): 0.50 in epoch 1" in text
    assert "0.40 in the epoch before a growth and 0.60 in the epoch after it (1 growths)" in text
    assert "0.20 in the last epoch with the lasso" in text
    with pytest.raises(ValueError, match="not a prune_grow history"):
        lasso_share_sentence(history.drop(columns="lasso_active"), 0.9)


def test_the_scaled_arm_reaches_the_budget_with_the_width_multiplier(isolated_results):
    params = {**search_plan("smoke").params(), **STRONG, "seed": 0}
    search = run("prune_grow", params, profile="smoke", progress=False)
    scaled = run("prune_grow_scaled", params, profile="smoke", progress=False)
    found = ResNetSpec.from_json(search.summary["found_spec"])
    budget = search.summary["budget"]
    omega, expected = width_multiplier(found, budget, "flops", (1, 8, 8))
    model = scaled.model()
    assert model.spec == expected and scaled.summary["omega"] == pytest.approx(float(omega)) and omega > 1
    assert scaled.summary["final_flops"] == count_flops(model, (1, 8, 8)) <= budget
    both = pd.concat([search.history, scaled.history])
    assert scaled.summary["training_flops"] == (both["train_flops"] + both["hook_flops"]).sum()
    assert scaled.summary["epochs"] == len(both) and scaled.summary["search_acc"] == search.summary["final_acc"]


def test_the_uniform_control_widens_everything_by_two_at_the_first_round_then_prunes(isolated_results):
    plan = search_plan("smoke")
    params = {**plan.uniform_grid()[0], "lasso_ratio": 0.5}
    assert uniform_growth_factor(get_profile("smoke")) == 2
    control = run("uniform_grow_prune", params, profile="smoke", progress=False)
    history = control.history
    narrow = get_profile("smoke").resnet("narrow", 1, 10)
    wide = get_profile("smoke").resnet("wide", 1, 10)
    assert history["params"].iloc[0] == count_parameters(build_resnet(narrow))
    assert history["flops"].iloc[1] == count_flops(build_resnet(wide), (1, 8, 8))  # grown at epoch 1 (interval)
    assert history["lasso_active"].tolist() == [True, False]
    assert control.summary["found_flops"] == count_flops(control.model(), (1, 8, 8))


def test_deepening_survival_reads_each_deepening_from_the_layer_counts():
    """Seed 0 deepens phase 2 at epoch 2 by a layer (3 -> 3 -> 2 at the end: kept one round, then pruned);
    seed 1 deepens phase 1 by a block (4 after growth, 2 after the next round: removed)."""
    layer = {"widths": {}, "deepen": [1], "deepen_kind": "layer"}
    block = {"widths": {}, "deepen": [0], "deepen_kind": "block"}
    history = pd.DataFrame(
        {
            "seed": [0] * 6 + [1] * 6,
            "epoch": list(range(1, 7)) * 2,
            "grown": [False, True, False, False, False, False] * 2,
            "growth": ["", json.dumps(layer), "", "", "", ""] + ["", json.dumps(block), "", "", "", ""],
            "stage_layers": ["[2, 2]", "[2, 3]", "[2, 3]", "[2, 3]", "[2, 2]", "[2, 2]"]
            + ["[2, 2]", "[4, 2]", "[4, 2]", "[2, 2]", "[2, 2]", "[2, 2]"],
            "new_groups": ["[]", '["s1.b0.l1"]', "[]", "[]", "[]", "[]"] + ["[]", '["s0.b2"]', "[]", "[]", "[]", "[]"],
            "test_acc_after_zeroing": [math.nan, 0.5, math.nan, 0.5, math.nan, math.nan] * 2,
            # rounds at 2 and 4 (6 is the last epoch), both grow at 2: seed 0's round 4 protects its new group
            # (never judged), seed 1's does not (judged once)
            "protected_groups": ["[]", "[]", "[]", '["s1.b0.l1"]', "[]", "[]"] + ["[]"] * 6,
        }
    )
    survival = deepening_survival([history[history.seed == 0], history[history.seed == 1]], interval=2)
    assert survival[["seed", "epoch", "kind", "phase"]].values.tolist() == [[0, 2, "layer", 2], [1, 2, "block", 1]]
    assert survival["kept_next_round"].tolist() == [True, False]
    assert survival["kept_at_end"].tolist() == [False, False]
    assert survival["judged_rounds"].tolist() == [0, 1]
    assert deepening_sentence(survival) == (
        "identity layer (eq. 2.5): 1 deepenings, kept after the next round in 1, kept to the end in 0, never "
        "judged by an unprotected pruning round in 1; zero-gamma block: 1 deepenings, kept after the next round "
        "in 0, kept to the end in 0, never judged by an unprotected pruning round in 0."
    )
    never_judged = survival.iloc[:1]
    assert deepening_sentence(never_judged).endswith(
        "No deepening met a pruning round after its protected one, so 'kept' says nothing about whether"
        " PruneTrain would keep the added layers."
    )
    assert deepening_sentence(survival.iloc[:0]) == "No growth deepened the net."
