"""Shared fixtures: tiny digits datasets, results/figures redirected to a temporary folder, one intra-op
thread; and the one `cuda` marker: a test marked `@pytest.mark.cuda` is skipped where no CUDA device is."""

import pytest
import torch

from thesis_lib.data import load_dataset


@pytest.fixture(scope="session")
def digits_small():
    """128 training and 64 test images of scikit-learn's 8x8 digits."""
    return load_dataset("digits").subset(128, 64, seed=0)


@pytest.fixture()
def isolated_results(tmp_path, monkeypatch):
    """Run cache and figures under tmp_path, so tests never see or leave real results."""
    monkeypatch.setenv("THESIS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("THESIS_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def digits():
    """256 training and 128 test images of the digits."""
    return load_dataset("digits").subset(256, 128)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these nets are tiny, and on a loaded 2-core machine threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def close_figures():
    """Close every matplotlib figure a test left open: pyplot keeps them all, and past 20 it warns."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marked cuda)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
