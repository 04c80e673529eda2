"""Chapter 5: the prunetrain experiment, its plans and the analysis helpers of notebook 05."""

import json
import math

import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from thesis_lib.chapters.ch05_prunetrain import (
    FACTORS,
    compare_to_baseline,
    default_point_tests,
    factor_trends,
    prunetrain_plan,
    setting_means,
    setting_row,
    stage_widths,
    with_baseline,
    with_dense_start,
)
from thesis_lib.data import load_dataset
from thesis_lib.experiments import get_profile, run
from thesis_lib.methods.prunetrain import PruneTrain, channel_sizes
from thesis_lib.models import count_flops, count_parameters
from thesis_lib.training import Trainer, evaluate, seeded_model

from helpers import hand_training_flops


def test_prunetrain_experiment_summary_matches_its_history(isolated_results):
    params = {"lasso_ratio": 0.95, "threshold": 0.2, "interval": 1, "lr": 0.1, "seed": 0}
    result = run("prunetrain", params, profile="smoke", progress=False)
    history, summary = result.history, result.summary
    profile = get_profile("smoke")
    dense = seeded_model(profile.resnet("wide", 1, 10), 0)

    assert history["lr"].tolist() == pytest.approx([0.1, 0.01])  # lr override, step decay at epoch 1
    assert summary["dense_params"] == count_parameters(dense) == history["params"].iloc[0]
    assert summary["reconfigurations"] == int(history["reconfigured"].sum()) >= 1
    assert summary["final_params_after"] == history["params_after"].iloc[-1] < 0.8 * summary["dense_params"]
    # FLOPs counted by hand on the two nets themselves: the dense start D and the cached pruned model P. Pruned
    # once, after epoch 1 of 2, so epoch 1 trains D and epoch 2 trains P, each on every training image.
    dense_flops, pruned_flops = count_flops(dense, profile.input_size), count_flops(result.model(), profile.input_size)
    dense_training = hand_training_flops(dense, profile.input_size)
    pruned_training = hand_training_flops(result.model(), profile.input_size)
    assert history["reconfigured"].tolist() == [True, False] and pruned_flops < dense_flops
    assert history["train_flops"].tolist() == [profile.n_train * dense_training, profile.n_train * pruned_training]
    assert summary["training_flops"] == profile.n_train * (dense_training + pruned_training)
    assert summary["dense_training_flops"] == profile.n_train * 2 * dense_training
    assert summary["training_flops_removed"] == pytest.approx((dense_training - pruned_training) / (2 * dense_training))
    assert (
        summary["optimizer_steps"] == history["steps"].iloc[-1] == 2 * math.ceil(profile.n_train / profile.batch_size)
    )
    assert history["after_shape_change"].tolist() == [True, True]  # the first epoch, and the one after pruning
    assert summary["final_inference_flops"] == summary["final_flops"] == pruned_flops
    assert summary["inference_flops_removed"] == pytest.approx(1 - pruned_flops / dense_flops)
    assert json.loads(summary["final_channels"]) == channel_sizes(result.model())
    assert run("prunetrain", params, profile="smoke", progress=False).loaded_from_cache
    # Accuracy and size describe the same net: the cached (pruned) model scores the reported accuracy.
    assert summary["reconfigurations"] >= 1 and summary["final_params"] == summary["final_params_after"]
    data = load_dataset("digits").subset(profile.n_train, profile.n_test, seed=0)
    assert evaluate(result.model(), data.test_x, data.test_y)[1] == pytest.approx(summary["final_acc"])


def test_prunetrain_experiment_rejects_a_mistyped_training_param(isolated_results):
    with pytest.raises(ValueError, match=r"unknown param\(s\) \['lr_rate'\] of experiment 'prunetrain'"):
        run("prunetrain", {"lasso_ratio": 0.5, "lr_rate": 0.1, "seed": 0}, profile="smoke", progress=False)


def test_prunetrain_plans_vary_one_factor_around_a_shared_default():
    full = prunetrain_plan("full")
    assert full.lasso_ratios == (0.05, 0.1, 0.15, 0.2, 0.25) and full.intervals == (2, 5, 10)
    assert (full.lasso_ratio, full.threshold, full.interval, full.lr) == (0.2, 1e-4, 10, 0.1)
    # The draft's chapter 5: a fixed batch of 256 on full, for the PruneTrain runs and their baseline alike.
    assert full.training() == {"batch_size": 256} and prunetrain_plan("quick").training() == {"epochs": 20}
    assert full.baseline_grid((0, 1)) == [
        {"model": "wide", "schedule": "step", "batch_size": 256, "seed": s} for s in (0, 1)
    ]
    for name in ("smoke", "quick", "full"):
        plan = prunetrain_plan(name)
        assert max(plan.intervals) <= plan.training().get("epochs", get_profile(name).epochs)
        for factor in FACTORS:
            grid = plan.grid(factor)
            assert len(grid) == len(plan.values(factor)) * len(plan.seeds)
            assert {point["seed"] for point in grid} == set(plan.seeds)
            for point in grid:
                others = {key: value for key, value in point.items() if key not in (factor, "seed")}
                assert others == {
                    key: value for key, value in {**plan.default(), **plan.training()}.items() if key != factor
                }
            assert {**plan.default(), **plan.training(), "seed": plan.seeds[0]} in grid  # the shared default point
    with pytest.raises(ValueError, match="unknown factor"):
        full.grid("batch_size")
    with pytest.raises(ValueError, match="unknown profile"):
        prunetrain_plan("huge")


def test_quicks_default_point_prunes_with_zeroings_that_change_the_validation_accuracy_by_at_most_a_point():
    """Issue 25's checked property, on the validation split the point was chosen on (the test split unread):
    the lasso drives groups to zero, so the threshold removes channels without changing the function."""
    profile, plan = get_profile("quick"), prunetrain_plan("quick")
    data = load_dataset("digits").validation_split(0.2, seed=0)
    config = profile.train_config(lr=plan.lr, seed=0, **plan.training())
    pruning = PruneTrain(plan.lasso_ratio, plan.threshold, plan.interval)
    model = seeded_model(profile.resnet("wide", 1, 10), 0)
    history = Trainer(model, data, config, hooks=[pruning], progress=False, cpu_threads=1).fit()

    zeroings = history[history["test_acc_after_zeroing"].notna()]
    assert len(zeroings) == config.epochs // plan.interval - 1  # every interval but after the last epoch
    assert (zeroings["test_acc_after_zeroing"] - zeroings["test_acc"]).abs().max() <= 0.01
    assert plan.threshold <= 1e-2
    assert history["params_after"].iloc[-1] < 0.8 * history["params"].iloc[0]  # and it does prune
    assert history["test_acc"].iloc[-1] >= 0.97


def test_stage_widths_sums_internal_widths_per_stage():
    history = pd.DataFrame(
        {
            "epoch": [1, 2],
            "seed": [3, 3],
            "channels": [
                json.dumps(
                    {
                        "stage0.stream": 16,
                        "stage1.stream": 32,
                        "stage0.block0.layer1": 10,
                        "stage0.block1.layer1": 5,
                        "stage1.block0.layer1": 7,
                        "stage1.block0.layer2": 2,
                    }
                ),
                json.dumps({"stem": 4, "stage0.stream": 12, "stage1.block1.stream": 30, "stage0.block1.layer1": 3}),
            ],
        }
    )
    table = stage_widths(history)
    counts = {(row.epoch, row.stage, row.kind): row.channels for row in table.itertuples()}
    assert counts == {
        (1, "phase 1", "internal"): 15,
        (1, "phase 1", "stream"): 16,
        (1, "phase 2", "internal"): 9,
        (1, "phase 2", "stream"): 32,
        (2, "stem", "stream"): 4,
        (2, "phase 1", "internal"): 3,
        (2, "phase 1", "stream"): 12,
        (2, "phase 2", "internal"): 0,
        (2, "phase 2", "stream"): 30,
    }
    assert (table["seed"] == 3).all()
    with pytest.raises(ValueError, match="naming scheme"):
        stage_widths(pd.DataFrame({"epoch": [1], "channels": [json.dumps({"layer3": 4})]}))
    with pytest.raises(ValueError, match="no 'channels' column"):
        stage_widths(pd.DataFrame({"epoch": [1]}))


def test_with_baseline_orders_settings_as_planned_not_as_strings():
    runs = pd.DataFrame({"interval": [10, 2, 5, 2], "final_acc": [0.4, 0.5, 0.6, 0.7]})
    baseline = pd.DataFrame({"final_acc": [0.8, 0.9]})
    frame = with_baseline(runs, baseline, "interval", (2, 5, 10))
    assert list(frame["setting"].cat.categories) == ["baseline", "2", "5", "10"]
    assert frame.sort_values("setting", kind="stable")["final_acc"].tolist() == [0.8, 0.9, 0.5, 0.7, 0.6, 0.4]
    with pytest.raises(ValueError, match=r"\['3'\] are not among the values"):
        with_baseline(runs.assign(interval=[10, 2, 5, 3]), baseline, "interval", (2, 5, 10))
    with pytest.raises(ValueError, match="no column 'lr'"):
        with_baseline(runs, baseline, "lr", (0.1,))


def test_factor_trends_fit_log_learning_rate_and_linear_interval():
    lrs = [0.01, 0.01, 0.1, 0.1, 1.0, 1.0]
    exact = pd.DataFrame({"lr": lrs, "mean_epoch_time": [5.0 - 0.5 * math.log10(lr) for lr in lrs]})
    trend = factor_trends(exact, "lr", [("mean_epoch_time", "mean epoch time", "s")]).iloc[0]
    assert trend["slope"] == pytest.approx(-0.5) and trend["r2"] == pytest.approx(1.0) and trend["n"] == 6
    assert trend["x"] == "log10 of the learning rate" and trend["p"] < 1e-6
    assert trend["sentence"].startswith(
        "Trend: the mean epoch time falls with log10 of the learning rate (least-squares slope -0.5 s per unit"
    )
    assert trend["p_holm"] == trend["p"]  # a family of one
    assert trend["sentence"].endswith(": significant at the 5% level).")

    intervals, accuracy = [1, 1, 2, 2, 5, 5], [0.9, 0.5, 0.4, 0.95, 0.6, 0.7]
    mean_x, mean_y = sum(intervals) / 6, sum(accuracy) / 6
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(intervals, accuracy)) / sum(
        (x - mean_x) ** 2 for x in intervals
    )
    noisy = pd.DataFrame({"interval": intervals, "final_acc": accuracy})
    trend = factor_trends(noisy, "interval", [("final_acc", "final accuracy", "")]).iloc[0]
    assert trend["slope"] == pytest.approx(slope) == pytest.approx(-0.2 / (52 / 3))
    assert trend["x"] == "reconfiguration interval" and trend["p"] > 0.5
    assert trend["sentence"].startswith("Trend: no significant linear trend of the final accuracy with the recon")
    assert "falls" not in trend["sentence"] and "rises" not in trend["sentence"]
    assert trend["sentence"].endswith(": not significant at the 5% level, so no direction is claimed).")

    both = noisy.assign(exact=[2.0 * x for x in intervals])
    pair = factor_trends(both, "interval", [("final_acc", "final accuracy", ""), ("exact", "exact value", "")])
    assert pair["p_holm"].tolist() == pytest.approx(multipletests(pair["p"], method="holm")[1])
    assert "rises with the reconfiguration interval" in pair["sentence"].iloc[1]

    single = factor_trends(noisy.assign(interval=2), "interval", [("final_acc", "final accuracy", "")])
    assert single.empty and "sentence" in single.columns
    with pytest.raises(ValueError, match="unknown factor"):
        factor_trends(noisy, "batch_size", [])


def fake_prunetrain_summary() -> pd.DataFrame:
    """Two settings (lasso ratio 0.8 and 0.9, the rest equal) with two seeds each."""
    return pd.DataFrame(
        {
            "lasso_ratio": [0.8, 0.8, 0.9, 0.9],
            "threshold": [0.03] * 4,
            "interval": [2] * 4,
            "lr": [0.05] * 4,
            "seed": [0, 1, 0, 1],
            "final_params_after": [600, 400, 200, 100],
            "training_flops_removed": [0.1, 0.3, 0.5, 0.6],
            "inference_flops_removed": [0.2, 0.4, 0.7, 0.9],
            "final_acc": [0.9, 0.8, 0.5, 0.6],
            "mean_epoch_time": [2.0, 4.0, 1.0, 2.0],
            "reconfigurations": [1, 2, 3, 3],
        }
    )


def test_setting_means_and_default_row_against_hand_numbers():
    means = setting_means(fake_prunetrain_summary(), dense_params=1000)
    assert means["lasso_ratio"].tolist() == [0.8, 0.9]
    assert means["final_params_after"].tolist() == [500.0, 150.0]
    assert means["params removed"].tolist() == pytest.approx([0.5, 0.85])
    assert means["training_flops_removed"].tolist() == pytest.approx([0.2, 0.55])
    assert means["final_acc"].tolist() == pytest.approx([0.85, 0.55])
    assert means["mean_epoch_time"].tolist() == [3.0, 1.5] and means["reconfigurations"].tolist() == [1.5, 3.0]

    # keys in another order than the columns, and a ratio that is 0.9 only up to its last bit
    row = setting_row(means, {"lr": 0.05, "interval": 2, "threshold": 0.03, "lasso_ratio": 0.3 * 3})
    assert 0.3 * 3 != 0.9 and row["final_params_after"] == 150.0 and row["params removed"] == pytest.approx(0.85)
    with pytest.raises(ValueError, match="0 rows match"):
        setting_row(means, {"lasso_ratio": 0.7, "threshold": 0.03, "interval": 2, "lr": 0.05})
    with pytest.raises(ValueError, match="2 rows match"):
        setting_row(means, {"interval": 2})
    with pytest.raises(ValueError, match=r"lacks the columns \['final_acc'\]"):
        setting_means(fake_prunetrain_summary().drop(columns="final_acc"), dense_params=1000)
    with pytest.raises(ValueError, match="dense_params"):
        setting_means(fake_prunetrain_summary(), dense_params=0)


def test_compare_to_baseline_tests_every_setting_in_plan_order_and_adds_the_trend():
    runs = pd.DataFrame({"interval": [2, 2, 10, 10, 5, 5], "final_acc": [0.5, 0.7, 0.6, 0.65, 0.7, 0.72]})
    baseline = pd.DataFrame({"final_acc": [0.8, 0.9, 0.85]})
    settings = with_baseline(runs, baseline, "interval", (2, 5, 10))
    quantities = [("final_acc", "final accuracy", "")]
    tests, sentences = compare_to_baseline(settings, runs, "interval", quantities, skip=(5,))

    assert tests["group"].tolist() == ["2", "10"] and tests["quantity"].tolist() == ["final accuracy"] * 2
    assert tests["mean"].tolist() == pytest.approx([0.6, 0.625])
    assert tests["reference_mean"].tolist() == pytest.approx([0.85, 0.85])
    assert tests["diff"].tolist() == pytest.approx([-0.25, -0.225])
    assert tests["n_a"].tolist() == [2, 2] and tests["n_b"].tolist() == [3, 3]
    # Welch by hand for "2": variances 0.02 and 0.0025, n 2 and 3
    standard_error = math.sqrt(0.02 / 2 + 0.0025 / 3)
    welch_df = standard_error**4 / ((0.02 / 2) ** 2 / 1 + (0.0025 / 3) ** 2 / 2)
    assert tests["t"].iloc[0] == pytest.approx(-0.25 / standard_error)
    assert tests["df"].iloc[0] == pytest.approx(welch_df)
    # Holm over the two tests: the smaller p doubled, the larger one at least that and kept otherwise
    p_small, p_large = sorted(tests["p"])
    assert sorted(tests["p_holm"]) == pytest.approx([2 * p_small, max(2 * p_small, p_large)])
    assert "sentence" not in tests.columns

    assert len(sentences) == 3
    assert "reconfiguration interval 2 vs baseline" in sentences[0] and "Holm-adjusted p" in sentences[0]
    assert "reconfiguration interval 10 vs baseline" in sentences[1]
    assert sentences[2].startswith(  # p = 0.93: no direction claimed (review finding 7)
        "Trend: no significant linear trend of the final accuracy with the reconfiguration interval"
    )


def test_the_default_point_is_tested_once_under_its_own_name():
    plan = prunetrain_plan("quick")
    runs = pd.DataFrame({"interval": [plan.interval] * 3 + [5] * 3, "final_acc": [0.7, 0.72, 0.71, 0.6, 0.62, 0.61]})
    baseline = pd.DataFrame({"final_acc": [0.8, 0.9, 0.85]})
    settings = with_baseline(runs, baseline, "interval", (plan.interval, 5))
    quantities = [("final_acc", "final accuracy", "")]
    tests, sentences = default_point_tests(settings, plan, "interval", quantities)
    assert tests["group"].tolist() == ["default point"] and tests["mean"].iloc[0] == pytest.approx(0.71)
    assert tests["p_holm"].iloc[0] == pytest.approx(tests["p"].iloc[0])  # a family of one
    assert sentences[0].startswith("final accuracy, default point 2 vs baseline")
    swept, _ = compare_to_baseline(settings, runs, "interval", quantities, skip=(plan.interval,))
    assert swept["group"].tolist() == ["5"]


def test_with_dense_start_prepends_the_unpruned_net_to_every_run():
    history = pd.DataFrame(
        {
            "lasso_ratio": [0.9, 0.9, 0.8, 0.8],
            "seed": [0, 0, 0, 0],
            "epoch": [2, 1, 1, 2],
            "params_after": [300, 500, 700, 600],
            "test_acc": [0.4, 0.3, 0.5, 0.6],
            "channels": [
                json.dumps({"stage1.stream": 4, "stage1.block0.layer1": 2}),
                json.dumps({"stage1.stream": 6, "stage1.block0.layer1": 3}),
            ]
            * 2,
        }
    )
    dense = {"stage1.stream": 8, "stage1.block0.layer1": 8}
    curves = with_dense_start(history, dense, dense_params=1000, run_columns=["lasso_ratio", "seed"])
    assert curves[["lasso_ratio", "epoch"]].values.tolist() == [
        [0.8, 0],
        [0.8, 1],
        [0.8, 2],
        [0.9, 0],
        [0.9, 1],
        [0.9, 2],
    ]
    assert curves["params_after"].tolist() == [1000, 700, 600, 1000, 500, 300]
    assert curves["test_acc"].tolist() == [0.5, 0.5, 0.6, 0.3, 0.3, 0.4]  # epoch 0 copies the first epoch
    one_run = stage_widths(curves.loc[curves.lasso_ratio == 0.9, ["epoch", "channels"]])
    stream = one_run[one_run.kind == "stream"]
    assert stream["epoch"].tolist() == [0, 1, 2] and stream["channels"].tolist() == [8, 6, 4]

    single = with_dense_start(
        history[history.lasso_ratio == 0.8].drop(columns=["lasso_ratio", "seed"]), dense, 1000, run_columns=[]
    )
    assert single["epoch"].tolist() == [0, 1, 2] and single["params_after"].tolist() == [1000, 700, 600]
    with pytest.raises(ValueError, match="epochs below 1"):
        with_dense_start(curves, dense, 1000, run_columns=["lasso_ratio", "seed"])
    with pytest.raises(ValueError, match="do not tell the runs apart"):
        with_dense_start(history, dense, 1000, run_columns=["seed"])
    with pytest.raises(ValueError, match=r"lacks the columns \['params_after'\]"):
        with_dense_start(history.drop(columns="params_after"), dense, 1000, run_columns=["seed"])


def test_the_default_point_is_compared_with_the_papers_savings():
    from thesis_lib.chapters.ch05_prunetrain import paper_comparison

    text = paper_comparison(pd.Series({"training_flops_removed": 0.117, "inference_flops_removed": 0.209}))
    assert text.startswith(
        "The default point removes 11.7% of the training FLOPs and 20.9% of the inference FLOPs (the paper: 53% and 66%"
    )


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_sweeps_list_the_runs_of_the_former_planned_runs(profile):
    from thesis_lib.chapters import chapter
    from thesis_lib.chapters.ch05_prunetrain import sweeps

    plan, seeds = prunetrain_plan(profile), get_profile(profile).seeds
    default = {"lasso_ratio": plan.lasso_ratio, "threshold": plan.threshold, "interval": plan.interval, "lr": plan.lr}
    training = {"epochs": 20} if profile == "quick" else {}  # quick's chapter 5 trains 20 epochs
    former = [("baseline", {"model": "wide", "schedule": "step", **training, "seed": seed}) for seed in seeds]
    for factor, values in (
        ("lasso_ratio", plan.lasso_ratios),
        ("interval", plan.intervals),
        ("threshold", plan.thresholds),
        ("lr", plan.lrs),
    ):
        former += [
            ("prunetrain", {**default, factor: value, **training, "seed": seed})
            for value in values
            for seed in plan.seeds
        ]
    known = sweeps(profile)
    assert list(known) == ["baseline", "lasso_ratio", "interval", "threshold", "lr"]
    assert [(experiment, params) for experiment, grid in known.values() for params in grid] == former
    planned = chapter("05_prunetrain").planned_runs(profile)
    assert [(r.experiment, dict(r.params)) for r in planned] == former
    assert {r.profile.name for r in planned} == {profile}
    if profile == "smoke":  # 2 seeds of the baseline; 2 values x 2 seeds per factor
        assert [len(grid) for _, grid in known.values()] == [2, 4, 4, 4, 4]


def test_prunetrain_plan_names_the_profiles_that_have_one(monkeypatch):
    from thesis_lib.chapters import ch05_prunetrain

    monkeypatch.delitem(ch05_prunetrain.PRUNETRAIN_PLANS, "quick")
    with pytest.raises(ValueError, match=r"no chapter 5 plan for profile 'quick'; plans exist for \['full', 'smoke'\]"):
        prunetrain_plan("quick")


def test_the_notebooks_sentences_from_hand_numbers():
    from thesis_lib.chapters.ch05_prunetrain import (
        default_point_sentence,
        last_epoch_accuracy_sentences,
        smallest_net_sentence,
    )

    means = setting_means(fake_prunetrain_summary(), dense_params=1000)
    plan = prunetrain_plan("smoke")
    assert default_point_sentence(plan, means.iloc[0], 1000) == (
        "The default point (lasso ratio 0.8, threshold 0.03, interval 1, lr 0.05) ends with 500 of 1,000 parameters "
        "(50.0% removed) and saves 20.0% of the training FLOPs."
    )
    assert smallest_net_sentence(means) == (
        "The smallest final net (150 parameters, 85.0% removed) comes from lasso ratio 0.9, threshold 0.03, "
        "interval 2, lr 0.05, at accuracy 0.550."
    )
    default = pd.DataFrame({"epoch": [1, 2, 1, 2], "train_acc": [0.5, 0.9, 0.6, 1.0], "test_acc": [0.4, 0.8, 0.5, 0.6]})
    baseline = pd.DataFrame({"epoch": [1, 2, 3], "train_acc": [0.5, 0.7, 0.9], "test_acc": [0.4, 0.5, 0.6]})
    assert last_epoch_accuracy_sentences(default, baseline) == [  # the default point's last epoch, 2
        "baseline: training accuracy 0.700, test accuracy 0.500 in the last epoch (mean of 1 runs)",
        "default point: training accuracy 0.950, test accuracy 0.700 in the last epoch (mean of 2 runs)",
        "The draft's claim: neither reaches 100 % training accuracy (mean >= 99.5 %): the draft's claim is not "
        "reproduced. The training accuracy is a running mean during the epoch, the test accuracy is measured "
        "after it, so their gap is not read as overfitting.",
    ]
    full = default.assign(train_acc=[0.5, 1.0, 0.6, 1.0])
    assert "only the default point reaches 100 %" in last_epoch_accuracy_sentences(full, baseline)[-1]


def fake_ratio_history(plan):
    """Two epochs of two seeds at the default lasso ratio; seed 0 reconfigures after epoch 1."""
    channels = [
        json.dumps({"stage0.stream": 6, "stage0.block0.layer1": 3}),
        json.dumps({"stage0.stream": 5, "stage0.block0.layer1": 2}),
    ]
    return pd.DataFrame(
        {
            "lasso_ratio": [plan.lasso_ratio] * 4,
            "seed": [0, 0, 1, 1],
            "epoch": [1, 2, 1, 2],
            "params_after": [700, 600, 800, 800],
            "channels": channels * 2,
            "reconfigured": [True, False, False, False],
        }
    )


def test_the_shrinking_figure_and_its_final_widths(monkeypatch):
    from thesis_lib import plots
    from thesis_lib.chapters import ch05_prunetrain as ch05

    plan = ch05.PruneTrainPlan(
        lasso_ratio=0.8,
        threshold=0.03,
        interval=1,
        lr=0.05,
        lasso_ratios=(0.8,),
        intervals=(1,),
        thresholds=(0.03,),
        lrs=(0.05,),
        seeds=(0, 1),
    )
    curves = with_dense_start(
        fake_ratio_history(plan),
        {"stage0.stream": 8, "stage0.block0.layer1": 8},
        1000,
        run_columns=["lasso_ratio", "seed"],
    )
    assert ch05.final_widths_report(curves, plan).splitlines()[0] == (
        "Default point, seed 0: channels per stage after epoch 2:"
    )
    assert ch05.default_run_widths(curves, plan)["channels"].tolist() == [8, 8, 3, 6, 2, 5]
    fig = ch05.shrinking_figure(curves, plan, ("smoke", "digits"))
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == [
        "(a) Residualstrom",
        "(b) blockintern, summiert",
        "(c) je Lasso-Verhältnis",
    ]
    # the reconfiguration after epoch 1 lands between epochs 0 and 1 (widths are recorded after it)
    assert [line.get_xdata()[0] for line in axes[0].get_lines() if line.get_linestyle() == ":"] == [0.5]
    assert fig.texts[-1].get_text() == "smoke · digits (8×8) · n = 1 Lauf (a, b), 2 (c)"
    try:
        plots.use_thesis_style(language="en")
        fig = ch05.shrinking_figure(curves, plan, ("smoke", "digits"))
        assert fig.axes[0].get_title() == "(a) residual stream"
        assert fig.texts[-1].get_text() == "smoke · digits (8×8) · n = 1 run (a, b), 2 (c)"
    finally:
        plots.use_thesis_style(language="de")


def test_the_sweep_figures_draw_their_panels_in_plan_order():
    from thesis_lib import plots
    from thesis_lib.chapters import ch05_prunetrain as ch05

    plan = prunetrain_plan("smoke")
    runs = pd.DataFrame(
        {
            "interval": [1, 1, 2, 2],
            "mean_epoch_time": [1.0, 1.2, 1.1, 1.3],
            "total_time": [2.0, 2.4, 2.2, 2.6],
            "final_acc": [0.5, 0.6, 0.55, 0.65],
        }
    )
    baseline = pd.DataFrame({"mean_epoch_time": [1.5, 1.6], "total_time": [3.0, 3.2], "final_acc": [0.7, 0.8]})
    settings = with_baseline(runs, baseline, "interval", plan.intervals)
    fig = ch05.interval_figure(settings, plan, ("smoke", "digits"))
    assert [ax.get_title() for ax in fig.axes] == ["(a) Epochenzeit", "(b) ohne Baseline", "(c) Genauigkeit"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["Baseline", "1", "2"]
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["1", "2"]
    assert fig.get_supxlabel() == "Rekonfigurationsintervall (Epochen)"
    assert (
        len(
            ch05.threshold_accuracy_figure(
                settings.rename(columns={"interval": "threshold"}), plan, ("smoke", "digits")
            ).axes
        )
        == 1
    )
    try:
        plots.use_thesis_style(language="en")
        fig = ch05.lasso_ratio_figure(settings, plan, ("smoke", "digits"))
        assert [ax.get_title() for ax in fig.axes] == ["(a) epoch time", "(b) accuracy"]
        assert fig.axes[0].get_xticklabels()[0].get_text() == "baseline"
        assert fig.get_supxlabel() == "lasso ratio"
    finally:
        plots.use_thesis_style(language="de")


def test_zeroing_changes_and_sentence_from_a_hand_made_history():
    from thesis_lib.chapters.ch05_prunetrain import zeroing_changes, zeroing_sentence

    nan = float("nan")
    history = pd.DataFrame(
        {
            "seed": [0, 0, 0, 1, 1, 1],
            "epoch": [1, 2, 3, 1, 2, 3],
            "test_acc": [0.5, 0.9, 0.95, 0.6, 0.8, 0.9],
            "test_acc_after_zeroing": [nan, 0.9, nan, nan, 0.75, nan],
            "zeroed_weights": [0, 10, 0, 0, 20, 0],
            "removed_channels": [0, 2, 0, 0, 3, 0],
        }
    )
    changes = zeroing_changes(history)
    assert changes[["seed", "epoch"]].values.tolist() == [[0, 2], [1, 2]]
    assert changes["change"].tolist() == pytest.approx([0.0, -0.05])
    assert zeroing_sentence(changes) == (
        "At the 2 thresholdings of 2 runs the test accuracy changed by at most 5.0 points (mean |change| 2.50), "
        "by more than 1 point at 1: there the threshold cut weights the net still used."
    )
    assert "within 1 point at every one" in zeroing_sentence(changes.iloc[:1])
    assert zeroing_sentence(changes.iloc[:0]).startswith("No run reached a thresholding")
    with pytest.raises(ValueError, match="test_acc_after_zeroing"):
        zeroing_changes(history.drop(columns="test_acc_after_zeroing"))


def test_removals_by_epoch_and_the_lasso_step_from_a_hand_made_history():
    from thesis_lib.chapters.ch05_prunetrain import lasso_step_sentence, removals_by_epoch

    history = pd.DataFrame(
        {
            "interval": [1, 1, 1, 1, 2, 2, 2, 2],
            "seed": [0, 0, 1, 1, 0, 0, 1, 1],
            "epoch": [1, 2, 1, 2, 1, 2, 1, 2],
            "removed_channels": [0, 4, 0, 2, 0, 0, 0, 0],
            "lr": [0.1, 0.01, 0.1, 0.01, 0.1, 0.01, 0.1, 0.01],
            "lasso_lambda": [0.02, 0.02, 0.04, 0.04, 0.03, 0.03, 0.03, 0.03],
        }
    )
    table = removals_by_epoch(history, "interval")
    assert table.columns.tolist() == [2]  # epoch 1 removed nothing anywhere
    assert table.loc[1, 2] == 3.0 and table.loc[2, 2] == 0.0
    sentence = lasso_step_sentence(history[history["interval"] == 1])
    assert sentence == (
        "Default point: lambda = 0.03 (eq. 2.3, mean over the runs), so a zeroed group's norm moves by lr x lambda "
        "= 0.003 from epoch 1, 0.0003 from epoch 2 per step; the first channel left in epoch 2."
    )
    assert lasso_step_sentence(history[history["interval"] == 2]).endswith("; no channel left.")
    with pytest.raises(ValueError, match="lacks"):
        removals_by_epoch(history.drop(columns="removed_channels"), "interval")
