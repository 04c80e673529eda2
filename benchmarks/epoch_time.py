"""Epoch time of the wide ResNet-32 with thesis_lib's DeviceLoader vs a torchvision-style DataLoader.

Both pipelines produce the same augmentation (random crop 32 with 4 pixels of zero padding, horizontal
flip, per-channel normalisation) on random CIFAR-shaped data. The baseline is the usual recipe: a Dataset
of uint8 HWC arrays turned into PIL images and run through torchvision transforms in DataLoader workers,
each batch copied to the device. The DeviceLoader keeps the normalised split on the device and augments
there. Reported: one training epoch with each (after a warm-up epoch), and the data pipeline alone (the
loader iterated without the model), since on a CPU the model's time hides the pipeline's.

    PYTHONPATH=. python benchmarks/epoch_time.py --device cuda --precision bf16 --n-train 50000

(``PYTHONPATH=.`` from the repository root; not needed once thesis_lib is installed.)
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms

from thesis_lib.data import DeviceLoader
from thesis_lib.models import WIDE_BASELINE, build_resnet
from thesis_lib.training import synchronize

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


def timed_epochs(epoch_runners: dict[str, Callable[[int], None]], epochs: int,
                 device: torch.device) -> dict[str, float]:
    """Median seconds per epoch of each runner, after one untimed warm-up epoch each.

    The runners take turns epoch by epoch, so that a machine whose speed drifts (other load, clock
    changes) affects all of them alike.
    """
    for run_epoch in epoch_runners.values():
        run_epoch(0)
    seconds: dict[str, list[float]] = {name: [] for name in epoch_runners}
    for epoch in range(1, epochs + 1):
        for name, run_epoch in epoch_runners.items():
            synchronize(device)
            start = time.perf_counter()
            run_epoch(epoch)
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in seconds.items()}


def make_training_epoch(make_batches: Callable[[int], Iterable], device: torch.device, bf16: bool,
                        seed: int) -> Callable[[int], None]:
    """One SGD epoch of a fresh wide ResNet-32 (thesis settings: lr 0.1, momentum 0.9, wd 5e-4)."""
    torch.manual_seed(seed)
    model = build_resnet(WIDE_BASELINE).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    def run_epoch(epoch: int) -> None:
        for x, y in make_batches(epoch):
            autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext())
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=2048, help="number of random 3x32x32 training images")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16 runs the model under torch.autocast")
    parser.add_argument("--epochs", type=int, default=1,
                        help="timed epochs per pipeline (median reported), after one warm-up epoch")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--persistent-workers", action="store_true",
                        help="keep DataLoader workers alive between epochs")
    parser.add_argument("--skip-training", action="store_true", help="time only the data pipelines")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")
    if args.n_train < 1 or args.batch_size < 1 or args.epochs < 1:
        parser.error("--n-train, --batch-size and --epochs must be positive")
    device = torch.device(args.device)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.n_train, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=args.n_train)
    mean = images.mean(axis=(0, 1, 2)) / 255
    std = images.std(axis=(0, 1, 2)) / 255

    transform = transforms.Compose([
        transforms.RandomCrop(IMAGE_SIZE, padding=CROP_PADDING),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean.tolist(), std.tolist()),
    ])
    data_loader = DataLoader(
        UInt8ImageDataset(images, labels, transform), batch_size=args.batch_size, shuffle=True,
        num_workers=args.num_workers, pin_memory=device.type == "cuda",
        persistent_workers=args.persistent_workers and args.num_workers > 0,
    )

    channel_shape = (1, 3, 1, 1)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    x = (x - torch.tensor(mean, dtype=torch.float32).view(channel_shape)) / torch.tensor(
        std, dtype=torch.float32).view(channel_shape)
    device_loader = DeviceLoader(x.to(device), torch.from_numpy(labels).to(device), batch_size=args.batch_size,
                                 padding=CROP_PADDING)

    def device_batches(epoch: int):
        device_loader.set_epoch(epoch)
        return device_loader

    def data_loader_batches(epoch: int):
        return to_device(data_loader, device)

    pipelines = {"DeviceLoader": device_batches, f"DataLoader({args.num_workers} workers)": data_loader_batches}
    print(f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch threads={torch.get_num_threads()}, n_train={args.n_train}, batch_size={args.batch_size}, "
          f"precision={args.precision}, median of {args.epochs} timed epochs after 1 warm-up")
    data_times = timed_epochs({name: make_data_epoch(batches) for name, batches in pipelines.items()},
                              args.epochs, device)
    train_times = {} if args.skip_training else timed_epochs(
        {name: make_training_epoch(batches, device, args.precision == "bf16", seed=0)
         for name, batches in pipelines.items()},
        args.epochs, device,
    )
    device_name, loader_name = pipelines
    for label, times in [("data pipeline only", data_times), ("training epoch", train_times)]:
        if times:
            print(f"{label:>20}: {device_name} {times[device_name]:.3f} s, {loader_name} {times[loader_name]:.3f} s, "
                  f"DataLoader / DeviceLoader = {times[loader_name] / times[device_name]:.2f}x")


if __name__ == "__main__":
    main()
