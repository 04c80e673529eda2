"""Files written atomically: a reader, a crash or a second writer never sees half a file.

The one writer of the package: the run store's results and seals, the Trainer's checkpoints, the progress
records, the figures and the tables all go through `atomic_write`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file so that a reader (or a crash) never sees half of it: `write(stream)` fills a temporary
    file with a unique name in the target folder, which is flushed and fsync'ed, renamed over `path`, and
    the folder is fsync'ed too. Concurrent writers to one path never share a temporary file. A failure
    (disk full, a read-only folder) removes the temporary file, keeps any previous `path`, and raises an
    OSError that names the path and the cause."""
    path = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise OSError(error.errno, f"cannot write {path}: {error.strerror}") from error
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
            os.fchmod(stream.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; others must read results
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except (OSError, RuntimeError) as error:
        Path(temporary).unlink(missing_ok=True)
        cause = getattr(error, "strerror", None) or str(error)
        hint = " (is the disk full or the folder read-only?)" if not isinstance(error, OSError) else ""
        raise OSError(
            getattr(error, "errno", None),
            f"cannot write {path}: {cause}{hint}; the previous version of the file, if any, is kept",
        ) from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through `atomic_write`: a kill, a crash or a second writer never leaves half a file."""
    atomic_write(Path(path), lambda stream: torch.save(obj, stream))


def write_text_atomic(path: Path, text: str) -> None:
    """`text` as UTF-8 through `atomic_write`."""
    atomic_write(Path(path), lambda stream: stream.write(text.encode("utf-8")))
