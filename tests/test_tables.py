"""Tables: CSV reads back equal, the LaTeX fragment has a tabular with every column, writes are atomic."""

import pandas as pd
import pytest

from thesis_lib import tables


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
