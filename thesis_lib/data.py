"""Datasets as normalised tensors, and a loader that keeps a whole split on the training device.

Every dataset is loaded into memory once, converted to float32 ``(N, C, H, W)`` and normalised per channel
with the training split's mean and standard deviation. The :class:`DeviceLoader` then draws shuffled,
augmented mini-batches (random crop with zero padding and horizontal flip, the usual CIFAR augmentation of
section 3.1.4) directly on the device, so that no DataLoader worker processes or host-to-device copies
are needed per batch. Its random numbers depend only on ``(seed, epoch)``, so a resumed run sees the same
batches as an uninterrupted one.

Where datasets are found: the data directory (argument ``root``, else the environment variable
``THESIS_DATA``, else ``~/.cache/thesis_lib``); Fashion-MNIST also in ``/usr/share/datasets/fashion-mnist``
(Debian package ``dataset-fashion-mnist``). With ``download=True`` (or ``THESIS_DOWNLOAD=1``, which the
command line's ``--download`` sets) torchvision downloads into the data directory.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    import torchvision

DATA_DIR_ENV = "THESIS_DATA"
DOWNLOAD_ENV = "THESIS_DOWNLOAD"
DEFAULT_DATA_DIR = Path("~/.cache/thesis_lib")
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@dataclasses.dataclass
class Dataset:
    """One image classification dataset held in memory, normalised with the training split's statistics.

    ``channel_mean`` and ``channel_std`` are the statistics that were subtracted and divided out (in the
    units of the raw images scaled to [0, 1]); ``raw = x * std + mean`` recovers the scaled images.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    in_channels: int
    image_size: int
    channel_mean: tuple[float, ...]
    channel_std: tuple[float, ...]

    def to(self, device: torch.device | str) -> Dataset:
        """A copy whose four tensors live on ``device`` (tensors already there are shared, as ``Tensor.to`` does)."""
        return dataclasses.replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )

    def subset(self, n_train: int, n_test: int, seed: int = 0) -> Dataset:
        """A random but deterministic subset of ``n_train`` training and ``n_test`` test samples.

        The normalisation of the full dataset is kept (it is not recomputed on the subset), so a subset's
        images are directly comparable to the full set's.
        """
        if not 0 < n_train <= len(self.train_y) or not 0 < n_test <= len(self.test_y):
            raise ValueError(
                f"subset sizes must be in 1..{len(self.train_y)} (train) and 1..{len(self.test_y)} (test) "
                f"for {self.name!r}; got n_train={n_train}, n_test={n_test}"
            )
        generator = torch.Generator().manual_seed(seed)
        train_index = torch.randperm(len(self.train_y), generator=generator)[:n_train].to(self.train_y.device)
        test_index = torch.randperm(len(self.test_y), generator=generator)[:n_test].to(self.test_y.device)
        return dataclasses.replace(
            self,
            train_x=self.train_x[train_index],
            train_y=self.train_y[train_index],
            test_x=self.test_x[test_index],
            test_y=self.test_y[test_index],
        )

    def validation_split(self, fraction: float = 0.2, seed: int = 0) -> Dataset:
        """The training split divided in two: a copy that trains on the rest and evaluates on a held-out
        ``fraction`` of the training images, for choosing settings without looking at the test set.

        The test split is not part of the result (its ``test_*`` tensors are the validation images), and
        the normalisation of the full training split is kept, so settings chosen here transfer to runs on
        the whole training split. The held-out images are a fixed permutation (``seed``) of the training split.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"the validation fraction must lie strictly between 0 and 1, got {fraction}")
        n_validation = round(fraction * len(self.train_y))
        if not 0 < n_validation < len(self.train_y):
            raise ValueError(
                f"a validation fraction of {fraction} of {len(self.train_y)} training images leaves an empty "
                "split; use a fraction that keeps at least one image on each side"
            )
        generator = torch.Generator().manual_seed(seed)
        permutation = torch.randperm(len(self.train_y), generator=generator).to(self.train_y.device)
        validation, rest = permutation[:n_validation], permutation[n_validation:]
        return dataclasses.replace(
            self,
            name=f"{self.name} (validation split)",
            train_x=self.train_x[rest],
            train_y=self.train_y[rest],
            test_x=self.train_x[validation],
            test_y=self.train_y[validation],
        )


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """The data directory: ``root`` if given, else ``$THESIS_DATA`` when set and not empty, else
    ``~/.cache/thesis_lib``."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


def download_wanted(download: bool | None = None) -> bool:
    """``download`` if given, else whether ``$THESIS_DOWNLOAD`` is set to 1 (the command line's --download)."""
    return os.environ.get(DOWNLOAD_ENV) == "1" if download is None else download


def _how_to_get(what: str) -> str:
    """The end of a missing-dataset message: what the library and the command line can do about it."""
    return (
        f"{what}; or let torchvision download it on a machine with internet access: download=True in "
        f"Python, --download on the command line (`python -m thesis_lib run|notebooks ... --download`) or "
        f"{DOWNLOAD_ENV}=1. The data directory is {DATA_DIR_ENV} (now {data_dir()}); on the command line: "
        f"`{DATA_DIR_ENV}=/path/to/data python -m thesis_lib ...`."
    )


def _normalised_dataset(
    name: str,
    train_images: torch.Tensor,
    train_y: torch.Tensor,
    test_images: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
) -> Dataset:
    """Builds a :class:`Dataset` from float images in [0, 1], normalising with the training split's statistics."""
    channel_mean = train_images.mean(dim=(0, 2, 3), dtype=torch.float64)
    channel_std = train_images.to(torch.float64).std(dim=(0, 2, 3), correction=0)
    if bool((channel_std == 0).any()):
        raise ValueError(f"{name}: a channel of the training images is constant; it cannot be normalised")
    shape = (1, -1, 1, 1)
    mean32, std32 = channel_mean.float().view(shape), channel_std.float().view(shape)
    return Dataset(
        name=name,
        train_x=((train_images - mean32) / std32).contiguous(),
        train_y=train_y.to(torch.int64),
        test_x=((test_images - mean32) / std32).contiguous(),
        test_y=test_y.to(torch.int64),
        num_classes=num_classes,
        in_channels=train_images.shape[1],
        image_size=train_images.shape[2],
        channel_mean=tuple(channel_mean.tolist()),
        channel_std=tuple(channel_std.tolist()),
    )


def random_dataset(
    n_train: int,
    n_test: int,
    input_size: tuple[int, int, int],
    num_classes: int = 10,
    seed: int = 0,
    name: str = "random",
) -> Dataset:
    """Standard-normal images of `input_size` (channels, height, width) with uniform random labels: for timing
    and calibration, where only the shapes matter (the full profile's CIFAR may not be on disk)."""
    channels, size, _ = input_size
    generator = torch.Generator().manual_seed(seed)
    return Dataset(
        name,
        torch.randn(n_train, *input_size, generator=generator),
        torch.randint(0, num_classes, (n_train,), generator=generator),
        torch.randn(n_test, *input_size, generator=generator),
        torch.randint(0, num_classes, (n_test,), generator=generator),
        num_classes=num_classes,
        in_channels=channels,
        image_size=size,
        channel_mean=(0.0,) * channels,
        channel_std=(1.0,) * channels,
    )


def digits() -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, values 0..16, 10 classes), split 80/20.

    The split is a fixed permutation (seed 0), so every run and every machine sees the same test set.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().div(16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target)
    permutation = torch.randperm(len(labels), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    n_test = round(DIGITS_TEST_FRACTION * len(labels))
    test_index, train_index = permutation[:n_test], permutation[n_test:]
    return _normalised_dataset(
        "digits", images[train_index], labels[train_index], images[test_index], labels[test_index], num_classes=10
    )


IDX_UNSIGNED_BYTE = 0x08
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file of unsigned bytes (the MNIST format), gzipped if the name ends in ``.gz``.

    Format: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, one big-endian
    uint32 per dimension, then the data in row-major order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        content = stream.read()
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] != IDX_UNSIGNED_BYTE:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (header {content[:4].hex()})")
    ndim = content[3]
    header_size = 4 + 4 * ndim
    shape = tuple(int(size) for size in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(content, dtype=np.uint8, offset=header_size)
    if data.size != math.prod(shape):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {data.size} values")
    return data.reshape(shape)


def _find_idx_files(directory: Path) -> dict[str, Path] | None:
    """The four Fashion-MNIST files in ``directory`` (plain or ``.gz``), or None if any is missing."""
    found = {}
    for key, stem in FASHION_MNIST_FILES.items():
        candidates = [directory / stem, directory / f"{stem}.gz"]
        existing = [candidate for candidate in candidates if candidate.is_file()]
        if not existing:
            return None
        found[key] = existing[0]
    return found


def _fashion_mnist_images(
    root: str | os.PathLike | None, download: bool | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fashion-MNIST's training images, labels, test images and labels, images scaled to [0, 1]."""
    download = download_wanted(download)
    directory = data_dir(root)
    torchvision_raw = directory / "FashionMNIST" / "raw"
    places = [directory / "fashion-mnist", torchvision_raw, DEBIAN_FASHION_MNIST_DIR]
    files = next((found for found in map(_find_idx_files, places) if found is not None), None)
    if files is None and download:
        directory.mkdir(parents=True, exist_ok=True)
        from torchvision.datasets import FashionMNIST  # imported only here: it adds 3 s to every process start

        FashionMNIST(str(directory), train=True, download=True)
        files = _find_idx_files(torchvision_raw)
    if files is None:
        raise FileNotFoundError(
            "Fashion-MNIST not found. Looked for train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), "
            "t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz) in: "
            + ", ".join(str(place) for place in places)
            + ". "
            + _how_to_get(
                "Get it with `sudo apt install dataset-fashion-mnist`, or put the files into one "
                "of the first two folders"
            )
        )
    arrays = {key: read_idx(path) for key, path in files.items()}

    def images(key: str) -> torch.Tensor:
        return torch.from_numpy(arrays[key].copy()).float().div(255.0).unsqueeze(1)

    return (
        images("train_images"),
        torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        images("test_images"),
        torch.from_numpy(arrays["test_labels"].astype(np.int64)),
    )


def fashion_mnist(root: str | os.PathLike | None = None, download: bool | None = None) -> Dataset:
    """Fashion-MNIST (60000 + 10000 grey 28x28 images, 10 classes) from the IDX files.

    Looked for in ``<data dir>/fashion-mnist``, torchvision's layout ``<data dir>/FashionMNIST/raw`` and
    ``/usr/share/datasets/fashion-mnist``; with ``download=True`` torchvision fetches it into the data dir.
    """
    train_x, train_y, test_x, test_y = _fashion_mnist_images(root, download)
    return _normalised_dataset("fashion_mnist", train_x, train_y, test_x, test_y, num_classes=10)


def fashion_mnist_14(root: str | os.PathLike | None = None, download: bool | None = None) -> Dataset:
    """Fashion-MNIST with every image averaged over 2x2 pixels to 14x14 (found as `fashion_mnist`).

    A quarter of the FLOPs per image: the small profiles' chapter 8 can train on four times the images
    within the same time, which matters more for telling nets of different capacity apart than the
    resolution (`ch08_evaluation` has the numbers).
    """
    train_x, train_y, test_x, test_y = _fashion_mnist_images(root, download)
    return _normalised_dataset(
        "fashion_mnist_14", F.avg_pool2d(train_x, 2), train_y, F.avg_pool2d(test_x, 2), test_y, num_classes=10
    )


def _torchvision_cifar(
    name: str,
    dataset_class: type[torchvision.datasets.CIFAR10],
    num_classes: int,
    root: str | os.PathLike | None,
    download: bool | None,
) -> Dataset:
    """Loads CIFAR-10 or CIFAR-100 through torchvision (its python-pickle format) and converts it once."""
    download = download_wanted(download)
    directory = data_dir(root)
    folder = directory / dataset_class.base_folder
    if not download and not folder.is_dir():
        raise FileNotFoundError(
            f"{name} not found: looked for the folder {folder} (torchvision's {dataset_class.__name__} layout). "
            + _how_to_get(
                f"Extract {dataset_class.filename} from {dataset_class.url} into {directory}, or point "
                f"{DATA_DIR_ENV} (root= in Python) at a directory that holds it"
            )
        )
    if download:
        directory.mkdir(parents=True, exist_ok=True)
    try:
        splits = [dataset_class(str(directory), train=train, download=download) for train in (True, False)]
    except RuntimeError as error:
        raise RuntimeError(
            f"{name}: the files in {folder} are incomplete or fail torchvision's MD5 check ({error}). "
            f"Delete {folder} and download it again (download=True, or --download on the command line)."
        ) from error

    def images(split: torchvision.datasets.CIFAR10) -> torch.Tensor:
        return torch.from_numpy(split.data).permute(0, 3, 1, 2).float().div(255.0)

    train, test = splits
    return _normalised_dataset(
        name,
        images(train),
        torch.tensor(train.targets),
        images(test),
        torch.tensor(test.targets),
        num_classes=num_classes,
    )


def cifar10(root: str | os.PathLike | None = None, download: bool | None = None) -> Dataset:
    """CIFAR-10 (50000 + 10000 colour 32x32 images, 10 classes) from ``<data dir>/cifar-10-batches-py``."""
    from torchvision.datasets import CIFAR10

    return _torchvision_cifar("cifar10", CIFAR10, 10, root, download)


def cifar100(root: str | os.PathLike | None = None, download: bool | None = None) -> Dataset:
    """CIFAR-100 (50000 + 10000 colour 32x32 images, 100 fine classes) from ``<data dir>/cifar-100-python``."""
    from torchvision.datasets import CIFAR100

    return _torchvision_cifar("cifar100", CIFAR100, 100, root, download)


# (channels, image size, classes) of every dataset, known without loading it.
DATASET_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (1, 8, 10),
    "fashion_mnist": (1, 28, 10),
    "fashion_mnist_14": (1, 14, 10),
    "cifar10": (3, 32, 10),
    "cifar100": (3, 32, 100),
}
# (training images, test images) of every dataset's whole splits, known without loading it (digits: the
# fixed 80/20 split of its 1,797 images).
DATASET_SIZES: dict[str, tuple[int, int]] = {
    "digits": (1438, 359),
    "fashion_mnist": (60000, 10000),
    "fashion_mnist_14": (60000, 10000),
    "cifar10": (50000, 10000),
    "cifar100": (50000, 10000),
}


DATASETS: dict[str, Callable[[str | os.PathLike | None, bool | None], Dataset]] = {
    "digits": lambda root, download: digits(),
    "fashion_mnist": fashion_mnist,
    "fashion_mnist_14": fashion_mnist_14,
    "cifar10": cifar10,
    "cifar100": cifar100,
}


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool | None = None) -> Dataset:
    """Loads a dataset by name: ``digits``, ``fashion_mnist``, ``fashion_mnist_14``, ``cifar10`` or ``cifar100``;
    ``download=None`` downloads a missing one only where ``THESIS_DOWNLOAD=1``."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[name](root, download)


class DeviceLoader:
    """Mini-batches of one split that lives, whole, on the device of ``x``.

    Per batch, on that device: samples are taken in a random order (``shuffle``), then (``augment``) each
    is cropped at a random offset from its zero-padded version (``padding`` pixels on every side; zero is
    the channel mean, as the images are normalised) and mirrored horizontally with probability 1/2
    (``flip``). The order and the augmentation draws of an epoch come from a CPU ``torch.Generator`` seeded
    only by ``(seed, epoch)``: call :meth:`set_epoch` before each epoch; the same epoch always gives the same
    batches, also after a resume. The draws are made per sample, not per batch, so changing
    ``batch_size`` between epochs (batch adaptation, section 6.1) changes only how an epoch is cut.

    Sharded for DDP (``world_size`` > 1): ``batch_size`` is the global batch, which must divide by
    ``world_size``. Every rank draws the same order and augmentation and takes its contiguous share of
    each global batch, samples ``rank * b / W`` to ``(rank + 1) * b / W`` of a batch of b. The shares are
    equal, so DDP's average of the ranks' mean gradients is the mean over the whole batch. A last partial
    batch is cut into W equal shares as well; the fewer than W samples left over sit that epoch out (the
    whole partial batch when it has fewer than W samples). With ``world_size`` 1 nothing is left out.

    For evaluation use :func:`evaluation_loader` (no shuffling, no augmentation).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        augment: bool = True,
        padding: int = 4,
        flip: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if x.ndim != 4:
            raise ValueError(f"x must be a batch of images (N, C, H, W); got shape {tuple(x.shape)}")
        if y.shape != (len(x),):
            raise ValueError(f"y must hold one label per image, shape ({len(x)},); got {tuple(y.shape)}")
        if y.device != x.device:
            raise ValueError(f"x and y must be on the same device; got {x.device} and {y.device}")
        if padding < 0:
            raise ValueError(f"padding must be >= 0; got {padding}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size; got rank {rank} of world size {world_size}")
        self.rank = rank
        self.world_size = world_size
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.padding = padding
        self.flip = flip
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def batch_size(self) -> int:
        """Samples per batch; may be changed between epochs."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"batch_size must be >= 1; got {value}")
        if value % self.world_size:
            raise ValueError(
                f"the global batch size {value} does not divide by the world size {self.world_size}: "
                f"every rank takes an equal share; use a multiple of {self.world_size}"
            )
        self._batch_size = int(value)

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order and augmentation the next iteration uses."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0; got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        full, rest = divmod(len(self.x), self.batch_size)
        return full + (0 if self.drop_last or rest < self.world_size else 1)

    def _epoch_generator(self) -> torch.Generator:
        """A CPU generator whose state depends only on (seed, epoch), mixed by NumPy's SeedSequence."""
        words = np.random.SeedSequence([self.seed, self.epoch]).generate_state(2, dtype=np.uint32)
        return torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1]))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count, device = len(self.x), self.x.device
        generator = self._epoch_generator()
        order = torch.randperm(count, generator=generator) if self.shuffle else torch.arange(count)
        order = order.to(device)
        if self.augment:
            offsets = torch.randint(0, 2 * self.padding + 1, (count, 2), generator=generator).to(device)
            flips = (torch.rand(count, generator=generator) < 0.5).to(device) if self.flip else None
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            share = min(self.batch_size, count - start) // self.world_size
            first, end = start + self.rank * share, start + (self.rank + 1) * share
            index = order[first:end]
            images = self.x[index]
            if self.augment:
                flip_mask = flips[first:end] if flips is not None else None
                images = crop_and_flip(images, offsets[first:end], self.padding, flip_mask)
            yield images, self.y[index]


def crop_and_flip(
    images: torch.Tensor, offsets: torch.Tensor, padding: int, flip_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Crops each image at its own offset from the zero-padded batch and mirrors the masked ones.

    ``offsets[i] = (row, column)`` in ``0..2 * padding`` is the top-left corner of sample i's window in the
    padded image, so offset ``(padding, padding)`` returns the image unchanged. The batch is padded once and
    every window is read with one ``gather`` over per-sample flat pixel indices (shared by the channels);
    a flip reverses the window's column indices (chosen with ``torch.where`` on the mask), so it costs no
    extra pass over the images.
    """
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    padded_width = width + 2 * padding
    device = images.device
    row_index = offsets[:, 0, None] + torch.arange(height, device=device)
    column_steps = torch.arange(width, device=device)
    if flip_mask is not None:
        column_steps = torch.where(flip_mask[:, None], column_steps.flip(0), column_steps)
    column_index = offsets[:, 1, None] + column_steps
    pixel_index = row_index[:, :, None] * padded_width + column_index[:, None, :]
    pixel_index = pixel_index.view(batch, 1, height * width).expand(batch, channels, height * width)
    return padded.view(batch, channels, -1).gather(2, pixel_index).view(batch, channels, height, width)


def evaluation_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> DeviceLoader:
    """A :class:`DeviceLoader` for evaluation: every sample once, in order, unaugmented."""
    return DeviceLoader(x, y, batch_size, shuffle=False, augment=False)
