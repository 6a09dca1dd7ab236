"""Checks that need an accelerator (opt in with `pytest -m gpu`): a real out-of-memory
error halves the chunk, and all local devices give the one-device numbers. Deselected by
default; they skip where JAX sees no GPU or TPU."""

import os
import subprocess
import sys

import jax
import pandas as pd
import pytest
from conftest import make_spec
from scale_helpers import TIMEOUT

import jaxgd

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(jax.default_backend() == "cpu", reason="needs a GPU or TPU"),
]


def test_a_real_out_of_memory_error_halves_the_chunk():
    """About 100 MB a run and a budget far above the device's memory: the first chunk of
    1024 runs cannot fit, and the engine halves it until it does."""
    spec = make_spec(seeds=2048, steps=2, log_every=1, data={"n": 4096, "n_test": 16, "d": 64},
                     model={"width": 1024}, engine={"memory_budget_mb": 10**7})
    results = jaxgd.run(spec, progress=False)
    stats = results.stats
    assert stats["out_of_memory_retries"], "the device held 1024 runs of 100 MB: make them bigger"
    assert len(results.summary) == 2048 and results.summary.final_train_loss.notna().all()
    print(results.closing_line())


@pytest.mark.skipif(jax.local_device_count() < 2, reason="needs several devices")
def test_all_devices_give_the_one_device_numbers(tmp_path):
    spec = make_spec(seeds=64, model={"width": [16, 64]}, optimizer={"lr": {"logspace": [-2, 1, 16]}},
                     engine={"chunk_size": 100})
    everywhere = jaxgd.run(spec, progress=False)
    assert everywhere.stats["devices"] == jax.local_device_count()
    script = f"import jaxgd; jaxgd.run({spec!r}, out={str(tmp_path / 'one')!r}, progress=False)"
    one = subprocess.run([sys.executable, "-c", script], env=os.environ | {"CUDA_VISIBLE_DEVICES": "0"},
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert one.returncode == 0, one.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one" / "history.parquet"), everywhere.history)

