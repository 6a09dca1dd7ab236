"""Data sets: one registry entry per data set, each a pure function of the run's draws.

A data set entry is `teacher(draws, cfg) -> target`, where `target(X)` maps inputs
(n, d) to noiseless real targets (n,) and `draws` (`rng.Draws`) hands out the standard
Gaussians it needs. `make(cfg, draws)` draws the teacher once, then an independent
train set and test set of Gaussian inputs x ~ N(0, I_d), adds label noise
`noise * N(0, 1)` to both, and takes the sign for `data.labels = "sign"`. Everything
is traced, so data sets are generated inside the compiled program, per run, from the
run's own seed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxgd import models


class Dataset(NamedTuple):
    X_train: jax.Array  # (n, d)
    y_train: jax.Array  # (n,)
    X_test: jax.Array  # (n_test, d)
    y_test: jax.Array  # (n_test,)


def _unit_direction(draws, cfg):
    """w* ~ N(0, I_d): then w* . x / sqrt(d) has unit variance for x ~ N(0, I_d)."""
    return draws.normal((cfg["data.d"],))



def linear_teacher(draws, cfg):
    """y = w* . x / sqrt(d)."""
    w_star = _unit_direction(draws, cfg)
    return lambda X: X @ w_star / jnp.sqrt(cfg["data.d"])


def relu_teacher(draws, cfg):
    """y = relu(w* . x / sqrt(d)): a single ReLU neuron."""
    w_star = _unit_direction(draws, cfg)
    return lambda X: jax.nn.relu(X @ w_star / jnp.sqrt(cfg["data.d"]))


def two_layer_teacher(draws, cfg):
    """y = k^-1/2 sum_i a*_i act(w*_i . x / sqrt(d)), a*_i ~ N(0, 1), k = teacher_width,
    act = data.teacher_activation."""
    k, d = cfg["data.teacher_width"], cfg["data.d"]
    W_star, a_star = draws.normal((k, d)), draws.normal((k,))
    act = models.ACTIVATIONS[cfg["data.teacher_activation"]]
    return lambda X: act(X @ W_star.T / jnp.sqrt(d), cfg) @ a_star / jnp.sqrt(k)


DATASETS = {
    "linear_teacher": linear_teacher,
    "relu_teacher": relu_teacher,
    "two_layer_teacher": two_layer_teacher,
}

LABELS = ("real", "sign")


def _labels(target, X, z, cfg):
    y = target(X) + cfg["data.noise"] * z
    if cfg["data.labels"] == "sign":
        y = jnp.where(y >= 0, 1.0, -1.0).astype(cfg["dtype"])
    return y


def make(cfg, draws) -> Dataset:
    target = DATASETS[cfg["data.name"]](draws, cfg)
    n, n_test, d = cfg["data.n"], cfg["data.n_test"], cfg["data.d"]
    X_train, z_train = draws.normal((n, d)), draws.normal((n,))
    X_test, z_test = draws.normal((n_test, d)), draws.normal((n_test,))
    return Dataset(X_train, _labels(target, X_train, z_train, cfg), X_test, _labels(target, X_test, z_test, cfg))
