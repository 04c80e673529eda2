"""Choose chapter 6.4's LARS rates for `quick` on a validation split of digits' training set (issue 27).

Two arms train with LARS at 8x the baseline batch (512): the large-batch arm (wide net, the profile's 10
epochs, You et al.'s recipe: polynomial decay and one warm-up epoch, per iteration) and the PruneTrain arm
(chapter 5's default point and its 20 epochs with the step schedule, one warm-up epoch). The rule, fixed
before the runs: per arm, the global rate of `RATES` with the highest mean final validation accuracy over
`SEEDS` wins; ties go to the lower rate. Only the accuracy decides, not the parameters PruneTrain removes
(the quantity chapter 6.4 tests); the test split is never read.

Writes tuning/results/lars_quick.csv (one row per run) and lars_quick_choice.csv (one row per arm and
rate, the choice marked), and prints both. Run: `OMP_NUM_THREADS=1 .venv/bin/python tuning/lars_quick.py`
(about 2 minutes on 2 cores).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import torch

from thesis_lib.chapters.ch05_prunetrain import prunetrain_plan
from thesis_lib.data import digits
from thesis_lib.experiments import get_profile
from thesis_lib.methods.prunetrain import PruneTrain
from thesis_lib.training import Trainer, seeded_model

RATES = (1.0, 2.0, 5.0, 10.0)
SEEDS = (0, 1, 2)
BATCH = 512
WARMUP_EPOCHS = 1
VALIDATION_FRACTION = 0.2
OUTPUT = Path(__file__).parent / "results" / "lars_quick.csv"
CHOICE = OUTPUT.with_name("lars_quick_choice.csv")
ARMS = ("large batch", "PruneTrain")


def train(data, arm: str, rate: float, seed: int) -> dict[str, float]:
    """One LARS run of `arm` at the global rate `rate`; its final validation accuracy."""
    profile = get_profile("quick")
    pruning = prunetrain_plan(profile)
    common = {"batch_size": BATCH, "optimizer": "lars", "lr": rate, "warmup_epochs": WARMUP_EPOCHS, "seed": seed}
    if arm == "large batch":
        config, hooks = profile.train_config(schedule="poly", **common), []
    else:
        config = profile.train_config(epochs=pruning.epochs, **common)
        hooks = [PruneTrain(pruning.lasso_ratio, pruning.threshold, pruning.interval)]
    model = seeded_model(profile.resnet("wide", data.in_channels, data.num_classes), seed)
    history = Trainer(model, data, config, hooks=hooks, progress=False).fit()
    return {
        "arm": arm,
        "rate": rate,
        "seed": seed,
        "validation_acc": float(history["test_acc"].iloc[-1]),
        "params_kept": float(history["params"].iloc[-1] / history["params"].iloc[0]),
    }


def choice(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean validation accuracy per arm and rate, and (column chosen) the rule's choice per arm."""
    table = runs.groupby(["arm", "rate"], sort=False).agg(
        validation_acc=("validation_acc", "mean"),
        lowest_seed=("validation_acc", "min"),
        params_kept=("params_kept", "mean"),
    )
    table = table.reset_index()
    best = table.sort_values(["arm", "validation_acc", "rate"], ascending=[True, False, True]).groupby("arm").head(1)
    table["chosen"] = table.index.isin(best.index)
    return table


def main() -> None:
    torch.set_num_threads(1)
    data = digits().validation_split(VALIDATION_FRACTION, seed=0)
    rows = []
    for arm, rate, seed in itertools.product(ARMS, RATES, SEEDS):
        rows.append(train(data, arm, rate, seed))
        print(rows[-1], flush=True)
    runs = pd.DataFrame(rows)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    runs.to_csv(OUTPUT, index=False)
    table = choice(runs)
    table.to_csv(CHOICE, index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
