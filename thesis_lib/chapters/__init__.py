"""One module per notebook: the chapter's plan per profile, its registered experiments and the analysis
helpers its notebook calls.

Importing this package imports every chapter module and so registers every experiment with
`thesis_lib.experiments`. `CHAPTERS` lists them in thesis order; a chapter may import an earlier one
(6.1 runs PruneTrain at chapter 5's default point), never a later one.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import (ch03_baseline, ch04_morphnet, ch05_prunetrain, ch06_1_batch_size, ch06_2_net2net,
               ch06_3_prunetrain_net2net, ch06_4_additive, ch07_comparison, ch08_evaluation)


@dataclass(frozen=True)
class Chapter:
    """One notebook: its file stem, the thesis section it runs, a title and the experiments it registers."""

    notebook: str
    section: str
    title: str
    module: str
    experiments: tuple[str, ...]


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("03_baseline", "3.1.4", "Baseline", ch03_baseline.__name__, ("baseline",)),
    Chapter("04_morphnet", "4", "MorphNet", ch04_morphnet.__name__,
            ("morphnet_regularize", "morphnet_shrink", "morphnet_shrink_retrain", "morphnet_search")),
    Chapter("05_prunetrain", "5", "PruneTrain", ch05_prunetrain.__name__, ("prunetrain",)),
    Chapter("06_1_batch_size", "6.1", "Batch size", ch06_1_batch_size.__name__, ("prunetrain_batch",)),
    Chapter("06_2_net2net", "6.2", "Net2Net", ch06_2_net2net.__name__, ("net2net_grow",)),
    Chapter("06_3_prunetrain_net2net", "6.3", "PruneTrain + Net2Net", ch06_3_prunetrain_net2net.__name__,
            ("prune_grow", "prune_grow_retrain")),
    Chapter("06_4_additive", "6.4", "Mixed precision and large batches", ch06_4_additive.__name__, ()),
    Chapter("07_comparison", "7", "Comparison", ch07_comparison.__name__, ()),
    Chapter("08_evaluation", "8", "Evaluation", ch08_evaluation.__name__, ()),
)
