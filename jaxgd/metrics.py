"""Metrics: one registry entry per metric, `metric(cfg, snapshot) -> scalar`, evaluated
inside the compiled loop every `log_every` steps."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxgd import losses, models, optim
from jaxgd.data import Dataset


class Snapshot(NamedTuple):
    """What a metric may look at: the parameters now, at initialization and at the
    anchor step `measure.displacement_from`, the data, and the current step."""

    params: dict  # every layer, now
    initial: dict  # every layer at step 0
    anchor: dict | None  # the trained layers at the anchor step (tracked only for `displacement`)
    data: Dataset
    step: jax.Array


def _sq_norm(tree) -> jax.Array:
    return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(tree))


def train_loss(cfg, s):
    return losses.loss(cfg, s.params, s.data.X_train, s.data.y_train)


def test_loss(cfg, s):
    return losses.loss(cfg, s.params, s.data.X_test, s.data.y_test)


def huber_loss(cfg, s):
    """Huber loss (delta = loss.huber_delta) on the training set, whatever the training loss."""
    return losses.huber(models.predict(cfg, s.params, s.data.X_train), s.data.y_train, cfg)


def grad_norm(cfg, s):
    """Euclidean norm of the training-loss gradient over the trained layers."""
    trainable, frozen = models.split_trainable(cfg, s.params)
    grads = jax.grad(lambda t: losses.loss(cfg, {**frozen, **t}, s.data.X_train, s.data.y_train))(trainable)
    return jnp.sqrt(_sq_norm(grads))


def _error(cfg, params, X, y):
    """Fraction of samples with sign(f(x)) != y (f = 0 counts as an error)."""
    return jnp.mean(jnp.sign(models.predict(cfg, params, X)) != y)


def _layer_norm(name):
    """Frobenius / Euclidean norm of one layer (0 where the model has no such layer)."""
    return lambda cfg, s: jnp.linalg.norm(s.params[name]) if name in s.params else jnp.zeros((), cfg["dtype"])


def _relative_movement(name):
    """||p_t - p_0|| / ||p_0|| for one layer."""
    return lambda cfg, s: jnp.linalg.norm(s.params[name] - s.initial[name]) / jnp.linalg.norm(s.initial[name])


def lipschitz_lower(cfg, s):
    """max over training and test inputs of ||grad_x f(x)||: a lower bound on Lip(f)."""
    grad_x = jax.vmap(jax.grad(lambda x: models.predict(cfg, s.params, x[None])[0]))
    X = jnp.concatenate([s.data.X_train, s.data.X_test])
    return jnp.max(jnp.linalg.norm(grad_x(X), axis=1))


def lipschitz_fd(cfg, s):
    """d = 1: the largest finite-difference slope of f on a grid of measure.fd_points
    points spanning the training and test inputs."""
    x = jnp.concatenate([s.data.X_train, s.data.X_test])[:, 0]
    grid = jnp.linspace(jnp.min(x), jnp.max(x), cfg["measure.fd_points"])
    f = models.predict(cfg, s.params, grid[:, None])
    return jnp.max(jnp.abs(jnp.diff(f)) / (grid[1] - grid[0]))


def lipschitz_upper(cfg, s):
    """Lip(act) * c_m * ||a||_2 * ||W||_op: an upper bound on Lip(f)."""
    lip_act = models.ACTIVATIONS[cfg["model.activation"]].lipschitz(cfg)
    W_op = jnp.linalg.norm(s.params["W"], ord=2)
    return lip_act * models.output_scale(cfg) * jnp.linalg.norm(s.params["a"]) * W_op


def displacement(cfg, s):
    """||theta_t - theta_t0|| over the trained layers, t0 = measure.displacement_from
    (NaN before t0)."""
    trainable, _ = models.split_trainable(cfg, s.params)
    moved = jnp.sqrt(_sq_norm(jax.tree.map(jnp.subtract, trainable, s.anchor)))
    return jnp.where(s.step >= cfg["measure.displacement_from"], moved, jnp.nan)


def _pre_activations(params, X):
    pre = X @ params["W"].T
    return pre + params["b"] if "b" in params else pre


def pattern_flips(cfg, s):
    """Fraction of (training sample, unit) pairs whose ReLU pattern 1[w_j . x_i + b_j > 0]
    differs from the one at initialization."""
    now = _pre_activations(s.params, s.data.X_train) > 0
    start = _pre_activations(s.initial, s.data.X_train) > 0
    return jnp.mean(now != start)


def ntk_min_eig(cfg, s):
    """Smallest eigenvalue of the empirical NTK Gram matrix K = J J^T over the training
    inputs, J the Jacobian of f(X) in the trained layers."""
    trainable, frozen = models.split_trainable(cfg, s.params)
    jacobian = jax.jacrev(lambda t: models.predict(cfg, {**frozen, **t}, s.data.X_train))(trainable)
    n = s.data.X_train.shape[0]
    J = jnp.concatenate([j.reshape(n, -1) for j in jax.tree.leaves(jacobian)], axis=1)
    return jnp.linalg.eigvalsh(J @ J.T)[0]


def symmetry_C(cfg, s):
    """C = ||W||_F^2 - ||a||^2, conserved by gradient flow under the rescaling symmetry
    (for bias-free nets with a homogeneous activation)."""
    return jnp.sum(s.params["W"] ** 2) - jnp.sum(s.params["a"] ** 2)


METRICS = {
    "train_loss": train_loss,
    "test_loss": test_loss,
    "huber_loss": huber_loss,
    "grad_norm": grad_norm,
    "norm_W": _layer_norm("W"),
    "norm_a": _layer_norm("a"),
    "norm_b": _layer_norm("b"),
    "train_error": lambda cfg, s: _error(cfg, s.params, s.data.X_train, s.data.y_train),
    "test_error": lambda cfg, s: _error(cfg, s.params, s.data.X_test, s.data.y_test),
    "lipschitz_lower": lipschitz_lower,
    "lipschitz_fd": lipschitz_fd,
    "lipschitz_upper": lipschitz_upper,
    "displacement": displacement,
    "movement_W": _relative_movement("W"),
    "movement_a": _relative_movement("a"),
    "pattern_flips": pattern_flips,
    "ntk_min_eig": ntk_min_eig,
    "symmetry_C": symmetry_C,
    "step_size": lambda cfg, s: optim.step_size(cfg, s.step),
}

# Metrics that only make sense with +-1 labels (`data.labels = "sign"`).
CLASSIFICATION_METRICS = ("train_error", "test_error")
# Metrics defined for one-dimensional inputs only.
ONE_DIMENSIONAL_METRICS = ("lipschitz_fd",)
# Costly metrics, computed only at the logged steps listed in `measure.ntk_steps` (all if empty).
AT_CHOSEN_STEPS = ("ntk_min_eig",)


def compute(cfg, s: Snapshot) -> dict[str, jax.Array]:
    """All metrics the spec asks for, cast to the run's dtype."""
    values = {}
    chosen = cfg["measure.ntk_steps"]
    for name in cfg["metrics"]:
        metric = lambda name=name: METRICS[name](cfg, s).astype(cfg["dtype"])
        if name in AT_CHOSEN_STEPS and chosen:
            # The step is the same for every run of a chunk, so this stays a real branch under vmap.
            skip = lambda: jnp.full((), jnp.nan, cfg["dtype"])
            values[name] = jax.lax.cond(jnp.isin(s.step, jnp.asarray(chosen)), metric, skip)
        else:
            values[name] = metric()
    return values
