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

