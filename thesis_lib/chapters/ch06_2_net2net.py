"""Chapter 6.2 (notebook 06_2_net2net): grow the narrow baseline with Net2Net inside one cached run.

The growths per profile (`Net2NetPlan`, `net2net_plan`), the notebook's sweeps (`sweeps`: both baselines
from scratch, then every growth in every arm), the experiment "net2net_grow" (a `Net2NetHook` growth
schedule inside one resumable `Trainer` run), the analysis (`labelled_runs`, `architecture_table`,
`reach_table`, `final_accuracy_tests`, `init_verdicts`) and figures 6.9 to 6.11. The operators themselves
are `thesis_lib.methods.net2net`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.colors import same_color
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import plots, stats
from ..experiments import (
    Phase,
    Profile,
    RunContext,
    RunOutput,
    RunPlan,
    SweepResult,
    experiment,
    get_profile,
    param,
    plan_default,
    seed_param,
    summarize_training,
)
from ..methods.net2net import INITS, DeepenStep, Net2NetHook, WidenStep, check_init
from ..models import ResNet, ResNetSpec, count_flops, count_parameters
from ..training import seeded_model
from .ch03_baseline import baseline_grid
from .contract import Sweeps, plan_for

__all__ = [
    "ARMS",
    "ARM_LABELS",
    "ARM_LEGEND",
    "ARM_ORDER",
    "BASELINE_OPERATION",
    "DEFAULT_NOISE",
    "FIGURE_TEXT",
    "FINAL_FIGURE_MARGIN",
    "FINAL_FIGURE_ROW_HEIGHT",
    "FINAL_FIGURE_WIDTH",
    "GrowParams",
    "INIT_ARMS",
    "NET2NET_PLANS",
    "Net2NetPlan",
    "OPERATIONS",
    "OPERATION_LABELS",
    "SCRATCH_ARMS",
    "TICK_FONTSIZE",
    "accuracy_epochs_figure",
    "accuracy_time_figure",
    "architecture_table",
    "arm_label",
    "cumulative_time",
    "default_grow_epoch",
    "final_accuracy_comparisons",
    "final_accuracy_figure",
    "final_accuracy_table",
    "final_accuracy_tests",
    "group_label",
    "grow_grid",
    "growth_sentence",
    "growth_steps",
    "init_verdicts",
    "label_runs",
    "labelled_runs",
    "net2net_grow_experiment",
    "net2net_plan",
    "panel_frame",
    "reach_sentences",
    "reach_table",
    "reach_targets",
    "same_run_groups",
    "scratch_baseline_grid",
    "sweeps",
    "time_to_accuracy",
]


OPERATIONS = ("widen_one", "widen_all", "deepen", "deepen_layer", "widen_deepen")
# The arms of every growth: Net2Net's function-preserving init, random init of the new units, and the grown
# architecture trained from scratch for the whole run (the Net2Net paper's two baselines).
ARMS = (*INITS, "scratch")
DEFAULT_NOISE = 0.05
SCRATCH_ARMS = {"wide": "wide from scratch", "narrow": "narrow from scratch"}
INIT_ARMS = {"net2net": "Net2Net init", "random": "random init", "scratch": "grown net from scratch"}
ARM_ORDER = (*SCRATCH_ARMS.values(), *INIT_ARMS.values())
BASELINE_OPERATION = "-"


@dataclass(frozen=True)
class Net2NetPlan:
    """Chapter 6.2's comparison on one profile: the growths that run (each in every arm of `ARMS`, every
    seed of the profile) and the `tolerance` below a baseline's mean final accuracy that counts as reaching
    it."""

    operations: tuple[str, ...]
    tolerance: float = 0.01

    def __post_init__(self) -> None:
        unknown = [operation for operation in self.operations if operation not in OPERATIONS]
        if unknown or not self.operations:
            raise ValueError(f"operations must be a non-empty subset of {OPERATIONS}, got {self.operations}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance is an accuracy difference in [0, 1), got {self.tolerance}")

    def grid(self, profile: Any) -> list[dict[str, Any]]:
        """Params of the "net2net_grow" runs (see `grow_grid`)."""
        return grow_grid(profile, operations=self.operations)

    def groups(self) -> list[str]:
        """Every compared group in display order: both baselines, then (operation, init) as in `label_runs`."""
        return list(SCRATCH_ARMS.values()) + [f"{operation}, {init}" for operation in self.operations for init in ARMS]


NET2NET_PLANS: dict[str, Net2NetPlan] = {
    "smoke": Net2NetPlan(operations=("widen_all", "deepen_layer")),
    "quick": Net2NetPlan(operations=OPERATIONS),
    "full": Net2NetPlan(operations=OPERATIONS),
}


def net2net_plan(profile: Any) -> Net2NetPlan:
    """Chapter 6.2's growths for `profile` (a name or Profile); smoke keeps two operations to stay fast."""
    return plan_for(NET2NET_PLANS, profile, "6.2")


def _noise_applies(operation: str, init: str) -> bool:
    return init == "net2net" and operation.startswith("widen")


def grow_grid(
    profile: Any,
    operations: Sequence[str] = OPERATIONS,
    inits: Sequence[str] = ARMS,
    noise: float = DEFAULT_NOISE,
    grow_epoch: int | None = None,
) -> list[dict[str, Any]]:
    """Params of `net2net_grow` for every (operation, arm) and every seed of `profile`.

    Params that equal the experiment's defaults are left out, so that equal growths always share one
    cached run: `noise` is passed only where it applies (init="net2net" with a widening operation) and
    differs from DEFAULT_NOISE, `grow_epoch` only when given.
    """
    seeds = get_profile(profile).seeds
    grid = []
    for operation in operations:
        for init in inits:
            params: dict[str, Any] = {"operation": operation, "init": init}
            if _noise_applies(operation, init) and noise != DEFAULT_NOISE:
                params["noise"] = noise
            if grow_epoch is not None:
                params["grow_epoch"] = grow_epoch
            grid.extend({**params, "seed": seed} for seed in seeds)
    return grid


def scratch_baseline_grid(profile: str | Profile) -> list[dict[str, Any]]:
    """Params of the wide and narrow "baseline" runs with the step schedule, the nets from scratch every
    growth is compared with (chapter 3's runs, through the cache)."""
    return baseline_grid(profile, models=tuple(SCRATCH_ARMS), schedules=("step",))


def sweeps(profile: str | Profile) -> Sweeps:
    """Notebook 06_2's sweeps: both baselines from scratch (chapter 3's runs), then every growth of the plan
    in every arm."""
    return {
        "baseline": ("baseline", scratch_baseline_grid(profile)),
        "grow": ("net2net_grow", net2net_plan(profile).grid(profile)),
    }


def default_grow_epoch(epochs: int) -> int:
    """The epoch after which `net2net_grow` grows by default: a third of the run, at least epoch 1.

    On `full` (after epoch 60 of 180, first lr decay after epoch 93) and `quick` (after 3 of 10, decay
    after 5) the grown net trains some epochs at the full rate before the first decay. On `smoke` (after
    1 of 2, decay after 1) the growth coincides with the decay, so the new units only see the decayed rate.
    """
    if epochs < 2:
        raise ValueError(f"growing needs at least 2 epochs (one before, one after), got {epochs}")
    return max(1, epochs // 3)


def growth_steps(
    operation: str, init: str, wide_widths: Sequence[int], noise: float = 0.0, stage: int | None = None
) -> list[WidenStep | DeepenStep]:
    """The steps of one chapter 6.2 growth (applied together after the grow epoch).

    operation: "widen_one" widens `stage` (default: the last, which holds most parameters) to its width
    in `wide_widths`; "widen_all" widens every stage to `wide_widths` (the narrow net becomes the wide
    baseline's architecture); "deepen" appends one residual block to the end of one stage (the draft's
    6.2.2 deepens "one of the stages": the last, the same one "widen_one" widens) whose last BN starts at
    gamma = beta = 0 (init="net2net") or as freshly initialised (init="random"); "deepen_layer" inserts
    the identity conv + BN layer of eq. 2.5 into that stage's first block, after its first layer (exact in
    eval mode there, see `net2net.deepen`); "widen_deepen" widens all stages, then appends the block.
    `noise` applies to the widening of init="net2net" (see `widen_groups`).
    """
    check_init(init)
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; use one of {OPERATIONS}")
    if stage is not None and operation != "widen_one":
        raise ValueError(f"stage picks the stage of operation 'widen_one'; {operation!r} takes no stage")
    if noise and not _noise_applies(operation, init):
        raise ValueError(
            "noise breaks the symmetry of widened channels; it applies to init='net2net' with a "
            f"widening operation only, not to {operation!r} with init={init!r}"
        )
    stages = len(wide_widths)
    last = stages - 1
    steps: list[WidenStep | DeepenStep] = []
    if operation == "widen_one":
        chosen = last if stage is None else int(stage)
        if not 0 <= chosen < stages:
            raise ValueError(f"unknown stage {stage}; the model has stages 0..{stages - 1}")
        steps.append(WidenStep(stages=chosen, widths=(int(wide_widths[chosen]),), noise=noise, init=init))
    if operation in ("widen_all", "widen_deepen"):
        steps.append(
            WidenStep(stages=tuple(range(stages)), widths=tuple(int(w) for w in wide_widths), noise=noise, init=init)
        )
    if operation in ("deepen", "widen_deepen"):
        steps.append(DeepenStep(stage=last, init=init))
    if operation == "deepen_layer":
        steps.append(DeepenStep(stage=last, init=init, kind="layer", block=0, position=1))
    return steps


@dataclass(frozen=True)
class GrowParams:
    """operation (required, see `growth_steps`); init: Net2Net's, random new units, or the grown
    architecture from scratch; grow_epoch: default `default_grow_epoch` of the profile's epochs; noise:
    DEFAULT_NOISE for Net2Net widening, else 0; stage: the stage of "widen_one"."""

    operation: Literal["widen_one", "widen_all", "deepen", "deepen_layer", "widen_deepen"]
    init: Literal["net2net", "random", "scratch"] = "net2net"
    seed: int = seed_param()
    grow_epoch: int = plan_default(lambda profile, _: default_grow_epoch(profile.epochs), at_least=1)
    noise: float = plan_default(
        lambda _, params: DEFAULT_NOISE if _noise_applies(params["operation"], params["init"]) else 0.0, at_least=0
    )
    stage: int | None = param(None, at_least=1)


def _grown(
    narrow: ResNet, operation: str, wide_widths: Sequence[int], stage: int | None, seed: int, data: torch.Tensor
) -> ResNet:
    """`narrow` grown by `operation` with Net2Net's init (the architecture every arm of it reaches)."""
    grown = narrow
    for step in growth_steps(operation, "net2net", wide_widths, stage=stage):
        grown = step.apply(grown, torch.Generator().manual_seed(seed), data)
    return grown


@functools.cache
def _grown_spec(profile: Profile, operation: str, stage: int | None) -> ResNetSpec:
    """The architecture `operation` grows the profile's narrow net to. Its shape does not depend on the
    weights, so an untrained net (seed 0) on random images shows it; cached, a plan asks for it per run."""
    channels, classes = profile.input_size[0], profile.num_classes
    images = torch.randn(8, *profile.input_size, generator=torch.Generator().manual_seed(0))
    narrow = seeded_model(profile.resnet("narrow", channels, classes), 0)
    return _grown(narrow, operation, profile.resnet("wide", channels, classes).widths, stage, 0, images).spec


def _grow_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    """The narrow net until `grow_epoch`, then the grown one; the "scratch" arm trains the grown net for
    every epoch."""
    grown = _grown_spec(profile, params["operation"], params.get("stage"))
    config = profile.train_config(seed=params["seed"])
    if params["init"] == "scratch":
        return RunPlan(phases=(Phase("grown net from scratch", grown, config),))
    narrow = profile.resnet("narrow", profile.input_size[0], profile.num_classes)
    grow_epoch = params["grow_epoch"]
    reshaped = Net2NetHook.changes_shapes
    return RunPlan(
        phases=(
            Phase("narrow net", narrow, config, epochs=grow_epoch, changes_shapes=reshaped),
            Phase("grown net", grown, config, epochs=config.epochs - grow_epoch, changes_shapes=reshaped),
        )
    )


@experiment(
    "net2net_grow", version=2, params=GrowParams, plan=_grow_plan
)  # 2: He init, one-stage deepening, identity-layer and scratch arms
def net2net_grow_experiment(context: RunContext) -> RunOutput:
    """Chapter 6.2: train the narrow baseline, grow it after `grow_epoch`, train on to the profile's epochs.

    params: `GrowParams`: operation (see `growth_steps`), init ("scratch": the grown architecture trained
    from a fresh init for the whole run, the paper's second baseline), seed, grow_epoch (1 <= grow_epoch <
    epochs), noise (only for init="net2net" with widening; without it a copied channel and its original get
    equal gradients forever) and stage (operation "widen_one" only).
    The total number of epochs and the lr schedule are the profile's, as for the "baseline" runs, so both
    compare at equal epochs. After growing, the optimizer is rebuilt: momentum restarts at zero for every
    parameter (old and new alike, in both arms) and the learning rate follows the schedule unchanged
    (lr_scale 1). The growth's random draws come from a generator seeded with the run's seed.
    """
    params = dict(context.params)
    operation, init, seed, noise = params.pop("operation"), params.pop("init"), params.pop("seed"), params.pop("noise")
    stage = params.pop("stage", None)
    epochs = context.profile.epochs
    grow_epoch = params.pop("grow_epoch")
    if not 1 <= grow_epoch < epochs:
        raise ValueError(
            f"grow_epoch must lie in 1..{epochs - 1} (the profile trains {epochs} epochs), got {grow_epoch}"
        )
    wide_widths = context.resnet_config("wide").widths
    if init == "scratch":
        return _grown_from_scratch(context, operation, seed, grow_epoch, wide_widths, stage)
    steps = growth_steps(operation, init, wide_widths, noise=noise, stage=stage)
    model = seeded_model(context.resnet_config("narrow"), seed)
    hook = Net2NetHook({grow_epoch: steps}, lr_scale=1.0, seed=seed)
    trainer = context.trainer(model, context.train_config(seed=seed), hooks=[hook])
    history = trainer.fit()
    before = history[history["epoch"] == grow_epoch].iloc[0]
    summary = {
        **summarize_training(history),
        "grow_epoch": grow_epoch,
        "noise": noise,
        "acc_at_growth": float(before["test_acc"]),
        "params_before": int(before["params"]),
        "flops_before": int(before["flops"]),
        "grown_spec": trainer.model.spec.to_json(),
    }
    return RunOutput(history=history, summary=summary, model=trainer.model)


def _grown_from_scratch(
    context: RunContext, operation: str, seed: int, grow_epoch: int, wide_widths: Sequence[int], stage: int | None
) -> RunOutput:
    """The "scratch" arm: the architecture `operation` grows to, freshly initialised and trained for the
    profile's epochs (its shape from applying the growth to the narrow net; no weight is carried)."""
    narrow = seeded_model(context.resnet_config("narrow"), seed)
    data = context.dataset().train_x[:64]
    grown = _grown(narrow, operation, wide_widths, stage, seed, data)
    trainer = context.trainer(seeded_model(grown.spec, seed), context.train_config(seed=seed))
    history = trainer.fit()
    summary = {
        **summarize_training(history),
        "grow_epoch": grow_epoch,
        "noise": 0.0,
        "acc_at_growth": float("nan"),
        "params_before": count_parameters(narrow),
        "flops_before": count_flops(narrow, tuple(data.shape[1:])),
        "grown_spec": trainer.model.spec.to_json(),
    }
    return RunOutput(history=history, summary=summary, model=trainer.model)


def growth_sentence(profile: str | Profile) -> str:
    """When the runs of `profile` grow and how much noise Net2Net's widening adds (notebook 06_2's header)."""
    epochs = get_profile(profile).epochs
    return (
        f"growth after epoch {default_grow_epoch(epochs)} of {epochs}; "
        f"Net2Net widening noise {DEFAULT_NOISE} x std of each weight tensor"
    )


def label_runs(baselines: pd.DataFrame, grown: pd.DataFrame) -> pd.DataFrame:
    """Baseline and grown rows (sweep summaries or histories) in one frame with three label columns.

    `arm`: "wide from scratch" / "narrow from scratch" for baselines (column model), "Net2Net init" /
    "random init" for grown runs (column init); `group`: the arm for baselines, "operation, init" for
    grown runs; `operation`: BASELINE_OPERATION ("-") for baselines.
    """
    for frame, column, known in [(baselines, "model", SCRATCH_ARMS), (grown, "init", INIT_ARMS)]:
        if column not in frame:
            raise ValueError(
                f"label_runs needs a {column!r} column; pass the frames of the baseline and "
                "net2net_grow sweeps in that order"
            )
        unknown = set(frame[column]) - set(known)
        if unknown:
            raise ValueError(f"unknown {column} value(s) {sorted(unknown)}; expected {sorted(known)}")
    scratch = baselines.assign(operation=BASELINE_OPERATION, arm=baselines["model"].map(SCRATCH_ARMS))
    scratch["group"] = scratch["arm"]
    grew = grown.assign(arm=grown["init"].map(INIT_ARMS), group=grown["operation"] + ", " + grown["init"])
    return pd.concat([scratch, grew], ignore_index=True)


def cumulative_time(history: pd.DataFrame, by: Sequence[str] = ()) -> pd.Series:
    """Training seconds until the end of every epoch: epoch_time + hook_time (training plus growth, without
    evaluation) summed in row order within each run, the runs told apart by the columns `by` (none: one run)."""
    seconds = history["epoch_time"] + history["hook_time"]
    if not by:
        return seconds.cumsum()
    return seconds.groupby([history[column] for column in by], sort=False).cumsum()


def labelled_runs(baselines: SweepResult, grown: SweepResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, history) of the "baseline" and "net2net_grow" sweeps, labelled by `label_runs`; the
    history with the `cumulative_time` of every run (a group and seed)."""
    summary = label_runs(baselines.summary, grown.summary)
    history = label_runs(baselines.history, grown.history)
    history["cumulative_time"] = cumulative_time(history, by=["group", "seed"])
    return summary, history


def panel_frame(history: pd.DataFrame, operation: str) -> pd.DataFrame:
    """The rows of one figure panel: both baselines and both inits of `operation`, ordered by ARM_ORDER
    (so every panel gives an arm the same colour), with `mean_cumulative_time`, the mean over seeds of
    `cumulative_time` per group and epoch (the x position of that epoch in the accuracy-time figure).

    `history` is `label_runs` of the histories with a `cumulative_time` column.
    """
    rows = history[history["operation"].isin([operation, BASELINE_OPERATION])]
    frame = pd.concat([rows[rows["arm"] == arm] for arm in ARM_ORDER], ignore_index=True)
    frame["mean_cumulative_time"] = frame.groupby(["group", "epoch"])["cumulative_time"].transform("mean")
    return frame


def architecture_table(summary: pd.DataFrame, groups: Sequence[str]) -> pd.DataFrame:
    """Parameters and forward FLOPs per image before and after the growth, one row per group in `groups`
    (equal for every seed, so the first run's); NaN "before" for the baselines, which never grow."""
    table = summary.groupby("group", sort=False).agg(
        params_before=("params_before", "first"),
        params_after=("final_params", "first"),
        flops_before=("flops_before", "first"),
        flops_after=("final_flops", "first"),
    )
    scratch = [group for group in SCRATCH_ARMS.values() if group in table.index]
    table.loc[scratch, ["params_before", "flops_before"]] = float("nan")
    return table.reindex(groups)


def reach_targets(summary: pd.DataFrame, tolerance: float) -> dict[str, float]:
    """The accuracy each baseline model ("wide", "narrow") reaches: its mean final accuracy minus `tolerance`."""
    scratch = summary[summary["operation"] == BASELINE_OPERATION]
    means = scratch.groupby("model")["final_acc"].mean()
    return {model: float(means[model]) - tolerance for model in SCRATCH_ARMS if model in means.index}


def time_to_accuracy(history: pd.DataFrame, target: float) -> dict[str, float]:
    """First epoch, and the training seconds until its end, at which test accuracy reaches `target`.

    Seconds are the cumulative sum of epoch_time + hook_time (training plus growth, without evaluation).
    Both are NaN when the run never reaches `target`.
    """
    seconds = cumulative_time(history)
    reached = (history["test_acc"] >= target).to_numpy().nonzero()[0]
    if len(reached) == 0:
        return {"epoch": float("nan"), "seconds": float("nan")}
    first = int(reached[0])
    return {"epoch": float(history["epoch"].iloc[first]), "seconds": float(seconds.iloc[first])}


def reach_table(history: pd.DataFrame, targets: Mapping[str, float], groups: Sequence[str]) -> pd.DataFrame:
    """How soon the runs of each group reach each baseline's target accuracy (`reach_targets`).

    `time_to_accuracy` of every run (a group and seed of the labelled `history`), then per group (rows in
    the order of `groups`): "epoch to X" and "seconds to X", the means over the runs that reach target X
    (NaN if none does), "runs reaching X" and "runs", the group's number of runs.
    """
    rows = []
    for (group, seed), run_history in history.groupby(["group", "seed"], sort=False):
        row: dict[str, Any] = {"group": group, "seed": seed}
        for name, target in targets.items():
            reached = time_to_accuracy(run_history, target)
            row[f"epoch to {name}"], row[f"seconds to {name}"] = reached["epoch"], reached["seconds"]
        rows.append(row)
    runs = pd.DataFrame(rows)
    table = runs.groupby("group", sort=False).agg(
        **{f"{what} to {name}": (f"{what} to {name}", "mean") for name in targets for what in ("epoch", "seconds")},
        **{f"runs reaching {name}": (f"epoch to {name}", "count") for name in targets},
        runs=("seed", "count"),
    )
    return table.reindex(groups)


def _reach_phrase(row: pd.Series, name: str) -> str:
    reached, runs = int(row[f"runs reaching {name}"]), int(row["runs"])
    if reached == 0:
        return f"none of {runs} runs reached the {name} net's accuracy"
    return (
        f"{reached} of {runs} runs reached the {name} net's accuracy after {row[f'epoch to {name}']:.1f} "
        f"epochs and {row[f'seconds to {name}']:.2f} s"
    )


def reach_sentences(table: pd.DataFrame) -> list[str]:
    """One sentence per group of a `reach_table` (baselines first): how many runs reach each baseline's
    target and when; a grown group also says whether it got there sooner or later in seconds than the
    net trained from scratch, only when every run of both groups reached the target (a mean over the runs
    that got there would count a group with one survivor as fast)."""
    names = [name for name in SCRATCH_ARMS if f"runs reaching {name}" in table]
    sentences = [
        f"{SCRATCH_ARMS[name]}: {_reach_phrase(table.loc[SCRATCH_ARMS[name]], name)}."
        for name in names
        if SCRATCH_ARMS[name] in table.index
    ]
    for group, row in table.iterrows():
        if group in SCRATCH_ARMS.values():
            continue
        parts = []
        for name in names:
            phrase = _reach_phrase(row, name)
            reference = table.loc[SCRATCH_ARMS[name]]
            everyone = (
                row[f"runs reaching {name}"] == row["runs"] and reference[f"runs reaching {name}"] == reference["runs"]
            )
            if everyone:
                sooner = row[f"seconds to {name}"] < reference[f"seconds to {name}"]
                phrase += f" ({'sooner' if sooner else 'later'} in seconds than the {name} net from scratch)"
            elif row[f"runs reaching {name}"] > 0:  # means over survivors would hide the runs that never got there
                phrase += f" (times not compared with the {name} net from scratch: not every run reached it)"
            parts.append(phrase)
        sentences.append(f"{group}: " + "; ".join(parts) + ".")
    return sentences


def final_accuracy_table(summary: pd.DataFrame, groups: Sequence[str]) -> pd.DataFrame:
    """Final accuracy (`stats.summary_table`), mean total training time and mean training FLOPs of every
    group, in the order of `groups`, from the labelled summary."""
    table = stats.summary_table(summary, by="group", value="final_acc").set_index("group").reindex(groups)
    table["mean total time (s)"] = summary.groupby("group")["total_time"].mean()
    table["mean training FLOPs"] = summary.groupby("group")["training_flops"].mean()
    return table


def final_accuracy_comparisons(
    summary: pd.DataFrame, operations: Sequence[str], value: str = "final_acc", what: str = "final accuracy"
) -> list[tuple[str, Any, Any]]:
    """The (label, a, b) pairs of chapter 6.2's Welch t-tests (for `stats.welch_table`): every grown group
    against the wide and the narrow net from scratch, then Net2Net against random init and against the grown
    architecture from scratch, per operation. A pair whose runs give identical values (the grown architecture
    from scratch is the wide net itself, trained with the same seeds) is no comparison and is left out.
    `value` is the summary column compared, `what` names it in the labels."""
    samples = {group: part[value].to_numpy() for group, part in summary.groupby("group")}
    comparisons = []
    for operation in operations:
        pairs = [(f"{operation}, {init}", reference) for init in ARMS for reference in SCRATCH_ARMS.values()]
        pairs += [(f"{operation}, net2net", f"{operation}, random"), (f"{operation}, net2net", f"{operation}, scratch")]
        for group, reference in pairs:
            missing = [name for name in (group, reference) if name not in samples]
            if missing:
                raise ValueError(
                    f"no runs of group(s) {missing} in the summary; run the plan's grid and both "
                    "baselines, and label them with label_runs"
                )
            if np.array_equal(samples[group], samples[reference]):  # the same net and seeds: the same runs
                continue
            if any(  # the same test under another name (widen_all's scratch arm is the wide net): once
                np.array_equal(samples[group], a) and np.array_equal(samples[reference], b) for _, a, b in comparisons
            ):
                continue
            comparisons.append((f"{what}, {group} vs {reference}", samples[group], samples[reference]))
    return comparisons


def final_accuracy_tests(summary: pd.DataFrame, operations: Sequence[str]) -> pd.DataFrame:
    """Table 6.5: the Welch t-tests of `final_accuracy_comparisons`, Holm-adjusted as one family."""
    return stats.with_holm(stats.welch_table(final_accuracy_comparisons(summary, operations)))


def init_verdicts(tests: pd.DataFrame, operations: Sequence[str]) -> str:
    """The Net2Net paper's claim checked per operation: is the function-preserving init better than random
    init of the new units? From the Holm-adjusted tests of `final_accuracy_comparisons` (`stats.with_holm`):
    the operations where Net2Net is significantly better, significantly worse, or not distinguishable."""
    better, worse, undecided = [], [], []
    for operation in operations:
        rows = tests[tests["comparison"].str.endswith(f", {operation}, net2net vs {operation}, random")]
        if rows.empty:
            raise ValueError(f"no test of {operation}, net2net vs random init; pass the tests of all operations")
        row = rows.iloc[0]
        entry = f"{operation} ({row['mean_a']:.3f} vs {row['mean_b']:.3f}, Holm p = {row['p_holm']:.3g})"
        (
            better
            if row["verdict"] == "significant" and row["diff"] > 0
            else worse
            if row["verdict"] == "significant"
            else undecided
        ).append(entry)
    parts = [f"Net2Net's init against random init of the new units, final accuracy, {len(operations)} operations:"]
    for name, entries in (
        ("significantly better", better),
        ("significantly worse", worse),
        ("not distinguishable on these runs", undecided),
    ):
        if entries:
            parts.append(f"{name}: {'; '.join(entries)}.")
    return " ".join(parts)


OPERATION_LABELS = {
    "widen_one": {"de": "letzte Phase breiter", "en": "last stage wider"},
    "widen_all": {"de": "alle Phasen breiter", "en": "all stages wider"},
    "deepen": {"de": "+1 Block in Phase 3", "en": "+1 block in stage 3"},
    "deepen_layer": {"de": "Identitätsschicht", "en": "identity layer"},
    "widen_deepen": {"de": "breiter + 1 Block", "en": "wider + 1 block"},
}
ARM_LABELS = {
    "wide from scratch": {"de": "breit, neu", "en": "wide, scratch"},
    "narrow from scratch": {"de": "schmal, neu", "en": "narrow, scratch"},
    "net2net": {"de": "Net2Net", "en": "Net2Net"},
    "random": {"de": "zufällig", "en": "random"},
    "scratch": {"de": "neu trainiert", "en": "from scratch"},
}


def group_label(group: str) -> str:
    """A printable label of a chapter 6.2 group in the figures' language: "widen_one, net2net" becomes
    "letzte Phase breiter\\nNet2Net", a baseline "breit, neu"."""
    language = plots.language()
    if group in ARM_LABELS:
        return ARM_LABELS[group][language]
    operation, init = group.split(", ")
    return f"{OPERATION_LABELS[operation][language]}\n{ARM_LABELS[init][language]}"


ARM_LEGEND = {
    "wide from scratch": {"de": "breites Netz, neu trainiert", "en": "wide net from scratch"},
    "narrow from scratch": {"de": "schmales Netz, neu trainiert", "en": "narrow net from scratch"},
    "Net2Net init": {"de": "Net2Net-Initialisierung", "en": "Net2Net init"},
    "random init": {"de": "zufällige Initialisierung", "en": "random init"},
    "grown net from scratch": {"de": "gewachsenes Netz, neu trainiert", "en": "grown net from scratch"},
}


def arm_label(arm: str) -> str:
    """The legend text of an arm of `label_runs` (column "arm") in the figures' language."""
    return plots.translate(ARM_LEGEND, arm)


FIGURE_TEXT = {
    "growth": {"de": "Wachsen", "en": "growth"},
    "cumulative_time": {"de": "kumulierte Trainingszeit (s)", "en": "cumulative training time (s)"},
}
TICK_FONTSIZE = 6.5
FINAL_FIGURE_WIDTH = 6.0  # fig. 6.11: the text width, one row per group
FINAL_FIGURE_ROW_HEIGHT = 0.25
FINAL_FIGURE_MARGIN = 0.8


def _runs_per_group(summary: pd.DataFrame) -> int:
    return int(summary.groupby("group").size().min())


def _dash_baselines(ax: Axes) -> None:
    """Draw the from-scratch baselines dashed (lines and legend entries), so they stay apart in grey print."""
    for handle, label in zip(*ax.get_legend_handles_labels()):
        if label in {arm_label(arm) for arm in SCRATCH_ARMS.values()}:
            for line in [handle, *ax.get_lines()]:
                if same_color(line.get_color(), handle.get_color()):
                    line.set_linestyle("--")


def _panel_axes(count: int) -> tuple[Figure, np.ndarray]:
    """A figure with one panel per operation: two columns up to four panels, else three."""
    ncols = min(count, 2 if count <= 4 else 3)
    fig, axes = plots.figure("full", nrows=-(-count // ncols), ncols=ncols, sharex=True, sharey=True)
    return fig, np.atleast_1d(axes).ravel()


def _finish_panels(fig: Figure, axes: Sequence[Axes], used: int, title: str, stamp: tuple[str, str], n: int) -> Figure:
    """Figures 6.9 and 6.10: drop the panels beyond the `used` ones, one legend of the arms under all panels,
    and the stamp."""
    for ax in axes[used:]:
        ax.remove()
    # Two columns: three of these labels side by side were wider than the text width (451 pt, not 432).
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, frameon=False, title=title)
    plots.stamp(fig, stamp[0], stamp[1], n)
    return fig


def accuracy_epochs_figure(
    history: pd.DataFrame, summary: pd.DataFrame, operations: Sequence[str], grow_epoch: int, stamp: tuple[str, str]
) -> Figure:
    """Figure 6.9: test accuracy against epochs, one panel per operation (both baselines dashed, the arms of
    the growth; mean over seeds with the min-max band), the growth after `grow_epoch` dotted; from the
    labelled `history` and `summary` (`labelled_runs`); `stamp` = (profile, dataset)."""
    language = plots.language()
    n = _runs_per_group(summary)
    fig, axes = _panel_axes(len(operations))
    for ax, operation in zip(axes, operations):
        frame = panel_frame(history, operation)
        plots.line_with_band(ax, frame.assign(arm=frame["arm"].map(arm_label)), x="epoch", y="test_acc", hue="arm")
        _dash_baselines(ax)
        ax.axvline(grow_epoch, color="0.4", linestyle=":", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=OPERATION_LABELS[operation][language], xlabel=plots.label("epoch"), ylabel=plots.label("test_acc"))
        ax.legend().remove()
    return _finish_panels(
        fig,
        axes,
        len(operations),
        f"{plots.label('mean_band', n=n)}; ··· {plots.translate(FIGURE_TEXT, 'growth')}",
        stamp,
        n,
    )


def accuracy_time_figure(
    history: pd.DataFrame, summary: pd.DataFrame, operations: Sequence[str], stamp: tuple[str, str]
) -> Figure:
    """Figure 6.10: test accuracy against cumulative training time (epochs plus the growth, without
    evaluation), one panel per operation; an epoch's x is its group's mean cumulative time over the seeds,
    the band spans the seeds' accuracies; `stamp` = (profile, dataset)."""
    language = plots.language()
    n = _runs_per_group(summary)
    fig, axes = _panel_axes(len(operations))
    for ax, operation in zip(axes, operations):
        frame = panel_frame(history, operation)
        plots.line_with_band(
            ax, frame.assign(arm=frame["arm"].map(arm_label)), x="mean_cumulative_time", y="test_acc", hue="arm"
        )
        _dash_baselines(ax)
        ax.set(
            title=OPERATION_LABELS[operation][language],
            xlabel=plots.translate(FIGURE_TEXT, "cumulative_time"),
            ylabel=plots.label("test_acc"),
        )
        ax.legend().remove()
    return _finish_panels(fig, axes, len(operations), f"{plots.label('mean_band', n=n)}", stamp, n)


def same_run_groups(summary: pd.DataFrame, groups: Sequence[str]) -> dict[str, list[str]]:
    """Each group of `groups` whose runs no earlier group repeats -> the later groups that are the same runs
    (equal final accuracy seed by seed: widen_all's scratch arm is the wide net trained with the same seeds)."""
    values = {
        group: part.sort_values("seed")["final_acc"].to_numpy() for group, part in summary.groupby("group", sort=False)
    }
    kept: dict[str, list[str]] = {}
    for group in groups:
        earlier = next((k for k in kept if np.array_equal(values[k], values[group])), None)
        if earlier is None:
            kept[group] = []
        else:
            kept[earlier].append(group)
    return kept


def final_accuracy_figure(summary: pd.DataFrame, groups: Sequence[str], stamp: tuple[str, str]) -> Figure:
    """Figure 6.11: the final accuracy of every run, one row per group in the order of `groups` (labelled
    `summary`); a group that is an earlier one's runs (`same_run_groups`) shares its row, named in its
    label; `stamp` = (profile, dataset)."""
    fig, ax = plots.figure("full")
    merged = same_run_groups(summary, groups)
    names = {group: " = ".join(group_label(g) for g in (group, *same)) for group, same in merged.items()}
    labelled = summary[summary["group"].isin(list(merged))]
    labelled = labelled.assign(label=labelled["group"].map(names))
    plots.boxplot(ax, labelled, x="final_acc", y="label", order=list(names.values()))
    fig.set_size_inches(FINAL_FIGURE_WIDTH, FINAL_FIGURE_ROW_HEIGHT * len(names) + FINAL_FIGURE_MARGIN)
    ax.set(xlabel=plots.label("final_acc"), ylabel="")
    ax.tick_params(axis="y", labelsize=TICK_FONTSIZE)
    plots.stamp(fig, stamp[0], stamp[1], _runs_per_group(summary))
    return fig
