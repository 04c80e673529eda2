"""Chapter 6.2: the net2net_grow experiment, its plan, growth steps and the analysis of notebook 06_2."""

import pandas as pd
import pytest
from thesis_lib.models import ResNetSpec, build_resnet, count_parameters
from thesis_lib.chapters.ch06_2_net2net import (
    OPERATIONS, Net2NetPlan, architecture_table, cumulative_time, final_accuracy_comparisons, label_runs,
    net2net_plan, panel_frame, reach_sentences, reach_table, reach_targets,
)


def test_net2net_grow_experiment_grows_the_narrow_baseline_into_the_wide_net(isolated_results):
    from thesis_lib.experiments import PROFILES, run
    from thesis_lib.chapters.ch06_2_net2net import DEFAULT_NOISE

    smoke = PROFILES["smoke"]
    narrow, wide = smoke.resnet("narrow", 1, 10), smoke.resnet("wide", 1, 10)
    grown = run("net2net_grow", {"operation": "widen_all", "init": "net2net", "seed": 0}, profile="smoke",
                progress=False)
    baseline = run("baseline", {"model": "narrow", "schedule": "step", "seed": 0}, profile="smoke", progress=False)
    assert grown.summary["grow_epoch"] == 1 and grown.summary["noise"] == DEFAULT_NOISE
    assert ResNetSpec.from_json(grown.summary["grown_spec"]) == wide.to_spec()
    assert grown.history["params"].tolist() == [count_parameters(build_resnet(narrow)),
                                                count_parameters(build_resnet(wide))]
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
    ]
    histories = [pd.DataFrame({"epoch": [1, 2, 3], "test_acc": acc, "epoch_time": times, "hook_time": hooks,
                               **params}) for params, acc, times, hooks in runs]
    summaries = [{**params, "final_acc": acc[-1], "final_params": 100 * (1 + i // 4), "final_flops": 7,
                  "params_before": 100, "flops_before": 5} for i, (params, acc, _, _) in enumerate(runs)]
    history, summary = pd.concat(histories, ignore_index=True), pd.DataFrame(summaries)
    is_baseline = history["model"].notna()
    history = label_runs(history[is_baseline].drop(columns=["operation", "init"]),
                         history[~is_baseline].drop(columns=["model"]))
    summary = label_runs(summary[summary["model"].notna()], summary[summary["model"].isna()])
    history["cumulative_time"] = cumulative_time(history, by=["group", "seed"])
    return history, summary



def test_labelled_runs_give_panels_with_fixed_arm_order_and_mean_cumulative_time():
    history, summary = chapter_runs()
    assert summary["group"].tolist() == ["wide from scratch"] * 2 + ["narrow from scratch"] * 2 + [
        "widen_all, net2net"] * 2 + ["widen_all, random"] * 2
    assert summary["arm"].iloc[4] == "Net2Net init" and summary["operation"].iloc[0] == "-"
    net2net_seed_0 = history[(history["group"] == "widen_all, net2net") & (history["seed"] == 0)]
    assert net2net_seed_0["cumulative_time"].tolist() == [1.5, 2.5, 4.5]

    deepen = history[history["group"] == "widen_all, net2net"].assign(operation="deepen", group="deepen, net2net")
    panel = panel_frame(pd.concat([deepen, history], ignore_index=True), "widen_all")
    assert panel["arm"].drop_duplicates().tolist() == ["wide from scratch", "narrow from scratch", "Net2Net init",
                                                       "random init"]
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
    assert table.loc["widen_all, net2net", ["epoch to wide", "seconds to wide", "runs reaching wide"]].tolist() \
        == [2.5, 3.5, 2]
    assert table.loc["widen_all, random", ["runs reaching wide", "runs reaching narrow", "seconds to narrow"]] \
        .tolist() == [0, 1, 3.5]
    assert table["runs"].tolist() == [2, 2, 2, 2]
    assert reach_sentences(table) == [
        "wide from scratch: 2 of 2 runs reached the wide net's accuracy after 3.0 epochs and 3.00 s.",
        "narrow from scratch: 2 of 2 runs reached the narrow net's accuracy after 3.0 epochs and 3.00 s.",
        "widen_all, net2net: 2 of 2 runs reached the wide net's accuracy after 2.5 epochs and 3.50 s (later in "
        "seconds than the wide net from scratch); 2 of 2 runs reached the narrow net's accuracy after 2.0 epochs "
        "and 2.50 s (sooner in seconds than the narrow net from scratch).",
        "widen_all, random: none of 2 runs reached the wide net's accuracy; 1 of 2 runs reached the narrow net's "
        "accuracy after 3.0 epochs and 3.50 s (later in seconds than the narrow net from scratch).",
    ]



def test_final_accuracy_comparisons_pair_every_grown_group_with_both_baselines_and_the_other_init():
    _, summary = chapter_runs()
    comparisons = final_accuracy_comparisons(summary, ["widen_all"])
    assert [label for label, _, _ in comparisons] == [
        "final accuracy, widen_all, net2net vs wide from scratch",
        "final accuracy, widen_all, net2net vs narrow from scratch",
        "final accuracy, widen_all, random vs wide from scratch",
        "final accuracy, widen_all, random vs narrow from scratch",
        "final accuracy, widen_all, net2net vs widen_all, random"]
    _, a, b = comparisons[-1]
    assert a.tolist() == [0.9, 0.86] and b.tolist() == [0.6, 0.66]
    with pytest.raises(ValueError, match="deepen, net2net"):
        final_accuracy_comparisons(summary, ["deepen"])



def test_net2net_plan_per_profile():
    smoke = net2net_plan("smoke")
    assert smoke.operations == ("widen_all", "deepen") and net2net_plan("quick").operations == OPERATIONS
    assert len(smoke.grid("smoke")) == 2 * 2 * 2  # operations x inits x seeds
    assert smoke.groups() == ["wide from scratch", "narrow from scratch", "widen_all, net2net", "widen_all, random",
                              "deepen, net2net", "deepen, random"]
    with pytest.raises(ValueError, match="subset of"):
        Net2NetPlan(operations=("shrink",))

