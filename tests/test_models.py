"""Activations, output scalings, initialization and the forward pass against their formulas."""

import jax
import numpy as np
import pytest

from jaxgd.science import models, registry
from jaxgd.science.rng import Draws

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


def test_every_activation_is_tested():
    assert set(EXPECTED) == set(registry.names("activation"))


SETTINGS = {"leaky_slope": 0.1, "leaky_c": 0.3}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_activation_formula(name):
    activation = registry.get("activation", name)
    settings = {s.leaf: SETTINGS[s.leaf] for s in activation.settings}
    np.testing.assert_allclose(activation.fn(Z, **settings), EXPECTED[name], rtol=1e-6, atol=1e-7)


def network(scaling="ntk", width=6):
    return models.Network(act=models.tanh, output_scale=models.SCALINGS[scaling](width), input_scale=1.0,
                          lipschitz=1.0, homogeneity=1)


@pytest.mark.parametrize("scaling, c_m", [("standard", 1.0), ("ntk", 6**-0.5), ("mean_field", 1 / 6)])
def test_forward_pass_matches_the_formula(scaling, c_m):
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(6, 3)), "a": rng.normal(size=6), "b": rng.normal(size=6)}
    X = rng.normal(size=(5, 3))
    expected = c_m * np.tanh(X @ params["W"].T + params["b"]) @ params["a"]
    np.testing.assert_allclose(network(scaling)(params, X), expected, rtol=1e-5)


def init(seed=0, **settings):
    options = dict(width=6, d=3, w_scale=1.0, a_init="gaussian", a_scale=1.0, bias=True, b_scale=0.5,
                   constrain=models.unconstrained, dtype=np.dtype("float32")) | settings
    key = jax.random.key(seed)
    counter = Draws(None, options["dtype"])
    models.init(counter, **options)
    return models.init(Draws(jax.random.normal(key, (counter.taken,)), options["dtype"]), **options)


def test_initialization_scales():
    params = init(width=4000, d=50, w_scale=2.0, a_scale=0.3)
    assert params["W"].shape == (4000, 50) and params["a"].shape == (4000,) and params["b"].shape == (4000,)
    assert np.var(params["W"]) == pytest.approx(4.0 / 50, rel=0.02)
    assert np.std(params["a"]) == pytest.approx(0.3, rel=0.05)
    assert np.std(params["b"]) == pytest.approx(0.5, rel=0.05)


def test_balanced_pm1_second_layer():
    params = init(width=7, a_init="pm1", a_scale=2.0)
    np.testing.assert_array_equal(params["a"], [2, 2, 2, 2, -2, -2, -2])


def test_bias_and_trainable_layers():
    layers = lambda **changed: models.trainable_layers(**(dict(bias=True, train_W=True, train_a=True, train_b=True) | changed))
    assert "b" not in init(bias=False)
    assert layers(bias=False) == ("W", "a")
    assert layers(train_W=False) == ("a", "b")
    trainable, frozen = models.split(init(), layers(train_a=False))
    assert set(trainable) == {"W", "b"} and set(frozen) == {"a"}
