"""Command line: `python -m thesis_lib notebooks | run | list | runs | clean | plan | profiles`.

`run NAME --nproc N` trains one run data-parallel on N processes: it starts torchrun, which starts N copies
of `run NAME` (one per GPU with NCCL, or gloo on the CPU; see `thesis_lib.distributed`).

`notebooks` re-runs the numbered notebooks headlessly with papermill on a profile, writes each executed
notebook next to its figures (`figures/<profile>/<notebook>/<notebook>.ipynb`), prints a summary and exits
non-zero naming the notebook and cell that failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from . import project_root
from .executors import EXECUTOR_ENV, EXECUTORS, resolve_executor
from .experiments import PROFILES, TENSORBOARD_ENV, get_profile, progress_dir


@dataclass
class NotebookOutcome:
    notebook: str
    status: str
    minutes: float
    detail: str = ""


def find_notebooks(only: Sequence[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The numbered notebooks (`NN_name.ipynb`) in order; `only` keeps those whose name starts with a prefix."""
    folder = folder or project_root() / "notebooks"
    notebooks = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        unknown = [prefix for prefix in only if not any(p.stem.startswith(prefix) for p in notebooks)]
        if unknown:
            raise ValueError(f"no notebook in {folder} starts with {unknown}; the notebooks are "
                             f"{[p.stem for p in notebooks]}")
        notebooks = [p for p in notebooks if any(p.stem.startswith(prefix) for prefix in only)]
    return notebooks


def run_notebook(path: Path, profile: str, output_root: Path | None = None,
                 progress: bool = True) -> NotebookOutcome:
    """Execute one notebook with papermill on `profile`; the executed copy goes next to its figures."""
    import papermill

    output_root = output_root or project_root() / "figures"
    out_dir = output_root / profile / path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # No environment is passed on: each notebook names itself and its profile (plots.use_notebook).
    try:
        papermill.execute_notebook(
            str(path), str(out_dir / path.name), parameters={"profile": profile},
            cwd=str(path.parent), progress_bar=progress, kernel_name="python3",
        )
    except papermill.PapermillExecutionError as error:
        detail = f"{_source_cell(path, error.cell_index)}: {error.ename}: {error.evalue}"
        return NotebookOutcome(path.stem, "failed", (time.perf_counter() - start) / 60, detail)
    except Exception as error:  # a dead kernel (out of memory), a file that is not a notebook, ...
        detail = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        return NotebookOutcome(path.stem, "failed", (time.perf_counter() - start) / 60, detail)
    return NotebookOutcome(path.stem, "ok", (time.perf_counter() - start) / 60)


def _source_cell(path: Path, executed_index: int) -> str:
    """Name the failing cell as it stands in the source notebook: papermill's executed copy has one more
    cell (the injected parameters) right after the `parameters` cell."""
    import nbformat

    cells = nbformat.read(path, as_version=4).cells
    tagged = [i for i, cell in enumerate(cells) if "parameters" in cell.metadata.get("tags", [])]
    index = executed_index - 1 if tagged and executed_index > tagged[0] else executed_index
    lines = cells[index].source.strip().splitlines() if 0 <= index < len(cells) else []
    return f"cell {index + 1} of {len(cells)} ({lines[0][:60]!r})" if lines else f"cell {index + 1}"


def run_notebooks(profile: str, only: Sequence[str] | None = None, progress: bool = True,
                  jobs: int = 1) -> list[NotebookOutcome]:
    """Execute the notebooks on `profile`, `jobs` at a time (each in its own kernel process); outcomes in
    notebook order. Notebooks that need the same run meet in the run store: one trains it under its lock,
    the others wait and load it, so parallel re-runs train every run once. The small profiles pin one
    intra-op thread per run, so `jobs` = the number of cores uses the machine; progress bars only with one
    job (parallel bars would interleave)."""
    get_profile(profile)
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    paths = find_notebooks(only)

    def execute(path: Path) -> NotebookOutcome:
        print(f"== {path.stem} ({profile})", flush=True)
        outcome = run_notebook(path, profile, progress=progress and jobs == 1)
        print(f"   {path.stem} {outcome.status} in {outcome.minutes:.2f} min {outcome.detail}", flush=True)
        return outcome

    with ProgressPrinter(progress_dir(), interval=PROGRESS_INTERVAL):
        if jobs == 1:
            return [execute(path) for path in paths]
        with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads suffice: papermill waits on its kernel
            return list(pool.map(execute, paths))


PROGRESS_INTERVAL = 15.0


def progress_line(record: dict, now: float) -> str:
    """One line of a kernel's progress record (`experiments.report_progress`): the notebook, its sweep's
    runs done of total, the current run's epoch, and a rough ETA of the sweep from its pace so far (runs
    loaded from the cache count as done, so the estimate is only a guide)."""
    parts = [f"{record.get('notebook', '?')}:"]
    if "sweep" in record:
        total, done = int(record.get("runs_total", 0)), int(record.get("runs_done", 0))
        parts.append(f"{record['sweep']} runs {done}/{total}")
        epochs, epoch = int(record.get("epochs") or 0), int(record.get("epoch") or 0)
        if epochs and done < total:
            parts.append(f"epoch {epoch}/{epochs}")
        progress = done + (epoch / epochs if epochs and done < total else 0.0)
        elapsed = now - float(record.get("sweep_started", now))
        if 0 < progress < total and elapsed > 0:
            parts.append(f"about {elapsed / progress * (total - progress) / 60:.1f} min left in this sweep")
    elif "run" in record:
        parts.append(f"{record['run']} epoch {record.get('epoch')}/{record.get('epochs')}")
    return " ".join(parts)


class ProgressPrinter:
    """While notebooks run headlessly, prints every `interval` seconds one `progress_line` per kernel whose
    progress file in `folder` changed since the last print (papermill itself only counts cells)."""

    def __init__(self, folder: Path, interval: float) -> None:
        self.folder, self.interval = folder, interval
        self._stop = threading.Event()
        self._printed: dict[str, str] = {}
        self._started = time.time()

    def __enter__(self) -> "ProgressPrinter":
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.print_changes()

    def print_changes(self) -> list[str]:
        """Print (and return) the lines of the progress files written since this printer started."""
        lines = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):  # being replaced right now: next time
                continue
            if float(record.get("updated", 0)) < self._started:
                continue
            line = progress_line(record, time.time())
            if self._printed.get(path.name) != line:
                self._printed[path.name] = line
                lines.append(line)
                print(f"   .. {line}", flush=True)
        return lines


def print_summary(outcomes: Sequence[NotebookOutcome]) -> None:
    width = max([len(o.notebook) for o in outcomes] + [8])
    print(f"\n{'notebook':<{width}}  status  minutes")
    for o in outcomes:
        print(f"{o.notebook:<{width}}  {o.status:<6}  {o.minutes:7.2f}")
    print(f"{'total':<{width}}          {sum(o.minutes for o in outcomes):7.2f}")
    for o in outcomes:
        if o.status != "ok":
            print(f"FAILED {o.notebook}: {o.detail}")


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def list_experiments() -> list[str]:
    """Per registered experiment: its name, version, chapter notebook and docstring's first line, then one
    indented line per param (type and default)."""
    from .chapters import CHAPTERS
    from .experiments import registered_experiments

    owner = {name: chapter.notebook for chapter in CHAPTERS for name in chapter.experiments}
    lines = []
    for name, registered in registered_experiments().items():
        if name not in owner:
            continue
        lines.append(f"{name:<20} v{registered.version}  {owner[name]:<24} {registered.summary}")
        lines.extend(f"    {line}" for line in registered.describe_params())
    return lines


RUN_STATUSES = ("finished", "partial", "damaged", "empty")


def clean_runs(profile: str, experiment: str | None, statuses: Sequence[str], yes: bool) -> int:
    """Delete the run folders of `profile` (and `experiment`) whose status is in `statuses`, after listing
    them and asking (unless `yes`); a locked run (training now) is skipped and named. Exit 1 if any was."""
    from .experiments import cached_runs, remove_run

    table = cached_runs(profile, experiment)
    selected = table[table["status"].isin(statuses)]
    if selected.empty:
        print(f"no {'/'.join(statuses)} runs of {experiment or 'any experiment'} on profile {profile!r}")
        return 0
    for row in selected.itertuples():
        print(f"{row.status:<9} {row.folder}  {row.params}")
    if not yes:
        try:
            answer = input(f"delete these {len(selected)} run folders? [y/N] ")
        except EOFError:  # no terminal to ask on
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted (pass --yes to delete without asking)")
            return 0
    skipped = 0
    for folder in selected["folder"]:
        try:
            remove_run(Path(folder))
        except RuntimeError as error:
            print(f"skipped: {error}")
            skipped += 1
    print(f"deleted {len(selected) - skipped} run folders")
    return 1 if skipped else 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; a user's mistake is one message on stderr and exit code 2, a run that diverged one
    message and exit code 1 (`--debug`: the traceback)."""
    parser = argparse.ArgumentParser(prog="python -m thesis_lib", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    notebooks = commands.add_parser("notebooks", help="re-run the notebooks headlessly with papermill")
    notebooks.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    notebooks.add_argument("--only", nargs="+", metavar="PREFIX", help="e.g. --only 03 05")
    notebooks.add_argument("--no-progress", action="store_true")
    notebooks.add_argument("--tensorboard", action="store_true",
                           help="log every run's epochs for TensorBoard into its run folder (tensorboard/)")
    notebooks.add_argument("--jobs", type=int, default=1, metavar="N",
                           help="notebooks at a time (default 1; the number of cores on the small profiles)")
    notebooks.add_argument("--executor", choices=EXECUTORS,
                           help=f"how the notebooks' sweeps train their runs: serial, or as Ray tasks (sets "
                                f"{EXECUTOR_ENV} for the kernels; default: {EXECUTOR_ENV} or serial)")
    one = commands.add_parser("run", help="run (or load) one cached experiment and print its summary")
    one.add_argument("experiment")
    one.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    one.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="experiment parameter; VALUE is parsed as JSON when it can be")
    one.add_argument("--nproc", type=int, metavar="N",
                     help="train data-parallel (DDP) on N processes through torchrun: one per GPU on CUDA, gloo "
                          "on the CPU; batch_size is then the global batch")
    commands.add_parser("profiles", help="list the profiles")
    commands.add_parser("list", help="list the registered experiments with their chapter and params")
    runs = commands.add_parser("runs", help="list the cached runs of a profile: finished, partial or damaged")
    runs.add_argument("experiment", nargs="?")
    runs.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    clean = commands.add_parser("clean", help="delete selected cached runs of a profile (asks first)")
    clean.add_argument("experiment", nargs="?")
    clean.add_argument("--profile", required=True, choices=sorted(PROFILES))
    clean.add_argument("--status", nargs="+", choices=RUN_STATUSES, default=list(RUN_STATUSES),
                       help="only runs with these statuses (default: all)")
    clean.add_argument("--yes", action="store_true", help="delete without asking")
    plan = commands.add_parser("plan", help="list the runs the notebooks would train, cached or not, and "
                                            "estimate their training time on this device")
    plan.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    plan.add_argument("--only", nargs="+", metavar="PREFIX", help="e.g. --only 03 05")
    plan.add_argument("--no-calibrate", action="store_true", help="list the runs only, time nothing")
    plan.add_argument("--runs", action="store_true", help="list every run too")
    plan.add_argument("--steps", type=int, default=3, metavar="N",
                      help="training steps per calibration epoch (a warm-up and 3 timed epochs per step "
                           "configuration; default 3)")
    args = parser.parse_args(argv)
    try:
        return _command(args, parser)
    except (ValueError, RuntimeError, FileNotFoundError, OSError, FloatingPointError) as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1 if isinstance(error, FloatingPointError) else 2


def _command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "profiles":
        for profile in PROFILES.values():
            print(json.dumps(profile.to_dict()))
        return 0
    if args.command == "list":
        print("\n".join(list_experiments()))
        return 0
    if args.command == "runs":
        from .experiments import cached_runs

        table = cached_runs(args.profile, args.experiment)
        if table.empty:
            print(f"no cached runs of {args.experiment or 'any experiment'} on profile {args.profile!r}")
            return 0
        with pd_options():
            print(table.drop(columns=["detail"]).to_string(index=False))
        for row in table[table["detail"].fillna("") != ""].itertuples():
            print(f"{row.status}: {row.folder}: {row.detail}")
        return 1 if (table["status"] == "damaged").any() else 0
    if args.command == "clean":
        return clean_runs(args.profile, args.experiment, args.status, args.yes)
    if args.command == "plan":
        from .planning import plan_report

        print(plan_report(args.profile, args.only, calibrate_times=not args.no_calibrate, list_every_run=args.runs,
                          steps=args.steps))
        return 0
    if args.command == "run":
        return _run_command(args, parser)
    if args.tensorboard:
        os.environ[TENSORBOARD_ENV] = "1"  # the kernels inherit it
    if args.executor:
        os.environ[EXECUTOR_ENV] = args.executor  # the kernels inherit it; their sweeps read it
    resolve_executor(None)  # a wrong THESIS_EXECUTOR is an error here, before any kernel starts
    start = time.perf_counter()
    outcomes = run_notebooks(args.profile, args.only, progress=not args.no_progress, jobs=args.jobs)
    print_summary(outcomes)
    print(f"wall time {(time.perf_counter() - start) / 60:.2f} min with {args.jobs} job(s)")
    return 0 if all(o.status == "ok" for o in outcomes) else 1


def _run_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`run`: one run in this process, under torchrun as one rank of a DDP run, or (`--nproc`) launch torchrun."""
    from . import distributed
    from .experiments import resolve_params, run

    params = {}
    for item in args.param:
        if "=" not in item:
            parser.error(f"--param needs KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        params[key] = _parse_value(value)
    if args.nproc is not None:
        if distributed.under_torchrun():
            raise ValueError(f"this process runs under torchrun already (WORLD_SIZE={os.environ['WORLD_SIZE']}); "
                             "drop --nproc")
        forwarded = [*(["--debug"] if args.debug else []), "run", args.experiment, "--profile", args.profile,
                     *(arg for item in args.param for arg in ("--param", item))]
        command = distributed.torchrun_command(args.nproc, forwarded)
        resolve_params(args.experiment, params, args.profile)  # a mistake is said once, not by every rank
        return subprocess.run(command).returncode
    lead = True
    if not distributed.under_torchrun():
        result = run(args.experiment, params, profile=args.profile)
    else:
        distributed.setup(get_profile(args.profile).resolved_device())
        try:
            lead = distributed.rank() == 0
            result = run(args.experiment, params, profile=args.profile, progress=lead)
        finally:
            distributed.teardown()
    if lead:
        print(json.dumps({"path": str(result.path), "cached": result.loaded_from_cache, **result.summary},
                         indent=2))
    return 0


@contextmanager
def pd_options() -> Iterator[None]:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        yield


if __name__ == "__main__":
    sys.exit(main())
