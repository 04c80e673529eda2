"""Test helpers shared by several test files: a simulated kill and an irregular ResNet spec."""

from thesis_lib.models import BlockSpec, ResNetSpec, StageSpec
from thesis_lib.training import TrainingHook


class Killed(Exception):
    """Stands for the process being killed."""


class KillAfter(TrainingHook):
    """Simulates a process killed right after the checkpoint of epoch `epoch` was written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_start(self, trainer):
        if trainer.epoch >= self.epoch:
            raise Killed()

    def on_epoch_end(self, trainer, record):
        self.pending = record["epoch"] == self.epoch

    def after_step(self, trainer):
        if getattr(self, "pending", False):
            raise Killed()


def irregular_spec() -> ResNetSpec:
    """A stem segment of its own, an l=3 block, a bare shortcut block, a stage without blocks, l=1 blocks."""
    return ResNetSpec(
        in_channels=2, stem_width=3, num_classes=4,
        stages=(
            StageSpec(5, (BlockSpec((4, 2), (1, 3, 1), 1, 1), BlockSpec((3,), (3, 3)))),
            StageSpec(6, (BlockSpec((), (), 2, 3), BlockSpec((), (3,)))),
            StageSpec(6, ()),
            StageSpec(7, (BlockSpec((4,), (3, 1), 2, 1), BlockSpec((), (), 1, 1))),
        ),
    )
