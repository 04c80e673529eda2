"""Chapter 8: the unseen dataset per profile, its runs apart from chapter 7's, and a clear missing-data error."""

import pandas as pd
import pytest

from thesis_lib.chapters import chapter
from thesis_lib.chapters.ch07_comparison import sweeps as ch07_sweeps
from thesis_lib.chapters.ch08_evaluation import runs_profile, sweeps
from thesis_lib.data import load_dataset
from thesis_lib.experiments import get_profile, run_dir_for


def test_evaluation_profiles_swap_only_the_dataset():
    quick = get_profile("quick")
    evaluation = runs_profile("quick")
    assert (evaluation.dataset, evaluation.n_train, evaluation.n_test) == ("fashion_mnist_14", 1536, 1000)
    assert (evaluation.name, evaluation.epochs, evaluation.seeds) == (quick.name, quick.epochs, quick.seeds)
    assert runs_profile("full").dataset == "cifar100" and evaluation.input_size == (1, 14, 14)
    with pytest.raises(ValueError, match="no chapter 8 plan"):
        runs_profile(quick.__class__(**{**quick.__dict__, "name": "other"}))


def test_runs_on_the_unseen_dataset_have_folders_of_their_own(monkeypatch):
    monkeypatch.setenv("THESIS_RESULTS", "/results")
    params = {"model": "wide", "schedule": "step", "seed": 0}
    assert run_dir_for("baseline", params, runs_profile("quick")) != run_dir_for("baseline", params, "quick")


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_sweeps_are_chapter_7s_on_the_unseen_dataset(profile):
    """Chapter 7's procedures, with the same params, planned on `runs_profile` (so in folders of their own)."""
    evaluation = runs_profile(profile)
    listed = [(experiment, params) for experiment, grid in ch07_sweeps(profile).values() for params in grid]
    assert [(experiment, params) for experiment, grid in sweeps(profile).values() for params in grid] == listed
    assert {experiment for experiment, _ in listed} == {
        "baseline",
        "prunetrain",
        "morphnet_search",
        "prune_grow",
        "prune_grow_retrain",
        "prune_grow_scaled",
        "uniform_grow_prune",
    }
    record = chapter("08_evaluation")
    planned = record.planned_runs(profile)
    assert [(r.experiment, dict(r.params)) for r in planned] == listed
    assert {r.profile for r in planned} == {evaluation} and record.runs_profile(profile) == evaluation
    assert evaluation.dataset == "fashion_mnist_14"


def test_a_missing_dataset_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("THESIS_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cifar-100-python.*THESIS_DATA"):
        load_dataset("cifar100")


def test_the_capacity_sentence_says_whether_the_data_separate_the_nets():
    from thesis_lib.chapters.ch08_evaluation import capacity_sentence

    def runs(wide):
        rows = [("narrow baseline", a) for a in (0.70, 0.72, 0.74, 0.71, 0.73)]
        rows += [("wide baseline", a) for a in wide]
        return pd.DataFrame(rows, columns=["procedure", "final_acc"])

    apart = capacity_sentence(runs((0.80, 0.81, 0.79, 0.80, 0.82)))
    assert "0.804 vs 0.720, difference +0.084" in apart and "(sd) 0.016: the data separates" in apart
    assert "does not separate" in capacity_sentence(runs((0.72, 0.74, 0.70, 0.73, 0.71)))
