"""Data sets: one registry entry per data set.

A generated data set is a `Generator`: a teacher drawn once per seed, then i.i.d.
samples `(X, y)` of any size, all from the run's standard-Gaussian draws (`rng.Draws`),
so data are generated inside the compiled program. `make` draws the teacher, an
independent train and test set, adds label noise `noise * N(0, 1)` and takes the sign
for `data.labels = "sign"`. Given data (`data.name = "file"` or `"inline"`) are fixed
arrays (`jaxgd.given`), with the same noise and label handling.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from jaxgd import models


class Dataset(NamedTuple):
    X_train: jax.Array  # (n, d)
    y_train: jax.Array  # (n,)
    X_test: jax.Array  # (n_test, d)
    y_test: jax.Array  # (n_test,)


class Generator(NamedTuple):
    sample: Callable[..., tuple[jax.Array, jax.Array]]  # (draws, n, cfg, teacher) -> (X, y)
    draw_teacher: Callable[..., Any] = lambda draws, cfg: None  # (draws, cfg) -> teacher


def gaussian_inputs(draws, n, cfg):
    """x ~ N(0, I_d)."""
    return draws.normal((n, cfg["data.d"]))


def uniform_inputs(draws, n, cfg):
    """x ~ U[-1, 1]^d, as 2 Phi(z) - 1 of standard Gaussians."""
    return 2.0 * ndtr(draws.normal((n, cfg["data.d"]))) - 1.0


def teacher_on_gaussian_inputs(draw_teacher, target) -> Generator:
    """x ~ N(0, I_d), y = target(teacher, X, cfg)."""

    def sample(draws, n, cfg, teacher):
        X = gaussian_inputs(draws, n, cfg)
        return X, target(teacher, X, cfg)

    return Generator(sample, draw_teacher)


def _projection(X, w, cfg):
    return X @ w / jnp.sqrt(cfg["data.d"])


def _draw_direction(draws, cfg):
    """w* ~ N(0, I_d): then w* . x / sqrt(d) has unit variance for x ~ N(0, I_d)."""
    return draws.normal((cfg["data.d"],))


def _draw_two_layer_teacher(draws, cfg):
    k, d = cfg["data.teacher_width"], cfg["data.d"]
    return draws.normal((k, d)), draws.normal((k,))


def _two_layer_target(teacher, X, cfg):
    """y = k^-1/2 sum_i a*_i act(w*_i . x / sqrt(d))."""
    W_star, a_star = teacher
    act = models.ACTIVATIONS[cfg["data.teacher_activation"]].fn
    return act(_projection(X, W_star.T, cfg), cfg) @ a_star / jnp.sqrt(W_star.shape[0])


def _random_labels(draws, n, cfg, teacher):
    """x ~ N(0, I_d) and y ~ N(0, 1) independent of x (the 'adversarial labels' case)."""
    return gaussian_inputs(draws, n, cfg), draws.normal((n,))


def _xor(draws, n, cfg, teacher):
    """x ~ N(0, I_d), y = sign(x_1 x_2): XOR in the first two coordinates, the rest noise."""
    X = gaussian_inputs(draws, n, cfg)
    return X, jnp.sign(X[:, 0] * X[:, 1])


def _parity(draws, n, cfg, teacher):
    """x uniform on the hypercube {-1, 1}^d, y = x_1 x_2 ... x_k (k = data.k)."""
    X = jnp.where(gaussian_inputs(draws, n, cfg) >= 0, 1.0, -1.0)
    return X, jnp.prod(X[:, : cfg["data.k"]], axis=1)


def _draw_cluster_centres(draws, cfg):
    """data.clusters centres ~ N(0, I_d) (norm about sqrt(d)), labels alternating +-1."""
    return draws.normal((cfg["data.clusters"], cfg["data.d"]))


def _clusters(draws, n, cfg, centres):
    """x = a uniformly chosen centre + cluster_std * N(0, I_d); y = that cluster's label."""
    k = centres.shape[0]
    choice = jnp.floor(k * ndtr(draws.normal((n,)))).astype(jnp.int32).clip(0, k - 1)
    X = centres[choice] + cfg["data.cluster_std"] * gaussian_inputs(draws, n, cfg)
    return X, jnp.where(choice % 2 == 0, 1.0, -1.0)


# Link functions of the single-index teacher: z^2 (phase retrieval) and the
# probabilists' Hermite polynomials He_2 = z^2 - 1, He_3 = z^3 - 3 z.
LINKS = {"square": lambda z: z**2, "he2": lambda z: z**2 - 1, "he3": lambda z: z**3 - 3 * z}


def _draw_unit_teacher(draws, cfg):
    """w* ~ N(0, I_d) rescaled to norm sqrt(d), so that w* . w* / d = 1."""
    w = draws.normal((cfg["data.d"],))
    return w * jnp.sqrt(cfg["data.d"]) / jnp.linalg.norm(w)


def _single_index(draws, n, cfg, w_star):
    """x ~ N(0, I_d), y = link(w* . x / sqrt(d)); label noise sqrt(Delta) z is data.noise."""
    X = gaussian_inputs(draws, n, cfg)
    return X, LINKS[cfg["data.link"]](_projection(X, w_star, cfg))


def _sin_1d(draws, n, cfg, teacher):
    """x ~ U[-1, 1], y = sin(pi * frequency * x) (d = 1)."""
    X = uniform_inputs(draws, n, cfg)
    return X, jnp.sin(jnp.pi * cfg["data.frequency"] * X[:, 0])


DATASETS = {
    "linear_teacher": teacher_on_gaussian_inputs(_draw_direction, lambda w, X, cfg: _projection(X, w, cfg)),
    "relu_teacher": teacher_on_gaussian_inputs(
        _draw_direction, lambda w, X, cfg: jax.nn.relu(_projection(X, w, cfg))
    ),
    "two_layer_teacher": teacher_on_gaussian_inputs(_draw_two_layer_teacher, _two_layer_target),
    "random_labels": Generator(_random_labels),
    "sin_1d": Generator(_sin_1d),
    "xor": Generator(_xor),
    "parity": Generator(_parity),
    "clusters": Generator(_clusters, _draw_cluster_centres),
    "single_index": Generator(_single_index, _draw_unit_teacher),
}

# Data sets given as arrays rather than generated (see jaxgd.given).
GIVEN = ("file", "inline")
# Data sets whose inputs are one-dimensional.
ONE_DIMENSIONAL = ("sin_1d",)
# Data sets whose labels are already +-1.
BINARY = ("xor", "parity", "clusters")
LABELS = ("real", "sign")


def _labels(draws, y, cfg):
    y = y + cfg["data.noise"] * draws.normal(y.shape)
    if cfg["data.labels"] == "sign":
        y = jnp.where(y >= 0, 1.0, -1.0)
    return y.astype(cfg["dtype"])


def sample(cfg, draws, n, teacher):
    """n fresh samples (X, y) of a generated data set, label noise and sign included."""
    X, y = DATASETS[cfg["data.name"]].sample(draws, n, cfg, teacher)
    return X.astype(cfg["dtype"]), _labels(draws, y, cfg)


def make(cfg, draws) -> tuple[Dataset, Any]:
    """The run's training and test sets, and its teacher (None where there is none)."""
    if cfg["data.name"] in GIVEN:
        X_train, y_train, X_test, y_test = (jnp.asarray(a, cfg["dtype"]) for a in cfg["data.given"].arrays)
        return Dataset(X_train, _labels(draws, y_train, cfg), X_test, _labels(draws, y_test, cfg)), None
    generator = DATASETS[cfg["data.name"]]
    teacher = generator.draw_teacher(draws, cfg)
    X_train, y_train = generator.sample(draws, cfg["data.n"], cfg, teacher)
    X_test, y_test = generator.sample(draws, cfg["data.n_test"], cfg, teacher)
    return Dataset(X_train.astype(cfg["dtype"]), _labels(draws, y_train, cfg),
                   X_test.astype(cfg["dtype"]), _labels(draws, y_test, cfg)), teacher
