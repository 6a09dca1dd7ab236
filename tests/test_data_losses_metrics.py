"""Data sets, losses and metrics against their formulas."""

import jax
import numpy as np
import pytest

import jaxgd
from jaxgd import data, losses, metrics

from conftest import make_spec


def test_losses():
    f, y = np.array([0.5, -1.0, 2.0]), np.array([1.0, -1.0, -1.0])
    assert losses.mse(f, y, None) == pytest.approx(np.mean(0.5 * (f - y) ** 2))
    assert losses.logistic(f, y, None) == pytest.approx(np.mean(np.log1p(np.exp(-y * f))))
    assert np.isfinite(losses.logistic(np.array([1e4]), np.array([-1.0]), None))  # no overflow


def test_linear_teacher_targets_and_noise():
    clean = jaxgd.materialize(make_spec(data={"n": 2000, "d": 5}), 0)
    noisy = jaxgd.materialize(make_spec(data={"n": 2000, "d": 5, "noise": 0.5}), 0)
    X, y = clean["X_train"], clean["y_train"]
    w_star, *_ = np.linalg.lstsq(X, y * np.sqrt(5), rcond=None)
    np.testing.assert_allclose(X @ w_star / np.sqrt(5), y, rtol=1e-4, atol=1e-5)  # exactly linear
    assert np.std(noisy["y_train"] - y) == pytest.approx(0.5, rel=0.05)
    assert np.std(X) == pytest.approx(1.0, rel=0.02)
    assert not np.array_equal(clean["X_train"][:100], clean["X_test"][:100])


def test_relu_and_two_layer_teachers_and_sign_labels():
    relu = jaxgd.materialize(make_spec(data={"name": "relu_teacher", "n": 500}), 0)
    assert (relu["y_train"] >= 0).all() and (relu["y_train"] == 0).mean() == pytest.approx(0.5, abs=0.1)
    signs = jaxgd.materialize(make_spec(data={"name": "two_layer_teacher", "labels": "sign", "n": 500}), 0)
    assert set(np.unique(signs["y_train"])) == {-1.0, 1.0}


def test_every_registry_entry_runs():
    """Every generated data set, loss and metric runs inside the engine."""
    regression = [m for m in metrics.METRICS
                  if m not in metrics.ONE_DIMENSIONAL_METRICS + metrics.CLASSIFICATION_METRICS]
    sweeps = [
        dict(data={"name": [n for n in data.DATASETS if n not in data.ONE_DIMENSIONAL]},
             model={"activation": "gelu", "bias": True}, metrics=regression),
        dict(data={"labels": "sign"}, loss={"name": ["logistic", "huber"]},
             model={"activation": "leaky_relu"}, metrics=regression + list(metrics.CLASSIFICATION_METRICS)),
        dict(data={"name": list(data.ONE_DIMENSIONAL), "d": 1}, metrics=regression + list(metrics.ONE_DIMENSIONAL_METRICS)),
    ]
    for changes in sweeps:
        results = jaxgd.run(make_spec(steps=10, log_every=5, optimizer={"lr": 0.05}, **changes), progress=False)
        assert results.summary.filter(like="final_").notna().all().all(), changes


def test_norm_and_error_metrics():
    spec = make_spec(seeds=1, steps=1, log_every=1, metrics=["norm_W", "norm_a", "norm_b", "test_error"],
                     data={"labels": "sign"}, model={"bias": True, "b_scale": 0.3})
    first = jaxgd.run(spec, progress=False).history.iloc[0]
    run = jaxgd.materialize(spec, 0)
    p = run["params"]
    assert first.norm_W == pytest.approx(np.linalg.norm(p["W"]), rel=1e-5)
    assert first.norm_a == pytest.approx(np.linalg.norm(p["a"]), rel=1e-5)
    assert first.norm_b == pytest.approx(np.linalg.norm(p["b"]), rel=1e-5)
    f = np.maximum(run["X_test"] @ p["W"].T + p["b"], 0) @ p["a"] / np.sqrt(8)
    assert first.test_error == pytest.approx(np.mean(np.sign(f) != run["y_test"]))


def test_grad_norm_matches_finite_differences():
    spec = make_spec(seeds=1, steps=1, log_every=1, dtype="float64", metrics=["train_loss", "grad_norm"],
                     model={"activation": "tanh", "train_a": False})
    logged = jaxgd.run(spec, progress=False).history.iloc[0]
    run = jaxgd.materialize(spec, 0)
    X, y, W, a = run["X_train"], run["y_train"], run["params"]["W"], run["params"]["a"]
    loss = lambda W: np.mean(0.5 * (np.tanh(X @ W.T) @ a / np.sqrt(8) - y) ** 2)
    eps, grad = 1e-6, np.zeros_like(W)
    for i in np.ndindex(W.shape):
        step = np.zeros_like(W)
        step[i] = eps
        grad[i] = (loss(W + step) - loss(W - step)) / (2 * eps)
    assert logged.train_loss == pytest.approx(loss(W), rel=1e-12)
    assert logged.grad_norm == pytest.approx(np.linalg.norm(grad), rel=1e-7)  # only W trains
