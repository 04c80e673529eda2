"""Training loop: schedules, exact resume after a kill, hooks, LARS, bad configs."""

import pandas as pd
import pytest
import torch

from thesis_lib.models import ResNetConfig
from thesis_lib.training import LARS, Trainer, TrainConfig, TrainingHook, seeded_model
from helpers import KillAfter, Killed


TINY = ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=10)
TIMING_COLUMNS = ["epoch_time", "hook_time"]


def config(**changes):
    return TrainConfig(**{**dict(epochs=4, batch_size=32, lr=0.05, milestones=(2, 3), padding=1, flip=False,
                                 seed=3), **changes})


def test_step_schedule_follows_thesis_milestones():
    thesis = TrainConfig()
    assert thesis.lr_at(0) == 0.1 and thesis.lr_at(92) == 0.1
    assert thesis.lr_at(93) == pytest.approx(0.01) and thesis.lr_at(150) == pytest.approx(0.001)
    assert TrainConfig(schedule="constant").lr_at(179) == 0.1


def test_history_has_one_row_per_epoch_with_lr_and_sizes(digits_small):
    history = Trainer(seeded_model(TINY, 0), digits_small, config(), progress=False).fit()
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert list(history["lr"].round(6)) == [0.05, 0.05, 0.005, 0.0005]
    assert (history["batch_size"] == 32).all() and (history["params"] > 0).all()
    assert (history["epoch_time"] > 0).all()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]


def test_killed_run_resumes_to_the_identical_history(digits_small, tmp_path):
    uninterrupted = Trainer(seeded_model(TINY, 0), digits_small, config(), progress=False).fit()

    checkpoint = tmp_path / "checkpoint.pt"
    killed = Trainer(seeded_model(TINY, 0), digits_small, config(), hooks=[KillAfter(2)],
                     checkpoint_path=checkpoint, progress=False)
    with pytest.raises(Killed):
        killed.fit()
    resumed = Trainer(seeded_model(TINY, 99), digits_small, config(), hooks=[TrainingHook()],
                      checkpoint_path=checkpoint, progress=False)
    assert resumed.epoch == 2
    history = resumed.fit()
    pd.testing.assert_frame_equal(history.drop(columns=TIMING_COLUMNS),
                                  uninterrupted.drop(columns=TIMING_COLUMNS))


def test_checkpoint_of_another_config_is_refused(digits_small, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    Trainer(seeded_model(TINY, 0), digits_small, config(epochs=1), checkpoint_path=checkpoint, progress=False).fit()
    with pytest.raises(RuntimeError, match="different TrainConfig"):
        Trainer(seeded_model(TINY, 0), digits_small, config(epochs=1, lr=0.2), checkpoint_path=checkpoint)


def test_torn_checkpoint_is_reported(digits_small, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="cannot be read"):
        Trainer(seeded_model(TINY, 0), digits_small, config(), checkpoint_path=checkpoint)


def test_loss_term_hook_changes_training(digits_small):
    class L2OnClassifier(TrainingHook):
        def loss_term(self, trainer, outputs, targets, loss):
            return 10.0 * trainer.model.classifier.weight.square().sum()

    plain = Trainer(seeded_model(TINY, 0), digits_small, config(epochs=1), progress=False)
    plain.fit()
    regularised = Trainer(seeded_model(TINY, 0), digits_small, config(epochs=1), hooks=[L2OnClassifier()],
                          progress=False)
    regularised.fit()
    assert regularised.model.classifier.weight.norm() < 0.5 * plain.model.classifier.weight.norm()


def test_lars_scales_each_layer_step_by_trust_ratio():
    weight = torch.nn.Parameter(torch.full((2, 2), 2.0))
    weight.grad = torch.full((2, 2), 0.5)
    optimizer = LARS([weight], lr=1.0, momentum=0.0, weight_decay=0.0, trust=0.001)
    optimizer.step()
    # ||w|| = 4, ||g|| = 1: local rate 0.001 * 4 / 1, step = 0.004 * 0.5 per entry
    torch.testing.assert_close(weight.detach(), torch.full((2, 2), 2.0 - 0.002))


@pytest.mark.parametrize("changes, message", [
    (dict(schedule="cosine"), "unknown schedule"),
    (dict(precision="fp8"), "unknown precision"),
    (dict(optimizer="adam"), "unknown optimizer"),
    (dict(epochs=0), "epochs"),
    (dict(milestones=(150, 93)), "increasing"),
])
def test_bad_train_configs(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_fp16_on_cpu_is_refused(digits_small):
    with pytest.raises(ValueError, match="fp16"):
        Trainer(seeded_model(TINY, 0), digits_small, config(precision="fp16"), device="cpu")


def test_bf16_autocast_trains_on_cpu(digits_small):
    history = Trainer(seeded_model(TINY, 0), digits_small, config(epochs=1, precision="bf16"), progress=False).fit()
    assert history["train_loss"].notna().all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_training_with_mixed_precision_and_channels_last(digits_small, precision):
    history = Trainer(seeded_model(TINY, 0), digits_small, config(epochs=2, precision=precision, channels_last=True),
                      device="cuda", progress=False).fit()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
