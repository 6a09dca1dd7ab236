"""Performance features never change results: a chunk whose runs are all frozen stops
computing, and the histories are those of a loop that runs every step (NaN from the
frozen step on either way)."""

import jax.numpy as jnp
import numpy as np

import jaxgd
from jaxgd.engine import loop

from conftest import make_spec


def test_stopping_frozen_chunks_leaves_results_bit_identical(monkeypatch):
    # chunks of 2 runs, one step size each: lr 1e4 all diverged early (its chunk stops), 0.1 stable
    spec = make_spec(seeds=2, steps=60, log_every=10, optimizer={"lr": [1e4, 3.0, 0.1]}, engine={"chunk_size": 2})
    stopped = jaxgd.run(spec, progress=False)
    monkeypatch.setattr(loop, "is_frozen", lambda state: jnp.array(False))
    every_step = jaxgd.run(spec, progress=False)
    assert stopped.summary.diverged.any() and not stopped.summary.diverged.all()
    for name in ("history", "summary"):
        a, b = getattr(stopped, name), getattr(every_step, name)
        assert a.columns.equals(b.columns)
        for column in a.columns:
            np.testing.assert_array_equal(a[column].to_numpy(), b[column].to_numpy())
