"""Chapter 7: the comparison's grids hit the other chapters' cache, its table, tests and closing answer."""

import numpy as np
import pandas as pd
import pytest

from thesis_lib.chapters import Notebook, chapter
from thesis_lib.chapters.ch04_morphnet import morphnet_plan
from thesis_lib.chapters.ch06_3_prunetrain_net2net import search_plan
from thesis_lib.chapters.ch07_comparison import (
    PROCEDURE_SWEEPS,
    PROCEDURES,
    answer,
    comparison_runs,
    comparison_table,
    pairwise_tests,
    sweeps,
    uniform_scaling_check,
    verdict,
)
from thesis_lib.experiments import get_profile, run_dir_for
from thesis_lib.methods.morphnet import DEFAULT_GAMMA_THRESHOLD

from helpers import timed_alone


def fake_runs(
    acc_shift: float = 0.0, time_shift: float = 0.0, n: int = 5, acc_noise: float = 0.005, time_noise: float = 1.0
) -> pd.DataFrame:
    """Five runs per procedure with accuracy noise `acc_noise`; "PruneTrain + Net2Net" gets the given shifts
    against MorphNet."""
    rng = np.random.default_rng(0)
    rows = []
    for index, procedure in enumerate(PROCEDURES):
        shift_acc = acc_shift if procedure == "PruneTrain + Net2Net" else 0.0
        shift_time = time_shift if procedure == "PruneTrain + Net2Net" else 0.0
        for seed in range(n):
            rows.append(
                {
                    "procedure": procedure,
                    "seed": seed,
                    "final_acc": 0.9 + shift_acc + rng.normal(0, acc_noise),
                    "total_time": 100.0 + shift_time + rng.normal(0, time_noise),
                    "training_flops": 3e9 + index,
                    "params": 1000 + index,
                    "flops": 5000 + seed,
                }
            )
    return timed_alone(pd.DataFrame(rows))


def test_table_7_1_has_one_row_per_procedure_with_mean_std_and_n():
    runs = fake_runs()
    table = comparison_table(runs)
    assert table["procedure"].tolist() == list(PROCEDURES) and (table["n"] == 5).all()
    assert list(table.columns) == [
        "procedure",
        "n",
        "final_acc_mean",
        "final_acc_std",
        "total_time_mean",
        "total_time_std",
        "training_flops_mean",
        "training_flops_std",
        "params_mean",
        "params_std",
        "flops_mean",
        "flops_std",
    ]
    morph = runs[runs.procedure == "MorphNet"]
    row = table.set_index("procedure").loc["MorphNet"]
    assert row["final_acc_mean"] == pytest.approx(morph["final_acc"].mean())
    assert row["total_time_std"] == pytest.approx(np.std(morph["total_time"], ddof=1))
    assert row["flops_std"] == pytest.approx(np.std([5000, 5001, 5002, 5003, 5004], ddof=1))


def test_pairwise_tests_cover_every_pair_with_holm_within_each_quantity():
    tests = pairwise_tests(fake_runs(acc_shift=0.05))
    # six pairs for accuracy; for time five: the search and its own retraining are not independent
    assert len(tests) == 6 + 5 and set(tests["quantity"]) == {"final_acc", "total_time"}
    assert not tests["comparison"].str.contains("total training time, PruneTrain + Net2Net vs", regex=False).any()
    for _, family in tests.groupby("quantity"):
        p = family["p"].to_numpy()
        order = np.argsort(p)
        by_hand = np.minimum(1, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
        np.testing.assert_allclose(family["p_holm"].to_numpy()[order], by_hand)
    assert {"n_a", "n_b", "t", "df", "p", "p_holm", "verdict"} <= set(tests.columns)


@pytest.mark.parametrize(
    "acc_shift, time_shift, acc_noise, time_noise, expected",
    [
        (0.05, 0.0, 0.005, 1.0, "PruneTrain + Net2Net"),  # more accurate, and the time interval shows not slower
        (-0.05, 0.0, 0.005, 1.0, "MorphNet"),
        (0.0, -20.0, 0.002, 1.0, "PruneTrain + Net2Net"),  # faster, and at most 1 point less accurate
        (-0.06, -20.0, 0.06, 1.0, "undecided"),  # faster, 6 points less accurate, too noisy to say
        (0.05, 20.0, 0.005, 1.0, "undecided"),  # more accurate but slower
        (0.05, 30.0, 0.005, 30.0, "undecided"),  # more accurate, 30 % slower but too noisy to call slower
        (0.0, 0.0, 0.005, 1.0, "undecided"),
    ],
)
def test_the_verdict_follows_the_holm_adjusted_tests_and_never_reads_no_difference_as_equal(
    acc_shift, time_shift, acc_noise, time_noise, expected
):
    tests = pairwise_tests(fake_runs(acc_shift, time_shift, acc_noise=acc_noise, time_noise=time_noise))
    assert verdict(tests, "PruneTrain + Net2Net", "MorphNet") == expected
    text = answer(tests, "quick", "digits")
    first = text.split("PruneTrain + Net2Net, retrained against")[0]
    if expected == "undecided":
        assert not any(f"{name} finds the better network" in first for name in ("PruneTrain + Net2Net", "MorphNet"))
        assert "do not decide" in first or "a trade-off" in first
    else:
        assert f"{expected} finds the better network" in first
    assert "n = 5 and 5" in text and "at most 0.01 less accurate, at most 10% slower" in text


def test_sweeps_reuse_the_runs_of_chapters_3_4_and_6_3(monkeypatch):
    monkeypatch.setenv("THESIS_RESULTS", "/results")
    known = sweeps("quick")
    assert list(known) == list(PROCEDURE_SWEEPS.values()) and list(PROCEDURE_SWEEPS) == list(PROCEDURES)
    assert [len(grid) for _, grid in known.values()] == [5, 5, 5, 5]
    name, grid = known["baseline"]
    assert run_dir_for(name, grid[0], "quick") == run_dir_for(
        "baseline", {"seed": 0, "model": "wide", "schedule": "step"}, "quick"
    )
    assert known["morphnet"][1][0]["resource"] == "flops"


def former_runs(profile) -> list:
    """The runs the former `planned_runs` listed (`comparison_grids`), written out from the plans."""
    seeds, morph, search = search_plan(profile).seeds, morphnet_plan(profile), search_plan(profile).grid()
    morph_params = {
        "resource": "flops",
        "iterations": morph.search_iterations,
        "relative_strength": morph.relative_strength,
        "gamma_threshold": DEFAULT_GAMMA_THRESHOLD,
    }
    return [
        *(("baseline", {"model": "wide", "schedule": "step", "seed": s}) for s in seeds),
        *(("morphnet_search", {**morph_params, "seed": s}) for s in seeds),
        *(("prune_grow", p) for p in search),
        *(("prune_grow_retrain", p) for p in search),
    ]


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_sweeps_list_the_runs_of_the_former_planned_runs(profile):
    former = former_runs(profile)
    assert [(experiment, params) for experiment, grid in sweeps(profile).values() for params in grid] == former
    planned = chapter("07_comparison").planned_runs(profile)
    assert [(r.experiment, dict(r.params)) for r in planned] == former
    assert {r.profile for r in planned} == {get_profile(profile)}


def test_uniform_scaling_of_the_narrow_net_is_the_wide_net():
    check = uniform_scaling_check("quick")
    assert check["omega"] == 2.0 and check["equals_wide"] and check["scaled_flops"] == check["budget"]


def test_comparison_runs_on_smoke_gives_one_row_per_run(isolated_results):
    runs = comparison_runs(Notebook(chapter("07_comparison"), get_profile("smoke")))
    assert runs.groupby("procedure").size().to_dict() == {p: 2 for p in PROCEDURES}
    retrained = runs[runs.procedure == "PruneTrain + Net2Net, retrained"].set_index("seed")
    search = runs[runs.procedure == "PruneTrain + Net2Net"].set_index("seed")
    assert (retrained["flops"] == search["flops"]).all() and (retrained["total_time"] > search["total_time"]).all()


def test_the_answer_states_the_difference_and_its_interval_in_the_asked_direction():
    tests = pairwise_tests(fake_runs(acc_shift=-0.05))  # computed as "MorphNet vs PruneTrain + Net2Net"
    text = answer(tests, "quick", "digits")
    sentence = text.split("PruneTrain + Net2Net against MorphNet")[1]
    difference = float(sentence.split("difference ")[1].split(",")[0])
    low, high = (float(v) for v in sentence.split("CI [")[1].split("]")[0].split(", "))
    assert difference < 0 and low < difference < high < 0


def test_a_significant_trade_off_is_named_as_such():
    text = answer(pairwise_tests(fake_runs(acc_shift=-0.05, time_shift=-20.0)), "quick", "digits")
    first = text.split("PruneTrain + Net2Net, retrained against")[0]
    assert "a trade-off, not a winner: MorphNet is more accurate, PruneTrain + Net2Net is faster" in first


def test_times_trained_beside_other_runs_decide_nothing():
    """The same trade-off, with one MorphNet run trained beside another notebook: the time gives no
    verdict, so neither "faster" nor a trade-off may be claimed."""
    runs = fake_runs(acc_shift=-0.05, time_shift=-20.0)
    runs.loc[runs.index[runs.procedure == "MorphNet"][0], "timed_alone"] = False
    tests = pairwise_tests(runs)
    time = tests[
        (tests.quantity == "total_time") & tests.comparison.str.contains("MorphNet vs PruneTrain \\+ Net2Net$")
    ]
    assert time["verdict"].tolist() == ["not comparable: 1 of 10 runs trained beside other training processes"]
    text = answer(tests, "quick", "digits")
    first = text.split("PruneTrain + Net2Net, retrained against")[0]
    assert "(not comparable: 1 of 10 runs trained beside other training processes)" in first
    assert "the numbers do not decide which finds the better network" in first
    assert verdict(tests, "PruneTrain + Net2Net", "MorphNet") == "undecided"
