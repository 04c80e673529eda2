"""Choose chapter 5's PruneTrain point for `quick` on a validation split of digits' training set.

The rule, fixed before the runs: a candidate (epochs, lasso ratio, threshold) qualifies when, in every
seed, every reconfiguration changes the validation accuracy by at most one point between right before and
right after the zeroing (issue 25's check that pruning follows the paper: the lasso drives groups to zero,
the threshold only removes what is already gone) and its mean final validation accuracy is at most one
point below the dense baseline of the same length. Among those the one that removes the largest mean
share of parameters wins; ties go to fewer epochs, then the smaller threshold. The interval (2 epochs) and
the learning rate (0.05, the profile's) stay at the plan's values; the test split is never read.

Writes tuning/results/prunetrain_quick.csv (one row per run) and prunetrain_quick_candidates.csv (one
row per candidate, the choice marked), and prints both. Run: `OMP_NUM_THREADS=1 .venv/bin/python tuning/prunetrain_quick.py` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import torch

from thesis_lib.data import digits
from thesis_lib.experiments import get_profile
from thesis_lib.methods.prunetrain import PruneTrain
from thesis_lib.training import Trainer, seeded_model

EPOCHS = (15, 20)
LASSO_RATIOS = (0.8, 0.85, 0.9)
THRESHOLDS = (1e-4, 1e-3, 1e-2)
INTERVAL = 2
SEEDS = (0, 1, 2)
VALIDATION_FRACTION = 0.2
MAX_ZEROING_CHANGE = 0.01  # one accuracy point
MAX_ACCURACY_LOSS = 0.01
OUTPUT = Path(__file__).parent / "results" / "prunetrain_quick.csv"
CANDIDATES = OUTPUT.with_name("prunetrain_quick_candidates.csv")


def train(data, epochs: int, seed: int, pruning: PruneTrain | None) -> dict[str, float]:
    """One run of the wide net with `quick`'s training stretched to `epochs` (milestones scaled)."""
    profile = get_profile("quick")
    config = profile.train_config(epochs=epochs, seed=seed)  # milestones scaled: Profile.milestones_for
    model = seeded_model(profile.resnet("wide", data.in_channels, data.num_classes), seed)
    history = Trainer(model, data, config, hooks=[] if pruning is None else [pruning], progress=False).fit()
    row = {"epochs": epochs, "seed": seed, "validation_acc": float(history["test_acc"].iloc[-1])}
    if pruning is not None:
        zeroings = history[history["test_acc_after_zeroing"].notna()]
        change = (zeroings["test_acc_after_zeroing"] - zeroings["test_acc"]).abs()
        row.update(
            lasso_ratio=pruning.lasso_ratio,
            threshold=pruning.threshold,
            interval=pruning.interval,
            max_zeroing_change=float(change.max()),
            params_removed=1.0 - float(history["params_after"].iloc[-1] / history["params"].iloc[0]),
        )
    return row


def candidates(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per candidate (epochs, lasso ratio, threshold): the means over its seeds, the largest zeroing
    change, the dense baseline's accuracy at its epochs, whether it qualifies and (column chosen) the choice."""
    dense = runs[runs["lasso_ratio"].isna()].groupby("epochs")["validation_acc"].mean()
    table = (
        runs[runs["lasso_ratio"].notna()]
        .groupby(["epochs", "lasso_ratio", "threshold"])
        .agg(
            validation_acc=("validation_acc", "mean"),
            max_zeroing_change=("max_zeroing_change", "max"),
            params_removed=("params_removed", "mean"),
        )
        .reset_index()
    )
    table["dense_acc"] = table["epochs"].map(dense)
    table["qualifies"] = (table["max_zeroing_change"] <= MAX_ZEROING_CHANGE) & (
        table["validation_acc"] >= table["dense_acc"] - MAX_ACCURACY_LOSS
    )
    ranked = table[table["qualifies"]].sort_values(
        ["params_removed", "epochs", "threshold"], ascending=[False, True, True]
    )
    table["chosen"] = table.index == (ranked.index[0] if len(ranked) else -1)
    return table


def main() -> None:
    torch.set_num_threads(1)
    data = digits().validation_split(VALIDATION_FRACTION, seed=0)
    rows = [train(data, epochs, seed, None) for epochs in EPOCHS for seed in SEEDS]
    for epochs, ratio, threshold, seed in itertools.product(EPOCHS, LASSO_RATIOS, THRESHOLDS, SEEDS):
        rows.append(train(data, epochs, seed, PruneTrain(ratio, threshold, INTERVAL)))
        print(rows[-1], flush=True)
    runs = pd.DataFrame(rows)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    runs.to_csv(OUTPUT, index=False)
    table = candidates(runs)
    table.to_csv(CANDIDATES, index=False)
    print(table.to_string(index=False))
    print(
        "no candidate qualifies" if not table["chosen"].any() else f"chosen: {table[table['chosen']].iloc[0].to_dict()}"
    )


if __name__ == "__main__":
    main()
