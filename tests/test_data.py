"""Tests of thesis_lib.data: datasets, their normalisation and the on-device loader."""

import gzip
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from sklearn.datasets import load_digits

from thesis_lib import data
from thesis_lib.data import (
    DATASET_SHAPES,
    DATASET_SIZES,
    DATASETS,
    DeviceLoader,
    crop_and_flip,
    evaluation_loader,
    load_dataset,
)


@pytest.fixture(scope="module")
def digits_dataset() -> data.Dataset:
    return load_dataset("digits")


def raw_images(dataset: data.Dataset, x: torch.Tensor) -> torch.Tensor:
    """Undoes the dataset's normalisation: images scaled to [0, 1]."""
    mean = torch.tensor(dataset.channel_mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(dataset.channel_std, dtype=torch.float64).view(1, -1, 1, 1)
    return x.double() * std + mean


def test_digits_shapes_and_split(digits_dataset):
    sklearn_digits = load_digits()
    assert digits_dataset.train_x.shape == (1438, 1, 8, 8)
    assert digits_dataset.test_x.shape == (359, 1, 8, 8)
    assert digits_dataset.train_x.dtype == torch.float32 and digits_dataset.train_y.dtype == torch.int64
    assert (digits_dataset.num_classes, digits_dataset.in_channels, digits_dataset.image_size) == (10, 1, 8)
    # Train and test together are exactly scikit-learn's 1797 images with their labels.
    pixels = (
        torch.cat(
            [raw_images(digits_dataset, digits_dataset.train_x), raw_images(digits_dataset, digits_dataset.test_x)]
        )
        * 16
    )
    assert torch.allclose(pixels, pixels.round(), atol=1e-4)
    rows = np.column_stack(
        [
            pixels.round().reshape(len(pixels), -1).numpy(),
            torch.cat([digits_dataset.train_y, digits_dataset.test_y]).numpy(),
        ]
    )
    expected_rows = np.column_stack([sklearn_digits.data, sklearn_digits.target])
    assert np.array_equal(np.unique(rows, axis=0), np.unique(expected_rows, axis=0))
    assert len(np.unique(rows, axis=0)) == len(np.unique(expected_rows, axis=0))
    # The split is fixed: loading again gives the same test set.
    assert torch.equal(load_dataset("digits").test_x, digits_dataset.test_x)


def test_digits_normalised_with_train_statistics(digits_dataset):
    assert abs(digits_dataset.train_x.mean().item()) < 1e-5
    assert digits_dataset.train_x.std(correction=0).item() == pytest.approx(1.0, abs=1e-5)
    train_pixels = (raw_images(digits_dataset, digits_dataset.train_x) * 16).round().numpy()  # integers 0..16
    assert digits_dataset.channel_mean[0] == pytest.approx(train_pixels.mean() / 16, abs=1e-9)
    assert digits_dataset.channel_std[0] == pytest.approx(train_pixels.std() / 16, abs=1e-9)
    # The test split uses the train statistics, so its own mean is not exactly zero.
    test_mean = digits_dataset.test_x.mean().item()
    test_raw_mean = raw_images(digits_dataset, digits_dataset.test_x).mean().item()
    assert test_mean == pytest.approx(
        (test_raw_mean - digits_dataset.channel_mean[0]) / digits_dataset.channel_std[0], abs=1e-5
    )


def test_subset_is_deterministic_and_taken_from_the_dataset(digits_dataset):
    small = digits_dataset.subset(100, 30, seed=3)
    assert small.train_x.shape == (100, 1, 8, 8) and small.test_y.shape == (30,)
    assert torch.equal(small.train_x, digits_dataset.subset(100, 30, seed=3).train_x)
    assert not torch.equal(small.train_x, digits_dataset.subset(100, 30, seed=4).train_x)
    # Each chosen image is in the full training set with the same label, and none is chosen twice.
    flat_full = digits_dataset.train_x.reshape(len(digits_dataset.train_x), -1)
    matches = (small.train_x.reshape(100, 1, -1) == flat_full[None]).all(dim=2)
    first_match = matches.float().argmax(dim=1)
    assert bool(matches.any(dim=1).all())
    assert torch.equal(digits_dataset.train_y[first_match], small.train_y)
    assert small.channel_mean == digits_dataset.channel_mean
    with pytest.raises(ValueError, match="subset sizes"):
        digits_dataset.subset(5000, 10)


def test_to_returns_a_copy_on_the_device(digits_dataset):
    moved = digits_dataset.to("cpu")
    assert moved is not digits_dataset
    assert moved.train_x.device.type == "cpu" and torch.equal(moved.test_y, digits_dataset.test_y)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="digits, fashion_mnist, fashion_mnist_14, cifar10, cifar100"):
        load_dataset("mnist")


def epoch_batches(loader: DeviceLoader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return list(loader)


def test_loader_is_deterministic_per_seed_and_epoch():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 3, 6, 6, generator=generator), torch.arange(50)
    first = epoch_batches(DeviceLoader(x, y, batch_size=16, seed=7, padding=2), 3)
    again = epoch_batches(DeviceLoader(x, y, batch_size=16, seed=7, padding=2), 3)
    other_epoch = epoch_batches(DeviceLoader(x, y, batch_size=16, seed=7, padding=2), 4)
    other_seed = epoch_batches(DeviceLoader(x, y, batch_size=16, seed=8, padding=2), 3)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][1], other_epoch[0][1])
    assert not torch.equal(first[0][1], other_seed[0][1])


def test_every_sample_appears_once_per_epoch_with_its_label():
    x = torch.arange(37, dtype=torch.float32).view(37, 1, 1, 1).expand(37, 2, 3, 3).contiguous()
    y = torch.arange(37) * 10
    loader = DeviceLoader(x, y, batch_size=8, augment=False)
    batches = epoch_batches(loader, 1)
    assert len(loader) == 5 and [len(batch_y) for _, batch_y in batches] == [8, 8, 8, 8, 5]
    seen_y = torch.cat([batch_y for _, batch_y in batches])
    seen_x = torch.cat([batch_x for batch_x, _ in batches])
    assert torch.equal(seen_y.sort().values, y)
    assert not torch.equal(seen_y, y)  # shuffled
    assert torch.equal(seen_x[:, 0, 0, 0] * 10, seen_y.float())
    loader.drop_last = True
    assert len(loader) == 4 and sum(len(batch_y) for _, batch_y in epoch_batches(loader, 1)) == 32


def test_batch_size_can_change_between_epochs_without_changing_the_order():
    x, y = torch.zeros(20, 1, 2, 2), torch.arange(20)
    loader = DeviceLoader(x, y, batch_size=4, augment=False)
    order_small = torch.cat([batch_y for _, batch_y in epoch_batches(loader, 2)])
    loader.batch_size = 7
    batches = epoch_batches(loader, 2)
    assert len(loader) == 3 and [len(batch_y) for _, batch_y in batches] == [7, 7, 6]
    assert torch.equal(torch.cat([batch_y for _, batch_y in batches]), order_small)
    with pytest.raises(ValueError, match="batch_size"):
        loader.batch_size = 0


def test_evaluation_loader_keeps_order_and_images():
    x, y = torch.randn(10, 1, 4, 4), torch.arange(10)
    batches = list(evaluation_loader(x, y, batch_size=4))
    assert torch.equal(torch.cat([batch_x for batch_x, _ in batches]), x)
    assert torch.equal(torch.cat([batch_y for _, batch_y in batches]), y)


def all_crops(image: torch.Tensor, padding: int) -> torch.Tensor:
    """Every window of the zero-padded image, unflipped and flipped, built with explicit slicing."""
    channels, height, width = image.shape
    padded = torch.zeros(channels, height + 2 * padding, width + 2 * padding)
    padded[:, padding : padding + height, padding : padding + width] = image
    crops = [
        padded[:, row : row + height, column : column + width]
        for row in range(2 * padding + 1)
        for column in range(2 * padding + 1)
    ]
    crops += [crop.flip(2) for crop in crops]
    return torch.stack(crops)


def test_augmented_samples_are_padded_crops_possibly_flipped():
    padding = 2
    x = torch.rand(64, 3, 5, 5, generator=torch.Generator().manual_seed(1)) + 0.5  # no pixel is zero
    loader = DeviceLoader(x, torch.arange(64), batch_size=16, padding=padding, seed=5)
    found_windows = set()
    for batch_x, batch_y in epoch_batches(loader, 0):
        assert batch_x.shape == (len(batch_y), 3, 5, 5)
        for augmented, label in zip(batch_x, batch_y):
            candidates = all_crops(x[label], padding)
            equal = (candidates == augmented).flatten(1).all(dim=1).nonzero().flatten().tolist()
            assert len(equal) == 1, "an augmented image must be exactly one crop of its padded original"
            found_windows.add(equal[0])
    flipped = {window for window in found_windows if window >= (2 * padding + 1) ** 2}
    assert len(found_windows) > 20 and 0 < len(flipped) < len(found_windows)


def test_crop_and_flip_with_known_offsets():
    image = torch.arange(9, dtype=torch.float32).view(1, 1, 3, 3) + 1
    images = image.expand(3, 1, 3, 3)
    offsets = torch.tensor([[1, 1], [0, 2], [2, 0]])
    result = crop_and_flip(images, offsets, padding=1, flip_mask=torch.tensor([False, False, True]))
    assert torch.equal(result[0, 0], image[0, 0])
    # Window starting at padded (0, 2): one zero row on top, one zero column on the right.
    assert torch.equal(result[1, 0], torch.tensor([[0.0, 0, 0], [2, 3, 0], [5, 6, 0]]))
    # Window at (2, 0) shows rows 1..2 plus a zero row below, columns -1..1; then mirrored.
    assert torch.equal(result[2, 0], torch.tensor([[5.0, 4, 0], [8, 7, 0], [0, 0, 0]]))


def test_loader_rejects_bad_input():
    with pytest.raises(ValueError, match="one label per image"):
        DeviceLoader(torch.zeros(4, 1, 2, 2), torch.zeros(3), batch_size=2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        DeviceLoader(torch.zeros(4, 2, 2), torch.zeros(4), batch_size=2)


@pytest.mark.cuda
def test_loader_on_cuda_matches_cpu():
    x, y = torch.randn(30, 3, 8, 8), torch.arange(30)
    cpu_batches = epoch_batches(DeviceLoader(x, y, batch_size=8, seed=2), 1)
    cuda_batches = epoch_batches(DeviceLoader(x.cuda(), y.cuda(), batch_size=8, seed=2), 1)
    for (cpu_x, cpu_y), (cuda_x, cuda_y) in zip(cpu_batches, cuda_batches):
        assert cuda_x.is_cuda and torch.equal(cuda_x.cpu(), cpu_x) and torch.equal(cuda_y.cpu(), cpu_y)


def write_pickle(path: Path, content: dict) -> str:
    with open(path, "wb") as stream:
        pickle.dump(content, stream)
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_fake_cifar(
    root: Path,
    dataset_class,
    monkeypatch,
    label_key: str,
    meta_key: str,
    num_classes: int,
    files_per_split: dict[bool, list[str]],
) -> dict[bool, tuple]:
    """Writes a handful of random images per file in CIFAR's python-pickle format.

    torchvision verifies every file's MD5 against the real release's, so the test points the class's
    file lists at the MD5s of the fake files: torchvision's own loading code still reads them.
    """
    folder = root / dataset_class.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written, listing = {}, {}
    for train, names in files_per_split.items():
        images, labels, listing[train] = [], [], []
        for name in names:
            batch = rng.integers(0, 256, size=(4, 3 * 32 * 32), dtype=np.uint8)
            batch_labels = rng.integers(0, num_classes, size=4).tolist()
            md5 = write_pickle(folder / name, {"data": batch, label_key: batch_labels})
            listing[train].append([name, md5])
            images.append(batch)
            labels += batch_labels
        written[train] = (np.vstack(images).reshape(-1, 3, 32, 32), np.array(labels))
    meta_md5 = write_pickle(
        folder / dataset_class.meta["filename"], {meta_key: [f"class {index}" for index in range(num_classes)]}
    )
    monkeypatch.setattr(dataset_class, "train_list", listing[True])
    monkeypatch.setattr(dataset_class, "test_list", listing[False])
    monkeypatch.setattr(dataset_class, "meta", {**dataset_class.meta, "md5": meta_md5})
    return written


def check_loaded_cifar(dataset: data.Dataset, written: dict[bool, tuple], num_classes: int) -> None:
    for (x, y), (images, labels) in [
        ((dataset.train_x, dataset.train_y), written[True]),
        ((dataset.test_x, dataset.test_y), written[False]),
    ]:
        assert x.shape == (len(labels), 3, 32, 32) and x.dtype == torch.float32
        assert torch.equal(y, torch.from_numpy(labels))
        assert torch.allclose(raw_images(dataset, x) * 255, torch.from_numpy(images).double(), atol=1e-3)
    train_images = written[True][0] / 255.0
    assert np.allclose(dataset.channel_mean, train_images.mean(axis=(0, 2, 3)), atol=1e-7)
    assert np.allclose(dataset.channel_std, train_images.std(axis=(0, 2, 3)), atol=1e-7)
    assert (dataset.num_classes, dataset.in_channels, dataset.image_size) == (num_classes, 3, 32)


def test_cifar10_reads_the_python_pickle_format(tmp_path, monkeypatch):
    files = {True: [f"data_batch_{index}" for index in range(1, 6)], False: ["test_batch"]}
    written = write_fake_cifar(tmp_path, torchvision.datasets.CIFAR10, monkeypatch, "labels", "label_names", 10, files)
    dataset = load_dataset("cifar10", root=tmp_path)
    check_loaded_cifar(dataset, written, 10)
    assert dataset.name == "cifar10" and len(dataset.train_y) == 20


def test_cifar100_reads_the_python_pickle_format(tmp_path, monkeypatch):
    written = write_fake_cifar(
        tmp_path,
        torchvision.datasets.CIFAR100,
        monkeypatch,
        "fine_labels",
        "fine_label_names",
        100,
        {True: ["train"], False: ["test"]},
    )
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    check_loaded_cifar(load_dataset("cifar100"), written, 100)


def test_corrupt_cifar_says_to_download_again(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not cifar")
    with pytest.raises(RuntimeError, match="download it again"):
        data.cifar10(root=tmp_path)


def test_missing_cifar_names_the_folder_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("cifar100")
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "cifar-100-python") in message
    assert "download=True" in message and "THESIS_DATA" in message
    assert "--download on the command line" in message and "THESIS_DOWNLOAD=1" in message


def test_the_command_lines_download_flag_reaches_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets

    from thesis_lib.cli import main

    asked = []

    class Offline(torchvision.datasets.CIFAR10):
        def __init__(self, root, train=True, download=False):
            asked.append(download)
            raise RuntimeError("no internet here")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setenv(data.DOWNLOAD_ENV, "0")  # restored after the test, which `--download` sets to 1
    with pytest.raises(FileNotFoundError):
        data.cifar10()
    assert asked == []  # without the flag nothing is fetched
    monkeypatch.setenv("THESIS_RESULTS", str(tmp_path / "results"))
    argv = ["run", "baseline", "--profile", "smoke", "--param", 'model="narrow"', "--download"]
    monkeypatch.setattr(data, "DATASETS", {**data.DATASETS, "digits": lambda root, download: data.cifar10(root)})
    from thesis_lib.experiments import registry

    monkeypatch.setattr(registry, "_DATASETS", {})  # no digits loaded by an earlier test of this process
    assert main(argv) == 2  # the RuntimeError of the failed download, as one message
    assert asked == [True] and os.environ[data.DOWNLOAD_ENV] == "1"
    assert data.download_wanted(False) is False  # an explicit argument wins over the environment


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    content = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)


def test_fashion_mnist_reads_idx_files_plain_or_gzipped(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, size=(6, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=6),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(3, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, size=3),
    }
    folder = tmp_path / "FashionMNIST" / "raw"
    folder.mkdir(parents=True)
    for name, array in arrays.items():
        write_idx(folder / name, array)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    dataset = data.fashion_mnist(root=tmp_path)
    assert dataset.train_x.shape == (6, 1, 28, 28) and dataset.test_x.shape == (3, 1, 28, 28)
    assert torch.equal(dataset.train_y, torch.from_numpy(arrays["train-labels-idx1-ubyte"]))
    assert torch.equal(dataset.test_y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte.gz"]))
    expected_test = torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).double().unsqueeze(1)
    assert torch.allclose(raw_images(dataset, dataset.test_x) * 255, expected_test, atol=1e-3)
    assert dataset.channel_mean[0] == pytest.approx(arrays["train-images-idx3-ubyte.gz"].mean() / 255, abs=1e-7)

    small = data.fashion_mnist_14(root=tmp_path)  # every 2x2 block of pixels averaged, by numpy here
    blocks = arrays["t10k-images-idx3-ubyte"].reshape(3, 14, 2, 14, 2).mean(axis=(2, 4))
    assert small.test_x.shape == (3, 1, 14, 14) and small.image_size == 14
    assert torch.allclose(raw_images(small, small.test_x) * 255, torch.from_numpy(blocks).unsqueeze(1), atol=1e-3)
    assert torch.equal(small.train_y, dataset.train_y)
    assert data.DATASET_SHAPES["fashion_mnist_14"] == (1, 14, 10)


def test_read_idx_rejects_a_truncated_file(tmp_path):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 2]) + np.array([3, 4], dtype=">u4").tobytes() + bytes(5))
    with pytest.raises(ValueError, match=r"shape \(3, 4\)"):
        data.read_idx(path)


def test_missing_fashion_mnist_names_every_place_looked_at(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("fashion_mnist")
    message = str(error.value)
    for place in [tmp_path / "fashion-mnist", tmp_path / "FashionMNIST" / "raw", tmp_path / "debian"]:
        assert str(place) in message
    assert "sudo apt install dataset-fashion-mnist" in message and "download=True" in message


def test_dataset_shapes_table_matches_loaded_digits():
    assert set(DATASET_SHAPES) == set(DATASETS)
    data = load_dataset("digits")
    assert DATASET_SHAPES["digits"] == (data.in_channels, data.image_size, data.num_classes)


def test_dataset_sizes_table_matches_loaded_digits_and_the_published_splits():
    assert set(DATASET_SIZES) == set(DATASETS)
    data = load_dataset("digits")
    assert DATASET_SIZES["digits"] == (len(data.train_y), len(data.test_y)) == (1438, 359)
    assert DATASET_SIZES["fashion_mnist"] == (60_000, 10_000) and DATASET_SIZES["cifar100"] == (50_000, 10_000)


def test_random_crops_reach_every_one_of_the_offsets():
    """Offsets run over 0 .. 2p inclusive: all (2p + 1)^2 crops of the padded image occur on a large sample."""
    padding, size = 2, 6
    image = torch.arange(1.0, size * size + 1).reshape(1, 1, size, size)
    x = image.repeat(600, 1, 1, 1)
    loader = DeviceLoader(
        x,
        torch.zeros(600, dtype=torch.long),
        batch_size=600,
        shuffle=False,
        augment=True,
        padding=padding,
        flip=False,
        seed=0,
    )
    crops, _ = next(iter(loader))
    padded = torch.nn.functional.pad(image[0, 0], (padding,) * 4)
    candidates = {
        (dy, dx): padded[dy : dy + size, dx : dx + size]
        for dy in range(2 * padding + 1)
        for dx in range(2 * padding + 1)
    }
    seen = {offset for crop in crops[:, 0] for offset, candidate in candidates.items() if torch.equal(crop, candidate)}
    assert seen == set(candidates)


def test_about_half_of_the_images_are_flipped():
    """A horizontal flip with probability 1/2: 2000 images without padding (the crop is the image), each
    either itself or its mirror; the flipped share lies within 4 binomial standard deviations of 1/2."""
    n = 2000
    image = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)  # no column is its own mirror
    loader = DeviceLoader(
        image.repeat(n, 1, 1, 1),
        torch.zeros(n, dtype=torch.long),
        batch_size=n,
        shuffle=False,
        augment=True,
        padding=0,
        flip=True,
        seed=0,
    )
    batch, _ = next(iter(loader))
    same = (batch == image).flatten(1).all(1)
    mirrored = (batch == image.flip(-1)).flatten(1).all(1)
    assert bool((same ^ mirrored).all())
    share = float(mirrored.double().mean())
    assert abs(share - 0.5) < 4 * (0.25 / n) ** 0.5


def test_random_dataset_has_the_asked_shapes_labels_and_seed():
    first = data.random_dataset(12, 5, (3, 6, 6), num_classes=4, seed=2)
    again = data.random_dataset(12, 5, (3, 6, 6), num_classes=4, seed=2)
    assert first.train_x.shape == (12, 3, 6, 6) and first.test_x.shape == (5, 3, 6, 6)
    assert (first.in_channels, first.image_size, first.num_classes) == (3, 6, 4)
    assert int(first.train_y.min()) >= 0 and int(first.train_y.max()) < 4
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.test_y, again.test_y)


def test_validation_split_divides_the_training_split_and_never_touches_the_test_split(digits_dataset):
    split = digits_dataset.validation_split(0.25, seed=1)
    n = len(digits_dataset.train_y)
    assert len(split.test_y) == round(0.25 * n) and len(split.train_y) + len(split.test_y) == n
    assert torch.equal(split.train_x, digits_dataset.validation_split(0.25, seed=1).train_x)
    assert not torch.equal(split.test_x, digits_dataset.validation_split(0.25, seed=2).test_x)
    # Every image of both parts is a training image with its label, each training image used once.
    flat_train = digits_dataset.train_x.reshape(n, -1)
    parts = torch.cat([split.train_x, split.test_x]).reshape(n, 1, -1)
    matches = (parts == flat_train[None]).all(dim=2)
    assert bool(matches.any(dim=1).all())
    first_match = matches.float().argmax(dim=1)
    assert len(set(first_match.tolist())) == n
    assert torch.equal(torch.cat([split.train_y, split.test_y]), digits_dataset.train_y[first_match])
    assert split.channel_mean == digits_dataset.channel_mean and "validation" in split.name
    for fraction in (0.0, 1.0, 1e-6):
        with pytest.raises(ValueError, match="validation fraction"):
            digits_dataset.validation_split(fraction)
