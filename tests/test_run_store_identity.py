"""The run store never hands back another run's results: failures F1-F9 of
`../shared/reviews/run-store-drills.md` (main 18b891d), one test (or a few) each."""

import json
import math
import multiprocessing
import os
import shutil
from dataclasses import replace

import pytest

from thesis_lib.cli import main
from thesis_lib.experiments import (
    PROFILES,
    SEAL,
    CorruptRunError,
    Profile,
    cached_runs,
    get_profile,
    progress,
    remove_run,
    run,
    run_dir_for,
    run_status,
    seed_grid,
    store,
    sweep,
)
from thesis_lib.training import TrainConfig

NARROW = {"model": "narrow", "schedule": "constant"}


class Killed(Exception):
    """Stands in for a kill -9 right after an epoch's checkpoint."""


@pytest.fixture()
def kill_after_first_epoch():
    """Every run started inside the test dies after its first checkpoint (the reporter runs after it),
    until the test calls `.undo()` (its own MonkeyPatch: undoing it keeps the isolated results root)."""

    def die(self, trainer, record):
        raise Killed(record["epoch"])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(progress.EpochReporter, "__call__", die)
        yield patch


# F1: a sealed run proves whose it is.


def _two_baselines():
    first = run("baseline", {**NARROW, "seed": 0}, profile="smoke", progress=False)
    second = run("baseline", {**NARROW, "seed": 1}, profile="smoke", progress=False)
    return first, second


def test_result_files_copied_into_another_runs_folder_are_a_corrupt_run(isolated_results):
    first, second = _two_baselines()
    for name in ("history.csv", "summary.json", "model.pt", SEAL):
        shutil.copy2(first.path / name, second.path / name)
    with pytest.raises(CorruptRunError) as error:
        run("baseline", {**NARROW, "seed": 1}, profile="smoke", progress=False)
    assert str(second.path) in str(error.value) and "config.json" in str(error.value)


def test_a_whole_folder_copied_over_another_run_names_both(isolated_results):
    first, second = _two_baselines()
    shutil.rmtree(second.path)
    shutil.copytree(first.path, second.path)
    with pytest.raises(CorruptRunError) as error:
        run("baseline", {**NARROW, "seed": 1}, profile="smoke", progress=False)
    message = str(error.value)
    assert str(second.path) in message and first.path.name in message


def test_a_folder_symlinked_into_another_runs_place_is_corrupt(isolated_results):
    first, second = _two_baselines()
    shutil.rmtree(second.path)
    second.path.symlink_to(first.path, target_is_directory=True)
    with pytest.raises(CorruptRunError, match=first.path.name):
        run("baseline", {**NARROW, "seed": 1}, profile="smoke", progress=False)
    assert run_status(second.path)["status"] == "damaged"


def test_an_edited_config_is_corrupt_and_runs_shows_it_damaged(isolated_results):
    _, second = _two_baselines()
    config = json.loads((second.path / "config.json").read_text())
    config["params"]["seed"] = 7
    (second.path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    with pytest.raises(CorruptRunError, match="config.json"):
        run("baseline", {**NARROW, "seed": 1}, profile="smoke", progress=False)
    assert run_status(second.path)["status"] == "damaged"


def test_the_seal_covers_the_config_and_names_the_run(isolated_results):
    first, _ = _two_baselines()
    seal = json.loads((first.path / SEAL).read_text())
    assert "config.json" in seal["files"] and seal["run"] == first.path.name
    assert run("baseline", {**NARROW, "seed": 0}, profile="smoke", progress=False).loaded_from_cache


# F2: a checkpoint proves whose it is.


@pytest.mark.parametrize(
    "experiment, mine, foreign",
    [
        ("net2net_grow", {"operation": "deepen", "seed": 1}, {"operation": "widen_all", "seed": 1}),
        ("prunetrain", {"seed": 0}, {"seed": 0, "lasso_ratio": 0.9}),
        ("prune_grow", {"seed": 0}, {"seed": 0, "threshold": 0.05}),
        ("baseline", {**NARROW, "seed": 0}, {**NARROW, "seed": 1}),
    ],
)
def test_a_checkpoint_of_another_run_is_refused_with_a_clear_error(
    isolated_results, kill_after_first_epoch, experiment, mine, foreign
):
    for params in (mine, foreign):
        with pytest.raises(Killed):
            run(experiment, params, profile="smoke", progress=False)
    kill_after_first_epoch.undo()
    mine_dir, foreign_dir = (run_dir_for(experiment, p, "smoke") for p in (mine, foreign))
    checkpoints = sorted(p.name for p in foreign_dir.glob("checkpoint_*.pt"))
    assert checkpoints
    for name in checkpoints:
        shutil.copy2(foreign_dir / name, mine_dir / name)
    with pytest.raises(RuntimeError, match="another run") as error:
        run(experiment, mine, profile="smoke", progress=False)
    assert foreign_dir.name in str(error.value) and not (mine_dir / SEAL).exists()


def test_a_run_killed_after_its_first_epoch_still_resumes_its_own_checkpoint(isolated_results, kill_after_first_epoch):
    params = {"operation": "widen_all", "seed": 2}
    with pytest.raises(Killed):
        run("net2net_grow", params, profile="smoke", progress=False)
    kill_after_first_epoch.undo()
    resumed = run("net2net_grow", params, profile="smoke", progress=False)
    shutil.rmtree(resumed.path)
    uninterrupted = run("net2net_grow", params, profile="smoke", progress=False)
    assert list(resumed.history["train_loss"]) == list(uninterrupted.history["train_loss"])


# F3 / F4: never block, and one unreadable file spoils only its own run.


def test_a_seal_that_is_a_fifo_is_damage_not_a_hang(isolated_results):
    first, _ = _two_baselines()
    (first.path / SEAL).unlink()
    os.mkfifo(first.path / SEAL)
    with pytest.raises(CorruptRunError, match="not a regular file"):
        run("baseline", {**NARROW, "seed": 0}, profile="smoke", progress=False)
    assert run_status(first.path)["status"] == "damaged"


def test_a_result_file_that_is_a_fifo_is_damage_not_a_hang(isolated_results):
    first, _ = _two_baselines()
    (first.path / "history.csv").unlink()
    os.mkfifo(first.path / "history.csv")
    with pytest.raises(CorruptRunError, match="history.csv"):
        run("baseline", {**NARROW, "seed": 0}, profile="smoke", progress=False)


def test_an_unreadable_file_is_reported_for_its_run_and_runs_prints_the_others(isolated_results, monkeypatch, capsys):
    first, second = _two_baselines()
    unreadable = first.path / "history.csv"
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if os.fspath(path) == os.fspath(unreadable):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(CorruptRunError, match="Permission denied"):
        run("baseline", {**NARROW, "seed": 0}, profile="smoke", progress=False)
    assert main(["runs", "--profile", "smoke"]) == 1
    out = capsys.readouterr().out
    assert "finished" in out and "damaged" in out and "Permission denied" in out


# F5: loading races with `clean`.


def _load_in_a_loop(results: str, seconds: float, queue) -> None:
    import time

    import torch

    os.environ["THESIS_RESULTS"] = results
    torch.set_num_threads(1)
    failures, loads, end = [], 0, time.time() + seconds
    while time.time() < end:
        try:
            run("baseline", {**NARROW, "seed": 22}, profile="smoke", progress=False)
            loads += 1
        except Exception as error:  # noqa: BLE001 - every failure is what this drill counts
            failures.append(f"{type(error).__name__}: {error}")
    queue.put((loads, failures))


def test_a_run_removed_right_after_it_was_read_still_loads(isolated_results, monkeypatch):
    """The drill below found it under load: `remove_run` took the folder away between the verified read and
    the tidying of leftovers, right after the folder scan had checked that the folder exists (os.scandir
    then raised FileNotFoundError). Here the scan meets the vanished folder every time."""
    first = run("baseline", {**NARROW, "seed": 22}, profile="smoke", progress=False)
    read = store._read_sealed

    def read_then_remove(path, expected=None):
        contents = read(path, expected)

        def vanished(folder=".", *args):
            raise FileNotFoundError(2, "No such file or directory", str(folder))

        monkeypatch.setattr(os, "scandir", vanished)  # the folder was there a moment ago, now it is gone
        return contents

    monkeypatch.setattr(store, "_read_sealed", read_then_remove)
    again = run("baseline", {**NARROW, "seed": 22}, profile="smoke", progress=False)
    assert again.loaded_from_cache and again.summary == first.summary


def test_loading_never_fails_while_another_process_cleans(isolated_results):
    results = str(isolated_results / "results")
    run("baseline", {**NARROW, "seed": 22}, profile="smoke", progress=False)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    loader = context.Process(target=_load_in_a_loop, args=(results, 25.0, queue))
    loader.start()
    removals = 0
    while loader.is_alive():
        for folder in cached_runs("smoke", "baseline")["folder"]:
            try:
                remove_run(type(run_dir_for("baseline", {}, "smoke"))(folder))
                removals += 1
            except (RuntimeError, ValueError):
                pass  # the loader is training it right now, or it is gone
    loader.join(timeout=60)
    loads, failures = queue.get(timeout=10)
    assert loads > 0 and removals > 0
    assert failures == []


def test_a_removed_run_leaves_no_folder_behind(isolated_results):
    first, _ = _two_baselines()
    remove_run(first.path)
    assert not first.path.exists()
    assert [p.name for p in first.path.parent.iterdir() if not p.name.endswith(".lock")] == [
        run_dir_for("baseline", {**NARROW, "seed": 1}, "smoke").name
    ]


# F6: orphan temporary files.


def test_orphan_temporary_files_are_reported_and_removed_when_the_run_opens_its_folder(
    isolated_results, kill_after_first_epoch
):
    params = {**NARROW, "seed": 5}
    with pytest.raises(Killed):
        run("baseline", params, profile="smoke", progress=False)
    kill_after_first_epoch.undo()
    path = run_dir_for("baseline", params, "smoke")
    orphan = path / ".checkpoint_train.pt.abc123.tmp"
    orphan.write_bytes(b"x" * 5000)
    status = run_status(path)
    assert status["status"] == "partial" and "1 orphan temporary file" in status["detail"]
    result = run("baseline", params, profile="smoke", progress=False)
    assert not orphan.exists() and not list(result.path.glob(".*.tmp"))
    (result.path / ".history.csv.zzz.tmp").write_bytes(b"late")
    assert "orphan" in run_status(result.path)["detail"]
    run("baseline", params, profile="smoke", progress=False)
    assert not list(result.path.glob(".*.tmp"))


# F7 / F9: values are checked and name their param.


@pytest.mark.parametrize(
    "params, message",
    [
        ({"momentum": float("nan")}, "momentum must be in [0, 1)"),
        ({"momentum": 1.0}, "momentum must be in [0, 1)"),
        ({"weight_decay": float("inf")}, "weight_decay must be a finite number >= 0"),
        ({"weight_decay": -1e-4}, "weight_decay must be a finite number >= 0"),
        ({"lr_decay": float("nan")}, "lr_decay must be in (0, 1]"),
        ({"lr_decay": -1}, "lr_decay must be in (0, 1]"),
        ({"lr_decay": 1e300, "milestones": [1]}, "lr_decay must be in (0, 1]"),
        ({"milestones": [-1]}, "milestones must lie inside (0, epochs)"),
        ({"milestones": [0]}, "milestones must lie inside (0, epochs)"),
        ({"lars_trust": float("nan"), "optimizer": "lars"}, "lars_trust must be a finite number > 0"),
        ({"seed": -1}, "seed"),
        ({"seed": 1e30}, "seed"),
        ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ],
)
def test_bad_training_values_name_their_param_and_range(isolated_results, params, message):
    with pytest.raises(ValueError) as error:
        run("baseline", {**NARROW, **params}, profile="smoke", progress=False)
    assert message in str(error.value)
    assert not (isolated_results / "results" / "smoke" / "baseline").exists()


@pytest.mark.parametrize(
    "experiment, params, message",
    [
        ("net2net_grow", {"operation": "widen_all", "noise": float("nan")}, "'noise'"),
        ("net2net_grow", {"operation": "widen_all", "noise": -0.1}, ">= 0"),
        ("net2net_grow", {"operation": "widen_all", "seed": -1}, "'seed'"),
        ("prunetrain", {"seed": 2**63}, "[0, 2^63)"),
        ("prunetrain", {"lasso_ratio": float("inf")}, "'lasso_ratio'"),
        ("prune_grow", {"noise": -1.0}, "'noise'"),
    ],
)
def test_bad_experiment_params_name_the_param(isolated_results, experiment, params, message):
    with pytest.raises(ValueError) as error:
        run(experiment, params, profile="smoke", progress=False)
    assert message in str(error.value)


def test_training_config_rejects_non_finite_numbers_with_the_field_name():
    for field, value in [
        ("momentum", math.nan),
        ("lr_decay", math.inf),
        ("lars_trust", 0.0),
        ("weight_decay", -math.inf),
    ]:
        with pytest.raises(ValueError, match=field):
            TrainConfig(**{field: value})
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\^63\)"):
        TrainConfig(seed=2**63)


def test_params_must_be_string_keyed(isolated_results):
    with pytest.raises(ValueError, match="string"):
        run("baseline", {1: 2, "x": 3}, profile="smoke", progress=False)


def test_an_empty_sweep_or_seed_grid_axis_is_a_clear_error(isolated_results):
    with pytest.raises(ValueError, match="empty grid"):
        sweep("baseline", [], profile="smoke", progress=False)
    with pytest.raises(ValueError, match="axis 'model' is empty"):
        seed_grid("smoke", model=[])


def test_an_overflowing_lr_names_the_lr_and_the_epoch(isolated_results):
    with pytest.raises(FloatingPointError, match=r"epoch 1.*lr 1e\+300"):
        run("baseline", {**NARROW, "lr": 1e300}, profile="smoke", progress=False)


def test_divergence_at_the_cli_is_one_line_and_a_non_zero_exit(isolated_results, capsys):
    code = main(["run", "baseline", "--profile", "smoke", "--param", "model=narrow", "--param", "lr=1e300"])
    captured = capsys.readouterr()
    assert code != 0 and "Traceback" not in captured.err
    message = captured.err.split("error: ", 1)[1]  # after the progress bar's carriage returns
    assert captured.err.count("error: ") == 1 and message.count("\n") == 1 and "at lr 1e+300" in message
    with pytest.raises(FloatingPointError):
        main(["--debug", "run", "baseline", "--profile", "smoke", "--param", "model=narrow", "--param", "lr=1e300"])


def test_runs_of_an_unknown_experiment_is_exit_2_like_clean(isolated_results, capsys):
    assert main(["runs", "nothing", "--profile", "smoke"]) == 2
    assert "unknown experiment 'nothing'" in capsys.readouterr().err


# F8: the API and the environment.


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".", "", "x y"])
def test_a_profile_name_cannot_leave_the_results_root(name):
    with pytest.raises(ValueError, match="profile name"):
        replace(PROFILES["smoke"], name=name)


@pytest.mark.parametrize("field, value", [("n_train", 0), ("n_test", 0), ("n_train", -5)])
def test_a_profile_subset_size_is_at_least_one_or_none(field, value):
    with pytest.raises(ValueError, match=f"{field} must be >= 1 or None"):
        replace(PROFILES["smoke"], **{field: value})


def test_a_results_root_that_is_a_file_is_an_error_for_runs(isolated_results, monkeypatch, capsys):
    root = isolated_results / "not_a_folder"
    root.write_text("")
    monkeypatch.setenv("THESIS_RESULTS", str(root))
    assert main(["runs", "--profile", "smoke"]) == 2
    assert "is a file" in capsys.readouterr().err
    monkeypatch.setenv("THESIS_RESULTS", str(isolated_results / "results"))
    (isolated_results / "results").mkdir()
    (isolated_results / "results" / "smoke").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        cached_runs("smoke")


def test_a_custom_profile_writes_under_the_results_root(isolated_results):
    profile = replace(get_profile("smoke"), name="smoke_copy")
    assert isinstance(profile, Profile)
    result = run("baseline", {**NARROW, "seed": 0}, profile=profile, progress=False)
    assert result.path.resolve().is_relative_to((isolated_results / "results").resolve())
