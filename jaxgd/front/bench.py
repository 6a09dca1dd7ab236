"""`jaxgd bench [--quick] [--out FILE.json]`: the standard benchmark on whatever device JAX
sees. Full-batch GD on two-layer ReLU nets at three sizes (tiny, medium, large) and
online SGD at d = 1000, p = 2, each trained by the engine (`jaxgd.run`) and by the
*floor*, a minimal hand-written `jit(vmap(...))` program on the same work. For each:
run-steps/s (compile excluded), achieved GFLOP/s, the fraction of the measured matmul
peak and of the memory-bandwidth bound, and the engine's rate over the floor's.

Flops per run-step: full batch 4 n d m (the forward product X W^T and the gradient of W,
2 n d m each); online 6 p d (forward, gradient, update of W). Bytes per run-step: the
design's model of an unfused step, the n x m hidden layer through memory 6 times plus
data and parameters once, 4 (6 n m + n (d + 1) + 2 m (d + 1)); online, the sample and
W read and written, 4 (d + 2 p d). The bandwidth bound is the measured bandwidth (a
large array scaled and written back) over those bytes; on a CPU the working sets of
small runs live in the caches, so it is no bound there (fractions above 1). (benchmarks/suite.py adds other
contenders on the same pieces.)"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

LOG_EVERY = 10
N_LR = 8  # step sizes 10^-2 .. 10^-0.5: no run diverges at these sizes


@dataclasses.dataclass(frozen=True)
class Size:
    n: int  # training samples (and test samples)
    d: int  # input dimension
    m: int  # hidden units
    runs: int
    steps: int


@dataclasses.dataclass(frozen=True)
class Online:
    d: int  # input dimension
    p: int  # hidden units (student and teacher)
    runs: int
    steps: int


SIZES = {
    "tiny": Size(n=64, d=8, m=32, runs=1024, steps=1000),
    "medium": Size(n=256, d=32, m=128, runs=32, steps=1000),
    "large": Size(n=1024, d=64, m=512, runs=8, steps=100),
    "online": Online(d=1000, p=2, runs=16, steps=2000),
}
QUICK = {
    "tiny": Size(n=64, d=8, m=32, runs=64, steps=200),
    "medium": Size(n=256, d=32, m=128, runs=8, steps=50),
    "large": Size(n=1024, d=64, m=512, runs=2, steps=10),
    "online": Online(d=1000, p=2, runs=8, steps=500),
}


def full_batch_spec(size: Size, chunk_size: int = 0) -> dict:
    """ReLU nets in NTK scaling on a linear teacher, full-batch GD on the MSE, step sizes
    10^-2 .. 10^-0.5 (fewer than 8 where there are fewer runs) x seeds."""
    n_lr = min(N_LR, size.runs)
    return {
        "name": "bench", "seeds": max(1, size.runs // n_lr), "steps": size.steps, "log_every": LOG_EVERY,
        "metrics": ["train_loss"],
        "data": {"name": "linear_teacher", "n": size.n, "n_test": size.n, "d": size.d},
        "model": {"width": size.m, "activation": "relu", "scaling": "ntk"},
        "optimizer": {"lr": {"logspace": [-2, -0.5, n_lr]}},
        "loss": {"name": "mse"},
        "engine": {"chunk_size": chunk_size},
    }


def online_spec(size: Online) -> dict:
    """Online SGD on a single-index teacher with square link, a committee of p square
    units with rows on the sphere of radius sqrt(d) (paper 5's set-up), one fresh sample
    a step, the committee risk logged 10 times."""
    return {
        "name": "bench_online", "seeds": size.runs, "steps": size.steps, "log_every": size.steps // 10,
        "metrics": ["committee_risk"],
        "data": {"name": "single_index", "link": "square", "d": size.d, "n": 1, "n_test": 1, "noise": 0.0},
        "model": {"width": size.p, "activation": "square", "scaling": "mean_field", "a_init": "constant",
                  "a_scale": 1.0, "train_a": False, "input_scaling": "sqrt_d", "constraint": "spherical"},
        "optimizer": {"name": "online_sgd", "batch_size": 1, "lr": 0.2},
        "loss": {"name": "mse"},
    }


def flops_per_run_step(size) -> int:
    return 6 * size.p * size.d if isinstance(size, Online) else 4 * size.n * size.d * size.m


def bytes_per_run_step(size) -> int:
    if isinstance(size, Online):
        return 4 * (size.d + 2 * size.p * size.d)
    n, d, m = size.n, size.d, size.m
    return 4 * (6 * n * m + n * (d + 1) + 2 * m * (d + 1))


def _best_seconds(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_peak(n: int, repeats: int = 5) -> float:
    """FLOP/s of one n x n float32 matmul (precision `highest`), best of `repeats`."""
    with jax.default_matmul_precision("highest"):
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        product = jax.jit(lambda x: x @ x)
        product(a).block_until_ready()
        return 2 * n**3 / _best_seconds(lambda: product(a).block_until_ready(), repeats)


def measure_bandwidth(n_bytes: int, repeats: int = 5) -> float:
    """Bytes/s of reading a float32 array of `n_bytes` (summing it), best of `repeats`."""
    x = jnp.ones(n_bytes // 4, jnp.float32)
    total = jax.jit(jnp.sum)
    total(x).block_until_ready()
    return n_bytes / _best_seconds(lambda: total(x).block_until_ready(), repeats)


@dataclasses.dataclass
class Work:
    """The runs of one full-batch size as arrays (by run_id): what the floor trains."""

    size: Size
    X: np.ndarray  # (R, n, d)
    y: np.ndarray  # (R, n)
    W: np.ndarray  # (R, m, d)
    a: np.ndarray  # (R, m)
    lr: np.ndarray  # (R,)

    @property
    def scale(self) -> float:
        return self.size.m**-0.5  # NTK scaling


def make_work(spec: dict, size: Size) -> Work:
    """The engine's data and initial parameters of every run, drawn from its seed."""
    from jaxgd.engine import dispatch, loop
    from jaxgd.sweep import plan as planning
    from jaxgd.sweep import spec as specs

    (group,) = planning.make(specs.load(spec)).groups
    cfg = lambda hyper: planning.Config(group.static, hyper)
    with dispatch.numerics(group.static):
        draw = jax.jit(jax.vmap(lambda hyper, seed: loop.setup(cfg(hyper), seed)[0::2][:2]))
        data, params = jax.device_get(draw(group.hyper, group.seeds))
    order = np.argsort(group.run_ids)
    return Work(size, X=data.X_train[order], y=data.y_train[order], W=params["W"][order],
                a=params["a"][order], lr=group.hyper["optimizer.lr"][order])


def floor_program(scale: float, steps: int, log_every: int):
    """The minimal vmapped program: full-batch GD on 0.5 mean (f - y)^2, the loss
    logged before every `log_every` steps and at the end."""

    def loss(p, X, y):
        return 0.5 * jnp.mean((scale * jax.nn.relu(X @ p["W"].T) @ p["a"] - y) ** 2)

    def run(p, X, y, lr):
        step = lambda p, _: (jax.tree.map(lambda w, g: w - lr * g, p, jax.grad(loss)(p, X, y)), None)
        block = lambda p, _: (jax.lax.scan(step, p, None, length=log_every)[0], loss(p, X, y))
        p, logged = jax.lax.scan(block, p, None, length=steps // log_every)
        return jnp.append(logged, loss(p, X, y))

    return jax.jit(jax.vmap(run))


def online_floor_program(d: int, p: int, steps: int, log_every: int, lr: float):
    """The minimal vmapped online SGD: a fresh Gaussian sample each step, y = (w*.x)^2 / d,
    f = mean_j (w_j.x)^2 / d, one SGD step on 0.5 (f - y)^2, rows back on the sphere of
    radius sqrt(d); the squared error logged every `log_every` steps."""

    def run(key, W, teacher):
        def step(W, t):
            x = jax.random.normal(jax.random.fold_in(key, t), (d,))
            h, y = W @ x / d**0.5, (teacher @ x) ** 2 / d
            error = jnp.mean(h**2) - y
            W = W - lr * error * (2 / p) * h[:, None] * x[None, :] / d**0.5
            return W * (d**0.5 / jnp.linalg.norm(W, axis=1, keepdims=True)), error**2

        block = lambda W, t: jax.lax.scan(step, W, t * log_every + jnp.arange(log_every))
        return jax.lax.scan(block, W, jnp.arange(steps // log_every))[1][:, -1]

    return jax.jit(jax.vmap(run))


def time_floor(size, repeats: int) -> tuple[float, float]:
    """The floor's run-steps/s (best of `repeats`) and its compile seconds."""
    if isinstance(size, Online):
        keys = jax.random.split(jax.random.key(0), 3)
        W = jax.random.normal(keys[0], (size.runs, size.p, size.d))
        args = (jax.random.split(keys[1], size.runs), W, jax.random.normal(keys[2], (size.runs, size.d)))
        program = online_floor_program(size.d, size.p, size.steps, size.steps // 10, 0.2)
    else:
        work = make_work(full_batch_spec(size), size)
        args = ({"W": work.W, "a": work.a}, work.X, work.y, work.lr)
        program = floor_program(work.scale, size.steps, LOG_EVERY)
    with jax.default_matmul_precision("highest"):
        start = time.perf_counter()
        compiled = program.lower(*args).compile()
        compile_s = time.perf_counter() - start
        seconds = _best_seconds(lambda: jax.block_until_ready(compiled(*args)), repeats)
    return size.runs * size.steps / seconds, compile_s


def time_engine(size, repeats: int) -> tuple[float, float]:
    """The engine's run-steps/s (its own stats: wall time less the time it waited for
    compilation; best of `repeats`) and its compile seconds (all programs)."""
    import jaxgd

    spec = online_spec(size) if isinstance(size, Online) else full_batch_spec(size)
    stats = [jaxgd.run(spec, progress=False, plots=False).stats for _ in range(repeats)]
    return max(s["run_steps_per_s"] for s in stats), min(s["compile_s"] for s in stats)


def measure_case(name: str, size, repeats: int, peak: float, bandwidth: float) -> dict:
    engine, engine_compile_s = time_engine(size, repeats)
    floor, floor_compile_s = time_floor(size, repeats)
    flops, moved = flops_per_run_step(size), bytes_per_run_step(size)
    return {
        "case": name, **dataclasses.asdict(size),
        "engine_run_steps_per_s": engine, "floor_run_steps_per_s": floor, "engine_over_floor": engine / floor,
        "engine_gflops": engine * flops / 1e9, "floor_gflops": floor * flops / 1e9,
        "engine_fraction_of_peak": engine * flops / peak, "floor_fraction_of_peak": floor * flops / peak,
        "engine_fraction_of_bandwidth_bound": engine * moved / bandwidth,
        "floor_fraction_of_bandwidth_bound": floor * moved / bandwidth,
        "flops_per_run_step": flops, "bytes_per_run_step": moved,
        "engine_compile_s": engine_compile_s, "floor_compile_s": floor_compile_s,
    }


def run(quick: bool = False, repeats: int | None = None) -> dict:
    """The suite on this process's first device (jaxgd.run uses all of them: on a CPU
    call this before JAX starts with one device, as `jaxgd bench` does)."""
    os.environ["JAXGD_COMPILE_CACHE"] = "off"  # compile afresh: compile seconds are figures here
    repeats = repeats or (1 if quick else 2)
    device = jax.devices()[0]
    peak_n = 2048
    peak, bandwidth = measure_peak(peak_n), measure_bandwidth(2**28)
    header = {
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        "device": f"{device.device_kind} ({device.platform}, {jax.local_device_count()} device(s))",
        "jax": jax.__version__, "quick": quick, "repeats": repeats,
        "peak_gflops": peak / 1e9, "peak_matmul": f"{peak_n}x{peak_n} float32, precision highest",
        "bandwidth_gb_per_s": bandwidth / 1e9, "load_average_start": os.getloadavg()[0],
    }
    cases = [measure_case(name, size, repeats, peak, bandwidth) for name, size in (QUICK if quick else SIZES).items()]
    return {**header, "load_average_end": os.getloadavg()[0], "cases": cases}


def table(report: dict) -> str:
    lines = [f"jaxgd bench on {report['device']}, {report['date']}: matmul peak {report['peak_gflops']:.1f} GFLOP/s, "
             f"bandwidth {report['bandwidth_gb_per_s']:.1f} GB/s, load {report['load_average_start']:.2f}",
             f"{'case':8} {'runs x steps':>13} {'engine run-steps/s':>19} {'floor':>12} {'ratio':>6} "
             f"{'GFLOP/s':>8} {'of peak':>8} {'of bw bound':>11} {'compile s':>9}"]
    for c in report["cases"]:
        lines.append(f"{c['case']:8} {c['runs']:>6} x {c['steps']:<6} {c['engine_run_steps_per_s']:>19,.0f} "
                     f"{c['floor_run_steps_per_s']:>12,.0f} {c['engine_over_floor']:>5.2f}x {c['engine_gflops']:>8.2f} "
                     f"{c['engine_fraction_of_peak']:>8.1%} {c['engine_fraction_of_bandwidth_bound']:>11.1%} "
                     f"{c['engine_compile_s']:>9.2f}")
    return "\n".join(lines)


def main(quick: bool, out: str | None) -> None:
    # One device, as the floor uses: on a CPU jaxgd.run would otherwise take one per core.
    jax.config.update("jax_num_cpu_devices", 1)
    report = run(quick)
    print(table(report))
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {out}", file=sys.stderr)
