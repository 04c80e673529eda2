"""What a new user meets at the command line: Ctrl-C, selecting runs by params, listings that fit a
terminal, their own experiments through `--module`, and no stray lock or progress file."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from filelock import FileLock

from thesis_lib.cli import main
from thesis_lib.experiments import progress, registry, run

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_experiments.py"


def _cli(*argv: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "thesis_lib", *argv],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _env(results: Path) -> dict[str, str]:
    return {**os.environ, "THESIS_RESULTS": str(results), "OMP_NUM_THREADS": "1"}


def test_ctrl_c_in_run_says_where_it_stopped_and_resumes(tmp_path):
    env = _env(tmp_path / "results")
    argv = (
        "run",
        "baseline",
        "--profile",
        "smoke",
        "--param",
        'model="narrow"',
        "--param",
        "epochs=400",
        "--param",
        "milestones=[300]",
    )
    process = _cli(*argv, env=env)
    deadline = time.time() + 120
    while not list((tmp_path / "results").glob("smoke/baseline/*/checkpoint_train.pt")):
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "it/s" not in line]
    assert len(lines) == 1 and "Traceback" not in err, err  # the progress bar aside, one line
    assert lines[0].startswith("interrupted: saved phase train: epoch ") and " of 400" in lines[0]
    assert lines[0].endswith("run the same command again to resume")
    saved = int(lines[0].split("epoch ")[1].split()[0])
    assert saved >= 1
    assert list((tmp_path / "results" / ".progress").glob("*.json")) == []  # the process's record went with it
    listing = subprocess.run(
        [sys.executable, "-m", "thesis_lib", "runs", "--profile", "smoke"],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        check=True,
    ).stdout.splitlines()
    partial = next(line for line in listing if line.startswith("baseline") and " partial " in line)
    assert partial.split()[3] == str(saved) or int(partial.split()[3]) >= saved  # epochs reached, not NaN


def test_ctrl_c_in_run_with_debug_keeps_the_traceback(isolated_results, monkeypatch, capsys):
    def interrupt(**fields):
        raise KeyboardInterrupt

    monkeypatch.setattr(progress, "report_progress", interrupt)
    assert main(["run", "baseline", "--profile", "smoke", "--param", 'model="narrow"']) == 130
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").splitlines()[-1]
    assert last == "interrupted: saved phase train: epoch 1 of 2; run the same command again to resume"
    assert "Traceback" not in err
    with pytest.raises(KeyboardInterrupt):
        main(["--debug", "run", "baseline", "--profile", "smoke", "--param", 'model="narrow"', "--param", "seed=1"])


def test_a_run_that_fails_before_its_first_epoch_leaves_no_folder_and_no_lock(isolated_results, monkeypatch):
    def missing(name):
        raise FileNotFoundError(f"no dataset {name!r} here")

    monkeypatch.setattr(registry, "load_dataset", missing)
    monkeypatch.setattr(registry, "_DATASETS", {})
    with pytest.raises(FileNotFoundError):
        run("baseline", {"model": "narrow"}, profile="smoke", progress=False)
    left = sorted(p.name for p in (isolated_results / "results" / "smoke" / "baseline").iterdir())
    assert left == []


def test_unlinking_a_held_lock_never_lets_two_holders_in(tmp_path):
    """The guarantee `_unlink_held_lock` relies on (filelock >= 4.3): a waiter on an unlinked lock file does
    not hold the lock while a newcomer holds the new file at the same path."""
    path = str(tmp_path / "run.lock")
    first = FileLock(path, thread_local=False)
    first.acquire()
    waiter_holds = threading.Event()

    def wait() -> None:
        waiter = FileLock(path, thread_local=False, is_singleton=False)
        waiter.acquire()
        waiter_holds.set()
        waiter.release()

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.3)  # the waiter is blocked in flock on the first file
    Path(path).unlink()
    first.release()
    newcomer = FileLock(path, thread_local=False, is_singleton=False)
    newcomer.acquire()
    assert not waiter_holds.wait(1.0)  # it saw its file unlinked and now waits on the newcomer's
    newcomer.release()
    assert waiter_holds.wait(10.0)
    thread.join()


@pytest.fixture()
def two_seeds(isolated_results):
    return [run("baseline", {"model": "narrow", "seed": seed}, profile="smoke", progress=False) for seed in (0, 1)]


def test_runs_and_clean_select_one_run_by_its_params(two_seeds, capsys):
    assert main(["runs", "baseline", "--profile", "smoke", "--param", "seed=1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()[1:] if line.startswith("baseline")]
    assert len(rows) == 1 and two_seeds[1].path.name in rows[0]
    assert (
        main(["clean", "baseline", "--profile", "smoke", "--param", "seed=1", "--param", "model=narrow", "--yes"]) == 0
    )
    assert "deleted 1 run folders" in capsys.readouterr().out
    assert not two_seeds[1].path.exists() and two_seeds[0].path.exists()
    assert main(["clean", "baseline", "--profile", "smoke", "--param", "sede=0", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "no listed run has the param(s) ['sede']" in err and "'seed'" in err
    assert two_seeds[0].path.exists()


def test_runs_fits_120_columns_and_long_shows_everything(two_seeds, capsys):
    assert main(["runs", "--profile", "smoke"]) == 0
    short = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 120 for line in short)
    assert main(["runs", "--profile", "smoke", "--long"]) == 0
    long = capsys.readouterr().out
    assert str(two_seeds[0].path) in long
    params = json.loads(long.splitlines()[1].split("  ")[-1])
    assert params["model"] == "narrow" and params["seed"] in (0, 1)


def test_list_with_a_profile_shows_the_plans_defaults(capsys):
    assert main(["list"]) == 0
    plain = capsys.readouterr().out
    assert "relative_strength: float default: the profile's plan or other params" in plain
    assert main(["list", "--profile", "quick"]) == 0
    quick = capsys.readouterr().out
    assert "relative_strength: float = 3.0 on quick" in quick
    assert all(len(line) <= 120 for line in quick.splitlines())


def test_run_help_lists_the_experiments(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "experiments (python -m thesis_lib list shows their params):" in out
    assert all(name in out for name in ("baseline", "prunetrain", "morphnet_search", "prune_grow"))


def test_an_own_experiment_runs_from_the_cli_with_module(isolated_results, capsys, monkeypatch):
    argv = ["--module", str(EXAMPLE), "run", "width_scaled", "--profile", "smoke", "--param", "width=0.5"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["cached"] is False and first["epochs"] == 2
    from thesis_lib.models import ResNetConfig, build_resnet, count_parameters

    narrow_half = ResNetConfig(stages=3, blocks=(1, 1, 1), widths=(8, 16, 32), in_channels=1, num_classes=10)
    assert first["final_params"] == count_parameters(build_resnet(narrow_half))  # the wide net's widths x 0.5
    monkeypatch.setenv("THESIS_MODULES", str(EXAMPLE))
    assert main(["run", "width_scaled", "--profile", "smoke", "--param", "width=0.5", "--param", "seed=0"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cached"] is True and again["path"] == first["path"]  # defaults filled in: the same run
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "width_scaled  v1  my_experiments" in listing and "width: float = 1.0, > 0" in listing
    assert main(["run", "width_scaled", "--profile", "smoke", "--param", "width=0"]) == 2
    assert "width" in capsys.readouterr().err


def test_parallel_headless_notebooks_share_no_sockets_and_print_no_kernel_noise(tmp_path, capfd):
    import nbformat

    from thesis_lib.headless import run_notebook

    paths = []
    for name in ("01_first", "02_second"):
        notebook = nbformat.v4.new_notebook(
            metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
        )
        notebook.cells = [
            nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("import time; time.sleep(1); print(profile)"),
        ]
        paths.append(tmp_path / f"{name}.ipynb")
        nbformat.write(notebook, paths[-1])
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda path: run_notebook(path, "smoke", tmp_path / "figures", progress=False), paths))
    assert [outcome.status for outcome in outcomes] == ["ok", "ok"], outcomes
    captured = capfd.readouterr()
    assert "TCP" not in captured.err and "KeyboardInterrupt" not in captured.err, captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_first.ipynb", "02_second.ipynb", "figures"]
    executed = nbformat.read(tmp_path / "figures" / "smoke" / "02_second" / "02_second.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "smoke\n"


def test_a_long_epoch_shows_its_batches(monkeypatch, capsys, digits):
    from thesis_lib import training
    from thesis_lib.models import ResNetConfig, build_resnet

    model = build_resnet(ResNetConfig(blocks=(1, 1, 1), widths=(4, 8, 16), in_channels=1))
    config = training.TrainConfig(epochs=1, batch_size=64, milestones=())
    training.Trainer(model, digits, config, progress=True, cpu_threads=None).fit()
    assert "epoch 1:" not in capsys.readouterr().err  # a short epoch: the epoch bar alone
    monkeypatch.setattr(training, "BATCH_BAR_DELAY", 0.0)
    training.Trainer(model, digits, config, progress=True, cpu_threads=None).fit()
    err = capsys.readouterr().err
    assert "epoch 1:   0%|          | 0/4" in err  # len(digits' 256 images / 64) batches


def test_ctrl_c_in_notebooks_is_one_line_and_leaves_no_stale_progress(isolated_results, monkeypatch, capsys):
    import thesis_lib.cli as cli
    import thesis_lib.headless as headless

    folder = isolated_results / "results" / ".progress"
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (folder / f"{int(dead.stdout)}.json").write_text("{}")  # a kernel killed before its exit handler ran
    (folder / f"{os.getpid()}.json").write_text("{}")  # a live process's record stays

    def interrupted(*args, **kwargs):
        with headless.ProgressPrinter(folder, interval=60):
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_notebooks", interrupted)
    assert main(["notebooks", "--profile", "smoke", "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: finished runs are cached") and err.count("\n") == 1
    assert "run the same command again to resume" in err
    assert [path.name for path in folder.iterdir()] == [f"{os.getpid()}.json"]
