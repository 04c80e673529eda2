"""The two-process scenarios of test_distributed.py, in a module of their own so that the spawned ranks
import only what they run (no statistics, no command line: a process start costs seconds on a busy machine).
Each scenario runs on every rank and returns what the tests compare across the ranks."""

import hashlib
import os
import socket
from datetime import timedelta
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from thesis_lib import distributed
from thesis_lib.data import load_dataset
from thesis_lib.methods.net2net import DeepenStep, Net2NetHook, WidenStep
from thesis_lib.methods.prunetrain import PruneTrain
from thesis_lib.models import ResNetConfig
from thesis_lib.training import TrainConfig, Trainer, TrainingHook, make_optimizer, seeded_model

from helpers import KillAfter, Killed, toy_data

WORLD = 2
TINY = ResNetConfig(stages=2, blocks=(2, 1), widths=(8, 12), in_channels=1)
CONFIG = TrainConfig(epochs=7, batch_size=64, lr=0.01, schedule="constant", padding=1, flip=False)


def small_digits():
    """512 training and 359 test images of the digits: 8 global batches of 64 per epoch."""
    data = load_dataset("digits")
    return data.subset(512, len(data.test_y), seed=0)


def strong_prunetrain() -> PruneTrain:
    """Far above the defaults, so that the tiny net shrinks within the run (as in test_prunetrain)."""
    return PruneTrain(lasso_ratio=0.95, threshold=5e-2, interval=2)


def state_sha256(model: torch.nn.Module) -> str:
    """sha256 of every parameter's and buffer's bytes, in state-dict order."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


class StateDigest(TrainingHook):
    """Records the digest of the model that trains the next epoch (after the hooks before it changed it)."""

    def on_epoch_end(self, trainer, record):
        record["state_sha256"] = state_sha256(trainer.model)


def prunetrain_scenario(rank: int, folder: Path) -> dict:
    data = small_digits()
    hooks = [strong_prunetrain(), StateDigest(), KillAfter(99)]
    trainer = Trainer(
        seeded_model(TINY, 0), data, CONFIG, hooks=hooks, checkpoint_path=folder / "whole.pt", progress=False
    )
    history = trainer.fit()
    killed = Trainer(
        seeded_model(TINY, 0),
        data,
        CONFIG,
        hooks=[strong_prunetrain(), StateDigest(), KillAfter(5)],
        checkpoint_path=folder / "killed.pt",
        progress=False,
    )
    try:
        killed.fit()
    except Killed:
        pass
    resumed = Trainer(
        seeded_model(TINY, 1),
        data,
        CONFIG,
        hooks=[strong_prunetrain(), StateDigest(), KillAfter(99)],
        checkpoint_path=folder / "killed.pt",
        progress=False,
    )
    resumed_epoch = resumed.epoch
    return {
        "history": history,
        "lambda": hooks[0].lambda_,
        "ddp": isinstance(trainer.train_module, DistributedDataParallel),
        "resumed_epoch": resumed_epoch,
        "resumed": resumed.fit(),
        "final": state_sha256(trainer.model),
    }


def net2net_scenario(rank: int, folder: Path) -> dict:
    toy = ResNetConfig(stages=2, blocks=(1, 1), widths=(2, 3), in_channels=1, num_classes=3)
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05, schedule="constant", augment=False)
    schedule = {
        1: [WidenStep(factor=2, noise=0.01)],
        2: [
            WidenStep(stages=1, factor=1.5, noise=0.01),
            DeepenStep(stage=0),
            DeepenStep(stage=1, kind="layer", block=0, position=1),
        ],
    }
    trainer = Trainer(
        seeded_model(toy, 0), toy_data(), config, hooks=[Net2NetHook(schedule, seed=1), StateDigest()], progress=False
    )
    history = trainer.fit()
    return {"history": history, "widths": [stage.width for stage in trainer.model.spec.stages]}


def errors_scenario(rank: int, folder: Path) -> dict:
    messages = {}
    for kind, model in (
        ("weights", seeded_model(TINY, rank)),
        ("architecture", seeded_model(TINY.with_(widths=(8, 12 + rank)), 0)),
    ):
        try:
            distributed.check_identical(model, "a test model")
        except RuntimeError as error:
            messages[kind] = str(error)
    data = small_digits()
    trainer = Trainer(seeded_model(TINY, 0), data, CONFIG, progress=False)
    other = seeded_model(TINY, rank)  # a "decision" that differs by rank
    try:
        trainer.replace_model(other, make_optimizer(other, CONFIG))
    except RuntimeError as error:
        messages["replace_model"] = str(error)
    try:
        Trainer(seeded_model(TINY, 0), data, TrainConfig(batch_size=33, epochs=1, schedule="constant"))
    except ValueError as error:
        messages["batch"] = str(error)
    return messages


SCENARIOS = {"prunetrain": prunetrain_scenario, "net2net": net2net_scenario, "errors": errors_scenario}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rank_main(rank: int, port: int, folder: str) -> None:
    """One rank: the environment torchrun would set, the process group, every scenario, its results saved."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    distributed.setup("cpu", timeout=timedelta(seconds=120))  # a hang fails the test instead of stalling it
    try:
        for name, scenario in SCENARIOS.items():
            (Path(folder) / name).mkdir(exist_ok=True)
            torch.save(scenario(rank, Path(folder) / name), Path(folder) / f"{name}.{rank}.pt")
    finally:
        distributed.teardown()
