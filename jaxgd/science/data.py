"""Data sets (registered components), settings under [data].

A data set is `sample(draws, n, d, *, settings) -> (X (n, d), y (n,))`, or with a
teacher drawn once per run, `sample(draws, n, d, teacher, *, settings)` registered with
`teacher=draw_teacher(draws, d, *, settings)`. `draws` is the run's stream of standard
Gaussians (`rng.Draws`: data are generated inside the compiled program, from one draw
per run); a user's data set may take a JAX `key` as its first argument instead. Label
noise `noise * N(0, 1)` and the sign for `data.labels = "sign"` are added by `make`.
Given data (`data.name = "file"` or `"inline"`) are fixed arrays (`jaxgd.science.given`), with
the same noise and label handling.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from jaxgd.science.registry import RANDOMNESS, dataset


class Dataset(NamedTuple):
    X_train: jax.Array  # (n, d)
    y_train: jax.Array  # (n,)
    X_test: jax.Array  # (n_test, d)
    y_test: jax.Array  # (n_test,)


def gaussian_inputs(draws, n, d):
    """x ~ N(0, I_d)."""
    return draws.normal((n, d))


def uniform_inputs(draws, n, d):
    """x ~ U[-1, 1]^d, as 2 Phi(z) - 1 of standard Gaussians."""
    return 2.0 * ndtr(draws.normal((n, d))) - 1.0


def projection(X, w, d):
    """w . x / sqrt(d): unit variance for x ~ N(0, I_d) and w ~ N(0, I_d)."""
    return X @ w / jnp.sqrt(d)


def gaussian_direction(draws, d):
    """w* ~ N(0, I_d)."""
    return draws.normal((d,))


@dataset("linear_teacher", teacher=gaussian_direction, teacher_direction=True)
def linear_teacher(draws, n, d, w_star):
    """x ~ N(0, I_d), y = w* . x / sqrt(d)."""
    X = gaussian_inputs(draws, n, d)
    return X, projection(X, w_star, d)


@dataset("relu_teacher", teacher=gaussian_direction, teacher_direction=True)
def relu_teacher(draws, n, d, w_star):
    """x ~ N(0, I_d), y = relu(w* . x / sqrt(d))."""
    X = gaussian_inputs(draws, n, d)
    return X, jax.nn.relu(projection(X, w_star, d))


def two_layer_teacher_weights(draws, d, *, teacher_width: int = 4):
    """W* (k, d) and a* (k,), standard Gaussian.
    teacher_width: hidden units of `two_layer_teacher`"""
    return draws.normal((teacher_width, d)), draws.normal((teacher_width,))


@dataset("two_layer_teacher", teacher=two_layer_teacher_weights, names={"teacher_activation": "activation"},
         minimum={"teacher_width": 1})
def two_layer_teacher(draws, n, d, teacher, *, teacher_activation: str = "relu"):
    """x ~ N(0, I_d), y = k^-1/2 sum_i a*_i act(w*_i . x / sqrt(d)).
    teacher_activation: activation of `two_layer_teacher` (any activation)"""
    W_star, a_star = teacher
    X = gaussian_inputs(draws, n, d)
    return X, teacher_activation(projection(X, W_star.T, d)) @ a_star / jnp.sqrt(W_star.shape[0])


@dataset("random_labels")
def random_labels(draws, n, d):
    """x ~ N(0, I_d) and y ~ N(0, 1) independent of x (the 'adversarial labels' case)."""
    return gaussian_inputs(draws, n, d), draws.normal((n,))


@dataset("sin_1d", requires=lambda d, **settings: None if d == 1 else "sin_1d needs data.d = 1")
def sin_1d(draws, n, d, *, frequency: float = 1.0):
    """x ~ U[-1, 1], y = sin(pi * frequency * x) (d = 1).
    frequency: `sin_1d`: y = sin(pi * frequency * x)"""
    X = uniform_inputs(draws, n, d)
    return X, jnp.sin(jnp.pi * frequency * X[:, 0])


@dataset("xor", labels_pm1=True, requires=lambda d, **settings: None if d >= 2 else "xor needs data.d >= 2")
def xor(draws, n, d):
    """x ~ N(0, I_d), y = sign(x_1 x_2): XOR in the first two coordinates, the rest noise."""
    X = gaussian_inputs(draws, n, d)
    return X, jnp.sign(X[:, 0] * X[:, 1])


@dataset("parity", labels_pm1=True, minimum={"k": 1},
         requires=lambda d, k, **settings: None if k <= d else f"data.k = {k}: parity needs k <= data.d = {d}")
def parity(draws, n, d, *, k: int = 2):
    """x uniform on the hypercube {-1, 1}^d, y = x_1 x_2 ... x_k.
    k: `parity`: y = x_1 ... x_k (k <= d)"""
    X = jnp.where(gaussian_inputs(draws, n, d) >= 0, 1.0, -1.0)
    return X, jnp.prod(X[:, :k], axis=1)


def cluster_centres(draws, d, *, clusters: int = 4):
    """The centres ~ N(0, I_d) (norm about sqrt(d)), labels alternating +-1.
    clusters: `clusters`: number of clusters, labels alternating +-1"""
    return draws.normal((clusters, d))


@dataset("clusters", teacher=cluster_centres, labels_pm1=True, minimum={"clusters": 2, "cluster_std": 0.0})
def clusters(draws, n, d, centres, *, cluster_std: float = 0.1):
    """x = a uniformly chosen centre + cluster_std * N(0, I_d); y = that cluster's label.
    cluster_std: `clusters`: standard deviation around each centre"""
    k = centres.shape[0]
    choice = jnp.floor(k * ndtr(draws.normal((n,)))).astype(jnp.int32).clip(0, k - 1)
    X = centres[choice] + cluster_std * gaussian_inputs(draws, n, d)
    return X, jnp.where(choice % 2 == 0, 1.0, -1.0)


# Link functions of the single-index teacher: z^2 (phase retrieval) and the
# probabilists' Hermite polynomials He_2 = z^2 - 1, He_3 = z^3 - 3 z.
LINKS = {"square": lambda z: z**2, "he2": lambda z: z**2 - 1, "he3": lambda z: z**3 - 3 * z}


def unit_teacher(draws, d):
    """w* ~ N(0, I_d) rescaled to norm sqrt(d), so that w* . w* / d = 1."""
    w = draws.normal((d,))
    return w * jnp.sqrt(d) / jnp.linalg.norm(w)


@dataset("single_index", teacher=unit_teacher, teacher_direction=True)
def single_index(draws, n, d, w_star, *, link: Literal[tuple(LINKS)] = "square"):
    """x ~ N(0, I_d), y = link(w* . x / sqrt(d)); label noise sqrt(Delta) z is data.noise.
    link: `single_index`: `square` (z^2, phase retrieval), `he2` (z^2 - 1) or `he3` (z^3 - 3z)"""
    X = gaussian_inputs(draws, n, d)
    return X, LINKS[link](projection(X, w_star, d))


# Data sets given as arrays rather than generated (see jaxgd.science.given).
GIVEN = ("file", "inline")
LABELS = ("real", "sign")


def randomness(draws, fn):
    """What `fn` (a data set or teacher) draws from: the stream itself, or a fresh key."""
    first = next(iter(inspect.signature(fn).parameters))
    return draws if first == RANDOMNESS[1] else draws.key()


def samplers(sample, draw_teacher, d: int):
    """A data set's bound functions (`functools.partial`s of its sample and teacher
    functions, the teacher None where it has none) as (sample(draws, n, teacher),
    teacher(draws) or None): each fed the randomness its first argument asks for, the
    teacher passed after d where the data set has one."""
    def sample_n(draws, n, teacher):
        return sample(randomness(draws, sample.func), n, d, *((teacher,) if draw_teacher else ()))

    def teacher(draws):
        return draw_teacher(randomness(draws, draw_teacher.func), d)

    return sample_n, teacher if draw_teacher else None


def labels(draws, y, *, noise, sign: bool, dtype):
    """y + noise * N(0, 1), then its sign where asked (+-1 labels)."""
    y = y + noise * draws.normal(y.shape)
    if sign:
        y = jnp.where(y >= 0, 1.0, -1.0)
    return y.astype(dtype)


class Source(NamedTuple):
    """A data set with its settings bound: `sample(draws, n, teacher)` (None for given
    data) and `draw_teacher(draws)` (None where it has none)."""

    sample: Any
    draw_teacher: Any
    noise: Any
    sign: bool
    dtype: Any

    def fresh(self, draws, n, teacher):
        """n fresh samples (X, y), label noise and sign included."""
        X, y = self.sample(draws, n, teacher)
        return X.astype(self.dtype), labels(draws, y, noise=self.noise, sign=self.sign, dtype=self.dtype)


def make(source: Source, draws, *, n: int, n_test: int, given=None) -> tuple[Dataset, Any]:
    """The run's training and test sets, and its teacher (None where there is none)."""
    noisy = lambda y: labels(draws, y, noise=source.noise, sign=source.sign, dtype=source.dtype)
    if given is not None:
        X_train, y_train, X_test, y_test = (jnp.asarray(a, source.dtype) for a in given.arrays)
        return Dataset(X_train, noisy(y_train), X_test, noisy(y_test)), None
    teacher = source.draw_teacher(draws) if source.draw_teacher else None
    X_train, y_train = source.sample(draws, n, teacher)
    X_test, y_test = source.sample(draws, n_test, teacher)
    return Dataset(X_train.astype(source.dtype), noisy(y_train), X_test.astype(source.dtype), noisy(y_test)), teacher
