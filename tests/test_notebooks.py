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
