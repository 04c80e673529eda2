"""Shrink with PruneTrain, grow with Net2Net: the thesis's own architecture search (sections 1.2 and 6.3).

One training run from a small net (the narrow thesis ResNet). Training is cut into rounds of `interval`
epochs. At the end of every round PruneTrain thresholds the weights and removes the channels that are dead
in every member of their group (section 2.4); then the growth rule below looks at what pruning left and
widens or deepens the net with Net2Net's function-preserving operators (section 2.5), never beyond a
FLOP budget (the wide net's FLOPs, the zeta of MorphNet's search in chapter 4, so both searches get the
same budget). Weights, BN statistics and the PruneTrain optimizer state are carried by
`thesis_lib.surgery`; after a growth the optimizer restarts with zero momentum (Net2Net's policy, see
`net2net.rebuild_optimizer`); the learning-rate schedule and the lasso's lambda go on unchanged. Nothing
restarts from scratch.

The growth rule (`GrowthRule`, applied by `plan_growth`):

- When: only where pruning has spoken. Growth is considered at the end of a round only once pruning has
  removed at least one channel in the run (before that, the lasso has not acted yet and a saturation of 1
  says nothing: every stage would grow by construction), and only when at least `window_rounds` rounds
  (default 2) have passed since the last growth (or the start), so that pruning had time to judge the net
  and the units a growth added had a round to learn before they are judged.
- Measured, per stage i (the thesis's phase i + 1): its saturation s_i = channels now / channels at the
  start of the window (after the last growth, or the start of the run), counting the stage's
  residual-stream width plus every internal width of its blocks (a block pruned to an identity counts 0).
  s_i = 1 means pruning found no unused channel in the stage; s_i = 0.5 means half of its channels were
  dead.
- Decided: every stage with s_i >= `saturation` is widened: its stream width w becomes
  max(w + 1, ceil(w * `widen_factor`)) and its internal widths grow by the same ratio (rounded up), so a
  narrow stream grows by more than the factor (4 -> 5 at factor 1.0625); `GrowthPlan.widths` records the
  widths the round really chose. A stage below the threshold is left as
  pruning left it: it had capacity to spare. In addition, the stage with the fewest main-path layers among
  those with s_i >= `deepen_saturation` (ties: the later stage) gets deeper, when `deepen_saturation` <= 1
  (above 1 never deepens), by Net2DeeperNet as `deepen_kind` says: "layer" (the default, the draft's eq. 2.5)
  inserts an identity conv + BN + ReLU layer into the stage's last block with a main path, before that
  block's last conv (exact in eval mode); "block" (chapter 6.3's second arm) appends a residual block
  whose last BN has gamma = beta = 0.
- New units get one round: the channel groups a growth creates (the new layer's output, the new block's
  internal widths) are exempt from the next round's thresholding and removal (`PruneTrain.protect`), so
  the lasso judges them only after they had a round to learn. A zero-gamma block's convs get no gradient
  from the loss until its gamma has moved, while the lasso shrinks them from the first step; without the
  exemption such a block could be removed before it ever computed anything.
- Budget: the grown net's forward FLOPs never exceed `budget`. Width goes first: if the full growth does
  not fit, the deepening is dropped, then the widening factor is lowered in `factor_steps` equal steps
  towards 1 and the largest factor that fits is taken; the deepening is added back only if it still fits
  on top. If no widening fits, the deepening alone is tried; otherwise the round does not grow.

The rule reads only the two specs and the budget, and it costs every candidate from its spec
(`models.spec_flops`, no weights built), so it is deterministic and cheap; Net2Net's random replication
maps and symmetry-breaking noise come from the hook's seeded generator, which the checkpoint carries, so a
resumed run grows exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar

import torch

from ..models import ResNet, ResNetSpec, StageSpec, count_flops, count_parameters, spec_flops
from ..surgery import default_new_block, internal_group_name
from ..training import Trainer, TrainingHook
from .net2net import DEEPEN_KINDS, deepen, deepened_spec, rebuild_optimizer, widen, widened_spec
from .prunetrain import PruneTrain, channel_sizes


def stage_channels(stage: StageSpec) -> int:
    """Channels of one stage: its residual-stream width plus every internal width of its blocks."""
    return stage.width + sum(sum(block.widths) for block in stage.blocks)


def stage_depth(stage: StageSpec) -> int:
    """Blocks of a stage that still have a main path (a pruned-away block is a bare shortcut)."""
    return sum(1 for block in stage.blocks if block.has_main_path)


def stage_layers(stage: StageSpec) -> int:
    """Conv layers on the main paths of a stage's blocks (what the rule deepens: a layer or a block)."""
    return sum(len(block.kernels) for block in stage.blocks)


def stage_saturation(before: ResNetSpec, after: ResNetSpec) -> tuple[float, ...]:
    """Per stage, the fraction of its channels (`stage_channels`) that survived from `before` to `after`."""
    if len(before.stages) != len(after.stages):
        raise ValueError(
            f"the specs have {len(before.stages)} and {len(after.stages)} stages; pruning keeps every stage"
        )
    return tuple(stage_channels(a) / stage_channels(b) for b, a in zip(before.stages, after.stages))


@dataclass(frozen=True)
class GrowthRule:
    """The knobs of the growth rule (see the module docstring): which stages count as saturated, how much
    they grow per round, when a stage also gets deeper, and how finely the factor is lowered to fit."""

    saturation: float = 0.9
    widen_factor: float = 1.5
    deepen_saturation: float = 1.0
    factor_steps: int = 8
    window_rounds: int = 2
    deepen_kind: str = "layer"

    def __post_init__(self) -> None:
        if self.deepen_kind not in DEEPEN_KINDS:
            raise ValueError(f"deepen_kind must be one of {DEEPEN_KINDS}, got {self.deepen_kind!r}")
        if not 0.0 < self.saturation <= 1.0:
            raise ValueError(f"saturation must be in (0, 1], got {self.saturation}")
        if not self.widen_factor > 1.0:
            raise ValueError(f"widen_factor must be > 1 (growth adds channels), got {self.widen_factor}")
        if not self.deepen_saturation > 0.0:
            raise ValueError(f"deepen_saturation must be > 0 (above 1: never deepen), got {self.deepen_saturation}")
        if int(self.factor_steps) != self.factor_steps or self.factor_steps < 1:
            raise ValueError(f"factor_steps must be a whole number >= 1, got {self.factor_steps}")
        if int(self.window_rounds) != self.window_rounds or self.window_rounds < 1:
            raise ValueError(f"window_rounds must be a whole number >= 1, got {self.window_rounds}")


@dataclass(frozen=True)
class GrowthPlan:
    """What one round grows: new stream widths per stage index, the stages that get deeper (by a layer or
    a block, `deepen_kind`), the saturation measured over the window since the last growth, the FLOPs of
    the grown net (equal to the current FLOPs when nothing grows), and the widening factor tried (the
    realised ratio of a stage is widths[i] / its old width, see the rule)."""

    widths: dict[int, int]
    deepen: tuple[int, ...]
    saturation: tuple[float, ...]
    flops: int
    factor: float = 1.0
    deepen_kind: str = "layer"

    @property
    def grows(self) -> bool:
        return bool(self.widths or self.deepen)

    def to_json(self) -> str:
        return json.dumps(
            {
                "widths": {str(k): v for k, v in sorted(self.widths.items())},
                "deepen": list(self.deepen),
                "deepen_kind": self.deepen_kind,
                "factor": self.factor,
                "saturation": [round(s, 6) for s in self.saturation],
                "flops": self.flops,
            }
        )


def _widened_widths(spec: ResNetSpec, stages: list[int], factor: Fraction) -> dict[int, int]:
    return {i: max(spec.stages[i].width + 1, math.ceil(spec.stages[i].width * factor)) for i in stages}


def _deepening(spec: ResNetSpec, stage: int, kind: str) -> dict[str, Any]:
    """`deepen` arguments for one deepening of `stage`: a block at its end, or an identity layer before the
    last conv of its last block with a main path."""
    if kind == "block":
        return {"stage": stage, "kind": "block"}
    block = max(b for b, spec_block in enumerate(spec.stages[stage].blocks) if spec_block.has_main_path)
    return {"stage": stage, "kind": "layer", "block": block}


def _new_groups(spec: ResNetSpec, deepening: dict[str, Any]) -> list[str]:
    """The channel groups a deepening of `spec` creates (names in the deepened net)."""
    stage = deepening["stage"]
    if deepening["kind"] == "block":
        block = len(spec.stages[stage].blocks)
        layers = len(default_new_block(spec.stages[stage]).kernels)
        return [internal_group_name(stage, block, layer) for layer in range(1, layers)]
    block = deepening["block"]
    return [internal_group_name(stage, block, len(spec.stages[stage].blocks[block].kernels))]


def _grown_spec(spec: ResNetSpec, widths: dict[int, int], deepened: tuple[int, ...], kind: str) -> ResNetSpec:
    if widths:
        stages = sorted(widths)
        spec = widened_spec(spec, stages=stages, widths=[widths[i] for i in stages])
    for stage in deepened:
        spec = deepened_spec(spec, **_deepening(spec, stage, kind))
    return spec


def grow(
    model: ResNet, plan: GrowthPlan, generator: torch.Generator, data: torch.Tensor, noise: float = 0.0
) -> tuple[ResNet, list[str]]:
    """`model` grown as `plan` says (Net2WiderNet with symmetry-breaking `noise`, then Net2DeeperNet; the
    identity layer measures its BN on the images `data`), and the names of the channel groups it created."""
    grown = model
    if plan.widths:
        stages = sorted(plan.widths)
        grown = widen(grown, stages=stages, widths=[plan.widths[i] for i in stages], noise=noise, generator=generator)
    new_groups: list[str] = []
    for stage in plan.deepen:
        deepening = _deepening(grown.spec, stage, plan.deepen_kind)
        new_groups += _new_groups(grown.spec, deepening)
        grown = deepen(grown, generator=generator, data=data, **deepening)
    return grown, new_groups


def plan_growth(
    spec: ResNetSpec,
    window_start: ResNetSpec,
    budget: float,
    input_size: tuple[int, ...],
    rule: GrowthRule = GrowthRule(),
) -> GrowthPlan:
    """What the growth rule of the module docstring grows for the architecture `spec` (the net after this
    round's pruning), whose window began with the architecture `window_start` (after the last growth, or
    the run's start); FLOPs of one image of `input_size`, counted from the candidates' specs. Whether
    growth is considered at all (pruning has spoken, the window is long enough) is `PruneGrow`'s decision."""
    current = spec_flops(spec, input_size)
    if current > budget:
        raise ValueError(f"the net already has {current} FLOPs, above the budget {budget:.0f}")
    saturation = stage_saturation(window_start, spec)
    saturated = [i for i, s in enumerate(saturation) if s >= rule.saturation and spec.stages[i].blocks]
    deep_candidates = [
        i for i, s in enumerate(saturation) if s >= rule.deepen_saturation and stage_depth(spec.stages[i]) > 0
    ]
    deepened = (min(deep_candidates, key=lambda i: (stage_layers(spec.stages[i]), -i)),) if deep_candidates else ()

    def cost(widths: dict[int, int], deep: tuple[int, ...]) -> int:
        return spec_flops(_grown_spec(spec, widths, deep, rule.deepen_kind), input_size)

    def planned(widths: dict[int, int], deep: tuple[int, ...], flops: int, factor: float = 1.0) -> GrowthPlan:
        return GrowthPlan(widths, deep, saturation, flops, factor, rule.deepen_kind)

    full = Fraction(repr(float(rule.widen_factor)))
    factors = [1 + (full - 1) * Fraction(j, rule.factor_steps) for j in range(rule.factor_steps, 0, -1)]
    for factor in factors if saturated else []:
        widths = _widened_widths(spec, saturated, factor)
        flops = cost(widths, ())
        if flops <= budget:
            if deepened:
                with_depth = cost(widths, deepened)
                if with_depth <= budget:
                    return planned(widths, deepened, with_depth, float(factor))
            return planned(widths, (), flops, float(factor))
    if deepened:
        flops = cost({}, deepened)
        if flops <= budget:
            return planned({}, deepened, flops)
    return planned({}, (), current)


@dataclass
class PruneGrow(TrainingHook):
    """PruneTrain with Net2Net growth after every reconfiguration (the procedure of the module docstring).

    `pruning` adds the group lasso to the loss and reconfigures every `pruning.interval` epochs (not in
    the run's last epoch, so that the reported accuracy is the final net's; not after its
    `last_pruning_epoch`, whose final phase neither prunes nor grows). After a round's pruning, while
    the epoch is at most `last_growth_epoch` (None: every round), pruning has removed a channel in the run
    and the window since the last growth has `rule.window_rounds` rounds, `plan_growth` decides and the net
    grows (`grow`; the identity layer measures its BN on the first `data_size` training images); the
    groups it created are protected from the next round's pruning. Every epoch's record gets, besides
    PruneTrain's columns: growth_considered (whether the rule was asked), grown, growth (the `GrowthPlan`
    as JSON or ""), new_groups (JSON list of the groups a growth created), stage_widths, stage_blocks and
    stage_layers (JSON lists after this epoch), prune_time and grow_time (seconds spent thresholding /
    rebuilding and deciding / growing; training is the record's epoch_time).
    """

    pruning: PruneTrain
    budget: float
    changes_shapes: ClassVar[bool] = True
    rule: GrowthRule = field(default_factory=GrowthRule)
    last_growth_epoch: int | None = None
    noise: float = 0.05
    seed: int = 0
    data_size: int = 256

    def __post_init__(self) -> None:
        if self.data_size < 1:
            raise ValueError(f"data_size must be >= 1 (images for the identity layer's BN), got {self.data_size}")
        if not self.budget > 0:
            raise ValueError(f"budget must be > 0 FLOPs, got {self.budget}")
        if not self.noise >= 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        if self.last_growth_epoch is not None and self.last_growth_epoch < 1:
            raise ValueError(f"last_growth_epoch must be >= 1 (a 1-based epoch) or None, got {self.last_growth_epoch}")
        self.generator = torch.Generator().manual_seed(self.seed)
        self.window_start: ResNetSpec | None = None
        self.rounds_in_window = 0
        self.pruning_spoke = False

    def on_train_start(self, trainer: Trainer) -> None:
        self.pruning.on_train_start(trainer)
        if trainer.step_count == 0:  # a fresh run (a resume restored all of it from the checkpoint)
            self.window_start = trainer.model.spec
            self.rounds_in_window = 0
            self.pruning_spoke = False
            self.generator.manual_seed(self.seed)
        budget_check = count_flops(trainer.model, tuple(trainer.data.train_x.shape[1:]))
        if budget_check > self.budget:
            raise ValueError(f"the starting net has {budget_check} FLOPs, above the budget {self.budget:.0f}")

    def loss_term(
        self, trainer: Trainer, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor
    ) -> torch.Tensor:
        return self.pruning.loss_term(trainer, outputs, targets, loss)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        epoch = int(record["epoch"])
        before = trainer.model.spec
        start = time.perf_counter()
        self.pruning.on_epoch_end(trainer, record)
        record["prune_time"] = time.perf_counter() - start
        start = time.perf_counter()
        pruning_round = (
            epoch % self.pruning.interval == 0 and epoch < trainer.config.epochs and self.pruning.prunes_in(epoch)
        )
        if pruning_round:
            self.rounds_in_window += 1
            self.pruning_spoke = self.pruning_spoke or trainer.model.spec != before
        considered = (
            pruning_round
            and self.pruning_spoke
            and self.rounds_in_window >= self.rule.window_rounds
            and (self.last_growth_epoch is None or epoch <= self.last_growth_epoch)
        )
        plan = None
        new_groups: list[str] = []
        if considered:
            plan = plan_growth(
                trainer.model.spec, self.window_start, self.budget, tuple(trainer.data.train_x.shape[1:]), self.rule
            )
            if plan.grows:
                data = trainer.data.train_x[: self.data_size]
                grown, new_groups = grow(trainer.model, plan, self.generator, data, self.noise)
                rebuild_optimizer(trainer, grown)
                self.pruning.protect(new_groups)
                self.window_start = trainer.model.spec
                self.rounds_in_window = 0
        spec = trainer.model.spec
        record["growth_considered"] = considered
        record["grown"] = bool(plan is not None and plan.grows)
        record["growth"] = plan.to_json() if plan is not None and plan.grows else ""
        record["new_groups"] = json.dumps(new_groups)
        record["stage_widths"] = json.dumps([stage.width for stage in spec.stages])
        record["stage_blocks"] = json.dumps([stage_depth(stage) for stage in spec.stages])
        record["stage_layers"] = json.dumps([stage_layers(stage) for stage in spec.stages])
        record["channels"] = json.dumps(channel_sizes(trainer.model))
        record["params_after"] = count_parameters(trainer.model)
        record["flops_after"] = trainer.flops()
        record["grow_time"] = time.perf_counter() - start

    def state_dict(self) -> dict[str, Any]:
        return {
            "pruning": self.pruning.state_dict(),
            "generator": self.generator.get_state(),
            "window_start": self.window_start.to_dict() if self.window_start is not None else None,
            "rounds_in_window": self.rounds_in_window,
            "pruning_spoke": self.pruning_spoke,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pruning.load_state_dict(state["pruning"])
        self.generator.set_state(state["generator"].cpu())
        self.window_start = ResNetSpec.from_dict(state["window_start"]) if state["window_start"] else None
        self.rounds_in_window = int(state["rounds_in_window"])
        self.pruning_spoke = bool(state["pruning_spoke"])
