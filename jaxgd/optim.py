"""Optimizers, built with optax. The step size is a traced value, so a step-size axis
is vmapped rather than recompiled."""

from __future__ import annotations

import optax


def gd(cfg) -> optax.GradientTransformation:
    """Full-batch gradient descent: theta <- theta - lr * grad."""
    return optax.sgd(learning_rate=cfg["optimizer.lr"])


OPTIMIZERS = {"gd": gd}


def make(cfg) -> optax.GradientTransformation:
    return OPTIMIZERS[cfg["optimizer.name"]](cfg)
