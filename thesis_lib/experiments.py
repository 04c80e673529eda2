"""Profiles, the run cache and sweeps.

`run(name, params, profile=...)` trains or loads one experiment. An experiment is a function registered
with `@experiment(name)`; it receives a `RunContext` (profile, data, a checkpointing Trainer factory) and
returns a `RunOutput`. Results live in `results/<profile>/<name>/<config hash>/`:

    config.json    what was asked (experiment, version, params, profile): written first
    checkpoint_<phase>.pt  the Trainer's state after every epoch, while the run is unfinished (resume point)
    history.csv    one row per epoch
    summary.json   the run's scalar results
    model.pt       the final model (spec and weights)
    DONE           the seal, written last: size and sha256 of every result file

Every file is written atomically (unique temporary name, fsync, rename, fsync of the folder). A run folder
is locked (`<folder>.lock`, the filelock package) while one process trains it; a second process asking
for the same run waits and then loads it; different runs never block each other. The lock file stays next
to its folder (only a run that fails before its first checkpoint removes both, while holding the lock: see
`_unlink_held_lock`). Loading verifies the seal: a missing, truncated, garbled or replaced result file
raises `CorruptRunError` naming the folder and the file, never a wrong number; result files without a seal
(and without a checkpoint to resume from) are reported too, not trained over. A killed run resumes from its
checkpoint; a run that fails before its first checkpoint leaves no folder behind. Under torchrun (DDP) every
rank trains and rank 0 alone locks, writes and seals the folder (see `run`).
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import itertools
import inspect
import io
import json
import math
import os
import re
import stat
import shutil
import time
import types
from contextlib import closing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence, Union, get_args, get_origin, get_type_hints

import pandas as pd
import torch
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from . import distributed, project_root
from .data import DATASET_SHAPES, Dataset, load_dataset
from .executors import ray_tasks, resolve_executor, thesis_env
from .models import NARROW_BASELINE, WIDE_BASELINE, ResNet, ResNetConfig, ResNetSpec, build_resnet
from .training import (SEED_LIMIT, TENSORBOARD_ENV, TensorBoardLogger, Trainer, TrainConfig, TrainingHook,
                       atomic_torch_save, atomic_write)

# The package whose import registers every experiment (one module per chapter); imported on the first
# lookup of an unknown name, so `run("prunetrain", ...)` works without importing a chapter first.
EXPERIMENT_PACKAGE = "thesis_lib.chapters"

BASE_MODELS = {"wide": WIDE_BASELINE, "narrow": NARROW_BASELINE}


PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Profile:
    """How big every experiment is: data, epochs, seeds, network depth, device (DESIGN.md section 5).

    Milestones scale with the epochs like the thesis's 93 and 150 of 180 epochs. `cpu_threads` fixes
    torch's intra-op threads for runs on the CPU: the small profiles' nets are so small that one thread is
    as fast as several and immune to a busy machine, and a fixed count makes CPU results reproducible
    (reductions split over a different number of threads round differently). None leaves torch's default.

    The `cuda_*` fields are the fast path a run gets when the profile resolves to a CUDA device (issue 16):
    `full` trains in bf16 autocast with channels_last; a run's own params override them (e.g.
    precision="fp32"). On the CPU they are ignored: bf16 on a CPU is slower than fp32 and compiling small
    nets never pays. `cuda_compile` stays "off" on `full` until a GPU shows that compiling pays: with
    "static" the fixed-shape runs (baselines, MorphNet's phases) would compile and PruneTrain's and
    Net2Net's would not (`TrainConfig.compile`), so every time comparison between them would also measure
    the compiler; a run can still ask for it (`compile="static"`).
    """

    name: str
    dataset: str
    epochs: int
    milestones: tuple[int, ...]
    seeds: tuple[int, ...]
    batch_size: int
    lr: float
    blocks_per_stage: int
    padding: int
    flip: bool
    n_train: int | None = None
    n_test: int | None = None
    device: str = "auto"
    cpu_threads: int | None = None
    cuda_precision: str = "fp32"
    cuda_channels_last: bool = False
    cuda_compile: str = "off"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not PROFILE_NAME.fullmatch(self.name):
            raise ValueError(f"profile name {self.name!r} must be letters, digits, '_', '-' or '.', not starting "
                             "with '.': it names a folder under the results root and must stay inside it")
        for key in ("n_train", "n_test"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"profile {self.name!r}: {key} must be >= 1 or None (the whole split), got "
                                 f"{value!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.blocks_per_stage < 1:
            raise ValueError(f"profile {self.name!r}: epochs, batch_size and blocks_per_stage must be >= 1")
        if not self.seeds:
            raise ValueError(f"profile {self.name!r} needs at least one seed")

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def apply_cpu_threads(self) -> None:
        """Set torch's intra-op threads to `cpu_threads` when this profile runs on the CPU."""
        if self.resolved_device().type == "cpu" and self.cpu_threads is not None:
            torch.set_num_threads(self.cpu_threads)

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image of the profile's dataset, without loading it."""
        channels, size, _ = DATASET_SHAPES[self.dataset]
        return (channels, size, size)

    @property
    def num_classes(self) -> int:
        return DATASET_SHAPES[self.dataset][2]

    def resnet(self, base: ResNetConfig | str, in_channels: int, num_classes: int) -> ResNetConfig:
        """`base` (a config or "wide" / "narrow") with this profile's depth and the dataset's shapes."""
        if isinstance(base, str) and base not in BASE_MODELS:
            raise ValueError(f"unknown model {base!r}; use one of {sorted(BASE_MODELS)} or a ResNetConfig")
        config = BASE_MODELS[base] if isinstance(base, str) else base
        return config.with_(blocks=(self.blocks_per_stage,) * config.stages, in_channels=in_channels,
                            num_classes=num_classes)

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The profile's TrainConfig, with any field overridden.

        The profile's `lr` is an SGD rate set for its `batch_size` (the reference batch of `lr_scaling`);
        with optimizer "lars" and no lr given, LARS's own recipe rate (`training.DEFAULT_LR`) is used."""
        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown training parameter(s) {unknown}; TrainConfig fields are {sorted(known)}")
        lr = None if overrides.get("optimizer", "sgd") != "sgd" else self.lr
        base = dict(epochs=self.epochs, batch_size=self.batch_size, lr=lr, lr_reference_batch=self.batch_size,
                    schedule="step", milestones=self.milestones, padding=self.padding, flip=self.flip)
        if self.resolved_device().type == "cuda":
            base.update(precision=self.cuda_precision, channels_last=self.cuda_channels_last,
                        compile=self.cuda_compile)
        return TrainConfig(**{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """The profile's fields; the `cuda_*` fields only when they differ from the defaults, so the run
        folders of profiles without a fast path keep the names they had before the fields existed."""
        data = asdict(self)
        data["milestones"], data["seeds"] = list(self.milestones), list(self.seeds)
        for item in fields(self):
            if item.name.startswith("cuda_") and data[item.name] == item.default:
                del data[item.name]
        return data


PROFILES: dict[str, Profile] = {
    "smoke": Profile(name="smoke", dataset="digits", epochs=2, milestones=(1,), seeds=(0, 1),
                     batch_size=64, lr=0.05, blocks_per_stage=1, padding=1, flip=False,
                     n_train=256, n_test=128, device="cpu", cpu_threads=1),
    "quick": Profile(name="quick", dataset="digits", epochs=10, milestones=(5, 8), seeds=(0, 1, 2, 3, 4),
                     batch_size=64, lr=0.05, blocks_per_stage=1, padding=1, flip=False, cpu_threads=1),
    "full": Profile(name="full", dataset="cifar10", epochs=180, milestones=(93, 150), seeds=(0, 1, 2, 3, 4),
                    batch_size=128, lr=0.1, blocks_per_stage=5, padding=4, flip=True,
                    cuda_precision="bf16", cuda_channels_last=True),
}


def get_profile(profile: str | Profile) -> Profile:
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {sorted(PROFILES)}")
    return PROFILES[profile]


def results_root() -> Path:
    """THESIS_RESULTS when set and not empty, else results/ in the project root."""
    return Path(os.environ.get("THESIS_RESULTS") or project_root() / "results")


def _profile_root(profile: Profile) -> Path:
    """`<results root>/<profile name>`; a root or profile folder that is a file is an error, not "empty"."""
    root = results_root()
    for folder in (root, root / profile.name):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"the results folder {folder} is a file; move it away or set THESIS_RESULTS to a "
                             "folder")
    return root / profile.name


class CorruptRunError(RuntimeError):
    """A run folder whose results cannot be trusted: a broken seal, a damaged file, unsealed results."""


@dataclass
class RunOutput:
    """What an experiment function returns."""

    history: pd.DataFrame
    summary: dict[str, Any]
    model: ResNet | None = None


@dataclass
class RunResult:
    """A finished run, trained now or loaded from the cache."""

    name: str
    params: dict[str, Any]
    summary: dict[str, Any]
    history: pd.DataFrame
    path: Path
    loaded_from_cache: bool

    def model(self, device: str | torch.device = "cpu") -> ResNet:
        """The run's final model, rebuilt from its saved spec."""
        try:
            state = torch.load(self.path / "model.pt", map_location=device, weights_only=False)
        except Exception as error:  # the seal was verified at load time: this is damage since then
            raise CorruptRunError(f"run {self.path}: model.pt cannot be read ({error}); delete that folder "
                                  "to run it again") from error
        if state["spec"] is None:
            raise ValueError(f"experiment {self.name!r} saved no model in {self.path}")
        model = build_resnet(ResNetSpec.from_dict(state["spec"]))
        model.load_state_dict(state["state_dict"])
        return model.to(device)


_DATASETS: dict[tuple[str, int | None, int | None], Dataset] = {}


@dataclass
class RunContext:
    """Everything an experiment function needs: its params (resolved: declared defaults filled in, values of
    their declared types), the profile, data and a checkpointing Trainer."""

    name: str
    params: dict[str, Any]
    profile: Profile
    run_dir: Path
    progress: bool = True
    device: torch.device = field(init=False)

    def __post_init__(self) -> None:
        self.device = self.profile.resolved_device()
        self.profile.apply_cpu_threads()

    def dataset(self, name: str | None = None) -> Dataset:
        """The profile's dataset (or `name`), subset to the profile's sizes; loaded once per process."""
        name = name or self.profile.dataset
        key = (name, self.profile.n_train, self.profile.n_test)
        if key not in _DATASETS:
            data = load_dataset(name)
            if self.profile.n_train is not None or self.profile.n_test is not None:
                data = data.subset(self.profile.n_train or len(data.train_y),
                                   self.profile.n_test or len(data.test_y), seed=0)
            _DATASETS[key] = data
        return _DATASETS[key]

    def resnet_config(self, base: ResNetConfig | str, data: Dataset | None = None) -> ResNetConfig:
        """`base` ("wide", "narrow" or a ResNetConfig) at the profile's depth, for `data`'s images and classes."""
        data = data or self.dataset()
        return self.profile.resnet(base, data.in_channels, data.num_classes)

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The profile's TrainConfig with `overrides` (see `Profile.train_config`)."""
        return self.profile.train_config(**overrides)

    def trainer(self, model: torch.nn.Module, config: TrainConfig, hooks: Sequence[TrainingHook] = (),
                data: Dataset | None = None, phase: str = "train") -> Trainer:
        """A Trainer that checkpoints into this run's folder (one checkpoint per `phase`)."""
        threads = "auto" if self.profile.cpu_threads is None else self.profile.cpu_threads
        return Trainer(model=model, data=data or self.dataset(), config=config, hooks=list(hooks),
                       device=self.device, checkpoint_path=self.run_dir / f"checkpoint_{phase}.pt",
                       progress=self.progress, description=f"{self.name} {phase}", cpu_threads=threads,
                       epoch_callback=EpochReporter(self.name, self.run_dir, phase, self.params),
                       checkpoint_owner=f"{self.run_dir.name}/{phase}")


PROGRESS_DIR = ".progress"
_progress: dict[str, Any] = {}
_progress_files: set[Path] = set()


def progress_dir() -> Path:
    """Where running processes report their progress (one JSON file per process, `report_progress`)."""
    return results_root() / PROGRESS_DIR


def report_progress(**fields: Any) -> None:
    """Merge `fields` into this process's progress record and write it atomically to
    `progress_dir()/<pid>.json`, with the notebook (THESIS_NOTEBOOK, which `plots.use_notebook` sets) and
    the time. The `notebooks` command reads these files to print runs done, epoch and ETA during a
    headless re-run. Reporting never stops a run: a folder that cannot be written is skipped. Under DDP
    rank 0 reports for all ranks."""
    if distributed.rank() != 0:
        return
    _progress.update(fields, notebook=os.environ.get("THESIS_NOTEBOOK", f"process {os.getpid()}"),
                     updated=time.time())
    folder = progress_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        record = folder / f"{os.getpid()}.json"
        if record not in _progress_files:
            _progress_files.add(record)
            atexit.register(record.unlink, missing_ok=True)  # no stale record once the process ends
        _write_text_atomic(record, json.dumps(_progress))
    except OSError:
        pass


@dataclass
class EpochReporter:
    """A Trainer's `epoch_callback` for the run store: reports the epoch to `report_progress` and, when
    THESIS_TENSORBOARD=1 (`notebooks --tensorboard`), logs it for TensorBoard into
    `<run folder>/tensorboard/<readable params>/<phase>` with the run's params as hparams (live curves:
    `tensorboard --logdir results/<profile>`; each run shows as `<experiment>/<hash>/tensorboard/<params>`)."""

    run: str
    run_dir: Path
    phase: str
    params: Mapping[str, Any] = field(default_factory=dict)
    _tensorboard: TensorBoardLogger | None = None

    def __call__(self, trainer: Trainer, record: Mapping[str, Any]) -> None:
        report_progress(run=self.run, phase=self.phase, epoch=int(record["epoch"]), epochs=trainer.config.epochs)
        if os.environ.get(TENSORBOARD_ENV) != "1":
            return
        if self._tensorboard is None:
            folder = self.run_dir / "tensorboard" / readable_params(self.params) / self.phase
            self._tensorboard = TensorBoardLogger(folder, {"experiment": self.run, "phase": self.phase,
                                                           **self.params})
        self._tensorboard(trainer, record)


def readable_params(params: Mapping[str, Any], limit: int = 100) -> str:
    """`params` as one folder name, `key=value` joined by commas (cut at `limit` characters): TensorBoard
    names a run by its folder."""
    def shown(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"),
                                                               default=str)

    text = ",".join(f"{key}={shown(value)}" for key, value in sorted(params.items())) or "defaults"
    return "".join(c if c.isalnum() or c in "=,.-_" else "_" for c in text)[:limit]


ExperimentFunction = Callable[[RunContext], RunOutput]


@dataclass(frozen=True)
class Bounds:
    """The range of a numeric param (`param`, `plan_default`): `run` rejects a value outside it, naming the
    param and the range, before anything is written. None: no bound on that side."""

    at_least: float | None = None
    above: float | None = None
    below: float | None = None
    at_most: float | None = None

    def admits(self, value: float) -> bool:
        return ((self.at_least is None or value >= self.at_least) and (self.above is None or value > self.above)
                and (self.below is None or value < self.below) and (self.at_most is None or value <= self.at_most))

    def __str__(self) -> str:
        def number(bound: float) -> str:
            return "2^63" if bound == SEED_LIMIT else f"{bound:g}"

        low = (f"[{number(self.at_least)}" if self.at_least is not None
               else f"({number(self.above)}" if self.above is not None else None)
        high = (f"{number(self.below)})" if self.below is not None
                else f"{number(self.at_most)}]" if self.at_most is not None else None)
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>=' if low[0] == '[' else '>'} {low[1:]}"
        return f"{'<' if high[-1] == ')' else '<='} {high[:-1]}" if high else "any number"


PLAN_DEFAULT = "plan_default"
PARAM_BOUNDS = "bounds"


def param(default: Any = MISSING, **bounds: float) -> Any:
    """A params-dataclass field with a range: `noise: float = param(0.0, at_least=0)` (see `Bounds`)."""
    return field(default=default, metadata={PARAM_BOUNDS: Bounds(**bounds)})


def seed_param(default: int = 0) -> Any:
    """The `seed` field of a params dataclass: an int in [0, 2^63), the range of torch's seeds."""
    return param(default, at_least=0, below=SEED_LIMIT)


def _plan_default_shown(getter: Callable[[Profile, Mapping[str, Any]], Any], profile: Profile | None,
                        fixed: Mapping[str, Any]) -> str:
    if profile is None:
        return "default: the profile's plan or other params (list --profile NAME shows it)"
    try:
        return f"= {getter(profile, dict(fixed))!r} on {profile.name}"
    except KeyError:  # it depends on a param that has no default
        return "default: from the run's other params"


def plan_default(getter: Callable[[Profile, Mapping[str, Any]], Any], **bounds: float) -> Any:
    """A param default that depends on the profile (a chapter's plan) or on the run's other params:
    `getter(profile, params)` gets the params with every other default already filled in; `bounds` as in
    `param`.

    Use it as a field default of a params dataclass: `lasso_ratio: float = plan_default(lambda p, _: ...)`."""
    return field(default=None, metadata={PLAN_DEFAULT: getter, PARAM_BOUNDS: Bounds(**bounds)})


@dataclass(frozen=True)
class Phase:
    """One training phase of a run, known before it trains: the net, its TrainConfig (batch, precision, ...),
    `bound`, empty when the net is exactly the one trained, else why it only bounds or approximates it
    (PruneTrain shrinks its starting net while it trains: that net is an upper bound), its epochs (default
    `train.epochs`; a phase of a longer run, such as a net before its growth, trains fewer), and
    `changes_shapes`: it trains with a hook that reshapes the net (the chapters pass that hook class's own
    `changes_shapes`: PruneTrain, Net2Net, the 6.3 search), so `compile="static"` trains it eagerly."""

    description: str
    model: ResNetConfig | ResNetSpec
    train: TrainConfig
    bound: str = ""
    epochs: int | None = None
    changes_shapes: bool = False

    def __post_init__(self) -> None:
        if self.epochs is None:
            object.__setattr__(self, "epochs", self.train.epochs)
        if not 0 < self.epochs <= self.train.epochs:
            raise ValueError(f"phase {self.description!r}: epochs must lie in 1..{self.train.epochs} (its "
                             f"TrainConfig's), got {self.epochs}")


@dataclass(frozen=True)
class RunPlan:
    """What one run will do, without doing it: its training phases in order, and the runs it loads from the
    cache (or trains once) first, as (experiment, params) (a shrink loads its regularized run)."""

    phases: tuple[Phase, ...]
    requires: tuple[tuple[str, Mapping[str, Any]], ...] = ()

    @property
    def epochs(self) -> int:
        """Epochs over all phases."""
        return sum(phase.epochs for phase in self.phases)


RunPlanner = Callable[[Profile, dict[str, Any]], RunPlan]


@dataclass(frozen=True)
class PlannedRun:
    """One run a notebook asks for: the experiment, its params as the notebook's sweep passes them, and the
    profile it runs on (chapter 8 runs chapter 7's procedures on another dataset under the same profile)."""

    experiment: str
    params: Mapping[str, Any]
    profile: Profile


def planned_sweep(name: str, grid: Iterable[Mapping[str, Any]], profile: str | Profile) -> list[PlannedRun]:
    """The runs `sweep(name, grid, profile=profile)` trains or loads, as `PlannedRun`s."""
    profile = get_profile(profile)
    return [PlannedRun(name, dict(params), profile) for params in grid]


def single_phase(profile: Profile, model: ResNetConfig | ResNetSpec | str, train: TrainConfig,
                 description: str = "train", bound: str = "", changes_shapes: bool = False) -> RunPlan:
    """A run of one phase: `model` ("wide" / "narrow" at the profile's depth, or a config or spec)."""
    if isinstance(model, str):
        model = profile.resnet(model, profile.input_size[0], profile.num_classes)
    return RunPlan((Phase(description, model, train, bound, changes_shapes=changes_shapes),))


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its function, version, declared params and plan.

    `params` is a dataclass whose fields are the experiment's params (name, type annotation, default; a
    field without default is required); None: no params of its own. `train_config`: every `TrainConfig`
    field is accepted as well (checked against TrainConfig's field types), and handed on to the function.
    `plan(profile, resolved params)` says what a run will train (`RunPlan`) without training it; None: one
    phase of the params' "model" (default "wide") with the TrainConfig of the params' TrainConfig fields.
    """

    name: str
    function: ExperimentFunction
    version: int
    params: type | None = None
    train_config: bool = False
    plan: RunPlanner | None = None

    def run_plan(self, profile: str | Profile, params: Mapping[str, Any] | None = None) -> RunPlan:
        """The `RunPlan` of a run of this experiment with `params` (resolved as `run` resolves them)."""
        profile = get_profile(profile)
        resolved = resolve_params(self.name, params, profile)
        if self.plan is not None:
            return self.plan(profile, resolved)
        model = resolved.get("model", "wide")
        if not isinstance(model, (str, ResNetConfig)):
            raise ValueError(f"experiment {self.name!r} has no plan and its param 'model' is {model!r}, not a "
                             "model name or ResNetConfig; register it with @experiment(..., plan=...)")
        known = {f.name for f in fields(TrainConfig)}
        train = {key: value for key, value in resolved.items() if key in known}
        return single_phase(profile, model, profile.train_config(**train))

    @property
    def summary(self) -> str:
        """The first line of the function's docstring."""
        doc = (self.function.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def declared(self) -> dict[str, tuple[Any, Any]]:
        """name -> (type annotation, default) of every declared param; the default is `REQUIRED`, a value,
        or a `plan_default` getter."""
        if self.params is None:
            return {}
        hints = get_type_hints(self.params)
        out = {}
        for spec in fields(self.params):
            if PLAN_DEFAULT in spec.metadata:
                default = spec.metadata[PLAN_DEFAULT]
            elif spec.default is not MISSING:
                default = spec.default
            elif spec.default_factory is not MISSING:
                default = spec.default_factory()
            else:
                default = REQUIRED
            out[spec.name] = (hints[spec.name], default)
        return out

    def bounds(self) -> dict[str, Bounds]:
        """name -> range of every declared param that has one (`param`, `plan_default`)."""
        if self.params is None:
            return {}
        return {spec.name: spec.metadata[PARAM_BOUNDS] for spec in fields(self.params)
                if PARAM_BOUNDS in spec.metadata and spec.metadata[PARAM_BOUNDS] != Bounds()}

    @property
    def description(self) -> str:
        """The function's whole docstring, dedented."""
        return inspect.cleandoc(self.function.__doc__ or "")

    def describe_params(self, profile: str | Profile | None = None) -> list[str]:
        """One line per param: `name: type = default, range`, then "any TrainConfig field" where accepted.
        A default from the profile's plan is shown resolved for `profile` (when it needs no other param
        that has no default)."""
        lines, bounds, declared = [], self.bounds(), self.declared()
        profile = get_profile(profile) if profile is not None else None
        fixed = {name: default for name, (_, default) in declared.items()
                 if default is not REQUIRED and not callable(default)}
        for name, (annotation, default) in declared.items():
            if default is REQUIRED:
                shown = "required"
            elif not callable(default):
                shown = f"= {default!r}"
            else:
                shown = _plan_default_shown(default, profile, fixed)
            limits = f", {bounds[name]}" if name in bounds else ""
            lines.append(f"{name}: {describe_type(annotation)} {shown}{limits}")
        if self.train_config:
            lines.append("and any TrainConfig field (e.g. lr, batch_size, epochs, milestones, precision)")
        return lines


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
_REGISTRY: dict[str, Experiment] = {}


def experiment(name: str, version: int = 1, *, params: type | None = None, train_config: bool = False,
               plan: RunPlanner | None = None) -> Callable[[ExperimentFunction], ExperimentFunction]:
    """Register an experiment function under `name`. Bump `version` when its results change meaning.

    `params`: a dataclass declaring the experiment's params with types and defaults (see `Experiment`);
    `run` rejects any other name or a wrong type before anything is written, and fills the defaults in
    before hashing, so a run is named by what it does, not by how it was asked for. `plan`: what a run
    trains, for `python -m thesis_lib plan` (see `Experiment`; needed by multi-phase experiments)."""
    if params is not None and not is_dataclass(params):
        raise ValueError(f"experiment {name!r}: params must be a dataclass, got {params!r}")

    def register(function: ExperimentFunction) -> ExperimentFunction:
        if name in _REGISTRY:
            known = _REGISTRY[name].function
            if (known.__module__, known.__qualname__) != (function.__module__, function.__qualname__):
                raise ValueError(f"experiment {name!r} is registered twice: by {known.__module__}."
                                 f"{known.__qualname__} and by {function.__module__}.{function.__qualname__}")
        _REGISTRY[name] = Experiment(name, function, version, params, train_config, plan)
        return function

    return register


def _lookup(name: str) -> Experiment:
    if name not in _REGISTRY:
        importlib.import_module(EXPERIMENT_PACKAGE)
    if name not in _REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def registered_experiments() -> dict[str, Experiment]:
    """Every registered experiment by name (after importing every chapter)."""
    importlib.import_module(EXPERIMENT_PACKAGE)
    return dict(sorted(_REGISTRY.items()))


def describe_type(annotation: Any) -> str:
    """A type annotation in words, for error messages and `list`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(describe_type(a) for a in args)
    if origin is tuple:
        return f"list of {describe_type(args[0])}"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _coerce(value: Any, annotation: Any) -> Any:
    """`value` as an instance of `annotation`, or ValueError. Integral floats pass as int (3.0 is 3), ints
    as floats, lists as tuples, a mapping of ResNetConfig fields as a ResNetConfig; nothing else converts."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return _coerce(value, option)
            except ValueError:
                continue
        raise ValueError
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ValueError
    if annotation is type(None):
        if value is None:
            return None
        raise ValueError
    if annotation in (bool, str):
        if isinstance(value, annotation):
            return value
        raise ValueError
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError
        item = args[0]
        return tuple(_coerce(v, item) for v in value)
    if annotation is ResNetConfig:
        if isinstance(value, ResNetConfig):
            return value
        if isinstance(value, Mapping):
            hints = get_type_hints(ResNetConfig)
            unknown = set(value) - set(hints)
            if unknown:
                raise ValueError
            return ResNetConfig(**{key: _coerce(v, hints[key]) for key, v in value.items()})
        raise ValueError
    raise TypeError(f"experiment params cannot be declared as {annotation!r}")


def _checked(experiment_name: str, key: str, value: Any, annotation: Any, bounds: Bounds | None = None) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"param {key!r} of experiment {experiment_name!r} must be a finite number"
                         f"{'' if bounds is None else f' {bounds}'}, got {value!r}")
    try:
        return _coerce(value, annotation)
    except ValueError:
        raise ValueError(f"param {key!r} of experiment {experiment_name!r} must be {describe_type(annotation)}, "
                         f"got {value!r}") from None


def resolve_params(name: str, params: Mapping[str, Any] | None, profile: str | Profile) -> dict[str, Any]:
    """The params a run of `name` really uses: names and types checked, declared defaults filled in
    (plan defaults from `profile`), values converted to their declared type. A declared param that is None
    means "not given" and is left out. With `train_config`, the TrainConfig fields among them are
    checked by building the profile's TrainConfig with them. Raises ValueError naming the param."""
    profile = get_profile(profile)
    registered = _lookup(name)
    if not isinstance(params, Mapping) and params is not None:
        raise ValueError(f"params of {name!r} must be a mapping of name -> value, got {params!r}")
    given = dict(params or {})
    named_otherwise = [key for key in given if not isinstance(key, str)]
    if named_otherwise:
        raise ValueError(f"params of {name!r} must have string keys (param names), got {named_otherwise!r}")
    declared = registered.declared()
    train_types = get_type_hints(TrainConfig) if registered.train_config else {}
    unknown = sorted(set(given) - set(declared) - set(train_types))
    if unknown:
        accepted = sorted(declared) + (["any TrainConfig field"] if train_types else [])
        raise ValueError(f"unknown param(s) {unknown} of experiment {name!r}; it takes {accepted}")
    missing = sorted(key for key, (_, default) in declared.items() if default is REQUIRED and key not in given)
    if missing:
        raise ValueError(f"experiment {name!r} needs the param(s) {missing}; see `python -m thesis_lib list`")
    resolved: dict[str, Any] = {}
    bounds = registered.bounds()
    for key, value in given.items():
        if key in declared:
            resolved[key] = _checked(name, key, value, declared[key][0], bounds.get(key))
        else:  # a TrainConfig float: TrainConfig states its range (NaN included) when it is built below
            annotation = train_types[key]
            takes_float = annotation is float or float in get_args(annotation)
            non_finite = isinstance(value, float) and not math.isfinite(value)
            resolved[key] = value if non_finite and takes_float else _checked(name, key, value, annotation)
    for key, (_, default) in declared.items():
        if key not in resolved and not callable(default):
            resolved[key] = default
    for key, (annotation, default) in declared.items():
        if key not in resolved:
            resolved[key] = _checked(name, key, default(profile, resolved), annotation)
    resolved = {key: value for key, value in resolved.items() if not (value is None and key in declared)}
    for key, bound in bounds.items():
        if key in resolved and not bound.admits(resolved[key]):
            raise ValueError(f"param {key!r} of experiment {name!r} must be {bound}, got {resolved[key]!r}")
    if train_types:
        profile.train_config(**{key: value for key, value in resolved.items() if key in train_types})
    return resolved


def _canonical(value: Any) -> Any:
    """JSON-ready form of params (tuples become lists, configs become dicts)."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, ResNetConfig):
        return _canonical(asdict(value))
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 3.0 and 3 name the same run
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"experiment params must be JSON-like (str, number, bool, list, dict); got {value!r}")


def config_hash(config: Mapping[str, Any]) -> str:
    text = json.dumps(_canonical(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_text_atomic(path: Path, text: str) -> None:
    atomic_write(path, lambda stream: stream.write(text.encode()))


def _run_config(name: str, params: Mapping[str, Any], profile: Profile) -> dict[str, Any]:
    """Everything a run's results depend on; its hash names the run's folder.

    `params` are resolved first (`resolve_params`: defaults filled in), so `{}` and the same params written
    out name one run. The profile's seed list only decides which runs a grid asks for, so it is left out:
    adding a seed reuses the runs of the others. A DDP run on more than one process adds its world_size: each
    rank's BN normalises over its own share of the batch, so its results differ from one process's and it
    must never pass for one (one process under torchrun trains the same numbers as the plain run, its
    history adds the all-reduce columns, and it keeps the plain run's key). The `cuda_*` fast-path fields
    count only for runs on CUDA, where they take effect."""
    version = _lookup(name).version
    on_cuda = profile.resolved_device().type == "cuda"
    settings = {key: value for key, value in profile.to_dict().items()
                if key != "seeds" and (on_cuda or not key.startswith("cuda_"))}
    config = {"experiment": name, "version": version, "params": _canonical(resolve_params(name, params, profile)),
              "profile": settings, "device": profile.resolved_device().type}
    if distributed.world_size() > 1:
        config["world_size"] = distributed.world_size()
    return config


def run_dir_for(name: str, params: Mapping[str, Any] | None, profile: str | Profile) -> Path:
    """The folder that holds (or will hold) this run's results (params resolved as `run` does)."""
    profile = get_profile(profile)
    return _profile_root(profile) / name / config_hash(_run_config(name, params or {}, profile))


SEAL = "DONE"
RESULT_FILES = ("history.csv", "summary.json", "model.pt")
SEALED_FILES = ("config.json", *RESULT_FILES)  # the seal covers the config too: a run proves whose it is
ORPHAN_PATTERN = ".*.tmp"  # `atomic_write`'s temporary files, left by a kill between create and rename
LOAD_ATTEMPTS = 3  # a sealed run removed (`clean`) while it is read is looked up again, at most this often


class _RunChanged(RuntimeError):
    """The sealed run being read was removed or replaced meanwhile (a `clean` in another process)."""


def _corrupt(path: Path, problem: str) -> CorruptRunError:
    return CorruptRunError(f"run {path}: {problem}, so its results cannot be trusted; delete that folder to "
                           "run it again")


def _read_regular(path: Path, name: str) -> bytes:
    """The bytes of `path / name`, which must be a regular file: a FIFO or a device is damage (opened without
    blocking), and an unreadable or missing file is a `CorruptRunError` naming it, never a hang or a raw
    OSError."""
    file = path / name
    try:
        handle = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        problem = "is missing" if isinstance(error, FileNotFoundError) else f"cannot be read ({error.strerror})"
        raise _corrupt(path, f"the file {name} {problem}") from error
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise _corrupt(path, f"the file {name} is not a regular file (a folder, FIFO or device)")
        with os.fdopen(handle, "rb", closefd=False) as stream:
            return stream.read()
    except OSError as error:
        raise _corrupt(path, f"the file {name} cannot be read ({error.strerror})") from error
    finally:
        os.close(handle)


def _json_mapping(path: Path, name: str, data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as error:
        raise _corrupt(path, f"{name} is no valid JSON ({error})") from error
    if not isinstance(value, dict):
        raise _corrupt(path, f"{name} holds no mapping")
    return value


def _verified(path: Path, seal_bytes: bytes, expected: Mapping[str, Any] | None) -> dict[str, bytes]:
    """The sealed files' bytes, each checked against the seal's size and checksum, and the run's identity:
    the folder is named by the hash of its config.json, the seal by that name, and the config (where
    `expected` is given) holds `expected`'s values. A folder copied, linked or edited into another run's
    place fails here."""
    seal = _json_mapping(path, f"its seal {SEAL}", seal_bytes)
    listed = seal.get("files")
    if not isinstance(listed, dict) or set(listed) != set(SEALED_FILES):
        raise _corrupt(path, f"its seal {SEAL} lists no checksums of {list(SEALED_FILES)} (sealed before seals "
                             "covered config.json, or a foreign format)")
    contents = {}
    for name in SEALED_FILES:
        entry = listed[name]
        if not isinstance(entry, dict):
            raise _corrupt(path, f"its seal {SEAL} holds no size and checksum for {name}")
        data = _read_regular(path, name)
        if len(data) != entry.get("size"):
            raise _corrupt(path, f"{name} has {len(data)} bytes, the seal says {entry.get('size')}")
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise _corrupt(path, f"{name} does not match the checksum in its seal")
        contents[name] = data
    config = _json_mapping(path, "config.json", contents["config.json"])
    owner = config_hash(config)
    if owner != path.name:
        raise _corrupt(path, f"its config.json is that of run {owner}, not of run {path.name} (a run folder "
                             "copied, linked or edited into another run's place)")
    if seal.get("run") != path.name:
        raise _corrupt(path, f"its seal {SEAL} was written for run {seal.get('run')}, not for {path.name}")
    if expected is not None:
        asked = _canonical(expected)
        found = {key: config.get(key) for key in asked}
        if found != asked:
            raise _corrupt(path, f"its config.json describes {json.dumps(found, sort_keys=True)}, not the run "
                                 f"asked for, {json.dumps(asked, sort_keys=True)}")
    return contents


def _read_sealed(path: Path, expected: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """(summary, history) of the sealed run at `path`, parsed from exactly the bytes that were verified
    (`_verified`). Raises `_RunChanged` when the run was removed or resealed while being read."""
    seal_bytes = None
    try:
        seal_bytes = _read_regular(path, SEAL)
        contents = _verified(path, seal_bytes, expected)
    except CorruptRunError:
        if seal_bytes is None:
            if not os.path.lexists(path / SEAL):  # the caller saw it: removed since
                raise _RunChanged(f"run {path} was removed while it was read") from None
            raise
        try:
            now = _read_regular(path, SEAL)
        except CorruptRunError:
            now = None
        if now != seal_bytes:
            raise _RunChanged(f"run {path} was removed or replaced while it was read") from None
        raise
    summary = _json_mapping(path, "summary.json", contents["summary.json"])
    try:
        history = pd.read_csv(io.BytesIO(contents["history.csv"]))
    except ValueError as error:
        raise _corrupt(path, f"history.csv is no valid CSV ({error})") from error
    return summary, history


def _orphans(path: Path) -> list[Path]:
    """Temporary files of `atomic_write` left in a run folder by a kill between creating and renaming."""
    return sorted(p for p in path.glob(ORPHAN_PATTERN) if p.is_file())


def _remove_leftovers(path: Path) -> None:
    """Remove what kills leave in a folder that no process writes to now (sealed, or locked by this one):
    orphan temporary files, and checkpoints of a sealed run. A folder that `remove_run` takes away meanwhile
    (a reader holds no lock) has nothing left to tidy."""
    try:
        for orphan in _orphans(path):
            orphan.unlink(missing_ok=True)
        if (path / SEAL).exists():
            for leftover in path.glob("checkpoint_*.pt"):  # a kill after sealing left it behind
                leftover.unlink(missing_ok=True)
    except FileNotFoundError:
        pass


def _load_sealed(name: str, params: dict[str, Any], path: Path, expected: Mapping[str, Any]) -> RunResult:
    summary, history = _read_sealed(path, expected)
    _remove_leftovers(path)
    return RunResult(name, params, summary, history, path, loaded_from_cache=True)


def _check_unsealed(path: Path) -> None:
    """An unsealed folder may resume from a checkpoint; result files without a checkpoint are reported."""
    results = [name for name in RESULT_FILES if (path / name).exists()]
    if results and not any(path.glob("checkpoint_*.pt")):
        raise _corrupt(path, f"it holds {results} but no seal {SEAL} and no checkpoint to resume from (a "
                             "deleted seal, or results copied in by hand)")


def _seal(path: Path, output: RunOutput, seconds: float) -> None:
    """Write the result files, each atomically, then the seal: the run's name and the size and checksum of
    config.json and every result file."""
    _write_text_atomic(path / "history.csv", output.history.to_csv(index=False))
    _write_text_atomic(path / "summary.json", json.dumps(_jsonable(output.summary), indent=2, sort_keys=True))
    model = output.model
    atomic_torch_save({"spec": model.spec.to_dict() if model is not None else None,
                       "state_dict": model.state_dict() if model is not None else None}, path / "model.pt")
    files = {}
    for name in SEALED_FILES:
        data = _read_regular(path, name)
        files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    _write_text_atomic(path / SEAL, json.dumps({"run": path.name, "seconds": seconds, "files": files}, indent=2,
                                               sort_keys=True))


def _claim(path: Path, lock: FileLock, lock_timeout: float | None) -> bool:
    """Whether the run at `path` is to be trained now: True with its lock held, False when it is sealed
    (possibly by the process whose lock this one waited for). Raises for a locked-too-long or damaged run.
    With the lock held, orphan temporary files of an earlier kill are removed."""
    if (path / SEAL).exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire(timeout=-1 if lock_timeout is None else lock_timeout)
    except Timeout as error:
        raise RuntimeError(f"run {path} is locked by another process (lock file {lock.lock_file}) for more "
                           f"than {lock_timeout} s; wait for it to finish") from error
    try:
        if (path / SEAL).exists():  # finished by the process we waited for
            lock.release()
            return False
        _check_unsealed(path)
        _remove_leftovers(path)
    except BaseException:
        if lock.is_locked:
            lock.release()
        raise
    return True


def _decide(path: Path, lock: FileLock, lock_timeout: float | None) -> bool:
    """`_claim` on rank 0; under DDP the other ranks follow its decision (or stop with its error)."""
    if distributed.rank() == 0:
        try:
            train = _claim(path, lock, lock_timeout)
        except BaseException as error:
            distributed.share(f"{type(error).__name__}: {error}")  # the other ranks stop with it
            raise
        distributed.share(train)
        return train
    train = distributed.share(None)
    if isinstance(train, str):
        raise RuntimeError(f"rank 0 could not start run {path}: {train}")
    return train


def _check_folder(path: Path) -> None:
    """A run's place must be a folder or free (one stat: no race with a concurrent removal)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        raise ValueError(f"the run folder {path} is a file; move it away or set THESIS_RESULTS elsewhere")


def run(name: str, params: Mapping[str, Any] | None = None, *, profile: str | Profile = "quick",
        progress: bool = True, lock_timeout: float | None = None) -> RunResult:
    """Run experiment `name` with `params` on `profile`, or load it when it has finished before.

    `params` are checked and completed by `resolve_params` before anything is written; the experiment
    function sees them typed (a ResNetConfig stays one), the result's `params` are their JSON form.

    While another process trains the same run, this one waits for its lock (at most `lock_timeout`
    seconds; None: as long as it takes) and then loads the finished run. A sealed run that another process
    removes while this one reads it is looked up again (trained anew if it is gone), never reported damaged.

    Under torchrun (`distributed.setup` done) every rank calls `run` and trains; rank 0 alone takes the
    lock, decides whether to train or load, and writes and seals the folder; the other ranks follow its
    decision (they wait for it in a collective, bounded by the process group's timeout) and, after a
    barrier, return the sealed result. The run's key names the world size when it is above 1
    (`_run_config`).
    """
    profile = get_profile(profile)
    function = _lookup(name).function
    typed = resolve_params(name, params, profile)
    params = _canonical(typed)
    config = _run_config(name, params, profile)
    path = _profile_root(profile) / name / config_hash(config)
    lead = distributed.rank() == 0
    lock = FileLock(str(path) + ".lock")
    attempts = 1 if distributed.is_distributed() else LOAD_ATTEMPTS
    for attempt in range(attempts):
        _check_folder(path)
        train = _decide(path, lock, lock_timeout)
        if train:
            break
        try:
            return _load_sealed(name, params, path, config)
        except _RunChanged:
            if attempt == attempts - 1:
                raise
    try:
        created = lead and not path.exists()
        if lead:
            path.mkdir(parents=True, exist_ok=True)
            _write_text_atomic(path / "config.json", json.dumps(config, indent=2, sort_keys=True))
        start = time.perf_counter()
        try:
            output = function(RunContext(name=name, params=typed, profile=profile, run_dir=path,
                                         progress=progress))
        except BaseException:
            if created and not any(path.glob("checkpoint_*.pt")):  # nothing to resume: leave no litter
                shutil.rmtree(path, ignore_errors=True)
                _unlink_held_lock(lock)
            raise
        if lead:
            _seal(path, output, time.perf_counter() - start)
            for checkpoint in path.glob("checkpoint_*.pt"):
                checkpoint.unlink(missing_ok=True)  # a reader of the sealed run may remove it too
        distributed.barrier()  # the other ranks read the run once rank 0 has sealed it
        history = output.history if lead else pd.read_csv(path / "history.csv")
        return RunResult(name, params, json.loads((path / "summary.json").read_text()), history, path,
                         loaded_from_cache=False)
    finally:
        if lead:
            lock.release()


def _unlink_held_lock(lock: FileLock) -> None:
    """Remove the lock file of a run that left nothing behind, while still holding it. Safe with filelock
    >= 4.3: a process that was waiting on the unlinked file sees it unlinked after its flock and opens the
    path again, so two processes never hold the run at once (`test_cli_new_user` checks this)."""
    Path(lock.lock_file).unlink(missing_ok=True)


def _orphan_note(path: Path) -> str:
    orphans = _orphans(path)
    if not orphans:
        return ""
    size = sum(p.stat().st_size for p in orphans if p.exists())
    return (f"{len(orphans)} orphan temporary file{'s' if len(orphans) > 1 else ''} ({size / 1024:.0f} KB, left "
            "by a kill; removed when the run is next opened)")


def run_status(path: Path) -> dict[str, Any]:
    """What a run folder holds, without training or changing it: status "finished" (seal and identity
    verified), "damaged" (the `CorruptRunError` message, or a file that cannot be read), "partial" (a
    checkpoint, epochs done) or "empty"; plus the params and, for a finished run, its headline numbers
    (final_acc, epochs, total_time). `detail` says what else it found (orphan temporary files)."""
    for attempt in range(LOAD_ATTEMPTS):
        try:
            return _status(path)
        except _RunChanged as error:
            if attempt == LOAD_ATTEMPTS - 1:
                return {"folder": str(path), "experiment": path.parent.name, "params": "", "dataset": None,
                        "status": "damaged", "detail": str(error)}
    raise AssertionError("unreachable")


def _status(path: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"folder": str(path), "status": "empty"}
    try:
        config = _json_mapping(path, "config.json", _read_regular(path, "config.json"))
        row["experiment"], row["params"] = config.get("experiment"), json.dumps(config.get("params"))
        row["dataset"] = (config.get("profile") or {}).get("dataset")
    except (CorruptRunError, AttributeError):
        row["experiment"], row["params"], row["dataset"] = path.parent.name, "", None
    try:
        notes = [_orphan_note(path)]
        if (path / SEAL).exists():
            try:
                summary, _ = _read_sealed(path)
            except CorruptRunError as error:
                return {**row, "status": "damaged", "detail": "; ".join([str(error), *filter(None, notes)])}
            return {**row, "status": "finished", "detail": "; ".join(filter(None, notes)),
                    **{k: summary.get(k) for k in ("final_acc", "epochs", "total_time")}}
        checkpoints = sorted(path.glob("checkpoint_*.pt"), key=lambda p: p.stat().st_mtime)
        if checkpoints:
            reached = [_checkpoint_progress(checkpoint) for checkpoint in checkpoints]
            detail = "saved " + ", ".join(reached)
            return {**row, "status": "partial", "epochs": _checkpoint_epoch(checkpoints[-1]),
                    "detail": "; ".join(filter(None, [detail, *notes]))}
        try:
            _check_unsealed(path)
        except CorruptRunError as error:
            return {**row, "status": "damaged", "detail": str(error)}
        return {**row, "detail": "; ".join(filter(None, notes))}
    except OSError as error:  # an unreadable folder: report it, never stop listing the other runs
        return {**row, "status": "damaged", "detail": f"run {path} cannot be read ({error})"}


def _checkpoint_epoch(checkpoint: Path) -> int:
    """The epochs a phase's checkpoint has finished; 0 for a torn one (that phase then starts afresh)."""
    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"])
    except Exception:
        return 0


def _checkpoint_progress(checkpoint: Path) -> str:
    """`phase train: epoch 24 of 80` for `checkpoint_train.pt`."""
    phase = checkpoint.stem.removeprefix("checkpoint_")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        return f"phase {phase}: epoch {int(state['epoch'])} of {int(state['config']['epochs'])}"
    except Exception:  # torn, or written before checkpoints carried their config
        return f"phase {phase}: a checkpoint that cannot be read (that phase starts afresh)"


def cached_runs(profile: str | Profile, experiment: str | None = None) -> pd.DataFrame:
    """One `run_status` row per run folder of `profile` (and `experiment`), sorted by experiment and folder;
    a folder removed while it is listed is left out."""
    profile = get_profile(profile)
    if experiment is not None:
        _lookup(experiment)  # an unknown name is an error, not "no cached runs"
    root = _profile_root(profile)
    folders = sorted(p for p in root.glob(f"{experiment or '*'}/*") if not p.name.startswith(".") and p.is_dir())
    columns = ["experiment", "dataset", "status", "final_acc", "epochs", "total_time", "params", "folder", "detail"]
    rows = [run_status(folder) for folder in folders]
    return pd.DataFrame([row for row in rows if os.path.lexists(row["folder"])], columns=columns)


def remove_run(path: Path) -> None:
    """Delete one run folder of the results root, unless a process holds its lock (RuntimeError then).

    The folder is first renamed away (atomically, to a hidden name beside it) and then deleted, so a reader
    never sees half a run: it finds the run whole or not at all (`run` then looks it up again). A symlink in
    a run's place is removed itself, never its target. Refuses any folder that is not
    `<results root>/<profile>/<experiment>/<hash>`; the lock file stays (a process waiting on it would
    otherwise lose the lock)."""
    root = results_root().resolve()
    folder = Path(path).absolute().parent.resolve() / Path(path).name
    if folder.parent.parent.parent != root or not folder.is_dir() or folder.name.startswith("."):
        raise ValueError(f"{path} is not a run folder under the results root {root}; nothing deleted")
    lock = FileLock(str(folder) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout as error:
        raise RuntimeError(f"run {folder} is locked by a running process; not deleted") from error
    try:
        if folder.is_symlink():
            folder.unlink()
            return
        trash = folder.with_name(f".{folder.name}.removing-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(folder, trash)
        shutil.rmtree(trash)
    finally:
        lock.release()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


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


def sweep(name: str, grid: Iterable[Mapping[str, Any]], *, profile: str | Profile = "quick",
          progress: bool = True, executor: str | None = None) -> SweepResult:
    """Run (or load) `name` for every params mapping of `grid`; params become columns of both frames.

    `executor`: "serial" trains the runs one after the other in this process; "ray" trains the unfinished
    ones as Ray tasks, in parallel (`_sweep_on_ray`; where and with what resources: `thesis_lib.executors`);
    None takes THESIS_EXECUTOR (unset: "serial"), so notebooks follow `notebooks --executor`. Both give the
    same run folders and results. A param named like a history column (lr, batch_size) keeps the per-epoch
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
        results = []
        for index, params in enumerate(tqdm(grid, desc=f"{name} sweep", disable=not progress)):
            results.append(run(name, params, profile=profile, progress=False))
            report_progress(runs_done=index + 1)
    summary_rows, histories = [], []
    for result in results:
        columns = _flat("", result.params)
        summary_rows.append({**columns, **_flat("", result.summary)})
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
    module = _lookup(name).function.__module__
    if module == "__main__":
        raise ValueError(f"experiment {name!r} is defined in __main__ (a script or a notebook), which Ray "
                         "workers cannot import; move it into a module, or use executor='serial'")
    params = [_canonical(resolve_params(name, point, profile)) for point in grid]
    version = _lookup(name).version
    asked = [{"experiment": name, "version": version, "params": point} for point in params]
    results: list[RunResult | None] = [None] * len(grid)
    todo: dict[Path, list[int]] = {}
    for index, point in enumerate(params):
        path = run_dir_for(name, point, profile)
        if (path / SEAL).exists():
            results[index] = _load_sealed(name, point, path, asked[index])
        else:
            todo.setdefault(path, []).append(index)
    groups = list(todo.values())
    bar = tqdm(total=len(grid), initial=len(grid) - sum(map(len, groups)), desc=f"{name} sweep (ray)",
               disable=not progress)
    report_progress(runs_done=bar.n)
    failures = []
    if groups:
        # A sweep inside a run trains serially in its worker: nested tasks could wait forever for the CPUs
        # their parents hold.
        env = thesis_env(THESIS_RESULTS=str(results_root().resolve()), THESIS_EXECUTOR="serial")
        calls = [(module, name, params[indices[0]], profile) for indices in groups]
        # The workers' path finds every registered experiment, not just this one: one set serves all sweeps.
        modules = sorted({known.function.__module__ for known in _REGISTRY.values()} - {"__main__"})
        tasks = ray_tasks(_run_task, calls, profile=profile.name, device=profile.device, modules=modules, env=env)
        with closing(tasks):  # an error or Ctrl-C here cancels the tasks still running
            for task, outcome in tasks:
                indices = groups[task]
                if isinstance(outcome, BaseException):
                    failures.append((params[indices[0]], outcome))
                else:
                    path, finished_before = outcome
                    for index in indices:
                        loaded = _load_sealed(name, params[index], Path(path), asked[index])
                        loaded.loaded_from_cache = finished_before or index != indices[0]
                        results[index] = loaded
                bar.update(len(indices))
                report_progress(runs_done=bar.n)
    bar.close()
    if failures:
        lines = [f"  {json.dumps(point, sort_keys=True)}: {type(error).__name__}: {error}" for point, error in failures]
        raise SweepError(f"{len(failures)} of {len(groups)} Ray tasks of sweep {name!r} failed (the other runs "
                         "are sealed in the store; fix the cause and run the sweep again to train only these):\n"
                         + "\n".join(lines), failures) from failures[0][1]
    return results


def seed_grid(profile: str | Profile, **axes: Sequence[Any]) -> list[dict[str, Any]]:
    """Every combination of the given axes, once per seed of the profile."""
    profile = get_profile(profile)
    for key, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ValueError(f"seed_grid axis {key!r} needs a list of values, got {values!r}; "
                             f"write {key}=[{values!r}] for a single value")
        if not values:
            raise ValueError(f"seed_grid axis {key!r} is empty: it would make an empty grid; give it at least "
                             "one value or leave it out")
    keys = list(axes)
    combos = itertools.product(*(axes[k] for k in keys)) if keys else [()]
    return [{**dict(zip(keys, combo)), "seed": seed} for combo in combos for seed in profile.seeds]


def summarize_training(history: pd.DataFrame) -> dict[str, Any]:
    """The scalar results every training run reports."""
    last = history.iloc[-1]
    return {
        "final_acc": float(last["test_acc"]),
        "best_acc": float(history["test_acc"].max()),
        "mean_epoch_time": float(history["epoch_time"].mean()),
        "std_epoch_time": float(history["epoch_time"].std(ddof=1)) if len(history) > 1 else 0.0,
        "total_time": float((history["epoch_time"] + history["hook_time"]).sum()),
        "final_params": int(last["params"]),
        "final_flops": int(last["flops"]),
        "epochs": int(len(history)),
    }
