"""The Python entry points: `run` a sweep (resuming what its folder already holds),
`collect` a folder whose parts were written elsewhere, `materialize` one run's data
and parameters."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

from jaxgd.engine import dispatch as engine, host, loop
from jaxgd.front import plot
from jaxgd.storage import compile_cache, distributed, shares
from jaxgd.sweep import plan as planning
from jaxgd.sweep import spec as specs
from jaxgd.storage.results import Results
from jaxgd.storage.store import Store, report_damaged


def run(spec, *, overrides=None, out=None, progress=True, compile_cache_dir=None, plots=True) -> Results:
    """Run every run of `spec` (a TOML path or a dict), overridden by `overrides`
    ({dotted key: value} or ['key=value', ...]).

    On a host without accelerators the runs are shared over every core (one JAX device
    per core, `jaxgd.use_all_cores`), if JAX has not started before. With `out`, each
    chunk is saved there as it finishes; running the same sweep into the same folder
    again runs only what is missing (a different sweep is refused with a SpecError); at
    the end the tables, the resolved spec and (with `plots`) the figures of the spec's
    [plot] table are written there. Under `jax.distributed` each process runs its share
    of the sweep and `out` must be a folder every process sees.
    `compile_cache_dir`: JAX's persistent compilation cache (None: the default, see
    `jaxgd.storage.compile_cache`; "off": none)."""
    host.use_all_cores()
    resolved = specs.load(spec, overrides)
    compile_cache.configure(compile_cache_dir)
    index, count = distributed.process()
    if count > 1 and out is None:
        raise ValueError(f"running as {count} processes (jax.distributed): give out=, a folder every process sees")
    plan = planning.make(resolved)
    engine.trace_user_metrics(plan)
    if out is None:
        results = Results.from_outputs(plan, engine.execute(plan, progress=progress))
    else:
        results = _run_into(Path(out), resolved, plan, progress, index, count, plots)
    if progress:
        print(results.closing_line(), file=sys.stderr)
    return results


def _run_into(out: Path, resolved, plan, progress, index, count, plots) -> Results:
    store = Store.open(out, resolved)
    before = store.scan(plan)
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
        if plots:
            plot.save_figures(results, resolved.plot, out)
        store.tidy(after)
    distributed.barrier("jaxgd: tables written")
    return results


def resume(out, *, overrides=None, progress=True, compile_cache_dir=None, plots=True) -> Results:
    """Finish the sweep saved in `out` (its spec.toml), running only what is missing."""
    spec = Store(out).saved_spec()
    if spec is None:
        raise FileNotFoundError(f"{Path(out) / 'spec.toml'} not found: nothing to resume in {out}")
    return run(spec, overrides=overrides, out=out, progress=progress, compile_cache_dir=compile_cache_dir, plots=plots)


def collect(out, *, progress=True, plots=True) -> Results:
    """Assemble the tables and figures of `out` from its parts (written by processes or
    Slurm tasks); an IncompleteError (a ValueError) says how many runs are missing."""
    store = Store(out)
    spec = store.saved_spec()
    if spec is None:
        raise FileNotFoundError(f"{Path(out) / 'spec.toml'} not found: is {out} the --out folder of a `jaxgd run`?")
    plan = planning.make(spec)
    scan = store.scan(plan)
    if progress:
        report_damaged(scan)
    results = Results.from_outputs(plan, store.assemble(plan, scan))
    results.save(out)
    if plots:
        plot.save_figures(results, spec.plot, out)
    store.tidy(scan)
    if progress:
        print(f"jaxgd: collected {plan.n_runs:,} runs from {len(scan.parts):,} parts into {out}", file=sys.stderr)
    return results


def materialize(spec, run_id: int, *, overrides=None) -> dict:
    """The exact training data, test data, initial parameters and teacher (None where
    the data set has none) of one run, as NumPy arrays, with its resolved settings: for
    checking one cell of a diagram by hand."""
    resolved = specs.load(spec, overrides)
    plan = planning.make(resolved)
    if not 0 <= run_id < plan.n_runs:
        raise ValueError(f"run_id: got {run_id}; this sweep has runs 0..{plan.n_runs - 1}")
    group = next(g for g in plan.groups if run_id in g.run_ids)
    i = int(np.flatnonzero(group.run_ids == run_id)[0])
    hyper = {k: v[i] for k, v in group.hyper.items()}
    with engine.numerics(group.static):
        # The same traced computation as inside the engine, for one run.
        setup = jax.jit(lambda h, s: loop.setup(planning.Config(group.static, h), s)[:3])
        data, teacher, params = jax.device_get(setup(hyper, group.seeds[i]))
    settings = planning.run_settings(group, i)
    return {
        **{name: np.asarray(value) for name, value in data._asdict().items()},
        "params": {name: np.asarray(value) for name, value in params.items()},
        "teacher": jax.tree.map(np.asarray, teacher),
        "seed": int(group.seeds[i]),
        "settings": settings,
    }
