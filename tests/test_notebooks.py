"""Every numbered notebook runs headlessly through papermill on the smoke profile and writes its figures."""

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
