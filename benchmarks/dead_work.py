"""Stopping dead work: a sweep where half the runs diverge in the first steps, trained
with the engine as it is (a chunk whose runs are all frozen stops) and with a loop that
runs every step (`loop.is_frozen` never true), alternately in one process. Reports the
wall time less the time spent waiting for compilation, median of `--repeats`, and
checks that both give the same tables bit for bit.

    python benchmarks/dead_work.py [--repeats R] [--steps S]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import jax
import jax.numpy as jnp

import jaxgd
from jaxgd.engine import loop


def make_spec(steps: int) -> dict:
    """256 runs: 8 step sizes x 32 seeds; the 4 largest diverge within a few steps, and
    their 128 runs fill two whole chunks of 64."""
    return {
        "name": "dead_work", "seeds": 32, "steps": steps, "log_every": steps // 20, "metrics": ["train_loss"],
        "data": {"name": "linear_teacher", "n": 64, "n_test": 64, "d": 8},
        "model": {"width": 64, "activation": "relu", "scaling": "ntk"},
        "optimizer": {"lr": [0.01, 0.02, 0.05, 0.1, 100.0, 200.0, 500.0, 1000.0]},
        "loss": {"name": "mse"},
    }


def timed(spec: dict, stop: bool):
    original = loop.is_frozen
    if not stop:
        loop.is_frozen = lambda state: jnp.array(False)
    try:
        results = jaxgd.run(spec, progress=False, plots=False)
    finally:
        loop.is_frozen = original
    return results.stats["wall_s"] - results.stats["compile_critical_s"], results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4000)
    args = parser.parse_args(argv)
    jax.config.update("jax_num_cpu_devices", 1)
    spec = make_spec(args.steps)
    seconds = {True: [], False: []}
    tables = {}
    for _ in range(args.repeats):
        for stop in (True, False):
            s, tables[stop] = timed(spec, stop)
            seconds[stop].append(s)
    differing = [f"{name}.{c}" for name in ("history", "summary")
                 for c in getattr(tables[True], name).columns
                 if not getattr(tables[True], name)[c].equals(getattr(tables[False], name)[c])]
    diverged = tables[True].summary
    late = diverged.diverged_step.max()
    print(f"- {os.getloadavg()[0]:.2f} load; {jax.devices()[0].device_kind}; {int(diverged.diverged.sum())} of "
          f"{len(diverged)} runs diverged, the last at step {late:.0f}; chunks {tables[True].stats['chunk_sizes']}; "
          f"{'tables bit-identical' if not differing else 'DIFFERENT: ' + ', '.join(differing)}", file=sys.stderr)
    stop, every = statistics.median(seconds[True]), statistics.median(seconds[False])
    print("| runs x steps | stopping dead chunks, s | every step, s | ratio |\n|---|---|---|---|")
    print(f"| {len(diverged)} x {args.steps} | {stop:.2f} | {every:.2f} | {stop / every:.2f}x |")
    print("all repeats: " + "; ".join(f"{'stop' if k else 'every'} " + ", ".join(f"{x:.2f}" for x in v)
                                      for k, v in seconds.items()))


if __name__ == "__main__":
    main()
