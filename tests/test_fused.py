"""The fused Pallas kernel (`engine.kernel = "fused"`, run here in interpret mode)
trains the same runs as the XLA path: the same logged losses to float rounding, the
same divergence steps, the same result alone or in a grid; settings it does not
support are refused before anything compiles; it lowers to Triton IR for GPUs."""

import chex
import jax
import numpy as np
import pytest
from conftest import make_spec
from scale_helpers import assert_same_results, child_env, jaxgd_cli, write_spec

import jaxgd
from jaxgd.engine import dispatch as engine
from jaxgd.engine import fused
from jaxgd.sweep import plan
from jaxgd.sweep import spec as specs

LOSS_METRICS = ["train_loss", "test_loss"]


def fused_spec(spec):
    return {**spec, "engine": {**spec.get("engine", {}), "kernel": "fused"}}


def run_both(spec):
    """The same spec run by the XLA path and by the fused kernel."""
    return jaxgd.run(spec, progress=False), jaxgd.run(fused_spec(spec), progress=False)


def max_relative_difference(a, b) -> float:
    """Largest |a - b| / |b| over the logged losses; both must be NaN at the same places."""
    a, b = a[LOSS_METRICS].to_numpy(), b[LOSS_METRICS].to_numpy()
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    finite = ~np.isnan(b)
    return float(np.max(np.abs(a[finite] - b[finite]) / np.maximum(np.abs(b[finite]), 1e-30)))


# Each case mixes several settings, to cover them all in few compilations. Widths and
# dimensions are not powers of two (padded units and inputs), n = 150 spans three row
# blocks of 64 (the last one partly padded), n = 24 one block of 32; softplus and
# sigmoid are not 0 at 0, so their padded hidden units must be masked.
CASES = {
    "relu_standard_bias_three_blocks": dict(
        data={"n": 150, "d": 5}, model={"width": 12, "activation": "relu", "scaling": "standard", "bias": True,
                                         "b_scale": 0.5}, optimizer={"lr": 0.02, "lr_scale_b": 3.0}),
    "tanh_ntk_train_W_exp_decay": dict(
        data={"n": 24, "d": 5}, model={"width": 12, "activation": "tanh", "train_a": False, "input_scaling": "sqrt_d"},
        optimizer={"lr": 0.5, "lr_scale_W": 2.0, "schedule": "exp_decay", "decay_rate": 0.05}),
    "softplus_mean_field_train_a_logistic": dict(
        data={"n": 24, "d": 5, "labels": "sign"}, loss={"name": "logistic"},
        model={"width": 12, "activation": "softplus", "scaling": "mean_field", "bias": True, "b_scale": 1.0,
               "train_W": False, "train_b": False},
        optimizer={"lr": 2.0, "schedule": "step_decay", "decay_every": 10.0}),
    "sigmoid_huber_float64": dict(
        dtype="float64", data={"n": 70, "d": 17, "noise": 0.5},
        model={"width": 20, "activation": "sigmoid", "bias": True, "b_scale": 0.3}, loss={"name": "huber", "huber_delta": 0.3},
        optimizer={"lr": 1.0, "schedule": "poly_decay", "decay_tau": 5.0, "lr_scale_a": 0.5}),
}


@pytest.mark.parametrize("settings", CASES.values(), ids=CASES.keys())
def test_fused_losses_equal_xla(settings):
    xla, fused_ = run_both(make_spec(steps=40, log_every=10, **settings))
    assert len(fused_.history) == 2 * 5
    assert np.isfinite(xla.history[LOSS_METRICS].to_numpy()).all()
    assert max_relative_difference(fused_.history, xla.history) <= 1e-5
    assert fused_.history.train_loss.iloc[-1] < fused_.history.train_loss.iloc[0]  # it trains


def test_divergence_steps_equal_xla():
    """Large step sizes diverge at the same step on both paths, NaN from there on;
    the stable runs are unchanged."""
    spec = make_spec(steps=50, log_every=5, optimizer={"lr": [0.1, 5.0, 20.0, 1e4]})
    xla, fused_ = run_both(spec)
    np.testing.assert_array_equal(fused_.summary.diverged_step, xla.summary.diverged_step)
    diverged = fused_.summary[fused_.summary.diverged]
    assert len(diverged) >= 5 and not fused_.summary[fused_.summary.lr == 0.1].diverged.any()
    for run_id, row in diverged.iterrows():
        rows = fused_.history[fused_.history.run_id == run_id]
        assert rows[rows.step >= row.diverged_step].train_loss.isna().all()
        assert rows[rows.step < row.diverged_step].train_loss.notna().all()
    assert max_relative_difference(fused_.history, xla.history) <= 1e-5


@pytest.fixture(scope="module")
def grid():
    """A fused sweep of 6 runs (one group) in chunks of 4, counting how often the
    fused program is traced."""
    traced, train = [], fused.train

    @chex.assert_max_traces(n=1)
    def counted_train(static, hyper, data, params):
        traced.append(hyper["optimizer.lr"].shape)
        return train(static, hyper, data, params)

    spec = make_spec(seeds=2, steps=30, log_every=10, model={"width": 12}, optimizer={"lr": [0.05, 0.2, 0.8]},
                     engine={"kernel": "fused", "chunk_size": 4})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fused, "train", counted_train)
        results = jaxgd.run(spec, progress=False)
    return results, traced


def test_fused_program_is_traced_once_per_group(grid):
    results, traced = grid
    assert results.stats["groups"] == 1 and results.stats["chunks"] == 2
    assert traced == [(3,)]  # 6 runs in 2 even chunks


def test_run_alone_equals_run_in_grid(grid):
    results, _ = grid
    row = results.summary.loc[5]  # lr 0.8, seed 1: in the second chunk, beside a padding copy of itself
    alone = jaxgd.run(make_spec(seeds=[int(row.seed)], steps=30, log_every=10, model={"width": 12},
                                optimizer={"lr": float(row.lr)}, engine={"kernel": "fused"}), progress=False)
    in_grid = results.history[results.history.run_id == 5].reset_index(drop=True)
    assert max_relative_difference(in_grid, alone.history) <= 1e-6


@pytest.mark.parametrize("settings, key", [
    (dict(optimizer={"name": "sgd", "batch_size": 8}), "optimizer.name"),
    (dict(optimizer={"name": ["gd", "online_sgd"]}), "optimizer.name"),
    (dict(model={"constraint": "spherical"}), "model.constraint"),
    (dict(model={"activation": ["relu", "gelu"]}), "model.activation"),
    (dict(engine={"precision": "high"}), "engine.precision"),
    (dict(metrics=["train_loss", "grad_norm"]), "metrics"),
])
def test_unsupported_settings_are_refused_before_compiling(no_compile, settings, key):
    spec = make_spec(**settings)
    specs.load(spec)  # valid for the XLA path
    with pytest.raises(jaxgd.SpecError, match=rf"^{key}: got .*engine.kernel = 'fused'"):
        jaxgd.run(fused_spec(spec), progress=False)


@pytest.mark.parametrize("kernel", ["pallas", ["xla", "fused"]])
def test_kernel_setting_is_a_static_choice(no_compile, kernel):
    with pytest.raises(jaxgd.SpecError, match="engine.kernel"):
        jaxgd.run(make_spec(engine={"kernel": kernel}), progress=False)


def lower_for_gpu(monkeypatch, **settings):
    """Lower the fused program of `settings` for CUDA, Pallas compiling (not interpreting)
    its kernel with the Triton backend: this checks the kernel against Triton's rules
    (block shapes, dots, loops, primitives) without a GPU."""
    monkeypatch.setattr(fused, "interpret", lambda: False)
    group = plan.make(specs.load(fused_spec(make_spec(**settings)))).groups[0]
    runs = lambda dtype: jax.ShapeDtypeStruct((4,), dtype)
    with engine.numerics(group.static):
        program = jax.jit(lambda hyper, seeds: engine.train_runs_fused(group.static, hyper, seeds))
        return program.trace({k: runs(v.dtype) for k, v in group.hyper.items()}, runs(group.seeds.dtype)).lower(
            lowering_platforms=("cuda",))


@pytest.mark.parametrize("activation", specs.fused_kernel_allows()["model.activation"])
def test_kernel_lowers_to_triton(monkeypatch, activation):
    lowered = lower_for_gpu(monkeypatch, data={"n": 150, "labels": "sign"}, loss={"name": "logistic"},
                            model={"activation": activation, "bias": True}, optimizer={"schedule": "exp_decay"})
    assert "xla.gpu.triton" in lowered.as_text()  # the Triton kernel call


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="4 host devices: where there is a GPU, JAX computes there")
def test_four_devices_give_the_one_device_numbers(tmp_path):
    """One Pallas call per device (shard_map), each run in the same chunk as on one device."""
    spec = make_spec(seeds=3, steps=20, log_every=10, model={"width": [4, 8]}, optimizer={"lr": [0.05, 0.5]},
                     engine={"kernel": "fused", "chunk_size": 2})
    out = tmp_path / "four"
    done = jaxgd_cli("run", write_spec(tmp_path / "s.toml", spec), "--out", out,
                     env=child_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"))
    assert done.returncode == 0, done.stderr
    assert "on 4 devices" in done.stderr
    assert_same_results(out, jaxgd.run(spec, progress=False))
