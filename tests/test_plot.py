"""Phase diagrams and curves drawn from result tables."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from jaxgd import plot


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


def test_unevenly_spaced_numbers_are_drawn_as_categories():
    table = pd.DataFrame(dict(kappa=[0.0, 0.1, 1.0, 10.0] * 2, width=[4] * 4 + [8] * 4,
                              diverged=False, final_train_loss=np.arange(1.0, 9.0)))
    ax = plot.phase_diagram(table, "width", "kappa", "final_train_loss").axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "0.1", "1", "10"]
