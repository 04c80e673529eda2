"""TrainConfig.compile: the compiled step computes what the eager step computes, on the CPU (TorchInductor).

Tolerances: compiled kernels fuse and reorder float32 reductions, so values agree to rounding, not bitwise:
losses and outputs within 1e-5, gradients and updated weights within rtol 1e-4 / atol 1e-6.
"""

import pytest
import torch

from thesis_lib import training
from thesis_lib.methods.prunetrain import PruneTrain
from thesis_lib.models import ResNetConfig
from thesis_lib.training import TrainConfig, Trainer, seeded_model

TINY = ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=10)
OptimizedModule = torch._dynamo.eval_frame.OptimizedModule


def config(**changes):
    return TrainConfig(
        **{**dict(epochs=2, batch_size=32, lr=0.05, schedule="constant", padding=1, flip=False), **changes}
    )


def first_batch(trainer):
    trainer.train_loader.set_epoch(0)
    return next(iter(trainer.train_loader))


def test_the_compiled_step_computes_the_eager_loss_gradients_and_update(digits_small):
    eager = Trainer(seeded_model(TINY, 0), digits_small, config(), progress=False)
    compiled = Trainer(seeded_model(TINY, 0), digits_small, config(compile="always"), progress=False)
    assert isinstance(compiled.train_module, OptimizedModule) and eager.train_module is eager.model
    x, y = first_batch(eager)
    eager_out, eager_loss, _ = eager.train_step(x, y)
    compiled_out, compiled_loss, _ = compiled.train_step(x, y)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-5, atol=1e-5)
    eager_parameters = dict(eager.model.named_parameters())
    for name, parameter in compiled.model.named_parameters():
        torch.testing.assert_close(parameter.grad, eager_parameters[name].grad, rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(parameter, eager_parameters[name], rtol=1e-4, atol=1e-6, msg=name)
    assert compiled.model.state_dict().keys() == eager.model.state_dict().keys()  # checkpoints stay plain


def test_static_compiles_only_runs_whose_hooks_keep_the_shapes(digits_small):
    plain = Trainer(seeded_model(TINY, 0), digits_small, config(compile="static"), progress=False)
    pruning = Trainer(
        seeded_model(TINY, 0), digits_small, config(compile="static"), progress=False, hooks=[PruneTrain(interval=1)]
    )
    assert isinstance(plain.train_module, OptimizedModule) and plain.train_module._orig_mod is plain.model
    assert pruning.train_module is pruning.model and not pruning.compiled


def test_always_recompiles_the_pruned_net_after_a_reconfiguration(digits_small):
    trainer = Trainer(
        seeded_model(TINY, 0),
        digits_small,
        config(compile="always", lr=0.2),
        progress=False,
        hooks=[PruneTrain(lasso_ratio=0.9, threshold=0.1, interval=1)],
    )
    passed = trainer.model
    history = trainer.fit()
    assert bool(history["reconfigured"].iloc[0]) and trainer.model is not passed
    assert trainer.train_module._orig_mod is trainer.model
    x, y = first_batch(trainer)
    trainer.model.train()
    torch.testing.assert_close(trainer.train_module(x), trainer.model(x), rtol=1e-5, atol=1e-5)


def test_compile_on_the_cpu_without_a_cxx_compiler_is_a_clear_error(digits_small, monkeypatch):
    monkeypatch.setattr(training.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="C\\+\\+ compiler"):
        Trainer(seeded_model(TINY, 0), digits_small, config(compile="always"), progress=False)


def test_an_unknown_compile_mode_is_refused():
    with pytest.raises(ValueError, match="compile mode 'yes'"):
        TrainConfig(compile="yes")


@pytest.mark.cuda
def test_the_compiled_bf16_channels_last_step_on_cuda_matches_eager(digits_small):
    """The `full` profile's fast path on the GPU: bf16 autocast rounds, so the tolerance is bf16's (1e-2)."""
    settings = dict(precision="bf16", channels_last=True)
    eager = Trainer(seeded_model(TINY, 0), digits_small, config(**settings), device="cuda", progress=False)
    compiled = Trainer(
        seeded_model(TINY, 0), digits_small, config(compile="always", **settings), device="cuda", progress=False
    )
    x, y = first_batch(eager)
    _, eager_loss, _ = eager.train_step(x, y)
    _, compiled_loss, _ = compiled.train_step(x, y)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-2, atol=1e-2)
    eager_parameters = dict(eager.model.named_parameters())
    for name, parameter in compiled.model.named_parameters():
        torch.testing.assert_close(parameter, eager_parameters[name], rtol=1e-2, atol=1e-3, msg=name)
