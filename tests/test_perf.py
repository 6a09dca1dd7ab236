"""Performance features never change results: a chunk whose runs are all frozen stops
computing (the histories are those of a loop that runs every step, NaN from the frozen
step on either way); programs compile in threads ahead of the runs; chunk sizes come
from a small fixed set, so a grown axis reuses the programs of existing groups."""

import jax.numpy as jnp
import numpy as np
from conftest import make_spec

import jaxgd
from jaxgd.engine import dispatch, loop


def assert_same_tables(a, b):
    for name in ("history", "summary"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.columns.equals(y.columns)
        for column in x.columns:
            np.testing.assert_array_equal(x[column].to_numpy(), y[column].to_numpy())


def test_stopping_frozen_chunks_leaves_results_bit_identical(monkeypatch):
    # chunks of 2 runs, one step size each: lr 1e4 all diverged early (its chunk stops), 0.1 stable
    spec = make_spec(seeds=2, steps=60, log_every=10, optimizer={"lr": [1e4, 3.0, 0.1]}, engine={"chunk_size": 2})
    stopped = jaxgd.run(spec, progress=False)
    monkeypatch.setattr(loop, "is_frozen", lambda state: jnp.array(False))
    every_step = jaxgd.run(spec, progress=False)
    assert stopped.summary.diverged.any() and not stopped.summary.diverged.all()
    assert_same_tables(stopped, every_step)


def test_concurrent_compilation_leaves_results_bit_identical(monkeypatch):
    spec = make_spec(model={"width": [4, 8, 16]}, optimizer={"lr": [0.1, 3.0]}, engine={"chunk_size": 2})
    monkeypatch.setattr(dispatch, "compile_workers", lambda: 4)
    concurrent = jaxgd.run(spec, progress=False, compile_cache_dir="off")
    monkeypatch.setattr(dispatch, "compile_workers", lambda: 1)
    one_at_a_time = jaxgd.run(spec, progress=False, compile_cache_dir="off")
    assert concurrent.stats["programs"] == 3 and concurrent.stats["compile_critical_s"] <= concurrent.stats["wall_s"]
    assert_same_tables(concurrent, one_at_a_time)


def test_adding_axis_values_reuses_the_programs_of_existing_groups(tmp_path):
    # 5 step sizes x 4 seeds = 20 runs a group, in one chunk padded to 24; a sixth step
    # size makes 24: the same program. A new width is a new group, compiled.
    lrs = [0.01, 0.02, 0.05, 0.1, 0.2]
    first = jaxgd.run(make_spec(seeds=4, model={"width": [4, 8]}, optimizer={"lr": lrs}), progress=False,
                      compile_cache_dir=tmp_path)
    assert first.stats["chunk_sizes"] == [24] and first.stats["compile_cache_hits"] == 0
    more = jaxgd.run(make_spec(seeds=4, model={"width": [4, 8, 16]}, optimizer={"lr": lrs + [0.3]}),
                     progress=False, compile_cache_dir=tmp_path)
    # from the cache: the programs of the two existing groups, and the draw program they share
    assert more.stats["programs"] == 3 and more.stats["draw_programs"] == 1 and more.stats["compile_cache_hits"] == 3
