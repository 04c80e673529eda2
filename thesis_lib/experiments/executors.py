"""Where a sweep's runs execute: one after the other in this process ("serial", the default) or as Ray tasks.

`experiments.sweep(..., executor="ray")` checks the run store itself and hands the unfinished runs to
`ray_tasks`, one task per run; this module knows nothing of the store. It picks the executor, connects to
Ray, sizes a task's resources, gives the workers this process's environment and collects every task's
outcome. Ray is imported here only, and only when a task is submitted: `executor="serial"` needs no Ray.

Where the tasks run:

- RAY_ADDRESS set (Ray's own variable: "auto" for an instance started by `ray start --head` on this
  machine, or a cluster head's "host:port"): that cluster. Every node must see the results folder at the
  same path (a shared file system) and the same thesis_lib source; the store is the only meeting point.
- otherwise: a new local Ray instance in this process, with THESIS_RAY_CPUS CPUs (default: all cores)
  and the machine's GPUs; it lives as long as the process, so the next sweep does not start it again.

One task takes one CPU and, when its profile may use a GPU and the cluster has GPUs, THESIS_GPUS_PER_RUN
of a GPU (default `DEFAULT_GPUS_PER_RUN`): fractions let several small runs share one GPU.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

EXECUTOR_ENV = "THESIS_EXECUTOR"
EXECUTORS = ("serial", "ray")
GPUS_PER_RUN_ENV = "THESIS_GPUS_PER_RUN"
RAY_CPUS_ENV = "THESIS_RAY_CPUS"
# A share of one GPU per run: a thesis-scale run (CIFAR ResNet-32) takes a whole GPU; the small profiles'
# nets (8x8 digits, one block per stage) leave one mostly idle, so four share it. Four is an estimate, not
# yet measured on a GPU (benchmarks/concurrency.py's best k there should set it); THESIS_GPUS_PER_RUN wins.
DEFAULT_GPUS_PER_RUN = {"smoke": 0.25, "quick": 0.25, "full": 1.0}
# Ray retries a task whose worker died (killed, out of memory) this often; the run resumes from its
# checkpoint. An exception raised by the run itself is never retried.
MAX_RETRIES = 3
# Ray starts its workers at niceness 15, below every other process: on a machine shared with other jobs a
# run's measured times (results here: table 3.2, the epoch-time tests) would then depend on the others' load
# more than in a serial sweep. A local instance's workers run at the driver's priority.
WORKER_NICENESS = 0
# Ray gives a new local instance's raylet a fixed 30 s to register; on a busy machine it may need a second try.
START_ATTEMPTS = 2


def resolve_executor(executor: str | None) -> str:
    """`executor`, or when None the THESIS_EXECUTOR variable (unset or empty: "serial"); ValueError when it
    names no executor."""
    chosen = executor if executor is not None else (os.environ.get(EXECUTOR_ENV) or "serial")
    if chosen not in EXECUTORS:
        source = f"executor={chosen!r}" if executor is not None else f"{EXECUTOR_ENV}={chosen!r}"
        raise ValueError(f"unknown sweep executor ({source}); use one of {list(EXECUTORS)}")
    return chosen


def import_ray() -> ModuleType:
    """The ray module, or a RuntimeError saying how to install it."""
    try:
        import ray
    except ImportError as error:
        raise RuntimeError(
            "the 'ray' sweep executor needs Ray, which is not installed: pip install ray (or "
            "pip install 'thesis_lib[ray]'), or use executor='serial'"
        ) from error
    return ray


def _positive_int(variable: str) -> int | None:
    text = os.environ.get(variable)
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{variable}={text!r} must be a whole number >= 1")
    return int(text)


def connect_ray() -> ModuleType:
    """Ray, initialised: the instance this process already uses, the cluster at RAY_ADDRESS, or a new local
    instance with THESIS_RAY_CPUS CPUs (default os.cpu_count()), token authentication, no dashboard and
    workers at `WORKER_NICENESS`."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING)
        return ray
    num_cpus = _positive_int(RAY_CPUS_ENV) or os.cpu_count()
    # Ray turns token authentication on for a new instance (unless RAY_AUTH_MODE says otherwise) and warns
    # that it did so: keep the authentication, drop the warning.
    auth_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = auth_log.level
    auth_log.setLevel(logging.ERROR)
    try:
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                ray.init(
                    address="local",
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    _system_config={"worker_niceness": WORKER_NICENESS},
                )
                break
            except Exception as error:  # Ray's own start timeouts are bare Exceptions
                ray.shutdown()
                if attempt == START_ATTEMPTS:
                    raise RuntimeError(
                        f"a local Ray instance did not start ({error}); on a busy machine start "
                        "one with `ray start --head` and set RAY_ADDRESS=auto"
                    ) from error
    finally:
        auth_log.setLevel(level)
    return ray


def gpus_per_run(profile: str) -> float:
    """The share of one GPU a run of `profile` takes: THESIS_GPUS_PER_RUN, else `DEFAULT_GPUS_PER_RUN`
    (1 for a profile not listed there)."""
    text = os.environ.get(GPUS_PER_RUN_ENV)
    if not text:
        return DEFAULT_GPUS_PER_RUN.get(profile, 1.0)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise ValueError(
            f"{GPUS_PER_RUN_ENV}={text!r} must be the share of one GPU that a run takes, a number "
            "in (0, 1] (0.25: four runs per GPU)"
        )
    return value


def task_resources(profile: str, device: str, cluster_gpus: float) -> dict[str, float]:
    """Ray resources of one run of `profile` on `device` ("cpu", "cuda", "auto"): one CPU, and
    `gpus_per_run` when the device may be a GPU and the cluster has one."""
    if device == "cpu" or (device == "auto" and not cluster_gpus):
        return {"num_cpus": 1, "num_gpus": 0}
    if not cluster_gpus:
        raise RuntimeError(
            f"profile {profile!r} trains on {device!r}, but the Ray cluster has no GPU; start "
            "Ray on a GPU machine or point RAY_ADDRESS at a cluster with GPUs"
        )
    return {"num_cpus": 1, "num_gpus": gpus_per_run(profile)}


def module_root(module: str) -> Path:
    """The folder that must be on sys.path to import the loaded module `module` (a.b.c from <root>/a/b/c.py)."""
    file = Path(sys.modules[module].__file__).resolve()
    depth = module.count(".") + (1 if file.name == "__init__.py" else 0)
    return file.parents[depth]


def python_path(modules: Iterable[str]) -> str:
    """A PYTHONPATH that finds thesis_lib and the loaded `modules` (e.g. the module, or test file, that
    registers an experiment), ahead of this process's own PYTHONPATH."""
    paths = [str(module_root(module)) for module in (__name__, *modules)]
    paths += [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    return os.pathsep.join(dict.fromkeys(paths))


def thesis_env(**overrides: str) -> dict[str, str]:
    """Every THESIS_* variable of this process (results, data, notebook, TensorBoard, ...), then `overrides`."""
    return {**{key: value for key, value in os.environ.items() if key.startswith("THESIS_")}, **overrides}


def _call_in_env(env: dict[str, str], function: Callable[..., Any], *args: Any) -> Any:
    """In a worker: `function(*args)` with exactly the THESIS_* variables of `env`. They travel with each task
    rather than in the worker's start environment, so that one set of workers serves every sweep."""
    for key in [key for key in os.environ if key.startswith("THESIS_")]:
        del os.environ[key]
    os.environ.update(env)
    return function(*args)


def ray_tasks(
    function: Callable[..., Any],
    calls: Sequence[tuple],
    *,
    profile: str,
    device: str,
    modules: Iterable[str],
    env: dict[str, str],
) -> Iterator[tuple[int, Any]]:
    """Run `function(*call)` for every call as a Ray task with `task_resources`, the THESIS_* variables `env`
    and a `python_path` to `modules`; yield (index of the call, its return value or its exception) in the
    order the tasks finish.

    A task whose worker dies is retried (`MAX_RETRIES`); an exception of `function` is yielded as raised,
    without Ray's wrapper. Leaving the loop early (an error, Ctrl-C) cancels the tasks still running."""
    ray = connect_ray()
    resources = task_resources(profile, device, ray.cluster_resources().get("GPU", 0))
    remote = ray.remote(_call_in_env).options(
        max_retries=MAX_RETRIES, runtime_env={"env_vars": {"PYTHONPATH": python_path(modules)}}, **resources
    )
    pending = {remote.remote(env, function, *call): index for index, call in enumerate(calls)}
    try:
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready)
            try:
                outcome = ray.get(ready)
            except ray.exceptions.RayTaskError as error:
                outcome = error.cause if isinstance(error.cause, BaseException) else error
            except ray.exceptions.RayError as error:  # the worker died more often than it was retried
                outcome = error
            yield index, outcome
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
