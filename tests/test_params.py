"""Parameter snapshots (save_params): kept in the parts and the results, read back by
`Results.params` and `jaxgd.materialize`, and checked against an independent NumPy
forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_spec
from test_reference import forward, loss_value

import jaxgd
from jaxgd.errors import SpecError
from jaxgd.front import api
from jaxgd.sweep import preflight

SWEEPS = Path(__file__).parent.parent / "sweeps"
KEPT = [0, 2000, "final"]


@pytest.fixture(scope="module")
def edge_of_stability(tmp_path_factory):
    """One float64 run of the ready edge-of-stability sweep at lr = 90, which sharpens
    to 2 / lr and hovers there (past the edge of stability), its parameters kept."""
    out = tmp_path_factory.mktemp("eos")
    overrides = {"dtype": "float64", "seeds": 1, "optimizer.lr": [90.0], "save_params": KEPT}
    spec = str(SWEEPS / "edge_of_stability.toml")
    return spec, overrides, out, jaxgd.run(spec, overrides=overrides, out=out, progress=False, plots=False)


def test_numpy_forward_pass_from_saved_params_gives_the_logged_loss_past_the_edge_of_stability(edge_of_stability):
    spec, overrides, out, results = edge_of_stability
    history = results.history.set_index("step")
    assert not results.summary.diverged.any()
    assert history.lr_sharpness.max() > 1.95  # at the edge of stability: lr * sharpness reaches 2
    data = jaxgd.materialize(spec, 0, overrides=overrides)
    model = {"activation": "tanh", "scaling": "mean_field"}
    for step in (0, 2000, 4000):
        params = {k: np.asarray(v, np.float64) for k, v in results.params(0, step).items()}
        f, _ = forward(params, data["X_train"], model)
        assert loss_value(f, data["y_train"], "mse") == pytest.approx(history.train_loss[step], rel=1e-9, abs=0)
    np.testing.assert_array_equal(results.params(0, 0)["W"], data["params"]["W"])  # step 0 is the initialization
    assert results.stats["params_bytes"] == 3 * 64 * (8 + 1) * 8  # 3 steps of W (64 x 8) and a (64), float64


def test_params_are_read_back_from_the_folder_and_by_materialize(edge_of_stability):
    spec, overrides, out, results = edge_of_stability
    final = results.params(0, "final")
    loaded = jaxgd.Results.load(out)
    for step in (2000, "final"):
        for layer, values in results.params(0, step).items():
            np.testing.assert_array_equal(loaded.params(0, step)[layer], values)
    from_folder = jaxgd.materialize(out, 0, step="final")
    assert from_folder["step"] == 4000
    np.testing.assert_array_equal(from_folder["params"]["W"], final["W"])
    # a step the sweep did not keep is trained again, alone: equal to float64 rounding
    trained_again = jaxgd.materialize(spec, 0, overrides=overrides, step=4000)
    np.testing.assert_allclose(trained_again["params"]["W"], final["W"], rtol=1e-9, atol=1e-12)


def test_params_of_diverged_runs_are_nan_and_other_widths_keep_their_shapes(tmp_path):
    spec = make_spec(model={"width": [4, 8]}, optimizer={"lr": [0.1, 1e4]}, steps=20, save_params=[0, "final"])
    results = jaxgd.run(spec, out=tmp_path, progress=False, plots=False)
    for row in results.summary.itertuples():
        final, initial = results.params(row.run_id, "final"), results.params(row.run_id, 0)
        assert final["W"].shape == (row.width, 3) and final["a"].shape == (row.width,)
        assert np.isfinite(initial["W"]).all()
        assert np.isnan(final["W"]).all() == row.diverged
    assert results.summary.diverged.any() and not results.summary.diverged.all()


def test_params_survive_a_resume(tmp_path):
    spec = make_spec(model={"width": [4, 8]}, optimizer={"lr": [0.1, 0.2]}, steps=20, save_params=[10],
                     engine={"chunk_size": 2})
    first = jaxgd.run(spec, out=tmp_path, progress=False, plots=False)
    parts = sorted((tmp_path / "parts").glob("r*.npz"))
    parts[0].unlink()  # a lost part: its runs are run again
    resumed = jaxgd.run(spec, out=tmp_path, progress=False, plots=False)
    assert resumed.stats["runs_done"] == 2
    for run_id in first.summary.run_id:
        np.testing.assert_array_equal(resumed.params(run_id, 10)["W"], first.params(run_id, 10)["W"])


def test_save_params_is_checked_before_anything_compiles():
    with pytest.raises(SpecError, match=r"save_params: steps \[15\] are not logged"):
        jaxgd.load_spec(make_spec(steps=20, save_params=[15]))
    with pytest.raises(SpecError, match='save_params: got.*"final"'):
        jaxgd.load_spec(make_spec(save_params=["last"]))
    with pytest.raises(SpecError, match="engine.kernel: got 'fused'.*save_params"):
        jaxgd.load_spec(make_spec(save_params=[0], engine={"kernel": "fused"}))
    assert jaxgd.load_spec(make_spec(steps=20, save_params=["final", 0])).settings["save_params"] == (0, 20)


def test_results_params_and_materialize_name_the_steps_allowed():
    spec = make_spec(steps=20, save_params=[10])
    results = jaxgd.run(spec, progress=False)
    with pytest.raises(ValueError, match=r"kept parameters \(save_params\), \[10\] \(\"final\" is step 20\)"):
        results.params(0, 20)
    with pytest.raises(ValueError, match=r"got 'final'; .*\[10\] \(\"final\" is step 20\)"):
        results.params(0, "final")
    with pytest.raises(ValueError, match="run_id"):
        results.params(10**6, 10)
    with pytest.raises(ValueError, match=r'kept no parameters: set save_params \(e.g. \[0, "final"\]\)'):
        jaxgd.run(make_spec(steps=20), progress=False).params(0, 0)
    with pytest.raises(ValueError, match=r'step: got 7; expected one of the steps this sweep logs, \[0, 10, 20, \.\.\., 40\] '
                                         r'or "final" \(step 40\)'):
        jaxgd.materialize(make_spec(), 0, step=7)


def test_dry_run_reports_the_storage_of_kept_parameters():
    estimate = api.estimate(make_spec(model={"width": 16}, steps=20, save_params=[0, 10, 20]))
    assert estimate.params_bytes == estimate.runs * 3 * 16 * (3 + 1) * 4  # W (16 x 3) and a (16), float32
    assert "parameters kept at 3 steps (save_params): about 1.5 KiB" in preflight.describe(estimate)
