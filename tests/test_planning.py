"""`python -m thesis_lib plan`: the runs the notebooks would train, their phases and epochs, the calibration
and its cache, and the command's output and errors."""

import json
import math
from dataclasses import dataclass, replace

import pytest

from thesis_lib import planning
from thesis_lib.chapters import ch03_baseline
from thesis_lib.cli import main
from thesis_lib.experiments import (
    PROFILES,
    Phase,
    RunOutput,
    experiment,
    get_profile,
    registered_experiments,
    run,
    summarize_training,
    sweep,
)
from thesis_lib.models import build_resnet, count_parameters
from thesis_lib.planning import (
    Calibration,
    calibrate,
    calibration_id,
    list_runs,
    notebook_table,
    phase_seconds,
    run_table,
    split_sizes,
    step_key,
    time_step,
)
from thesis_lib.training import seeded_model

SMOKE, FULL = get_profile("smoke"), get_profile("full")


def plan_of(name, params, profile):
    return registered_experiments()[name].run_plan(profile, params)


def test_a_chapters_listing_is_what_its_sweep_trains_and_turns_cached_after_it(isolated_results):
    listed = list_runs("smoke", only=["03"])
    assert [entry.notebook for entry in listed] == ["03_baseline"] * 8
    assert {entry.experiment for entry in listed} == {"baseline"}
    assert [entry.plan.epochs for entry in listed] == [2] * 8 and not any(entry.cached for entry in listed)
    result = sweep("baseline", ch03_baseline.baseline_grid("smoke"), profile="smoke", progress=False)
    assert {r.path for r in result.runs} == {entry.folder for entry in listed}
    assert all(entry.cached for entry in list_runs("smoke", only=["03"]))


def test_a_run_two_notebooks_ask_for_counts_for_the_first_selected_one_and_names_the_others():
    everything = list_runs("smoke")
    wide = [
        entry
        for entry in everything
        if entry.experiment == "baseline" and entry.params == {"model": "wide", "schedule": "step", "seed": 0}
    ]
    assert [entry.profile.dataset for entry in wide] == ["digits", "fashion_mnist_14"]  # chapter 8: another dataset
    fp32 = wide[:1]
    assert fp32[0].notebook == "03_baseline" and wide[1].notebook == "08_evaluation"
    assert fp32[0].shared_with == (
        "04_morphnet",
        "05_prunetrain",
        "06_1_batch_size",
        "06_2_net2net",
        "06_3_prunetrain_net2net",
        "06_4_additive",
        "07_comparison",
    )
    alone = list_runs("smoke", only=["06_4"])
    assert len(alone) == 22 and {entry.notebook for entry in alone} == {"06_4_additive"}
    assert sum(entry.notebook == "06_4_additive" for entry in everything) == 18  # 4 are 03's and 05's
    assert len({entry.folder for entry in everything}) == len(everything) == 93


def test_only_keeps_the_notebooks_of_every_prefix_in_thesis_order():
    notebooks = {entry.notebook for entry in list_runs("smoke", only=["06_2", "04"])}
    assert notebooks == {"04_morphnet", "06_2_net2net"}
    assert [c.notebook for c in planning.select_chapters(["06"])] == [
        "06_1_batch_size",
        "06_2_net2net",
        "06_3_prunetrain_net2net",
        "06_4_additive",
    ]


def test_an_unknown_prefix_or_profile_is_a_clear_error():
    with pytest.raises(ValueError, match=r"no notebook starts with \['99'\]; the notebooks are \['03_baseline'"):
        list_runs("smoke", only=["03", "99"])
    with pytest.raises(ValueError, match="unknown profile 'huge'; use one of"):
        list_runs("huge")


def test_morphnet_search_plans_iterations_times_epochs_plus_the_retraining():
    plan = plan_of("morphnet_search", {"seed": 0}, FULL)  # full: 3 iterations of 180 epochs, then 180
    assert [(phase.description, phase.epochs) for phase in plan.phases] == [
        ("regularize 1", 180),
        ("regularize 2", 180),
        ("regularize 3", 180),
        ("retrain", 180),
    ]
    assert plan.epochs == 720
    assert planning.net_summary(plan.phases[0].model) == "8/16/32 x 5/5/5"  # the narrow seed net, exactly
    assert not plan.phases[0].bound and all(phase.bound for phase in plan.phases[1:])
    assert plan.phases[0].train.schedule == "constant" and not plan.phases[0].train.bn_weight_decay
    assert plan.phases[-1].train.schedule == "step" and plan.phases[-1].train.milestones == (93, 150)
    assert plan_of("morphnet_search", {"iterations": 2, "seed": 0}, "smoke").epochs == 2 * 2 + 2


def test_a_shrink_trains_nothing_and_its_retraining_loads_it_which_loads_the_regularized_run():
    params = {"relative_strength": 3.0, "shrink_threshold": 0.05, "seed": 0}
    shrink = plan_of("morphnet_shrink", params, "smoke")
    assert shrink.phases == () and shrink.epochs == 0
    assert [name for name, _ in shrink.requires] == ["morphnet_regularize"]
    assert "shrink_threshold" not in shrink.requires[0][1] and shrink.requires[0][1]["relative_strength"] == 3.0
    retrain = plan_of("morphnet_shrink_retrain", params, "smoke")
    assert [name for name, _ in retrain.requires] == ["morphnet_shrink"] and retrain.epochs == 2
    chain = planning._with_prerequisites(planning.PlannedRun("morphnet_shrink_retrain", params, SMOKE))
    assert [run.experiment for run, _ in chain] == ["morphnet_regularize", "morphnet_shrink", "morphnet_shrink_retrain"]


def test_prunetrain_is_planned_with_its_unpruned_net_at_its_batch_and_says_it_is_an_upper_bound():
    plan = plan_of("prunetrain", {"batch_size": 256, "seed": 0}, FULL)
    (phase,) = plan.phases
    assert phase.epochs == 180 and phase.train.batch_size == 256 and "upper bound" in phase.bound
    assert count_parameters(build_resnet(phase.model)) == 487_386  # the wide ResNet-32 of the thesis
    adapted = plan_of("prunetrain_batch", {"adapt": True, "seed": 0}, FULL).phases[0]
    assert "batch (which grows)" in adapted.bound


def test_net2net_grow_plans_the_narrow_net_then_the_grown_one_as_the_run_trains_them(isolated_results):
    plan = plan_of("net2net_grow", {"operation": "widen_all", "seed": 0}, FULL)
    assert [(p.description, p.epochs, planning.net_summary(p.model)) for p in plan.phases] == [
        ("narrow net", 60, "8/16/32 x 5/5/5"),
        ("grown net", 120, "16/32/64 x 5/5/5"),
    ]
    deepened = plan_of("net2net_grow", {"operation": "deepen", "init": "scratch", "seed": 0}, FULL)
    assert [(p.epochs, planning.net_summary(p.model)) for p in deepened.phases] == [(180, "8/16/32 x 5/5/6")]
    smoke = plan_of("net2net_grow", {"operation": "widen_all", "seed": 0}, SMOKE)  # grows after epoch 1 of 2
    history = run("net2net_grow", {"operation": "widen_all", "seed": 0}, profile="smoke", progress=False).history
    planned = [count_parameters(build_resnet(phase.model)) for phase in smoke.phases for _ in range(phase.epochs)]
    assert history["params"].tolist() == planned and planned[0] < planned[1]


@dataclass(frozen=True)
class PlainParams:
    model: str = "narrow"
    seed: int = 0


@experiment("plain_plan_test", params=PlainParams, train_config=True)
def plain(context):
    """A single-phase experiment without a plan of its own."""
    trainer = context.trainer(seeded_model(context.resnet_config(context.params["model"]), 0), context.train_config())
    history = trainer.fit()
    return RunOutput(history, summarize_training(history), trainer.model)


def test_an_experiment_without_a_plan_trains_one_phase_of_its_model_and_training_params():
    plan = plan_of("plain_plan_test", {"batch_size": 32, "epochs": 3, "milestones": [1]}, SMOKE)
    (phase,) = plan.phases
    assert (phase.epochs, phase.train.batch_size, phase.train.milestones) == (3, 32, (1,))
    assert planning.net_summary(phase.model) == "8/16/32 x 1/1/1" and phase.bound == "" and plan.requires == ()


def test_a_phase_cannot_train_more_epochs_than_its_training_config():
    train = SMOKE.train_config()
    model = SMOKE.resnet("wide", 1, 10)
    assert Phase("all", model, train).epochs == 2
    with pytest.raises(ValueError, match=r"phase 'too long': epochs must lie in 1\.\.2"):
        Phase("too long", model, train, epochs=3)


def test_a_phase_takes_epochs_times_steps_evaluation_and_the_per_epoch_rest_plus_the_first_epochs_extra():
    phase = plan_of("baseline", {"seed": 0}, SMOKE).phases[0]  # 256 training images at batch 64, 128 test
    assert split_sizes(SMOKE) == (256, 128) and split_sizes(FULL) == (50_000, 10_000)
    times = {"step": 0.01, "evaluation": 0.02, "epoch_rest": 0.005, "first_epoch_extra": 0.3}
    assert phase_seconds(phase, SMOKE, times) == pytest.approx(2 * (4 * 0.01 + 1 * 0.02 + 0.005) + 0.3)
    full = plan_of("baseline", {"seed": 0}, FULL).phases[0]  # 391 steps of 128, 10 evaluation batches of 1000
    assert phase_seconds(full, FULL, times) == pytest.approx(180 * (391 * 0.01 + 10 * 0.02 + 0.005) + 0.3)
    assert step_key(full, FULL).batch_size == 128 and step_key(full, FULL).eval_batch == 1000


def test_compile_static_on_cuda_compiles_the_phases_whose_net_keeps_its_shape():
    default = replace(FULL, device="cuda")  # the full profile as it resolves on a GPU (no GPU needed to plan)
    assert not any(step_key(phase, default).compiled for phase in plan_of("baseline", {"seed": 0}, default).phases)
    cuda = replace(default, cuda_compile="static")
    runs = [
        ("baseline", {"seed": 0}),
        ("morphnet_regularize", {"seed": 0}),
        ("prunetrain", {"seed": 0}),
        ("net2net_grow", {"operation": "deepen"}),
        ("net2net_grow", {"operation": "deepen", "init": "scratch"}),
        ("prune_grow", {"seed": 0}),
        ("prune_grow_retrain", {"seed": 0}),
    ]
    compiled = [
        [step_key(phase, cuda).compiled for phase in plan_of(name, params, cuda).phases] for name, params in runs
    ]
    assert compiled == [[True], [True], [False], [False, False], [True], [False], [True]]
    key = step_key(plan_of("net2net_grow", {"operation": "deepen"}, cuda).phases[0], cuda)
    assert (key.compiled, key.precision, key.channels_last, key.threads) == (False, "fp32", False, "-")
    fast = replace(get_profile("full-fast"), device="cuda")
    key = step_key(plan_of("net2net_grow", {"operation": "deepen"}, fast).phases[0], fast)
    assert (key.compiled, key.precision, key.channels_last) == (False, "bf16", True)
    assert not any(step_key(phase, FULL).compiled for phase in plan_of("baseline", {"seed": 0}, FULL).phases)


def test_the_batch_is_capped_at_the_training_set_as_the_loader_cuts_it():
    large = plan_of("baseline", {"batch_size": 512, "seed": 0}, SMOKE).phases[0]
    assert step_key(large, SMOKE).batch_size == 256  # one step of all 256 images
    assert math.ceil(split_sizes(SMOKE)[0] / step_key(large, SMOKE).batch_size) == 1


def test_calibration_times_each_configuration_once_and_then_reads_the_file(isolated_results):
    calls = []

    def counting_timer(key, steps, scratch):
        calls.append(key)
        return time_step(key, steps, scratch)

    keys = [step_key(phase, entry.profile) for entry in list_runs("smoke", only=["03"]) for phase in entry.plan.phases]
    assert len(set(keys)) == 2  # the wide and the narrow net at batch 64
    first = calibrate(keys, SMOKE, steps=1, timer=counting_timer)
    assert len(calls) == 2 and (first.measured, first.cached) == (2, 0)
    assert all(
        times["step"] > 0 and times["evaluation"] > 0 and times["epoch_rest"] >= 0 and times["first_epoch_extra"] >= 0
        for times in first.times.values()
    )
    second = calibrate(keys, SMOKE, steps=1, timer=counting_timer)
    assert len(calls) == 2 and (second.measured, second.cached) == (0, 2)
    assert {key: times["step"] for key, times in second.times.items()} == {
        key: times["step"] for key, times in first.times.items()
    }
    stored = json.loads(first.path.read_text())
    assert first.path == isolated_results / "results" / "smoke" / ".calibration.json"
    assert list(stored) == [first.device] and set(stored[first.device]) == {calibration_id(key, 1) for key in keys}
    assert not list(first.path.parent.glob(".calibration-*"))  # the scratch checkpoints are gone
    third = calibrate(keys, SMOKE, steps=2, timer=counting_timer)  # another step count: timed again
    assert len(calls) == 4 and (third.measured, third.cached) == (2, 0)


def test_an_unreadable_calibration_file_is_reported_and_timed_again(isolated_results):
    keys = [step_key(plan_of("baseline", {"seed": 0}, SMOKE).phases[0], SMOKE)]
    path = planning.calibration_path(SMOKE)
    path.parent.mkdir(parents=True)
    path.write_text("{half a file")
    said = []
    fake = {"step": 0.5, "evaluation": 0.1, "epoch_rest": 0.0, "first_epoch_extra": 0.0}
    result = calibrate(keys, SMOKE, timer=lambda key, steps, scratch: dict(fake), report=said.append)
    assert "cannot be read" in said[0] and result.measured == 1
    assert json.loads(path.read_text())[result.device][calibration_id(keys[0], planning.DEFAULT_STEPS)]["step"] == 0.5


def test_the_notebook_table_sums_runs_epochs_and_time_per_notebook(isolated_results):
    runs = list_runs("smoke", only=["03", "06_2"])
    fake = {"step": 0.5, "evaluation": 0.0, "epoch_rest": 0.0, "first_epoch_extra": 0.0}
    keys = {step_key(phase, entry.profile) for entry in runs for phase in entry.plan.phases}
    table = run_table(runs, Calibration("test device", isolated_results, {key: fake for key in keys}, 0, len(keys)))
    summary = notebook_table(table, planning.select_chapters(["03", "06_2"]), {"03_baseline": 0, "06_2_net2net": 4})
    assert summary["notebook"].tolist() == ["03_baseline", "06_2_net2net", "total"]
    assert summary["runs"].tolist() == [8, 12, 20] and summary["shared"].tolist() == [0, 4, 4]
    assert summary["epochs"].tolist() == [16, 24, 40]
    # every phase on smoke: 4 steps of 0.5 s per epoch, so 2 s per epoch, 40 epochs, 80 s
    assert summary["minutes"].tolist() == pytest.approx([32 / 60, 48 / 60, 80 / 60])
    assert summary["minutes_left"].tolist() == summary["minutes"].tolist()


def test_plan_prints_every_notebook_and_the_total_without_calibrating(isolated_results, capsys):
    assert main(["plan", "--profile", "smoke", "--no-calibrate"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert (
        lines[0] == f"plan for profile 'smoke' (digits, fashion_mnist_14): 93 runs, 0 cached in "
        f"{isolated_results / 'results' / 'smoke'}"
    )
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:12]}
    assert rows["03_baseline"] == ["8", "0", "0", "16"] and rows["07_comparison"] == ["0", "16", "0", "0"]
    assert rows["total"] == ["93", "36", "0", "222"]
    assert "upper bounds or approximations: 44 runs" in out and "calibrated" not in out
    assert not (isolated_results / "results" / "smoke" / ".calibration.json").exists()


def test_plan_calibrates_once_and_lists_every_run(isolated_results, capsys):
    assert main(["plan", "--profile", "smoke", "--only", "03", "--steps", "1", "--runs"]) == 0
    captured = capsys.readouterr()
    assert (
        captured.err.count("calibrating ") == 2
        and "16/32/64 x 1/1/1 on 1x8x8 to 10 classes, batch 64, fp32, sgd" in captured.err
    )
    assert "2 step configurations, 2 timed now, 0 from" in captured.out
    assert "estimated training time on this device, one run at a time:" in captured.out
    header = next(line for line in captured.out.splitlines() if line.split()[:2] == ["notebook", "experiment"])
    assert header.split() == [
        "notebook",
        "experiment",
        "epochs",
        "net",
        "batch",
        "cached",
        "seconds",
        "bound",
        "shared_with",
        "params",
    ]
    listed = [line for line in captured.out.splitlines() if line.startswith("03_baseline ") and "baseline" in line[12:]]
    assert len(listed) == 8
    assert main(["plan", "--profile", "smoke", "--only", "03", "--steps", "1"]) == 0
    captured = capsys.readouterr()
    assert "calibrating" not in captured.err and "2 step configurations, 0 timed now, 2 from" in captured.out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["plan", "--profile", "smoke", "--only", "99"], "error: no notebook starts with ['99']"),
        (["plan", "--profile", "smoke", "--steps", "0"], "error: calibration needs at least 1 timed step, got 0"),
    ],
)
def test_a_bad_prefix_or_step_count_is_one_message_and_exit_2(argv, message, isolated_results, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(message)


def test_an_unknown_profile_is_a_usage_error(isolated_results, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--profile", "huge"])
    assert exit_info.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err
    assert sorted(PROFILES) == ["full", "full-fast", "quick", "smoke"]
