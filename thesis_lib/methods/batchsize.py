"""Batch size against memory, and batch adaptation for PruneTrain (thesis sections 2.9 and 6.1).

Memory of a training step. Two measurements, both per batch size:

- `saved_tensor_bytes`: the bytes the autograd graph keeps for the backward pass (activations, BN
  statistics, the loss's log-probabilities), counted exactly with `torch.autograd.graph.saved_tensors_hooks`
  as the total size of the distinct storages saved, leaving out the model's own parameters and buffers
  (they exist whatever the batch). It is device-independent, needs only a forward pass and is affine in
  the batch size, so two probes fit it exactly. With `model_state_bytes` (parameters, gradients, momentum,
  buffers) it gives the memory model `MemoryModel` used everywhere a GPU is missing.
- `training_step_peak_bytes` (CUDA only): the allocator's peak over one full training step (forward,
  backward, SGD step with momentum) of a copy of the model, with the peak statistics reset before it.

The largest batch that fits (`max_batch_size`) is found on CUDA by doubling and bisection with real
out-of-memory errors caught and memory released between probes: the thesis (6.1.1) found that the free
memory the driver reports is not what can be allocated (fragmentation), so it is probed, not computed.
Elsewhere it is solved from the memory model against a budget.

The thesis's fit (6.1.1). For s = 1..3 stages and N = 1..10 blocks the parameters and the largest batch
under one memory budget are tabulated (`batch_table`), and per stage count a line is fitted with a t-test
on its slope (`batch_fits`). The draft describes its fit only in words: it divides the parameter count by
the batch size (fig. 6.6), then divides the batch size by that quotient (fig. 6.7) and fits a line,
f(x) = 0.11 x + 0.15, reporting p = 2.911e-16. `batch_fits` fits these quantities against N
("params_per_batch", "batch_over_params_per_batch"), the naive "batch" against the parameters, and the
relation the memory model predicts, "inverse_batch" against the parameters: memory = static + b * m(N)
with m affine in N and the parameters affine in N for fixed s, so 1 / b_max is close to affine in the
parameters. On the thesis's own s = 1 column that last fit has p = 1.5e-16, the order of the draft's
reported value; the draft's literal quotients are not linear in N (r^2 about 0.57).

Batch adaptation (`BatchAdaptation`): whenever PruneTrain shrinks the network, the batch grows so that the
training memory stays at the level of the first epoch, and the learning rate grows with it, linearly or
with the square root of the batch ratio (Hoffer et al. 2017, [HHS17]).
"""

from __future__ import annotations

import copy
import gc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import distributed
from ..models import WIDE_BASELINE, ResNetConfig, build_resnet, count_parameters, device_of
from ..stats import LinearFit, linear_fit
from ..training import AUTOCAST_DTYPES, PRECISIONS, Trainer, TrainingHook, batch_lr_factor

SCALINGS = ("linear", "sqrt")
RULES = ("probe", "fit")
MEMORY_METHODS = ("auto", "peak", "model")
THESIS_REFERENCE_BATCH = 256  # the thesis table's batch for its baseline net (s = 3, N = 5)
# Added to a float quotient before the floor that turns it into a batch size, so that a quotient meant to
# be whole but computed just below it (255.99999999999997) floors to that batch, not to one sample fewer;
# far smaller than any real fraction of a sample.
FLOOR_ROUNDING_GUARD = 1e-6

MemoryModelFunction = Callable[[nn.Module], "MemoryModel"]


def _device_of(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """`device` when given, else the model's own (`models.device_of`)."""
    return torch.device(device) if device is not None else device_of(model)


def _check_batch(batch_size: int, what: str = "batch size") -> int:
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"the {what} must be a whole number >= 1, got {batch_size}")
    return int(batch_size)


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(size) for size in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be one image's (C, H, W) with positive sizes, got {tuple(input_shape)}")
    return shape


def _check_budget(budget_bytes: float) -> float:
    if not budget_bytes > 0:
        raise ValueError(f"the memory budget must be a positive number of bytes, got {budget_bytes}")
    return float(budget_bytes)


def model_state_bytes(model: nn.Module, optimizer_slots: int = 1) -> int:
    """Bytes a training run holds whatever the batch: parameters, their gradients, `optimizer_slots`
    state tensors per parameter (1: SGD momentum; 2: Adam) and buffers (BN running statistics)."""
    if optimizer_slots < 0:
        raise ValueError(f"optimizer_slots must be >= 0, got {optimizer_slots}")
    parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    return parameter_bytes * (2 + optimizer_slots) + buffer_bytes


def _probe_batch(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, device: torch.device, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero input and zero labels: memory does not depend on the values, and no RNG is consumed. With
    `channels_last` on CUDA the input (and the model, by the caller) use that memory format, as `Trainer`."""
    x = torch.zeros((batch_size, *input_shape), device=device)
    if channels_last and device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.zeros(batch_size, dtype=torch.long, device=device)
    return x, y


def _probe_copy(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    probe_model = copy.deepcopy(model).to(device).train()
    if channels_last and device.type == "cuda":
        probe_model = probe_model.to(memory_format=torch.channels_last)
    return probe_model


def _autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context `Trainer` trains in for `precision` ("fp32": disabled)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def saved_tensor_bytes(
    model: nn.Module,
    input_shape: Sequence[int],
    batch_size: int,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
) -> int:
    """Bytes the autograd graph saves for backward in one training-mode forward pass plus cross-entropy.

    Counts every distinct storage handed to `saved_tensors_hooks` once, at its full size, except the
    storages of the model's parameters and buffers. The forward runs on a copy in training mode, so the
    model's BN running statistics are not touched, in the run's `precision` (autocast as in `Trainer`)
    and memory format (`channels_last`, CUDA only, as in `Trainer`).
    """
    shape = _check_input_shape(input_shape)
    batch_size = _check_batch(batch_size)
    device = _device_of(model, device)
    probe_model = _probe_copy(model, device, channels_last)
    own = {t.untyped_storage().data_ptr() for t in [*probe_model.parameters(), *probe_model.buffers()]}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    x, y = _probe_batch(probe_model, shape, batch_size, device, channels_last)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), _autocast(device, precision):
        loss = nn.functional.cross_entropy(probe_model(x), y)
    del loss
    return int(sum(saved.values()))


def _release_cuda_memory(device: torch.device) -> None:
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()


def training_step_peak_bytes(
    model: nn.Module,
    input_shape: Sequence[int],
    batch_size: int,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
) -> int:
    """CUDA only: peak allocated bytes of one SGD-with-momentum training step of a copy of `model`, in the
    run's `precision` (autocast) and memory format (`channels_last`), as `Trainer` trains.

    Measured from the memory allocated before the copy is made, with the peak statistics reset, so the
    copy's parameters, gradients, momentum and every temporary count. Raises torch.cuda.OutOfMemoryError
    when the step does not fit; memory is released before returning or raising.
    """
    shape = _check_input_shape(input_shape)
    batch_size = _check_batch(batch_size)
    device = _device_of(model, device)
    if device.type != "cuda":
        raise ValueError(
            f"the peak-memory probe needs a CUDA device, got {device}; "
            "use saved_tensor_bytes or fit_memory_model(source='saved') elsewhere"
        )
    _release_cuda_memory(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    try:
        probe_model = _probe_copy(model, device, channels_last)
        optimizer = torch.optim.SGD(probe_model.parameters(), lr=0.0, momentum=0.9)
        x, y = _probe_batch(probe_model, shape, batch_size, device, channels_last)
        with _autocast(device, precision):
            loss = nn.functional.cross_entropy(probe_model(x).float(), y)
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    finally:
        probe_model = optimizer = x = y = loss = None  # drop the references, so the memory can be released
        _release_cuda_memory(device)


@dataclass(frozen=True)
class MemoryModel:
    """Training memory of one network as an affine function of the batch size b:
    bytes(b) = static_bytes + fixed_bytes + per_sample_bytes * b.

    source "saved": static = `model_state_bytes`, fixed + per_sample * b = `saved_tensor_bytes` (exact);
    source "peak": static = 0, fixed and per_sample fitted to measured CUDA peaks (approximate).
    """

    static_bytes: float
    fixed_bytes: float
    per_sample_bytes: float
    source: str

    def bytes_at(self, batch_size: int) -> float:
        return self.static_bytes + self.fixed_bytes + self.per_sample_bytes * batch_size

    def max_batch(self, budget_bytes: float, limit: int | None = None) -> int:
        """The largest b with bytes(b) <= budget, capped at `limit`. ValueError if not even one sample fits."""
        budget = _check_budget(budget_bytes)
        if limit is not None:
            limit = _check_batch(limit, "batch limit")
        if self.bytes_at(1) > budget:
            raise ValueError(
                f"a memory budget of {budget:.0f} bytes does not hold one sample "
                f"({self.bytes_at(1):.0f} bytes at batch size 1); raise the budget"
            )
        if self.per_sample_bytes <= 0:
            if limit is None:
                raise ValueError("memory does not grow with the batch, so no budget bounds it; pass a limit")
            return limit
        free = budget - self.static_bytes - self.fixed_bytes
        batch = math.floor(free / self.per_sample_bytes + FLOOR_ROUNDING_GUARD)
        return min(batch, limit) if limit is not None else batch


def resolve_memory_method(method: str, device: torch.device) -> str:
    """The memory measurement `method` ("auto", "peak" or "model") stands for on `device`: "auto" is the
    measured CUDA peak ("peak") on CUDA and the memory model ("model") elsewhere; "peak" off CUDA and any
    other name are a ValueError."""
    if method not in MEMORY_METHODS:
        raise ValueError(f"unknown memory method {method!r}; use one of {MEMORY_METHODS}")
    if method == "auto":
        return "peak" if device.type == "cuda" else "model"
    if method == "peak" and device.type != "cuda":
        raise ValueError(f"method 'peak' measures CUDA memory, but the device is {device}; use 'model'")
    return method


def fit_memory_model(
    model: nn.Module,
    input_shape: Sequence[int],
    device: str | torch.device | None = None,
    method: str = "auto",
    probe_batches: Sequence[int] | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
) -> MemoryModel:
    """Fit `MemoryModel` from probes at `probe_batches` (least squares), in the run's `precision` and
    memory format (see `saved_tensor_bytes`).

    method "model" (the default off CUDA) measures saved-tensor bytes, which are exactly affine in the
    batch, so two probes (default 2 and 4) fit them exactly; "peak" (the default on CUDA) measures the
    training step's peak, which the allocator's rounding makes only nearly affine (default probes 8, 16,
    32); "auto" picks by device.
    """
    device = _device_of(model, device)
    method = resolve_memory_method(method, device)
    if probe_batches is None:
        probe_batches = (8, 16, 32) if method == "peak" else (2, 4)
    batches = sorted({_check_batch(b, "probe batch size") for b in probe_batches})
    if len(batches) < 2:
        raise ValueError(f"need at least two different probe batch sizes to fit a line, got {probe_batches}")
    if method == "peak":
        measured = [training_step_peak_bytes(model, input_shape, b, device, precision, channels_last) for b in batches]
        static, source = 0.0, "peak"
    else:
        measured = [saved_tensor_bytes(model, input_shape, b, device, precision, channels_last) for b in batches]
        static, source = float(model_state_bytes(model)), "saved"
    per_sample, fixed = np.polyfit(np.asarray(batches, float), np.asarray(measured, float), 1)
    return MemoryModel(static_bytes=static, fixed_bytes=float(fixed), per_sample_bytes=float(per_sample), source=source)


@dataclass
class BatchSearch:
    """The largest batch size that fits and every probe made on the way, as (batch size, fits)."""

    batch_size: int
    probes: list[tuple[int, bool]] = field(default_factory=list)


def search_max_batch(fits: Callable[[int], bool], limit: int | None = None) -> BatchSearch:
    """The largest b >= 1 with fits(b), assuming fits is monotone (true up to some b, false above).

    Doubles from 1 until a probe fails (or `limit` is reached), then bisects between the last batch that
    fit and the first that did not: about 2 * log2(answer) + 2 probes. ValueError if batch 1 does not fit.
    """
    if limit is not None:
        limit = _check_batch(limit, "batch limit")
    probes: list[tuple[int, bool]] = []

    def probe(batch: int) -> bool:
        ok = bool(fits(batch))
        probes.append((batch, ok))
        return ok

    if not probe(1):
        raise ValueError(
            "not even a batch of one sample fits the memory budget; raise the budget or shrink the model or input"
        )
    good, bad = 1, None
    while bad is None:
        candidate = 2 * good if limit is None else min(2 * good, limit)
        if candidate == good:
            return BatchSearch(good, probes)
        if probe(candidate):
            good = candidate
        else:
            bad = candidate
    while bad - good > 1:
        middle = (good + bad) // 2
        if probe(middle):
            good = middle
        else:
            bad = middle
    return BatchSearch(good, probes)


def max_batch_size(
    model: nn.Module,
    input_shape: Sequence[int],
    budget_bytes: float | None = None,
    device: str | torch.device | None = None,
    method: str = "auto",
    limit: int | None = None,
) -> int:
    """The largest training batch of `model` on `input_shape` that fits.

    method "peak" (CUDA; the default there): search by real training steps; a probe fits when it raises
    no torch.cuda.OutOfMemoryError and, with a budget, its peak is within `budget_bytes`. Without a budget
    the whole device is the limit. method "model" (the default elsewhere): solve the saved-tensor memory
    model (`fit_memory_model`) against `budget_bytes`, which is then required. `limit` caps the answer
    (e.g. the dataset size).
    """
    device = _device_of(model, device)
    method = resolve_memory_method(method, device)
    if budget_bytes is not None:
        _check_budget(budget_bytes)
    if limit is not None:
        _check_batch(limit, "batch limit")
    if method == "model":
        if budget_bytes is None:
            raise ValueError("without CUDA the batch size is bounded by a memory budget: pass budget_bytes")
        return fit_memory_model(model, input_shape, device, "model").max_batch(budget_bytes, limit)

    def fits(batch: int) -> bool:
        try:
            peak = training_step_peak_bytes(model, input_shape, batch, device)
        except torch.cuda.OutOfMemoryError:
            return False
        return budget_bytes is None or peak <= budget_bytes

    return search_max_batch(fits, limit).batch_size


def memory_profile(
    model: nn.Module, input_shape: Sequence[int], batch_sizes: Sequence[int], device: str | torch.device | None = None
) -> pd.DataFrame:
    """Fig. 6.1: memory of a training step per batch size, one row per batch size.

    Columns: batch_size, saved_bytes (autograd's saved tensors), state_bytes (parameters, gradients,
    momentum, buffers), model_bytes (their sum: the memory model), peak_bytes (CUDA peak; NaN elsewhere).
    """
    device = _device_of(model, device)
    state = model_state_bytes(model)
    rows = []
    for batch in batch_sizes:
        saved = saved_tensor_bytes(model, input_shape, batch, device)
        peak = training_step_peak_bytes(model, input_shape, batch, device) if device.type == "cuda" else math.nan
        rows.append(
            {
                "batch_size": int(batch),
                "saved_bytes": saved,
                "state_bytes": state,
                "model_bytes": state + saved,
                "peak_bytes": peak,
            }
        )
    return pd.DataFrame(rows)


def _memory_at(
    model: nn.Module, input_shape: Sequence[int], batch_size: int, device: torch.device, method: str
) -> float:
    if method == "peak":
        return float(training_step_peak_bytes(model, input_shape, batch_size, device))
    return float(model_state_bytes(model) + saved_tensor_bytes(model, input_shape, batch_size, device))


def reference_budget(
    input_shape: Sequence[int],
    num_classes: int,
    device: str | torch.device = "cpu",
    method: str = "auto",
    batch_size: int = THESIS_REFERENCE_BATCH,
) -> float:
    """The memory budget of the batch table: what the thesis's baseline net (s = 3, N = 5, widths
    16/32/64) needs at `batch_size` (256, its entry in the thesis's table) on this input, so the table's
    anchor row reproduces the thesis's and every other entry is measured against the same memory."""
    device = torch.device(device)
    method = resolve_memory_method(method, device)
    shape = _check_input_shape(input_shape)
    config = WIDE_BASELINE.with_(in_channels=shape[0], num_classes=num_classes)
    model = build_resnet(config).to(device)
    return _memory_at(model, shape, _check_batch(batch_size), device, method)


def batch_table(
    input_shape: Sequence[int],
    num_classes: int,
    budget_bytes: float,
    stages: Sequence[int] = (1, 2, 3),
    blocks: Sequence[int] = range(1, 11),
    widths: Sequence[int] = (16, 32, 64),
    device: str | torch.device = "cpu",
    method: str = "auto",
) -> pd.DataFrame:
    """The thesis's table in 6.1: parameters and the largest batch within `budget_bytes` for every s x N.

    Columns: stages, blocks, parameters (of the measured net: the input's channels and classes), max_batch.
    """
    device = torch.device(device)
    shape = _check_input_shape(input_shape)
    _check_budget(budget_bytes)
    rows = []
    for s in stages:
        for n in blocks:
            config = ResNetConfig(
                stages=s, blocks=(n,) * s, widths=tuple(widths[:s]), in_channels=shape[0], num_classes=num_classes
            )
            model = build_resnet(config).to(device)
            batch = max_batch_size(model, shape, budget_bytes, device, method)
            rows.append({"stages": s, "blocks": n, "parameters": count_parameters(model), "max_batch": batch})
    return pd.DataFrame(rows)


# name -> (x column, y from the table) of the fits in `batch_fits`
FIT_RELATIONS: dict[str, tuple[str, Callable[[pd.DataFrame], pd.Series]]] = {
    "params_per_batch": ("blocks", lambda t: t["parameters"] / t["max_batch"]),
    "batch_over_params_per_batch": ("blocks", lambda t: t["max_batch"] / (t["parameters"] / t["max_batch"])),
    "batch": ("parameters", lambda t: t["max_batch"].astype(float)),
    "inverse_batch": ("parameters", lambda t: 1.0 / t["max_batch"]),
}


def batch_fits(table: pd.DataFrame, relations: Sequence[str] = tuple(FIT_RELATIONS)) -> pd.DataFrame:
    """Per stage count and relation (see FIT_RELATIONS and the module docstring), a least-squares line
    with the t-test of its slope (stats.linear_fit): columns stages, relation, x, slope, intercept, r2, p,
    slope_se, ci bounds, n."""
    unknown = [r for r in relations if r not in FIT_RELATIONS]
    if unknown:
        raise ValueError(f"unknown relation(s) {unknown}; use some of {list(FIT_RELATIONS)}")
    rows = []
    for s, part in table.groupby("stages", sort=True):
        for relation in relations:
            x_column, y_of = FIT_RELATIONS[relation]
            fit = linear_fit(part[x_column].to_numpy(float), y_of(part).to_numpy(float))
            rows.append({"stages": int(s), "relation": relation, "x": x_column, **fit.as_dict()})
    return pd.DataFrame(rows)


def inverse_batch_fit(table: pd.DataFrame, stages: int) -> LinearFit:
    """The fit 1 / max_batch = intercept + slope * parameters for one stage count (for `BatchAdaptation`)."""
    part = table[table["stages"] == stages]
    if len(part) < 3:
        raise ValueError(f"the table has {len(part)} rows with stages == {stages}; the fit needs at least 3")
    return linear_fit(part["parameters"].to_numpy(float), 1.0 / part["max_batch"].to_numpy(float))


def batch_from_fit(
    fit: LinearFit, base_parameters: int, parameters: int, base_batch_size: int, limit: int | None = None
) -> int:
    """The thesis's rule (6.1): the batch for a net of `parameters` from a fit of 1 / max batch against
    parameters, relative to the run's start: base batch x f(base parameters) / f(parameters), floored and
    capped at `limit`. ValueError where the line predicts 1 / batch <= 0 (extrapolated past its range)."""
    base_batch_size = _check_batch(base_batch_size, "base batch size")
    if limit is not None:
        limit = _check_batch(limit, "batch limit")
    base_inverse, inverse = float(fit.predict(base_parameters)), float(fit.predict(parameters))
    if base_inverse <= 0 or inverse <= 0:
        raise ValueError(
            f"the fit 1/batch = {fit.intercept:.3g} + {fit.slope:.3g} * parameters is <= 0 at "
            f"{min(base_parameters, parameters)} parameters: it is extrapolated beyond its range; "
            "fit over smaller nets or use rule 'probe'"
        )
    batch = max(1, math.floor(base_batch_size * base_inverse / inverse + FLOOR_ROUNDING_GUARD))
    return min(batch, limit) if limit is not None else batch


def lr_scale_for(batch_size: int, base_batch_size: int, scaling: str) -> float:
    """The learning-rate factor for growing the batch from `base_batch_size`: the ratio ("linear") or its
    square root ("sqrt", Hoffer et al. 2017), by the training loop's own rule (`batch_lr_factor`)."""
    if scaling not in SCALINGS:
        raise ValueError(f"unknown lr scaling {scaling!r}; use one of {SCALINGS}")
    return batch_lr_factor(_check_batch(batch_size), _check_batch(base_batch_size, "base batch size"), scaling)


class BatchAdaptation(TrainingHook):
    """Grow the batch when PruneTrain shrinks the network, keeping training memory at its first-epoch level.

    A Trainer hook next to PruneTrain: it acts on `on_model_replaced`, so every reconfiguration (or any
    other hook's replacement of the net) sets the next batch. At the start of a fresh run it fixes the memory budget: the memory of
    the initial network at the initial batch size. At every reconfiguration the new batch is

    - rule "probe": the largest batch of the new network within that budget, from its memory model
      (`memory_model` of the network; by default `fit_memory_model` on the trainer's device, in the run's
      precision and memory format: saved-tensor bytes off CUDA, measured peaks on CUDA);
    - rule "fit": base batch x f(P0) / f(P), where f(P) = intercept + slope * P is a fit of 1 / max_batch
      against parameters (`inverse_batch_fit`) and P0, P are the initial and new parameter counts;

    capped at `max_batch` (e.g. the training set size), and the learning-rate factor becomes
    lr_scale_for(new batch, base batch, scaling) times the factor the run started with. The batch changes
    only at reconfigurations. Budget, base batch and base factor are part of the checkpoint; the trainer
    checkpoints the batch size and factor themselves. Records per epoch: next_batch_size and next_lr_scale
    (what the following epoch uses) and memory_budget.

    Under DDP the budget is one device's: the memory of the initial network at a rank's share of the
    initial global batch; rule "probe" finds the largest share within it and the new global batch is that
    share times the world size (`max_batch` caps the global batch), rule "fit" rounds its batch down to a
    multiple of the world size, so the batch always divides among the ranks.
    """

    changes_shapes = True

    def __init__(
        self,
        scaling: str = "linear",
        rule: str = "probe",
        max_batch: int | None = None,
        params_fit: LinearFit | None = None,
        memory_model: MemoryModelFunction | None = None,
    ) -> None:
        if scaling not in SCALINGS:
            raise ValueError(f"unknown lr scaling {scaling!r}; use one of {SCALINGS}")
        if rule not in RULES:
            raise ValueError(f"unknown adaptation rule {rule!r}; use one of {RULES}")
        if rule == "fit" and params_fit is None:
            raise ValueError("rule 'fit' needs params_fit (inverse_batch_fit of a batch_table)")
        self.scaling = scaling
        self.rule = rule
        self.max_batch = _check_batch(max_batch, "batch limit") if max_batch is not None else None
        self.params_fit = params_fit
        self.memory_model = memory_model
        self.budget_bytes: float | None = None
        self.base_batch_size: int | None = None
        self.base_lr_scale: float = 1.0
        self.base_parameters: int | None = None

    def _memory_model_of(self, trainer: Trainer, model: nn.Module) -> MemoryModel:
        """The memory model of `model`; its probe passes count as the run's `hook_flops`."""
        with trainer.counting_hook_flops():
            if self.memory_model is not None:
                return self.memory_model(model)
            return fit_memory_model(
                model,
                tuple(trainer.data.train_x.shape[1:]),
                trainer.device,
                precision=trainer.config.precision,
                channels_last=trainer.config.channels_last,
            )

    def on_train_start(self, trainer: Trainer) -> None:
        if trainer.step_count > 0 and self.budget_bytes is not None:
            return
        self.base_batch_size = trainer.batch_size
        self.base_lr_scale = trainer.lr_scale
        self.base_parameters = count_parameters(trainer.model)
        self.budget_bytes = distributed.share(
            self._memory_model_of(trainer, trainer.model).bytes_at(trainer.batch_size // trainer.world_size)
        )  # under DDP rank 0's measurement decides for all

    def new_batch_size(self, trainer: Trainer, model: nn.Module) -> int:
        """The batch size for `model` under this run's memory budget (rule "probe") or fit (rule "fit")."""
        if self.budget_bytes is None or self.base_batch_size is None or self.base_parameters is None:
            raise RuntimeError(
                "BatchAdaptation has no memory budget yet: pass it in the Trainer's hooks, "
                "where it fixes the budget before the first epoch"
            )
        ranks = trainer.world_size
        if self.max_batch is not None and self.max_batch < ranks:
            raise ValueError(
                f"the batch limit {self.max_batch} is below the {ranks} processes of this run: every "
                f"rank needs at least one sample; raise max_batch to at least {ranks}"
            )
        if self.rule == "probe":
            limit = self.max_batch // ranks if self.max_batch is not None else None
            return ranks * self._memory_model_of(trainer, model).max_batch(self.budget_bytes, limit)
        batch = batch_from_fit(
            self.params_fit, self.base_parameters, count_parameters(model), self.base_batch_size, self.max_batch
        )
        return max(ranks, batch - batch % ranks)

    def on_model_replaced(self, trainer: Trainer, old_model: nn.Module, new_model: nn.Module) -> None:
        batch = distributed.share(self.new_batch_size(trainer, new_model))  # ranks measure memory apart
        trainer.batch_size = batch
        trainer.lr_scale = self.base_lr_scale * lr_scale_for(batch, self.base_batch_size, self.scaling)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        record["next_batch_size"] = trainer.batch_size
        record["next_lr_scale"] = trainer.lr_scale
        record["memory_budget"] = self.budget_bytes

    def state_dict(self) -> dict[str, Any]:
        return {
            "budget_bytes": self.budget_bytes,
            "base_batch_size": self.base_batch_size,
            "base_lr_scale": self.base_lr_scale,
            "base_parameters": self.base_parameters,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.budget_bytes = state["budget_bytes"]
        self.base_batch_size = state["base_batch_size"]
        self.base_lr_scale = state["base_lr_scale"]
        self.base_parameters = state["base_parameters"]


def params_batch_fit(
    config: ResNetConfig,
    input_shape: Sequence[int],
    batch_size: int,
    device: str | torch.device = "cpu",
    blocks: Sequence[int] = range(1, 11),
) -> LinearFit:
    """The fit of 1 / max batch against parameters for `config`'s stage count and widths over `blocks`,
    under the memory the deepest of those nets needs at `batch_size` (so every net of the table fits):
    the line rule "fit" of `BatchAdaptation` uses."""
    device = torch.device(device)
    input_shape = _check_input_shape(input_shape)
    method = resolve_memory_method("auto", device)
    deepest = build_resnet(config.with_(blocks=(max(blocks),) * config.stages)).to(device)
    budget = _memory_at(deepest, input_shape, batch_size, device, method)
    table = batch_table(
        input_shape,
        config.num_classes,
        budget,
        stages=(config.stages,),
        blocks=blocks,
        widths=config.widths,
        device=device,
        method=method,
    )
    return inverse_batch_fit(table, config.stages)
