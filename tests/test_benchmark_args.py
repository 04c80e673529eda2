"""The benchmarks' shared helper: one `--device` default, results named by benchmark, device and commit."""

import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from benchmark_args import benchmark_parser, commit, device_name, save_results  # noqa: E402


def test_every_benchmark_gets_the_same_device_default():
    parser = benchmark_parser("Time something.\n\nDetails.")
    assert parser.description == "Time something."
    assert parser.parse_args([]).device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert parser.parse_args(["--device", "cpu"]).device == "cpu"


def test_results_are_a_csv_named_by_benchmark_device_and_commit(tmp_path):
    path = save_results(
        [{"batch": 64, "epoch_s": 1.5}, {"batch": 128, "epoch_s": 2.5}], "epoch_time", "cpu", folder=tmp_path
    )
    revision = commit()
    assert path.parent == tmp_path and path.name.startswith("epoch_time_") and path.name.endswith(f"_{revision}.csv")
    table = pd.read_csv(path, dtype={"commit": str})  # a hash like 9e89406 would parse as a float
    assert table["epoch_s"].tolist() == [1.5, 2.5]
    assert set(table["device"]) == {device_name("cpu")} and set(table["commit"]) == {revision}
    assert set(table["torch"]) == {torch.__version__}
