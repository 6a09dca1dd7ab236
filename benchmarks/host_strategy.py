"""Where to vmap and where to map on the host: the engine with `engine.strategy` forced
to `vmap` (a chunk's runs batched into one program) and to `map` (trained one after
another in one call), and the loop of per-run jitted programs, on the same work at
sizes from tiny to beyond medium; the measurement behind `plan.HOST_MAP_ABOVE_BYTES`.

Same runs as `engine_vs_loop.py` (8 step sizes x seeds, ReLU, NTK scaling, linear
teacher, full-batch GD on the MSE, train_loss every 10 steps), about the same arithmetic
per size (runs x steps x 4 n d m ~ `--gflop`), chunks cut by the engine's own rule, one
JAX device. The three are timed alternately, best of `--repeats`; compile excluded.

    python benchmarks/host_strategy.py [--repeats R] [--steps S] [--gflop G]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_vs_loop as evl  # noqa: E402

from jaxgd.sweep import plan as planning  # noqa: E402
from jaxgd.sweep import spec as specs  # noqa: E402

# (n, d, m), working set per run from 63 KiB to 1.9 MiB
SHAPES = [(64, 8, 32), (128, 16, 64), (256, 16, 64), (128, 32, 128), (256, 32, 128), (512, 32, 128)]


def sized(shape, steps: int, gflop: float) -> evl.Size:
    n, d, m = shape
    runs = int(gflop * 1e9 / (4 * n * d * m * steps)) // evl.N_LR * evl.N_LR
    return evl.Size(n=n, d=d, m=m, runs=max(evl.N_LR, min(runs, 2048)), steps=steps)


def with_strategy(spec: dict, strategy: str) -> dict:
    return dict(spec, engine={"strategy": strategy})


def measure(size: evl.Size, repeats: int) -> dict:
    spec = evl.make_spec(size)
    (group,) = planning.make(specs.load(spec)).groups
    run_loop, _ = evl.compile_loop(spec)
    rates = {"vmap": [], "map": [], "loop": []}
    for _ in range(repeats):
        for strategy in ("vmap", "map"):
            timing, stats = evl.run_engine(with_strategy(spec, strategy))
            rates[strategy].append(timing.run_steps_per_s)
        rates["loop"].append(run_loop().run_steps_per_s)
    best = {k: max(v) for k, v in rates.items()}
    print(f"  {size}: " + "; ".join(f"{k} " + ", ".join(f"{x:,.0f}" for x in v) for k, v in rates.items()),
          file=sys.stderr)
    return {
        "n, d, m": f"{size.n}, {size.d}, {size.m}",
        "KiB per run": f"{planning.bytes_per_run(group.static) / 1024:,.0f}",
        "runs x steps": f"{size.runs} x {size.steps}",
        "chunk": str(group.chunk_size),
        "vmap run-steps/s": f"{best['vmap']:,.0f}",
        "map run-steps/s": f"{best['map']:,.0f}",
        "loop run-steps/s": f"{best['loop']:,.0f}",
        "vmap / loop": f"{best['vmap'] / best['loop']:.2f}x",
        "map / loop": f"{best['map'] / best['loop']:.2f}x",
        "auto picks": group.strategy,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--gflop", type=float, default=20.0, help="arithmetic per contender and size")
    args = parser.parse_args(argv)
    os.environ["JAXGD_COMPILE_CACHE"] = "off"
    evl.warm_up()
    start_load = os.getloadavg()
    rows = [measure(sized(shape, args.steps, args.gflop), args.repeats) for shape in SHAPES]
    print(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; {evl.cpu_model()}, "
          f"{os.cpu_count()} cores; load average {start_load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    print(f"- command: python benchmarks/host_strategy.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print()
    print(evl.markdown_table(rows))


if __name__ == "__main__":
    main()
