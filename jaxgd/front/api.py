"""The Python entry points: `run` a sweep (resuming what its folder already holds),
`collect` a folder whose parts were written elsewhere, `materialize` one run's data
and parameters."""

from __future__ import annotations

import contextlib
import sys
from functools import lru_cache, partial
from pathlib import Path

import jax
import numpy as np

from jaxgd.engine import compile_cache, host, loop
from jaxgd.engine import dispatch as engine
from jaxgd.science import registry
from jaxgd.storage import distributed, files, shares
from jaxgd.storage.results import Results, kept_params, run_number
from jaxgd.storage.store import Store, load_saved, report_damaged
from jaxgd.sweep import plan as planning
from jaxgd.sweep import preflight
from jaxgd.sweep import spec as specs
from jaxgd.sweep.steps import chosen_step


def estimate(spec, *, overrides=None, out=None) -> preflight.Estimate:
    """The plan of `spec` and its estimates (programs, chunks, memory, tables, disk, time),
    without running anything: what `jaxgd run --dry-run` prints (`preflight.describe`)."""
    host.use_all_cores()
    resolved = specs.load(spec, overrides)
    preflight.refuse_plan_too_large(resolved)
    plan = planning.make(resolved)
    return preflight.estimate(plan, out, engine.draw_lengths(plan.groups))


def run(spec, *, overrides=None, out=None, progress=True, compile_cache_dir=None, plots=True,
        recompute=False, confirm=None) -> Results:
    """Run every run of `spec` (a TOML path or a dict), overridden by `overrides`
    ({dotted key: value} or ['key=value', ...]).

    On a host without accelerators the runs are shared over every core (one JAX device
    per core, `jaxgd.use_all_cores`), if JAX has not started before. With `out`, each
    chunk is saved there as it finishes; running the same sweep into the same folder
    again runs only what is missing, and so does a sweep that grows it (more values on
    its axes, more seeds; any other change is refused with a SpecError); at
    the end the tables, the resolved spec and (with `plots`) the figures of the spec's
    [plot] table are written there. Under `jax.distributed` each process runs its share
    of the sweep and `out` must be a folder every process sees. Parts of `out` computed
    from other inputs (settings, code, plugins, data: their fingerprint) are refused with
    a SpecError naming what differs, or with `recompute` run again. One independent sweep
    writes a folder at a time (another one's is refused, naming its host and pid).
    Before anything compiles, a sweep whose tables or parts cannot fit in this host's
    memory or disk is refused (a SizeError with the estimate and the limit), and
    `confirm(estimate)`, if given, may refuse it too (the CLI asks for --yes).
    `compile_cache_dir`: JAX's persistent compilation cache (None: the default, see
    `jaxgd.engine.compile_cache`; "off": none)."""
    host.use_all_cores()
    resolved = specs.load(spec, overrides)
    compile_cache.configure(compile_cache_dir)
    index, count = distributed.process()
    if count > 1 and out is None:
        raise ValueError(f"running as {count} processes (jax.distributed): give out=, a folder every process sees")
    if out is not None and plots:  # before any run: each figure's file
        files.figure_files(Path(out), resolved.plot)
    preflight.refuse_plan_too_large(resolved)
    plan = planning.make(resolved)
    estimated = preflight.estimate(plan, out)
    preflight.refuse_what_cannot_fit(estimated)
    if confirm is not None:
        confirm(estimated)
    engine.trace_user_metrics(plan)
    if out is None:
        results = Results.from_outputs(plan, engine.execute(plan, progress=progress))
    else:
        results = _run_into(Path(out), resolved, plan, progress, index, count, plots, recompute)
    if progress:
        print(results.closing_line(), file=sys.stderr)
    return results


def _run_into(out: Path, resolved, plan, progress, index, count, plots, recompute) -> Results:
    with _folder_lock(out, index):
        # under the lock: growing a sweep rewrites the folder's spec
        store, before = Store.prepare(out, plan, recompute=recompute)
        return _run_locked(store, before, out, resolved, plan, progress, index, count, plots)


@contextlib.contextmanager
def _folder_lock(out: Path, index: int):
    """The folder's lock, which process 0 takes for the processes of one jax.distributed run.
    Each of them learns whether it did, and none touches the folder if not (the others wrote
    their shares into a folder another sweep was writing, then waited for process 0)."""
    lock, refused = None, None
    if index == 0:
        try:
            lock = Store(out).lock().acquire()
        except OSError as err:  # another sweep writes it, or it cannot be written
            refused = err
    told = distributed.from_process_0("" if refused is None else str(refused))
    if refused is not None:
        raise refused
    if told:
        raise files.FolderBusy(f"process 0 of this run could not take the folder: {told}")
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _run_locked(store, before, out, resolved, plan, progress, index, count, plots) -> Results:
    if index == 0:
        report_damaged(before)
    mine = shares.share(plan, index, count)
    todo = mine & ~before.finished
    outputs = engine.execute(shares.restrict(plan, mine), progress, todo=todo, on_chunk=store.writer(plan))
    distributed.barrier("jaxgd: every share is done")
    after = store.scan(plan)
    assembled = store.assemble(plan, after)
    outputs.stats.update(runs_before=int((mine & before.finished).sum()), process=[index, count], parts=len(after.parts))
    assembled.stats = outputs.stats
    results = Results.from_outputs(plan, assembled)
    if index == 0:
        results.save(out)
        store.index_parts(after)
        if plots:
            _save_figures(results, resolved.plot, out)
        store.tidy(after)
    distributed.barrier("jaxgd: tables written")
    return results


def resume(out, *, overrides=None, progress=True, compile_cache_dir=None, plots=True) -> Results:
    """Finish the sweep saved in `out` (its spec.toml), running only what is missing."""
    spec = load_saved(out, f"nothing to resume in {out}")
    return run(spec, overrides=overrides, out=out, progress=progress, compile_cache_dir=compile_cache_dir, plots=plots)


def collect(out, *, progress=True, plots=True) -> Results:
    """Assemble the tables and figures of `out` from its parts (written by processes or
    Slurm tasks); an IncompleteError (a ValueError) says how many runs are missing."""
    store = Store(out)
    spec = load_saved(out, f"is {out} the --out folder of a `jaxgd run`?")
    if plots:  # before assembling: each figure's file
        files.figure_files(Path(out), spec.plot)
    plan = planning.make(spec)
    with store.lock():
        scan = store.scan(plan)
        store.refuse_foreign(scan)
        if progress:
            report_damaged(scan)
        results = Results.from_outputs(plan, store.assemble(plan, scan))
        results.save(out)
        store.index_parts(scan)
        if plots:
            _save_figures(results, spec.plot, out)
        store.tidy(scan)
    if progress:
        print(f"jaxgd: collected {plan.n_runs:,} runs from {len(scan.parts):,} parts into {out}", file=sys.stderr)
    return results


def _save_figures(results, entries, out) -> None:
    # matplotlib takes half a second to import: only for figures
    from jaxgd.front import plot

    plot.save_figures(results, entries, out)


def materialize(spec, run_id: int, *, step: int | str = 0, overrides=None) -> dict:
    """The exact training data, test data, parameters after `step` updates (default 0:
    the initialization; "final": the last step) and teacher (None where the data set
    has none) of one run, as NumPy arrays, with its resolved settings: for checking one
    cell of a diagram by hand. `spec` is a spec (TOML path or dict) or the --out folder
    of a sweep; parameters at a step of its save_params are read from the folder, others
    are computed by training the run alone (equal to the sweep's to float rounding)."""
    folder = Path(spec) if isinstance(spec, (str, Path)) and Path(spec).is_dir() else None
    resolved = specs.load(load_saved(folder, "nothing to materialize") if folder else spec, overrides)
    plan = planning.make(resolved)
    run_id = run_number(run_id)
    if not 0 <= run_id < plan.n_runs:
        raise ValueError(f"run_id: got {run_id}; this sweep has runs 0..{plan.n_runs - 1}")
    at = chosen_step(step, last=resolved.settings["steps"], allowed=plan.logged_steps, which="this sweep logs")
    group = next(g for g in plan.groups if run_id in g.run_ids)
    i = int(np.flatnonzero(group.run_ids == run_id)[0])
    hyper = {k: v[i] for k, v in group.hyper.items()}
    with engine.numerics(group.static):
        data, teacher, params = jax.device_get(_setup_program(group.static, registry.registrations)(hyper, group.seeds[i]))
        if at != 0:
            params = _params_at(folder, plan, group, i, at)
    settings = planning.run_settings(group, i)
    return {
        **{name: np.asarray(value) for name, value in data._asdict().items()},
        "params": {name: np.asarray(value) for name, value in params.items()},
        "step": int(at),
        "teacher": jax.tree.map(np.asarray, teacher),
        "seed": int(group.seeds[i]),
        "settings": settings,
    }


def _params_at(folder, plan, group, position, step) -> dict:
    """The parameters of the run at `position` in `group` after `step` updates: from the
    folder's parts where it kept them, else trained again alone up to there."""
    kept_steps = plan.spec.settings["save_params"]
    run_id = int(group.run_ids[position])
    layers = kept_params(folder, run_id).of(run_id) if folder and step in kept_steps else None
    if layers is not None:  # kept by a finished run
        return {layer: values[kept_steps.index(step)] for layer, values in layers.items()}
    static = planning.Static.of({**dict(group.static.items), "save_params": (int(step),)})
    hyper = {k: v[position] for k, v in group.hyper.items()}
    _, _, saved = _train_program(static, registry.registrations)(hyper, group.seeds[position])
    return {layer: values[0] for layer, values in jax.device_get(saved).items()}


# One program per group's static settings, kept for the calls that follow: materialize is
# called run after run (compiling a run's setup took 0.6 s of each call on the 2-core CPU).
# Static names components; `registrations` (registry.registrations) keys a program by the
# functions those names stood for when it was compiled.
PROGRAMS_KEPT = 32


@lru_cache(maxsize=PROGRAMS_KEPT)
def _setup_program(static: planning.Static, registrations: int):
    """A run's data, teacher and initial parameters: the same traced computation as inside
    the engine (loop.setup), for one run."""
    return jax.jit(lambda hyper, seed: loop.setup(planning.Config(static, hyper), seed)[:3])


@lru_cache(maxsize=PROGRAMS_KEPT)
def _train_program(static: planning.Static, registrations: int):
    """One run trained alone (loop.train_run)."""
    return jax.jit(partial(loop.train_run, static))
