"""Chapter 6.4 (notebook 06_4_additive): the additive methods of sections 2.8 and 2.9.

Three questions, each answered by Welch t-tests over 5 seeds per group (Holm-adjusted within a section's
family of tests):

- Mixed precision (2.8): does training in bf16 (and fp16 with loss scaling, on CUDA) change the accuracy,
  and how much epoch time does it save? On the CPU, bf16 runs through the CPU's own bf16 kernels or is
  emulated; only GPU numbers speak for the thesis.
- Large batches (2.9): at a batch `LARGE_BATCH_FACTOR` times the baseline's, plain SGD against SGD with
  linear (Goyal et al.) and square-root (Hoffer et al.) learning-rate scaling with warm-up, LARS as You et
  al. run it (polynomial decay and warm-up, per iteration, at the plan's `LarsRates`) and ghost batch norm
  (Hoffer et al., virtual batches of the baseline's size, sqrt scaling and warm-up) in two arms: the same
  epochs (8x fewer steps) and Hoffer et al.'s regime adaptation, as many steps as the baseline batch (8x
  the epochs, milestones and warm-up stretched alike); each against the baseline batch: accuracy, epoch
  time and total time.
- LARS with PruneTrain (the draft's claim in 2.9: LARS keeps a good shrinking rate at a larger batch):
  chapter 5's default PruneTrain point at the large batch with SGD (linear scaling, warm-up) against LARS
  (warm-up, the step schedule PruneTrain's pruning follows), and both against PruneTrain at the baseline
  batch: the parameters kept and the accuracy.
- Mixed precision on CUDA also compares `full`'s fp32 with the fast path of `full-fast` (bf16 autocast,
  channels_last, TF32), the precision a GPU user would pick.

Warm-up lasts `WARMUP_SHARE` of the epochs (the thesis's 10 of 180), at least one epoch. No experiment of
its own: the runs are chapter 3's "baseline" and chapter 5's "prunetrain" experiments with other TrainConfig
fields, so the baseline-batch runs come from the cache when chapters 3 and 5 trained them. `sweeps` names
one sweep per section ("precision", "large_batch", "prunetrain"), its arms' runs one after the other;
`precision_runs`, `large_batch_runs` and `prunetrain_runs` label them by arm.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import plots, stats
from ..experiments import TIMING_COLUMNS, Profile, get_profile
from .ch05_prunetrain import prunetrain_plan
from .contract import Notebook, Sweeps, plan_for

__all__ = [
    "FAST_PATH",
    "LARGE_BATCH_FACTOR",
    "LARS_RATES",
    "LARGE_BATCH_TESTED",
    "PRECISION_TESTED",
    "PRUNETRAIN_TESTED",
    "SEED_PLANS",
    "SWEEP_EXPERIMENTS",
    "WARMUP_SHARE",
    "AdditivePlan",
    "LarsRates",
    "additive_plan",
    "arm_table",
    "arm_tests",
    "bf16_note",
    "box_figure",
    "curve_figure",
    "large_batch_runs",
    "large_batch_tests",
    "lars_rates",
    "lars_prunetrain_answer",
    "precision_runs",
    "precision_tests",
    "prunetrain_pairs",
    "prunetrain_runs",
    "prunetrain_tests",
    "shrink_figure",
    "summary_sentences",
    "sweeps",
]

LARGE_BATCH_FACTOR = 8


@dataclass(frozen=True)
class LarsRates:
    """LARS's global rates of one profile: the large-batch arm (poly decay) and the PruneTrain arm (step)."""

    large_batch: float
    prunetrain: float


# `quick`: chosen on a validation split (0.2) of digits' training set by `tuning/lars_quick.py`, rule fixed
# before its runs: the highest mean validation accuracy over seeds 0-2 of the rates 1, 2, 5, 10, ties to the
# lower rate. Large batch (poly): 0.49 / 0.71 / 0.85 / 0.92, so 10, the grid's top (a higher rate is untried);
# PruneTrain (step): 0.78 / 0.89 / 0.95 / 0.92, so 5. Both keep every parameter at every rate. The numbers:
# `tuning/results/lars_quick_choice.csv`. `smoke` reuses `quick`'s rates (too few epochs to choose its own).
_QUICK_LARS = LarsRates(large_batch=10.0, prunetrain=5.0)
LARS_RATES: dict[str, LarsRates] = {"smoke": _QUICK_LARS, "quick": _QUICK_LARS}
# The batches the `quick` rates were chosen at (8 x 64): `full`'s rates are scaled from them by the square
# root of the batch ratio (Hoffer et al.'s rule, which keeps the gradient noise per step), an assumption
# that no CIFAR run has checked; the notebook says so.
LARS_REFERENCE_BATCH = 512


def lars_rates(profile: Profile) -> LarsRates:
    """The profile's LARS rates: its own entry of `LARS_RATES`, else (`full`) `quick`'s scaled from
    `LARS_REFERENCE_BATCH` to the profile's large batches by the square root of the ratio."""
    name = profile.plans or profile.name
    if name in LARS_RATES:
        return LARS_RATES[name]
    quick = LARS_RATES["quick"]
    pruning = prunetrain_plan(profile)
    large, prune_large = (
        LARGE_BATCH_FACTOR * batch for batch in (profile.batch_size, pruning.batch_size or profile.batch_size)
    )
    return LarsRates(
        large_batch=quick.large_batch * (large / LARS_REFERENCE_BATCH) ** 0.5,
        prunetrain=quick.prunetrain * (prune_large / LARS_REFERENCE_BATCH) ** 0.5,
    )


# Warm-up: the thesis's 10 of its 180 epochs (Goyal et al.'s 5 of 90), rounded, at least one epoch.
WARMUP_SHARE = Fraction(10, 180)
BASELINE = {"model": "wide", "schedule": "step"}
# The fast path (`full-fast`'s CUDA fields) as one arm of the precision sweep on CUDA.
FAST_PATH = "fast path (bf16, channels_last, TF32)"
FAST_PATH_FIELDS = {"precision": "bf16", "channels_last": True, "tf32": True}
REFERENCE = "Batch {batch}, SGD"
# Each sweep of the notebook and the experiment its arms run.
SWEEP_EXPERIMENTS = {"precision": "baseline", "large_batch": "baseline", "prunetrain": "prunetrain"}


@dataclass(frozen=True)
class AdditivePlan:
    """The runs of chapter 6.4 for one profile: seeds, the baseline and the large batch, warm-up epochs,
    the precisions the device can train, chapter 5's default PruneTrain point and its batch (256 on `full`,
    as chapter 5 trains; the profile's batch otherwise), whose large batch is `LARGE_BATCH_FACTOR` times
    that. `default_precision` is what the profile's runs train in when no precision is asked for (bf16 on
    CUDA with `full`'s fast path, else fp32)."""

    seeds: tuple[int, ...]
    base_batch: int
    epochs: int
    warmup_epochs: int
    precisions: tuple[str, ...]
    prunetrain: dict[str, Any]
    prune_batch: int
    lars: LarsRates
    default_precision: str = "fp32"
    fast_path: bool = False

    @property
    def large_batch(self) -> int:
        return LARGE_BATCH_FACTOR * self.base_batch

    @property
    def prune_large_batch(self) -> int:
        return LARGE_BATCH_FACTOR * self.prune_batch

    @property
    def reference(self) -> str:
        """The name of the baseline-batch SGD arm every other arm is tested against."""
        return REFERENCE.format(batch=self.base_batch)

    def _per_seed(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**params, "seed": seed} for seed in self.seeds]

    def precision_grids(self) -> dict[str, list[dict[str, Any]]]:
        """Arm -> "baseline" params per seed: fp32 (the reference runs), bf16, and fp16 where CUDA is. The arm
        of the profile's own precision is chapter 3's runs; every other arm names its precision (so on CUDA,
        where `full` trains in bf16 by default, the fp32 arm asks for fp32)."""
        grids = {
            precision: self._per_seed(
                BASELINE if precision == self.default_precision else {**BASELINE, "precision": precision}
            )
            for precision in self.precisions
        }
        if self.fast_path:
            grids[FAST_PATH] = self._per_seed({**BASELINE, **FAST_PATH_FIELDS})
        return grids

    def large_batch_grids(self) -> dict[str, list[dict[str, Any]]]:
        """Arm -> "baseline" params per seed: the reference batch and six ways to train the large one (the
        last one, ghost BN with regime adaptation, trains `LARGE_BATCH_FACTOR` times the epochs)."""
        large, warmup = {**BASELINE, "batch_size": self.large_batch}, {"warmup_epochs": self.warmup_epochs}
        name = f"Batch {self.large_batch}"
        ghost = {**large, "ghost_batch": self.base_batch, "lr_scaling": "sqrt"}
        lars = {**large, "optimizer": "lars", "lr": self.lars.large_batch, "schedule": "poly", **warmup}
        stretched = {
            "epochs": LARGE_BATCH_FACTOR * self.epochs,
            "warmup_epochs": LARGE_BATCH_FACTOR * self.warmup_epochs,
        }
        return {
            self.reference: self._per_seed(BASELINE),
            f"{name}, SGD": self._per_seed(large),
            f"{name}, SGD linear + warm-up": self._per_seed({**large, "lr_scaling": "linear", **warmup}),
            f"{name}, SGD sqrt + warm-up": self._per_seed({**large, "lr_scaling": "sqrt", **warmup}),
            f"{name}, LARS + warm-up + poly": self._per_seed(lars),
            f"{name}, ghost BN {self.base_batch} + sqrt + warm-up": self._per_seed({**ghost, **warmup}),
            f"{name}, ghost BN {self.base_batch} + sqrt + warm-up, equal steps": self._per_seed({**ghost, **stretched}),
        }

    def prunetrain_grids(self) -> dict[str, list[dict[str, Any]]]:
        """Arm -> "prunetrain" params per seed: chapter 5's batch, and the large one with SGD (lr scaled
        linearly from chapter 5's batch) or LARS at its recipe's rate, both with warm-up."""
        large = {"batch_size": self.prune_large_batch, "warmup_epochs": self.warmup_epochs}
        name = f"Batch {self.prune_large_batch}"
        lars = {**self.prunetrain, **large, "optimizer": "lars", "lr": self.lars.prunetrain}
        return {
            f"Batch {self.prune_batch}, SGD": self._per_seed(self.prunetrain),
            f"{name}, SGD linear + warm-up": self._per_seed(
                {**self.prunetrain, **large, "lr_scaling": "linear", "lr_reference_batch": self.prune_batch}
            ),
            f"{name}, LARS + warm-up": self._per_seed(lars),
        }

    def arms(self, sweep: str) -> dict[str, list[dict[str, Any]]]:
        """Arm -> params per seed of the notebook's sweep `sweep` (one of `SWEEP_EXPERIMENTS`)."""
        grids = {
            "precision": self.precision_grids,
            "large_batch": self.large_batch_grids,
            "prunetrain": self.prunetrain_grids,
        }
        if sweep not in grids:
            raise ValueError(f"chapter 6.4 has no sweep {sweep!r}; its sweeps are {list(grids)}")
        return grids[sweep]()


# Chapter 6.4's choice per profile: the seeds of every arm (5 per group on quick and full, as the thesis).
# Everything else in `AdditivePlan` follows from the profile, its device and chapter 5's plan.
SEED_PLANS: dict[str, tuple[int, ...]] = {"smoke": (0, 1), "quick": (0, 1, 2, 3, 4), "full": (0, 1, 2, 3, 4)}


def additive_plan(profile: str | Profile) -> AdditivePlan:
    """Chapter 6.4's plan for `profile` (see `AdditivePlan`); fp16 is planned only where CUDA trains."""
    profile = get_profile(profile)
    seeds = plan_for(SEED_PLANS, profile, "6.4")
    cuda = profile.resolved_device().type == "cuda" and torch.cuda.is_available()
    pruning = prunetrain_plan(profile)
    return AdditivePlan(
        seeds=seeds,
        base_batch=profile.batch_size,
        epochs=profile.epochs,
        warmup_epochs=max(1, round(profile.epochs * WARMUP_SHARE)),
        precisions=("fp32", "bf16", "fp16") if cuda else ("fp32", "bf16"),
        prunetrain={**pruning.default(), **pruning.training()},
        prune_batch=pruning.batch_size or profile.batch_size,
        lars=lars_rates(profile),
        default_precision=profile.train_config().precision,
        fast_path=cuda,
    )


def sweeps(profile: str | Profile) -> Sweeps:
    """Notebook 06_4's sweeps: the precision, large-batch and PruneTrain arms, each arm's runs in turn (the
    reference arms are chapter 3's and 5's runs)."""
    plan = additive_plan(profile)
    return {
        name: (experiment, [params for grid in plan.arms(name).values() for params in grid])
        for name, experiment in SWEEP_EXPERIMENTS.items()
    }


def _arm_runs(nb: Notebook, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Summary (one row per run) and history (one row per run and epoch) of the notebook's sweep `name`,
    with an "arm" column: the sweep's runs come in the order of `AdditivePlan.arms`."""
    result = nb.sweep(name)
    arms = [arm for arm, grid in additive_plan(nb.profile).arms(name).items() for _ in grid]
    epochs = [len(run.history) for run in result.runs]
    return (
        result.summary.assign(arm=arms),
        result.history.assign(arm=[arm for arm, n in zip(arms, epochs) for _ in range(n)]),
    )


def precision_runs(nb: Notebook) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The precision arms' runs: (summary, history), arm = "fp32" / "bf16" / "fp16"."""
    return _arm_runs(nb, "precision")


def large_batch_runs(nb: Notebook) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The large-batch arms' runs: (summary, history)."""
    return _arm_runs(nb, "large_batch")


def prunetrain_runs(nb: Notebook) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The PruneTrain arms' runs: (summary, history); the summary gains "kept_params", the share of the
    dense net's parameters the final net keeps."""
    summary, history = _arm_runs(nb, "prunetrain")
    summary["kept_params"] = summary["final_params_after"] / summary["dense_params"]
    return summary, history


def arm_tests(
    summary: pd.DataFrame,
    quantities: tuple[tuple[str, str, str], ...],
    reference: str | None = None,
    pairs: list[tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """Welch t-tests of every arm against `reference`, or of the given (a, b) `pairs`, for each (column,
    description, unit) of `quantities`; the whole table is one family, Holm-adjusted (`stats.with_holm`),
    with a "quantity" column."""
    if (reference is None) == (pairs is None):
        raise ValueError("give either reference (every arm against it) or pairs, not both or neither")
    arms = list(dict.fromkeys(summary["arm"]))
    if pairs is None:
        if reference not in arms:
            raise ValueError(f"reference arm {reference!r} not among the runs' arms {arms}")
        pairs = [(arm, reference) for arm in arms if arm != reference]
    tables = []
    for column, what, unit in quantities:
        table = stats.compare_groups(summary, "arm", pairs, [(column, what, unit)], timing_columns=TIMING_COLUMNS)
        table.insert(0, "quantity", column)
        tables.append(table)
    return stats.with_holm(pd.concat(tables, ignore_index=True))


def arm_table(summary: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """One row per arm (in run order) with n and the mean and standard deviation (ddof 1) of `columns`."""
    rows = []
    for arm, group in summary.groupby("arm", sort=False):
        row: dict[str, Any] = {"arm": arm, "n": len(group)}
        for column in columns:
            row[f"{column}_mean"] = float(group[column].mean())
            row[f"{column}_std"] = float(group[column].std(ddof=1)) if len(group) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


# What each section tests, as (column, words, unit): the words are this chapter's own ("accuracy", "epoch
# time", "total time", not `contract.QUANTITIES`'), as its printed sentences have them.
PRECISION_TESTED = (("final_acc", "accuracy", ""), ("steady_epoch_time", "epoch time", "s"))
LARGE_BATCH_TESTED = (("final_acc", "accuracy", ""), ("total_time", "total time", "s"))
PRUNETRAIN_TESTED = (("kept_params", "kept parameters", ""), ("final_acc", "accuracy", ""))


def precision_tests(summary: pd.DataFrame) -> pd.DataFrame:
    """Table 6.11, the tests of table 6.10: every precision against fp32, accuracy and epoch time (`arm_tests`)."""
    return arm_tests(summary, PRECISION_TESTED, reference="fp32")


def large_batch_tests(summary: pd.DataFrame, plan: AdditivePlan) -> pd.DataFrame:
    """Table 6.13, the tests of table 6.12: every large-batch arm against the baseline batch, accuracy and total time."""
    return arm_tests(summary, LARGE_BATCH_TESTED, reference=plan.reference)


def prunetrain_tests(summary: pd.DataFrame, plan: AdditivePlan) -> pd.DataFrame:
    """Table 6.15, the tests of table 6.14: the `prunetrain_pairs`, kept parameters and accuracy."""
    return arm_tests(summary, PRUNETRAIN_TESTED, pairs=prunetrain_pairs(plan))


def summary_sentences(tests: pd.DataFrame) -> str:
    """One sentence per test, with the Holm-adjusted p-value and its verdict, for the notebook's text."""
    return "\n".join(tests["sentence"])


def bf16_note(device: torch.device | str) -> str:
    """What the bf16 timings of `device` can show: a GPU's tensor cores, a CPU's native bf16 kernels
    (oneDNN on AVX512-BF16 / AMX), or emulation on a CPU without them."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"bf16 runs on the tensor cores of {torch.cuda.get_device_name(device)}."
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return (
            "This CPU has native bf16 kernels (oneDNN on AVX512-BF16 / AMX), so bf16 is not emulated here; "
            "the small nets of the CPU profiles are bound by per-operation overhead, so their times do not "
            "show what bf16 saves on a GPU."
        )
    return "This CPU has no bf16 kernels: bf16 is emulated and slower than fp32; only GPU runs show what bf16 saves."


def prunetrain_pairs(plan: AdditivePlan) -> list[tuple[str, str]]:
    """The PruneTrain comparisons: LARS against SGD at the large batch, and each against chapter 5's batch."""
    arms = list(plan.prunetrain_grids())
    base, sgd, lars = arms
    return [(lars, sgd), (sgd, base), (lars, base)]


def lars_prunetrain_answer(tests: pd.DataFrame, plan: AdditivePlan) -> str:
    """The draft's claim (2.9: LARS keeps a good shrinking rate at a larger batch) against the tests of
    `arm_tests(..., pairs=prunetrain_pairs(plan))`: supported only when LARS keeps significantly fewer
    parameters than SGD at the large batch (Holm-adjusted)."""
    lars, sgd = prunetrain_pairs(plan)[0]
    rows = tests[tests["comparison"].str.endswith(f", {lars} vs {sgd}")].set_index("quantity")
    if not {"kept_params", "final_acc"} <= set(rows.index):
        raise ValueError(f"no tests of kept_params and final_acc between {lars!r} and {sgd!r}")
    kept, acc = rows.loc["kept_params"], rows.loc["final_acc"]
    accuracy = f"accuracy {acc['mean_a']:.3f} vs {acc['mean_b']:.3f} (Holm p = {acc['p_holm']:.3g}, {acc['verdict']})"
    if kept["verdict"].startswith("undefined"):
        return (
            f"At batch {plan.prune_large_batch} both optimizers kept exactly {kept['mean_a']:.0%} of the "
            f"parameters in every run, so the claim cannot be tested on these runs; {accuracy}."
        )
    shares = f"LARS kept {kept['mean_a']:.0%} of the parameters, SGD {kept['mean_b']:.0%}"
    if kept["verdict"] != "significant":
        return f"{shares} (Holm p = {kept['p_holm']:.3g}): the numbers do not decide the claim; {accuracy}."
    outcome = "supports" if kept["diff"] < 0 else "contradicts"
    return f"{shares} (Holm p = {kept['p_holm']:.3g}, significant): this {outcome} the draft's claim; {accuracy}."


# Size of `box_figure` in inches: the full text width, and a height that grows with the arms (rows).
BOX_WIDTH, BOX_HEIGHT, BOX_HEIGHT_PER_ARM = 6.0, 0.9, 0.42


def _arm_label(arm: str) -> str:
    """A printable German label of an arm: "Batch 512, SGD linear + warm-up" -> "Batch 512, SGD linear +
    Aufwärmen" on two lines, the second starting at the method."""
    german = (
        arm.replace("warm-up", "Aufwärmen")
        .replace("ghost BN", "Ghost-BN")
        .replace("equal steps", "gleiche Schrittzahl")
    )
    return german.replace(", ", "\n", 1)


def box_figure(summary: pd.DataFrame, columns: tuple[str, ...], stamp: tuple[str, str]) -> Figure:
    """One box plot per column of `columns` (every run drawn on top), side by side with the arms as rows
    (their labels are long), the first arm on top; `stamp` = (profile, dataset) for `plots.stamp`."""
    arms = list(dict.fromkeys(summary["arm"]))
    fig, axes = plots.figure("full", ncols=len(columns), sharey=True, squeeze=False)
    fig.set_size_inches(BOX_WIDTH, BOX_HEIGHT + BOX_HEIGHT_PER_ARM * len(arms))
    frame = summary.assign(label=summary["arm"].map(_arm_label))
    order = [_arm_label(arm) for arm in arms]
    for ax, column in zip(axes.flat, columns):
        plots.boxplot(ax, frame, column, "label", order=order)
        ax.set(xlabel=plots.label(column), ylabel="")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    sizes = summary.groupby("arm").size()
    plots.stamp(fig, stamp[0], stamp[1], int(sizes.min()) if sizes.nunique() == 1 else "/".join(map(str, sizes)))
    return fig


def curve_figure(
    history: pd.DataFrame, epochs: int, milestones: tuple[int, ...], warmup_epochs: int, stamp: tuple[str, str]
) -> Figure:
    """Test accuracy of every arm over its share of training (epoch / the arm's epochs, so that the
    equal-steps arm, 8x as many epochs, spans the same axis): the mean over seeds with a min-max band, the
    end of warm-up and the lr drops of the profile's `epochs` marked at their shares (every arm's schedule
    is stretched alike)."""
    fig, ax = plots.figure("full")
    frame = history.assign(
        label=history["arm"].map(lambda arm: _arm_label(arm).replace("\n", ", ")),
        progress=history["epoch"] / history.groupby(["arm", "seed"])["epoch"].transform("max"),
    )
    plots.line_with_band(ax, frame, "progress", "test_acc", "label")
    for share, style in [((m + 0.5) / epochs, ":") for m in milestones] + [((warmup_epochs + 0.5) / epochs, "--")]:
        ax.axvline(share, color="0.6", linewidth=0.6, linestyle=style)  # between epoch e and e + 1, as mark_epochs
    ax.set(xlabel=plots.label("training_progress"), ylabel=plots.label("test_acc"))
    n = int(history.groupby("arm")["seed"].nunique().min())
    handles, labels = ax.get_legend_handles_labels()
    marks = "-- Ende Aufwärmen, ··· lr-Abfall" if plots.language() == "de" else "-- end of warm-up, ··· lr drop"
    ax.get_legend().remove()
    title = f"{plots.label('mean_band', n=n)}; {marks}"
    # Smaller type: two columns of these long arm names at 8 pt were wider than the text width.
    fig.legend(handles, labels, title=title, loc="outside lower center", ncol=2, fontsize=7.0, title_fontsize=7.0)
    plots.stamp(fig, stamp[0], stamp[1], n)
    return fig


def shrink_figure(history: pd.DataFrame, stamp: tuple[str, str]) -> Figure:
    """Parameters of the network per epoch of every PruneTrain arm (mean over seeds, min-max band)."""
    fig, ax = plots.figure("full")
    frame = history.assign(label=history["arm"].map(lambda arm: _arm_label(arm).replace("\n", ", ")))
    plots.line_with_band(ax, frame, "epoch", "params", "label")
    # Arms that never prune lie on one line, so each gets its own dash; the legend is built from the styled
    # lines themselves (seaborn's own legend keeps the solid lines it drew first: fig. 6.18's old mismatch).
    labels = list(dict.fromkeys(frame["label"]))  # seaborn's hue order: first appearance
    lines = ax.get_lines()[: len(labels)]
    for line, style in zip(lines, ("-", "--", ":", "-.")):
        line.set_linestyle(style)
    ax.get_legend().remove()
    ax.set(xlabel=plots.label("epoch"), ylabel=plots.label("params"))
    ax.xaxis.get_major_locator().set_params(integer=True)
    n = int(history.groupby("arm")["seed"].nunique().min())
    fig.legend(lines, labels, title=plots.label("mean_band", n=n), loc="outside lower center", ncol=2)
    plots.stamp(fig, stamp[0], stamp[1], n)
    return fig
