"""Losses (registered components): `loss(f, y, *, settings) -> mean over samples`,
settings under [loss]."""

from __future__ import annotations

import jax.numpy as jnp

from jaxgd.science.registry import loss


@loss("mse")
def mse(f, y):
    """mean of 0.5 * (f - y)^2."""
    return jnp.mean(0.5 * (f - y) ** 2)


@loss("logistic", labels_pm1=True)
def logistic(f, y):
    """mean of log(1 + exp(-y f)), computed stably as logaddexp(0, -y f)."""
    return jnp.mean(jnp.logaddexp(0.0, -y * f))


@loss("huber", positive=("huber_delta",))
def huber(f, y, *, huber_delta: float = 1.0):
    """mean of 0.5 r^2 where |r| <= delta, delta (|r| - delta / 2) beyond; r = f - y.
    huber_delta: delta of the `huber` loss and the `huber_loss` metric"""
    r = jnp.abs(f - y)
    return jnp.mean(jnp.where(r <= huber_delta, 0.5 * r**2, huber_delta * (r - 0.5 * huber_delta)))


def diverged(value, *, bound):
    """Whether a training loss marks its run as diverged: not finite, or above `bound`."""
    return ~jnp.isfinite(value) | (value > bound)
