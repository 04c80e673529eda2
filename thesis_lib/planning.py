"""`python -m thesis_lib plan`: every run the notebooks would train on a profile, and how long it takes here.

The runs are the chapters' planned runs (`Chapter.planned_runs`, from each module's `sweeps`: the grids
their notebooks sweep) and the runs those load first (`RunPlan.requires`, e.g. a MorphNet shrink loads its regularized run); each run's phases come from its
experiment's plan (`@experiment(plan=...)`). A run that several notebooks ask for is counted for the first
of them in `CHAPTERS` order; the others list it as shared. A run is cached when its folder is sealed.

Times come from a short calibration on this machine, per distinct step configuration (architecture, batch
size, input shape, precision, optimizer, compilation, augmentation, device, CPU threads): a Trainer runs a
warm-up epoch and `TIMED_EPOCHS` timed epochs of `steps` steps each on random tensors of the dataset's
shape (no dataset needed), then one evaluation batch is timed; each time is the median over the timed
epochs, which a busy moment of the machine does not move. The per-epoch rest (the checkpoint above all)
is an epoch's wall time less its training time; the first epoch's extra (compilation, cuDNN's autotuner,
lazy initialisation) is how much longer the warm-up epoch took than a timed one. Results are cached in
`results/<profile>/.calibration.json` under the device's name, so a second `plan` times nothing. A phase
then takes

    epochs x (ceil(n_train / batch) x step + n_test / eval batch x evaluation + per-epoch rest)
        + first epoch's extra

Not estimated: the hooks' per-step work (PruneTrain's group lasso, MorphNet's penalty), reconfigurations
and growths, and the notebooks' own work (kernels, figures, chapter 6.1's memory measurements). A net that
changes while it trains is estimated with the largest it can be (PruneTrain's unpruned starting net, the
searches' budget net): those runs are upper bounds, and the output counts them.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .chapters import CHAPTERS, Chapter
from .data import DATASET_SIZES, random_dataset
from .experiments import (
    SEAL,
    Phase,
    PlannedRun,
    Profile,
    RunPlan,
    config_hash,
    get_profile,
    registered_experiments,
    results_root,
    run_dir_for,
)
from .experiments.provenance import cpu_model
from .files import write_text_atomic
from .models import ResNetConfig, ResNetSpec
from .training import AUTOCAST_DTYPES, TrainConfig, Trainer, evaluate, seeded_model, timed

CALIBRATION_FILE = ".calibration.json"
DEFAULT_STEPS = 3
TIMED_EPOCHS = 3


@dataclass(frozen=True)
class ListedRun:
    """One run of the plan: the notebook it is counted for, the later notebooks that ask for it too
    (`shared_with`), where its results live and whether they are there (`cached`), and its `RunPlan`."""

    notebook: str
    experiment: str
    params: dict[str, Any]
    profile: Profile
    folder: Path
    plan: RunPlan
    shared_with: tuple[str, ...]
    cached: bool


def select_chapters(only: Sequence[str] | None = None) -> list[Chapter]:
    """The chapters whose notebook name starts with one of `only` (all without it), in thesis order."""
    if not only:
        return list(CHAPTERS)
    names = [chapter.notebook for chapter in CHAPTERS]
    unknown = [prefix for prefix in only if not any(name.startswith(prefix) for name in names)]
    if unknown:
        raise ValueError(f"no notebook starts with {unknown}; the notebooks are {names}")
    return [chapter for chapter in CHAPTERS if any(chapter.notebook.startswith(prefix) for prefix in only)]


def _with_prerequisites(run: PlannedRun) -> list[tuple[PlannedRun, RunPlan]]:
    """`run` and its plan, after the runs it loads first (recursively, each before the run needing it)."""
    plan = registered_experiments()[run.experiment].run_plan(run.profile, run.params)
    before = [
        entry
        for name, params in plan.requires
        for entry in _with_prerequisites(PlannedRun(name, dict(params), run.profile))
    ]
    return [*before, (run, plan)]


def list_runs(profile: str | Profile, only: Sequence[str] | None = None) -> list[ListedRun]:
    """Every run the selected notebooks train on `profile` (prerequisites included), each once: counted for
    the first selected notebook in `CHAPTERS` order that asks for it, shared with every other notebook that
    does (selected or not), in the order the notebooks ask for them."""
    selected = {chapter.notebook for chapter in select_chapters(only)}
    askers: dict[Path, list[str]] = {}
    entries: dict[Path, tuple[PlannedRun, RunPlan]] = {}
    for chapter in CHAPTERS:
        for run, plan in (entry for planned in chapter.planned_runs(profile) for entry in _with_prerequisites(planned)):
            folder = run_dir_for(run.experiment, run.params, run.profile)
            notebooks = askers.setdefault(folder, [])
            if chapter.notebook not in notebooks:
                notebooks.append(chapter.notebook)
            if chapter.notebook in selected and folder not in entries:
                entries[folder] = (run, plan)
    listed = []
    for folder, (run, plan) in entries.items():  # in the owners' order: a run enters with its first asker
        owner = next(notebook for notebook in askers[folder] if notebook in selected)
        listed.append(
            ListedRun(
                owner,
                run.experiment,
                dict(run.params),
                run.profile,
                folder,
                plan,
                tuple(notebook for notebook in askers[folder] if notebook != owner),
                (folder / SEAL).is_file(),
            )
        )
    return listed


@dataclass(frozen=True)
class StepKey:
    """What one training step's time depends on: the net (spec JSON), the batch (capped at the training
    set), the input, the TrainConfig fields that change the work (`compiled`: whether the Trainer compiles
    the step, see `TrainConfig.compile`), the device and its CPU threads (`Profile.threads()`,
    "auto" as the Trainer decides), and the evaluation batch."""

    architecture: str
    batch_size: int
    input_size: tuple[int, int, int]
    precision: str
    optimizer: str
    channels_last: bool
    compiled: bool
    augment: bool
    padding: int
    flip: bool
    device: str
    threads: int | str
    eval_batch: int

    def digest(self) -> str:
        return config_hash(asdict(self))

    def describe(self) -> str:
        """The net, input, batch and arithmetic in a few words, e.g. "16/32/64 x 5/5/5 on 3x32x32 to 10
        classes, batch 128, fp32, sgd"; a ghost batch norm's virtual batch, where the net has one."""
        spec = ResNetSpec.from_json(self.architecture)
        ghost = "" if spec.ghost_batch is None else f", ghost batch {spec.ghost_batch}"
        return (
            f"{net_summary(spec)} on {'x'.join(map(str, self.input_size))} to {spec.num_classes} classes, "
            f"batch {self.batch_size}, {self.precision}, {self.optimizer}{ghost}"
            + (", compiled" if self.compiled else "")
        )


def net_summary(model: ResNetConfig | ResNetSpec) -> str:
    """A net's stream widths and blocks per stage, e.g. "16/32/64 x 5/5/5"."""
    spec = model if isinstance(model, ResNetSpec) else model.to_spec()
    widths = "/".join(str(stage.width) for stage in spec.stages)
    return f"{widths} x {'/'.join(str(len(stage.blocks)) for stage in spec.stages)}"


def split_sizes(profile: Profile) -> tuple[int, int]:
    """(training, test) images a run of `profile` uses: the profile's subset sizes or the whole splits."""
    train, test = DATASET_SIZES[profile.dataset]
    return profile.n_train or train, profile.n_test or test


def step_key(phase: Phase, profile: Profile) -> StepKey:
    """The `StepKey` of one phase of a run on `profile`."""
    train, test = split_sizes(profile)
    config, device = phase.train, profile.resolved_device()
    spec = phase.model if isinstance(phase.model, ResNetSpec) else phase.model.to_spec()
    threads = profile.threads() or "auto"
    compiled = config.compiles(phase.changes_shapes)
    return StepKey(
        spec.to_json(),
        min(config.batch_size, train),
        profile.input_size,
        config.precision,
        config.optimizer,
        config.channels_last,
        compiled,
        config.augment,
        config.padding,
        config.flip,
        device.type,
        threads if device.type == "cpu" else "-",
        min(config.eval_batch_size, test),
    )


def device_name(device: str) -> str:
    """The name calibrations are filed under: the GPU's name, or the CPU's model with its core count and
    OMP_NUM_THREADS (which sets torch's default threads)."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"cpu: {cpu_model()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"


def time_step(key: StepKey, steps: int, scratch: Path) -> dict[str, float]:
    """Seconds per training step, per evaluation batch, of the per-epoch rest and of the first epoch's
    extra for `key`: a Trainer runs a warm-up epoch and `TIMED_EPOCHS` timed epochs of `steps` steps each
    on random tensors (checkpointing into a temporary folder under `scratch`, as a run does), then one
    evaluation batch is timed after a warm-up; medians over the timed epochs."""
    if steps < 1:
        raise ValueError(f"calibration needs at least 1 timed step, got {steps}")
    spec = ResNetSpec.from_json(key.architecture)
    device = torch.device(key.device)
    # one test image: the trainer's own per-epoch evaluation stays out of `epoch_rest`, timed apart below
    data = random_dataset(key.batch_size * steps, 1, key.input_size, spec.num_classes, name="calibration")
    config = TrainConfig(
        epochs=1 + TIMED_EPOCHS,
        batch_size=key.batch_size,
        lr=1e-3,
        schedule="constant",
        milestones=(),
        optimizer=key.optimizer,
        precision=key.precision,
        channels_last=key.channels_last,
        compile="always" if key.compiled else "off",
        augment=key.augment,
        padding=key.padding,
        flip=key.flip,
        eval_batch_size=key.eval_batch,
    )
    ends: list[float] = []
    threads = torch.get_num_threads()
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=scratch, prefix=".calibration-") as folder:
            trainer = Trainer(
                seeded_model(spec, 0),
                data,
                config,
                device=device,
                progress=False,
                checkpoint_path=Path(folder) / "checkpoint.pt",
                cpu_threads=None if key.threads == "-" else key.threads,
                epoch_callback=lambda trainer, record: ends.append(time.perf_counter()),
            )
            start = time.perf_counter()
            history = trainer.fit()
        walls = [end - begin for begin, end in zip([start, *ends], ends)]  # per epoch, the warm-up first
        trained = history["epoch_time"].tolist()
        step = statistics.median(trained[1:]) / steps
        rest = statistics.median(wall - train for wall, train in zip(walls[1:], trained[1:]))
        first_epoch_extra = walls[0] - statistics.median(walls[1:])
        evaluation_data = random_dataset(1, key.eval_batch, key.input_size, spec.num_classes, seed=1)
        x, y = evaluation_data.test_x.to(device), evaluation_data.test_y.to(device)
        evaluate(trainer.model, x, y, key.eval_batch, AUTOCAST_DTYPES.get(key.precision))
        evaluations = []
        for _ in range(TIMED_EPOCHS):
            evaluations.append(
                timed(device, lambda: evaluate(trainer.model, x, y, key.eval_batch, AUTOCAST_DTYPES.get(key.precision)))
            )
        evaluation = statistics.median(evaluations)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
    return {
        "step": step,
        "evaluation": evaluation,
        "epoch_rest": max(0.0, rest),
        "first_epoch_extra": max(0.0, first_epoch_extra),
        "steps": steps,
        "threads": used_threads,
    }


def calibration_path(profile: Profile) -> Path:
    return results_root() / profile.name / CALIBRATION_FILE


@dataclass
class Calibration:
    """Step times per `StepKey` for one profile's device, how many were timed now or read from the file, and
    the highest 1-minute load average seen while they were timed (other processes on the machine slow a
    timing down: a load above the CPU count means every process waited for a core)."""

    device: str
    path: Path
    times: dict[StepKey, dict[str, float]]
    measured: int
    cached: int

    @property
    def load(self) -> float:
        return max((times.get("load", 0.0) for times in self.times.values()), default=0.0)


def calibration_id(key: StepKey, steps: int) -> str:
    """The name of `key`'s entry in the calibration file: timings of another step count or another torch
    version are timed again, not reused."""
    return config_hash({"key": key.digest(), "steps": steps, "torch": torch.__version__})


def calibrate(
    keys: Sequence[StepKey],
    profile: Profile,
    steps: int = DEFAULT_STEPS,
    timer: Callable[[StepKey, int, Path], dict[str, float]] = time_step,
    report: Callable[[str], None] = lambda line: None,
) -> Calibration:
    """The times of every key: those in the profile's calibration file under this device's name, the rest
    timed with `timer` and added to the file (written atomically after each one, so an interrupted
    calibration keeps what it measured). A file that cannot be read is replaced, with a report."""
    if steps < 1:
        raise ValueError(f"calibration needs at least 1 timed step, got {steps}")
    path = calibration_path(profile)
    name = device_name(profile.resolved_device().type)
    stored: dict[str, Any] = {}
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            if not isinstance(stored, dict):
                raise ValueError("it holds no mapping")
        except ValueError as error:
            report(f"the calibration file {path} cannot be read ({error}); timing again")
            stored = {}
    device_times = stored.setdefault(name, {})
    times, measured, cached = {}, 0, 0

    missing = [key for key in dict.fromkeys(keys) if calibration_id(key, steps) not in device_times]
    for key in dict.fromkeys(keys):
        if calibration_id(key, steps) in device_times:
            times[key] = device_times[calibration_id(key, steps)]
            cached += 1
            continue
        report(f"calibrating {measured + 1}/{len(missing)} on {name}: {key.describe()}")
        entry = {
            **timer(key, steps, path.parent),
            "key": asdict(key),
            "torch": torch.__version__,
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load": os.getloadavg()[0],
        }
        device_times[calibration_id(key, steps)] = entry
        times[key] = entry
        measured += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(stored, indent=1, sort_keys=True))
    return Calibration(name, path, times, measured, cached)


def phase_seconds(phase: Phase, profile: Profile, times: dict[str, float]) -> float:
    """Estimated seconds of one phase from its step configuration's `times` (see the module docstring)."""
    key = step_key(phase, profile)
    train, test = split_sizes(profile)
    per_epoch = (
        math.ceil(train / key.batch_size) * times["step"]
        + test / key.eval_batch * times["evaluation"]
        + times["epoch_rest"]
    )
    return phase.epochs * per_epoch + times["first_epoch_extra"]


def run_table(runs: Sequence[ListedRun], calibration: Calibration | None = None) -> pd.DataFrame:
    """One row per run: notebook, experiment, epochs, its first phase's net and batch, cached, seconds
    (with a calibration), bound (the run is estimated with a larger net), shared_with and params."""
    rows = []
    for entry in runs:
        first = entry.plan.phases[0] if entry.plan.phases else None
        row = {
            "notebook": entry.notebook,
            "experiment": entry.experiment,
            "epochs": entry.plan.epochs,
            "net": net_summary(first.model) if first else "-",
            "batch": first.train.batch_size if first else 0,
            "cached": entry.cached,
            "bound": any(phase.bound for phase in entry.plan.phases),
            "shared_with": ", ".join(notebook.split("_")[0] for notebook in entry.shared_with),
            "params": json.dumps(entry.params, default=str),
        }
        if calibration is not None:
            row["seconds"] = sum(
                phase_seconds(phase, entry.profile, calibration.times[step_key(phase, entry.profile)])
                for phase in entry.plan.phases
            )
        rows.append(row)
    columns = [
        "notebook",
        "experiment",
        "epochs",
        "net",
        "batch",
        "cached",
        *(["seconds"] if calibration else []),
        "bound",
        "shared_with",
        "params",
    ]
    return pd.DataFrame(rows, columns=columns)


def time_unit(seconds: float) -> tuple[str, float]:
    """("hours", 3600) for two hours and more, else ("minutes", 60): the unit the tables use."""
    return ("hours", 3600.0) if seconds >= 7200 else ("minutes", 60.0)


def notebook_table(table: pd.DataFrame, chapters: Sequence[Chapter], shared: dict[str, int]) -> pd.DataFrame:
    """Per notebook (in `chapters` order) and in total: runs counted for it, runs it asks for that another
    notebook counts (`shared`), cached runs, epochs and, with seconds in `table`, the estimated time of all
    its runs and of those not cached yet, in `time_unit` of the total (columns "hours" and "hours_left", or
    "minutes" and "minutes_left")."""
    unit, scale = time_unit(table["seconds"].sum()) if "seconds" in table else ("", 1.0)
    rows = []
    for chapter in [*chapters, None]:
        own = table if chapter is None else table[table["notebook"] == chapter.notebook]
        row = {
            "notebook": "total" if chapter is None else chapter.notebook,
            "runs": len(own),
            "shared": sum(shared.values()) if chapter is None else shared.get(chapter.notebook, 0),
            "cached": int(own["cached"].sum()),
            "epochs": int(own["epochs"].sum()),
        }
        if unit:
            row[unit] = own["seconds"].sum() / scale
            row[f"{unit}_left"] = own.loc[~own["cached"], "seconds"].sum() / scale
        rows.append(row)
    return pd.DataFrame(rows)


def plan_report(
    profile: str | Profile,
    only: Sequence[str] | None = None,
    calibrate_times: bool = True,
    list_every_run: bool = False,
    steps: int = DEFAULT_STEPS,
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> str:
    """The text `python -m thesis_lib plan` prints: the profile, the calibration, one row per notebook and
    a total, then (with `list_every_run`) one row per run, and what the estimate leaves out."""
    profile = get_profile(profile)
    chapters = select_chapters(only)
    runs = list_runs(profile, only)
    calibration = None
    if calibrate_times:
        keys = [step_key(phase, entry.profile) for entry in runs for phase in entry.plan.phases]
        calibration = calibrate(keys, profile, steps, report=report)
    table = run_table(runs, calibration)
    shared = {chapter.notebook: sum(chapter.notebook in entry.shared_with for entry in runs) for chapter in chapters}
    summary = notebook_table(table, chapters, shared)
    datasets = sorted({entry.profile.dataset for entry in runs})
    lines = [
        f"plan for profile {profile.name!r} ({', '.join(datasets)}): {len(runs)} runs, "
        f"{int(table['cached'].sum())} cached in {results_root() / profile.name}"
    ]
    if calibration is not None:
        lines.append(
            f"calibrated on {calibration.device}: {len(calibration.times)} step configurations, "
            f"{calibration.measured} timed now, {calibration.cached} from {calibration.path}; load "
            f"average up to {calibration.load:.1f} on {os.cpu_count()} CPUs while timing"
        )
    with pd.option_context("display.width", 200, "display.max_colwidth", 80, "display.float_format", "{:.3f}".format):
        lines.append(summary.to_string(index=False))
        if calibration is not None:
            seconds, left = table["seconds"].sum(), table.loc[~table["cached"], "seconds"].sum()
            lines.append(
                f"estimated training time on this device, one run at a time: {seconds / 3600:.2f} h "
                f"({seconds / 60:.1f} min), {left / 3600:.2f} h ({left / 60:.1f} min) for the runs not "
                "cached"
            )
        lines.append(
            "shared: runs another notebook asks for too are counted for the first of them in thesis "
            "order; 'shared' counts those a notebook finds trained by an earlier one"
        )
        bounds = sorted({phase.bound for entry in runs for phase in entry.plan.phases if phase.bound})
        if bounds:
            lines.append(
                f"upper bounds or approximations: {int(table['bound'].sum())} runs are estimated with "
                "another net than the one they end with:"
            )
            lines.extend(f"  - {bound}" for bound in bounds)
        if calibration is not None:
            lines.append(
                "not estimated: the hooks' per-step work (PruneTrain's group lasso, MorphNet's penalty), "
                "reconfigurations and growths, and the notebooks' own work (kernels, figures, 6.1's "
                "memory measurements)"
            )
        if list_every_run:
            lines.append(table.to_string(index=False))
    return "\n".join(lines)
