"""Chapter 6.1 (notebook 06_1_batch_size): batch size against memory, and PruneTrain with batch adaptation.

The chapter's sizes per profile (`ChapterSettings`, `chapter_settings`), the grids of its runs (all of
them: `planned_runs`), the experiment "prunetrain_batch" (PruneTrain at chapter 5's default point with `BatchAdaptation`) and the
grouping and rule comparison the notebook calls. Memory measurement, the batch search and the adaptation
hook are `thesis_lib.methods.batchsize`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import plots
from ..experiments import (PlannedRun, Profile, RunContext, RunOutput, RunPlan, RunResult, SweepResult, experiment,
                           get_profile, plan_default, planned_sweep, single_phase, summarize_training)
from ..methods.batchsize import (RULES, SCALINGS, BatchAdaptation, _resolve_method, batch_from_fit,
                                 max_batch_size, params_batch_fit)
from ..methods.prunetrain import PruneTrain
from ..stats import LinearFit
from ..training import TrainingHook, seeded_model
from .ch05_prunetrain import PRUNE_PARAMS, SHRINKS, PruneTrainParams, prunetrain_plan

@dataclass(frozen=True)
class ChapterSettings:
    """Per-profile sizes of chapter 6.1's experiments.

    PruneTrain itself runs at chapter 5's default point (`prunetrain.prunetrain_plan(profile).default()`),
    so the runs without adaptation are chapter 5's cached runs. On `smoke` that point removes no channel
    (8 steps in all), so there the adapted runs never grow the batch: smoke only checks the pipeline.
    """

    scalings: tuple[str, ...]
    time_batches: tuple[int, ...]    # fig. 6.8: batch sizes whose epoch time is measured
    time_epochs: int                 # epochs per timing run; the first (warm-up) epoch is not used
    profile_batches: tuple[int, ...]  # fig. 6.1: batch sizes whose memory is measured
    table_blocks: tuple[int, ...] = tuple(range(1, 11))  # N of the batch table (the thesis: 1..10)


CHAPTER_SETTINGS: dict[str, ChapterSettings] = {
    "smoke": ChapterSettings(scalings=("linear",), time_batches=(32, 128), time_epochs=2,
                             profile_batches=(1, 8, 32, 128, 512), table_blocks=(1, 2, 3)),
    "quick": ChapterSettings(scalings=("linear",), time_batches=(16, 32, 64, 128, 256, 512), time_epochs=3,
                             profile_batches=(1, 8, 16, 32, 64, 128, 256, 512)),
    "full": ChapterSettings(scalings=("linear", "sqrt"), time_batches=(32, 64, 128, 256, 512, 1024),
                            time_epochs=3, profile_batches=(1, 16, 32, 64, 128, 256, 512, 1024)),
}


def chapter_settings(profile: str | Profile) -> ChapterSettings:
    profile = get_profile(profile)
    if profile.name not in CHAPTER_SETTINGS:
        raise ValueError(f"no chapter 6.1 settings for profile {profile.name!r}; known: {sorted(CHAPTER_SETTINGS)}")
    return CHAPTER_SETTINGS[profile.name]


def prunetrain_grid(profile: str | Profile) -> list[dict[str, Any]]:
    """Params of the "prunetrain" runs (chapter 5's experiment) that are this chapter's PruneTrain without
    adaptation: chapter 5's default point and batch size (256 on `full`), once per seed of the profile.
    They are the same training as "prunetrain_batch" with adapt=False, so the run cache shares them with
    notebook 05."""
    profile = get_profile(profile)
    plan = prunetrain_plan(profile)
    return [{**plan.default(), **plan.training(), "seed": seed} for seed in profile.seeds]


def adaptation_grid(profile: str | Profile) -> list[dict[str, Any]]:
    """Params of the "prunetrain_batch" runs of a profile: PruneTrain at chapter 5's default point with
    batch adaptation starting from chapter 5's batch size (256 on `full`: the batch that fills the GPU in
    the draft's table 6.1), for each lr scaling of the profile, once per seed."""
    profile = get_profile(profile)
    plan = prunetrain_plan(profile)
    return [{"adapt": True, "scaling": scaling, **plan.default(), **plan.training(), "seed": seed}
            for scaling in chapter_settings(profile).scalings for seed in profile.seeds]


def baseline_grid(profile: str | Profile) -> list[dict[str, Any]]:
    """Params of the "baseline" runs the PruneTrain arms are compared with: chapter 5's (same batch)."""
    return prunetrain_plan(profile).baseline_grid(get_profile(profile).seeds)


def epoch_time_grid(profile: str | Profile, seed: int = 0) -> list[dict[str, Any]]:
    """Params of the "baseline" runs that time an epoch of the wide net per batch size (fig. 6.8)."""
    settings = chapter_settings(profile)
    return [{"model": "wide", "schedule": "constant", "batch_size": batch, "epochs": settings.time_epochs,
             "seed": seed} for batch in settings.time_batches]


def planned_runs(profile: str | Profile) -> list[PlannedRun]:
    """Every run notebook 06_1 trains on `profile`, in its order: the epoch timings of fig. 6.8, then the
    baseline, PruneTrain without and with batch adaptation (the first two are chapter 5's runs)."""
    profile = get_profile(profile)
    return [*planned_sweep("baseline", epoch_time_grid(profile), profile),
            *planned_sweep("baseline", baseline_grid(profile), profile),
            *planned_sweep("prunetrain", prunetrain_grid(profile), profile),
            *planned_sweep("prunetrain_batch", adaptation_grid(profile), profile)]


BASELINE_GROUP = "baseline"
PRUNETRAIN_GROUP = "PruneTrain"


def adaptation_group(scaling: str, rule: str = "probe") -> str:
    """The group label of PruneTrain with batch adaptation, e.g. "PruneTrain + batch (linear)"."""
    if scaling not in SCALINGS:
        raise ValueError(f"unknown lr scaling {scaling!r}; use one of {SCALINGS}")
    if rule not in RULES:
        raise ValueError(f"unknown adaptation rule {rule!r}; use one of {RULES}")
    return f"{PRUNETRAIN_GROUP} + batch ({scaling}{', thesis fit' if rule == 'fit' else ''})"


@dataclass
class GroupedRuns:
    """The chapter's runs in one place: `summary` (one row per run) and `history` (one row per run and
    epoch), both with a `group` column, and `groups`, the group labels in order (baseline, PruneTrain,
    then the adapted groups as they first appear)."""

    summary: pd.DataFrame
    history: pd.DataFrame
    groups: list[str]


def run_group(result: RunResult) -> str:
    """The group of one run: "baseline", "PruneTrain" ("prunetrain", or "prunetrain_batch" without
    adaptation) or `adaptation_group` of its scaling and rule."""
    if result.name == "baseline":
        return BASELINE_GROUP
    if result.name == "prunetrain" or (result.name == "prunetrain_batch" and not result.params["adapt"]):
        return PRUNETRAIN_GROUP
    if result.name == "prunetrain_batch":
        return adaptation_group(result.params["scaling"], result.params.get("rule", "probe"))
    raise ValueError(f"a run of experiment {result.name!r} belongs to no group of chapter 6.1; "
                     "pass sweeps of 'baseline', 'prunetrain' and 'prunetrain_batch'")


def _final_after(result: RunResult, column: str, fallback: str) -> int:
    if column in result.history:
        return int(result.history[column].iloc[-1])
    return int(result.summary[fallback])


def group_runs(*sweeps: SweepResult) -> GroupedRuns:
    """Label the runs of `sweeps` by `run_group` and give every run the size of its final network.

    `final_params_after` and `final_flops_after` are the parameters and forward FLOPs (per image) of the
    network a run ends with: for PruneTrain runs the one after the reconfiguration of the last epoch (the
    summary's `final_params` is the net trained in that epoch, before it), for the baseline its only net.
    """
    summaries, histories = [], []
    for sweep_result in sweeps:
        labels = [run_group(result) for result in sweep_result.runs]
        summaries.append(sweep_result.summary.assign(
            group=labels,
            final_params_after=[_final_after(r, "params_after", "final_params") for r in sweep_result.runs],
            final_flops_after=[_final_after(r, "flops_after", "final_flops") for r in sweep_result.runs]))
        epochs = [len(result.history) for result in sweep_result.runs]
        histories.append(sweep_result.history.assign(group=np.repeat(labels, epochs)))
    summary = pd.concat(summaries, ignore_index=True)
    fixed = [BASELINE_GROUP, PRUNETRAIN_GROUP]
    groups = [g for g in fixed if g in set(summary["group"])]
    groups += [g for g in dict.fromkeys(summary["group"]) if g not in fixed]
    return GroupedRuns(summary=summary, history=pd.concat(histories, ignore_index=True), groups=groups)


METHOD_LABELS = {"peak": "search by measured CUDA peaks", "model": "memory model"}


def rule_comparison(runs: Sequence[RunResult], params_fit: LinearFit, input_shape: Sequence[int],
                    device: str | torch.device = "cpu") -> pd.DataFrame:
    """For the final net of every adapted run: the batch the thesis's rule reads off `params_fit`
    (`batch_from_fit` from the run's first net and batch; NaN where the line is <= 0, outside the range it
    was fitted on) against `max_batch_size` within the run's memory budget.

    One row per run: seed, scaling, base_parameters, parameters (of the final net), probe_method (how
    `max_batch_size` found its batch on this device: `METHOD_LABELS`), probe_batch, fit_batch.
    """
    device = torch.device(device)
    method = _resolve_method("auto", device)
    rows = []
    for result in runs:
        if "memory_budget" not in result.history:
            raise ValueError(f"run {result.path} has no memory budget: pass runs with batch adaptation only")
        base_parameters = int(result.history["params"].iloc[0])
        parameters = _final_after(result, "params_after", "final_params")
        budget = float(result.history["memory_budget"].iloc[0])
        try:
            fit_batch = float(batch_from_fit(params_fit, base_parameters, parameters,
                                             int(result.history["batch_size"].iloc[0])))
        except ValueError:  # the line predicts 1 / batch <= 0 here: extrapolated past its range
            fit_batch = math.nan
        rows.append({"seed": result.params.get("seed"), "scaling": result.params.get("scaling"),
                     "base_parameters": base_parameters, "parameters": parameters,
                     "probe_method": METHOD_LABELS[method],
                     "probe_batch": max_batch_size(result.model(device), input_shape, budget, device, method),
                     "fit_batch": fit_batch})
    return pd.DataFrame(rows)


@dataclass(frozen=True, kw_only=True)
class BatchAdaptationParams(PruneTrainParams):
    """adapt (required): grow the batch at every reconfiguration or not; scaling ("linear" | "sqrt") and
    rule ("probe" | "fit") apply with adapt=true only (defaults "linear" and "probe"); PruneTrain's knobs
    default to chapter 5's default point, as for "prunetrain"."""

    adapt: bool
    scaling: Literal["linear", "sqrt"] | None = plan_default(lambda _, params: "linear" if params["adapt"] else None)
    rule: Literal["probe", "fit"] | None = plan_default(lambda _, params: "probe" if params["adapt"] else None)


def _prunetrain_batch_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    """One phase of the wide net at the starting batch: an upper bound, the net shrinks and (with
    adaptation) the batch grows, which on a GPU makes an epoch cheaper."""
    train = {key: value for key, value in params.items() if key not in {"adapt", "scaling", "rule", *PRUNE_PARAMS}}
    bound = f"{SHRINKS}, at its starting batch (which grows)" if params["adapt"] else SHRINKS
    return single_phase(profile, "wide", profile.train_config(**train), bound=bound,
                        changes_shapes=BatchAdaptation.changes_shapes)


# version 2: He init, budget in the run precision, none pruned at the end; 3: the fused group lasso
@experiment("prunetrain_batch", version=3, params=BatchAdaptationParams, train_config=True,
            plan=_prunetrain_batch_plan)
def prunetrain_batch_experiment(context: RunContext) -> RunOutput:
    """Section 6.1: PruneTrain on the wide net with or without batch adaptation.

    params: `BatchAdaptationParams` and optionally any TrainConfig field. The batch is capped at the
    training set size. Rule "fit" uses `params_batch_fit` (N = 1..10 at the net's stage count and widths); a run whose pruned net falls below the range where
    that line is positive stops with a ValueError, because the line then says nothing about memory.
    adapt=False trains exactly what chapter 5's "prunetrain" experiment trains with the same params (the
    notebook uses that experiment's cached runs instead).
    """
    params = dict(context.params)
    adapt = params.pop("adapt")
    adaptation_only = sorted(key for key in ("scaling", "rule") if key in params)
    if not adapt and adaptation_only:
        raise ValueError(f"{adaptation_only} only apply with adapt=true; leave them out of a run without adaptation")
    seed = params.pop("seed")
    scaling = params.pop("scaling", None)
    rule = params.pop("rule", None)
    prune = {key: params.pop(key) for key in PRUNE_PARAMS}
    config = context.train_config(seed=seed, **params)
    resnet = context.resnet_config("wide")
    model = seeded_model(resnet, seed)
    data = context.dataset()
    input_shape = tuple(data.train_x.shape[1:])
    adaptation = None
    if adapt:
        params_fit = None
        if rule == "fit":
            params_fit = params_batch_fit(resnet, input_shape, config.batch_size, context.device)
        adaptation = BatchAdaptation(scaling=scaling, rule=rule, max_batch=len(data.train_y),
                                     params_fit=params_fit)
    pruning = PruneTrain(**prune)
    hooks: list[TrainingHook] = [pruning] + ([adaptation] if adaptation is not None else [])
    trainer = context.trainer(model, config, hooks=hooks)
    history = trainer.fit()
    summary = {
        **summarize_training(history),
        "final_batch_size": int(history["batch_size"].iloc[-1]),
        "reconfigurations": int(history["reconfigured"].sum()),
        "final_params_after": int(history["params_after"].iloc[-1]),
        "final_flops_after": int(history["flops_after"].iloc[-1]),
    }
    return RunOutput(history=history, summary=summary, model=trainer.model)


DRAFT_RELATION = "batch_over_params_per_batch"  # the draft's relation (fig. 6.7): batch / (params / batch) vs N


def table_figures(table: pd.DataFrame, fits: pd.DataFrame, measured: bool,
                  stamp: tuple[str, str]) -> dict[str, Figure]:
    """The draft's figures 6.4, 6.5 and 6.7 from a `batch_table` and its `batch_fits`: parameters against
    the blocks per stage N, the maximal batch against N, and the draft's relation batch / (params / batch)
    against N with its least-squares line (slope p-value and r^2 in the title), one panel per stage count.
    `measured` says whether the maximal batches come from CUDA peaks (else from the memory model), which
    the y label of 6.5 and 6.7 names."""
    source = "gemessen" if measured else "Speichermodell"
    figures = {}
    for name, column, ylabel in (("fig_6_4_parameters_blocks", "parameters", plots.label("params")),
                                 ("fig_6_5_max_batch_blocks", "max_batch", f"maximale Batchgröße ({source})")):
        fig, ax = plots.figure("half")
        for s, part in table.groupby("stages"):
            ax.plot(part["blocks"], part[column], "o-", markersize=2.5, label=f"s = {s}")
        ax.set(xlabel="Blöcke pro Phase N", ylabel=ylabel, yscale="log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=6.5)
        plots.stamp(fig, stamp[0], stamp[1], "1 Netz je s, N")
        figures[name] = fig
    stage_counts = sorted(table["stages"].unique())
    fig, axes = plots.figure("full", ncols=len(stage_counts), squeeze=False)
    fig.set_size_inches(6.0, 2.5)
    for index, (ax, s) in enumerate(zip(axes.flat, stage_counts)):  # linear axes: the line is a line
        part = table[table["stages"] == s]
        y = part["max_batch"] / (part["parameters"] / part["max_batch"])
        line = fits[(fits["stages"] == s) & (fits["relation"] == DRAFT_RELATION)].iloc[0]
        ax.plot(part["blocks"], y, "o", markersize=3, color=f"C{index}")
        ax.plot(part["blocks"], line["intercept"] + line["slope"] * part["blocks"], "-", color="0.4", linewidth=0.8)
        ax.set(title=f"s = {s}: p = {line['p']:.2g}, r² = {line['r2']:.2f}", xlabel="Blöcke pro Phase N")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.flat[0].set_ylabel(f"Batch / (Parameter / Batch)\n({source})")
    plots.stamp(fig, stamp[0], stamp[1], "1 Netz je s, N")
    figures["fig_6_7_draft_relation_fit"] = fig
    return figures


def fit_interpretation(fits: pd.DataFrame, measured: bool, alpha: float = 0.05) -> list[str]:
    """What the fits show, in sentences with their numbers: the draft's relation per stage count
    (significant slope or not, r^2), that a slope t-test tests "no linear trend", not "a straight line",
    and, for the modelled memory, that 1 / batch against parameters is linear by construction."""
    sentences = []
    for row in fits[fits["relation"] == DRAFT_RELATION].itertuples():
        verdict = "significant" if row.p < alpha else "not significant"
        sentences.append(f"s = {row.stages}: the draft's relation batch / (params / batch) against N has slope "
                         f"{row.slope:.3g} (p = {row.p:.3g}, {verdict} at {alpha:g}) and r^2 = {row.r2:.2f}.")
    sentences.append("A significant slope only rejects 'no linear trend'; it does not show that the relation is a "
                     "straight line (a curved relation has a significant slope too), and r^2 says how much of the "
                     "variation the line leaves unexplained.")
    inverse = fits[fits["relation"] == "inverse_batch"]
    if not measured and len(inverse):
        sentences.append(f"1 / batch against parameters fits with r^2 >= {inverse['r2'].min():.3f}: the memory "
                         "model is linear in the batch and in the parameters, so this fit is tautological on the "
                         "CPU; only measured CUDA peaks can test it.")
    return sentences


def rule_figure(rules: pd.DataFrame, stamp: tuple[str, str]) -> Figure:
    """The batch the draft's rule reads off the fit against the largest batch the memory check allows,
    per pruned net of the adapted runs (`rule_comparison`), with the line where both agree."""
    fig, ax = plots.figure("half")
    shown = rules.dropna(subset=["fit_batch"])
    ax.plot(shown["probe_batch"], shown["fit_batch"], "o", markersize=3)
    top = max(float(rules["probe_batch"].max()), float(shown["fit_batch"].max()) if len(shown) else 0.0) * 1.1
    ax.plot([0, top], [0, top], "--", color="0.5", linewidth=0.7, label="gleich")
    ax.set(xlabel="max. Batchgröße (Speicherprüfung)", ylabel="Batchgröße (Regel des Entwurfs)",
           xlim=(0, top), ylim=(0, top))
    if shown.empty:  # the line is <= 0 at every pruned net: say so instead of an empty plot
        ax.text(0.5, 0.55, f"Die Regel ergibt für alle {len(rules)} verkleinerten Netze\n1 / Batchgröße ≤ 0:"
                "\nsie sind kleiner als jedes Netz,\nan das die Gerade angepasst wurde.",
                transform=ax.transAxes, ha="center", va="center", fontsize=7)
    ax.legend(fontsize=6.5, loc="lower right")
    plots.stamp(fig, stamp[0], stamp[1], f"{len(shown)} von {len(rules)} Netzen")
    return fig


# The draft's table 6.1 (RTX 2080 Ti, CIFAR-10, GPU memory filled): parameters and the largest batch per s and
# N. Cells the draft leaves empty or that are garbled in its text (s = 2, N = 3: "3382"; s = 3, N = 2: "434")
# are None; s = 3, N = 1..3 have no entries.
DRAFT_TABLE_6_1 = {
    1: ([5306, 9978, 14650, 19322, 23994, 28666, 33338, 38010, 42682, 47354],
        [506, 435, 382, 339, 304, 277, 256, 236, 218, 205]),
    2: ([24090, 47322, 70554, 93786, 117018, 140250, 163482, 186714, 209946, 233178],
        [506, 435, None, 339, 339, 256, 229, 204, 184, 171]),
    3: ([None, None, None, 390170, 487386, 584602, 681818, 779034, 876250, 973466],
        [None, None, None, 301, 256, 223, 198, 175, 161, 147]),
}


def with_draft_table(table: pd.DataFrame) -> pd.DataFrame:
    """A `batch_table` with the draft's table 6.1 next to it: columns parameters_draft and max_batch_draft
    (NaN where the draft has no legible entry). The parameter counts are the thesis nets' at any input
    size; the maximal batches are not comparable one to one (the draft's GPU memory and CIFAR-10 input
    against this profile's budget and input), only in how they fall with N."""
    rows = []
    for row in table.itertuples():
        params, batches = DRAFT_TABLE_6_1.get(int(row.stages), ([], []))
        index = int(row.blocks) - 1
        inside = 0 <= index < len(params)
        rows.append({"parameters_draft": params[index] if inside else None,
                     "max_batch_draft": batches[index] if inside else None})
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(rows, dtype=float)], axis=1)


def group_label(group: str) -> str:
    """The legend text of a chapter 6.1 group in the figures' language: "baseline" -> "Baseline",
    "PruneTrain + batch (linear)" -> "PruneTrain + Batchanpassung (linear)"."""
    if plots.language() == "en":
        return group
    if group == BASELINE_GROUP:
        return "Baseline"
    return group.replace(" + batch (", " + Batchanpassung (").replace("thesis fit", "Gerade des Entwurfs")

