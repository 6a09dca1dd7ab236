"""The Python entry points: `run` a sweep, `materialize` one run's data and parameters."""

from __future__ import annotations

import sys

import jax
import numpy as np

from jaxgd import engine, plot
from jaxgd import plan as planning
from jaxgd import spec as specs
from jaxgd.results import Results


def run(spec, *, overrides=None, out=None, progress=True) -> Results:
    """Run every run of `spec` (a TOML path or a dict), overridden by `overrides`
    ({dotted key: value} or ['key=value', ...]). With `out`, write the tables, the
    resolved spec and the figures of the spec's [plot] table there."""
    resolved = specs.load(spec, overrides)
    plan = planning.make(resolved)
    results = Results.from_outputs(plan, engine.execute(plan, progress=progress))
    if out is not None:
        results.save(out)
        plot.save_figures(results, resolved.plot, out)
    if progress:
        print(results.closing_line(), file=sys.stderr)
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
        setup = jax.jit(lambda h, s: engine.setup(planning.Config(group.static, h), s)[:3])
        data, teacher, params = jax.device_get(setup(hyper, group.seeds[i]))
    settings = {k: v for k, v in group.static.items if k not in ("dtype", "metrics", "data.given")}
    settings.update({k: v.item() for k, v in hyper.items()})
    return {
        **{name: np.asarray(value) for name, value in data._asdict().items()},
        "params": {name: np.asarray(value) for name, value in params.items()},
        "teacher": jax.tree.map(np.asarray, teacher),
        "seed": int(group.seeds[i]),
        "settings": settings,
    }
