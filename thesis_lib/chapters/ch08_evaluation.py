"""Chapter 8 (notebook 08_evaluation): the procedures of chapter 7 on a dataset no other chapter used.

The draft (chapter 8) evaluates "the results of the previous chapter on another, so far unseen dataset".
Here: Fashion-MNIST (28x28 grey images, 10 classes) on `smoke` and `quick`, CIFAR-100 on `full`, with the
same nets, the same budget rule (the wide net's FLOPs on that dataset's images), the same plans and seeds
and the same table (8.1) and tests as chapter 7. The runs are cached under the profile's folder with the
dataset in their key, so they never mix with chapter 7's.

`quick` uses 384 training and 256 test images of Fashion-MNIST (a fixed random subset, seed 0): each
28x28 image costs about 12 times the FLOPs of an 8x8 digit. With 1,024 / 512 images the notebook's 20
runs took 8 minutes on the loaded 2-core CPU, with 512 / 256 4.6 minutes (the wide net reached 0.654),
both above the chapter's budget of 4 minutes.

`runs_profile` is that profile; `sweeps` are chapter 7's on it, and notebook 08 calls chapter 7's
functions step by step with its own context (`ch07_comparison.comparison_runs(nb)` and the rest).
"""

from __future__ import annotations

from dataclasses import replace

from ..experiments import Profile, get_profile
from . import ch07_comparison
from .contract import Sweeps, plan_for

__all__ = ["EVALUATION_DATA", "runs_profile", "sweeps"]

# Per profile: (dataset, training images, test images); None keeps the whole split.
EVALUATION_DATA: dict[str, tuple[str, int | None, int | None]] = {
    "smoke": ("fashion_mnist", 256, 128),
    "quick": ("fashion_mnist", 384, 256),
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
