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
}

# Output multiplier c_m as a function of the width m.
SCALINGS = {
    "standard": lambda m: 1.0,
    "ntk": lambda m: m**-0.5,
    "mean_field": lambda m: 1.0 / m,
}

A_INITS = ("gaussian", "pm1")
LAYERS = ("W", "a", "b")


def activation(cfg, z):
    return ACTIVATIONS[cfg["model.activation"]].fn(z, cfg)


def output_scale(cfg) -> float:
    return SCALINGS[cfg["model.scaling"]](cfg["model.width"])


def predict(cfg, params, X):
    """f(X) for a batch of inputs X (n, d) -> (n,)."""
    pre = X @ params["W"].T
    if "b" in params:
        pre = pre + params["b"]
    return output_scale(cfg) * (activation(cfg, pre) @ params["a"])


def init(cfg, draws):
    """W ~ N(0, w_scale^2 / d); a ~ a_scale * N(0, 1) or a_scale * (+-1, balanced halves);
    b ~ N(0, b_scale^2)."""
    m, d, dtype = cfg["model.width"], cfg["data.d"], cfg["dtype"]
    z_w, z_a, z_b = draws.normal((m, d)), draws.normal((m,)), draws.normal((m,))
    if cfg["model.a_init"] == "pm1":  # first ceil(m/2) units +1, the rest -1
        z_a = jnp.where(jnp.arange(m) < (m + 1) // 2, 1.0, -1.0).astype(dtype)
    params = {"W": cfg["model.w_scale"] / jnp.sqrt(d) * z_w, "a": cfg["model.a_scale"] * z_a}
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
