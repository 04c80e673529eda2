"""DDP (thesis_lib.distributed) with gloo on the CPU: two processes train one run.

One module fixture spawns two ranks once and runs every two-process scenario of `ddp_ranks` in them
(process start-up dominates on a small machine); the tests then read what each rank saved. Checked: a PruneTrain run that
shrinks completes with bit-identical models on both ranks after every epoch and every reconfiguration,
lambda from the whole first global batch, all-reduced bytes per step = 4 x the parameters trained that
epoch (fp32 gradients) and falling at every reconfiguration, kill and resume from rank 0's checkpoint,
Net2Net growth, clear errors for disagreeing ranks and an indivisible batch; then one process under DDP
against the plain Trainer, the loader's shards, BatchAdaptation's batch per rank, and the command line
with torchrun and the run store.
"""

import contextlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from ddp_ranks import (
    CONFIG,
    SCENARIOS,
    TINY,
    WORLD,
    free_port,
    rank_main,
    small_digits,
    state_sha256,
    strong_prunetrain,
)
from torch.nn.parallel import DistributedDataParallel

from thesis_lib import cli, distributed
from thesis_lib.data import DeviceLoader
from thesis_lib.experiments import get_profile
from thesis_lib.methods.batchsize import BatchAdaptation, MemoryModel
from thesis_lib.methods.prunetrain import group_lasso, lasso_lambda
from thesis_lib.models import count_training_flops
from thesis_lib.stats import linear_fit
from thesis_lib.training import TrainConfig, Trainer, seeded_model

RUN_DEPENDENT = ["epoch_time", "hook_time", "allreduce_seconds_per_step"]  # clocks, not results
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Per scenario, the list of what each rank returned."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(rank_main, args=(free_port(), str(folder)), nprocs=WORLD, join=True)
    return {
        name: [torch.load(folder / f"{name}.{rank}.pt", weights_only=False) for rank in range(WORLD)]
        for name in SCENARIOS
    } | {"folder": folder}


def test_a_prunetrain_run_that_shrinks_keeps_the_ranks_bit_identical(ranks):
    first, second = ranks["prunetrain"]
    history = first["history"]
    assert first["ddp"] and history["reconfigured"].sum() >= 1
    assert history["params_after"].iloc[-1] < history["params"].iloc[0]
    assert history["state_sha256"].tolist() == second["history"]["state_sha256"].tolist()  # every epoch
    assert first["final"] == second["final"]
    assert first["lambda"] == second["lambda"]
    pd.testing.assert_frame_equal(history.drop(columns=RUN_DEPENDENT), second["history"].drop(columns=RUN_DEPENDENT))


def test_the_allreduce_volume_is_four_bytes_per_parameter_and_falls_at_every_reconfiguration(ranks):
    history = ranks["prunetrain"][0]["history"]
    assert (history["allreduce_bytes_per_step"] == 4 * history["params"]).all()
    volume = history["allreduce_bytes_per_step"].tolist()
    for epoch in range(1, len(history)):
        if history["reconfigured"].iloc[epoch - 1]:
            assert volume[epoch] < volume[epoch - 1]
        else:
            assert volume[epoch] == volume[epoch - 1]
    assert (history["allreduce_seconds_per_step"] > 0).all()


def test_lambda_comes_from_the_mean_loss_of_the_ranks_shares_of_the_first_batch(ranks):
    """The first global batch (64 of the seeded permutation) halved as the ranks see it: lambda of eq. 2.3
    from the mean of the halves' losses; either half alone would give a lambda farther off than rounding."""
    data, model = small_digits(), seeded_model(TINY, 0)
    loader = DeviceLoader(
        data.train_x, data.train_y, CONFIG.batch_size, padding=CONFIG.padding, flip=False, seed=CONFIG.seed
    )
    x, y = next(iter(loader))
    model.train()
    with torch.no_grad():
        losses = [
            float(torch.nn.functional.cross_entropy(model(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32]))
            for i in range(2)
        ]
        lasso = group_lasso(model)
    expected = lasso_lambda(sum(losses) / 2, lasso, 0.95)
    assert ranks["prunetrain"][0]["lambda"] == pytest.approx(expected, rel=1e-6)
    assert abs(losses[0] - losses[1]) / sum(losses) > 1e-4


def test_a_killed_ddp_run_resumes_from_rank_zeros_checkpoint_to_the_same_history(ranks):
    assert sorted(p.name for p in (ranks["folder"] / "prunetrain").iterdir()) == ["killed.pt", "whole.pt"]
    for result in ranks["prunetrain"]:
        assert result["resumed_epoch"] == 5
        pd.testing.assert_frame_equal(
            result["resumed"].drop(columns=RUN_DEPENDENT), result["history"].drop(columns=RUN_DEPENDENT)
        )


def test_net2net_growth_under_ddp_keeps_the_ranks_identical_and_the_volume_follows_the_size(ranks):
    first, second = ranks["net2net"]
    history = first["history"]
    assert first["widths"] == second["widths"] == [4, 9]
    assert history["params"].is_monotonic_increasing and history["params"].nunique() == 3
    assert history["state_sha256"].tolist() == second["history"]["state_sha256"].tolist()
    assert (history["allreduce_bytes_per_step"] == 4 * history["params"]).all()


def test_disagreeing_ranks_and_an_indivisible_batch_are_clear_errors(ranks):
    for messages in ranks["errors"]:
        assert "ranks [1] hold other weights (the same architecture)" in messages["weights"]
        assert "ranks [1] hold other architectures" in messages["architecture"]
        assert "the model installed at the end of epoch 1" in messages["replace_model"]
        assert "global batch size 33 does not divide by the world size 2" in messages["batch"]


def one_process_group(monkeypatch, device: str) -> None:
    """The environment of torchrun with one process, and its process group on `device`."""
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    for name in ("RANK", "LOCAL_RANK"):
        monkeypatch.setenv(name, "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    distributed.setup(device)


def test_ddp_with_one_process_reproduces_the_plain_trainer_exactly(monkeypatch):
    data = small_digits()
    config = TrainConfig(epochs=5, batch_size=64, lr=0.01, schedule="constant", padding=1, flip=False)

    def train():
        trainer = Trainer(seeded_model(TINY, 0), data, config, hooks=[strong_prunetrain()], progress=False)
        return trainer, trainer.fit()

    plain_trainer, plain = train()
    one_process_group(monkeypatch, "cpu")
    try:
        ddp_trainer, ddp = train()
    finally:
        distributed.teardown()
    assert isinstance(ddp_trainer.train_module, DistributedDataParallel)
    assert plain["reconfigured"].sum() >= 1
    assert (ddp["allreduce_bytes_per_step"] == 4 * ddp["params"]).all()
    pd.testing.assert_frame_equal(
        ddp.drop(columns=RUN_DEPENDENT + ["allreduce_bytes_per_step"]), plain.drop(columns=["epoch_time", "hook_time"])
    )
    assert state_sha256(ddp_trainer.model) == state_sha256(plain_trainer.model)


@pytest.mark.cuda
def test_ddp_on_cuda_with_nccl_shrinks_checks_the_ranks_and_counts_the_bytes(monkeypatch):
    """One process with NCCL on GPU 0: the CUDA path (device_ids, the untimed hook, sums and buffer broadcast
    on the GPU, the identity check through NCCL) trains a PruneTrain run that shrinks."""
    one_process_group(monkeypatch, "cuda")
    try:
        trainer = Trainer(
            seeded_model(TINY, 0), small_digits(), CONFIG, hooks=[strong_prunetrain()], device="cuda", progress=False
        )
        history = trainer.fit()
    finally:
        distributed.teardown()
    assert history["reconfigured"].sum() >= 1 and "allreduce_seconds_per_step" not in history
    assert (history["allreduce_bytes_per_step"] == 4 * history["params"]).all()


def test_each_rank_takes_its_contiguous_equal_share_of_every_global_batch():
    """100 samples in global batches of 64 on 2 ranks: shares of 32 and 18 (the last batch's 36 halved);
    the shares side by side are the single-process batches, augmentation included. 37 leaves its 37th
    sample out; a last batch of 1 sits the epoch out."""
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 1, 8, 8, generator=generator), torch.arange(100)
    single = list(DeviceLoader(x, y, 64, padding=2, seed=4))
    shards = [list(DeviceLoader(x, y, 64, padding=2, seed=4, rank=r, world_size=2)) for r in range(2)]
    assert [len(images) for images, _ in shards[0]] == [len(images) for images, _ in shards[1]] == [32, 18]
    for batch, (images, labels) in enumerate(single):
        assert torch.equal(torch.cat([shards[r][batch][0] for r in range(2)]), images)
        assert torch.equal(torch.cat([shards[r][batch][1] for r in range(2)]), labels)
    odd = [list(DeviceLoader(torch.randn(101, 1, 8, 8), torch.arange(101), 64, rank=r, world_size=2)) for r in range(2)]
    assert [len(labels) for _, labels in odd[1]] == [32, 18]
    seen = torch.cat([labels for shard in odd for _, labels in shard])
    assert len(seen) == len(set(seen.tolist())) == 100
    assert len(DeviceLoader(torch.randn(65, 1, 8, 8), torch.arange(65), 64, world_size=2)) == 1
    loader = DeviceLoader(x, y, 64, world_size=2)
    with pytest.raises(ValueError, match="global batch size 33 does not divide by the world size 2"):
        loader.batch_size = 33  # what a batch adaptation would do
    with pytest.raises(ValueError, match="rank 2 of world size 2"):
        DeviceLoader(x, y, 64, rank=2, world_size=2)


def test_batch_adaptation_budgets_one_device_and_grows_the_global_batch_by_whole_shares():
    """Budget at a rank's share (16 / 2 = 8 samples of 1 byte); the pruned net needs 0.4 bytes per sample,
    so a rank takes floor(8 / 0.4) = 20 and the global batch is 40 (cap 30: 15 per rank, 30). Rule "fit"
    floors 16 x 1000 / 470 = 34.04 to 34 and rounds it down to the 2-rank multiple 34; at 3 ranks to 33."""
    trainer = SimpleNamespace(
        model=torch.nn.Linear(2, 2),
        batch_size=16,
        lr_scale=1.0,
        step_count=0,
        world_size=2,
        counting_hook_flops=contextlib.nullcontext,
    )
    dense, pruned = MemoryModel(0, 0, 1.0, "saved"), MemoryModel(0, 0, 0.4, "saved")
    for cap, expected in ((None, 40), (30, 30)):
        adaptation = BatchAdaptation(
            memory_model=lambda model: dense if model is trainer.model else pruned, max_batch=cap
        )
        adaptation.on_train_start(trainer)
        assert adaptation.budget_bytes == 8
        assert adaptation.new_batch_size(trainer, torch.nn.Linear(2, 3)) == expected
    fit = linear_fit([100, 1000, 10000], [1e-4, 1e-3, 1e-2])
    adaptation = BatchAdaptation(rule="fit", params_fit=fit, memory_model=lambda model: dense)
    adaptation.on_train_start(trainer)
    adaptation.base_parameters = 1000
    shrunk = SimpleNamespace(parameters=lambda: [torch.zeros(470, requires_grad=True)])
    assert adaptation.new_batch_size(trainer, shrunk) == 34
    assert adaptation.new_batch_size(SimpleNamespace(**{**vars(trainer), "world_size": 3}), shrunk) == 33


def test_comm_stats_count_per_step_and_time_the_union_of_the_in_flight_intervals():
    """Buckets of 3 steps, 400 bytes each; intervals (0, 2), (1, 3) overlap and (5, 6) does not: 4 s in
    flight, 4 / 3 s per step; then everything starts afresh."""
    stats = distributed.CommStats(timed=True, bytes=1200, steps=3, intervals=[(5.0, 6.0), (0.0, 2.0), (1.0, 3.0)])
    assert stats.in_flight_seconds() == 4.0
    assert stats.take() == {"allreduce_bytes_per_step": 400.0, "allreduce_seconds_per_step": pytest.approx(4 / 3)}
    assert (stats.bytes, stats.steps, stats.intervals) == (0, 0, [])
    assert distributed.CommStats(timed=False, bytes=80, steps=2).take() == {"allreduce_bytes_per_step": 40.0}


def test_nproc_below_one_and_nproc_under_torchrun_are_usage_errors(capsys, monkeypatch):
    assert cli.main(["run", "baseline", "--profile", "smoke", "--nproc", "0"]) == 2
    assert "--nproc must be a whole number >= 1" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli.main(["run", "baseline", "--profile", "smoke", "--nproc", "2"]) == 2
    assert "runs under torchrun already (WORLD_SIZE=2); drop --nproc" in capsys.readouterr().err


def test_the_cli_trains_one_run_on_two_processes_into_one_sealed_folder(isolated_results, capfd, monkeypatch):
    """`run --nproc 2` launches torchrun: rank 0 alone prints the summary and writes the folder, sealed,
    loadable, keyed by the world size; the net pruned to one channel per stream at epoch 1 moves 4 bytes
    per parameter, fewer after the reconfiguration."""
    from thesis_lib.experiments import results_root, run_dir_for, run_status

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(ROOT)
    assert cli.main(["run", "prunetrain", "--profile", "smoke", "--nproc", "2", "--param", "threshold=10"]) == 0
    out, err = capfd.readouterr()
    summary = json.loads(out)  # one JSON object: rank 1 printed nothing
    folders = [p for p in (results_root() / "smoke" / "prunetrain").iterdir() if p.is_dir()]
    assert [str(p) for p in folders] == [summary["path"]] and not summary["cached"]
    folder = folders[0]
    assert sorted(p.name for p in folder.iterdir()) == [
        "DONE",
        "config.json",
        "history.csv",
        "model.pt",
        "provenance.json",
        "summary.json",
    ]
    assert run_status(folder)["status"] == "finished"
    assert json.loads((folder / "config.json").read_text())["world_size"] == 2
    assert run_dir_for("prunetrain", {"threshold": 10}, "smoke") != folder  # a one-process run is another run
    history = pd.read_csv(folder / "history.csv")
    assert summary["reconfigurations"] == 1 and summary["final_params"] < summary["dense_params"]
    assert (history["allreduce_bytes_per_step"] == 4 * history["params"]).all()
    assert history["allreduce_bytes_per_step"].is_monotonic_decreasing
    # the two ranks' images add up to the training set: the dense first epoch's FLOPs are one process's
    smoke = get_profile("smoke")
    dense = seeded_model(smoke.resnet("wide", 1, 10), 0)
    assert history["train_flops"].iloc[0] == smoke.n_train * count_training_flops(dense, smoke.input_size)
