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
to its folder: deleting a lock file that another process waits on would break the lock. Loading verifies the
seal: a missing, truncated, garbled or replaced result file raises `CorruptRunError` naming the folder
and the file, never a wrong number; result files without a seal (and without a checkpoint to resume
from) are reported too, not trained over. A killed run resumes from its checkpoint; a run that fails
before its first checkpoint leaves no folder behind. Under torchrun (DDP) every rank trains and rank 0
alone locks, writes and seals the folder (see `run`).
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import os
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
from .training import Trainer, TrainConfig, TrainingHook, atomic_torch_save, atomic_write

# The package whose import registers every experiment (one module per chapter); imported on the first
# lookup of an unknown name, so `run("prunetrain", ...)` works without importing a chapter first.
EXPERIMENT_PACKAGE = "thesis_lib.chapters"

BASE_MODELS = {"wide": WIDE_BASELINE, "narrow": NARROW_BASELINE}


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
                       epoch_callback=EpochReporter(self.name, self.run_dir, phase))


PROGRESS_DIR = ".progress"
TENSORBOARD_ENV = "THESIS_TENSORBOARD"
_progress: dict[str, Any] = {}


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
        _write_text_atomic(folder / f"{os.getpid()}.json", json.dumps(_progress))
    except OSError:
        pass


@dataclass
class EpochReporter:
    """A Trainer's `epoch_callback` for the run store: reports the epoch to `report_progress` and, when
    THESIS_TENSORBOARD is set (`notebooks --tensorboard`), writes the epoch's numbers as TensorBoard scalars
    into `<run folder>/tensorboard/<phase>` (live curves: `tensorboard --logdir results/<profile>`)."""

    run: str
    run_dir: Path
    phase: str
    _writer: Any = None

    def __call__(self, trainer: Trainer, record: Mapping[str, Any]) -> None:
        report_progress(run=self.run, phase=self.phase, epoch=int(record["epoch"]), epochs=trainer.config.epochs)
        if not os.environ.get(TENSORBOARD_ENV):
            return
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise RuntimeError(f"{TENSORBOARD_ENV} is set but TensorBoard is not installed: "
                                   "pip install tensorboard (or unset it)") from error
            self._writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard" / self.phase))
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self._writer.add_scalar(key, value, global_step=int(record["epoch"]))
        self._writer.flush()


ExperimentFunction = Callable[[RunContext], RunOutput]


def plan_default(getter: Callable[[Profile, Mapping[str, Any]], Any]) -> Any:
    """A param default that depends on the profile (a chapter's plan) or on the run's other params:
    `getter(profile, params)` gets the params with every other default already filled in.

    Use it as a field default of a params dataclass: `lasso_ratio: float = plan_default(lambda p, _: ...)`."""
    return field(default=None, metadata={PLAN_DEFAULT: getter})


PLAN_DEFAULT = "plan_default"


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

    def describe_params(self) -> list[str]:
        """One line per param: `name: type = default`, then "any TrainConfig field" where accepted."""
        lines = []
        for name, (annotation, default) in self.declared().items():
            shown = ("required" if default is REQUIRED else f"= {default!r}" if not callable(default)
                     else "default: the profile's plan or other params")
            lines.append(f"{name}: {describe_type(annotation)} {shown}")
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


def _checked(experiment_name: str, key: str, value: Any, annotation: Any) -> Any:
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
    for key, value in given.items():
        annotation = declared[key][0] if key in declared else train_types[key]
        resolved[key] = _checked(name, key, value, annotation)
    for key, (_, default) in declared.items():
        if key not in resolved and not callable(default):
            resolved[key] = default
    for key, (annotation, default) in declared.items():
        if key not in resolved:
            resolved[key] = _checked(name, key, default(profile, resolved), annotation)
    resolved = {key: value for key, value in resolved.items() if not (value is None and key in declared)}
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
    return results_root() / profile.name / name / config_hash(_run_config(name, params or {}, profile))


SEAL = "DONE"
RESULT_FILES = ("history.csv", "summary.json", "model.pt")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _corrupt(path: Path, problem: str) -> CorruptRunError:
    return CorruptRunError(f"run {path}: {problem}, so its results cannot be trusted; delete that folder to "
                           "run it again")


def _verify_seal(path: Path) -> None:
    """Check every result file against the seal's size and checksum."""
    try:
        seal = json.loads((path / SEAL).read_text())
    except (OSError, ValueError) as error:
        raise _corrupt(path, f"its seal {SEAL} cannot be read ({error})") from error
    files = seal.get("files") if isinstance(seal, dict) else None
    if not isinstance(files, dict) or set(files) != set(RESULT_FILES):
        raise _corrupt(path, f"its seal {SEAL} lists no checksums of {list(RESULT_FILES)} (an older or "
                             "foreign format)")
    for name, expected in files.items():
        file = path / name
        if not isinstance(expected, dict):
            raise _corrupt(path, f"its seal {SEAL} holds no size and checksum for {name}")
        if not file.is_file():
            raise _corrupt(path, f"the result file {name} is missing or not a file")
        size = file.stat().st_size
        if size != expected.get("size"):
            raise _corrupt(path, f"{name} has {size} bytes, the seal says {expected.get('size')}")
        if _sha256(file) != expected.get("sha256"):
            raise _corrupt(path, f"{name} does not match the checksum in its seal")


def _sealed_summary(path: Path) -> dict[str, Any]:
    """The summary of a sealed run, after verifying the seal."""
    _verify_seal(path)
    summary = json.loads((path / "summary.json").read_text())
    if not isinstance(summary, dict):
        raise _corrupt(path, "summary.json holds no mapping")
    return summary


def _load_sealed(name: str, params: dict[str, Any], path: Path) -> RunResult:
    summary = _sealed_summary(path)
    history = pd.read_csv(path / "history.csv")
    for leftover in path.glob("checkpoint_*.pt"):  # a kill after sealing left it behind
        leftover.unlink(missing_ok=True)
    return RunResult(name, params, summary, history, path, loaded_from_cache=True)


def _check_unsealed(path: Path) -> None:
    """An unsealed folder may resume from a checkpoint; result files without a checkpoint are reported."""
    results = [name for name in RESULT_FILES if (path / name).exists()]
    if results and not any(path.glob("checkpoint_*.pt")):
        raise _corrupt(path, f"it holds {results} but no seal {SEAL} and no checkpoint to resume from (a "
                             "deleted seal, or results copied in by hand)")


def _seal(path: Path, output: RunOutput, seconds: float) -> None:
    """Write the result files, each atomically, then the seal with their sizes and checksums."""
    _write_text_atomic(path / "history.csv", output.history.to_csv(index=False))
    _write_text_atomic(path / "summary.json", json.dumps(_jsonable(output.summary), indent=2, sort_keys=True))
    model = output.model
    atomic_torch_save({"spec": model.spec.to_dict() if model is not None else None,
                       "state_dict": model.state_dict() if model is not None else None}, path / "model.pt")
    files = {name: {"size": (path / name).stat().st_size, "sha256": _sha256(path / name)} for name in RESULT_FILES}
    _write_text_atomic(path / SEAL, json.dumps({"seconds": seconds, "files": files}, indent=2, sort_keys=True))


def _claim(path: Path, lock: FileLock, lock_timeout: float | None) -> bool:
    """Whether the run at `path` is to be trained now: True with its lock held, False when it is sealed
    (possibly by the process whose lock this one waited for). Raises for a locked-too-long or damaged run."""
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
    except BaseException:
        if lock.is_locked:
            lock.release()
        raise
    return True


def run(name: str, params: Mapping[str, Any] | None = None, *, profile: str | Profile = "quick",
        progress: bool = True, lock_timeout: float | None = None) -> RunResult:
    """Run experiment `name` with `params` on `profile`, or load it when it has finished before.

    `params` are checked and completed by `resolve_params` before anything is written; the experiment
    function sees them typed (a ResNetConfig stays one), the result's `params` are their JSON form.

    While another process trains the same run, this one waits for its lock (at most `lock_timeout`
    seconds; None: as long as it takes) and then loads the finished run.

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
    path = run_dir_for(name, typed, profile)
    if path.exists() and not path.is_dir():
        raise ValueError(f"the run folder {path} is a file; move it away or set THESIS_RESULTS elsewhere")
    lead = distributed.rank() == 0
    lock = FileLock(str(path) + ".lock")
    if lead:
        try:
            train = _claim(path, lock, lock_timeout)
        except BaseException as error:
            distributed.share(f"{type(error).__name__}: {error}")  # the other ranks stop with it
            raise
        distributed.share(train)
    else:
        train = distributed.share(None)
        if isinstance(train, str):
            raise RuntimeError(f"rank 0 could not start run {path}: {train}")
    if not train:
        return _load_sealed(name, params, path)
    try:
        created = lead and not path.exists()
        if lead:
            path.mkdir(parents=True, exist_ok=True)
            _write_text_atomic(path / "config.json",
                               json.dumps(_run_config(name, params, profile), indent=2, sort_keys=True))
        start = time.perf_counter()
        try:
            output = function(RunContext(name=name, params=typed, profile=profile, run_dir=path,
                                         progress=progress))
        except BaseException:
            if created and not any(path.glob("checkpoint_*.pt")):  # nothing to resume: leave no litter
                shutil.rmtree(path, ignore_errors=True)
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


def run_status(path: Path) -> dict[str, Any]:
    """What a run folder holds, without training or changing it: status "finished" (seal verified),
    "damaged" (the `CorruptRunError` message), "partial" (a checkpoint, epochs done) or "empty"; plus the
    params and, for a finished run, its headline numbers (final_acc, epochs, total_time)."""
    row: dict[str, Any] = {"folder": str(path), "status": "empty"}
    try:
        config = json.loads((path / "config.json").read_text())
        row["experiment"], row["params"] = config.get("experiment"), json.dumps(config.get("params"))
        row["dataset"] = config.get("profile", {}).get("dataset")
    except (OSError, ValueError, AttributeError):
        row["experiment"], row["params"], row["dataset"] = path.parent.name, "", None
    if (path / SEAL).exists():
        try:
            summary = _sealed_summary(path)
        except CorruptRunError as error:
            return {**row, "status": "damaged", "detail": str(error)}
        return {**row, "status": "finished", **{k: summary.get(k) for k in ("final_acc", "epochs", "total_time")}}
    checkpoints = sorted(path.glob("checkpoint_*.pt"))
    if checkpoints:
        epochs = []
        for checkpoint in checkpoints:
            try:
                epochs.append(int(torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"]))
            except Exception:  # a torn checkpoint: the run resumes from scratch for that phase
                epochs.append(0)
        return {**row, "status": "partial", "detail": f"checkpoints {[c.name for c in checkpoints]}, epochs {epochs}"}
    try:
        _check_unsealed(path)
    except CorruptRunError as error:
        return {**row, "status": "damaged", "detail": str(error)}
    return row


def cached_runs(profile: str | Profile, experiment: str | None = None) -> pd.DataFrame:
    """One `run_status` row per run folder of `profile` (and `experiment`), sorted by experiment and folder."""
    profile = get_profile(profile)
    root = results_root() / profile.name
    folders = sorted(p for p in root.glob(f"{experiment or '*'}/*") if p.is_dir())
    columns = ["experiment", "dataset", "status", "final_acc", "epochs", "total_time", "params", "folder", "detail"]
    return pd.DataFrame([run_status(folder) for folder in folders], columns=columns)


def remove_run(path: Path) -> None:
    """Delete one run folder of the results root, unless a process holds its lock (RuntimeError then).

    Refuses any folder that is not `<results root>/<profile>/<experiment>/<hash>`; the lock file stays (a
    process waiting on it would otherwise lose the lock)."""
    root = results_root().resolve()
    resolved = Path(path).resolve()
    if resolved.parent.parent.parent != root or not resolved.is_dir():
        raise ValueError(f"{path} is not a run folder under the results root {root}; nothing deleted")
    lock = FileLock(str(resolved) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout as error:
        raise RuntimeError(f"run {resolved} is locked by a running process; not deleted") from error
    try:
        shutil.rmtree(resolved)
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
    results: list[RunResult | None] = [None] * len(grid)
    todo: dict[Path, list[int]] = {}
    for index, point in enumerate(params):
        path = run_dir_for(name, point, profile)
        if (path / SEAL).exists():
            results[index] = _load_sealed(name, point, path)
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
                        loaded = _load_sealed(name, params[index], Path(path))
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
