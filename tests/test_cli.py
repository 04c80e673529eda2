"""The command line: every subcommand, its documented errors (one message, exit 2) and exit codes."""

import json
import re
import time

import pytest

from thesis_lib.cli import main
from thesis_lib.experiments import SEAL, run


def test_list_names_every_experiment_with_its_chapter(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = {line.split()[0]: line.split()[2] for line in lines if not line.startswith(" ")}
    assert names["prune_grow"] == "06_3_prunetrain_net2net" and names["baseline"] == "03_baseline"
    from thesis_lib.chapters import CHAPTERS

    assert set(names) == {name for chapter in CHAPTERS for name in chapter.experiments}
    following = lines[lines.index(next(line for line in lines if line.startswith("baseline "))) + 1 :]
    description = [line for line in following if line.startswith("    ") and not line.startswith("      ")]
    assert " ".join(line.strip() for line in description[:4]).startswith("Chapter 3.1.4: train the wide or narrow")
    assert all(len(line) <= 120 for line in lines)
    baseline = [line for line in following if line.startswith("      ")][:5]
    assert [line.strip() for line in baseline] == [
        "model: 'wide' | 'narrow' | ResNetConfig = 'wide'",
        "schedule: 'step' | 'constant' | 'poly' = 'step'",
        "seed: int = 0, in [0, 2^63)",
        "ghost_batch: int | None = None, >= 1",
        "and any TrainConfig field (e.g. lr, batch_size, epochs, milestones, precision)",
    ]


def test_runs_reports_finished_partial_and_damaged_runs(isolated_results, capsys):
    assert main(["runs", "--profile", "smoke"]) == 0
    assert "no cached runs" in capsys.readouterr().out
    good = run("baseline", {"model": "narrow", "seed": 0}, profile="smoke", progress=False)
    bad = run("baseline", {"model": "narrow", "seed": 1}, profile="smoke", progress=False)
    assert main(["runs", "baseline", "--profile", "smoke"]) == 0
    header, *rows, cut_note, where = capsys.readouterr().out.splitlines()
    assert cut_note.startswith("(lines cut at 120 columns") and [row.split()[1] for row in rows] == ["finished"] * 2
    assert header.split()[5] == "beside" and [row.split()[5] for row in rows] == ["0", "0"]  # no neighbours
    assert where.startswith(f"trained on {good.provenance['cpu_model']}, 1 thread, torch ") and where.endswith(
        ": 2 runs"
    )
    (bad.path / "history.csv").write_text("epoch\n1\n")
    partial = bad.path.parent / "0000000000000000"
    partial.mkdir()
    (partial / "checkpoint_train.pt").write_bytes(b"")
    assert main(["runs", "--profile", "smoke"]) == 1  # a damaged run is a non-zero exit
    out = capsys.readouterr().out
    assert f"damaged: {bad.path.name}" in out and "history.csv" in out and f"partial: {partial.name}" in out
    assert good.path.name in out and (good.path / SEAL).exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "nothing", "--profile", "smoke"], "unknown experiment 'nothing'"),
        (["run", "baseline", "--profile", "smoke", "--param", 'model="medium"'], "param 'model' .* got 'medium'"),
        (["run", "baseline", "--profile", "smoke", "--param", "seed=abc"], "param 'seed' .* must be int, got 'abc'"),
        (["run", "baseline", "--profile", "smoke", "--param", "epochs=2.5"], "param 'epochs' .* got 2.5"),
        (
            ["run", "baseline", "--profile", "smoke", "--param", "batch_size=0"],
            "^error: batch_size must be >= 1, got 0$",
        ),
        (["run", "baseline", "--profile", "smoke", "--param", "seed"], "--param needs KEY=VALUE, got 'seed'"),
        (["runs", "nothing", "--profile", "smoke"], "unknown experiment 'nothing'"),
        (["clean", "nothing", "--profile", "smoke"], "unknown experiment 'nothing'"),
        (["runs", "--profile", "smoke", "--param", "seed"], "--param needs KEY=VALUE, got 'seed'"),
        (["--module", "no_such_module_here", "list"], "--module no_such_module_here: No module named"),
        (["--module", "missing_file.py", "list"], "--module missing_file.py: no such file"),
    ],
)
def test_a_users_mistake_is_one_message_and_exit_2(argv, message, capsys, isolated_results):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "Traceback" not in captured.err
    assert re.search(message, captured.err)
    with pytest.raises((ValueError, OSError)):
        main(["--debug", *argv])


def test_an_unknown_notebook_among_several_is_named(capsys):
    assert main(["notebooks", "--profile", "smoke", "--only", "03", "99"]) == 2  # before anything runs
    assert "starts with ['99']" in capsys.readouterr().err


def test_run_prints_the_summary_and_says_when_it_came_from_the_cache(isolated_results, capsys):
    argv = ["run", "baseline", "--profile", "smoke", "--param", 'model="narrow"', "--param", "seed=2"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert (first["cached"], second["cached"]) == (False, True) and first["final_acc"] == second["final_acc"]


def test_profiles_prints_one_json_line_per_profile(capsys):
    assert main(["profiles"]) == 0
    assert [line.split('"name": ')[1].split('"')[1] for line in capsys.readouterr().out.splitlines()] == [
        "smoke",
        "quick",
        "full",
        "full-fast",
    ]


def _fake_runs(results):
    """An empty and a damaged run folder of "baseline" on smoke (no training needed)."""
    folder = results / "smoke" / "baseline"
    empty, damaged = folder / "00000000000000e0", folder / "00000000000000d0"
    empty.mkdir(parents=True)
    damaged.mkdir()
    (damaged / SEAL).write_text("not a seal")
    return empty, damaged


def test_clean_asks_first_and_deletes_only_the_selected_runs(isolated_results, capsys, monkeypatch):
    results = isolated_results / "results"
    finished = run("baseline", {"model": "narrow", "seed": 0}, profile="smoke", progress=False)
    empty, damaged = _fake_runs(results)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["clean", "baseline", "--profile", "smoke", "--status", "damaged", "empty"]) == 0
    assert "nothing deleted" in capsys.readouterr().out and empty.exists() and damaged.exists()
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert main(["clean", "baseline", "--profile", "smoke", "--status", "damaged", "empty"]) == 0
    out = capsys.readouterr().out
    assert f"damaged   {damaged}" in out and "deleted 2 run folders" in out
    assert not empty.exists() and not damaged.exists() and (finished.path / SEAL).exists()
    assert main(["clean", "--profile", "smoke", "--yes"]) == 0
    assert not finished.path.exists() and results.exists()


def test_clean_skips_a_locked_run_and_never_leaves_the_results_root(isolated_results, capsys):
    from filelock import FileLock

    from thesis_lib.experiments import remove_run

    empty, damaged = _fake_runs(isolated_results / "results")
    with FileLock(str(empty) + ".lock"):
        assert main(["clean", "--profile", "smoke", "--yes"]) == 1
    out = capsys.readouterr().out
    assert f"skipped: run {empty} is locked" in out and empty.exists() and not damaged.exists()
    outside = isolated_results / "elsewhere" / "smoke" / "baseline" / "0000000000000000"
    outside.mkdir(parents=True)
    with pytest.raises(ValueError, match="not a run folder under the results root"):
        remove_run(outside)
    with pytest.raises(ValueError, match="not a run folder"):
        remove_run(isolated_results / "results" / "smoke")
    assert outside.exists()
    assert main(["clean", "nothing", "--profile", "smoke"]) == 2


# --- argparse's own errors, the remaining subcommands and the entry point ---------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: command"),
        (["train"], "invalid choice: 'train'"),
        (["run", "baseline", "--profile", "huge"], "invalid choice: 'huge'"),
        (["notebooks", "--profile", "medium"], "invalid choice: 'medium'"),
    ],
)
def test_a_malformed_command_line_is_a_usage_error_with_exit_2(argv, message, capsys, isolated_results):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m thesis_lib") and message in err
    assert not (isolated_results / "results").exists()  # nothing ran


def test_an_unknown_training_parameter_is_one_message_exit_2_and_writes_nothing(isolated_results, capsys):
    assert main(["run", "baseline", "--profile", "smoke", "--param", "colour=1"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: unknown param(s) ['colour'] of experiment 'baseline'")
        and len(err.strip().splitlines()) == 1
    )
    assert not list((isolated_results / "results").rglob("config.json"))


def test_param_values_are_json_where_they_parse_and_strings_otherwise():
    from thesis_lib.cli import _parse_value

    assert _parse_value("2") == 2 and _parse_value("0.5") == 0.5 and _parse_value("true") is True
    assert _parse_value('"narrow"') == "narrow" and _parse_value("narrow") == "narrow"
    assert _parse_value("[1, 2]") == [1, 2] and _parse_value('{"a": 1}') == {"a": 1}


def test_runs_of_one_experiment_without_runs_says_so_and_exits_0(isolated_results, capsys):
    assert main(["runs", "baseline", "--profile", "smoke"]) == 0
    assert capsys.readouterr().out.strip() == "no cached runs of baseline on profile 'smoke'"


def _write_notebook(folder, name, cells):
    import nbformat

    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('profile = "quick"')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, *(nbformat.v4.new_code_cell(source) for source in cells)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(exist_ok=True)
    nbformat.write(notebook, folder / f"{name}.ipynb")


def test_notebooks_runs_the_selected_ones_on_the_profile_and_exits_0(isolated_results, capsys, monkeypatch):
    """--only selects by prefix; the notebook sees the profile as its parameter (no THESIS_PROFILE or
    THESIS_NOTEBOOK is passed on: notebooks name themselves); its executed copy lands in
    figures/<profile>/<notebook>/."""
    import nbformat

    for variable in ("THESIS_PROFILE", "THESIS_NOTEBOOK"):
        monkeypatch.delenv(variable, raising=False)
    folder = isolated_results / "notebooks"
    _write_notebook(
        folder,
        "01_first",
        ["import os; print(profile, os.environ.get('THESIS_PROFILE'), os.environ.get('THESIS_NOTEBOOK'))"],
    )
    _write_notebook(folder, "02_second", ["raise ValueError('must not run')"])
    assert main(["notebooks", "--profile", "smoke", "--only", "01", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "== 01_first (smoke)" in out and "02_second" not in out and "FAILED" not in out
    executed = nbformat.read(isolated_results / "figures" / "smoke" / "01_first" / "01_first.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for cell in executed.cells for o in cell.get("outputs", []))
    assert printed.strip() == "smoke None None"
    assert not (isolated_results / "figures" / "smoke" / "02_second").exists()


def test_print_summary_lists_each_notebook_the_total_and_the_failures(capsys):
    from thesis_lib.headless import NotebookOutcome, print_summary

    print_summary(
        [
            NotebookOutcome("03_baseline", "ok", 1.5),
            NotebookOutcome("05_prunetrain", "failed", 0.25, "cell 4 of 9 ('x'): KeyError: 'a'"),
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["notebook", "status", "minutes"]
    assert lines[1].split() == ["03_baseline", "ok", "1.50"] and lines[2].split() == ["05_prunetrain", "failed", "0.25"]
    assert lines[3].split() == ["total", "1.75"]
    assert lines[4] == "FAILED 05_prunetrain: cell 4 of 9 ('x'): KeyError: 'a'"


def test_run_notebooks_refuses_an_unknown_profile_before_running_anything(capsys):
    from thesis_lib.headless import run_notebooks

    with pytest.raises(ValueError, match="unknown profile 'medium'"):
        run_notebooks("medium")
    assert capsys.readouterr().out == ""


def test_python_dash_m_thesis_lib_returns_mains_exit_code(isolated_results):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "thesis_lib", "run", "nothing", "--profile", "smoke"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: unknown experiment 'nothing'")


def test_progress_lines_say_runs_done_the_epoch_and_a_rough_eta():
    from thesis_lib.headless import progress_line

    record = {
        "notebook": "05_prunetrain",
        "sweep": "prunetrain",
        "runs_total": 45,
        "runs_done": 9,
        "epoch": 5,
        "epochs": 10,
        "sweep_started": 1000.0,
    }
    # 9.5 runs in 190 s: 20 s a run, 35.5 runs left
    assert progress_line(record, now=1190.0) == (
        "05_prunetrain: prunetrain runs 9/45 epoch 5/10 about 11.8 min left in this sweep"
    )
    done = {**record, "runs_done": 45}
    assert progress_line(done, now=1190.0) == "05_prunetrain: prunetrain runs 45/45"
    assert (
        progress_line({"notebook": "x", "run": "baseline", "epoch": 2, "epochs": 10}, 0.0) == "x: baseline epoch 2/10"
    )


def test_a_sweep_reports_its_progress_and_the_printer_shows_only_what_changed(isolated_results, capsys, monkeypatch):
    from thesis_lib.experiments import progress_dir, seed_grid, sweep
    from thesis_lib.headless import ProgressPrinter

    monkeypatch.setenv("THESIS_NOTEBOOK", "03_baseline")
    printer = ProgressPrinter(progress_dir(), interval=3600)
    sweep("baseline", seed_grid("smoke", model=["narrow"]), profile="smoke", progress=False)
    lines = printer.print_changes()
    assert lines == ["03_baseline: baseline runs 2/2"]
    assert printer.print_changes() == []  # nothing new
    assert "   .. 03_baseline: baseline runs 2/2" in capsys.readouterr().out


def test_tensorboard_logs_every_epoch_into_the_run_folder(isolated_results, monkeypatch):
    pytest.importorskip("tensorboard", reason="TensorBoard is in the test extras; install them")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from thesis_lib.experiments import readable_params, run
    from thesis_lib.training import TENSORBOARD_ENV

    monkeypatch.setenv(TENSORBOARD_ENV, "1")
    result = run("baseline", {"model": "narrow", "seed": 0}, profile="smoke", progress=False)
    assert readable_params(result.params) == "model=narrow,schedule=step,seed=0"
    events = EventAccumulator(str(result.path / "tensorboard" / readable_params(result.params) / "train"))
    events.Reload()
    scalars = events.Scalars("test_acc")
    assert [event.step for event in scalars] == result.history["epoch"].tolist()
    assert [event.value for event in scalars] == pytest.approx(result.history["test_acc"].tolist())
    from tensorboard.plugins.hparams import plugin_data_pb2

    hparams = {}
    for content in events.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            hparams = {
                key: value.string_value or value.number_value for key, value in data.session_start_info.hparams.items()
            }
    assert hparams == {"experiment": "baseline", "phase": "train", "model": "narrow", "schedule": "step", "seed": 0}


def test_tensorboard_on_cached_runs_says_nothing_new_was_trained(isolated_results, monkeypatch, capsys):
    pytest.importorskip("tensorboard", reason="TensorBoard is in the test extras; install them")
    from thesis_lib.cli import tensorboard_note
    from thesis_lib.training import TENSORBOARD_ENV

    monkeypatch.setenv(TENSORBOARD_ENV, "0")  # restored after the test; `--tensorboard` sets it to 1
    start = time.time()
    argv = ["run", "baseline", "--profile", "smoke", "--param", 'model="narrow"', "--tensorboard"]
    assert main(argv) == 0
    assert "nothing new was trained" not in capsys.readouterr().err
    assert tensorboard_note("smoke", since=start).startswith("TensorBoard: 1 run phases logged their epochs")
    later = time.time() + 1
    assert main(argv) == 0
    assert "TensorBoard: nothing new was trained (the runs came from the cache)" in capsys.readouterr().err
    assert "nothing new was trained" in tensorboard_note("smoke", since=later)


def test_a_plain_trainer_logs_for_tensorboard_when_asked(tmp_path, monkeypatch, digits):
    pytest.importorskip("tensorboard", reason="TensorBoard is in the test extras; install them")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from thesis_lib.models import ResNetConfig, build_resnet
    from thesis_lib.training import TENSORBOARD_ENV, TrainConfig, Trainer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(TENSORBOARD_ENV, "1")
    model = build_resnet(ResNetConfig(blocks=(1, 1, 1), widths=(4, 8, 16), in_channels=1))
    history = Trainer(
        model, digits, TrainConfig(epochs=2, batch_size=64, milestones=()), progress=False, description="my net"
    ).fit()
    events = EventAccumulator(str(tmp_path / "runs" / "my_net"))
    events.Reload()
    assert [event.value for event in events.Scalars("train_loss")] == pytest.approx(history["train_loss"].tolist())
