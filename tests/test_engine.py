"""Engine properties: a run's result depends only on its own settings and seed, never
on the runs beside it; divergence freezes one run and leaves the others alone; one
compiled program per group of runs with the same static settings."""

import importlib
import sys
import textwrap

import chex
import numpy as np
import pandas as pd
import pytest
from conftest import make_spec

import jaxgd
from jaxgd.engine import dispatch as engine
from jaxgd.engine import loop
from jaxgd.front import api
from jaxgd.sweep import plan as planning
from jaxgd.sweep import spec as specs

METRICS = ["train_loss", "test_loss", "grad_norm", "norm_W", "norm_a"]


def grid_spec(**engine_settings):
    """500 runs: 2 widths x 25 step sizes x 2 noise levels x 5 seeds."""
    return make_spec(
        seeds=5, steps=60, log_every=15, metrics=METRICS,
        data={"name": "two_layer_teacher", "noise": [0.0, 0.2]},
        model={"width": [6, 10]},
        optimizer={"lr": {"logspace": [-2, 0, 25]}},
        engine=engine_settings,
    )


def alone_spec(row):
    """The spec of one run of the grid, on its own."""
    return make_spec(
        seeds=[int(row.seed)], steps=60, log_every=15, metrics=METRICS,
        data={"name": "two_layer_teacher", "noise": float(row.noise)},
        model={"width": int(row.width)},
        optimizer={"lr": float(row.lr)},
    )


def max_relative_difference(a: pd.DataFrame, b: pd.DataFrame) -> float:
    a, b = a[METRICS].to_numpy(), b[METRICS].to_numpy()
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


@pytest.fixture(scope="module")
def grid():
    return jaxgd.run(grid_spec(), progress=False)


def test_grid_has_every_run_and_logged_step(grid):
    assert grid.stats["runs"] == 500 == len(grid.summary)
    assert len(grid.history) == 500 * 5
    assert list(grid.history.columns) == ["run_id", "seed", "noise", "width", "lr", "step"] + METRICS
    assert sorted(grid.history["step"].unique()) == [0, 15, 30, 45, 60]
    assert grid.summary["run_id"].tolist() == list(range(500))


@pytest.mark.parametrize("run_id", [0, 137, 499])
def test_run_in_grid_equals_run_alone(grid, run_id):
    row = grid.summary.loc[run_id]
    alone = jaxgd.run(alone_spec(row), progress=False)
    in_grid = grid.history[grid.history["run_id"] == run_id].reset_index(drop=True)
    assert max_relative_difference(in_grid, alone.history) <= 1e-5


@pytest.mark.parametrize("chunking", [{"chunk_size": 7}, {"chunk_size": 64}, {"memory_budget_mb": 1},
                                      {"chunk_size": 7, "strategy": "map"}])
def test_chunk_size_and_strategy_do_not_change_results(grid, chunking):
    chunked = jaxgd.run(grid_spec(**chunking), progress=False)
    assert chunked.stats["chunks"] > grid.stats["chunks"]
    assert max_relative_difference(chunked.history, grid.history) <= 1e-5


def test_data_and_initialization_depend_on_the_seed_alone():
    spec = make_spec(seeds=[3, 4], model={"width": [5, 9]}, optimizer={"lr": [0.1, 0.2]})
    first = jaxgd.materialize(spec, 0)  # width 5, lr 0.1, seed 3
    assert first["seed"] == 3 and first["params"]["W"].shape == (5, 3)
    same_seed_other_lr = jaxgd.materialize(spec, 2)
    other_width = jaxgd.materialize(spec, 4)
    other_seed = jaxgd.materialize(spec, 1)
    for key in ("X_train", "y_train", "X_test", "y_test"):
        np.testing.assert_array_equal(first[key], same_seed_other_lr[key])
        np.testing.assert_array_equal(first[key], other_width[key])  # the data do not depend on width
        assert not np.array_equal(first[key], other_seed[key])
    np.testing.assert_array_equal(first["params"]["W"], same_seed_other_lr["params"]["W"])
    assert first["settings"]["optimizer.lr"] == pytest.approx(0.1)
    assert first["settings"]["model.width"] == 5


def test_divergence_is_recorded_and_leaves_other_runs_unchanged():
    spec = make_spec(steps=100, log_every=10, optimizer={"lr": [0.1, 1e4]})
    both = jaxgd.run(spec, progress=False)
    summary = both.summary.set_index("run_id")
    stable, exploding = summary[summary.lr == 0.1], summary[summary.lr == 1e4]
    assert not stable.diverged.any() and stable.diverged_step.isna().all()
    assert exploding.diverged.all()
    assert (exploding.diverged_step >= 1).all() and (exploding.diverged_step < 100).all()
    assert exploding.final_train_loss.isna().all() and stable.final_train_loss.notna().all()

    history = both.history
    for run_id, row in exploding.iterrows():
        rows = history[history.run_id == run_id]
        before = rows[rows.step < row.diverged_step]
        after = rows[rows.step >= row.diverged_step]
        assert before.train_loss.notna().all() and (before.train_loss <= 1e8).all()
        assert after.train_loss.isna().all() and len(after) > 0

    alone = jaxgd.run(make_spec(steps=100, log_every=10, optimizer={"lr": 0.1}), progress=False)
    in_both = history[history.lr == 0.1].reset_index(drop=True)
    np.testing.assert_allclose(in_both.train_loss, alone.history.train_loss, rtol=1e-6)


def test_divergence_bound_catches_finite_blowups():
    loose = jaxgd.run(make_spec(optimizer={"lr": 3.0}), progress=False)
    tight = jaxgd.run(make_spec(optimizer={"lr": 3.0}, engine={"divergence_bound": 1e-3}), progress=False)
    assert not loose.summary.diverged.all() or loose.summary.diverged_step.min() > 0
    assert tight.summary.diverged.all() and (tight.summary.diverged_step == 0).all()


def test_auto_strategy_maps_large_runs_on_the_host():
    def strategy(width, **engine_settings):
        spec = make_spec(data={"n": 512, "d": 32}, model={"width": width}, engine=engine_settings)
        (group,) = planning.make(specs.load(spec)).groups
        assert planning.bytes_per_run(group.static) > planning.HOST_MAP_ABOVE_BYTES or width < 256
        return group.strategy

    assert strategy(8) == "vmap"
    assert strategy(256) == "map"
    assert strategy(256, strategy="vmap") == "vmap" and strategy(8, strategy="map") == "map"


@pytest.mark.parametrize("strategy", ["vmap", "map"])
def test_one_compilation_per_group(monkeypatch, strategy):
    chex.clear_trace_counter()  # counts are kept across the parametrized cases
    traced, train_run = [], loop.train_run

    @chex.assert_max_traces(n=2)
    def counted_train_run(static, hyper, seed):
        traced.append(static["model.width"])
        return train_run(static, hyper, seed)

    monkeypatch.setattr(engine, "train_run", counted_train_run)
    results = jaxgd.run(
        make_spec(model={"width": [4, 8]}, optimizer={"lr": {"logspace": [-2, -1, 9]}},
                  engine={"chunk_size": 4, "strategy": strategy}),
        progress=False,
    )
    assert results.stats["groups"] == 2 and results.stats["chunks"] == 2 * 5
    assert sorted(traced) == [4, 8]
    assert results.summary.final_train_loss.notna().all()


def test_float64_runs_in_double_precision():
    results = jaxgd.run(make_spec(dtype="float64"), progress=False)
    assert results.history.train_loss.dtype == np.float64
    data = jaxgd.materialize(make_spec(dtype="float64"), 0)
    assert data["X_train"].dtype == np.float64 and data["params"]["W"].dtype == np.float64


def test_logged_steps_include_the_last_step():
    results = jaxgd.run(make_spec(steps=25, log_every=10), progress=False)
    assert sorted(results.history.step.unique()) == [0, 10, 20, 25]


def test_same_spec_same_results():
    a = jaxgd.run(make_spec(optimizer={"lr": [0.05, 0.5]}), progress=False)
    b = jaxgd.run(make_spec(optimizer={"lr": [0.05, 0.5]}), progress=False)
    pd.testing.assert_frame_equal(a.history, b.history)


def test_static_string_settings_can_be_swept():
    results = jaxgd.run(make_spec(model={"activation": ["relu", "tanh"], "scaling": ["ntk", "mean_field"]}), progress=False)
    assert results.stats["groups"] == 4
    assert set(results.summary.activation) == {"relu", "tanh"}
    assert results.summary.final_train_loss.notna().all()


def test_materialize_refuses_unknown_run():
    with pytest.raises(ValueError, match="run_id"):
        jaxgd.materialize(make_spec(), 99)


def test_materialize_compiles_a_groups_setup_once_for_all_its_runs(monkeypatch):
    """Checking cell after cell by hand: the runs of one group reuse its compiled setup
    (traced once), and each gets its own data and parameters."""
    api._setup_program.cache_clear()  # groups compiled by earlier tests stay compiled
    traced = []
    setup = loop.setup
    monkeypatch.setattr(loop, "setup", lambda cfg, seed: traced.append(cfg.model.width) or setup(cfg, seed))
    spec = make_spec(seeds=3, model={"width": [5, 6]}, optimizer={"lr": [0.1, 0.2]})
    runs = [jaxgd.materialize(spec, run_id) for run_id in range(12)]
    assert sorted(traced) == [5, 6]
    assert [r["params"]["W"].shape[0] for r in runs] == [5] * 6 + [6] * 6
    assert len({r["params"]["W"].tobytes() for r in runs}) == 6  # 3 seeds per width; lr does not change the start


def test_materialize_compiles_again_for_a_plugin_registered_again(tmp_path, monkeypatch):
    """A plugin module reloaded (importlib.reload, as in a notebook) registers its names
    again: materialize's kept programs of the old functions gave their data and parameters."""
    plugin = tmp_path / "reloaded_plugin.py"
    source = textwrap.dedent("""
        import jax
        import jaxgd

        @jaxgd.dataset("reloaded_gaussian")
        def reloaded_gaussian(key, n, d):
            return SCALE * jax.random.normal(key, (n, d)), jax.random.normal(key, (n,))
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = make_spec(seeds=1, plugins=["reloaded_plugin"], data={"name": "reloaded_gaussian"})
    plugin.write_text(source.replace("SCALE", "1.0"))
    before = jaxgd.materialize(spec, 0, step="final")
    plugin.write_text(source.replace("SCALE", "3.0"))
    importlib.reload(sys.modules["reloaded_plugin"])
    after = jaxgd.materialize(spec, 0, step="final")
    np.testing.assert_allclose(after["X_train"], 3 * before["X_train"], rtol=1e-6)
    trained = jaxgd.run(make_spec(spec, save_params=["final"]), progress=False).params(0, "final")
    np.testing.assert_allclose(after["params"]["W"], trained["W"], rtol=1e-5, atol=1e-6)


def test_init_seed_starts_every_seed_alike_and_leaves_them_their_own_batches():
    """With init_seed, runs of different seeds share their teacher and initial parameters
    (paper 5's authors' protocol: one initial condition, many SGD runs) and still differ
    by their online batches; a run whose init_seed is its own seed is the run without it."""
    spec = make_spec(seeds=[3, 4], steps=30, log_every=10, metrics=["train_loss", "overlap_max"],
                     data={"name": "single_index", "n": 1, "n_test": 1, "d": 16},
                     optimizer={"name": "online_sgd", "lr": 0.05, "batch_size": 1})
    shared = make_spec(spec, init_seed=7)
    starts = [jaxgd.materialize(shared, run_id) for run_id in (0, 1)]
    own = [jaxgd.materialize(spec, run_id) for run_id in (0, 1)]
    assert starts[0]["seed"] == 3 and starts[1]["seed"] == 4
    np.testing.assert_array_equal(starts[0]["teacher"], starts[1]["teacher"])
    np.testing.assert_array_equal(starts[0]["params"]["W"], starts[1]["params"]["W"])
    assert not np.array_equal(own[0]["params"]["W"], own[1]["params"]["W"])

    history = jaxgd.run(shared, progress=False).history.set_index(["run_id", "step"])
    assert history.loc[(0, 0), "overlap_max"] == history.loc[(1, 0), "overlap_max"]  # the same start
    assert history.loc[(0, 30), "overlap_max"] != history.loc[(1, 30), "overlap_max"]  # their own batches
    alone = jaxgd.run(make_spec(spec, seeds=[7]), progress=False).history
    as_its_own = jaxgd.run(make_spec(spec, seeds=[7], init_seed=7), progress=False).history
    pd.testing.assert_frame_equal(as_its_own, alone, check_exact=True)
