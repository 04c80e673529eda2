"""What every benchmark shares: `--device` with one meaning and one default (cuda where there is one, else
cpu; each benchmark adds its own arguments to `benchmark_parser(__doc__)`), and `save_results`, which writes
its table to `benchmarks/results/<benchmark>_<device>_<commit>.csv`."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch

from thesis_lib.experiments.provenance import cpu_model, git_state, gpu_model
from thesis_lib.files import write_text_atomic

DEVICES = ("cpu", "cuda")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def benchmark_parser(doc: str | None) -> argparse.ArgumentParser:
    """An ArgumentParser described by the first paragraph of the benchmark's docstring, with `--device`."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default=default_device(),
        help="where to run (default: cuda where there is one, else cpu)",
    )
    return parser


RESULTS = Path(__file__).resolve().parent / "results"


def device_name(device: str) -> str:
    """The GPU's name on cuda, the CPU's model name on cpu (as a run's provenance names them)."""
    return gpu_model(torch.device(device)) or cpu_model()


def commit() -> str:
    """The project's commit (short hash, "-dirty" with uncommitted changes), or "uncommitted" outside git."""
    state = git_state(RESULTS.parent.parent)
    if state is None:
        return "uncommitted"
    head, dirty = state[0][:7], state[1]
    return f"{head}-dirty" if dirty else head


def save_results(rows: Sequence[Mapping[str, object]], benchmark: str, device: str, folder: Path = RESULTS) -> Path:
    """`rows` as `<folder>/<benchmark>_<device name>_<commit>.csv`, each row with the device, commit, torch
    version and command line, so that documentation links to a measured file instead of copying numbers."""
    name = device_name(device)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    frame = pd.DataFrame(list(rows)).assign(
        device=name, commit=commit(), torch=torch.__version__, command=" ".join(["python", *sys.argv])
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{benchmark}_{slug}_{commit()}.csv"
    write_text_atomic(path, frame.to_csv(index=False))
    print(f"results: {path}")
    return path
