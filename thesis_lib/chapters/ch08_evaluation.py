"""Chapter 8 (notebook 08_evaluation): the procedures of chapter 7 on a dataset no other chapter used.

The draft (chapter 8) evaluates "the results of the previous chapter on another, so far unseen dataset".
Here: Fashion-MNIST (grey images, 10 classes) on `smoke` and `quick`, CIFAR-100 on `full`, with the
same nets, the same budget rule (the wide net's FLOPs on that dataset's images), the same plans and seeds
and the same table (8.1) and tests as chapter 7. The runs are cached under the profile's folder with the
dataset in their key, so they never mix with chapter 7's.

On `smoke` and `quick` the images are Fashion-MNIST averaged to 14x14 (`data.fashion_mnist_14`): a
28x28 image costs about 12 times the FLOPs of an 8x8 digit, a 14x14 one 3 times, so the same minutes
train four times the images, and more images separate the nets' capacities better than more pixels. Measured
on a validation split of Fashion-MNIST's training set (20 % of a fixed subset, seed 0; 3 seeds, `quick`'s 10
epochs, one thread; the test split unread): at 28x28 with 384 training images the narrow net reached
0.51-0.63 and the wide one 0.70-0.71 (4.5 s per wide run); at 14x14 with 1,536 images 0.727-0.750 and
0.753-0.758 (5.1 s), with 3,072 images 0.789-0.792 and 0.805-0.807 (10.6 s, twice the budget). `quick`
therefore trains on 1,536 images (a fixed random subset, seed 0) and tests on 1,000, which shrinks the
test set's own sampling error (about 1.4 points at 75 % accuracy, against 2.7 with the former 256). With
2,048 images notebook 08 took 5.5 minutes and the serial `quick` re-run 21.0 (commit b9da61a+1), over its
20-minute budget; on that run the wide net reached 0.770 (sd 0.006, 5 seeds) on the test images.

`runs_profile` is that profile; `sweeps` are chapter 7's on it, and notebook 08 calls chapter 7's
functions step by step with its own context (`ch07_comparison.comparison_runs(nb)` and the rest).
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from .. import stats
from ..experiments import Profile, get_profile
from . import ch07_comparison
from .contract import Sweeps, plan_for

__all__ = ["EVALUATION_DATA", "capacity_sentence", "runs_profile", "sweeps"]

# Per profile: (dataset, training images, test images); None keeps the whole split.
EVALUATION_DATA: dict[str, tuple[str, int | None, int | None]] = {
    "smoke": ("fashion_mnist_14", 256, 128),
    "quick": ("fashion_mnist_14", 1536, 1000),
    "full": ("cifar100", None, None),
}


def runs_profile(profile: str | Profile) -> Profile:
    """`profile` with chapter 8's dataset: the same name, epochs, seeds and nets, another dataset."""
    profile = get_profile(profile)
    dataset, n_train, n_test = plan_for(EVALUATION_DATA, profile, "8")
    return replace(profile, dataset=dataset, n_train=n_train, n_test=n_test)


def sweeps(profile: str | Profile) -> Sweeps:
    """Notebook 08's sweeps: chapter 7's, on `runs_profile(profile)` (its budget is the wide net's FLOPs on
    these images)."""
    return ch07_comparison.sweeps(runs_profile(profile))


def capacity_sentence(runs: pd.DataFrame) -> str:
    """Whether chapter 8's data can decide (issue 26): the wide net's accuracy against the narrow net's in
    `comparison_runs` (Welch's 95 % interval of the difference), and whether the difference exceeds the
    larger of the two groups' seed spreads (standard deviation, ddof 1). If the nets' capacities do not
    separate, no procedure that trades capacity for cost can be told apart on these images either."""
    pair = [("wide baseline", "narrow baseline")]
    row = stats.compare_groups(runs, "procedure", pair, [("final_acc", "accuracy", "")]).iloc[0]
    spreads = runs[runs["procedure"].isin(pair[0])].groupby("procedure")["final_acc"].std(ddof=1)
    spread = float(spreads.max())
    decides = row["diff"] > spread and row["ci_low"] > 0
    verdict = "separates the nets' capacities" if decides else "does not separate the nets' capacities"
    return (
        f"Wide against narrow net: accuracy {row['mean_a']:.3f} vs {row['mean_b']:.3f}, difference "
        f"{row['diff']:+.3f} (95 % CI [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]), larger seed spread (sd) "
        f"{spread:.3f}: the data {verdict}."
    )
