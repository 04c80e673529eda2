"""The run store: `run(name, params, profile=...)` trains one experiment or loads it when it has finished.

Results live in `results/<profile>/<name>/<config hash>/`:

    config.json    what was asked (experiment, version, params, profile): written first
    checkpoint_<phase>.pt  the Trainer's state after every epoch, while the run is unfinished (resume point)
    history.csv    one row per epoch
    summary.json   the run's scalar results
    model.pt       the final model (spec and weights)
    provenance.json  where and how it trained (`provenance`: machine, software, commit, times, neighbours)
    DONE           the seal, written last: size and sha256 of every result file

Every file is written atomically (`files.atomic_write`). A run folder is locked (`<folder>.lock`, the
filelock package) while one process trains it; a second process asking for the same run waits and then
loads it; different runs never block each other. The lock file stays next to its folder (only a run that
fails before its first checkpoint removes both, while holding the lock: see `_unlink_held_lock`). Loading
verifies the seal: a missing, truncated, garbled or replaced result file raises `CorruptRunError` naming
the folder and the file, never a wrong number; result files without a seal (and without a checkpoint to
resume from) are reported too, not trained over. A killed run resumes from its checkpoint; a run that fails
before its first checkpoint leaves no folder behind. Under torchrun (DDP) every rank trains and rank 0
alone locks, writes and seals the folder (see `run`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from filelock import FileLock, Timeout

from .. import distributed
from ..files import atomic_torch_save, write_text_atomic
from ..models import ResNet, ResNetSpec, build_resnet
from .profiles import Profile, get_profile, profile_root, results_root
from .provenance import gpu_model, machine, project_commit, timing_setting, utc_now
from .registry import RunContext, RunOutput, canonical, lookup, resolve_params


class CorruptRunError(RuntimeError):
    """A run folder whose results cannot be trusted: a broken seal, a damaged file, unsealed results."""


@dataclass
class RunResult:
    """A finished run, trained now or loaded from the cache."""

    name: str
    params: dict[str, Any]
    summary: dict[str, Any]
    history: pd.DataFrame
    path: Path
    loaded_from_cache: bool
    provenance: dict[str, Any] = field(default_factory=dict)

    def model(self, device: str | torch.device = "cpu") -> ResNet:
        """The run's final model, rebuilt from its saved spec."""
        try:
            state = torch.load(self.path / "model.pt", map_location=device, weights_only=False)
        except Exception as error:  # the seal was verified at load time: this is damage since then
            raise CorruptRunError(
                f"run {self.path}: model.pt cannot be read ({error}); delete that folder to run it again"
            ) from error
        if state["spec"] is None:
            raise ValueError(f"experiment {self.name!r} saved no model in {self.path}")
        model = build_resnet(ResNetSpec.from_dict(state["spec"]))
        model.load_state_dict(state["state_dict"])
        return model.to(device)


def config_hash(config: Mapping[str, Any]) -> str:
    text = json.dumps(canonical(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# The run key's scheme: what a run's folder name (the hash of `run_config`) is made of. A change of the rules
# below raises it, so that no folder written under other rules is ever taken for a run of these.
KEY_SCHEME = 2


def run_config(name: str, params: Mapping[str, Any], profile: Profile) -> dict[str, Any]:
    """Everything a run's results depend on; its hash names the run's folder (key scheme `KEY_SCHEME`).

    - the experiment and its version (raised when its results change);
    - its params, resolved first (`resolve_params`: defaults filled in), so `{}` and the same params
      written out name one run;
    - the profile's fields but its seed list (which only decides which runs a grid asks for: adding a seed
      reuses the runs of the others), the `cuda_*` fast-path fields only on CUDA, where they take effect;
    - the device: its type and, on CUDA, the GPU model, so that runs on two GPU models never mix (their
      times differ, and so may their numerics);
    - the world size: each DDP rank's BN normalises over its own share of the batch, so a run on more
      processes differs from one process's (one process under torchrun is the plain run, world size 1).
    """
    device = profile.resolved_device()
    on_cuda = device.type == "cuda"
    settings = {
        key: value
        for key, value in profile.to_dict().items()
        if key != "seeds" and (on_cuda or not key.startswith("cuda_"))
    }
    return {
        "key_scheme": KEY_SCHEME,
        "experiment": name,
        "version": lookup(name).version,
        "params": canonical(resolve_params(name, params, profile)),
        "profile": settings,
        "device": {"type": device.type, "gpu_model": gpu_model(device)} if on_cuda else {"type": device.type},
        "world_size": distributed.world_size(),
    }


def run_dir_for(name: str, params: Mapping[str, Any] | None, profile: str | Profile) -> Path:
    """The folder that holds (or will hold) this run's results (params resolved as `run` does)."""
    profile = get_profile(profile)
    return profile_root(profile) / name / config_hash(run_config(name, params or {}, profile))


SEAL = "DONE"


RESULT_FILES = ("history.csv", "summary.json", "model.pt", "provenance.json")


SEALED_FILES = ("config.json", *RESULT_FILES)  # the seal covers the config too: a run proves whose it is


ORPHAN_PATTERN = ".*.tmp"  # `atomic_write`'s temporary files, left by a kill between create and rename


LOAD_ATTEMPTS = 3  # a sealed run removed (`clean`) while it is read is looked up again, at most this often


class _RunChanged(RuntimeError):
    """The sealed run being read was removed or replaced meanwhile (a `clean` in another process)."""


def _corrupt(path: Path, problem: str) -> CorruptRunError:
    return CorruptRunError(
        f"run {path}: {problem}, so its results cannot be trusted; delete that folder to run it again"
    )


def _read_regular(path: Path, name: str) -> bytes:
    """The bytes of `path / name`, which must be a regular file: a FIFO or a device is damage (opened without
    blocking), and an unreadable or missing file is a `CorruptRunError` naming it, never a hang or a raw
    OSError."""
    file = path / name
    try:
        handle = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        problem = "is missing" if isinstance(error, FileNotFoundError) else f"cannot be read ({error.strerror})"
        raise _corrupt(path, f"the file {name} {problem}") from error
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise _corrupt(path, f"the file {name} is not a regular file (a folder, FIFO or device)")
        with os.fdopen(handle, "rb", closefd=False) as stream:
            return stream.read()
    except OSError as error:
        raise _corrupt(path, f"the file {name} cannot be read ({error.strerror})") from error
    finally:
        os.close(handle)


def _json_mapping(path: Path, name: str, data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as error:
        raise _corrupt(path, f"{name} is no valid JSON ({error})") from error
    if not isinstance(value, dict):
        raise _corrupt(path, f"{name} holds no mapping")
    return value


def _verified(path: Path, seal_bytes: bytes, expected: Mapping[str, Any] | None) -> dict[str, bytes]:
    """The sealed files' bytes, each checked against the seal's size and checksum, and the run's identity:
    the folder is named by the hash of its config.json, the seal by that name, and the config (where
    `expected` is given) holds `expected`'s values. A folder copied, linked or edited into another run's
    place fails here."""
    seal = _json_mapping(path, f"its seal {SEAL}", seal_bytes)
    listed = seal.get("files")
    if not isinstance(listed, dict) or set(listed) != set(SEALED_FILES):
        raise _corrupt(
            path,
            f"its seal {SEAL} lists no checksums of {list(SEALED_FILES)} (sealed before seals "
            "covered config.json, or a foreign format)",
        )
    contents = {}
    for name in SEALED_FILES:
        entry = listed[name]
        if not isinstance(entry, dict):
            raise _corrupt(path, f"its seal {SEAL} holds no size and checksum for {name}")
        data = _read_regular(path, name)
        if len(data) != entry.get("size"):
            raise _corrupt(path, f"{name} has {len(data)} bytes, the seal says {entry.get('size')}")
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise _corrupt(path, f"{name} does not match the checksum in its seal")
        contents[name] = data
    config = _json_mapping(path, "config.json", contents["config.json"])
    owner = config_hash(config)
    if owner != path.name:
        raise _corrupt(
            path,
            f"its config.json is that of run {owner}, not of run {path.name} (a run folder "
            "copied, linked or edited into another run's place)",
        )
    if seal.get("run") != path.name:
        raise _corrupt(path, f"its seal {SEAL} was written for run {seal.get('run')}, not for {path.name}")
    if expected is not None:
        asked = canonical(expected)
        found = {key: config.get(key) for key in asked}
        if found != asked:
            raise _corrupt(
                path,
                f"its config.json describes {json.dumps(found, sort_keys=True)}, not the run "
                f"asked for, {json.dumps(asked, sort_keys=True)}",
            )
    return contents


def _read_sealed(
    path: Path, expected: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """(summary, history, provenance) of the sealed run at `path`, parsed from exactly the bytes that were verified
    (`_verified`). Raises `_RunChanged` when the run was removed or resealed while being read."""
    seal_bytes = None
    try:
        seal_bytes = _read_regular(path, SEAL)
        contents = _verified(path, seal_bytes, expected)
    except CorruptRunError:
        if seal_bytes is None:
            if not os.path.lexists(path / SEAL):  # the caller saw it: removed since
                raise _RunChanged(f"run {path} was removed while it was read") from None
            raise
        try:
            now = _read_regular(path, SEAL)
        except CorruptRunError:
            now = None
        if now != seal_bytes:
            raise _RunChanged(f"run {path} was removed or replaced while it was read") from None
        raise
    summary = _json_mapping(path, "summary.json", contents["summary.json"])
    try:
        history = pd.read_csv(io.BytesIO(contents["history.csv"]))
    except ValueError as error:
        raise _corrupt(path, f"history.csv is no valid CSV ({error})") from error
    return summary, history, _json_mapping(path, "provenance.json", contents["provenance.json"])


def _orphans(path: Path) -> list[Path]:
    """Temporary files of `atomic_write` left in a run folder by a kill between creating and renaming."""
    return sorted(p for p in path.glob(ORPHAN_PATTERN) if p.is_file())


def _remove_leftovers(path: Path) -> None:
    """Remove what kills leave in a folder that no process writes to now (sealed, or locked by this one):
    orphan temporary files, and checkpoints of a sealed run. A folder that `remove_run` takes away meanwhile
    (a reader holds no lock) has nothing left to tidy."""
    try:
        for orphan in _orphans(path):
            orphan.unlink(missing_ok=True)
        if (path / SEAL).exists():
            for leftover in path.glob("checkpoint_*.pt"):  # a kill after sealing left it behind
                leftover.unlink(missing_ok=True)
    except FileNotFoundError:
        pass


def load_sealed(name: str, params: dict[str, Any], path: Path, expected: Mapping[str, Any]) -> RunResult:
    summary, history, provenance = _read_sealed(path, expected)
    _remove_leftovers(path)
    return RunResult(name, params, summary, history, path, loaded_from_cache=True, provenance=provenance)


def _check_unsealed(path: Path) -> None:
    """An unsealed folder may resume from a checkpoint; result files without a checkpoint are reported."""
    results = [name for name in RESULT_FILES if (path / name).exists()]
    if results and not any(path.glob("checkpoint_*.pt")):
        raise _corrupt(
            path,
            f"it holds {results} but no seal {SEAL} and no checkpoint to resume from (a "
            "deleted seal, or results copied in by hand)",
        )


def _seal(path: Path, output: RunOutput, seconds: float, provenance: Mapping[str, Any]) -> None:
    """Write the result files, each atomically, then the seal: the run's name and the size and checksum of
    config.json and every result file."""
    write_text_atomic(path / "history.csv", output.history.to_csv(index=False))
    write_text_atomic(path / "provenance.json", json.dumps(_jsonable(provenance), indent=2, sort_keys=True))
    write_text_atomic(path / "summary.json", json.dumps(_jsonable(output.summary), indent=2, sort_keys=True))
    model = output.model
    atomic_torch_save(
        {
            "spec": model.spec.to_dict() if model is not None else None,
            "state_dict": model.state_dict() if model is not None else None,
        },
        path / "model.pt",
    )
    files = {}
    for name in SEALED_FILES:
        data = _read_regular(path, name)
        files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    write_text_atomic(
        path / SEAL, json.dumps({"run": path.name, "seconds": seconds, "files": files}, indent=2, sort_keys=True)
    )


def _claim(path: Path, lock: FileLock, lock_timeout: float | None) -> bool:
    """Whether the run at `path` is to be trained now: True with its lock held, False when it is sealed
    (possibly by the process whose lock this one waited for). Raises for a locked-too-long or damaged run.
    With the lock held, orphan temporary files of an earlier kill are removed."""
    if (path / SEAL).exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire(timeout=-1 if lock_timeout is None else lock_timeout)
    except Timeout as error:
        raise RuntimeError(
            f"run {path} is locked by another process (lock file {lock.lock_file}) for more "
            f"than {lock_timeout} s; wait for it to finish"
        ) from error
    try:
        if (path / SEAL).exists():  # finished by the process we waited for
            lock.release()
            return False
        _check_unsealed(path)
        _remove_leftovers(path)
    except BaseException:
        if lock.is_locked:
            lock.release()
        raise
    return True


def _decide(path: Path, lock: FileLock, lock_timeout: float | None) -> bool:
    """`_claim` on rank 0; under DDP the other ranks follow its decision (or stop with its error)."""
    if distributed.rank() == 0:
        try:
            train = _claim(path, lock, lock_timeout)
        except BaseException as error:
            distributed.share(f"{type(error).__name__}: {error}")  # the other ranks stop with it
            raise
        distributed.share(train)
        return train
    train = distributed.share(None)
    if isinstance(train, str):
        raise RuntimeError(f"rank 0 could not start run {path}: {train}")
    return train


def _check_folder(path: Path) -> None:
    """A run's place must be a folder or free (one stat: no race with a concurrent removal)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        raise ValueError(f"the run folder {path} is a file; move it away or set THESIS_RESULTS elsewhere")


def run(
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    profile: str | Profile = "quick",
    progress: bool = True,
    lock_timeout: float | None = None,
) -> RunResult:
    """Run experiment `name` with `params` on `profile`, or load it when it has finished before.

    `params` are checked and completed by `resolve_params` before anything is written; the experiment
    function sees them typed (a ResNetConfig stays one), the result's `params` are their JSON form.

    While another process trains the same run, this one waits for its lock (at most `lock_timeout`
    seconds; None: as long as it takes) and then loads the finished run. A sealed run that another process
    removes while this one reads it is looked up again (trained anew if it is gone), never reported damaged.

    Under torchrun (`distributed.setup` done) every rank calls `run` and trains; rank 0 alone takes the
    lock, decides whether to train or load, and writes and seals the folder; the other ranks follow its
    decision (they wait for it in a collective, bounded by the process group's timeout) and, after a
    barrier, return the sealed result. The run's key names the world size when it is above 1
    (`run_config`).
    """
    profile = get_profile(profile)
    function = lookup(name).function
    typed = resolve_params(name, params, profile)
    params = canonical(typed)
    config = run_config(name, params, profile)
    path = profile_root(profile) / name / config_hash(config)
    lead = distributed.rank() == 0
    lock = FileLock(str(path) + ".lock")
    attempts = 1 if distributed.is_distributed() else LOAD_ATTEMPTS
    for attempt in range(attempts):
        _check_folder(path)
        train = _decide(path, lock, lock_timeout)
        if train:
            break
        try:
            return load_sealed(name, params, path, config)
        except _RunChanged:
            if attempt == attempts - 1:
                raise
    try:
        created = lead and not path.exists()
        if lead:
            path.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path / "config.json", json.dumps(config, indent=2, sort_keys=True))
        start = time.perf_counter()
        resumed = any(path.glob("checkpoint_*.pt"))
        context = RunContext(name=name, params=typed, profile=profile, run_dir=path, progress=progress)
        provenance = {**machine(context.device), "commit": project_commit(), "started": utc_now(), "resumed": resumed}
        try:
            output = function(context)
        except BaseException:
            if created and not any(path.glob("checkpoint_*.pt")):  # nothing to resume: leave no litter
                shutil.rmtree(path, ignore_errors=True)
                _unlink_held_lock(lock)
            raise
        if lead:
            context.look_for_other_runs()
            provenance.update(ended=utc_now(), other_training_processes=len(context.beside))
            _seal(path, output, time.perf_counter() - start, provenance)
            for checkpoint in path.glob("checkpoint_*.pt"):
                checkpoint.unlink(missing_ok=True)  # a reader of the sealed run may remove it too
        distributed.barrier()  # the other ranks read the run once rank 0 has sealed it
        history = output.history if lead else pd.read_csv(path / "history.csv")
        summary = json.loads((path / "summary.json").read_text())
        provenance = json.loads((path / "provenance.json").read_text())
        return RunResult(name, params, summary, history, path, loaded_from_cache=False, provenance=provenance)
    finally:
        if lead:
            lock.release()


def _unlink_held_lock(lock: FileLock) -> None:
    """Remove the lock file of a run that left nothing behind, while still holding it. Safe with filelock
    >= 4.3: a process that was waiting on the unlinked file sees it unlinked after its flock and opens the
    path again, so two processes never hold the run at once (`test_cli_new_user` checks this)."""
    Path(lock.lock_file).unlink(missing_ok=True)


def _orphan_note(path: Path) -> str:
    orphans = _orphans(path)
    if not orphans:
        return ""
    size = sum(p.stat().st_size for p in orphans if p.exists())
    return (
        f"{len(orphans)} orphan temporary file{'s' if len(orphans) > 1 else ''} ({size / 1024:.0f} KB, left "
        "by a kill; removed when the run is next opened)"
    )


def run_status(path: Path) -> dict[str, Any]:
    """What a run folder holds, without training or changing it: status "finished" (seal and identity
    verified), "damaged" (the `CorruptRunError` message, or a file that cannot be read), "partial" (a
    checkpoint, epochs done) or "empty"; plus the params and, for a finished run, its headline numbers
    (final_acc, epochs, total_time) and where it trained (`provenance`: machine, beside = other training
    processes active during it, commit, started). `detail` says what else it found (orphan temporary files)."""
    for attempt in range(LOAD_ATTEMPTS):
        try:
            return _status(path)
        except _RunChanged as error:
            if attempt == LOAD_ATTEMPTS - 1:
                return {
                    "folder": str(path),
                    "experiment": path.parent.name,
                    "params": "",
                    "dataset": None,
                    "status": "damaged",
                    "detail": str(error),
                }
    raise AssertionError("unreachable")


def _status(path: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"folder": str(path), "status": "empty"}
    try:
        config = _json_mapping(path, "config.json", _read_regular(path, "config.json"))
        row["experiment"], row["params"] = config.get("experiment"), json.dumps(config.get("params"))
        row["dataset"] = (config.get("profile") or {}).get("dataset")
    except (CorruptRunError, AttributeError):
        row["experiment"], row["params"], row["dataset"] = path.parent.name, "", None
    try:
        notes = [_orphan_note(path)]
        if (path / SEAL).exists():
            try:
                summary, _, provenance = _read_sealed(path)
            except CorruptRunError as error:
                return {**row, "status": "damaged", "detail": "; ".join([str(error), *filter(None, notes)])}
            return {
                **row,
                "status": "finished",
                "detail": "; ".join(filter(None, notes)),
                **{k: summary.get(k) for k in ("final_acc", "epochs", "total_time")},
                "machine": timing_setting(provenance),
                "beside": provenance["other_training_processes"],
                "commit": provenance["commit"],
                "started": provenance["started"],
            }
        checkpoints = sorted(path.glob("checkpoint_*.pt"), key=lambda p: p.stat().st_mtime)
        if checkpoints:
            reached = [_checkpoint_progress(checkpoint) for checkpoint in checkpoints]
            detail = "saved " + ", ".join(reached)
            return {
                **row,
                "status": "partial",
                "epochs": _checkpoint_epoch(checkpoints[-1]),
                "detail": "; ".join(filter(None, [detail, *notes])),
            }
        try:
            _check_unsealed(path)
        except CorruptRunError as error:
            return {**row, "status": "damaged", "detail": str(error)}
        return {**row, "detail": "; ".join(filter(None, notes))}
    except OSError as error:  # an unreadable folder: report it, never stop listing the other runs
        return {**row, "status": "damaged", "detail": f"run {path} cannot be read ({error})"}


def _checkpoint_epoch(checkpoint: Path) -> int:
    """The epochs a phase's checkpoint has finished; 0 for a torn one (that phase then starts afresh)."""
    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"])
    except Exception:
        return 0


def _checkpoint_progress(checkpoint: Path) -> str:
    """`phase train: epoch 24 of 80` for `checkpoint_train.pt`."""
    phase = checkpoint.stem.removeprefix("checkpoint_")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        return f"phase {phase}: epoch {int(state['epoch'])} of {int(state['config']['epochs'])}"
    except Exception:  # torn, or written before checkpoints carried their config
        return f"phase {phase}: a checkpoint that cannot be read (that phase starts afresh)"


def cached_runs(profile: str | Profile, experiment: str | None = None) -> pd.DataFrame:
    """One `run_status` row per run folder of `profile` (and `experiment`), sorted by experiment and folder;
    a folder removed while it is listed is left out."""
    profile = get_profile(profile)
    if experiment is not None:
        lookup(experiment)  # an unknown name is an error, not "no cached runs"
    root = profile_root(profile)
    folders = sorted(p for p in root.glob(f"{experiment or '*'}/*") if not p.name.startswith(".") and p.is_dir())
    columns = [
        "experiment",
        "dataset",
        "status",
        "final_acc",
        "epochs",
        "total_time",
        "beside",
        "machine",
        "commit",
        "started",
        "params",
        "folder",
        "detail",
    ]
    rows = [run_status(folder) for folder in folders]
    return pd.DataFrame([row for row in rows if os.path.lexists(row["folder"])], columns=columns)


def remove_run(path: Path) -> None:
    """Delete one run folder of the results root, unless a process holds its lock (RuntimeError then).

    The folder is first renamed away (atomically, to a hidden name beside it) and then deleted, so a reader
    never sees half a run: it finds the run whole or not at all (`run` then looks it up again). A symlink in
    a run's place is removed itself, never its target. Refuses any folder that is not
    `<results root>/<profile>/<experiment>/<hash>`; the lock file stays (a process waiting on it would
    otherwise lose the lock)."""
    root = results_root().resolve()
    folder = Path(path).absolute().parent.resolve() / Path(path).name
    if folder.parent.parent.parent != root or not folder.is_dir() or folder.name.startswith("."):
        raise ValueError(f"{path} is not a run folder under the results root {root}; nothing deleted")
    lock = FileLock(str(folder) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout as error:
        raise RuntimeError(f"run {folder} is locked by a running process; not deleted") from error
    try:
        if folder.is_symlink():
            folder.unlink()
            return
        trash = folder.with_name(f".{folder.name}.removing-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(folder, trash)
        shutil.rmtree(trash)
    finally:
        lock.release()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
