"""One figure style for the thesis, print sizes for an A4 single-column page, and `save` that writes every
figure as PDF (for the thesis) and PNG (for quick viewing) under figures/<profile>/<notebook>/.

Saved PDFs are byte-stable: the same figure saved twice gives identical files, so regenerating the
figures with papermill only changes files whose content changed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter
from matplotlib.transforms import ScaledTranslation

from . import project_root
from .files import atomic_write

THESIS_STYLE: dict[str, Any] = {
    # Serif text to match the thesis body. Only DejaVu Serif, which ships with matplotlib: every machine
    # then renders the same glyphs, so regenerated figures are identical everywhere, and it is TrueType,
    # which Type 42 embedding (below) needs. Mathtext in the same serif; no LaTeX, so figures build anywhere.
    "font.family": "serif",
    "font.serif": ["DejaVu Serif"],
    "mathtext.fontset": "dejavuserif",
    "text.usetex": False,
    "font.size": 9.0,
    "axes.titlesize": 9.0,
    "axes.labelsize": 9.0,
    "legend.fontsize": 8.0,
    "legend.title_fontsize": 8.0,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "figure.titlesize": 10.0,
    # Thin lines that still print: about 0.35 mm for data, less for frames and grid.
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "patch.linewidth": 0.6,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "axes.grid": True,
    "axes.axisbelow": True,
    # Tick labels as plain values (1754000, not a "+1.754e6" offset or a "1e6" factor a reader must apply).
    "axes.formatter.useoffset": False,
    "axes.formatter.limits": (-4, 9),
    "grid.color": "0.88",
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "axes.prop_cycle": cycler(color=sns.color_palette("colorblind").as_hex()),
    "image.cmap": "viridis",
    # TrueType (Type 42) fonts in PDFs: text stays selectable and searchable in the thesis PDF.
    "pdf.fonttype": 42,
    # Fixed salt so that SVG element ids do not change between runs either.
    "svg.hashsalt": "thesis_lib",
}

FIGURE_SIZES: dict[str, tuple[float, float]] = {
    "full": (6.0, 3.7),  # the A4 text width
    "half": (2.9, 2.4),  # two side by side (sub-figures a, b)
    "square": (4.0, 4.0),  # grids, heat maps
}

PNG_DPI = 200
# The gap between a figure's lowest drawn element and the stamp of a small profile (`stamp`).
STAMP_GAP_PT = 4.0
_PDF_METADATA = {"Creator": "thesis_lib.plots", "Producer": "thesis_lib.plots", "CreationDate": None, "ModDate": None}
_PNG_METADATA = {"Software": "thesis_lib.plots"}


LANGUAGES = ("de", "en")
LABELS: dict[str, dict[str, str]] = {
    # The quantities that recur across figures, German (the thesis's language) and English.
    "epoch": {"de": "Epoche", "en": "epoch"},
    "training_progress": {"de": "Anteil des Trainings (Epoche / Epochen)", "en": "share of training (epoch / epochs)"},
    "test_acc": {"de": "Test-Genauigkeit", "en": "test accuracy"},
    "train_acc": {"de": "Trainings-Genauigkeit", "en": "training accuracy"},
    "final_acc": {"de": "finale Test-Genauigkeit", "en": "final test accuracy"},
    "epoch_time": {"de": "Trainingszeit pro Epoche (s)", "en": "training time per epoch (s)"},
    "mean_epoch_time": {"de": "mittlere Trainingszeit pro Epoche (s)", "en": "mean training time per epoch (s)"},
    "total_time": {"de": "Trainingszeit gesamt (s)", "en": "total training time (s)"},
    "params": {"de": "Parameter", "en": "parameters"},
    "kept_params": {"de": "verbliebene Parameter (Anteil)", "en": "parameters kept (share)"},
    "flops": {"de": "MFLOPs pro Bild", "en": "MFLOPs per image"},
    "training_flops": {"de": "Trainings-GFLOPs gesamt", "en": "training GFLOPs in total"},
    "batch_size": {"de": "Batchgröße", "en": "batch size"},
    "memory": {"de": "Speicher (MiB)", "en": "memory (MiB)"},
    "channels": {"de": "Kanäle", "en": "channels"},
    "stage": {"de": "Phase", "en": "stage"},
    "lr": {"de": "Lernrate", "en": "learning rate"},
    "seeds": {"de": "Seeds", "en": "seeds"},
    "band_minmax": {"de": "Band: Minimum bis Maximum über {n} Seeds", "en": "band: minimum to maximum over {n} seeds"},
    "mean_band": {
        "de": "Mittelwert, Band: Minimum bis Maximum über {n} Seeds",
        "en": "mean, band: minimum to maximum over {n} seeds",
    },
    # Table columns (`tables`): the header of each column the notebooks' tables print.
    "procedure": {"de": "Verfahren", "en": "procedure"},
    "arm": {"de": "Variante", "en": "arm"},
    "group": {"de": "Gruppe", "en": "group"},
    "net": {"de": "Netz", "en": "net"},
    "schedule": {"de": "Lernraten-Verlauf", "en": "lr schedule"},
    "comparison": {"de": "Vergleich", "en": "comparison"},
    "verdict": {"de": "Befund", "en": "verdict"},
    "quantity": {"de": "Größe", "en": "quantity"},
    "kind": {"de": "Art", "en": "kind"},
    "phase": {"de": "Phase", "en": "stage"},
    "relation": {"de": "Beziehung", "en": "relation"},
    "x": {"de": "Einflussgröße", "en": "regressor"},
    "found_stage_widths": {"de": "Breiten je Phase", "en": "widths per stage"},
    "found_stage_blocks": {"de": "Blöcke je Phase", "en": "blocks per stage"},
    "found_stage_layers": {"de": "Schichten je Phase", "en": "layers per stage"},
    "family": {"de": "Familie", "en": "family"},
    "candidate": {"de": "Kandidat", "en": "candidate"},
    "reference": {"de": "Referenz", "en": "reference"},
    "test": {"de": "Test", "en": "test"},
    "outcome": {"de": "Ergebnis", "en": "outcome"},
    "reference_outcome": {"de": "Ergebnis der Referenz", "en": "outcome of the reference"},
    "pair_verdict": {"de": "Urteil", "en": "verdict"},
    "not_comparable": {"de": "nicht vergleichbar", "en": "not comparable"},
    "sentence": {"de": "Satz", "en": "sentence"},
    "layer": {"de": "Schicht", "en": "layer"},
    "resource": {"de": "Ressource", "en": "resource"},
    "kept_next_round": {"de": "in der nächsten Runde erhalten", "en": "kept in the next round"},
    "kept_at_end": {"de": "am Ende erhalten", "en": "kept at the end"},
    "best_acc": {"de": "beste Test-Genauigkeit", "en": "best test accuracy"},
    "test_acc_after_zeroing": {"de": "Test-Genauigkeit nach dem Nullsetzen", "en": "test accuracy after zeroing"},
    "train_share": {"de": "Anteil Training", "en": "share training"},
    "prune_share": {"de": "Anteil Verkleinern", "en": "share pruning"},
    "grow_share": {"de": "Anteil Wachsen", "en": "share growing"},
    "flops / budget": {"de": "FLOPs / Budget", "en": "FLOPs / budget"},
    "training_flops_removed": {"de": "eingesparte Trainings-FLOPs", "en": "training FLOPs saved"},
    "inference_flops_removed": {"de": "eingesparte Inferenz-FLOPs", "en": "inference FLOPs saved"},
    "params removed": {"de": "entfernte Parameter", "en": "parameters removed"},
    "flops_ratio": {"de": "verbliebene FLOPs", "en": "FLOPs kept"},
    "size_ratio": {"de": "verbliebene Größe", "en": "size kept"},
    "n": {"de": "n", "en": "n"},
    "n_a": {"de": "n (A)", "en": "n (A)"},
    "n_b": {"de": "n (B)", "en": "n (B)"},
    "seed": {"de": "Seed", "en": "seed"},
    "epochs": {"de": "Epochen", "en": "epochs"},
    "interval": {"de": "Intervall (Epochen)", "en": "interval (epochs)"},
    "reconfigurations": {"de": "Rekonfigurationen", "en": "reconfigurations"},
    "growths": {"de": "Wachstumsschritte", "en": "growths"},
    "stages": {"de": "Phasen", "en": "stages"},
    "blocks": {"de": "Blöcke je Phase", "en": "blocks per stage"},
    "final_params": {"de": "Parameter am Ende", "en": "final parameters"},
    "final_params_after": {"de": "Parameter am Ende", "en": "final parameters"},
    "found_params": {"de": "Parameter (gefunden)", "en": "parameters (found)"},
    "params_before": {"de": "Parameter vorher", "en": "parameters before"},
    "params_after": {"de": "Parameter nachher", "en": "parameters after"},
    "parameters": {"de": "Parameter", "en": "parameters"},
    "parameters_draft": {"de": "Parameter (Entwurf)", "en": "parameters (draft)"},
    "max_batch": {"de": "größte Batchgröße", "en": "largest batch"},
    "max_batch_draft": {"de": "größte Batchgröße (Entwurf)", "en": "largest batch (draft)"},
    "layers_after_growth": {"de": "Schichten nach dem Wachsen", "en": "layers after the growth"},
    "layers_next_round": {"de": "Schichten nach der nächsten Runde", "en": "layers after the next round"},
    "layers_at_end": {"de": "Schichten am Ende", "en": "layers at the end"},
    "judged_rounds": {"de": "bewertete Runden", "en": "rounds judged"},
    "in": {"de": "Eingangskanäle", "en": "input channels"},
    "out": {"de": "Ausgangskanäle", "en": "output channels"},
    "in (narrow)": {"de": "Eingangskanäle (schmal)", "en": "input channels (narrow)"},
    "out (narrow)": {"de": "Ausgangskanäle (schmal)", "en": "output channels (narrow)"},
    "final_flops": {"de": "MFLOPs pro Bild am Ende", "en": "final MFLOPs per image"},
    "found_flops": {"de": "MFLOPs pro Bild (gefunden)", "en": "MFLOPs per image (found)"},
    "flops_before": {"de": "MFLOPs pro Bild vorher", "en": "MFLOPs per image before"},
    "flops_after": {"de": "MFLOPs pro Bild nachher", "en": "MFLOPs per image after"},
    "budget": {"de": "Budget (MFLOPs pro Bild)", "en": "budget (MFLOPs per image)"},
    "steady_epoch_time": {"de": "Epochenzeit ohne die erste (s)", "en": "epoch time without the first (s)"},
    "first_epoch_time": {"de": "erste Epoche (s)", "en": "first epoch (s)"},
    "train_time": {"de": "Trainingszeit (s)", "en": "training time (s)"},
    "prune_time": {"de": "Zeit für das Verkleinern (s)", "en": "pruning time (s)"},
    "grow_time": {"de": "Zeit für das Wachsen (s)", "en": "growing time (s)"},
    "search_time": {"de": "Suchzeit gesamt (s)", "en": "search time in total (s)"},
    "p": {"de": "p", "en": "p"},
    "p_holm": {"de": "p (Holm)", "en": "p (Holm)"},
    "t": {"de": "t", "en": "t"},
    "df": {"de": "Freiheitsgrade", "en": "degrees of freedom"},
    "slope": {"de": "Steigung", "en": "slope"},
    "intercept": {"de": "Achsenabschnitt", "en": "intercept"},
    "r2": {"de": "R²", "en": "R²"},
    "lasso_ratio": {"de": "Lasso-Anteil r", "en": "lasso ratio r"},
    "threshold": {"de": "Schwellwert", "en": "threshold"},
    "margin": {"de": "Toleranz", "en": "margin"},
    "direction": {"de": "Richtung", "en": "direction"},
    "relative_strength": {"de": "relative Stärke", "en": "relative strength"},
    "slope_ci_low": {"de": "Steigung, 95-%-KI unten", "en": "slope, 95 % CI low"},
    "mean_a": {"de": "Mittel A", "en": "mean A"},
    "mean_b": {"de": "Mittel B", "en": "mean B"},
    "mean": {"de": "Mittel", "en": "mean"},
    "reference_mean": {"de": "Mittel der Referenz", "en": "mean of the reference"},
    "diff": {"de": "Differenz", "en": "difference"},
    "ci_low": {"de": "95-%-KI unten", "en": "95 % CI low"},
    "ci_high": {"de": "95-%-KI oben", "en": "95 % CI high"},
    "slope_ci_high": {"de": "Steigung, 95-%-KI oben", "en": "slope, 95 % CI high"},
}
# Words inside tables (statistics, verdicts, the descriptions of tested quantities), German and English.
TERMS: dict[str, dict[str, str]] = {
    "sd": {"de": "SD", "en": "sd"},
    "min": {"de": "Minimum", "en": "minimum"},
    "max": {"de": "Maximum", "en": "maximum"},
    "mean_a": {"de": "Mittel A", "en": "mean A"},
    "mean_b": {"de": "Mittel B", "en": "mean B"},
    "difference": {"de": "Differenz A – B", "en": "difference A – B"},
    "interval": {"de": "95-%-KI", "en": "95 % CI"},
    "significant": {"de": "signifikant", "en": "significant"},
    "not significant": {"de": "nicht signifikant", "en": "not significant"},
    "undefined (no variance)": {"de": "undefiniert (keine Varianz)", "en": "undefined (no variance)"},
    "not comparable": {"de": "nicht vergleichbar", "en": "not comparable"},
    "better": {"de": "besser", "en": "better"},
    "worse": {"de": "schlechter", "en": "worse"},
    "not worse": {"de": "nicht schlechter", "en": "not worse"},
    "equal": {"de": "gleich", "en": "equal"},
    "undecided": {"de": "unentschieden", "en": "undecided"},
    "dominated": {"de": "dominiert", "en": "dominated"},
    "trade-off": {"de": "Abwägung", "en": "trade-off"},
    "equivalent": {"de": "gleichwertig", "en": "equivalent"},
    "True": {"de": "ja", "en": "yes"},
    "False": {"de": "nein", "en": "no"},
    "accuracy": {"de": "Genauigkeit", "en": "accuracy"},
    "final accuracy": {"de": "finale Genauigkeit", "en": "final accuracy"},
    "total time": {"de": "Gesamtzeit", "en": "total time"},
    "total training time": {"de": "Trainingszeit gesamt", "en": "total training time"},
    "mean epoch time": {"de": "mittlere Epochenzeit", "en": "mean epoch time"},
    "epoch time": {"de": "Epochenzeit", "en": "epoch time"},
    "epoch time without the first": {"de": "Epochenzeit ohne die erste", "en": "epoch time without the first"},
    "kept parameters": {"de": "verbliebene Parameter", "en": "kept parameters"},
    "final parameters": {"de": "Parameter am Ende", "en": "final parameters"},
    "training FLOPs": {"de": "Trainings-FLOPs", "en": "training FLOPs"},
    "training time": {"de": "Trainingszeit", "en": "training time"},
    "training time incl. search": {"de": "Trainingszeit mit Suche", "en": "training time incl. search"},
    "epochs": {"de": "Epochen", "en": "epochs"},
    "FLOPs per image": {"de": "FLOPs pro Bild", "en": "FLOPs per image"},
}
_language = "de"


def use_thesis_style(language: str | None = None) -> None:
    """Apply THESIS_STYLE to matplotlib's global rcParams (calling it again changes nothing) and, when
    given, set the language of `label` ("de", the default, or "en")."""
    global _language
    if language is not None:
        if language not in LANGUAGES:
            raise ValueError(f"unknown figure language {language!r}; use one of {LANGUAGES}")
        _language = language
    matplotlib.rcParams.update(THESIS_STYLE)


def language() -> str:
    """The language `label` currently writes ("de" or "en")."""
    return _language


def label(key: str, **values: Any) -> str:
    """The axis or legend text of a recurring quantity (`LABELS`) in the current language, with `values`
    filled into its placeholders, e.g. label("band_minmax", n=5)."""
    if key not in LABELS:
        raise KeyError(f"no figure label {key!r}; known: {sorted(LABELS)}")
    return translate(LABELS, key, **values)


def translate(table: Mapping[str, Mapping[str, str]], key: str, **values: Any) -> str:
    """`table[key]` ({"de": ..., "en": ...}) in the current language with `values` filled in: a chapter's
    own figure texts follow the same language switch as `LABELS`."""
    return table[key][_language].format(**values)


def figure(
    size: Literal["full", "half", "square"] = "full", nrows: int = 1, ncols: int = 1, **subplots_kwargs: Any
) -> tuple[Figure, Any]:
    """Apply the thesis style and return `plt.subplots(nrows, ncols)` at a print size from FIGURE_SIZES,
    with constrained layout unless `layout` is given. Further keywords go to `plt.subplots`."""
    if size not in FIGURE_SIZES:
        raise ValueError(f"unknown figure size {size!r}; choose one of {sorted(FIGURE_SIZES)}")
    use_thesis_style()
    subplots_kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, figsize=FIGURE_SIZES[size], **subplots_kwargs)


def _check_path_part(value: str, what: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    if "/" in value or "\\" in value or value in {".", ".."}:
        raise ValueError(f"{what} {value!r} must be a plain file name without path separators")


_CURRENT_NOTEBOOK: dict[str, str] = {}


def use_notebook(notebook: str, profile: str) -> Path:
    """Name the running notebook and its profile: every later `save` and `tables.save` without a notebook
    or profile of its own writes into `figures/<profile>/<notebook>/`, however the notebook is run
    (papermill, nbconvert, JupyterLab). Each notebook calls it in its first code cell with its own
    `profile` parameter; returns that folder. The name is also exported to this process as
    THESIS_NOTEBOOK, so that the run store's progress reports (`experiments.report_progress`) name it."""
    _check_path_part(notebook, "notebook")
    _check_path_part(profile, "profile")
    _CURRENT_NOTEBOOK.update(notebook=notebook, profile=profile)
    os.environ["THESIS_NOTEBOOK"] = notebook
    return figure_dir()


def figure_dir(
    notebook: str | None = None, profile: str | None = None, root: str | os.PathLike[str] | None = None
) -> Path:
    """The folder `<root>/figures/<profile>/<notebook>` that `save` writes into (not created here).

    root: argument, else env THESIS_ROOT, else the repository root (the folder holding thesis_lib).
    notebook and profile: argument, else those given to `use_notebook`, else env THESIS_NOTEBOOK and
    THESIS_PROFILE (for scripts); the profile falls back to "quick".
    """
    notebook = notebook or _CURRENT_NOTEBOOK.get("notebook") or os.environ.get("THESIS_NOTEBOOK")
    if not notebook:
        raise ValueError(
            "no notebook name: call plots.use_notebook('03_baseline', profile) first, or pass notebook=..."
        )
    profile = profile or _CURRENT_NOTEBOOK.get("profile") or os.environ.get("THESIS_PROFILE") or "quick"
    _check_path_part(notebook, "notebook")
    _check_path_part(profile, "profile")
    if root is None:
        root = project_root()
    return Path(root) / "figures" / profile / notebook


def _write_figure(fig: Figure, target: Path, file_format: str, metadata: dict[str, Any]) -> None:
    """Render `fig` into `target` through `files.atomic_write`: a reader never sees a half-written figure."""
    atomic_write(
        target,
        lambda stream: fig.savefig(
            stream, format=file_format, dpi=PNG_DPI, metadata=metadata, bbox_inches="tight", pad_inches=0.02
        ),
    )


def localized_number(text: str) -> str:
    """A number's text with the figures' decimal separator: a comma in German (`language`), else as given."""
    return text.replace(".", ",") if _language == "de" else text


class DecimalCommaFormatter(ScalarFormatter):
    """matplotlib's plain tick labels with a decimal comma (German: 0,5 for 0.5)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return super().__call__(x, pos).replace(".", ",")


def use_decimal_comma(fig: Figure) -> None:
    """Give every plain-number axis of `fig` (matplotlib's default formatter) a decimal comma; log and
    categorical axes keep theirs. `save` calls it while the language is German."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if type(axis.get_major_formatter()) is ScalarFormatter:
                axis.set_major_formatter(DecimalCommaFormatter(useOffset=False))


def save(
    fig: Figure,
    name: str,
    notebook: str | None = None,
    profile: str | None = None,
    root: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write `fig` as `<name>.pdf` and `<name>.png` (200 dpi) into `figure_dir(notebook, profile, root)`
    and return both paths. `name` is a bare file name without extension, e.g. "fig3_4_boxplot". In German
    (`language`) the plain-number axes get a decimal comma first (`use_decimal_comma`)."""
    _check_path_part(name, "figure name")
    if Path(name).suffix.lower() in {".pdf", ".png"}:
        raise ValueError(f"figure name {name!r} has an extension; pass the name without it")
    directory = figure_dir(notebook, profile, root)
    directory.mkdir(parents=True, exist_ok=True)
    pdf_path, png_path = directory / f"{name}.pdf", directory / f"{name}.png"
    if _language == "de":
        use_decimal_comma(fig)
    _write_figure(fig, pdf_path, "pdf", _PDF_METADATA)
    _write_figure(fig, png_path, "png", _PNG_METADATA)
    return [pdf_path, png_path]


def boxplot(
    ax: Axes,
    df: pd.DataFrame,
    x: str,
    y: str,
    order: list[Any] | None = None,
    colors: Mapping[Any, Any] | None = None,
) -> Axes:
    """Box per group of `x` with every run drawn on top (e.g. fig. 3.4c, 5.1); with a numeric `x` and a
    categorical `y` the boxes lie horizontally, one row per group of `y`. Points are placed by a swarm, which
    is deterministic, rather than random jitter, so the saved figure does not change. `colors` (group ->
    colour) draws each group's points in its colour, e.g. the colour its net has in the other panels."""
    with warnings.catch_warnings():
        # seaborn 0.13 still passes `vert` to Axes.bxp, deprecated since matplotlib 3.11.
        warnings.filterwarnings("ignore", message="vert: bool", category=matplotlib.MatplotlibDeprecationWarning)
        sns.boxplot(
            data=df,
            x=x,
            y=y,
            order=order,
            ax=ax,
            color="0.9",
            linecolor="0.2",
            linewidth=0.7,
            width=0.6,
            showfliers=False,
        )
    if colors is None:
        sns.swarmplot(data=df, x=x, y=y, order=order, ax=ax, color="C0", size=3.0)
    else:
        groups = y if pd.api.types.is_numeric_dtype(df[x]) else x
        sns.swarmplot(data=df, x=x, y=y, order=order, ax=ax, hue=groups, palette=dict(colors), legend=False, size=3.0)
    return ax


# The colour-blind palette's indices in the order lines of one axes take them: the first three as matplotlib's
# cycle, then the hues that differ most from those (purple, grey, sky blue) before tan, vermilion and pink,
# which a print shows close to orange or purple (review: "three oranges" in fig. 6.17, "two oranges" in 6.9-6.11).
LINE_COLOR_ORDER = (0, 1, 2, 4, 7, 9, 5, 3, 6, 8)


def line_with_band(
    ax: Axes, df: pd.DataFrame, x: str, y: str, hue: str, band: Literal["minmax", "std"] = "minmax"
) -> Axes:
    """Mean of `y` over repeated runs (seeds) against `x`, one line per `hue` level, with a shaded band
    from the minimum to the maximum run ("minmax") or of +-1 standard deviation ("std")."""
    bands = {"minmax": ("pi", 100), "std": ("sd", 1)}
    if band not in bands:
        raise ValueError(f"unknown band {band!r}; choose 'minmax' or 'std'")
    # A list palette makes seaborn treat numeric hue (e.g. a learning rate) as categories: distinct
    # colorblind-safe colors instead of a light-to-dark ramp whose lightest line vanishes in print, in the
    # order of `LINE_COLOR_ORDER` (orange and vermilion, tan and orange apart).
    colors = sns.color_palette("colorblind")
    levels = df[hue].nunique()
    palette = [colors[LINE_COLOR_ORDER[i % len(LINE_COLOR_ORDER)]] for i in range(levels)]
    sns.lineplot(
        data=df,
        x=x,
        y=y,
        hue=hue,
        palette=palette,
        errorbar=bands[band],
        ax=ax,
        err_kws={"linewidth": 0.0, "alpha": 0.2},
    )
    return ax


def mark_epochs(ax: Axes, after: Iterable[int], linestyle: str = ":", color: str = "0.6") -> None:
    """Thin vertical lines between epoch e and e + 1 (1-based epochs on the x axis) for every e of `after`:
    where the curves' learning rate or network changes (an lr milestone m of `TrainConfig` is e = m, the
    end of warm-up e = warmup_epochs, a reconfiguration at the end of epoch e is e)."""
    for epoch in after:
        ax.axvline(epoch + 0.5, color=color, linewidth=0.6, linestyle=linestyle)


# The data sets as a reader names them (the stamp of a small profile's figures).
DATASET_LABELS = {
    "digits": "digits (8×8)",
    "fashion_mnist": "Fashion-MNIST",
    "fashion_mnist_14": "Fashion-MNIST (14×14)",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
}


def stamp(fig: Figure, profile: str, dataset: str, n: int | str) -> None:
    """A discreet grey note under the figure's lower left corner naming the profile, the dataset and the runs
    per group, so that a figure of a small profile is never mistaken for a thesis result. No stamp on the
    `full` profile, whose figures are the thesis's."""
    if profile == "full":
        return
    # Hung below the canvas (va="top", STAMP_GAP_PT under y = 0): `save` crops to the drawn content, so the
    # stamp gets a line of its own under the figure and never touches an axis label or a legend below the axes.
    below = ScaledTranslation(0.0, -STAMP_GAP_PT / 72.0, fig.dpi_scale_trans)
    fig.text(
        0.0,
        0.0,
        f"{profile} · {DATASET_LABELS.get(dataset, dataset)} · n = {n}",
        ha="left",
        va="top",
        fontsize=6.0,
        color="0.55",
        transform=fig.transFigure + below,
    )
