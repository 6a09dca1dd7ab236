"""Sharpness, the committee's closed-form risk, constraints, margin and rotation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_spec

import jaxgd


def jaxgd_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]


def test_sharpness_matches_the_dense_hessian():
    spec = make_spec(seeds=2, steps=1, log_every=1, dtype="float64", metrics=["sharpness", "lr_sharpness", "hessian_max_abs_eig"],
                     model={"width": 5, "activation": "tanh", "bias": True, "b_scale": 0.5},
                     optimizer={"lr": 0.3}, measure={"sharpness_iterations": 100})
    history = jaxgd.run(spec, progress=False).history
    for run_id in (0, 1):
        run = jaxgd.materialize(spec, run_id)
        X, y = run["X_train"], run["y_train"]

        def loss(flat):
            W, a, b = flat[:15].reshape(5, 3), flat[15:20], flat[20:]
            f = jnp.tanh(X @ W.T + b) @ a / jnp.sqrt(5.0)
            return jnp.mean(0.5 * (f - y) ** 2)

        with jax.enable_x64(True):
            p = run["params"]
            flat = jnp.concatenate([p["W"].ravel(), p["a"], p["b"]])
            eigenvalues = np.linalg.eigvalsh(np.asarray(jax.hessian(loss)(flat)))
        row = history[(history.run_id == run_id) & (history.step == 0)].iloc[0]
        assert row.sharpness == pytest.approx(eigenvalues[-1], rel=0.01)
        assert row.hessian_max_abs_eig == pytest.approx(eigenvalues[np.argmax(np.abs(eigenvalues))], rel=0.01)
        assert row.lr_sharpness == pytest.approx(0.3 * row.sharpness)


@pytest.mark.parametrize("diagonal, extreme, top", [([-5.0, 2.0, 1.0], -5.0, 2.0), ([3.0, -1.0, 0.5], 3.0, 3.0),
                                                    ([-4.0, -1.0, -2.0], -4.0, -1.0)])
def test_top_and_largest_magnitude_eigenvalues_are_told_apart(diagonal, extreme, top):
    """The top (largest algebraic) eigenvalue is found also where a negative one is larger in magnitude."""
    from jaxgd.science import hessian

    with jax.enable_x64(True):
        A = jnp.diag(jnp.array(diagonal))
        start = jnp.ones(3)
        (found_extreme, _), (found_top, _) = hessian.eigenpairs(lambda x: 0.5 * x @ A @ x, jnp.zeros(3),
                                                                (start, start), iterations=200)
    assert float(found_extreme) == pytest.approx(extreme, rel=1e-6)
    assert float(found_top) == pytest.approx(top, rel=1e-6)


PHASE_RETRIEVAL = dict(
    data={"name": "single_index", "d": 20, "link": "square", "n": 1, "n_test": 1, "noise": 0.3},
    model={"width": 3, "activation": "square", "scaling": "mean_field", "a_init": "constant",
           "train_a": False, "input_scaling": "sqrt_d", "constraint": "spherical"},
)


def test_committee_risk_matches_monte_carlo():
    """The closed form agrees, within 3 standard errors, with an independent NumPy Monte
    Carlo estimate and with the engine's own population_risk."""
    samples = 50000
    spec = make_spec(seeds=2, steps=1, log_every=1, dtype="float64", metrics=["committee_risk", "population_risk"],
                     measure={"mc_samples": samples}, **PHASE_RETRIEVAL)
    logged = jaxgd.run(spec, progress=False).history.query("step == 0").set_index("run_id")
    generator = np.random.default_rng(0)
    for run_id in (0, 1):
        run = jaxgd.materialize(spec, run_id)
        W, w_star = run["params"]["W"], run["teacher"]
        X = generator.normal(size=(samples, 20))
        f = ((X @ W.T / np.sqrt(20)) ** 2).mean(axis=1)
        y = (X @ w_star / np.sqrt(20)) ** 2 + 0.3 * generator.normal(size=samples)
        losses = 0.5 * (f - y) ** 2
        standard_error = losses.std() / np.sqrt(samples)
        closed = logged.loc[run_id, "committee_risk"] + 0.3**2 / 2  # the authors' risk leaves out the label noise
        assert abs(closed - losses.mean()) <= 3 * standard_error
        assert abs(closed - logged.loc[run_id, "population_risk"]) <= 3 * standard_error


def test_plateau_value_of_the_closed_form():
    """At initialization (M ~ 0, Q ~ I for d large) the risk is 1 + 1/p."""
    spec = make_spec(seeds=3, steps=1, log_every=1, metrics=["committee_risk", "q_diag_mean", "overlap_max"],
                     **{**PHASE_RETRIEVAL, "data": {**PHASE_RETRIEVAL["data"], "d": 2000, "noise": 0.0}})
    row = jaxgd.run(spec, progress=False).history.query("step == 0")
    np.testing.assert_allclose(row.q_diag_mean, 1.0, rtol=1e-5)  # spherical: |w_j|^2 = d
    np.testing.assert_allclose(row.committee_risk, 1 + 1 / 3, rtol=0.01)
    assert (row.overlap_max < 0.1).all()


@pytest.mark.parametrize("constraint", ["spherical", "norm_only"])
def test_constraints_hold_after_every_step(constraint):
    spec = make_spec(seeds=2, steps=30, log_every=1, dtype="float64",
                     metrics=["train_loss", "row_norm_min", "row_norm_max", "rotation"],
                     data={"d": 4}, model={"constraint": constraint, "row_norm": 3.0}, optimizer={"lr": 0.05})
    history = jaxgd.run(spec, progress=False).history
    if constraint == "spherical":
        np.testing.assert_allclose(history.row_norm_min, 3.0, rtol=1e-6)
        np.testing.assert_allclose(history.row_norm_max, 3.0, rtol=1e-6)
        assert history.rotation.iloc[-1] < 1 - 1e-4  # directions do move
    else:
        np.testing.assert_allclose(history.rotation, 1.0, atol=1e-6)  # directions frozen
        assert history.row_norm_max.nunique() > 1  # norms do move
        assert history.train_loss.iloc[-1] < history.train_loss.iloc[0]


def test_norm_only_keeps_every_direction_over_thousands_of_large_steps():
    """The paper-3 regime that "can not rotate": with the second layer fixed, 2-sparse
    parity, width 256 and lr 16 for 4000 steps, every row keeps its initial direction
    (cosine 1, or zero length); before r_j >= 0 was kept, a quarter of the rows turned
    around and the mean cosine fell to about 0.5."""
    import tomllib

    spec = tomllib.loads((jaxgd_root() / "sweeps" / "low_rotation.toml").read_text())
    del spec["plot"]  # its figures select axes this test does not sweep
    history = jaxgd.run(spec, progress=False, overrides={
        "model.width": 256, "data.n": 64, "model.constraint": "norm_only", "optimizer.lr": 16.0,
        "steps": 4000, "log_every": 500, "seeds": 1, "metrics": ["rotation", "row_norm_min", "row_norm_max"]}).history
    np.testing.assert_allclose(history.rotation, 1.0, atol=1e-5)
    assert (history.row_norm_min >= 0).all() and history.row_norm_max.nunique() > 1


def test_rotation_leaves_out_rows_of_zero_length():
    from jaxgd.science import metrics

    W0 = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    W = jnp.array([[2.0, 0.0], [0.0, 0.0], [1.0, -1.0]])  # the same direction, zero length, a right angle
    snapshot = metrics.Snapshot(*[None] * len(metrics.Snapshot._fields))._replace(params={"W": W}, initial={"W": W0})
    assert float(metrics.rotation(snapshot)) == pytest.approx(0.5)


def test_float32_and_float64_runs_of_a_seed_start_from_the_same_data_and_parameters():
    single = jaxgd.materialize(make_spec(model={"bias": True, "b_scale": 0.5}), 1)
    double = jaxgd.materialize(make_spec(model={"bias": True, "b_scale": 0.5}, dtype="float64"), 1)
    for name in ("X_train", "y_train", "X_test", "y_test"):
        assert double[name].dtype == np.float64
        np.testing.assert_allclose(double[name], single[name], rtol=1e-6, atol=1e-7)
    for name, values in single["params"].items():
        np.testing.assert_allclose(double["params"][name], values, rtol=1e-6, atol=1e-7)


def test_margin_and_rotation_formulas():
    spec = make_spec(seeds=1, steps=1, log_every=1, dtype="float64", metrics=["margin", "rotation", "movement_sqrt_m"],
                     data={"labels": "sign"}, loss={"name": "logistic"},
                     model={"activation": "relu", "a_init": "pm1", "train_a": False})
    row = jaxgd.run(spec, progress=False).history.iloc[0]
    run = jaxgd.materialize(spec, 0)
    W, a = run["params"]["W"], run["params"]["a"]
    f = np.maximum(run["X_train"] @ W.T, 0) @ a / np.sqrt(8)
    assert row.margin == pytest.approx(np.min(run["y_train"] * f) / np.linalg.norm(W), rel=1e-9)  # k = 1: W only, relu
    assert row.rotation == pytest.approx(1.0) and row.movement_sqrt_m == 0


def test_unit_norm_inputs_are_our_parity_run_with_a_d_times_larger_first_layer_step():
    """Paper 3's two readings of the input scale (sweeps/low_rotation.toml): x in {+-1}^d
    with W ~ N(0, I/d) and step lr, and x / sqrt(d) (model.input_scaling = "sqrt_d") with
    W ~ N(0, I) (w_scale = sqrt(d)) and step d lr, are one trajectory; movement scales by sqrt(d)."""
    d, lr = 8, 0.5
    ours = make_spec(seeds=2, steps=60, log_every=20, metrics=["train_loss", "test_error", "rotation", "movement_sqrt_m"],
                     data={"name": "parity", "d": d, "n": 32, "labels": "sign"}, loss={"name": "logistic"},
                     model={"width": 16, "activation": "relu", "scaling": "ntk", "a_init": "pm1", "train_a": False},
                     optimizer={"name": "gd", "lr": lr})
    unit_norm = make_spec(ours, model={"input_scaling": "sqrt_d", "w_scale": d**0.5}, optimizer={"lr": d * lr})
    a, b = (jaxgd.run(s, progress=False).history for s in (ours, unit_norm))
    for metric, scale in {"train_loss": 1, "test_error": 1, "rotation": 1, "movement_sqrt_m": d**0.5}.items():
        np.testing.assert_allclose(b[metric], scale * a[metric], rtol=1e-4, atol=1e-6, err_msg=metric)
    assert a["movement_sqrt_m"].iloc[-1] > 0.01  # the weights moved
