"""Where and how a run trained: the machine, the software, the project's commit, the time, and the other
training processes of the run store that were active beside it (read from their progress records).

Every run folder holds this as `provenance.json`, sealed with its results (`store`). Times are only
compared between runs of one timing setting (`timing_setting`: device model, threads, torch) that trained
alone (`TIMING_COLUMNS`, used by `stats.compare_groups`): a gap between two such groups is the methods',
not the machines' or the neighbours'.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .. import __version__, project_root
from .profiles import notebook_jobs
from .progress import progress_dir

# The sweep summary's columns that say whether two runs' seconds may be compared (`stats.compare_groups`).
TIMING_COLUMNS = ("timing_setting", "timed_alone")

# A progress record counts as another training process while its last epoch is at most this old at a
# check: an epoch of the small profiles takes seconds, and even a `full` epoch on the CPU reports well within.
ACTIVE_WITHIN_SECONDS = 900.0


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpu_model(device: torch.device) -> str | None:
    """The CUDA device's model name (e.g. "NVIDIA H100 80GB HBM3"); None for another device."""
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_name(device)


def _gpu_driver() -> str | None:
    """The NVIDIA driver version from nvidia-smi, None where it cannot be asked."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


def git_state(root: Path | None = None) -> tuple[str, bool] | None:
    """(HEAD's commit, whether tracked files differ from it) of the git checkout at `root` (default the
    project's root); None where it is no git checkout."""
    root = root or project_root()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit, bool(changed)


def project_commit() -> str:
    """The project's git commit, "<commit> with uncommitted changes" when tracked files differ from it, or
    "uncommitted (no git checkout)" where the project is no git checkout."""
    state = git_state()
    if state is None:
        return "uncommitted (no git checkout)"
    commit, changed = state
    return f"{commit} with uncommitted changes" if changed else commit


def machine(device: torch.device) -> dict[str, Any]:
    """Host, CPU, threads, device and GPU model, driver, CUDA and cuDNN, torch, Python, thesis_lib."""
    on_cuda = device.type == "cuda"
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_threads": torch.get_num_threads(),
        "device": device.type,
        "gpu_model": gpu_model(device),
        "gpu_driver": _gpu_driver() if on_cuda else None,
        "cuda": torch.version.cuda if on_cuda else None,
        "cudnn": torch.backends.cudnn.version() if on_cuda else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "thesis_lib": __version__,
        "notebook_jobs": notebook_jobs(),
        "executor": os.environ.get("THESIS_EXECUTOR") or "serial",
    }


def other_training_processes(since: float) -> set[str]:
    """The other processes (host:pid) whose progress record reports an epoch trained after `since` (a
    time.time()) and within `ACTIVE_WITHIN_SECONDS`: the run store's training processes beside this one.
    Records of processes that ended on this host are not counted (their file may outlive a kill)."""
    here, own, now = socket.gethostname(), os.getpid(), time.time()
    found = set()
    try:
        records = list(progress_dir().glob("*.json"))
    except OSError:
        return found
    for path in records:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # replaced or removed while read: its next report is seen at the next check
        trained, host, pid = record.get("trained"), record.get("host", here), record.get("pid")
        if not isinstance(trained, (int, float)) or not isinstance(pid, int) or (host == here and pid == own):
            continue
        if trained < since or now - trained > ACTIVE_WITHIN_SECONDS:
            continue
        if host == here and not _alive(pid):
            continue
        found.add(f"{host}:{pid}")
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def timing_setting(provenance: dict[str, Any]) -> str:
    """What a run's seconds depend on besides its work: the device model, threads and torch version
    ("NVIDIA H100 80GB HBM3, torch 2.14.1" or "AMD EPYC 7B13, 1 thread, torch 2.14.1")."""
    if provenance.get("gpu_model"):
        return f"{provenance['gpu_model']}, torch {provenance['torch']}"
    threads = provenance["cpu_threads"]
    return f"{provenance['cpu_model']}, {threads} thread{'s' if threads != 1 else ''}, torch {provenance['torch']}"


def timing_columns(provenance: dict[str, Any]) -> dict[str, Any]:
    """The `TIMING_COLUMNS` of one run: its timing setting and whether it trained alone."""
    return {"timing_setting": timing_setting(provenance), "timed_alone": provenance["other_training_processes"] == 0}
