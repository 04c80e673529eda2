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
