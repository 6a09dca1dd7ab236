"""Axes beyond the product (issue 13): vars and derived settings, zipped axes, early stopping."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomli_w
from conftest import make_spec
from scale_helpers import assert_same_results, child_env, jaxgd_cli, write_spec

import jaxgd
import jaxgd.engine.dispatch  # patched by the no_compile fixture
from jaxgd.errors import SpecError
from jaxgd.front import cli
from jaxgd.sweep import plan as planning
from jaxgd.sweep import spec as specs

# Each run computed alone, so that runs of grids of different shapes compare bit for bit
# (a vmapped chunk of another size may differ in the last bits).
ALONE = {"strategy": "map"}


def test_lr_in_units_of_the_initial_sharpness_gives_lr_sharpness_2c_at_step_0():
    c = [0.25, 0.5, 0.9]
    spec = make_spec(vars={"c": c}, metrics=["train_loss", "lr_sharpness"],
                     model={"width": [8, 16]}, optimizer={"lr": {"expr": "c * 2 / sharpness0"}})
    results = jaxgd.run(spec, progress=False)
    start = results.history[results.history.step == 0]
    assert len(start) == len(c) * 2 * 2
    np.testing.assert_allclose(start.lr_sharpness, 2 * start.c, rtol=1e-4)
    # The tables hold the var and the lr each run computed from its own initialization.
    assert list(results.summary.columns[:5]) == ["run_id", "seed", "width", "c", "lr"]
    np.testing.assert_array_equal(results.summary.lr, start.lr)
    assert results.summary.groupby("c").lr.nunique().eq(4).all()


def test_a_setting_derived_from_vars_and_settings_is_a_column_and_equals_the_listed_run():
    spec = make_spec(vars={"mult": [0.5, 1.0]}, model={"width": [4, 16]}, engine=ALONE,
                     optimizer={"lr": {"expr": "mult * 0.4 / sqrt(width)"}})
    derived = jaxgd.run(spec, progress=False).summary
    np.testing.assert_allclose(derived.lr, derived.mult * 0.4 / np.sqrt(derived.width))
    for row in derived.itertuples():
        alone = jaxgd.run(make_spec(seeds=[row.seed], model={"width": row.width}, engine=ALONE,
                                    optimizer={"lr": float(np.float32(row.lr))}), progress=False).summary
        assert alone.final_train_loss[0] == row.final_train_loss


def test_ntk0_and_a_chain_of_derived_settings():
    spec = make_spec(vars={"c": 1.0}, metrics=["train_loss", "step_size"],
                     optimizer={"lr": {"expr": "optimizer.lr_scale_a / ntk0"}, "lr_scale_a": {"expr": "c * 2"}})
    results = jaxgd.run(spec, progress=False)
    assert (results.summary.lr_scale_a == 2.0).all()
    lr = results.history[results.history.step == 0].step_size.to_numpy()
    assert np.all(np.isfinite(lr) & (lr > 0)) and len(set(lr)) == 2  # one per seed: the NTK of its own init


@pytest.mark.parametrize("changes, words", [
    (dict(optimizer={"lr": {"expr": "c * 2 / sharpness0"}}), "'c' is unknown"),
    (dict(vars={"c": 1.0}, optimizer={"lr": {"expr": "__import__('os').system('true')"}}), "not allowed"),
    (dict(vars={"c": 1.0}, optimizer={"lr": {"expr": "c *"}}), "not an expression"),
    (dict(vars={"c": 1.0}, model={"width": {"expr": "c * 8"}}), "static"),
    (dict(optimizer={"lr": {"expr": "optimizer.lr_scale_a"}, "lr_scale_a": {"expr": "lr * 2"}}), "cycle"),
    (dict(model={"w_scale": {"expr": "sharpness0"}}), "initialization"),
    (dict(vars={"lr": [1.0]}), "not a free name"),
    (dict(zip=[["model.width", "optimizer.lr"]], model={"width": [4, 8]}, optimizer={"lr": [0.1, 0.2, 0.3]}),
     "unequal length"),
    (dict(zip=[["model.width", "optimizer.lr"]], model={"width": [4, 8]}), "not a swept setting"),
    (dict(optimizer={"lr": {"expr": "1 / lr_scale_W"}, "lr_scale_W": 0.0}), r"optimizer\.lr: .* gives inf"),
    (dict(optimizer={"lr": {"expr": "log(0) * 2"}}), r"'log\(0\) \* 2' = -inf; expected a finite number"),
    (dict(measure={"escape_metric": "train_loss", "escape_threshold": {"expr": "0.9"}}),
     r"measure\.escape_threshold: .*cannot be swept or derived"),  # was ignored: escape_step used 0.5
    (dict(engine={"stop_when": "train_loss <"}), "expected NAME OP NUMBER"),
    (dict(engine={"stop_when": "train_loss < True"}), "expected NAME OP NUMBER"),
    (dict(engine={"stop_when": "train_loss < 1e400"}), "expected NAME OP NUMBER"),
    (dict(engine={"stop_when": "grad_norm < 1"}), "not one of the spec's metrics"),
])
def test_bad_axes_are_refused_before_compiling(changes, words, no_compile):
    with pytest.raises(SpecError, match=words):
        jaxgd.run(make_spec(**changes), progress=False)


def test_a_zipped_sweep_has_one_run_per_position_and_seed_each_equal_to_the_product_grid_run():
    widths, lrs = [4, 8, 16], [0.05, 0.1, 0.2]
    zipped = jaxgd.run(make_spec(zip=[["model.width", "optimizer.lr"]], model={"width": widths},
                                 optimizer={"lr": lrs}, engine=ALONE), progress=False).summary
    product = jaxgd.run(make_spec(model={"width": widths}, optimizer={"lr": lrs}, engine=ALONE), progress=False).summary
    assert len(zipped) == len(widths) * 2
    assert list(zip(zipped.width, zipped.lr)) == [(w, lr) for w, lr in zip(widths, lrs) for _ in range(2)]
    same = product.merge(zipped, on=["width", "lr", "seed"], suffixes=("", "_zipped"))
    assert len(same) == len(zipped)
    pd.testing.assert_series_equal(same.final_train_loss, same.final_train_loss_zipped, check_names=False)


def test_zip_groups_vars_with_settings_and_the_spec_round_trips():
    spec = specs.load(make_spec(vars={"c": [1.0, 2.0]}, zip=[["c", "optimizer.lr"]], optimizer={"lr": [0.1, 0.2]},
                                model={"w_scale": {"expr": "c / 2"}}))
    assert specs.load(spec.to_dict()) == spec
    runs = planning.make(spec).runs
    assert list(runs.columns) == ["run_id", "seed", "lr", "c", "w_scale"]
    assert list(runs.c) == [1.0, 1.0, 2.0, 2.0] and list(runs.w_scale) == [0.5, 0.5, 1.0, 1.0]


def test_early_stopping_keeps_the_history_up_to_the_stop_and_holds_the_values_after():
    base = make_spec(steps=200, optimizer={"lr": [0.05, 0.5, 50.0]}, metrics=["train_loss", "test_loss", "sharpness"])
    plain = jaxgd.run(base, progress=False).history
    stopping = jaxgd.run(make_spec(**{**base, "engine": {"stop_when": "train_loss < 0.05"}}), progress=False)
    summary, history = stopping.summary, stopping.history
    assert summary.stopped_step.notna().any() and summary.stopped_step.isna().any()
    for _, run in summary.iterrows():
        mine, theirs = history[history.run_id == run.run_id], plain[plain.run_id == run.run_id]
        last = run.stopped_step if pd.notna(run.stopped_step) else history.step.max()
        before = mine.step <= last
        pd.testing.assert_frame_equal(mine[before].reset_index(drop=True), theirs[before.to_numpy()].reset_index(drop=True),
                                      check_exact=True)
        if pd.notna(run.stopped_step):
            held = mine[~before][["train_loss", "test_loss"]].to_numpy()
            assert (held == mine[mine.step == last][["train_loss", "test_loss"]].to_numpy()).all()
            assert run.final_train_loss < 0.05 and not run.diverged


def test_the_edge_found_by_bisection_agrees_with_a_dense_grid_at_a_fifth_of_the_runs(tmp_path):
    quickstart = Path(__file__).parents[1] / "sweeps" / "quickstart.toml"
    tol, decades = 0.1, (-4, 1)
    smaller = {"model.width": [8, 64], "seeds": 2}
    found = jaxgd.edge(quickstart, axis="optimizer.lr", tol=tol, out=tmp_path, overrides=smaller, progress=False)
    dense = jaxgd.run(quickstart, overrides={**smaller, "optimizer.lr": {"logspace": [*decades, 51]}},
                      progress=False, plots=False).summary
    first_failure = dense[dense.diverged].groupby(["width", "seed"]).lr.min()
    read = dense[~dense.diverged].join(first_failure.rename("fails"), on=["width", "seed"])
    read = read[read.lr < read.fails].groupby(["width", "seed"]).lr.max()
    both = found.join(read.rename("dense"), on=["width", "seed"])
    assert len(both) == 4 and both.dense.notna().all()
    assert (np.abs(np.log10(both.boundary / both.dense)) <= tol + 1e-9).all()
    assert (np.log10(both.bracket_high / both.boundary) <= tol + 1e-9).all()
    assert found.attrs["stats"]["runs"] <= len(dense) / 5 and found.attrs["stats"]["dense_runs"] == len(dense)
    assert (tmp_path / "edge.parquet").is_file() and (tmp_path / "edge.png").is_file()

    # A killed search resumes: the rounds saved are not trained again, and the result is the same.
    for saved in sorted((tmp_path / "edge_rounds").iterdir())[3:]:
        saved.unlink()
    trained = []
    with pytest.MonkeyPatch.context() as patch:
        execute = jaxgd.engine.dispatch.execute
        patch.setattr(jaxgd.engine.dispatch, "execute", lambda plan, **kw: trained.append(plan.n_runs) or execute(plan, **kw))
        again = jaxgd.edge(quickstart, axis="optimizer.lr", tol=tol, out=tmp_path, overrides=smaller, progress=False)
    assert len(trained) == found.attrs["stats"]["rounds"] - 3
    pd.testing.assert_frame_equal(again, found)


def test_edge_refuses_an_axis_that_is_not_a_swept_float_and_a_tolerance_it_cannot_reach(no_compile, tmp_path):
    with pytest.raises(SpecError, match="swept float setting"):
        jaxgd.edge(make_spec(), axis="optimizer.lr", out=tmp_path)
    with pytest.raises(SpecError, match="criterion"):
        jaxgd.edge(make_spec(optimizer={"lr": [0.1, 1.0]}), axis="optimizer.lr", criterion="final_loss <")
    for tol in (0.0, float("nan"), float("inf"), 1e-20):  # inf ran one round; 1e-20 never ended
        with pytest.raises(SpecError, match=r"edge --tol: .*a finite number of decades >= 1e-06"):
            jaxgd.edge(make_spec(optimizer={"lr": [0.1, 1.0]}), axis="optimizer.lr", tol=tol)


def test_edge_refuses_the_file_of_a_phase_diagram_it_would_draw_over_before_searching(no_compile, tmp_path):
    (tmp_path / "summary.parquet").write_bytes(b"")  # the folder of a `jaxgd run` (read after the search)
    spec = make_spec(model={"width": [4, 8]}, optimizer={"lr": [0.1, 1.0]}, plot={"phase_diagram": {
        "x": "width", "y": "lr", "value": "final_train_loss", "file": "phase.parquet"}})
    with pytest.raises(ValueError, match=r"plot\.phase_diagram\.file: got 'edge_phase\.parquet'; expected a file name"):
        jaxgd.edge(spec, axis="optimizer.lr", out=tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["summary.parquet"]


def test_the_edge_command_writes_its_table_and_says_what_it_saved(tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(tomli_w.dumps(make_spec(optimizer={"lr": [0.01, 100.0]})))
    assert cli.main(["edge", str(spec), "--axis", "optimizer.lr", "--tol", "0.5", "--out", str(tmp_path / "e")]) == 0
    assert len(pd.read_parquet(tmp_path / "e" / "edge.parquet")) == 2
    assert "where a dense grid at that resolution takes 18" in capsys.readouterr().err


def test_an_edge_where_even_the_smallest_value_fails_is_drawn(tmp_path):
    """Every boundary NaN: edge.png once ended the command with matplotlib's 'Data cannot be
    log-scaled because all values are <= 0', after edge.parquet was written."""
    spec = tmp_path / "tiny.toml"
    spec.write_text(tomli_w.dumps(make_spec(optimizer={"lr": [0.01, 100.0]})))
    assert cli.main(["edge", str(spec), "--axis", "optimizer.lr", "--criterion", "final_train_loss < 1e-30",
                     "--quiet", "--out", str(tmp_path / "e")]) == 0
    assert pd.read_parquet(tmp_path / "e" / "edge.parquet").boundary.isna().all()
    assert (tmp_path / "e" / "edge.png").stat().st_size > 0


DESIGN = dict(design="sobol", samples=8, model={"width": [4, 8]}, engine={"chunk_size": 2},
              vars={"c": {"logspace": [-1, 0, 3]}}, optimizer={"lr": {"expr": "c * 0.5"}},
              data={"noise": {"linspace": [0.0, 0.2, 3]}})


def test_a_sobol_design_samples_its_ranges_and_is_identical_when_re_run_and_resumed(tmp_path):
    runs = planning.make(specs.load(make_spec(**DESIGN))).runs
    assert len(runs) == 8 * 2 * 2 and runs.groupby("width").c.nunique().eq(8).all()
    assert runs.c.between(0.1, 1).all() and runs.noise.between(0, 0.2).all()
    # Sobol points are balanced: of the first 8, one in each eighth of log c.
    assert sorted(np.floor(8 * -np.log10(runs.c[runs.width == 4].unique())).astype(int)) == list(range(8))
    first = jaxgd.run(make_spec(**DESIGN), out=tmp_path, progress=False, plots=False).summary
    for part in sorted((tmp_path / "parts").glob("r*.npz"))[::2]:
        part.unlink()
    (tmp_path / "summary.parquet").unlink()
    resumed = jaxgd.resume(tmp_path, progress=False, plots=False).summary
    again = jaxgd.run(make_spec(**DESIGN), progress=False).summary
    pd.testing.assert_frame_equal(resumed, first, check_exact=True)
    pd.testing.assert_frame_equal(again, first, check_exact=True)


def test_sobol_points_are_those_of_scipy_shifted():
    qmc = pytest.importorskip("scipy.stats.qmc")
    from jaxgd.sweep import designs

    zero = type("Zero", (), {"integers": lambda self, low, high, n, dtype: np.zeros(n, dtype)})()
    unshifted = designs.sobol(256, designs.MAX_DIMENSIONS, zero)
    np.testing.assert_array_equal(unshifted, qmc.Sobol(designs.MAX_DIMENSIONS, scramble=False).random(256))


@pytest.mark.parametrize("changes, words", [
    (dict(design="latin", samples=4), "expected 'grid'"),
    (dict(design="random"), "samples: got None"),
    (dict(samples=4), "need design"),
    (dict(design="random", samples=4), "no float setting or var is a range"),
])
def test_bad_designs_are_refused_before_compiling(changes, words, no_compile):
    with pytest.raises(SpecError, match=words):
        jaxgd.run(make_spec(**changes), progress=False)


def test_derived_zipped_and_stopped_runs_are_the_same_on_four_devices(tmp_path):
    spec = make_spec(seeds=3, vars={"c": [0.5, 1.5, 3.0]}, zip=[["c", "model.width"]], model={"width": [4, 8, 16]},
                     metrics=["train_loss", "lr_sharpness"], engine={"chunk_size": 2, "stop_when": "train_loss < 0.05"},
                     optimizer={"lr": {"expr": "c * 2 / sharpness0"}})
    reference = jaxgd.run(spec, progress=False)
    out = tmp_path / "four"
    done = jaxgd_cli("run", write_spec(tmp_path / "s.toml", spec), "--out", out,
                     env=child_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"))
    assert done.returncode == 0, done.stderr
    assert "on 4 devices" in done.stderr
    assert_same_results(out, reference)


def test_vars_zip_and_designs_can_be_overridden():
    spec = make_spec(vars={"c": [1.0, 2.0]}, optimizer={"lr": {"expr": "c / 10"}})
    overridden = specs.load(spec, ["vars.c=[1.0, 3.0, 5.0]", 'zip=[["c", "model.width"]]', "model.width=[4, 8, 16]"])
    assert overridden.vars == {"c": [1.0, 3.0, 5.0]} and overridden.zip == (("vars.c", "model.width"),)
    sampled = specs.load(spec, ["vars.c={logspace = [-1, 0, 2]}", "design=random", "samples=5"])
    assert sampled.design.samples == 5 and len(planning.make(sampled).runs) == 10
