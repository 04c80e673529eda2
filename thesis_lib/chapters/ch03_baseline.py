"""Chapter 3.1.4 (notebook 03_baseline): the wide and narrow thesis ResNets with and without the lr schedule.

The thesis reports 81.24 % (constant lr) against 91.89 % (step decay at epochs 93 and 150) for the wide
ResNet-32 on CIFAR-10 over 5 seeds, at about 19.6 s per epoch on an RTX 2080 Ti. The experiment
"baseline" is also the reference every later chapter compares against, through the run cache. Table 3.2
(`epoch_time_table`, `epoch_time_spread`) compares the wide runs' epoch times with each other, as the draft.
`baseline_grid` gives the runs of the notebook (and of the later chapters' baselines); `sweeps` names them
for the notebook and for `python -m thesis_lib plan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import models, plots, stats
from ..experiments import (
    TIMING_COLUMNS,
    Profile,
    RunContext,
    RunOutput,
    RunPlan,
    experiment,
    get_profile,
    param,
    seed_param,
    single_phase,
    summarize_training,
)
from ..models import ResNetConfig
from ..training import TrainConfig, seeded_model
from .contract import Sweeps, quantities

__all__ = [
    "BaselineParams",
    "accuracy_figure",
    "baseline",
    "baseline_grid",
    "baseline_tests",
    "count_table",
    "epoch_time_spread",
    "epoch_time_table",
    "spread_sentence",
    "structure_table",
    "sweeps",
]


@dataclass(frozen=True)
class BaselineParams:
    """model: the thesis's "wide" or "narrow" ResNet or a ResNetConfig (the profile sets its depth and the
    dataset's shapes); schedule: step decay at the profile's milestones or a constant lr; ghost_batch: ghost
    batch norm over virtual batches of that size (chapter 6.4)."""

    model: Literal["wide", "narrow"] | ResNetConfig = "wide"
    schedule: Literal["step", "constant", "poly"] = "step"
    seed: int = seed_param()
    ghost_batch: int | None = param(None, at_least=1)


def baseline_grid(
    profile: str | Profile,
    models: Sequence[str] = ("wide", "narrow"),
    schedules: Sequence[str] = ("constant", "step"),
    seeds: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Params of "baseline" runs: every model x schedule, once per seed (default: the profile's seeds).

    The defaults are notebook 03's grid (fig. 3.4, tables 3.2 and 3.3); later chapters take their
    baselines from it with fewer models or schedules, so the run cache shares the runs."""
    seeds = get_profile(profile).seeds if seeds is None else seeds
    return [
        {"model": model, "schedule": schedule, "seed": seed}
        for model in models
        for schedule in schedules
        for seed in seeds
    ]


def sweeps(profile: str | Profile) -> Sweeps:
    """Notebook 03's one sweep: both nets under both schedules, once per seed."""
    return {"baseline": ("baseline", baseline_grid(profile))}


def _baseline_setup(profile: Profile, params: dict[str, Any]) -> tuple[ResNetConfig, TrainConfig]:
    """The net and the TrainConfig of a "baseline" run with resolved `params` (for the run and its plan)."""
    params = dict(params)
    base, seed, ghost_batch = params.pop("model"), params.pop("seed"), params.pop("ghost_batch", None)
    resnet = profile.resnet(base, profile.input_size[0], profile.num_classes).with_(ghost_batch=ghost_batch)
    return resnet, profile.train_config(seed=seed, **params)


def _baseline_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    return single_phase(profile, *_baseline_setup(profile, params))


# 2: He-normal init; 3: warm-up and poly decay per iteration, LARS adapts every tensor (zero gradient: ratio 1)
@experiment("baseline", version=3, params=BaselineParams, train_config=True, plan=_baseline_plan)
def baseline(context: RunContext) -> RunOutput:
    """Chapter 3.1.4: train the wide or narrow thesis ResNet with a constant or step lr schedule.

    params: model ("wide" | "narrow"), schedule ("step" | "constant"), seed, optionally ghost_batch (ghost
    batch norm over virtual batches of that size, chapter 6.4) and any TrainConfig field (e.g. lr,
    batch_size, precision, optimizer, lr_scaling, warmup_epochs).
    """
    resnet, config = _baseline_setup(context.profile, context.params)
    model = seeded_model(resnet, context.params["seed"])
    trainer = context.trainer(model, config)
    history = trainer.fit()
    return RunOutput(history=history, summary=summarize_training(history), model=trainer.model)


def structure_table() -> pd.DataFrame:
    """Table 3.1a (structure): the layers of the wide thesis ResNet-32, with the narrow net's channels beside."""
    wide, narrow = models.build_resnet(models.WIDE_BASELINE), models.build_resnet(models.NARROW_BASELINE)
    table = pd.DataFrame(models.structure_table(wide))
    table[["in (narrow)", "out (narrow)"]] = pd.DataFrame(models.structure_table(narrow))[["in", "out"]]
    return table


def count_table(summary: pd.DataFrame, profile: str) -> pd.DataFrame:
    """Table 3.1b (counts): parameters and FLOPs per image of both thesis nets at CIFAR's 3x32x32, next to
    those of the nets `profile` trained (from the runs' `summary`)."""
    wide, narrow = models.build_resnet(models.WIDE_BASELINE), models.build_resnet(models.NARROW_BASELINE)
    trained = summary.drop_duplicates("model").set_index("model")
    counts = pd.DataFrame(
        {
            "parameters (thesis, 32x32)": [models.count_parameters(wide), models.count_parameters(narrow)],
            "FLOPs per image (thesis, 32x32)": [
                models.count_flops(wide, (3, 32, 32)),
                models.count_flops(narrow, (3, 32, 32)),
            ],
            f"parameters ({profile})": trained.loc[["wide", "narrow"], "final_params"].to_numpy(),
            f"FLOPs per image ({profile})": trained.loc[["wide", "narrow"], "final_flops"].to_numpy(),
        },
        index=["wide", "narrow"],
    )
    return counts.reset_index(names="net")


def epoch_time_table(history: pd.DataFrame, model: str = "wide") -> pd.DataFrame:
    """Table 3.2: mean and standard deviation (ddof 1) of the epoch time of every run of `model` (the draft
    lists its ten wide-net runs, five per schedule), one row per (schedule, seed)."""
    runs = history[history["model"] == model]
    if runs.empty:
        raise ValueError(
            f"no runs of the {model!r} net in the history; models present: {sorted(set(history['model']))}"
        )
    table = runs.groupby(["schedule", "seed"])["epoch_time"].agg(mean="mean", std=lambda s: s.std(ddof=1), n="count")
    return table.reset_index()


def epoch_time_spread(table: pd.DataFrame) -> dict[str, float]:
    """The draft's measure of how much the runs' mean epoch times differ: (largest - smallest) / largest,
    3.42 % over its ten wide runs on an RTX 2080 Ti; and the largest standard deviation relative to its mean."""
    largest, smallest = float(table["mean"].max()), float(table["mean"].min())
    return {
        "runs": int(len(table)),
        "smallest_mean": smallest,
        "largest_mean": largest,
        "spread": (largest - smallest) / largest,
        "largest_relative_std": float((table["std"] / table["mean"]).max()),
    }


def spread_sentence(spread: dict[str, float]) -> str:
    """Table 3.2's finding in one sentence, next to the draft's numbers."""
    return (
        f"The mean epoch times of the {spread['runs']} wide runs lie between {spread['smallest_mean']:.3f} s "
        f"and {spread['largest_mean']:.3f} s: the smallest is {100 * spread['spread']:.1f}% below the largest "
        f"(the draft: 3.42% over its ten runs on an RTX 2080 Ti); the largest standard deviation is "
        f"{100 * spread['largest_relative_std']:.1f}% of its run's mean (the draft: 5.56%)."
    )


def baseline_tests(summary: pd.DataFrame) -> pd.DataFrame:
    """Welch t-tests, step schedule against constant lr, of accuracy and epoch time for both nets: one
    family of four, Holm-adjusted; `sentence` states each result. The epoch time is the mean over the
    epochs after the first (`steady_epoch_time`: the first runs cuDNN's autotuner on a GPU), tested only
    between runs of one timing setting that trained alone (`stats.compare_groups`)."""
    groups = summary.assign(run=summary.model + " net, " + summary.schedule + " lr")
    return stats.with_holm(
        stats.compare_groups(
            groups,
            "run",
            [(f"{m} net, step lr", f"{m} net, constant lr") for m in ["wide", "narrow"]],
            quantities("final_acc", "steady_epoch_time"),
            timing_columns=TIMING_COLUMNS,
        )
    )


SCHEDULE_LABELS = {
    "constant": {"de": "konstante Lernrate", "en": "constant lr"},
    "step": {"de": "stufenweise Lernrate", "en": "step schedule"},
}
SHORT_LABELS = {
    "de": {"wide": "breit", "narrow": "schmal", "constant": "konst.", "step": "Stufen"},
    "en": {"wide": "wide", "narrow": "narrow", "constant": "const.", "step": "step"},
}
MODEL_LABELS = {"wide": {"de": "breites Netz", "en": "wide net"}, "narrow": {"de": "schmales Netz", "en": "narrow net"}}


def accuracy_figure(
    history: pd.DataFrame, summary: pd.DataFrame, milestones: tuple[int, ...], stamp: tuple[str, str]
) -> Figure:
    """Figure 3.4: (a) test accuracy per epoch with the constant lr, (b) with the step schedule (both nets,
    mean over the seeds with a min-max band, the lr drops marked), (c) the final accuracy per run of the
    wide and narrow net under both schedules; `stamp` = (profile, dataset)."""
    language = plots.language()
    fig, axes = plots.figure("full", ncols=3, sharey=False)
    fig.set_size_inches(6.0, 2.6)
    n = int(summary.groupby(["model", "schedule"]).size().min())
    frame = history.assign(net=history["model"].map(lambda m: MODEL_LABELS[m][language]))
    for ax, schedule, letter in zip(axes[:2], ("constant", "step"), "ab"):
        plots.line_with_band(ax, frame[frame.schedule == schedule], x="epoch", y="test_acc", hue="net")
        if schedule == "step":
            plots.mark_epochs(ax, milestones)
        ax.set(
            title=f"({letter}) {SCHEDULE_LABELS[schedule][language]}",
            xlabel=plots.label("epoch"),
            ylabel=plots.label("test_acc"),
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.get_legend().remove()
    axes[1].sharey(axes[0])
    handles, labels = axes[0].get_legend_handles_labels()
    drop = "lr-Abfall" if language == "de" else "lr drop"
    fig.legend(
        handles, labels, loc="outside lower center", ncols=2, title=f"{plots.label('mean_band', n=n)}; ··· {drop}"
    )
    short = SHORT_LABELS[language]
    groups = summary.assign(
        group=[f"{short[m]}\n{short[sch]}" for m, sch in zip(summary["model"], summary["schedule"])]
    )
    order = [f"{short[m]}\n{short[sch]}" for m in ("wide", "narrow") for sch in ("constant", "step")]
    # (c) draws each run in its net's colour from (a) and (b).
    net_colors = {label: handle.get_color() for handle, label in zip(handles, labels)}
    colors = {
        f"{short[m]}\n{short[sch]}": net_colors[MODEL_LABELS[m][language]]
        for m in ("wide", "narrow")
        for sch in ("constant", "step")
    }
    plots.boxplot(axes[2], groups, x="group", y="final_acc", order=order, colors=colors)
    axes[2].set(title="(c)", xlabel="", ylabel=plots.label("final_acc"))
    axes[2].tick_params(axis="x", labelsize=6.5)
    plots.stamp(fig, stamp[0], stamp[1], n)
    return fig
