"""The benchmark suite of issue 6: the jaxgd engine against other ways to do the same
work, in one process, at three sizes.

Every contender trains the same runs (step sizes 10^-2 .. 10^-0.5 x seeds, two-layer
ReLU nets in NTK scaling without bias on a linear teacher, full-batch GD on the MSE,
train_loss logged every 10 steps), from the same data and initial parameters (the
engine's own, drawn from each run's seed), and must log the same train_loss histories:
the suite reports the largest relative difference from the engine's.

Contenders:
- engine: `jaxgd.run` (one compiled call per chunk of runs, each device training its
  runs by the strategy the engine picks for the size: vmapped, or mapped one after
  another; its own stats: wall time less compile time, so copying results back and
  making the rows is in it).
- fused: `jaxgd.run` with `engine.kernel = "fused"` (one Pallas kernel per chunk; on
  a CPU only when asked for, as it runs in Pallas's interpret mode there).
- floor: a minimal `jit(vmap(lax.scan(gd_step)))` over all runs, written in a few
  lines (`floor_program`), data and parameters given as arrays.
- loop: a Python loop calling `jit(loop.train_run)` for one run, compiled once
  (from `engine_vs_loop.py`).
- torch_loop: the same loop in PyTorch, one run at a time, autograd (only where
  PyTorch is installed; on a subset of the runs when that would be slow).
- torch_bmm: hand-batched PyTorch, all runs at once with `torch.bmm` and autograd.

Run-steps/s = runs x steps / seconds, compile excluded (reported separately), best of
`--repeats`, the contenders timed alternately so that other load on the host weighs on
all alike. Flops per run-step: 4 n d m (the forward product X W^T, 2 n d m, and the
gradient of W, 2 n d m; the backward product into the inputs is not needed; the O(n m)
terms and the loss logged every 10 steps, +5% of a forward, are not counted). Bytes per
run-step: the design's model of an unfused step, which moves the n x m hidden layer
through memory 6 times (forward and backward) plus the data and the parameters once
(4 (6 n m + n (d + 1) + 2 m (d + 1)) bytes in float32); the fused bound would drop the
6 n m term. Roofline fraction: achieved flops over the peak of this process measured on
one large matmul (`--peak-n`, float32, precision `highest`) at the start of the run.

    python benchmarks/suite.py [--quick] [--sizes tiny medium large] [--repeats R]
                               [--contenders engine fused floor loop torch_loop torch_bmm]
                               [--runs N] [--chunk-size C] [--all-cores]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

import jaxgd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_vs_loop as evl  # noqa: E402

from jaxgd.front.bench import (  # noqa: E402
    LOG_EVERY,
    Size,
    Work,
    bytes_per_run_step,
    floor_program,
    flops_per_run_step,
    full_batch_spec,
    make_work,
    measure_peak,
)

try:
    import torch
except ImportError:  # the PyTorch contenders are optional
    torch = None
else:
    # One thread, like the JAX contenders (XLA's host client runs them on one core):
    # with two threads on this shared 2-core host a tiny step took 8 ms instead of 0.25.
    torch.set_num_threads(1)


# Run counts are cut down where this 2-core CPU would take minutes per contender.
SIZES = {
    "tiny": Size(n=64, d=8, m=32, runs=1024, steps=1000),
    "medium": Size(n=256, d=32, m=128, runs=32, steps=1000),
    "large": Size(n=1024, d=64, m=512, runs=8, steps=100),
}
QUICK = {"tiny": Size(n=64, d=8, m=32, runs=16, steps=50),
         "medium": Size(n=256, d=32, m=128, runs=8, steps=20),
         "large": Size(n=1024, d=64, m=512, runs=2, steps=10)}
CONTENDERS = ("engine", "fused", "floor", "loop", "torch_loop", "torch_bmm")
# The per-run PyTorch loop trains at most this many run-steps (a subset of the runs).
TORCH_LOOP_RUN_STEPS = 20_000


def make_spec(size: Size) -> dict:
    return dict(full_batch_spec(size), name="suite")


@dataclasses.dataclass
class Result:
    run_steps_per_s: float
    train_loss: np.ndarray  # (runs timed, n_logs), by run_id
    compile_s: float = 0.0
    runs: int = 0  # runs timed (all, unless a subset)
    note: str = ""


def contender_engine(spec: dict, chunk_size: int, kernel: str = "xla"):
    spec = dict(spec, engine={"chunk_size": chunk_size, "kernel": kernel})

    def go() -> Result:
        timing, stats = evl.run_engine(spec)
        return Result(timing.run_steps_per_s, timing.train_loss, stats["compile_s"], stats["runs"],
                      "chunk " + ", ".join(str(c) for c in stats["chunk_sizes"]))

    return go


def contender_floor(work: Work):
    args = ({"W": work.W, "a": work.a}, work.X, work.y, work.lr)
    with jax.default_matmul_precision("highest"):
        start = time.perf_counter()
        compiled = floor_program(work.scale, work.size.steps, LOG_EVERY).lower(*args).compile()
        compile_s = time.perf_counter() - start

    def go() -> Result:
        start = time.perf_counter()
        losses = np.asarray(jax.device_get(compiled(*args)))
        seconds = time.perf_counter() - start
        return Result(work.size.runs * work.size.steps / seconds, losses, compile_s, work.size.runs)

    return go


def contender_loop(spec: dict, work: Work):
    run_loop, compile_s = evl.compile_loop(spec)

    def go() -> Result:
        timing = run_loop()
        return Result(timing.run_steps_per_s, timing.train_loss, compile_s, work.size.runs)

    return go


def _torch_train(W, a, X, y, lr, scale, steps):
    """GD in PyTorch on one run (W (m, d)) or a batch of runs (W (R, m, d), `torch.bmm`);
    returns the logged losses (n_logs,) or (R, n_logs)."""
    W, a = W.clone().requires_grad_(), a.clone().requires_grad_()
    batched = W.dim() == 3

    def loss():
        if batched:
            f = scale * torch.bmm(torch.relu(torch.bmm(X, W.transpose(1, 2))), a.unsqueeze(2)).squeeze(2)
            return 0.5 * ((f - y) ** 2).mean(dim=1)
        return 0.5 * ((scale * torch.relu(X @ W.T) @ a - y) ** 2).mean()

    logged = []
    for step in range(steps + 1):
        value = loss()
        if step % LOG_EVERY == 0:
            logged.append(value.detach().clone())
        if step == steps:
            break
        gW, ga = torch.autograd.grad(value.sum(), (W, a))
        with torch.no_grad():
            W -= lr.view(-1, 1, 1) * gW if batched else lr * gW
            a -= lr.view(-1, 1) * ga if batched else lr * ga
    return torch.stack(logged, dim=-1).numpy()


def contender_torch_loop(work: Work):
    runs = max(1, min(work.size.runs, TORCH_LOOP_RUN_STEPS // work.size.steps))
    tensors = [torch.from_numpy(np.ascontiguousarray(x)) for x in (work.W, work.a, work.X, work.y)]
    lr = torch.from_numpy(work.lr)

    def go() -> Result:
        start = time.perf_counter()
        losses = [_torch_train(*(t[i] for t in tensors), lr[i], work.scale, work.size.steps) for i in range(runs)]
        seconds = time.perf_counter() - start
        note = f"{runs} of {work.size.runs} runs" if runs < work.size.runs else ""
        return Result(runs * work.size.steps / seconds, np.stack(losses), 0.0, runs, note)

    return go


def contender_torch_bmm(work: Work):
    tensors = [torch.from_numpy(np.ascontiguousarray(x)) for x in (work.W, work.a, work.X, work.y)]
    lr = torch.from_numpy(work.lr)

    def go() -> Result:
        start = time.perf_counter()
        losses = _torch_train(*tensors, lr, work.scale, work.size.steps)
        seconds = time.perf_counter() - start
        return Result(work.size.runs * work.size.steps / seconds, losses, 0.0, work.size.runs)

    return go


def measure(name: str, size: Size, contenders: list[str], repeats: int, chunk_size: int, peak: float) -> list[dict]:
    spec = make_spec(size)
    size = dataclasses.replace(size, runs=spec["seeds"] * spec["optimizer"]["lr"]["logspace"][2])
    print(f"{name}: n={size.n} d={size.d} m={size.m}, {size.runs} runs x {size.steps} steps", file=sys.stderr)
    work = make_work(spec, size)
    makers = {
        "engine": lambda: contender_engine(spec, chunk_size),
        "fused": lambda: contender_engine(spec, chunk_size, "fused"),
        "floor": lambda: contender_floor(work),
        "loop": lambda: contender_loop(spec, work),
        "torch_loop": lambda: contender_torch_loop(work),
        "torch_bmm": lambda: contender_torch_bmm(work),
    }
    chosen = [c for c in contenders if torch is not None or not c.startswith("torch")]
    skipped = [c for c in contenders if c not in chosen]
    if skipped:
        print(f"  skipped (PyTorch not installed): {', '.join(skipped)}", file=sys.stderr)
    runners = {c: makers[c]() for c in chosen}
    results = {c: [] for c in chosen}
    for _ in range(repeats):
        for c, go in runners.items():
            results[c].append(go())
    best = {c: max(rs, key=lambda r: r.run_steps_per_s) for c, rs in results.items()}
    reference = results["engine"][-1].train_loss if "engine" in results else None
    rows = []
    for c, rs in results.items():
        rates = ", ".join(f"{r.run_steps_per_s:,.0f}" for r in rs)
        print(f"  {c:10} run-steps/s: {rates}", file=sys.stderr)
        r = best[c]
        achieved = r.run_steps_per_s * flops_per_run_step(size)
        diff = "" if reference is None else f"{evl.max_relative_difference(reference[: r.runs], rs[-1].train_loss):.1e}"
        rows.append({
            "size": name,
            "n, d, m": f"{size.n}, {size.d}, {size.m}",
            "contender": c,
            "runs x steps": f"{r.runs} x {size.steps}",
            "run-steps/s": f"{r.run_steps_per_s:,.0f}",
            "engine / this": "" if "engine" not in best else f"{best['engine'].run_steps_per_s / r.run_steps_per_s:.2f}x",
            "GFLOP/s": f"{achieved / 1e9:.2f}",
            "roofline": f"{achieved / peak:.1%}",
            "flops/run-step": f"{flops_per_run_step(size):,}",
            "bytes/run-step": f"{bytes_per_run_step(size):,}",
            "compile s": f"{r.compile_s:.2f}",
            "max rel. diff. vs engine": diff,
            "note": r.note,
        })
    return rows


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS,
                        help="default: all; on a CPU all but fused (Pallas interpret mode there: for checking, slow)")
    parser.add_argument("--quick", action="store_true", help="a few runs and steps: a smoke test of seconds")
    parser.add_argument("--runs", type=int,
                        help="runs of every size, a multiple of 8 (step sizes x seeds); default the size's own, cut "
                             "down for a 2-core CPU: a GPU needs thousands to be busy")
    parser.add_argument("--repeats", type=int, help="timed repeats per contender, best kept (default 2; 1 with --quick)")
    parser.add_argument("--chunk-size", type=int, default=0, help="engine.chunk_size of the engine (default 0: its own choice)")
    parser.add_argument("--all-cores", action="store_true",
                        help="one JAX device per core, as `jaxgd run` does on a CPU: the engine puts a chunk on each, "
                             "the other JAX contenders run on the first device as written")
    parser.add_argument("--peak-n", type=int, help="side of the matmul that measures the peak (default 2048; 256 with --quick)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.all_cores:
        jaxgd.use_all_cores()
    else:
        evl.one_device()
    # Compile afresh: programs loaded from jaxgd's persistent compilation cache would
    # hide compile times (a sweep reuses the programs an earlier one in this process made).
    os.environ["JAXGD_COMPILE_CACHE"] = "off"
    repeats = args.repeats or (1 if args.quick else 2)
    sizes = {name: (QUICK if args.quick else SIZES)[name] for name in args.sizes}
    if args.runs:
        sizes = {name: dataclasses.replace(size, runs=args.runs) for name, size in sizes.items()}
    evl.warm_up()
    peak_n = args.peak_n or (256 if args.quick else 2048)
    peak = measure_peak(peak_n)
    versions = f"jax {jax.__version__}, jaxlib {jax.lib.__version__}, numpy {np.__version__}"
    if torch is not None:
        versions += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    header = [
        f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"device: {jax.devices()[0].device_kind} ({jax.device_count()} JAX device(s)): {evl.cpu_model()}, "
        f"{os.cpu_count()} cores",
        f"versions: Python {platform.python_version()}, {versions}; jaxgd at {git_commit()}",
        f"command: python {' '.join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))}",
        f"peak: {peak / 1e9:.1f} GFLOP/s ({peak_n}x{peak_n} float32 matmul, precision highest, this process)",
        "load average at the start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    ]
    print("\n".join(header), file=sys.stderr)
    contenders = args.contenders or [c for c in CONTENDERS if c != "fused" or jax.default_backend() != "cpu"]
    rows = [row for name, size in sizes.items() for row in measure(name, size, contenders, repeats, args.chunk_size, peak)]
    header.append("load average at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print("\n".join("- " + line for line in header))
    print()
    print(evl.markdown_table(rows))


if __name__ == "__main__":
    main()
