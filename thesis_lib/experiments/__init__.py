"""Experiments as cached runs: profiles, the experiment registry, the run store, sweeps and progress.

`run(name, params, profile=...)` trains one registered experiment or loads it when it has finished before;
`sweep(name, grid, ...)` does so for a grid of params. The package in the order a run passes through it:

    profiles   how big every experiment is (`Profile`, `PROFILES`, `get_profile`) and where results live
    plans      what a run will train, known before it trains (`Phase`, `RunPlan`, `PlannedRun`)
    registry   `@experiment`, declared params (`param`, `seed_param`, `plan_default`), `resolve_params`,
               and what an experiment function receives and returns (`RunContext`, `RunOutput`)
    store      the run store: key and folder of a run, lock, seal, load, status, removal (`run`)
    sweeps     one experiment over a grid, serially or as Ray tasks (`sweep`, `seed_grid`)
    executors  where a sweep's runs execute (serial, Ray)
    progress   one progress record per process, the Trainer's epoch callback (`report_progress`)

Each module imports only the ones above it (`tests/test_layering.py`). Everything public is re-exported
here, so `from thesis_lib.experiments import run, sweep` is the one import a chapter or a script needs.
How to add a chapter (module, plan, experiments, notebook) is written in `thesis_lib.chapters`.
"""

from .plans import Phase, PlannedRun, RunPlan, RunPlanner, planned_sweep, single_phase
from .profiles import BASE_MODELS, PROFILES, Profile, get_profile, profile_root, results_root
from .progress import PROGRESS_DIR, EpochReporter, progress_dir, readable_params, report_progress
from .provenance import TIMING_COLUMNS
from .registry import (
    EXPERIMENT_PACKAGE,
    REQUIRED,
    Bounds,
    Experiment,
    ExperimentFunction,
    RunContext,
    RunOutput,
    canonical,
    describe_type,
    experiment,
    experiment_modules,
    lookup,
    param,
    plan_default,
    procedure_costs,
    registered_experiments,
    resolve_params,
    seed_param,
    summarize_training,
)
from .store import (
    LOAD_ATTEMPTS,
    RESULT_FILES,
    SEAL,
    SEALED_FILES,
    CorruptRunError,
    RunResult,
    cached_runs,
    config_hash,
    load_sealed,
    remove_run,
    run,
    run_config,
    run_dir_for,
    run_status,
)
from .sweeps import SweepError, SweepResult, seed_grid, sweep, training_order

__all__ = [
    "BASE_MODELS",
    "EXPERIMENT_PACKAGE",
    "LOAD_ATTEMPTS",
    "PROFILES",
    "PROGRESS_DIR",
    "REQUIRED",
    "RESULT_FILES",
    "SEAL",
    "SEALED_FILES",
    "Bounds",
    "CorruptRunError",
    "EpochReporter",
    "Experiment",
    "ExperimentFunction",
    "Phase",
    "PlannedRun",
    "Profile",
    "RunContext",
    "RunOutput",
    "RunPlan",
    "RunPlanner",
    "RunResult",
    "SweepError",
    "SweepResult",
    "cached_runs",
    "canonical",
    "config_hash",
    "describe_type",
    "experiment",
    "experiment_modules",
    "get_profile",
    "load_sealed",
    "lookup",
    "param",
    "plan_default",
    "planned_sweep",
    "profile_root",
    "progress_dir",
    "readable_params",
    "registered_experiments",
    "remove_run",
    "report_progress",
    "resolve_params",
    "results_root",
    "run",
    "run_config",
    "run_dir_for",
    "run_status",
    "seed_grid",
    "training_order",
    "seed_param",
    "single_phase",
    "procedure_costs",
    "TIMING_COLUMNS",
    "summarize_training",
    "sweep",
]
