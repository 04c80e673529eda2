"""Chapter 6.3 (notebook 06_3_prunetrain_net2net): the thesis's own procedure, shrinking with PruneTrain and
growing with Net2Net in one training run (`thesis_lib.methods.search`).

The draft (sections 1.2, 6.1 and 6.3) plans it but reports no number. Here it starts from the narrow thesis
ResNet, prunes like chapter 5's default point, grows where pruning left a stage saturated, never beyond the
wide net's FLOPs (the budget of chapter 4's MorphNet search), and trains on through every change. Notebook
figures: 6.12 (architecture over the rounds), 6.13 (accuracy and cost over training time), 6.14 (final
accuracy of the search, its arms and controls, and the baselines).

Plan (`SearchPlan`, one per profile, derived by `search_plan`, fixed before its runs): PruneTrain at chapter
5's default point of the profile (lasso ratio, threshold, reconfiguration interval: 0.2 / 1e-4 / 10 epochs
on `full`, 0.9 / 1e-4 / 2 on `quick`) with chapter 5's run length and batch (`PruneTrainPlan.training`: 180
epochs at batch 256 on `full`, 20 epochs on `quick`, where the paper's threshold removes the first channel
only after the first lr decay: in the profile's 10 epochs the search would never prune and only grow);
pruning until the last lr decay of that run (150 of 180, 16 of 20, 1 of 2 on `smoke`) and then a final
phase without the lasso and without reconfiguration (the draft's "Aussetzen des Verkleinerns in den letzten
Epochen"), so that the net the run ends with is not judged while the lasso still pulls it towards zero;
growth only where pruning has spoken (`methods.search`: not before pruning removed a channel, saturation
measured over at least two rounds since the last growth) and not later than one round before the final
phase (epoch 140, 14, 1), so that every growth is followed by a round of pruning; the growth rule's
defaults (saturated at 90 % kept channels, x1.5 per round, deepen a stage with no channel pruned, by the
identity layer of eq. 2.5, whose new units are exempt from the next round's pruning) and the profile's
seeds (5 on `quick` and `full`, 2 on `smoke`). Lambda is fixed at the run's first batch (eq. 2.3) and kept
through growths; `lasso_share_sentence` states what the lasso's share of the loss became.

Arms and controls (`sweeps`, all fixed with the plan, before their runs):

- the search's architecture trained from scratch like a baseline (the draft's remark in 6.1; the
  profile's epochs and batch), and scaled to the budget with MorphNet's width multiplier and then trained
  ("prune_grow_scaled": algorithm 2.2, step 3, so that it ends at MorphNet's FLOPs);
- the zero-gamma block arm: the same search deepening by a whole residual block (deepen_kind="block");
- the uniform-growth control ("uniform_grow_prune"): the narrow net widened x2 (to the wide net's widths)
  at the end of the first round, whatever pruning saw, then PruneTrain with the search's settings; with
  chapter 5's PruneTrain on the wide net (chapter 7's control) it tests whether growing where pruning
  points beats growing everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import plots, stats
from ..experiments import (
    TIMING_COLUMNS,
    Phase,
    Profile,
    RunContext,
    RunOutput,
    RunPlan,
    experiment,
    get_profile,
    plan_default,
    procedure_costs,
    run,
    seed_param,
    summarize_training,
)
from ..methods.morphnet import width_multiplier
from ..methods.net2net import Net2NetHook, WidenStep
from ..methods.prunetrain import PruneTrain
from ..methods.search import GrowthRule, PruneGrow, stage_depth, stage_layers
from ..models import ResNetConfig, ResNetSpec, build_resnet, count_flops
from ..training import seeded_model
from .ch03_baseline import baseline_grid
from .ch05_prunetrain import prunetrain_plan
from .ch06_2_net2net import cumulative_time
from .contract import Sweeps

__all__ = [
    "FIGURE_TEXT",
    "GROUP_LABELS",
    "GROUP_ORDER",
    "GROUP_SWEEPS",
    "SEARCH_KNOBS",
    "SEARCH_PAIRS",
    "UNIFORM_KNOBS",
    "WITHIN_BUDGET",
    "PruneGrowParams",
    "SearchPlan",
    "UniformGrowParams",
    "accuracy_cost_curves",
    "accuracy_cost_figure",
    "accuracy_sentence",
    "architecture_figure",
    "architecture_rounds",
    "budget_flops",
    "curves",
    "deepening_sentence",
    "deepening_survival",
    "final_accuracy_figure",
    "final_accuracy_groups",
    "final_accuracy_table",
    "found_architectures",
    "group_label",
    "growth_epochs",
    "growth_sentence",
    "lasso_share_sentence",
    "phase_times",
    "prune_grow_experiment",
    "prune_grow_retrain_experiment",
    "prune_grow_scaled_experiment",
    "search_plan",
    "search_tests",
    "step_baseline_grid",
    "sweeps",
    "uniform_grow_prune_experiment",
    "uniform_growth_factor",
]


SEARCH_KNOBS = (
    "lasso_ratio",
    "threshold",
    "interval",
    "saturation",
    "widen_factor",
    "deepen_saturation",
    "noise",
    "last_growth_epoch",
    "last_pruning_epoch",
    "window_rounds",
    "deepen_kind",
)
# The knobs of the uniform-growth control: the search's pruning and noise, no growth rule.
UNIFORM_KNOBS = ("lasso_ratio", "threshold", "interval", "last_pruning_epoch", "noise")
# The TrainConfig fields the search takes from chapter 5 (`PruneTrainPlan.training`) and its retraining
# leaves at the profile's, like a baseline.
SEARCH_TRAINING = ("epochs", "batch_size")


@dataclass(frozen=True)
class SearchPlan:
    """The settings of chapter 6.3's search for one profile (see the module docstring for the values)."""

    lasso_ratio: float
    threshold: float
    interval: int
    last_growth_epoch: int
    last_pruning_epoch: int
    seeds: tuple[int, ...]
    training: dict[str, int]
    saturation: float = GrowthRule.saturation
    widen_factor: float = GrowthRule.widen_factor
    deepen_saturation: float = GrowthRule.deepen_saturation
    noise: float = 0.05
    window_rounds: int = GrowthRule.window_rounds
    deepen_kind: str = GrowthRule.deepen_kind

    def params(self) -> dict[str, Any]:
        """The search's params without the seed (every knob written out, so the run key names them, and
        chapter 5's epochs / batch where its plan sets them)."""
        return {**{knob: getattr(self, knob) for knob in SEARCH_KNOBS}, **self.training}

    def grid(self, **changed: Any) -> list[dict[str, Any]]:
        """Params of the "prune_grow" (and "prune_grow_retrain", "prune_grow_scaled") runs: the plan's point
        once per seed; `changed` knobs replace the plan's (e.g. deepen_kind="block", the second arm)."""
        unknown = set(changed) - set(SEARCH_KNOBS)
        if unknown:
            raise ValueError(f"unknown search knobs {sorted(unknown)}; use those of SEARCH_KNOBS {SEARCH_KNOBS}")
        return [{**self.params(), **changed, "seed": seed} for seed in self.seeds]

    def uniform_grid(self) -> list[dict[str, Any]]:
        """Params of the "uniform_grow_prune" control: the search's pruning, noise and training per seed."""
        return [{**{k: getattr(self, k) for k in UNIFORM_KNOBS}, **self.training, "seed": s} for s in self.seeds]


def search_plan(profile: str | Profile) -> SearchPlan:
    """Chapter 6.3's plan for `profile` (module docstring): chapter 5's default pruning, run length and batch
    (`prunetrain_plan`, which rejects a profile without a plan), pruning until the run's last lr decay
    (then the final phase without the lasso), growth until one round before it, once per seed."""
    profile = get_profile(profile)
    pruning = prunetrain_plan(profile)
    training = pruning.training()
    epochs = training.get("epochs", profile.epochs)
    milestones = profile.milestones_for(epochs)
    last_pruning = milestones[-1] if milestones else epochs
    last_growth = max(pruning.interval, last_pruning - pruning.interval)
    return SearchPlan(
        lasso_ratio=pruning.lasso_ratio,
        threshold=pruning.threshold,
        interval=pruning.interval,
        last_growth_epoch=int(last_growth),
        last_pruning_epoch=int(last_pruning),
        seeds=profile.seeds,
        training=training,
    )


def step_baseline_grid(profile: str | Profile, model: str) -> list[dict[str, Any]]:
    """Params of the `model` ("narrow" or "wide") "baseline" runs with the step schedule that fig. 6.14
    compares with, once per seed of the plan (chapter 3's runs, through the cache)."""
    return baseline_grid(profile, models=(model,), schedules=("step",), seeds=search_plan(profile).seeds)


def sweeps(profile: str | Profile) -> Sweeps:
    """Notebook 06_3's sweeps, once per seed of the plan: the narrow and the wide step-schedule baseline
    (chapter 3's runs), the searches, their architectures retrained from scratch and scaled to the budget
    and retrained, the zero-gamma block arm and the uniform-growth control."""
    plan = search_plan(profile)
    return {
        "narrow": ("baseline", step_baseline_grid(profile, "narrow")),
        "wide": ("baseline", step_baseline_grid(profile, "wide")),
        "search": ("prune_grow", plan.grid()),
        "retrain": ("prune_grow_retrain", plan.grid()),
        "scaled": ("prune_grow_scaled", plan.grid()),
        "block_arm": ("prune_grow", plan.grid(deepen_kind="block")),
        "uniform": ("uniform_grow_prune", plan.uniform_grid()),
    }


def budget_flops(context: RunContext, budget_model: str = "wide") -> int:
    """Forward FLOPs of one image for the profile's `budget_model` net: the zeta of chapters 4 and 6.3."""
    data = context.dataset()
    return count_flops(build_resnet(context.resnet_config(budget_model, data)), tuple(data.train_x.shape[1:]))


def _from_search_plan(knob: str, **bounds: float) -> Any:
    return plan_default(lambda profile, _: getattr(search_plan(profile), knob), **bounds)


@dataclass(frozen=True)
class PruneGrowParams:
    """The `SearchPlan` knobs (defaults: the profile's plan) and the seed."""

    lasso_ratio: float = _from_search_plan("lasso_ratio", above=0, below=1)
    threshold: float = _from_search_plan("threshold", at_least=0)
    interval: int = _from_search_plan("interval", at_least=1)
    saturation: float = _from_search_plan("saturation", at_least=0, at_most=1)
    widen_factor: float = _from_search_plan("widen_factor", above=1)
    deepen_saturation: float = _from_search_plan("deepen_saturation", at_least=0, at_most=1)
    noise: float = _from_search_plan("noise", at_least=0)
    last_growth_epoch: int = _from_search_plan("last_growth_epoch", at_least=0)
    last_pruning_epoch: int = _from_search_plan("last_pruning_epoch", at_least=1)
    window_rounds: int = _from_search_plan("window_rounds", at_least=1)
    deepen_kind: Literal["layer", "block"] = GrowthRule.deepen_kind
    seed: int = seed_param()


@dataclass(frozen=True)
class UniformGrowParams:
    """The uniform-growth control's knobs (`UNIFORM_KNOBS`, defaults: the profile's search plan) and the seed."""

    lasso_ratio: float = _from_search_plan("lasso_ratio", above=0, below=1)
    threshold: float = _from_search_plan("threshold", at_least=0)
    interval: int = _from_search_plan("interval", at_least=1)
    last_pruning_epoch: int = _from_search_plan("last_pruning_epoch", at_least=1)
    noise: float = _from_search_plan("noise", at_least=0)
    seed: int = seed_param()


def _search_knobs(context: RunContext) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(the search knobs, the remaining TrainConfig overrides, seed) of the run's resolved params."""
    params = dict(context.params)
    seed = params.pop("seed")
    knobs = {knob: params.pop(knob) for knob in SEARCH_KNOBS}
    return knobs, params, seed


WITHIN_BUDGET = "the wide net: its FLOPs are the budget the searched net never exceeds"


def _budget_phase(profile: Profile, params: dict[str, Any], description: str, changes_shapes: bool) -> Phase:
    """A phase of the wide net (the budget: an upper bound of the searched net) with the run's TrainConfig."""
    overrides = {key: value for key, value in params.items() if key not in SEARCH_KNOBS}
    wide = profile.resnet("wide", profile.input_size[0], profile.num_classes)
    return Phase(
        description, wide, profile.train_config(**overrides), bound=WITHIN_BUDGET, changes_shapes=changes_shapes
    )


def _search_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    return RunPlan(phases=(_budget_phase(profile, params, "search", changes_shapes=PruneGrow.changes_shapes),))


def _baseline_like(params: dict[str, Any]) -> dict[str, Any]:
    """`params` without the search's `SEARCH_TRAINING` overrides: the retraining trains like a baseline."""
    return {key: value for key, value in params.items() if key not in SEARCH_TRAINING}


def _retrain_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    phase = _budget_phase(profile, _baseline_like(params), "retrain the found net", changes_shapes=False)
    return RunPlan(phases=(phase,), requires=(("prune_grow", params),))


# 2: fused group lasso; 3: the final phase without the lasso; 4: growth only where pruning has spoken;
# 5: deepening by eq. 2.5's identity layer (deepen_kind), new groups protected for one round
@experiment("prune_grow", version=5, params=PruneGrowParams, train_config=True, plan=_search_plan)
def prune_grow_experiment(context: RunContext) -> RunOutput:
    """Chapter 6.3: from the narrow net, PruneTrain rounds with Net2Net growth under the wide net's FLOPs.

    params: `PruneGrowParams` and optionally TrainConfig fields.
    The history has PruneTrain's and `PruneGrow`'s columns (architecture after every epoch, growth, phase
    times). The summary adds to `summarize_training` the budget, the found architecture (found_spec JSON,
    found_stage_widths, found_stage_blocks, found_stage_layers, found_flops, found_params), growths,
    reconfigurations and the
    time per phase: train_time (epochs), prune_time, grow_time, search_time (= total_time).
    """
    knobs, overrides, seed = _search_knobs(context)
    budget = budget_flops(context)
    rule = GrowthRule(
        saturation=float(knobs["saturation"]),
        widen_factor=float(knobs["widen_factor"]),
        deepen_saturation=float(knobs["deepen_saturation"]),
        window_rounds=int(knobs["window_rounds"]),
        deepen_kind=str(knobs["deepen_kind"]),
    )
    hook = PruneGrow(
        PruneTrain(
            lasso_ratio=knobs["lasso_ratio"],
            threshold=knobs["threshold"],
            interval=int(knobs["interval"]),
            last_pruning_epoch=int(knobs["last_pruning_epoch"]),
        ),
        budget=budget,
        rule=rule,
        last_growth_epoch=int(knobs["last_growth_epoch"]),
        noise=float(knobs["noise"]),
        seed=seed,
    )
    config = context.train_config(seed=seed, **overrides)
    trainer = context.trainer(seeded_model(context.resnet_config("narrow"), seed), config, hooks=[hook])
    history = trainer.fit()
    spec = trainer.model.spec
    summary = {
        **summarize_training(history),
        "budget": budget,
        "found_spec": spec.to_json(),
        "found_stage_widths": history["stage_widths"].iloc[-1],
        "found_stage_blocks": history["stage_blocks"].iloc[-1],
        "found_stage_layers": history["stage_layers"].iloc[-1],
        "found_flops": int(history["flops_after"].iloc[-1]),
        "found_params": int(history["params_after"].iloc[-1]),
        "growths": int(history["grown"].sum()),
        "reconfigurations": int(history["reconfigured"].sum()),
        "train_time": float(history["epoch_time"].sum()),
        "prune_time": float(history["prune_time"].sum()),
        "grow_time": float(history["grow_time"].sum()),
    }
    summary["search_time"] = summary["total_time"]
    return RunOutput(history=history, summary=summary, model=trainer.model)


@experiment(
    "prune_grow_retrain",
    version=5,
    params=PruneGrowParams,
    train_config=True,  # 2: its search's fused group lasso; 3: final phase; 4: growth rule; 5: identity layer
    plan=_retrain_plan,
)
def prune_grow_retrain_experiment(context: RunContext) -> RunOutput:
    """Chapter 6.3: the architecture a "prune_grow" run found, trained from scratch like a baseline.

    params: those of the "prune_grow" run (loaded from the cache, or trained once). The new net starts from
    the seed's fresh initialisation and trains like a baseline: the profile's schedule, epochs and batch
    (the search's `SEARCH_TRAINING` overrides are not applied; any other TrainConfig override is). The
    summary adds to `summarize_training` the search's numbers: search_time, retrain_time and total_time
    (search + retraining, what a user pays), search_acc (the search run's own final accuracy) and
    found_flops / found_params.
    """
    search = run("prune_grow", context.params, profile=context.profile, progress=context.progress)
    _, overrides, seed = _search_knobs(context)
    spec = ResNetSpec.from_json(search.summary["found_spec"])
    trainer = context.trainer(seeded_model(spec, seed), context.train_config(seed=seed, **_baseline_like(overrides)))
    history = trainer.fit()
    retrain = summarize_training(history)
    summary = {
        **retrain,
        "search_time": search.summary["search_time"],
        "search_training_flops": search.summary["training_flops"],
        "retrain_time": retrain["total_time"],
        "retrain_training_flops": retrain["training_flops"],
        **procedure_costs(search.summary, retrain),
        "search_acc": search.summary["final_acc"],
        "found_flops": search.summary["found_flops"],
        "found_params": search.summary["found_params"],
        "found_spec": search.summary["found_spec"],
    }
    return RunOutput(history=history, summary=summary, model=trainer.model)


def architecture_rounds(history: pd.DataFrame, start: ResNetSpec | ResNetConfig) -> pd.DataFrame:
    """One row per run (seed), epoch and phase (the thesis's stage numbering 1..3): stream width, blocks
    with a main path and main-path conv layers after that epoch, from a "prune_grow" sweep history; epoch 0
    is `start`, the net every search begins with (the profile's narrow net)."""
    missing = {"seed", "epoch", "stage_widths", "stage_blocks", "stage_layers"} - set(history.columns)
    if missing:
        raise ValueError(f"not a prune_grow history: columns {sorted(missing)} are missing")
    start = start.to_spec() if isinstance(start, ResNetConfig) else start
    first = (
        [stage.width for stage in start.stages],
        [stage_depth(stage) for stage in start.stages],
        [stage_layers(stage) for stage in start.stages],
    )
    rows = []
    for seed, run_history in history.groupby("seed", sort=True):
        epochs = [
            (0, *first),
            *zip(
                run_history["epoch"],
                *(run_history[column].map(json.loads) for column in ("stage_widths", "stage_blocks", "stage_layers")),
            ),
        ]
        for epoch, widths, blocks, layers in epochs:
            for stage, (width, depth, count) in enumerate(zip(widths, blocks, layers)):
                rows.append(
                    {
                        "seed": seed,
                        "epoch": int(epoch),
                        "phase": stage + 1,
                        "width": int(width),
                        "blocks": int(depth),
                        "layers": int(count),
                    }
                )
    return pd.DataFrame(rows)


def deepening_survival(histories: Sequence[pd.DataFrame], interval: int) -> pd.DataFrame:
    """Per growth that deepened (in "prune_grow" sweep histories, e.g. both deepening arms, whose rounds
    are `interval` epochs apart): seed, epoch, kind ("layer" or "block"), phase, the main-path layers of
    that stage after the growth, after the next round and at the run's end, whether the added layers
    were still there after the next round and at the end (the stage's layer count did not fall below its
    count after the growth), and judged_rounds: the thresholding rounds after the growth (PruneTrain records
    test_acc_after_zeroing in exactly those) in which its new groups
    were not protected (`PruneTrain.protect`). A deepening with none was never judged: kept by construction."""
    rows = []
    runs = [group for history in histories for group in history.groupby("seed", sort=True)]
    for seed, run_history in runs:
        by_epoch = run_history.set_index("epoch")
        layers = by_epoch["stage_layers"].map(json.loads)
        last = int(run_history["epoch"].max())
        rounds = by_epoch.index[by_epoch["test_acc_after_zeroing"].notna()]  # PruneTrain's thresholding rounds
        grown = run_history["grown"].astype(bool)
        for epoch, growth, new_groups in run_history.loc[grown, ["epoch", "growth", "new_groups"]].itertuples(
            index=False
        ):
            plan, created = json.loads(growth), set(json.loads(new_groups))
            judged = sum(
                1
                for round_epoch in rounds
                if round_epoch > epoch and not created & set(json.loads(by_epoch.at[round_epoch, "protected_groups"]))
            )
            for stage in plan["deepen"]:
                after, later = layers[epoch][stage], layers[min(int(epoch) + interval, last)][stage]
                rows.append(
                    {
                        "seed": seed,
                        "epoch": int(epoch),
                        "kind": plan["deepen_kind"],
                        "phase": stage + 1,
                        "layers_after_growth": after,
                        "layers_next_round": later,
                        "layers_at_end": layers[last][stage],
                        "kept_next_round": later >= after,
                        "kept_at_end": layers[last][stage] >= after,
                        "judged_rounds": judged,
                    }
                )
    columns = ["seed", "epoch", "kind", "phase", "layers_after_growth", "layers_next_round", "layers_at_end"]
    return pd.DataFrame(rows, columns=[*columns, "kept_next_round", "kept_at_end", "judged_rounds"])


def deepening_sentence(survival: pd.DataFrame) -> str:
    """How many deepenings of each kind (`deepening_survival`) kept their layers through the next round
    (protected by the one-round exemption) and to the run's end, and how many no unprotected round judged."""
    if survival.empty:
        return "No growth deepened the net."
    parts = []
    for kind, rows in survival.groupby("kind", sort=False):
        name = "identity layer (eq. 2.5)" if kind == "layer" else "zero-gamma block"
        unjudged = int((rows["judged_rounds"] == 0).sum())
        parts.append(
            f"{name}: {len(rows)} deepenings, kept after the next round in {int(rows['kept_next_round'].sum())}, "
            f"kept to the end in {int(rows['kept_at_end'].sum())}, never judged by an unprotected pruning round "
            f"in {unjudged}"
        )
    sentence = "; ".join(parts) + "."
    if (survival["judged_rounds"] == 0).all():
        sentence += (
            " No deepening met a pruning round after its protected one, so 'kept' says nothing about whether"
            " PruneTrain would keep the added layers."
        )
    return sentence


def found_architectures(summary: pd.DataFrame) -> pd.DataFrame:
    """Per search run: the stream widths, blocks and layers per phase it ended with, FLOPs and parameters, its
    FLOPs as a fraction of the budget, growths and reconfigurations."""
    frame = summary[
        [
            "seed",
            "found_stage_widths",
            "found_stage_blocks",
            "found_stage_layers",
            "found_flops",
            "found_params",
            "budget",
            "growths",
            "reconfigurations",
            "final_acc",
        ]
    ].copy()
    frame["flops / budget"] = frame["found_flops"] / frame["budget"]
    return frame.sort_values("seed", ignore_index=True)


GROUP_ORDER = (
    "narrow baseline",
    "wide baseline",
    "PruneTrain + Net2Net",
    "found net, from scratch",
    "found net, scaled to the budget",
    "zero-gamma block arm",
    "uniform growth + PruneTrain",
)
# The sweep of `sweeps` behind each group of fig. 6.14.
GROUP_SWEEPS = dict(zip(GROUP_ORDER, ("narrow", "wide", "search", "retrain", "scaled", "block_arm", "uniform")))


def final_accuracy_groups(summaries: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One tidy frame (group, seed, final_acc, total_time, training_flops, final_params, final_flops and the
    `TIMING_COLUMNS`) of the groups of fig. 6.14 from their sweep summaries, `summaries` keyed by group
    (those of `GROUP_ORDER`, in its order)."""
    unknown = set(summaries) - set(GROUP_ORDER)
    if unknown:
        raise ValueError(f"unknown groups {sorted(unknown)}; fig. 6.14's groups are {GROUP_ORDER}")
    frames = []
    columns = ["seed", "final_acc", "total_time", "training_flops", "final_params", "final_flops", *TIMING_COLUMNS]
    for group in [g for g in GROUP_ORDER if g in summaries]:
        part = summaries[group][columns].copy()
        part.insert(0, "group", group)
        frames.append(part)
    return pd.concat(frames, ignore_index=True)


def final_accuracy_table(groups: pd.DataFrame) -> pd.DataFrame:
    """Final accuracy per group of fig. 6.14 (`stats.summary_table` of `final_accuracy_groups`)."""
    return stats.summary_table(groups, by="group", value="final_acc")


SEARCH_PAIRS = (
    ("PruneTrain + Net2Net", "found net, from scratch"),
    ("PruneTrain + Net2Net", "wide baseline"),
    ("PruneTrain + Net2Net", "narrow baseline"),
    ("found net, from scratch", "wide baseline"),
    ("found net, scaled to the budget", "wide baseline"),
    ("PruneTrain + Net2Net", "zero-gamma block arm"),
    ("PruneTrain + Net2Net", "uniform growth + PruneTrain"),
)


SEARCH_TESTED = (
    ("final_acc", "accuracy", ""),
    ("total_time", "total time", "s"),
    ("training_flops", "training FLOPs", ""),
)
SEARCH_COSTS = ("total_time", "training_flops")  # a retraining's cost includes its search's


def search_tests(groups: pd.DataFrame) -> pd.DataFrame:
    """Welch t-tests of fig. 6.14's groups (`final_accuracy_groups`, `SEARCH_PAIRS` among those present): the
    search against its own architecture from scratch, both baselines, the zero-gamma block arm and the
    uniform-growth control, the retrained and the scaled net against the wide one; final accuracy, total
    time and training FLOPs (`SEARCH_TESTED`), each quantity one Holm family. The cost of the search and of
    its own retraining is not tested: a retraining's time and FLOPs contain its search's."""
    present = set(groups["group"])
    tables = []
    for column, what, unit in SEARCH_TESTED:
        pairs = [
            pair
            for pair in SEARCH_PAIRS
            if set(pair) <= present and not (column in SEARCH_COSTS and pair == SEARCH_PAIRS[0])
        ]
        table = stats.with_holm(
            stats.compare_groups(groups, "group", pairs, [(column, what, unit)], timing_columns=TIMING_COLUMNS)
        )
        table.insert(0, "quantity", column)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def phase_times(summary: pd.DataFrame) -> pd.DataFrame:
    """Seconds per phase of every search run (training epochs, pruning, growing) and each phase's share of
    the run's total training time."""
    frame = summary[["seed", "train_time", "prune_time", "grow_time", "search_time"]].copy()
    for phase in ("train", "prune", "grow"):
        frame[f"{phase}_share"] = frame[f"{phase}_time"] / frame["search_time"]
    return frame.sort_values("seed", ignore_index=True)


def curves(histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The per-epoch histories of several groups in one frame (group, seed, epoch, test_acc, flops,
    params, cumulative_time: training plus hook seconds so far, per run)."""
    frames = []
    for group, history in histories.items():
        part = history[["seed", "epoch", "test_acc", "train_acc", "flops", "params"]].copy()
        part.insert(0, "group", group)
        part["cumulative_time"] = cumulative_time(history, by=["seed"]).to_numpy()
        frames.append(part)
    return pd.concat(frames, ignore_index=True)


def accuracy_cost_curves(narrow: pd.DataFrame, wide: pd.DataFrame, search: pd.DataFrame) -> pd.DataFrame:
    """Fig. 6.13's curves (`curves`) of the narrow and wide baselines and the search, from their sweep
    histories, with `mean_time`: the mean cumulative time of the group's runs at that epoch (its x)."""
    frame = curves(dict(zip(GROUP_ORDER, (narrow, wide, search))))
    frame["mean_time"] = frame.groupby(["group", "epoch"])["cumulative_time"].transform("mean")
    return frame


def growth_epochs(history: pd.DataFrame) -> list[int]:
    """The epochs after which at least one search run grew (for marking them in a figure)."""
    return sorted(int(e) for e in history.loc[history["grown"].astype(bool), "epoch"].unique())


def growth_sentence(history: pd.DataFrame, found: pd.DataFrame) -> str:
    """How often and when the searches (a "prune_grow" sweep history) grew, and the range of their found
    FLOPs against the budget (`found_architectures`, one row per run)."""
    growth = history[history["grown"].astype(bool)]
    return (
        f"{len(growth)} growths in {len(found)} runs, at epochs {growth_epochs(history)}; "
        f"found FLOPs / budget: {found['flops / budget'].min():.2f} ... {found['flops / budget'].max():.2f}."
    )


def lasso_share_sentence(history: pd.DataFrame, lasso_ratio: float) -> str:
    """What keeping lambda through the growths did (a "prune_grow" sweep history): the lasso's share of the
    training objective, 1 - cross-entropy / (cross-entropy + lasso) averaged over an epoch's batches, in
    epoch 1 (eq. 2.3 sets it to `lasso_ratio` at the first batch) and in the epochs right before and right
    after each growth (means over the growths), and in the last epoch with the lasso."""
    missing = {"seed", "epoch", "train_loss", "train_objective", "lasso_active", "grown"} - set(history.columns)
    if missing:
        raise ValueError(f"not a prune_grow history: columns {sorted(missing)} are missing")
    frame = history.assign(share=1 - history["train_loss"] / history["train_objective"])
    active = frame[frame["lasso_active"].astype(bool)]
    share = active.set_index(["seed", "epoch"])["share"]
    first = active.loc[active["epoch"] == 1, "share"].mean()
    last = active.groupby("seed")["share"].last().mean()
    text = (
        f"The lasso's share of the training objective (ratio r = {lasso_ratio:g} at the first batch): "
        f"{first:.2f} in epoch 1"
    )
    growths = frame.loc[frame["grown"].astype(bool), ["seed", "epoch"]]
    pairs = [
        (share[(seed, epoch)], share[(seed, epoch + 1)])
        for seed, epoch in growths.itertuples(index=False)
        if (seed, epoch + 1) in share.index
    ]
    if pairs:
        before, after = (sum(values) / len(values) for values in zip(*pairs))
        text += (
            f"; {before:.2f} in the epoch before a growth and {after:.2f} in the epoch after it ({len(pairs)} growths)"
        )
    else:
        text += "; no growth was followed by an epoch with the lasso"
    return text + f"; {last:.2f} in the last epoch with the lasso. Lambda stays fixed through the growths."


def accuracy_sentence(groups: pd.DataFrame) -> str:
    """The mean final accuracy of each group of fig. 6.14 (`final_accuracy_groups`) in one sentence."""
    means = groups.groupby("group")["final_acc"].mean()
    parts = [f"{group} {means[group]:.3f}" for group in GROUP_ORDER if group in means]
    return "mean final accuracy: " + ", ".join(parts) + "."


GROUP_LABELS = {
    "narrow baseline": {"de": "schmales\nBaseline-Netz", "en": "narrow\nbaseline"},
    "wide baseline": {"de": "breites\nBaseline-Netz", "en": "wide\nbaseline"},
    "PruneTrain + Net2Net": {"de": "PruneTrain +\nNet2Net", "en": "PruneTrain +\nNet2Net"},
    "found net, from scratch": {"de": "gefundenes Netz,\nneu trainiert", "en": "found net,\nfrom scratch"},
    "found net, scaled to the budget": {"de": "gefundenes Netz,\nauf Budget\nskaliert", "en": "found net,\nscaled"},
    "zero-gamma block arm": {"de": "Vertiefung mit\nNull-Gamma-Block", "en": "zero-gamma\nblock arm"},
    "uniform growth + PruneTrain": {
        "de": "gleichmäßiges\nWachstum +\nPruneTrain",
        "en": "uniform growth\n+ PruneTrain",
    },
}


def group_label(group: str, one_line: bool = False) -> str:
    """The label of a group of `GROUP_ORDER` in the figures' language: two lines (fig. 6.14's ticks) or,
    with `one_line`, one (fig. 6.13's legend)."""
    label = GROUP_LABELS[group][plots.language()]
    return label.replace("\n", " ") if one_line else label


FIGURE_TEXT = {
    "width": {"de": "Breite des Residualpfads", "en": "residual stream width"},
    "layers": {"de": "Schichten im Hauptpfad", "en": "main-path layers"},
    "mean_band": {"de": "Mittel, Band: min-max über {n} Läufe", "en": "mean, band: min-max over {n} runs"},
    "band": {"de": "Band: min-max über {n} Läufe", "en": "band: min-max over {n} runs"},
    "time": {"de": "Trainingszeit (s)", "en": "training time (s)"},
    "flops": {"de": "MFLOPs pro Bild (trainiertes Netz)", "en": "MFLOPs per image (trained net)"},
}


def _text(key: str, **values: Any) -> str:
    return plots.translate(FIGURE_TEXT, key, **values)


# Fig. 6.12 is taller than a "full" figure: its two panels and the legend below them need the room, or the
# two y labels run into each other.
ARCHITECTURE_FIGURE_HEIGHT = 4.6


def architecture_figure(history: pd.DataFrame, profile: str | Profile, stamp: tuple[str, str]) -> Figure:
    """Figure 6.12: stream width (top) and main-path conv layers (bottom) per phase over the epochs of the searches (a
    "prune_grow" sweep history of `profile`; mean over the runs with the min-max band, epoch 0 the narrow
    net), reconfiguration epochs dotted, the lr decays dashed; `stamp` = (profile, dataset)."""
    profile = get_profile(profile)
    plan = search_plan(profile)
    narrow = profile.resnet("narrow", profile.input_size[0], profile.num_classes)
    n = int(history["seed"].nunique())
    rounds = architecture_rounds(history, narrow)
    rounds["Phase"] = rounds["phase"].map(lambda p: f"{plots.label('stage')} {p}")
    fig, (top, bottom) = plots.figure("full", nrows=2, sharex=True)
    fig.set_size_inches(plots.FIGURE_SIZES["full"][0], ARCHITECTURE_FIGURE_HEIGHT)
    plots.line_with_band(top, rounds, x="epoch", y="width", hue="Phase")
    plots.line_with_band(bottom, rounds, x="epoch", y="layers", hue="Phase")
    epochs = plan.training.get("epochs", profile.epochs)  # the search trains chapter 5's run
    for ax in (top, bottom):
        for epoch in range(plan.interval, min(epochs - 1, plan.last_pruning_epoch) + 1, plan.interval):
            ax.axvline(epoch, color="0.6", linestyle=":", linewidth=0.7)
        for milestone in profile.milestones_for(epochs):
            ax.axvline(milestone, color="0.3", linestyle="--", linewidth=0.7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    top.set(ylabel=_text("width"))
    bottom.set(xlabel=plots.label("epoch"), ylabel=_text("layers"))
    # Layer counts are integers, also when every run keeps one count (then only one integer is in view).
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    bottom.legend().remove()
    handles, labels = top.get_legend_handles_labels()
    top.legend().remove()
    fig.legend(handles, labels, title=_text("mean_band", n=n), loc="outside lower center", ncol=3)
    plots.stamp(fig, stamp[0], stamp[1], n)
    return fig


def accuracy_cost_figure(cost_curves: pd.DataFrame, stamp: tuple[str, str]) -> Figure:
    """Figure 6.13: test accuracy (left) and FLOPs per image of the trained net (right) over the cumulative
    training time, per group of `accuracy_cost_curves` (min-max band over the runs); `stamp` = (profile,
    dataset)."""
    n = int(cost_curves.groupby("group")["seed"].nunique().min())
    frame = cost_curves.assign(group=cost_curves["group"].map(lambda group: group_label(group, one_line=True)))
    frame["mflops"] = frame["flops"] / 1e6  # MFLOPs on the axis, as its label says (no "1e6" factor)
    fig, (left, right) = plots.figure("full", ncols=2)
    plots.line_with_band(left, frame, x="mean_time", y="test_acc", hue="group")
    plots.line_with_band(right, frame, x="mean_time", y="mflops", hue="group")
    left.set(xlabel=_text("time"), ylabel=plots.label("test_acc"))
    right.set(xlabel=_text("time"), ylabel=_text("flops"), ylim=(0, None))
    left.legend().remove()
    handles, labels = right.get_legend_handles_labels()
    right.legend().remove()
    fig.legend(handles, labels, title=_text("band", n=n), loc="outside lower center", ncol=3)
    plots.stamp(fig, stamp[0], stamp[1], n)
    return fig


def final_accuracy_figure(groups: pd.DataFrame, stamp: tuple[str, str]) -> Figure:
    """Figure 6.14: the final accuracy of every run of the groups of `final_accuracy_groups` (the search, its
    architecture from scratch and scaled to the budget, the zero-gamma block arm, the uniform-growth
    control, both baselines); `stamp` = (profile, dataset)."""
    n = int(groups.groupby("group").size().min())
    order = [g for g in GROUP_ORDER if g in set(groups["group"])]
    fig, ax = plots.figure("full")
    labelled = groups.assign(label=groups["group"].map(group_label))  # one row per group: long names fit
    plots.boxplot(ax, labelled, x="final_acc", y="label", order=[group_label(g) for g in order])
    ax.set(xlabel=plots.label("final_acc"), ylabel="")
    plots.stamp(fig, stamp[0], stamp[1], n)
    return fig


def _scaled_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    phase = _budget_phase(profile, _baseline_like(params), "train the found net scaled to the budget", False)
    return RunPlan(phases=(phase,), requires=(("prune_grow", params),))


@experiment("prune_grow_scaled", version=1, params=PruneGrowParams, train_config=True, plan=_scaled_plan)
def prune_grow_scaled_experiment(context: RunContext) -> RunOutput:
    """Chapter 6.3 / 7: the architecture a "prune_grow" run found, scaled to the budget with the width
    multiplier and trained from scratch like a baseline: MorphNet's own step 3 (algorithm 2.2,
    `morphnet.width_multiplier`: the largest omega whose scaled net stays within the wide net's FLOPs), so
    that both searches end at the same FLOPs.

    params: those of the "prune_grow" run. The summary adds to `summarize_training` omega, the search's
    search_time and search_acc, the found net's found_flops / found_params, and the procedure's costs
    (search + training of the scaled net: total_time, training_flops, epochs, optimizer_steps).
    """
    search = run("prune_grow", context.params, profile=context.profile, progress=context.progress)
    _, overrides, seed = _search_knobs(context)
    data = context.dataset()
    omega, spec = width_multiplier(
        ResNetSpec.from_json(search.summary["found_spec"]), budget_flops(context), "flops", data.train_x.shape[1:]
    )
    trainer = context.trainer(seeded_model(spec, seed), context.train_config(seed=seed, **_baseline_like(overrides)))
    history = trainer.fit()
    trained = summarize_training(history)
    summary = {
        **trained,
        **procedure_costs(search.summary, trained),
        "omega": float(omega),
        "scaled_spec": spec.to_json(),
        "search_time": search.summary["search_time"],
        "search_acc": search.summary["final_acc"],
        "found_flops": search.summary["found_flops"],
        "found_params": search.summary["found_params"],
    }
    return RunOutput(history=history, summary=summary, model=trainer.model)


def uniform_growth_factor(profile: Profile) -> Fraction:
    """The one width ratio wide / narrow of the profile's nets (2 for the thesis's nets): the uniform
    control widens by it, so that its net reaches at most the budget (every width at most the wide net's)."""
    channels, classes = profile.input_size[0], profile.num_classes
    narrow, wide = (profile.resnet(name, channels, classes) for name in ("narrow", "wide"))
    ratios = {Fraction(w, n) for w, n in zip(wide.widths, narrow.widths)}
    if len(ratios) != 1:
        raise ValueError(f"the wide net {wide.widths} is no uniform widening of the narrow net {narrow.widths}")
    return ratios.pop()


def _uniform_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    knobs = set(UNIFORM_KNOBS)
    overrides = {key: value for key, value in params.items() if key not in knobs}
    wide = profile.resnet("wide", profile.input_size[0], profile.num_classes)
    config = profile.train_config(**overrides)
    phase = Phase("uniform growth, then PruneTrain", wide, config, bound=WITHIN_BUDGET, changes_shapes=True)
    return RunPlan(phases=(phase,))


@experiment("uniform_grow_prune", version=1, params=UniformGrowParams, train_config=True, plan=_uniform_plan)
def uniform_grow_prune_experiment(context: RunContext) -> RunOutput:
    """Chapter 6.3's control for targeted growth: the narrow net grown by a fixed, uniform schedule and then
    left to PruneTrain. At the end of the first round (epoch `interval`) every width is multiplied by the
    wide / narrow ratio (`uniform_growth_factor`, Net2WiderNet with the search's noise), whatever pruning
    saw; PruneTrain prunes with the search's settings from the first epoch to `last_pruning_epoch` (the
    same final phase), with chapter 5's run length. Only where and when it grows differ from the search.

    params: `UniformGrowParams` and TrainConfig fields. The summary adds to `summarize_training`
    found_flops, found_params (the net it ends with), found_spec and reconfigurations.
    """
    params = dict(context.params)
    seed = params.pop("seed")
    knobs = {knob: params.pop(knob) for knob in UNIFORM_KNOBS}
    interval = int(knobs["interval"])
    pruning = PruneTrain(
        lasso_ratio=knobs["lasso_ratio"],
        threshold=knobs["threshold"],
        interval=interval,
        last_pruning_epoch=int(knobs["last_pruning_epoch"]),
    )
    growth = Net2NetHook(
        {interval: [WidenStep(factor=float(uniform_growth_factor(context.profile)), noise=float(knobs["noise"]))]},
        seed=seed,
    )
    config = context.train_config(seed=seed, **params)
    trainer = context.trainer(seeded_model(context.resnet_config("narrow"), seed), config, hooks=[pruning, growth])
    history = trainer.fit()
    summary = {
        **summarize_training(history),
        "found_spec": trainer.model.spec.to_json(),
        "found_flops": int(history["flops"].iloc[-1]),
        "found_params": int(history["params"].iloc[-1]),
        "reconfigurations": int(history["reconfigured"].sum()),
    }
    return RunOutput(history=history, summary=summary, model=trainer.model)
