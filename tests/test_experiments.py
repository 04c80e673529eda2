"""Run cache: a finished run loads without training, a killed one resumes, a corrupt one is reported."""

import json
import os
from dataclasses import dataclass, replace

import pytest

from thesis_lib import experiments
from thesis_lib.data import load_dataset
from thesis_lib.experiments import (
    PROFILES,
    CorruptRunError,
    RunOutput,
    experiment,
    get_profile,
    run,
    run_dir_for,
    seed_grid,
    sweep,
)
from thesis_lib.training import seeded_model

from helpers import KillAfter, Killed

CALLS = []
KILL = {"after_epoch": None}  # set: the run is killed after that epoch's checkpoint (helpers.KillAfter)


@dataclass(frozen=True)
class CountingParams:
    seed: int = 0
    tag: str | None = None
    x: float | None = None


@experiment("counting_test", params=CountingParams, train_config=True)
def counting(context):
    """Trains the smoke net for the profile's epochs and counts how often it was really called."""
    CALLS.append(dict(context.params))
    seed = context.params["seed"]
    overrides = {key: value for key, value in context.params.items() if key not in ("seed", "tag", "x")}
    model = seeded_model(context.resnet_config("narrow"), seed)
    kill_after = 10**9 if KILL["after_epoch"] is None else KILL["after_epoch"]  # the resumed run has the hook too
    trainer = context.trainer(model, context.train_config(seed=seed, **overrides), hooks=[KillAfter(kill_after)])
    history = trainer.fit()
    return RunOutput(history, experiments.summarize_training(history), trainer.model)


def test_finished_run_loads_without_training(isolated_results):
    CALLS.clear()
    first = run("counting_test", {"seed": 0}, profile="smoke", progress=False)
    second = run("counting_test", {"seed": 0}, profile="smoke", progress=False)
    assert len(CALLS) == 1
    assert not first.loaded_from_cache and second.loaded_from_cache
    assert second.summary == first.summary
    assert list(second.history["test_acc"]) == pytest.approx(list(first.history["test_acc"]))
    assert second.model().spec == first.model().spec
    assert (first.path / "DONE").exists() and not list(first.path.glob("checkpoint_*.pt"))


def test_killed_run_resumes_from_its_checkpoint(isolated_results):
    uninterrupted = run("counting_test", {"seed": 1}, profile="smoke", progress=False)
    CALLS.clear()
    KILL["after_epoch"] = 1
    try:
        with pytest.raises(Killed):
            run("counting_test", {"seed": 1, "tag": "killed"}, profile="smoke", progress=False)
    finally:
        KILL["after_epoch"] = None
    path = run_dir_for("counting_test", {"seed": 1, "tag": "killed"}, "smoke")
    assert (path / "checkpoint_train.pt").exists() and not (path / "DONE").exists()
    result = run("counting_test", {"seed": 1, "tag": "killed"}, profile="smoke", progress=False)
    assert result.path == path and len(result.history) == get_profile("smoke").epochs
    assert list(result.history["train_loss"]) == list(uninterrupted.history["train_loss"])
    assert list(result.history["test_acc"]) == list(uninterrupted.history["test_acc"])


def test_corrupt_finished_run_is_reported_not_retrained(isolated_results):
    CALLS.clear()
    result = run("counting_test", {"seed": 2}, profile="smoke", progress=False)
    (result.path / "history.csv").write_text("")
    with pytest.raises(CorruptRunError, match="delete that folder"):
        run("counting_test", {"seed": 2}, profile="smoke", progress=False)
    assert len(CALLS) == 1


def test_sweep_returns_tidy_frames(isolated_results):
    grid = seed_grid("smoke", lr=[0.05])
    assert grid == [{"lr": 0.05, "seed": s} for s in PROFILES["smoke"].seeds]
    result = sweep("counting_test", grid, profile="smoke", progress=False)
    assert list(result.summary["seed"]) == list(PROFILES["smoke"].seeds)
    assert {"final_acc", "mean_epoch_time", "lr"} <= set(result.summary.columns)
    assert len(result.history) == len(grid) * PROFILES["smoke"].epochs


def test_config_is_written_first_and_hash_depends_on_params(isolated_results):
    a = run_dir_for("counting_test", {"seed": 0}, "smoke")
    b = run_dir_for("counting_test", {"seed": 3}, "smoke")
    assert a != b and a.parent == b.parent
    result = run("counting_test", {"seed": 0}, profile="smoke", progress=False)
    assert json.loads((result.path / "config.json").read_text())["params"] == {"seed": 0}


def test_unknown_profile_experiment_and_model_are_clear_errors(isolated_results):
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_profile("huge")
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        run("nope", {}, profile="smoke")
    with pytest.raises(ValueError, match="param 'model' of experiment 'baseline' must be 'wide' \\| 'narrow'"):
        run("baseline", {"model": "medium"}, profile="smoke", progress=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="param 'model'.*got <object"):
        run("baseline", {"model": object()}, profile="smoke")


def test_bad_sweep_axes_and_training_params_are_clear_errors(isolated_results):
    with pytest.raises(ValueError, match="needs a list"):
        seed_grid("smoke", model="wide")
    with pytest.raises(ValueError, match="unknown training parameter"):
        get_profile("smoke").train_config(learning_rate=0.1)
    with pytest.raises(ValueError, match="unknown model 'medium'"):
        get_profile("smoke").resnet("medium", 1, 10)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"seed": "abc"}, "param 'seed' of experiment 'baseline' must be int, got 'abc'"),
        ({"seed": 1.5}, "param 'seed' of experiment 'baseline' must be int, got 1.5"),
        ({"epochs": 2.5}, "param 'epochs' of experiment 'baseline' must be int, got 2.5"),
        ({"model": 3}, "param 'model' of experiment 'baseline' must be 'wide' \\| 'narrow' \\| ResNetConfig, got 3"),
        ({"milestones": 5}, "param 'milestones' of experiment 'baseline' must be list of int, got 5"),
        ({"seeds": 0}, r"unknown param\(s\) \['seeds'\] of experiment 'baseline'"),
        ({"epochs": 1, "milestones": [1]}, r"milestones \(1,\) must lie below epochs \(1\)"),
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ([("seed", 0)], "params of 'baseline' must be a mapping"),
    ],
)
def test_bad_params_are_rejected_before_anything_is_written(isolated_results, params, message):
    with pytest.raises(ValueError, match=message):
        run("baseline", params, profile="smoke", progress=False)
    assert not list(isolated_results.rglob("config.json"))


def test_missing_required_params_are_named(isolated_results):
    with pytest.raises(ValueError, match=r"needs the param\(s\) \['operation'\]"):
        run("net2net_grow", {"seed": 0}, profile="smoke", progress=False)


def test_defaults_are_filled_in_before_hashing(isolated_results):
    spellings = [{}, {"seed": 0}, {"seed": 0.0, "model": "wide", "schedule": "step"}, {"ghost_batch": None}]
    folders = {run_dir_for("baseline", params, "smoke") for params in spellings}
    assert len(folders) == 1
    first = run("baseline", {}, profile="smoke", progress=False)
    again = run("baseline", {"seed": 0, "model": "wide", "schedule": "step"}, profile="smoke", progress=False)
    assert not first.loaded_from_cache and again.loaded_from_cache and again.path == first.path == folders.pop()
    assert first.params == {"model": "wide", "schedule": "step", "seed": 0}
    assert [p.name for p in (isolated_results / "results" / "smoke" / "baseline").iterdir() if p.is_dir()] == [
        first.path.name
    ]


def test_plan_defaults_follow_the_profile(isolated_results):
    from thesis_lib.chapters.ch05_prunetrain import prunetrain_plan

    quick = experiments.resolve_params("prunetrain", {}, "quick")
    plan = prunetrain_plan("quick")
    assert quick == {"lasso_ratio": plan.lasso_ratio, "threshold": plan.threshold, "interval": plan.interval, "seed": 0}
    assert experiments.resolve_params("prunetrain", {}, "full")["threshold"] == 1e-4
    grow = experiments.resolve_params("net2net_grow", {"operation": "deepen"}, "quick")
    assert grow["noise"] == 0.0 and grow["grow_epoch"] == 3
    assert experiments.resolve_params("net2net_grow", {"operation": "widen_all"}, "quick")["noise"] == 0.05
    assert "scaling" not in experiments.resolve_params("prunetrain_batch", {"adapt": False}, "quick")
    assert experiments.resolve_params("prunetrain_batch", {"adapt": True}, "quick")["scaling"] == "linear"


def test_a_resnet_config_is_a_model_param(isolated_results):
    from thesis_lib.models import NARROW_BASELINE

    result = run("baseline", {"model": NARROW_BASELINE}, profile="smoke", progress=False)
    assert result.params["model"]["widths"] == list(NARROW_BASELINE.widths)
    assert [stage.width for stage in result.model().spec.stages] == list(NARROW_BASELINE.widths)
    as_dict = {"stages": 3, "widths": [8, 16, 32], "blocks": [5, 5, 5]}
    assert run_dir_for("baseline", {"model": as_dict}, "smoke") == result.path


def test_profile_input_size_matches_the_data():
    assert get_profile("smoke").input_size == (1, 8, 8)
    assert get_profile("full").input_size == (3, 32, 32) and get_profile("full").num_classes == 10


def test_quick_shares_the_cores_between_the_notebooks_that_run_at_once(monkeypatch):
    quick = get_profile("quick")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv("THESIS_JOBS", raising=False)
    assert quick.threads() == 4
    monkeypatch.setenv("THESIS_JOBS", "2")
    assert quick.threads() == 2
    monkeypatch.setenv("THESIS_JOBS", "8")
    assert quick.threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's explicit choice wins
    assert quick.threads() == 3
    assert get_profile("smoke").threads() == 1  # tests run two smoke runs at a time
    with pytest.raises(ValueError, match="cpu_threads must be >= 1, 'per_job' or None"):
        replace(quick, cpu_threads=0)


def test_other_epochs_get_the_milestones_at_the_profiles_fractions():
    full, quick = get_profile("full"), get_profile("quick")
    assert full.train_config().milestones == (93, 150)
    assert full.train_config(epochs=90).milestones == (46, 75)  # 93 / 180 * 90 = 46.5 rounds to even
    assert quick.train_config(epochs=20).milestones == (10, 16)
    assert quick.train_config(epochs=20, milestones=(3,)).milestones == (3,)  # given milestones are kept
    assert quick.train_config(epochs=1).milestones == ()  # 0.5 and 0.8 round to 0 and 1: outside (0, 1)
    assert quick.train_config(epochs=20).lr_at(10) == pytest.approx(0.05 * 0.1)


def test_sweep_keeps_per_epoch_lr_when_lr_is_a_param(isolated_results):
    result = sweep("counting_test", [{"lr": 0.05, "seed": 0}], profile="smoke", progress=False)
    # smoke: 2 epochs, step schedule with one milestone after epoch 1, decay 0.1: 0.05, then 0.05 x 0.1
    assert list(result.history["lr"]) == pytest.approx([0.05, 0.005])
    assert (result.history["lr_param"] == 0.05).all()


def test_run_key_ignores_the_seed_list_and_float_spelling_of_whole_numbers(isolated_results):
    from dataclasses import replace

    smoke = get_profile("smoke")
    more_seeds = replace(smoke, seeds=(0, 1, 2, 3))
    assert (
        run_dir_for("counting_test", {"seed": 0}, smoke).name
        == run_dir_for("counting_test", {"seed": 0}, more_seeds).name
    )
    assert run_dir_for("counting_test", {"seed": 0, "x": 3.0}, smoke) == run_dir_for(
        "counting_test", {"seed": 0, "x": 3}, smoke
    )
    assert run_dir_for("counting_test", {"seed": 0, "x": 3.5}, smoke) != run_dir_for(
        "counting_test", {"seed": 0, "x": 3}, smoke
    )


def test_empty_environment_variables_mean_unset(monkeypatch):
    from thesis_lib import project_root
    from thesis_lib.data import DEFAULT_DATA_DIR, data_dir

    monkeypatch.setenv("THESIS_RESULTS", "")
    monkeypatch.setenv("THESIS_DATA", "")
    monkeypatch.setenv("THESIS_ROOT", "")
    assert experiments.results_root() == project_root() / "results"
    assert data_dir() == DEFAULT_DATA_DIR.expanduser()


def test_full_trains_in_fp32_as_the_thesis_did_and_full_fast_on_the_fast_path(monkeypatch):
    """On CUDA `full` trains in fp32 without TF32 (the thesis's GPUs had none), `full-fast` in bf16 with
    channels_last and TF32, both eagerly; on the CPU both keep fp32, their run keys ignore the CUDA fields,
    and a run's params override the path. `full-fast` uses `full`'s chapter plans."""
    from dataclasses import replace

    from thesis_lib.chapters.ch05_prunetrain import PRUNETRAIN_PLANS, prunetrain_plan

    full, full_fast = get_profile("full"), get_profile("full-fast")
    thesis = replace(full, device="cuda").train_config()
    assert (thesis.precision, thesis.channels_last, thesis.compile, thesis.tf32) == ("fp32", False, "off", False)
    fast = replace(full_fast, device="cuda").train_config()
    assert (fast.precision, fast.channels_last, fast.compile, fast.tf32) == ("bf16", True, "off", True)
    for profile in (full, full_fast):
        plain = replace(profile, device="cpu").train_config()
        assert (plain.precision, plain.channels_last, plain.tf32) == ("fp32", False, False)
        key = experiments.run_config("baseline", {"seed": 0}, replace(profile, device="cpu"))
        assert not any(name.startswith("cuda_") for name in key["profile"]) and key["device"] == {"type": "cpu"}
    assert replace(full_fast, device="cuda").train_config(precision="fp32").precision == "fp32"
    assert replace(full_fast, device="cuda").train_config(compile="static").compile == "static"
    assert prunetrain_plan(full_fast) == PRUNETRAIN_PLANS["full"]
    assert (full_fast.epochs, full_fast.dataset, full_fast.seeds) == (full.epochs, full.dataset, full.seeds)


def test_on_cuda_the_gpu_model_is_part_of_the_run_key(monkeypatch):
    """Runs on two GPU models get two folders (their seconds, and maybe their numerics, differ)."""
    from dataclasses import replace

    from thesis_lib.experiments import store

    on_cuda = replace(get_profile("full"), device="cuda")
    keys = {}
    for model in ("NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 2080 Ti"):
        monkeypatch.setattr(store, "gpu_model", lambda device, model=model: model)
        config = experiments.run_config("baseline", {"seed": 0}, on_cuda)
        assert config["device"] == {"type": "cuda", "gpu_model": model}
        assert config["profile"]["cuda_precision"] == "fp32" and config["key_scheme"] == store.KEY_SCHEME
        keys[model] = store.config_hash(config)
    assert len(set(keys.values())) == 2


def test_a_sweep_trains_its_grid_seed_by_seed_and_returns_it_in_grid_order(isolated_results, monkeypatch):
    from thesis_lib.experiments import sweeps, training_order

    grid = [{"model": model, "seed": seed} for model in ("narrow", "wide") for seed in (0, 1)]  # blocks A0 A1 B0 B1
    assert training_order(grid) == [0, 2, 1, 3]
    trained = []
    real_run = sweeps.run

    def recording_run(name, params, **kwargs):
        trained.append((params["model"], params["seed"]))
        return real_run(name, params, **kwargs)

    monkeypatch.setattr(sweeps, "run", recording_run)
    result = sweep("baseline", grid, profile="smoke", progress=False)
    assert trained == [("narrow", 0), ("wide", 0), ("narrow", 1), ("wide", 1)]
    assert list(zip(result.summary["model"], result.summary["seed"])) == [(p["model"], p["seed"]) for p in grid]


def test_chapter_6_4s_arms_train_interleaved_seed_by_seed():
    """Every arm of a section's sweep gets its seed 0 before any arm its seed 1 (A0 B0 ... A1 B1 ...)."""
    from thesis_lib.chapters import ch06_4_additive
    from thesis_lib.experiments import training_order

    for name, (_, grid) in ch06_4_additive.sweeps("quick").items():
        seeds = [grid[i]["seed"] for i in training_order(grid)]
        assert seeds == sorted(seeds), name
        per_seed = len(grid) // len(set(seeds))
        assert seeds[:per_seed] == [seeds[0]] * per_seed and len({grid[i]["seed"] for i in range(per_seed)}) > 1
