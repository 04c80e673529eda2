"""Run plans: what a run will train (its phases: net, TrainConfig, epochs) and what it loads first, known
before it trains. Experiments declare them (`@experiment(plan=...)`); `thesis_lib.planning` (the `plan`
command) reads them to list and time every run of the notebooks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..models import ResNetConfig, ResNetSpec
from ..training import TrainConfig
from .profiles import Profile, get_profile


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
            raise ValueError(
                f"phase {self.description!r}: epochs must lie in 1..{self.train.epochs} (its "
                f"TrainConfig's), got {self.epochs}"
            )


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


def single_phase(
    profile: Profile,
    model: ResNetConfig | ResNetSpec | str,
    train: TrainConfig,
    description: str = "train",
    bound: str = "",
    changes_shapes: bool = False,
) -> RunPlan:
    """A run of one phase: `model` ("wide" / "narrow" at the profile's depth, or a config or spec)."""
    if isinstance(model, str):
        model = profile.resnet(model, profile.input_size[0], profile.num_classes)
    return RunPlan((Phase(description, model, train, bound, changes_shapes=changes_shapes),))
