"""One module per notebook: the chapter's plan per profile, its registered experiments and the analysis
helpers its notebook calls.

Importing this package imports every chapter module and so registers every experiment with
`thesis_lib.experiments`. `CHAPTERS` lists them in thesis order; a chapter may import an earlier one
(6.1 runs PruneTrain at chapter 5's default point), never a later one. Each record's `planned_runs` lists
the runs its notebook sweeps on a profile, without training (`python -m thesis_lib plan`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..experiments import PlannedRun, Profile
from . import (ch03_baseline, ch04_morphnet, ch05_prunetrain, ch06_1_batch_size, ch06_2_net2net,
               ch06_3_prunetrain_net2net, ch06_4_additive, ch07_comparison, ch08_evaluation)


@dataclass(frozen=True)
class Chapter:
    """One notebook: its file stem, the thesis section it runs, a title, the experiments it registers and
    the runs its notebook sweeps on a profile (`planned_runs(profile)`)."""

    notebook: str
    section: str
    title: str
    module: str
    experiments: tuple[str, ...]
    planned_runs: Callable[[str | Profile], list[PlannedRun]]


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("03_baseline", "3.1.4", "Baseline", ch03_baseline.__name__, ("baseline",), ch03_baseline.planned_runs),
    Chapter("04_morphnet", "4", "MorphNet", ch04_morphnet.__name__,
            ("morphnet_regularize", "morphnet_shrink", "morphnet_shrink_retrain", "morphnet_search"),
            ch04_morphnet.planned_runs),
    Chapter("05_prunetrain", "5", "PruneTrain", ch05_prunetrain.__name__, ("prunetrain",),
            ch05_prunetrain.planned_runs),
    Chapter("06_1_batch_size", "6.1", "Batch size", ch06_1_batch_size.__name__, ("prunetrain_batch",),
            ch06_1_batch_size.planned_runs),
    Chapter("06_2_net2net", "6.2", "Net2Net", ch06_2_net2net.__name__, ("net2net_grow",), ch06_2_net2net.planned_runs),
    Chapter("06_3_prunetrain_net2net", "6.3", "PruneTrain + Net2Net", ch06_3_prunetrain_net2net.__name__,
            ("prune_grow", "prune_grow_retrain"), ch06_3_prunetrain_net2net.planned_runs),
    Chapter("06_4_additive", "6.4", "Mixed precision and large batches", ch06_4_additive.__name__, (),
            ch06_4_additive.planned_runs),
    Chapter("07_comparison", "7", "Comparison", ch07_comparison.__name__, (), ch07_comparison.planned_runs),
    Chapter("08_evaluation", "8", "Evaluation", ch08_evaluation.__name__, (), ch08_evaluation.planned_runs),
)
