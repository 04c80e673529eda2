"""Tables: CSV reads back equal; the LaTeX table is captioned, labelled, German, formatted per quantity;
macros follow one name scheme; writes are atomic."""

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


def test_save_writes_csv_that_reads_back_and_a_captioned_labelled_german_table(isolated_results):
    paths = tables.save(frame(), "table_7_1_comparison", notebook="07_comparison", profile="smoke", caption="Vergleich")
    folder = isolated_results / "figures" / "smoke" / "07_comparison"
    assert paths == [folder / "table_7_1_comparison.csv", folder / "table_7_1_comparison.tex"]
    pd.testing.assert_frame_equal(pd.read_csv(paths[0]), frame())
    latex = paths[1].read_text()
    assert latex.startswith("\\begin{table}[htbp]") and latex.rstrip().endswith("\\end{table}")
    assert "\\caption{Vergleich}\n\\label{tab:7.1}" in latex
    assert latex.count("\\begin{tabularx}{\\textwidth}") == 1 and "\\toprule" in latex and "\\bottomrule" in latex
    header = latex.split("\\toprule\n")[1].split("\n")[0]
    assert header == "Verfahren & n & finale Test-Genauigkeit (\\%) & p (Holm) \\\\"
    assert "MorphNet & 5 & 98,2 & 0,00830 \\\\" in latex  # percent with one decimal, p with 3 digits
    assert "PruneTrain + Net2Net & 5 & 89,2 & -- \\\\" in latex  # NaN as a dash
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left behind


@pytest.mark.parametrize(
    ("value", "kind", "german", "english"),
    [
        (0.98164, "accuracy", "98,2", "98.2"),
        (-0.0123, "points", "$-$1,2", "-1.2".replace("-", "$-$")),
        (98234, "count", "98\\,234", "98{,}234"),
        (0.0123456, "p", "0,0123", "0.0123"),
        (0.5, "p", "0,500", "0.500"),
        (3.2e-5, "p", "$3{,}20 \\cdot 10^{-5}$", "$3.20 \\cdot 10^{-5}$"),
        (1789184, "mflops", "1,79", "1.79"),
        (1234.56, "seconds", "1\\,235", "1{,}235"),
        (float("nan"), "accuracy", "--", "--"),
        ("a_b & c", "text", "a\\_b \\& c", "a\\_b \\& c"),
    ],
)
def test_numbers_are_formatted_per_quantity_with_a_decimal_comma_in_german(value, kind, german, english):
    assert tables.format_value(value, kind, language="de") == german
    assert tables.format_value(value, kind, language="en") == english


def test_macros_carry_their_unit():
    assert tables.format_value(0.9816, "accuracy", language="de", unit=True) == "98,2\\,\\%"
    assert tables.format_value(12.34, "seconds", language="de", unit=True) == "12,3\\,s"


def test_mean_and_std_share_a_cell_and_a_header_with_the_unit():
    table = pd.DataFrame({"arm": ["fp32"], "n": [5], "final_acc_mean": [0.9234], "final_acc_std": [0.0041]})
    latex = tables.to_latex(table)
    assert "Variante & n & finale Test-Genauigkeit (\\%) \\\\" in latex
    assert "fp32 & 5 & 92,3 $\\pm$ 0,4 \\\\" in latex


def test_a_test_table_is_printed_compactly_in_the_units_of_its_quantity():
    """Issue 28: t, df and the raw p stay in the CSV; the thesis table has the means, the difference with
    its interval (accuracy in percentage points), n, p (Holm) and the verdict, in German."""
    tests = pd.DataFrame(
        {
            "comparison": ["accuracy, wide vs narrow", "total time, wide vs narrow"],
            "mean_a": [0.95, 12.0],
            "mean_b": [0.90, 6.0],
            "diff": [0.05, 6.0],
            "ci_low": [0.03, 5.0],
            "ci_high": [0.07, 7.0],
            "t": [5.1, 12.0],
            "df": [7.9, 8.0],
            "p": [0.001, 0.0001],
            "n_a": [5, 5],
            "n_b": [5, 5],
            "p_holm": [0.001, 0.0002],
            "verdict": ["significant", "not significant"],
        }
    )
    latex = tables.to_latex(tests)
    header = latex.split("\\toprule\n")[1].split("\n")[0]
    assert header.split(" & ") == [
        "Vergleich",
        "Mittel A",
        "Mittel B",
        "Differenz A – B",
        "95-\\%-KI",
        "n",
        "p (Holm)",
        "Befund \\\\",
    ]
    assert (
        "Genauigkeit, wide vs narrow & 95,0 \\% & 90,0 \\% & +5,0 Pp. & [+3,0; +7,0] & 5/5 & 0,00100 & signifikant"
        in latex
    )
    assert (
        "Gesamtzeit, wide vs narrow & 12,0 s & 6,00 s & 6,00 s & [5,00; 7,00] & 5/5 & $2{,}00 \\cdot 10^{-4}$" in latex
    )
    assert "5,1" not in latex and "7,9" not in latex  # t and df only in the CSV


def test_every_column_of_a_tests_table_and_of_a_statistics_column_is_known():
    assert tables.unknown_columns(pd.DataFrame(columns=["comparison", "mean_a", "ci_low", "p_holm", "verdict"])) == []
    assert tables.unknown_columns(pd.DataFrame(columns=["final_acc_std", "made_up"])) == ["made_up"]
    assert tables.unknown_columns(pd.DataFrame(columns=["schedule", "mean", "std"]), quantity="epoch_time") == []


def test_every_column_wraps_and_the_widths_add_up_to_the_text_width():
    """tabularx's \\hsize factors of the columns must add up to their count, or the table is not the text
    width; the first text column is the widest, numbers are right-aligned."""
    table = pd.DataFrame({"procedure": ["a"], "verdict": ["significant"], "n": [5], "seed": [0], "p": [0.1]})
    latex = tables.to_latex(table)
    spec = latex.split("\\begin{tabularx}{\\textwidth}{")[1].split("}\n")[0]
    factors = [float(f) for f in re.findall(r"hsize=([0-9.]+)\\hsize", spec)]
    assert len(factors) == 5 and sum(factors) == pytest.approx(5, abs=0.01)
    assert factors[0] == max(factors) and factors[0] / factors[2] == pytest.approx(tables.FIRST_TEXT_WEIGHT, rel=0.01)
    assert spec.count("\\raggedleft") == 3 and spec.count("\\raggedright") == 2


def test_labels_and_macro_names_follow_one_scheme():
    assert tables.table_label("table_3_1a_structure") == "tab:3.1a"
    assert tables.table_label("table_6_15_prunetrain_lars_tests") == "tab:6.15"
    assert tables.macro_name("07_comparison", "MorphNet final_acc_mean") == "\\ThesisComparisonMorphNetFinalAccMean"
    assert tables.macro_name("06_3_prunetrain_net2net", "wide 2") == "\\ThesisPrunetrainNetTwoNetWideTwo"


def test_save_macros_writes_one_newcommand_per_key_and_refuses_clashes(isolated_results):
    table = pd.DataFrame({"procedure": ["MorphNet", "wide baseline"], "final_acc_mean": [0.9816, 0.95]})
    path = tables.save_macros(tables.table_macros(table, "procedure", ["final_acc_mean"]), "07_comparison", "smoke")
    assert path == isolated_results / "figures" / "smoke" / "07_comparison" / "macros.tex"
    lines = path.read_text().splitlines()
    assert lines[1:] == [
        "\\newcommand{\\ThesisComparisonMorphNetFinalAccMean}{98,2\\,\\%}",
        "\\newcommand{\\ThesisComparisonWideBaselineFinalAccMean}{95,0\\,\\%}",
    ]
    tables.save_macros({"p value": (0.04, "p")}, "07_comparison", "smoke")  # a later call adds to the file
    assert path.read_text().splitlines()[-1] == "\\newcommand{\\ThesisComparisonPValue}{0,0400}"
    with pytest.raises(ValueError, match="both name"):
        tables.save_macros({"p-value": (0.05, "p")}, "07_comparison", "smoke")
    with pytest.raises(ValueError, match="clash"):
        tables.table_macros(pd.concat([table, table]), "procedure", ["final_acc_mean"])


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


def test_a_long_captioned_table_breaks_across_pages_with_its_header_repeated():
    """A float must fit one page; a decision table of 45 comparisons does not: above LONG_TABLE_ROWS rows a
    captioned table is a longtable (caption, label, the header again on every page)."""
    rows = tables.LONG_TABLE_ROWS + 1
    long = pd.DataFrame({"procedure": [f"p{i}" for i in range(rows)], "final_acc": [0.5] * rows})
    latex = tables.to_latex(long, caption="Lang", label="tab:7.2")
    assert "\\begin{longtable}" in latex and "\\begin{table}" not in latex
    assert "\\caption{Lang}\\label{tab:7.2}\\\\" in latex
    assert latex.count("Verfahren & finale Test-Genauigkeit (\\%) \\\\") == 2  # first head and every later page
    assert latex.index("\\endfirsthead") < latex.index("\\endhead") < latex.index("p0 & 50,0")
    short = tables.to_latex(long.head(tables.LONG_TABLE_ROWS), caption="Kurz", label="tab:7.1")
    assert short.startswith("\\begin{table}") and "longtable" not in short
