"""The two-layer network f(x) = c_m * sum_j a_j act(w_j . x + b_j), its initialization
and which of its layers train.

Parameters are a dict {"W": (m, d), "a": (m,), "b": (m,)}; "b" is present only with
`model.bias = true`.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Activation(NamedTuple):
    fn: Callable  # act(z, cfg); `cfg` carries the activation's own settings as traced values
    lipschitz: Callable  # Lip(act)(cfg): sup |act'|, for the Lipschitz upper bound of the net


def leaky_relu(z, cfg):
    return jnp.where(z >= 0, z, cfg["model.leaky_slope"] * z)


ONE = lambda cfg: 1.0
# sup of (z Phi(z))' = Phi(z) + z phi(z), reached at z = sqrt(2)
GELU_LIPSCHITZ = 0.5 * (1 + math.erf(1.0)) + math.sqrt(2) * math.exp(-1.0) / math.sqrt(2 * math.pi)

# One entry per activation.
ACTIVATIONS = {
    "relu": Activation(lambda z, cfg: jax.nn.relu(z), ONE),
    "leaky_relu": Activation(leaky_relu, lambda cfg: jnp.maximum(1.0, jnp.abs(cfg["model.leaky_slope"]))),
    "tanh": Activation(lambda z, cfg: jnp.tanh(z), ONE),
    "gelu": Activation(lambda z, cfg: jax.nn.gelu(z, approximate=False), lambda cfg: GELU_LIPSCHITZ),
    "softplus": Activation(lambda z, cfg: jax.nn.softplus(z), ONE),
    "sigmoid": Activation(lambda z, cfg: jax.nn.sigmoid(z), lambda cfg: 0.25),
    "identity": Activation(lambda z, cfg: z, ONE),
    "square": Activation(lambda z, cfg: z * z, lambda cfg: jnp.inf),  # not Lipschitz on R
    # c z + (1 - c) softplus(z), c = model.leaky_c: its slope runs between c and 1
    "leaky_softplus": Activation(
        lambda z, cfg: cfg["model.leaky_c"] * z + (1 - cfg["model.leaky_c"]) * jax.nn.softplus(z),
        lambda cfg: jnp.maximum(1.0, jnp.abs(cfg["model.leaky_c"])),
    ),
}
# Degree k of positive homogeneity, act(t z) = t^k act(z) for t > 0 (1 where only asymptotically so).
HOMOGENEITY = {"square": 2}

# Output multiplier c_m as a function of the width m.
SCALINGS = {
    "standard": lambda m: 1.0,
    "ntk": lambda m: m**-0.5,
    "mean_field": lambda m: 1.0 / m,
}

A_INITS = ("gaussian", "pm1", "constant")
INPUT_SCALINGS = {"none": lambda d: 1.0, "sqrt_d": lambda d: d**-0.5}
LAYERS = ("W", "a", "b")


def input_scale(cfg):
    """The multiplier of w_j . x: 1, or 1/sqrt(d) with model.input_scaling = "sqrt_d"."""
    return INPUT_SCALINGS[cfg["model.input_scaling"]](cfg["data.d"])


def activation(cfg, z):
    return ACTIVATIONS[cfg["model.activation"]].fn(z, cfg)


def output_scale(cfg) -> float:
    return SCALINGS[cfg["model.scaling"]](cfg["model.width"])


def pre_activations(cfg, params, X):
    """w_j . x (/ sqrt(d) with model.input_scaling = "sqrt_d") + b_j, for X (n, d) -> (n, m)."""
    pre = INPUT_SCALINGS[cfg["model.input_scaling"]](X.shape[1]) * (X @ params["W"].T)
    if "b" in params:
        pre = pre + params["b"]
    return pre


def predict(cfg, params, X):
    """f(X) for a batch of inputs X (n, d) -> (n,)."""
    return output_scale(cfg) * (activation(cfg, pre_activations(cfg, params, X)) @ params["a"])


def init(cfg, draws):
    """W ~ N(0, w_scale^2 / d) (then constrained, see CONSTRAINTS); a ~ a_scale * N(0, 1),
    a_scale * (+-1, balanced halves) or a_scale; b ~ N(0, b_scale^2)."""
    m, d, dtype = cfg["model.width"], cfg["data.d"], cfg["dtype"]
    z_w, z_a, z_b = draws.normal((m, d)), draws.normal((m,)), draws.normal((m,))
    if cfg["model.a_init"] == "pm1":  # first ceil(m/2) units +1, the rest -1
        z_a = jnp.where(jnp.arange(m) < (m + 1) // 2, 1.0, -1.0).astype(dtype)
    elif cfg["model.a_init"] == "constant":
        z_a = jnp.ones((m,), dtype)
    W = cfg["model.w_scale"] / jnp.sqrt(d) * z_w
    params = {"W": constrain(cfg, W, W), "a": cfg["model.a_scale"] * z_a}
    if cfg["model.bias"]:
        params["b"] = cfg["model.b_scale"] * z_b
    return params


def trainable_layers(cfg) -> tuple[str, ...]:
    """Names of the layers gradient descent updates (`model.train_W`, ...)."""
    return tuple(
        name
        for name in LAYERS
        if cfg[f"model.train_{name}"] and (name != "b" or cfg["model.bias"])
    )


def split_trainable(cfg, params):
    """(trainable, frozen) sub-dicts of `params`."""
    names = trainable_layers(cfg)
    trainable = {k: v for k, v in params.items() if k in names}
    frozen = {k: v for k, v in params.items() if k not in names}
    return trainable, frozen


def row_norm(cfg):
    """The norm rows of W keep under the spherical constraint: model.row_norm, or sqrt(d) if 0."""
    return jnp.where(cfg["model.row_norm"] > 0, cfg["model.row_norm"], jnp.sqrt(cfg["data.d"]))


def _unit_rows(W):
    return W / jnp.linalg.norm(W, axis=1, keepdims=True)


# Constraints on W, applied at initialization and after every step: name -> (W, W0) -> W.
CONSTRAINTS = {
    "none": lambda cfg, W, W0: W,
    # each row renormalized to norm row_norm
    "spherical": lambda cfg, W, W0: row_norm(cfg) * _unit_rows(W),
    # w_j = r_j v_j with the direction v_j frozen at initialization: projecting a gradient
    # step onto v_j is exactly a gradient step on r_j
    "norm_only": lambda cfg, W, W0: jnp.sum(W * _unit_rows(W0), axis=1, keepdims=True) * _unit_rows(W0),
}


def constrain(cfg, W, W0):
    return CONSTRAINTS[cfg["model.constraint"]](cfg, W, W0)
