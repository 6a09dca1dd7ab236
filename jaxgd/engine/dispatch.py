"""Compilation, chunking, sharding and memory retries: `execute` compiles one program per
group of runs with the same static settings (`vmap` or `lax.map` of train_run, or the
fused kernel: STRATEGIES) and calls it chunk by chunk, the run axis split over every
device of the process; a call out of device memory is retried with chunks half the size."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxgd.engine import compile_cache
from jaxgd.engine.loop import setup, train_run, values_taken
from jaxgd.engine.outputs import KeptParams, Outputs
from jaxgd.errors import SizeError
from jaxgd.science import registry, rng
from jaxgd.sweep import plan as planning
from jaxgd.sweep.plan import Config, Group, Plan, Static, cut


def train_runs_fused(static: Static, hyper: dict, drawn: rng.Drawn):
    """The runs of `jax.vmap(train_run)`, from the same `setup`, trained by the fused
    Pallas kernel instead (`engine.kernel = "fused"`, see jaxgd/engine/fused.py)."""
    from jaxgd.engine import fused  # Pallas: imported for the sweeps that ask for it

    runs = jax.vmap(lambda h, one: setup(Config(static, h), one))(hyper, drawn)
    return *fused.train(static, hyper, runs.data, runs.params), {}  # save_params is refused with it


@contextlib.contextmanager
def numerics(static: Static):
    """float64 when asked for; matmul precision as set (`highest` by default, since
    TF32 products on GPUs change dynamics near the edge of stability)."""
    with contextlib.ExitStack() as stack:
        cfg = Config(static, {})
        if cfg.dtype == np.float64:
            stack.enter_context(jax.enable_x64(True))
        stack.enter_context(jax.default_matmul_precision(cfg.engine.precision))
        yield


def local_mesh() -> Mesh:
    """A 1-D mesh over every device of this process: the run axis is sharded over it."""
    return Mesh(np.array(jax.local_devices()), ("runs",))


def map_runs(static: Static):
    """The runs of a chunk one after another (`lax.map`): each computed as if alone."""
    return lambda hyper, drawn: jax.lax.map(lambda run: train_run(static, *run), (hyper, drawn))


# How one device trains the runs of its chunk (plan.strategy picks one from
# `engine.strategy` and `engine.kernel`): `vmap` batches them into one program, `map`
# trains them one after another in one call, `fused` in one Pallas kernel.
STRATEGIES = {
    "vmap": lambda static: jax.vmap(partial(train_run, static)),
    "map": map_runs,
    "fused": lambda static: partial(train_runs_fused, static),
}


def compile_group(group: Group, size: int | None = None, mesh: Mesh | None = None, draw_length: int | None = None):
    """The compiled program of a group for `size` runs per device (default: the group's
    chunk size) on each device of `mesh` (default: all of this process's): the run axis
    is split over the mesh (a Pallas call is not partitioned by jit: one per device) and
    each device trains its runs by the group's strategy, from their rng.Drawn of
    `draw_length` values (default: what the group takes, rounded up: draw_lengths).
    Returns (it, the mesh it runs on) and the seconds it took.

    On a host of several devices, a program that calls LAPACK (eigenvalues, SVD: the
    metric ntk_min_eig, the derived quantity ntk0) runs on the first device alone: run on
    two CPU devices at once, such programs never finished (jax 0.10.2: two_rates.toml hung
    from the command line). A chunk is the same on any number of devices, so are its bits."""
    mesh, size, draw_length = mesh or local_mesh(), size or group.chunk_size, draw_length or draw_lengths([group])[0]
    start = time.perf_counter()
    lowered = lower_group(group, size, mesh, draw_length)
    if mesh.size > 1 and planning.on_host() and "lapack_" in lowered.as_text():
        mesh = Mesh(mesh.devices[:1], mesh.axis_names)
        lowered = lower_group(group, size, mesh, draw_length)
    return (lowered.compile(), mesh), time.perf_counter() - start


def lower_group(group: Group, size: int, mesh: Mesh, draw_length: int):
    """The group's program for `size` runs on each device of `mesh`, lowered."""
    runs = NamedSharding(mesh, P("runs"))
    shape = lambda *shape, dtype: jax.ShapeDtypeStruct((size * mesh.size, *shape), dtype, sharding=runs)
    per_device = STRATEGIES[group.strategy](group.static)
    # Runs never talk to each other: no collectives, so no replication checks to make.
    program = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=P("runs"), out_specs=P("runs"), check_vma=False))
    drawn = rng.Drawn(keys=shape(3, 2, dtype=np.uint32), values=shape(draw_length, dtype=np.float32))
    return program.lower({k: shape(dtype=v.dtype) for k, v in group.hyper.items()}, drawn)


def draw_lengths(groups: list[Group]) -> list[int]:
    """The length of each group's draw, the Drawn its program reads: what a run takes,
    rounded up to a power of two (so that a group's program, and the memory its draws
    hold, depend on its own runs alone, whatever else the sweep holds)."""
    lengths = []
    for group in groups:
        with numerics(group.static):
            lengths.append(1 << (values_taken(group.static, group.hyper) - 1).bit_length())
    return lengths


def drawn_at(lengths: list[int]) -> list[int]:
    """The length each group's draws are made at (then cut to its own: a draw's first values
    do not depend on its length, rng): the sweep's longest where that is at most 8 times the
    group's own, else its own. One draw program for most sweeps, drawing at most 8 times
    what a run takes."""
    longest = max(lengths, default=0)
    return [longest if longest <= 8 * length else length for length in lengths]


# A draw program makes the Drawn of this many runs a call (fewer for long draws: at most
# 2^23 values, 32 MiB, a call), whatever a group's chunk size: one program per length.
DRAW_BLOCK = 8


def compile_draws(length: int, static: Static):
    """The compiled draw program for `length` values (in the sweep's numerics), its block
    of runs, and the seconds it took."""
    block = max(1, min(DRAW_BLOCK, 2**23 // length))
    start = time.perf_counter()
    with numerics(static):
        program = jax.jit(partial(rng.draw_runs, length=length))
        seeds = jax.ShapeDtypeStruct((block,), np.uint32)
        compiled = program.lower(seeds, seeds).compile()
    return (compiled, block), time.perf_counter() - start


def draw(draws, seeds: np.ndarray, length: int, init_seed: int) -> rng.Drawn:
    """The rng.Drawn of each seed (NumPy arrays), its first `length` values, from a compiled
    draw program and its block, started from init_seed where one is set (rng.start_seeds)."""
    program, block = draws
    padded = np.concatenate([seeds, np.full(-len(seeds) % block, seeds[0], seeds.dtype)])
    starts = np.asarray(rng.start_seeds(padded, init_seed))
    blocks = []
    for i in range(0, len(padded), block):
        drawn = jax.device_get(program(padded[i : i + block], starts[i : i + block]))
        blocks.append(rng.Drawn(keys=drawn.keys, values=drawn.values[:, :length]))
    return jax.tree.map(lambda *arrays: np.concatenate(arrays)[: len(seeds)], *blocks)


def compile_workers() -> int:
    """Threads compiling a sweep's programs ahead of the runs (XLA compiles outside the
    GIL): one per core this process may use beside an accelerator; on the host, where the
    runs need the cores too, half of them (on 2 cores, two threads made the quickstart
    slower than one: benchmarks/RESULTS.md, issue 15)."""
    cores = len(os.sched_getaffinity(0))
    return max(1, cores // 2) if planning.on_host() else cores


def compile_ahead(pool: ThreadPoolExecutor, group: Group, mesh: Mesh, draw_length: int):
    """The future of the group's program at its chunk size, compiled in `pool` (in the
    group's numerics: JAX's settings are per thread)."""

    def compile_in_numerics():
        with numerics(group.static):
            return compile_group(group, group.chunk_size, mesh, draw_length)

    return pool.submit(compile_in_numerics)


def is_out_of_memory(error: BaseException) -> bool:
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def next_call(positions: np.ndarray, size: int, n_devices: int) -> tuple[np.ndarray, np.ndarray]:
    """The next call on `positions` (the group's runs still to do, in order): up to
    `n_devices` chunks of `size` consecutive runs, one per device. Returns the padded
    positions (n_devices * size,) and which of them are real: a short chunk is padded
    with its first run, a missing one with the first chunk (computed, then dropped)."""
    take = cut(positions[: size * n_devices], size)
    real = [np.arange(size) < len(c) for c in take] + [np.zeros(size, bool)] * (n_devices - len(take))
    take += [take[0]] * (n_devices - len(take))
    padded = [np.concatenate([c, np.full(size - len(c), c[0])]) for c in take]
    return np.concatenate(padded), np.concatenate(real)


def execute(plan: Plan, progress: bool = True, *, todo: np.ndarray | None = None, on_chunk=None) -> Outputs:
    """Run the plan's runs (only those in `todo`, a mask over run_ids, when given),
    group by group, each call sharded over this process's devices. After each call,
    `on_chunk(run_ids, history, diverged_step, params)` receives its real runs' results
    (and then the returned history and parameters are empty: the chunks hold them).
    A call that runs out of device memory is retried with chunks half the size."""
    spec = plan.spec
    steps = plan.logged_steps
    dtype = np.dtype(plan.dtype)
    # Given on_chunk, each chunk's history goes there (to disk, part by part) and is not
    # kept: the dense arrays of every run would be a second copy of the tables.
    history = {m: np.full((plan.n_runs, len(steps)), np.nan, dtype) for m in plan.logged} if on_chunk is None else {}
    diverged_step = np.full(plan.n_runs, -1, np.int64)
    params, params_bytes = KeptParams(), 0
    todo = np.ones(plan.n_runs, bool) if todo is None else todo
    mesh = local_mesh()
    n_todo = int(sum(todo[g.run_ids].sum() for g in plan.groups))
    groups = [g for g in plan.groups if todo[g.run_ids].any()]
    lengths = draw_lengths(groups)
    planning.refuse_runs_too_large(groups, lengths)
    # each call of a group's runs holds their draws too: its chunks sized again with them
    groups = [dataclasses.replace(g, chunk_size=planning.chunk_size(g.static, len(g.run_ids), length))
              for g, length in zip(groups, lengths)]

    start, compile_s, waited_s, programs, calls, sizes, halvings = time.perf_counter(), 0.0, 0.0, 0, 0, set(), []
    hits_before = compile_cache.hits()
    bar = tqdm(
        total=n_todo, unit="run", desc=spec.name, delay=1.0,
        disable=not progress, file=sys.stderr, dynamic_ncols=True,
    )
    def wait(future):
        """A program compiled ahead, once it is ready (the runs wait for it)."""
        nonlocal compile_s, waited_s
        waiting = time.perf_counter()
        program, seconds = future.result()
        waited_s += time.perf_counter() - waiting
        compile_s += seconds
        return program

    # Every program is compiled ahead, in threads, in the order the groups run (the draw
    # programs first: every group needs one): the next groups compile while one runs; the
    # runs wait only for a program not yet done.
    pool = ThreadPoolExecutor(compile_workers(), thread_name_prefix="jaxgd-compile")
    made_at = drawn_at(lengths)
    draws_ahead = {length: pool.submit(compile_draws, length, groups[0].static) for length in dict.fromkeys(made_at)}
    ahead = [compile_ahead(pool, group, mesh, length) for group, length in zip(groups, lengths)]
    draw_programs = {}
    try:
        with bar:
            for group, future, length, drawn_length in zip(groups, ahead, lengths, made_at):
                positions = np.flatnonzero(todo[group.run_ids])
                size = group.chunk_size
                with numerics(group.static):
                    if drawn_length not in draw_programs:
                        draw_programs[drawn_length] = wait(draws_ahead[drawn_length])
                    (compiled, group_mesh), programs = wait(future), programs + 1
                    while len(positions):
                        try:
                            if compiled is None:
                                (compiled, group_mesh), seconds = compile_group(group, size, mesh, length)
                                compile_s, waited_s, programs = compile_s + seconds, waited_s + seconds, programs + 1
                            padded, real = next_call(positions, size, group_mesh.size)
                            drawn = draw(draw_programs[drawn_length], group.seeds[padded], length, group.static["init_seed"])
                            inputs = jax.device_put(({k: v[padded] for k, v in group.hyper.items()}, drawn),
                                                    NamedSharding(group_mesh, P("runs")))
                            chunk_history, chunk_diverged, chunk_params = jax.device_get(compiled(*inputs))
                        except jax.errors.JaxRuntimeError as error:
                            if not is_out_of_memory(error):
                                raise
                            if size == 1:
                                raise SizeError(f"out of device memory training one run of a group alone ({error}); make "
                                                f"{', '.join(planning.RUN_SIZE_KEYS)} smaller") from error
                            inputs = compiled = None
                            halvings.append([size, (size + 1) // 2])
                            print(f"jaxgd: out of memory with {size} runs per device; retrying with {(size + 1) // 2}",
                                  file=sys.stderr)
                            size = (size + 1) // 2
                            continue
                        run_ids = group.run_ids[padded[real]]
                        chunk_history = {name: values[real] for name, values in chunk_history.items()}
                        chunk_params = {layer: values[real] for layer, values in chunk_params.items()}
                        params_bytes += sum(values.nbytes for values in chunk_params.values())
                        for name, values in history.items():
                            values[run_ids] = chunk_history[name]
                        diverged_step[run_ids] = chunk_diverged[real]
                        if on_chunk is not None:
                            on_chunk(run_ids, chunk_history, diverged_step[run_ids], chunk_params)
                        else:
                            params.add(run_ids, chunk_params)
                        positions = positions[real.sum():]
                        calls += 1
                        sizes.add(size)
                        bar.update(len(run_ids))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    wall = time.perf_counter() - start
    run_steps = n_todo * plan.steps
    stats = {
        "runs": plan.n_runs,
        "runs_done": n_todo,
        "steps": plan.steps,
        "groups": len(plan.groups),
        "programs": programs,
        "draw_programs": len(draws_ahead),  # each run's keys and draw, made before its program
        "chunks": calls,
        "chunk_sizes": sorted(sizes),
        "strategies": sorted({group.strategy for group in plan.groups}),
        "devices": mesh.size,
        "out_of_memory_retries": halvings,
        "wall_s": wall,
        "compile_s": compile_s,  # all programs, summed over the threads compiling them
        "compile_critical_s": waited_s,  # the time the runs waited for a program
        "compile_cache": compile_cache.directory(),
        "compile_cache_hits": compile_cache.hits() - hits_before,
        "params_bytes": params_bytes,  # the parameters kept at the steps of save_params
        "run_steps_per_s": run_steps / max(wall - waited_s, 1e-9),
        "device": str(jax.local_devices()[0].device_kind),
    }
    return Outputs(steps=steps, history=history, diverged_step=diverged_step, stats=stats, params=params)


def trace_user_metrics(plan: Plan) -> None:
    """Trace (not compile) one run of each group whose metrics include a user's, so that
    one returning the wrong shape is refused (by `measure`) before anything compiles."""
    for group in plan.groups:
        if all(registry.get("metric", name).builtin for name in Config(group.static, {}).metrics):
            continue
        with numerics(group.static):
            jax.eval_shape(partial(train_run, group.static), {k: v[0] for k, v in group.hyper.items()}, group.seeds[0])
