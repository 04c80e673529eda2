"""PruneTrain (thesis section 2.4): group lasso during training and periodic reconfiguration.

The loss gets the group lasso of eq. 2.2 over every conv's output filters and input slices, weighted by a
lambda that eq. 2.3 fixes from the first mini-batch: lambda = r * L0 / ((1 - r) * GL(W0)), so that the
lasso's share of the loss, LPR = lambda * GL / (L + lambda * GL), is exactly the lasso ratio r at step 0.
Every `interval` epochs the weights with |w| < threshold are set to zero, the channels that are dead in
every member of their channel group are found (channel union, fig. 2.7) and the network is rebuilt
without them through `thesis_lib.surgery`; training continues with the smaller model and the carried
optimizer state.

Which tensors count. The group lasso and the thresholding act on the conv weights (stem, main path and
shortcut convs) and on the classifier's weight: the stem's image-input slices and the classifier's class
rows are not channels of any group, so they are left out of eq. 2.2 (the classifier's input columns are
in). BN parameters are neither regularised nor thresholded, as in the original PruneTrain.

Channel union and exactness. A channel of a group is dead when it is all zero in every producer's output
filter and in every reader's input slice; a group keeps the union of the channels alive in any member.
The BN after a dead producer still emits a constant on that channel (beta in training mode, beta -
gamma * mean / sqrt(var + eps) in eval mode), but the channel is removed only when every reader's input
slice is zero too, so that constant is multiplied by zero wherever it is read and removing the channel
leaves the network's outputs unchanged; BN gamma and beta therefore need not be consulted. The one
inexact step is the removal of a whole block, when every channel of one of its internal groups is dead:
the block's remaining layers then add a constant (its last BN's output for a zero input) to the residual
stream, and dropping the block drops that constant (zero when that BN's gamma and beta are zero). A
residual stream whose every channel is dead keeps its first channel, because a stage cannot be emptied.

A kept channel whose producing filter was thresholded to zero (alive only in a reader's input slice) has a
zero-variance output, which its BN divides by sqrt(eps): the filter's gradient is gamma / sqrt(eps) (316 x
gamma) times the centred upstream gradient, BN's scale invariance at its limit. With a threshold near the
weights' scale such filters appear at a reconfiguration, and the first SGD step after it grows them from
zero to norms in the hundreds (on `quick`'s 5e-2 point, seed 0, the second reconfiguration: a gradient of
norm 4,271 on a zero filter; the conv's largest weight goes from ~0.3 to 46 in that step and, carried by
momentum 0.9, to ~400 within the epoch); a threshold far below the weights' scale (the paper's 1e-4) zeroes filters the lasso
has already driven to zero. `test_a_zero_filter_before_batch_norm_gets_the_gradient_amplified_...` pins it.

Chapter 5's experiments and their analysis are `thesis_lib.chapters.ch05_prunetrain`.
"""

from __future__ import annotations

import json
import math
import weakref
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from .. import distributed
from ..models import ResNet, count_parameters, require_thesis_resnet
from ..surgery import carry_optimizer_state, channel_groups, conv_edges, same_width_segments, select_channels
from ..training import Trainer, TrainingHook, training_flops


def _scalar(value: torch.Tensor | float) -> float:
    """A Python float of a scalar, detached from any autograd graph."""
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _check_ratio(ratio: float) -> None:
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"the lasso ratio must lie strictly between 0 and 1 (eq. 2.3), got {ratio}")


def _check_threshold(threshold: float) -> None:
    if not threshold >= 0.0:
        raise ValueError(f"the pruning threshold is a bound on |w| and must be >= 0, got {threshold}")


def _edge_weights(model: ResNet) -> list[tuple[Any, torch.Tensor]]:
    """(conv edge, weight) for every conv and the classifier, forward order."""
    return [(edge, model.get_submodule(edge.name).weight) for edge in conv_edges(model)]


@dataclass(frozen=True)
class _LassoLayout:
    """Which slice every element of the concatenated conv weights belongs to, for one architecture.

    `out_index[k]` / `in_index[k]` number the output filter / input slice of flat element k over all
    weights; elements of no channel (the stem's image inputs, the classifier's class rows) go to one
    extra, discarded slice. Built once per model object and reused by every step.
    """

    shapes: tuple[torch.Size, ...]
    out_index: torch.Tensor
    in_index: torch.Tensor
    out_slices: int
    in_slices: int


_LAYOUTS: weakref.WeakKeyDictionary[ResNet, _LassoLayout] = weakref.WeakKeyDictionary()


def _slice_index(shape: torch.Size, dim: int, first: int | None) -> torch.Tensor:
    """The slice number along `dim` (0: output filter, 1: input slice) of every row-major element of a
    weight of `shape`, offset by `first`; -1 for every element when the dimension is no channel."""
    out_channels, in_channels = shape[0], shape[1]
    kernel = math.prod(shape[2:])
    if first is None:
        return torch.full((math.prod(shape),), -1, dtype=torch.int64)
    if dim == 0:
        index = torch.arange(out_channels).repeat_interleave(in_channels * kernel)
    else:
        index = torch.arange(in_channels).repeat_interleave(kernel).repeat(out_channels)
    return index + first


def _lasso_layout(model: ResNet, edge_weights: list[tuple[Any, torch.Tensor]]) -> _LassoLayout:
    shapes = tuple(weight.shape for _, weight in edge_weights)
    layout = _LAYOUTS.get(model)
    if layout is not None and layout.shapes == shapes and layout.out_index.device == edge_weights[0][1].device:
        return layout
    indices: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    counts = {0: 0, 1: 0}
    for edge, weight in edge_weights:
        for dim, group in ((0, edge.out_group), (1, edge.in_group)):
            indices[dim].append(_slice_index(weight.shape, dim, None if group is None else counts[dim]))
            counts[dim] += 0 if group is None else weight.shape[dim]
    device = edge_weights[0][1].device
    out_index, in_index = (torch.cat(indices[dim]) for dim in (0, 1))
    layout = _LassoLayout(
        shapes,
        torch.where(out_index < 0, counts[0], out_index).to(device),
        torch.where(in_index < 0, counts[1], in_index).to(device),
        counts[0],
        counts[1],
    )
    _LAYOUTS[model] = layout
    return layout


def group_lasso(model: ResNet) -> torch.Tensor:
    """GL(W) of eq. 2.2: the sum of the L2 norms of every conv's output filters and input slices.

    The stem's image-input slices and the classifier's class rows are not channels and are left out; the
    classifier's input columns are included. Differentiable (the gradient of an all-zero slice is zero).

    One fused computation for the whole net rather than two small norm kernels per conv: the weights are
    concatenated once, squared, summed per slice by two `index_add`s over a per-architecture slice index
    (`_LassoLayout`, cached) and square-rooted, about ten kernels in all whatever the depth. (On CUDA the
    index_add's atomic sums round in a varying order; DDP averages the resulting gradients anyway.)
    """
    require_thesis_resnet(model, "group_lasso", check_shapes=False)  # every step: the shapes PruneTrain checks
    edge_weights = _edge_weights(model)
    layout = _lasso_layout(model, edge_weights)
    squares = torch.cat([weight.reshape(-1) for _, weight in edge_weights]).float().square()

    def slice_norms(index: torch.Tensor, slices: int) -> torch.Tensor:
        sums = squares.new_zeros(slices + 1).index_add(0, index, squares)[:slices]
        return torch.where(sums > 0, sums.clamp_min(torch.finfo(sums.dtype).tiny).sqrt(), 0.0)

    return slice_norms(layout.out_index, layout.out_slices).sum() + slice_norms(layout.in_index, layout.in_slices).sum()


def lasso_lambda(loss: torch.Tensor | float, group_lasso_value: torch.Tensor | float, ratio: float) -> float:
    """lambda = r * L0 / ((1 - r) * GL(W0)) (eq. 2.3 solved for lambda), from detached values.

    With this lambda the lasso's share of the loss, lasso_penalty_ratio(L0, GL(W0), lambda), equals r.
    """
    _check_ratio(ratio)
    loss_value, lasso_value = _scalar(loss), _scalar(group_lasso_value)
    if not lasso_value > 0.0:
        raise ValueError(f"the group lasso of the initial weights must be > 0 to balance it, got {lasso_value}")
    if not loss_value >= 0.0:
        raise ValueError(f"the loss must be >= 0 (a cross-entropy), got {loss_value}")
    return ratio * loss_value / ((1.0 - ratio) * lasso_value)


def lasso_penalty_ratio(loss: torch.Tensor | float, group_lasso_value: torch.Tensor | float, lambda_: float) -> float:
    """LPR of eq. 2.3: lambda * GL / (L + lambda * GL)."""
    penalty = lambda_ * _scalar(group_lasso_value)
    return penalty / (_scalar(loss) + penalty)


def _exempt_masks(model: ResNet, groups: Collection[str]) -> dict[str, torch.Tensor]:
    """Per conv name, the weights that belong to a channel of `groups` (output filters of its producers,
    input slices of its readers)."""
    masks: dict[str, torch.Tensor] = {}
    for group in channel_groups(model):
        if group.name not in groups:
            continue
        for name, dim in [(conv, 0) for conv in group.producers] + [(conv, 1) for conv in group.readers]:
            weight = model.get_submodule(name).weight
            mask = masks.setdefault(name, torch.zeros_like(weight, dtype=torch.bool))
            mask.index_fill_(dim, torch.arange(group.size, device=weight.device), True)
    return masks


@torch.no_grad()
def zero_small_weights_(model: ResNet, threshold: float, exempt: Collection[str] = ()) -> int:
    """Set every conv and classifier weight with |w| < threshold to exactly zero, in place, except the
    weights of the channel groups named in `exempt` (their producers' filters and readers' slices).

    Returns how many weights were nonzero before and are zero now. BN parameters and the classifier bias
    are left alone.
    """
    require_thesis_resnet(model, "zero_small_weights_")
    _check_threshold(threshold)
    unknown = set(exempt) - {group.name for group in channel_groups(model)}
    if unknown:
        raise ValueError(f"unknown channel groups {sorted(unknown)} to exempt; see surgery.channel_groups(model)")
    masks = _exempt_masks(model, exempt)
    newly_zeroed = 0
    for edge, weight in _edge_weights(model):
        small = weight.abs() < threshold
        if edge.name in masks:
            small &= ~masks[edge.name]
        newly_zeroed += int((small & (weight != 0)).sum())
        weight.masked_fill_(small, 0.0)
    return newly_zeroed


def _alive_slices(weight: torch.Tensor, dim: int, threshold: float) -> list[int]:
    """Indices along `dim` whose slice keeps a weight after thresholding at `threshold`."""
    survives = (weight.abs() >= threshold) & (weight != 0)
    other_dims = tuple(d for d in range(weight.ndim) if d != dim)
    return torch.nonzero(survives.any(dim=other_dims)).flatten().tolist()


@torch.no_grad()
def member_alive_channels(model: ResNet, threshold: float = 0.0) -> dict[str, dict[str, list[int]]]:
    """For every channel group, the channels alive in each member (the thesis's lists A(j) and E(j)).

    Members are named "<conv>.out" (a producer's output filters, A) and "<conv>.in" (a reader's input
    slices, E). A channel is alive in a member when its slice keeps a weight with |w| >= threshold (with
    threshold 0: a nonzero weight), i.e. when it would survive `zero_small_weights_(model, threshold)`.
    """
    _check_threshold(threshold)
    alive: dict[str, dict[str, list[int]]] = {}
    for group in channel_groups(model):
        members: dict[str, list[int]] = {}
        for name in group.producers:
            members[f"{name}.out"] = _alive_slices(model.get_submodule(name).weight, 0, threshold)
        for name in group.readers:
            members[f"{name}.in"] = _alive_slices(model.get_submodule(name).weight, 1, threshold)
        alive[group.name] = members
    return alive


def channel_union(alive_sets: Iterable[Collection[int]]) -> list[int]:
    """The channel union of fig. 2.7: the sorted channels alive in at least one member of a group."""
    union: set[int] = set()
    for alive in alive_sets:
        union.update(int(index) for index in alive)
    return sorted(union)


def prune_plan(model: ResNet, threshold: float = 0.0) -> dict[str, list[int]]:
    """The channels every group keeps (channel union over its members), for `surgery.select_channels`.

    An internal group may come out empty (its block is then removed); a residual stream whose every
    channel is dead keeps channel 0, whose slices are all zero, so keeping it changes nothing. The stream
    segments of one stage keep one index set (`surgery.same_width_segments`), as the spec needs.
    """
    kinds = {group.name: group.kind for group in channel_groups(model)}
    plan = {}
    for name, members in member_alive_channels(model, threshold).items():
        keep = channel_union(members.values())
        if not keep and kinds[name] != "internal":
            keep = [0]
        plan[name] = keep
    return same_width_segments(model.spec, plan)


def dead_channels(model: ResNet, threshold: float = 0.0) -> dict[str, list[int]]:
    """The channels of every group that `prune_plan` removes (dead in every member), sorted."""
    sizes = channel_sizes(model)
    plan = prune_plan(model, threshold)
    return {name: sorted(set(range(sizes[name])) - set(keep)) for name, keep in plan.items()}


def channel_sizes(model: ResNet) -> dict[str, int]:
    """Width of every channel group, by group name."""
    return {group.name: group.size for group in channel_groups(model)}


def _count_main_paths(model: ResNet) -> int:
    return sum(block.has_main_path for stage in model.spec.stages for block in stage.blocks)


class PruneTrain(TrainingHook):
    """The PruneTrain hook: adds lambda * GL(W) to the loss and reconfigures every `interval` epochs.

    No reconfiguration happens at the end of the run's last epoch: it would come after the last test
    evaluation, and the reported accuracy and size would then describe two different nets. With
    `last_pruning_epoch` the epochs after it are a final phase without the lasso term and without
    reconfiguration (the draft's "Aussetzen des Verkleinerns in den letzten Epochen", section 6.3): the
    net trains on at its last size with the optimizer state carried, so its accuracy is not that of a net
    still pulled towards zero.

    lambda is fixed from the first mini-batch (eq. 2.3) and kept in the checkpoint; under DDP from the mean
    of the ranks' first losses (the loss of the whole first global batch), so that every rank adds the same
    penalty and keeps bit-identical weights. At the end of epochs
    interval, 2 * interval, ... the weights with |w| < threshold are zeroed in place, dead channels are
    removed by `surgery.select_channels` and the optimizer state is carried with
    `surgery.carry_optimizer_state`; the Trainer then calls every hook's `on_model_replaced` (batch
    adaptation, section 6.1: `BatchAdaptation`). Every epoch's record gets: lasso_lambda, group_lasso (GL at the epoch's
    end, before thresholding), lasso_active (whether the epoch trained with the lasso), reconfigured, zeroed_weights,
    test_acc_after_zeroing (the accuracy on the
    Trainer's held-out split right after the thresholding, NaN in epochs without one; against the epoch's
    test_acc, measured right before it, it says how much the zeroing changed the function), removed_channels, removed_main_paths (blocks
    whose main path was dropped: the one inexact step, see the module docstring), protected_groups (JSON
    list of the groups `protect` exempted from this epoch's thresholding and removal), channels (JSON of
    group -> width after this epoch), params_after and flops_after (of the model the next epoch trains).

    Which settings prune, and when. The defaults are the paper's for 180 CIFAR epochs (r = 0.2, threshold
    1e-4, every 10 epochs). A group the lasso has driven to zero does not stay at zero under SGD: each step
    moves its norm by about lr x lambda, so its weights jitter around zero by about lr x lambda / sqrt(group
    size) and fall below a threshold of 1e-4 only once the lr has decayed. In a few epochs prune with a
    stronger lasso and a decayed lr: on digits (460 steps of 64 in 20 epochs, lr 0.05 decayed at 10 and
    16) r = 0.9, threshold 1e-4, interval 2 removes about a third of the 16/32/64 net's parameters
    without changing its accuracy at any zeroing (chapter 5's `quick` point, chosen on a validation
    split: `tuning/results/prunetrain_quick_candidates.csv`); in 10 epochs (lr decayed after 5) it removes
    nothing. A threshold near the weights' scale (5e-2) removes channels within 2 epochs at r = 0.8, but
    it is magnitude pruning: the first zeroing cut the accuracy from 0.785 to 0.387
    (`test_acc_after_zeroing` shows such a change in every run).
    """

    changes_shapes = True

    def __init__(
        self,
        lasso_ratio: float = 0.2,
        threshold: float = 1e-4,
        interval: int = 10,
        last_pruning_epoch: int | None = None,
    ) -> None:
        _check_ratio(lasso_ratio)
        _check_threshold(threshold)
        if int(interval) != interval or interval < 1:
            raise ValueError(f"the reconfiguration interval must be a whole number of epochs >= 1, got {interval}")
        if last_pruning_epoch is not None and (int(last_pruning_epoch) != last_pruning_epoch or last_pruning_epoch < 1):
            raise ValueError(
                f"last_pruning_epoch must be a whole epoch >= 1 (1-based) or None (prune to the end), got "
                f"{last_pruning_epoch}"
            )
        self.lasso_ratio = float(lasso_ratio)
        self.threshold = float(threshold)
        self.interval = int(interval)
        self.last_pruning_epoch = None if last_pruning_epoch is None else int(last_pruning_epoch)
        self.lambda_: float | None = None
        self.protected: list[str] = []

    def protect(self, groups: Iterable[str]) -> None:
        """Exempt the channel groups `groups` (names in the current net) from the next reconfiguration's
        thresholding and removal: new units a growth added (`methods.search`) get one round to learn
        before the lasso judges them. The exemption ends with that reconfiguration round."""
        self.protected = sorted(set(self.protected) | set(groups))

    def prunes_in(self, epoch: int) -> bool:
        """Whether the (1-based) `epoch` trains with the lasso and may end with a reconfiguration: every epoch
        up to `last_pruning_epoch`; the epochs after it are the final phase, trained without either."""
        return self.last_pruning_epoch is None or epoch <= self.last_pruning_epoch

    def on_train_start(self, trainer: Trainer) -> None:
        require_thesis_resnet(trainer.model, "PruneTrain")
        if trainer.step_count == 0:
            self.lambda_ = None
            self.protected = []

    def loss_term(
        self, trainer: Trainer, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor
    ) -> torch.Tensor:
        if self.last_pruning_epoch is not None and not self.prunes_in(trainer.epoch + 1):  # the final phase
            return loss.new_zeros(())
        lasso = group_lasso(trainer.model)
        if self.lambda_ is None:  # under DDP: the first global batch's loss, rank 0's lambda on every rank
            first_loss = distributed.mean_across_ranks(loss.detach())
            self.lambda_ = distributed.share(lasso_lambda(first_loss, lasso.detach(), self.lasso_ratio))
        return self.lambda_ * lasso

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        model = trainer.model
        with torch.no_grad():
            record["group_lasso"] = float(group_lasso(model))
        record["lasso_lambda"] = self.lambda_
        reconfigured, zeroed, removed, removed_paths, acc_after_zeroing = False, 0, 0, 0, math.nan
        record["lasso_active"] = self.prunes_in(record["epoch"])
        record["protected_groups"] = "[]"
        if (
            record["epoch"] % self.interval == 0
            and record["epoch"] < trainer.config.epochs
            and self.prunes_in(record["epoch"])
        ):
            zeroed = zero_small_weights_(model, self.threshold, exempt=self.protected)
            acc_after_zeroing = trainer.evaluate()[1]
            sizes = channel_sizes(model)
            shrinking = {
                name: keep
                for name, keep in prune_plan(model).items()
                if len(keep) < sizes[name] and name not in self.protected
            }
            record["protected_groups"] = json.dumps(self.protected)
            self.protected = []
            if shrinking:
                removed = sum(sizes[name] - len(keep) for name, keep in shrinking.items())
                paths_before = _count_main_paths(model)
                self._reconfigure(trainer, shrinking)
                removed_paths = paths_before - _count_main_paths(trainer.model)
                reconfigured = True
        record["reconfigured"] = reconfigured
        record["zeroed_weights"] = zeroed
        record["test_acc_after_zeroing"] = acc_after_zeroing
        record["removed_channels"] = removed
        record["removed_main_paths"] = removed_paths
        record["channels"] = json.dumps(channel_sizes(trainer.model))
        record["params_after"] = count_parameters(trainer.model)
        record["flops_after"] = trainer.flops()

    def _reconfigure(self, trainer: Trainer, keep: dict[str, list[int]]) -> None:
        old_model = trainer.model
        new_model = select_channels(old_model, keep).to(trainer.device)
        new_optimizer = trainer.make_optimizer(new_model)
        carry_optimizer_state(old_model, new_model, trainer.optimizer, new_optimizer, keep)
        trainer.replace_model(new_model, new_optimizer)

    def state_dict(self) -> dict[str, Any]:
        return {"lasso_lambda": self.lambda_, "protected": list(self.protected)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lambda_ = state["lasso_lambda"]
        self.protected = list(state.get("protected", []))  # checkpoints written before protect() existed


def training_flops_summary(history: pd.DataFrame) -> dict[str, float]:
    """Training and inference FLOPs of a PruneTrain run against the dense baseline of the same length.

    The run's training FLOPs are those it executed (`training.training_flops`: each epoch at the size it
    was trained with); the dense run trains every epoch as the first one, which always trains the unpruned
    net. Returns the totals, the fraction of training FLOPs removed, and the final model's inference FLOPs
    and their removed fraction (the two numbers PruneTrain reports: 53% and 66% for ResNet-32 on CIFAR-10).
    """
    if len(history) == 0:
        raise ValueError("the history is empty; train at least one epoch first")
    final_column = "flops_after" if "flops_after" in history else "flops"
    pruned = float(training_flops(history))
    dense = float(history["train_flops"].iloc[0]) * len(history)
    dense_flops = float(history["flops"].iloc[0])
    final = float(history[final_column].iloc[-1])
    return {
        "training_flops": pruned,
        "dense_training_flops": dense,
        "training_flops_removed": 1.0 - pruned / dense,
        "final_inference_flops": final,
        "inference_flops_removed": 1.0 - final / dense_flops,
    }
