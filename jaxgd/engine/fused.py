"""The fused training step (`engine.kernel = "fused"`): one Pallas kernel trains a
group's runs, one run per program of its grid, every step in one launch. A run's
parameters W (m, d), a (m,), b (m,) stay on chip across the steps; each step streams
the training set in blocks of rows, so the n x m hidden layer never goes to memory
(design.md, performance model).

The kernel reads the same registry entries as the XLA path (the activation and the
loss, differentiated per sample with `jax.jvp`; the step-size schedule) and the same
data and initial parameters (`engine.setup`), so both paths train the same runs.
Its scope (full-batch `gd`, no constraint, train_loss and test_loss) is checked by
`spec` before anything compiles.

Block shapes are powers of two and every dot operand dimension is at least 16, as
Triton (Pallas's GPU backend) needs; n, n_test, d and m are padded up to them with
zeros and masks, so padding never changes a number. On the host the kernel runs in
Pallas's interpret mode.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pl_triton

from jaxgd.engine.bind import Science, science
from jaxgd.science import losses
from jaxgd.sweep.plan import Config, Static, logged_steps

BLOCK_ROWS = 64  # most samples per row block of a step's pass over the data
MIN_DIM = 16  # Triton's dot needs every operand dimension >= 16


def interpret() -> bool:
    """Pallas's interpret mode on the host (slow, for checking); compiled elsewhere."""
    return jax.default_backend() == "cpu"


def padded(size: int) -> int:
    """The power of two >= max(size, MIN_DIM) a dot dimension is padded to."""
    return max(MIN_DIM, pl.next_power_of_2(size))


class Rows(NamedTuple):
    """How a data set's n samples are cut into row blocks."""

    n: int  # real samples
    block: int  # rows per block
    blocks: int

    @classmethod
    def of(cls, n: int) -> "Rows":
        block = min(BLOCK_ROWS, padded(n))
        return cls(n, block, pl.cdiv(n, block))

    @property
    def padded(self) -> int:
        return self.block * self.blocks


def dot(x, y, contract):
    """x . y over the dimensions `contract` = (of x, of y), exactly (no TF32)."""
    return lax.dot_general(x, y, ((contract[0], contract[1]), ((), ())),
                           precision=lax.Precision.HIGHEST, preferred_element_type=x.dtype)


def per_sample_loss(run: Science, f, y):
    """The loss of each sample and its derivative in f, from the registered loss
    (a mean, so applied to one sample at a time it is that sample's loss)."""
    return jax.jvp(lambda f: jax.vmap(run.loss)(f, y), (f,), (jnp.ones_like(f),))


def block_pass(run: Science, width: int, params, X, y, valid):
    """Forward pass of one row block X (B, d), y (B,): the summed loss of its valid
    rows, r = dloss/df per sample (0 on padded rows), h = act(pre) and act'(pre),
    both (B, m) and 0 on padded hidden units (act(0) need not be 0)."""
    W, a, b = params["W"], params["a"], params["b"]
    unit = lax.broadcasted_iota(jnp.int32, (1, W.shape[0]), 1) < width
    pre = run.network.input_scale * dot(X, W, (1, 1)) + b[None, :]
    h, slope = jax.jvp(run.network.act, (pre,), (jnp.ones_like(pre),))
    h, slope = jnp.where(unit, h, 0.0), jnp.where(unit, slope, 0.0)
    f = run.network.output_scale * jnp.sum(h * a[None, :], axis=1)
    loss, r = per_sample_loss(run, f, y)
    return jnp.sum(jnp.where(valid, loss, 0.0)), jnp.where(valid, r, 0.0), h, slope


def over_blocks(rows: Rows, X_ref, y_ref, body, init):
    """Fold `body(X, y, valid, carry)` over the row blocks of (X_ref, y_ref)."""

    def one_block(i, carry):
        start = i * rows.block
        span = pl.ds(pl.multiple_of(start, rows.block), rows.block)
        valid = start + lax.iota(jnp.int32, rows.block) < rows.n
        return body(X_ref[span, :], y_ref[span], valid, carry)

    return lax.fori_loop(0, rows.blocks, one_block, init)


def mean_loss(run: Science, width: int, rows: Rows, X_ref, y_ref, params):
    """The loss of `params` on a whole data set, forward passes only (logged steps)."""

    def add_block(X, y, valid, total):
        return total + block_pass(run, width, params, X, y, valid)[0]

    return over_blocks(rows, X_ref, y_ref, add_block, jnp.zeros((), params["a"].dtype)) / rows.n


def loss_and_grads(run: Science, width: int, rows: Rows, X_ref, y_ref, params):
    """The training loss of `params` and its gradient in W, a and b, summed block by
    block: grad_a = c_m h^T r / n, grad_pre = c_m (r a^T) * act'(pre),
    grad_W = input_scale grad_pre^T X / n, grad_b = sum(grad_pre) / n."""
    c_m = run.network.output_scale

    def add_block(X, y, valid, sums):
        loss, r, h, slope = block_pass(run, width, params, X, y, valid)
        grad_pre = c_m * r[:, None] * params["a"][None, :] * slope
        return {
            "loss": sums["loss"] + loss,
            "W": sums["W"] + dot(grad_pre, X, (0, 0)),
            "a": sums["a"] + c_m * jnp.sum(h * r[:, None], axis=0),
            "b": sums["b"] + jnp.sum(grad_pre, axis=0),
        }

    zeros = {"loss": jnp.zeros((), params["a"].dtype), **jax.tree.map(jnp.zeros_like, params)}
    sums = over_blocks(rows, X_ref, y_ref, add_block, zeros)
    grads = {"W": run.network.input_scale * sums["W"] / rows.n, "a": sums["a"] / rows.n, "b": sums["b"] / rows.n}
    return sums["loss"] / rows.n, grads


def history_slots(n_logs: int) -> int:
    """Length of the history a kernel keeps (a power of two, as Triton's blocks)."""
    return pl.next_power_of_2(n_logs)


class State(NamedTuple):
    params: dict  # W, a, b (b 0 without a bias)
    alive: jax.Array  # bool: not diverged
    diverged_step: jax.Array  # int32, -1 if none
    history: dict  # metric -> (slots,): the values logged so far


def check_divergence(bound, state: State, loss, t) -> State:
    """Freeze the run from the first step whose training loss is non-finite or above `bound`."""
    bad = losses.diverged(loss, bound=bound)
    return state._replace(alive=state.alive & ~bad, diverged_step=jnp.where(state.alive & bad, t, state.diverged_step))


def kernel(static: Static, keys: tuple[str, ...], rows: Rows, test_rows: Rows, refs, out_refs):
    """One run, as `engine.train_run`: at each logged step t the metrics of the
    current parameters, then the gradient steps up to the next logged step, each
    checking divergence and, while the run is alive, updating the trained layers."""
    cfg = Config(static, {key: refs["hyper"][i] for i, key in enumerate(keys)})
    run, width, bound = science(cfg), cfg.model.width, cfg.engine.divergence_bound
    steps, every = cfg.steps, cfg.log_every
    n_logs = len(logged_steps(steps, every))

    def log(state: State, slot, t) -> State:
        values = {"train_loss": mean_loss(run, width, rows, refs["X_train"], refs["y_train"], state.params)}
        if "test_loss" in state.history:
            values["test_loss"] = mean_loss(run, width, test_rows, refs["X_test"], refs["y_test"], state.params)
        state = check_divergence(bound, state, values["train_loss"], t)
        at_slot = lax.iota(jnp.int32, history_slots(n_logs)) == slot
        return state._replace(history={
            name: jnp.where(at_slot, jnp.where(state.alive, values[name], jnp.nan), logged)
            for name, logged in state.history.items()
        })

    def gd_step(t, state: State) -> State:
        loss, grads = loss_and_grads(run, width, rows, refs["X_train"], refs["y_train"], state.params)
        state = check_divergence(bound, state, loss, t)
        # theta <- theta - lr_t * (lr_scale * grad), as optax computes it
        lr = run.step_size(t)
        return state._replace(params={
            name: jnp.where(state.alive, p - lr * (run.lr_scales[name] * grads[name]), p)
            if name in run.trained else p
            for name, p in state.params.items()
        })

    def log_then_advance(slot, state: State) -> State:
        t = jnp.minimum(slot * every, steps)  # logged steps: 0, k, 2k, ... and the last
        return lax.fori_loop(t, jnp.minimum(t + every, steps), gd_step, log(state, slot, t))

    params = {name: refs[name][...] for name in ("W", "a", "b")}
    history = {name: jnp.full((history_slots(n_logs),), jnp.nan, params["a"].dtype) for name in out_refs["history"]}
    state = State(params, jnp.array(True), jnp.array(-1, jnp.int32), history)
    state = lax.fori_loop(0, n_logs, log_then_advance, state)
    for name, values in state.history.items():
        out_refs["history"][name][...] = values
    out_refs["diverged_step"][...] = state.diverged_step


def pad_to(x, shape):
    """x padded with zeros at the end of each dimension up to `shape`."""
    return jnp.pad(x, [(0, s - size) for s, size in zip(shape, x.shape)])


def per_run(block_shape):
    """The BlockSpec giving each program its own run's slice (the leading axis squeezed)."""
    return pl.BlockSpec((None, *block_shape), lambda run: (run,) + (0,) * len(block_shape))


def train(static: Static, hyper: dict, data, params: dict):
    """Train R runs: `hyper` {key: (R,)} their traced settings, `data` their data sets
    (an engine Dataset of (R, ...) arrays), `params` their initial parameters
    ({"W": (R, m, d), "a": (R, m)[, "b": (R, m)]}). Returns what the vmapped
    `engine.train_run` returns: ({metric: (R, n_logs)}, diverged_step (R,))."""
    R, n, d = data.X_train.shape
    cfg = Config(static, {})
    n_test, m = data.X_test.shape[1], cfg.model.width
    n_logs = len(logged_steps(cfg.steps, cfg.log_every))
    chex.assert_shape([data.X_test, data.y_train, data.y_test, params["W"], params["a"]],
                      [(R, n_test, d), (R, n), (R, n_test), (R, m, d), (R, m)])
    rows, test_rows = Rows.of(n), Rows.of(n_test)
    d_pad, m_pad = padded(d), padded(m)
    keys = tuple(sorted(hyper))
    dtype = data.X_train.dtype

    inputs = {
        "hyper": pad_to(jnp.stack([hyper[k] for k in keys], axis=1), (R, pl.next_power_of_2(len(keys)))),
        "X_train": pad_to(data.X_train, (R, rows.padded, d_pad)),
        "y_train": pad_to(data.y_train, (R, rows.padded)),
        "W": pad_to(params["W"], (R, m_pad, d_pad)),
        "a": pad_to(params["a"], (R, m_pad)),
        "b": pad_to(params.get("b", jnp.zeros((R, m), dtype)), (R, m_pad)),  # 0 without a bias: never trained
    }
    metric_names = list(cfg.metrics)
    if "test_loss" in metric_names:
        inputs.update(X_test=pad_to(data.X_test, (R, test_rows.padded, d_pad)),
                      y_test=pad_to(data.y_test, (R, test_rows.padded)))
    out_shape = {
        "history": {name: jax.ShapeDtypeStruct((R, history_slots(n_logs)), dtype) for name in metric_names},
        "diverged_step": jax.ShapeDtypeStruct((R,), jnp.int32),
    }
    outputs = pl.pallas_call(
        lambda *refs: kernel(static, keys, rows, test_rows, *refs),
        out_shape=out_shape,
        grid=(R,),
        in_specs=[jax.tree.map(lambda x: per_run(x.shape[1:]), inputs)],
        out_specs=jax.tree.map(lambda s: per_run(s.shape[1:]), out_shape),
        interpret=interpret(),
        compiler_params=pl_triton.CompilerParams(),  # Triton on GPUs (JAX's default there is Mosaic GPU)
        name="jaxgd_fused_gd",
    )(inputs)
    history = {name: values[:, :n_logs] for name, values in outputs["history"].items()}
    chex.assert_shape([*history.values(), outputs["diverged_step"]], [(R, n_logs)] * len(history) + [(R,)])
    return history, outputs["diverged_step"]
