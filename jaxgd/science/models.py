"""The two-layer network f(x) = c_m * sum_j a_j act(w_j . x + b_j), its activations and
constraints (registered components), its initialization and which layers train.

Parameters are a dict {"W": (m, d), "a": (m,), "b": (m,)}; "b" is present only with
a bias.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from jaxgd.science.registry import activation, constraint

# --- activations: act(z, *, settings), settings under [model] ---------------------------


@activation("relu", lipschitz=1.0)
def relu(z):
    """max(z, 0)."""
    return jax.nn.relu(z)


@activation("leaky_relu", lipschitz=lambda leaky_slope: jnp.maximum(1.0, jnp.abs(leaky_slope)))
def leaky_relu(z, *, leaky_slope: float = 0.01):
    """z for z >= 0, leaky_slope z below.
    leaky_slope: negative slope of `leaky_relu`"""
    return jnp.where(z >= 0, z, leaky_slope * z)


@activation("tanh", lipschitz=1.0)
def tanh(z):
    """tanh(z)."""
    return jnp.tanh(z)


# sup of (z Phi(z))' = Phi(z) + z phi(z), reached at z = sqrt(2)
GELU_LIPSCHITZ = 0.5 * (1 + math.erf(1.0)) + math.sqrt(2) * math.exp(-1.0) / math.sqrt(2 * math.pi)


@activation("gelu", lipschitz=GELU_LIPSCHITZ)
def gelu(z):
    """z Phi(z), exact (not the tanh approximation)."""
    return jax.nn.gelu(z, approximate=False)


@activation("softplus", lipschitz=1.0)
def softplus(z):
    """log(1 + exp(z))."""
    return jax.nn.softplus(z)


@activation("sigmoid", lipschitz=0.25)
def sigmoid(z):
    """1 / (1 + exp(-z))."""
    return jax.nn.sigmoid(z)


@activation("identity", lipschitz=1.0)
def identity(z):
    """z (a linear network)."""
    return z


@activation("square", homogeneity=2)  # not Lipschitz on R
def square(z):
    """z^2."""
    return z * z


@activation("leaky_softplus", lipschitz=lambda leaky_c: jnp.maximum(1.0, jnp.abs(leaky_c)))
def leaky_softplus(z, *, leaky_c: float = 0.5):
    """c z + (1 - c) softplus(z): its slope runs between c and 1.
    leaky_c: `leaky_softplus`: c z + (1 - c) softplus(z)"""
    return leaky_c * z + (1 - leaky_c) * jax.nn.softplus(z)


# --- constraints on W after every step: (W, W0, *, settings) -> W ---------------------


@constraint("none")
def unconstrained(W, W0):
    """W as the step left it."""
    return W


def _unit_rows(W):
    return W / jnp.linalg.norm(W, axis=1, keepdims=True)


@constraint("spherical", minimum={"row_norm": 0.0})
def spherical(W, W0, *, row_norm: float = 0.0):
    """Each row of W renormalized to norm row_norm.
    row_norm: `spherical`: the norm of each row of W (0: sqrt(d))"""
    return jnp.where(row_norm > 0, row_norm, jnp.sqrt(W.shape[1])) * _unit_rows(W)


@constraint("norm_only")
def norm_only(W, W0):
    """w_j = r_j v_j, r_j >= 0, with the direction v_j frozen at initialization: the
    projection onto the ray of v_j, i.e. a projected gradient step on r_j >= 0 (a row
    whose r_j would turn negative stops at zero length instead of turning around)."""
    return jnp.maximum(jnp.sum(W * _unit_rows(W0), axis=1, keepdims=True), 0.0) * _unit_rows(W0)


# --- the network ----------------------------------------------------------------------

# Output multiplier c_m as a function of the width m.
SCALINGS = {
    "standard": lambda m: 1.0,
    "ntk": lambda m: m**-0.5,
    "mean_field": lambda m: 1.0 / m,
}
# Multiplier of w_j . x as a function of the input dimension d.
INPUT_SCALINGS = {"none": lambda d: 1.0, "sqrt_d": lambda d: d**-0.5}
A_INITS = ("gaussian", "pm1", "constant")
LAYERS = ("W", "a", "b")


@dataclasses.dataclass(frozen=True)
class Network:
    """f(x) = output_scale * sum_j a_j act(input_scale * w_j . x + b_j)."""

    act: Callable  # the activation, its settings bound
    output_scale: float  # c_m
    input_scale: float  # 1, or 1/sqrt(d)
    lipschitz: float  # sup |act'| (inf where act is not Lipschitz)
    homogeneity: int  # degree k of act(t z) = t^k act(z), t > 0

    def pre_activations(self, params, X):
        """w_j . x (times input_scale) + b_j, for X (n, d) -> (n, m)."""
        pre = self.input_scale * (X @ params["W"].T)
        if "b" in params:
            pre = pre + params["b"]
        return pre

    def __call__(self, params, X):
        """f(X) for a batch of inputs X (n, d) -> (n,)."""
        return self.output_scale * (self.act(self.pre_activations(params, X)) @ params["a"])


def init(draws, *, width: int, d: int, w_scale, a_init: str, a_scale, bias: bool, b_scale, constrain, dtype):
    """W ~ N(0, w_scale^2 / d) (then constrained); a ~ a_scale * N(0, 1),
    a_scale * (+-1, balanced halves) or a_scale; b ~ N(0, b_scale^2)."""
    z_w, z_a, z_b = draws.normal((width, d)), draws.normal((width,)), draws.normal((width,))
    if a_init == "pm1":  # first ceil(m/2) units +1, the rest -1
        z_a = jnp.where(jnp.arange(width) < (width + 1) // 2, 1.0, -1.0).astype(dtype)
    elif a_init == "constant":
        z_a = jnp.ones((width,), dtype)
    W = w_scale / jnp.sqrt(d) * z_w
    params = {"W": constrain(W, W), "a": a_scale * z_a}
    if bias:
        params["b"] = b_scale * z_b
    return params


def trainable_layers(*, bias: bool, train_W: bool, train_a: bool, train_b: bool) -> tuple[str, ...]:
    """Names of the layers gradient descent updates."""
    trained = {"W": train_W, "a": train_a, "b": train_b and bias}
    return tuple(name for name in LAYERS if trained[name])


def split(params, trained):
    """(trainable, frozen) sub-dicts of `params`."""
    return ({k: v for k, v in params.items() if k in trained},
            {k: v for k, v in params.items() if k not in trained})
