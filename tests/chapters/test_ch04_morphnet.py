"""Chapter 4: MorphNet experiments on smoke, the search's structures and the analysis of notebook 04."""

import json

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from thesis_lib.chapters.ch04_morphnet import (
    AliveCostRecorder,
    alive_cost_curves,
    layer_widths,
    search_structures,
    uniform_scaling,
)
from thesis_lib.experiments import get_profile, run, sweep
from thesis_lib.methods.morphnet import (
    morphnet_search,
    scale_spec,
    spec_cost,
)
from thesis_lib.models import ResNetConfig, ResNetSpec, build_resnet, count_flops
from thesis_lib.surgery import channel_groups, select_channels
from thesis_lib.training import TrainConfig, Trainer

from helpers import next_breakpoint, timed_alone, toy_data, weight_entries

INPUT = (1, 8, 8)


def test_uniform_scaling_reaches_the_reference_or_stays_below_its_cost():
    narrow = ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=10)
    doubled = narrow.with_(widths=(8, 16))
    table = uniform_scaling(narrow, doubled, INPUT)
    assert table["resource"].tolist() == ["flops", "size"]
    assert table["omega"].tolist() == [2.0, 2.0] and table["equals_reference"].all()
    costs = {
        config: [count_flops(build_resnet(config), INPUT), weight_entries(build_resnet(config))]
        for config in (narrow, doubled)
    }
    assert table["budget"].tolist() == table["scaled_cost"].tolist() == costs[doubled]
    assert table["seed_cost"].tolist() == costs[narrow]
    uneven = narrow.with_(widths=(7, 9))  # no omega turns 4/8 into 7/9
    table = uniform_scaling(narrow, uneven, INPUT, resources=["size"])
    row = table.iloc[0]
    scaled = ResNetSpec.from_json(row["scaled_spec"])
    assert not row["equals_reference"] and scaled == scale_spec(narrow.to_spec(), row["omega"])
    assert row["budget"] == weight_entries(build_resnet(uneven))
    assert row["scaled_cost"] == weight_entries(build_resnet(scaled)) <= row["budget"]
    larger = scale_spec(narrow.to_spec(), next_breakpoint(narrow.to_spec(), row["omega"]))
    assert weight_entries(build_resnet(larger)) > row["budget"]


def test_tiny_search_on_digits_stays_within_budget(digits):
    seed = ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=10)
    budget = spec_cost(ResNetConfig(stages=2, blocks=(1, 1), widths=(6, 12), in_channels=1), "flops", INPUT)
    config = TrainConfig(epochs=1, batch_size=64, lr=0.05, schedule="constant", augment=False)
    result = morphnet_search(
        seed,
        digits,
        config,
        resource="flops",
        budget=budget,
        iterations=1,
        relative_strength=5.0,
        gamma_threshold=0.9,
        progress=False,
    )
    kinds = [(s.iteration, s.kind) for s in result.structures]
    assert kinds == [(0, "seed"), (1, "shrunk"), (1, "expanded")]
    seed_structure, shrunk, expanded = result.structures
    assert seed_structure.config == seed and seed_structure.flops == count_flops(build_resnet(seed), INPUT)
    assert shrunk.cost < seed_structure.cost  # a strong penalty and a high threshold: channels died
    assert shrunk.flops == count_flops(build_resnet(shrunk.spec), INPUT)
    assert shrunk.cost < expanded.cost == count_flops(build_resnet(expanded.spec), INPUT) <= budget
    larger = scale_spec(shrunk.spec, next_breakpoint(shrunk.spec, expanded.omega))
    assert count_flops(build_resnet(larger), INPUT) > budget
    assert expanded.spec == scale_spec(shrunk.spec, expanded.omega)
    assert result.model.spec == result.final_spec == expanded.spec
    assert len(result.retrain_history) == 1 and "morphnet_cost" not in result.retrain_history
    assert "morphnet_cost" in result.search_histories[0]
    exported = json.loads(result.to_json())
    assert ResNetSpec.from_dict(exported["structures"][-1]["spec"]) == expanded.spec
    one_run = pd.DataFrame([{"resource": "flops", "seed": 0, "search": result.to_json()}])
    assert search_structures(one_run)["kind"].tolist() == ["seed", "shrunk", "expanded"]
    with pytest.raises(ValueError, match="budget"):
        morphnet_search(seed, digits, config, budget=10, iterations=1, progress=False)


def test_layer_widths_follow_the_convs_and_mark_removed_blocks():
    spec = ResNetConfig(stages=2, blocks=(2, 1), widths=(4, 6), in_channels=1, num_classes=10).to_spec()
    widths = layer_widths(spec)
    assert list(widths["name"]) == ["stem", "1.1.1", "1.1.2", "1.2.1", "1.2.2", "2.1.1", "2.1.2"]
    assert list(widths["width"]) == [4, 4, 4, 4, 4, 6, 6]
    model = build_resnet(spec)

    def emptied(stage, block):
        internal = [
            g.name for g in channel_groups(model) if g.kind == "internal" and (g.stage, g.block) == (stage, block)
        ]
        return layer_widths(select_channels(model, {internal[0]: []}).spec)

    assert list(emptied(1, 0)["width"]) == [4, 4, 4, 4, 4, 0, 0]  # a bare transition shortcut is left
    assert list(emptied(0, 1)["name"]) == ["stem", "1.1.1", "1.1.2", "2.1.1", "2.1.2"]  # the block is gone


def test_regularize_and_shrink_experiments_on_smoke(isolated_results):
    params = {"model": "narrow", "resource": "size", "relative_strength": 3.0, "gamma_threshold": 0.999, "seed": 0}
    regularized = run("morphnet_regularize", params, profile="smoke", progress=False)
    history, summary = regularized.history, regularized.summary
    model = regularized.model()
    full_flops, full_size = count_flops(model, INPUT), weight_entries(model)
    assert (summary["full_flops"], summary["full_size"], summary["full_cost"]) == (full_flops, full_size, full_size)
    shrunk = build_resnet(ResNetSpec.from_json(summary["alive_spec"]))
    # the last epoch's hard-thresholded costs are those of the net of its alive channels, counted independently
    assert history["morphnet_cost"].iloc[-1] == history["alive_size"].iloc[-1] == weight_entries(shrunk)
    assert history["alive_flops"].iloc[-1] == count_flops(shrunk, INPUT) < full_flops
    assert summary["lambda"] == pytest.approx(3.0 / full_size)
    assert summary["alive_flops"] == count_flops(build_resnet(ResNetSpec.from_json(summary["alive_spec"])), INPUT)
    assert len(history) == get_profile("smoke").epochs and set(history["lr"]) == {get_profile("smoke").lr}
    curves = alive_cost_curves(sweep("morphnet_regularize", [params], profile="smoke", progress=False))
    assert curves["epoch"].tolist() == [0, *history["epoch"]] and (curves["resource"] == "size").all()
    assert curves["alive_size"].tolist() == [full_size, *history["alive_size"]]
    assert curves["flops_ratio"].tolist() == [1.0, *(history["alive_flops"] / full_flops)]
    assert curves["size_ratio"].iloc[-1] == summary["final_cost"] / full_size

    keep_all = run("morphnet_shrink", {**params, "shrink_threshold": 0.0}, profile="smoke", progress=False)
    assert keep_all.summary["alive_spec"] == model.spec.to_json()
    assert keep_all.summary["shrunk_acc"] == summary["final_acc"]  # nothing removed: the same function
    keep_none = run("morphnet_shrink", {**params, "shrink_threshold": 1e3}, profile="smoke", progress=False)
    streams_only = ResNetSpec.from_json(keep_none.summary["alive_spec"])
    assert [stage.width for stage in streams_only.stages] == [1, 1, 1] and streams_only.stem_width == 1
    assert not any(block.has_main_path for stage in streams_only.stages[:1] for block in stage.blocks)
    assert keep_none.summary["size_ratio"] == weight_entries(build_resnet(streams_only)) / full_size
    with pytest.raises(ValueError, match="shrink_threshold"):
        run("morphnet_shrink", params, profile="smoke", progress=False)


def test_search_experiment_on_smoke_stays_within_the_wide_budget(isolated_results, monkeypatch):
    import thesis_lib.chapters.ch04_morphnet as ch04

    recorded = []

    def recording_search(*args, **kwargs):
        recorded.append(morphnet_search(*args, **kwargs))
        return recorded[-1]

    monkeypatch.setattr(ch04, "morphnet_search", recording_search)
    result = run("morphnet_search", {"resource": "flops", "iterations": 1, "seed": 1}, profile="smoke", progress=False)
    smoke = get_profile("smoke")
    wide = build_resnet(smoke.resnet("wide", 1, 10))
    assert result.summary["budget"] == count_flops(wide, INPUT)
    structures = search_structures(pd.DataFrame([{**result.params, **result.summary}]))
    assert structures["kind"].tolist() == ["seed", "shrunk", "expanded"]
    assert structures["cost"].iloc[0] == count_flops(build_resnet(smoke.resnet("narrow", 1, 10)), INPUT)
    assert result.summary["found_flops"] == structures["flops"].iloc[-1] <= result.summary["budget"]
    assert result.model().spec.to_json() == json.dumps(json.loads(structures["spec"].iloc[-1]), sort_keys=True)
    assert len(result.history) == smoke.epochs and "morphnet_cost" not in result.history
    # every phase's epoch and hook times, read from the histories the trainers returned
    phases = [*recorded[0].search_histories, recorded[0].retrain_history]
    assert len(phases) == 2 and recorded[0].retrain_history.equals(result.history)
    assert result.summary["retrain_time"] == pytest.approx(
        (result.history["epoch_time"] + result.history["hook_time"]).sum()
    )
    assert result.summary["total_time"] == pytest.approx(sum((h["epoch_time"] + h["hook_time"]).sum() for h in phases))
    assert result.summary["total_time"] > result.summary["retrain_time"] > 0
    # every phase's executed FLOPs, epochs and steps, summed from the same histories
    assert result.summary["training_flops"] == sum(h["train_flops"].sum() + h["hook_flops"].sum() for h in phases)
    assert result.summary["epochs"] == sum(len(h) for h in phases) == 2 * smoke.epochs
    assert result.summary["optimizer_steps"] == sum(h["steps"].iloc[-1] for h in phases)
    assert result.summary["training_flops"] > result.summary["retrain_training_flops"] > 0


def test_figure_4_1_runs_include_an_unregularized_control_and_are_tested_against_it():
    from thesis_lib.chapters.ch04_morphnet import CONTROL, morphnet_plan, regularizer_grid, regularizer_tests

    plan = morphnet_plan("quick")
    grid = regularizer_grid(plan, seeds=(0, 1))
    assert [(p["resource"], p["relative_strength"], p["seed"]) for p in grid] == [
        ("flops", 3.0, 0),
        ("flops", 3.0, 1),
        ("size", 3.0, 0),
        ("size", 3.0, 1),
        ("flops", 0.0, 0),
        ("flops", 0.0, 1),
    ]
    rows = []
    for resource, strength, flops, size, acc in [
        ("flops", 3.0, [0.4, 0.5, 0.45], [0.6, 0.7, 0.65], [0.6, 0.7, 0.65]),
        ("size", 3.0, [0.7, 0.8, 0.75], [0.3, 0.35, 0.4], [0.8, 0.85, 0.9]),
        ("flops", 0.0, [0.98, 0.99, 1.0], [0.97, 0.99, 1.0], [0.97, 0.98, 0.99]),
    ]:
        rows += [
            {
                "resource": resource,
                "relative_strength": strength,
                "flops_ratio": f,
                "size_ratio": s,
                "final_acc": a,
                "total_time": 10.0 + i,
            }
            for i, (f, s, a) in enumerate(zip(flops, size, acc))
        ]
    tests = regularizer_tests(timed_alone(pd.DataFrame(rows)))
    assert tests["comparison"].tolist() == [
        "alive flops / full, flops regularizer vs control",
        "final accuracy, flops regularizer vs control",
        "training time, flops regularizer vs control",
        "alive size / full, size regularizer vs control",
        "final accuracy, size regularizer vs control",
        "training time, size regularizer vs control",
    ]
    assert tests["mean_b"].iloc[0] == pytest.approx(0.99) and tests["mean_a"].iloc[3] == pytest.approx(0.35)
    assert tests.loc[2, "p"] == pytest.approx(1.0)  # equal times in both groups
    assert {"n_a", "n_b", "t", "df", "p", "p_holm"} <= set(tests.columns)
    assert CONTROL == "none"
    with pytest.raises(ValueError, match="no control runs"):
        regularizer_tests(timed_alone(pd.DataFrame(rows[:6])))


def test_the_shrunk_structure_is_retrained_from_scratch_with_the_profiles_schedule(isolated_results):
    params = {"model": "wide", "resource": "flops", "relative_strength": 10.0, "shrink_threshold": 1e-2, "seed": 1}
    shrunk = run("morphnet_shrink", params, profile="smoke", progress=False)
    retrained = run("morphnet_shrink_retrain", params, profile="smoke", progress=False)
    assert retrained.model().spec == shrunk.model().spec  # the structure step 2 found, nothing else
    assert retrained.summary["final_params"] == shrunk.summary["alive_params"]
    assert retrained.summary["shrunk_acc"] == shrunk.summary["shrunk_acc"]
    assert retrained.history["lr"].tolist() == pytest.approx([0.05, 0.005])  # smoke's step schedule, not constant


def test_alive_cost_recorder_records_both_resources_and_follows_a_new_model():
    # stage 1, one block, width 4, 1 -> 3 classes on 8x8: FLOPs (2 per MAC) stem 2 x 64 x 9 x 1 x 4 = 4,608,
    # conv1 and conv2 2 x 64 x 9 x 4 x 4 = 18,432 each, classifier 2 x 4 x 3 = 24: 41,496;
    # weights 36 + 144 + 144 + 12 = 336.
    config = ResNetConfig(stages=1, blocks=(1,), widths=(4,), in_channels=1, num_classes=3)
    model = build_resnet(config)
    trainer = Trainer(
        model, toy_data(), TrainConfig(epochs=1, batch_size=16, schedule="constant", augment=False), progress=False
    )
    recorder, record = AliveCostRecorder(gamma_threshold=1e-2), {}
    recorder.on_epoch_end(trainer, record)
    assert record == {"alive_flops": 41_496, "alive_size": 336}
    with torch.no_grad():  # the block's internal channels die: its main path no longer counts
        model.stages[0].blocks[0].bn1.weight.zero_()
    recorder.on_epoch_end(trainer, record)
    assert record == {"alive_flops": 4_608 + 24, "alive_size": 36 + 12}
    # after surgery the trainer holds another net: width 2, every gamma 1:
    # 2 x 64 x 9 x 2 + 2 x (2 x 64 x 9 x 4) + 2 x 2 x 3 = 11,532 FLOPs; 18 + 36 + 36 + 6 = 96 weights
    trainer.model = build_resnet(config.with_(widths=(2,)))
    recorder.on_epoch_end(trainer, record)
    assert record == {"alive_flops": 11_532, "alive_size": 96}


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_sweeps_list_the_runs_of_the_former_planned_runs(profile):
    from thesis_lib.chapters import chapter
    from thesis_lib.chapters.ch04_morphnet import (
        morphnet_plan,
        regularizer_grid,
        search_grid,
        strength_threshold_grid,
        sweeps,
        wide_baseline_grid,
    )

    seeds = get_profile(profile).seeds
    shrink = strength_threshold_grid(profile)  # figure 4.2's grid on FLOPs, the notebook's default
    former = [
        *(("morphnet_regularize", p) for p in regularizer_grid(morphnet_plan(profile), seeds)),
        *(("morphnet_shrink", p) for p in shrink),
        *(("morphnet_shrink_retrain", p) for p in shrink),
        *(("morphnet_search", p) for p in search_grid(profile)),
        *(("baseline", p) for p in wide_baseline_grid(profile)),
    ]
    known = sweeps(profile)
    assert list(known) == ["regularize", "shrink", "shrink_retrain", "search", "baseline"]
    assert [(experiment, params) for experiment, grid in known.values() for params in grid] == former
    planned = chapter("04_morphnet").planned_runs(profile)
    assert [(r.experiment, dict(r.params)) for r in planned] == former
    assert {r.profile.name for r in planned} == {profile}
    if profile == "smoke":  # 3 points x 2 seeds; 2 strengths x 1 threshold, twice; 2 resources x 2 seeds; 2 seeds
        assert [len(grid) for _, grid in known.values()] == [6, 2, 2, 4, 2]
    size_grid = sweeps(profile, "size")["shrink"][1]
    assert size_grid == strength_threshold_grid(profile, "size") and {p["resource"] for p in size_grid} == {"size"}


def test_morphnet_plan_names_the_profiles_that_have_one():
    from dataclasses import replace

    from thesis_lib.chapters.ch04_morphnet import MORPHNET_PLANS, morphnet_plan

    assert morphnet_plan("quick") is MORPHNET_PLANS["quick"]
    with pytest.raises(ValueError, match="no chapter 4 plan"):
        morphnet_plan(replace(get_profile("smoke"), name="other"))


def test_strength_threshold_table_joins_the_shrunk_and_retrained_grid_and_names_the_smallest_net():
    from thesis_lib.chapters.ch04_morphnet import GRID_COLUMNS, smallest_net_sentence, strength_threshold_table

    points = [{"relative_strength": s, "shrink_threshold": t} for s in (1.0, 3.0) for t in (1e-2, 1e-1)]
    shrunk = pd.DataFrame(
        [
            {
                **p,
                "flops_ratio": r,
                "size_ratio": 0.5,
                "alive_params": 10,
                "alive_stage_widths": "[1]",
                "alive_layer_widths": "[1]",
                "shrunk_acc": a,
                "final_acc": 0.9,
            }
            for p, r, a in zip(points, [0.8, 0.6, 0.4, 0.2], [0.7, 0.6, 0.5, 0.25])
        ]
    )
    retrained = pd.DataFrame([{**p, "final_acc": a} for p, a in zip(points, [0.95, 0.94, 0.93, 0.875])])
    grid = strength_threshold_table(shrunk, retrained, "flops")
    assert list(grid.columns) == GRID_COLUMNS
    assert grid["cost / full"].tolist() == [0.8, 0.6, 0.4, 0.2]
    assert grid["retrained_acc"].tolist() == [0.95, 0.94, 0.93, 0.875]
    assert smallest_net_sentence(grid, "flops") == (
        "Smallest shrunk net: relative strength 3, threshold 0.1: 20.0% of the full net's FLOPs, test accuracy "
        "0.250 before retraining, 0.875 retrained from scratch (the regularized net itself: 0.900)."
    )
    with pytest.raises(ValueError, match="different grid points"):
        strength_threshold_table(shrunk, retrained.iloc[::-1], "flops")


def test_search_groups_and_tests_name_the_wide_baseline_as_uniform_scaling_when_it_is():
    from thesis_lib.chapters.ch04_morphnet import (
        SEARCH_ORDER,
        narrow_to_wide_scaling,
        search_groups,
        search_tests,
        uniform_scaling_report,
    )

    uniform = narrow_to_wide_scaling("smoke")
    assert uniform["equals_reference"].all()  # the narrow net scaled by 2 is the wide net
    report = uniform_scaling_report(uniform)
    assert report.splitlines()[0].split()[:2] == ["resource", "budget"]
    assert report.endswith("also the uniform-scaling comparison at equal cost.")
    assert "equal cost" not in uniform_scaling_report(uniform.assign(equals_reference=False))
    runs = [
        {"final_acc": 0.8 + 0.01 * i, "total_time": 10.0 + i, "final_flops": 2e6, "final_params": 3e3} for i in range(3)
    ]
    baseline = timed_alone(pd.DataFrame(runs))
    search = timed_alone(
        pd.DataFrame([{**run, "resource": resource} for resource in ("flops", "size") for run in runs])
    )
    groups = search_groups(baseline, search)
    assert groups["net"].drop_duplicates().tolist() == SEARCH_ORDER
    assert groups["MFLOPs"].eq(2.0).all() and groups["parameters (thousands)"].eq(3.0).all()
    tests = search_tests(groups, uniform)
    assert tests["comparison"].str.contains("wide baseline \\(= uniform scaling\\)").all()
    assert len(tests) == 4 and "p_holm" in tests


def test_fig_4_2_is_bright_where_good_in_every_panel_and_writes_decimal_commas():
    """Review: in fig. 4.2 dark meant good in (a) (little cost left) and bad in (b), and the cells' numbers
    had decimal points in a German figure."""
    from thesis_lib.chapters.ch04_morphnet import strength_threshold_figure

    grid = pd.DataFrame(
        {
            "relative_strength": [3.0, 10.0],
            "shrink_threshold": [0.01, 0.01],
            "cost / full": [0.9, 0.2],
            "shrunk_acc": [0.41, 0.30],
            "retrained_acc": [0.24, 0.24],
        }
    )
    fig = strength_threshold_figure(grid, "flops", ("smoke", "digits"))
    cost, shrunk = fig.axes[0], fig.axes[1]  # the three heat maps, then their colour bars
    assert [t.get_text() for t in cost.texts] == ["0,90", "0,20"]
    assert [t.get_text() for t in shrunk.texts] == ["0,41", "0,30"]

    def bright(ax, value):
        mesh = ax.collections[0]
        return sum(mesh.cmap(mesh.norm(value))[:3])

    assert bright(cost, 0.2) > bright(cost, 0.9)  # less cost left: brighter
    assert bright(shrunk, 0.41) > bright(shrunk, 0.30)  # more accuracy: brighter
    plt.close(fig)
