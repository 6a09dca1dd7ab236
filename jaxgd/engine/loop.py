"""The training loop: `train_run` is one gradient-descent run as a pure function of
its settings and seed, the whole loop on one screen (vmapped, mapped or replaced by the
fused kernel in jaxgd.engine.dispatch)."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgd.engine.bind import Science, science
from jaxgd.errors import SpecError
from jaxgd.science import data as datasets
from jaxgd.science import hessian, losses, metrics, models, optim, registry, rng
from jaxgd.sweep import expressions
from jaxgd.sweep.plan import AT_INIT, Config, Static, logged_steps


class RunSetup(NamedTuple):
    data: datasets.Dataset
    teacher: Any  # the data set's teacher (None where there is none)
    params: dict  # initial parameters, every layer
    batches_key: jax.Array
    metrics_key: jax.Array
    hessian_start: tuple | None  # starts of the two power iterations, where Hessian eigenvalues are tracked


def setup(cfg: Config, seed) -> RunSetup:
    """Everything random about a run, from its seed alone: an integer, or its
    `rng.Drawn` made before the program (the same numbers)."""
    drawn = seed if isinstance(seed, rng.Drawn) else None
    keys = drawn.run_keys() if drawn else rng.run_keys(seed, rng.start_seeds(seed, cfg.init_seed))
    draws_key, batches_key, metrics_key = keys
    data, teacher, params, start = rng.draw(draws_key, partial(build, cfg), cfg.dtype, drawn.values if drawn else None)
    return RunSetup(data, teacher, params, batches_key, metrics_key, start)


def build(cfg: Config, draws: rng.Draws):
    """A run's data, teacher, initial parameters and Hessian start vectors, cut from `draws`."""
    run = science(cfg)
    given = cfg.data.given if cfg.data.name in datasets.GIVEN else None
    data, teacher = datasets.make(run.source, draws, n=cfg.data.n, n_test=cfg.data.n_test, given=given)
    params = models.init(draws, width=cfg.model.width, d=cfg.data.d, w_scale=cfg.model.w_scale,
                         a_init=cfg.model.a_init, a_scale=cfg.model.a_scale, bias=cfg.model.bias,
                         b_scale=cfg.model.b_scale, constrain=run.constrain, dtype=cfg.dtype)
    n_trained = sum(p.size for p in models.split(params, run.trained)[0].values())
    # the second vector drawn after the first, so the first is that of earlier versions
    tracked = "hessian" in run.tracks or reads(cfg, "sharpness0")
    start = (draws.normal((n_trained,)), draws.normal((n_trained,))) if tracked else None
    return data, teacher, params, start


def values_taken(static: Static, hyper: dict) -> int:
    """How many values of its draw a run of a group takes (traced abstractly: the same for
    every run of the group; `hyper` gives the dtypes of its traced settings)."""
    taken = []
    abstract = {k: jax.ShapeDtypeStruct((), v.dtype) for k, v in hyper.items()}

    def count(hyper):
        cfg = Config(static, hyper)
        taken.append(rng.count(partial(build, cfg), cfg.dtype, jax.random.key(0)))

    jax.eval_shape(count, abstract)
    return taken[0]


def settings_at_init(cfg: Config) -> tuple:
    """The settings derived from quantities at initialization (spec.Derived), in order."""
    return cfg.static.get(AT_INIT, ())


def reads(cfg: Config, quantity: str) -> bool:
    """Whether a setting derived at initialization reads `quantity` (sharpness0, ntk0)."""
    return any(ref == quantity for derived in settings_at_init(cfg) for _, ref in derived.refs)


def sharpness0(cfg: Config, start: RunSetup) -> jax.Array:
    """Top Hessian eigenvalue of the training loss at initialization, as the `sharpness`
    metric computes it at step 0 (same start vector, same power iterations)."""
    run = science(cfg)
    trainable, frozen = models.split(start.params, run.trained)
    loss = lambda t: run.loss_of({**frozen, **t}, start.data.X_train, start.data.y_train)
    return hessian.eigenpairs(loss, trainable, start.hessian_start, cfg.measure.sharpness_iterations)[1][0]


def ntk0(cfg: Config, start: RunSetup) -> jax.Array:
    """Top eigenvalue of the empirical NTK Gram matrix over the training inputs at
    initialization (metrics.ntk_gram: each layer's part weighted by its step size factor)."""
    run = science(cfg)
    return jnp.linalg.eigvalsh(metrics.ntk_gram(run.network, start.params, start.data.X_train, trained=run.trained,
                                                lr_scales=run.lr_scales))[-1]


INIT_QUANTITIES = {"sharpness0": sharpness0, "ntk0": ntk0}


def with_settings_at_init(cfg: Config, start: RunSetup) -> Config:
    """The run's settings with those derived from quantities at initialization computed,
    inside the program, each after those it reads."""
    quantities = {name: quantity(cfg, start) for name, quantity in INIT_QUANTITIES.items() if reads(cfg, name)}
    hyper = dict(cfg.hyper)
    for derived in settings_at_init(cfg):
        value_of = lambda ref: quantities[ref] if ref in quantities else Config(cfg.static, hyper).value(ref)
        hyper[derived.key] = jnp.asarray(derived.value(value_of, jnp), cfg.dtype)
    return Config(cfg.static, hyper)


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
    hessian_vectors: tuple | None  # warm starts of the next power iterations (if tracked)
    increases: Increases | None  # (if tracked)
    alive: jax.Array  # bool: not diverged
    diverged_step: jax.Array  # int32: first step whose loss was non-finite or above the bound; -1 if none
    stopped_step: jax.Array | None  # int32: logged step at which engine.stop_when was met; -1 if none (if set)
    held: dict | None  # the metrics logged last, repeated once stopped (with engine.stop_when)
    saved: dict | None  # every layer at each step of save_params, {layer: (n_saved, ...)} (if set)

    replace = dataclasses.replace


def is_frozen(state: TrainState) -> jax.Array:
    """Whether a run has stopped moving: diverged, or met engine.stop_when."""
    return ~state.alive if state.stopped_step is None else ~state.alive | (state.stopped_step >= 0)


def stop_if_met(cfg: Config, state: TrainState, values: dict, step) -> tuple[TrainState, dict]:
    """engine.stop_when: a run meeting it at a logged step is frozen there, and its
    later logs repeat that step's values (a converged run reads as converged)."""
    if state.stopped_step is None:
        return state, values
    metric, symbol, threshold = expressions.criterion(cfg.engine.stop_when, "engine.stop_when")
    stopped = state.stopped_step >= 0
    values = {k: jnp.where(stopped, state.held[k], v) for k, v in values.items()}
    first = state.alive & ~stopped & expressions.meets(values[metric], symbol, threshold)
    return state.replace(stopped_step=jnp.where(first, step, state.stopped_step), held=values), values


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
    the divergence on), with the settings derived at initialization; its
    diverged_step (-1 if it never diverged); and its parameters at the steps of
    save_params ({layer: (n_saved, ...)}; NaN from the divergence on; empty if none)."""
    cfg = Config(static, hyper)
    start = setup(cfg, seed)
    cfg = with_settings_at_init(cfg, start)
    run = science(cfg)
    data, params = start.data, start.params
    trainable, frozen = models.split(params, run.trained)
    optimizer = optim.descent(run.step_size, lr_scales=run.lr_scales)
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
        # A diverged or stopped run stays frozen where it was.
        keep_if_dead = lambda new, old: jnp.where(is_frozen(state), old, new)
        return state.replace(
            trainable=jax.tree.map(keep_if_dead, constrain(optax.apply_updates(state.trainable, updates)), state.trainable),
            opt_state=jax.tree.map(keep_if_dead, opt_state, state.opt_state),
        )

    def track(state):
        """Hessian eigenvalues (warm-started power iterations) and loss increases, for the metrics."""
        tracked = {}
        if state.hessian_vectors is not None:
            full_loss = lambda t: loss(t, data.X_train, data.y_train)
            (extreme, v), (top, u) = hessian.eigenpairs(full_loss, state.trainable, state.hessian_vectors,
                                                        cfg.measure.sharpness_iterations)
            state = state.replace(hessian_vectors=(v, u))
            tracked.update(hessian_extreme=extreme, hessian_top=top)
        if state.increases is not None:
            tracked["loss_increases"] = state.increases.count
            tracked["last_increase_step"] = state.increases.last_step
        return state, tracked

    def log(state, step, slot):
        state = set_anchor(state, step)
        state, tracked = track(state)
        snapshot = metrics.Snapshot(
            params={**frozen, **state.trainable}, initial=params, anchor=state.anchor, data=data,
            teacher=start.teacher, step=step, key=jax.random.fold_in(start.metrics_key, step), tracked=tracked,
            predict=run.network, loss=run.loss_of, trained=run.trained, lr_scales=run.lr_scales, lr=run.step_size(step),
            sample_fresh=sample_fresh, cfg=cfg)
        values = measure(cfg, run, snapshot)
        state = check_divergence(state, loss(state.trainable, data.X_train, data.y_train), step)
        state, values = stop_if_met(cfg, state, {k: jnp.where(state.alive, v, jnp.nan) for k, v in values.items()}, step)
        return keep_params(state, slot), values

    def keep_params(state, slot):
        """Every layer into its slot of state.saved, at a step of save_params (slot >= 0)."""
        if state.saved is None:
            return state
        layers = {**frozen, **state.trainable}
        write = lambda saved: {k: v.at[slot].set(jnp.where(state.alive, layers[k], jnp.nan)) for k, v in saved.items()}
        # the slot is the same for every run of a chunk: a real branch under vmap
        return state.replace(saved=jax.lax.cond(slot >= 0, write, lambda saved: saved, state.saved))

    # Log at each logged step, then take the gradient steps up to the next one (none
    # after the last). One copy of the step and of the metrics in the program.
    steps = logged_steps(cfg.steps, cfg.log_every)
    next_steps = np.append(steps[1:], steps[-1])
    slots = np.array([cfg.save_params.index(t) if t in cfg.save_params else -1 for t in steps])  # into state.saved

    def advance(state, step, next_step):
        """The gradient steps from `step` to `next_step`, stopped once the run is frozen
        (its state stays as it is; under vmap, once every run of the chunk is)."""
        running = lambda carry: (carry[0] < next_step) & ~is_frozen(carry[1])
        return jax.lax.while_loop(running, lambda carry: (carry[0] + 1, gd_step(*carry)), (step, state))[1]

    def log_then_advance(state, interval):
        step, next_step, slot = interval
        state, values = log(state, step, slot)
        return advance(state, step, next_step), values

    state = TrainState(
        trainable=trainable,
        opt_state=optimizer.init(trainable),
        anchor=trainable if "displacement" in cfg.metrics else None,
        hessian_vectors=start.hessian_start,
        increases=Increases(jnp.array(jnp.inf, cfg.dtype), jnp.array(0, jnp.int32), jnp.array(-1, jnp.int32))
        if "increases" in run.tracks else None,
        alive=jnp.array(True),
        diverged_step=jnp.array(-1, jnp.int32),
        stopped_step=jnp.array(-1, jnp.int32) if cfg.engine.stop_when else None,
        held={m: jnp.zeros((), cfg.dtype) for m in cfg.metrics} if cfg.engine.stop_when else None,
        saved={k: jnp.full((len(cfg.save_params), *p.shape), jnp.nan, p.dtype) for k, p in params.items()}
        if cfg.save_params else None,
    )
    intervals = (jnp.asarray(steps, jnp.int32), jnp.asarray(next_steps, jnp.int32), jnp.asarray(slots, jnp.int32))
    state, history = jax.lax.scan(log_then_advance, state, intervals)
    history.update({d.key: jnp.full(len(steps), cfg.value(d.key), cfg.dtype) for d in settings_at_init(cfg)})
    return history, state.diverged_step, {} if state.saved is None else state.saved
