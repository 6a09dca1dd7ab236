"""The engine against a plain NumPy float64 implementation of gradient descent.

For every run of a small float64 sweep, the NumPy reference below starts from the
run's own data and initial parameters (`jaxgd.materialize`), takes the same gradient
steps with hand-derived gradients, and must reproduce the logged train_loss and
test_loss to a relative error of at most 1e-9 at every logged step.

The reference deliberately uses no JAX: forward pass, losses and gradients are written
out in NumPy from the formulas

    f(x) = c_m * sum_j a_j act(w_j . x + b_j),  c_m = 1, 1/sqrt(m) or 1/m
    mse = mean 0.5 (f - y)^2,  logistic = mean log(1 + exp(-y f))
    theta <- theta - lr * grad  (trained layers only)

and the history row at step t holds the metrics after t updates (step 0: the init).
"""

from __future__ import annotations

import numpy as np
import pytest

import jaxgd

RTOL = 1e-9
METRICS = ("train_loss", "test_loss")

# --------------------------------------------------------------------------------------
# NumPy reference
# --------------------------------------------------------------------------------------

# name -> (act(z), act'(z)); relu'(0) = 0 as in JAX.
ACTIVATIONS = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(z.dtype)),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
}

SCALINGS = {
    "standard": lambda m: 1.0,
    "ntk": lambda m: 1.0 / np.sqrt(m),
    "mean_field": lambda m: 1.0 / m,
}


def forward(params, X, model):
    """f(X) (n,), with the pre-activations (n, m) the backward pass needs."""
    pre = X @ params["W"].T
    if "b" in params:
        pre = pre + params["b"]
    act, _ = ACTIVATIONS[model["activation"]]
    c = SCALINGS[model["scaling"]](params["W"].shape[0])
    return c * (act(pre) @ params["a"]), pre


# name -> (per-sample loss(f, y), its derivative in f); the loss is their mean over samples.
LOSSES = {
    "mse": (lambda f, y: 0.5 * (f - y) ** 2, lambda f, y: f - y),
    # d/df log(1 + exp(-y f)) = -y sigmoid(-y f) = -y exp(-log(1 + exp(y f)))
    "logistic": (lambda f, y: np.logaddexp(0.0, -y * f), lambda f, y: -y * np.exp(-np.logaddexp(0.0, y * f))),
}


def loss_value(f, y, loss):
    return np.mean(LOSSES[loss][0](f, y))


def loss_derivative(f, y, loss):
    """d(mean loss)/df_i, (n,)."""
    return LOSSES[loss][1](f, y) / f.shape[0]


def gradients(params, X, y, model, loss):
    """Hand-derived gradients of the training loss w.r.t. every parameter."""
    f, pre = forward(params, X, model)
    act, dact = ACTIVATIONS[model["activation"]]
    c = SCALINGS[model["scaling"]](params["W"].shape[0])
    g = loss_derivative(f, y, loss)  # (n,)
    grads = {"a": c * act(pre).T @ g}  # (m,)
    g_pre = c * np.outer(g, params["a"]) * dact(pre)  # (n, m)
    grads["W"] = g_pre.T @ X  # (m, d)
    if "b" in params:
        grads["b"] = g_pre.sum(axis=0)  # (m,)
    return grads


def trained_layers(model, params):
    return [k for k in ("W", "a", "b") if k in params and model.get(f"train_{k}", True)]


def reference_history(run, model, loss, lr, steps, logged):
    """{metric: (len(logged),)} of gradient descent from the run's initial parameters."""
    params = {k: np.array(v, dtype=np.float64) for k, v in run["params"].items()}
    layers = trained_layers(model, params)
    X, y = run["X_train"], run["y_train"]
    X_test, y_test = run["X_test"], run["y_test"]
    out = {m: [] for m in METRICS}
    for t in range(steps + 1):
        if t in logged:
            out["train_loss"].append(loss_value(forward(params, X, model)[0], y, loss))
            out["test_loss"].append(loss_value(forward(params, X_test, model)[0], y_test, loss))
        if t < steps:
            grads = gradients(params, X, y, model, loss)
            params = {k: v - lr * grads[k] if k in layers else v for k, v in params.items()}
    return {m: np.array(v) for m, v in out.items()}


# --------------------------------------------------------------------------------------
# The sweeps
# --------------------------------------------------------------------------------------

STEPS, LOG_EVERY = 48, 5  # logged steps 0, 5, ..., 45 and the last one, 48
LOGGED = list(range(0, STEPS + 1, LOG_EVERY)) + [STEPS]
SEEDS = 2

CASES = {
    "mse-relu-ntk-bias-all-layers": {
        "data": {"name": "two_layer_teacher", "n": 20, "n_test": 10, "d": 3},
        "model": {"width": 7, "activation": "relu", "scaling": "ntk", "bias": True, "b_scale": 0.5},
        "optimizer": {"lr": [0.05, 0.2]},
        "loss": {"name": "mse"},
    },
    "logistic-tanh-meanfield-W-only": {
        "data": {"name": "linear_teacher", "n": 20, "n_test": 10, "d": 3, "labels": "sign"},
        "model": {"width": 8, "activation": "tanh", "scaling": "mean_field", "train_a": False, "a_scale": 4.0},
        "optimizer": {"lr": [4.0, 16.0]},
        "loss": {"name": "logistic"},
    },
}


def make_spec(case):
    return {
        "seeds": SEEDS,
        "steps": STEPS,
        "log_every": LOG_EVERY,
        "dtype": "float64",
        "metrics": list(METRICS),
        **CASES[case],
    }


@pytest.fixture(scope="module", params=list(CASES))
def sweep(request):
    """The case's spec, the engine's history, and per run: its materialized data and
    parameters and the NumPy reference history."""
    case = request.param
    spec = make_spec(case)
    history = jaxgd.run(spec, progress=False).history
    model, loss = spec["model"], spec["loss"]["name"]
    runs = {}
    for run_id, rows in history.groupby("run_id"):
        rows = rows.sort_values("step")
        run = jaxgd.materialize(spec, int(run_id))
        lr = float(rows["lr"].iloc[0])
        runs[int(run_id)] = {
            "rows": rows,
            "run": run,
            "lr": lr,
            "reference": reference_history(run, model, loss, lr, STEPS, LOGGED),
        }
    return {"case": case, "spec": spec, "history": history, "runs": runs}


def relative_error(engine, reference):
    return np.abs(engine - reference) / np.abs(reference)


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


def test_sweep_has_every_run_and_logged_step(sweep):
    spec, history = sweep["spec"], sweep["history"]
    lrs = spec["optimizer"]["lr"]
    assert len(sweep["runs"]) == len(lrs) * SEEDS
    combos = {(r["lr"], int(r["rows"]["seed"].iloc[0])) for r in sweep["runs"].values()}
    assert combos == {(lr, s) for lr in lrs for s in range(SEEDS)}
    for run_id, r in sweep["runs"].items():
        assert r["rows"]["step"].tolist() == LOGGED, run_id
        # materialize describes the same run as the history row
        assert r["run"]["seed"] == int(r["rows"]["seed"].iloc[0])
        assert r["run"]["settings"]["optimizer.lr"] == r["lr"]
        assert set(r["run"]["params"]) == ({"W", "a", "b"} if spec["model"].get("bias") else {"W", "a"})
    assert history[list(METRICS)].notna().all().all()


@pytest.mark.parametrize("metric", METRICS)
def test_engine_matches_numpy_reference(sweep, metric):
    worst = 0.0
    for run_id, r in sweep["runs"].items():
        engine = r["rows"][metric].to_numpy(np.float64)
        reference = r["reference"][metric]
        err = relative_error(engine, reference)
        worst = max(worst, float(err.max()))
        bad = np.flatnonzero(~(err <= RTOL))
        assert bad.size == 0, (
            f"{sweep['case']} run {run_id} (lr={r['lr']}, seed={r['run']['seed']}): {metric} "
            f"differs from the NumPy reference at steps {[LOGGED[i] for i in bad]}; "
            f"engine {engine[bad]}, reference {reference[bad]}, relative error {err[bad]}"
        )
    print(f"\n{sweep['case']} {metric}: max relative error {worst:.3e}")


def test_training_moves_the_loss(sweep):
    """The comparison is only meaningful if the runs actually train."""
    for run_id, r in sweep["runs"].items():
        ref = r["reference"]["train_loss"]
        assert ref[-1] < 0.8 * ref[0], (run_id, ref[0], ref[-1])


def test_tolerance_catches_a_tiny_step_size_error(sweep):
    """Sensitivity: a reference with lr off by 1e-6 (relative) is rejected at RTOL,
    so the comparison above would catch an engine that got the step slightly wrong."""
    spec = sweep["spec"]
    for run_id, r in sweep["runs"].items():
        perturbed = reference_history(
            r["run"], spec["model"], spec["loss"]["name"], r["lr"] * (1 + 1e-6), STEPS, LOGGED
        )
        err = relative_error(r["rows"]["train_loss"].to_numpy(np.float64), perturbed["train_loss"])
        assert err.max() > 10 * RTOL, (run_id, err.max())


def test_reference_gradients_match_finite_differences(sweep):
    """The hand-derived gradients are right (checked independently of the engine)."""
    spec = sweep["spec"]
    model, loss = spec["model"], spec["loss"]["name"]
    run = sweep["runs"][0]["run"]
    X, y = run["X_train"], run["y_train"]
    params = {k: np.array(v, dtype=np.float64) for k, v in run["params"].items()}
    grads = gradients(params, X, y, model, loss)
    h = 1e-6
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            numeric[idx] = (
                loss_value(forward(plus, X, model)[0], y, loss)
                - loss_value(forward(minus, X, model)[0], y, loss)
            ) / (2 * h)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)
