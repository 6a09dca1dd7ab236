"""Step-size schedules, per-layer multipliers and mini-batch SGD."""

import numpy as np
import pytest
from conftest import make_spec

import jaxgd
from jaxgd.science import optim, registry

SETTINGS = {"decay_start": 10.0, "decay_rate": 0.1, "decay_tau": 5.0, "decay_power": 2.0, "decay_every": 4.0,
            "decay_factor": 0.5}


T = np.arange(30.0)
AFTER = np.maximum(T - 10, 0)
EXPECTED = {
    "constant": 0.5 * np.ones_like(T),
    "exp_decay": 0.5 * np.exp(-0.1 * AFTER),
    "poly_decay": 0.5 / (1 + AFTER / 5) ** 2,
    "step_decay": 0.5 * 0.5 ** np.floor(AFTER / 4),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_schedule_formula(name):
    assert set(EXPECTED) == set(registry.names("schedule"))
    schedule = registry.get("schedule", name)
    settings = {s.leaf: SETTINGS[s.leaf] for s in schedule.settings}
    np.testing.assert_allclose(schedule.fn(np.float32(T), 0.5, **settings), EXPECTED[name], rtol=1e-6)


def test_engine_logs_the_scheduled_step_size():
    spec = make_spec(steps=30, log_every=5, metrics=["step_size"], optimizer={
        "lr": 0.2, "schedule": "exp_decay", "decay_start": [0.0, 10.0], "decay_rate": 0.05})
    history = jaxgd.run(spec, progress=False).history
    for t0, rows in history.groupby("decay_start"):
        np.testing.assert_allclose(rows.step_size, 0.2 * np.exp(-0.05 * np.maximum(rows.step - t0, 0)), rtol=1e-5)


def test_layer_multiplier_zero_freezes_the_layer():
    spec = make_spec(steps=20, log_every=20, metrics=["movement_W", "movement_a"],
                     optimizer={"lr_scale_a": [0.0, 1.0], "lr_scale_W": 1.0})
    summary = jaxgd.run(spec, progress=False).summary
    frozen, both = summary[summary.lr_scale_a == 0], summary[summary.lr_scale_a == 1]
    assert (frozen.final_movement_a == 0).all() and (frozen.final_movement_W > 0).all()
    assert (both.final_movement_a > 0).all()


@pytest.mark.parametrize("sampling", sorted(optim.SAMPLINGS))
def test_sgd_batches(sampling):
    import jax

    key = jax.random.key(1)
    n, batch = 10, 3
    picks = [np.asarray(optim.SAMPLINGS[sampling](key, step, n, batch)) for step in range(6)]
    assert all(p.shape == (batch,) and (0 <= p).all() and (p < n).all() for p in picks)
    if sampling == "epochs":  # 3 batches per epoch, no sample twice within one
        assert len(set(np.concatenate(picks[:3]))) == 9 and len(set(np.concatenate(picks[3:]))) == 9
        assert not np.array_equal(np.concatenate(picks[:3]), np.concatenate(picks[3:]))


def test_sgd_equals_gd_with_the_full_batch_in_epochs():
    """An epoch of one batch of all n samples is full-batch gradient descent."""
    gd = jaxgd.run(make_spec(dtype="float64"), progress=False).history
    sgd = jaxgd.run(make_spec(dtype="float64", optimizer={"name": "sgd", "batch_size": 16, "sampling": "epochs"}),
                    progress=False).history
    np.testing.assert_allclose(sgd.train_loss, gd.train_loss, rtol=1e-12)


def test_sgd_run_alone_equals_run_in_grid():
    grid = make_spec(seeds=3, optimizer={"name": "sgd", "batch_size": 4, "lr": [0.05, 0.1, 0.2]})
    alone = make_spec(seeds=[2], optimizer={"name": "sgd", "batch_size": 4, "lr": 0.1})
    in_grid = jaxgd.run(grid, progress=False).history
    in_grid = in_grid[(in_grid.seed == 2) & (in_grid.lr == 0.1)].reset_index(drop=True)
    np.testing.assert_allclose(in_grid.train_loss, jaxgd.run(alone, progress=False).history.train_loss, rtol=1e-5)
    gd = jaxgd.run(make_spec(seeds=[2], optimizer={"lr": 0.1}), progress=False).history
    assert not np.allclose(in_grid.train_loss.iloc[1:], gd.train_loss.iloc[1:])  # batches differ from full GD


def test_batch_larger_than_the_data_is_refused(no_compile):
    with pytest.raises(jaxgd.SpecError, match=r"optimizer\.batch_size.*data\.n = 16"):
        jaxgd.run(make_spec(optimizer={"name": "sgd", "batch_size": 17}), progress=False)
