"""Losses: one registry entry per loss, `loss(f, y, cfg) -> mean over samples`."""

from __future__ import annotations

import jax.numpy as jnp

from jaxgd import models


def mse(f, y, cfg):
    """mean of 0.5 * (f - y)^2."""
    return jnp.mean(0.5 * (f - y) ** 2)


def logistic(f, y, cfg):
    """mean of log(1 + exp(-y f)), computed stably as logaddexp(0, -y f)."""
    return jnp.mean(jnp.logaddexp(0.0, -y * f))


def huber(f, y, cfg):
    """mean of 0.5 r^2 where |r| <= delta, delta (|r| - delta / 2) beyond; r = f - y,
    delta = loss.huber_delta."""
    r, delta = jnp.abs(f - y), cfg["loss.huber_delta"]
    return jnp.mean(jnp.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta)))


LOSSES = {"mse": mse, "logistic": logistic, "huber": huber}

# Losses whose targets must be +-1 labels (`data.labels = "sign"`).
CLASSIFICATION_LOSSES = ("logistic",)


def diverged(cfg, value):
    """Whether a training loss marks its run as diverged: not finite, or above
    engine.divergence_bound."""
    return ~jnp.isfinite(value) | (value > cfg["engine.divergence_bound"])


def loss(cfg, params, X, y):
    """The training loss `loss.name` of the network `params` on (X, y)."""
    return LOSSES[cfg["loss.name"]](models.predict(cfg, params, X), y, cfg)
