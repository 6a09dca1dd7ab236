"""Gradient descent, built with optax: step-size schedules (registered components,
settings under [optimizer]), per-layer step-size multipliers and the batch each step
sees. Every numeric setting is a traced value, so schedule and step-size axes are
vmapped, not recompiled."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxgd.science.registry import schedule

# --- schedules: lr_t = schedule(t, lr, *, settings), t the number of updates so far ---


def _after_start(t, decay_start):
    """Steps since the decay began: max(t - t0, 0)."""
    return jnp.maximum(t - decay_start, 0.0)


@schedule("constant")
def constant(t, lr):
    """lr."""
    return lr * jnp.ones_like(t)


DECAY_BOUNDS = {"decay_start": 0.0, "decay_rate": 0.0, "decay_power": 0.0}


@schedule("exp_decay", minimum=DECAY_BOUNDS)
def exp_decay(t, lr, *, decay_start: float = 0.0, decay_rate: float = 0.01):
    """lr exp(-rate (t - t0)) for t >= t0.
    decay_start: t0: the step at which the decay begins
    decay_rate: `exp_decay`: r of lr exp(-r (t - t0))"""
    return lr * jnp.exp(-decay_rate * _after_start(t, decay_start))


@schedule("poly_decay", minimum=DECAY_BOUNDS, positive=("decay_tau",))
def poly_decay(t, lr, *, decay_start: float = 0.0, decay_tau: float = 100.0, decay_power: float = 1.0):
    """lr / (1 + (t - t0) / tau)^power.
    decay_tau: `poly_decay`: tau of lr / (1 + (t - t0) / tau)^p
    decay_power: `poly_decay`: the power p"""
    return lr / (1.0 + _after_start(t, decay_start) / decay_tau) ** decay_power


@schedule("step_decay", minimum=DECAY_BOUNDS, positive=("decay_every", "decay_factor"))
def step_decay(t, lr, *, decay_start: float = 0.0, decay_every: float = 100.0, decay_factor: float = 0.5):
    """lr * factor^floor((t - t0) / every).
    decay_every: `step_decay`: steps between decays
    decay_factor: `step_decay`: factor per decay"""
    return lr * decay_factor ** jnp.floor(_after_start(t, decay_start) / decay_every)


# --- the update --------------------------------------------------------------------------


def scale_layers(lr_scales: dict) -> optax.GradientTransformation:
    """Multiply each layer's update by its step-size multiplier (0 freezes it)."""
    return optax.stateless(lambda updates, params=None: {k: v * lr_scales[k] for k, v in updates.items()})


def descent(step_size: Callable, lr_scales: dict) -> optax.GradientTransformation:
    """theta <- theta - lr_t * lr_scale_layer * grad, lr_t = step_size(t)."""
    return optax.chain(scale_layers(lr_scales), optax.scale_by_learning_rate(step_size))


# --- the batch each update sees ------------------------------------------------------


def with_replacement(key, step, n, batch_size):
    return jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, n)


def shuffled_epochs(key, step, n, batch_size):
    """Each epoch a fresh permutation, cut into n // batch_size batches (the rest dropped)."""
    per_epoch = n // batch_size
    epoch, position = step // per_epoch, step % per_epoch
    order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    return jax.lax.dynamic_slice(order, (position * batch_size,), (batch_size,))


SAMPLINGS = {"replacement": with_replacement, "epochs": shuffled_epochs}


def full_batch(key, step, data, *, sample_fresh, batch_size, sampling):
    """The whole training set (gd)."""
    return data.X_train, data.y_train


def mini_batch(key, step, data, *, sample_fresh, batch_size, sampling):
    """batch_size training samples, drawn by `sampling` (sgd)."""
    idx = SAMPLINGS[sampling](key, step, data.X_train.shape[0], batch_size)
    return data.X_train[idx], data.y_train[idx]


def fresh_batch(key, step, data, *, sample_fresh, batch_size, sampling):
    """batch_size new samples from the data set's generator (online SGD): no training
    set is read."""
    return sample_fresh(jax.random.fold_in(key, step), batch_size)


# optimizer.name -> the batch update `step` sees, from the run's own key and the step
# number (so a run is the same alone or in a grid).
BATCHES = {"gd": full_batch, "sgd": mini_batch, "online_sgd": fresh_batch}
MINIBATCH = ("sgd",)
ONLINE = ("online_sgd",)
