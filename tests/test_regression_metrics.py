"""Lipschitz estimates, NTK, movement, pattern flips, displacement and the symmetry
quantity, against NumPy on the materialized data and parameters."""

import numpy as np
import pytest
from conftest import make_spec

import jaxgd

STEP0 = dict(seeds=2, steps=1, log_every=1, dtype="float64")


def first_row(spec, run_id):
    history = jaxgd.run(spec, progress=False).history
    return history[(history.run_id == run_id) & (history.step == 0)].iloc[0], jaxgd.materialize(spec, run_id)


def test_lipschitz_upper_bound_and_operator_norm_match_numpy():
    spec = make_spec(**STEP0, metrics=["lipschitz_upper", "symmetry_C"],
                     model={"activation": ["tanh", "sigmoid"], "scaling": "mean_field"})
    for run_id, lip_act in ((0, 1.0), (2, 0.25)):
        row, run = first_row(spec, run_id)
        W, a = run["params"]["W"], run["params"]["a"]
        assert row.lipschitz_upper == pytest.approx(lip_act / 8 * np.linalg.norm(a) * np.linalg.norm(W, 2), rel=1e-5)
        assert row.symmetry_C == pytest.approx(np.sum(W**2) - np.sum(a**2), rel=1e-12)


@pytest.mark.parametrize("kappa_a", [1.0, 0.0, 10.0])
def test_ntk_smallest_eigenvalue_matches_numpy(kappa_a):
    """K = sum_l kappa_l J_l J_l^T, the kernel of gradient descent with per-layer step sizes:
    J J^T at the default factors, the first layer's (and bias's) alone at kappa_a = 0."""
    spec = make_spec(**STEP0, metrics=["ntk_min_eig"], data={"n": 6}, optimizer={"lr": 0.1, "lr_scale_a": kappa_a},
                     model={"activation": "tanh", "width": 5, "bias": True, "b_scale": 0.3})
    row, run = first_row(spec, 1)
    X, W, a, b = run["X_train"], run["params"]["W"], run["params"]["a"], run["params"]["b"]
    c = 5**-0.5
    pre = X @ W.T + b
    J_W = (c * (a * (1 - np.tanh(pre) ** 2))[:, :, None] * X[:, None, :]).reshape(6, -1)  # (n, m d)
    J_a, J_b = c * np.tanh(pre), c * a * (1 - np.tanh(pre) ** 2)
    K = J_W @ J_W.T + kappa_a * J_a @ J_a.T + J_b @ J_b.T
    assert row.ntk_min_eig == pytest.approx(np.linalg.eigvalsh(K)[0], rel=1e-8)


def test_ntk_only_at_chosen_steps():
    spec = make_spec(steps=20, log_every=5, metrics=["train_loss", "ntk_min_eig"], measure={"ntk_steps": [0, 20]},
                     summary_steps=[0, 20])
    results = jaxgd.run(spec, progress=False)
    h = results.history
    assert h[h.step.isin([0, 20])].ntk_min_eig.notna().all() and h[h.step.isin([5, 10, 15])].ntk_min_eig.isna().all()
    assert (results.summary.ntk_min_eig_at_0 > 0).all()
    np.testing.assert_array_equal(results.summary.train_loss_at_20, results.summary.final_train_loss)
    with pytest.raises(jaxgd.SpecError, match=r"measure\.ntk_steps: steps \[7\] are not logged"):
        jaxgd.load_spec(make_spec(steps=20, log_every=5, measure={"ntk_steps": [7]}))


def test_movement_flips_and_displacement():
    spec = make_spec(steps=30, log_every=10, dtype="float64", optimizer={"lr": 1.0},
                     metrics=["movement_W", "movement_a", "pattern_flips", "displacement", "train_loss"],
                     measure={"displacement_from": 10})
    h = jaxgd.run(spec, progress=False).history
    start = h[h.step == 0]
    assert (start.movement_W == 0).all() and (start.movement_a == 0).all() and (start.pattern_flips == 0).all()
    assert h[h.step == 0].displacement.isna().all() and (h[h.step == 10].displacement == 0).all()
    later = h[h.step == 30]
    assert (later.movement_W > 0).all() and (later.displacement > 0).all()
    assert ((later.pattern_flips > 0) & (later.pattern_flips < 1)).all()


def test_lipschitz_estimates_bracket_and_agree():
    """lower <= upper for every run and logged step; on a smooth 1-D net the
    finite-difference estimate on a dense grid agrees with the gradient one within 5%."""
    spec = make_spec(seeds=3, steps=200, log_every=50, metrics=["lipschitz_lower", "lipschitz_fd", "lipschitz_upper"],
                     data={"name": "sin_1d", "d": 1, "n": 64, "n_test": 64, "noise": 0.1},
                     model={"activation": "tanh", "width": [16, 64], "bias": True, "b_scale": 1.0},
                     optimizer={"lr": 0.5})
    h = jaxgd.run(spec, progress=False).history
    assert (h.lipschitz_lower <= h.lipschitz_upper * (1 + 1e-6)).all()
    assert (h.lipschitz_fd <= h.lipschitz_upper * (1 + 1e-6)).all()
    np.testing.assert_allclose(h.lipschitz_fd, h.lipschitz_lower, rtol=0.05)
