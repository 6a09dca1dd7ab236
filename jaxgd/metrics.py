"""Metrics: one registry entry per metric, `metric(cfg, params, data) -> scalar`,
evaluated inside the compiled loop every `log_every` steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgd import losses, models


def train_loss(cfg, params, data):
    return losses.loss(cfg, params, data.X_train, data.y_train)


def test_loss(cfg, params, data):
    return losses.loss(cfg, params, data.X_test, data.y_test)


def grad_norm(cfg, params, data):
    """Euclidean norm of the training-loss gradient over the trained layers."""
    trainable, frozen = models.split_trainable(cfg, params)
    grads = jax.grad(lambda t: train_loss(cfg, {**frozen, **t}, data))(trainable)
    return jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))


def _error(cfg, params, X, y):
    """Fraction of samples with sign(f(x)) != y (f = 0 counts as an error)."""
    return jnp.mean(jnp.sign(models.predict(cfg, params, X)) != y)


def _layer_norm(name):
    """Frobenius / Euclidean norm of one layer (0 where the model has no such layer)."""
    return lambda cfg, params, data: (
        jnp.linalg.norm(params[name]) if name in params else jnp.zeros((), cfg["dtype"])
    )


METRICS = {
    "train_loss": train_loss,
    "test_loss": test_loss,
    "grad_norm": grad_norm,
    "norm_W": _layer_norm("W"),
    "norm_a": _layer_norm("a"),
    "norm_b": _layer_norm("b"),
    "train_error": lambda cfg, params, data: _error(cfg, params, data.X_train, data.y_train),
    "test_error": lambda cfg, params, data: _error(cfg, params, data.X_test, data.y_test),
}

# Metrics that only make sense with +-1 labels (`data.labels = "sign"`).
CLASSIFICATION_METRICS = ("train_error", "test_error")


def compute(cfg, params, data) -> dict[str, jax.Array]:
    """All metrics the spec asks for, cast to the run's dtype."""
    return {
        name: METRICS[name](cfg, params, data).astype(cfg["dtype"])
        for name in cfg["metrics"]
    }
