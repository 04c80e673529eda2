"""Tables for the thesis: every table a notebook shows is also written as CSV (to read back) and as a LaTeX
fragment (`\\input{...}` in the thesis), next to the notebook's figures in figures/<profile>/<notebook>/.

Both files are written to a unique temporary name in the target folder and renamed over the target, so a
reader never sees half a table, and a re-run changes a file only when its content changed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .files import atomic_write
from .plots import figure_dir

FLOAT_FORMAT = "{:.4g}".format


def to_latex(frame: pd.DataFrame, caption: str | None = None) -> str:
    """A LaTeX `tabular` of `frame` (booktabs rules, numbers with 4 significant digits, text escaped),
    wrapped in a `table` environment with a caption when one is given."""
    latex = frame.to_latex(index=False, escape=True, float_format=FLOAT_FORMAT, na_rep="--")
    if caption is None:
        return latex
    escaped = caption.replace("%", r"\%").replace("&", r"\&").replace("_", r"\_")
    return f"\\begin{{table}}[ht]\n\\centering\n{latex}\\caption{{{escaped}}}\n\\end{{table}}\n"


def save(
    frame: pd.DataFrame, name: str, notebook: str | None = None, profile: str | None = None, caption: str | None = None
) -> list[Path]:
    """Write `frame` as `<name>.csv` and `<name>.tex` into `plots.figure_dir(notebook, profile)` and return
    both paths. `name` is a bare file name, e.g. "table_7_1_comparison"."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"tables.save needs a pandas DataFrame, got {type(frame).__name__}")
    if not name or "/" in name or "\\" in name or Path(name).suffix.lower() in {".csv", ".tex"}:
        raise ValueError(f"table name {name!r} must be a bare file name without folder or extension")
    directory = figure_dir(notebook, profile)
    directory.mkdir(parents=True, exist_ok=True)
    csv_path, tex_path = directory / f"{name}.csv", directory / f"{name}.tex"
    for path, text in ((csv_path, frame.to_csv(index=False)), (tex_path, to_latex(frame, caption))):
        atomic_write(path, lambda stream, text=text: stream.write(text.encode("utf-8")))
    return [csv_path, tex_path]
