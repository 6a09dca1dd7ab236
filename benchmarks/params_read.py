"""Reading one run's kept parameters from a finished folder: by the parts index (the part
that holds the run, `results.kept_params`, what `Results.params` and `materialize` use) and
by assembling every part (`store.saved_params`, its fallback and the way before), on the
same folder in one process, alternately. Reports the median of `--repeats` for each, the
ratio, and checks that both give the same arrays for every kept step. With `--grown` the
folder is of a sweep grown by one step size, placed first: the run read is an old one,
which its part (of the smaller sweep) names by another id.

    python benchmarks/params_read.py [--runs R] [--repeats K] [--grown]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import jaxgd
from jaxgd.storage.results import kept_params
from jaxgd.storage.store import saved_params


def make_spec(runs: int, *, smaller: bool = False) -> dict:
    """`runs` runs (step sizes x 4 seeds) in chunks of 2 (a part holds one call's chunks,
    one per device: many parts), parameters kept at step 0 and the last. With `smaller`,
    the sweep it grows: without its first step size (4 runs fewer, each other's id 4 less)."""
    lrs = np.logspace(-3, 0, runs // 4).tolist()
    return {
        "name": "params_read", "seeds": 4, "steps": 100, "log_every": 10, "metrics": ["train_loss"],
        "data": {"name": "linear_teacher", "n": 64, "n_test": 16, "d": 16},
        "model": {"width": 64, "activation": "relu", "scaling": "ntk"},
        "optimizer": {"lr": lrs[1:] if smaller else lrs},
        "engine": {"chunk_size": 2},
        "save_params": [0, "final"],
    }


def seconds(read) -> float:
    start = time.perf_counter()
    read()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--grown", action="store_true", help="a sweep grown by one step size: read an old run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "sweep"
        if args.grown:
            jaxgd.run(make_spec(args.runs, smaller=True), out=out, progress=False, plots=False)
        jaxgd.run(make_spec(args.runs), out=out, progress=False, plots=False)
        parts = len(list((out / "parts").glob("r*.npz")))
        run_id = args.runs // 2
        by_index, by_all = kept_params(out, run_id).of(run_id), saved_params(out).of(run_id)
        for layer, values in by_all.items():
            np.testing.assert_array_equal(by_index[layer], values)
        index_s, all_s = [], []
        for _ in range(args.repeats):  # alternately, so that the machine's load falls on both
            index_s.append(seconds(lambda: kept_params(out, run_id).of(run_id)))
            all_s.append(seconds(lambda: saved_params(out).of(run_id)))
    index, every = statistics.median(index_s), statistics.median(all_s)
    grown = f" (an old run: the sweep grew from {args.runs - 4:,} runs)" if args.grown else ""
    print(f"{args.runs:,} runs in {parts:,} parts, run {run_id}{grown}, median of {args.repeats}:")
    print(f"  by the parts index (one part): {index * 1e3:,.1f} ms")
    print(f"  every part assembled:          {every * 1e3:,.1f} ms")
    print(f"  ratio: {index / every:.3f}x (the same arrays)")


if __name__ == "__main__":
    main()
