"""Command line: `python -m thesis_lib notebooks | run | list | runs | clean | plan | profiles`.

`run NAME --nproc N` trains one run data-parallel on N processes: it starts torchrun, which starts N copies
of `run NAME` (one per GPU with NCCL, or gloo on the CPU; see `thesis_lib.distributed`).

`notebooks` re-runs the numbered notebooks headlessly with papermill on a profile (`thesis_lib.headless`),
writes each executed notebook next to its figures (`figures/<profile>/<notebook>/<notebook>.ipynb`), prints
a summary and exits non-zero naming the notebook and cell that failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .data import DATA_DIR_ENV, DOWNLOAD_ENV
from .experiments import PROFILES, get_profile
from .experiments.executors import EXECUTOR_ENV, EXECUTORS, resolve_executor
from .headless import print_summary, run_notebooks
from .training import TENSORBOARD_ENV

if TYPE_CHECKING:
    import pandas as pd


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def list_experiments(profile: str | None = None, modules: Sequence[str] = ()) -> list[str]:
    """Per experiment of the chapters and of the user's `modules`: its name, version and home (the chapter's
    notebook or the module), its whole description, then one line per param (type, default and range;
    with `profile`, the defaults that the profile's plans set are shown resolved)."""
    from .chapters import CHAPTERS
    from .experiments import registered_experiments

    owner = {name: chapter.notebook for chapter in CHAPTERS for name in chapter.experiments}
    users = {_module_name(module) for module in modules}
    lines = []
    for name, registered in registered_experiments().items():
        home = owner.get(name) or (registered.function.__module__ if registered.function.__module__ in users else None)
        if home is None:
            continue
        lines.append(f"{name}  v{registered.version}  {home}")
        lines.extend(
            textwrap.wrap(
                " ".join(registered.description.split()),
                width=LINE_WIDTH,
                initial_indent="    ",
                subsequent_indent="    ",
            )
        )
        lines.extend(f"      {line}" for line in registered.describe_params(profile))
    return lines


LINE_WIDTH = 120
DOWNLOAD_HELP = (
    f"let torchvision download a missing dataset into the data directory (sets {DOWNLOAD_ENV}=1; "
    f"{DATA_DIR_ENV} chooses the directory); needs internet access"
)
MODULES_ENV = "THESIS_MODULES"


def _module_name(module: str) -> str:
    """The name under which `--module` imports a module: the dotted name, or a file's stem."""
    return Path(module).stem if module.endswith(".py") else module


def import_user_modules(modules: Sequence[str]) -> list[str]:
    """Import the modules that register a user's own experiments (`--module` and THESIS_MODULES, a
    colon-separated list): dotted names found on sys.path (the current folder included) or .py files."""
    import importlib
    import importlib.util

    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        if module.endswith(".py"):
            path = Path(module)
            if not path.is_file():
                raise FileNotFoundError(f"--module {module}: no such file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            loaded = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = loaded
            spec.loader.exec_module(loaded)
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            raise ValueError(
                f"--module {module}: {error}; give a module on sys.path (run from its folder or "
                "set PYTHONPATH) or the path of a .py file"
            ) from error
    return list(modules)


RUN_STATUSES = ("finished", "partial", "damaged", "empty")


def select_runs(table: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of a `cached_runs` table whose params hold every `params` item (defaults included, as the
    run was resolved); a key that no listed run has is an error (a typo selects nothing silently)."""
    if not params or table.empty:
        return table
    runs_params = [json.loads(text) if text else {} for text in table["params"]]
    unknown = sorted(key for key in params if not any(key in p for p in runs_params))
    if unknown:
        known = sorted({key for p in runs_params for key in p})
        raise ValueError(f"no listed run has the param(s) {unknown}; their params are {known}")
    keep = [
        all(key in p and _canonical_json(p[key]) == _canonical_json(value) for key, value in params.items())
        for p in runs_params
    ]
    return table[keep]


def _canonical_json(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # the run store keeps 3.0 as 3
    return json.dumps(value, sort_keys=True)


def _selection(items: Sequence[str]) -> str:
    return f" with {', '.join(items)}" if items else ""


def runs_lines(table: pd.DataFrame, long: bool = False) -> list[str]:
    """`runs`' lines: one per run (experiment, status, final accuracy, epochs done, seconds, the other
    training processes beside it, the run's folder name, its params), then one per run with a detail
    (damage, checkpoints, orphans), then the machines and commits the listed runs trained on. Lines are cut
    at 120 columns unless `long` (which also shows whole folder paths and each run's machine and commit)."""

    def number(value: Any, form: str) -> str:
        return "-" if value is None or value != value else format(value, form)

    width = max(len("experiment"), *(len(str(name)) for name in table["experiment"]))
    lines = [
        f"{'experiment':<{width}}  {'status':<8}  {'acc':>6}  {'epochs':>6}  {'seconds':>8}  {'beside':>6}  "
        f"{'folder' if long else 'run':<16}  params"
    ]
    for row in table.itertuples():
        folder = row.folder if long else Path(row.folder).name
        lines.append(
            f"{row.experiment:<{width}}  {row.status:<8}  {number(row.final_acc, '.4f'):>6}  "
            f"{number(row.epochs, '.0f'):>6}  {number(row.total_time, '.1f'):>8}  {number(row.beside, '.0f'):>6}  "
            f"{folder:<16}  {row.params}"
        )
    details = [(row.status, row.folder, row.detail) for row in table[table["detail"].fillna("") != ""].itertuples()]
    finished = table[table["status"] == "finished"]
    if long:
        trained = [
            f"trained: {row.folder}: {row.machine}, commit {row.commit}, {row.started}" for row in finished.itertuples()
        ]
        return lines + [f"{status}: {folder}: {detail}" for status, folder, detail in details] + trained
    where = [
        f"trained on {machine}, commit {commit}: {count} run{'s' if count != 1 else ''}"
        for (machine, commit), count in finished.groupby(["machine", "commit"]).size().items()
    ]
    cut = [line if len(line) <= LINE_WIDTH else line[: LINE_WIDTH - 3] + "..." for line in lines]
    if cut != lines:
        cut.append("(lines cut at 120 columns: --long shows them whole)")
    for status, folder, detail in details:  # wrapped, never cut: a damage report must be read whole
        name = Path(folder).name
        cut += textwrap.wrap(
            f"{status}: {name}: {detail.replace(folder, name)}",
            width=LINE_WIDTH,
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
    for line in where:
        cut += textwrap.wrap(line, width=LINE_WIDTH, subsequent_indent="    ", break_on_hyphens=False)
    return cut


def clean_runs(
    profile: str, experiment: str | None, statuses: Sequence[str], yes: bool, params: Mapping[str, Any] | None = None
) -> int:
    """Delete the run folders of `profile` (and `experiment`, and with every `params` item) whose status is
    in `statuses`, after listing them and asking (unless `yes`); a locked run (training now) is skipped and
    named. Exit 1 if any was."""
    from .experiments import cached_runs, remove_run

    table = select_runs(cached_runs(profile, experiment), params or {})
    selected = table[table["status"].isin(statuses)]
    if selected.empty:
        chosen = _selection([f"{key}={json.dumps(value)}" for key, value in (params or {}).items()])
        print(f"no {'/'.join(statuses)} runs of {experiment or 'any experiment'}{chosen} on profile {profile!r}")
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
    parser = _global_parser(add_help=False)
    known, _ = parser.parse_known_args(argv)
    modules = [*filter(None, os.environ.get(MODULES_ENV, "").split(":")), *known.module]
    try:
        import_user_modules(modules)  # before the parser is built: `run --help` lists their experiments
    except (ValueError, OSError) as error:
        if known.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    parser = _global_parser(add_help=True)
    commands = parser.add_subparsers(dest="command", required=True)
    notebooks = commands.add_parser("notebooks", help="re-run the notebooks headlessly with papermill")
    notebooks.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    notebooks.add_argument("--only", nargs="+", metavar="PREFIX", help="e.g. --only 03 05")
    notebooks.add_argument("--no-progress", action="store_true")
    notebooks.add_argument(
        "--tensorboard",
        action="store_true",
        help="log every run's epochs for TensorBoard into its run folder (tensorboard/)",
    )
    notebooks.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help='notebooks at a time (default 1: runs whose times a chapter compares train alone; with N > 1 every run\'s provenance says how many trained beside it, and time tests between such runs say "not comparable")',
    )
    notebooks.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    notebooks.add_argument(
        "--executor",
        choices=EXECUTORS,
        help=f"how the notebooks' sweeps train their runs: serial, or as Ray tasks (sets "
        f"{EXECUTOR_ENV} for the kernels; default: {EXECUTOR_ENV} or serial)",
    )
    one = commands.add_parser(
        "run",
        help="run (or load) one cached experiment and print its summary",
        epilog=_experiments_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    one.add_argument("experiment")
    one.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    one.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="experiment parameter; VALUE is parsed as JSON when it can be",
    )
    one.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    one.add_argument(
        "--tensorboard",
        action="store_true",
        help="log the run's epochs for TensorBoard into its run folder (tensorboard/)",
    )
    one.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train data-parallel (DDP) on N processes through torchrun: one per GPU on CUDA, gloo "
        "on the CPU; batch_size is then the global batch",
    )
    commands.add_parser("profiles", help="list the profiles")
    listing = commands.add_parser("list", help="list the registered experiments with their chapter and params")
    listing.add_argument(
        "--profile", choices=sorted(PROFILES), help="show the param defaults that this profile's plans set"
    )
    runs = commands.add_parser("runs", help="list the cached runs of a profile: finished, partial or damaged")
    runs.add_argument("experiment", nargs="?")
    runs.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    runs.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="only runs with this param value (repeatable)"
    )
    runs.add_argument("--long", action="store_true", help="full folders and details, lines of any length")
    clean = commands.add_parser("clean", help="delete selected cached runs of a profile (asks first)")
    clean.add_argument("experiment", nargs="?")
    clean.add_argument("--profile", required=True, choices=sorted(PROFILES))
    clean.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only runs with this param value (repeatable), e.g. --param seed=1",
    )
    clean.add_argument(
        "--status",
        nargs="+",
        choices=RUN_STATUSES,
        default=list(RUN_STATUSES),
        help="only runs with these statuses (default: all)",
    )
    clean.add_argument("--yes", action="store_true", help="delete without asking")
    plan = commands.add_parser(
        "plan",
        help="list the runs the notebooks would train, cached or not, and estimate their training time on this device",
    )
    plan.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    plan.add_argument("--only", nargs="+", metavar="PREFIX", help="e.g. --only 03 05")
    plan.add_argument("--no-calibrate", action="store_true", help="list the runs only, time nothing")
    plan.add_argument("--runs", action="store_true", help="list every run too")
    plan.add_argument(
        "--steps",
        type=int,
        default=3,
        metavar="N",
        help="training steps per calibration epoch (a warm-up and 3 timed epochs per step configuration; default 3)",
    )
    args = parser.parse_args(argv)
    args.modules = modules
    try:
        return _command(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"interrupted: {_interrupted_note(args)}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, RuntimeError, OSError, FloatingPointError) as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1 if isinstance(error, FloatingPointError) else 2


NOTHING_TRAINED = (
    "nothing new was trained (the runs came from the cache), so no curves were logged; every run's "
    "epochs are in its history.csv (`runs --long` names the folders; `run(...).history` in Python), "
    "or delete the runs with `clean` and run again with --tensorboard to log them"
)


def tensorboard_note(profile: str, since: float) -> str:
    """What `--tensorboard` logged: the runs whose TensorBoard events were written since `since` (a time),
    and where to watch them, or that nothing new was trained."""
    from .experiments import results_root

    root = results_root() / profile
    logged = {
        path.parent for path in root.glob("*/*/tensorboard/*/*/events.out.tfevents.*") if path.stat().st_mtime >= since
    }
    if not logged:
        return f"TensorBoard: {NOTHING_TRAINED}"
    return f"TensorBoard: {len(logged)} run phases logged their epochs; watch them with `tensorboard --logdir {root}`"


def _global_parser(add_help: bool) -> argparse.ArgumentParser:
    """The options before the command (`--debug`, `--module`); parsed once alone to import the modules."""
    parser = argparse.ArgumentParser(
        prog="python -m thesis_lib", description=__doc__.splitlines()[0], add_help=add_help
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="MODULE",
        help=f"import a module (dotted name or .py file) that registers your own experiments, "
        f"for run, list, runs, clean and plan; repeatable (also: {MODULES_ENV}=a:b)",
    )
    return parser


def _interrupted_note(args: argparse.Namespace) -> str:
    """What an interrupted command saved and how to go on (one line)."""
    again = "run the same command again to resume"
    if args.command == "notebooks":
        return f"finished runs are cached and a killed run resumes from its last epoch: {again}"
    if args.command != "run":
        return "nothing was changed"
    from .experiments import run_dir_for, run_status

    try:
        status = run_status(run_dir_for(args.experiment, _parse_params(args.param), args.profile))
    except (ValueError, TypeError, OSError):
        return again
    if status["status"] == "partial":
        return f"{status['detail']}; {again}"
    return f"no epoch had finished, nothing is saved; {again} (it starts afresh)"


def _parse_params(items: Sequence[str]) -> dict:
    """`--param KEY=VALUE` items as a dict; VALUE is parsed as JSON when it can be."""
    params = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--param needs KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        params[key] = _parse_value(value)
    return params


def _experiments_epilog() -> str:
    from .experiments import registered_experiments

    names = " ".join(registered_experiments())
    return "experiments (python -m thesis_lib list shows their params):\n" + textwrap.fill(
        names, width=LINE_WIDTH - 4, initial_indent="  ", subsequent_indent="  "
    )


def _command(args: argparse.Namespace) -> int:
    if args.command == "profiles":
        for profile in PROFILES.values():
            print(json.dumps(profile.to_dict()))
        return 0
    if args.command == "list":
        print("\n".join(list_experiments(args.profile, args.modules)))
        return 0
    if args.command == "runs":
        from .experiments import cached_runs

        table = select_runs(cached_runs(args.profile, args.experiment), _parse_params(args.param))
        if table.empty:
            print(
                f"no cached runs of {args.experiment or 'any experiment'}{_selection(args.param)} on profile "
                f"{args.profile!r}"
            )
            return 0
        print("\n".join(runs_lines(table, long=args.long)))
        return 1 if (table["status"] == "damaged").any() else 0
    if args.command == "clean":
        return clean_runs(args.profile, args.experiment, args.status, args.yes, _parse_params(args.param))
    if args.command == "plan":
        from .planning import plan_report

        print(
            plan_report(
                args.profile,
                args.only,
                calibrate_times=not args.no_calibrate,
                list_every_run=args.runs,
                steps=args.steps,
            )
        )
        return 0
    if getattr(args, "tensorboard", False):
        os.environ[TENSORBOARD_ENV] = "1"  # the kernels and torchrun's ranks inherit it
    if getattr(args, "download", False):
        os.environ[DOWNLOAD_ENV] = "1"  # load_dataset reads it, here and in the kernels and torchrun's ranks
    if args.command == "run":
        return _run_command(args)
    if args.executor:
        os.environ[EXECUTOR_ENV] = args.executor  # the kernels inherit it; their sweeps read it
    resolve_executor(None)  # a wrong THESIS_EXECUTOR is an error here, before any kernel starts
    start = time.perf_counter()
    outcomes = run_notebooks(args.profile, args.only, progress=not args.no_progress, jobs=args.jobs)
    print_summary(outcomes)
    print(f"wall time {(time.perf_counter() - start) / 60:.2f} min with {args.jobs} job(s)")
    if args.tensorboard:
        print(tensorboard_note(args.profile, since=time.time() - (time.perf_counter() - start)))
    return 0 if all(o.status == "ok" for o in outcomes) else 1


def _run_command(args: argparse.Namespace) -> int:
    """`run`: one run in this process, under torchrun as one rank of a DDP run, or (`--nproc`) launch torchrun."""
    from . import distributed
    from .experiments import resolve_params, run

    params = _parse_params(args.param)
    if args.nproc is not None:
        if distributed.under_torchrun():
            raise ValueError(
                f"this process runs under torchrun already (WORLD_SIZE={os.environ['WORLD_SIZE']}); drop --nproc"
            )
        forwarded = [
            *(["--debug"] if args.debug else []),
            *(arg for module in args.module for arg in ("--module", module)),
            "run",
            args.experiment,
            "--profile",
            args.profile,
            *(arg for item in args.param for arg in ("--param", item)),
        ]
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
        print(json.dumps({"path": str(result.path), "cached": result.loaded_from_cache, **result.summary}, indent=2))
        if args.tensorboard and result.loaded_from_cache:
            print(f"TensorBoard: {NOTHING_TRAINED}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
