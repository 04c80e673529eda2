"""Sweeps: one experiment over a grid of params, trained one run after the other here ("serial") or as Ray
tasks (`executors`), with tidy summary and history frames of all runs."""

from __future__ import annotations

import importlib
import itertools
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from .executors import ray_tasks, resolve_executor, thesis_env
from .profiles import Profile, get_profile, results_root
from .progress import report_progress
from .provenance import timing_columns
from .registry import canonical, experiment_modules, lookup, resolve_params
from .store import SEAL, RunResult, load_sealed, run, run_dir_for


@dataclass
class SweepResult:
    """Tidy results of many runs: `summary` has one row per run, `history` one row per run and epoch."""

    summary: pd.DataFrame
    history: pd.DataFrame
    runs: list[RunResult]


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: value}


def sweep(
    name: str,
    grid: Iterable[Mapping[str, Any]],
    *,
    profile: str | Profile = "quick",
    progress: bool = True,
    executor: str | None = None,
) -> SweepResult:
    """Run (or load) `name` for every params mapping of `grid`; params become columns of both frames.

    `executor`: "serial" trains the runs one after the other in this process, seed by seed across the grid
    (`training_order`), and returns them in grid order; "ray" trains the unfinished
    ones as Ray tasks, in parallel (`_sweep_on_ray`; where and with what resources: `thesis_lib.experiments.executors`);
    None takes THESIS_EXECUTOR (unset: "serial"), so notebooks follow `notebooks --executor`. Both give the
    same run folders and results. The summary adds each run's `provenance.TIMING_COLUMNS` (timing setting,
    trained alone), which decide whether its seconds may be tested against another's (`stats.compare_groups`).
    A param named like a history column (lr, batch_size) keeps the per-epoch
    values there and appears in the history as `<name>_param`. One progress bar counts the runs; the runs
    train without their own bars.
    """
    executor = resolve_executor(executor)
    grid = list(grid)
    if not grid:
        raise ValueError(f"sweep of {name!r} got an empty grid: nothing to run; pass at least one params mapping")
    report_progress(sweep=name, runs_total=len(grid), runs_done=0, sweep_started=time.time(), epoch=0, epochs=0)
    if executor == "ray":
        results = _sweep_on_ray(name, grid, get_profile(profile), progress)
    else:
        results: list[RunResult | None] = [None] * len(grid)
        order = training_order(grid)
        for done, index in enumerate(tqdm(order, desc=f"{name} sweep", disable=not progress)):
            results[index] = run(name, grid[index], profile=profile, progress=False)
            report_progress(runs_done=done + 1)
    summary_rows, histories = [], []
    for result in results:
        columns = _flat("", result.params)
        summary_rows.append({**columns, **_flat("", result.summary), **timing_columns(result.provenance)})
        history = result.history.copy()
        for key, value in columns.items():
            column = f"{key}_param" if key in result.history.columns else key
            history[column] = value if not isinstance(value, list) else str(value)
        histories.append(history)
    return SweepResult(pd.DataFrame(summary_rows), pd.concat(histories, ignore_index=True), results)


class SweepError(RuntimeError):
    """Runs of a sweep failed. `failures` holds (params, exception) of each; the sweep's other runs finished
    and are sealed in the store, so running the sweep again trains only the failed ones."""

    def __init__(self, message: str, failures: list[tuple[Mapping[str, Any], BaseException]]) -> None:
        super().__init__(message)
        self.failures = failures


def _run_task(module: str, name: str, params: Mapping[str, Any], profile: Profile) -> tuple[str, bool]:
    """One run inside a Ray worker: import the module that registers experiment `name`, then `run` it.
    Returns the run folder (the worker's device names it) and whether the run was already finished."""
    importlib.import_module(module)
    result = run(name, params, profile=profile, progress=False)
    return str(result.path), result.loaded_from_cache


def _sweep_on_ray(name: str, grid: list[Mapping[str, Any]], profile: Profile, progress: bool) -> list[RunResult]:
    """The runs of `grid` in grid order: finished ones loaded here, the others trained as Ray tasks (one per
    run folder) and then loaded from the store with their seals verified, exactly as `run` loads them.

    Every grid point's params are checked before anything is submitted. A failing run does not stop the
    others; once all have ended, one SweepError names every failure."""
    module = lookup(name).function.__module__
    if module == "__main__":
        raise ValueError(
            f"experiment {name!r} is defined in __main__ (a script or a notebook), which Ray "
            "workers cannot import; move it into a module, or use executor='serial'"
        )
    params = [canonical(resolve_params(name, point, profile)) for point in grid]
    version = lookup(name).version
    asked = [{"experiment": name, "version": version, "params": point} for point in params]
    results: list[RunResult | None] = [None] * len(grid)
    todo: dict[Path, list[int]] = {}
    for index, point in enumerate(params):
        path = run_dir_for(name, point, profile)
        if (path / SEAL).exists():
            results[index] = load_sealed(name, point, path, asked[index])
        else:
            todo.setdefault(path, []).append(index)
    groups = list(todo.values())
    bar = tqdm(
        total=len(grid), initial=len(grid) - sum(map(len, groups)), desc=f"{name} sweep (ray)", disable=not progress
    )
    report_progress(runs_done=bar.n)
    failures = []
    if groups:
        # A sweep inside a run trains serially in its worker: nested tasks could wait forever for the CPUs
        # their parents hold.
        env = thesis_env(THESIS_RESULTS=str(results_root().resolve()), THESIS_EXECUTOR="serial")
        calls = [(module, name, params[indices[0]], profile) for indices in groups]
        # The workers' path finds every registered experiment, not just this one: one set serves all sweeps.
        modules = experiment_modules()
        tasks = ray_tasks(_run_task, calls, profile=profile.name, device=profile.device, modules=modules, env=env)
        with closing(tasks):  # an error or Ctrl-C here cancels the tasks still running
            for task, outcome in tasks:
                indices = groups[task]
                if isinstance(outcome, BaseException):
                    failures.append((params[indices[0]], outcome))
                else:
                    path, finished_before = outcome
                    for index in indices:
                        loaded = load_sealed(name, params[index], Path(path), asked[index])
                        loaded.loaded_from_cache = finished_before or index != indices[0]
                        results[index] = loaded
                bar.update(len(indices))
                report_progress(runs_done=bar.n)
    bar.close()
    if failures:
        lines = [f"  {json.dumps(point, sort_keys=True)}: {type(error).__name__}: {error}" for point, error in failures]
        raise SweepError(
            f"{len(failures)} of {len(groups)} Ray tasks of sweep {name!r} failed (the other runs "
            "are sealed in the store; fix the cause and run the sweep again to train only these):\n" + "\n".join(lines),
            failures,
        ) from failures[0][1]
    return results


def seed_grid(profile: str | Profile, **axes: Sequence[Any]) -> list[dict[str, Any]]:
    """Every combination of the given axes, once per seed of the profile (a sweep trains them seed by seed,
    `training_order`)."""
    profile = get_profile(profile)
    for key, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ValueError(
                f"seed_grid axis {key!r} needs a list of values, got {values!r}; "
                f"write {key}=[{values!r}] for a single value"
            )
        if not values:
            raise ValueError(
                f"seed_grid axis {key!r} is empty: it would make an empty grid; give it at least "
                "one value or leave it out"
            )
    keys = list(axes)
    combos = itertools.product(*(axes[k] for k in keys)) if keys else [()]
    return [{**dict(zip(keys, combo)), "seed": seed} for combo in combos for seed in profile.seeds]


def training_order(grid: Sequence[Mapping[str, Any]]) -> list[int]:
    """The positions of `grid` in the order a serial sweep trains them: seed by seed across the grid's
    groups (A0 B0 A1 B1 ... for a grid written A0 A1 B0 B1), each seed's points in grid order. Groups whose
    times a chapter compares then train side by side in time, so a drift of the machine (another load, a
    warmer CPU) spreads over all of them instead of falling on one block. Points without a seed keep their
    place among the first seed's."""
    first_seen: dict[Any, int] = {}
    for point in grid:
        first_seen.setdefault(point.get("seed"), len(first_seen))
    return sorted(range(len(grid)), key=lambda i: (first_seen[grid[i].get("seed")], i))
