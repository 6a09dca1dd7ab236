"""A geometric width grid in one sweep against the sum of one sweep per width (issue 6,
item 4: width sweeps without waste).

The grid is the `suite.py` sweep (linear teacher, ReLU, NTK scaling, full-batch GD, 8
step sizes x seeds) with `model.width` = 16, 32, ..., 4096 swept. It is run once as one
`jaxgd.run` (one group, so one compiled program, per width), and once as one `jaxgd.run`
per width; the wall times (compile included, since a width sweep pays them) are
compared, and the compilations of both are reported. Best of `--repeats`, alternately.

    python benchmarks/width_sweep.py [--quick] [--runs R] [--steps S] [--repeats K]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_vs_loop as evl  # noqa: E402
import suite  # noqa: E402

import jaxgd  # noqa: E402


def widths(low: int, high: int) -> list[int]:
    return [2**k for k in range(low.bit_length() - 1, high.bit_length())]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="widths 16..256, 8 runs x 20 steps: a smoke test")
    parser.add_argument("--runs", type=int, default=16, help="runs per width (default 16)")
    parser.add_argument("--steps", type=int, default=200, help="steps (default 200)")
    parser.add_argument("--n", type=int, default=64, help="training samples (default 64)")
    parser.add_argument("--d", type=int, default=8, help="input dimension (default 8)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    evl.one_device()  # as recorded in RESULTS.md
    # Compile afresh: programs loaded from jaxgd's persistent compilation cache would
    # hide compile times (a sweep reuses the programs an earlier one in this process made).
    os.environ["JAXGD_COMPILE_CACHE"] = "off"
    runs, steps, high = (8, 20, 256) if args.quick else (args.runs, args.steps, 4096)
    grid = widths(16, high)
    base = suite.make_spec(suite.Size(n=args.n, d=args.d, m=grid[0], runs=runs, steps=steps))
    whole = copy.deepcopy(base)
    whole["model"]["width"] = grid
    evl.warm_up()
    print("load average at the start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()), file=sys.stderr)
    best_whole, best_sum = None, None
    for _ in range(args.repeats):
        stats = jaxgd.run(whole, progress=False).stats
        if best_whole is None or stats["wall_s"] < best_whole["wall_s"]:
            best_whole = stats
        per_width = []
        for m in grid:
            spec = copy.deepcopy(base)
            spec["model"]["width"] = m
            per_width.append(jaxgd.run(spec, progress=False).stats)
        total = {k: sum(s[k] for s in per_width) for k in ("wall_s", "compile_s", "programs", "chunks")}
        if best_sum is None or total["wall_s"] < best_sum["wall_s"]:
            best_sum = total
    print("load average at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()), file=sys.stderr)
    rows = [
        {"": f"one sweep, widths {grid[0]}..{grid[-1]}", "wall s": f"{best_whole['wall_s']:.2f}",
         "compile s": f"{best_whole['compile_s']:.2f}", "compilations": str(best_whole["programs"]),
         "calls": str(best_whole["chunks"])},
        {"": f"sum of {len(grid)} sweeps, one per width", "wall s": f"{best_sum['wall_s']:.2f}",
         "compile s": f"{best_sum['compile_s']:.2f}", "compilations": str(best_sum["programs"]),
         "calls": str(best_sum["chunks"])},
    ]
    print(f"{len(grid)} widths x {runs} runs x {steps} steps, n={args.n}, d={args.d}; "
          f"one sweep / sum of per-width sweeps: {best_whole['wall_s'] / best_sum['wall_s']:.2f}x (target <= 1.2x)")
    print()
    print(evl.markdown_table(rows))


if __name__ == "__main__":
    main()
