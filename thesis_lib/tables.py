"""Tables for the thesis: every table a notebook shows is also written as CSV (every column, to read back)
and as a complete LaTeX table (`\\input{...}` in the thesis), next to the notebook's figures in
figures/<profile>/<notebook>/; key numbers go to the notebook's `macros.tex` (`save_macros`).

The LaTeX table is what a printed German thesis needs (issue 28): a `table` environment (a `longtable`
above LONG_TABLE_ROWS rows) with the caption above, `\\label{tab:<number>}` from the file name
(table_7_1_... is tab:7.1), booktabs rules, a `tabularx` of the text width whose columns wrap (the first
text column widest), headers with units from `plots.LABELS` in the figures' language, and numbers
formatted per quantity (`KINDS`): accuracies in percent with one decimal,
parameters as integers with thin-space thousands, p-values with three significant digits, a decimal comma
in German, never scientific notation for ordinary values. A frame's `<x>_mean` and `<x>_std` columns
share one cell ("92,3 ± 0,4"). A test table (one with ci_low / ci_high) is printed compactly: comparison,
the two means, the difference with its interval, n, the Holm-adjusted p and the verdict; t, df, the raw p
and the notes stay in the CSV.

Every file is written to a unique temporary name in the target folder and renamed over the target, so a
reader never sees half a table, and a re-run changes a file only when its content changed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from . import plots
from .files import atomic_write
from .plots import figure_dir

__all__ = [
    "COLUMNS",
    "KINDS",
    "Column",
    "column_spec",
    "format_value",
    "latex_document",
    "label_of",
    "macro_name",
    "save",
    "save_macros",
    "table_label",
    "table_macros",
    "to_latex",
    "unknown_columns",
]

# How a quantity is printed: (scale, unit appended to a header / macro, formatter name).
KINDS: dict[str, tuple[float, str, str]] = {
    "text": (1.0, "", "text"),
    "accuracy": (100.0, "%", "fixed1"),  # a share in [0, 1] shown in percent
    "share": (100.0, "%", "fixed1"),
    "points": (100.0, "Pp.", "signed1"),  # a difference of accuracies or shares, in percentage points
    "count": (1.0, "", "integer"),
    "mflops": (1e-6, "MFLOPs", "significant"),
    "gflops": (1e-9, "GFLOPs", "significant"),
    "seconds": (1.0, "s", "significant"),
    "p": (1.0, "", "significant"),
    "number": (1.0, "", "significant"),
}
# The difference kind of each kind (a test table's diff and interval columns).
DIFFERENCE_KIND = {"accuracy": "points", "share": "points"}


@dataclass(frozen=True)
class Column:
    """A table column: the `plots.LABELS` key of its header (or the header itself when it is no key) and
    its `KINDS` entry."""

    label: str
    kind: str


_TEXT = {
    "procedure",
    "arm",
    "group",
    "net",
    "schedule",
    "comparison",
    "verdict",
    "quantity",
    "kind",
    "phase",
    "relation",
    "x",
    "found_stage_widths",
    "found_stage_blocks",
    "found_stage_layers",
    "family",
    "candidate",
    "reference",
    "test",
    "outcome",
    "reference_outcome",
    "pair_verdict",
    "not_comparable",
    "sentence",
    "layer",
    "resource",
    "kept_next_round",
    "kept_at_end",
}
_KINDS_OF_COLUMNS: dict[str, tuple[str, ...]] = {
    "accuracy": ("final_acc", "best_acc", "test_acc", "train_acc", "test_acc_after_zeroing"),
    "share": (
        "kept_params",
        "train_share",
        "prune_share",
        "grow_share",
        "flops / budget",
        "training_flops_removed",
        "inference_flops_removed",
        "params removed",
        "flops_ratio",
        "size_ratio",
    ),
    "count": (
        "n",
        "n_a",
        "n_b",
        "seed",
        "epoch",
        "epochs",
        "interval",
        "reconfigurations",
        "growths",
        "stages",
        "blocks",
        "params",
        "final_params",
        "final_params_after",
        "found_params",
        "params_before",
        "params_after",
        "parameters",
        "parameters_draft",
        "max_batch",
        "max_batch_draft",
        "batch_size",
        "layers_after_growth",
        "layers_next_round",
        "layers_at_end",
        "judged_rounds",
        "in",
        "out",
        "in (narrow)",
        "out (narrow)",
    ),
    "mflops": ("flops", "final_flops", "found_flops", "flops_before", "flops_after", "budget"),
    "gflops": ("training_flops",),
    "seconds": (
        "total_time",
        "mean_epoch_time",
        "steady_epoch_time",
        "first_epoch_time",
        "epoch_time",
        "train_time",
        "prune_time",
        "grow_time",
        "search_time",
    ),
    "p": ("p", "p_holm"),
    "number": (
        "t",
        "df",
        "slope",
        "intercept",
        "r2",
        "lasso_ratio",
        "threshold",
        "lr",
        "margin",
        "direction",
        "relative_strength",
        "slope_ci_low",
        "slope_ci_high",
        # A test table's own columns: their cells take the kind of the row's quantity (`_row_kind`).
        "mean_a",
        "mean_b",
        "mean",
        "reference_mean",
        "diff",
        "ci_low",
        "ci_high",
    ),
}
COLUMNS: dict[str, Column] = {
    **{name: Column(name, "text") for name in _TEXT},
    **{name: Column(name, kind) for kind, names in _KINDS_OF_COLUMNS.items() for name in names},
}
# Columns whose name carries a profile or data set: "parameters (smoke)" is parameters, "(smoke)" kept.
_QUALIFIED = re.compile(r"^(?P<base>parameters|FLOPs per image) \((?P<qualifier>[^)]*)\)$")
_QUALIFIED_BASE = {"parameters": "params", "FLOPs per image": "flops"}
# Test tables' descriptions of a quantity (the text before the first comma of a comparison, or ch05's
# `quantity` column) and the column they describe.
_DESCRIPTIONS = {
    "final accuracy": "final_acc",
    "accuracy": "final_acc",
    "kept parameters": "kept_params",
    "final parameters": "final_params",
    "parameters": "params",
    "training flops": "training_flops",
    "flops per image": "flops",
    "epochs": "epochs",
    "mean epoch time": "mean_epoch_time",
    "epoch time": "steady_epoch_time",
    "epoch time without the first": "steady_epoch_time",
    "total time": "total_time",
    "total training time": "total_time",
    "training time": "total_time",
    "training time incl. search": "total_time",
    "alive flops / full": "flops_ratio",
    "alive size / full": "size_ratio",
}
_STATISTICS = {"mean": "", "std": "sd", "sd": "sd", "min": "min", "max": "max"}


def column_spec(name: str, quantity: str | None = None) -> Column | None:
    """The `Column` of a frame column: `COLUMNS`, a "<x>_mean" / "<x>_std" statistic of a known x, a
    qualified count ("parameters (smoke)"), or a bare statistic ("mean", "std") of the table's `quantity`;
    None when unknown."""
    if name in _STATISTICS and quantity in COLUMNS:
        return COLUMNS[quantity]
    if name in COLUMNS:
        return COLUMNS[name]
    qualified = _QUALIFIED.match(name)
    if qualified:
        return Column(name, COLUMNS[_QUALIFIED_BASE[qualified["base"]]].kind)
    base, _, statistic = name.rpartition("_")
    if statistic in _STATISTICS and base in COLUMNS:
        return COLUMNS[base]
    return None


def unknown_columns(frame: pd.DataFrame, quantity: str | None = None) -> list[str]:
    """The columns of `frame` that `to_latex` would print with their code name and a generic number format
    (no `column_spec`): every thesis table should have none."""
    return [str(name) for name in frame.columns if column_spec(str(name), quantity) is None]


def label_of(name: str, quantity: str | None = None, kind: str | None = None) -> str:
    """The printed header of column `name` in the current language (`plots.LABELS`), with the statistic it
    holds ("<x>_std": ", SD") and its kind's unit in parentheses; an unknown column keeps its name."""
    qualified = _QUALIFIED.match(name)
    key, statistic = name, ""
    if qualified:
        key = _QUALIFIED_BASE[qualified["base"]]
    elif name in _STATISTICS and quantity in plots.LABELS:
        key, statistic = str(quantity), name
    elif name not in plots.LABELS:
        base, _, suffix = name.rpartition("_")
        if suffix in _STATISTICS and base in plots.LABELS:
            key, statistic = base, suffix
    text = plots.label(key) if key in plots.LABELS else name
    if qualified:
        text = f"{text} ({qualified['qualifier']})"
    if _STATISTICS.get(statistic):
        text = f"{text}, {plots.translate(plots.TERMS, _STATISTICS[statistic])}"
    spec = column_spec(name, quantity)
    unit = KINDS[kind or (spec.kind if spec else "number")][1]
    if unit and f"({unit}" not in text and not (len(unit) > 2 and unit in text):
        text = f"{text} ({unit})"
    return text


def format_value(
    value: Any, kind: str, language: str | None = None, unit: bool = False, unit_space: str = "\\,"
) -> str:
    """`value` printed as LaTeX text for a quantity of `kind` (see `KINDS`); NaN / None as "--". German
    gets a decimal comma and thin-space thousands; `unit` appends the kind's unit (for macros)."""
    if kind not in KINDS:
        raise ValueError(f"unknown table kind {kind!r}; use one of {sorted(KINDS)}")
    language = language or plots.language()
    scale, unit_text, formatter = KINDS[kind]
    if formatter == "text":
        return _escape(str(value)) if not _missing(value) else "--"
    if _missing(value):
        return "--"
    number = float(value) * scale
    if formatter == "fixed1":
        text = f"{number:.1f}"
    elif formatter == "signed1":
        text = f"{number:+.1f}"
    elif formatter == "integer":
        text = f"{round(number):,}"
    else:
        text = _significant(number)
    text = _localize(text, language)
    if unit and unit_text:
        text = f"{text}{unit_space}{_escape(unit_text)}"
    return text


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _significant(number: float) -> str:
    """Three significant digits, plain for 0.001 <= |x| < 10^6 (larger as a rounded integer), a power of
    ten below."""
    if number == 0 or not math.isfinite(number):
        return f"{number:g}"
    if abs(number) >= 1000:
        return f"{round(number):,}"
    if abs(number) >= 1e-3:
        text = f"{number:#.3g}"
        return text.rstrip(".")
    mantissa, exponent = f"{number:.2e}".split("e")
    return f"${mantissa} \\cdot 10^{{{int(exponent)}}}$"


def _localize(text: str, language: str) -> str:
    """Decimal comma and thin-space thousands in German (point and comma in English); a true minus."""
    if language == "de":
        text = text.replace(",", "\0").replace(".", "{,}" if "$" in text else ",").replace("\0", "\\,")
    else:
        text = text.replace(",", "{,}")
    return text.replace("-", "$-$", 1) if text.startswith("-") else text


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_"}
_LATEX_SPECIALS |= {"{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


_TABLE_NUMBER = re.compile(r"^table_(\d+)_(\d+)([a-z]?)_")


def table_label(name: str) -> str:
    """`\\label` key of a table file: table_7_1_comparison is tab:7.1, table_3_1a_structure tab:3.1a."""
    match = _TABLE_NUMBER.match(name)
    return f"tab:{match[1]}.{match[2]}{match[3]}" if match else f"tab:{name}"


def _is_test_table(frame: pd.DataFrame) -> bool:
    return {"ci_low", "ci_high", "diff"} <= set(frame.columns)


# A test table's columns that stay in the CSV only (t, df and the raw p are there; the verdict names them).
_TEST_CSV_ONLY = ("t", "df", "not_comparable", "sentence", "candidate", "reference", "direction", "test")
_TEST_CSV_ONLY += ("reference_outcome", "family", "margin")


def _row_kind(row: pd.Series) -> str:
    """The kind of a test row's means: its `quantity` column (a column name or a description), else the
    description before the comparison's first comma."""
    for text in (row.get("quantity"), str(row.get("comparison", "")).split(",")[0]):
        if isinstance(text, str):
            column = text if text in COLUMNS else _DESCRIPTIONS.get(text.strip().lower())
            if column is not None:
                return COLUMNS[column].kind
    return "number"


def _test_cells(frame: pd.DataFrame) -> tuple[list[str], list[list[str]], list[bool]]:
    """Headers, cells and numeric flags of a compact test table."""
    mean_a = "mean_a" if "mean_a" in frame else "mean"
    mean_b = "mean_b" if "mean_b" in frame else "reference_mean"
    p_column = "p_holm" if "p_holm" in frame else "p"
    verdicts = [c for c in ("verdict", "outcome", "pair_verdict") if c in frame]
    hidden = {*_TEST_CSV_ONLY, *verdicts, *(("quantity",) if "comparison" in frame else ())}
    shown_text = [c for c in frame.columns if c in COLUMNS and COLUMNS[c].kind == "text" and c not in hidden]
    words = plots.translate
    headers = [label_of(c) for c in shown_text] + [
        words(plots.TERMS, "mean_a"),
        words(plots.TERMS, "mean_b"),
        words(plots.TERMS, "difference"),
        words(plots.TERMS, "interval"),
        "n",
        label_of(p_column),
    ]
    headers += [label_of(c) for c in verdicts]
    numeric = [False] * len(shown_text) + [True] * 6 + [False] * len(verdicts)
    rows = []
    for _, row in frame.iterrows():
        kind = _row_kind(row)
        difference = DIFFERENCE_KIND.get(kind, kind)
        interval = "--"
        if not (_missing(row["ci_low"]) or _missing(row["ci_high"])):
            low, high = (format_value(row[c], difference) for c in ("ci_low", "ci_high"))
            interval = f"[{low}; {high}]"
        n = f"{_count(row.get('n_a'))}/{_count(row.get('n_b'))}" if "n_a" in frame else "--"
        cells = [_text_cell(row[c]) for c in shown_text]
        # A breakable space before the unit: a narrow column may put the unit on a line of its own.
        cells += [format_value(row[c], kind, unit=True, unit_space=" ") for c in (mean_a, mean_b)]
        cells += [format_value(row["diff"], difference, unit=True, unit_space=" ")]
        cells += [interval, n, format_value(row[p_column], "p")]
        cells += [_text_cell(row[c]) for c in verdicts]
        rows.append(cells)
    return headers, rows, numeric


def _count(value: Any) -> str:
    return "--" if _missing(value) else str(int(value))


def _text_cell(value: Any) -> str:
    """A text cell in the current language where its words are `plots.TERMS` (verdicts, outcomes, the
    description before a comparison's first comma), escaped."""
    if _missing(value) or value == "":
        return "--"
    text = str(value)
    if text.startswith("not comparable"):
        text = "not comparable"
    head, comma, rest = text.partition(", ")
    if text in plots.TERMS:
        text = plots.translate(plots.TERMS, text)
    elif comma and head in plots.TERMS:
        text = f"{plots.translate(plots.TERMS, head)}, {rest}"
    return _escape(text)


def _plain_cells(frame: pd.DataFrame, quantity: str | None) -> tuple[list[str], list[list[str]], list[bool]]:
    """Headers, cells and numeric flags of an ordinary table: `<x>_mean` with its `<x>_std` in one cell."""
    columns = [str(c) for c in frame.columns]
    merged = {}
    for name in columns:
        base, _, statistic = name.rpartition("_")
        if statistic == "mean" and f"{base}_std" in columns:
            merged[name] = f"{base}_std"
    spreads = set(merged.values())
    headers, numeric, getters = [], [], []
    for name in columns:
        if name in spreads:
            continue
        spec = column_spec(name, quantity)
        kind = spec.kind if spec else ("number" if pd.api.types.is_numeric_dtype(frame[name]) else "text")
        if name in merged:
            base = name.rpartition("_")[0]
            headers.append(label_of(base, kind=kind))
            getters.append(
                lambda row, n=name, s=merged[name], k=kind: (
                    f"{format_value(row[n], k)} $\\pm$ {format_value(row[s], k)}"
                    if not _missing(row[s])
                    else format_value(row[n], k)
                )
            )
        else:
            headers.append(label_of(name, quantity, kind=kind))
            getters.append(lambda row, n=name, k=kind: _text_cell(row[n]) if k == "text" else format_value(row[n], k))
        numeric.append(kind != "text")
    rows = [[get(row) for get in getters] for _, row in frame.iterrows()]
    return headers, rows, numeric


# Every column of a table wraps (tabularx X columns: text ragged right, numbers ragged left), so a table
# always keeps the text width and a long header breaks over lines; the first text column, where the
# comparisons and names stand, gets FIRST_TEXT_WEIGHT times a number column's width, other text columns
# OTHER_TEXT_WEIGHT times.
FIRST_TEXT_WEIGHT = 3.0
OTHER_TEXT_WEIGHT = 1.8


def _column_weights(numeric: list[bool]) -> list[float]:
    """Each column's share of the table's width, adding up to 1 (see FIRST_TEXT_WEIGHT)."""
    first_text = next((i for i, is_number in enumerate(numeric) if not is_number), None)
    weights = [1.0 if is_number else OTHER_TEXT_WEIGHT for is_number in numeric]
    if first_text is not None:
        weights[first_text] = FIRST_TEXT_WEIGHT
    return [weight / sum(weights) for weight in weights]


def _aligns(numeric: list[bool]) -> list[str]:
    return [r"\raggedleft" if is_number else r"\raggedright" for is_number in numeric]


def _column_spec(numeric: list[bool]) -> str:
    """The tabularx column spec: X columns whose widths (\\hsize factors) add up to the column count."""
    shares = _column_weights(numeric)
    return "".join(
        f">{{\\hsize={share * len(shares):.3f}\\hsize{align}\\arraybackslash}}X"
        for share, align in zip(shares, _aligns(numeric))
    )


def _long_column_spec(numeric: list[bool]) -> str:
    """The longtable column spec: p columns of the same shares of the text width as `_column_spec`'s."""
    shares = _column_weights(numeric)
    return "".join(
        f">{{{align}\\arraybackslash}}p{{\\dimexpr {share:.3f}\\textwidth-2\\tabcolsep\\relax}}"
        for share, align in zip(shares, _aligns(numeric))
    )


# A captioned table of more rows breaks across pages (longtable, its header repeated on every page): a
# float must fit one page, and a decision table of 45 comparisons does not.
LONG_TABLE_ROWS = 25


def to_latex(
    frame: pd.DataFrame, caption: str | None = None, label: str | None = None, quantity: str | None = None
) -> str:
    """`frame` as a LaTeX table (see the module docstring): a `table` with `caption` and `label` when
    given, else the bare `tabularx`. `quantity` names what bare "mean" / "std" columns measure."""
    headers, rows, numeric = _test_cells(frame) if _is_test_table(frame) else _plain_cells(frame, quantity)
    header = " & ".join(_escape(h) for h in headers) + " \\\\"
    if caption is not None and len(rows) > LONG_TABLE_ROWS:
        label_part = f"\\label{{{label}}}" if label else ""
        long_lines = [
            "{\\small\\setlength{\\tabcolsep}{4pt}",
            f"\\begin{{longtable}}{{{_long_column_spec(numeric)}}}",
            f"\\caption{{{_escape(caption)}}}{label_part}\\\\",
            "\\toprule",
            header,
            "\\midrule",
            "\\endfirsthead",
            "\\toprule",
            header,
            "\\midrule",
            "\\endhead",
            "\\bottomrule",
            "\\endlastfoot",
            *(" & ".join(cells) + " \\\\" for cells in rows),
            "\\end{longtable}}",
        ]
        return "\n".join(long_lines) + "\n"
    lines = [
        f"\\begin{{tabularx}}{{\\textwidth}}{{{_column_spec(numeric)}}}",
        "\\toprule",
        header,
        "\\midrule",
        *(" & ".join(cells) + " \\\\" for cells in rows),
        "\\bottomrule",
        "\\end{tabularx}",
    ]
    body = "\n".join(lines) + "\n"
    if caption is None:
        return body
    label_line = f"\\label{{{label}}}\n" if label else ""
    return (
        "\\begin{table}[htbp]\n\\centering\n\\small\n\\setlength{\\tabcolsep}{4pt}\n"
        f"\\caption{{{_escape(caption)}}}\n{label_line}{body}\\end{{table}}\n"
    )


def save(
    frame: pd.DataFrame,
    name: str,
    notebook: str | None = None,
    profile: str | None = None,
    caption: str | None = None,
    quantity: str | None = None,
) -> list[Path]:
    """Write `frame` as `<name>.csv` (every column) and `<name>.tex` (`to_latex` with `caption` and the
    label of `table_label(name)`) into `plots.figure_dir(notebook, profile)` and return both paths. `name`
    is a bare file name, e.g. "table_7_1_comparison"."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"tables.save needs a pandas DataFrame, got {type(frame).__name__}")
    if not name or "/" in name or "\\" in name or Path(name).suffix.lower() in {".csv", ".tex"}:
        raise ValueError(f"table name {name!r} must be a bare file name without folder or extension")
    directory = figure_dir(notebook, profile)
    directory.mkdir(parents=True, exist_ok=True)
    csv_path, tex_path = directory / f"{name}.csv", directory / f"{name}.tex"
    latex = to_latex(frame, caption, table_label(name), quantity)
    for path, text in ((csv_path, frame.to_csv(index=False)), (tex_path, latex)):
        atomic_write(path, lambda stream, text=text: stream.write(text.encode("utf-8")))
    return [csv_path, tex_path]


_DIGITS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")


def macro_name(notebook: str, key: str) -> str:
    """The LaTeX command of a key result: `\\Thesis<Notebook><Key>`, both parts in CamelCase of their
    words, digits spelled out (LaTeX command names are letters only), the notebook's leading chapter
    number dropped: macro_name("07_comparison", "morphnet_final_acc") is \\ThesisComparisonMorphnetFinalAcc,
    macro_name("06_3_prunetrain_net2net", "x") \\ThesisPrunetrainNetTwoNetX."""
    words = re.sub(r"^[\d_]+", "", notebook)
    return "\\Thesis" + _camel(words) + _camel(key)


def _camel(text: str) -> str:
    parts = re.findall(r"[A-Za-z]+|\d", text)
    camel = "".join(_DIGITS[int(p)] if p.isdigit() else p[:1].upper() + p[1:] for p in parts)
    if not camel:
        raise ValueError(f"{text!r} has no letters or digits to name a macro with")
    return camel


_MACROS: dict[Path, dict[str, tuple[str, str]]] = {}


def table_macros(
    frame: pd.DataFrame, key: str, columns: Sequence[str], quantity: str | None = None
) -> dict[str, tuple[Any, str]]:
    """Macro values (see `save_macros`) of a table: one per row and column of `columns`, keyed
    "<the row's `key` value> <column>", each printed as its column prints in `to_latex` (a test table's
    means and differences in the unit of the row's quantity)."""
    missing = [c for c in (key, *columns) if c not in frame]
    if missing:
        raise ValueError(f"table has no column(s) {missing}; its columns are {list(frame.columns)}")
    values: dict[str, tuple[Any, str]] = {}
    for _, row in frame.iterrows():
        row_kind = _row_kind(row) if _is_test_table(frame) else None
        for column in columns:
            spec = column_spec(column, quantity)
            kind = spec.kind if spec else "number"
            if row_kind is not None and column in ("mean_a", "mean_b", "mean", "reference_mean"):
                kind = row_kind
            elif row_kind is not None and column in ("diff", "ci_low", "ci_high"):
                kind = DIFFERENCE_KIND.get(row_kind, row_kind)
            name = f"{row[key]} {column}"
            if name in values:
                raise ValueError(f"two rows of the table have {key} = {row[key]!r}: their macros would clash")
            values[name] = (row[column], kind)
    return values


def save_macros(values: Mapping[str, tuple[Any, str]], notebook: str | None = None, profile: str | None = None) -> Path:
    """Add `values` (key -> (value, `KINDS` name)) to the notebook's `macros.tex` and rewrite it: one
    `\\newcommand` per key, named by `macro_name` and printed by `format_value` with its unit (text in the
    figures' language), so the thesis quotes `\\ThesisComparisonMorphnetFinalAccMean` instead of copying
    digits. The file holds what this process saved for the notebook (a re-run starts afresh); a key saved
    again replaces its value; two keys that name one macro are an error."""
    directory = figure_dir(notebook, profile)
    notebook = directory.name
    saved = _MACROS.setdefault(directory, {})
    for key, (value, kind) in values.items():
        name = macro_name(notebook, key)
        if name in saved and saved[name][0] != key:
            raise ValueError(f"macro keys {saved[name][0]!r} and {key!r} both name {name}; rename one")
        text = _text_cell(value) if kind == "text" else format_value(value, kind, unit=True)
        saved[name] = (key, text)
    lines = [f"% Key results of notebook {notebook} on profile {directory.parent.name}, written by thesis_lib.tables"]
    lines += [f"\\newcommand{{{name}}}{{{text}}}" for name, (_, text) in saved.items()]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "macros.tex"
    content = "\n".join(lines) + "\n"
    atomic_write(path, lambda stream: stream.write(content.encode("utf-8")))
    return path


# The packages the tables need: booktabs (texlive-latex-recommended), tabularx, array and longtable
# (texlive-latex-base).
PREAMBLE = (
    "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n\\usepackage{tabularx}\n"
    "\\usepackage{array}\n\\usepackage{longtable}\n"
    # The thesis's text width (plots.FIGURE_SIZES["full"]: 6.0 in) on an A4 page.
    "\\setlength{\\textwidth}{15.2cm}\n\\setlength{\\oddsidemargin}{0cm}\n\\setlength{\\paperheight}{29.7cm}\n"
    "\\setlength{\\paperwidth}{21cm}\n"
)
_MACRO = re.compile(r"\\newcommand\{(\\[A-Za-z]+)\}")


def latex_document(folder: str | Path) -> str:
    """A LaTeX document that `\\input`s every `macros.tex` and table under `folder` (a profile's figures
    folder) and quotes every macro once, in the thesis's preamble: what compiles here compiles in the thesis
    (CI compiles it after the `smoke` re-run)."""
    folder = Path(folder)
    macro_files = sorted(folder.glob("*/macros.tex"))
    table_files = sorted(folder.glob("*/table_*.tex"))
    if not table_files:
        raise ValueError(f"no table_*.tex under {folder}; re-run the notebooks first")
    names = [name for path in macro_files for name in _MACRO.findall(path.read_text(encoding="utf-8"))]
    body = [f"\\input{{{path.as_posix()}}}" for path in macro_files]
    body += ["\\begin{document}"]
    body += [f"\\noindent\\texttt{{\\detokenize{{{name}}}}}: {name}\\par" for name in names]
    body += [f"\\input{{{path.as_posix()}}}\n\\clearpage" for path in table_files]
    body += ["\\end{document}"]
    return PREAMBLE + "\n".join(body) + "\n"
