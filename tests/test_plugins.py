"""User plugins: a file named in a spec's `plugins = [...]` registers its own activation,
data set, loss and metric (examples/pieces.py, run by examples/custom.toml), and
everything jaxgd does for built-in components works for them: validation, the settings
table, sweeps of their float settings in one program, the tables and figures, several
devices, resuming after a kill, Slurm tasks, and numbers equal to plain NumPy gradient
descent. A bad plugin is refused before anything compiles, with a SpecError that names
the plugin file and the problem."""

import json
import os
import re
import signal
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest
import test_reference as reference
from conftest import make_spec
from scale_helpers import assert_same_results, child_env, jaxgd_cli, tables, write_spec
from test_cli import is_png
from test_durability import saved_runs, start_slow_run, stop_in_the_middle

import jaxgd
from jaxgd.front import cli
from jaxgd.sweep.spec import settings_table

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CUSTOM, PIECES = EXAMPLES / "custom.toml", EXAMPLES / "pieces.py"
CUSTOM_METRICS = ["train_loss", "test_loss", "a_max"]
CUSTOM_FIGURES = ("lines_final_train_loss_final_test_loss_turns.png", "curves_a_max.png")


def custom_spec() -> dict:
    """examples/custom.toml as a dict without its figures (they need turns swept), its
    plugin named by absolute path (a dict spec has no folder for a relative path to
    start from)."""
    spec = tomllib.loads(CUSTOM.read_text()) | {"plugins": [str(PIECES)]}
    del spec["plot"]
    return spec


@pytest.fixture(scope="module")
def custom():
    """examples/custom.toml run in this process, on one device."""
    results = jaxgd.run(CUSTOM, progress=False)
    assert results.stats["devices"] == 1
    return results


# --------------------------------------------------------------------------------------
# The example: what it writes, and that its pieces do what they say
# --------------------------------------------------------------------------------------


def test_custom_example_from_the_command_line_on_four_devices(tmp_path, custom):
    out = tmp_path / "out"
    done = jaxgd_cli("run", CUSTOM, "--out", out, env=child_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"))
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "stats.json").read_text())["devices"] == 4
    history, summary = tables(out)
    assert {"turns", *CUSTOM_METRICS} <= set(history.columns)
    assert {"turns", "final_a_max", "final_train_loss"} <= set(summary.columns)
    assert sorted(summary.turns.unique()) == [1.0, 2.0, 3.0] and len(summary) == 3 * 2
    assert all(is_png(out / figure) for figure in CUSTOM_FIGURES)
    assert_same_results(out, custom)  # four devices give the one-device tables, bit for bit


def test_custom_example_trains_in_one_program(custom):
    assert custom.stats["groups"] == 1  # turns is a float setting: traced, swept in one program
    summary, history = custom.summary, custom.history
    assert not summary.diverged.any() and history[CUSTOM_METRICS].notna().all().all()
    first = history[history.step == 0].set_index("run_id")
    assert (summary.set_index("run_id").final_train_loss < 0.8 * first.train_loss).all()
    # more turns, harder spirals: the final training loss rises with turns (the example's claim)
    by_turns = summary.groupby("turns").final_train_loss.median()
    assert by_turns.is_monotonic_increasing, by_turns


def test_a_max_at_initialization_is_the_largest_initial_output_weight(custom):
    run_id = 5  # turns 3, seed 1
    initial_a = jaxgd.materialize(CUSTOM, run_id)["params"]["a"]
    logged = custom.history[(custom.history.run_id == run_id) & (custom.history.step == 0)].a_max.item()
    assert logged == pytest.approx(np.max(np.abs(initial_a)), rel=1e-6)


def test_run_in_grid_equals_run_alone(custom):
    row = custom.summary[(custom.summary.turns == 2.0) & (custom.summary.seed == 1)].iloc[0]
    alone = jaxgd.run(make_spec(custom_spec(), seeds=[1], data={"turns": 2.0}), progress=False)
    in_grid = custom.history[custom.history.run_id == row.run_id]
    np.testing.assert_allclose(in_grid[CUSTOM_METRICS].to_numpy(), alone.history[CUSTOM_METRICS].to_numpy(), rtol=1e-5)


def test_spirals_lie_on_spirals_of_each_runs_turns():
    """With no noise every point is exactly on its class's spiral of the run's number of
    turns: the swept float setting reaches the data set, run by run."""
    spec = make_spec(plugins=[str(PIECES)], seeds=1,
                     data={"name": "spirals", "n": 64, "d": 3, "turns": [0.5, 2.0], "spread": 0.0})
    for run_id in (0, 1):
        run = jaxgd.materialize(spec, run_id)
        X, y, turns = run["X_train"], run["y_train"], run["settings"]["data.turns"]
        assert X.shape == (64, 3) and set(np.unique(y)) == {-1.0, 1.0}
        r = np.linalg.norm(X, axis=1)
        angle = 2 * np.pi * turns * r + np.where(y > 0, 0.0, np.pi)
        np.testing.assert_allclose(X[:, :2], r[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1), atol=1e-5)
        assert not X[:, 2].any()  # the third coordinate is noise alone
        assert 0.0 < r.min() and r.max() <= 1.0 + 1e-6


# --------------------------------------------------------------------------------------
# Scale-out: resume and Slurm load the plugin from the spec saved in the out folder
# --------------------------------------------------------------------------------------


def test_resume_after_a_kill_loads_the_plugin_from_the_saved_spec(tmp_path):
    # The spec names its plugin by a path relative to the spec's folder; the out folder is elsewhere.
    user = tmp_path / "user"
    user.mkdir()
    spec = make_spec(tomllib.loads(CUSTOM.read_text()), seeds=4, engine={"chunk_size": 1},  # 12 runs, many parts
                     plugins=[os.path.relpath(PIECES, user)])
    spec_path, out = write_spec(user / "custom.toml", spec), tmp_path / "out"

    code, _ = stop_in_the_middle(start_slow_run(spec_path, out), out, signal.SIGKILL, after_parts=2)
    assert code == -signal.SIGKILL
    saved = saved_runs(out)
    assert 0 < saved < 12 and not (out / "history.parquet").exists()
    # the saved spec names the plugin so that it is found from the out folder
    plugins = tomllib.loads((out / "spec.toml").read_text())["plugins"]
    assert len(plugins) == 1 and (out / plugins[0]).resolve() == PIECES

    resumed = jaxgd_cli("run", "--resume", "--out", out)  # a fresh process: the plugin comes from spec.toml
    assert resumed.returncode == 0, resumed.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["runs_before"] == saved and stats["runs_done"] == 12 - saved
    assert_same_results(out, jaxgd.run(spec_path, progress=False))


def test_slurm_tasks_load_the_plugin_and_collect_equal_results(tmp_path, custom):
    pytest.importorskip("submitit")
    from jaxgd.storage import slurm

    out = tmp_path / "out"
    jobs = slurm.submit(CUSTOM, out, 2, cluster="local", parameters={"timeout_min": 10})
    assert sum(job.result()["runs_done"] for job in jobs) == 6  # each task a process of its own
    collected = jaxgd_cli("collect", out)
    assert collected.returncode == 0, collected.stderr
    assert_same_results(out, custom)


# --------------------------------------------------------------------------------------
# The engine with a plugin activation, data set and loss against NumPy float64 GD
# --------------------------------------------------------------------------------------


def sigmoid(u):
    return 0.5 * (1.0 + np.tanh(0.5 * u))  # no overflow for large |u|


def swish_by_hand(beta):
    """swish(z) = z s(beta z) and its derivative s(beta z) + beta z s(beta z) (1 - s(beta z)), s the sigmoid."""
    def derivative(z):
        s = sigmoid(beta * z)
        return s + beta * z * s * (1.0 - s)
    return (lambda z: z * sigmoid(beta * z)), derivative


MARGIN = 0.8
# max(0, margin - y f)^2 per sample and its derivative in f
SQUARED_HINGE_BY_HAND = (lambda f, y: np.maximum(0.0, MARGIN - y * f) ** 2,
                         lambda f, y: -2.0 * y * np.maximum(0.0, MARGIN - y * f))

FLOAT64_SPEC = {
    "plugins": [str(PIECES)],
    "seeds": 1,
    "steps": reference.STEPS,
    "log_every": reference.LOG_EVERY,
    "dtype": "float64",
    "metrics": list(reference.METRICS),
    "data": {"name": "spirals", "n": 20, "n_test": 10, "d": 3, "turns": [1.0, 2.5], "spread": 0.1},
    "model": {"width": 7, "activation": "swish", "beta": [0.5, 1.7], "scaling": "ntk", "bias": True, "b_scale": 0.5},
    "optimizer": {"lr": 2.0},
    "loss": {"name": "squared_hinge", "margin": MARGIN},
}


@pytest.fixture(scope="module")
def float64_runs():
    """Per run of FLOAT64_SPEC (2 turns x 2 betas): its materialized data and parameters,
    the engine's history rows, and test_reference's NumPy GD from the same start, with
    the plugin's activation and loss written out by hand."""
    history = jaxgd.run(FLOAT64_SPEC, progress=False).history
    runs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(reference.LOSSES, "squared_hinge", SQUARED_HINGE_BY_HAND)
        for run_id, rows in history.groupby("run_id"):
            run = jaxgd.materialize(FLOAT64_SPEC, int(run_id))
            patch.setitem(reference.ACTIVATIONS, "swish", swish_by_hand(run["settings"]["model.beta"]))
            numpy_history = reference.reference_history(run, FLOAT64_SPEC["model"], "squared_hinge",
                                                        FLOAT64_SPEC["optimizer"]["lr"], reference.STEPS, reference.LOGGED)
            runs.append({"run": run, "rows": rows.sort_values("step"), "numpy": numpy_history})
    return runs


def test_float64_sweep_covers_every_turns_and_beta(float64_runs):
    settings = {(r["run"]["settings"]["data.turns"], r["run"]["settings"]["model.beta"]) for r in float64_runs}
    assert settings == {(t, b) for t in (1.0, 2.5) for b in (0.5, 1.7)}
    for r in float64_runs:
        assert r["rows"].step.tolist() == reference.LOGGED
        assert (r["rows"].turns == r["run"]["settings"]["data.turns"]).all()
        assert (r["rows"].beta == r["run"]["settings"]["model.beta"]).all()
        assert r["run"]["X_train"].dtype == np.float64
        # the comparison means something only if the runs train (squared hinge on spirals: slowly)
        assert r["numpy"]["train_loss"][-1] < 0.95 * r["numpy"]["train_loss"][0]


@pytest.mark.parametrize("metric", reference.METRICS)
def test_engine_with_plugins_matches_numpy_gradient_descent(float64_runs, metric):
    for r in float64_runs:
        engine, numpy = r["rows"][metric].to_numpy(np.float64), r["numpy"][metric]
        error = reference.relative_error(engine, numpy)
        assert (error <= reference.RTOL).all(), (r["run"]["settings"], metric, error.max())


@pytest.mark.parametrize("beta", [0.5, 1.7])
def test_hand_derived_derivatives_match_finite_differences(beta):
    h, z = 1e-6, np.linspace(-6.0, 6.0, 241)
    act, derivative = swish_by_hand(beta)
    np.testing.assert_allclose(derivative(z), (act(z + h) - act(z - h)) / (2 * h), rtol=1e-6, atol=1e-9)
    loss, loss_derivative = SQUARED_HINGE_BY_HAND
    y = np.where(z > 0.3, 1.0, -1.0)
    f = z + 0.01  # away from the kink y f = margin
    np.testing.assert_allclose(loss_derivative(f, y), (loss(f + h, y) - loss(f - h, y)) / (2 * h), rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------------------
# Loading, validation and the settings table
# --------------------------------------------------------------------------------------


def test_plugin_settings_are_validated_like_built_in_ones():
    spec = jaxgd.load_spec(CUSTOM)
    assert spec.settings["data.turns"] == [1.0, 2.0, 3.0]
    assert spec.settings["model.beta"] == 2.0 and spec.settings["loss.margin"] == 1.0
    assert jaxgd.load_spec(custom_spec()).settings == spec.settings  # the same file loaded again: no clash
    assert jaxgd.load_spec(custom_spec(), {"data.turns": 2}).settings["data.turns"] == 2.0  # an integer for a float
    with pytest.raises(jaxgd.SpecError, match="data.turns"):
        jaxgd.load_spec(CUSTOM, {"data.turns": "many"})
    with pytest.raises(jaxgd.SpecError, match="beta"):
        jaxgd.load_spec(CUSTOM, {"model.betta": 1.0})


def test_declared_properties_drive_the_rules():
    """squared_hinge needs +-1 labels: refused on a teacher's real labels, accepted on their
    signs; spirals declares that it needs d >= 2."""
    on_real_labels = make_spec(plugins=[str(PIECES)], loss={"name": "squared_hinge"})
    with pytest.raises(jaxgd.SpecError, match="squared_hinge"):
        jaxgd.load_spec(on_real_labels)
    jaxgd.load_spec(make_spec(on_real_labels, data={"labels": "sign"}))
    with pytest.raises(jaxgd.SpecError, match="spirals needs data.d >= 2"):
        jaxgd.load_spec(make_spec(plugins=[str(PIECES)], data={"name": "spirals", "d": 1}))


def test_a_plugin_may_be_an_importable_module(tmp_path, monkeypatch):
    (tmp_path / "plugin_as_module.py").write_text(textwrap.dedent("""
        import jax.numpy as jnp
        import jaxgd

        @jaxgd.activation("cubic_from_module")
        def cubic(z, *, scale: float = 1.0):
            '''scale z^3.
            scale: the factor'''
            return scale * z**3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = make_spec(plugins=["plugin_as_module"], model={"activation": "cubic_from_module", "scale": 0.5})
    assert jaxgd.load_spec(spec).settings["model.scale"] == 0.5


def test_plugin_settings_appear_in_the_settings_table():
    """The table that `jaxgd settings` and the README's table are generated from lists a
    loaded plugin's components and settings like built-in ones."""
    jaxgd.load_spec(make_spec(plugins=[str(PIECES)]))  # registers the example's pieces in this process
    rows = {row["key"]: row for row in settings_table()}
    assert rows["data.turns"]["kind"] == "traced" and float(rows["data.turns"]["default"]) == 1.5
    assert rows["data.turns"]["doc"] == "number of turns of each spiral"
    assert rows["model.beta"]["doc"] == "slope of the gate" and rows["loss.margin"]["kind"] == "traced"
    assert "spirals" in rows["data.name"]["allowed"] and "swish" in rows["model.activation"]["allowed"]
    assert [row["key"] for row in settings_table("data.tu")] == ["data.turns"]  # by prefix


def test_jaxgd_settings_lists_a_plugins_settings(capsys):
    with pytest.raises(SystemExit):
        cli.main(["settings", "--help"])
    if "--plugins" not in capsys.readouterr().out:
        pytest.skip("`jaxgd settings` has no --plugins option (yet): from the command line it lists built-ins only")
    done = jaxgd_cli("settings", "data.", "--plugins", PIECES)  # a fresh process: the plugin is loaded by the option
    assert done.returncode == 0, done.stderr
    turns = next(line for line in done.stdout.splitlines() if line.startswith("data.turns "))
    assert "float" in turns and "traced" in turns and "1.5" in turns and "number of turns of each spiral" in turns


# --------------------------------------------------------------------------------------
# Bad plugins: refused before anything compiles, naming the plugin file and the problem
# --------------------------------------------------------------------------------------

PLUGIN_HEADER = "import jax\nimport jax.numpy as jnp\nimport jaxgd\n\n"

# How a spec uses a component of each kind named `name`.
USES = {
    "activation": lambda name: {"model": {"activation": name}},
    "dataset": lambda name: {"data": {"name": name}},
    "loss": lambda name: {"loss": {"name": name}},
    "metric": lambda name: {"metrics": ["train_loss", name]},
}

# case: (kind, the component's name (None: one of the case's own), its source, the problem the message names)
BAD_PLUGINS = {
    "clashes_with_a_built_in": ("activation", "relu", """
        @jaxgd.activation("relu")
        def relu(z):
            return z
    """, r"clash|built-in|already"),
    "setting_without_annotation": ("activation", None, """
        @jaxgd.activation("{name}")
        def act(z, *, beta=1.0):
            return beta * z
    """, r"beta.*(annotation|type)"),
    "setting_without_default": ("activation", None, """
        @jaxgd.activation("{name}")
        def act(z, *, beta: float):
            return beta * z
    """, r"beta.*default"),
    "setting_of_unsupported_type": ("activation", None, """
        @jaxgd.activation("{name}")
        def act(z, *, betas: list = [1.0]):
            return z
    """, r"betas.*list"),
    "activation_of_wrong_shape": ("activation", None, """
        @jaxgd.activation("{name}")
        def act(z):
            return jnp.sum(z, axis=-1)  # (n,) for (n, m)
    """, r"shape"),
    "dataset_of_wrong_shape": ("dataset", None, """
        @jaxgd.dataset("{name}")
        def data(key, n, d):
            return jnp.zeros((n, d + 1)), jnp.ones((n,))
    """, r"shape"),
    "loss_not_a_scalar": ("loss", None, """
        @jaxgd.loss("{name}")
        def loss(f, y):
            return (f - y) ** 2  # no mean
    """, r"scalar|shape"),
    "metric_not_a_scalar": ("metric", None, """
        @jaxgd.metric("{name}")
        def metric(s):
            return jnp.abs(s.params["a"])  # (m,)
    """, r"scalar|shape"),
}


def refusal(spec) -> str:
    with pytest.raises(jaxgd.SpecError) as refused:
        jaxgd.run(spec, progress=False)
    return str(refused.value)


@pytest.mark.parametrize("case", list(BAD_PLUGINS))
def test_a_bad_plugin_is_refused(tmp_path, no_compile, case):
    kind, name, source, problem = BAD_PLUGINS[case]
    name = name or f"{case}_{kind}"  # registration is process-global: a name of this test's own
    plugin = tmp_path / f"{case}.py"
    plugin.write_text(PLUGIN_HEADER + textwrap.dedent(source).format(name=name))
    message = refusal(make_spec(plugins=[str(plugin)], **USES[kind](name)))
    assert plugin.name in message and name in message, message
    assert re.search(problem, message), message


def test_a_plugin_that_raises_on_import_is_refused(tmp_path, no_compile):
    plugin = tmp_path / "raises.py"
    plugin.write_text(PLUGIN_HEADER + "raise RuntimeError('pieces are broken')\n")
    message = refusal(make_spec(plugins=[str(plugin)]))
    assert str(plugin) in message and "pieces are broken" in message, message


def test_a_missing_plugin_file_is_refused(tmp_path, no_compile):
    message = refusal(make_spec(plugins=[str(tmp_path / "nowhere.py")]))
    assert "nowhere.py" in message and re.search(r"not found|no such|does not exist", message), message


def test_a_plugin_path_that_is_a_folder_or_not_python_is_refused(tmp_path, no_compile):
    (tmp_path / "notes.txt").write_text("not python\n")
    assert "is not a file" in refusal(make_spec(plugins=[f"{tmp_path}/"]))
    message = refusal(make_spec(plugins=[str(tmp_path / "notes.txt")]))
    assert "notes.txt is not a Python file" in message and ".py" in message, message


def test_two_plugins_registering_one_name_are_refused(tmp_path, no_compile):
    first, second = tmp_path / "first.py", tmp_path / "second.py"
    for plugin, factor in ((first, 2.0), (second, 3.0)):
        plugin.write_text(PLUGIN_HEADER + f"@jaxgd.activation('twin')\ndef twin(z):\n    return {factor} * z\n")
    message = refusal(make_spec(plugins=[str(first), str(second)], model={"activation": "twin"}))
    assert "twin" in message and "first.py" in message and "second.py" in message, message


def test_the_command_line_reports_a_bad_plugin_in_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("raise ImportError('no module named scipy_of_my_own')\n")
    spec_path = write_spec(tmp_path / "s.toml", make_spec(plugins=["broken.py"]))  # relative to the spec
    out = tmp_path / "out"
    done = jaxgd_cli("run", spec_path, "--out", out)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("jaxgd: error:")]
    assert len(errors) == 1 and "broken.py" in errors[0] and "scipy_of_my_own" in errors[0], done.stderr
    assert not (out / "parts").exists()


def test_a_spec_sees_only_the_built_ins_and_its_own_plugins(custom):
    """Another spec's plugin, loaded earlier in this process, neither adds its settings to a
    spec that does not list it (its saved spec.toml must run in a fresh process) nor lends
    it its components."""
    plain = jaxgd.load_spec(make_spec())
    assert not any(key.startswith(("data.turns", "model.beta", "loss.margin")) for key in plain.settings)
    for changes, key in [(dict(data={"name": "spirals"}), "data.name"), (dict(metrics=["a_max"]), "metrics"),
                         (dict(data={"turns": 2.0}), "data.turns")]:
        with pytest.raises(jaxgd.SpecError, match=rf"^{key}: .*does not list in plugins"):
            jaxgd.load_spec(make_spec(**changes))
