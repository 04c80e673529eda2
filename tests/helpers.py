"""Test helpers shared by several test files: a simulated kill, an irregular ResNet spec, toy data and
independent counts of a net's size (and the thesis's parameter table) and of the width multiplier's breakpoints."""

import math
from fractions import Fraction

from torch import nn

from thesis_lib.data import Dataset, random_dataset
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
        in_channels=2,
        stem_width=3,
        num_classes=4,
        stages=(
            StageSpec(5, (BlockSpec((4, 2), (1, 3, 1), 1, 1), BlockSpec((3,), (3, 3)))),
            StageSpec(6, (BlockSpec((), (), 2, 3), BlockSpec((), (3,)))),
            StageSpec(6, ()),
            StageSpec(7, (BlockSpec((4,), (3, 1), 2, 1), BlockSpec((), (), 1, 1))),
        ),
    )


def toy_data() -> Dataset:
    """48 random 1x8x8 images of 3 classes (32 train, 16 test): enough to exercise a training loop."""
    return random_dataset(32, 16, (1, 8, 8), num_classes=3, name="toy")


def weight_entries(model: nn.Module) -> int:
    """Conv and linear weight entries: the model-size resource with every channel alive."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def next_breakpoint(spec: ResNetSpec, omega: float) -> Fraction:
    """The smallest omega' > omega at which some width floor(omega' w) grows."""
    widths = (
        {spec.stem_width}
        | {s.width for s in spec.stages}
        | {w for s in spec.stages for b in s.blocks for w in b.widths}
    )
    omega = Fraction(omega).limit_denominator(10**6)
    return min(Fraction(math.floor(omega * w) + 1, w) for w in widths)


def thesis_parameter_count(stages: int, blocks: int) -> int:
    """Parameters of the thesis's table (section 6.1): a first value per s and a constant step per extra
    block; the wide baseline (s = 3, n = 5) has 98,522 + 4 x 97,216 = 487,386."""
    first = {1: 5_306, 2: 24_090, 3: 98_522}
    step = {1: 4_672, 2: 23_232, 3: 97_216}
    return first[stages] + step[stages] * (blocks - 1)


def hand_training_flops(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Forward + backward FLOPs of one training image, counted by hand from the layers' shapes (not by
    torch.utils.flop_counter): 2 FLOPs per multiply-accumulate; a conv or linear layer costs its forward
    product, a weight gradient of the same size and, unless its input is the image, an input gradient."""
    import torch

    products: list[tuple[int, bool]] = []

    def record(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            macs = output.numel() * module.in_features
        products.append((macs, inputs[0] is image))

    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    image = torch.zeros(1, *input_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(image)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return sum(2 * macs * (2 if first else 3) for macs, first in products)


def timed_alone(frame):
    """`frame` (runs made up by a test) as runs timed on one machine, each alone: the `TIMING_COLUMNS` a
    sweep's summary has, so that their times may be tested."""
    return frame.assign(timing_setting="test CPU, 1 thread, torch 2", timed_alone=True)
