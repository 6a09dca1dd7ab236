"""Phase diagrams, curves and lines drawn from result tables: scales, reductions, the
interquartile band over seeds, selections, theory lines."""

import numpy as np
import pandas as pd
import pytest
from conftest import make_spec
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

import jaxgd
from jaxgd.front import plot


def summary_table():
    rows = []
    for width in (8, 16, 32, 64):
        for lr in (0.001, 0.01, 0.1, 1.0):
            for seed in range(3):
                diverged = lr * width > 10
                rows.append(dict(width=width, lr=lr, seed=seed, diverged=diverged,
                                 final_train_loss=np.nan if diverged else lr / width + seed * 1e-4))
    return pd.DataFrame(rows)


def test_phase_diagram_axes_scales_and_diverged_cells():
    fig = plot.phase_diagram(summary_table(), "width", "lr", "final_train_loss")
    assert isinstance(fig, Figure)
    ax, colorbar = fig.axes
    assert ax.get_xlabel() == "width" and ax.get_ylabel() == "lr"
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert colorbar.get_ylabel() == "median of final_train_loss"
    values, diverged_overlay = ax.collections
    cells = np.ma.getdata(values.get_array()).reshape(4, 4)
    # rows are lr (ascending), columns width (ascending); the median over seeds is seed 1
    assert cells[0, 0] == pytest.approx(0.001 / 8 + 1e-4)
    overlay = np.ma.getmaskarray(diverged_overlay.get_array()).reshape(4, 4)
    assert not overlay[3, 3] and overlay[0, 0]  # lr 1 x width 64 diverged; lr 0.001 x width 8 did not
    assert ax.get_legend().get_texts()[0].get_text().startswith("diverged")


def test_linear_axes_and_categorical_axes():
    table = pd.DataFrame(dict(noise=[0.0, 0.1, 0.2] * 2, activation=["relu"] * 3 + ["tanh"] * 3,
                              diverged=False, final_train_loss=np.arange(6.0)))
    fig = plot.phase_diagram(table, "noise", "activation", "final_train_loss", reduce="mean")
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["relu", "tanh"]


def test_phase_diagram_errors_name_the_column():
    with pytest.raises(ValueError, match="no column 'depth'"):
        plot.phase_diagram(summary_table(), "depth", "lr", "final_train_loss")
    with pytest.raises(ValueError, match="reduce"):
        plot.phase_diagram(summary_table(), "width", "lr", "final_train_loss", reduce="mode")


def test_is_log_spaced():
    assert plot.is_log_spaced([1e-3, 1e-2, 1e-1, 1.0])
    assert plot.is_log_spaced([16, 32, 64, 128])
    assert not plot.is_log_spaced([0.1, 0.2, 0.3, 0.4])
    assert not plot.is_log_spaced([0.0, 1.0, 10.0])


def test_curves_select_and_hue():
    history = pd.DataFrame(dict(step=[0, 10] * 4, lr=[0.1] * 4 + [0.2] * 4, width=[4, 4, 8, 8] * 2,
                                train_loss=[1.0, 0.5, 1.0, 0.4, 1.0, 0.3, 1.0, 0.2]))
    fig = plot.curves(history, "train_loss", hue="lr", select={"width": 8})
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 and list(lines[1].get_ydata()) == [1.0, 0.2]
    with pytest.raises(ValueError, match="no rows"):
        plot.curves(history, "train_loss", select={"width": 5})


def test_lines_of_summary_columns_against_a_setting():
    table = summary_table().assign(other=lambda t: t.final_train_loss * 2)
    fig = plot.lines(table, "width", ["final_train_loss", "other"], hue="lr", select={"seed": 1})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.get_lines()) == 2 * 4
    first = ax.get_lines()[0]  # final_train_loss at lr 0.001 against width
    np.testing.assert_allclose(first.get_ydata(), [0.001 / w + 1e-4 for w in (8, 16, 32, 64)])
    with pytest.raises(ValueError, match="no column 'nope'"):
        plot.lines(table, "width", ["nope"])


def test_lines_of_many_step_sizes_take_a_colour_bar_and_a_legend_of_the_columns():
    """The README's `jaxgd.lines(..., hue="lr")` on the quickstart's 24 step sizes: a legend of
    48 entries covered the plot (and left no room for the axes); a colour bar names the hue."""
    lrs = np.logspace(-4, 1, 24)
    table = pd.DataFrame([{"width": w, "lr": lr, "seed": s, "final_train_loss": lr / w, "final_test_loss": 2 * lr / w}
                          for w in (4, 64, 512) for lr in lrs for s in range(2)])
    fig = plot.lines(table, "width", ["final_train_loss", "final_test_loss"], hue="lr", overlay=["0.01 * width"])
    ax, colour_bar = fig.axes
    assert colour_bar.get_ylabel() == "lr" and colour_bar.get_yscale() == "log"
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["final_train_loss", "final_test_loss", "0.01 * width"]
    assert len([line for line in ax.get_lines() if line.get_linestyle() == "-"]) == 24


def test_hue_values_are_labelled_as_written_not_as_their_binary_float():
    table = summary_table().assign(lr=lambda t: t.lr * 1.1)  # 0.1 * 1.1 prints as 0.11000000000000001
    legend = plot.lines(table, "width", ["final_train_loss"], hue="lr").axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == [
        f"final_train_loss, lr = {lr}" for lr in ("0.0011", "0.011", "0.11", "1.1")]
    history = pd.DataFrame({"step": [0, 10] * 2, "lr": [0.1 * 1.1] * 2 + [0.2] * 2, "train_loss": 1.0})
    legend = plot.curves(history, "train_loss", hue="lr").axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["lr = 0.11", "lr = 0.2"]


def test_lines_draw_an_overlay_that_reads_the_hue_once_per_value_in_its_colour_under_its_label():
    law = {"expr": "0.1 * width / lr", "label": "a law"}
    fig = plot.lines(summary_table(), "width", ["final_train_loss"], hue="lr", overlay=[law])
    lines = fig.axes[0].get_lines()
    measured = [line for line in lines if line.get_linestyle() == "-"]
    theory = [line for line in lines if line.get_linestyle() == "--"]
    assert len(measured) == len(theory) == 4  # one law per step size
    for lr, data_line, law_line in zip((0.001, 0.01, 0.1, 1.0), measured, theory):
        np.testing.assert_allclose(law_line.get_xdata(), [8, 16, 32, 64])
        np.testing.assert_allclose(law_line.get_ydata(), [0.1 * w / lr for w in (8, 16, 32, 64)])
        assert law_line.get_color() == data_line.get_color()
    legend = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert legend.count("a law") == 1  # labelled once, by its label rather than its expression


def test_unevenly_spaced_numbers_are_drawn_as_categories():
    table = pd.DataFrame(dict(kappa=[0.0, 0.1, 1.0, 10.0] * 2, width=[4] * 4 + [8] * 4,
                              diverged=False, final_train_loss=np.arange(1.0, 9.0)))
    ax = plot.phase_diagram(table, "width", "kappa", "final_train_loss").axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "0.1", "1", "10"]


def band_of(ax, index=0):
    """The outline (x, y vertices) of the index-th band (fill_between) of an axes."""
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    return bands[index].get_paths()[0].vertices


def test_curves_draw_the_interquartile_range_over_seeds_as_a_band():
    # 5 seeds at one lr: the loss at step 10 is 1..5, so median 3, quartiles 2 and 4
    history = pd.DataFrame(dict(step=[0, 10] * 5, seed=np.repeat(np.arange(5), 2), lr=0.1,
                                train_loss=np.ravel([[9.0, s + 1.0] for s in range(5)])))
    ax = plot.curves(history, "train_loss", hue="lr").axes[0]
    assert list(ax.get_lines()[0].get_ydata()) == [9.0, 3.0]
    outline = band_of(ax)
    at_10 = outline[np.isclose(outline[:, 0], 10), 1]
    assert set(np.round(at_10, 9)) == {2.0, 4.0}


def test_lines_draw_a_band_per_line():
    fig = plot.lines(summary_table(), "width", ["final_train_loss"], hue="lr")
    ax = fig.axes[0]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(ax.get_lines()) == 4
    # lr 0.001, width 8: seeds give 0.001/8 + (0, 1, 2) 1e-4; quartiles at +0.5e-4 and +1.5e-4
    outline = band_of(ax)
    at_8 = outline[np.isclose(outline[:, 0], 8), 1]
    np.testing.assert_allclose(sorted(set(np.round(at_8, 12))), [0.001 / 8 + 0.5e-4, 0.001 / 8 + 1.5e-4])


def test_a_selection_on_a_log_spaced_float_axis_takes_the_nearest_swept_value():
    lrs = np.logspace(-4, 1, 24)
    assert plot.nearest_value(lrs, 0.0139) == pytest.approx(lrs[10])  # 10^-1.826, the nearest in log space
    assert plot.nearest_value(lrs, 1e-4) == pytest.approx(lrs[0])
    assert plot.nearest_value(lrs, 1e3) is None and plot.nearest_value(lrs, -1.0) is None  # outside every cell
    assert plot.nearest_value(np.array([0.0, 0.5, 1.0]), 0.3) == 0.5  # evenly spaced: the nearest, linearly
    assert plot.nearest_value(np.array([16, 32, 64]), 64) == 64 and plot.nearest_value(np.array([16, 32]), 33) is None
    table = pd.DataFrame(dict(step=0, lr=np.repeat(lrs, 2), train_loss=np.arange(48.0)))
    ax = plot.curves(table, "train_loss", select={"lr": 0.0139}).axes[0]
    assert list(ax.get_lines()[0].get_ydata()) == [20.5] and "lr = 0.0149" in ax.get_title()


def test_save_figures_skips_a_figure_whose_selection_is_not_swept(tmp_path, capsys):
    from types import SimpleNamespace

    results = SimpleNamespace(summary=summary_table(), history=None)
    phase = dict(x="width", y="lr", value="final_train_loss", reduce="median", select=None, file="phase.png")
    lines = dict(x="lr", y=["final_train_loss"], hue=None, reduce="median", logy=True, select={"width": 128},
                 file="lines.png")
    paths = plot.save_figures(results, {"phase_diagram": [phase], "lines": [lines]}, tmp_path)
    assert paths == [tmp_path / "phase.png"] and (tmp_path / "phase.png").stat().st_size > 1000
    assert not (tmp_path / "lines.png").exists()
    assert capsys.readouterr().err.strip() == (
        "jaxgd: warning: skipping figure lines.png: select.width: no rows with width = 128; "
        "the table has width = 8, 16, 32, 64")


def test_theory_lines_are_drawn_where_their_expressions_put_them():
    """Overlays (phase diagrams, lines) and references (curves) from the spec, read back
    from the figure objects: each line at y = expr(x), labelled by its expression."""
    from jaxgd.front.plot import figure

    spec = make_spec(seeds=2, steps=20, log_every=10, metrics=["train_loss", "step_size"],
                     model={"width": [4, 8, 16]}, optimizer={"lr": {"logspace": [-2, 0, 3]}},
                     plot={"phase_diagram": {"x": "width", "y": "lr", "value": "final_train_loss",
                                             "overlay": ["0.8 / width", "2 * min_step_size"]},
                           "curves": {"metric": "step_size", "hue": "lr", "select": {"width": 8},
                                      "reference": ["2 / lr", 0.05]},
                           "lines": {"x": "width", "y": "final_train_loss", "overlay": "0.01 * width"}})
    resolved = jaxgd.load_spec(spec)
    results = jaxgd.run(spec, progress=False)
    lines = {line.get_label(): line for line in figure("phase_diagram", resolved.plot["phase_diagram"][0], results).axes[0].get_lines()}
    np.testing.assert_allclose(lines["0.8 / width"].get_xdata(), [4, 8, 16])
    np.testing.assert_allclose(lines["0.8 / width"].get_ydata(), [0.2, 0.1, 0.05])
    np.testing.assert_allclose(lines["2 * min_step_size"].get_ydata(), 2 * results.summary.groupby("width").min_step_size.median())
    curve_lines = figure("curves", resolved.plot["curves"][0], results).axes[0].get_lines()
    per_hue = [line for line in curve_lines if line.get_linestyle() == "--"]  # one 2 / lr line per step size
    assert sorted(np.unique(line.get_ydata())[0] for line in per_hue) == pytest.approx([2.0, 20.0, 200.0])
    flat = next(line for line in curve_lines if line.get_label() == "0.05")
    np.testing.assert_allclose(flat.get_ydata(), 0.05)
    (overlay,) = [l for l in figure("lines", resolved.plot["lines"][0], results).axes[0].get_lines() if l.get_label() == "0.01 * width"]
    np.testing.assert_allclose(overlay.get_ydata(), [0.04, 0.08, 0.16])


@pytest.mark.parametrize("entry, message", [
    ({"phase_diagram": {"x": "width", "y": "lr", "value": "final_train_loss", "overlay": ["2 / sharpness"]}}, "reads sharpness"),
    ({"curves": {"metric": "train_loss", "reference": ["import os"]}}, "plot.curves.reference"),
    ({"curves": {"metric": "train_loss", "reference": [True]}}, "a list of expressions"),
    ({"curves": {"metric": "train_loss", "reference": [{"expr": "2 / lr"}]}}, "a list of expressions"),  # no label
    ({"lines": {"x": "width", "y": "final_train_loss", "overlay": [{"expr": "2 / nope", "label": "x"}]}}, "reads nope"),
])
def test_bad_theory_lines_are_refused_before_running(no_compile, entry, message):
    with pytest.raises(jaxgd.SpecError, match=message):
        jaxgd.load_spec(make_spec(model={"width": [4, 8]}, optimizer={"lr": [0.1, 0.2]}, plot=entry))


PHASE = {"x": "width", "y": "lr", "value": "final_train_loss"}


@pytest.mark.parametrize("entry, message", [
    # (a figure's format is checked where figures are drawn: test_trust)
    ({"lines": {"x": "width", "y": "final_train_loss", "file": 3}}, r"plot\.lines\.file: got 3"),
    ({"phase_diagram": [PHASE, {**PHASE, "reduce": "mean"}]}, r"'phase_final_train_loss_width_lr\.png' is the file of two figures"),
    # a list or a number where a name belongs raised TypeError (unhashable, not iterable)
    ({"phase_diagram": {**PHASE, "x": ["width"]}}, r"plot\.phase_diagram\.x: got \['width'\]; expected a swept setting"),
    ({"phase_diagram": {**PHASE, "value": 1}}, r"plot\.phase_diagram\.value: got 1; expected a summary column"),
    ({"lines": {"x": "width", "y": 3}}, r"plot\.lines\.y: got 3; expected a summary column or a non-empty list"),
    ({"lines": {"x": "width", "y": []}}, r"plot\.lines\.y: got \[\]"),
    ({"phase_diagram": {**PHASE, "select": {"width": [4, 8]}}}, r"plot\.phase_diagram\.select\.width: got \[4, 8\]; expected one value"),
])
def test_bad_figure_names_and_columns_are_refused_before_running(no_compile, entry, message):
    with pytest.raises(jaxgd.SpecError, match=message):
        jaxgd.load_spec(make_spec(model={"width": [4, 8]}, optimizer={"lr": [0.1, 0.2]}, plot=entry))


def test_only_an_override_makes_a_figure_against_an_unswept_setting_a_skip(no_compile):
    """Written unswept, a figure's axis is a mistake (refused); set to one value by an
    override, the figure has nothing to draw and is left out with a warning, the others kept."""
    plot = {"phase_diagram": PHASE, "lines": {"x": "width", "y": "final_train_loss", "overlay": ["2 / lr"]}}
    spec = make_spec(model={"width": [4, 8]}, optimizer={"lr": 0.1}, plot=plot)
    with pytest.raises(jaxgd.SpecError, match=r"plot\.phase_diagram\.y: got 'lr'; expected a swept setting"):
        jaxgd.load_spec(spec)
    swept = make_spec(spec, optimizer={"lr": [0.1, 0.2]})
    with pytest.warns(jaxgd.FigureSkipped) as caught:
        loaded = jaxgd.load_spec(swept, overrides={"optimizer.lr": 0.3})
    assert [str(w.message) for w in caught] == [
        "skipping a phase_diagram figure: plot.phase_diagram.y names lr, which an override sets to one value "
        "(optimizer.lr = 0.3)",
        "skipping a lines figure: plot.lines.overlay: '2 / lr' reads lr, which an override sets to one value "
        "(optimizer.lr = 0.3)"]
    assert loaded.plot == {"phase_diagram": [], "curves": [], "lines": []}
    assert len(jaxgd.load_spec(swept, overrides={"model.width": [4, 8, 16]}).plot["lines"]) == 1
