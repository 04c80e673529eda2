"""Every numbered notebook runs headlessly through papermill on the smoke profile and writes its figures;
one notebook runs the same under plain papermill, nbconvert and a Jupyter kernel (as JupyterLab drives it)."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from thesis_lib.cli import find_notebooks, run_notebook

NOTEBOOKS = find_notebooks()


def test_there_are_notebooks():
    assert any(p.stem.startswith("03_") for p in NOTEBOOKS)


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_smoke(path, isolated_results):
    outcome = run_notebook(path, "smoke", output_root=isolated_results / "figures", progress=False)
    assert outcome.status == "ok", f"{path.name} failed at {outcome.detail}"
    written = isolated_results / "figures" / "smoke" / path.stem
    assert (written / path.name).exists()
    assert list(written.glob("*.pdf")) and list(written.glob("*.png")), "the notebook saved no figure"


def test_failing_notebook_is_named_with_its_cell_and_exits_non_zero(isolated_results, capsys):
    import nbformat

    from thesis_lib.cli import main

    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('profile = "quick"')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell("x = 1"),
                      nbformat.v4.new_code_cell("raise ValueError('broken cell')")]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder = isolated_results / "notebooks"
    folder.mkdir()
    nbformat.write(notebook, folder / "99_failing.ipynb")

    assert main(["notebooks", "--profile", "smoke", "--no-progress"]) == 1
    printed = capsys.readouterr().out
    assert "FAILED 99_failing" in printed and "ValueError: broken cell" in printed
    assert "cell 3 of 3 (\"raise ValueError('broken cell')\")" in printed  # numbered as in the source notebook


SMALL = next(p for p in NOTEBOOKS if p.stem == "03_baseline")


@pytest.fixture(scope="module")
def shared_results(tmp_path_factory):
    """One run cache for the ways of running a notebook: the first trains, the others load."""
    return tmp_path_factory.mktemp("results")


def _environment(results: Path, root: Path) -> dict[str, str]:
    """The caller's environment with the run cache and figure root isolated and no notebook or profile
    named; a stale THESIS_PROFILE=quick must not matter."""
    env = {k: v for k, v in os.environ.items() if k not in ("THESIS_NOTEBOOK", "THESIS_PROFILE")}
    return {**env, "THESIS_RESULTS": str(results), "THESIS_ROOT": str(root), "THESIS_PROFILE": "quick"}


def _smoke_copy(path: Path, folder: Path) -> Path:
    """The notebook with its parameters cell edited to the smoke profile, as a JupyterLab user does."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = 'profile = "smoke"'
    copy = folder / path.name
    nbformat.write(notebook, copy)
    return copy


def _assert_figures_in_smoke_folder(root: Path) -> None:
    written = root / "figures" / "smoke" / SMALL.stem
    assert list(written.glob("*.pdf")) and list(written.glob("*.csv")), f"no figures or tables in {written}"
    assert not (root / "figures" / "quick").exists()


@pytest.mark.notebook
def test_plain_papermill_writes_into_the_notebooks_profile_folder(shared_results, tmp_path):
    command = [sys.executable, "-m", "papermill", str(SMALL), str(tmp_path / "out.ipynb"), "-p", "profile", "smoke",
               "--cwd", str(SMALL.parent)]
    subprocess.run(command, check=True, env=_environment(shared_results, tmp_path), capture_output=True)
    _assert_figures_in_smoke_folder(tmp_path)


@pytest.mark.notebook
def test_nbconvert_execute_writes_into_the_notebooks_profile_folder(shared_results, tmp_path):
    copy = _smoke_copy(SMALL, tmp_path)
    command = [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", "--output", "executed.ipynb",
               str(copy)]
    subprocess.run(command, check=True, env=_environment(shared_results, tmp_path), capture_output=True)
    _assert_figures_in_smoke_folder(tmp_path)


@pytest.mark.notebook
def test_a_jupyter_kernel_running_every_cell_writes_into_the_notebooks_profile_folder(shared_results, tmp_path):
    from jupyter_client.manager import start_new_kernel

    notebook = nbformat.read(_smoke_copy(SMALL, tmp_path), as_version=4)
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(SMALL.parent),
                                       env=_environment(shared_results, tmp_path))
    try:
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            reply = client.execute_interactive(cell.source, timeout=300, output_hook=lambda message: None)
            assert reply["content"]["status"] == "ok", f"cell {index + 1}: {reply['content'].get('evalue')}"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    _assert_figures_in_smoke_folder(tmp_path)
