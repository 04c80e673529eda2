"""Progress of running processes: one JSON record per process (read by `notebooks` for runs done, epoch and
ETA), and the Trainer's epoch callback of the run store (progress, optional TensorBoard)."""

from __future__ import annotations

import atexit
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import distributed
from ..files import write_text_atomic
from ..training import TENSORBOARD_ENV, TensorBoardLogger, Trainer
from .profiles import results_root

PROGRESS_DIR = ".progress"


_progress: dict[str, Any] = {}


_progress_files: set[Path] = set()


def progress_dir() -> Path:
    """Where running processes report their progress (one JSON file per process, `report_progress`)."""
    return results_root() / PROGRESS_DIR


def report_progress(**fields: Any) -> None:
    """Merge `fields` into this process's progress record and write it atomically to
    `progress_dir()/<pid>.json`, with the notebook (THESIS_NOTEBOOK, which `plots.use_notebook` sets) and
    the time, host and process id. The `notebooks` command reads these files to print runs done, epoch and ETA during a
    headless re-run. Reporting never stops a run: a folder that cannot be written is skipped. Under DDP
    rank 0 reports for all ranks."""
    if distributed.rank() != 0:
        return
    _progress.update(
        fields,
        notebook=os.environ.get("THESIS_NOTEBOOK", f"process {os.getpid()}"),
        updated=time.time(),
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    folder = progress_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        record = folder / f"{os.getpid()}.json"
        if record not in _progress_files:
            _progress_files.add(record)
            atexit.register(record.unlink, missing_ok=True)  # no stale record once the process ends
        write_text_atomic(record, json.dumps(_progress))
    except OSError:
        pass


@dataclass
class EpochReporter:
    """A Trainer's `epoch_callback` for the run store: reports the epoch to `report_progress` and, when
    THESIS_TENSORBOARD=1 (`notebooks --tensorboard`), logs it for TensorBoard into
    `<run folder>/tensorboard/<readable params>/<phase>` with the run's params as hparams (live curves:
    `tensorboard --logdir results/<profile>`; each run shows as `<experiment>/<hash>/tensorboard/<params>`).
    The record's `trained` time tells other runs that this process trains (`provenance`); `after_report` is
    called after each report (the run store's look for other training processes)."""

    run: str
    run_dir: Path
    phase: str
    params: Mapping[str, Any] = field(default_factory=dict)
    after_report: Callable[[], None] | None = None
    _tensorboard: TensorBoardLogger | None = None

    def __call__(self, trainer: Trainer, record: Mapping[str, Any]) -> None:
        report_progress(
            run=self.run,
            phase=self.phase,
            epoch=int(record["epoch"]),
            epochs=trainer.config.epochs,
            trained=time.time(),
        )
        if self.after_report is not None:
            self.after_report()
        if os.environ.get(TENSORBOARD_ENV) != "1":
            return
        if self._tensorboard is None:
            folder = self.run_dir / "tensorboard" / readable_params(self.params) / self.phase
            self._tensorboard = TensorBoardLogger(folder, {"experiment": self.run, "phase": self.phase, **self.params})
        self._tensorboard(trainer, record)


def readable_params(params: Mapping[str, Any], limit: int = 100) -> str:
    """`params` as one folder name, `key=value` joined by commas (cut at `limit` characters): TensorBoard
    names a run by its folder."""

    def shown(value: Any) -> str:
        return (
            value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        )

    text = ",".join(f"{key}={shown(value)}" for key, value in sorted(params.items())) or "defaults"
    return "".join(c if c.isalnum() or c in "=,.-_" else "_" for c in text)[:limit]
