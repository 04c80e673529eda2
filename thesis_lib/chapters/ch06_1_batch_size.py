"""Chapter 6.1 (notebook 06_1_batch_size): batch size against memory, and PruneTrain with batch adaptation.

The chapter's sizes per profile (`ChapterSettings`, `chapter_settings`), its sweeps (`sweeps`: the epoch
timings of fig. 6.8, the baseline, PruneTrain without and with batch adaptation), the experiment
"prunetrain_batch" (PruneTrain at chapter 5's default point with `BatchAdaptation`), the memory
measurements, tables (6.1, 6.2, 6.9), fits and sentences the notebook prints, and its figures 6.1 to 6.8
and 6.19. Memory measurement, the batch search and the adaptation hook are `thesis_lib.methods.batchsize`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import plots, stats
from ..experiments import (
    TIMING_COLUMNS,
    Profile,
    RunContext,
    RunOutput,
    RunPlan,
    RunResult,
    SweepResult,
    experiment,
    get_profile,
    plan_default,
    single_phase,
    summarize_training,
)
from ..methods import batchsize
from ..methods.batchsize import (
    RULES,
    SCALINGS,
    BatchAdaptation,
    MemoryModel,
    batch_from_fit,
    max_batch_size,
    params_batch_fit,
    resolve_memory_method,
)
from ..methods.prunetrain import PruneTrain
from ..models import ResNetConfig
from ..stats import LinearFit
from ..training import TrainingHook, seeded_model
from .ch05_prunetrain import PRUNE_PARAMS, SHRINKS, PruneTrainParams, prunetrain_plan, reconfiguration_epochs
from .contract import Sweeps, plan_for, quantities

__all__ = [
    "ANNOTATION_FONTSIZE",
    "BASELINE_GROUP",
    "BatchAdaptationParams",
    "CHAPTER_SETTINGS",
    "ChapterSettings",
    "DRAFT_RELATION",
    "DRAFT_RELATION_FIGURE_SIZE",
    "DRAFT_TABLE_6_1",
    "FIGURE_TEXT",
    "FIT_COLUMNS",
    "GroupedRuns",
    "LEGEND_FONTSIZE",
    "METHOD_LABELS",
    "MIB",
    "PRUNETRAIN_GROUP",
    "SMALL_LEGEND_FONTSIZE",
    "SUMMARY_QUANTITIES",
    "TABLE_6_1_CAPTION",
    "accuracy_zoom_figure",
    "adaptation_figure",
    "adaptation_grid",
    "adaptation_group",
    "adaptation_table",
    "adaptation_tests",
    "anchor_search",
    "anchor_sentence",
    "baseline_grid",
    "batch_fit_figure",
    "chapter_settings",
    "draft_relation_figure",
    "epoch_time_figure",
    "epoch_time_grid",
    "epoch_time_per_batch",
    "epoch_time_sentence",
    "fit_interpretation",
    "fit_sentences",
    "fit_table",
    "group_label",
    "group_runs",
    "line_fits",
    "max_batch_figure",
    "measurement_device",
    "measures_peaks",
    "memory_figure",
    "memory_model_sentence",
    "memory_table",
    "parameter_batch_table",
    "premise_sentences",
    "residual_sentences",
    "parameters_figure",
    "prunetrain_batch_experiment",
    "prunetrain_grid",
    "rule_comparison",
    "rule_figure",
    "rule_sentences",
    "rule_table",
    "run_group",
    "size_summary",
    "sweeps",
    "table_budget",
    "table_by_blocks",
    "thesis_fit",
    "timed_epochs",
    "wide_memory",
    "with_draft_table",
]


@dataclass(frozen=True)
class ChapterSettings:
    """Per-profile sizes of chapter 6.1's experiments.

    PruneTrain itself runs at chapter 5's default point (`ch05_prunetrain.prunetrain_plan(profile).default()`),
    so the runs without adaptation are chapter 5's cached runs. On `smoke` that point removes no channel
    (8 steps in all), so there the adapted runs never grow the batch: smoke only checks the pipeline.
    """

    scalings: tuple[str, ...]
    time_batches: tuple[int, ...]  # fig. 6.8: batch sizes whose epoch time is measured
    time_epochs: int  # epochs per timing run; the first (warm-up) epoch is not used
    profile_batches: tuple[int, ...]  # fig. 6.1: batch sizes whose memory is measured
    table_blocks: tuple[int, ...] = tuple(range(1, 11))  # N of the batch table (the thesis: 1..10)


CHAPTER_SETTINGS: dict[str, ChapterSettings] = {
    "smoke": ChapterSettings(
        scalings=("linear",),
        time_batches=(32, 128),
        time_epochs=2,
        profile_batches=(1, 8, 32, 128, 512),
        table_blocks=(1, 2, 3),
    ),
    "quick": ChapterSettings(
        scalings=("linear",),
        time_batches=(16, 32, 64, 128, 256, 512),
        time_epochs=3,
        profile_batches=(1, 8, 16, 32, 64, 128, 256, 512),
    ),
    "full": ChapterSettings(
        scalings=("linear", "sqrt"),
        time_batches=(32, 64, 128, 256, 512, 1024),
        time_epochs=3,
        profile_batches=(1, 16, 32, 64, 128, 256, 512, 1024),
    ),
}


def chapter_settings(profile: str | Profile) -> ChapterSettings:
    """Chapter 6.1's sizes for `profile` (see `ChapterSettings`)."""
    return plan_for(CHAPTER_SETTINGS, profile, "6.1")


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
    return [
        {"adapt": True, "scaling": scaling, **plan.default(), **plan.training(), "seed": seed}
        for scaling in chapter_settings(profile).scalings
        for seed in profile.seeds
    ]


def baseline_grid(profile: str | Profile) -> list[dict[str, Any]]:
    """Params of the "baseline" runs the PruneTrain arms are compared with: chapter 5's (same batch)."""
    return prunetrain_plan(profile).baseline_grid(get_profile(profile).seeds)


def epoch_time_grid(profile: str | Profile, seed: int = 0) -> list[dict[str, Any]]:
    """Params of the "baseline" runs that time an epoch of the wide net per batch size (fig. 6.8)."""
    settings = chapter_settings(profile)
    return [
        {"model": "wide", "schedule": "constant", "batch_size": batch, "epochs": settings.time_epochs, "seed": seed}
        for batch in settings.time_batches
    ]


def sweeps(profile: str | Profile) -> Sweeps:
    """Notebook 06_1's sweeps in its order: the epoch timings of fig. 6.8, then the baseline, PruneTrain
    without and with batch adaptation (the first two are chapter 5's runs)."""
    return {
        "epoch_time": ("baseline", epoch_time_grid(profile)),
        "baseline": ("baseline", baseline_grid(profile)),
        "prunetrain": ("prunetrain", prunetrain_grid(profile)),
        "adaptation": ("prunetrain_batch", adaptation_grid(profile)),
    }


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
    return single_phase(
        profile, "wide", profile.train_config(**train), bound=bound, changes_shapes=BatchAdaptation.changes_shapes
    )


# version 2: He init, budget in the run precision, none pruned at the end; 3: the fused group lasso;
# 4: test_acc_after_zeroing in the history
@experiment("prunetrain_batch", version=4, params=BatchAdaptationParams, train_config=True, plan=_prunetrain_batch_plan)
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
        adaptation = BatchAdaptation(scaling=scaling, rule=rule, max_batch=len(data.train_y), params_fit=params_fit)
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
    raise ValueError(
        f"a run of experiment {result.name!r} belongs to no group of chapter 6.1; "
        "pass sweeps of 'baseline', 'prunetrain' and 'prunetrain_batch'"
    )


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
        summaries.append(
            sweep_result.summary.assign(
                group=labels,
                final_params_after=[_final_after(r, "params_after", "final_params") for r in sweep_result.runs],
                final_flops_after=[_final_after(r, "flops_after", "final_flops") for r in sweep_result.runs],
            )
        )
        epochs = [len(result.history) for result in sweep_result.runs]
        histories.append(sweep_result.history.assign(group=np.repeat(labels, epochs)))
    summary = pd.concat(summaries, ignore_index=True)
    fixed = [BASELINE_GROUP, PRUNETRAIN_GROUP]
    groups = [g for g in fixed if g in set(summary["group"])]
    groups += [g for g in dict.fromkeys(summary["group"]) if g not in fixed]
    return GroupedRuns(summary=summary, history=pd.concat(histories, ignore_index=True), groups=groups)


METHOD_LABELS = {"peak": "search by measured CUDA peaks", "model": "memory model"}


def rule_comparison(
    runs: Sequence[RunResult], params_fit: LinearFit, input_shape: Sequence[int], device: str | torch.device = "cpu"
) -> pd.DataFrame:
    """For the final net of every adapted run: the batch the thesis's rule reads off `params_fit`
    (`batch_from_fit` from the run's first net and batch; NaN where the line is <= 0, outside the range it
    was fitted on) against `max_batch_size` within the run's memory budget.

    One row per run: seed, scaling, base_parameters, parameters (of the final net), probe_method (how
    `max_batch_size` found its batch on this device: `METHOD_LABELS`), probe_batch, fit_batch.
    """
    device = torch.device(device)
    method = resolve_memory_method("auto", device)
    rows = []
    for result in runs:
        if "memory_budget" not in result.history:
            raise ValueError(f"run {result.path} has no memory budget: pass runs with batch adaptation only")
        base_parameters = int(result.history["params"].iloc[0])
        parameters = _final_after(result, "params_after", "final_params")
        budget = float(result.history["memory_budget"].iloc[0])
        try:
            fit_batch = float(
                batch_from_fit(params_fit, base_parameters, parameters, int(result.history["batch_size"].iloc[0]))
            )
        except ValueError:  # the line predicts 1 / batch <= 0 here: extrapolated past its range
            fit_batch = math.nan
        rows.append(
            {
                "seed": result.params.get("seed"),
                "scaling": result.params.get("scaling"),
                "base_parameters": base_parameters,
                "parameters": parameters,
                "probe_method": METHOD_LABELS[method],
                "probe_batch": max_batch_size(result.model(device), input_shape, budget, device, method),
                "fit_batch": fit_batch,
            }
        )
    return pd.DataFrame(rows)


MIB = 2**20  # bytes per MiB


def measurement_device(profile: Profile) -> torch.device:
    """The device the chapter measures memory on (`Profile.resolved_device`), with the profile's CPU
    threads applied."""
    device = profile.resolved_device()
    profile.apply_cpu_threads()
    return device


def measures_peaks(device: torch.device) -> bool:
    """Whether maximal batches on `device` come from measured CUDA peaks (else from the memory model)."""
    return device.type == "cuda"


def _wide_config(profile: Profile) -> ResNetConfig:
    return profile.resnet("wide", profile.input_size[0], profile.num_classes)


def wide_memory(profile: Profile, device: torch.device) -> tuple[pd.DataFrame, MemoryModel]:
    """Figure 6.1's measurements: `memory_profile` of the wide net at the profile's depth (seed 0, the net
    the experiments train) at the settings' batch sizes, and its memory model."""
    wide = seeded_model(_wide_config(profile), 0).to(device)
    memory = batchsize.memory_profile(
        wide, profile.input_size, chapter_settings(profile).profile_batches, device=device
    )
    memory_model = batchsize.fit_memory_model(wide, profile.input_size, device=device, method="model")
    return memory, memory_model


def memory_model_sentence(memory_model: MemoryModel) -> str:
    """The memory model's terms: model state, bytes per sample and the fixed rest."""
    return (
        f"memory model: {memory_model.static_bytes / MIB:.3f} MiB model state + "
        f"{memory_model.per_sample_bytes / 1024:.1f} KiB per sample (+ {memory_model.fixed_bytes:.0f} bytes)"
    )


def memory_table(memory: pd.DataFrame) -> pd.DataFrame:
    """A `memory_profile` in MiB (its byte columns renamed "... (MiB)")."""
    return memory.assign(
        **{c: memory[c] / MIB for c in ["saved_bytes", "state_bytes", "model_bytes", "peak_bytes"]}
    ).rename(columns=lambda c: c.replace("_bytes", " (MiB)"))


def table_budget(profile: Profile, device: torch.device) -> float:
    """Table 6.1's memory budget: what the thesis's baseline net needs at batch 256 on the profile's input
    (`batchsize.reference_budget`)."""
    return batchsize.reference_budget(profile.input_size, profile.num_classes, device=device)


def anchor_search(profile: Profile, budget: float, device: torch.device) -> tuple[int, float]:
    """One timed `max_batch_size` search, for the thesis's baseline net (s = 3, N = 5) under `budget`: the
    batch found and the seconds it took (building the net included)."""
    start = time.perf_counter()
    anchor = max_batch_size(
        seeded_model(_wide_config(profile).with_(blocks=(5, 5, 5)), 0).to(device),
        profile.input_size,
        budget,
        device=device,
    )
    return anchor, time.perf_counter() - start


def anchor_sentence(budget: float, anchor: int, seconds: float, device: torch.device) -> str:
    """The budget and what the timed search of `anchor_search` found, and how long it took."""
    searched = "CUDA peak" if measures_peaks(device) else "memory model"
    return (
        f"budget {budget / MIB:.2f} MiB; one max_batch_size search ({searched}) took {seconds:.3f} s and "
        f"found {anchor} for s=3, N=5"
    )


def parameter_batch_table(profile: Profile, budget: float, device: torch.device) -> pd.DataFrame:
    """Table 6.1: parameters and maximal batch under `budget` for s = 1..3 and the settings' N
    (`batchsize.batch_table`)."""
    return batchsize.batch_table(
        profile.input_size, profile.num_classes, budget, blocks=chapter_settings(profile).table_blocks, device=device
    )


TABLE_6_1_CAPTION = "Parameter und maximale Batchgröße je s und N"


def table_by_blocks(table: pd.DataFrame) -> pd.DataFrame:
    """Table 6.1 laid out as the draft's: one row per N, parameters and maximal batch per s."""
    return table.pivot(index="blocks", columns="stages", values=["parameters", "max_batch"])


def line_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Section 6.1.1's line fits of table 6.1 with the t-test of their slope (`batchsize.batch_fits`) and
    p_holm: each slope's p Holm-adjusted over all of them (one family, table 6.2)."""
    fits = batchsize.batch_fits(table)
    return fits.assign(p_holm=stats.adjust_pvalues(fits["p"]))


FIT_COLUMNS = [
    "stages",
    "relation",
    "x",
    "n",
    "slope",
    "intercept",
    "r2",
    "p",
    "p_holm",
    "slope_ci_low",
    "slope_ci_high",
]


def fit_table(fits: pd.DataFrame) -> pd.DataFrame:
    """Table 6.2: the `FIT_COLUMNS` of `line_fits` (n and the Holm-adjusted p included)."""
    return fits[FIT_COLUMNS]


def fit_sentences(fits: pd.DataFrame) -> list[str]:
    """Every fit of `line_fits` in a sentence: slope, its p and Holm p with the verdict at 5 % (after the
    adjustment), intercept, r^2; a direction only for a significant slope."""
    sentences = []
    for row in fits.itertuples():
        verdict = "significant" if row.p_holm < 0.05 else "not significant, no trend shown"
        sentences.append(
            f"s={row.stages} {row.relation} against {row.x} (n = {row.n}): slope {row.slope:.3g} (p = {row.p:.3g}, "
            f"Holm p = {row.p_holm:.3g}, {verdict} at 5%), intercept {row.intercept:.3g}, r^2 = {row.r2:.3f}"
        )
    return sentences


DRAFT_RELATION = "batch_over_params_per_batch"  # the draft's relation (fig. 6.7): batch / (params / batch) vs N


def fit_interpretation(fits: pd.DataFrame, measured: bool, alpha: float = 0.05) -> list[str]:
    """What the fits show, in sentences with their numbers: the draft's relation per stage count
    (significant slope or not, r^2), that a slope t-test tests "no linear trend", not "a straight line",
    and, for the modelled memory, that 1 / batch against parameters is linear by construction."""
    sentences = []
    for row in fits[fits["relation"] == DRAFT_RELATION].itertuples():
        verdict = "significant" if row.p_holm < alpha else "not significant"
        sentences.append(
            f"s = {row.stages}: the draft's relation batch / (params / batch) against N has slope "
            f"{row.slope:.3g} (Holm p = {row.p_holm:.3g} over table 6.2, {verdict} at {alpha:g}) and "
            f"r^2 = {row.r2:.2f}."
        )
    sentences.append(
        "A significant slope only rejects 'no linear trend'; it does not show that the relation is a "
        "straight line (a curved relation has a significant slope too), and r^2 says how much of the "
        "variation the line leaves unexplained."
    )
    inverse = fits[fits["relation"] == "inverse_batch"]
    if not measured and len(inverse):
        sentences.append(
            f"1 / batch against parameters fits with r^2 >= {inverse['r2'].min():.3f}: the memory "
            "model is linear in the batch and in the parameters, so this fit is tautological on the "
            "CPU; only measured CUDA peaks can test it."
        )
    return sentences


def residual_sentences(table: pd.DataFrame, fits: pd.DataFrame, relation: str = DRAFT_RELATION) -> list[str]:
    """Per stage count, what the line of `relation` (the draft's, figs. 6.5 / 6.7) leaves out (review
    finding 16): the point farthest from it, in percent of the line's value there, and whether the intercept
    is negative, i.e. the line predicts a negative value at N = 0 and cannot be read outside its N."""
    x_column, y_of = batchsize.FIT_RELATIONS[relation]
    sentences = []
    for row in fits[fits["relation"] == relation].itertuples():
        part = table[table["stages"] == row.stages]
        observed = y_of(part).to_numpy(float)
        predicted = row.intercept + row.slope * part[x_column].to_numpy(float)
        worst = int(np.argmax(np.abs(observed - predicted) / np.abs(observed)))  # farthest, relative to the point
        where = f"{x_column} = {part[x_column].iloc[worst]:g}"
        if predicted[worst] > 0:
            relative = observed[worst] / predicted[worst] - 1.0
            side = "above" if relative > 0 else "below"
            farthest = f"{where}, {abs(relative):.0%} {side} it"
        else:
            farthest = f"{where}: {observed[worst]:.3g} where the line gives {predicted[worst]:.3g}"
        sentence = f"s = {row.stages}: the point farthest from the line is {farthest}"
        if row.intercept < 0:
            sentence += (
                f"; the intercept is negative ({row.intercept:.3g}): at {x_column} = 0 the line predicts a "
                "negative value, so it describes only the fitted range"
            )
        sentences.append(sentence + ".")
    return sentences


# The draft's table 6.1 (RTX 2080 Ti, CIFAR-10, GPU memory filled): parameters and the largest batch per s and
# N. Cells the draft leaves empty or that are garbled in its text (s = 2, N = 3: "3382"; s = 3, N = 2: "434")
# are None; s = 3, N = 1..3 have no entries.
DRAFT_TABLE_6_1 = {
    1: (
        [5306, 9978, 14650, 19322, 23994, 28666, 33338, 38010, 42682, 47354],
        [506, 435, 382, 339, 304, 277, 256, 236, 218, 205],
    ),
    2: (
        [24090, 47322, 70554, 93786, 117018, 140250, 163482, 186714, 209946, 233178],
        [506, 435, None, 339, 339, 256, 229, 204, 184, 171],
    ),
    3: (
        [None, None, None, 390170, 487386, 584602, 681818, 779034, 876250, 973466],
        [None, None, None, 301, 256, 223, 198, 175, 161, 147],
    ),
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
        rows.append(
            {
                "parameters_draft": params[index] if inside else None,
                "max_batch_draft": batches[index] if inside else None,
            }
        )
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(rows, dtype=float)], axis=1)


def timed_epochs(history: pd.DataFrame) -> pd.DataFrame:
    """Figure 6.8's epochs: the timing runs' `history` without the first (warm-up) epoch."""
    return history[history.epoch > 1]


def epoch_time_per_batch(timed: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count of the epoch time per batch size (`timed_epochs`)."""
    return timed.groupby("batch_size_param")["epoch_time"].agg(["mean", "std", "count"])


def epoch_time_sentence(per_batch: pd.DataFrame) -> str:
    """How much longer an epoch at the largest batch takes than at the smallest (`epoch_time_per_batch`)."""
    small, large = per_batch.index.min(), per_batch.index.max()
    small_mean, large_mean = per_batch.loc[small, "mean"], per_batch.loc[large, "mean"]
    return (
        f"An epoch at batch {large} takes {large_mean / small_mean:.2f} times as long as at batch {small} "
        f"({large_mean:.3f} s vs {small_mean:.3f} s)."
    )


def adaptation_table(grouped: GroupedRuns) -> pd.DataFrame:
    """Batch size, learning rate and parameters per epoch of the adapted groups (mean over their runs), one
    column block per quantity and group."""
    adapted_history = grouped.history[grouped.history.group.isin(grouped.groups[2:])]
    return adapted_history.groupby(["group", "epoch"])[["batch_size", "lr", "params"]].mean().round(4).unstack(0)


SUMMARY_QUANTITIES = ["final_acc", "total_time", "training_flops", "final_params_after", "final_flops_after"]


def size_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Accuracy, total training time, training FLOPs and final size per group (`stats.summary_table`), indexed by
    quantity and group."""
    return pd.concat(
        [
            stats.summary_table(summary, by="group", value=column).assign(quantity=column)
            for column in SUMMARY_QUANTITIES
        ]
    ).set_index(["quantity", "group"])


def adaptation_tests(grouped: GroupedRuns) -> pd.DataFrame:
    """Table 6.3: Welch t-tests, one Holm family, of every adapted group against PruneTrain and of every
    PruneTrain group against the baseline, on final accuracy, total training time and final parameters."""
    groups = grouped.groups
    pairs = [(g, groups[1]) for g in groups[2:]] + [(g, groups[0]) for g in groups[1:]]
    return stats.with_holm(
        stats.compare_groups(
            grouped.summary,
            "group",
            pairs,
            [*quantities("final_acc", "total_time"), ("final_params_after", "final parameters", "")],
            timing_columns=TIMING_COLUMNS,
        )
    )


def premise_sentences(grouped: GroupedRuns, tests: pd.DataFrame) -> list[str]:
    """Whether the draft's premise holds on this profile (review finding 15), per adapted group: how far the
    batch grew and the parameters fell (mean over its runs, first epoch to last) and what table 6.3's total
    time test says against PruneTrain with a fixed batch. "Reproduced" only for a time significantly lower
    after Holm; a test that is not comparable or not significant says so."""
    history = grouped.history
    sentences = []
    for group in grouped.groups[2:]:
        runs = history[history["group"] == group].sort_values("epoch").groupby("seed")
        first, last = runs.first(), runs.last()
        batch_from, batch_to = float(first["batch_size"].mean()), float(last["batch_size"].mean())
        params_change = float((last["params"] / first["params"]).mean()) - 1.0
        row = tests[tests["comparison"] == f"total training time, {group} vs {grouped.groups[1]}"].iloc[0]
        times = f"total training time {row['mean_a']:.3g} s vs {row['mean_b']:.3g} s with a fixed batch"
        if str(row["verdict"]).startswith("not comparable"):
            verdict = f"the times are {row['verdict']}, so the draft's premise cannot be judged here"
        elif row["verdict"] == "significant" and row["diff"] < 0:
            verdict = "significantly shorter after Holm: the draft's premise (a growing batch saves time) is reproduced"
        else:
            verdict = (
                f"{row['verdict']} after Holm: the draft's premise (a growing batch saves time) is not "
                "reproduced on this profile"
            )
        sentences.append(
            f"{group}: the batch grows from {batch_from:.3g} to {batch_to:.3g} ({batch_to / batch_from - 1:+.0%}) "
            f"while the parameters change by {params_change:+.0%}; {times}, {verdict}."
        )
    return sentences


def thesis_fit(profile: Profile, device: torch.device) -> LinearFit:
    """The draft's line of 1 / maximal batch against parameters over the settings' N, at the wide net's
    stages and widths and the profile's batch (`batchsize.params_batch_fit`)."""
    return params_batch_fit(
        _wide_config(profile),
        profile.input_size,
        profile.batch_size,
        device=device,
        blocks=chapter_settings(profile).table_blocks,
    )


def rule_sentences(rules: pd.DataFrame, line: LinearFit, blocks: Sequence[int]) -> list[str]:
    """The fitted line and how the draft's rule compares with the memory check (`rule_comparison`): the
    mean ratio of their batches where the line applies, and how many nets lie outside its range."""
    method = rules.probe_method.iloc[0]
    sentences = [
        f"fit over N = {list(blocks)}: 1/batch = {line.intercept:.3g} + {line.slope:.3g} * parameters, under the "
        "memory the deepest of those nets needs at the profile's batch; table 6.2 fits under table 6.1's budget "
        "(the thesis's baseline net at batch 256), so its intercept and slope differ from this line's."
    ]
    inside = rules.fit_batch.notna()
    if inside.any():
        ratio = (rules.fit_batch[inside] / rules.probe_batch[inside]).mean()
        sentences.append(
            f"Where the line applies ({inside.sum()} of {len(rules)} nets), its batch is on average "
            f"{ratio:.2f} times the batch the {method} finds."
        )
    if (~inside).any():
        sentences.append(
            f"For {(~inside).sum()} of {len(rules)} pruned nets the line predicts 1 / batch <= 0: "
            f"they are smaller than any net it was fitted on."
        )
    return sentences


def rule_table(rules: pd.DataFrame) -> pd.DataFrame:
    """`rule_comparison` with its batch columns named by how each was found."""
    method = rules.probe_method.iloc[0]
    return rules.drop(columns="probe_method").rename(
        columns={"probe_batch": f"batch ({method})", "fit_batch": "batch (thesis fit)"}
    )


LEGEND_FONTSIZE = 6.5
SMALL_LEGEND_FONTSIZE = 6  # figure 6.3's legend (half width)
ANNOTATION_FONTSIZE = 7  # figure 6.19's note where the rule gives no batch
DRAFT_RELATION_FIGURE_SIZE = (6.0, 2.5)  # figure 6.7, one panel per stage count

FIGURE_TEXT = {
    "model_memory": {"de": "Modell: gespeicherte Tensoren + Modellzustand", "en": "model: saved tensors + model state"},
    "measured_memory": {
        "de": "gemessen: CUDA-Maximum eines Trainingsschritts",
        "en": "measured: CUDA peak of a training step",
    },
    "one_net": {"de": "1 Netz", "en": "1 net"},
    "one_net_each": {"de": "1 Netz je s, N", "en": "1 net per s, N"},
    "blocks": {"de": "Blöcke pro Phase N", "en": "blocks per stage N"},
    "stages": {"de": "Phasen", "en": "stages"},
    "params_per_batch": {"de": "Parameter / maximale Batchgröße", "en": "parameters / maximal batch size"},
    "inverse_batch": {"de": "1 / maximale Batchgröße", "en": "1 / maximal batch size"},
    "as_draft": {"de": "(a) wie im Entwurf", "en": "(a) as in the draft"},
    "inverse_line": {"de": "(b) 1 / Batchgröße und Gerade", "en": "(b) 1 / batch size and line"},
    "measured": {"de": "gemessen", "en": "measured"},
    "modelled": {"de": "Speichermodell", "en": "memory model"},
    "max_batch": {"de": "maximale Batchgröße ({source})", "en": "maximal batch size ({source})"},
    "draft_relation": {
        "de": "Batch / (Parameter / Batch)\n({source})",
        "en": "batch / (parameters / batch)\n({source})",
    },
    "accuracy": {"de": "Genauigkeit", "en": "accuracy"},
    "reconfiguration": {"de": "Rekonfiguration (eines Laufs)", "en": "reconfiguration (of one run)"},
    "second_half": {"de": "zweite Hälfte", "en": "second half"},
    "nets": {"de": "{n} Netze", "en": "{n} nets"},
    "epoch_band": {
        "de": "Band: Minimum bis Maximum über {epochs} × {runs}",
        "en": "band: minimum to maximum over {epochs} × {runs}",
    },
    "one_run": {"de": "1 Lauf", "en": "1 run"},
    "run": {"de": "{n} Läufe", "en": "{n} runs"},
    "one_epoch": {"de": "1 Epoche", "en": "1 epoch"},
    "epoch": {"de": "{n} Epochen", "en": "{n} epochs"},
    "probe_points": {
        "de": "verkleinerte Netze (Speicherprüfung)",
        "en": "pruned nets (memory check)",
    },
    "rule_line": {"de": "Gerade der Regel des Entwurfs", "en": "the draft's rule: line"},
    "parameters_thousands": {"de": "Parameter (Tausend)", "en": "parameters (thousands)"},
}


def _text(key: str, **values: Any) -> str:
    return plots.translate(FIGURE_TEXT, key, **values)


def memory_figure(memory: pd.DataFrame, stamp: tuple[str, str]) -> Figure:
    """Figure 6.1: memory of a training step against the batch size (`wide_memory`): the memory model and,
    on CUDA, the measured peak; `stamp` = (profile, dataset)."""
    fig, ax = plots.figure("half")
    ax.plot(memory.batch_size, memory.model_bytes / MIB, "o-", label=_text("model_memory"))
    if memory.peak_bytes.notna().any():
        ax.plot(memory.batch_size, memory.peak_bytes / MIB, "s-", label=_text("measured_memory"))
    ax.set(xlabel=plots.label("batch_size"), ylabel=plots.label("memory"), ylim=(0, None))
    ax.legend(fontsize=LEGEND_FONTSIZE)
    plots.stamp(fig, stamp[0], stamp[1], _text("one_net"))
    return fig


def batch_fit_figure(table: pd.DataFrame, fits: pd.DataFrame, stamp: tuple[str, str]) -> Figure:
    """Figure 6.6: (a) parameters / maximal batch against N, as the draft; (b) 1 / maximal batch against
    the parameters with the line of `line_fits` ("inverse_batch"), per stage count."""
    fig, axes = plots.figure("full", ncols=2)
    for s, part in table.groupby("stages"):
        axes[0].plot(part.blocks, part.parameters / part.max_batch, "o-", label=f"s = {s}")
        axes[1].plot(part.parameters, 1 / part.max_batch, "o", label=f"s = {s}")
        line = fits[(fits.stages == s) & (fits.relation == "inverse_batch")].iloc[0]
        axes[1].plot(part.parameters, line.intercept + line.slope * part.parameters, "-", color="0.4", linewidth=0.7)
    axes[0].set(xlabel=_text("blocks"), ylabel=_text("params_per_batch"), yscale="log", title=_text("as_draft"))
    axes[1].set(
        xlabel=plots.label("params"),
        ylabel=_text("inverse_batch"),
        xscale="log",
        yscale="log",
        title=_text("inverse_line"),
    )
    axes[0].legend(title=_text("stages"))
    plots.stamp(fig, stamp[0], stamp[1], _text("one_net_each"))
    return fig


def _source(measured: bool) -> str:
    return _text("measured") if measured else _text("modelled")


def _blocks_figure(
    table: pd.DataFrame, column: str, ylabel: str, stamp: tuple[str, str], yscale: Literal["linear", "log"]
) -> Figure:
    """One column of table 6.1 against N, one line per stage count, on a `yscale` y axis."""
    fig, ax = plots.figure("half")
    for s, part in table.groupby("stages"):
        ax.plot(part["blocks"], part[column], "o-", markersize=2.5, label=f"s = {s}")
    ax.set(xlabel=_text("blocks"), ylabel=ylabel, yscale=yscale)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=LEGEND_FONTSIZE)
    plots.stamp(fig, stamp[0], stamp[1], _text("one_net_each"))
    return fig


def parameters_figure(table: pd.DataFrame, stamp: tuple[str, str]) -> Figure:
    """The draft's figure 6.4: parameters against the blocks per stage N (`parameter_batch_table`), on a
    linear axis: the parameters grow linearly in N, which a log axis would show as saturating."""
    return _blocks_figure(table, "parameters", plots.label("params"), stamp, yscale="linear")


def max_batch_figure(table: pd.DataFrame, measured: bool, stamp: tuple[str, str]) -> Figure:
    """The draft's figure 6.5: the maximal batch against N; `measured` says whether the batches come from
    CUDA peaks (else from the memory model), which the y label names."""
    return _blocks_figure(table, "max_batch", _text("max_batch", source=_source(measured)), stamp, yscale="log")


def draft_relation_figure(table: pd.DataFrame, fits: pd.DataFrame, measured: bool, stamp: tuple[str, str]) -> Figure:
    """The draft's figure 6.7: its relation batch / (params / batch) against N with the least-squares line
    of `line_fits` (slope p-value and r^2 in the title), one panel per stage count."""
    stage_counts = sorted(table["stages"].unique())
    fig, axes = plots.figure("full", ncols=len(stage_counts), squeeze=False)
    fig.set_size_inches(*DRAFT_RELATION_FIGURE_SIZE)
    for index, (ax, s) in enumerate(zip(axes.flat, stage_counts)):  # linear axes: the line is a line
        part = table[table["stages"] == s]
        y = part["max_batch"] / (part["parameters"] / part["max_batch"])
        line = fits[(fits["stages"] == s) & (fits["relation"] == DRAFT_RELATION)].iloc[0]
        ax.plot(part["blocks"], y, "o", markersize=3, color=f"C{index}")
        ax.plot(part["blocks"], line["intercept"] + line["slope"] * part["blocks"], "-", color="0.4", linewidth=0.8)
        ax.set(title=f"s = {s}: p = {line['p']:.2g}, r² = {line['r2']:.2f}", xlabel=_text("blocks"))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.flat[0].set_ylabel(_text("draft_relation", source=_source(measured)))
    plots.stamp(fig, stamp[0], stamp[1], _text("one_net_each"))
    return fig


def epoch_time_figure(timed: pd.DataFrame, batches: Sequence[int], stamp: tuple[str, str]) -> Figure:
    """Figure 6.8: epoch time of the wide net against the batch size (`timed_epochs`; mean, min-max band over
    every timed epoch of every run, which the title says: with one run the band is its epochs' spread), the x
    axis ticked at `batches` on a log2 scale."""
    counts = timed.groupby(["model", "batch_size_param"]).agg(runs=("seed", "nunique"), epochs=("epoch", "nunique"))
    fig, ax = plots.figure("half")
    ax.set_title(
        _text(
            "epoch_band",
            epochs=_count_text("epoch", int(counts["epochs"].min())),
            runs=_count_text("run", int(counts["runs"].min())),
        ),
        fontsize=SMALL_LEGEND_FONTSIZE,
    )
    plots.line_with_band(ax, timed, x="batch_size_param", y="epoch_time", hue="model")
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    ax.set(xlabel=plots.label("batch_size"), ylabel=plots.label("epoch_time"), ylim=(0, None))
    ax.get_legend().remove()
    plots.stamp(fig, stamp[0], stamp[1], timed.groupby(["model", "batch_size_param"])["seed"].nunique().min())
    return fig


def _count_text(noun: str, n: int) -> str:
    """ "1 Lauf", "2 Läufe" (noun "run" or "epoch", in the figures' language)."""
    return _text(f"one_{noun}") if n == 1 else _text(noun, n=n)


def _labelled(grouped: GroupedRuns) -> pd.DataFrame:
    return grouped.history.assign(group=grouped.history["group"].map(group_label))


def _runs_per_group(grouped: GroupedRuns) -> int:
    return int(grouped.summary.groupby("group").size().min())


def adaptation_figure(grouped: GroupedRuns, stamp: tuple[str, str]) -> Figure:
    """Figure 6.2: (a) test accuracy, (b) batch size per epoch of every group of `group_runs` (mean, min-max
    band), the reconfigurations of any run marked."""
    labelled, reconfigured = _labelled(grouped), reconfiguration_epochs(grouped.history)
    fig, axes = plots.figure("full", ncols=2)
    plots.line_with_band(axes[0], labelled, x="epoch", y="test_acc", hue="group")
    axes[0].set(xlabel=plots.label("epoch"), ylabel=plots.label("test_acc"), title=f"(a) {_text('accuracy')}")
    plots.line_with_band(axes[1], labelled, x="epoch", y="batch_size", hue="group")
    for ax in axes:
        plots.mark_epochs(ax, reconfigured, color="0.7")
    axes[1].set(
        xlabel=plots.label("epoch"),
        ylabel=plots.label("batch_size"),
        title=f"(b) {plots.label('batch_size')}",
        ylim=(0, None),
    )
    n_runs = _runs_per_group(grouped)
    for ax in axes:
        ax.get_legend().remove()
    fig.legend(
        *axes[0].get_legend_handles_labels(),
        loc="outside lower center",
        ncols=2,
        fontsize=LEGEND_FONTSIZE,
        title=f"{plots.label('mean_band', n=n_runs)}; ··· {_text('reconfiguration')}",
        title_fontsize=LEGEND_FONTSIZE,
    )
    plots.stamp(fig, stamp[0], stamp[1], n_runs)
    return fig


def accuracy_zoom_figure(grouped: GroupedRuns, epochs: int, stamp: tuple[str, str]) -> Figure:
    """Figure 6.3: figure 6.2 (a) over the second half of the `epochs` only."""
    labelled, n_runs = _labelled(grouped), _runs_per_group(grouped)
    second_half = labelled[labelled.epoch > epochs // 2]
    fig, ax = plots.figure("half")
    plots.line_with_band(ax, second_half, x="epoch", y="test_acc", hue="group")
    ax.set(xlabel=plots.label("epoch"), ylabel=plots.label("test_acc"), title=_text("second_half"))
    handles, labels = ax.get_legend_handles_labels()
    ax.get_legend().remove()  # below the axes: inside, it covered the bands (review)
    fig.legend(
        handles,
        labels,
        fontsize=SMALL_LEGEND_FONTSIZE,
        title=plots.label("band_minmax", n=n_runs),
        title_fontsize=SMALL_LEGEND_FONTSIZE,
        loc="outside lower center",
    )
    plots.stamp(fig, stamp[0], stamp[1], n_runs)
    return fig


def rule_figure(rules: pd.DataFrame, line: LinearFit, stamp: tuple[str, str]) -> Figure:
    """Figure 6.19 in the draft's own coordinates: 1 / batch against parameters, the line the rule reads
    (`thesis_fit`) and, per pruned net of the adapted runs (`rule_comparison`), 1 / the largest batch the
    memory check allows. Every net is drawn, also where the line gives 1 / batch <= 0 (below the zero line,
    the rule gives no batch), so the figure is never empty; `stamp` = (profile, dataset)."""
    fig, ax = plots.figure("full")
    fig.set_size_inches(plots.FIGURE_SIZES["full"][0], 2.8)
    parameters = rules["parameters"].astype(float)
    ax.plot(parameters / 1e3, 1.0 / rules["probe_batch"], "o", markersize=3, label=_text("probe_points"))
    right = float(max(parameters.max(), rules["base_parameters"].max())) * 1.1
    xs = np.linspace(0.0, right, 50)
    ax.plot(xs / 1e3, line.intercept + line.slope * xs, "--", color="0.4", linewidth=0.8, label=_text("rule_line"))
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    ax.set(xlabel=_text("parameters_thousands"), ylabel=_text("inverse_batch"), xlim=(0, right / 1e3))
    fig.legend(loc="outside lower center", ncol=2)
    plots.stamp(fig, stamp[0], stamp[1], _text("nets", n=len(rules)))
    return fig


def group_label(group: str) -> str:
    """The legend text of a chapter 6.1 group in the figures' language: "baseline" -> "Baseline",
    "PruneTrain + batch (linear)" -> "PruneTrain + Batchanpassung (linear)"."""
    if plots.language() == "en":
        return group
    if group == BASELINE_GROUP:
        return "Baseline"
    return group.replace(" + batch (", " + Batchanpassung (").replace("thesis fit", "Gerade des Entwurfs")
