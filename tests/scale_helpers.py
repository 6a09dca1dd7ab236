"""Helpers for the scale-out tests: a small sweep of several groups and chunks, and
running jaxgd in a fresh process (device counts and jax.distributed are fixed when JAX
starts, so those tests need their own processes)."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import tomli_w
from conftest import make_spec

TIMEOUT = 300  # seconds for any one child process: generous for a loaded 2-core machine


def sweep(**engine):
    """24 runs in 2 groups (widths), 4 step sizes (the largest unstable) x 3 seeds."""
    return make_spec(
        seeds=3, steps=40, log_every=10, metrics=["train_loss", "test_loss", "grad_norm"],
        data={"name": "two_layer_teacher"}, model={"width": [4, 8]},
        optimizer={"lr": [0.01, 0.1, 1.0, 30.0]}, engine=engine,
    )


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(tomli_w.dumps(spec))
    return path


def child_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def jaxgd_cli(*args, env=None, timeout=TIMEOUT):
    return subprocess.run([sys.executable, "-m", "jaxgd", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env or child_env())


def tables(out: Path):
    return pd.read_parquet(out / "history.parquet"), pd.read_parquet(out / "summary.parquet")


def assert_same_results(out: Path, reference):
    """The folder's tables are exactly the reference's: same rows, same values, bit for bit."""
    history, summary = tables(out)
    assert not history.duplicated(["run_id", "step"]).any()
    pd.testing.assert_frame_equal(history, reference.history, check_exact=True)
    pd.testing.assert_frame_equal(summary, reference.summary, check_exact=True)
