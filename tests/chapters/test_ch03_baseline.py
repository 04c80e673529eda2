"""Chapter 3.1.4: the baseline experiment trains the profile's net with the asked schedule and reports it."""

import pytest

from thesis_lib.data import load_dataset
from thesis_lib.experiments import get_profile, run
from thesis_lib.models import build_resnet, count_parameters
from thesis_lib.training import evaluate


@pytest.mark.parametrize("schedule, lrs", [("step", [0.05, 0.005]), ("constant", [0.05, 0.05])])
def test_baseline_follows_the_schedule_and_reports_the_saved_net(isolated_results, schedule, lrs):
    smoke = get_profile("smoke")
    result = run("baseline", {"model": "narrow", "schedule": schedule, "seed": 1}, profile="smoke", progress=False)
    assert result.history["lr"].tolist() == pytest.approx(lrs)  # smoke: lr 0.05, x0.1 after epoch 1 of 2
    narrow = build_resnet(smoke.resnet("narrow", in_channels=1, num_classes=10))
    assert result.summary["final_params"] == count_parameters(narrow)
    assert result.summary["final_acc"] == result.history["test_acc"].iloc[-1]
    data = load_dataset("digits").subset(smoke.n_train, smoke.n_test, seed=0)  # the profile's subset
    _, accuracy = evaluate(result.model(), data.test_x, data.test_y)
    assert accuracy == pytest.approx(result.summary["final_acc"])


def test_table_3_2_compares_the_wide_runs_with_each_other_as_the_draft():
    import pandas as pd

    from thesis_lib.chapters.ch03_baseline import epoch_time_spread, epoch_time_table

    history = pd.DataFrame(
        {
            "model": ["wide"] * 6 + ["narrow"] * 2,
            "schedule": ["step"] * 4 + ["constant"] * 2 + ["step"] * 2,
            "seed": [0, 0, 1, 1, 0, 0, 0, 0],
            "epoch_time": [19.0, 21.0, 19.5, 20.5, 19.4, 19.6, 5.0, 7.0],
        }
    )
    table = epoch_time_table(history)
    assert table[["schedule", "seed", "n"]].values.tolist() == [["constant", 0, 2], ["step", 0, 2], ["step", 1, 2]]
    assert table["mean"].tolist() == pytest.approx([19.5, 20.0, 20.0])
    assert table["std"].tolist() == pytest.approx([0.1414214, 1.4142136, 0.7071068])
    spread = epoch_time_spread(table)  # the narrow runs (5 s, 7 s) must not enter: the draft's ten are wide
    assert spread["runs"] == 3 and spread["spread"] == pytest.approx((20.0 - 19.5) / 20.0)
    assert spread["largest_relative_std"] == pytest.approx(1.4142136 / 20.0)
    with pytest.raises(ValueError, match="no runs of the 'medium' net"):
        epoch_time_table(history, model="medium")
