"""Memory: the chunk size follows the memory budget; a chunk that still runs out of
device memory is halved and retried, and the final size is reported. Neither changes
which runs there are or their values.

Values are compared to float rounding here, not bit for bit: these tests change the
chunk size itself, and XLA may compile a batch of 8 runs differently from one of 150
(each run's computation and key stay its own)."""

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import make_spec
from scale_helpers import sweep

import jaxgd
from jaxgd.engine import dispatch as engine
from jaxgd.engine import loop
from jaxgd.front import api
from jaxgd.sweep import plan as planning
from jaxgd.sweep import spec as specs

METRICS = ["train_loss", "test_loss", "grad_norm"]


def assert_same_rows_and_values(a: pd.DataFrame, b: pd.DataFrame):
    """Same columns and rows; the same values, floats to rounding (NaN where NaN)."""
    floats = [c for c in a.columns if a[c].dtype.kind == "f"]
    other = [c for c in a.columns if c not in floats]
    pd.testing.assert_frame_equal(a[other], b[other], check_exact=True)
    np.testing.assert_allclose(a[floats].to_numpy(), b[floats].to_numpy(), rtol=1e-5, atol=1e-7)


def test_a_tiny_memory_budget_forces_several_chunks():
    spec = make_spec(seeds=6, steps=60, log_every=20, metrics=METRICS,
                     data={"name": "two_layer_teacher", "n": 64, "d": 8}, model={"width": 64},
                     optimizer={"lr": {"logspace": [-2, 0, 25]}})
    whole = jaxgd.run(spec | {"engine": {"memory_budget_mb": 64}}, progress=False)
    tiny = jaxgd.run(spec | {"engine": {"memory_budget_mb": 1}}, progress=False)
    assert whole.stats["chunks"] == 1 and tiny.stats["chunks"] >= 10
    assert tiny.stats["chunk_sizes"][0] * tiny.stats["chunks"] >= 150
    assert_same_rows_and_values(tiny.history, whole.history)


def test_out_of_memory_halves_the_chunk_and_reports_it(tmp_path, monkeypatch, capsys):
    """A device that cannot hold more than 3 runs: chunks of 12 are halved to 6, then 3."""
    compile_group = engine.compile_group

    def small_device(group, size=None, mesh=None, draw_length=None):
        (compiled, mesh), seconds = compile_group(group, size, mesh, draw_length)
        if (size or group.chunk_size) > 3:
            def out_of_memory(*args):
                raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.0 GiB")
            return (out_of_memory, mesh), seconds
        return (compiled, mesh), seconds

    spec = sweep()
    reference = jaxgd.run(spec, progress=False)
    monkeypatch.setattr(engine, "compile_group", small_device)
    results = jaxgd.run(spec, out=tmp_path / "out", progress=True)
    stats = results.stats
    assert stats["out_of_memory_retries"] == [[12, 6], [6, 3]] * 2  # in each of the 2 groups
    assert stats["chunk_sizes"] == [3] and stats["chunks"] == 8
    err = capsys.readouterr().err
    assert "out of memory with 12 runs per device; retrying with 6" in err
    assert "out of memory: chunks cut to 3 runs per device" in err
    assert len(list((tmp_path / "out" / "parts").glob("r*.npz"))) == 8
    assert_same_rows_and_values(results.history, reference.history)
    assert_same_rows_and_values(results.summary, reference.summary)


def test_errors_other_than_out_of_memory_are_raised(monkeypatch):
    def broken(group, size=None, mesh=None, draw_length=None):
        def fail(*args):
            raise jax.errors.JaxRuntimeError("INTERNAL: something else")
        return (fail, mesh or engine.local_mesh()), 0.0

    monkeypatch.setattr(engine, "compile_group", broken)
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        jaxgd.run(sweep(), progress=False)


def chunk_size(spec) -> int:
    (group,) = planning.make(specs.load(spec)).groups
    return group.chunk_size


def test_kept_parameters_and_online_batches_count_in_a_runs_memory():
    """Parameters kept at many steps, and online SGD's fresh batches, take memory a chunk
    must hold: under the same budget they leave room for fewer runs."""
    spec = make_spec(seeds=64, steps=100, log_every=10, data={"name": "linear_teacher", "d": 64}, model={"width": 32},
                     engine={"memory_budget_mb": 1})
    kept = make_spec(spec, save_params=list(range(0, 101, 10)))
    assert chunk_size(kept) < chunk_size(spec)
    online = make_spec(spec, data={"name": "single_index", "n": 1, "n_test": 1, "d": 64},
                       optimizer={"name": "online_sgd", "lr": 0.1, "batch_size": 1})
    large_batches = make_spec(online, optimizer={"name": "online_sgd", "lr": 0.1, "batch_size": 512})
    assert chunk_size(large_batches) < chunk_size(online)


def test_a_groups_draw_is_its_own_whatever_else_the_sweep_holds():
    """A narrow group's program reads its own runs' draw (what a run takes, rounded up to a
    power of two), not the longest of the sweep, even when both are made by one draw
    program: its memory and its program do not change when a wider group joins, nor do
    its numbers."""
    narrow = make_spec(seeds=2, steps=20, log_every=10, model={"width": 8})
    both = make_spec(narrow, model={"width": [8, 32]})
    alone_groups, joint_groups = (planning.make(specs.load(s)).groups for s in (narrow, both))
    (alone,), joint = engine.draw_lengths(alone_groups), engine.draw_lengths(joint_groups)
    assert joint[0] == alone < joint[1] <= 8 * alone
    assert engine.drawn_at(joint) == [joint[1], joint[1]]  # one draw program for both
    with jax.default_device(jax.devices()[0]):
        taken = loop.values_taken(alone_groups[0].static, alone_groups[0].hyper)
    assert taken <= alone < 2 * taken

    alone_run, joint_run = (jaxgd.run(s, progress=False) for s in (narrow, both))
    assert joint_run.stats["draw_programs"] == 1
    rows = joint_run.history[joint_run.history["width"] == 8].drop(columns="width").reset_index(drop=True)
    pd.testing.assert_frame_equal(rows.drop(columns="run_id"), alone_run.history.drop(columns="run_id"), check_exact=True)


def test_a_chunk_holds_its_runs_random_draws_within_the_budget():
    """Data drawn before the program (here 2,000 samples of dimension 20 for a net of width
    4, about as many bytes as the rest of a run) are held through it: the engine cuts its
    calls so that a chunk with its draws fits the budget (the plan, which cannot trace a
    run, sizes the chunks that shares are cut in without them), and the dry run says so."""
    spec = make_spec(seeds=8, steps=20, log_every=10, data={"name": "linear_teacher", "n": 1000, "n_test": 1000, "d": 20},
                     model={"width": 4}, engine={"memory_budget_mb": 1})
    (group,) = planning.make(specs.load(spec)).groups
    (length,) = engine.draw_lengths([group])
    with_draws = planning.chunk_size(group.static, len(group.run_ids), length)
    assert with_draws < group.chunk_size
    (estimated,) = api.estimate(spec).groups
    assert estimated["chunk_size"] == with_draws
    assert estimated["chunk_bytes"] == with_draws * (planning.bytes_per_run(group.static) + 4 * length) <= 2**20
    results = jaxgd.run(spec, progress=False)
    assert results.stats["chunk_sizes"] == [with_draws]
    assert_same_rows_and_values(results.history, jaxgd.run(make_spec(spec, engine={"memory_budget_mb": 64}),
                                                           progress=False).history)
