"""A user's own pieces for jaxgd: an activation, a data set, a loss and a metric.

A spec that names this file, `plugins = ["pieces.py"]` (a path relative to the spec, or
an importable module name), uses them like built-in ones (see custom.toml beside it):

    [data]  name = "spirals", turns = {linspace = [1, 3, 3]}
    [model] activation = "swish", beta = 2.0
    [loss]  name = "squared_hinge", margin = 0.5
    metrics = ["train_loss", "a_max"]

Each function's keyword-only arguments are its settings, in the table of its kind
(activation settings under [model], data set settings under [data], loss settings
under [loss], metric settings under [measure]). A `float` setting is traced: a sweep
over it runs in one compiled program; an `int`, `str` or `bool` setting is static (one
program per value). A line `name: text` in the docstring documents a setting.
"""

import jax
import jax.numpy as jnp

import jaxgd


@jaxgd.activation("swish", lipschitz=1.1)  # sup |swish'| = 1.0998... for any beta != 0
def swish(z, *, beta: float = 1.0):
    """z * sigmoid(beta z): relu as beta grows, z / 2 at beta = 0.
    beta: slope of the gate"""
    return z * jax.nn.sigmoid(beta * z)


@jaxgd.dataset("spirals", labels_pm1=True,
               requires=lambda d, **settings: None if d >= 2 else "spirals needs data.d >= 2")
def spirals(key, n, d, *, turns: float = 1.5, spread: float = 0.05):
    """Two interleaved spirals in the first two coordinates (d >= 2), labels +-1: a point
    at radius r ~ U(0, 1] and angle 2 pi turns r, the -1 spiral turned by pi; every
    coordinate gets Gaussian noise (the others are noise alone).
    turns: number of turns of each spiral
    spread: standard deviation of the Gaussian noise around the spiral"""
    label_key, radius_key, noise_key = jax.random.split(key, 3)
    y = jnp.where(jax.random.bernoulli(label_key, 0.5, (n,)), 1.0, -1.0)
    r = 1.0 - jax.random.uniform(radius_key, (n,))  # in (0, 1]
    angle = 2 * jnp.pi * turns * r + jnp.where(y > 0, 0.0, jnp.pi)
    X = spread * jax.random.normal(noise_key, (n, d))
    X = X.at[:, 0].add(r * jnp.cos(angle)).at[:, 1].add(r * jnp.sin(angle))
    return X, y


@jaxgd.loss("squared_hinge", labels_pm1=True)
def squared_hinge(f, y, *, margin: float = 1.0):
    """mean over samples of max(0, margin - y f)^2.
    margin: the margin y f below which a sample costs"""
    return jnp.mean(jnp.maximum(0.0, margin - y * f) ** 2)


@jaxgd.metric("a_max")
def a_max(s):
    """max_j |a_j|: the largest output weight."""
    return jnp.max(jnp.abs(s.params["a"]))
