"""Boundary search: `jaxgd.edge(spec, axis="optimizer.lr")` finds, for every combination
of the other swept settings and every seed, the largest value on the axis's range whose
run does not diverge (or meets a summary criterion), by bisection in log space: each
round trains every unfinished combination's midpoint as one batch of runs. A round's
outcome is saved in `out` as it finishes, so a killed search resumes where it stopped."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from jaxgd.engine import compile_cache, dispatch, host
from jaxgd.errors import SpecError
from jaxgd.front import plot
from jaxgd.storage import files
from jaxgd.storage.files import SUMMARY_FILE
from jaxgd.storage.results import summary_table
from jaxgd.sweep import expressions
from jaxgd.sweep import plan as planning
from jaxgd.sweep import spec as specs

EDGE_FILE, FIGURE_FILE, ROUNDS_DIR, SEARCH_FILE = "edge.parquet", "edge.png", "edge_rounds", "edge_search.json"
DEFAULT_TOL = 0.01  # decades
# Finer brackets pass float32's resolution of the axis (2.6e-8 decades), and near float64's
# their midpoints stop moving: the search would never end.
MIN_TOL = 1e-6


def axis_key(spec: specs.Spec, axis: str) -> str:
    """The axis as the plan names it: a dotted key, or `vars.c` for a var `c`."""
    var = axis.removeprefix(specs.VAR_PREFIX)
    return specs.VAR_PREFIX + var if var in spec.vars else axis


def axis_range(spec: specs.Spec, axis: str) -> tuple[float, float]:
    """The smallest and largest value of a var or swept positive float setting, not zipped."""
    if spec.design:
        raise SpecError(f"edge: got design = {spec.design.kind!r}; the search needs a grid (design = 'grid') to bisect in")
    if axis not in spec.axes or not planning.is_traced(axis):
        floats = [k.removeprefix(specs.VAR_PREFIX) for k in spec.axes if planning.is_traced(k)]
        raise SpecError(f"edge --axis: got {axis!r}; expected a var or a swept float setting of the spec: "
                        f"{', '.join(floats) or 'none'}")
    values = planning.axis_values(spec, axis)
    if any(axis in group for group in spec.zip) or min(values) <= 0 or len(values) < 2:
        raise SpecError(f"edge --axis {axis}: expected at least two positive values, not zipped (the search is in log space)")
    return min(values), max(values)


def passing(criterion: str | None):
    """summary table -> which runs pass: not diverged, or meeting `criterion` on a summary column."""
    if criterion is None:
        return lambda summary: ~summary.diverged.to_numpy()
    column, symbol, threshold = expressions.criterion(criterion, "edge --criterion")

    def meets(summary):
        if column not in summary:
            raise SpecError(f"edge --criterion: no summary column {column!r}; the summary has {', '.join(summary.columns)}")
        return np.asarray(expressions.meets(summary[column].to_numpy(float), symbol, threshold))

    return meets


class Rounds:
    """Each round's outcome (which runs passed) in out/edge_rounds, so a killed search
    replays the rounds it finished; a different search in the same folder is refused."""

    def __init__(self, out: Path | None, search: dict):
        self.out = out
        if out is None:
            return
        out.mkdir(parents=True, exist_ok=True)
        (out / ROUNDS_DIR).mkdir(exist_ok=True)
        saved = out / SEARCH_FILE
        if saved.is_file() and json.loads(saved.read_text()) != search:
            raise SpecError(f"{out} holds another search ({saved}); give another --out or remove it")
        files.atomic_write_bytes(saved, json.dumps(search, indent=1).encode())

    def outcome(self, index: int, values: np.ndarray, train) -> np.ndarray:
        """Whether each run of round `index` (its axis values) passed: saved, or trained now."""
        path = None if self.out is None else self.out / ROUNDS_DIR / f"round_{index:03d}.parquet"
        if path is not None and path.is_file():
            saved = pd.read_parquet(path)
            if np.array_equal(saved["value"].to_numpy(), values):
                return saved["passed"].to_numpy()
        passed = train(values)
        if path is not None:
            rounds = pd.DataFrame({"value": values, "passed": passed})
            files.atomic_write(path, lambda tmp: rounds.to_parquet(tmp, index=False))
        return passed


def edge(spec, *, axis: str, criterion: str | None = None, tol: float = DEFAULT_TOL, out=None, overrides=None,
         progress: bool = True) -> pd.DataFrame:
    """The boundary on `axis` for every combination of the other swept settings and every
    seed: one row with `boundary` (the largest value found to pass; NaN if the range's
    smallest fails), `bracket_high` (the smallest value found to fail: the boundary lies
    between them; NaN if the range's largest passes) and `rounds`. With `out`, writes
    edge.parquet and edge.png there and resumes a killed search. `stats` in the table's
    attrs: runs used, and a dense grid's count at `tol`."""
    host.use_all_cores()
    compile_cache.configure(None)  # the rounds have the same shapes: one compilation serves them all
    resolved = specs.load(spec, overrides)
    axis = axis_key(resolved, axis)
    low, high = axis_range(resolved, axis)
    if not MIN_TOL <= tol < math.inf:
        raise SpecError(f"edge --tol: got {tol!r}; expected a finite number of decades >= {MIN_TOL:g}")
    passes = passing(criterion)
    out = None if out is None else Path(out)
    overlays = overlaid(resolved, resolved.columns[axis], out)  # their files checked before the search
    rounds = Rounds(out, {"spec": json.loads(json.dumps(resolved.to_dict(), default=str)), "axis": axis,
                          "criterion": criterion, "tol": tol})
    others = dataclasses.replace(resolved, settings={**resolved.settings, axis: low}) if axis in resolved.settings else \
        dataclasses.replace(resolved, vars={k: v for k, v in resolved.vars.items() if specs.VAR_PREFIX + k != axis})
    combos = planning.with_seeds(planning.grid_points(others), resolved.seeds)

    def train(rows, values):
        """One batch of runs: combination rows[i] at axis value values[i]; which passed."""
        grid = combos.iloc[rows].reset_index(drop=True)
        grid.insert(len(grid.columns) - 1, axis, values)
        grid = planning.with_derived(resolved, grid.drop(columns="seed")).assign(seed=grid.seed.to_numpy())
        plan = planning.from_grid(resolved, grid)
        return passes(summary_table(plan, dispatch.execute(plan, progress=progress)))

    # Round 0 tries both ends of the range: a bracket [good, bad] in log10 where the low end
    # passes and the high end fails, else the boundary is above the range (bad NaN) or below
    # it (good NaN). Then each round halves every open bracket.
    n, log_low, log_high = len(combos), math.log10(low), math.log10(high)
    ends = rounds.outcome(0, np.repeat([low, high], n), lambda values: train(np.tile(np.arange(n), 2), values))
    low_passes, high_passes = ends[:n], ends[n:]
    good = np.where(high_passes, log_high, np.where(low_passes, log_low, np.nan))
    bad = np.where(high_passes, np.nan, np.where(low_passes, log_high, log_low))
    taken, used, index = np.ones(n, int), 2 * n, 0
    while True:
        todo = np.flatnonzero(bad - good > tol)  # NaN (no bracket) compares False
        if not len(todo):
            break
        index += 1
        middle = (good[todo] + bad[todo]) / 2
        passed = rounds.outcome(index, 10.0 ** middle, lambda values: train(todo, values))
        good[todo] = np.where(passed, middle, good[todo])
        bad[todo] = np.where(passed, bad[todo], middle)
        taken[todo] += 1
        used += len(todo)

    table = combos.rename(columns=others.columns).assign(boundary=10.0 ** good, bracket_high=10.0 ** bad, rounds=taken)
    dense = n * (math.ceil(round(math.log10(high / low) / tol, 9)) + 1)
    table.attrs["stats"] = {"runs": int(used), "dense_runs": int(dense), "rounds": index + 1, "axis": axis,
                            "column": resolved.columns[axis], "criterion": criterion or "not diverged", "tol": tol}
    if out is not None:
        files.atomic_write(out / EDGE_FILE, lambda tmp: table.to_parquet(tmp, index=False))
        files.save_figure(figure(table), out / FIGURE_FILE)
        if overlays:
            over_phase_diagrams(table, overlays, out / SUMMARY_FILE)
    if progress:
        print(closing_line(table), file=sys.stderr)
    return table


def closing_line(table: pd.DataFrame) -> str:
    s = table.attrs["stats"]
    return (f"jaxgd edge: {len(table):,} boundaries on {s['column']} ({s['criterion']}) to {s['tol']:g} decades in "
            f"{s['rounds']} rounds: {s['runs']:,} runs, where a dense grid at that resolution takes {s['dense_runs']:,}")


def overlaid(spec: specs.Spec, column: str, out: Path | None) -> list[tuple[dict, Path]]:
    """In the folder of a `jaxgd run` of the same spec: each of its phase diagrams (with no
    selection) whose y is the axis's `column`, and the file of its copy with the boundary
    drawn over it (edge_<file>), checked (files.figure_path)."""
    if out is None or not (out / SUMMARY_FILE).is_file():
        return []
    return [(p, files.figure_path(out, f"edge_{p['file']}", option="plot.phase_diagram.file"))
            for p in spec.plot["phase_diagram"] if p["y"] == column and not p["select"]]


def over_phase_diagrams(table: pd.DataFrame, overlays: list[tuple[dict, Path]], summary_file: Path) -> None:
    """The boundary drawn over each phase diagram of `overlaid` whose x the table has."""
    summary = pd.read_parquet(summary_file)
    for p, path in overlays:
        if p["x"] in table:
            fig = plot.phase_diagram(summary, p["x"], p["y"], p["value"], p["reduce"])
            figure(table, x=p["x"], ax=fig.axes[0])
            files.save_figure(fig, path)


def figure(table: pd.DataFrame, x: str | None = None, ax=None) -> Figure:
    """The boundary against `x` (default: the first other swept setting): the median over
    seeds, the band from the smallest to the largest seed's; one line per value of the
    other settings. With `ax`, drawn over it (a phase diagram)."""
    stats = table.attrs["stats"]
    settings = [c for c in table.columns if c not in ("seed", "boundary", "bracket_high", "rounds")]
    fig = Figure(figsize=(5.5, 4)) if ax is None else ax.figure
    over = ax is not None
    ax = ax or fig.add_subplot()
    x = x or (settings[0] if settings else "seed")
    settings = [x] + [c for c in settings if c != x]
    lines = table.groupby(settings[1:], sort=False) if len(settings) > 1 else [(None, table)]
    for label, rows in lines:
        by_x = rows.groupby(x, sort=True).boundary
        line = ax.plot(by_x.median().index, by_x.median(), marker="o", color="white" if over else None,
                       label=f"edge ({stats['criterion']})" if label is None else f"{', '.join(settings[1:])} = {label}")[0]
        ax.fill_between(by_x.median().index, by_x.min(), by_x.max(), color=line.get_color(), alpha=0.3)
    if over:  # beside the phase diagram's own legend entries
        ax.legend(handles=[*(ax.get_legend().legend_handles if ax.get_legend() else []), line], fontsize=8, loc="lower left")
        return fig
    if pd.api.types.is_numeric_dtype(table[x]) and (table[x] > 0).all() and table[x].nunique() > 2:
        ax.set_xscale("log")
    if table.boundary.notna().any():  # none where even the range's smallest value fails: no log axis to draw
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(f"largest {stats['column']} ({stats['criterion']})")
    ax.set_title(f"edge: median over seeds, band min-max ({stats['runs']:,} runs)", fontsize=9)
    if len(settings) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
