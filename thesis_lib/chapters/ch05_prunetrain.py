"""Chapter 5 (notebook 05_prunetrain): PruneTrain on the wide thesis ResNet.

The experiment "prunetrain" (the wide net with the profile's training and a `PruneTrain` hook), its
one-factor-at-a-time sweeps per profile (`PruneTrainPlan`, `prunetrain_plan`) and their analysis
(`setting_means`, `setting_row`, `with_baseline`, `factor_trends`, `compare_to_baseline`,
`with_dense_start`, `stage_channels`); `planned_runs` lists the notebook's runs. The algorithm itself is
`thesis_lib.methods.prunetrain`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .. import plots, stats
from ..experiments import (PlannedRun, Profile, RunContext, RunOutput, RunPlan, experiment, get_profile, plan_default,
                           planned_sweep, seed_param, single_phase, summarize_training)
from ..methods.prunetrain import PruneTrain, training_flops_summary
from ..training import seeded_model

PRUNE_PARAMS = ("lasso_ratio", "threshold", "interval")
SETTING_COLUMNS = ("lasso_ratio", "threshold", "interval", "lr")
FACTORS = ("lasso_ratio", "interval", "threshold", "lr")
FACTOR_LABELS = {"lasso_ratio": {"de": "Lasso-Verhältnis", "en": "lasso ratio"},
                 "interval": {"de": "Rekonfigurationsintervall (Epochen)", "en": "reconfiguration interval (epochs)"},
                 "threshold": {"de": "Schwellwert auf |w|", "en": "threshold on |w|"},
                 "lr": {"de": "Lernrate", "en": "learning rate"}}
FACTOR_NAMES = {"lasso_ratio": "lasso ratio", "interval": "reconfiguration interval", "threshold": "threshold",
                "lr": "learning rate"}
LOG_SCALE_FACTORS = ("threshold", "lr")


def factor_label(factor: str) -> str:
    """The axis label of a swept factor in the figures' current language (`plots.language`)."""
    _check_factor(factor)
    return FACTOR_LABELS[factor][plots.language()]


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
    decade either side of 1e-4 and half / double the baseline's lr 0.1 are this plan's choice). Fewer SGD
    steps need a stronger lasso: lambda of eq. 2.3 fixes only the lasso's share at step 0, and how far the
    slices shrink grows with lambda x lr x steps.
    On `quick` (digits, 10 epochs, 230 steps; He-normal init) the thesis's ratios up to 0.25 prune nothing.
    Seed 0 of the wide net kept, of its parameters: ratio 0.8 with threshold 3e-2 98 %, 5e-2 51 % (accuracy
    0.978), 1e-1 80 % (0.802); ratio 0.9 with 3e-2 95 %, 5e-2 51 % (0.939), 1e-1 1 % (chance); 0.95 collapsed
    the net at every threshold. (With PyTorch's default init, which the project used before, 0.8 / 3e-2
    already removed about 25 %.) So `quick` sweeps ratios 0.7 / 0.8 / 0.9, thresholds 3e-2 / 5e-2 / 1e-1
    around 5e-2 and intervals 1 / 2 / 5 of its 10 epochs around 2, with five seeds per point (as the
    baseline): 45 runs of about 5 s. `smoke` (8 steps) only checks that the notebook runs;
    its nets do not shrink.
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

    def training(self) -> dict[str, int]:
        """The training params every run of the chapter shares: the fixed batch size where the plan sets one
        (256 on `full`, as the draft's chapter 5), none otherwise (the profile's batch)."""
        return {} if self.batch_size is None else {"batch_size": self.batch_size}

    def baseline_grid(self, seeds: Sequence[int]) -> list[dict[str, Any]]:
        """Params of the "baseline" runs chapter 5 compares against: the wide net with the step schedule at
        the same batch size as the PruneTrain runs, once per seed of `seeds` (cached as their own runs)."""
        return [{"model": "wide", "schedule": "step", **self.training(), "seed": seed} for seed in seeds]

    def default(self) -> dict[str, float | int]:
        """The default point's params (without seed), keyed by the `SETTING_COLUMNS`."""
        return {"lasso_ratio": self.lasso_ratio, "threshold": self.threshold, "interval": self.interval,
                "lr": self.lr}

    def values(self, factor: str) -> tuple[float | int, ...]:
        """The values the sweep of `factor` takes."""
        _check_factor(factor)
        return {"lasso_ratio": self.lasso_ratios, "interval": self.intervals, "threshold": self.thresholds,
                "lr": self.lrs}[factor]

    def grid(self, factor: str) -> list[dict[str, float | int]]:
        """Params of the "prunetrain" runs that vary `factor` (the others at the default), once per seed.

        The default point has identical params in every factor's grid, so the run cache trains it once.
        """
        return [{**self.default(), factor: value, **self.training(), "seed": seed}
                for value in self.values(factor) for seed in self.seeds]


PRUNETRAIN_PLANS: dict[str, PruneTrainPlan] = {
    "smoke": PruneTrainPlan(lasso_ratio=0.8, threshold=3e-2, interval=1, lr=0.05, lasso_ratios=(0.8, 0.9),
                            intervals=(1, 2), thresholds=(3e-2, 5e-2), lrs=(0.05, 0.1), seeds=(0, 1)),
    "quick": PruneTrainPlan(lasso_ratio=0.8, threshold=5e-2, interval=2, lr=0.05,
                            lasso_ratios=(0.7, 0.8, 0.9), intervals=(1, 2, 5),
                            thresholds=(3e-2, 5e-2, 1e-1), lrs=(0.025, 0.05, 0.1), seeds=(0, 1, 2, 3, 4)),
    "full": PruneTrainPlan(lasso_ratio=0.2, threshold=1e-4, interval=10, lr=0.1,
                           lasso_ratios=(0.05, 0.1, 0.15, 0.2, 0.25), intervals=(2, 5, 10),
                           thresholds=(1e-5, 1e-4, 1e-3), lrs=(0.05, 0.1, 0.2), seeds=(0, 1, 2, 3, 4),
                           batch_size=256),
}


def prunetrain_plan(profile: str | Profile) -> PruneTrainPlan:
    """Chapter 5's sweeps for `profile` (see `PruneTrainPlan`)."""
    name = get_profile(profile).name
    if name not in PRUNETRAIN_PLANS:
        raise ValueError(f"no PruneTrain plan for profile {name!r}; plans exist for {sorted(PRUNETRAIN_PLANS)}")
    return PRUNETRAIN_PLANS[name]


_GROUP_NAME = re.compile(r"^(?:stem|stage(?P<stage>\d+)\.(?:block\d+\.)?(?P<kind>stream|layer\d+))$")


def stage_channels(history: pd.DataFrame) -> pd.DataFrame:
    """Channels per stage after every epoch, from a PruneTrain history's `channels` column.

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


def with_baseline(runs: pd.DataFrame, baseline: pd.DataFrame, factor: str,
                  values: Sequence[float | int]) -> pd.DataFrame:
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
        raise ValueError(f"runs with {factor} = {unplanned} are not among the values {labels}; pass the "
                         f"values the sweep was run with")
    frame = pd.concat([baseline.assign(setting="baseline"), runs.assign(setting=settings)], ignore_index=True)
    frame["setting"] = pd.Categorical(frame["setting"], categories=["baseline", *labels], ordered=True)
    return frame


TREND_COLUMNS = ["quantity", "x", "slope", "slope_ci_low", "slope_ci_high", "r2", "p", "n", "sentence"]


def factor_trends(runs: pd.DataFrame, factor: str, quantities: Iterable[tuple[str, str, str]]) -> pd.DataFrame:
    """Least-squares line of each quantity against `factor` over one sweep's runs and the t-test of its
    slope (`stats.linear_fit`): does the quantity rise or fall with the factor?

    `quantities` are (column, description, unit). Threshold and learning rate vary by factors of ten, so
    they are fitted against log10 of the value (column x names the abscissa). One row per quantity with
    the fit and a sentence; a sweep with only one value of the factor has no trend, and the table no rows.
    """
    _check_factor(factor)
    if factor not in runs:
        raise ValueError(f"the runs have no column {factor!r}; pass the summary of the {factor} sweep")
    logarithmic = factor in LOG_SCALE_FACTORS
    along = f"log10 of the {FACTOR_NAMES[factor]}" if logarithmic else f"the {FACTOR_NAMES[factor]}"
    rows = []
    if runs[factor].nunique() >= 2:
        x = np.log10(runs[factor].to_numpy(dtype=float)) if logarithmic else runs[factor].to_numpy(dtype=float)
        for column, what, unit in quantities:
            fit = stats.linear_fit(x, runs[column])
            direction = "rises" if fit.slope > 0 else "falls" if fit.slope < 0 else "stays flat"
            level = 1.0 - fit.confidence
            verdict = "significant" if fit.p < level else "not significant"
            sentence = (f"Trend: the {what} {direction} with {along} (least-squares slope {fit.slope:.3g}"
                        f"{' ' + unit if unit else ''} per unit of {along}, p = {fit.p:.3g}: {verdict} at the "
                        f"{100 * level:g}% level).")
            rows.append({"quantity": what, "x": along.removeprefix("the "), "slope": fit.slope,
                         "slope_ci_low": fit.slope_ci[0], "slope_ci_high": fit.slope_ci[1], "r2": fit.r2,
                         "p": fit.p, "n": fit.n, "sentence": sentence})
    return pd.DataFrame(rows, columns=TREND_COLUMNS)


MEANS_COLUMNS = ("final_params_after", "training_flops_removed", "inference_flops_removed", "final_acc",
                 "mean_epoch_time", "reconfigurations")


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [column for column in columns if column not in frame]
    if missing:
        raise ValueError(f"{what} lacks the columns {missing}; pass the summary of \"prunetrain\" runs")


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
        raise ValueError(f"{int(matches.sum())} rows match {setting}; expected exactly one (is the frame "
                         f"one row per setting, from `setting_means`, and the setting among its runs?)")
    return frame[matches].iloc[0]


TEST_COLUMNS = ["quantity", "group", "mean", "reference_mean", "diff", "ci_low", "ci_high", "t", "df", "p", "n_a",
                "n_b", "p_holm", "verdict"]


def compare_to_baseline(settings: pd.DataFrame, sweep_summary: pd.DataFrame, factor: str,
                        quantities: Sequence[tuple[str, str, str]], skip: Sequence[float | int] = ()
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


def default_point_tests(settings: pd.DataFrame, plan: PruneTrainPlan, factor: str,
                        quantities: Sequence[tuple[str, str, str]]) -> tuple[pd.DataFrame, list[str]]:
    """The default point against the baseline, once (from any sweep's `settings`: the default point's runs
    are the same in each); Holm-adjusted over its quantities. Same columns and sentences as
    `compare_to_baseline`."""
    _check_factor(factor)
    label = f"{plan.default()[factor]:g}"
    tests = _setting_tests(settings, [label], "default point", quantities)
    tests["group"] = "default point"
    return tests[TEST_COLUMNS], list(tests["sentence"])


def _setting_tests(settings: pd.DataFrame, labels: Sequence[str], name: str,
                   quantities: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """Welch tests of the `labels` settings against "baseline" per quantity, one Holm family."""
    frame = settings.assign(setting=settings["setting"].astype(str))
    tables = []
    for column, what, unit in quantities:
        table = stats.welch_table([(f"{what}, {name} {label} vs baseline", frame.loc[frame.setting == label, column],
                                    frame.loc[frame.setting == "baseline", column]) for label in labels], unit=unit)
        tables.append(table.assign(quantity=what, group=list(labels)))
    tests = stats.with_holm(pd.concat(tables, ignore_index=True))
    return tests.rename(columns={"mean_a": "mean", "mean_b": "reference_mean"})



def with_dense_start(history: pd.DataFrame, dense_channels: dict[str, int], dense_params: int,
                     run_columns: Sequence[str]) -> pd.DataFrame:
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
    return pd.concat([start, ordered], ignore_index=True).sort_values([*runs, "epoch"], kind="stable",
                                                                       ignore_index=True)


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
    return single_phase(profile, "wide", profile.train_config(**train), bound=SHRINKS,
                        changes_shapes=PruneTrain.changes_shapes)


# version 2: He-normal init, no reconfiguration after the last epoch; 3: the fused group lasso (float rounding)
@experiment("prunetrain", version=3, params=PruneTrainParams, train_config=True,
            plan=_prunetrain_plan)
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
    dense_flops = int(history["flops"].iloc[0])  # the first epoch always trains the unpruned net
    summary = {
        **summarize_training(history),
        **training_flops_summary(history, n_train=len(context.dataset().train_y), dense_flops=dense_flops),
        "reconfigurations": int(history["reconfigured"].sum()),
        "dense_params": int(history["params"].iloc[0]),
        "final_params_after": int(history["params_after"].iloc[-1]),
        "final_channels": str(history["channels"].iloc[-1]),
    }
    return RunOutput(history=history, summary=summary, model=trainer.model)


def planned_runs(profile: str | Profile) -> list[PlannedRun]:
    """Every run notebook 05 trains on `profile`: the baseline at the PruneTrain runs' batch, then each
    factor's sweep (the default point is in every sweep: one run, listed once per sweep)."""
    profile = get_profile(profile)
    plan = prunetrain_plan(profile)
    runs = planned_sweep("baseline", plan.baseline_grid(profile.seeds), profile)
    for factor in FACTORS:
        runs += planned_sweep("prunetrain", plan.grid(factor), profile)
    return runs


PAPER_SAVINGS = {"training_flops_removed": 0.53, "inference_flops_removed": 0.66}  # PruneTrain, ResNet-32 CIFAR-10


def paper_comparison(default: pd.Series) -> str:
    """The default point's savings (a `setting_means` row) against the PruneTrain paper's 53 % fewer
    training FLOPs and 66 % fewer inference FLOPs (ResNet-32 on CIFAR-10, 91.8 % accuracy)."""
    return (f"The default point removes {default['training_flops_removed']:.1%} of the training FLOPs and "
            f"{default['inference_flops_removed']:.1%} of the inference FLOPs (the paper: "
            f"{PAPER_SAVINGS['training_flops_removed']:.0%} and {PAPER_SAVINGS['inference_flops_removed']:.0%} on "
            "ResNet-32 / CIFAR-10 over 182 epochs); a small profile's few steps prune less, so only `full` can "
            "test the paper's numbers.")


def training_accuracy_figure(pruned: pd.DataFrame, baseline: pd.DataFrame, stamp: tuple[str, str]) -> Figure:
    """Training and test accuracy per epoch of the default point's runs and of the baseline (mean over the
    seeds, min-max band): the draft's claim that training accuracy reaches 100 % (overfitting) is read off
    the gap between the two curves of each group."""
    language = plots.language()
    names = {"de": ("Baseline", "PruneTrain (Standardpunkt)", "Training", "Test"),
             "en": ("baseline", "PruneTrain (default point)", "training", "test")}[language]
    frames = []
    for group, history in ((names[0], baseline), (names[1], pruned)):
        for split, column in ((names[2], "train_acc"), (names[3], "test_acc")):
            frames.append(pd.DataFrame({"epoch": history["epoch"], "accuracy": history[column],
                                        "curve": f"{group}, {split}"}))
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
    ax.legend(handles, curves, title=f"{plots.label('mean_band', n=n)}",
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    plots.stamp(fig, stamp[0], stamp[1], n)
    return fig


def reconfiguration_epochs(history: pd.DataFrame) -> list[int]:
    """The epochs after which any run of a PruneTrain history (column "reconfigured") reconfigured its net;
    a curve marks them between that epoch and the next."""
    if "reconfigured" not in history:
        return []
    reconfigured = history["reconfigured"].fillna(False).astype(bool)
    return sorted(int(epoch) for epoch in history.loc[reconfigured, "epoch"].unique())
