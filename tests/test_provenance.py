"""Provenance: every run folder records where and how it trained, and who trained beside it."""

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime

import pytest
import torch

from thesis_lib.experiments import progress_dir, run, sweep
from thesis_lib.experiments.provenance import other_training_processes, project_commit, timing_setting

FIELDS = {
    "host",
    "cpu_model",
    "cpu_threads",
    "device",
    "gpu_model",
    "gpu_driver",
    "cuda",
    "cudnn",
    "torch",
    "python",
    "thesis_lib",
    "notebook_jobs",
    "executor",
    "commit",
    "started",
    "ended",
    "resumed",
    "other_training_processes",
}


def test_a_run_folder_records_where_and_how_it_trained(isolated_results, monkeypatch):
    monkeypatch.setenv("THESIS_JOBS", "2")
    result = run("baseline", {"model": "narrow", "seed": 0}, profile="smoke", progress=False)
    provenance = result.provenance
    assert set(provenance) == FIELDS
    assert provenance == json.loads((result.path / "provenance.json").read_text())
    assert (provenance["device"], provenance["gpu_model"], provenance["cuda"]) == ("cpu", None, None)
    assert provenance["cpu_threads"] == 1  # the smoke profile pins one intra-op thread
    assert (provenance["torch"], provenance["host"]) == (torch.__version__, socket.gethostname())
    assert (provenance["notebook_jobs"], provenance["executor"]) == (2, "serial")
    assert provenance["commit"] == "uncommitted (no git checkout)"  # THESIS_ROOT is a bare folder here
    assert datetime.fromisoformat(provenance["started"]) <= datetime.fromisoformat(provenance["ended"])
    assert provenance["other_training_processes"] == 0 and not provenance["resumed"]
    assert run("baseline", {"model": "narrow", "seed": 0}, profile="smoke", progress=False).provenance == provenance
    assert timing_setting(provenance) == f"{provenance['cpu_model']}, 1 thread, torch {torch.__version__}"


def _report_training(pid: int, trained: float) -> None:
    folder = progress_dir()
    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": socket.gethostname(), "trained": trained, "run": "baseline"}
    (folder / f"{pid}.json").write_text(json.dumps(record))


@pytest.fixture()
def neighbour():
    """Another live process (it sleeps) that the tests let report training epochs."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


def test_a_run_beside_another_training_process_counts_it_and_its_sweep_says_so(isolated_results, neighbour):
    _report_training(neighbour, time.time() + 1)  # an epoch reported while this run trains
    frame = sweep("baseline", [{"model": "narrow", "seed": 0}], profile="smoke", progress=False)
    assert frame.runs[0].provenance["other_training_processes"] == 1
    assert frame.summary["timed_alone"].tolist() == [False]
    assert frame.summary["timing_setting"].tolist() == [timing_setting(frame.runs[0].provenance)]


def test_ended_stale_and_own_progress_records_are_not_neighbours(isolated_results, neighbour):
    since = time.time()
    _report_training(neighbour, since - 5)  # its last epoch before this run started
    _report_training(os.getpid(), since + 1)  # this process itself
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _report_training(dead.pid, since + 1)  # a process that has ended (its record outlived it)
    assert other_training_processes(since) == set()
    _report_training(neighbour, since + 1)
    assert other_training_processes(since) == {f"{socket.gethostname()}:{neighbour}"}


def test_the_commit_names_uncommitted_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("THESIS_ROOT", str(tmp_path))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "code.py").write_text("a = 1\n")
    subprocess.run([*git, "add", "code.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (tmp_path / "notes.txt").write_text("untracked files do not change the code\n")
    assert project_commit() == head
    (tmp_path / "code.py").write_text("a = 2\n")
    assert project_commit() == f"{head} with uncommitted changes"
