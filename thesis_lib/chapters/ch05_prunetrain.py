"""Chapter 5 (notebook 05_prunetrain): PruneTrain on the wide thesis ResNet.

The chapter's plan per profile (`PruneTrainPlan`, `prunetrain_plan`: one factor at a time around a default
point), its sweeps (`sweeps`: the baseline at the PruneTrain runs' batch, then one sweep per factor), the
experiment "prunetrain" (the wide net with the profile's training and a `PruneTrain` hook), the analysis
notebook 05 prints and tables (5.1 to 5.6: `setting_means`, `compare_to_baseline`, `default_point_tests`,
...) and its figures 5.1 to 5.7. The algorithm itself is `thesis_lib.methods.prunetrain`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .. import plots, stats
from ..experiments import (
    TIMING_COLUMNS,
    Profile,
    RunContext,
    RunOutput,
    RunPlan,
    SweepResult,
    experiment,
    get_profile,
    plan_default,
    seed_param,
    single_phase,
    summarize_training,
)
from ..methods.prunetrain import PruneTrain, channel_sizes, training_flops_summary
from ..training import seeded_model
from .contract import Sweeps, plan_for, quantities

__all__ = [
    "COMPARED_QUANTITIES",
    "FACTORS",
    "FACTOR_FONTSIZE",
    "FACTOR_LABELS",
    "FACTOR_NAMES",
    "FIGURE_TEXT",
    "LEGEND_FONTSIZE",
    "LOG_SCALE_FACTORS",
    "MARKER_SIZE",
    "MEANS_COLUMNS",
    "NOTE_FONTSIZE",
    "PAPER_SAVINGS",
    "PRUNETRAIN_PLANS",
    "PRUNE_PARAMS",
    "PruneTrainParams",
    "PruneTrainPlan",
    "SETTINGS_CAPTION",
    "SETTING_COLUMNS",
    "SHRINKS",
    "TEST_COLUMNS",
    "TREND_COLUMNS",
    "WIDTH_HEADROOM",
    "ZEROING_COLUMNS",
    "ZEROING_LIMIT",
    "compare_to_baseline",
    "default_point_history",
    "default_point_sentence",
    "default_point_tests",
    "default_run_widths",
    "dense_parameter_count",
    "distinct_runs",
    "factor_label",
    "factor_settings",
    "factor_trends",
    "final_widths_report",
    "interval_figure",
    "lasso_ratio_figure",
    "lasso_step_sentence",
    "last_epoch_accuracy_sentences",
    "learning_rate_figure",
    "paper_comparison",
    "prunetrain_experiment",
    "prunetrain_plan",
    "reconfiguration_epochs",
    "removals_by_epoch",
    "setting_means",
    "setting_row",
    "shrinking_curves",
    "shrinking_figure",
    "smallest_net_sentence",
    "stage_widths",
    "sweep_tests",
    "sweeps",
    "threshold_accuracy_figure",
    "threshold_time_figure",
    "training_accuracy_figure",
    "with_baseline",
    "with_dense_start",
    "zeroing_changes",
    "zeroing_sentence",
]

# The factors chapter 5 varies, one at a time, in the notebook's order; a setting is one value of each.
FACTORS = ("lasso_ratio", "interval", "threshold", "lr")
SETTING_COLUMNS = ("lasso_ratio", "threshold", "interval", "lr")


def _check_factor(factor: str) -> None:
    if factor not in FACTORS:
        raise ValueError(f"unknown factor {factor!r}; use one of {FACTORS}")


@dataclass(frozen=True)
class PruneTrainPlan:
    """Chapter 5's one-factor-at-a-time sweeps for one profile: a default point and the values each figure
    varies (fig. 5.1 lasso ratio, 5.2 reconfiguration interval, 5.3 / 5.4 threshold, and the learning
    rate), every other factor held at the default, as the thesis does.

    `full` keeps the thesis's values: a fixed batch of 256 for 180 epochs (the draft's chapter 5; its
    baseline runs at 256 too, `baseline_grid`), lasso ratio 0.05 ... 0.25 around the original code's 0.2,
    threshold 1e-4, intervals 2 / 5 / 10 epochs of 180 (the draft names no threshold or learning-rate values: a
    decade either side of 1e-4 and half / double the baseline's lr 0.1 are this plan's choice).

    `quick` prunes the paper's way: the lasso drives groups to zero and the threshold only removes what is
    already gone, so that zeroing changes the function by at most one accuracy point (the checked property;
    `PruneTrain` records `test_acc_after_zeroing`). Fewer SGD steps need a stronger lasso (lambda of eq. 2.3
    fixes only the lasso's share at step 0; how far the slices shrink grows with lambda x lr x steps) and
    enough steps at the undecayed lr: in the profile's 10 epochs (230 steps, lr decayed after epoch 5) no
    ratio up to 0.9 removes a channel at the paper's threshold 1e-4, so chapter 5 trains 20 epochs (its
    baseline too; milestones scaled to 10 / 16). The point was chosen on a validation split of digits'
    training set (20 %, seed 0; the test split unread) by the rule fixed in `tuning/prunetrain_quick.py`
    before its runs (every zeroing within one point in every seed, mean accuracy at most one point below
    the dense net of the same length, then the most parameters removed), over epochs 15 / 20, ratios
    0.8 / 0.85 / 0.9 and thresholds 1e-4 / 1e-3 / 1e-2 at interval 2, three seeds each
    (`tuning/results/prunetrain_quick_candidates.csv`): 20 epochs, ratio 0.9, threshold 1e-4 removed 33 %
    of the parameters (0.33 mean), validation accuracy 0.988 against the dense net's 0.991, and no zeroing
    changed the accuracy (0.0 points); threshold 1e-2 changed it by up to 84 points at every ratio (the
    weights the lasso has shrunk but not zeroed are of that size), 1e-3 by up to 2.4. The sweeps keep
    the paper's thresholds 1e-5 / 1e-4 / 1e-3, ratios 0.8 / 0.9 / 0.95 (0.95 collapsed the net in
    exploratory validation runs: 0.58 and 0.79), intervals 1 / 2 / 5 and lrs 0.025 / 0.05 / 0.1, five
    seeds per point as the baseline: 50 runs of about 4 s. The project's earlier `quick` point (ratio 0.8,
    threshold 5e-2 over 10 epochs) was mass magnitude pruning: one zeroing cut the accuracy from 0.785 to
    0.387 (see `thesis_lib.methods.prunetrain` for the weight jump it caused). `smoke` (8 steps) only
    checks that the notebook runs; its nets do not shrink.
    """

    lasso_ratio: float
    threshold: float
    interval: int
    lr: float
    lasso_ratios: tuple[float, ...]
    intervals: tuple[int, ...]
    thresholds: tuple[float, ...]
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    batch_size: int | None = None
    epochs: int | None = None

    def training(self) -> dict[str, int]:
        """The training params every run of the chapter shares: the fixed batch size (256 on `full`, as the
        draft's chapter 5) and the epochs (20 on `quick`) where the plan sets them, else the profile's."""
        fixed = {"batch_size": self.batch_size, "epochs": self.epochs}
        return {key: value for key, value in fixed.items() if value is not None}

    def baseline_grid(self, seeds: Sequence[int]) -> list[dict[str, Any]]:
        """Params of the "baseline" runs chapter 5 compares against: the wide net with the step schedule at
        the same batch size as the PruneTrain runs, once per seed of `seeds` (cached as their own runs)."""
        return [{"model": "wide", "schedule": "step", **self.training(), "seed": seed} for seed in seeds]

    def default(self) -> dict[str, float | int]:
        """The default point's params (without seed), keyed by the `SETTING_COLUMNS`."""
        return {"lasso_ratio": self.lasso_ratio, "threshold": self.threshold, "interval": self.interval, "lr": self.lr}

    def values(self, factor: str) -> tuple[float | int, ...]:
        """The values the sweep of `factor` takes."""
        _check_factor(factor)
        return {
            "lasso_ratio": self.lasso_ratios,
            "interval": self.intervals,
            "threshold": self.thresholds,
            "lr": self.lrs,
        }[factor]

    def grid(self, factor: str) -> list[dict[str, float | int]]:
        """Params of the "prunetrain" runs that vary `factor` (the others at the default), once per seed.

        The default point has identical params in every factor's grid, so the run cache trains it once.
        """
        return [
            {**self.default(), factor: value, **self.training(), "seed": seed}
            for value in self.values(factor)
            for seed in self.seeds
        ]


PRUNETRAIN_PLANS: dict[str, PruneTrainPlan] = {
    "smoke": PruneTrainPlan(
        lasso_ratio=0.8,
        threshold=3e-2,
        interval=1,
        lr=0.05,
        lasso_ratios=(0.8, 0.9),
        intervals=(1, 2),
        thresholds=(3e-2, 5e-2),
        lrs=(0.05, 0.1),
        seeds=(0, 1),
    ),
    "quick": PruneTrainPlan(
        lasso_ratio=0.9,
        threshold=1e-4,
        interval=2,
        lr=0.05,
        lasso_ratios=(0.8, 0.9, 0.95),
        intervals=(1, 2, 5),
        thresholds=(1e-5, 1e-4, 1e-3),
        lrs=(0.025, 0.05, 0.1),
        seeds=(0, 1, 2, 3, 4),
        epochs=20,
    ),
    "full": PruneTrainPlan(
        lasso_ratio=0.2,
        threshold=1e-4,
        interval=10,
        lr=0.1,
        lasso_ratios=(0.05, 0.1, 0.15, 0.2, 0.25),
        intervals=(2, 5, 10),
        thresholds=(1e-5, 1e-4, 1e-3),
        lrs=(0.05, 0.1, 0.2),
        seeds=(0, 1, 2, 3, 4),
        batch_size=256,
    ),
}


def prunetrain_plan(profile: str | Profile) -> PruneTrainPlan:
    """Chapter 5's sweeps for `profile` (see `PruneTrainPlan`)."""
    return plan_for(PRUNETRAIN_PLANS, profile, "5")


def sweeps(profile: str | Profile) -> Sweeps:
    """Notebook 05's sweeps in its order: the baseline at the PruneTrain runs' batch, then one sweep per
    factor of `FACTORS`, named by it (the default point is in every sweep: one run, listed once per sweep)."""
    profile = get_profile(profile)
    plan = prunetrain_plan(profile)
    return {
        "baseline": ("baseline", plan.baseline_grid(profile.seeds)),
        **{factor: ("prunetrain", plan.grid(factor)) for factor in FACTORS},
    }


PRUNE_PARAMS = ("lasso_ratio", "threshold", "interval")


@dataclass(frozen=True)
class PruneTrainParams:
    """PruneTrain's lasso ratio r, threshold on |w| and reconfiguration interval (epochs); defaults: the
    profile's default point (`PruneTrainPlan`; the thesis's 0.2 / 1e-4 / 10 on `full`), because the thesis
    values prune nothing in the few steps of the small profiles."""

    lasso_ratio: float = plan_default(lambda profile, _: prunetrain_plan(profile).lasso_ratio, above=0, below=1)
    threshold: float = plan_default(lambda profile, _: prunetrain_plan(profile).threshold, at_least=0)
    interval: int = plan_default(lambda profile, _: prunetrain_plan(profile).interval, at_least=1)
    seed: int = seed_param()


SHRINKS = "the unpruned wide net: an upper bound, PruneTrain shrinks it while it trains"


def _prunetrain_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    """One phase of the wide net (an upper bound: it shrinks) with the params' TrainConfig fields."""
    train = {key: value for key, value in params.items() if key not in PRUNE_PARAMS}
    return single_phase(
        profile, "wide", profile.train_config(**train), bound=SHRINKS, changes_shapes=PruneTrain.changes_shapes
    )


# version 2: He-normal init, no reconfiguration after the last epoch; 3: the fused group lasso (float rounding);
# 4: test_acc_after_zeroing in the history; 5: warm-up per iteration and LARS's one policy (chapter 6.4's arms)
@experiment("prunetrain", version=5, params=PruneTrainParams, train_config=True, plan=_prunetrain_plan)
def prunetrain_experiment(context: RunContext) -> RunOutput:
    """Chapter 5: PruneTrain on the wide thesis ResNet with the profile's TrainConfig (step schedule).

    params: `PruneTrainParams` (the profile's default point where missing), and optionally any TrainConfig
    field (e.g. lr). The summary adds to `summarize_training` the training / inference FLOPs
    against the dense net (`training_flops_summary`), the reconfigurations, the parameters of the final
    (pruned) model and its channel widths (JSON of group -> width).
    """
    params = dict(context.params)
    seed = params.pop("seed")
    pruning = PruneTrain(**{key: params.pop(key) for key in PRUNE_PARAMS})
    config = context.train_config(seed=seed, **params)
    model = seeded_model(context.resnet_config("wide"), seed)
    trainer = context.trainer(model, config, hooks=[pruning])
    history = trainer.fit()
    summary = {
        **summarize_training(history),
        **training_flops_summary(history),
        "reconfigurations": int(history["reconfigured"].sum()),
        "dense_params": int(history["params"].iloc[0]),
        "final_params_after": int(history["params_after"].iloc[-1]),
        "final_channels": str(history["channels"].iloc[-1]),
    }
    return RunOutput(history=history, summary=summary, model=trainer.model)


_GROUP_NAME = re.compile(r"^(?:stem|stage(?P<stage>\d+)\.(?:block\d+\.)?(?P<kind>stream|layer\d+))$")


def stage_widths(history: pd.DataFrame) -> pd.DataFrame:
    """Widths per stage after every epoch, from a PruneTrain history's `channels` column (not
    `methods.search.stage_channels`, the channel count of one stage spec).

    One row per epoch, stage and kind: "stream" (the stage's residual-stream width) or "internal" (the
    internal widths of its blocks, summed; 0 once every block's main path is gone). Stages are named as
    the thesis's phases, counted from 1 ("phase 1" is stage index 0). The stem's own
    segment (bottleneck nets) is reported as stage "stem". Extra columns of `history` (run params) are
    carried along.
    """
    if "channels" not in history:
        raise ValueError("the history has no 'channels' column; it must come from a run with the PruneTrain hook")
    carried = [column for column in history.columns if column != "channels"]
    rows = []
    for _, record in history.iterrows():
        totals: dict[tuple[str, str], int] = {}
        for name, width in json.loads(record["channels"]).items():
            match = _GROUP_NAME.match(name)
            if match is None:
                raise ValueError(f"channel group {name!r} does not follow surgery's naming scheme")
            stage = "stem" if match["stage"] is None else f"phase {int(match['stage']) + 1}"
            kind = "stream" if match["kind"] in (None, "stream") else "internal"
            totals[(stage, kind)] = totals.get((stage, kind), 0) + int(width)
            if stage != "stem":
                totals.setdefault((stage, "internal"), 0)
        for (stage, kind), channels in sorted(totals.items()):
            rows.append({**record[carried].to_dict(), "stage": stage, "kind": kind, "channels": channels})
    return pd.DataFrame(rows)


FACTOR_NAMES = {
    "lasso_ratio": "lasso ratio",
    "interval": "reconfiguration interval",
    "threshold": "threshold",
    "lr": "learning rate",
}
LOG_SCALE_FACTORS = ("threshold", "lr")
# The quantities every setting is compared on with the baseline (tables 5.2 to 5.6).
COMPARED_QUANTITIES = quantities("mean_epoch_time", "final_acc")


def factor_settings(
    sweeps: Mapping[str, SweepResult], baseline: pd.DataFrame, plan: PruneTrainPlan
) -> dict[str, pd.DataFrame]:
    """Per factor of `FACTORS`: its sweep's summary with the `baseline` summary (`with_baseline`), the
    frame of the factor's boxplots and t-tests."""
    return {factor: with_baseline(sweeps[factor].summary, baseline, factor, plan.values(factor)) for factor in FACTORS}


def distinct_runs(sweeps: Mapping[str, SweepResult]) -> pd.DataFrame:
    """The summaries of every factor's sweep, each run once (the default point is in every sweep)."""
    return pd.concat([sweeps[f].summary for f in FACTORS]).drop_duplicates([*SETTING_COLUMNS, "seed"])


def dense_parameter_count(baseline: pd.DataFrame) -> int:
    """The parameters of the unpruned wide net: the first baseline run's (a "baseline" sweep summary)."""
    return int(baseline["final_params"].iloc[0])


def with_baseline(
    runs: pd.DataFrame, baseline: pd.DataFrame, factor: str, values: Sequence[float | int]
) -> pd.DataFrame:
    """One factor's sweep (`runs`, a sweep summary) and the baseline's runs in one frame, for boxplots and
    t-tests of every setting against the baseline.

    Column `setting` is an ordered categorical: "baseline", then each of `values` written with :g, so
    that tables and plots follow the plan's order and not the strings' ("10" would sort before "2").
    """
    _check_factor(factor)
    if factor not in runs:
        raise ValueError(f"the runs have no column {factor!r}; pass the summary of the {factor} sweep")
    labels = [f"{value:g}" for value in values]
    settings = runs[factor].map(lambda value: f"{value:g}")
    unplanned = sorted(set(settings) - set(labels))
    if unplanned:
        raise ValueError(
            f"runs with {factor} = {unplanned} are not among the values {labels}; pass the "
            f"values the sweep was run with"
        )
    frame = pd.concat([baseline.assign(setting="baseline"), runs.assign(setting=settings)], ignore_index=True)
    frame["setting"] = pd.Categorical(frame["setting"], categories=["baseline", *labels], ordered=True)
    return frame


TREND_COLUMNS = ["quantity", "x", "slope", "slope_ci_low", "slope_ci_high", "r2", "p", "p_holm", "n", "sentence"]


def factor_trends(runs: pd.DataFrame, factor: str, quantities: Iterable[tuple[str, str, str]]) -> pd.DataFrame:
    """Least-squares line of each quantity against `factor` over one sweep's runs and the t-test of its
    slope (`stats.linear_fit`): does the quantity rise or fall with the factor?

    `quantities` are (column, description, unit). Threshold and learning rate vary by factors of ten, so
    they are fitted against log10 of the value (column x names the abscissa). One row per quantity with
    the fit, its p Holm-adjusted over this call's quantities (one family: the sweep's trends) and a
    sentence that names a direction only for a slope significant after the adjustment; a sweep with only
    one value of the factor has no trend, and the table no rows.
    """
    _check_factor(factor)
    if factor not in runs:
        raise ValueError(f"the runs have no column {factor!r}; pass the summary of the {factor} sweep")
    logarithmic = factor in LOG_SCALE_FACTORS
    along = f"log10 of the {FACTOR_NAMES[factor]}" if logarithmic else f"the {FACTOR_NAMES[factor]}"
    rows = []
    if runs[factor].nunique() >= 2:
        x = np.log10(runs[factor].to_numpy(dtype=float)) if logarithmic else runs[factor].to_numpy(dtype=float)
        fits = [(what, unit, stats.linear_fit(x, runs[column])) for column, what, unit in quantities]
        adjusted = stats.adjust_pvalues([fit.p for _, _, fit in fits]) if fits else []
        for (what, unit, fit), p_holm in zip(fits, adjusted):
            level = 1.0 - fit.confidence
            slope = f"least-squares slope {fit.slope:.3g}{' ' + unit if unit else ''} per unit of {along}"
            numbers = f"p = {fit.p:.3g}, Holm p = {p_holm:.3g}"
            if p_holm < level:
                direction = "rises" if fit.slope > 0 else "falls"
                sentence = (
                    f"Trend: the {what} {direction} with {along} ({slope}, {numbers}: significant at the "
                    f"{100 * level:g}% level)."
                )
            else:
                sentence = (
                    f"Trend: no significant linear trend of the {what} with {along} ({slope}, {numbers}: "
                    f"not significant at the {100 * level:g}% level, so no direction is claimed)."
                )
            rows.append(
                {
                    "quantity": what,
                    "x": along.removeprefix("the "),
                    "slope": fit.slope,
                    "slope_ci_low": fit.slope_ci[0],
                    "slope_ci_high": fit.slope_ci[1],
                    "r2": fit.r2,
                    "p": fit.p,
                    "p_holm": p_holm,
                    "n": fit.n,
                    "sentence": sentence,
                }
            )
    return pd.DataFrame(rows, columns=TREND_COLUMNS)


MEANS_COLUMNS = (
    "final_params_after",
    "training_flops_removed",
    "inference_flops_removed",
    "final_acc",
    "mean_epoch_time",
    "reconfigurations",
)


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [column for column in columns if column not in frame]
    if missing:
        raise ValueError(f'{what} lacks the columns {missing}; pass the summary of "prunetrain" runs')


def setting_means(runs: pd.DataFrame, dense_params: int) -> pd.DataFrame:
    """Mean over seeds of every setting (lasso ratio, threshold, interval, lr) of PruneTrain runs: final
    parameters, training / inference FLOPs removed, accuracy, epoch time and reconfigurations, plus
    "params removed" = 1 - final parameters / `dense_params` (the unpruned wide net's count).

    One row per setting, sorted by the `SETTING_COLUMNS`; pass each run once (the default point is in
    every sweep, so drop its duplicates when concatenating the sweeps).
    """
    _require(runs, [*SETTING_COLUMNS, *MEANS_COLUMNS], "the runs")
    if dense_params < 1:
        raise ValueError(f"dense_params must be the dense net's parameter count (>= 1), got {dense_params}")
    means = runs.groupby(list(SETTING_COLUMNS))[list(MEANS_COLUMNS)].mean().reset_index()
    means["params removed"] = 1.0 - means["final_params_after"] / dense_params
    return means


def setting_row(frame: pd.DataFrame, setting: dict[str, float | int]) -> pd.Series:
    """The one row of `frame` whose columns equal `setting` (e.g. `plan.default()`), matched by column
    name, so the order of the dict's keys does not matter; floats compare with a relative tolerance of
    1e-9 (a value that went through CSV may differ in its last bit)."""
    _require(frame, setting, "the frame")
    matches = np.ones(len(frame), dtype=bool)
    for column, value in setting.items():
        matches &= np.isclose(frame[column].to_numpy(dtype=float), float(value), rtol=1e-9, atol=0.0)
    if matches.sum() != 1:
        raise ValueError(
            f"{int(matches.sum())} rows match {setting}; expected exactly one (is the frame "
            f"one row per setting, from `setting_means`, and the setting among its runs?)"
        )
    return frame[matches].iloc[0]


TEST_COLUMNS = [
    "quantity",
    "group",
    "mean",
    "reference_mean",
    "diff",
    "ci_low",
    "ci_high",
    "t",
    "df",
    "p",
    "n_a",
    "n_b",
    "p_holm",
    "verdict",
]


def compare_to_baseline(
    settings: pd.DataFrame,
    sweep_summary: pd.DataFrame,
    factor: str,
    quantities: Sequence[tuple[str, str, str]],
    skip: Sequence[float | int] = (),
) -> tuple[pd.DataFrame, list[str]]:
    """Welch t-tests of every setting of one sweep against the baseline, Holm-adjusted over the sweep's
    tests (one family per figure section), and the trend along the factor.

    `settings` is the sweep with the baseline (`with_baseline`), `sweep_summary` the sweep's runs alone
    (`factor_trends`), `quantities` (column, description, unit). Values in `skip` are not tested: the
    default point is in every sweep, and its test belongs to one place (`default_point_tests`). Returns the
    tests, one row per quantity and setting in plan order (`TEST_COLUMNS`: n_a, n_b, p_holm and the verdict
    from p_holm included), and the sentences: every test's with its Holm p, then every trend's.
    """
    _check_factor(factor)
    _require(settings, ["setting", *(column for column, _, _ in quantities)], "the settings frame")
    skipped = {f"{value:g}" for value in skip}
    tested = [label for label in settings["setting"].cat.categories if label != "baseline" and label not in skipped]
    tests = _setting_tests(settings, tested, FACTOR_NAMES[factor], quantities)
    trends = factor_trends(sweep_summary, factor, quantities)
    return tests[TEST_COLUMNS], [*tests["sentence"], *trends["sentence"]]


def default_point_tests(
    settings: pd.DataFrame, plan: PruneTrainPlan, factor: str, quantities: Sequence[tuple[str, str, str]]
) -> tuple[pd.DataFrame, list[str]]:
    """The default point against the baseline, once (from any sweep's `settings`: the default point's runs
    are the same in each); Holm-adjusted over its quantities. Same columns and sentences as
    `compare_to_baseline`."""
    _check_factor(factor)
    label = f"{plan.default()[factor]:g}"
    tests = _setting_tests(settings, [label], "default point", quantities)
    tests["group"] = "default point"
    return tests[TEST_COLUMNS], list(tests["sentence"])


def _setting_tests(
    settings: pd.DataFrame, labels: Sequence[str], name: str, quantities: Sequence[tuple[str, str, str]]
) -> pd.DataFrame:
    """Welch tests of the `labels` settings against "baseline" per quantity, one Holm family; times only
    between runs of one timing setting that trained alone (`stats.compare_groups`)."""
    setting = settings["setting"].astype(str)
    frame = settings.assign(arm=setting.where(setting == "baseline", f"{name} " + setting))
    tables = []
    for column, what, unit in quantities:
        table = stats.compare_groups(
            frame,
            "arm",
            [(f"{name} {label}", "baseline") for label in labels],
            [(column, what, unit)],
            timing_columns=TIMING_COLUMNS,
        )
        tables.append(table.assign(quantity=what, group=list(labels)))
    tests = stats.with_holm(pd.concat(tables, ignore_index=True))
    return tests.rename(columns={"mean_a": "mean", "mean_b": "reference_mean"})


SETTINGS_CAPTION = "PruneTrain: Verkleinerung je Einstellung (Mittel über die Seeds)"  # table 5.1


def default_point_sentence(plan: PruneTrainPlan, default: pd.Series, dense_params: int) -> str:
    """How far the default point (its `setting_means` row) shrinks the dense net of `dense_params`."""
    return (
        f"The default point (lasso ratio {plan.lasso_ratio:g}, threshold {plan.threshold:g}, "
        f"interval {plan.interval}, lr {plan.lr:g}) ends with {default.final_params_after:,.0f} of "
        f"{dense_params:,} parameters ({default['params removed']:.1%} removed) and saves "
        f"{default.training_flops_removed:.1%} of the training FLOPs."
    )


def smallest_net_sentence(means: pd.DataFrame) -> str:
    """The setting of `setting_means` that ends with the fewest parameters, and its accuracy."""
    smallest = means.loc[means["final_params_after"].idxmin()]
    return (
        f"The smallest final net ({smallest.final_params_after:,.0f} parameters, "
        f"{smallest['params removed']:.1%} removed) comes from lasso ratio {smallest.lasso_ratio:g}, "
        f"threshold {smallest.threshold:g}, interval {smallest.interval:g}, lr {smallest.lr:g}, "
        f"at accuracy {smallest.final_acc:.3f}."
    )


def sweep_tests(
    settings: Mapping[str, pd.DataFrame], sweeps: Mapping[str, SweepResult], plan: PruneTrainPlan, factor: str
) -> tuple[pd.DataFrame, list[str]]:
    """Tables 5.3 to 5.6: `compare_to_baseline` of `factor`'s sweep on the `COMPARED_QUANTITIES`, the
    default point left out (`default_point_tests` tests it once); `settings` from `factor_settings`."""
    return compare_to_baseline(
        settings[factor], sweeps[factor].summary, factor, COMPARED_QUANTITIES, skip=(plan.default()[factor],)
    )


def with_dense_start(
    history: pd.DataFrame, dense_channels: dict[str, int], dense_params: int, run_columns: Sequence[str]
) -> pd.DataFrame:
    """PruneTrain histories with an epoch 0 per run: the unpruned net before training, whose `channels`
    (JSON, as the hook records it) are `dense_channels` and whose `params_after` is `dense_params`, so
    that curves of how the net shrinks (fig. 5.6) start at the dense net.

    `run_columns` tell the runs apart (e.g. the swept factor and "seed"; not "lr", which in a history is
    the epoch's learning rate, the param being "lr_param"); an empty list means one run. The epoch-0 row
    copies the run's first epoch for every other column. Rows come out sorted by run and epoch.
    """
    _require(history, ["epoch", "channels", "params_after", *run_columns], "the history")
    if (history["epoch"] < 1).any():
        raise ValueError("the history already has epochs below 1; pass the hook's records (epochs 1, 2, ...)")
    runs = list(run_columns)
    if history.duplicated([*runs, "epoch"]).any():
        raise ValueError(f"an epoch occurs twice in one run; run_columns {runs} do not tell the runs apart")
    ordered = history.sort_values([*runs, "epoch"], kind="stable", ignore_index=True)
    firsts = ordered.drop_duplicates(runs) if runs else ordered.head(1)
    start = firsts.assign(epoch=0, channels=json.dumps(dense_channels), params_after=dense_params)
    return pd.concat([start, ordered], ignore_index=True).sort_values(
        [*runs, "epoch"], kind="stable", ignore_index=True
    )


def shrinking_curves(history: pd.DataFrame, baseline: SweepResult) -> pd.DataFrame:
    """Figure 5.6's curves: the lasso-ratio sweep's `history` with an epoch 0 per run (`with_dense_start`),
    the unpruned net's widths and parameters taken from the first run of the `baseline` sweep."""
    return with_dense_start(
        history,
        channel_sizes(baseline.runs[0].model()),
        dense_parameter_count(baseline.summary),
        run_columns=["lasso_ratio", "seed"],
    )


def _default_run(curves: pd.DataFrame, plan: PruneTrainPlan) -> pd.DataFrame:
    """The rows of one run: the default lasso ratio, the plan's first seed."""
    return curves[(curves.lasso_ratio == plan.lasso_ratio) & (curves.seed == plan.seeds[0])]


def default_run_widths(curves: pd.DataFrame, plan: PruneTrainPlan) -> pd.DataFrame:
    """`stage_widths` of figure 5.6 (a), (b)'s run (default lasso ratio, first seed) from `shrinking_curves`."""
    one_run = _default_run(curves, plan)
    return stage_widths(one_run[["epoch", "channels"]])


def final_widths_report(curves: pd.DataFrame, plan: PruneTrainPlan) -> str:
    """The widths per stage and kind after the last epoch of figure 5.6's run, as a headed table."""
    widths = default_run_widths(curves, plan)
    final = widths[widths.epoch == widths.epoch.max()].pivot(index="stage", columns="kind", values="channels")
    return (
        f"Default point, seed {plan.seeds[0]}: channels per stage after epoch {int(widths.epoch.max())}:\n"
        f"{final.to_string()}"
    )


def default_point_history(history: pd.DataFrame, plan: PruneTrainPlan) -> pd.DataFrame:
    """The runs of the lasso-ratio sweep's `history` at the default ratio (every seed), for figure 5.7."""
    return history[history.lasso_ratio == plan.lasso_ratio]


def removals_by_epoch(history: pd.DataFrame, factor: str) -> pd.DataFrame:
    """Channels removed per reconfiguration epoch (mean over seeds), one row per value of `factor` in one
    sweep's `history`: when in the run each setting prunes, which explains the interval and threshold
    curves (groups fall below the threshold only once the lr has decayed, see `PruneTrain`)."""
    _check_factor(factor)
    missing = {factor, "epoch", "removed_channels", "seed"} - set(history.columns)
    if missing:
        raise ValueError(f"the history lacks {sorted(missing)}; pass the {factor} sweep's history")
    table = history.pivot_table(index=factor, columns="epoch", values="removed_channels", aggfunc="mean")
    return table.loc[:, table.sum() > 0].rename_axis(index=FACTOR_NAMES[factor], columns="epoch")


def lasso_step_sentence(default_history: pd.DataFrame) -> str:
    """The default point's lasso step per lr phase and the first epoch that removed a channel: a group the
    lasso has driven to zero still moves by about lr x lambda per step, so the threshold catches it only
    once lr x lambda is small (the explanation of the interval and threshold curves)."""
    lambda_ = float(default_history["lasso_lambda"].mean())
    steps = ", ".join(
        f"{lr * lambda_:.2g} from epoch {int(epochs.min())}"
        for lr, epochs in default_history.groupby("lr", sort=False)["epoch"]
    )
    removing = default_history.loc[default_history["removed_channels"] > 0, "epoch"]
    first = f"the first channel left in epoch {int(removing.min())}" if len(removing) else "no channel left"
    return (
        f"Default point: lambda = {lambda_:.3g} (eq. 2.3, mean over the runs), so a zeroed group's norm moves by "
        f"lr x lambda = {steps} per step; {first}."
    )


ZEROING_COLUMNS = (
    "seed",
    "epoch",
    "test_acc",
    "test_acc_after_zeroing",
    "change",
    "zeroed_weights",
    "removed_channels",
)
ZEROING_LIMIT = 0.01  # issue 25's checked property: one accuracy point


def zeroing_changes(history: pd.DataFrame) -> pd.DataFrame:
    """Every thresholding of a PruneTrain history (one or more runs): the test accuracy right before it (the
    epoch's test_acc) and right after it, their difference (change), and what it zeroed and removed."""
    missing = {"test_acc_after_zeroing", "seed"} - set(history.columns)
    if missing:
        raise ValueError(f"the history lacks {sorted(missing)}; pass a PruneTrain sweep's history")
    zeroings = history[history["test_acc_after_zeroing"].notna()]
    table = zeroings.assign(change=zeroings["test_acc_after_zeroing"] - zeroings["test_acc"])
    return table[list(ZEROING_COLUMNS)].reset_index(drop=True)


def zeroing_sentence(changes: pd.DataFrame, limit: float = ZEROING_LIMIT) -> str:
    """How much the thresholding changed the function (`zeroing_changes`), against the `limit` PruneTrain
    following the paper keeps (the lasso has driven the groups to zero before the threshold cuts them)."""
    if changes.empty:
        return "No run reached a thresholding (every run ended before its first interval)."
    largest = changes["change"].abs().max()
    beyond = int((changes["change"].abs() > limit).sum())
    verdict = (
        f"within {100 * limit:g} point at every one: the threshold removed what the lasso had already driven to zero"
        if beyond == 0
        else f"by more than {100 * limit:g} point at {beyond}: there the threshold cut weights the net still used"
    )
    return (
        f"At the {len(changes)} thresholdings of {changes['seed'].nunique()} runs the test accuracy changed by at "
        f"most {100 * largest:.1f} points (mean |change| {100 * changes['change'].abs().mean():.2f}), {verdict}."
    )


FULL_TRAINING_ACCURACY = 0.995  # "reaches 100 %" (the draft's claim) when the mean is at least this


def last_epoch_accuracy_sentences(default_history: pd.DataFrame, baseline_history: pd.DataFrame) -> list[str]:
    """Training and test accuracy in the default point's last epoch, for the baseline and the default point
    (mean over the runs): figure 5.7's numbers, then whether they reproduce the draft's claim that training
    accuracy reaches 100 %. The training accuracy is the running mean over the epoch's augmented batches
    while the weights still change, the test accuracy is measured after the epoch in eval mode, so their
    gap is not an overfitting measure (early epochs show training below test)."""
    final_epoch = default_history.epoch.max()
    sentences, reached = [], []
    for name, history in (("baseline", baseline_history), ("default point", default_history)):
        last = history[history.epoch == final_epoch]
        sentences.append(
            f"{name}: training accuracy {last.train_acc.mean():.3f}, test accuracy "
            f"{last.test_acc.mean():.3f} in the last epoch (mean of {len(last)} runs)"
        )
        reached.append(last.train_acc.mean() >= FULL_TRAINING_ACCURACY)
    if all(reached):
        verdict = "both reach 100 % training accuracy (mean >= 99.5 %), as the draft says"
    elif any(reached):
        verdict = f"only the {'baseline' if reached[0] else 'default point'} reaches 100 % training accuracy"
    else:
        verdict = "neither reaches 100 % training accuracy (mean >= 99.5 %): the draft's claim is not reproduced"
    sentences.append(
        f"The draft's claim: {verdict}. The training accuracy is a running mean during the epoch, the test "
        "accuracy is measured after it, so their gap is not read as overfitting."
    )
    return sentences


def reconfiguration_epochs(history: pd.DataFrame) -> list[int]:
    """The epochs after which any run of a PruneTrain history (column "reconfigured") reconfigured its net;
    a curve marks them between that epoch and the next."""
    if "reconfigured" not in history:
        return []
    reconfigured = history["reconfigured"].fillna(False).astype(bool)
    return sorted(int(epoch) for epoch in history.loc[reconfigured, "epoch"].unique())


PAPER_SAVINGS = {"training_flops_removed": 0.53, "inference_flops_removed": 0.66}  # PruneTrain, ResNet-32 CIFAR-10


def paper_comparison(default: pd.Series) -> str:
    """The default point's savings (a `setting_means` row) against the PruneTrain paper's 53 % fewer
    training FLOPs and 66 % fewer inference FLOPs (ResNet-32 on CIFAR-10, 91.8 % accuracy)."""
    return (
        f"The default point removes {default['training_flops_removed']:.1%} of the training FLOPs and "
        f"{default['inference_flops_removed']:.1%} of the inference FLOPs (the paper: "
        f"{PAPER_SAVINGS['training_flops_removed']:.0%} and {PAPER_SAVINGS['inference_flops_removed']:.0%} on "
        "ResNet-32 / CIFAR-10 over 182 epochs); a small profile's few steps prune less, so only `full` can "
        "test the paper's numbers."
    )


FACTOR_FONTSIZE = 9  # the factor under a sweep's boxplots
LEGEND_FONTSIZE = 6.5
NOTE_FONTSIZE = 7  # figure 5.6's note under its panels
MARKER_SIZE = 2.5
WIDTH_HEADROOM = 1.12  # figure 5.6 (a), (b): the y axis ends this much above the widest stage

FIGURE_TEXT = {
    "epoch_time": {"de": "Epochenzeit", "en": "epoch time"},
    "accuracy": {"de": "Genauigkeit", "en": "accuracy"},
    "without_baseline": {"de": "ohne Baseline", "en": "without the baseline"},
    "total_time": {"de": "Summe über alle Epochen", "en": "sum over all epochs"},
    "baseline": {"de": "Baseline", "en": "baseline"},
    "stream": {"de": "Residualstrom", "en": "residual stream"},
    "internal": {"de": "blockintern, summiert", "en": "within the blocks, summed"},
    "per_ratio": {"de": "je Lasso-Verhältnis", "en": "per lasso ratio"},
    "reconfiguration": {"de": "Rekonfiguration", "en": "reconfiguration"},
    "one_run": {"de": "1 Lauf", "en": "1 run"},
}


def _text(key: str) -> str:
    return plots.translate(FIGURE_TEXT, key)


def _title(letter: str, key: str) -> str:
    return f"({letter}) {_text(key)}"


FACTOR_LABELS = {
    "lasso_ratio": {"de": "Lasso-Verhältnis", "en": "lasso ratio"},
    "interval": {"de": "Rekonfigurationsintervall (Epochen)", "en": "reconfiguration interval (epochs)"},
    "threshold": {"de": "Schwellwert auf |w|", "en": "threshold on |w|"},
    "lr": {"de": "Lernrate", "en": "learning rate"},
}


def factor_label(factor: str) -> str:
    """The axis label of a swept factor in the figures' current language (`plots.language`)."""
    _check_factor(factor)
    return FACTOR_LABELS[factor][plots.language()]


def _sweep_boxplots(
    settings: pd.DataFrame,
    factor: str,
    panels: Sequence[tuple[str, str, bool]],
    plan: PruneTrainPlan,
    stamp: tuple[str, str],
    size: str = "full",
) -> Figure:
    """One boxplot per panel (column, title, with the baseline box or not) of one factor's `settings`
    (`with_baseline`), settings in plan order, the factor under the panels."""
    fig, axes = plots.figure(size, ncols=len(panels))
    axes = [axes] if len(panels) == 1 else axes
    order = list(settings["setting"].cat.categories)
    for ax, (column, title, show_baseline) in zip(axes, panels):
        shown = order if show_baseline else order[1:]
        plots.boxplot(ax, settings[settings.setting.isin(shown)], x="setting", y=column, order=shown)
        ax.set(title=title, xlabel="", ylabel=plots.label(column))
        ax.set_xticks(
            ax.get_xticks(), [t.get_text().replace("baseline", _text("baseline")) for t in ax.get_xticklabels()]
        )
    fig.supxlabel(factor_label(factor), fontsize=FACTOR_FONTSIZE)
    plots.stamp(fig, stamp[0], stamp[1], len(plan.seeds))
    return fig


def lasso_ratio_figure(settings: pd.DataFrame, plan: PruneTrainPlan, stamp: tuple[str, str]) -> Figure:
    """Figure 5.1: (a) mean epoch time, (b) final accuracy per lasso ratio and of the baseline; `settings`
    of the lasso-ratio sweep (`factor_settings`), `stamp` = (profile, dataset)."""
    return _sweep_boxplots(
        settings,
        "lasso_ratio",
        [("mean_epoch_time", _title("a", "epoch_time"), True), ("final_acc", _title("b", "accuracy"), True)],
        plan,
        stamp,
    )


def interval_figure(settings: pd.DataFrame, plan: PruneTrainPlan, stamp: tuple[str, str]) -> Figure:
    """Figure 5.2: per reconfiguration interval (a) mean epoch time, (b) the same without the baseline,
    (c) final accuracy."""
    return _sweep_boxplots(
        settings,
        "interval",
        [
            ("mean_epoch_time", _title("a", "epoch_time"), True),
            ("mean_epoch_time", _title("b", "without_baseline"), False),
            ("final_acc", _title("c", "accuracy"), True),
        ],
        plan,
        stamp,
    )


def threshold_time_figure(settings: pd.DataFrame, plan: PruneTrainPlan, stamp: tuple[str, str]) -> Figure:
    """Figure 5.3: per threshold (a) mean epoch time, (b) training time summed over the epochs (the
    pruning hook's time included)."""
    return _sweep_boxplots(
        settings,
        "threshold",
        [("mean_epoch_time", _title("a", "epoch_time"), True), ("total_time", _title("b", "total_time"), True)],
        plan,
        stamp,
    )


def threshold_accuracy_figure(settings: pd.DataFrame, plan: PruneTrainPlan, stamp: tuple[str, str]) -> Figure:
    """Figure 5.4: final accuracy per threshold (half width)."""
    return _sweep_boxplots(settings, "threshold", [("final_acc", "", True)], plan, stamp, size="half")


def learning_rate_figure(settings: pd.DataFrame, plan: PruneTrainPlan, stamp: tuple[str, str]) -> Figure:
    """Figure 5.5 (the draft's learning-rate section has no figure of its own): (a) mean epoch time,
    (b) final accuracy per learning rate."""
    return _sweep_boxplots(
        settings,
        "lr",
        [("mean_epoch_time", _title("a", "epoch_time"), True), ("final_acc", _title("b", "accuracy"), True)],
        plan,
        stamp,
    )


def shrinking_figure(curves: pd.DataFrame, plan: PruneTrainPlan, stamp: tuple[str, str]) -> Figure:
    """Figure 5.6: (a), (b) widths per stage after every epoch of one run (default point, first seed;
    epoch 0 the unpruned net): the residual stream and the blocks' internal widths summed, reconfigurations
    marked; (c) parameters after each epoch's reconfiguration per lasso ratio (mean, min-max band over the
    seeds). `curves` from `shrinking_curves`."""
    n = len(plan.seeds)
    widths = default_run_widths(curves, plan)
    fig, axes = plots.figure("full", ncols=3)
    for ax, kind, title in zip(axes[:2], ["stream", "internal"], [_title("a", "stream"), _title("b", "internal")]):
        for stage, rows in widths[widths.kind == kind].groupby("stage"):
            name = stage if stage == "stem" else f"{plots.label('stage')} {stage.split()[-1]}"
            ax.plot(rows["epoch"], rows["channels"], marker="o", markersize=MARKER_SIZE, label=name)
        ax.set(title=title, xlabel=plots.label("epoch"), ylabel=plots.label("channels"))
        ax.set_ylim(0, WIDTH_HEADROOM * widths["channels"].max())
    axes[1].legend(loc="upper right", fontsize=LEGEND_FONTSIZE)
    trained = _default_run(curves[curves.epoch >= 1], plan)  # the run's own epochs, without the dense epoch 0
    for ax in axes[:2]:  # widths are recorded after each epoch's reconfiguration: the change lands on that epoch
        plots.mark_epochs(ax, [epoch - 1 for epoch in reconfiguration_epochs(trained)], color="0.7")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    plots.line_with_band(axes[2], curves, x="epoch", y="params_after", hue="lasso_ratio")
    axes[2].set(title=_title("c", "per_ratio"), xlabel=plots.label("epoch"), ylabel=plots.label("params"))
    axes[2].set_ylim(bottom=0)
    axes[2].legend(
        title=factor_label("lasso_ratio"), fontsize=LEGEND_FONTSIZE, title_fontsize=LEGEND_FONTSIZE, loc="lower left"
    )
    fig.supxlabel(
        f"(a), (b): ··· {_text('reconfiguration')}; (c): {plots.label('mean_band', n=n)}", fontsize=NOTE_FONTSIZE
    )
    plots.stamp(fig, stamp[0], stamp[1], f"{_text('one_run')} (a, b), {n} (c)")
    return fig


def training_accuracy_figure(pruned: pd.DataFrame, baseline: pd.DataFrame, stamp: tuple[str, str]) -> Figure:
    """Figure 5.7: training and test accuracy per epoch of the default point's runs (`default_point_history`)
    and of the baseline (mean over the seeds, min-max band): the draft's claim that training accuracy reaches 100 % (overfitting) is read off
    the gap between the two curves of each group."""
    language = plots.language()
    names = {
        "de": ("Baseline", "PruneTrain (Standardpunkt)", "Training", "Test"),
        "en": ("baseline", "PruneTrain (default point)", "training", "test"),
    }[language]
    frames = []
    for group, history in ((names[0], baseline), (names[1], pruned)):
        for split, column in ((names[2], "train_acc"), (names[3], "test_acc")):
            frames.append(
                pd.DataFrame({"epoch": history["epoch"], "accuracy": history[column], "curve": f"{group}, {split}"})
            )
    fig, ax = plots.figure("full")
    curves = [frame["curve"].iloc[0] for frame in frames]
    plots.line_with_band(ax, pd.concat(frames, ignore_index=True), "epoch", "accuracy", "curve")
    handles = []
    for line, style in zip(ax.get_lines(), ("-", "--", "-", "--")):  # training solid, test dashed
        line.set_linestyle(style)
        handles.append(Line2D([], [], color=line.get_color(), linestyle=style))
    ax.set(xlabel=plots.label("epoch"), ylabel={"de": "Genauigkeit", "en": "accuracy"}[language])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    n = int(min(baseline["seed"].nunique(), pruned["seed"].nunique()))
    ax.legend(handles, curves, title=f"{plots.label('mean_band', n=n)}", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    plots.stamp(fig, stamp[0], stamp[1], n)
    return fig
