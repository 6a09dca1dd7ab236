"""Checks that need an accelerator (opt in with `pytest -m gpu`): a real out-of-memory
error halves the chunk, and all local devices give the one-device numbers. Deselected by
default; they skip where JAX sees no GPU or TPU."""

import math
import os
import subprocess
import sys

import jax
import pandas as pd
import pytest
from conftest import make_spec
from scale_helpers import TIMEOUT

import jaxgd
from jaxgd.sweep import plan

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(jax.default_backend() == "cpu", reason="needs a GPU or TPU"),
]


def test_a_real_out_of_memory_error_halves_the_chunk():
    """A budget far above the device's memory, and a width at which the hidden layers alone
    of the first chunk's 1024 runs (4096 x width float32 each) take twice that memory, on
    any device (a fixed width 1024, 16 GiB of them, may fit on a large one): the engine
    halves the chunk until it fits."""
    width = 1024 * math.ceil(2 * plan.accelerator_memory() / (1024 * 4096 * 1024 * 4))
    spec = make_spec(seeds=2048, steps=2, log_every=1, data={"n": 4096, "n_test": 16, "d": 64},
                     model={"width": width}, engine={"memory_budget_mb": 10**7})
    results = jaxgd.run(spec, progress=False)
    stats = results.stats
    assert stats["out_of_memory_retries"], f"the device held 1024 runs at width {width}: make them bigger"
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

