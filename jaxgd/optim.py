"""Optimizers, built with optax: step-size schedules, per-layer step-size multipliers
and the batch each step sees. Every numeric setting is a traced value, so schedule and
step-size axes are vmapped, not recompiled."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxgd import data as datasets
from jaxgd import rng


def _after_start(cfg, t):
    """Steps since the decay began: max(t - optimizer.decay_start, 0)."""
    return jnp.maximum(t - cfg["optimizer.decay_start"], 0.0)


# One entry per schedule: lr_t = schedule(cfg, t), t the number of updates so far.
SCHEDULES = {
    "constant": lambda cfg, t: cfg["optimizer.lr"] * jnp.ones_like(t, dtype=cfg["dtype"]),
    # lr exp(-r (t - t0)) for t >= t0
    "exp_decay": lambda cfg, t: cfg["optimizer.lr"] * jnp.exp(-cfg["optimizer.decay_rate"] * _after_start(cfg, t)),
    # lr / (1 + (t - t0) / tau)^p
    "poly_decay": lambda cfg, t: cfg["optimizer.lr"]
    / (1.0 + _after_start(cfg, t) / cfg["optimizer.decay_tau"]) ** cfg["optimizer.decay_power"],
    # lr * factor^floor((t - t0) / every)
    "step_decay": lambda cfg, t: cfg["optimizer.lr"]
    * cfg["optimizer.decay_factor"] ** jnp.floor(_after_start(cfg, t) / cfg["optimizer.decay_every"]),
}


def step_size(cfg, t):
    """The base step size lr_t of update t (before per-layer multipliers)."""
    return SCHEDULES[cfg["optimizer.schedule"]](cfg, jnp.asarray(t, cfg["dtype"]))


def scale_layers(cfg) -> optax.GradientTransformation:
    """Multiply each layer's update by optimizer.lr_scale_<layer> (0 freezes it)."""
    return optax.stateless(
        lambda updates, params=None: {k: v * cfg[f"optimizer.lr_scale_{k}"] for k, v in updates.items()}
    )


def descent(cfg) -> optax.GradientTransformation:
    """theta <- theta - lr_t * lr_scale_layer * grad."""
    return optax.chain(scale_layers(cfg), optax.scale_by_learning_rate(lambda t: step_size(cfg, t)))


def _with_replacement(key, step, n, batch_size):
    return jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, n)


def _shuffled_epochs(key, step, n, batch_size):
    """Each epoch a fresh permutation, cut into n // batch_size batches (the rest dropped)."""
    per_epoch = n // batch_size
    epoch, position = step // per_epoch, step % per_epoch
    order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    return jax.lax.dynamic_slice(order, (position * batch_size,), (batch_size,))


SAMPLINGS = {"replacement": _with_replacement, "epochs": _shuffled_epochs}


def full_batch(cfg, key, step, data, teacher):
    return data.X_train, data.y_train


def mini_batch(cfg, key, step, data, teacher):
    """optimizer.batch_size training samples, by optimizer.sampling."""
    idx = SAMPLINGS[cfg["optimizer.sampling"]](key, step, data.X_train.shape[0], cfg["optimizer.batch_size"])
    return data.X_train[idx], data.y_train[idx]


def fresh_batch(cfg, key, step, data, teacher):
    """optimizer.batch_size new samples from the data set's generator (online SGD): no
    training set is read."""
    build = lambda draws: datasets.sample(cfg, draws, cfg["optimizer.batch_size"], teacher)
    return rng.draw(jax.random.fold_in(key, step), build, cfg["dtype"])


class Optimizer(NamedTuple):
    transformation: Callable[..., optax.GradientTransformation]  # (cfg) -> optax transformation
    batch: Callable  # (cfg, key, step, data, teacher) -> (X, y) the update at `step` sees


# One entry per optimizer. Batches come from the run's own key and the step number, so a
# run is the same alone or in a grid.
OPTIMIZERS = {
    "gd": Optimizer(descent, full_batch),
    "sgd": Optimizer(descent, mini_batch),
    "online_sgd": Optimizer(descent, fresh_batch),
}
MINIBATCH = ("sgd",)
ONLINE = ("online_sgd",)


def make(cfg) -> optax.GradientTransformation:
    return OPTIMIZERS[cfg["optimizer.name"]].transformation(cfg)


def batch(cfg, key, step, data, teacher):
    """The samples update `step` sees."""
    return OPTIMIZERS[cfg["optimizer.name"]].batch(cfg, key, step, data, teacher)
