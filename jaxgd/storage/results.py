"""Tidy tables of a sweep: `history` (one row per run and logged step) and `summary`
(one row per run), and their Parquet files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import tomli_w

from jaxgd.engine.outputs import KeptParams, Outputs
from jaxgd.errors import IncompleteError
from jaxgd.storage.files import HISTORY_FILE, SPEC_FILE, STATS_FILE, SUMMARY_FILE, atomic_write
from jaxgd.storage.parts import PARTS, indexed_params, spec_sha256
from jaxgd.sweep import expressions
from jaxgd.sweep.steps import FINAL, chosen_step, step_numbers

if TYPE_CHECKING:  # reading finished tables imports no JAX: the plan is needed only to assemble parts
    from jaxgd.sweep.plan import Plan



def history_table(plan: Plan, outputs: Outputs) -> pd.DataFrame:
    n_logs = len(outputs.steps)
    table = plan.runs.loc[plan.runs.index.repeat(n_logs)].reset_index(drop=True)
    for key, column in settings_at_init(plan).items():
        table[column] = outputs.history[key].reshape(-1)
    table["step"] = np.tile(outputs.steps, plan.n_runs)
    for name in plan.spec.metrics:
        table[name] = outputs.history[name].reshape(-1)
    return table


def settings_at_init(plan: Plan) -> dict[str, str]:
    """The column of each setting the program derived at initialization (in outputs.history)."""
    return {d.key: plan.spec.columns[d.key] for d in plan.spec.derived if d.at_init}


def summary_table(plan: Plan, outputs: Outputs) -> pd.DataFrame:
    table = plan.runs.copy()
    for key, column in settings_at_init(plan).items():
        table[column] = outputs.history[key][:, 0]
    diverged = outputs.diverged_step >= 0
    table["diverged"] = diverged
    diverged_step = pd.array(outputs.diverged_step, dtype="Int64")
    diverged_step[~diverged] = pd.NA
    table["diverged_step"] = diverged_step
    with warnings.catch_warnings():  # a run that diverged at step 0 has no finite value
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in plan.spec.metrics:
            values = outputs.history[name]
            table[f"final_{name}"] = values[:, -1]
            table[f"min_{name}"] = np.nanmin(values, axis=1)
            table[f"max_{name}"] = np.nanmax(values, axis=1)
            for step in plan.spec.settings["summary_steps"]:
                table[f"{name}_at_{step}"] = values[:, np.searchsorted(outputs.steps, step)]
    if plan.spec.escape:
        metric, threshold, relative = plan.spec.escape
        below = under_threshold(outputs.history[metric], threshold=threshold, relative=relative)
        table["escape_step"] = first_step(outputs.steps, below)
        for name in plan.spec.metrics:  # the escape read on any logged clock, e.g. online_time_at_escape
            table[f"{name}_at_escape"] = at_first(outputs.history[name], below)
    if plan.spec.settings["engine.stop_when"]:
        metric, symbol, threshold = expressions.criterion(plan.spec.settings["engine.stop_when"], "engine.stop_when")
        # The engine freezes a run at the first logged step meeting it and repeats that step's values.
        table["stopped_step"] = first_step(outputs.steps, expressions.meets(outputs.history[metric], symbol, threshold))
    return table


def under_threshold(values, *, threshold: float, relative: bool) -> np.ndarray:
    """Where `values` (runs x logged steps) lie below the threshold (times their value at
    step 0 where relative)."""
    return values < (threshold * values[:, :1] if relative else threshold)


def first_step(steps, where) -> pd.array:
    """First logged step at which `where` (runs x logged steps) holds; <NA> if never."""
    first = pd.array(steps[where.argmax(axis=1)], dtype="Int64")
    first[~where.any(axis=1)] = pd.NA
    return first


def at_first(values, where) -> np.ndarray:
    """`values` (runs x logged steps) at the first logged step at which `where` holds; NaN if never."""
    chosen = np.take_along_axis(values, where.argmax(axis=1)[:, None], axis=1)[:, 0]
    return np.where(where.any(axis=1), chosen, np.nan)


@dataclasses.dataclass
class Results:
    history: pd.DataFrame
    summary: pd.DataFrame
    spec: dict  # the resolved spec
    stats: dict = dataclasses.field(default_factory=dict)
    # every layer at the steps of save_params: of every run in the results of a run; in
    # results loaded from a folder, those last read from its parts (kept_params)
    saved_params: KeptParams = dataclasses.field(default_factory=KeptParams, repr=False)
    folder: Path | None = None  # the --out folder the results were loaded from

    @classmethod
    def from_outputs(cls, plan: Plan, outputs: Outputs) -> "Results":
        return cls(
            history=history_table(plan, outputs),
            summary=summary_table(plan, outputs),
            spec=plan.spec.to_dict(),
            stats=outputs.stats,
            saved_params=outputs.params,
        )

    def params(self, run_id: int, step: int | str) -> dict[str, np.ndarray]:
        """Every layer of run `run_id` after `step` updates, a step of save_params or
        "final" (NaN from the run's divergence on)."""
        # in the order of the parts (the loaded spec's): a spec.toml may list them otherwise
        saved = list(step_numbers(self.spec.get("save_params", []), last=self.spec["steps"]))
        if not saved:
            raise ValueError(f'step: got {step!r}; this sweep kept no parameters: set save_params (e.g. [0, "{FINAL}"])')
        at = chosen_step(step, last=self.spec["steps"], allowed=saved, which="at which this sweep kept parameters (save_params)")
        run_id = run_number(run_id)
        layers = self.saved_params.of(run_id)
        if layers is None and self.folder is not None:  # loaded from a folder: read the part that holds the run
            self.saved_params = kept_params(self.folder, run_id)
            layers = self.saved_params.of(run_id)
        if layers is None and self.folder is not None and run_id in self.summary.run_id.values:
            # finished when the tables were written; its part no longer counts
            raise ValueError(f"run_id: got {run_id!r}; a finished run of this sweep, but no part in "
                             f"{self.folder / PARTS} that counts holds its parameters (its part is missing or "
                             f"damaged, or of other inputs); run it again with `jaxgd run --resume --out {self.folder}`")
        if layers is None:
            raise ValueError(f"run_id: got {run_id!r}; not a finished run of this sweep")
        return {layer: values[saved.index(at)] for layer, values in layers.items()}

    def save(self, out) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / HISTORY_FILE, lambda p: self.history.to_parquet(p, index=False))
        atomic_write(out / SUMMARY_FILE, lambda p: self.summary.to_parquet(p, index=False))
        spec_bytes = tomli_w.dumps(self.spec).encode()
        self.stats["spec_sha256"] = hashlib.sha256(spec_bytes).hexdigest()  # whose tables these are: load checks it
        atomic_write(out / SPEC_FILE, lambda p: p.write_bytes(spec_bytes))
        atomic_write(out / STATS_FILE, lambda p: p.write_text(json.dumps(self.stats, indent=2)))
        return out

    @classmethod
    def load(cls, out, *, partial: bool = False) -> "Results":
        """The results in `out`, the --out folder of a finished sweep. With `partial`, a
        folder whose sweep is still running or was interrupted (its spec and parts, no
        tables yet) gives the runs finished so far, and `stats["runs_missing"]` the
        number of the others."""
        import tomllib

        out = Path(out)
        if not out.is_dir():
            raise NotADirectoryError(f"{out} is not a folder: give the --out folder of a `jaxgd run`")
        missing = [name for name in (HISTORY_FILE, SUMMARY_FILE, SPEC_FILE) if not (out / name).is_file()]
        if missing and (out / SPEC_FILE).is_file():  # a sweep's folder without all of its tables
            if partial:
                return cls.finished_so_far(out)
            raise FileNotFoundError(
                f"{out / missing[0]} not found: the sweep in {out} is unfinished, or its tables were removed; "
                f"finish it with `jaxgd run --resume --out {out}`, write the tables from its parts with "
                f"`jaxgd collect {out}`, or read the runs finished so far with partial=True")
        if missing:
            raise FileNotFoundError(f"{out / missing[0]} not found: is {out} the --out folder of a `jaxgd run`?")

        def read(name, reader):
            # a damaged file, or one jaxgd did not write: pyarrow's, tomllib's and json's errors are ValueErrors
            try:
                return reader(out / name)
            except ValueError as err:
                raise ValueError(f"{out / name} cannot be read ({' '.join(str(err).split())}); the tables and "
                                 f"stats.json can be written again from the parts: jaxgd collect {out}") from None

        stats = read(STATS_FILE, lambda path: json.loads(path.read_text()) if path.is_file() else {})
        saved_for = spec_sha256(out)
        if stats.get("spec_sha256", saved_for) != saved_for:  # spec.toml edited or grown since
            if partial:
                return cls.finished_so_far(out)
            raise ValueError(f"the tables in {out} were written for another {SPEC_FILE} than the one there now; write "
                             f"them again from the parts with `jaxgd collect {out}`, finish the sweep with `jaxgd run "
                             f"--resume --out {out}`, or read the runs finished so far with partial=True")
        return cls(
            history=read(HISTORY_FILE, pd.read_parquet),
            summary=read(SUMMARY_FILE, pd.read_parquet),
            spec=read(SPEC_FILE, lambda path: tomllib.loads(path.read_text())),
            stats=stats,
            folder=out,
        )

    @classmethod
    def finished_so_far(cls, out) -> "Results":
        """The finished runs of the sweep in `out`, from its parts (see Results.load)."""
        from jaxgd.storage.store import Store
        from jaxgd.sweep import plan as planning

        store = Store(out)
        plan = planning.make(store.saved_spec())
        scan = store.scan(plan)
        if not scan.n_finished:
            raise IncompleteError(f"{out} holds no finished run yet (0 of {plan.n_runs:,})")
        results = cls.from_outputs(plan, store.assemble(plan, scan, missing_ok=True))
        finished = np.flatnonzero(scan.finished)
        results.history = results.history[results.history.run_id.isin(finished)].reset_index(drop=True)
        results.summary = results.summary[results.summary.run_id.isin(finished)].reset_index(drop=True)
        results.stats["runs_missing"] = plan.n_runs - scan.n_finished
        return results

    @property
    def swept(self) -> list[str]:
        """The swept settings' columns (those between `seed` and `diverged` in the summary)."""
        columns = list(self.summary.columns)
        return columns[columns.index("seed") + 1 : columns.index("diverged")]

    def to_xarray(self, table: str = "history"):
        """The history (or the summary) as an xarray Dataset whose coordinates are the seed,
        the swept settings (and the step), so `.sel(lr=0.01, method="nearest")` works;
        write it with `.to_netcdf(path)` or `.to_zarr(path)`. Needs the optional extra
        `pip install 'jaxgd[xarray]'`."""
        try:
            import xarray  # noqa: F401 - pandas' to_xarray needs it
        except ImportError:
            raise ImportError("Results.to_xarray needs xarray: pip install 'jaxgd[xarray]'") from None
        if table not in ("history", "summary"):
            raise ValueError(f"table: got {table!r}; expected 'history' or 'summary'")
        frame = self.history if table == "history" else self.summary
        dims = ["seed", *self.swept] + (["step"] if table == "history" else [])
        # nullable integer columns (diverged_step, ...) become floats with NaN for <NA>
        nullable = {c: "float64" for c, t in frame.dtypes.items() if isinstance(t, pd.api.extensions.ExtensionDtype)}
        return frame.astype(nullable).set_index(dims).to_xarray()

    def closing_line(self) -> str:
        s = self.stats
        if "wall_s" not in s:  # assembled by `jaxgd collect` from parts run elsewhere
            return f"jaxgd: {s['runs']:,} runs x {s['steps']:,} steps, collected from {s.get('parts', '?')} parts"
        index, count = s.get("process", [0, 1])
        who = f"jaxgd [process {index + 1}/{count}]" if count > 1 else "jaxgd"
        runs = f"{who}: {s['runs']:,} runs x {s['steps']:,} steps"
        done, before = s.get("runs_done", s["runs"]), s.get("runs_before", 0)
        if not done:
            return f"{runs}: nothing left to run, every run was done before"
        programs = s.get("programs", s["groups"]) + s.get("draw_programs", 0)
        cached = f", {s['compile_cache_hits']} from cache" if s.get("compile_cache_hits") else ""
        devices = f" on {s['devices']} devices" if s.get("devices", 1) > 1 else ""
        details = [f"{done:,} of them here"] if count > 1 else [f"{done:,} now, {before:,} done before"] if before else []
        waited = f" ({s['compile_critical_s']:.1f} s waited for)" if "compile_critical_s" in s else ""
        details.append(f"compile {s['compile_s']:.1f} s{waited}, {programs} program{'s' * (programs != 1)}{cached}, "
                       f"{s['chunks']} chunk{'s' * (s['chunks'] != 1)}{devices}")
        if s.get("params_bytes"):
            details.append(f"parameters kept: {s['params_bytes'] / 2**20:,.1f} MiB")
        line = f"{runs} in {s['wall_s']:.1f} s ({'; '.join(details)}); {s['run_steps_per_s']:,.0f} run-steps/s on {s['device']}"
        if s.get("out_of_memory_retries"):
            line += f"; out of memory: chunks cut to {min(s['chunk_sizes'])} runs per device"
        return line


def run_number(run_id) -> int:
    """`run_id` as a run number: an integer, Python's or NumPy's (a bool, a float or a string
    is refused: `True` or `1.0` would silently stand for run 1)."""
    if isinstance(run_id, (bool, np.bool_)) or not isinstance(run_id, (int, np.integer)):
        raise ValueError(f"run_id: got {run_id!r}; expected an integer, a run's run_id in the summary")
    return int(run_id)


def kept_params(out, run_id) -> KeptParams:
    """Kept parameters of the sweep in the folder `out`, among them run `run_id`'s if it is
    a finished run: those of its part alone where the parts index names it, else those of
    every finished run (store.saved_params: reads every part, and imports JAX)."""
    indexed = indexed_params(Path(out), run_id)
    if indexed is not None:
        return indexed
    from jaxgd.storage.store import saved_params  # imports JAX: only where the parts index cannot tell

    return saved_params(out)
