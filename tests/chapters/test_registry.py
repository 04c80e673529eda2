"""The chapter registry: one notebook per chapter module and one test file per chapter, derived by name."""

import re
from pathlib import Path

import nbformat
import pytest

from thesis_lib.chapters import CHAPTERS
from thesis_lib.experiments import registered_experiments, run_dir_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.notebook)
def test_each_chapter_has_its_notebook_module_and_test_file(chapter):
    stem = chapter.module.rsplit(".", 1)[-1]
    assert stem == f"ch{chapter.notebook}"
    assert (ROOT / "thesis_lib" / "chapters" / f"{stem}.py").exists()
    assert (ROOT / "tests" / "chapters" / f"test_{stem}.py").exists()
    notebook = nbformat.read(ROOT / "notebooks" / f"{chapter.notebook}.ipynb", as_version=4)
    assert chapter.section in notebook.cells[0].source.splitlines()[0]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.notebook)
def test_each_notebook_names_itself_and_its_profile_in_its_first_code_cell(chapter):
    cells = nbformat.read(ROOT / "notebooks" / f"{chapter.notebook}.ipynb", as_version=4).cells
    parameters = next(i for i, cell in enumerate(cells) if "parameters" in cell.metadata.get("tags", []))
    first = next(cell for cell in cells[parameters + 1 :] if cell.cell_type == "code")
    assert f'nb = chapters.open("{chapter.notebook}", profile)' in first.source.splitlines()


# What a cell must not do: draw (matplotlib, axes, the plots module's figure helpers), or repeat what the
# notebook context supplies (notebook and profile arguments, stamps, `use_notebook`).
DRAWING_OR_REPEATING = re.compile(
    r"matplotlib|\bplt\.|\bax(es)?\b|\.set_\w+\(|\bplots\.(figure|stamp|use_notebook|"
    r"use_thesis_style|save|boxplot|line_with_band|mark_epochs)\b|notebook=|profile=profile|"
    r"\btables\.save\b"
)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.notebook)
def test_notebook_cells_neither_draw_nor_repeat_the_notebook_context(chapter):
    cells = nbformat.read(ROOT / "notebooks" / f"{chapter.notebook}.ipynb", as_version=4).cells
    for index, cell in enumerate(cells):
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                assert not DRAWING_OR_REPEATING.search(line), f"{chapter.notebook} cell {index}: {line}"


def test_the_drawing_check_sees_a_drawing_cell():
    for line in [
        'fig, axes = plots.figure("full", ncols=2)',
        "ax.plot(x, y)",
        "import matplotlib.pyplot as plt",
        'tables.save(t, "x", notebook="05", profile=profile)',
        'plots.stamp(fig, profile, "digits", 5)',
    ]:
        assert DRAWING_OR_REPEATING.search(line), line
    assert not DRAWING_OR_REPEATING.search('nb.save(fig, "fig_5_1_lasso_ratio")')


def test_every_numbered_notebook_is_a_registered_chapter():
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks == sorted(c.notebook for c in CHAPTERS)


def test_each_registered_experiment_belongs_to_exactly_one_chapter():
    registry = registered_experiments()
    claimed = [name for chapter in CHAPTERS for name in chapter.experiments]
    assert len(claimed) == len(set(claimed))
    assert set(claimed) == set(registry) - {name for name in registry if name.endswith("_test")}
    for chapter in CHAPTERS:
        for name in chapter.experiments:
            assert registry[name].function.__module__ == chapter.module


def test_run_folders_do_not_move_with_the_code(monkeypatch):
    """A recorded run folder: moving code must not orphan cached runs. Recorded before the methods /
    chapters split as 080f54e368f939bf (unchanged by the split); "baseline" version 2 (He-normal init)
    changed it on purpose, and so did key scheme 2 (`store.KEY_SCHEME`: device model, world size, every
    profile field) and "baseline" version 3 (warm-up and poly decay per iteration, LARS on every tensor)."""
    monkeypatch.setenv("THESIS_RESULTS", "/results")
    path = run_dir_for("baseline", {"model": "wide", "schedule": "step", "seed": 0}, "smoke")
    assert path.name == "347c38570af6cbc4"


def test_every_chapter_experiment_declares_its_params():
    registry = registered_experiments()
    for chapter in CHAPTERS:
        for name in chapter.experiments:
            assert registry[name].params is not None, name
            assert "seed" in registry[name].declared(), name


def test_no_figure_number_is_used_by_two_notebooks():
    """Figures are named fig_<chapter>_<number>_...; a number belongs to one notebook (the draft's 6.1-6.8 to
    06_1, new ones continue the chapter)."""
    import re

    owner: dict[str, str] = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        source = "".join(cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")
        for number in set(re.findall(r'"fig_(\d+_\d+)_', source)):
            assert number not in owner, f"figure {number} is saved by {owner.get(number)} and {path.stem}"
            owner[number] = path.stem
    assert {"6_9", "6_12", "7_1", "8_1"} <= set(owner) and owner["6_9"] == "06_2_net2net"
