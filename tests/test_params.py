"""Parameter snapshots (save_params): kept in the parts and the results, read back by
`Results.params` and `jaxgd.materialize`, and checked against an independent NumPy
forward pass."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_spec
from test_reference import forward, loss_value

import jaxgd
from jaxgd.errors import SpecError
from jaxgd.front import api
from jaxgd.storage import parts, store
from jaxgd.sweep import plan as planning
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


def test_a_spec_toml_edited_after_the_tables_is_refused_and_its_parts_read_each_step_as_kept(tmp_path):
    """A spec.toml edited by hand after the tables were written (here save_params listed in
    another order, which loads as the same sweep) no longer describes them: Results.load
    says so, and the runs read from the parts (partial=True) give each step's layers as
    kept (the parts keep them in the loaded spec's order; another step's were returned)."""
    spec = make_spec(steps=10, log_every=5, save_params=[0, 5, 10])
    kept = jaxgd.run(spec, out=tmp_path, progress=False, plots=False)
    saved = tmp_path / "spec.toml"
    listed = re.search(r"save_params = \[[^\]]*\]", saved.read_text()).group(0)
    saved.write_text(saved.read_text().replace(listed, "save_params = [10, 5, 0]"))
    with pytest.raises(ValueError, match="were written for another spec.toml than the one there now"):
        jaxgd.Results.load(tmp_path)
    loaded = jaxgd.Results.load(tmp_path, partial=True)
    for step in (0, 5, 10):
        np.testing.assert_array_equal(loaded.params(0, step)["W"], kept.params(0, step)["W"])
    assert not np.array_equal(kept.params(0, 0)["W"], kept.params(0, 10)["W"])
    stats = json.loads((tmp_path / "stats.json").read_text())  # an older jaxgd's tables: no spec_sha256
    (tmp_path / "stats.json").write_text(json.dumps({k: v for k, v in stats.items() if k != "spec_sha256"}))
    old = jaxgd.Results.load(tmp_path)
    assert old.spec["save_params"] == [10, 5, 0]
    for step in (0, 5, 10):
        np.testing.assert_array_equal(old.params(0, step)["W"], kept.params(0, step)["W"])


# 2 widths (their layers' shapes differ) x 3 step sizes x 2 seeds in chunks of 2: 12 runs in 6 parts
MANY_PARTS = make_spec(model={"width": [4, 8]}, optimizer={"lr": [0.05, 0.1, 0.2]}, steps=20,
                       save_params=[0, 10, "final"], engine={"chunk_size": 2})


@pytest.fixture(scope="module")
def many_parts(tmp_path_factory):
    out = tmp_path_factory.mktemp("parts") / "out"
    return out, jaxgd.run(MANY_PARTS, out=out, progress=False, plots=False)


# MANY_PARTS without its middle step size: 8 runs in 4 parts, 6 of which MANY_PARTS numbers otherwise
SMALLER = make_spec(MANY_PARTS, optimizer={"lr": [0.05, 0.2]})


@pytest.fixture(scope="module")
def grown_parts(tmp_path_factory):
    """MANY_PARTS grown from SMALLER: 4 of its 6 parts are SMALLER's, which name their runs
    by their ids there. SMALLER's parts index is kept beside the folder."""
    out = tmp_path_factory.mktemp("grown") / "out"
    jaxgd.run(SMALLER, out=out, progress=False, plots=False)
    shutil.copy(out / parts.PARTS_INDEX, out.parent / "smaller_parts_index.npz")
    return out, jaxgd.run(MANY_PARTS, out=out, progress=False, plots=False)


@pytest.fixture(params=["at once", "grown"])
def indexed(request):
    """The folder of MANY_PARTS and its results: run at once, or grown from SMALLER."""
    return request.getfixturevalue({"at once": "many_parts", "grown": "grown_parts"}[request.param])


@pytest.fixture
def parts_read(monkeypatch):
    """The names of the part files read, each time one is."""
    names, read_bytes = [], Path.read_bytes

    def counted(path):
        if parts.PART_NAME.fullmatch(path.name):
            names.append(path.name)
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    return names


def test_one_runs_parameters_are_read_from_its_part_alone(indexed, parts_read):
    """Also a grown sweep's old runs, which their parts name by other ids (they were read
    from every part)."""
    out, results = indexed
    every_part = store.saved_params(out)  # assembled from every part
    assert len(parts_read) == 6
    for run_id in results.summary.run_id:
        for step in (0, 10, 20, "final"):
            parts_read.clear()
            layers = jaxgd.Results.load(out).params(run_id, step)
            assert len(parts_read) == 1
            for layer, values in every_part.of(run_id).items():
                np.testing.assert_array_equal(layers[layer], values[[0, 10, 20].index(20 if step == "final" else step)])
                np.testing.assert_array_equal(layers[layer], results.params(run_id, step)[layer])
    loaded, parts_read[:] = jaxgd.Results.load(out), []
    for run_id in every_part.blocks[0][0]:  # the runs of one part: read once by results loaded from the folder
        loaded.params(run_id, 10)
    assert len(every_part.blocks[0][0]) == 2 and len(parts_read) == 1
    parts_read.clear()
    materialized = jaxgd.materialize(out, 7, step=10)
    assert len(parts_read) == 1
    np.testing.assert_array_equal(materialized["params"]["W"], results.params(7, 10)["W"])


def test_a_runs_parameters_are_refused_naming_its_lost_part_when_it_is_damaged_or_missing(many_parts, tmp_path):
    out, results = many_parts
    out = shutil.copytree(out, tmp_path / "out")
    damaged, missing = sorted((out / "parts").glob("r*.npz"))[1:3]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one damaged byte
    damaged.write_bytes(bytes(data))
    missing.unlink()
    loaded = jaxgd.Results.load(out)
    kept = store.saved_params(out)  # of the parts left
    runs_lost = [r for r in results.summary.run_id if kept.of(r) is None]
    assert len(runs_lost) == 4
    for run_id in runs_lost:  # was 'not a finished run', a run of the summary
        with pytest.raises(ValueError, match=rf"run_id: got {run_id!r}; a finished run of this sweep, but no part in "
                                             rf".*`jaxgd run --resume --out {out}`"):
            loaded.params(run_id, "final")
    for run_id in [12, -1, 10**6]:
        with pytest.raises(ValueError, match=f"run_id: got {run_id!r}; not a finished run of this sweep"):
            loaded.params(run_id, "final")
    for run_id in set(results.summary.run_id) - set(runs_lost):
        np.testing.assert_array_equal(loaded.params(run_id, "final")["W"], results.params(run_id, "final")["W"])
    # materialize trains a run whose part is lost again, alone: equal to float rounding
    np.testing.assert_allclose(jaxgd.materialize(out, runs_lost[0], step=10)["params"]["W"],
                               results.params(runs_lost[0], 10)["W"], rtol=1e-5, atol=1e-6)
    # as the error says, a resume runs them again
    assert jaxgd.resume(out, progress=False, plots=False).stats["runs_done"] == len(runs_lost)
    for run_id in runs_lost:
        np.testing.assert_array_equal(jaxgd.Results.load(out).params(run_id, "final")["W"],
                                      results.params(run_id, "final")["W"])


def test_reading_a_runs_parameters_from_a_finished_folder_imports_no_jax(many_parts):
    out, results = many_parts
    code = (f"import sys; from jaxgd.storage.results import Results; "
            f"print(Results.load({str(out)!r}).params(3, 'final')['W'].tolist()); print('jax' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines() == [str(results.params(3, "final")["W"].tolist()), "False"], done.stderr


@pytest.mark.parametrize("index", ["missing", "damaged"])
def test_without_a_readable_parts_index_every_part_is_read(many_parts, tmp_path, parts_read, index):
    out, results = many_parts
    out = shutil.copytree(out, tmp_path / "out")
    parts_index = out / parts.PARTS_INDEX
    parts_index.unlink() if index == "missing" else parts_index.write_bytes(b"not an index")
    parts_read.clear()
    np.testing.assert_array_equal(jaxgd.Results.load(out).params(5, 10)["a"], results.params(5, 10)["a"])
    assert len(parts_read) == 6


EDITS = {  # of the parts index of MANY_PARTS (6 parts of 2 runs): each still names real parts with their sha256
    "rows swapped": lambda index: {"row": 1 - index["row"]},
    "a row from the end": lambda index: {"row": index["row"] - 1},
    "another part's runs": lambda index: {"part": np.roll(index["part"], 2)},
    "a part out of range": lambda index: {"part": index["part"] + 6},
    "a part below -1": lambda index: {"part": index["part"] - 7},
    "two-dimensional": lambda index: {"part": index["part"][None]},
    "names cut short": lambda index: {"name": index["name"][:1]},
    "another run's id in its part": lambda index: {"id_in_part": np.roll(index["id_in_part"], 1)},
    "another spec's": lambda index: {"spec": np.array("0" * 64)},
}


@pytest.mark.parametrize("edit", EDITS)
def test_a_parts_index_edited_by_hand_gives_every_run_its_own_parameters(indexed, tmp_path, edit):
    """An index that misnames a run's part or row (rows swapped or counted from the end gave
    another run's parameters, silently; a part number out of range an IndexError, or 'not a
    finished run') is not trusted: the part must name the run at its row by the id the
    index gives it there."""
    out, results = indexed
    out = shutil.copytree(out, tmp_path / "out")
    with np.load(out / parts.PARTS_INDEX) as index:
        written = dict(index)
    np.savez(out / parts.PARTS_INDEX, **(written | EDITS[edit](written)))
    loaded = jaxgd.Results.load(out)
    for run_id in results.summary.run_id:
        np.testing.assert_array_equal(loaded.params(run_id, 10)["W"], results.params(run_id, 10)["W"])


def test_a_stale_parts_index_of_the_smaller_sweep_gives_every_run_of_the_grown_one_its_own_parameters(grown_parts,
                                                                                                   tmp_path):
    """The index of the sweep before it grew, put back (a backup): its parts are still there,
    unchanged, and name their runs at its rows, but by the ids of the smaller sweep (runs
    2 to 7 got the parameters of other runs, silently)."""
    out, results = grown_parts
    out = shutil.copytree(out, tmp_path / "out")
    shutil.copy(grown_parts[0].parent / "smaller_parts_index.npz", out / parts.PARTS_INDEX)
    loaded = jaxgd.Results.load(out)
    for run_id in results.summary.run_id:
        for layer, values in results.params(run_id, 10).items():
            np.testing.assert_array_equal(loaded.params(run_id, 10)[layer], values)


def test_a_run_into_the_folder_removes_its_parts_index_and_the_grown_sweep_writes_it_again(tmp_path):
    small = make_spec(optimizer={"lr": [0.05, 0.2]}, steps=20, save_params=["final"], engine={"chunk_size": 2})
    grown = make_spec(small, optimizer={"lr": [0.02, 0.05, 0.2]})  # the old runs' ids change
    first = jaxgd.run(small, out=tmp_path, progress=False, plots=False)
    store.Store.prepare(tmp_path, planning.make(jaxgd.load_spec(grown)))  # as a run of the grown sweep does first
    assert not (tmp_path / parts.PARTS_INDEX).exists()
    new_ids = jaxgd.run(grown, progress=False).summary.set_index(["seed", "lr"]).run_id
    for run in first.summary.itertuples():
        np.testing.assert_array_equal(jaxgd.materialize(tmp_path, new_ids[run.seed, run.lr], step="final")["params"]["W"],
                                      first.params(run.run_id, "final")["W"])
    assert list(new_ids[first.summary.set_index(["seed", "lr"]).index]) != list(first.summary.run_id)
    again = jaxgd.run(grown, out=tmp_path, progress=False, plots=False)
    assert (tmp_path / parts.PARTS_INDEX).exists()
    for run_id in again.summary.run_id:
        np.testing.assert_array_equal(jaxgd.Results.load(tmp_path).params(run_id, "final")["W"],
                                      again.params(run_id, "final")["W"])


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


@pytest.mark.parametrize("run_id", [True, np.True_, 1.0, np.float32(2), "1", None, 1.5])
def test_a_run_id_that_is_not_an_integer_is_refused_naming_run_id(many_parts, run_id):
    """`True` or `1.0` would stand for run 1; a string or None was a bare TypeError and 1.5 a
    StopIteration in materialize."""
    out, results = many_parts
    expected = rf"run_id: got {re.escape(repr(run_id))}; expected an integer, a run's run_id in the summary"
    for read in (results.params, jaxgd.Results.load(out).params, lambda run_id, step: jaxgd.materialize(out, run_id, step=step)):
        with pytest.raises(ValueError, match=expected):
            read(run_id, 10)
    np.testing.assert_array_equal(jaxgd.Results.load(out).params(np.int64(1), 10)["W"], results.params(1, 10)["W"])


def test_dry_run_reports_the_storage_of_kept_parameters():
    estimate = api.estimate(make_spec(model={"width": 16}, steps=20, save_params=[0, 10, 20]))
    assert estimate.params_bytes == estimate.runs * 3 * 16 * (3 + 1) * 4  # W (16 x 3) and a (16), float32
    assert "parameters kept at 3 steps (save_params): about 1.5 KiB" in preflight.describe(estimate)


def test_a_run_in_two_parts_gives_its_metrics_and_parameters_from_the_same_one(many_parts, tmp_path):
    """A run computed twice (a Slurm task and a local resume at once, on other devices or
    chunk sizes: values that may differ in the last bits) is in two parts. The tables and
    the parts index took the last part, the parameters of collected or partly loaded
    results the first: a forward pass of run 0's parameters did not give its logged loss."""
    out, results = many_parts
    out = shutil.copytree(out, tmp_path / "out")
    plan = planning.make(jaxgd.load_spec(MANY_PARTS))
    layers = {layer: values[None] + 1.0 for layer, values in results.saved_params.of(0).items()}
    history = {m: results.history[results.history.run_id == 0][m].to_numpy()[None] * 2 for m in plan.logged}
    store.Store(out).writer(plan)(np.array([0]), history, np.array([-1]), layers)  # sorted before run 0's part
    collected = jaxgd.collect(out, progress=False, plots=False)
    for loaded in (collected, jaxgd.Results.load(out), jaxgd.Results.load(out, partial=True)):
        final_loss = loaded.summary.set_index("run_id").final_train_loss[0]
        np.testing.assert_array_equal(loaded.params(0, "final")["W"], results.params(0, "final")["W"])
        assert final_loss == results.summary.final_train_loss[0]
