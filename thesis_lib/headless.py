"""Headless re-runs of the notebooks (`python -m thesis_lib notebooks`): each numbered notebook through
papermill on a profile, its executed copy next to its figures (`figures/<profile>/<notebook>/`), with a
progress printer that reads the kernels' progress records and a summary of minutes per notebook.

Every kernel gets its own folder of Unix sockets (no TCP, no collisions between parallel kernels) and is
not interrupted at shutdown, so a re-run prints no kernel noise.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import project_root
from .experiments import get_profile, progress_dir


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
            raise ValueError(
                f"no notebook in {folder} starts with {unknown}; the notebooks are {[p.stem for p in notebooks]}"
            )
        notebooks = [p for p in notebooks if any(p.stem.startswith(prefix) for prefix in only)]
    return notebooks


def run_notebook(path: Path, profile: str, output_root: Path | None = None, progress: bool = True) -> NotebookOutcome:
    """Execute one notebook with papermill on `profile`; the executed copy goes next to its figures."""
    import papermill

    output_root = output_root or project_root() / "figures"
    out_dir = output_root / profile / path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # No environment is passed on: each notebook names itself and its profile (plots.use_notebook).
    try:
        with tempfile.TemporaryDirectory(prefix="thesis_kernel_") as sockets:
            papermill.execute_notebook(
                str(path),
                str(out_dir / path.name),
                parameters={"profile": profile},
                cwd=str(path.parent),
                progress_bar=progress,
                kernel_name="python3",
                kernel_manager_class=_kernel_manager_class(Path(sockets)),
            )
    except papermill.PapermillExecutionError as error:
        detail = f"{_source_cell(path, error.cell_index)}: {error.ename}: {error.evalue}"
        return NotebookOutcome(path.stem, "failed", (time.perf_counter() - start) / 60, detail)
    except Exception as error:  # a dead kernel (out of memory), a file that is not a notebook, ...
        detail = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        return NotebookOutcome(path.stem, "failed", (time.perf_counter() - start) / 60, detail)
    return NotebookOutcome(path.stem, "ok", (time.perf_counter() - start) / 60)


def _kernel_manager_class(sockets: Path) -> type:
    """A kernel that talks to papermill over Unix sockets in the folder `sockets` (one per kernel: kernels of
    parallel notebooks must not share socket names), where the system has them: over TCP every kernel warns
    that its traffic is unencrypted (nine warnings per re-run). It is not interrupted when it shuts down."""
    from jupyter_client import AsyncKernelManager
    from traitlets import default

    if os.name == "nt":
        return AsyncKernelManager

    class UnixSocketKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:
            return str(sockets / "kernel")  # jupyter_client appends the channel's number

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client interrupts every kernel before it asks it to shut down, and a kernel still busy
            # finishing logs "ERROR | KeyboardInterrupt caught in kernel" after a successful notebook. All
            # cells have finished when papermill shuts down; a kernel that does not exit is killed anyway.
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return UnixSocketKernelManager


def _source_cell(path: Path, executed_index: int) -> str:
    """Name the failing cell as it stands in the source notebook: papermill's executed copy has one more
    cell (the injected parameters) right after the `parameters` cell."""
    import nbformat

    cells = nbformat.read(path, as_version=4).cells
    tagged = [i for i, cell in enumerate(cells) if "parameters" in cell.metadata.get("tags", [])]
    index = executed_index - 1 if tagged and executed_index > tagged[0] else executed_index
    lines = cells[index].source.strip().splitlines() if 0 <= index < len(cells) else []
    return f"cell {index + 1} of {len(cells)} ({lines[0][:60]!r})" if lines else f"cell {index + 1}"


def run_notebooks(
    profile: str, only: Sequence[str] | None = None, progress: bool = True, jobs: int = 1
) -> list[NotebookOutcome]:
    """Execute the notebooks on `profile`, `jobs` at a time (each in its own kernel process); outcomes in
    notebook order. Notebooks that need the same run meet in the run store: one trains it under its lock,
    the others wait and load it, so parallel re-runs train every run once. `smoke` pins one
    intra-op thread per run and `quick` gives each notebook the cores divided by `jobs` (THESIS_JOBS, which
    the kernels inherit), so the machine is used either way; progress bars only with one job (parallel bars
    would interleave)."""
    get_profile(profile)
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    paths = find_notebooks(only)

    def execute(path: Path) -> NotebookOutcome:
        print(f"== {path.stem} ({profile})", flush=True)
        outcome = run_notebook(path, profile, progress=progress and jobs == 1)
        print(f"   {path.stem} {outcome.status} in {outcome.minutes:.2f} min {outcome.detail}", flush=True)
        return outcome

    previous = os.environ.get("THESIS_JOBS")
    os.environ["THESIS_JOBS"] = str(jobs)  # the kernels inherit it: every run's provenance names the jobs
    try:
        with ProgressPrinter(progress_dir(), interval=PROGRESS_INTERVAL):
            if jobs == 1:
                return [execute(path) for path in paths]
            with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads suffice: papermill waits on its kernel
                return list(pool.map(execute, paths))
    finally:
        if previous is None:
            del os.environ["THESIS_JOBS"]
        else:
            os.environ["THESIS_JOBS"] = previous


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

    def __enter__(self) -> ProgressPrinter:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        remove_stale_progress(self.folder)

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


def remove_stale_progress(folder: Path) -> list[Path]:
    """Delete (and return) the progress files in `folder` of processes that no longer run: a process removes
    its own at exit, one that was killed (a kernel after Ctrl-C) cannot."""
    stale = []
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            os.kill(int(path.stem), 0)
        except ValueError:  # not a process's file
            continue
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            stale.append(path)
        except PermissionError:  # another user's process: alive
            continue
    return stale


def print_summary(outcomes: Sequence[NotebookOutcome]) -> None:
    width = max([len(o.notebook) for o in outcomes] + [8])
    print(f"\n{'notebook':<{width}}  status  minutes")
    for o in outcomes:
        print(f"{o.notebook:<{width}}  {o.status:<6}  {o.minutes:7.2f}")
    print(f"{'total':<{width}}          {sum(o.minutes for o in outcomes):7.2f}")
    for o in outcomes:
        if o.status != "ok":
            print(f"FAILED {o.notebook}: {o.detail}")
