"""Batch size against memory: saved-tensor bytes, the max-batch search, the thesis's fit, batch adaptation."""

import math
import random
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from thesis_lib.methods.batchsize import (
    BatchAdaptation,
    MemoryModel,
    batch_fits,
    batch_from_fit,
    batch_table,
    fit_memory_model,
    inverse_batch_fit,
    lr_scale_for,
    max_batch_size,
    memory_profile,
    model_state_bytes,
    params_batch_fit,
    reference_budget,
    saved_tensor_bytes,
    search_max_batch,
    training_step_peak_bytes,
)
from thesis_lib.methods.prunetrain import PruneTrain
from thesis_lib.models import ResNetConfig, build_resnet, count_parameters
from thesis_lib.stats import linear_fit
from thesis_lib.training import TrainConfig, Trainer, TrainingHook, seeded_model

from helpers import KillAfter, Killed

TINY = ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=10)


DIGITS_SHAPE = (1, 8, 8)


TIMING_COLUMNS = ["epoch_time", "hook_time"]


THESIS_S1_PARAMETERS = [5306, 9978, 14650, 19322, 23994, 28666, 33338, 38010, 42682, 47354]


THESIS_S1_BATCH = [506, 435, 382, 339, 304, 277, 256, 236, 218, 205]


def conv_bn_relu_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 4),
    )


@pytest.mark.parametrize("batch, height, width", [(1, 5, 5), (4, 5, 5), (3, 6, 7)])
def test_saved_bytes_match_a_hand_count_for_conv_bn_relu(batch, height, width):
    # float32: conv saves its input (B*2*H*W); BN its input (B*3*H*W) and save_mean, save_invstd (3 each);
    # ReLU its output (B*3*H*W); the linear layer the pooled input (B*3); log_softmax its output (B*4);
    # nll_loss the int64 targets (B) and its scalar total weight. Weights and BN buffers do not count.
    hand = 4 * (batch * 2 * height * width + 2 * batch * 3 * height * width + 2 * 3 + batch * 3 + batch * 4)
    hand += 8 * batch + 4
    assert saved_tensor_bytes(conv_bn_relu_net(), (2, height, width), batch) == hand


def test_saved_bytes_leave_the_model_and_the_rng_untouched():
    model = seeded_model(TINY, 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    saved_tensor_bytes(model, DIGITS_SHAPE, 8)
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_memory_model_of_a_resnet_is_exactly_affine_in_the_batch():
    model = seeded_model(TINY, 0)
    memory = fit_memory_model(model, DIGITS_SHAPE, method="model", probe_batches=(2, 5))
    # parameters, gradients and momentum in float32; per BN: running mean and var (float32) and an int64 counter
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    buffers = sum(2 * 4 * bn.num_features + 8 for bn in batch_norms)
    assert memory.static_bytes == 3 * 4 * count_parameters(model) + buffers
    for batch in (1, 9, 33):
        assert memory.bytes_at(batch) == pytest.approx(
            model_state_bytes(model) + saved_tensor_bytes(model, DIGITS_SHAPE, batch), abs=1e-6
        )


def test_memory_profile_of_a_linear_net_against_hand_counted_bytes():
    # Flatten + Linear(4 -> 3, no bias) on 1x2x2 images, batch b, float32:
    # state: 12 weights x 4 bytes x (weight + gradient + momentum) = 144, no buffers;
    # saved: the linear's input (b x 4 x 4 bytes) + log_softmax's output (b x 3 x 4) + nll_loss's int64 target
    # (b x 8) + its scalar total_weight (4) = 36 b + 4.
    linear = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))
    profile = memory_profile(linear, (1, 2, 2), [1, 2, 8])
    assert profile["state_bytes"].tolist() == [144] * 3
    assert profile["saved_bytes"].tolist() == [40, 76, 292]
    assert profile["model_bytes"].tolist() == [184, 220, 436]


def test_memory_profile_rows_and_columns():
    profile = memory_profile(seeded_model(TINY, 0), DIGITS_SHAPE, [4, 8])
    assert list(profile["batch_size"]) == [4, 8]
    assert profile["saved_bytes"].iloc[1] > profile["saved_bytes"].iloc[0]
    assert profile["peak_bytes"].isna().all() == (not torch.cuda.is_available())


def test_search_finds_the_exact_boundary_with_logarithmic_probes():
    rng = random.Random(0)
    for boundary in [1, 2, 3, 4, 5, 1023, 1024, 1025] + [rng.randint(1, 10**6) for _ in range(300)]:
        calls = []

        def fits(batch, calls=calls, boundary=boundary):
            calls.append(batch)
            return batch <= boundary

        result = search_max_batch(fits)
        assert result.batch_size == boundary
        assert len(calls) == len(result.probes) <= 2 * math.log2(boundary) + 2
        assert [b for b, _ in result.probes] == calls


def test_search_respects_a_limit_and_never_probes_above_it():
    rng = random.Random(1)
    for _ in range(200):
        boundary, limit = rng.randint(1, 5000), rng.randint(1, 5000)
        result = search_max_batch(lambda batch, boundary=boundary: batch <= boundary, limit=limit)
        assert result.batch_size == min(boundary, limit)
        assert max(b for b, _ in result.probes) <= limit


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: search_max_batch(lambda batch: False), "one sample"),
        (lambda: search_max_batch(lambda batch: True, limit=0), "batch limit"),
        (lambda: MemoryModel(1000, 0, 10, "saved").max_batch(1005), "does not hold one sample"),
        (lambda: MemoryModel(1000, 0, 10, "saved").max_batch(-1), "positive"),
        (lambda: MemoryModel(1000, 0, 10, "saved").max_batch(5000, limit=0), "batch limit"),
        (lambda: max_batch_size(conv_bn_relu_net(), (2, 4, 4), None, device="cpu"), "budget"),
        (lambda: max_batch_size(conv_bn_relu_net(), (2, 4, 4), 10.0, device="cpu"), "does not hold one sample"),
        (lambda: max_batch_size(conv_bn_relu_net(), (2, 4, 4), 1e6, device="cpu", method="peak"), "CUDA"),
        (lambda: saved_tensor_bytes(conv_bn_relu_net(), (2, 4), 1), "input_shape"),
        (lambda: saved_tensor_bytes(conv_bn_relu_net(), (2, 4, 4), 0), "batch size"),
        (lambda: lr_scale_for(128, 64, "cubic"), "scaling"),
        (lambda: BatchAdaptation(max_batch=0), "batch limit"),
        (lambda: BatchAdaptation(rule="fit"), "params_fit"),
        (lambda: batch_from_fit(linear_fit([1, 2, 3], [-1.0, 0.0, 1.0]), 3, 1, 64), "extrapolated"),
        (
            lambda: inverse_batch_fit(pd.DataFrame({"stages": [1, 1], "parameters": [5, 9], "max_batch": [9, 5]}), 1),
            "at least 3",
        ),
    ],
)
def test_bad_inputs_raise_clear_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_memory_model_solves_the_budget_by_hand():
    memory = MemoryModel(static_bytes=1000, fixed_bytes=24, per_sample_bytes=100, source="saved")
    assert memory.max_batch(10_000) == 89  # (10000 - 1024) / 100 = 89.76
    assert memory.max_batch(memory.bytes_at(64)) == 64
    assert memory.max_batch(10_000, limit=50) == 50


def test_max_batch_on_cpu_is_the_last_batch_whose_measured_memory_fits():
    model = seeded_model(TINY, 0)
    budget = 3.0e6
    batch = max_batch_size(model, DIGITS_SHAPE, budget, device="cpu")
    state = model_state_bytes(model)
    assert state + saved_tensor_bytes(model, DIGITS_SHAPE, batch) <= budget
    assert state + saved_tensor_bytes(model, DIGITS_SHAPE, batch + 1) > budget
    assert max_batch_size(model, DIGITS_SHAPE, budget, device="cpu", limit=7) == 7


def test_batch_table_shrinks_with_depth_and_anchors_the_thesis_net_at_256():
    budget = reference_budget(DIGITS_SHAPE, num_classes=10)
    table = batch_table(DIGITS_SHAPE, 10, budget, stages=(1, 3), blocks=(1, 5, 9))
    assert list(table["stages"]) == [1, 1, 1, 3, 3, 3]
    anchor = table[(table.stages == 3) & (table.blocks == 5)]
    assert int(anchor["max_batch"].iloc[0]) == 256
    for _, part in table.groupby("stages"):
        assert part["max_batch"].is_monotonic_decreasing and part["parameters"].is_monotonic_increasing
    # s = 1, N = 1 on 1x8x8 digits: the thesis count 5,306 minus the stem's two RGB input channels (2 x 144)
    assert int(table["parameters"].iloc[0]) == 5306 - 2 * 16 * 9


def test_thesis_fits_on_the_draft_s1_column():
    table = pd.DataFrame(
        {"stages": 1, "blocks": range(1, 11), "parameters": THESIS_S1_PARAMETERS, "max_batch": THESIS_S1_BATCH}
    )
    fits = batch_fits(table).set_index("relation")
    # 1 / batch against parameters is the line the memory model predicts: the draft reports p = 2.9e-16
    assert fits.loc["inverse_batch", "p"] < 1e-15 and fits.loc["inverse_batch", "r2"] > 0.999
    assert fits.loc["params_per_batch", "slope"] == pytest.approx(24.56, abs=0.01)  # fig. 6.6
    assert fits.loc["batch_over_params_per_batch", "r2"] == pytest.approx(0.573, abs=0.001)
    assert set(fits["x"]) == {"blocks", "parameters"}


def test_lr_scaling_linear_and_sqrt():
    assert lr_scale_for(128, 64, "linear") == 2.0
    assert lr_scale_for(256, 64, "sqrt") == 2.0
    assert lr_scale_for(96, 64, "sqrt") == pytest.approx(math.sqrt(1.5))


def fake_trainer(model, batch_size=64, lr_scale=1.0):
    return SimpleNamespace(model=model, batch_size=batch_size, lr_scale=lr_scale, step_count=0)


@pytest.mark.parametrize("cap, expected", [(None, 624), (100, 100)])
def test_the_fit_rule_with_sqrt_scaling_through_prunetrain_and_the_real_trainer(digits_small, cap, expected):
    """Rule "fit" on a real run: a line 1 / batch = 1e-6 * parameters makes the new batch 16 x P0 / P, by
    hand 16 x 1638 / 42 = 624 for TINY pruned to one channel per group at epoch 2 (or the cap, 100), and
    the sqrt rule scales the learning rate by sqrt(batch / 16) from the epoch after the reconfiguration."""
    fit = linear_fit([100, 1000, 10000], [1e-4, 1e-3, 1e-2])
    adaptation = BatchAdaptation(scaling="sqrt", rule="fit", params_fit=fit, max_batch=cap)
    prune = PruneTrain(lasso_ratio=0.2, threshold=10.0, interval=2)
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05, schedule="constant", padding=1, flip=False, seed=1)
    history = Trainer(seeded_model(TINY, 0), digits_small, config, hooks=[prune, adaptation], progress=False).fit()
    assert history["params"].iloc[0] == 1638 and history["params_after"].iloc[1] == history["params"].iloc[2] == 42
    assert 16 * 1638 / 42 == 624
    assert list(history["batch_size"]) == [16, 16, expected]
    assert history["lr"].tolist() == pytest.approx([0.05, 0.05, 0.05 * math.sqrt(expected / 16)])
    assert history["memory_budget"].nunique() == 1  # the budget of the first epoch, kept


def test_adaptation_without_a_budget_says_how_to_use_it():
    with pytest.raises(RuntimeError, match="hooks"):
        BatchAdaptation().on_model_replaced(fake_trainer(nn.Linear(2, 2)), nn.Linear(2, 2), nn.Linear(2, 2))


def prunetrain_with_adaptation(extra_hooks=()):
    # A threshold far above every weight kills every channel at epoch 1: a real, large reconfiguration.
    adaptation = BatchAdaptation(scaling="linear", max_batch=100)
    prune = PruneTrain(lasso_ratio=0.2, threshold=10.0, interval=2)
    return [prune, adaptation, *extra_hooks], adaptation


def test_prunetrain_grows_the_batch_at_reconfiguration_and_resumes_exactly(digits_small, tmp_path):
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05, schedule="constant", padding=1, flip=False, seed=1)
    hooks, adaptation = prunetrain_with_adaptation()
    trainer = Trainer(seeded_model(TINY, 0), digits_small, config, hooks=hooks, progress=False)
    initial = seeded_model(TINY, 0)
    history = trainer.fit()

    budget = model_state_bytes(initial) + saved_tensor_bytes(initial, DIGITS_SHAPE, 16)
    assert adaptation.budget_bytes == pytest.approx(budget)
    pruned = trainer.model
    state = model_state_bytes(pruned)
    uncapped = max_batch_size(pruned, DIGITS_SHAPE, budget, device="cpu")
    assert state + saved_tensor_bytes(pruned, DIGITS_SHAPE, uncapped) <= budget
    assert state + saved_tensor_bytes(pruned, DIGITS_SHAPE, uncapped + 1) > budget
    grown = min(uncapped, 100)
    assert list(history["batch_size"]) == [16, 16, grown]  # changes only after the reconfiguration
    assert list(history["next_batch_size"]) == [16, grown, grown]
    assert history["lr"].tolist() == pytest.approx([0.05, 0.05, 0.05 * grown / 16])

    checkpoint = tmp_path / "checkpoint.pt"
    hooks, _ = prunetrain_with_adaptation([KillAfter(2)])
    with pytest.raises(Killed):
        Trainer(
            seeded_model(TINY, 0), digits_small, config, hooks=hooks, checkpoint_path=checkpoint, progress=False
        ).fit()
    hooks, _ = prunetrain_with_adaptation([TrainingHook()])
    resumed = Trainer(
        seeded_model(TINY, 5), digits_small, config, hooks=hooks, checkpoint_path=checkpoint, progress=False
    )
    pd.testing.assert_frame_equal(resumed.fit().drop(columns=TIMING_COLUMNS), history.drop(columns=TIMING_COLUMNS))


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the peak-memory probe needs CUDA")


@needs_cuda
def test_cuda_peak_grows_with_the_batch_and_holds_the_model_state():
    model = seeded_model(TINY, 0).cuda()
    small, large = (training_step_peak_bytes(model, DIGITS_SHAPE, b) for b in (64, 512))
    assert model_state_bytes(model) < small < large
    memory = fit_memory_model(model, DIGITS_SHAPE, method="peak", probe_batches=(64, 128, 256))
    assert memory.source == "peak" and memory.per_sample_bytes > 0


@needs_cuda
def test_cuda_search_stays_within_the_budget():
    model = seeded_model(TINY, 0).cuda()
    budget = training_step_peak_bytes(model, DIGITS_SHAPE, 300)
    batch = max_batch_size(model, DIGITS_SHAPE, budget, method="peak")
    assert training_step_peak_bytes(model, DIGITS_SHAPE, batch) <= budget
    assert batch >= 250


def test_memory_is_measured_in_the_runs_precision():
    """Under bf16 autocast the convs save bf16 activations: about half the fp32 bytes (BN and the loss keep
    some fp32), so a budget measured in fp32 would be wrong for a bf16 run."""
    model = ResNetConfig(stages=2, blocks=(1, 1), widths=(8, 16), in_channels=3, num_classes=10)
    net = seeded_model(model, 0)
    fp32 = saved_tensor_bytes(net, (3, 16, 16), 8)
    bf16 = saved_tensor_bytes(net, (3, 16, 16), 8, precision="bf16")
    assert 0.4 * fp32 < bf16 < 0.7 * fp32
    fitted = fit_memory_model(net, (3, 16, 16), precision="bf16")
    assert fitted.per_sample_bytes == pytest.approx(
        (
            saved_tensor_bytes(net, (3, 16, 16), 4, precision="bf16")
            - saved_tensor_bytes(net, (3, 16, 16), 2, precision="bf16")
        )
        / 2
    )
    with pytest.raises(ValueError, match="unknown precision"):
        saved_tensor_bytes(net, (3, 16, 16), 8, precision="int8")


def test_max_batch_does_not_lose_a_sample_to_floating_point_rounding():
    # 0.3 / 0.1 is 2.9999999999999996 in floating point: three samples fit exactly.
    assert MemoryModel(0.0, 0.0, 0.1, "saved").max_batch(0.3) == 3
    assert MemoryModel(0.0, 0.0, 0.1, "saved").max_batch(0.29) == 2


def test_params_batch_fit_is_the_line_through_brute_force_max_batches():
    """The budget is what the deepest net (3 blocks) needs at batch 16; each net's max batch is found here by
    trying every batch size against state + saved-tensor bytes (no memory model), then fitted by numpy."""
    config = ResNetConfig(stages=1, blocks=(1,), widths=(4,), in_channels=1, num_classes=3)
    fit = params_batch_fit(config, DIGITS_SHAPE, 16, blocks=(1, 2, 3))
    nets = [build_resnet(config.with_(blocks=(n,))) for n in (1, 2, 3)]

    def memory(model, batch):
        return model_state_bytes(model) + saved_tensor_bytes(model, DIGITS_SHAPE, batch)

    budget = memory(nets[-1], 16)
    batches = []
    for model in nets:
        batch = 1
        while memory(model, batch + 1) <= budget:
            batch += 1
        batches.append(batch)
    assert batches[-1] == 16 and batches[0] > batches[1] > 16  # shallower nets fit more
    slope, intercept = np.polyfit([count_parameters(m) for m in nets], [1 / b for b in batches], 1)
    assert (fit.slope, fit.intercept, fit.n) == (pytest.approx(slope, rel=1e-9), pytest.approx(intercept, rel=1e-9), 3)
    assert fit.slope > 0  # more parameters, smaller batches
