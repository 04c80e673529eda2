"""Chapter 4 (notebook 04_morphnet): MorphNet's FLOP and size regularizers on the thesis ResNet.

The chapter's plan per profile (`MorphNetPlan`, `morphnet_plan`), its sweeps (`sweeps`, from the grids
`regularizer_grid`, `strength_threshold_grid`, `search_grid`, `wide_baseline_grid`), its experiments
"morphnet_regularize" (train with the regularizer, record the alive costs), "morphnet_shrink" (shrink a
regularized net to its alive widths), "morphnet_shrink_retrain" (train the shrunk structure from scratch) and
"morphnet_search" (algorithm 2.2: regularize, shrink, expand by the width multiplier to the wide net's
budget, retrain from scratch), the analysis notebook 04 prints and tables (4.1, 4.2) and its figures 4.1 to
4.4. The algorithm itself is `thesis_lib.methods.morphnet`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import plots, stats
from ..data import Dataset
from ..experiments import (
    TIMING_COLUMNS,
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
    procedure_costs,
    run,
    seed_grid,
    seed_param,
    single_phase,
    summarize_training,
    sweep,
)
from ..methods.morphnet import (
    DEFAULT_GAMMA_THRESHOLD,
    RESOURCES,
    MorphNetHook,
    MorphNetRegularizer,
    morphnet_search,
    shrink_to_alive,
    spec_cost,
    width_multiplier,
)
from ..models import ResNet, ResNetConfig, ResNetSpec, count_parameters
from ..training import TrainConfig, Trainer, TrainingHook, evaluate, seeded_model
from .ch03_baseline import baseline_grid
from .contract import Notebook, Sweeps, plan_for, quantities

__all__ = [
    "ANNOTATION_FONTSIZE",
    "AliveCostRecorder",
    "CONTROL",
    "FIGURE_TEXT",
    "GRID_COLUMNS",
    "GRID_FIGURE_SIZE",
    "LEGEND_FONTSIZE",
    "MORPHNET_PLANS",
    "MorphNetPlan",
    "REGULARIZER_FIGURE_SIZE",
    "REGULARIZER_LABELS",
    "REGULARIZER_TICKS",
    "RESOURCE_LABELS",
    "RESOURCE_NAMES",
    "RegularizeParams",
    "SEARCH_ORDER",
    "SEARCH_TICKS",
    "SMALL_LEGEND_FONTSIZE",
    "STRUCTURE_LABELS",
    "SUPXLABEL_FONTSIZE",
    "SearchParams",
    "ShrinkParams",
    "TICK_FONTSIZE",
    "WIDE_BASELINE",
    "alive_cost_curves",
    "budget_structures",
    "layer_names_sentence",
    "layer_widths",
    "morphnet_plan",
    "morphnet_regularize_experiment",
    "morphnet_search_experiment",
    "morphnet_shrink_experiment",
    "morphnet_shrink_retrain_experiment",
    "narrow_to_wide_scaling",
    "regularizer_figure",
    "regularizer_grid",
    "regularizer_name",
    "regularizer_summary",
    "regularizer_tests",
    "search_accuracy_figure",
    "search_grid",
    "search_groups",
    "search_structures",
    "search_summary",
    "search_tests",
    "search_widths_figure",
    "smallest_net_sentence",
    "strength_threshold_figure",
    "strength_threshold_grid",
    "strength_threshold_sweeps",
    "strength_threshold_table",
    "sweeps",
    "uniform_scaling",
    "uniform_scaling_report",
    "wide_baseline_grid",
]


@dataclass(frozen=True)
class MorphNetPlan:
    """Chapter 4's settings for one profile: the default relative strength (lambda * F(initial net)), the
    grid of strengths and gamma thresholds (5 x 5 in the thesis plan) and the search's iterations.

    The strength has to grow when a run has fewer steps: on `quick` (digits, 10 epochs, 230 steps, gamma
    threshold 1e-2) a relative strength of 1 lowered the wide net's alive FLOPs by about 17 %, 3 by about
    60 % (stem 16 -> 9, stage-1 internal width 16 -> 6) and 10 by about 80 %, leaving a shrunk net near
    chance accuracy; the 180 epochs of `full` (70,000 steps) start from DESIGN.md's 1 / initial FLOPs.
    `quick` runs the thesis's three search iterations (as `full`) and a 3 x 3 grid instead of 5 x 5, to stay
    within minutes on a CPU; `smoke` one iteration.
    """

    relative_strength: float
    strengths: tuple[float, ...]
    thresholds: tuple[float, ...]
    search_iterations: int


MORPHNET_PLANS: dict[str, MorphNetPlan] = {
    "smoke": MorphNetPlan(relative_strength=3.0, strengths=(3.0, 10.0), thresholds=(1e-2,), search_iterations=1),
    "quick": MorphNetPlan(
        relative_strength=3.0, strengths=(1.0, 3.0, 10.0), thresholds=(1e-3, 1e-2, 1e-1), search_iterations=3
    ),
    "full": MorphNetPlan(
        relative_strength=1.0,
        strengths=(0.25, 0.5, 1.0, 2.0, 4.0),
        thresholds=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
        search_iterations=3,
    ),
}


def morphnet_plan(profile: str | Profile) -> MorphNetPlan:
    """Chapter 4's settings for `profile` (see `MorphNetPlan`)."""
    return plan_for(MORPHNET_PLANS, profile, "4")


def regularizer_grid(plan: MorphNetPlan, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Params of figure 4.1's runs: the wide net with the FLOP and the size regularizer at the plan's
    strength, and the unregularized control (relative strength 0: same schedule, same BN treatment, so only
    the penalty differs), once per seed."""
    points = [{"resource": resource, "relative_strength": plan.relative_strength} for resource in RESOURCES]
    points.append({"resource": "flops", "relative_strength": 0.0})
    return [
        {"model": "wide", **point, "gamma_threshold": DEFAULT_GAMMA_THRESHOLD, "seed": seed}
        for point in points
        for seed in seeds
    ]


def strength_threshold_grid(profile: str | Profile, resource: str = "flops") -> list[dict[str, Any]]:
    """Params of figure 4.2's grid ("morphnet_shrink" and "morphnet_shrink_retrain"): every strength x
    gamma threshold of the plan for `resource`, the wide net, the profile's first seed. Each strength is
    one regularized run, shared by its thresholds."""
    plan, seed = morphnet_plan(profile), get_profile(profile).seeds[0]
    return [
        {
            "model": "wide",
            "resource": resource,
            "gamma_threshold": DEFAULT_GAMMA_THRESHOLD,
            "seed": seed,
            "relative_strength": strength,
            "shrink_threshold": threshold,
        }
        for strength in plan.strengths
        for threshold in plan.thresholds
    ]


def search_grid(profile: str | Profile) -> list[dict[str, Any]]:
    """Params of the "morphnet_search" runs (figures 4.3, 4.4): both resources at the plan's iterations and
    strength, once per seed of the profile."""
    plan = morphnet_plan(profile)
    return seed_grid(
        profile,
        resource=["flops", "size"],
        iterations=[plan.search_iterations],
        relative_strength=[plan.relative_strength],
        gamma_threshold=[DEFAULT_GAMMA_THRESHOLD],
    )


def wide_baseline_grid(profile: str | Profile) -> list[dict[str, Any]]:
    """Params of the wide "baseline" runs with the step schedule that the searches are compared with
    (chapter 3's runs, through the cache)."""
    return baseline_grid(profile, models=("wide",), schedules=("step",))


def sweeps(profile: str | Profile, grid_resource: str = "flops") -> Sweeps:
    """Notebook 04's sweeps in its order: figure 4.1's regularized runs, figure 4.2's grid on `grid_resource`
    (shrunk, then retrained; the notebook's parameter, whose default FLOPs `python -m thesis_lib plan`
    lists), the searches and the wide step-schedule baseline of figures 4.3 and 4.4."""
    profile = get_profile(profile)
    shrink = strength_threshold_grid(profile, grid_resource)
    return {
        "regularize": ("morphnet_regularize", regularizer_grid(morphnet_plan(profile), profile.seeds)),
        "shrink": ("morphnet_shrink", shrink),
        "shrink_retrain": ("morphnet_shrink_retrain", shrink),
        "search": ("morphnet_search", search_grid(profile)),
        "baseline": ("baseline", wide_baseline_grid(profile)),
    }


def strength_threshold_sweeps(nb: Notebook, grid_resource: str = "flops") -> tuple[SweepResult, SweepResult]:
    """Figure 4.2's sweeps "shrink" and "shrink_retrain" with the grid on `grid_resource` (the notebook's
    parameter): what `nb.sweep` of each gives for the default FLOPs, and the same for the model size."""
    known = sweeps(nb.profile, grid_resource)
    shrunk, retrained = (sweep(*known[name], profile=nb.runs_profile) for name in ("shrink", "shrink_retrain"))
    return shrunk, retrained


@dataclass
class AliveCostRecorder(TrainingHook):
    """Records the hard-thresholded F of both resources after every epoch (columns alive_flops and
    alive_size), so a run regularized for one resource also shows what happens to the other."""

    gamma_threshold: float = DEFAULT_GAMMA_THRESHOLD

    def __post_init__(self) -> None:
        self._regularizers: dict[str, MorphNetRegularizer] = {}

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if not self._regularizers or self._regularizers["flops"].model is not trainer.model:
            input_size = tuple(trainer.data.train_x.shape[1:])
            self._regularizers = {
                resource: MorphNetRegularizer(trainer.model, resource, self.gamma_threshold, input_size)
                for resource in RESOURCES
            }
        for resource, regularizer in self._regularizers.items():
            record[f"alive_{resource}"] = regularizer.cost()


@dataclass(frozen=True)
class RegularizeParams:
    """resource: the regularized cost; relative_strength: lambda * F(initial net) (default: the profile's
    plan); gamma_threshold: |gamma| above which a channel is alive, in G and in step 2."""

    model: Literal["wide", "narrow"] = "wide"
    resource: Literal["flops", "size"] = "flops"
    relative_strength: float = plan_default(lambda profile, _: morphnet_plan(profile).relative_strength, at_least=0)
    gamma_threshold: float = param(DEFAULT_GAMMA_THRESHOLD, at_least=0)
    seed: int = seed_param()


@dataclass(frozen=True, kw_only=True)
class ShrinkParams(RegularizeParams):
    """shrink_threshold (required): the gamma threshold of step 2; the others are the `morphnet_regularize`
    run's."""

    shrink_threshold: float = param(at_least=0)


@dataclass(frozen=True)
class SearchParams:
    """seed_model grows to the budget (FLOPs or size) of budget_model in `iterations` rounds (default: the
    profile's plan); relative_strength and gamma_threshold as for `morphnet_regularize`."""

    resource: Literal["flops", "size"] = "flops"
    iterations: int = plan_default(lambda profile, _: morphnet_plan(profile).search_iterations, at_least=1)
    relative_strength: float = plan_default(lambda profile, _: morphnet_plan(profile).relative_strength, at_least=0)
    gamma_threshold: float = param(DEFAULT_GAMMA_THRESHOLD, at_least=0)
    seed: int = seed_param()
    seed_model: Literal["wide", "narrow"] = "narrow"
    budget_model: Literal["wide", "narrow"] = "wide"


def _morphnet_params(context: RunContext) -> tuple[dict[str, Any], str, float, float, int]:
    """Pops resource, relative_strength, gamma_threshold and seed; the rest are TrainConfig fields (and
    the experiment's own params)."""
    params = dict(context.params)
    return (
        params,
        params.pop("resource"),
        params.pop("relative_strength"),
        params.pop("gamma_threshold"),
        params.pop("seed"),
    )


def _shrink_summary(
    model: ResNet, gamma_threshold: float, data: Dataset, eval_batch_size: int = 1000
) -> tuple[ResNet, dict[str, Any]]:
    """Step 2 of algorithm 2.2 on a trained `model`: the net of its alive channels and what it costs.

    Summary keys: full_flops, full_size, alive_flops, alive_size (FLOPs and weight entries of the shrunk
    net), flops_ratio, size_ratio (alive / full), alive_params, alive_stage_widths and alive_layer_widths
    (JSON lists, see `layer_widths`), alive_spec (JSON) and shrunk_acc, the shrunk net's test accuracy as it
    is, without retraining (removing channels whose |gamma| is small but not zero changes the function).
    """
    shrunk = shrink_to_alive(model, gamma_threshold)
    _, shrunk_acc = evaluate(shrunk, data.test_x, data.test_y, eval_batch_size)
    input_size = tuple(int(v) for v in data.train_x.shape[1:])
    full = {resource: spec_cost(model.spec, resource, input_size) for resource in RESOURCES}
    alive = {resource: spec_cost(shrunk.spec, resource, input_size) for resource in RESOURCES}
    return shrunk, {
        **{f"full_{resource}": full[resource] for resource in RESOURCES},
        **{f"alive_{resource}": alive[resource] for resource in RESOURCES},
        **{f"{resource}_ratio": alive[resource] / full[resource] for resource in RESOURCES},
        "alive_params": count_parameters(shrunk),
        "alive_stage_widths": json.dumps([stage.width for stage in shrunk.spec.stages]),
        "alive_layer_widths": json.dumps(layer_widths(shrunk.spec)["width"].tolist()),
        "alive_spec": shrunk.spec.to_json(),
        "shrunk_acc": shrunk_acc,
    }


def _training_fields(params: dict[str, Any], declared: type) -> dict[str, Any]:
    """The resolved params of a run that are not `declared`'s fields: its TrainConfig overrides."""
    own = {spec.name for spec in fields(declared)}
    return {key: value for key, value in params.items() if key not in own}


def _regularize_config(profile: Profile, params: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a "morphnet_regularize" run: a constant lr and no weight decay on the BN gammas
    and betas (algorithm 2.2, as morph-net), unless the params' TrainConfig fields say otherwise."""
    overrides = {"schedule": "constant", "bn_weight_decay": False, **_training_fields(params, RegularizeParams)}
    return profile.train_config(seed=params["seed"], **overrides)


def _regularize_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    return single_phase(profile, params["model"], _regularize_config(profile, params), "regularize")


@experiment(
    "morphnet_regularize",
    version=2,
    params=RegularizeParams,
    train_config=True,  # 2: He-normal init, no weight decay on BN
    plan=_regularize_plan,
)
def morphnet_regularize_experiment(context: RunContext) -> RunOutput:
    """Chapter 4, steps 1 and 2 of algorithm 2.2: train the wide (or narrow) net with loss + lambda * G at a
    constant lr for the profile's epochs, then shrink it to its alive channels.

    params: model ("wide" | "narrow"), resource ("flops" | "size"), relative_strength (lambda * F(initial
    net)), gamma_threshold (alive channels, in G and in step 2), seed, and optionally TrainConfig fields.
    The history has the MorphNetHook's columns (morphnet_cost, ...) and alive_flops / alive_size. The
    summary adds lambda, the regularized resource's full_cost, final_cost and cost_ratio, and the shrunk
    net's costs, widths and accuracy (`_shrink_summary`). The model is the trained, unshrunk net.
    """
    params, resource, relative_strength, gamma_threshold, seed = _morphnet_params(context)
    base = params.pop("model")
    config = _regularize_config(context.profile, context.params)
    hook = MorphNetHook(resource=resource, relative_strength=relative_strength, gamma_threshold=gamma_threshold)
    trainer = context.trainer(
        seeded_model(context.resnet_config(base), seed),
        config,
        hooks=[hook, AliveCostRecorder(gamma_threshold)],
        phase="regularize",
    )
    history = trainer.fit()
    _, step2 = _shrink_summary(trainer.model, gamma_threshold, trainer.data, config.eval_batch_size)
    full_cost, final_cost = int(hook.initial_cost), int(history["morphnet_cost"].iloc[-1])
    summary = {
        **summarize_training(history),
        "lambda": hook.effective_strength,
        "full_cost": full_cost,
        "final_cost": final_cost,
        "cost_ratio": final_cost / full_cost,
        **step2,
    }
    return RunOutput(history=history, summary=summary, model=trainer.model)


def _regularized_params(params: dict[str, Any]) -> dict[str, Any]:
    """The params of the "morphnet_regularize" run a shrink (or its retraining) loads: all but shrink_threshold."""
    return {key: value for key, value in params.items() if key != "shrink_threshold"}


def _shrink_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    return RunPlan(phases=(), requires=(("morphnet_regularize", _regularized_params(params)),))


@experiment(
    "morphnet_shrink",
    version=2,
    params=ShrinkParams,
    train_config=True,  # 2: He-normal init, no weight decay on BN
    plan=_shrink_plan,
)
def morphnet_shrink_experiment(context: RunContext) -> RunOutput:
    """Chapter 4, step 2 of algorithm 2.2 at another gamma threshold: shrink a `morphnet_regularize` run's
    trained net to the channels with |gamma| > shrink_threshold. No training of its own: the regularized
    run is loaded from the cache (or trained once), so a strength x threshold grid trains once per strength.

    params: shrink_threshold, plus the params of the `morphnet_regularize` run (whose gamma_threshold, the
    one used inside G during training, stays at its default unless given). The history is the regularized
    run's; the summary has that run's final_acc, lambda and final_cost and the shrunk net's costs, widths
    and accuracy (`_shrink_summary`); the model is the shrunk net.
    """
    shrink_threshold = context.params["shrink_threshold"]
    if not shrink_threshold >= 0:
        raise ValueError(f"shrink_threshold must be >= 0, got {shrink_threshold}")
    regularized = run(
        "morphnet_regularize", _regularized_params(context.params), profile=context.profile, progress=context.progress
    )
    data = context.dataset().to(context.device)
    eval_batch_size = context.train_config().eval_batch_size
    shrunk, summary = _shrink_summary(regularized.model(context.device), shrink_threshold, data, eval_batch_size)
    kept = {key: regularized.summary[key] for key in ("final_acc", "lambda", "final_cost", "cost_ratio")}
    return RunOutput(history=regularized.history, summary={**kept, **summary}, model=shrunk)


def _shrink_retrain_config(profile: Profile, params: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a "morphnet_shrink_retrain" run: the profile's schedule, like the baseline."""
    return profile.train_config(seed=params["seed"], **_training_fields(params, ShrinkParams))


def _shrink_retrain_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    net = profile.resnet(params["model"], profile.input_size[0], profile.num_classes)
    phase = Phase(
        "retrain",
        net,
        _shrink_retrain_config(profile, params),
        bound="the unshrunk net: an upper bound of the shrunk net it retrains",
    )
    return RunPlan(phases=(phase,), requires=(("morphnet_shrink", params),))


@experiment("morphnet_shrink_retrain", version=1, params=ShrinkParams, train_config=True, plan=_shrink_retrain_plan)
def morphnet_shrink_retrain_experiment(context: RunContext) -> RunOutput:
    """Chapter 4, figure 4.2 (c): the shrunk structure of a `morphnet_shrink` run (same params) trained from
    scratch with the profile's schedule, like the chapter-3 baseline: what the structure found at this
    strength and threshold is worth, apart from the weights the regularizer left.

    The summary adds to `summarize_training` the structure's parameters (final_params) and keeps the
    shrunk net's cost ratio (cost_ratio_shrunk) and its accuracy before retraining (shrunk_acc).
    """
    params = dict(context.params)
    shrunk = run("morphnet_shrink", params, profile=context.profile, progress=context.progress)
    config = _shrink_retrain_config(context.profile, params)
    trainer = context.trainer(seeded_model(shrunk.model().spec, int(params["seed"])), config)
    history = trainer.fit()
    resource = params["resource"]
    summary = {
        **summarize_training(history),
        "final_params": count_parameters(trainer.model),
        "cost_ratio_shrunk": shrunk.summary[f"{resource}_ratio"],
        "shrunk_acc": shrunk.summary["shrunk_acc"],
    }
    return RunOutput(history=history, summary=summary, model=trainer.model)


def _search_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    """Algorithm 2.2's phases: iteration 1 regularizes the seed net; later iterations regularize, and the
    retraining trains, the structure expanded to the budget, estimated by the budget net (it has about the
    budget's cost in the regularized resource)."""
    train, seed = _training_fields(params, SearchParams), params["seed"]
    regularize = replace(profile.train_config(seed=seed, **{"schedule": "constant", **train}), bn_weight_decay=False)
    seed_net, budget_net = (
        profile.resnet(params[key], profile.input_size[0], profile.num_classes)
        for key in ("seed_model", "budget_model")
    )
    expanded = f"the {params['budget_model']} net: the expanded structure has about its {params['resource']}"
    phases = [Phase("regularize 1", seed_net, regularize)]
    phases += [Phase(f"regularize {i}", budget_net, regularize, expanded) for i in range(2, params["iterations"] + 1)]
    phases.append(Phase("retrain", budget_net, profile.train_config(seed=seed, **train), expanded))
    return RunPlan(phases=tuple(phases))


@experiment(
    "morphnet_search",
    version=2,
    params=SearchParams,
    train_config=True,  # 2: He-normal init, no weight decay on BN
    plan=_search_plan,
)
def morphnet_search_experiment(context: RunContext) -> RunOutput:
    """Chapter 4, algorithm 2.2: grow the seed net (default the narrow ResNet) to the budget of another
    (default the wide one's FLOPs or size) in `iterations` rounds, then retrain the found structure.

    params: resource, iterations (default: the profile's plan), relative_strength, gamma_threshold, seed,
    seed_model, budget_model ("wide" | "narrow"). Regularized phases train at a constant lr (algorithm 2.2),
    the retraining uses the profile's schedule like the chapter-3 baseline. The history is the retraining's;
    the summary adds every structure met (`SearchResult.to_json`, key "search"), the found structure's
    FLOPs, size, parameters and stream widths, search_time (the regularized phases), retrain_time and
    total_time (both: the whole procedure's training time).
    """
    params, resource, relative_strength, gamma_threshold, seed = _morphnet_params(context)
    iterations, seed_model, budget_model = (
        params.pop("iterations"),
        params.pop("seed_model"),
        params.pop("budget_model"),
    )
    data = context.dataset()
    input_size = tuple(int(v) for v in data.train_x.shape[1:])
    budget = spec_cost(context.resnet_config(budget_model), resource, input_size)

    def checkpointing_trainer(model: ResNet, config: TrainConfig, hooks: list[TrainingHook], phase: str) -> Trainer:
        return context.trainer(model, config, hooks=hooks, phase=phase)

    result = morphnet_search(
        context.resnet_config(seed_model),
        data,
        context.train_config(seed=seed, **{"schedule": "constant", **params}),
        resource=resource,
        budget=budget,
        iterations=iterations,
        relative_strength=relative_strength,
        gamma_threshold=gamma_threshold,
        retrain_config=context.train_config(seed=seed, **params),
        device=context.device,
        trainer_factory=checkpointing_trainer,
    )
    history = result.retrain_history
    retrain = summarize_training(history)
    search = procedure_costs(*(summarize_training(h) for h in result.search_histories))
    found = result.structures[-1]
    summary = {
        **retrain,
        "budget": result.budget,
        "found_cost": found.cost,
        "found_flops": found.flops,
        "found_size": found.size,
        "found_params": found.params,
        "found_omega": found.omega,
        "found_stage_widths": json.dumps(list(found.stage_widths)),
        "search_time": search["total_time"],
        "search_training_flops": search["training_flops"],
        "retrain_time": retrain["total_time"],
        "retrain_training_flops": retrain["training_flops"],
        **procedure_costs(search, retrain),
        "search": result.to_json(),
    }
    return RunOutput(history=history, summary=summary, model=result.model)


def search_structures(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per structure met by every search run of a `morphnet_search` sweep summary (columns
    resource, seed, iteration, kind, cost, flops, size, params, omega, stage_widths, spec as JSON)."""
    if "search" not in summary.columns:
        raise ValueError("the summary has no 'search' column; pass sweep('morphnet_search', ...).summary")
    frames = []
    for _, row in summary.iterrows():
        structures = pd.DataFrame(json.loads(row["search"])["structures"])
        structures["spec"] = [json.dumps(spec, sort_keys=True) for spec in structures["spec"]]
        structures["stage_widths"] = [tuple(widths) for widths in structures["stage_widths"]]
        frames.append(structures.assign(resource=row["resource"], seed=row["seed"]))
    columns = [
        "resource",
        "seed",
        "iteration",
        "kind",
        "cost",
        "flops",
        "size",
        "params",
        "omega",
        "stage_widths",
        "spec",
    ]
    return pd.concat(frames, ignore_index=True)[columns]


def alive_cost_curves(regularized: SweepResult) -> pd.DataFrame:
    """Alive FLOPs and model size over the epochs of every run of a `morphnet_regularize` sweep, relative
    to the full net (figure 4.1). Epoch 0 is the initial net, where every channel is alive (ratio 1).

    Columns: epoch, alive_flops, alive_size, flops_ratio, size_ratio (alive / full), the run's params.
    """
    if not regularized.runs:
        raise ValueError("the sweep has no runs; pass sweep('morphnet_regularize', ...) with a non-empty grid")
    frames = []
    for result in regularized.runs:
        if "alive_flops" not in result.history.columns:
            raise ValueError(f"run {result.name!r} recorded no alive costs; pass a morphnet_regularize sweep")
        full = {resource: result.summary[f"full_{resource}"] for resource in RESOURCES}
        start = pd.DataFrame([{"epoch": 0, **{f"alive_{resource}": full[resource] for resource in RESOURCES}}])
        curve = pd.concat([start, result.history[["epoch", *(f"alive_{r}" for r in RESOURCES)]]], ignore_index=True)
        for resource in RESOURCES:
            curve[f"{resource}_ratio"] = curve[f"alive_{resource}"] / full[resource]
        frames.append(curve.assign(**result.params))
    return pd.concat(frames, ignore_index=True)


def uniform_scaling(
    seed: ResNetSpec | ResNetConfig,
    reference: ResNetSpec | ResNetConfig,
    input_size: Sequence[int],
    resources: Sequence[str] = RESOURCES,
) -> pd.DataFrame:
    """Uniform width scaling of `seed` to the cost of `reference` (eq. 2.6: the largest omega with
    F(omega C) <= F(reference)), per resource: the baseline the search is compared with at equal cost.

    Columns: resource, budget (F of the reference), seed_cost, omega, scaled_cost, equals_reference (the
    scaled seed is the reference architecture itself), scaled_spec (JSON).
    """
    seed = seed.to_spec() if isinstance(seed, ResNetConfig) else seed
    reference = reference.to_spec() if isinstance(reference, ResNetConfig) else reference
    rows = []
    for resource in resources:
        budget = spec_cost(reference, resource, input_size)
        omega, scaled = width_multiplier(seed, budget, resource, input_size)
        rows.append(
            {
                "resource": resource,
                "budget": budget,
                "seed_cost": spec_cost(seed, resource, input_size),
                "omega": omega,
                "scaled_cost": spec_cost(scaled, resource, input_size),
                "equals_reference": scaled == reference,
                "scaled_spec": scaled.to_json(),
            }
        )
    return pd.DataFrame(rows)


def layer_widths(spec: ResNetSpec) -> pd.DataFrame:
    """Output width of every conv in forward order (stem, then each block's convs; a block's last conv
    writes the stage's stream), for width-per-layer figures. A transition block whose main path was pruned
    away (a bare shortcut) shows width 0 at each of its conv positions; a block that surgery removed
    altogether is absent, so the layers after it move up.
    Columns: layer (0-based position), name ("stem" or "<stage>.<block>.<conv>", 1-based), width."""
    layers_per_block = max((len(block.kernels) for stage in spec.stages for block in stage.blocks), default=0)
    rows = [("stem", spec.stem_width)]
    for s, stage in enumerate(spec.stages):
        for b, block in enumerate(stage.blocks):
            outputs = (*block.widths, stage.width) if block.has_main_path else (0,) * layers_per_block
            rows.extend((f"{s + 1}.{b + 1}.{c + 1}", width) for c, width in enumerate(outputs))
    return pd.DataFrame([{"layer": i, "name": name, "width": width} for i, (name, width) in enumerate(rows)])


CONTROL = "none"  # the unregularized control: a morphnet_regularize run with relative strength 0


def regularizer_name(resource: str, relative_strength: float) -> str:
    """The group of a morphnet_regularize run: its resource, or `CONTROL` when unregularized."""
    return CONTROL if relative_strength == 0 else resource


def regularizer_tests(summary: pd.DataFrame) -> pd.DataFrame:
    """Welch t-tests of each regularizer against the unregularized control: the alive share of its own
    resource, the final accuracy and the training time; one family, Holm-adjusted (`stats.with_holm`)."""
    groups = summary.assign(
        group=[regularizer_name(r, s) for r, s in zip(summary["resource"], summary["relative_strength"])]
    )
    present = set(groups["group"])
    if CONTROL not in present:
        raise ValueError("no control runs (relative_strength 0) in the summary; sweep `regularizer_grid`")
    arms = groups.assign(arm=groups["group"].map(lambda g: "control" if g == CONTROL else f"{g} regularizer"))
    tables = [
        stats.compare_groups(
            arms,
            "arm",
            [(f"{resource} regularizer", "control")],
            [
                (f"{resource}_ratio", f"alive {resource} / full", ""),
                ("final_acc", "final accuracy", ""),
                ("total_time", "training time", "s"),
            ],
            timing_columns=TIMING_COLUMNS,
        )
        for resource in (r for r in RESOURCES if r in present)
    ]
    return stats.with_holm(pd.concat(tables, ignore_index=True))


def regularizer_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Figure 4.1's runs per regularizer and strength: mean and standard deviation of the alive shares, the
    final accuracy and the training time (rounded to 3 places, as the notebook prints them)."""
    columns = ["flops_ratio", "size_ratio", "final_acc", "total_time"]
    return summary.groupby(["resource", "relative_strength"])[columns].agg(["mean", "std"]).round(3)


def _nets(profile: str | Profile) -> tuple[ResNetConfig, ResNetConfig]:
    """The profile's narrow and wide thesis ResNets, at its depth and with the dataset's shapes."""
    profile = get_profile(profile)
    narrow, wide = (profile.resnet(name, profile.input_size[0], profile.num_classes) for name in ("narrow", "wide"))
    return narrow, wide


# Figure 4.2's table (`strength_threshold_table`): the grid point, the shrunk net's cost and widths, its
# accuracy before and after retraining, and the regularized net's.
GRID_COLUMNS = [
    "relative_strength",
    "shrink_threshold",
    "cost / full",
    "alive_params",
    "alive_stage_widths",
    "alive_layer_widths",
    "shrunk_acc",
    "retrained_acc",
    "final_acc",
]


def strength_threshold_table(shrunk: pd.DataFrame, retrained: pd.DataFrame, resource: str) -> pd.DataFrame:
    """Figure 4.2's grid, one row per strength x threshold (`GRID_COLUMNS`): the summaries of the "shrink"
    and "shrink_retrain" sweeps over the same grid points, in the same order, with `resource`'s alive share
    as "cost / full" and the retrained structure's final accuracy as retrained_acc."""
    points = ["relative_strength", "shrink_threshold"]
    if not shrunk[points].reset_index(drop=True).equals(retrained[points].reset_index(drop=True)):
        raise ValueError(
            "the shrink and shrink_retrain summaries cover different grid points; sweep both "
            "over the same strength_threshold_grid"
        )
    grid = shrunk.assign(retrained_acc=retrained["final_acc"].to_numpy())
    grid["cost / full"] = grid[f"{resource}_ratio"]
    return grid[GRID_COLUMNS]


def layer_names_sentence(profile: str | Profile) -> str:
    """Names the convs of the alive_layer_widths column (the full wide net's convs in forward order)."""
    names = " ".join(layer_widths(_nets(profile)[1].to_spec())["name"])
    return (
        "alive_layer_widths: output channels of every conv in forward order; the full net's convs are "
        f"{names} (a block removed by step 2 drops out)"
    )


# The resources' names in printed sentences and table groups (English, like the tables).
RESOURCE_NAMES = {"flops": "FLOPs", "size": "model size"}


def smallest_net_sentence(grid: pd.DataFrame, resource: str) -> str:
    """Figure 4.2's smallest shrunk net (of `strength_threshold_table`): its grid point, cost and accuracies."""
    best = grid.loc[grid["cost / full"].idxmin()]
    return (
        f"Smallest shrunk net: relative strength {best.relative_strength:g}, threshold {best.shrink_threshold:g}: "
        f"{best['cost / full']:.1%} of the full net's {RESOURCE_NAMES[resource]}, test accuracy "
        f"{best.shrunk_acc:.3f} before retraining, {best.retrained_acc:.3f} retrained from scratch (the "
        f"regularized net itself: {best.final_acc:.3f})."
    )


def narrow_to_wide_scaling(profile: str | Profile) -> pd.DataFrame:
    """`uniform_scaling` of the profile's narrow net to the wide net's cost, for both resources (section 4.3)."""
    narrow, wide = _nets(profile)
    return uniform_scaling(narrow, wide, get_profile(profile).input_size)


def _uniform_is_wide(uniform: pd.DataFrame) -> bool:
    """Whether uniform scaling gives the wide net itself for every resource of `narrow_to_wide_scaling`."""
    return bool(uniform["equals_reference"].all())


def uniform_scaling_report(uniform: pd.DataFrame) -> str:
    """`narrow_to_wide_scaling`'s table as text and, when the scaled net is the wide net for both resources,
    the sentence saying that the wide baseline is then the uniform-scaling comparison."""
    report = (
        uniform.drop(columns="scaled_spec")
        .rename(
            columns={
                "budget": "budget (wide net)",
                "seed_cost": "narrow net",
                "scaled_cost": "uniformly scaled",
                "equals_reference": "equals the wide net",
            }
        )
        .to_string(index=False)
    )
    if _uniform_is_wide(uniform):
        report += (
            "\nUniform scaling of the narrow net to the wide net's budget gives the wide net itself for both "
            "resources, so the wide baseline of chapter 3 is also the uniform-scaling comparison at equal cost."
        )
    return report


def budget_structures(summary: pd.DataFrame, uniform: pd.DataFrame) -> pd.DataFrame:
    """`search_structures` of a "search" sweep summary with each structure's cost relative to its
    resource's budget (the wide net's, from `narrow_to_wide_scaling`) as "cost / budget"."""
    structures = search_structures(summary)
    budgets = structures["resource"].map(uniform.set_index("resource")["budget"])
    structures["cost / budget"] = structures["cost"] / budgets
    return structures


WIDE_BASELINE = "wide baseline"
# Figure 4.4's and table 4.2's groups: the wide baseline and a MorphNet search per resource.
SEARCH_ORDER = [WIDE_BASELINE, *(f"MorphNet ({RESOURCE_NAMES[resource]})" for resource in RESOURCES)]


def search_groups(baseline: pd.DataFrame, search: pd.DataFrame) -> pd.DataFrame:
    """The summaries of the wide baseline and the searches, one row per run, grouped by "net" (`SEARCH_ORDER`),
    with the FLOPs in millions (MFLOPs) and the parameters in thousands for figure 4.4."""
    groups = pd.concat(
        [
            baseline.assign(net=WIDE_BASELINE),
            search.assign(net=search["resource"].map(lambda r: f"MorphNet ({RESOURCE_NAMES[r]})")),
        ],
        ignore_index=True,
    )
    groups["MFLOPs"], groups["parameters (thousands)"] = groups["final_flops"] / 1e6, groups["final_params"] / 1e3
    return groups


def search_summary(groups: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation per net of `search_groups`: accuracy, FLOPs, parameters, training time
    and training FLOPs (both of the whole procedure, search included)."""
    columns = ["final_acc", "final_flops", "final_params", "total_time", "training_flops"]
    return groups.groupby("net")[columns].agg(["mean", "std"]).round(3)


def search_tests(groups: pd.DataFrame, uniform: pd.DataFrame) -> pd.DataFrame:
    """Table 4.2: Welch t-tests of each search against the wide baseline (named the uniform-scaling
    comparison when it is one) on the final accuracy and the training time including the search; one
    family, Holm-adjusted; `sentence` states each result."""
    reference = f"{WIDE_BASELINE} (= uniform scaling)" if _uniform_is_wide(uniform) else WIDE_BASELINE
    return stats.with_holm(
        stats.compare_groups(
            groups.replace({"net": {WIDE_BASELINE: reference}}),
            "net",
            [(net, reference) for net in SEARCH_ORDER[1:]],
            [*quantities("final_acc"), ("total_time", "training time incl. search", "s")],
            timing_columns=TIMING_COLUMNS,
        )
    )


REGULARIZER_LABELS = {
    "flops": {"de": "FLOP-Regularisierer", "en": "FLOP regularizer"},
    "size": {"de": "Größen-Regularisierer", "en": "size regularizer"},
    CONTROL: {"de": "ohne (Kontrolle)", "en": "none (control)"},
}
REGULARIZER_TICKS = {"de": ("FLOPs", "Größe", "ohne"), "en": ("FLOPs", "size", "none")}
# The resources' names in figures.
RESOURCE_LABELS = {"flops": {"de": "FLOPs", "en": "FLOPs"}, "size": {"de": "Modellgröße", "en": "model size"}}
# Figure 4.3: the structures a search meets (`SearchStructure.kind`).
STRUCTURE_LABELS = {
    "seed": {"de": "Start (schmal)", "en": "start (narrow)"},
    "shrunk": {"de": "verkleinert", "en": "shrunk"},
    "expanded": {"de": "erweitert", "en": "expanded"},
}
SEARCH_TICKS = {"de": ("breit", "FLOPs", "Größe"), "en": ("wide", "FLOPs", "size")}
# The other words of the figures, German (the thesis's) and English; `{...}` are filled in by `_text`.
FIGURE_TEXT = {
    "alive_flops": {"de": "(a) lebende FLOPs", "en": "(a) alive FLOPs"},
    "alive_size": {"de": "(b) lebende Größe", "en": "(b) alive size"},
    "share_of_full": {"de": "Anteil am vollen Netz", "en": "share of the full net"},
    "cost_of_full": {"de": "(a) {resource} / volles Netz", "en": "(a) {resource} / full net"},
    "shrunk_acc": {"de": "(b) Genauigkeit verkleinert", "en": "(b) accuracy shrunk"},
    "retrained_acc": {"de": "(c) Genauigkeit neu trainiert", "en": "(c) accuracy retrained"},
    "gamma_threshold": {"de": "Gamma-Schwellwert", "en": "gamma threshold"},
    "relative_strength": {"de": "relative Stärke", "en": "relative strength"},
    "one_seed_per_cell": {"de": "1 Seed je Zelle", "en": "1 seed per cell"},
    "wide": {"de": "breit", "en": "wide"},
    "wide_uniform": {"de": "breit (= gleichmäßig skaliert)", "en": "wide (= uniformly scaled)"},
    "budget_seed": {
        "de": "({letter}) Budget: {resource}, Seed {seed}",
        "en": "({letter}) budget: {resource}, seed {seed}",
    },
    "conv_layers": {
        "de": "Conv-Schicht in Vorwärtsrichtung (0 = Stem; Namen der Schichten in der Ausgabe zu Abschnitt 4.2)",
        "en": "conv layer in forward order (0 = stem; the layers' names in the output of section 4.2)",
    },
    "params_thousands": {"de": "(c) Parameter (Tausend)", "en": "(c) parameters (thousands)"},
    "budget_line": {"de": "Budget (FLOPs des breiten Netzes)", "en": "budget (the wide net's FLOPs)"},
    "size_budget_line": {"de": "Budget (Größe des breiten Netzes)", "en": "budget (the wide net's size)"},
    "search_nets": {
        "de": "breites Baseline-Netz und MorphNet, auf die FLOPs bzw. die Größe des breiten Netzes gewachsen",
        "en": "wide baseline and MorphNet, grown to the wide net's FLOPs or size",
    },
}

REGULARIZER_FIGURE_SIZE = (6.0, 2.8)  # figure 4.1, inches
GRID_FIGURE_SIZE = (6.0, 2.4)  # figure 4.2, inches
TICK_FONTSIZE = 7  # figure 4.1 (c)'s group names
LEGEND_FONTSIZE = 6.5  # figure 4.1's legend and its title
ANNOTATION_FONTSIZE = 6.5  # figure 4.2's numbers in the cells
SMALL_LEGEND_FONTSIZE = 6  # the legends of figures 4.3 and 4.4
SUPXLABEL_FONTSIZE = 8  # the shared x labels of figures 4.3 and 4.4


def _text(key: str, **values: Any) -> str:
    return plots.translate(FIGURE_TEXT, key, **values)


def regularizer_figure(curves: pd.DataFrame, summary: pd.DataFrame, stamp: tuple[str, str]) -> Figure:
    """Figure 4.1: (a) alive FLOPs and (b) alive model size relative to the full net over the epochs for
    both regularizers and the control (mean, min-max band over the seeds), (c) the final accuracy per run."""
    language = plots.language()

    def groups(frame: pd.DataFrame) -> list[str]:
        return [
            REGULARIZER_LABELS[regularizer_name(resource, strength)][language]
            for resource, strength in zip(frame["resource"], frame["relative_strength"])
        ]

    curves, summary = curves.assign(group=groups(curves)), summary.assign(group=groups(summary))
    order = [REGULARIZER_LABELS[key][language] for key in (*RESOURCES, CONTROL)]
    fig, axes = plots.figure("full", ncols=3)
    fig.set_size_inches(*REGULARIZER_FIGURE_SIZE)
    for ax, column, title in zip(axes[:2], ("flops_ratio", "size_ratio"), (_text("alive_flops"), _text("alive_size"))):
        plots.line_with_band(ax, curves, x="epoch", y=column, hue="group")
        ax.axhline(1.0, color="0.5", linestyle="--", linewidth=0.7)
        ax.set(title=title, xlabel=plots.label("epoch"), ylabel=_text("share_of_full"), ylim=(0, 1.05))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.get_legend().remove()
    axes[1].sharey(axes[0])
    plots.boxplot(axes[2], summary, x="group", y="final_acc", order=order)
    axes[2].set(title="(c)", xlabel="", ylabel=plots.label("final_acc"))
    axes[2].set_xticks(range(len(order)), REGULARIZER_TICKS[language], fontsize=TICK_FONTSIZE)
    n = int(summary.groupby("group").size().min())
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=3,
        fontsize=LEGEND_FONTSIZE,
        title=f"{plots.label('mean_band', n=n)}",
        title_fontsize=LEGEND_FONTSIZE,
    )
    plots.stamp(fig, stamp[0], stamp[1], n)
    return fig


def strength_threshold_figure(grid: pd.DataFrame, resource: str, stamp: tuple[str, str]) -> Figure:
    """Figure 4.2: heat maps over relative strength x gamma threshold (of `strength_threshold_table`) of
    (a) the shrunk net's `resource` relative to the full net, its test accuracy (b) as it is and (c) retrained
    from scratch; one seed per cell."""
    language = plots.language()
    fig, axes = plots.figure("full", ncols=3)
    fig.set_size_inches(*GRID_FIGURE_SIZE)
    panels = [
        # Bright is good in every panel: (a) reversed, a small share of the full net's cost is bright.
        ("cost / full", _text("cost_of_full", resource=RESOURCE_LABELS[resource][language]), "cividis_r"),
        ("shrunk_acc", _text("shrunk_acc"), "viridis"),
        ("retrained_acc", _text("retrained_acc"), "viridis"),
    ]
    for ax, (column, title, cmap) in zip(axes, panels):
        fmt = ".2f"
        heat = grid.pivot(index="relative_strength", columns="shrink_threshold", values=column)
        sns.heatmap(
            heat,
            ax=ax,
            annot=True,
            fmt=fmt,
            cmap=cmap,
            vmin=0,
            vmax=1,
            cbar=True,
            cbar_kws={"shrink": 0.8},
            annot_kws={"fontsize": ANNOTATION_FONTSIZE},
        )
        ax.set(
            title=title,
            xlabel=_text("gamma_threshold"),
            ylabel=_text("relative_strength") if column == "cost / full" else "",
        )
        ax.set_xticklabels([plots.localized_number(f"{t:g}") for t in heat.columns])
        ax.set_yticklabels([plots.localized_number(f"{s:g}") for s in heat.index], rotation=0)
        for text in ax.texts:  # the cells' numbers
            text.set_text(plots.localized_number(text.get_text()))
    plots.stamp(fig, stamp[0], stamp[1], _text("one_seed_per_cell"))
    return fig


def search_widths_figure(
    structures: pd.DataFrame, uniform: pd.DataFrame, profile: str | Profile, stamp: tuple[str, str]
) -> Figure:
    """Figure 4.3: the output width of every conv of each structure the profile's first-seed searches met
    (of `budget_structures`), for the (a) FLOP and (b) size budget, beside the wide net's (which uniform
    scaling of the narrow net gives, when `uniform` says so)."""
    language, seed = plots.language(), get_profile(profile).seeds[0]
    wide = _nets(profile)[1]
    wide_label = _text("wide_uniform") if _uniform_is_wide(uniform) else _text("wide")
    first_seed = structures[structures.seed == seed]
    fig, axes = plots.figure("full", ncols=2, sharey=True)
    for ax, resource in zip(axes, ["flops", "size"]):
        rows = first_seed[first_seed.resource == resource]
        for index, row in enumerate(rows.itertuples()):
            kind = STRUCTURE_LABELS[row.kind][language] if row.kind in STRUCTURE_LABELS else row.kind
            label = kind if row.kind == "seed" else f"{kind} {row.iteration}"
            widths = layer_widths(ResNetSpec.from_json(row.spec))
            ax.plot(
                widths["layer"] + 0.12 * (index - 1),
                widths["width"],
                marker="osD"[index % 3],
                markersize=3,
                linestyle="none",
                label=label,
                color=sns.color_palette("colorblind", len(rows))[index],
            )
        reference = layer_widths(wide.to_spec())
        ax.plot(
            reference["layer"],
            reference["width"],
            color="0.4",
            marker="_",
            markersize=9,
            linestyle="none",
            label=wide_label,
        )  # points: the layers are no continuum
        ax.set(
            title=_text(
                "budget_seed", letter="ab"[resource == "size"], resource=RESOURCE_LABELS[resource][language], seed=seed
            ),
            xlabel="",
            ylabel=plots.label("channels"),
        )
        ax.legend(fontsize=SMALL_LEGEND_FONTSIZE)
    fig.supxlabel(_text("conv_layers"), fontsize=SUPXLABEL_FONTSIZE)
    plots.stamp(fig, stamp[0], stamp[1], 1)
    return fig


def search_accuracy_figure(groups: pd.DataFrame, uniform: pd.DataFrame, stamp: tuple[str, str]) -> Figure:
    """Figure 4.4: (a) final test accuracy, (b) MFLOPs per image (the FLOP budget marked) and (c) parameters
    of the wide baseline and the searches per run (of `search_groups`)."""
    fig, axes = plots.figure("full", ncols=3)
    panels = [
        ("final_acc", f"(a) {plots.label('final_acc')}"),
        ("MFLOPs", f"(b) {plots.label('flops')}"),
        ("parameters (thousands)", _text("params_thousands")),
    ]
    for ax, (column, title) in zip(axes, panels):
        plots.boxplot(ax, groups, x="net", y=column, order=SEARCH_ORDER)
        ax.set(title=title, xlabel="", ylabel="")
        ax.set_xticks(range(len(SEARCH_ORDER)), list(SEARCH_TICKS[plots.language()]))
    axes[1].axhline(
        uniform.set_index("resource").loc["flops", "budget"] / 1e6,
        color="0.5",
        linestyle="--",
        linewidth=0.7,
        label=_text("budget_line"),
    )
    axes[1].legend(fontsize=SMALL_LEGEND_FONTSIZE, loc="lower right")
    # (c): the size search's budget is the wide net's size (its conv weights); the wide net's parameters,
    # the panel's unit, mark it.
    wide_params = groups.loc[groups["net"] == SEARCH_ORDER[0], "parameters (thousands)"]
    if len(wide_params):
        axes[2].axhline(
            float(wide_params.median()), color="0.5", linestyle="--", linewidth=0.7, label=_text("size_budget_line")
        )
        axes[2].legend(fontsize=SMALL_LEGEND_FONTSIZE, loc="lower right")
    fig.supxlabel(_text("search_nets"), fontsize=SUPXLABEL_FONTSIZE)
    plots.stamp(fig, stamp[0], stamp[1], int(groups.groupby("net").size().min()))
    return fig
