"""One module per notebook, in thesis order: the chapter's plan per profile, its sweeps, its registered
experiments, its analysis and its figures (`contract` states the layout every module follows).

Importing this package imports every chapter module and so registers every experiment with
`thesis_lib.experiments`. `CHAPTERS` lists them in thesis order; a chapter may import an earlier one
(6.1 runs PruneTrain at chapter 5's default point), never a later one. A notebook opens its context with
`nb = chapters.open("05_prunetrain", profile)` and then only calls chapter functions.

Adding a chapter:
1. `chNN_topic.py` in this package, laid out as `contract` says: plan dataclass and `PLANS` (one entry per
   profile, looked up with `plan_for`), `sweeps(profile)`, the experiments (`@experiment(name, params=...,
   plan=...)`, params with a `seed`), analysis and figure functions (each figure takes `stamp`).
2. A `Chapter(notebook, section, title, module)` record in `CHAPTERS` below; its experiments are the ones
   the module registers, its planned runs come from `sweeps`.
3. `notebooks/NN_topic.ipynb`: a `profile` parameter cell, then `nb = chapters.open("NN_topic", profile)`
   and chapter calls; `tests/chapters/test_chNN_topic.py` for the module.
`tests/chapters/test_registry.py` checks each step (a notebook per record, every experiment claimed).
"""

from __future__ import annotations

from .. import plots
from ..experiments import Profile, get_profile
from . import (
    ch03_baseline,
    ch04_morphnet,
    ch05_prunetrain,
    ch06_1_batch_size,
    ch06_2_net2net,
    ch06_3_prunetrain_net2net,
    ch06_4_additive,
    ch07_comparison,
    ch08_evaluation,
)
from .contract import Chapter, Notebook

__all__ = ["CHAPTERS", "Chapter", "Notebook", "chapter", "open"]

CHAPTERS: tuple[Chapter, ...] = (
    Chapter("03_baseline", "3.1.4", "Baseline", ch03_baseline.__name__),
    Chapter("04_morphnet", "4", "MorphNet", ch04_morphnet.__name__),
    Chapter("05_prunetrain", "5", "PruneTrain", ch05_prunetrain.__name__),
    Chapter("06_1_batch_size", "6.1", "Batch size", ch06_1_batch_size.__name__),
    Chapter("06_2_net2net", "6.2", "Net2Net", ch06_2_net2net.__name__),
    Chapter("06_3_prunetrain_net2net", "6.3", "PruneTrain + Net2Net", ch06_3_prunetrain_net2net.__name__),
    Chapter("06_4_additive", "6.4", "Mixed precision and large batches", ch06_4_additive.__name__),
    Chapter("07_comparison", "7", "Comparison", ch07_comparison.__name__),
    Chapter("08_evaluation", "8", "Evaluation", ch08_evaluation.__name__),
)


def chapter(notebook: str) -> Chapter:
    """The record of `notebook` (its file stem, e.g. "05_prunetrain")."""
    for known in CHAPTERS:
        if known.notebook == notebook:
            return known
    raise ValueError(f"no chapter has the notebook {notebook!r}; notebooks: {[c.notebook for c in CHAPTERS]}")


def open(notebook: str, profile: str | Profile, language: str | None = None) -> Notebook:  # noqa: A001
    """The context of a running notebook: names it for figures, tables and progress reports
    (`plots.use_notebook`), applies the thesis style (in `language`, default German) and returns the
    `Notebook` whose methods the cells call."""
    record, profile = chapter(notebook), get_profile(profile)
    plots.use_notebook(notebook, profile.name)
    plots.use_thesis_style(language)
    return Notebook(record, profile)
