"""Chapter 4 (notebook 04_morphnet): MorphNet's FLOP and size regularizers on the thesis ResNet.

The chapter's plan per profile (`MorphNetPlan`, `morphnet_plan`), its experiments "morphnet_regularize"
(train with the regularizer, record the alive costs), "morphnet_shrink" (shrink a regularized net to its
alive widths) and "morphnet_search" (algorithm 2.2: regularize, shrink, expand by the width multiplier to
the wide net's budget, retrain from scratch), the grids of the notebook's sweeps (`regularizer_grid`,
`strength_threshold_grid`, `search_grid`, `wide_baseline_grid`; all of them: `planned_runs`) and the analysis
helpers notebook 04 calls. The algorithm itself is `thesis_lib.methods.morphnet`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Sequence

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import plots, stats
from ..data import Dataset
from ..experiments import (Phase, PlannedRun, Profile, RunContext, RunOutput, RunPlan, SweepResult, experiment,
                           get_profile, param, plan_default, planned_sweep, run, seed_grid, seed_param,
                           single_phase, summarize_training)
from ..methods.morphnet import (DEFAULT_GAMMA_THRESHOLD, RESOURCES, MorphNetHook, MorphNetRegularizer,
                                morphnet_search, shrink_to_alive, spec_cost, width_multiplier)
from ..models import ResNet, ResNetConfig, ResNetSpec, count_parameters
from ..training import TrainConfig, Trainer, TrainingHook, evaluate, seeded_model
from .ch03_baseline import baseline_grid

@dataclass(frozen=True)
class MorphNetPlan:
    """Chapter 4's settings for one profile: the default relative strength (lambda * F(initial net)), the
    grid of strengths and gamma thresholds (5 x 5 in the thesis plan) and the search's iterations.

    The strength has to grow when a run has fewer steps: on `quick` (digits, 10 epochs, 230 steps, gamma
    threshold 1e-2) a relative strength of 1 lowered the wide net's alive FLOPs by about 17 %, 3 by about
    60 % (stem 16 -> 9, stage-1 internal width 16 -> 6) and 10 by about 80 %, leaving a shrunk net near
    chance accuracy; the 180 epochs of `full` (70,000 steps) start from DESIGN.md's 1 / initial FLOPs.
    `quick` runs one search iteration instead of the thesis's three and a 3 x 3 grid instead of 5 x 5, to
    stay within minutes on a CPU.
    """

    relative_strength: float
    strengths: tuple[float, ...]
    thresholds: tuple[float, ...]
    search_iterations: int


MORPHNET_PLANS: dict[str, MorphNetPlan] = {
    "smoke": MorphNetPlan(relative_strength=3.0, strengths=(3.0, 10.0), thresholds=(1e-2,), search_iterations=1),
    "quick": MorphNetPlan(relative_strength=3.0, strengths=(1.0, 3.0, 10.0), thresholds=(1e-3, 1e-2, 1e-1),
                          search_iterations=1),
    "full": MorphNetPlan(relative_strength=1.0, strengths=(0.25, 0.5, 1.0, 2.0, 4.0),
                         thresholds=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1), search_iterations=3),
}


def morphnet_plan(profile: str | Profile) -> MorphNetPlan:
    """Chapter 4's settings for `profile` (see `MorphNetPlan`)."""
    name = get_profile(profile).name
    if name not in MORPHNET_PLANS:
        raise ValueError(f"no MorphNet plan for profile {name!r}; plans exist for {sorted(MORPHNET_PLANS)}")
    return MORPHNET_PLANS[name]


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
            self._regularizers = {resource: MorphNetRegularizer(trainer.model, resource, self.gamma_threshold,
                                                                input_size) for resource in RESOURCES}
        for resource, regularizer in self._regularizers.items():
            record[f"alive_{resource}"] = regularizer.cost()


@dataclass(frozen=True)
class RegularizeParams:
    """resource: the regularized cost; relative_strength: lambda * F(initial net) (default: the profile's
    plan); gamma_threshold: |gamma| above which a channel is alive, in G and in step 2."""

    model: Literal["wide", "narrow"] = "wide"
    resource: Literal["flops", "size"] = "flops"
    relative_strength: float = plan_default(lambda profile, _: morphnet_plan(profile).relative_strength,
                                            at_least=0)
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
    relative_strength: float = plan_default(lambda profile, _: morphnet_plan(profile).relative_strength,
                                            at_least=0)
    gamma_threshold: float = param(DEFAULT_GAMMA_THRESHOLD, at_least=0)
    seed: int = seed_param()
    seed_model: Literal["wide", "narrow"] = "narrow"
    budget_model: Literal["wide", "narrow"] = "wide"


def _morphnet_params(context: RunContext) -> tuple[dict[str, Any], str, float, float, int]:
    """Pops resource, relative_strength, gamma_threshold and seed; the rest are TrainConfig fields (and
    the experiment's own params)."""
    params = dict(context.params)
    return (params, params.pop("resource"), params.pop("relative_strength"), params.pop("gamma_threshold"),
            params.pop("seed"))


def _shrink_summary(model: ResNet, gamma_threshold: float, data: Dataset, eval_batch_size: int = 1000
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


@experiment("morphnet_regularize", version=2, params=RegularizeParams, train_config=True,  # 2: He-normal init, no weight decay on BN
            plan=_regularize_plan)
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
    trainer = context.trainer(seeded_model(context.resnet_config(base), seed), config,
                              hooks=[hook, AliveCostRecorder(gamma_threshold)], phase="regularize")
    history = trainer.fit()
    _, step2 = _shrink_summary(trainer.model, gamma_threshold, trainer.data, config.eval_batch_size)
    full_cost, final_cost = int(hook.initial_cost), int(history["morphnet_cost"].iloc[-1])
    summary = {**summarize_training(history), "lambda": hook.effective_strength, "full_cost": full_cost,
               "final_cost": final_cost, "cost_ratio": final_cost / full_cost, **step2}
    return RunOutput(history=history, summary=summary, model=trainer.model)


def _regularized_params(params: dict[str, Any]) -> dict[str, Any]:
    """The params of the "morphnet_regularize" run a shrink (or its retraining) loads: all but shrink_threshold."""
    return {key: value for key, value in params.items() if key != "shrink_threshold"}


def _shrink_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    return RunPlan(phases=(), requires=(("morphnet_regularize", _regularized_params(params)),))


@experiment("morphnet_shrink", version=2, params=ShrinkParams, train_config=True,  # 2: He-normal init, no weight decay on BN
            plan=_shrink_plan)
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
    regularized = run("morphnet_regularize", _regularized_params(context.params), profile=context.profile,
                      progress=context.progress)
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
    phase = Phase("retrain", net, _shrink_retrain_config(profile, params),
                  bound="the unshrunk net: an upper bound of the shrunk net it retrains")
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
    summary = {**summarize_training(history), "final_params": count_parameters(trainer.model),
               "cost_ratio_shrunk": shrunk.summary[f"{resource}_ratio"], "shrunk_acc": shrunk.summary["shrunk_acc"]}
    return RunOutput(history=history, summary=summary, model=trainer.model)


def _search_plan(profile: Profile, params: dict[str, Any]) -> RunPlan:
    """Algorithm 2.2's phases: iteration 1 regularizes the seed net; later iterations regularize, and the
    retraining trains, the structure expanded to the budget, estimated by the budget net (it has about the
    budget's cost in the regularized resource)."""
    train, seed = _training_fields(params, SearchParams), params["seed"]
    regularize = replace(profile.train_config(seed=seed, **{"schedule": "constant", **train}), bn_weight_decay=False)
    seed_net, budget_net = (profile.resnet(params[key], profile.input_size[0], profile.num_classes)
                            for key in ("seed_model", "budget_model"))
    expanded = f"the {params['budget_model']} net: the expanded structure has about its {params['resource']}"
    phases = [Phase("regularize 1", seed_net, regularize)]
    phases += [Phase(f"regularize {i}", budget_net, regularize, expanded) for i in range(2, params["iterations"] + 1)]
    phases.append(Phase("retrain", budget_net, profile.train_config(seed=seed, **train), expanded))
    return RunPlan(phases=tuple(phases))


@experiment("morphnet_search", version=2, params=SearchParams, train_config=True,  # 2: He-normal init, no weight decay on BN
            plan=_search_plan)
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
    iterations, seed_model, budget_model = params.pop("iterations"), params.pop("seed_model"), params.pop("budget_model")
    data = context.dataset()
    input_size = tuple(int(v) for v in data.train_x.shape[1:])
    budget = spec_cost(context.resnet_config(budget_model), resource, input_size)

    def checkpointing_trainer(model: ResNet, config: TrainConfig, hooks: list[TrainingHook], phase: str) -> Trainer:
        return context.trainer(model, config, hooks=hooks, phase=phase)

    result = morphnet_search(
        context.resnet_config(seed_model), data, context.train_config(seed=seed, **{"schedule": "constant", **params}),
        resource=resource, budget=budget, iterations=iterations, relative_strength=relative_strength,
        gamma_threshold=gamma_threshold, retrain_config=context.train_config(seed=seed, **params),
        device=context.device, trainer_factory=checkpointing_trainer,
    )
    history = result.retrain_history
    retrain = summarize_training(history)
    search_time = float(sum((h["epoch_time"] + h["hook_time"]).sum() for h in result.search_histories))
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
        "search_time": search_time,
        "retrain_time": retrain["total_time"],
        "total_time": search_time + retrain["total_time"],
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
    columns = ["resource", "seed", "iteration", "kind", "cost", "flops", "size", "params", "omega",
               "stage_widths", "spec"]
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


def uniform_scaling(seed: ResNetSpec | ResNetConfig, reference: ResNetSpec | ResNetConfig,
                    input_size: Sequence[int], resources: Sequence[str] = RESOURCES) -> pd.DataFrame:
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
        rows.append({"resource": resource, "budget": budget, "seed_cost": spec_cost(seed, resource, input_size),
                     "omega": omega, "scaled_cost": spec_cost(scaled, resource, input_size),
                     "equals_reference": scaled == reference, "scaled_spec": scaled.to_json()})
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
REGULARIZER_LABELS = {"flops": {"de": "FLOP-Regularisierer", "en": "FLOP regularizer"},
                      "size": {"de": "Größen-Regularisierer", "en": "size regularizer"},
                      CONTROL: {"de": "ohne (Kontrolle)", "en": "none (control)"}}


def regularizer_grid(plan: MorphNetPlan, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Params of figure 4.1's runs: the wide net with the FLOP and the size regularizer at the plan's
    strength, and the unregularized control (relative strength 0: same schedule, same BN treatment, so only
    the penalty differs), once per seed."""
    points = [{"resource": resource, "relative_strength": plan.relative_strength} for resource in RESOURCES]
    points.append({"resource": "flops", "relative_strength": 0.0})
    return [{"model": "wide", **point, "gamma_threshold": DEFAULT_GAMMA_THRESHOLD, "seed": seed}
            for point in points for seed in seeds]


def strength_threshold_grid(profile: str | Profile, resource: str = "flops") -> list[dict[str, Any]]:
    """Params of figure 4.2's grid ("morphnet_shrink" and "morphnet_shrink_retrain"): every strength x
    gamma threshold of the plan for `resource`, the wide net, the profile's first seed. Each strength is
    one regularized run, shared by its thresholds."""
    plan, seed = morphnet_plan(profile), get_profile(profile).seeds[0]
    return [{"model": "wide", "resource": resource, "gamma_threshold": DEFAULT_GAMMA_THRESHOLD, "seed": seed,
             "relative_strength": strength, "shrink_threshold": threshold}
            for strength in plan.strengths for threshold in plan.thresholds]


def search_grid(profile: str | Profile) -> list[dict[str, Any]]:
    """Params of the "morphnet_search" runs (figures 4.3, 4.4): both resources at the plan's iterations and
    strength, once per seed of the profile."""
    plan = morphnet_plan(profile)
    return seed_grid(profile, resource=["flops", "size"], iterations=[plan.search_iterations],
                     relative_strength=[plan.relative_strength], gamma_threshold=[DEFAULT_GAMMA_THRESHOLD])


def wide_baseline_grid(profile: str | Profile) -> list[dict[str, Any]]:
    """Params of the wide "baseline" runs with the step schedule that the searches are compared with
    (chapter 3's runs, through the cache)."""
    return baseline_grid(profile, models=("wide",), schedules=("step",))


def planned_runs(profile: str | Profile) -> list[PlannedRun]:
    """Every run notebook 04 trains on `profile`, in the notebook's order (figure 4.2's grid on FLOPs, the
    notebook's default `grid_resource`)."""
    profile = get_profile(profile)
    shrink = strength_threshold_grid(profile)
    return [*planned_sweep("morphnet_regularize", regularizer_grid(morphnet_plan(profile), profile.seeds), profile),
            *planned_sweep("morphnet_shrink", shrink, profile),
            *planned_sweep("morphnet_shrink_retrain", shrink, profile),
            *planned_sweep("morphnet_search", search_grid(profile), profile),
            *planned_sweep("baseline", wide_baseline_grid(profile), profile)]


def regularizer_name(resource: str, relative_strength: float) -> str:
    """The group of a morphnet_regularize run: its resource, or `CONTROL` when unregularized."""
    return CONTROL if relative_strength == 0 else resource


def regularizer_tests(summary: pd.DataFrame) -> pd.DataFrame:
    """Welch t-tests of each regularizer against the unregularized control: the alive share of its own
    resource, the final accuracy and the training time; one family, Holm-adjusted (`stats.with_holm`)."""
    groups = summary.assign(group=[regularizer_name(r, s) for r, s in
                                   zip(summary["resource"], summary["relative_strength"])])
    present = set(groups["group"])
    if CONTROL not in present:
        raise ValueError("no control runs (relative_strength 0) in the summary; sweep `regularizer_grid`")
    comparisons = []
    for resource in (r for r in RESOURCES if r in present):
        for column, what in ((f"{resource}_ratio", f"alive {resource} / full"), ("final_acc", "final accuracy"),
                             ("total_time", "training time")):
            comparisons.append((f"{what}, {resource} regularizer vs control",
                                groups.loc[groups.group == resource, column], groups.loc[groups.group == CONTROL, column]))
    return stats.with_holm(stats.welch_table(comparisons))


def regularizer_figure(curves: pd.DataFrame, summary: pd.DataFrame, stamp: tuple[str, str]) -> Figure:
    """Figure 4.1: (a) alive FLOPs and (b) alive model size relative to the full net over the epochs for
    both regularizers and the control (mean, min-max band over the seeds), (c) the final accuracy per run."""
    language = plots.language()

    def groups(frame: pd.DataFrame) -> list[str]:
        return [REGULARIZER_LABELS[regularizer_name(resource, strength)][language]
                for resource, strength in zip(frame["resource"], frame["relative_strength"])]

    curves, summary = curves.assign(group=groups(curves)), summary.assign(group=groups(summary))
    order = [REGULARIZER_LABELS[key][language] for key in (*RESOURCES, CONTROL)]
    fig, axes = plots.figure("full", ncols=3)
    fig.set_size_inches(6.0, 2.8)
    for ax, column, title in zip(axes[:2], ("flops_ratio", "size_ratio"), ("(a) lebende FLOPs", "(b) lebende Größe")):
        plots.line_with_band(ax, curves, x="epoch", y=column, hue="group")
        ax.axhline(1.0, color="0.5", linestyle="--", linewidth=0.7)
        ax.set(title=title, xlabel=plots.label("epoch"), ylabel="Anteil am vollen Netz", ylim=(0, 1.05))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.get_legend().remove()
    axes[1].sharey(axes[0])
    plots.boxplot(axes[2], summary, x="group", y="final_acc", order=order)
    axes[2].set(title="(c)", xlabel="", ylabel=plots.label("final_acc"))
    short = {"de": ("FLOPs", "Größe", "ohne"), "en": ("FLOPs", "size", "none")}[language]
    axes[2].set_xticks(range(len(order)), short, fontsize=7)
    n = int(summary.groupby("group").size().min())
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=6.5,
               title=f"{plots.label('mean_band', n=n)}", title_fontsize=6.5)
    plots.stamp(fig, stamp[0], stamp[1], n)
    return fig
