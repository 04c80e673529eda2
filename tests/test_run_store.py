"""The run store never hands back wrong results: seal and verify, no litter, locks, divergence, the disk.

Each damage drill of `../shared/reviews/run-store-drills.md` is one parametrised case here.
"""

import hashlib
import json
import multiprocessing
import os
import shutil

import pytest
import torch

from thesis_lib.data import load_dataset
from thesis_lib.experiments import SEAL, CorruptRunError, run, run_dir_for
from thesis_lib.files import atomic_torch_save, atomic_write
from thesis_lib.methods.net2net import Net2NetHook
from thesis_lib.methods.prunetrain import PruneTrain
from thesis_lib.models import ResNetConfig
from thesis_lib.training import TrainConfig, Trainer, seeded_model

PARAMS = {"model": "narrow", "schedule": "constant", "seed": 3}
NET = ResNetConfig(stages=2, blocks=(1, 1), widths=(4, 8), in_channels=1, num_classes=10)


def finished(isolated_results):
    return run("baseline", PARAMS, profile="smoke", progress=False)


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def cut_last_row(path):  # history.csv with one epoch less: still a valid CSV
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))


def garble(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def empty(path):
    path.write_bytes(b"")


def delete(path):
    path.unlink()


def replace_by_folder(path):
    path.unlink()
    path.mkdir()


def replace_value_by_text(path):  # one number of the history becomes "abc": same length, other content
    text = path.read_text()
    lines = text.splitlines()
    cells = lines[1].split(",")
    cells[3] = "abc"[: len(cells[3])].ljust(len(cells[3]), "x")
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")


DAMAGES = [truncate, cut_last_row, garble, empty, delete, replace_by_folder, replace_value_by_text]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("file", ["history.csv", "summary.json", "model.pt", SEAL])
def test_every_damage_to_a_sealed_run_is_a_corrupt_run_error_naming_folder_and_file(isolated_results, file, damage):
    if damage in (cut_last_row, replace_value_by_text) and file not in ("history.csv",):
        pytest.skip("a text edit of a CSV")
    result = finished(isolated_results)
    damage(result.path / file)
    expected = SEAL if file == SEAL and damage is not delete else (file if file != SEAL else "no seal")
    with pytest.raises(CorruptRunError, match="delete that folder") as error:
        run("baseline", PARAMS, profile="smoke", progress=False)
    assert str(result.path) in str(error.value) and expected in str(error.value)


def test_a_summary_that_is_not_a_mapping_is_corrupt_even_with_a_matching_seal(isolated_results):
    result = finished(isolated_results)
    (result.path / "summary.json").write_text("[]")
    seal = json.loads((result.path / SEAL).read_text())
    seal["files"]["summary.json"] = {"size": 2, "sha256": hashlib.sha256(b"[]").hexdigest()}
    (result.path / SEAL).write_text(json.dumps(seal))
    with pytest.raises(CorruptRunError, match="summary.json holds no mapping"):
        run("baseline", PARAMS, profile="smoke", progress=False)


def test_the_seal_lists_every_result_file_and_leftover_checkpoints_go_on_the_next_load(isolated_results):
    result = finished(isolated_results)
    seal = json.loads((result.path / SEAL).read_text())
    assert sorted(seal["files"]) == ["config.json", "history.csv", "model.pt", "provenance.json", "summary.json"]
    assert seal["run"] == result.path.name
    assert seal["files"]["model.pt"]["size"] == (result.path / "model.pt").stat().st_size
    (result.path / "checkpoint_train.pt").write_bytes(b"left by a kill after sealing")
    again = run("baseline", PARAMS, profile="smoke", progress=False)
    assert again.loaded_from_cache and not (result.path / "checkpoint_train.pt").exists()


def test_result_files_are_readable_by_others_as_the_umask_allows(isolated_results):
    previous = os.umask(0o022)
    try:
        result = finished(isolated_results)
    finally:
        os.umask(previous)
    for name in ("config.json", "history.csv", "summary.json", "model.pt", SEAL):
        assert (result.path / name).stat().st_mode & 0o777 == 0o644, name


def test_a_seal_entry_without_size_and_checksum_is_corrupt(isolated_results):
    result = finished(isolated_results)
    seal = json.loads((result.path / SEAL).read_text())
    seal["files"]["history.csv"] = "abc"
    (result.path / SEAL).write_text(json.dumps(seal))
    with pytest.raises(CorruptRunError, match="no size and checksum for history.csv"):
        run("baseline", PARAMS, profile="smoke", progress=False)


def test_a_folder_that_is_a_file_is_a_clear_error(isolated_results):
    path = run_dir_for("baseline", PARAMS, "smoke")
    path.parent.mkdir(parents=True)
    path.write_text("not a folder")
    with pytest.raises(ValueError, match="is a file"):
        run("baseline", PARAMS, profile="smoke", progress=False)


def test_a_failed_validation_leaves_no_folder(isolated_results):
    with pytest.raises(ValueError, match="param 'model' of experiment 'baseline' must be"):
        run("baseline", {"model": "medium"}, profile="smoke", progress=False)
    assert not (isolated_results / "results" / "smoke" / "baseline").exists()


def test_a_diverging_run_fails_clearly_and_is_not_sealed(isolated_results):
    params = {"model": "narrow", "lr": 1e20, "seed": 0}
    with pytest.raises(FloatingPointError, match=r"epoch 1 \(steps 1\.\.4\).*lr 1e\+20"):
        run("baseline", params, profile="smoke", progress=False)
    assert not run_dir_for("baseline", params, "smoke").exists()  # failed before its first checkpoint: no litter
    with pytest.raises(ValueError, match="finite"):
        TrainConfig(lr=float("inf"))


def test_a_checkpoint_of_another_experiment_is_reported(tmp_path):
    data = load_dataset("digits").subset(64, 32, seed=0)
    config = TrainConfig(epochs=1, batch_size=32, augment=False, schedule="constant")
    Trainer(
        seeded_model(NET, 0), data, config, hooks=[PruneTrain()], checkpoint_path=tmp_path / "c.pt", progress=False
    ).fit()
    with pytest.raises(RuntimeError, match=r"hooks \['PruneTrain'\].*\['Net2NetHook'\].*another run"):
        Trainer(
            seeded_model(NET, 0),
            data,
            config,
            hooks=[Net2NetHook({})],
            checkpoint_path=tmp_path / "c.pt",
            progress=False,
        )


def _run_in_process(results: str, queue) -> None:
    os.environ["THESIS_RESULTS"] = results
    torch.set_num_threads(1)
    result = run("baseline", PARAMS, profile="smoke", progress=False)
    queue.put((result.summary["final_acc"], result.loaded_from_cache, result.history["train_loss"].tolist()))


def test_two_processes_on_one_run_both_succeed_with_identical_results(isolated_results):
    context = multiprocessing.get_context("spawn")
    for attempt in range(2):
        results = str(isolated_results / f"results_{attempt}")
        queue = context.Queue()
        workers = [context.Process(target=_run_in_process, args=(results, queue)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert [worker.exitcode for worker in workers] == [0, 0]
        outcomes = [queue.get(timeout=5) for _ in workers]
        assert outcomes[0][0] == outcomes[1][0] and outcomes[0][2] == outcomes[1][2]
        assert sorted(o[1] for o in outcomes) == [False, True]  # one trained, the other waited and loaded


def test_concurrent_writers_to_one_path_never_mix_or_fail(tmp_path):
    target = tmp_path / "state.pt"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(str(target), value)) for value in (1.0, 2.0)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    state = torch.load(target)
    assert torch.all(state == state[0]) and float(state[0]) in (1.0, 2.0)
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # no temporary file left


def _write_many(path: str, value: float) -> None:
    for _ in range(100):
        atomic_torch_save(torch.full((1000,), value), path)


def test_a_failed_write_names_the_path_and_keeps_the_previous_file(tmp_path):
    target = tmp_path / "model.pt"
    atomic_torch_save(torch.ones(3), target)

    def disk_full(stream):
        stream.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match=r"cannot write .*model\.pt: No space left on device"):
        atomic_write(target, disk_full)
    assert torch.equal(torch.load(target), torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        if os.access(read_only, os.W_OK):
            pytest.skip("running as a user that may write anywhere (root): no read-only folder to try")
        with pytest.raises(OSError, match="cannot write"):
            atomic_torch_save(torch.ones(1), read_only / "x.pt")
    finally:
        read_only.chmod(0o700)
        shutil.rmtree(read_only)
