"""What PruneTrain costs and what it saves, per epoch (thesis chapter 5: "PruneTrain needs more time").

One run trains the same seeded ResNet twice with the same data and schedule: plainly, and with the
PruneTrain hook. It prints

1. the group-lasso overhead: median epoch time of PruneTrain before its first reconfiguration against
   plain training over the same epochs;
2. per epoch of the PruneTrain run: parameters, forward FLOPs, epoch time and seconds per training GFLOP
   (3 x forward FLOPs x images), so one sees whether a smaller network really trains faster on this device;
3. a breakdown of where the time goes: one SGD step of the dense network without and with the lasso term
   and the lasso term alone (interleaved, so that load on a shared machine hits all three alike), and the
   reconfigurations (thresholding, channel union, surgery, optimizer carry, FLOP count: the hook time of
   the reconfiguring epochs);
4. the total: training time (epochs + hooks) and final test accuracy of plain training, PruneTrain, and with
   `--batch-adaptation` PruneTrain growing its batch at every reconfiguration (section 6.1), with each
   method's accuracy loss against plain training, since a time saving counts only at a loss of at most one
   point (use real images, `--data digits`, for the accuracies to mean anything).

Example: python benchmarks/prunetrain_overhead.py --device cpu --epochs 6 --interval 2 --train-size 1024
"""

from __future__ import annotations

import argparse
import statistics

import pandas as pd
import torch
from benchmark_args import benchmark_parser, save_results

from thesis_lib.data import load_dataset, random_dataset
from thesis_lib.methods.batchsize import BatchAdaptation
from thesis_lib.methods.prunetrain import PruneTrain, group_lasso, training_flops_summary
from thesis_lib.models import ResNetConfig, count_flops
from thesis_lib.training import TrainConfig, Trainer, seeded_model, timed, training_flops


def step_seconds(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lambda_: float, device: torch.device, repeats: int
) -> dict[str, float]:
    """Median seconds of one SGD step without and with the lasso term, and of the lasso term alone.

    The three are interleaved, so that a load change on a shared machine hits all of them alike; lr = 0
    keeps the weights (and so the work) fixed.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)

    def step(with_lasso: bool) -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        if with_lasso:
            loss = loss + lambda_ * group_lasso(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def lasso_alone() -> None:
        optimizer.zero_grad(set_to_none=True)
        (lambda_ * group_lasso(model)).backward()

    times: dict[str, list[float]] = {"plain": [], "with_lasso": [], "lasso_alone": []}
    for repeat in range(repeats + 1):
        samples = {
            "plain": timed(device, lambda: step(False)),
            "with_lasso": timed(device, lambda: step(True)),
            "lasso_alone": timed(device, lasso_alone),
        }
        if repeat > 0:  # the first round warms up
            for key, value in samples.items():
                times[key].append(value)
    optimizer.zero_grad(set_to_none=True)
    return {key: statistics.median(values) for key, values in times.items()}


def parse_arguments() -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument(
        "--data",
        choices=("random", "digits"),
        default="random",
        help="CIFAR-shaped random images, or scikit-learn's 8x8 digits",
    )
    parser.add_argument("--train-size", type=int, default=2048, help="images per epoch (random data only)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--interval", type=int, default=2, help="reconfigure every this many epochs")
    parser.add_argument("--lasso-ratio", type=float, default=0.5)
    parser.add_argument("--threshold", type=float, default=1e-2)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--blocks", type=int, default=5, help="blocks per stage (N)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=20, help="timed steps of the interleaved step benchmark")
    parser.add_argument(
        "--batch-adaptation",
        action="store_true",
        help="also train PruneTrain with batch adaptation (rule probe, linear lr scaling)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    if args.epochs <= args.interval:
        raise SystemExit(f"--epochs ({args.epochs}) must exceed --interval ({args.interval}) to see a reconfiguration")
    device = torch.device(args.device)
    data = (
        random_dataset(args.train_size, 256, (3, 32, 32), seed=args.seed, name="random_cifar")
        if args.data == "random"
        else load_dataset("digits")
    )
    model_config = ResNetConfig(
        stages=len(args.widths),
        blocks=(args.blocks,) * len(args.widths),
        widths=tuple(args.widths),
        in_channels=data.in_channels,
        num_classes=data.num_classes,
    )
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        schedule="constant",
        augment=args.data == "digits",
        seed=args.seed,
    )
    n_train = len(data.train_y)
    steps = -(-n_train // args.batch_size)
    print(
        f"device {device}, data {data.name} ({n_train} images, {steps} steps per epoch), ResNet "
        f"widths {args.widths}, {args.blocks} blocks per stage; lasso ratio {args.lasso_ratio}, threshold "
        f"{args.threshold}, interval {args.interval}"
    )

    plain = Trainer(
        seeded_model(model_config, args.seed), data, config, device=device, progress=False, description="plain"
    ).fit()
    hook = PruneTrain(args.lasso_ratio, args.threshold, args.interval)
    pruned_trainer = Trainer(
        seeded_model(model_config, args.seed),
        data,
        config,
        hooks=[hook],
        device=device,
        progress=False,
        description="prunetrain",
    )
    pruned = pruned_trainer.fit()

    before = slice(0, args.interval)
    plain_time = statistics.median(plain["epoch_time"].iloc[before])
    lasso_time = statistics.median(pruned["epoch_time"].iloc[before])
    print(
        f"\n1. group-lasso overhead before the first reconfiguration (median of epochs 1..{args.interval}): "
        f"plain {plain_time:.3f} s, PruneTrain {lasso_time:.3f} s, overhead "
        f"{100 * (lasso_time / plain_time - 1):+.1f}%"
    )

    table = pd.DataFrame(
        {
            "epoch": pruned["epoch"],
            "params": pruned["params"],
            "MFLOPs": pruned["flops"] / 1e6,
            "epoch_time": pruned["epoch_time"],
            "plain_time": plain["epoch_time"],
            "s_per_train_GFLOP": pruned["epoch_time"] / (3 * n_train * pruned["flops"] / 1e9),
            "reconfigured": pruned["reconfigured"],
            "hook_time": pruned["hook_time"],
        }
    )
    print("\n2. PruneTrain per epoch (params / FLOPs of the model trained in that epoch):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    dense_model = seeded_model(model_config, args.seed).to(device)
    dense_flops = count_flops(dense_model, tuple(data.train_x.shape[1:]))
    x, y = data.train_x[: args.batch_size].to(device), data.train_y[: args.batch_size].to(device)
    steps_timed = step_seconds(dense_model, x, y, hook.lambda_, device, repeats=args.repeats)
    reconfiguring = pruned["reconfigured"]
    reconfigure_time = pruned.loc[reconfiguring, "hook_time"]
    per_epoch_hook = pruned.loc[~reconfiguring, "hook_time"]
    print(f"\n3. where the time goes (dense network, per epoch of {steps} steps):")
    plain_step, lasso_step = steps_timed["plain"], steps_timed["lasso_alone"]
    print(
        f"   forward + backward + SGD, one step (interleaved median of {args.repeats}): {1e3 * plain_step:.2f} ms "
        f"-> {steps * plain_step:.3f} s per epoch (plain epochs measured: median {plain_time:.3f} s)"
    )
    print(
        f"   the same step with the lasso term: {1e3 * steps_timed['with_lasso']:.2f} ms, overhead "
        f"{100 * (steps_timed['with_lasso'] / plain_step - 1):+.1f}%"
    )
    print(
        f"   group-lasso term alone, forward + backward: {1e3 * lasso_step:.2f} ms per step "
        f"({100 * lasso_step / plain_step:.1f}% of a plain step)"
    )
    print(f"   end-of-epoch bookkeeping without reconfiguring: {per_epoch_hook.median():.4f} s (median)")
    if len(reconfigure_time):
        print(
            f"   reconfigurations: {len(reconfigure_time)} x, {reconfigure_time.mean():.3f} s each on average "
            f"({100 * reconfigure_time.sum() / pruned['epoch_time'].sum():.1f}% of PruneTrain's training time)"
        )
    else:
        print("   reconfigurations: none removed a channel (raise --lasso-ratio / --threshold or train longer)")

    summary = training_flops_summary(pruned)
    print(
        f"\ntraining FLOPs removed {100 * summary['training_flops_removed']:.1f}%, inference FLOPs removed "
        f"{100 * summary['inference_flops_removed']:.1f}% (final {summary['final_inference_flops'] / 1e6:.2f} "
        f"MFLOPs vs dense {dense_flops / 1e6:.2f}); total time plain {plain['epoch_time'].sum():.2f} s, "
        f"PruneTrain {pruned['epoch_time'].sum() + pruned['hook_time'].sum():.2f} s (incl. hooks); "
        f"final test accuracy plain {plain['test_acc'].iloc[-1]:.3f}, PruneTrain {pruned['test_acc'].iloc[-1]:.3f}"
    )

    totals = {"plain": plain, "PruneTrain": pruned}
    if args.batch_adaptation:
        adaptation = BatchAdaptation(scaling="linear", rule="probe", max_batch=n_train)
        adapted_hook = PruneTrain(args.lasso_ratio, args.threshold, args.interval)
        totals["PruneTrain + batch adaptation"] = Trainer(
            seeded_model(model_config, args.seed),
            data,
            config,
            hooks=[adapted_hook, adaptation],
            device=device,
            progress=False,
            description="prunetrain+batch",
        ).fit()
    print(f"\n4. totals (training + hooks) on {device}:")
    plain_total, plain_acc = plain["epoch_time"].sum() + plain["hook_time"].sum(), plain["test_acc"].iloc[-1]
    rows = []
    for name, history in totals.items():
        total = history["epoch_time"].sum() + history["hook_time"].sum()
        loss = 100 * (plain_acc - history["test_acc"].iloc[-1])
        rows.append(
            {
                "training": name,
                "seconds": total,
                "times_plain": total / plain_total,
                "final_acc": history["test_acc"].iloc[-1],
                "training_flops": training_flops(history),
                "last_batch": int(history["batch_size"].iloc[-1]),
            }
        )
        print(
            f"   {name:>30}: {total:8.2f} s ({total / plain_total:.2f}x plain), final accuracy "
            f"{history['test_acc'].iloc[-1]:.3f} (loss {loss:+.1f} points: {'within' if loss <= 1 else 'beyond'} "
            f"the 1-point bar), last batch {int(history['batch_size'].iloc[-1])}"
        )
    save_results(rows, "prunetrain_overhead", args.device)


if __name__ == "__main__":
    main()
