"""Every numbered notebook runs headlessly through papermill on the smoke profile and produces what it must
(DESIGN.md sections 4 and 6): the figures and tables its title cell names, no error or NaN warning in any
cell output, and Welch-test tables with n_a, n_b, t, df, p and p_holm. One notebook also runs the same under
plain papermill, nbconvert and a Jupyter kernel (as JupyterLab drives it).

Each notebook is executed once per session (results and figures in one temporary root, so later notebooks
reuse earlier ones' cached runs as they do for a user); the checks then read the executed notebook and the
files it wrote.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from thesis_lib.headless import find_notebooks, run_notebook

NOTEBOOKS = find_notebooks()
IDS = [p.stem for p in NOTEBOOKS]
NAMED = re.compile(r"`((?:fig|table)_[A-Za-z0-9_]+)`")
TEST_COLUMNS = ["n_a", "n_b", "t", "df", "p", "p_holm"]
# What numpy, scipy, pandas and torch print when a statistic or a loss became NaN or was taken of nothing.
NAN_WARNING = re.compile(
    r"invalid value encountered|Mean of empty slice|Degrees of freedom <= 0|divide by zero"
    r"|All-NaN|Precision loss occurred|[Nn]a[Nn] (?:loss|value)|catastrophic cancellation"
)


NOTEBOOK_CASES = [pytest.param(p, id=p.stem, marks=pytest.mark.notebook) for p in NOTEBOOKS]


@pytest.fixture(scope="session")
def notebook_root(tmp_path_factory):
    return tmp_path_factory.mktemp("notebooks")


_EXECUTED: dict[str, object] = {}


@pytest.fixture()
def executed(notebook_root, monkeypatch):
    """Runs a notebook once per session; returns (outcome, folder it wrote, executed notebook)."""
    monkeypatch.setenv("THESIS_RESULTS", str(notebook_root / "results"))
    monkeypatch.setenv("THESIS_ROOT", str(notebook_root))

    def get(path: Path):
        if path.stem not in _EXECUTED:
            outcome = run_notebook(path, "smoke", output_root=notebook_root / "figures", progress=False)
            _EXECUTED[path.stem] = outcome
        outcome = _EXECUTED[path.stem]
        assert outcome.status == "ok", f"{path.name} failed at {outcome.detail}"
        folder = notebook_root / "figures" / "smoke" / path.stem
        return outcome, folder, nbformat.read(folder / path.name, as_version=4)

    return get


def title_names(path: Path) -> set[str]:
    notebook = nbformat.read(path, as_version=4)
    title = next(cell for cell in notebook.cells if cell.cell_type == "markdown")
    return set(NAMED.findall(title.source))


def test_there_are_notebooks():
    assert any(p.stem.startswith("03_") for p in NOTEBOOKS)


def test_title_names_are_read_from_backticks_only():
    """The reader of the title cell: `fig_`/`table_` names in backticks, nothing else."""
    source = "Figures: `fig_6_9_a` and `table_6_8_tests`; fig_7_1_plain, `other_name`, `_tests`."
    assert set(NAMED.findall(source)) == {"fig_6_9_a", "table_6_8_tests"}


@pytest.mark.parametrize("path", NOTEBOOK_CASES)
def test_notebook_runs_on_smoke_and_saves_figures(path, executed):
    _, folder, _ = executed(path)
    assert list(folder.glob("fig_*.pdf")) and list(folder.glob("fig_*.png")), "the notebook saved no figure"
    for pdf in folder.glob("*.pdf"):
        assert pdf.with_suffix(".png").exists(), f"{pdf.name} has no PNG"


@pytest.mark.parametrize("path", NOTEBOOK_CASES)
def test_the_title_cell_names_every_figure_and_table_the_notebook_saves(path, executed):
    """Both ways: each name in the title cell was written (figures as PDF + PNG, tables as CSV + TeX), and
    each figure or table written is named (a table's `<name>_tests` counts as named with `<name>`)."""
    _, folder, _ = executed(path)
    named = title_names(path)
    saved = {p.stem for p in folder.glob("fig_*.pdf")} | {p.stem for p in folder.glob("table_*.csv")}
    missing = sorted(
        name
        for name in named
        if not all(
            (folder / f"{name}{suffix}").exists()
            for suffix in ((".pdf", ".png") if name.startswith("fig_") else (".csv", ".tex"))
        )
    )
    unnamed = sorted(name for name in saved if name not in named and name.removesuffix("_tests") not in named)
    assert named, f"the title cell of {path.name} names no figure or table in backticks"
    assert not missing, f"named in the title cell but not written: {missing}"
    assert not unnamed, f"written but not named in the title cell: {unnamed}"


def output_problems(notebook) -> list[str]:
    """Every cell output that is an error, holds a traceback or warns of a NaN."""
    problems = []
    for number, cell in enumerate(notebook.cells, 1):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                problems.append(f"cell {number}: {output.ename}: {output.evalue}")
                continue
            text = (
                output.get("text", "")
                if output.output_type == "stream"
                else output.get("data", {}).get("text/plain", "")
            )
            text = "".join(text) if isinstance(text, list) else text
            if "Traceback (most recent call last)" in text or NAN_WARNING.search(text):
                problems.append(f"cell {number}: {text.strip()[:200]}")
    return problems


def problems_of_tests_tables(folder: Path) -> list[str]:
    """What is wrong with the `table_*_tests.csv` files of a notebook's folder (DESIGN 6): none saved, a
    column of n_a, n_b, t, df, p, p_holm missing, no rows, or a p_holm that is no Holm adjustment of p
    (below p or above 1)."""
    tables = sorted(folder.glob("table_*_tests.csv"))
    if not tables:
        return ["no table_*_tests.csv saved"]
    problems = []
    for csv in tables:
        table = pd.read_csv(csv)
        absent = [c for c in TEST_COLUMNS if c not in table.columns]
        if absent:
            problems.append(f"{csv.name} lacks {absent}")
            continue
        if table.empty:
            problems.append(f"{csv.name} has no rows")
        defined = table.dropna(subset=["p", "p_holm"])
        if not ((defined["p_holm"] >= defined["p"] - 1e-12) & (defined["p_holm"] <= 1)).all():
            problems.append(f"{csv.name}: p_holm is not a Holm adjustment of p")
    return problems


def test_the_output_check_finds_errors_tracebacks_and_nan_warnings():
    out = nbformat.v4
    notebook = out.new_notebook(
        cells=[
            out.new_code_cell(outputs=[out.new_output("stream", name="stdout", text="accuracy 0.93\n")]),
            out.new_code_cell(outputs=[out.new_output("error", ename="ValueError", evalue="bad", traceback=[])]),
            out.new_code_cell(
                outputs=[
                    out.new_output(
                        "stream",
                        name="stderr",
                        text=("/x/numpy/core/_methods.py:206: RuntimeWarning: invalid value encountered in divide\n"),
                    )
                ]
            ),
            out.new_code_cell(
                outputs=[out.new_output("stream", name="stderr", text="RuntimeWarning: Mean of empty slice")]
            ),
            out.new_code_cell(outputs=[out.new_output("execute_result", data={"text/plain": "p_holm 0.04"})]),
        ]
    )
    assert [problem.split(":")[0] for problem in output_problems(notebook)] == ["cell 2", "cell 3", "cell 4"]


def test_the_tests_table_check_wants_every_column_and_a_holm_adjusted_p(tmp_path):
    assert problems_of_tests_tables(tmp_path) == ["no table_*_tests.csv saved"]
    good = pd.DataFrame(
        {"n_a": [5, 5], "n_b": [5, 5], "t": [2.5, 0.3], "df": [7.9, 8.0], "p": [0.02, 0.7], "p_holm": [0.04, 0.7]}
    )
    good.to_csv(tmp_path / "table_9_1_tests.csv", index=False)
    assert problems_of_tests_tables(tmp_path) == []
    good.drop(columns=["p_holm"]).to_csv(tmp_path / "table_9_2_tests.csv", index=False)
    good.assign(p_holm=[0.01, 0.7]).to_csv(tmp_path / "table_9_3_tests.csv", index=False)
    assert problems_of_tests_tables(tmp_path) == [
        "table_9_2_tests.csv lacks ['p_holm']",
        "table_9_3_tests.csv: p_holm is not a Holm adjustment of p",
    ]


@pytest.mark.parametrize("path", NOTEBOOK_CASES)
def test_no_cell_output_holds_an_error_or_a_nan_warning(path, executed):
    _, _, notebook = executed(path)
    problems = output_problems(notebook)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOK_CASES)
def test_every_tests_table_has_the_welch_and_holm_columns(path, executed):
    """DESIGN 6: every test table has n_a, n_b, t, df, p and p_holm; every notebook runs Welch tests
    (DESIGN 4), so each saves at least one such table."""
    _, folder, _ = executed(path)
    problems = problems_of_tests_tables(folder)
    assert not problems, f"{path.stem}: {problems}"


@pytest.mark.notebook
def test_the_notebooks_train_exactly_the_runs_their_chapters_plan(executed, notebook_root):
    """After every notebook ran on smoke, the sealed run folders are the chapters' planned runs
    (`planning.list_runs`, prerequisites included), both ways; and every run whose plan names its nets
    exactly (no bound) trained those nets for those epochs (the history's parameters per epoch)."""
    from thesis_lib.models import build_resnet, count_parameters
    from thesis_lib.planning import list_runs

    for path in NOTEBOOKS:
        executed(path)
    sealed = {done.parent for done in (notebook_root / "results").glob("smoke/*/*/DONE")}
    listed = list_runs("smoke")
    planned = {entry.folder for entry in listed}
    assert sorted(str(p.relative_to(notebook_root)) for p in sealed - planned) == [], "trained but not planned"
    assert sorted(str(p.relative_to(notebook_root)) for p in planned - sealed) == [], "planned but not trained"
    exact = [entry for entry in listed if entry.plan.phases and not any(phase.bound for phase in entry.plan.phases)]
    assert {entry.experiment for entry in exact} == {"baseline", "morphnet_regularize", "net2net_grow"}
    for entry in exact:
        history = pd.read_csv(entry.folder / "history.csv")
        expected = [
            count_parameters(build_resnet(phase.model)) for phase in entry.plan.phases for _ in range(phase.epochs)
        ]
        assert history["params"].tolist() == expected, f"{entry.experiment} {entry.params}"


@pytest.mark.parametrize("path", NOTEBOOK_CASES)
def test_every_latex_table_is_captioned_labelled_and_has_no_code_names_in_its_header(path, executed):
    """Issue 28: each table's .tex is a whole table (caption, tab:<number> label) whose header names every
    column in words (no code identifier with an underscore, e.g. final_acc_mean); a notebook with a test
    table writes its key results as macros."""
    _, folder, _ = executed(path)
    for tex in sorted(folder.glob("table_*.tex")):
        latex = tex.read_text()
        whole = latex.startswith("\\begin{table}") or "\\begin{longtable}" in latex.split("\n")[1]
        assert whole and "\\caption{" in latex, f"{tex.name} is no captioned table"
        label = re.search(r"\\label\{tab:(\d+)\.(\d+)([a-z]?)\}", latex)
        assert label and tex.stem.startswith(f"table_{label[1]}_{label[2]}{label[3]}_"), f"{tex.name}: label"
        header = latex.split("\\toprule\n")[1].split("\n")[0]
        assert "\\_" not in header, f"{tex.name}: a code name in the header: {header}"
    macros = folder / "macros.tex"
    if list(folder.glob("table_*_tests.tex")):
        assert re.search(r"^\\newcommand\{\\Thesis[A-Za-z]+\}\{.+\}$", macros.read_text(), re.M), macros


@pytest.mark.notebook
def test_every_table_and_macro_of_the_smoke_run_compiles_with_pdflatex(executed, notebook_root, tmp_path):
    """Issue 28: one LaTeX document inputs every table and macros file of the smoke re-run and quotes
    every macro (`tables.latex_document`); pdflatex compiles it without an error."""
    import shutil

    from thesis_lib.tables import latex_document

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is missing: apt-get install texlive-latex-base texlive-latex-recommended")
    for path in NOTEBOOKS:
        executed(path)
    document = tmp_path / "tables.tex"
    document.write_text(latex_document(notebook_root / "figures" / "smoke"))
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        errors="replace",  # pdflatex writes its log in the input's bytes, not UTF-8
        timeout=300,
    )
    errors = [line for line in done.stdout.splitlines() if line.startswith("!")]
    assert done.returncode == 0 and (tmp_path / "tables.pdf").stat().st_size > 0, errors or done.stdout[-2000:]


def test_failing_notebook_is_named_with_its_cell_and_exits_non_zero(isolated_results, capsys):
    from thesis_lib.cli import main

    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('profile = "quick"')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [
        parameters,
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise ValueError('broken cell')"),
    ]
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
    command = [
        sys.executable,
        "-m",
        "papermill",
        str(SMALL),
        str(tmp_path / "out.ipynb"),
        "-p",
        "profile",
        "smoke",
        "--cwd",
        str(SMALL.parent),
    ]
    subprocess.run(command, check=True, env=_environment(shared_results, tmp_path), capture_output=True)
    _assert_figures_in_smoke_folder(tmp_path)


@pytest.mark.notebook
def test_nbconvert_execute_writes_into_the_notebooks_profile_folder(shared_results, tmp_path):
    copy = _smoke_copy(SMALL, tmp_path)
    command = [
        sys.executable,
        "-m",
        "nbconvert",
        "--to",
        "notebook",
        "--execute",
        "--output",
        "executed.ipynb",
        str(copy),
    ]
    subprocess.run(command, check=True, env=_environment(shared_results, tmp_path), capture_output=True)
    _assert_figures_in_smoke_folder(tmp_path)


@pytest.mark.notebook
def test_a_jupyter_kernel_running_every_cell_writes_into_the_notebooks_profile_folder(shared_results, tmp_path):
    from jupyter_client.manager import start_new_kernel

    notebook = nbformat.read(_smoke_copy(SMALL, tmp_path), as_version=4)
    manager, client = start_new_kernel(
        kernel_name="python3", cwd=str(SMALL.parent), env=_environment(shared_results, tmp_path)
    )
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
