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
