"""The jaxgd engine against a loop of per-run jitted programs, on the same work.

Both contenders train the same runs (8 step sizes x seeds, two-layer ReLU nets in NTK
scaling on a linear teacher, full-batch GD on the MSE, train_loss logged every 10
steps) with the same per-run function, `jaxgd.engine.loop.train_run`:

- engine: `jaxgd.run`, i.e. one `jit(vmap(train_run))` over all runs. Its own stats are
  used: run-steps/s over the wall time of `engine.execute` less its compile time, so
  copying the results back to NumPy is included.
- loop: what a JAX user writes first. `jit(train_run)` for one run, compiled once
  (ahead of time, like the engine), then called in a Python loop over the runs. Every
  call is dispatched first and the results are then fetched with one `jax.device_get`
  (which blocks), so the runs can overlap with the dispatch of the next ones.

The two are timed alternately, `--repeats` times each, after a throwaway warm-up run
that pays JAX's one-off start-up costs. Throughput is the best of the repeats; compile
time (the least of the engine's repeats, the loop's single compilation) is reported
separately and is not in it. The script also checks that both contenders log the same
train_loss histories, and prints the host's load average, since other processes on a
shared host slow both contenders down.

    python benchmarks/engine_vs_loop.py [--sizes tiny medium] [--quick] [--repeats R]
                                        [--chunk-size C]

`--chunk-size` sets the engine's `engine.chunk_size` (runs per compiled call; default
0 lets the engine size chunks from its memory budget, which on the host puts all the
runs of these sizes in one call).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import time
from typing import Callable

import jax
import numpy as np

import jaxgd
from jaxgd.engine import dispatch as engine
from jaxgd.engine import loop
from jaxgd.front.bench import LOG_EVERY, N_LR, Size, full_batch_spec
from jaxgd.sweep import plan as planning
from jaxgd.sweep import spec as specs

SIZES = {
    "tiny": Size(n=64, d=8, m=32, runs=512, steps=1000),
    "medium": Size(n=256, d=32, m=128, runs=64, steps=500),
}
QUICK = {"runs": 16, "steps": 50}


@dataclasses.dataclass
class Timing:
    """One timed pass of a contender over all runs."""

    run_steps_per_s: float  # compile excluded
    train_loss: np.ndarray  # (runs, logged steps), by run_id
    diverged: int  # runs that diverged


def make_spec(size: Size, chunk_size: int = 0) -> dict:
    return dict(full_batch_spec(size, chunk_size), name="engine_vs_loop")


def warm_up() -> None:
    """One throwaway run of a very small sweep: the first compilation in a process
    pays for JAX's own start-up, which belongs to neither contender."""
    jaxgd.run(make_spec(Size(n=8, d=2, m=2, runs=N_LR, steps=LOG_EVERY)), progress=False)


def run_engine(spec: dict) -> tuple[Timing, dict]:
    """One `jaxgd.run` (it compiles afresh), and its stats."""
    results = jaxgd.run(spec, progress=False)
    history = results.history.sort_values(["run_id", "step"])
    timing = Timing(
        run_steps_per_s=results.stats["run_steps_per_s"],
        train_loss=history["train_loss"].to_numpy().reshape(results.stats["runs"], -1),
        diverged=int(results.summary["diverged"].sum()),
    )
    return timing, results.stats


def one_run(group: planning.Group, i: int) -> tuple[dict, np.uint32]:
    """The traced settings and the seed of the group's i-th run."""
    return {k: v[i] for k, v in group.hyper.items()}, group.seeds[i]


def compile_loop(spec: dict) -> tuple[Callable[[], Timing], float]:
    """`jit(train_run)` for one run, compiled once; returns a function that runs the
    loop over all runs, and the compile seconds."""
    (group,) = planning.make(specs.load(spec)).groups  # only float settings are swept
    n_runs = len(group.run_ids)
    with engine.numerics(group.static):
        start = time.perf_counter()
        compiled = jax.jit(functools.partial(loop.train_run, group.static)).lower(*one_run(group, 0)).compile()
        compile_s = time.perf_counter() - start

    def run_loop() -> Timing:
        with engine.numerics(group.static):
            start = time.perf_counter()
            outputs = jax.device_get([compiled(*one_run(group, i)) for i in range(n_runs)])
            seconds = time.perf_counter() - start
        train_loss = np.empty((n_runs, len(outputs[0][0]["train_loss"])), np.float64)
        train_loss[group.run_ids] = [history["train_loss"] for history, *_ in outputs]
        return Timing(
            run_steps_per_s=n_runs * spec["steps"] / seconds,
            train_loss=train_loss,
            diverged=sum(int(diverged_step >= 0) for _, diverged_step, *_ in outputs),
        )

    return run_loop, compile_s


def max_relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|a|, |b|) over all entries (0 where both are 0)."""
    scale = np.maximum(np.abs(a), np.abs(b))
    diff = np.abs(a - b)
    return float(np.max(np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)))


def measure(name: str, size: Size, repeats: int, chunk_size: int) -> dict:
    """Engine and loop timed alternately, `repeats` times each, so that other load on
    the host weighs on both alike."""
    spec = make_spec(size, chunk_size)
    print(f"{name}: n={size.n} d={size.d} m={size.m}, {size.runs} runs x {size.steps} steps", file=sys.stderr)
    run_loop, loop_compile_s = compile_loop(spec)
    engine_runs, engine_stats, loop_runs = [], [], []
    for _ in range(repeats):
        timing, stats = run_engine(spec)
        engine_runs.append(timing)
        engine_stats.append(stats)
        loop_runs.append(run_loop())
    for label, runs in (("engine", engine_runs), ("loop", loop_runs)):
        rates = ", ".join(f"{t.run_steps_per_s:,.0f}" for t in runs)
        print(f"  {label:6} run-steps/s: {rates}; diverged runs: {runs[-1].diverged}", file=sys.stderr)
    engine_best = max(t.run_steps_per_s for t in engine_runs)
    loop_best = max(t.run_steps_per_s for t in loop_runs)
    rel_diff = max_relative_difference(engine_runs[-1].train_loss, loop_runs[-1].train_loss)
    print(f"  max relative difference of train_loss histories: {rel_diff:.2e}", file=sys.stderr)
    return {
        "size": name,
        "n, d, m": f"{size.n}, {size.d}, {size.m}",
        "runs x steps": f"{size.runs} x {size.steps}",
        "engine chunk": ", ".join(str(c) for c in engine_stats[0]["chunk_sizes"]),
        "engine run-steps/s": f"{engine_best:,.0f}",
        "loop run-steps/s": f"{loop_best:,.0f}",
        "engine / loop": f"{engine_best / loop_best:.2f}x",
        "engine compile s": f"{min(s['compile_s'] for s in engine_stats):.2f}",
        "loop compile s": f"{loop_compile_s:.2f}",
        "max rel. diff. train_loss": f"{rel_diff:.1e}",
    }


def markdown_table(rows: list[dict]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[k] for k in header) + " |" for row in rows]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--quick", action="store_true", help=f"{QUICK['runs']} runs x {QUICK['steps']} steps: a smoke test")
    parser.add_argument("--chunk-size", type=int, default=0, help="engine.chunk_size of the engine (default 0: its own choice)")
    parser.add_argument("--repeats", type=int, help="timed repeats per contender, best kept (default 3; 1 with --quick)")
    return parser.parse_args(argv)


def cpu_model() -> str:
    """The host CPU's model name (Linux), or its architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return os.uname().machine


def one_device() -> None:
    """Train on one JAX device, as the loop does: jaxgd.run would take one per core."""
    jax.config.update("jax_num_cpu_devices", 1)


def main(argv=None) -> None:
    args = parse_args(argv)
    one_device()
    repeats = args.repeats or (1 if args.quick else 3)
    sizes = {name: SIZES[name] for name in args.sizes}
    if args.quick:
        sizes = {name: dataclasses.replace(size, **QUICK) for name, size in sizes.items()}
    print(
        f"jax {jax.__version__}, jaxlib {jax.lib.__version__}, {jax.devices()[0].device_kind}: "
        f"{cpu_model()}, {os.cpu_count()} cores; best of {repeats}; load average "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        file=sys.stderr,
    )
    warm_up()
    rows = [measure(name, size, repeats, args.chunk_size) for name, size in sizes.items()]
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()), file=sys.stderr)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
