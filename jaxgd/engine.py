"""The engine: `train_run` is one gradient-descent run as a pure function of its
settings and seed; `execute` compiles one program per group of runs with the same
static settings (`vmap` or `lax.map` of train_run, or the fused kernel: STRATEGIES) and
calls it chunk by chunk, the run axis split over every device of the process."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from jaxgd import data as datasets
from jaxgd import compile_cache, fused, hessian, losses, metrics, models, optim, registry, rng
from jaxgd import plan as planning
from jaxgd.bind import Science, science
from jaxgd.errors import SizeError, SpecError
from jaxgd.plan import Config, Group, Plan, Static, logged_steps
from jaxgd.shares import cut

class RunSetup(NamedTuple):
    data: datasets.Dataset
    teacher: Any  # the data set's teacher (None where there is none)
    params: dict  # initial parameters, every layer
    batches_key: jax.Array
    metrics_key: jax.Array
    sharpness_start: jax.Array | None  # start of the power iteration, where sharpness is tracked


def setup(cfg: Config, seed) -> RunSetup:
    """Everything random about a run, from its seed alone."""
    draws_key, batches_key, metrics_key = rng.run_keys(seed)
    run = science(cfg)

    def build(draws):
        given = cfg.data.given if cfg.data.name in datasets.GIVEN else None
        data, teacher = datasets.make(run.source, draws, n=cfg.data.n, n_test=cfg.data.n_test, given=given)
        params = models.init(draws, width=cfg.model.width, d=cfg.data.d, w_scale=cfg.model.w_scale,
                             a_init=cfg.model.a_init, a_scale=cfg.model.a_scale, bias=cfg.model.bias,
                             b_scale=cfg.model.b_scale, constrain=run.constrain, dtype=cfg.dtype)
        n_trained = sum(p.size for p in models.split(params, run.trained)[0].values())
        start = draws.normal((n_trained,)) if "sharpness" in run.tracks else None
        return data, teacher, params, start

    data, teacher, params, start = rng.draw(draws_key, build, cfg.dtype)
    return RunSetup(data, teacher, params, batches_key, metrics_key, start)


class Increases(NamedTuple):
    """Steps at which the training loss went up."""

    previous_loss: jax.Array
    count: jax.Array
    last_step: jax.Array  # -1 before the first


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """What the loop carries from step to step (a pytree: every field is traced)."""

    trainable: dict  # the layers gradient descent updates
    opt_state: optax.OptState
    anchor: dict | None  # the trainable layers at step measure.displacement_from (if tracked)
    sharpness_vector: jax.Array | None  # warm start of the next power iteration (if tracked)
    increases: Increases | None  # (if tracked)
    alive: jax.Array  # bool: not diverged
    diverged_step: jax.Array  # int32: first step whose loss was non-finite or above the bound; -1 if none

    replace = dataclasses.replace


def measure(cfg: Config, run: Science, s: metrics.Snapshot) -> dict[str, jax.Array]:
    """Every metric the spec asks for, cast to the run's dtype. Costly ones declared
    `at_ntk_steps` are computed only at the logged steps measure.ntk_steps (all if empty)."""
    values = {}
    chosen = cfg.measure.ntk_steps
    for name, metric in run.metrics.items():
        component = registry.get("metric", name)

        def value(metric=metric, component=component):
            computed = jnp.asarray(metric(s))
            if computed.shape != ():  # found while tracing, before anything compiles
                raise SpecError(f"metrics: '{component.name}' ({component.origin}) returned an array of shape "
                                f"{computed.shape}; a metric returns a scalar")
            return computed.astype(cfg.dtype)

        if component.declared("at_ntk_steps") and chosen:
            # The step is the same for every run of a chunk, so this stays a real branch under vmap.
            skip = lambda: jnp.full((), jnp.nan, cfg.dtype)
            values[name] = jax.lax.cond(jnp.isin(s.step, jnp.asarray(chosen)), value, skip)
        else:
            values[name] = value()
    return values


def train_run(static: Static, hyper: dict, seed):
    """One run: returns its metrics at every logged step ({name: (n_logs,)}; NaN from
    the divergence on) and its diverged_step (-1 if it never diverged)."""
    cfg = Config(static, hyper)
    run = science(cfg)
    start = setup(cfg, seed)
    data, params = start.data, start.params
    trainable, frozen = models.split(params, run.trained)
    optimizer = optim.descent(run.step_size, lr_scales={"W": cfg.optimizer.lr_scale_W, "a": cfg.optimizer.lr_scale_a,
                                                        "b": cfg.optimizer.lr_scale_b})
    batch = partial(optim.BATCHES[cfg.optimizer.name], sample_fresh=lambda key, n: sample_fresh(key, n),
                    batch_size=cfg.optimizer.batch_size, sampling=cfg.optimizer.sampling)

    def sample_fresh(key, n):
        """n fresh samples of the run's data set (its teacher), from `key`."""
        return rng.draw(key, lambda draws: run.source.fresh(draws, n, start.teacher), cfg.dtype)

    def loss(trainable, X, y):
        return run.loss_of({**frozen, **trainable}, X, y)

    def check_divergence(state, value, step):
        bad = losses.diverged(value, bound=cfg.engine.divergence_bound)
        first = state.alive & bad
        return state.replace(
            alive=state.alive & ~bad,
            diverged_step=jnp.where(first, step, state.diverged_step),
        )

    def set_anchor(state, step):
        if state.anchor is None:
            return state
        at_anchor = step == cfg.measure.displacement_from
        return state.replace(anchor=jax.tree.map(lambda p, a: jnp.where(at_anchor, p, a), state.trainable, state.anchor))

    def count_increase(state, value, step):
        if state.increases is None:
            return state
        previous, count, last = state.increases
        up = state.alive & (value > previous)
        return state.replace(increases=Increases(value, count + up, jnp.where(up, step, last)))

    def constrain(trainable):
        if "W" not in trainable:
            return trainable
        return {**trainable, "W": run.constrain(trainable["W"], params["W"])}

    def gd_step(step, state):
        state = set_anchor(state, step)
        X, y = batch(start.batches_key, step, data)
        value, grads = jax.value_and_grad(loss)(state.trainable, X, y)
        state = count_increase(check_divergence(state, value, step), value, step)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
        # A diverged run stays frozen where it diverged.
        keep_if_dead = lambda new, old: jnp.where(state.alive, new, old)
        return state.replace(
            trainable=jax.tree.map(keep_if_dead, constrain(optax.apply_updates(state.trainable, updates)), state.trainable),
            opt_state=jax.tree.map(keep_if_dead, opt_state, state.opt_state),
        )

    def track(state):
        """Sharpness (warm-started power iteration) and loss increases, for the metrics."""
        tracked = {}
        if state.sharpness_vector is not None:
            full_loss = lambda t: loss(t, data.X_train, data.y_train)
            top, vector = hessian.top_eigenpair(full_loss, state.trainable, state.sharpness_vector,
                                                cfg.measure.sharpness_iterations)
            state = state.replace(sharpness_vector=vector)
            tracked["sharpness"] = top
        if state.increases is not None:
            tracked["loss_increases"] = state.increases.count
            tracked["last_increase_step"] = state.increases.last_step
        return state, tracked

    def log(state, step):
        state = set_anchor(state, step)
        state, tracked = track(state)
        snapshot = metrics.Snapshot(
            params={**frozen, **state.trainable}, initial=params, anchor=state.anchor, data=data,
            teacher=start.teacher, step=step, key=jax.random.fold_in(start.metrics_key, step), tracked=tracked,
            predict=run.network, loss=run.loss_of, trained=run.trained, lr=run.step_size(step),
            sample_fresh=sample_fresh, cfg=cfg)
        values = measure(cfg, run, snapshot)
        state = check_divergence(state, loss(state.trainable, data.X_train, data.y_train), step)
        return state, {k: jnp.where(state.alive, v, jnp.nan) for k, v in values.items()}

    # Log at each logged step, then take the gradient steps up to the next one (none
    # after the last). One copy of the step and of the metrics in the program.
    steps = logged_steps(cfg.steps, cfg.log_every)
    next_steps = np.append(steps[1:], steps[-1])

    def log_then_advance(state, interval):
        step, next_step = interval
        state, values = log(state, step)
        return jax.lax.fori_loop(step, next_step, gd_step, state), values

    state = TrainState(
        trainable=trainable,
        opt_state=optimizer.init(trainable),
        anchor=trainable if "displacement" in cfg.metrics else None,
        sharpness_vector=start.sharpness_start,
        increases=Increases(jnp.array(jnp.inf, cfg.dtype), jnp.array(0, jnp.int32), jnp.array(-1, jnp.int32))
        if "increases" in run.tracks else None,
        alive=jnp.array(True),
        diverged_step=jnp.array(-1, jnp.int32),
    )
    intervals = (jnp.asarray(steps, jnp.int32), jnp.asarray(next_steps, jnp.int32))
    state, history = jax.lax.scan(log_then_advance, state, intervals)
    return history, state.diverged_step


def train_runs_fused(static: Static, hyper: dict, seeds):
    """The runs of `jax.vmap(train_run)`, from the same `setup`, trained by the fused
    Pallas kernel instead (`engine.kernel = "fused"`, see jaxgd/fused.py)."""

    runs = jax.vmap(lambda h, seed: setup(Config(static, h), seed))(hyper, seeds)
    return fused.train(static, hyper, runs.data, runs.params)


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


@dataclasses.dataclass
class Outputs:
    """Every run's results, indexed by run_id."""

    steps: np.ndarray  # the logged steps (n_logs,)
    history: dict[str, np.ndarray]  # metric -> (n_runs, n_logs)
    diverged_step: np.ndarray  # (n_runs,), -1 if the run never diverged
    stats: dict


def local_mesh() -> Mesh:
    """A 1-D mesh over every device of this process: the run axis is sharded over it."""
    return Mesh(np.array(jax.local_devices()), ("runs",))


def map_runs(static: Static):
    """The runs of a chunk one after another (`lax.map`): each computed as if alone."""
    return lambda hyper, seeds: jax.lax.map(lambda run: train_run(static, *run), (hyper, seeds))


# How one device trains the runs of its chunk (plan.strategy picks one from
# `engine.strategy` and `engine.kernel`): `vmap` batches them into one program, `map`
# trains them one after another in one call, `fused` in one Pallas kernel.
STRATEGIES = {
    "vmap": lambda static: jax.vmap(partial(train_run, static)),
    "map": map_runs,
    "fused": lambda static: partial(train_runs_fused, static),
}


def compile_group(group: Group, size: int | None = None, mesh: Mesh | None = None):
    """The compiled program of a group for `size` runs per device (default: the group's
    chunk size) on each device of `mesh` (default: all of this process's): the run axis
    is split over the mesh (a Pallas call is not partitioned by jit: one per device) and
    each device trains its runs by the group's strategy. Returns it and the seconds it
    took."""
    mesh = mesh or local_mesh()
    runs = NamedSharding(mesh, P("runs"))
    n = (size or group.chunk_size) * mesh.size
    shape = lambda dtype: jax.ShapeDtypeStruct((n,), dtype, sharding=runs)
    start = time.perf_counter()
    per_device = STRATEGIES[group.strategy](group.static)
    # Runs never talk to each other: no collectives, so no replication checks to make.
    program = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=P("runs"), out_specs=P("runs"), check_vma=False))
    compiled = program.lower({k: shape(v.dtype) for k, v in group.hyper.items()}, shape(group.seeds.dtype)).compile()
    return compiled, time.perf_counter() - start


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
    `on_chunk(run_ids, history, diverged_step)` receives its real runs' results.
    A call that runs out of device memory is retried with chunks half the size."""
    spec = plan.spec
    steps = plan.logged_steps
    dtype = np.dtype(plan.dtype)
    history = {m: np.full((plan.n_runs, len(steps)), np.nan, dtype) for m in spec.metrics}
    diverged_step = np.full(plan.n_runs, -1, np.int64)
    todo = np.ones(plan.n_runs, bool) if todo is None else todo
    mesh = local_mesh()
    runs = NamedSharding(mesh, P("runs"))
    n_todo = int(sum(todo[g.run_ids].sum() for g in plan.groups))
    planning.refuse_runs_too_large([g for g in plan.groups if todo[g.run_ids].any()])

    start, compile_s, programs, calls, sizes, halvings = time.perf_counter(), 0.0, 0, 0, set(), []
    hits_before = compile_cache.hits()
    bar = tqdm(
        total=n_todo, unit="run", desc=spec.name, delay=1.0,
        disable=not progress, file=sys.stderr, dynamic_ncols=True,
    )
    with bar:
        for group in plan.groups:
            positions = np.flatnonzero(todo[group.run_ids])
            size = group.chunk_size
            if not len(positions):
                continue
            with numerics(group.static):
                compiled = None
                while len(positions):
                    try:
                        if compiled is None:
                            compiled, seconds = compile_group(group, size, mesh)
                            compile_s += seconds
                            programs += 1
                        padded, real = next_call(positions, size, mesh.size)
                        inputs = jax.device_put(({k: v[padded] for k, v in group.hyper.items()}, group.seeds[padded]), runs)
                        chunk_history, chunk_diverged = jax.device_get(compiled(*inputs))
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
                    for name, values in chunk_history.items():
                        history[name][run_ids] = values
                    diverged_step[run_ids] = chunk_diverged[real]
                    if on_chunk is not None:
                        on_chunk(run_ids, chunk_history, diverged_step[run_ids])
                    positions = positions[real.sum():]
                    calls += 1
                    sizes.add(size)
                    bar.update(len(run_ids))
    wall = time.perf_counter() - start
    run_steps = n_todo * plan.steps
    stats = {
        "runs": plan.n_runs,
        "runs_done": n_todo,
        "steps": plan.steps,
        "groups": len(plan.groups),
        "programs": programs,
        "chunks": calls,
        "chunk_sizes": sorted(sizes),
        "strategies": sorted({group.strategy for group in plan.groups}),
        "devices": mesh.size,
        "out_of_memory_retries": halvings,
        "wall_s": wall,
        "compile_s": compile_s,
        "compile_cache": compile_cache.directory(),
        "compile_cache_hits": compile_cache.hits() - hits_before,
        "run_steps_per_s": run_steps / max(wall - compile_s, 1e-9),
        "device": str(jax.local_devices()[0].device_kind),
    }
    return Outputs(steps=steps, history=history, diverged_step=diverged_step, stats=stats)
