"""Figures drawn from the result tables: phase diagrams over two swept settings, metric
curves over steps and summary lines over a setting (median, with the interquartile
range over seeds as a band). Figures are built without pyplot, so no display is needed."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from jaxgd.storage import files
from jaxgd.sweep import expressions
from jaxgd.sweep.spec import REDUCERS

DIVERGED_COLOR = "#d62728"
BAND_ALPHA = 0.2
DIVERGED_HATCH = "xx"  # diverged cells stay apart from the colour map in greyscale
# Theory lines: black, one dash pattern each, so they read in greyscale and over any colour.
THEORY_STYLES = ["--", ":", "-.", (0, (5, 1, 1, 1, 1, 1))]
MANY_HUES = 6  # more lines of a numeric hue than this: a colour bar reads better than a legend


class NotSwept(ValueError):
    """A selection names a value the table does not hold (say, after an override)."""


def _check_columns(table: pd.DataFrame, **columns) -> None:
    for role, name in columns.items():
        if name is not None and name not in table.columns:
            raise ValueError(f"{role}: no column {name!r}; the table has {', '.join(map(str, table.columns))}")


def _is_numeric(values) -> bool:
    return pd.api.types.is_numeric_dtype(pd.Series(values)) and not pd.api.types.is_bool_dtype(pd.Series(values))


def is_log_spaced(values) -> bool:
    """Positive values, at least three, more evenly spaced in log than linearly."""
    v = np.sort(np.asarray(values, dtype=float))
    if len(v) < 3 or v[0] <= 0:
        return len(v) == 2 and v[0] > 0 and v[1] / v[0] >= 10
    spread = lambda gaps: np.std(gaps) / np.mean(gaps)
    return spread(np.diff(np.log(v))) < spread(np.diff(v))


def _cell_edges(values, log: bool) -> np.ndarray:
    """Edges of the cells centred on sorted `values` (in log space for log axes)."""
    v = np.log(values) if log else np.asarray(values, dtype=float)
    if len(v) == 1:
        edges = np.array([v[0] - 0.5, v[0] + 0.5]) if not log else np.array([v[0] - 0.35, v[0] + 0.35])
    else:
        mid = (v[1:] + v[:-1]) / 2
        edges = np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])
    return np.exp(edges) if log else edges


def is_evenly_spaced(values) -> bool:
    gaps = np.diff(np.sort(np.asarray(values, dtype=float)))
    return len(gaps) < 2 or np.std(gaps) <= 0.2 * np.mean(gaps)


def _axis(ax_setter, ticks_setter, values):
    """Numeric axes that are log- or evenly spaced get real coordinates (a log scale for
    the former); others (e.g. 0, 0.1, 1, 10) are drawn as categories."""
    if _is_numeric(values) and (is_log_spaced(values) or is_evenly_spaced(values)):
        log = is_log_spaced(values)
        if log:
            ax_setter("log")
        return np.asarray(values, dtype=float), _cell_edges(np.asarray(values, dtype=float), log)
    ticks_setter(np.arange(len(values)), [_format(v) for v in values])
    positions = np.arange(len(values), dtype=float)
    return positions, _cell_edges(positions, False)


def phase_diagram(summary: pd.DataFrame, x: str, y: str, value: str, reduce: str = "median",
                  *, log_color: bool | None = None, select: dict | None = None, title: str | None = None,
                  overlay: list[str] = ()) -> Figure:
    """Heatmap of `value` over the swept settings `x` and `y`, reduced over seeds and any
    other swept setting with `reduce` (median, mean, min, max). The value is reduced over
    the runs that did not diverge; cells where at least half the runs diverged are drawn
    in red and hatched. Log-spaced axes are drawn on a log scale. `select` ({column:
    value}) keeps only the matching runs. `overlay`: theory curves y = expr(x) (see
    `theory_lines`)."""
    _check_columns(summary, x=x, y=y, value=value)
    _check_reduce(reduce)
    summary, select = _select(summary, select)
    about_divergence = value in ("diverged", "diverged_step") or "diverged" not in summary
    kept = summary if about_divergence else summary[~summary["diverged"]]
    xs, ys = np.sort(summary[x].unique()), np.sort(summary[y].unique())
    cells = kept.groupby([y, x])[value].agg(reduce).astype(float).unstack(x).reindex(index=ys, columns=xs)
    if about_divergence:
        diverged = np.zeros(cells.shape, bool)
    else:
        fraction = summary.groupby([y, x])["diverged"].mean().unstack(x).reindex(index=ys, columns=xs)
        diverged = fraction.to_numpy() >= 0.5

    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    _, x_edges = _axis(ax.set_xscale, ax.set_xticks, xs)
    _, y_edges = _axis(ax.set_yscale, ax.set_yticks, ys)
    grid = np.ma.masked_invalid(np.where(diverged, np.nan, cells.to_numpy()))
    positive = grid.compressed()
    if log_color is None:
        log_color = positive.size > 0 and positive.min() > 0 and positive.max() / positive.min() > 100
    norm = LogNorm(positive.min(), positive.max()) if log_color and positive.size else None
    mesh = ax.pcolormesh(x_edges, y_edges, grid, norm=norm, cmap="viridis")
    fig.colorbar(mesh, ax=ax, label=f"{reduce} of {value}")
    handles = []
    if diverged.any():
        ax.pcolormesh(x_edges, y_edges, np.ma.masked_where(~diverged, diverged.astype(float)),
                      cmap=ListedColormap([DIVERGED_COLOR]))
        for row, column in zip(*np.nonzero(diverged)):
            ax.add_patch(Rectangle((x_edges[column], y_edges[row]), x_edges[column + 1] - x_edges[column],
                                   y_edges[row + 1] - y_edges[row], fill=False, hatch=DIVERGED_HATCH, linewidth=0))
        handles.append(Patch(facecolor=DIVERGED_COLOR, hatch=DIVERGED_HATCH, label="diverged (half of runs or more)"))
    if overlay:
        numeric = _is_numeric(xs) and (is_log_spaced(xs) or is_evenly_spaced(xs))
        if not numeric:
            raise ValueError(f"overlay: the x axis {x} is drawn as categories; an overlay needs numeric x values")
        handles += theory_lines(ax, overlay, summary, x)
        ax.set_ylim(y_edges[0], y_edges[-1])
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False, ncols=2)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or f"{value} over {x} and {y}" + _selection(select))
    return fig


def curves(history: pd.DataFrame, metric: str, hue: str | None = None, *, logy: bool = True,
           select: dict | None = None, x: str = "step", title: str | None = None, reference: list[str] = ()) -> Figure:
    """`metric` against `x` (the step, or another logged metric such as online_time): the
    median over seeds (and any other swept setting), with their interquartile range as a
    band, one line per value of `hue`, over the rows matching `select` ({column: value}).
    `reference`: theory lines, a number (horizontal) or an expression of `x` and the
    swept settings, drawn for each value of `hue` it reads (see `theory_lines`)."""
    _check_columns(history, metric=metric, hue=hue, x=x)
    history, select = _select(history, select)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    groups = list(history.groupby(hue)) if hue else [(None, history)]
    norm = _hue_norm(hue, [v for v, _ in groups])
    numeric_hue = norm is not None
    cmap = matplotlib.colormaps["viridis"]
    per_hue = hue is not None and any(hue in _names(text) for text in reference)
    theory = []
    for i, (value, rows) in enumerate(groups):
        by_step = rows.groupby("step")
        xs = by_step[x].median().to_numpy()  # the step itself, or the median x at each step (e.g. online time)
        color = cmap(norm(value)) if numeric_hue else cmap(i / max(len(groups) - 1, 1))
        _line_and_band(ax, xs, by_step[metric], "median", color=color,
                       label=None if hue is None else f"{hue} = {_format(value)}")
        if per_hue or i == 0:  # a line that does not read the hue is the same for every value of it
            theory += theory_lines(ax, reference, rows, x, by="step", color=color if per_hue else "black",
                                   labelled=i == 0)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(f"median {metric} (band: interquartile range)")
    colour_bar = numeric_hue and len(groups) > MANY_HUES
    if colour_bar:
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=hue)
    if hue and not colour_bar:
        ax.legend(fontsize="small")
    elif theory:
        ax.legend(handles=theory[: len(reference)], fontsize="small")  # the labelled ones, drawn first
    ax.set_title(title or f"{metric} against {x}" + (f" by {hue}" if hue else "") + _selection(select))
    return fig


def _hue_norm(hue: str | None, values) -> Normalize | None:
    """The colour scale of a numeric hue's values (logarithmic where they are log-spaced);
    None for no hue or one that is not numeric."""
    if hue is None or not _is_numeric(values):
        return None
    values = np.asarray(values, dtype=float)
    return (LogNorm if is_log_spaced(values) else Normalize)(values.min(), values.max())


def _format(value) -> str:
    return f"{value:g}" if _is_numeric([value]) else str(value)


def _selection(select: dict | None) -> str:
    """' (k = v, ...)' for a title, or '' without a selection."""
    return f" ({', '.join(f'{k} = {_format(v)}' for k, v in select.items())})" if select else ""


def _line_and_band(ax, xs, grouped, reduce: str, **line) -> None:
    """A line through the `reduce` of each group of `grouped` (a pandas GroupBy of one
    column, one group per point of `xs`) and a band over its interquartile range."""
    ax.plot(xs, grouped.agg(reduce).to_numpy(), **line)
    ax.fill_between(xs, grouped.quantile(0.25).to_numpy(), grouped.quantile(0.75).to_numpy(),
                    color=line["color"], alpha=BAND_ALPHA, linewidth=0)


def _check_reduce(reduce: str) -> None:
    if reduce not in REDUCERS:
        raise ValueError(f"reduce: got {reduce!r}; expected one of {', '.join(REDUCERS)}")


def nearest_value(values, value):
    """The value of `values` (a column's distinct values) that `value` selects: on a
    float column the nearest one, provided `value` lies in its cell (the cells of a phase
    diagram, in log space on a log-spaced column); elsewhere `value` itself. None if
    there is none."""
    values = np.sort(np.asarray(values))
    if np.issubdtype(values.dtype, np.floating) and _is_numeric([value]):
        log = is_log_spaced(values)
        if log and value <= 0:
            return None
        cell = np.searchsorted(_cell_edges(values, log), value) - 1
        return values[cell].item() if 0 <= cell < len(values) else None
    return value if value in values else None


def _select(table: pd.DataFrame, select: dict | None) -> tuple[pd.DataFrame, dict | None]:
    """The rows matching {column: value} (see nearest_value), and the values matched.
    NotSwept names a value the table does not hold."""
    _check_columns(table, **{f"select.{k}": k for k in select or {}})
    matched = {}
    for column, value in (select or {}).items():
        present = table[column].unique()
        matched[column] = nearest_value(present, value)
        if matched[column] is None:
            raise NotSwept(f"select.{column}: no rows with {column} = {value!r}; "
                           f"the table has {column} = {', '.join(map(_format, np.sort(present)))}")
        table = table[table[column] == matched[column]]
    return table, matched or None


def lines(summary: pd.DataFrame, x: str, y: list[str], hue: str | None = None, reduce: str = "median", *,
          logy: bool = True, select: dict | None = None, title: str | None = None, overlay: list[str] = ()) -> Figure:
    """Summary columns `y` against the swept setting `x`, reduced over seeds (and any
    other swept setting) with `reduce`, with their interquartile range as a band: one
    line style per column, one colour per value of `hue`. Log-spaced x values get a log
    axis. `overlay`: theory curves y = expr(x) (see `theory_lines`); one that reads the
    hue is drawn for each value of it, in its colour."""
    y = [y] if isinstance(y, str) else list(y)
    _check_columns(summary, x=x, hue=hue, **{f"y[{i}]": c for i, c in enumerate(y)})
    _check_reduce(reduce)
    table, select = _select(summary, select)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    groups = list(table.groupby(hue)) if hue else [(None, table)]
    norm = _hue_norm(hue, [v for v, _ in groups])
    colour_bar = norm is not None and len(groups) > MANY_HUES  # the legend then names the columns alone
    cmap = matplotlib.colormaps["viridis"] if len(groups) > 2 else matplotlib.colormaps["tab10"]
    styles = ["-", "--", ":", "-."]
    per_hue = hue is not None and any(hue in _names(text) for text in overlay)
    for i, (value, rows) in enumerate(groups):
        color = cmap(norm(value)) if colour_bar else cmap(i / max(len(groups) - 1, 1)) if len(groups) > 2 else cmap(i)
        for j, column in enumerate(y):
            by_x = rows.groupby(x)[column]
            label = None if colour_bar else column + ("" if hue is None else f", {hue} = {_format(value)}")
            _line_and_band(ax, list(by_x.groups), by_x, reduce, linestyle=styles[j % len(styles)], marker="o", ms=3,
                           color=color, label=label)
        if per_hue:
            theory_lines(ax, overlay, rows, x, color=color, labelled=i == 0)
    if _is_numeric(table[x].unique()) and is_log_spaced(table[x].unique()):
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if not per_hue:
        theory_lines(ax, overlay, table, x)
    ax.set_xlabel(x)
    ax.set_ylabel(f"{reduce} over seeds (band: interquartile range)")
    if colour_bar:
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=hue)
        columns = [Line2D([], [], color="grey", linestyle=styles[j % len(styles)], marker="o", ms=3, label=column)
                   for j, column in enumerate(y)]
        ax.legend(handles=columns + ax.get_legend_handles_labels()[0], fontsize="small")  # then the theory lines
    else:
        ax.legend(fontsize="small")
    ax.set_title(title or f"{', '.join(y)} against {x}" + _selection(select))
    return fig


def _names(theory) -> set[str]:
    return expressions.names(expressions.parse(expressions.expression_and_label(theory)[0], "overlay"))


def theory_lines(ax, texts, table: pd.DataFrame, x: str, *, by: str | None = None, color="black",
                 labelled: bool = True) -> list:
    """Draw each expression of `texts` (the spec's expression language) as a line y =
    expr(x) over the groups of `table` by `by` (default: x itself): `x` and every name
    read are the median of that column over the rows of each group (seeds and settings
    not on the axis); a number is a horizontal line. Lines are labelled by their
    expression, or by the label of a table {expr, label}. Returns the lines drawn."""
    grouped = table.groupby(by or x)
    xs = grouped[x].median().to_numpy(dtype=float)
    drawn = []
    for i, theory in enumerate(texts):
        text, label = expressions.expression_and_label(theory)
        tree = expressions.parse(text, "overlay")
        values = {name: grouped[name].median().to_numpy(dtype=float) for name in expressions.names(tree)}
        with np.errstate(divide="ignore", invalid="ignore"):  # e.g. 1 / (lr * step) at step 0: not drawn
            y = np.broadcast_to(np.asarray(expressions.evaluate(tree, {**values, x: xs}), dtype=float), xs.shape)
        drawn += ax.plot(xs, y, linestyle=THEORY_STYLES[i % len(THEORY_STYLES)], color=color, linewidth=1.5,
                         label=label if labelled else None)
    return drawn


def figure(kind: str, entry: dict, results) -> Figure:
    """The figure of one entry of a resolved [plot] table (spec.Spec.plot[kind])."""
    if kind == "phase_diagram":
        return phase_diagram(results.summary, entry["x"], entry["y"], entry["value"], entry["reduce"],
                             select=entry["select"], overlay=entry.get("overlay") or ())
    if kind == "curves":
        return curves(results.history, entry["metric"], entry["hue"], logy=entry["logy"], select=entry["select"],
                      x=entry["x"], reference=entry.get("reference") or ())
    return lines(results.summary, entry["x"], entry["y"], entry["hue"], entry["reduce"], logy=entry["logy"],
                 select=entry["select"], overlay=entry.get("overlay") or ())


def add_note(fig: Figure, note: str) -> None:
    """`note` on a line of its own under the title."""
    ax = fig.axes[0]
    ax.set_title(f"{ax.get_title()}\n{note}")


def save_figures(results, plot_spec: dict, out) -> list[Path]:
    """Write the figures of a spec's resolved [plot] table into `out`. A figure whose
    selection names a value that is not swept (say, after an override of that setting)
    is skipped with a warning."""
    paths = []
    for kind, entry, path in files.figure_files(Path(out), plot_spec):
        try:
            fig = figure(kind, entry, results)
        except NotSwept as err:
            print(f"jaxgd: warning: skipping figure {entry['file']}: {err}", file=sys.stderr)
            continue
        files.save_figure(fig, path)
        paths.append(path)
    return paths
