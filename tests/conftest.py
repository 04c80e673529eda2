"""Shared fixtures: a tiny digits dataset and results/figures redirected to a temporary folder."""

import pytest
import torch

from thesis_lib.data import load_dataset

# The tests train tiny nets: one intra-op thread is faster than two and immune to a busy machine.
torch.set_num_threads(1)


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
