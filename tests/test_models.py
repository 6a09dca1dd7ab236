"""Activations, output scalings, initialization and the forward pass against their formulas."""

import jax
import numpy as np
import pytest

from jaxgd import models
from jaxgd.plan import Config, Static
from jaxgd.rng import Draws

Z = np.linspace(-3, 3, 13)
EXPECTED = {
    "relu": np.maximum(Z, 0),
    "leaky_relu": np.where(Z >= 0, Z, 0.1 * Z),
    "tanh": np.tanh(Z),
    "gelu": 0.5 * Z * (1 + np.vectorize(__import__("math").erf)(Z / np.sqrt(2))),
    "softplus": np.log1p(np.exp(Z)),
    "sigmoid": 1 / (1 + np.exp(-Z)),
    "identity": Z,
    "square": Z**2,
    "leaky_softplus": 0.3 * Z + 0.7 * np.log1p(np.exp(Z)),
}


def config(**settings):
    base = {"model.width": 6, "data.d": 3, "model.activation": "relu", "model.scaling": "ntk", "model.bias": True,
            "model.a_init": "gaussian", "model.train_W": True, "model.train_a": True, "model.train_b": True,
            "model.input_scaling": "none", "model.constraint": "none", "dtype": np.dtype("float32")}
    hyper = {"model.w_scale": 1.0, "model.a_scale": 1.0, "model.b_scale": 0.5, "model.leaky_slope": 0.1,
             "model.leaky_c": 0.3, "model.row_norm": 0.0}
    for key, value in settings.items():
        (hyper if key in hyper else base)[key] = value
    return Config(Static(tuple(sorted(base.items()))), hyper)


def test_every_activation_is_tested():
    assert set(EXPECTED) == set(models.ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_activation_formula(name):
    np.testing.assert_allclose(models.ACTIVATIONS[name].fn(Z, config()), EXPECTED[name], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("scaling, c_m", [("standard", 1.0), ("ntk", 6**-0.5), ("mean_field", 1 / 6)])
def test_forward_pass_matches_the_formula(scaling, c_m):
    cfg = config(**{"model.scaling": scaling, "model.activation": "tanh"})
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(6, 3)), "a": rng.normal(size=6), "b": rng.normal(size=6)}
    X = rng.normal(size=(5, 3))
    expected = c_m * np.tanh(X @ params["W"].T + params["b"]) @ params["a"]
    np.testing.assert_allclose(models.predict(cfg, params, X), expected, rtol=1e-5)


def init(cfg, seed=0):
    key = jax.random.key(seed)
    counter = Draws(None, cfg["dtype"])
    models.init(cfg, counter)
    return models.init(cfg, Draws(jax.random.normal(key, (counter.taken,)), cfg["dtype"]))


def test_initialization_scales():
    cfg = config(**{"model.width": 4000, "data.d": 50, "model.w_scale": 2.0, "model.a_scale": 0.3})
    params = init(cfg)
    assert params["W"].shape == (4000, 50) and params["a"].shape == (4000,) and params["b"].shape == (4000,)
    assert np.var(params["W"]) == pytest.approx(4.0 / 50, rel=0.02)
    assert np.std(params["a"]) == pytest.approx(0.3, rel=0.05)
    assert np.std(params["b"]) == pytest.approx(0.5, rel=0.05)


def test_balanced_pm1_second_layer():
    params = init(config(**{"model.width": 7, "model.a_init": "pm1", "model.a_scale": 2.0}))
    np.testing.assert_array_equal(params["a"], [2, 2, 2, 2, -2, -2, -2])


def test_bias_and_trainable_layers():
    assert "b" not in init(config(**{"model.bias": False}))
    assert models.trainable_layers(config(**{"model.bias": False})) == ("W", "a")
    assert models.trainable_layers(config(**{"model.train_W": False})) == ("a", "b")
    trainable, frozen = models.split_trainable(config(**{"model.train_a": False}), init(config()))
    assert set(trainable) == {"W", "b"} and set(frozen) == {"a"}
