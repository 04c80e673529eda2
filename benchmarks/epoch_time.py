"""Epoch time of the wide ResNet-32: the Trainer's fast-path settings, and DeviceLoader vs DataLoader.

Part 1, the settings (issue 16): thesis_lib's own Trainer over every combination of `--compile` (eager /
torch.compile), `--precision` (fp32 / bf16), `--channels-last` (on / off; CUDA only) and `--batch-size`,
on the device-resident loader. Reported per variant: the first epoch (with `torch.compile` it includes
the compilation), the median of the later ones, and the data pipeline's share of an epoch. With
`--recompile`, every compiled variant is then pruned to 3/4 of its channels (as a PruneTrain
reconfiguration would) and trained two more epochs: the first of them minus the second is what one
recompilation costs (about zero for eager variants), to set against what compiling saves per epoch.

Part 2, the loaders: both pipelines produce the same augmentation (random crop 32 with 4 pixels of zero padding, horizontal
flip, per-channel normalisation) on random CIFAR-shaped data. The baseline is the usual recipe: a Dataset
of uint8 HWC arrays turned into PIL images and run through torchvision transforms in DataLoader workers,
each batch copied to the device. The DeviceLoader keeps the normalised split on the device and augments
there. Reported: one training epoch with each (after a warm-up epoch), and the data pipeline alone (the
loader iterated without the model), since on a CPU the model's time hides the pipeline's.

    PYTHONPATH=. python benchmarks/epoch_time.py --device cuda --precision fp32 bf16 --compile off always \
        --channels-last on off --batch-size 128 512 --n-train 50000 --recompile --out epoch_time.json

(``PYTHONPATH=.`` from the repository root; not needed once thesis_lib is installed.)
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from benchmark_args import benchmark_parser, save_results
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms

from thesis_lib.data import Dataset, DeviceLoader
from thesis_lib.models import WIDE_BASELINE, build_resnet
from thesis_lib.surgery import narrowed
from thesis_lib.training import TrainConfig, Trainer, TrainingHook, seeded_model, timed

IMAGE_SIZE = 32
CROP_PADDING = 4


class UInt8ImageDataset(torch.utils.data.Dataset):
    """Images stored as uint8 HWC arrays, returned as PIL images through a transform (like torchvision's CIFAR10)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def to_device(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device):
    """Moves each batch to the device (a no-op for batches that are already there)."""
    for x, y in batches:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def timed_epochs(
    epoch_runners: dict[str, Callable[[int], None]], epochs: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per epoch of each runner, after one untimed warm-up epoch each.

    The runners take turns epoch by epoch, so that a machine whose speed drifts (other load, clock
    changes) affects all of them alike.
    """
    for run_epoch in epoch_runners.values():
        run_epoch(0)
    seconds: dict[str, list[float]] = {name: [] for name in epoch_runners}
    for epoch in range(1, epochs + 1):
        for name, run_epoch in epoch_runners.items():
            seconds[name].append(timed(device, lambda run_epoch=run_epoch, epoch=epoch: run_epoch(epoch)))
    return {name: float(np.median(values)) for name, values in seconds.items()}


def make_training_epoch(
    make_batches: Callable[[int], Iterable], device: torch.device, bf16: bool, seed: int
) -> Callable[[int], None]:
    """One SGD epoch of a fresh wide ResNet-32 (thesis settings: lr 0.1, momentum 0.9, wd 5e-4)."""
    torch.manual_seed(seed)
    model = build_resnet(WIDE_BASELINE).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    def run_epoch(epoch: int) -> None:
        for x, y in make_batches(epoch):
            autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with autocast:
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run_epoch


def make_data_epoch(make_batches: Callable[[int], Iterable]) -> Callable[[int], None]:
    """Iterates one epoch of batches and does nothing with them."""

    def run_epoch(epoch: int) -> None:
        for _ in make_batches(epoch):
            pass

    return run_epoch


class PruneOnce(TrainingHook):
    """Replaces the model by `narrowed(model, 0.75)` at the end of epoch `epoch`, like a reconfiguration."""

    changes_shapes = True

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        if record["epoch"] == self.epoch:
            smaller = narrowed(trainer.model, 0.75)
            trainer.replace_model(smaller, trainer.make_optimizer(smaller))


def trainer_variant(
    data: Dataset,
    device: torch.device,
    epochs: int,
    batch_size: int,
    precision: str,
    channels_last: bool,
    compile_mode: str,
    recompile: bool,
) -> dict[str, object]:
    """Epoch times of the Trainer on the wide ResNet-32 with one combination of the fast-path settings."""
    before = epochs + 1
    config = TrainConfig(
        epochs=before + (2 if recompile else 0),
        batch_size=batch_size,
        schedule="constant",
        precision=precision,
        channels_last=channels_last,
        compile=compile_mode,
    )
    trainer = Trainer(
        seeded_model(WIDE_BASELINE, 0),
        data,
        config,
        device=device,
        progress=False,
        hooks=[PruneOnce(before)] if recompile else [],
    )
    times = trainer.fit()["epoch_time"].tolist()
    result: dict[str, object] = {
        "batch_size": batch_size,
        "precision": precision,
        "channels_last": channels_last,
        "compile": compile_mode,
        "first_epoch_s": times[0],
        "epoch_s": statistics.median(times[1:before]),
        "epoch_times_s": times,
    }
    if recompile:
        result.update(recompile_s=times[before] - times[before + 1], pruned_epoch_s=times[before + 1])
    return result


def fast_path_variants(
    args: argparse.Namespace, device: torch.device, x: torch.Tensor, labels: torch.Tensor
) -> list[dict[str, object]]:
    """Part 1: every combination of the settings asked for, timed with the Trainer, and the loader share."""
    data = Dataset(
        "random_cifar",
        x,
        labels,
        x[:1000],
        labels[:1000],
        num_classes=10,
        in_channels=3,
        image_size=IMAGE_SIZE,
        channel_mean=(0.0,) * 3,
        channel_std=(1.0,) * 3,
    )
    layouts = [value == "on" for value in args.channels_last] if device.type == "cuda" else [False]
    results = []
    for batch_size, precision, channels_last, compile_mode in itertools.product(
        args.batch_size, args.precision, layouts, args.compile
    ):
        result = trainer_variant(
            data, device, args.epochs, batch_size, precision, channels_last, compile_mode, args.recompile
        )
        loader = DeviceLoader(
            data.train_x.to(device), data.train_y.to(device), batch_size=batch_size, padding=CROP_PADDING
        )
        loader_s = timed_epochs({"loader": make_data_epoch(lambda epoch, loader=loader: loader)}, args.epochs, device)[
            "loader"
        ]
        result.update(loader_s=loader_s, loader_share=loader_s / result["epoch_s"])
        results.append(result)
        recompile = f", one recompile {result['recompile_s']:.2f} s" if "recompile_s" in result else ""
        print(
            f"batch {batch_size:4d} {precision} channels_last={channels_last!s:5} compile={compile_mode:6}: "
            f"epoch {result['epoch_s']:.3f} s (first {result['first_epoch_s']:.2f} s), loader "
            f"{100 * result['loader_share']:.1f}% of it{recompile}",
            flush=True,
        )
    return results


def loader_comparison(
    args: argparse.Namespace,
    device: torch.device,
    images: np.ndarray,
    labels: np.ndarray,
    x: torch.Tensor,
    mean: np.ndarray,
    std: np.ndarray,
) -> dict[str, object]:
    """Part 2: the DeviceLoader against a torchvision DataLoader, data pipeline alone and training epochs."""
    transform = transforms.Compose(
        [
            transforms.RandomCrop(IMAGE_SIZE, padding=CROP_PADDING),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean.tolist(), std.tolist()),
        ]
    )
    batch_size = args.batch_size[0]
    data_loader = DataLoader(
        UInt8ImageDataset(images, labels, transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=args.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.persistent_workers and args.num_workers > 0,
    )

    device_loader = DeviceLoader(
        x.to(device), torch.from_numpy(labels).to(device), batch_size=batch_size, padding=CROP_PADDING
    )

    def device_batches(epoch: int):
        device_loader.set_epoch(epoch)
        return device_loader

    def data_loader_batches(epoch: int):
        return to_device(data_loader, device)

    pipelines = {"DeviceLoader": device_batches, f"DataLoader({args.num_workers} workers)": data_loader_batches}
    print(f"loaders at batch {batch_size}, {args.precision[0]}:")
    data_times = timed_epochs(
        {name: make_data_epoch(batches) for name, batches in pipelines.items()}, args.epochs, device
    )
    train_times = (
        {}
        if args.skip_training
        else timed_epochs(
            {
                name: make_training_epoch(batches, device, args.precision[0] == "bf16", seed=0)
                for name, batches in pipelines.items()
            },
            args.epochs,
            device,
        )
    )
    device_loader_name, loader_name = pipelines
    for label, times in [("data pipeline only", data_times), ("training epoch", train_times)]:
        if times:
            print(
                f"{label:>20}: {device_loader_name} {times[device_loader_name]:.3f} s, {loader_name} "
                f"{times[loader_name]:.3f} s, DataLoader / DeviceLoader = "
                f"{times[loader_name] / times[device_loader_name]:.2f}x"
            )
    return {"batch_size": batch_size, "data_pipeline_s": data_times, "training_epoch_s": train_times}


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[128])
    parser.add_argument("--n-train", type=int, default=2048, help="number of random 3x32x32 training images")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        nargs="+",
        default=["fp32"],
        help="bf16 runs the model under torch.autocast",
    )
    parser.add_argument(
        "--compile",
        choices=["off", "always"],
        nargs="+",
        default=["off"],
        help="TrainConfig.compile of the Trainer variants",
    )
    parser.add_argument(
        "--channels-last",
        choices=["on", "off"],
        nargs="+",
        default=["on"],
        help="memory format of the Trainer variants (CUDA only; ignored on the CPU)",
    )
    parser.add_argument(
        "--recompile", action="store_true", help="also time one recompilation after pruning each compiled variant"
    )
    parser.add_argument("--skip-variants", action="store_true", help="only part 2, the loader comparison")
    parser.add_argument("--skip-loaders", action="store_true", help="only part 1, the Trainer variants")
    parser.add_argument("--out", type=Path, help="write every number as JSON to this file")
    parser.add_argument(
        "--epochs", type=int, default=1, help="timed epochs per pipeline (median reported), after one warm-up epoch"
    )
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument(
        "--persistent-workers", action="store_true", help="keep DataLoader workers alive between epochs"
    )
    parser.add_argument("--skip-training", action="store_true", help="time only the data pipelines")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")
    if args.n_train < 1 or min(args.batch_size) < 1 or args.epochs < 1:
        parser.error("--n-train, --batch-size and --epochs must be positive")
    device = torch.device(args.device)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.n_train, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=args.n_train)
    mean = images.mean(axis=(0, 1, 2)) / 255
    std = images.std(axis=(0, 1, 2)) / 255

    channel_shape = (1, 3, 1, 1)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    x = (x - torch.tensor(mean, dtype=torch.float32).view(channel_shape)) / torch.tensor(std, dtype=torch.float32).view(
        channel_shape
    )
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device={device} ({device_name}), torch threads={torch.get_num_threads()}, n_train={args.n_train}, "
        f"median of {args.epochs} timed epochs after 1 warm-up"
    )
    report: dict[str, object] = {"device": device_name, "torch": torch.__version__, "n_train": args.n_train}
    if not args.skip_variants:
        report["variants"] = fast_path_variants(args, device, x, torch.from_numpy(labels))
    if not args.skip_loaders:
        report["loaders"] = loader_comparison(args, device, images, labels, x, mean, std)
    if "variants" in report:
        save_results(report["variants"], "epoch_time", args.device)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
