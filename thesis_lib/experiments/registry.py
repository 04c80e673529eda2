"""The experiment registry: `@experiment(name, params=..., plan=...)`, declared params with types, ranges
and per-profile defaults, and `resolve_params`, which checks and completes a run's params before the run
store hashes them. An experiment function receives a `RunContext` and returns a `RunOutput`."""

from __future__ import annotations

import importlib
import inspect
import math
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pandas as pd
import torch

from ..data import Dataset, load_dataset
from ..models import ResNet, ResNetConfig
from ..training import SEED_LIMIT, TrainConfig, Trainer, TrainingHook, training_flops
from .plans import RunPlan, RunPlanner, single_phase
from .profiles import Profile, get_profile
from .progress import EpochReporter
from .provenance import other_training_processes

# The package whose import registers every experiment (one module per chapter); imported on the first
# lookup of an unknown name, so `run("prunetrain", ...)` works without importing a chapter first.
EXPERIMENT_PACKAGE = "thesis_lib.chapters"


@dataclass
class RunOutput:
    """What an experiment function returns."""

    history: pd.DataFrame
    summary: dict[str, Any]
    model: ResNet | None = None


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
    started: float = field(init=False)
    beside: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.device = self.profile.resolved_device()
        self.profile.apply_cpu_threads()
        self.started = time.time()
        self.look_for_other_runs()

    def look_for_other_runs(self) -> None:
        """Add the run store's other training processes active now to `beside` (`provenance`); called when
        the run starts, after every epoch and before it is sealed."""
        self.beside |= other_training_processes(self.started)

    def dataset(self, name: str | None = None) -> Dataset:
        """The profile's dataset (or `name`), subset to the profile's sizes; loaded once per process."""
        name = name or self.profile.dataset
        key = (name, self.profile.n_train, self.profile.n_test)
        if key not in _DATASETS:
            data = load_dataset(name)
            if self.profile.n_train is not None or self.profile.n_test is not None:
                data = data.subset(
                    self.profile.n_train or len(data.train_y), self.profile.n_test or len(data.test_y), seed=0
                )
            _DATASETS[key] = data
        return _DATASETS[key]

    def resnet_config(self, base: ResNetConfig | str, data: Dataset | None = None) -> ResNetConfig:
        """`base` ("wide", "narrow" or a ResNetConfig) at the profile's depth, for `data`'s images and classes."""
        data = data or self.dataset()
        return self.profile.resnet(base, data.in_channels, data.num_classes)

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The profile's TrainConfig with `overrides` (see `Profile.train_config`)."""
        return self.profile.train_config(**overrides)

    def trainer(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        hooks: Sequence[TrainingHook] = (),
        data: Dataset | None = None,
        phase: str = "train",
    ) -> Trainer:
        """A Trainer that checkpoints into this run's folder (one checkpoint per `phase`)."""
        threads = self.profile.threads() or "auto"
        return Trainer(
            model=model,
            data=data or self.dataset(),
            config=config,
            hooks=list(hooks),
            device=self.device,
            checkpoint_path=self.run_dir / f"checkpoint_{phase}.pt",
            progress=self.progress,
            description=f"{self.name} {phase}",
            cpu_threads=threads,
            epoch_callback=EpochReporter(self.name, self.run_dir, phase, self.params, self.look_for_other_runs),
            checkpoint_owner=f"{self.run_dir.name}/{phase}",
        )


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
        return (
            (self.at_least is None or value >= self.at_least)
            and (self.above is None or value > self.above)
            and (self.below is None or value < self.below)
            and (self.at_most is None or value <= self.at_most)
        )

    def __str__(self) -> str:
        def number(bound: float) -> str:
            return "2^63" if bound == SEED_LIMIT else f"{bound:g}"

        low = (
            f"[{number(self.at_least)}"
            if self.at_least is not None
            else f"({number(self.above)}"
            if self.above is not None
            else None
        )
        high = (
            f"{number(self.below)})"
            if self.below is not None
            else f"{number(self.at_most)}]"
            if self.at_most is not None
            else None
        )
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


def _plan_default_shown(
    getter: Callable[[Profile, Mapping[str, Any]], Any], profile: Profile | None, fixed: Mapping[str, Any]
) -> str:
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
            raise ValueError(
                f"experiment {self.name!r} has no plan and its param 'model' is {model!r}, not a "
                "model name or ResNetConfig; register it with @experiment(..., plan=...)"
            )
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
        return {
            spec.name: spec.metadata[PARAM_BOUNDS]
            for spec in fields(self.params)
            if PARAM_BOUNDS in spec.metadata and spec.metadata[PARAM_BOUNDS] != Bounds()
        }

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
        fixed = {
            name: default
            for name, (_, default) in declared.items()
            if default is not REQUIRED and not callable(default)
        }
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


def experiment(
    name: str,
    version: int = 1,
    *,
    params: type | None = None,
    train_config: bool = False,
    plan: RunPlanner | None = None,
) -> Callable[[ExperimentFunction], ExperimentFunction]:
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
                raise ValueError(
                    f"experiment {name!r} is registered twice: by {known.__module__}."
                    f"{known.__qualname__} and by {function.__module__}.{function.__qualname__}"
                )
        _REGISTRY[name] = Experiment(name, function, version, params, train_config, plan)
        return function

    return register


def lookup(name: str) -> Experiment:
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
        raise ValueError(
            f"param {key!r} of experiment {experiment_name!r} must be a finite number"
            f"{'' if bounds is None else f' {bounds}'}, got {value!r}"
        )
    try:
        return _coerce(value, annotation)
    except ValueError:
        raise ValueError(
            f"param {key!r} of experiment {experiment_name!r} must be {describe_type(annotation)}, got {value!r}"
        ) from None


def resolve_params(name: str, params: Mapping[str, Any] | None, profile: str | Profile) -> dict[str, Any]:
    """The params a run of `name` really uses: names and types checked, declared defaults filled in
    (plan defaults from `profile`), values converted to their declared type. A declared param that is None
    means "not given" and is left out. With `train_config`, the TrainConfig fields among them are
    checked by building the profile's TrainConfig with them. Raises ValueError naming the param."""
    profile = get_profile(profile)
    registered = lookup(name)
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


def canonical(value: Any) -> Any:
    """JSON-ready form of params (tuples become lists, configs become dicts)."""
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, ResNetConfig):
        return canonical(asdict(value))
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 3.0 and 3 name the same run
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"experiment params must be JSON-like (str, number, bool, list, dict); got {value!r}")


def summarize_training(history: pd.DataFrame) -> dict[str, Any]:
    """The scalar results every training run reports.

    Times: `total_time` (every epoch and hook, what the run cost), `mean_epoch_time` over all epochs, and
    apart from it `steady_epoch_time`, the mean over the epochs that did not follow a change of the net's
    shape, and `first_epoch_time`, the mean over those that did (the first epoch and the one after each
    reconfiguration or growth, where cuDNN's autotuner or a compiler runs; NaN where there are none).
    Costs that do not depend on the machine: `training_flops` (`training.training_flops`), `epochs` and
    `optimizer_steps`."""
    last = history.iloc[-1]
    first = history["after_shape_change"].astype(bool)
    steady_times, first_times = history.loc[~first, "epoch_time"], history.loc[first, "epoch_time"]
    return {
        "final_acc": float(last["test_acc"]),
        "best_acc": float(history["test_acc"].max()),
        "mean_epoch_time": float(history["epoch_time"].mean()),
        "std_epoch_time": float(history["epoch_time"].std(ddof=1)) if len(history) > 1 else 0.0,
        "steady_epoch_time": float(steady_times.mean()) if len(steady_times) else math.nan,
        "first_epoch_time": float(first_times.mean()) if len(first_times) else math.nan,
        "total_time": float((history["epoch_time"] + history["hook_time"]).sum()),
        "final_params": int(last["params"]),
        "final_flops": int(last["flops"]),
        "training_flops": training_flops(history),
        "epochs": int(len(history)),
        "optimizer_steps": int(last["steps"]),
    }


PROCEDURE_COSTS = ("total_time", "training_flops", "epochs", "optimizer_steps")


def procedure_costs(*phases: Mapping[str, Any]) -> dict[str, Any]:
    """What a procedure of several trainings cost (a search and its retraining, MorphNet's iterations):
    the `PROCEDURE_COSTS` of the phases' summaries (`summarize_training`), summed."""
    if not phases:
        raise ValueError("procedure_costs needs the summary of at least one phase")
    return {key: sum(phase[key] for phase in phases) for key in PROCEDURE_COSTS}


def experiment_modules() -> list[str]:
    """The modules that registered the experiments known so far (a Ray worker imports them all)."""
    return sorted({known.function.__module__ for known in _REGISTRY.values()} - {"__main__"})
