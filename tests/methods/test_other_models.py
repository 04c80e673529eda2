"""The methods on nets that are not thesis ResNets, or whose shapes a tool outside thesis_lib changed:
a clear error up front, never an AttributeError or IndexError deep inside."""

import pytest
import torchvision
from torch import nn

from thesis_lib.methods.net2net import Net2NetHook, WidenStep, widen
from thesis_lib.methods.prunetrain import PruneTrain, group_lasso, zero_small_weights_
from thesis_lib.models import ResNetConfig, build_resnet, spec_mismatch
from thesis_lib.surgery import channel_groups
from thesis_lib.training import TrainConfig, Trainer

from helpers import toy_data

TORCHVISION_HINT = "works on thesis_lib.models.ResNet only"


@pytest.mark.parametrize("method", [group_lasso, lambda model: zero_small_weights_(model, 1e-3)])
def test_pruning_functions_on_a_torchvision_net_say_what_they_need(method):
    with pytest.raises(TypeError, match=TORCHVISION_HINT) as error:
        method(torchvision.models.resnet18(num_classes=10))
    assert "torchvision.models.resnet.ResNet" in str(error.value) and "blocks=(2, 2, 2, 2)" in str(error.value)


@pytest.mark.parametrize("hook", [Net2NetHook({3: [WidenStep(factor=2.0)]}), PruneTrain()])
def test_hooks_check_their_model_before_the_first_epoch(hook):
    model = torchvision.models.resnet18(num_classes=4)
    model.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)
    trainer = Trainer(
        model, toy_data(), TrainConfig(epochs=3, batch_size=16, milestones=()), hooks=[hook], progress=False
    )
    with pytest.raises(TypeError, match=TORCHVISION_HINT):
        trainer.fit()
    assert trainer.history == []  # not one epoch trained before the error


def _pruned_from_outside() -> nn.Module:
    """A thesis net whose first stage lost 4 output channels of its stem, as Torch-Pruning would do it:
    the modules change, the spec does not."""
    model = build_resnet(ResNetConfig(blocks=(1, 1, 1), widths=(8, 16, 32), in_channels=1, num_classes=4))
    assert spec_mismatch(model) is None
    stem = next(module for module in model.modules() if isinstance(module, nn.Conv2d))
    narrower = nn.Conv2d(
        stem.in_channels, stem.out_channels - 4, stem.kernel_size, stem.stride, stem.padding, bias=False
    )
    for _, module in model.named_modules():
        for child_name, child in module.named_children():
            if child is stem:
                setattr(module, child_name, narrower)
    return model


@pytest.mark.parametrize(
    "use", [channel_groups, lambda model: widen(model, factor=2.0), lambda model: zero_small_weights_(model, 1e-3)]
)
def test_shapes_changed_outside_thesis_lib_are_named(use):
    model = _pruned_from_outside()
    assert "has shape (4, 1, 3, 3), the spec says (8, 1, 3, 3)" in spec_mismatch(model)
    with pytest.raises(ValueError, match="spec no longer matches its modules") as error:
        use(model)
    assert "Torch-Pruning" in str(error.value) and "has shape (4, 1, 3, 3)" in str(error.value)


def test_the_shape_check_passes_every_net_that_surgery_made():
    model = build_resnet(ResNetConfig(blocks=(1, 1, 1), widths=(8, 16, 32), in_channels=1, num_classes=4))
    wider = widen(model, factor=1.5)
    assert spec_mismatch(wider) is None and len(channel_groups(wider)) == len(channel_groups(model))
    assert channel_groups(wider)[0].size == 12  # the stem's stream, 8 x 1.5
