"""Sweeps as Ray tasks: the serial sweep's folders and numbers, finished runs loaded instead of submitted,
every failure reported, a killed worker's run resumed from its checkpoint; the executor from THESIS_EXECUTOR.

The Ray tests share one local instance with 2 CPUs (its start takes 15-20 s); they skip without Ray.
"""

import json
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from thesis_lib.cli import main
from thesis_lib.experiments import (
    SEAL,
    RunOutput,
    SweepError,
    executors,
    experiment,
    results_root,
    run,
    run_dir_for,
    seed_grid,
    summarize_training,
    sweep,
)
from thesis_lib.experiments.executors import (
    EXECUTOR_ENV,
    GPUS_PER_RUN_ENV,
    python_path,
    resolve_executor,
    task_resources,
    thesis_env,
)
from thesis_lib.training import TrainingHook, seeded_model

# What a run measures of the clock: these differ between any two trainings, serial or not.
SUMMARY_TIMES = [
    "mean_epoch_time",
    "std_epoch_time",
    "steady_epoch_time",
    "first_epoch_time",
    "total_time",
    "timed_alone",  # Ray trains runs side by side
]
HISTORY_TIMES = ["epoch_time", "hook_time"]
KILL_MARKER_ENV = "THESIS_TEST_KILL_MARKER"


@dataclass(frozen=True)
class PidParams:
    seed: int = 0
    fail: bool = False


@experiment("ray_pid_test", params=PidParams)
def pid_experiment(context):
    """Trains nothing: appends "<pid> <seed> <THESIS_EXECUTOR>" to calls.txt in the results root, then fails or
    returns 10 x seed."""
    seed = context.params["seed"]
    with open(results_root() / "calls.txt", "a") as calls:
        calls.write(f"{os.getpid()} {seed} {os.environ.get(EXECUTOR_ENV) or '-'}\n")
    if context.params["fail"]:
        raise ValueError(f"seed {seed} fails on purpose")
    return RunOutput(pd.DataFrame({"epoch": [1], "value": [10 * seed]}), {"value": 10 * seed})


def calls(root: Path) -> list[tuple[int, int, str]]:
    """(pid, seed, THESIS_EXECUTOR) of every call of `pid_experiment` with the results root `root`."""
    rows = [line.split() for line in (root / "calls.txt").read_text().split("\n") if line]
    return [(int(pid), int(seed), executor) for pid, seed, executor in rows]


class ExitOnceAfterFirstCheckpoint(TrainingHook):
    """Ends its process with os._exit (as a kill would) in the first step after epoch 1's checkpoint, when
    THESIS_TEST_KILL_MARKER names a file that does not exist yet; first writes that file with its pid and
    epoch 1's measured time, which a resumed run keeps and a restarted one would measure anew."""

    def on_epoch_end(self, trainer, record):
        self.first_epoch = dict(record) if record["epoch"] == 1 else None

    def after_step(self, trainer):
        marker = os.environ.get(KILL_MARKER_ENV)
        if getattr(self, "first_epoch", None) and marker and not Path(marker).exists():
            Path(marker).write_text(json.dumps({"pid": os.getpid(), "epoch_time": self.first_epoch["epoch_time"]}))
            os._exit(1)


@experiment("ray_kill_test")
def kill_experiment(context):
    """The smoke narrow net for the profile's epochs, with `ExitOnceAfterFirstCheckpoint`."""
    model = seeded_model(context.resnet_config("narrow"), 0)
    trainer = context.trainer(model, context.train_config(seed=0), hooks=[ExitOnceAfterFirstCheckpoint()])
    history = trainer.fit()
    return RunOutput(history, summarize_training(history), trainer.model)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance with 2 CPUs for this module, started by `executors.connect_ray`."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_ADDRESS", raising=False)
        patch.setenv(executors.RAY_CPUS_ENV, "2")
        executors.connect_ray()
        yield ray
    ray.shutdown()


def test_the_executor_comes_from_the_argument_then_THESIS_EXECUTOR_then_serial(monkeypatch):
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    assert resolve_executor(None) == "serial"
    monkeypatch.setenv(EXECUTOR_ENV, "")
    assert resolve_executor(None) == "serial"
    monkeypatch.setenv(EXECUTOR_ENV, "ray")
    assert resolve_executor(None) == "ray" and resolve_executor("serial") == "serial"
    monkeypatch.setenv(EXECUTOR_ENV, "dask")
    with pytest.raises(
        ValueError,
        match=r"unknown sweep executor \(THESIS_EXECUTOR='dask'\); use one of "
        r"\['serial', 'ray'\]",
    ):
        sweep("ray_pid_test", [{}], profile="smoke", progress=False)
    with pytest.raises(ValueError, match=r"unknown sweep executor \(executor='threads'\)"):
        sweep("ray_pid_test", [{}], profile="smoke", progress=False, executor="threads")


def test_notebooks_executor_option_sets_THESIS_EXECUTOR_for_the_kernels(monkeypatch, capsys):
    seen = []
    monkeypatch.setenv(EXECUTOR_ENV, "")  # unset, and restored after the test although `main` sets it
    monkeypatch.setattr(
        "thesis_lib.cli.run_notebooks", lambda *args, **kwargs: seen.append(os.environ[EXECUTOR_ENV]) or []
    )
    assert main(["notebooks", "--profile", "smoke", "--executor", "ray"]) == 0
    assert seen == ["ray"]
    monkeypatch.setenv(EXECUTOR_ENV, "dask")
    assert main(["notebooks", "--profile", "smoke"]) == 2
    assert "THESIS_EXECUTOR='dask'" in capsys.readouterr().err and seen == ["ray"]


def test_ray_without_ray_installed_is_a_clear_error_and_a_cached_sweep_needs_no_ray(isolated_results, monkeypatch):
    finished = sweep("ray_pid_test", [{"seed": 0}, {"seed": 1}], profile="smoke", progress=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    cached = sweep("ray_pid_test", [{"seed": 1}, {"seed": 0}], profile="smoke", progress=False, executor="ray")
    assert [r.loaded_from_cache for r in cached.runs] == [True, True]
    assert [r.path for r in cached.runs] == [finished.runs[1].path, finished.runs[0].path]
    assert list(cached.summary["value"]) == [10, 0]
    with pytest.raises(
        RuntimeError,
        match=r"needs Ray, which is not installed: pip install ray \(or pip install "
        r"'thesis_lib\[ray\]'\)",
    ):
        sweep("ray_pid_test", [{"seed": 0}, {"seed": 2}], profile="smoke", progress=False, executor="ray")
    assert not run_dir_for("ray_pid_test", {"seed": 2}, "smoke").exists()
    assert calls(isolated_results / "results") == [(os.getpid(), 0, "-"), (os.getpid(), 1, "-")]


def test_an_experiment_defined_in_main_is_refused_before_ray_starts(isolated_results, monkeypatch):
    def notebook_cell_experiment(context):
        """Defined in a notebook."""

    notebook_cell_experiment.__module__ = "__main__"
    experiment("ray_main_test")(notebook_cell_experiment)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(
        ValueError,
        match=r"defined in __main__ \(a script or a notebook\), which Ray workers "
        "cannot import",
    ):
        sweep("ray_main_test", [{}], profile="smoke", progress=False, executor="ray")


class FakeRay(types.ModuleType):
    """A ray module whose local start times out `failures` times, as Ray's does on a busy machine."""

    def __init__(self, failures):
        super().__init__("ray")
        self.failures, self.inits, self.shutdowns = failures, [], 0

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.inits.append(kwargs)
        if len(self.inits) <= self.failures:
            raise Exception("The current node timed out during startup.")

    def shutdown(self):
        self.shutdowns += 1


def test_a_local_instance_gets_THESIS_RAY_CPUS_and_a_second_try_when_its_start_times_out(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv(executors.RAY_CPUS_ENV, "3")
    once = FakeRay(failures=1)
    monkeypatch.setitem(sys.modules, "ray", once)
    assert executors.connect_ray() is once and once.shutdowns == 1
    assert [kwargs["num_cpus"] for kwargs in once.inits] == [3, 3]
    assert once.inits[0]["address"] == "local" and once.inits[0]["include_dashboard"] is False
    assert once.inits[0]["_system_config"] == {"worker_niceness": 0}  # runs at the priority of serial ones
    monkeypatch.setitem(sys.modules, "ray", FakeRay(failures=2))
    with pytest.raises(RuntimeError, match=r"a local Ray instance did not start \(The current node timed out"):
        executors.connect_ray()
    monkeypatch.setenv(executors.RAY_CPUS_ENV, "two")
    with pytest.raises(ValueError, match="THESIS_RAY_CPUS='two' must be a whole number >= 1"):
        executors.connect_ray()


def test_resources_one_cpu_per_run_and_a_share_of_a_gpu_on_gpu_profiles(monkeypatch):
    monkeypatch.delenv(GPUS_PER_RUN_ENV, raising=False)
    assert task_resources("smoke", "cpu", cluster_gpus=4) == {"num_cpus": 1, "num_gpus": 0}
    assert task_resources("quick", "auto", cluster_gpus=0) == {"num_cpus": 1, "num_gpus": 0}
    assert task_resources("quick", "auto", cluster_gpus=4) == {"num_cpus": 1, "num_gpus": 0.25}
    assert task_resources("full", "auto", cluster_gpus=4) == {"num_cpus": 1, "num_gpus": 1.0}
    monkeypatch.setenv(GPUS_PER_RUN_ENV, "0.5")
    assert task_resources("full", "cuda", cluster_gpus=1) == {"num_cpus": 1, "num_gpus": 0.5}
    with pytest.raises(RuntimeError, match="trains on 'cuda', but the Ray cluster has no GPU"):
        task_resources("full", "cuda", cluster_gpus=0)
    for bad in ("0", "2", "-1", "half", "nan"):
        monkeypatch.setenv(GPUS_PER_RUN_ENV, bad)
        with pytest.raises(ValueError, match=r"THESIS_GPUS_PER_RUN=.* a number in \(0, 1\]"):
            task_resources("full", "cuda", cluster_gpus=1)


def test_workers_get_the_thesis_variables_and_a_path_to_every_experiment_module(monkeypatch):
    monkeypatch.setenv("THESIS_DATA", "/data/here")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = thesis_env(THESIS_RESULTS="/store")
    assert env["THESIS_DATA"] == "/data/here" and env["THESIS_RESULTS"] == "/store"
    assert all(key.startswith("THESIS_") for key in env)
    repository = Path(__file__).resolve().parent.parent
    assert python_path(["thesis_lib.experiments", __name__, "thesis_lib"]).split(os.pathsep) == [
        str(repository),
        str(repository / "tests"),
        "/elsewhere",
    ]


def test_a_ray_sweep_gives_the_serial_sweeps_folders_and_numbers(local_ray, isolated_results, monkeypatch):
    grid = seed_grid("smoke")  # the wide net, seeds 0 and 1
    sweeps = {}
    for executor in ("serial", "ray"):
        monkeypatch.setenv("THESIS_RESULTS", str(isolated_results / executor))
        sweeps[executor] = sweep("baseline", grid, profile="smoke", progress=False, executor=executor)
    serial, parallel = sweeps["serial"], sweeps["ray"]
    assert [r.path.relative_to(isolated_results / "ray") for r in parallel.runs] == [
        r.path.relative_to(isolated_results / "serial") for r in serial.runs
    ]
    assert [r.loaded_from_cache for r in parallel.runs] == [False, False]
    assert all((r.path / SEAL).exists() for r in parallel.runs)
    pd.testing.assert_frame_equal(
        parallel.summary.drop(columns=SUMMARY_TIMES), serial.summary.drop(columns=SUMMARY_TIMES), check_exact=True
    )
    pd.testing.assert_frame_equal(
        parallel.history.drop(columns=HISTORY_TIMES), serial.history.drop(columns=HISTORY_TIMES), check_exact=True
    )
    assert list(parallel.summary["seed"]) == [0, 1] and parallel.summary["final_acc"].between(0, 1).all()
    assert len(parallel.history) == 4


def test_finished_runs_are_loaded_and_the_others_run_once_in_ray_workers(local_ray, isolated_results, monkeypatch):
    monkeypatch.setenv(EXECUTOR_ENV, "ray")  # as `notebooks --executor ray` sets it for a notebook's sweeps
    run("ray_pid_test", {"seed": 0}, profile="smoke", progress=False)
    grid = [{"seed": 0}, {"seed": 1}, {"seed": 2}, {"seed": 1}]
    result = sweep("ray_pid_test", grid, profile="smoke", progress=False)
    assert list(result.summary["value"]) == [0, 10, 20, 10]
    assert [r.loaded_from_cache for r in result.runs] == [True, False, False, True]
    made = sorted(calls(isolated_results / "results"), key=lambda call: call[1])
    assert [seed for _, seed, _ in made] == [0, 1, 2]  # each run trained once, the duplicate loaded
    assert [pid == os.getpid() for pid, _, _ in made] == [True, False, False]
    assert [executor for _, _, executor in made] == ["ray", "serial", "serial"]  # no Ray sweep inside a task


def test_every_failing_run_is_reported_after_the_others_finished(local_ray, isolated_results):
    grid = [{"seed": 0}, {"seed": 1, "fail": True}, {"seed": 2}, {"seed": 3, "fail": True}]
    with pytest.raises(SweepError) as raised:
        sweep("ray_pid_test", grid, profile="smoke", progress=False, executor="ray")
    message = str(raised.value)
    assert "2 of 4 Ray tasks of sweep 'ray_pid_test' failed" in message
    assert '{"fail": true, "seed": 1}: ValueError: seed 1 fails on purpose' in message
    assert '{"fail": true, "seed": 3}: ValueError: seed 3 fails on purpose' in message
    assert sorted(params["seed"] for params, _ in raised.value.failures) == [1, 3]
    assert all(isinstance(error, ValueError) for _, error in raised.value.failures)
    assert [(run_dir_for("ray_pid_test", params, "smoke") / SEAL).exists() for params in grid] == [
        True,
        False,
        True,
        False,
    ]
    again = sweep("ray_pid_test", [grid[0], grid[2]], profile="smoke", progress=False, executor="ray")
    assert [r.loaded_from_cache for r in again.runs] == [True, True]


def test_a_killed_workers_run_resumes_from_its_checkpoint(local_ray, isolated_results, monkeypatch):
    monkeypatch.setenv("THESIS_RESULTS", str(isolated_results / "never_killed"))
    never_killed = run("ray_kill_test", {}, profile="smoke", progress=False)
    monkeypatch.setenv("THESIS_RESULTS", str(isolated_results / "killed"))
    marker = isolated_results / "killed_once.json"
    monkeypatch.setenv(KILL_MARKER_ENV, str(marker))
    result = sweep("ray_kill_test", [{}], profile="smoke", progress=False, executor="ray").runs[0]
    killed = json.loads(marker.read_text())
    assert killed["pid"] != os.getpid()
    assert (result.path / SEAL).exists() and not list(result.path.glob("checkpoint_*.pt"))
    assert list(result.history["epoch"]) == [1, 2]
    assert result.history["epoch_time"].iloc[0] == pytest.approx(killed["epoch_time"], rel=1e-12)  # resumed
    assert list(result.history["train_loss"]) == list(never_killed.history["train_loss"])
    assert list(result.history["test_acc"]) == list(never_killed.history["test_acc"])
    assert result.summary["final_acc"] == never_killed.summary["final_acc"]
