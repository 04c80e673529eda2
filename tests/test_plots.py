"""Tests of thesis_lib.plots: style, print sizes, where and how `save` writes, byte-stable PDFs, helpers."""

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from PIL import Image  # noqa: E402

import thesis_lib  # noqa: E402
from thesis_lib import plots  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_matplotlib(monkeypatch):
    """Restore rcParams, close figures and hide the caller's THESIS_* variables after every test."""
    for variable in ("THESIS_ROOT", "THESIS_PROFILE", "THESIS_NOTEBOOK"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(plots, "_CURRENT_NOTEBOOK", {})
    with matplotlib.rc_context():
        yield
    plt.close("all")


def accuracy_figure():
    fig, ax = plots.figure("full")
    runs = pd.DataFrame(
        {
            "schedule": ["step"] * 5 + ["constant"] * 5,
            "accuracy": [0.919, 0.921, 0.917, 0.915, 0.922, 0.812, 0.830, 0.790, 0.823, 0.801],
        }
    )
    plots.boxplot(ax, runs, "schedule", "accuracy")
    ax.set_title("Genauigkeit über 5 Seeds, $\\alpha = 0.1$")
    return fig


def test_style_is_applied_and_idempotent():
    plots.use_thesis_style()
    assert matplotlib.rcParams["font.family"] == ["serif"]
    assert matplotlib.rcParams["font.serif"] == ["DejaVu Serif"]
    assert matplotlib.rcParams["font.size"] == 9.0
    assert matplotlib.rcParams["text.usetex"] is False
    first_color = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"][0]
    assert to_hex(first_color) == to_hex(sns.color_palette("colorblind")[0])
    snapshot = dict(matplotlib.rcParams)
    plots.use_thesis_style()
    assert dict(matplotlib.rcParams) == snapshot


@pytest.mark.parametrize("size, inches", [("full", (6.0, 3.7)), ("half", (2.9, 2.4)), ("square", (4.0, 4.0))])
def test_figure_print_sizes(size, inches):
    matplotlib.rcParams["font.family"] = ["sans-serif"]
    fig, axes = plots.figure(size, nrows=1, ncols=2)
    assert tuple(fig.get_size_inches()) == pytest.approx(inches)
    assert axes.shape == (2,)
    assert matplotlib.rcParams["font.family"] == ["serif"]  # figure() applies the style


def test_figure_rejects_unknown_size():
    with pytest.raises(ValueError, match="unknown figure size 'single'.*'full'"):
        plots.figure("single")


def test_save_writes_pdf_and_png_under_profile_and_notebook(tmp_path):
    paths = plots.save(accuracy_figure(), "fig3_4_boxplot", notebook="03_baseline", profile="smoke", root=tmp_path)
    folder = tmp_path / "figures" / "smoke" / "03_baseline"
    assert paths == [folder / "fig3_4_boxplot.pdf", folder / "fig3_4_boxplot.png"]
    assert sorted(path.name for path in folder.iterdir()) == ["fig3_4_boxplot.pdf", "fig3_4_boxplot.png"]

    pdf = paths[0].read_bytes()
    assert pdf.startswith(b"%PDF")
    assert b"CreationDate" not in pdf and b"ModDate" not in pdf
    assert b"/Producer (thesis_lib.plots)" in pdf
    assert re.search(rb"/BaseFont /\w+\+DejaVuSerif\b", pdf)  # serif text, embedded as TrueType subset

    with Image.open(paths[1]) as png:
        assert png.info["dpi"] == pytest.approx((200, 200), abs=0.01)
        width, height = png.size
    # The tight bounding box trims at most the margins of the 6.0 x 3.7 in figure at 200 dpi.
    assert 1000 < width <= 1200 and 600 < height <= 740


def test_saving_the_same_figure_gives_identical_bytes(tmp_path):
    fig = accuracy_figure()
    first = [path.read_bytes() for path in plots.save(fig, "stable", notebook="nb", root=tmp_path)]
    second = [path.read_bytes() for path in plots.save(fig, "stable", notebook="nb", root=tmp_path)]
    rebuilt = [path.read_bytes() for path in plots.save(accuracy_figure(), "stable", notebook="nb", root=tmp_path)]
    assert first[0] == second[0] == rebuilt[0]
    assert first[1] == second[1] == rebuilt[1]


def test_save_replaces_an_existing_figure(tmp_path):
    pdf_path, _ = plots.save(accuracy_figure(), "figure", notebook="nb", root=tmp_path)
    old_bytes = pdf_path.read_bytes()
    fig, ax = plots.figure("half")
    ax.plot([0, 1], [1, 0])
    plots.save(fig, "figure", notebook="nb", root=tmp_path)
    assert pdf_path.read_bytes() != old_bytes
    assert sorted(path.name for path in pdf_path.parent.iterdir()) == ["figure.pdf", "figure.png"]


def test_save_takes_defaults_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("THESIS_ROOT", str(tmp_path))
    monkeypatch.setenv("THESIS_NOTEBOOK", "05_prunetrain")
    fig, ax = plots.figure("half")
    paths = plots.save(fig, "fig5_1")
    assert paths[0] == tmp_path / "figures" / "quick" / "05_prunetrain" / "fig5_1.pdf"
    monkeypatch.setenv("THESIS_PROFILE", "full")
    assert plots.figure_dir() == tmp_path / "figures" / "full" / "05_prunetrain"


def test_default_root_is_the_repository():
    repository = Path(thesis_lib.__file__).resolve().parent.parent
    assert plots.figure_dir(notebook="03_baseline") == repository / "figures" / "quick" / "03_baseline"


def test_save_without_notebook_asks_for_it(tmp_path):
    fig, _ = plots.figure("half")
    with pytest.raises(ValueError, match=r"call plots.use_notebook\('03_baseline', profile\) first"):
        plots.save(fig, "fig", root=tmp_path)


def test_use_notebook_names_the_folder_of_every_later_save(tmp_path, monkeypatch):
    from thesis_lib import tables

    monkeypatch.setenv("THESIS_ROOT", str(tmp_path))
    monkeypatch.setenv("THESIS_PROFILE", "quick")  # a stale variable loses against the notebook's own profile
    monkeypatch.setenv("THESIS_NOTEBOOK", "05_prunetrain")
    assert plots.use_notebook("03_baseline", "smoke") == tmp_path / "figures" / "smoke" / "03_baseline"
    fig, _ = plots.figure("half")
    assert plots.save(fig, "fig_3_4")[0] == tmp_path / "figures" / "smoke" / "03_baseline" / "fig_3_4.pdf"
    table = tables.save(pd.DataFrame({"a": [1]}), "table_3_1")
    assert table[0] == tmp_path / "figures" / "smoke" / "03_baseline" / "table_3_1.csv"
    assert plots.figure_dir(profile="full") == tmp_path / "figures" / "full" / "03_baseline"
    with pytest.raises(ValueError, match="must be a plain file name"):
        plots.use_notebook("../03_baseline", "smoke")


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "must be a non-empty string"),
        ("   ", "must be a non-empty string"),
        ("sub/fig", "without path separators"),
        ("sub\\fig", "without path separators"),
        ("..", "without path separators"),
        ("fig.pdf", "has an extension"),
    ],
)
def test_save_rejects_bad_names(tmp_path, name, message):
    fig, _ = plots.figure("half")
    with pytest.raises(ValueError, match=message):
        plots.save(fig, name, notebook="nb", root=tmp_path)
    assert not (tmp_path / "figures").exists()


def test_save_rejects_bad_notebook_and_profile(tmp_path):
    fig, _ = plots.figure("half")
    with pytest.raises(ValueError, match="notebook '../other'"):
        plots.save(fig, "fig", notebook="../other", root=tmp_path)
    with pytest.raises(ValueError, match="profile 'a/b'"):
        plots.save(fig, "fig", notebook="nb", profile="a/b", root=tmp_path)


def test_boxplot_draws_every_run_in_the_given_order():
    fig, ax = plots.figure("half")
    runs = pd.DataFrame(
        {"method": ["a", "a", "a", "b", "b", "b", "b"], "time": [19.5, 19.7, 19.6, 21.0, 21.2, 20.9, 21.1]}
    )
    plots.boxplot(ax, runs, "method", "time", order=["b", "a"])
    assert [label.get_text() for label in ax.get_xticklabels()] == ["b", "a"]
    points = np.concatenate([collection.get_offsets() for collection in ax.collections])
    assert sorted(points[:, 1]) == sorted(runs["time"])
    assert np.all(np.abs(points[points[:, 1] > 20.5, 0] - 0) < 0.5)  # b's runs sit at position 0
    assert np.all(np.abs(points[points[:, 1] < 20.5, 0] - 1) < 0.5)


@pytest.mark.parametrize("band", ["minmax", "std"])
def test_line_with_band_shows_mean_and_spread_over_seeds(band):
    seeds = pd.DataFrame(
        {
            "epoch": [0, 1, 2] * 3,
            "seed": np.repeat([0, 1, 2], 3),
            "lr": 0.1,
            "accuracy": [0.1, 0.5, 0.7, 0.3, 0.6, 0.8, 0.2, 0.4, 0.9],
        }
    )
    fig, ax = plots.figure("half")
    plots.line_with_band(ax, seeds, "epoch", "accuracy", hue="lr", band=band)
    per_epoch = seeds.groupby("epoch")["accuracy"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), per_epoch.mean())
    band_y = ax.collections[0].get_paths()[0].vertices[:, 1]
    if band == "minmax":
        expected_low, expected_high = per_epoch.min(), per_epoch.max()
    else:
        expected_low, expected_high = per_epoch.mean() - per_epoch.std(), per_epoch.mean() + per_epoch.std()
    np.testing.assert_allclose(band_y.min(), expected_low.min())
    np.testing.assert_allclose(band_y.max(), expected_high.max())
    assert np.all(np.isin(np.round(band_y, 12), np.round(np.r_[expected_low, expected_high], 12)))


def test_line_with_band_rejects_unknown_band():
    fig, ax = plots.figure("half")
    frame = pd.DataFrame({"x": [0, 1], "y": [0.0, 1.0], "g": ["a", "a"]})
    with pytest.raises(ValueError, match="unknown band 'iqr'"):
        plots.line_with_band(ax, frame, "x", "y", "g", band="iqr")


def test_a_small_profile_figure_carries_its_stamp_and_a_full_one_none():
    fig, _ = plots.figure("half")
    plots.stamp(fig, "quick", "digits", 5)
    assert [text.get_text() for text in fig.texts] == ["quick · digits (8×8) · n = 5"]
    fig, _ = plots.figure("half")
    plots.stamp(fig, "full", "cifar10", 5)
    assert fig.texts == []


def test_the_stamp_keeps_a_gap_below_a_legend_under_the_axes():
    """Fig. 7.1's stamp touched its legend's last row: the stamp now hangs STAMP_GAP_PT below everything."""
    fig, ax = plots.figure()
    for i in range(8):
        ax.scatter([i], [i], label=f"procedure {i}")
    legend = fig.legend(loc="outside lower center", ncol=2)
    plots.stamp(fig, "quick", "digits", 5)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    gap_pixels = legend.get_window_extent(renderer).y0 - fig.texts[0].get_window_extent(renderer).y1
    assert gap_pixels >= plots.STAMP_GAP_PT / 72.0 * fig.dpi * 0.99


def test_labels_are_german_by_default_and_switch_to_english():
    try:
        plots.use_thesis_style()
        assert plots.label("epoch") == "Epoche" and plots.label("epoch_time") == "Trainingszeit pro Epoche (s)"
        assert plots.label("band_minmax", n=5) == "Band: Minimum bis Maximum über 5 Seeds"
        plots.use_thesis_style(language="en")
        assert plots.label("epoch") == "epoch" and plots.label("test_acc") == "test accuracy"
        plots.use_thesis_style()  # without a language the last one stays
        assert plots.label("epoch") == "epoch"
        with pytest.raises(ValueError, match="unknown figure language 'fr'"):
            plots.use_thesis_style(language="fr")
        with pytest.raises(KeyError, match="no figure label 'accuracy'"):
            plots.label("accuracy")
        assert all(set(texts) == set(plots.LANGUAGES) for texts in plots.LABELS.values())
    finally:
        plots.use_thesis_style(language="de")


def test_mark_epochs_draws_between_the_epoch_and_the_next():
    fig, ax = plots.figure("half")
    plots.mark_epochs(ax, [5, 8])
    plots.mark_epochs(ax, [1], linestyle="--")
    assert [line.get_xdata()[0] for line in ax.get_lines()] == [5.5, 8.5, 1.5]
    assert [line.get_linestyle() for line in ax.get_lines()] == [":", ":", "--"]


def test_german_figures_get_a_decimal_comma_and_no_offset(tmp_path):
    """Issue 28: 0,5 not 0.5 on a German page, and plain values instead of matplotlib's "+1.754e6" offset."""
    plots.use_thesis_style()
    fig, (plain, log) = plt.subplots(1, 2)
    plain.plot([0.0, 0.5, 1.0], [1_754_000, 1_754_500, 1_755_000])
    log.plot([1, 10, 100], [1, 2, 3])
    log.set_xscale("log")
    plots.save(fig, "comma", notebook="nb", root=tmp_path)
    fig.canvas.draw()
    x_labels = [tick.get_text() for tick in plain.get_xticklabels() if tick.get_text()]
    assert "0,4" in x_labels and not any("." in text for text in x_labels)
    assert plain.yaxis.get_offset_text().get_text() == ""
    assert all("e" not in tick.get_text() for tick in plain.get_yticklabels())
    assert type(log.xaxis.get_major_formatter()) is not plots.DecimalCommaFormatter  # log axes keep theirs
    try:
        plots.use_thesis_style(language="en")
        english, ax = plt.subplots()
        ax.plot([0.0, 0.5, 1.0], [0, 1, 2])
        plots.save(english, "point", notebook="nb", root=tmp_path)
        english.canvas.draw()
        assert "0.4" in [tick.get_text() for tick in ax.get_xticklabels()]
    finally:
        plots.use_thesis_style(language="de")


def test_line_colours_keep_orange_and_vermilion_apart():
    """Review: fig. 6.17 had three oranges. Six lines of one axes take six colours of which only one is an
    orange (the palette's orange and vermilion are index 1 and 3), and seven are all distinct."""
    fig, ax = plots.figure()
    frame = pd.DataFrame({"x": [0, 1] * 7, "y": range(14), "g": [f"arm {i}" for i in range(7) for _ in (0, 1)]})
    plots.line_with_band(ax, frame, "x", "y", "g")
    colours = [to_hex(line.get_color()) for line in ax.get_lines()[:7]]
    palette = [to_hex(c) for c in sns.color_palette("colorblind")]
    assert len(set(colours)) == 7
    assert palette[1] in colours[:6] and palette[3] not in colours[:6]
