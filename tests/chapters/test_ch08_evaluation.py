"""Chapter 8: the unseen dataset per profile, its runs apart from chapter 7's, and a clear missing-data error."""

import pytest

from thesis_lib.chapters.ch08_evaluation import evaluation_profile
from thesis_lib.data import load_dataset
from thesis_lib.experiments import get_profile, run_dir_for


def test_evaluation_profiles_swap_only_the_dataset():
    quick = get_profile("quick")
    evaluation = evaluation_profile("quick")
    assert (evaluation.dataset, evaluation.n_train, evaluation.n_test) == ("fashion_mnist", 384, 256)
    assert (evaluation.name, evaluation.epochs, evaluation.seeds) == (quick.name, quick.epochs, quick.seeds)
    assert evaluation_profile("full").dataset == "cifar100" and evaluation.input_size == (1, 28, 28)
    with pytest.raises(ValueError, match="no chapter 8 dataset"):
        evaluation_profile(quick.__class__(**{**quick.__dict__, "name": "other"}))


def test_runs_on_the_unseen_dataset_have_folders_of_their_own(monkeypatch):
    monkeypatch.setenv("THESIS_RESULTS", "/results")
    params = {"model": "wide", "schedule": "step", "seed": 0}
    assert run_dir_for("baseline", params, evaluation_profile("quick")) != run_dir_for("baseline", params, "quick")


def test_a_missing_dataset_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("THESIS_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cifar-100-python.*THESIS_DATA"):
        load_dataset("cifar100")
