"""Chapter 6.2: the net2net_grow experiment, its plan, growth steps and the analysis of notebook 06_2."""

import math

import pandas as pd
import pytest
import torch

from thesis_lib.chapters.ch06_2_net2net import (
    DEFAULT_NOISE,
    OPERATIONS,
    Net2NetPlan,
    architecture_table,
    cumulative_time,
    default_grow_epoch,
    final_accuracy_comparisons,
    final_accuracy_figure,
    grow_grid,
    growth_steps,
    label_runs,
    net2net_plan,
    panel_frame,
    reach_sentences,
    reach_table,
    reach_targets,
    same_run_groups,
    time_to_accuracy,
)
from thesis_lib.experiments import PROFILES, run
from thesis_lib.models import ResNetConfig, ResNetSpec, build_resnet, count_parameters


def test_net2net_grow_experiment_grows_the_narrow_baseline_into_the_wide_net(isolated_results):
    smoke = PROFILES["smoke"]
    narrow, wide = smoke.resnet("narrow", 1, 10), smoke.resnet("wide", 1, 10)
    grown = run(
        "net2net_grow", {"operation": "widen_all", "init": "net2net", "seed": 0}, profile="smoke", progress=False
    )
    baseline = run("baseline", {"model": "narrow", "schedule": "step", "seed": 0}, profile="smoke", progress=False)
    assert grown.summary["grow_epoch"] == 1 and grown.summary["noise"] == DEFAULT_NOISE
    assert ResNetSpec.from_json(grown.summary["grown_spec"]) == wide.to_spec()
    assert grown.history["params"].tolist() == [
        count_parameters(build_resnet(narrow)),
        count_parameters(build_resnet(wide)),
    ]
    assert grown.summary["params_before"] == count_parameters(build_resnet(narrow))
    assert len(grown.history) == smoke.epochs
    columns = ["train_loss", "test_loss", "test_acc", "lr"]
    assert grown.history.iloc[0][columns].equals(baseline.history.iloc[0][columns])
    assert grown.history["lr"].tolist() == baseline.history["lr"].tolist()
    with pytest.raises(ValueError, match="grow_epoch"):
        run("net2net_grow", {"operation": "deepen", "init": "random", "grow_epoch": 2}, profile="smoke")


def chapter_runs() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Histories of two baselines and one operation's two inits (two seeds each), and their summaries."""
    runs = [  # (params, test accuracies, epoch times, hook times)
        ({"model": "wide", "seed": 0}, [0.5, 0.8, 0.9], [1, 1, 1], [0, 0, 0]),
        ({"model": "wide", "seed": 1}, [0.6, 0.7, 0.9], [1, 1, 1], [0, 0, 0]),
        ({"model": "narrow", "seed": 0}, [0.4, 0.6, 0.7], [1, 1, 1], [0, 0, 0]),
        ({"model": "narrow", "seed": 1}, [0.4, 0.5, 0.7], [1, 1, 1], [0, 0, 0]),
        ({"operation": "widen_all", "init": "net2net", "seed": 0}, [0.4, 0.88, 0.9], [1, 1, 2], [0.5, 0, 0]),
        ({"operation": "widen_all", "init": "net2net", "seed": 1}, [0.4, 0.7, 0.86], [1, 1, 2], [0.5, 0, 0]),
        ({"operation": "widen_all", "init": "random", "seed": 0}, [0.3, 0.5, 0.6], [1, 1, 1], [0.5, 0, 0]),
        ({"operation": "widen_all", "init": "random", "seed": 1}, [0.3, 0.6, 0.66], [1, 1, 1], [0.5, 0, 0]),
        ({"operation": "widen_all", "init": "scratch", "seed": 0}, [0.5, 0.7, 0.8], [2, 2, 2], [0, 0, 0]),
        ({"operation": "widen_all", "init": "scratch", "seed": 1}, [0.5, 0.7, 0.84], [2, 2, 2], [0, 0, 0]),
    ]
    histories = [
        pd.DataFrame({"epoch": [1, 2, 3], "test_acc": acc, "epoch_time": times, "hook_time": hooks, **params})
        for params, acc, times, hooks in runs
    ]
    summaries = [
        {
            **params,
            "final_acc": acc[-1],
            "final_params": 100 * (1 + i // 4),
            "final_flops": 7,
            "params_before": 100,
            "flops_before": 5,
        }
        for i, (params, acc, _, _) in enumerate(runs)
    ]
    history, summary = pd.concat(histories, ignore_index=True), pd.DataFrame(summaries)
    is_baseline = history["model"].notna()
    history = label_runs(
        history[is_baseline].drop(columns=["operation", "init"]), history[~is_baseline].drop(columns=["model"])
    )
    summary = label_runs(summary[summary["model"].notna()], summary[summary["model"].isna()])
    history["cumulative_time"] = cumulative_time(history, by=["group", "seed"])
    return history, summary


def test_labelled_runs_give_panels_with_fixed_arm_order_and_mean_cumulative_time():
    history, summary = chapter_runs()
    assert (
        summary["group"].tolist()
        == ["wide from scratch"] * 2
        + ["narrow from scratch"] * 2
        + ["widen_all, net2net"] * 2
        + ["widen_all, random"] * 2
        + ["widen_all, scratch"] * 2
    )
    assert summary["arm"].iloc[4] == "Net2Net init" and summary["operation"].iloc[0] == "-"
    net2net_seed_0 = history[(history["group"] == "widen_all, net2net") & (history["seed"] == 0)]
    assert net2net_seed_0["cumulative_time"].tolist() == [1.5, 2.5, 4.5]

    deepen = history[history["group"] == "widen_all, net2net"].assign(operation="deepen", group="deepen, net2net")
    panel = panel_frame(pd.concat([deepen, history], ignore_index=True), "widen_all")
    assert panel["arm"].drop_duplicates().tolist() == [
        "wide from scratch",
        "narrow from scratch",
        "Net2Net init",
        "random init",
        "grown net from scratch",
    ]
    assert len(panel) == len(history)
    random_arm = panel[panel["arm"] == "random init"]
    assert random_arm["mean_cumulative_time"].tolist() == [1.5, 2.5, 3.5] * 2

    groups = ["wide from scratch", "narrow from scratch", "widen_all, net2net", "widen_all, random"]
    architectures = architecture_table(summary, groups)
    assert architectures.loc["widen_all, net2net"].tolist() == [100, 200, 5, 7]
    assert architectures.loc["wide from scratch", ["params_before", "flops_before"]].isna().all()
    with pytest.raises(ValueError, match="'init' column"):
        label_runs(pd.DataFrame({"model": ["wide"]}), pd.DataFrame({"operation": ["deepen"]}))


def test_reach_table_and_sentences_count_the_runs_reaching_each_baseline():
    history, summary = chapter_runs()
    targets = reach_targets(summary, tolerance=0.05)
    assert targets == pytest.approx({"wide": 0.85, "narrow": 0.65})
    groups = net2net_plan("smoke").groups()[:2] + ["widen_all, net2net", "widen_all, random"]
    table = reach_table(history, targets, groups)
    assert table.loc["widen_all, net2net", ["epoch to wide", "seconds to wide", "runs reaching wide"]].tolist() == [
        2.5,
        3.5,
        2,
    ]
    assert table.loc[
        "widen_all, random", ["runs reaching wide", "runs reaching narrow", "seconds to narrow"]
    ].tolist() == [0, 1, 3.5]
    assert table["runs"].tolist() == [2, 2, 2, 2]
    assert reach_sentences(table) == [
        "wide from scratch: 2 of 2 runs reached the wide net's accuracy after 3.0 epochs and 3.00 s.",
        "narrow from scratch: 2 of 2 runs reached the narrow net's accuracy after 3.0 epochs and 3.00 s.",
        "widen_all, net2net: 2 of 2 runs reached the wide net's accuracy after 2.5 epochs and 3.50 s (later in "
        "seconds than the wide net from scratch); 2 of 2 runs reached the narrow net's accuracy after 2.0 epochs "
        "and 2.50 s (sooner in seconds than the narrow net from scratch).",
        "widen_all, random: none of 2 runs reached the wide net's accuracy; 1 of 2 runs reached the narrow net's "
        "accuracy after 3.0 epochs and 3.50 s (times not compared with the narrow net from scratch: not every run "
        "reached it).",
    ]


def test_final_accuracy_comparisons_pair_every_grown_group_with_both_baselines_and_the_other_init():
    _, summary = chapter_runs()
    comparisons = final_accuracy_comparisons(summary, ["widen_all"])
    assert [label for label, _, _ in comparisons] == [
        "final accuracy, widen_all, net2net vs wide from scratch",
        "final accuracy, widen_all, net2net vs narrow from scratch",
        "final accuracy, widen_all, random vs wide from scratch",
        "final accuracy, widen_all, random vs narrow from scratch",
        "final accuracy, widen_all, scratch vs wide from scratch",
        "final accuracy, widen_all, scratch vs narrow from scratch",
        "final accuracy, widen_all, net2net vs widen_all, random",
        "final accuracy, widen_all, net2net vs widen_all, scratch",
    ]
    _, a, b = comparisons[-2]
    assert a.tolist() == [0.9, 0.86] and b.tolist() == [0.6, 0.66]
    assert comparisons[-1][2].tolist() == [0.8, 0.84]
    with pytest.raises(ValueError, match="deepen, net2net"):
        final_accuracy_comparisons(summary, ["deepen"])


def test_net2net_plan_per_profile():
    smoke = net2net_plan("smoke")
    assert smoke.operations == ("widen_all", "deepen_layer") and net2net_plan("quick").operations == OPERATIONS
    assert len(smoke.grid("smoke")) == 2 * 3 * 2  # operations x arms x seeds
    assert smoke.groups() == [
        "wide from scratch",
        "narrow from scratch",
        "widen_all, net2net",
        "widen_all, random",
        "widen_all, scratch",
        "deepen_layer, net2net",
        "deepen_layer, random",
        "deepen_layer, scratch",
    ]
    with pytest.raises(ValueError, match="subset of"):
        Net2NetPlan(operations=("shrink",))


def test_growth_steps_build_the_planned_architectures():
    narrow = build_resnet(ResNetConfig(stages=3, blocks=(1, 1, 1), widths=(2, 3, 4), in_channels=1, num_classes=3))
    generator, data = torch.Generator().manual_seed(0), torch.randn(4, 1, 8, 8)

    def grown(operation, init="net2net", **kwargs):
        model = narrow
        for step in growth_steps(operation, init, (4, 6, 8), **kwargs):
            model = step.apply(model, generator, data)
        return model.spec

    assert [s.width for s in grown("widen_one").stages] == [2, 3, 8]
    assert [s.width for s in grown("widen_one", stage=0).stages] == [4, 3, 4]
    assert [s.width for s in grown("widen_all", noise=0.1).stages] == [4, 6, 8]
    deeper = grown("deepen", init="random")  # one stage only (the draft's 6.2.2): the last
    assert [len(s.blocks) for s in deeper.stages] == [1, 1, 2] and [s.width for s in deeper.stages] == [2, 3, 4]
    layer = grown("deepen_layer")  # eq. 2.5: one more conv + BN inside the last stage's first block
    assert [[len(b.kernels) for b in s.blocks] for s in layer.stages] == [[2], [2], [3]]
    both = grown("widen_deepen")
    assert [(len(s.blocks), s.width) for s in both.stages] == [(1, 4), (1, 6), (2, 8)]
    assert both == ResNetConfig(stages=3, blocks=(1, 1, 2), widths=(4, 6, 8), in_channels=1, num_classes=3).to_spec()
    for bad in [
        dict(operation="shrink"),
        dict(operation="deepen", noise=0.1),
        dict(operation="deepen_layer", noise=0.1),
        dict(operation="widen_all", init="random", noise=0.1),
        dict(operation="widen_all", stage=0),
        dict(operation="widen_one", stage=3),
    ]:
        with pytest.raises(ValueError):
            growth_steps(bad.pop("operation"), bad.pop("init", "net2net"), (4, 6, 8), **bad)


def test_grow_grid_passes_noise_only_where_it_applies_and_differs_from_the_default():
    grid = grow_grid("smoke", operations=["widen_all", "deepen"], noise=0.2, grow_epoch=1)
    assert len(grid) == 2 * 3 * 2  # operations x arms (net2net, random, scratch) x seeds
    with_noise = {(p["operation"], p["init"]) for p in grid if "noise" in p}
    assert with_noise == {("widen_all", "net2net")}
    assert all(p["grow_epoch"] == 1 for p in grid) and {p["seed"] for p in grid} == {0, 1}
    assert all("noise" not in p and "grow_epoch" not in p for p in grow_grid("smoke", noise=DEFAULT_NOISE))


def test_time_to_accuracy_finds_the_first_epoch_and_its_cumulative_seconds():
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "test_acc": [0.5, 0.8, 0.7, 0.9],
            "epoch_time": [1.0, 2.0, 3.0, 4.0],
            "hook_time": [0.0, 0.5, 0.0, 0.0],
        }
    )
    assert time_to_accuracy(history, 0.75) == {"epoch": 2.0, "seconds": 3.5}
    assert time_to_accuracy(history, 0.9) == {"epoch": 4.0, "seconds": 10.5}
    never = time_to_accuracy(history, 0.95)
    assert math.isnan(never["epoch"]) and math.isnan(never["seconds"])


def test_the_scratch_arm_trains_the_grown_architecture_from_a_fresh_init(isolated_results):
    grown = run(
        "net2net_grow", {"operation": "deepen_layer", "init": "net2net", "seed": 0}, profile="smoke", progress=False
    )
    scratch = run(
        "net2net_grow", {"operation": "deepen_layer", "init": "scratch", "seed": 0}, profile="smoke", progress=False
    )
    assert ResNetSpec.from_json(scratch.summary["grown_spec"]) == ResNetSpec.from_json(grown.summary["grown_spec"])
    assert scratch.history["params"].nunique() == 1  # the grown size from the first epoch on
    assert scratch.history["params"].iloc[0] == grown.summary["final_params"] > grown.history["params"].iloc[0]
    assert scratch.summary["params_before"] == grown.history["params"].iloc[0]  # the narrow net it stands for
    with pytest.raises(ValueError, match="param 'init' of experiment 'net2net_grow' must be 'net2net' \\| 'random'"):
        run("net2net_grow", {"operation": "deepen", "init": "copy"}, profile="smoke", progress=False)


def test_init_verdicts_sort_the_operations_by_the_holm_adjusted_net2net_vs_random_test():
    from thesis_lib import stats
    from thesis_lib.chapters.ch06_2_net2net import init_verdicts

    tests = stats.with_holm(
        stats.welch_table(
            [
                (
                    "final accuracy, widen_one, net2net vs widen_one, random",
                    [0.95, 0.96, 0.955, 0.958, 0.952],
                    [0.90, 0.91, 0.905, 0.908, 0.902],
                ),
                (
                    "final accuracy, deepen, net2net vs deepen, random",
                    [0.90, 0.91, 0.905, 0.908, 0.902],
                    [0.95, 0.96, 0.955, 0.958, 0.952],
                ),
                (
                    "final accuracy, widen_all, net2net vs widen_all, random",
                    [0.9, 0.95, 0.92, 0.97, 0.91],
                    [0.93, 0.9, 0.96, 0.92, 0.94],
                ),
            ]
        )
    )
    text = init_verdicts(tests, ["widen_one", "deepen", "widen_all"])
    assert text.startswith("Net2Net's init against random init of the new units, final accuracy, 3 operations:")
    assert "significantly better: widen_one (0.955 vs 0.905" in text
    assert "significantly worse: deepen (0.905 vs 0.955" in text
    assert "not distinguishable on these runs: widen_all" in text
    with pytest.raises(ValueError, match="no test of widen_deepen"):
        init_verdicts(tests, ["widen_deepen"])


def test_default_grow_epoch_is_a_third_of_the_run_and_before_the_first_lr_decay_off_smoke():
    # floor(epochs / 3), at least 1: full 180 -> 60, quick 10 -> 3, smoke 2 -> 1; 3 and 5 epochs -> 1
    assert [default_grow_epoch(n) for n in (180, 10, 2, 3, 5, 9)] == [60, 3, 1, 1, 1, 3]
    for name in ("quick", "full"):  # the grown net trains some epochs at the full rate (decay after 5 and 93)
        config = PROFILES[name].train_config()
        assert default_grow_epoch(config.epochs) < config.milestones[0]
    with pytest.raises(ValueError, match="at least 2 epochs"):
        default_grow_epoch(1)


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_sweeps_list_the_runs_of_the_former_planned_runs(profile):
    from thesis_lib.chapters import chapter
    from thesis_lib.chapters.ch06_2_net2net import sweeps
    from thesis_lib.experiments import get_profile

    seeds = get_profile(profile).seeds
    operations = ("widen_all", "deepen_layer") if profile == "smoke" else OPERATIONS
    # the former planned_runs: both step-schedule baselines, then every operation x arm x seed (noise and
    # grow_epoch at their defaults, so not passed)
    former = [
        *(
            ("baseline", {"model": model, "schedule": "step", "seed": seed})
            for model in ("wide", "narrow")
            for seed in seeds
        ),
        *(
            ("net2net_grow", {"operation": operation, "init": init, "seed": seed})
            for operation in operations
            for init in ("net2net", "random", "scratch")
            for seed in seeds
        ),
    ]
    known = sweeps(profile)
    assert list(known) == ["baseline", "grow"]
    assert [(experiment, params) for experiment, grid in known.values() for params in grid] == former
    planned = chapter("06_2_net2net").planned_runs(profile)
    assert [(r.experiment, dict(r.params)) for r in planned] == former
    assert {r.profile.name for r in planned} == {profile}


def test_net2net_plan_names_the_profiles_that_have_one():
    from dataclasses import replace

    from thesis_lib.chapters.ch06_2_net2net import NET2NET_PLANS
    from thesis_lib.experiments import get_profile

    assert net2net_plan("quick") is NET2NET_PLANS["quick"]
    with pytest.raises(ValueError, match="no chapter 6.2 plan"):
        net2net_plan(replace(get_profile("smoke"), name="other"))


def test_figures_draw_one_panel_per_operation_and_one_row_per_group():
    from matplotlib.figure import Figure

    from thesis_lib.chapters.ch06_2_net2net import (
        accuracy_epochs_figure,
        accuracy_time_figure,
        final_accuracy_figure,
        final_accuracy_table,
        final_accuracy_tests,
        growth_sentence,
    )

    history, summary = chapter_runs()
    summary = summary.assign(total_time=1.0, training_flops=3e9)
    groups = [
        "wide from scratch",
        "narrow from scratch",
        "widen_all, net2net",
        "widen_all, random",
        "widen_all, scratch",
    ]
    for fig in (
        accuracy_epochs_figure(history, summary, ["widen_all"], 1, ("smoke", "digits")),
        accuracy_time_figure(history, summary, ["widen_all"], ("smoke", "digits")),
    ):
        assert isinstance(fig, Figure) and len(fig.axes) == 1
        assert fig.axes[0].get_title() == "alle Phasen breiter"
    fig = final_accuracy_figure(summary, groups, ("smoke", "digits"))
    assert tuple(fig.get_size_inches()) == pytest.approx((6.0, 0.25 * 5 + 0.8))
    table = final_accuracy_table(summary, groups)
    assert table.index.tolist() == groups and table["mean total time (s)"].tolist() == [1.0] * 5
    assert table["mean training FLOPs"].tolist() == [3e9] * 5
    tests = final_accuracy_tests(summary, ["widen_all"])
    assert len(tests) == 8 and "p_holm" in tests
    assert growth_sentence("quick") == (
        "growth after epoch 3 of 10; Net2Net widening noise 0.05 x std of each weight tensor"
    )


def test_a_pair_is_tested_once_when_the_grown_architecture_from_scratch_is_the_wide_net():
    """Review finding 6: with widen_all's scratch arm the wide net itself (same seeds, same values), "net2net
    vs widen_all, scratch" repeats "net2net vs wide from scratch" and would count twice in the Holm family."""
    _, summary = chapter_runs()
    wide = summary.loc[summary["group"] == "wide from scratch", "final_acc"].to_numpy()
    summary = summary.copy()
    summary.loc[summary["group"] == "widen_all, scratch", "final_acc"] = wide
    labels = [label for label, _, _ in final_accuracy_comparisons(summary, ["widen_all"])]
    assert labels == [
        "final accuracy, widen_all, net2net vs wide from scratch",
        "final accuracy, widen_all, net2net vs narrow from scratch",
        "final accuracy, widen_all, random vs wide from scratch",
        "final accuracy, widen_all, random vs narrow from scratch",
        "final accuracy, widen_all, scratch vs narrow from scratch",
        "final accuracy, widen_all, net2net vs widen_all, random",
    ]


def test_the_final_accuracy_figure_draws_the_same_runs_once():
    """Review finding 6: "widen_all, scratch" and "wide from scratch" are one row when they are the same runs."""
    _, summary = chapter_runs()
    groups = ["wide from scratch", "narrow from scratch", "widen_all, net2net", "widen_all, scratch"]
    assert same_run_groups(summary, groups) == {group: [] for group in groups}
    wide = summary.loc[summary["group"] == "wide from scratch"].sort_values("seed")["final_acc"].to_numpy()
    summary = summary.copy()
    summary.loc[summary["group"] == "widen_all, scratch", "final_acc"] = wide
    assert same_run_groups(summary, groups) == {
        "wide from scratch": ["widen_all, scratch"],
        "narrow from scratch": [],
        "widen_all, net2net": [],
    }
    fig = final_accuracy_figure(summary, groups, ("smoke", "digits"))
    labels = [tick.get_text() for tick in fig.axes[0].get_yticklabels()]
    assert len(labels) == 3 and " = " in labels[0]
