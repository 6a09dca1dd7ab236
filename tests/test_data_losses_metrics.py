"""Data sets, losses and metrics against their formulas."""

import numpy as np
import pytest
from conftest import make_spec

import jaxgd
from jaxgd.science import losses, registry


def test_losses():
    f, y = np.array([0.5, -1.0, 2.0]), np.array([1.0, -1.0, -1.0])
    assert losses.mse(f, y) == pytest.approx(np.mean(0.5 * (f - y) ** 2))
    assert losses.logistic(f, y) == pytest.approx(np.mean(np.log1p(np.exp(-y * f))))
    assert np.isfinite(losses.logistic(np.array([1e4]), np.array([-1.0])))  # no overflow


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
    """Every generated data set, loss, optimizer and metric runs inside the engine."""
    def built_in(kind):  # plugins that other tests of this process loaded are not jaxgd's
        return [name for name in registry.names(kind) if registry.get(kind, name).builtin]

    def having(kind, flag):
        return [name for name in built_in(kind) if registry.get(kind, name).declared(flag)]

    one_dimensional, classification = having("metric", "one_dimensional"), having("metric", "labels_pm1")
    special = one_dimensional + classification + having("metric", "teacher_direction")
    costly = ("ntk_min_eig", "sharpness", "lr_sharpness", "lipschitz_lower")  # compiled once, in the first sweep
    everything = [m for m in built_in("metric") if m not in special]
    common = [m for m in everything if m not in costly]
    teacher_data = having("dataset", "teacher_direction")
    sweeps = [  # 12 compiled programs in all
        dict(data={"name": teacher_data}, model={"activation": "gelu", "bias": True},
             metrics=everything + ["overlap_max", "overlap_mean"]),
        dict(data={"name": ["two_layer_teacher", "random_labels"]}, optimizer={"name": "sgd", "batch_size": 4},
             model={"constraint": "spherical"}, metrics=common),
        dict(data={"name": having("dataset", "labels_pm1"), "labels": "sign", "d": 3}, loss={"name": "logistic"},
             model={"activation": "leaky_softplus", "constraint": "norm_only"}, metrics=common + classification),
        dict(data={"name": ["sin_1d"], "d": 1}, loss={"name": "huber"}, metrics=common + one_dimensional),
        dict(data={"name": "single_index", "link": ["he2", "he3"]}, metrics=common + ["overlap_max"]),
        dict(data={"name": "single_index"}, optimizer={"name": "online_sgd", "batch_size": 2},
             metrics=common + ["committee_risk"],
             model={"activation": "square", "input_scaling": "sqrt_d", "a_init": "constant", "scaling": "mean_field"}),
    ]
    covered = set()
    for changes in sweeps:
        spec = make_spec(steps=10, log_every=5, optimizer={"lr": 0.05, **changes.pop("optimizer", {})}, **changes)
        results = jaxgd.run(spec, progress=False)
        assert results.summary.filter(like="final_").notna().all().all(), changes
        settings = jaxgd.load_spec(spec).settings
        covered |= set(results.spec["metrics"]) | set(np.atleast_1d(settings["data.name"])) | set(np.atleast_1d(settings["loss.name"]))
        covered |= set(np.atleast_1d(settings["optimizer.name"]))
    assert {*built_in("metric"), *built_in("dataset"), *built_in("loss")} <= covered | {"mse"}


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
