"""Training loop: schedules, exact resume after a kill, hooks, LARS, bad configs."""

import pandas as pd
import pytest
import torch

from thesis_lib.data import load_dataset
from thesis_lib.models import ResNetConfig, build_resnet, count_flops, count_parameters, count_training_flops
from thesis_lib.training import DEFAULT_LR, LARS, TrainConfig, Trainer, TrainingHook, make_optimizer, seeded_model

from helpers import KillAfter, Killed, hand_training_flops, irregular_spec

TINY = ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=10)
TIMING_COLUMNS = ["epoch_time", "hook_time"]
EPOCHS_TO_LEARN = 4


def config(**changes):
    return TrainConfig(
        **{**dict(epochs=4, batch_size=32, lr=0.05, milestones=(2, 3), padding=1, flip=False, seed=3), **changes}
    )


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


def test_killed_run_resumes_to_the_identical_history_and_global_rng(digits_small, tmp_path):
    """Killed after epoch 2's checkpoint, resumed in a "new process" (another init, another global RNG state):
    the same history, including a hook's draws from the global RNG, as a run never killed."""
    torch.manual_seed(7)
    uninterrupted = Trainer(
        seeded_model(TINY, 0), digits_small, config(), hooks=[DrawsFromTheGlobalRng()], progress=False
    ).fit()

    checkpoint = tmp_path / "checkpoint.pt"
    torch.manual_seed(7)
    killed = Trainer(
        seeded_model(TINY, 0),
        digits_small,
        config(),
        hooks=[DrawsFromTheGlobalRng(), KillAfter(2)],
        checkpoint_path=checkpoint,
        progress=False,
    )
    with pytest.raises(Killed):
        killed.fit()
    fresh_model = seeded_model(TINY, 99)
    torch.manual_seed(12345)  # a new process starts with another global RNG state
    resumed = Trainer(
        fresh_model,
        digits_small,
        config(),
        hooks=[DrawsFromTheGlobalRng(), KillAfter(99)],
        checkpoint_path=checkpoint,
        progress=False,
    )
    assert resumed.epoch == 2
    history = resumed.fit()
    assert len(set(history["draw"])) == 4  # the draws differ from epoch to epoch: the check can fail
    pd.testing.assert_frame_equal(history.drop(columns=TIMING_COLUMNS), uninterrupted.drop(columns=TIMING_COLUMNS))


def test_checkpoint_of_another_config_is_refused(digits_small, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    Trainer(
        seeded_model(TINY, 0),
        digits_small,
        config(epochs=1, schedule="constant"),
        checkpoint_path=checkpoint,
        progress=False,
    ).fit()
    with pytest.raises(RuntimeError, match="different TrainConfig"):
        Trainer(
            seeded_model(TINY, 0),
            digits_small,
            config(epochs=1, lr=0.2, schedule="constant"),
            checkpoint_path=checkpoint,
        )


def test_torn_checkpoint_is_reported(digits_small, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="cannot be read"):
        Trainer(seeded_model(TINY, 0), digits_small, config(), checkpoint_path=checkpoint)


def test_loss_term_hook_changes_training(digits_small):
    class L2OnClassifier(TrainingHook):
        def loss_term(self, trainer, outputs, targets, loss):
            return 10.0 * trainer.model.classifier.weight.square().sum()

    plain = Trainer(seeded_model(TINY, 0), digits_small, config(epochs=1, schedule="constant"), progress=False)
    plain.fit()
    regularised = Trainer(
        seeded_model(TINY, 0),
        digits_small,
        config(epochs=1, schedule="constant"),
        hooks=[L2OnClassifier()],
        progress=False,
    )
    regularised.fit()
    assert regularised.model.classifier.weight.norm() < 0.5 * plain.model.classifier.weight.norm()


def test_lars_scales_each_layer_step_by_trust_ratio():
    weight = torch.nn.Parameter(torch.full((2, 2), 2.0))
    weight.grad = torch.full((2, 2), 0.5)
    optimizer = LARS([weight], lr=1.0, momentum=0.0, weight_decay=0.0, trust=0.001)
    optimizer.step()
    # ||w|| = 4, ||g|| = 1: local rate 0.001 * 4 / 1, step = 0.004 * 0.5 per entry
    torch.testing.assert_close(weight.detach(), torch.full((2, 2), 2.0 - 0.002))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(schedule="cosine"), "unknown schedule"),
        (dict(precision="fp8"), "unknown precision"),
        (dict(optimizer="adam"), "unknown optimizer"),
        (dict(epochs=0), "epochs"),
        (dict(milestones=(150, 93)), "increasing"),
        (dict(warmup_epochs=-1), "warmup_epochs"),
        (dict(epochs=5, milestones=(3,), warmup_epochs=5), "warmup_epochs"),
        (dict(epochs=3), r"milestones \(93, 150\) must lie below epochs \(3\).*milestones=.*schedule='constant'"),
        (dict(epochs=4, milestones=(2, 4)), r"milestones \(2, 4\) must lie below epochs \(4\)"),
        (dict(lr_scaling="cubic"), "unknown lr scaling"),
        (dict(lr_reference_batch=0), "lr_reference_batch"),
    ],
)
def test_bad_train_configs(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_warm_up_and_batch_scaling_give_the_documented_rate_per_epoch():
    """lr 0.1 set for batch 128, trained at 512: linear scaling gives 0.4, sqrt 0.2; three warm-up epochs
    run at 1/4, 2/4 and 3/4 of that, the fourth at the full rate; the step schedule decays it at epoch 6."""
    common = dict(epochs=8, batch_size=512, lr=0.1, lr_reference_batch=128, milestones=(6,), warmup_epochs=3)
    linear = TrainConfig(lr_scaling="linear", **common)
    assert [linear.lr_at(e) for e in range(8)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.04, 0.04])
    root = TrainConfig(lr_scaling="sqrt", **common)
    assert [root.lr_at(e) for e in range(8)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2, 0.02, 0.02])
    plain = TrainConfig(**{**common, "warmup_epochs": 0})
    assert [plain.lr_at(e) for e in range(8)] == pytest.approx([0.1] * 6 + [0.01] * 2)
    poly = TrainConfig(epochs=4, lr=2.0, schedule="poly")
    assert [poly.lr_at(e) for e in range(4)] == pytest.approx([2.0, 2.0 * 0.75**2, 2.0 * 0.5**2, 2.0 * 0.25**2])


def test_the_trainer_sets_the_scheduled_rate_of_every_epoch(digits_small):
    cfg = config(epochs=3, batch_size=64, lr_reference_batch=32, lr_scaling="linear", warmup_epochs=1, milestones=(2,))
    trainer = Trainer(seeded_model(TINY, 0), digits_small, cfg, progress=False)
    history = trainer.fit()
    steps = len(trainer.train_loader)  # the warm-up epoch's first step runs at 1 / (steps + 1) of the rate
    assert history["lr"].tolist() == pytest.approx([0.1 / (steps + 1), 0.1, 0.01])


def test_warm_up_and_poly_decay_move_per_iteration():
    """Two warm-up epochs of 4 steps: iterations k = 0..7 at (k + 1) / 9 of the rate, k = 8 at the full
    rate; poly decays every iteration as (1 - k / 16) ** 2 over 4 epochs of 4 steps; the step schedule
    stays constant within an epoch."""
    warm = TrainConfig(epochs=4, lr=0.9, schedule="constant", warmup_epochs=2)
    rates = [warm.lr_at(e, i, 4) for e in range(3) for i in range(4)]
    assert rates == pytest.approx([0.9 * (k + 1) / 9 for k in range(8)] + [0.9] * 4)
    assert warm.lr_changes_within(1) and not warm.lr_changes_within(2)
    poly = TrainConfig(epochs=4, lr=2.0, schedule="poly")
    assert [poly.lr_at(e, i, 4) for e in range(4) for i in range(4)] == pytest.approx(
        [2.0 * (1 - k / 16) ** 2 for k in range(16)]
    )
    step = TrainConfig(epochs=4, lr=1.0, milestones=(2,))
    assert [step.lr_at(1, i, 4) for i in range(4)] == [1.0] * 4 and not step.lr_changes_within(1)
    with pytest.raises(ValueError, match="step must lie in"):
        step.lr_at(0, 4, 4)


class LastStepRate(TrainingHook):
    def on_epoch_end(self, trainer, record):
        record["last_step_lr"] = trainer.optimizer.param_groups[0]["lr"]


def test_the_trainer_moves_the_warm_up_rate_at_every_step(digits_small):
    cfg = config(epochs=3, batch_size=64, lr=0.1, schedule="constant", warmup_epochs=2)
    trainer = Trainer(seeded_model(TINY, 0), digits_small, cfg, hooks=[LastStepRate()], progress=False)
    history = trainer.fit()
    steps = len(trainer.train_loader)
    assert steps > 1
    assert history["lr"].tolist() == pytest.approx([cfg.lr_at(e, 0, steps) for e in range(3)])
    assert history["last_step_lr"].tolist() == pytest.approx([cfg.lr_at(e, steps - 1, steps) for e in range(3)])
    assert history["last_step_lr"].iloc[0] > history["lr"].iloc[0]  # it rose within the first epoch


def test_each_optimizer_has_its_own_default_rate():
    assert TrainConfig().lr == 0.1 and TrainConfig(optimizer="lars").lr == DEFAULT_LR["lars"] == 5.0
    assert TrainConfig(optimizer="lars", lr=2.0).lr == 2.0
    assert TrainConfig(optimizer="lars") == TrainConfig(optimizer="lars", lr=5.0)


def test_ghost_batch_larger_than_the_batch_is_refused(digits_small):
    with pytest.raises(ValueError, match="virtual batch 64 is larger than the batch size 32"):
        Trainer(seeded_model(TINY.with_(ghost_batch=64), 0), digits_small, config(batch_size=32))


def test_fp16_on_cpu_is_refused(digits_small):
    with pytest.raises(ValueError, match="fp16"):
        Trainer(seeded_model(TINY, 0), digits_small, config(precision="fp16"), device="cpu")


def test_bf16_autocast_trains_on_cpu(digits_small):
    history = Trainer(
        seeded_model(TINY, 0), digits_small, config(epochs=1, precision="bf16", schedule="constant"), progress=False
    ).fit()
    assert history["train_loss"].notna().all()


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_training_with_mixed_precision_and_channels_last(digits_small, precision):
    history = Trainer(
        seeded_model(TINY, 0),
        digits_small,
        config(epochs=2, schedule="constant", precision=precision, channels_last=True),
        device="cuda",
        progress=False,
    ).fit()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]


@pytest.mark.cuda
@pytest.mark.parametrize("optimizer", ["sgd", "lars"])
def test_cuda_training_steps_never_wait_for_the_device(digits_small, optimizer):
    """No step of an epoch reads a value back from the GPU (issue 16): CUDA's sync debug mode raises on
    every synchronising call. Step 0 is left out: it fixes PruneTrain's lambda from the first loss (the
    one read of the run); so is the start of the epoch's iteration, which draws the order on the host."""
    from thesis_lib.methods.prunetrain import PruneTrain

    trainer = Trainer(
        seeded_model(TINY, 0),
        digits_small,
        config(epochs=2, schedule="constant", precision="bf16", optimizer=optimizer, lr=None),
        device="cuda",
        hooks=[PruneTrain(interval=1)],
        progress=False,
    )
    batches = iter(trainer.train_loader)
    trainer.train_step(*next(batches))
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in batches:
            trainer.train_step(x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.step_count == len(trainer.train_loader)


def test_bn_parameters_get_a_group_without_weight_decay_that_survives_surgery_and_resume(tmp_path):
    from thesis_lib.surgery import carry_optimizer_state, select_channels
    from thesis_lib.training import make_optimizer

    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, schedule="constant", augment=False, bn_weight_decay=False)
    model = build_resnet(ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=10))
    optimizer = make_optimizer(model, config)
    bn = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    decayed, free = optimizer.param_groups
    assert (decayed["weight_decay"], free["weight_decay"]) == (5e-4, 0.0)
    assert {id(p) for p in free["params"]} == bn and not bn & {id(p) for p in decayed["params"]}
    assert len(decayed["params"]) + len(free["params"]) == len(list(model.parameters()))
    assert len(make_optimizer(model, TrainConfig()).param_groups) == 1

    data = load_dataset("digits").subset(96, 32, seed=0)
    trainer = Trainer(model, data, config, checkpoint_path=tmp_path / "run.pt", progress=False)
    trainer.fit()
    keep = {"stage1.stream": [0, 2, 5], "stage0.block0.layer1": [1, 3]}  # a pruning, as PruneTrain does it
    smaller = select_channels(trainer.model, keep)
    new_optimizer = trainer.make_optimizer(smaller)
    carry_optimizer_state(trainer.model, smaller, trainer.optimizer, new_optimizer, keep)
    new_bn = {id(p) for m in smaller.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    groups = new_optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0] and {id(p) for p in groups[1]["params"]} == new_bn
    assert all(p in new_optimizer.state for p in groups[1]["params"])  # momentum carried for the BN group too
    resumed = Trainer(
        build_resnet(ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=10)),
        data,
        config,
        checkpoint_path=tmp_path / "run.pt",
        progress=False,
    )
    assert [g["weight_decay"] for g in resumed.optimizer.param_groups] == [5e-4, 0.0]
    assert len(resumed.optimizer.param_groups[1]["params"]) == len(free["params"])


def tiny_trainer(hooks=(), epochs=2, checkpoint_path=None):
    data = load_dataset("digits").subset(96, 32, seed=0)
    config = TrainConfig(epochs=epochs, batch_size=32, lr=0.05, schedule="constant", augment=False)
    model = seeded_model(ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=10), 0)
    return Trainer(model, data, config, hooks=list(hooks), checkpoint_path=checkpoint_path, progress=False)


def test_evaluate_uses_the_running_statistics_and_restores_the_mode():
    from thesis_lib.training import evaluate

    torch.manual_seed(0)
    model = build_resnet(ResNetConfig(stages=1, blocks=(1,), widths=(4,), in_channels=1, num_classes=3))
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    copy = build_resnet(model.spec)
    copy.load_state_dict(frozen)
    copy.eval()
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(copy(x), y).item()
    model.train()
    loss, _ = evaluate(model, x, y)
    assert loss == pytest.approx(expected, rel=1e-6) and model.training
    assert all(torch.equal(v, frozen[k]) for k, v in model.state_dict().items())  # running stats untouched


class ConstantTerm(TrainingHook):
    def loss_term(self, trainer, outputs, targets, loss):
        return torch.tensor(10.0)


def test_train_loss_is_the_task_loss_without_the_hooks_terms():
    plain = tiny_trainer().fit()
    with_term = tiny_trainer([ConstantTerm()]).fit()  # a constant adds no gradient: same training
    assert with_term["train_loss"].tolist() == pytest.approx(plain["train_loss"].tolist(), rel=1e-6)


class DrawsFromTheGlobalRng(TrainingHook):
    def on_epoch_end(self, trainer, record):
        record["draw"] = float(torch.rand(()))


def lars_by_hand(tensors, grads, lr, momentum, wd, trust, clip=False):
    """torchlars / apex LARC, written out per tensor: local = trust ||w|| / (||g|| + wd ||w||) (1 when a norm
    is 0; LARC's clip: min(local / lr, 1)), v <- m v + local (g + wd w), w <- w - lr v."""
    weights = [t.clone() for t in tensors]
    buffers = [None] * len(tensors)
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            w = weights[i]
            w_norm, g_norm = float(w.norm()), float(g.norm())
            local = trust * w_norm / (g_norm + wd * w_norm) if w_norm > 0 and g_norm > 0 else 1.0
            if clip:
                local = min(local / lr, 1.0)
            update = local * (g + wd * w)
            buffers[i] = update if buffers[i] is None else momentum * buffers[i] + update
            weights[i] = w - lr * buffers[i]
    return weights


@pytest.mark.parametrize("clip", [False, True])
def test_lars_adapts_every_tensor_by_the_torchlars_and_larc_formula(clip):
    """Weights and 1-d tensors alike (one policy, as torchlars and LARC); with clip the local rate is capped
    at the global one (LARC); trust 0.3 makes the cap bind for the bias at lr 0.5."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    b = torch.nn.Parameter(torch.randn(4))
    lr, momentum, wd, trust = 0.5, 0.9, 0.01, 0.3
    optimizer = LARS([w, b], lr=lr, momentum=momentum, weight_decay=wd, trust=trust, clip=clip)
    start = [w.detach().clone(), b.detach().clone()]
    grads = [(torch.randn(4, 3), torch.randn(4) * 0.1) for _ in range(3)]
    for g_w, g_b in grads:
        w.grad, b.grad = g_w.clone(), g_b.clone()
        optimizer.step()
    expected = lars_by_hand(start, grads, lr, momentum, wd, trust, clip)
    torch.testing.assert_close(w.detach(), expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.detach(), expected[1], rtol=1e-5, atol=1e-6)
    unclipped = lars_by_hand(start, grads, lr, momentum, wd, trust, clip=False)
    assert clip == (not torch.allclose(b.detach(), unclipped[1]))  # the cap changed the bias's steps


def test_lars_falls_back_to_the_plain_step_for_a_zero_gradient_or_a_zero_tensor():
    """The references' trust ratio 1 (not trust / wd, which a zero gradient gives in the bare formula): a
    non-zero weight with zero gradient is only decayed, by lr * wd * w; a zero tensor takes lr * g."""
    w = torch.nn.Parameter(torch.full((2, 2), 2.0))
    z = torch.nn.Parameter(torch.zeros(3))
    w.grad, z.grad = torch.zeros(2, 2), torch.full((3,), 0.5)
    LARS([w, z], lr=0.1, momentum=0.0, weight_decay=0.01, trust=0.001).step()
    torch.testing.assert_close(w.detach(), torch.full((2, 2), 2.0 - 0.1 * 0.01 * 2.0))
    torch.testing.assert_close(z.detach(), torch.full((3,), -0.05))


def test_the_config_builds_larc_clipping():
    model = build_resnet(TINY)
    assert make_optimizer(model, TrainConfig(optimizer="lars", lars_clip=True)).param_groups[0]["clip"] is True
    assert make_optimizer(model, TrainConfig(optimizer="lars")).param_groups[0]["clip"] is False


def test_lars_and_sgd_share_the_weight_decay_policy_of_the_param_groups():
    """Zero gradients, so only weight decay moves anything: with bn_weight_decay=False neither optimizer
    touches a BN gamma, and both decay the classifier's bias (1-d, not BN) by lr * wd in one step."""
    for optimizer in ("sgd", "lars"):
        model = build_resnet(TINY)
        with torch.no_grad():
            model.classifier.bias.fill_(1.0)
        cfg = TrainConfig(optimizer=optimizer, lr=0.5, weight_decay=0.01, bn_weight_decay=False, momentum=0.0)
        opt = make_optimizer(model, cfg)
        gamma = model.stem_bn.weight.detach().clone()
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        assert torch.equal(model.stem_bn.weight.detach(), gamma), optimizer
        torch.testing.assert_close(model.classifier.bias.detach(), torch.full((10,), 1 - 0.5 * 0.01))


def test_the_trainer_uses_one_cpu_thread_for_small_nets_unless_told_otherwise(digits_small):
    original = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        Trainer(seeded_model(TINY, 0), digits_small, config(), progress=False)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        Trainer(seeded_model(TINY, 0), digits_small, config(), progress=False, cpu_threads=None)
        assert torch.get_num_threads() == 2
        Trainer(seeded_model(TINY, 0), digits_small, config(), progress=False, cpu_threads=3)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(original)


def test_fit_replaces_the_model_when_a_hook_prunes_it(digits_small):
    from thesis_lib.methods.prunetrain import PruneTrain

    passed = seeded_model(TINY, 0)
    trainer = Trainer(
        passed,
        digits_small,
        config(epochs=2, schedule="constant", lr=0.2),
        progress=False,
        hooks=[PruneTrain(lasso_ratio=0.9, threshold=0.1, interval=1)],
    )
    history = trainer.fit()
    assert history["params_after"].iloc[-1] < history["params"].iloc[0]
    assert trainer.model is not passed and count_parameters(passed) == history["params"].iloc[0]
    assert count_parameters(trainer.model) == history["params_after"].iloc[-1]


def test_every_hook_hears_of_a_replaced_model_with_the_old_and_the_new_net(digits_small):
    """`on_model_replaced` reaches each hook, the replacing one too, once per reconfiguration, while the
    new net is already the trainer's (TINY prunes at the end of epoch 1 of 2 with this threshold)."""
    from thesis_lib.methods.prunetrain import PruneTrain

    class Listener(TrainingHook):
        def __init__(self):
            self.heard = []

        def on_model_replaced(self, trainer, old_model, new_model):
            self.heard.append((count_parameters(old_model), count_parameters(new_model), new_model is trainer.model))

    before, after = Listener(), Listener()
    trainer = Trainer(
        seeded_model(TINY, 0),
        digits_small,
        config(epochs=2, schedule="constant", lr=0.2),
        progress=False,
        hooks=[before, PruneTrain(lasso_ratio=0.9, threshold=0.1, interval=1), after],
    )
    history = trainer.fit()
    assert history["reconfigured"].tolist() == [True, False]
    expected = [(int(history["params"].iloc[0]), int(history["params_after"].iloc[0]), True)]
    assert before.heard == after.heard == expected and expected[0][1] < expected[0][0]


class RecordsEveryBatch(TrainingHook):
    """A second bookkeeping of each epoch, batch by batch, through the hook interface."""

    def __init__(self):
        self.loss_sum, self.correct, self.seen, self.epochs = 0.0, 0, 0, []

    def loss_term(self, trainer, outputs, targets, loss):
        self.loss_sum += float(loss.detach()) * len(targets)
        self.correct += int((outputs.argmax(1) == targets).sum())
        self.seen += len(targets)
        return None

    def on_epoch_end(self, trainer, record):
        self.epochs.append((self.loss_sum / self.seen, self.correct / self.seen, self.seen))
        self.loss_sum, self.correct, self.seen = 0.0, 0, 0


def test_train_loss_and_accuracy_are_the_sample_weighted_means_over_the_epochs_batches():
    """100 images at batch 32: three full batches and one of 4, so an unweighted mean of the batch losses
    (or one weighted by the nominal batch size) differs from the per-sample mean. Trained until the
    accuracy is well above chance, so that it tells argmax from anything else."""
    data = load_dataset("digits").subset(100, 32, seed=0)
    recorder = RecordsEveryBatch()
    cfg = TrainConfig(epochs=EPOCHS_TO_LEARN, batch_size=32, lr=0.2, schedule="constant", augment=False)
    history = Trainer(seeded_model(TINY, 0), data, cfg, hooks=[recorder], progress=False).fit()
    losses, accuracies, seen = zip(*recorder.epochs)
    assert seen == (100,) * EPOCHS_TO_LEARN
    assert history["train_loss"].tolist() == pytest.approx(list(losses), rel=1e-6)
    assert history["train_acc"].tolist() == list(accuracies)
    assert accuracies[-1] > 0.25  # measured 0.32; chance is 0.1


def test_a_model_handed_over_in_eval_mode_is_trained_in_train_mode(digits_small):
    """The loop switches to train mode itself: batch statistics normalise and the running statistics move."""
    cfg = config(epochs=2, milestones=(1,))
    in_train_mode = Trainer(seeded_model(TINY, 0), digits_small, cfg, progress=False)
    reference = in_train_mode.fit()
    handed_in_eval = seeded_model(TINY, 0).eval()
    trainer = Trainer(handed_in_eval, digits_small, cfg, progress=False)
    history = trainer.fit()
    pd.testing.assert_frame_equal(history.drop(columns=TIMING_COLUMNS), reference.drop(columns=TIMING_COLUMNS))
    assert not torch.equal(trainer.model.stem_bn.running_mean, torch.zeros_like(trainer.model.stem_bn.running_mean))


@pytest.mark.parametrize("mode", [True, False], ids=["train", "eval"])
def test_evaluate_restores_whichever_mode_the_model_was_in(mode):
    from thesis_lib.training import evaluate

    model = seeded_model(TINY, 0).train(mode)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate(model, torch.randn(10, 1, 8, 8), torch.randint(0, 10, (10,)), batch_size=4)
    assert model.training is mode
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_evaluate_counts_the_last_partial_batch_against_a_one_shot_evaluation():
    """Batch 4 over 10 images (4 + 4 + 2) gives the loss and accuracy of one pass over all 10 (by hand)."""
    from thesis_lib.training import evaluate

    model = seeded_model(TINY, 1).eval()
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(10, 1, 8, 8, generator=generator), torch.randint(0, 10, (10,), generator=generator)
    with torch.no_grad():
        outputs = model(x)
    loss, accuracy = evaluate(model, x, y, batch_size=4)
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(outputs, y)), rel=1e-5)
    assert accuracy == float((outputs.argmax(1) == y).sum()) / 10


def checkpoint_after_one_epoch(data, checkpoint):
    """The state a run killed after its first epoch left in `checkpoint`."""
    with pytest.raises(Killed):
        Trainer(
            seeded_model(TINY, 0), data, config(), hooks=[KillAfter(1)], checkpoint_path=checkpoint, progress=False
        ).fit()
    return torch.load(checkpoint, weights_only=False)


def test_a_checkpoint_written_before_a_config_field_existed_still_resumes(digits_small, tmp_path):
    """A checkpoint whose config lacks a field added later (here `compile`) resumes when this run has the
    field at its default, and is refused when it does not."""
    checkpoint = tmp_path / "checkpoint.pt"
    state = checkpoint_after_one_epoch(digits_small, checkpoint)
    del state["config"]["compile"]
    torch.save(state, checkpoint)
    resumed = Trainer(
        seeded_model(TINY, 0), digits_small, config(), hooks=[KillAfter(99)], checkpoint_path=checkpoint, progress=False
    )
    assert resumed.epoch == 1
    with pytest.raises(RuntimeError, match="different TrainConfig"):
        Trainer(
            seeded_model(TINY, 0),
            digits_small,
            config(compile="always"),
            hooks=[KillAfter(99)],
            checkpoint_path=checkpoint,
            progress=False,
        )


def test_timed_counts_the_work_and_only_the_work():
    """`training.timed` is the package's one timer: a 50 ms sleep takes at least 50 ms, and the seconds of
    two sleeps add up (nothing of the call before it is counted)."""
    import time

    from thesis_lib.training import timed

    cpu = torch.device("cpu")
    one = timed(cpu, lambda: time.sleep(0.05))
    both = timed(cpu, lambda: (time.sleep(0.05), time.sleep(0.05)))
    assert 0.05 <= one < both and both >= 0.1


@pytest.mark.parametrize(
    "net",
    [
        TINY,
        ResNetConfig(stages=3, blocks=(2, 1, 1), widths=(4, 6, 8), in_channels=1, layers_per_block=3, bottleneck=True),
    ],
)
def test_training_flops_per_image_equal_a_count_by_hand(net):
    model = seeded_model(net, 0)
    assert count_training_flops(model, (1, 8, 8)) == hand_training_flops(model, (1, 8, 8))
    irregular = build_resnet(irregular_spec())
    assert count_training_flops(irregular, (2, 8, 8)) == hand_training_flops(irregular, (2, 8, 8))


def test_counting_training_flops_leaves_gradients_statistics_and_mode_alone():
    model = seeded_model(TINY, 0).train()
    buffers = {name: value.clone() for name, value in model.named_buffers()}
    count_training_flops(model, (1, 8, 8))
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(buffers[name], value) for name, value in model.named_buffers())


def test_an_epochs_training_flops_are_the_architectures_count_times_its_images(digits_small):
    """100 images in batches of 32 (a partial last batch): every epoch trains 100 images of the one net."""
    data = digits_small.subset(100, 50, seed=0)
    trainer = Trainer(seeded_model(TINY, 0), data, config(epochs=2, milestones=(1,)), progress=False)
    history = trainer.fit()
    per_image = hand_training_flops(trainer.model, (1, 8, 8))
    assert history["train_flops"].tolist() == [100 * per_image] * 2
    assert history["hook_flops"].tolist() == [0, 0]
    assert history["steps"].tolist() == [4, 8]
    assert history["after_shape_change"].tolist() == [True, False]
    assert history["flops"].tolist() == [count_flops(trainer.model, (1, 8, 8))] * 2


def test_a_hooks_own_passes_count_as_hook_flops(digits_small):
    """A hook that runs the net on 5 images at the end of every epoch adds their forward FLOPs."""

    class Probe(TrainingHook):
        def on_epoch_end(self, trainer, record):
            with trainer.counting_hook_flops(), torch.no_grad():
                trainer.model(trainer.data.test_x[:5])

    trainer = Trainer(
        seeded_model(TINY, 0), digits_small, config(epochs=2, milestones=(1,)), hooks=[Probe()], progress=False
    )
    history = trainer.fit()
    assert history["hook_flops"].tolist() == [5 * count_flops(trainer.model, (1, 8, 8))] * 2


def test_a_checkpoint_without_flop_counts_is_refused(digits_small, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    state = checkpoint_after_one_epoch(digits_small, checkpoint)
    del state["after_shape_change"]
    torch.save(state, checkpoint)
    with pytest.raises(RuntimeError, match="before 0.3.0"):
        Trainer(seeded_model(TINY, 0), digits_small, config(), checkpoint_path=checkpoint, progress=False)
