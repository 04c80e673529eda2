"""Scale: how much faster a sweep trains with more workers, on the present machine (DESIGN.md section 6).

`--part ray`: one sweep of `--experiment` (`--runs` seeds on `--profile`) trained twice from an empty run
store, serially and as Ray tasks (`executor="ray"`: a local instance with `--cpus` CPUs, or the cluster at
RAY_ADDRESS), the Ray sweep twice: first with workers still to start (each imports torch), then into another
empty store with the workers warm, as every later sweep of a process finds them. The serial sweep runs
warm too (after one untimed run). Ray's own start is timed apart: a process (a notebook's kernel) pays it
once for all its sweeps. Written: the wall times, serial /
Ray for both (the speedup; the ideal is the number of parallel workers), whether the summaries agree on
every number but the measured times, and the machine's load, since a shared machine makes every time
here noisy.

    PYTHONPATH=. python benchmarks/scale.py --part ray --profile quick --runs 4 --out scale_ray.json

One run on several processes (DDP) is measured by benchmarks/scale_ddp.py.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from benchmark_args import save_results

from thesis_lib.experiments import executors, sweep

# What may differ between a serial and a Ray sweep of the same runs: the seconds, and whether a run trained
# alone (Ray trains them side by side).
TIME_COLUMNS = [
    "mean_epoch_time",
    "std_epoch_time",
    "steady_epoch_time",
    "first_epoch_time",
    "total_time",
    "timed_alone",
]


def ray_part(args: argparse.Namespace) -> dict[str, Any]:
    """Serial and Ray wall times of one sweep from an empty store, and whether their summaries agree."""
    if args.cpus:
        os.environ[executors.RAY_CPUS_ENV] = str(args.cpus)
    load_before = os.getloadavg()
    start = time.perf_counter()
    ray = executors.connect_ray()
    ray_start = time.perf_counter() - start
    grid = [{"seed": seed} for seed in range(args.runs)]
    walls, summaries = {}, {}
    with tempfile.TemporaryDirectory(prefix="scale_") as folder:
        # A first run warms this process (chapter imports, the dataset, torch's kernels), as warm workers are.
        os.environ["THESIS_RESULTS"] = os.path.join(folder, "warm_up")
        sweep(args.experiment, grid[:1], profile=args.profile, progress=False, executor="serial")
        for key, executor in (("serial", "serial"), ("ray", "ray"), ("ray_warm", "ray")):
            os.environ["THESIS_RESULTS"] = os.path.join(folder, key)
            start = time.perf_counter()
            result = sweep(args.experiment, grid, profile=args.profile, progress=False, executor=executor)
            walls[key] = time.perf_counter() - start
            summaries[key] = result.summary
    timeless = {key: frame.drop(columns=[c for c in TIME_COLUMNS if c in frame]) for key, frame in summaries.items()}
    return {
        "part": "ray",
        "experiment": args.experiment,
        "profile": args.profile,
        "runs": args.runs,
        "ray_cpus": ray.cluster_resources().get("CPU"),
        "ray_gpus": ray.cluster_resources().get("GPU", 0),
        "ray_address": os.environ.get("RAY_ADDRESS") or "local instance",
        "ray_start_s": round(ray_start, 2),
        **{f"{key}_s": round(wall, 2) for key, wall in walls.items()},
        "speedup_serial_over_ray": round(walls["serial"] / walls["ray"], 3),
        "speedup_serial_over_ray_warm": round(walls["serial"] / walls["ray_warm"], 3),
        "same_summaries_but_times": all(timeless["serial"].equals(timeless[key]) for key in ("ray", "ray_warm")),
        **{
            f"mean_epoch_time_{key}_s": round(float(frame["mean_epoch_time"].mean()), 3)
            for key, frame in summaries.items()
        },
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "ray": ray.__version__,
    }


PARTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {"ray": ray_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=sorted(PARTS), default="ray")
    parser.add_argument("--experiment", default="baseline")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--runs", type=int, default=4, help="grid points (seeds 0 .. runs-1)")
    parser.add_argument("--cpus", type=int, help="CPUs of the local Ray instance (default: all cores)")
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args()
    report = PARTS[args.part](args)
    text = json.dumps(report, indent=2)
    print(text)
    device = "cuda" if report.get("ray_gpus") else "cpu"
    save_results(
        [{k: v if not isinstance(v, list) else str(v) for k, v in report.items()}], f"scale_{args.part}", device
    )
    if args.out:
        with open(args.out, "w") as stream:
            stream.write(text + "\n")


if __name__ == "__main__":
    main()
