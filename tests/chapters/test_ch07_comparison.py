"""Chapter 7: the comparison's sweeps hit the other chapters' cache; table 7.1; the pre-registered decision
rule (outcome per quantity, Holm within each family, verdicts) on hand-made runs; the closing answer."""

import numpy as np
import pandas as pd
import pytest

from thesis_lib.chapters import Notebook, chapter
from thesis_lib.chapters.ch04_morphnet import morphnet_plan
from thesis_lib.chapters.ch05_prunetrain import prunetrain_plan
from thesis_lib.chapters.ch06_3_prunetrain_net2net import search_plan
from thesis_lib.chapters.ch07_comparison import (
    CANDIDATES,
    COMPARED,
    DECIDING,
    FAMILIES,
    PROCEDURE_SWEEPS,
    PROCEDURES,
    answer,
    comparison_runs,
    comparison_table,
    decision_table,
    decisions,
    quantity_outcome,
    sweeps,
    time_tests,
    uniform_scaling_check,
    verdict,
)
from thesis_lib.experiments import get_profile, run_dir_for
from thesis_lib.methods.morphnet import DEFAULT_GAMMA_THRESHOLD

from helpers import timed_alone

SEARCH = "PruneTrain + Net2Net"
BASE = {"final_acc": 0.9, "training_flops": 4e10, "flops": 2e6, "total_time": 100.0}


def fake_runs(shifts=None, noise=None, n: int = 5) -> pd.DataFrame:
    """n runs per procedure at `BASE`; `shifts` {procedure: {column: added}} and `noise` {column: sd}
    (normal, seeded; a column without noise is constant within every group, like a fixed net's FLOPs)."""
    shifts, noise = shifts or {}, noise or {}
    rng = np.random.default_rng(0)
    rows = []
    for procedure in PROCEDURES:
        for seed in range(n):
            row = {"procedure": procedure, "seed": seed, "epochs": 10, "params": 1000}
            for column, value in BASE.items():
                jitter = rng.normal(0, noise[column]) if column in noise else 0.0
                row[column] = value + shifts.get(procedure, {}).get(column, 0.0) + jitter
            rows.append(row)
    return timed_alone(pd.DataFrame(rows))


@pytest.mark.parametrize(
    "diff, low, high, p_holm, direction, margin, expected",
    [
        (0.05, 0.03, 0.07, 0.001, 1, 0.01, "better"),
        (-0.05, -0.07, -0.03, 0.001, 1, 0.01, "worse"),
        (-0.004, -0.009, 0.001, 0.2, 1, 0.01, "not worse"),  # the loss bound -0.009 is inside the margin
        (-0.004, -0.012, 0.004, 0.2, 1, 0.01, "undecided"),  # -0.012 is not
        (-3e9, -4e9, -2e9, 0.01, -1, 4e9, "better"),  # a cost: less is better
        (3e8, -1e8, 3.9e8, 0.3, -1, 4e8, "not worse"),  # at most 3.9e8 more, the margin is 4e8
        (3e8, -1e8, 4.1e8, 0.3, -1, 4e8, "undecided"),
        (0.0, np.nan, np.nan, np.nan, -1, 4e8, "equal"),  # neither group varies: compared exactly
        (-1e5, np.nan, np.nan, np.nan, -1, 4e8, "better"),
        (1e5, np.nan, np.nan, np.nan, -1, 4e8, "worse"),
    ],
)
def test_the_outcome_of_one_quantity_follows_superiority_then_non_inferiority(
    diff, low, high, p_holm, direction, margin, expected
):
    assert quantity_outcome(diff, low, high, p_holm, direction, margin) == expected


def test_an_outcome_needs_a_direction_and_a_margin():
    with pytest.raises(ValueError, match="direction"):
        quantity_outcome(0.1, 0.0, 0.2, 0.01, 0, 0.01)
    with pytest.raises(ValueError, match="margin"):
        quantity_outcome(0.1, 0.0, 0.2, 0.01, 1, -0.01)


def test_every_family_is_holm_adjusted_on_its_own_over_its_defined_tests():
    runs = fake_runs(
        {SEARCH: {"final_acc": 0.02, "training_flops": -1e10}, "MorphNet": {"flops": 1e5}},
        noise={"final_acc": 0.005, "training_flops": 1e9},
    )
    decided = decisions(runs)
    assert list(FAMILIES) == ["MorphNet", "baselines", "control"]
    for family, references in FAMILIES.items():
        rows = decided[decided.family == family]
        assert len(rows) == len(CANDIDATES) * len(references) * len(DECIDING)
        defined = rows[rows.p.notna()]
        p = defined["p"].to_numpy()
        order = np.argsort(p)
        by_hand = np.minimum(1, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
        np.testing.assert_allclose(defined["p_holm"].to_numpy()[order], by_hand)
        assert rows.loc[rows.p.isna(), "p_holm"].isna().all()  # constant FLOPs: exact, outside the family
    flops = decided[(decided.family == "MorphNet") & (decided.quantity == "flops") & (decided.candidate == SEARCH)]
    assert flops["outcome"].tolist() == ["better"] and flops["reference_outcome"].tolist() == ["worse"]


@pytest.mark.parametrize(
    "shifts, noise, expected",
    [
        # more accurate, same training FLOPs, a smaller net: better
        ({SEARCH: {"final_acc": 0.05, "flops": -2e5}}, {"final_acc": 0.005}, "better"),
        # as accurate within 1 point, 25 % fewer training FLOPs: better (no accuracy gain needed)
        ({SEARCH: {"training_flops": -1e10}}, {"final_acc": 0.002, "training_flops": 1e8}, "better"),
        # less accurate, fewer training FLOPs, both significant: a trade-off
        (
            {SEARCH: {"final_acc": -0.05, "training_flops": -1e10}},
            {"final_acc": 0.005, "training_flops": 1e8},
            "trade-off",
        ),
        # MorphNet more accurate at equal costs: the candidate is dominated
        ({"MorphNet": {"final_acc": 0.05}}, {"final_acc": 0.005}, "dominated"),
        # too noisy to say anything about the accuracy: undecided even with cheaper training
        ({SEARCH: {"training_flops": -1e10}}, {"final_acc": 0.08, "training_flops": 1e8}, "undecided"),
        # nothing differs and the intervals show it: equivalent
        ({}, {"final_acc": 0.001, "training_flops": 1e8}, "equivalent"),
        # a not-significant difference with a wide interval is no equality
        ({SEARCH: {"final_acc": 0.01}}, {"final_acc": 0.03}, "undecided"),
    ],
)
def test_the_verdict_is_the_pre_registered_rule(shifts, noise, expected):
    decided = decisions(fake_runs(shifts, noise))
    assert verdict(decided, SEARCH, "MorphNet") == expected
    mirrored = {"better": "dominated", "dominated": "better"}.get(expected, expected)
    assert (
        verdict(
            decided.assign(outcome=decided.reference_outcome, reference_outcome=decided.outcome), SEARCH, "MorphNet"
        )
        == mirrored
    )


def test_seconds_never_decide():
    """Ten times faster in seconds but less accurate at equal FLOPs: dominated, and the answer says that the
    seconds do not decide."""
    runs = fake_runs(
        {"MorphNet": {"final_acc": 0.05}, SEARCH: {"total_time": -90.0}}, {"final_acc": 0.005, "total_time": 1.0}
    )
    decided, times = decisions(runs), time_tests(runs)
    assert verdict(decided, SEARCH, "MorphNet") == "dominated"
    text = answer(decided, times, "quick", "digits")
    assert "MorphNet finds the better network" in text.split(f"{CANDIDATES[1]} against MorphNet")[0]
    assert f"{SEARCH} finds the better network" not in text
    assert "Seconds are reported, they do not decide" in text and "10.0 s vs 101.1 s" in text


def test_the_answer_states_each_quantity_with_its_interval_and_outcome():
    runs = fake_runs({SEARCH: {"final_acc": -0.05}}, {"final_acc": 0.005})
    decided = decisions(runs)
    text = answer(decided, time_tests(runs), "quick", "digits")
    sentence = text.split(f"{SEARCH} against MorphNet (n = 5 and 5): ")[1]
    difference = float(sentence.split("difference ")[1].split(",")[0])
    low, high = (float(v) for v in sentence.split("CI [")[1].split("]")[0].split(", "))
    assert difference < 0 and low < difference < high < 0
    assert "accuracy" in sentence and ": worse;" in sentence and "training FLOPs 4e+10 vs 4e+10 (ratio 1.00" in sentence
    assert "Against the two baselines:" in text and "Against the two controls:" in text


def test_times_trained_beside_other_runs_are_not_comparable():
    runs = fake_runs({SEARCH: {"total_time": -20.0}}, {"total_time": 1.0})
    runs.loc[runs.index[runs.procedure == "MorphNet"][0], "timed_alone"] = False
    times = time_tests(runs)
    row = times[times.comparison == f"total training time, {SEARCH} vs MorphNet"].iloc[0]
    assert row["verdict"] == "not comparable: 1 of 10 runs trained beside other training processes"
    assert "not comparable: 1 of 10 runs" in answer(decisions(runs), times, "quick", "digits")


def test_decision_table_carries_each_pairs_verdict():
    decided = decisions(fake_runs({SEARCH: {"final_acc": 0.05}}, {"final_acc": 0.005}))
    table = decision_table(decided)
    assert "sentence" not in table and {"test", "pair_verdict", "outcome", "margin"} <= set(table.columns)
    assert set(table.loc[(table.candidate == SEARCH) & (table.reference == "MorphNet"), "pair_verdict"]) == {"better"}


def test_decisions_need_every_procedure():
    runs = fake_runs()
    with pytest.raises(ValueError, match="no procedure"):
        decisions(runs[runs.procedure != "PruneTrain on the wide net"])


def test_table_7_1_has_one_row_per_procedure_with_mean_std_and_n():
    runs = fake_runs(noise={"total_time": 1.0})
    table = comparison_table(runs)
    assert table["procedure"].tolist() == list(PROCEDURES) and (table["n"] == 5).all()
    assert list(table.columns) == ["procedure", "n"] + [f"{c}_{s}" for c, _, _ in COMPARED for s in ("mean", "std")]
    morph = runs[runs.procedure == "MorphNet"]
    row = table.set_index("procedure").loc["MorphNet"]
    assert row["total_time_std"] == pytest.approx(np.std(morph["total_time"], ddof=1))
    assert row["epochs_mean"] == 10 and row["flops_std"] == 0


def test_sweeps_reuse_the_runs_of_chapters_3_4_5_and_6_3(monkeypatch):
    monkeypatch.setenv("THESIS_RESULTS", "/results")
    known = sweeps("quick")
    assert list(known) == list(PROCEDURE_SWEEPS.values()) and list(PROCEDURE_SWEEPS) == list(PROCEDURES)
    assert [len(grid) for _, grid in known.values()] == [5] * 8
    for name, model in (("narrow", "narrow"), ("wide", "wide")):
        experiment, grid = known[name]
        assert run_dir_for(experiment, grid[0], "quick") == run_dir_for(
            "baseline", {"seed": 0, "model": model, "schedule": "step"}, "quick"
        )
    chapter_5_default = prunetrain_plan("quick").grid("lasso_ratio")[5]  # ratio 0.9 (the default), seed 0
    assert run_dir_for("prunetrain", known["prunetrain"][1][0], "quick") == run_dir_for(
        "prunetrain", chapter_5_default, "quick"
    )
    assert known["morphnet"][1][0]["resource"] == "flops"
    assert known["morphnet"][1][0]["iterations"] == morphnet_plan("quick").search_iterations == 3


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_the_notebook_plans_exactly_its_sweeps(profile):
    listed = [(experiment, params) for experiment, grid in sweeps(profile).values() for params in grid]
    planned = chapter("07_comparison").planned_runs(profile)
    assert [(r.experiment, dict(r.params)) for r in planned] == listed
    assert {r.profile for r in planned} == {get_profile(profile)}
    seeds = search_plan(profile).seeds
    morph = morphnet_plan(profile)
    assert (
        "morphnet_search",
        {
            "resource": "flops",
            "iterations": morph.search_iterations,
            "relative_strength": morph.relative_strength,
            "gamma_threshold": DEFAULT_GAMMA_THRESHOLD,
            "seed": seeds[-1],
        },
    ) in listed


def test_uniform_scaling_of_the_narrow_net_is_the_wide_net():
    check = uniform_scaling_check("quick")
    assert check["omega"] == 2.0 and check["equals_wide"] and check["scaled_flops"] == check["budget"]


def test_comparison_runs_on_smoke_gives_one_row_per_run(isolated_results):
    runs = comparison_runs(Notebook(chapter("07_comparison"), get_profile("smoke")))
    assert runs.groupby("procedure").size().to_dict() == {p: 2 for p in PROCEDURES}
    retrained = runs[runs.procedure == "PruneTrain + Net2Net, retrained"].set_index("seed")
    search = runs[runs.procedure == SEARCH].set_index("seed")
    assert (retrained["flops"] == search["flops"]).all()
    assert (retrained["training_flops"] > search["training_flops"]).all() and (
        retrained["epochs"] == 2 * search["epochs"]
    ).all()
    narrow, wide = (runs[runs.procedure == f"{m} baseline"] for m in ("narrow", "wide"))
    assert (narrow["flops"].to_numpy() < wide["flops"].to_numpy()).all()
