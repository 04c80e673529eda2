"""Tables: CSV reads back equal, the LaTeX fragment has a tabular with every column, writes are atomic."""

import json
import re

import pandas as pd
import pytest

from thesis_lib import tables
from thesis_lib.headless import find_notebooks


def frame():
    return pd.DataFrame(
        {
            "procedure": ["MorphNet", "PruneTrain + Net2Net"],
            "n": [5, 5],
            "final_acc_mean": [0.9816, 0.891922],
            "p_holm": [0.0083, float("nan")],
        }
    )


def test_save_writes_csv_that_reads_back_and_a_latex_tabular(isolated_results):
    paths = tables.save(frame(), "table_7_1_comparison", notebook="07_comparison", profile="smoke")
    folder = isolated_results / "figures" / "smoke" / "07_comparison"
    assert paths == [folder / "table_7_1_comparison.csv", folder / "table_7_1_comparison.tex"]
    pd.testing.assert_frame_equal(pd.read_csv(paths[0]), frame())
    latex = paths[1].read_text()
    assert latex.count(r"\begin{tabular}") == 1 and r"\end{tabular}" in latex and r"\toprule" in latex
    for column in ("procedure", r"final\_acc\_mean", r"p\_holm"):
        assert column in latex
    assert "0.8919" in latex and "--" in latex  # 4 significant digits, NaN as a dash
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_caption_wraps_the_tabular_in_a_table_environment():
    latex = tables.to_latex(frame(), caption="Vergleich bei 5 % Niveau")
    assert latex.startswith(r"\begin{table}") and r"\caption{Vergleich bei 5 \% Niveau}" in latex


@pytest.mark.parametrize("name", ["", "sub/table", "table.csv"])
def test_bad_names_are_clear_errors(name, isolated_results):
    with pytest.raises(ValueError, match="bare file name"):
        tables.save(frame(), name, notebook="07_comparison", profile="smoke")


SAVED_TABLE = re.compile(r'"(table_(\d+)_(\d+)([a-z]?)_[a-z0-9_]+)"')  # a table name as a code cell's string


def saved_tables() -> list[tuple[str, int, int, str]]:
    """(name, chapter, number, part letter) of every table name in the notebooks' code (the `nb.table`
    calls), in reading order over the notebooks."""
    found = []
    for path in find_notebooks():
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                source = "".join(cell["source"])
                found += [(name, int(ch), int(num), part) for name, ch, num, part in SAVED_TABLE.findall(source)]
    return found


def test_table_numbers_are_unique_and_in_reading_order_per_chapter():
    """Issue 28: a thesis table number names one table, and a chapter's numbers run 1, 2, 3 ... in the order
    the notebooks save them (parts a, b ... of one number in order too), across the notebooks of a chapter."""
    found = saved_tables()
    assert len(found) >= 30, found  # every notebook saves its tables through nb.table
    names = [name for name, *_ in found]
    assert len(names) == len(set(names))
    numbers = [(chapter, number, part) for _, chapter, number, part in found]
    assert len(numbers) == len(set(numbers)), [n for n in numbers if numbers.count(n) > 1]
    for chapter in sorted({chapter for _, chapter, _, _ in found}):
        sequence = [(number, part) for _, ch, number, part in found if ch == chapter]
        assert sequence == sorted(sequence), (chapter, sequence)
        assert sorted({number for number, _ in sequence}) == list(range(1, len({n for n, _ in sequence}) + 1))
        for number in {n for n, _ in sequence}:
            parts = [part for n, part in sequence if n == number]
            assert parts == [""] or parts == [chr(ord("a") + i) for i in range(len(parts))], (chapter, number, parts)


def test_table_names_are_read_with_their_chapter_number_and_part():
    assert SAVED_TABLE.findall('nb.table(x, "table_6_10_precision", caption="c")') == [
        ("table_6_10_precision", "6", "10", "")
    ]
    assert SAVED_TABLE.findall('nb.table(t.drop(columns="s"), "table_3_1a_structure")')[0][3] == "a"
