"""The `plan` estimate against real training, per experiment.

Calibrates and estimates the runs of the selected notebooks as `python -m thesis_lib plan` does, then
trains the first `--per-experiment` runs of each experiment (and the runs they load first) through the run
cache in a results root of their own, timing every `run` call, and prints per experiment the estimated and
the measured seconds and their ratio. The timings include everything a run does (data, checkpoints,
hooks, reconfigurations); the notebooks' own work is not in either number.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/plan_vs_runs.py --profile quick --per-experiment 2

(``PYTHONPATH=.`` from the repository root; not needed once thesis_lib is installed.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import pandas as pd
from benchmark_args import save_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--only", nargs="+", metavar="PREFIX", help="notebooks, e.g. --only 03 05")
    parser.add_argument("--per-experiment", type=int, default=2, metavar="N", help="runs trained per experiment")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per calibrated configuration")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plan_vs_runs_") as root:
        os.environ["THESIS_RESULTS"] = root  # before the package reads it
        from thesis_lib import planning
        from thesis_lib.experiments import run, run_dir_for

        runs = planning.list_runs(args.profile, args.only)
        keys = [planning.step_key(phase, entry.profile) for entry in runs for phase in entry.plan.phases]
        calibration = planning.calibrate(
            keys, runs[0].profile, args.steps, report=lambda line: print(line, file=sys.stderr, flush=True)
        )
        table = planning.run_table(runs, calibration).assign(folder=[entry.folder for entry in runs])
        chosen = set(table.groupby("experiment").head(args.per_experiment)["folder"])
        by_folder = {entry.folder: entry for entry in runs}
        pending = list(chosen)
        while pending:  # the runs the chosen ones load first are trained (and timed) before them
            entry = by_folder[pending.pop()]
            for name, params in entry.plan.requires:
                folder = run_dir_for(name, params, entry.profile)
                if folder not in chosen:
                    chosen.add(folder)
                    pending.append(folder)
        load_before = os.getloadavg()[0]
        measured = {}
        for entry in runs:
            if entry.folder in chosen:
                start = time.perf_counter()
                run(entry.experiment, entry.params, profile=entry.profile, progress=False)
                measured[entry.folder] = time.perf_counter() - start
                print(
                    f"{entry.experiment:<24} estimated {table.loc[table.folder == entry.folder, 'seconds'].iloc[0]:7.2f} s,"
                    f" took {measured[entry.folder]:7.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
        done = table[table["folder"].isin(measured)].assign(measured=lambda t: t["folder"].map(measured))
        summary = done.groupby("experiment", sort=False).agg(
            runs=("folder", "size"), estimated_s=("seconds", "sum"), measured_s=("measured", "sum")
        )
        summary.loc["total"] = summary.sum()
        summary["measured / estimated"] = summary["measured_s"] / summary["estimated_s"]
        print(
            f"profile {args.profile}, {calibration.device}; load average {load_before:.1f} before training, "
            f"{os.getloadavg()[0]:.1f} after, up to {calibration.load:.1f} while calibrating"
        )
        with pd.option_context("display.width", 160, "display.float_format", "{:.2f}".format):
            print(summary.to_string())
        rows = summary.reset_index().assign(profile=args.profile, load_before=load_before).to_dict("records")
        save_results(rows, f"plan_vs_runs_{args.profile}", runs[0].profile.resolved_device().type)


if __name__ == "__main__":
    main()
