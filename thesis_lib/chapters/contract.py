"""What every chapter module provides, and the notebook context its notebook opens.

A chapter module (`chNN_topic.py`) is laid out in this order: its docstring, `__all__`, the plan dataclass
and its per-profile values (`PLANS`, looked up once through `plan_for`), `sweeps(profile)` (the chapter's
sweeps as data: name -> (experiment, grid)), its registered experiments, its analysis, its figures. Both
`Chapter.planned_runs` (the `plan` command) and the notebook's runs (`Notebook.sweep`) derive from
`sweeps`, so the two can never disagree. A chapter that runs on another profile than the one asked for
(chapter 8: chapter 7's procedures on another dataset) defines `runs_profile(profile)`.

A notebook calls nothing but chapter functions: `nb = chapters.open("05_prunetrain", profile)` names the
notebook for the figure and table folders and the progress reports, applies the thesis style, and then
supplies everything a cell would otherwise repeat: `nb.sweep(name)`, `nb.save(fig, name)`,
`nb.table(frame, name, caption)` and `nb.stamp` (profile and dataset for a figure's stamp).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pandas as pd
from matplotlib.figure import Figure

from .. import plots, tables
from ..experiments import PlannedRun, Profile, SweepResult, get_profile, registered_experiments, sweep

__all__ = ["QUANTITIES", "Chapter", "Notebook", "Sweeps", "plan_for", "quantities"]

# A chapter's sweeps on one profile: name -> (experiment, grid of params), in the notebook's order.
Sweeps = dict[str, tuple[str, list[dict[str, Any]]]]

Plan = TypeVar("Plan")

# The quantities the chapters compare between groups of runs (summary column -> words, unit), so that every
# test table and sentence names a quantity the same way (`stats.compare_groups` takes the triples).
QUANTITIES: dict[str, tuple[str, str]] = {
    "final_acc": ("final accuracy", ""),
    "best_acc": ("best accuracy", ""),
    "mean_epoch_time": ("mean epoch time", "s"),
    "steady_epoch_time": ("epoch time without the first", "s"),
    "training_flops": ("training FLOPs", ""),
    "total_time": ("total training time", "s"),
    "final_params": ("parameters", ""),
    "final_flops": ("FLOPs per image", ""),
    "params": ("parameters", ""),
    "flops": ("FLOPs per image", ""),
}


def quantities(*columns: str) -> list[tuple[str, str, str]]:
    """(column, words, unit) of each of `columns` from `QUANTITIES`, for `stats.compare_groups`."""
    unknown = [column for column in columns if column not in QUANTITIES]
    if unknown:
        raise ValueError(f"no description of the quantities {unknown}; add them to contract.QUANTITIES")
    return [(column, *QUANTITIES[column]) for column in columns]


def plan_for(plans: Mapping[str, Plan], profile: str | Profile, chapter: str) -> Plan:
    """`plans[profile's plan name]`: a chapter's plan (its settings on one profile; `full-fast` takes
    `full`'s, `Profile.plans`); a profile without one is a ValueError that names the chapter and the
    profiles that have a plan."""
    name = get_profile(profile).plan_name
    if name not in plans:
        raise ValueError(f"no chapter {chapter} plan for profile {name!r}; plans exist for {sorted(plans)}")
    return plans[name]


@dataclass(frozen=True)
class Chapter:
    """One notebook: its file stem, the thesis section it runs, a title and the module that holds it."""

    notebook: str
    section: str
    title: str
    module: str

    @property
    def code(self) -> ModuleType:
        return importlib.import_module(self.module)

    @property
    def experiments(self) -> tuple[str, ...]:
        """The experiments the chapter's module registers, by name."""
        return tuple(
            name for name, known in registered_experiments().items() if known.function.__module__ == self.module
        )

    def runs_profile(self, profile: str | Profile) -> Profile:
        """The profile the chapter's runs use: `profile`, unless the module defines `runs_profile`."""
        own: Callable[[str | Profile], Profile] = getattr(self.code, "runs_profile", get_profile)
        return own(profile)

    def sweeps(self, profile: str | Profile) -> Sweeps:
        """The module's `sweeps(profile)`: name -> (experiment, grid)."""
        return self.code.sweeps(profile)

    def planned_runs(self, profile: str | Profile) -> list[PlannedRun]:
        """Every run the notebook sweeps on `profile`, without training (`python -m thesis_lib plan`)."""
        runs_profile = self.runs_profile(profile)
        return [
            PlannedRun(experiment, dict(params), runs_profile)
            for experiment, grid in self.sweeps(profile).values()
            for params in grid
        ]


@dataclass(frozen=True)
class Notebook:
    """A running notebook: its chapter and profile, with the runs, saving and stamping its cells need."""

    chapter: Chapter
    profile: Profile

    @property
    def name(self) -> str:
        return self.chapter.notebook

    @property
    def runs_profile(self) -> Profile:
        return self.chapter.runs_profile(self.profile)

    @property
    def stamp(self) -> tuple[str, str]:
        """(profile, dataset) for the chapter figure functions' `plots.stamp`."""
        return (self.profile.name, self.runs_profile.dataset)

    @property
    def folder(self) -> Path:
        """Where the notebook's figures and tables land: `figures/<profile>/<notebook>/`."""
        return plots.figure_dir(self.name, self.profile.name)

    def sweep(self, name: str) -> SweepResult:
        """Train or load the chapter's sweep `name` (see the module's `sweeps`)."""
        known = self.chapter.sweeps(self.profile)
        if name not in known:
            raise ValueError(f"chapter {self.chapter.section} has no sweep {name!r}; its sweeps are {list(known)}")
        experiment, grid = known[name]
        return sweep(experiment, grid, profile=self.runs_profile)

    def save(self, fig: Figure, name: str) -> list[Path]:
        """The figure as PDF and PNG in `folder` (`plots.save`)."""
        return plots.save(fig, name, notebook=self.name, profile=self.profile.name)

    def table(
        self, frame: pd.DataFrame, name: str, caption: str | None = None, quantity: str | None = None
    ) -> list[Path]:
        """The table as CSV and LaTeX in `folder` (`tables.save`; `quantity` names what bare "mean" / "std"
        columns measure)."""
        return tables.save(
            frame, name, notebook=self.name, profile=self.profile.name, caption=caption, quantity=quantity
        )

    def macros(self, frame: pd.DataFrame, key: str, columns: Sequence[str], quantity: str | None = None) -> Path:
        """Add one LaTeX macro per row and column of `columns` of a table to the notebook's `macros.tex`
        (`tables.table_macros`, `tables.save_macros`): e.g. `\\ThesisComparisonMorphnetFinalAccMean`."""
        values = tables.table_macros(frame, key, columns, quantity)
        return tables.save_macros(values, notebook=self.name, profile=self.profile.name)
