"""Spec parsing, sweeps, overrides and validation: every bad spec is refused before
anything compiles, with an error naming the key, the value and what is allowed."""

import pytest
from conftest import make_spec

import jaxgd
from jaxgd.science import registry
from jaxgd.sweep import spec as specs
from jaxgd.sweep.spec import SpecError

BAD_SPECS = [
    # (spec changes, words the message must contain)
    (dict(model={"widht": 8}), ["model.widht", "model.width"]),
    (dict(stpes=10), ["stpes", "steps"]),
    (dict(optimizer={"lr": "fast"}), ["optimizer.lr", "'fast'", "a number > 0"]),
    (dict(steps="100"), ["steps", "'100'", "integer"]),
    (dict(model={"width": 3.5}), ["model.width", "3.5", "integer"]),
    (dict(model={"bias": 1}), ["model.bias", "true or false"]),
    (dict(optimizer={"lr": []}), ["optimizer.lr", "empty sweep"]),
    (dict(optimizer={"lr": {"linspace": [0.1, 1, 0]}}), ["optimizer.lr", "linspace", "count from 1"]),
    (dict(optimizer={"lr": {"range": [0.1, 1, 3]}}), ["optimizer.lr", "linspace, logspace, geomspace"]),
    (dict(model={"width": 0}), ["model.width", "0", ">= 1"]),
    (dict(model={"width": [16, 0]}), ["model.width", "0", ">= 1"]),
    (dict(steps=0), ["steps", ">= 1"]),
    (dict(optimizer={"lr": 0.0}), ["optimizer.lr", "> 0"]),
    (dict(optimizer={"lr": [0.1, -0.1]}), ["optimizer.lr", "-0.1", "> 0"]),
    (dict(log_every=0), ["log_every", ">= 1"]),
    (dict(log_every=41), ["log_every", "41", "steps = 40"]),
    (dict(steps=[10, 20]), ["steps", "cannot be swept"]),
    (dict(model={"activation": "rleu"}), ["model.activation", "'rleu'", "'relu'", "tanh"]),
    (dict(loss={"name": "mae"}), ["loss.name", "'mae'", "'mse'", "logistic"]),
    (dict(data={"name": "mnist"}), ["data.name", "'mnist'", "linear_teacher"]),
    (dict(metrics=["train_loss", "test_los"]), ["metrics", "'test_los'", "test_loss"]),
    (dict(metrics=[]), ["metrics", "non-empty"]),
    (dict(loss={"name": "logistic"}), ["loss.name", "logistic", "data.labels", "sign"]),
    (dict(metrics=["test_error"]), ["metrics", "test_error", "data.labels"]),
    (dict(seeds=0), ["seeds", "count >= 1"]),
    (dict(seeds=[1, 1]), ["seeds", "distinct"]),
    (dict(dtype="float16"), ["dtype", "float16", "'float32', 'float64'"]),
    (dict(model={"train_W": False, "train_a": False}), ["train at least one"]),
    (dict(model={"width": {"logspace": [0, 0.1, 5]}}), ["model.width", "repeated integers"]),
    (dict(plot={"phase_diagram": {"x": "width", "y": "lr", "value": "final_train_loss"}}), ["plot.phase_diagram.x", "swept"]),
    (dict(plot={"phase": {}}), ["plot", "'phase'", "phase_diagram"]),
    (dict(optimizer={"lr": [0.1, 0.2]}, plot={"lines": {"x": "lr", "y": ["final_train_los"]}}),
     ["plot.lines.y", "'final_train_los'", "final_train_loss"]),
    (dict(data={"name": "sin_1d"}), ["data.d", "sin_1d", "data.d = 1"]),
    (dict(metrics=["lipschitz_fd"]), ["data.d", "lipschitz_fd", "data.d = 1"]),
    (dict(optimizer={"schedule": "cosine"}), ["optimizer.schedule", "'cosine'", "exp_decay"]),
    (dict(optimizer={"decay_tau": 0}), ["optimizer.decay_tau", "> 0"]),
    (dict(loss={"huber_delta": -1}), ["loss.huber_delta", "> 0"]),
    (dict(summary_steps=[5]), ["summary_steps", "[5]", "not logged"]),
    (dict(measure={"ntk_steps": [1.5]}), ["measure.ntk_steps", "list of step numbers"]),
    (dict(optimizer={"sampling": "stratified"}), ["optimizer.sampling", "replacement", "epochs"]),
    (dict(data={"name": "file"}), ["data.path", "needs data.path"]),
    (dict(data={"name": "parity", "k": 4}), ["data.k", "k <= data.d = 3"]),
    (dict(model={"width": [4, 8]}, plot={"curves": {"metric": "train_loss", "select": {"widht": 4}}}),
     ["plot.curves.select", "'widht'", "width"]),
    (dict(data={"name": "xor", "d": 1}), ["data.d", "xor needs data.d >= 2"]),
    (dict(metrics=["overlap_max"], data={"name": "two_layer_teacher"}), ["overlap_max", "teacher direction", "single_index"]),
    (dict(metrics=["committee_risk"], data={"name": "single_index"}), ["committee_risk", "square", "population_risk"]),
    (dict(measure={"escape_metric": "test_loss"}, metrics=["train_loss"]), ["measure.escape_metric", "'test_loss'", "train_loss"]),
    (dict(measure={"escape_metric": "nope"}), ["measure.escape_metric", "'nope'"]),
    (dict(model={"constraint": "sphere"}), ["model.constraint", "'sphere'", "spherical", "norm_only"]),
    (dict(optimizer={"name": "online_sgd"}, data={"name": "inline", "n": 1, "n_test": 1, "d": 1, "X_train": [[1.0]], "y_train": [1.0], "X_test": [[1.0]], "y_test": [1.0]}),
     ["online_sgd", "generated data set"]),
]


@pytest.mark.parametrize("changes, words", BAD_SPECS, ids=[str(c) for c, _ in BAD_SPECS])
def test_bad_spec_is_refused_before_compiling(changes, words, no_compile):
    with pytest.raises(SpecError) as err:
        jaxgd.run(make_spec(**changes), progress=False)
    for word in words:
        assert word in str(err.value), f"{word!r} not in: {err.value}"


def test_bad_override_is_refused(no_compile):
    with pytest.raises(SpecError, match=r"optimizer\.llr.*optimizer\.lr"):
        jaxgd.run(make_spec(), overrides={"optimizer.llr": 0.1}, progress=False)
    with pytest.raises(SpecError, match="key=value"):
        specs.load(make_spec(), ["optimizer.lr"])
    with pytest.raises(SpecError, match=r"model\.width.*>= 1"):
        specs.load(make_spec(), ["model.width=[4, -1]"])
    # a table or plugins: said so, where the table's name was an unknown key like 'model.bias'
    with pytest.raises(SpecError, match=r"'model': \[model\] is a table; set its keys one by one, e\.g\. model\.width=\.\.\."):
        specs.load(make_spec(), ["model={width = 8}"])
    with pytest.raises(SpecError, match=r"'vars': \[vars\] is a table; .* vars\.NAME=\.\.\."):
        specs.load(make_spec(), ["vars=3"])
    with pytest.raises(SpecError, match="'plugins': plugins cannot be overridden"):
        specs.load(make_spec(), ["plugins=['x.py']"])


def test_a_spec_file_that_is_not_utf8_text_is_refused_naming_it(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b'name = "\xd0\x00\xff"\n')
    with pytest.raises(SpecError, match=r"binary\.toml: not valid TOML"):
        specs.load(path)


def test_a_leaf_key_suggests_the_one_key_it_ends_and_a_key_given_twice_is_refused(no_compile):
    with pytest.raises(SpecError, match=r"unknown key 'lr' \(did you mean 'optimizer\.lr'\?\)"):
        specs.load(make_spec(), ["lr=0.1"])
    with pytest.raises(SpecError, match=r"'optimizer\.lr' given twice"):
        specs.load(make_spec(), ["optimizer.lr=0.1", "optimizer.lr=0.2"])


def test_a_value_that_is_not_swept_is_left_to_the_figure():
    spec = specs.load(make_spec(model={"width": [4, 8]}, plot={"curves": {"metric": "train_loss", "select": {"width": 16}}}))
    assert spec.plot["curves"][0]["select"] == {"width": 16}


def test_settings_table_lists_every_setting_and_component_from_the_schema():
    rows = {row["key"]: row for row in specs.settings_table()}
    assert set(specs.schema()) | {"seeds", "metrics", "plugins"} <= set(rows)
    assert {f"metrics: {name}" for name in registry.names("metric")} <= set(rows)
    assert {f"data.name: {name}" for name in registry.names("dataset")} <= set(rows)
    assert {f"model.activation: {name}" for name in registry.names("activation")} <= set(rows)
    lr = rows["optimizer.lr"]
    assert (lr["type"], lr["kind"], lr["default"], lr["allowed"]) == ("float", "traced", 0.1, "a number > 0")
    assert rows["model.width"]["kind"] == "static" and rows["steps"]["type"] == "int (not sweepable)"
    optimizer = specs.settings_table("optimizer.")
    assert {row["key"] for row in optimizer if row["kind"] != "component"} == {
        key for key in specs.schema() if key.startswith("optimizer.")}


def test_sweep_forms_expand():
    spec = specs.load(make_spec(
        optimizer={"lr": {"logspace": [-3, 0, 4]}},
        model={"width": {"geomspace": [4, 32, 4]}, "w_scale": {"linspace": [0.5, 1.5, 3]}},
    ))
    assert spec.settings["optimizer.lr"] == pytest.approx([1e-3, 1e-2, 1e-1, 1.0])
    assert spec.settings["model.width"] == [4, 8, 16, 32]
    assert spec.settings["model.w_scale"] == pytest.approx([0.5, 1.0, 1.5])
    assert spec.swept == ["model.width", "model.w_scale", "optimizer.lr"]


def test_overrides_parse_toml_values_and_bare_strings():
    spec = specs.load(make_spec(), [
        "optimizer.lr={logspace = [-2, -1, 2]}", "model.activation=tanh",
        "model.bias=true", "seeds=[3, 5]", "steps=20",
    ])
    assert spec.settings["optimizer.lr"] == pytest.approx([0.01, 0.1])
    assert spec.settings["model.activation"] == "tanh"
    assert spec.settings["model.bias"] is True
    assert spec.seeds == [3, 5]
    assert spec.settings["steps"] == 20


def test_columns_use_the_last_part_unless_two_clash():
    spec = specs.load(make_spec(
        loss={"name": ["mse", "logistic"]}, data={"name": ["linear_teacher", "relu_teacher"], "labels": "sign"},
        optimizer={"lr": [0.1, 0.2]},
    ))
    assert spec.columns == {"data.name": "data.name", "optimizer.lr": "lr", "loss.name": "loss.name"}


def test_integer_values_are_accepted_for_float_settings_and_defaults_fill_in():
    spec = specs.load({"optimizer": {"lr": 1}})
    assert spec.settings["optimizer.lr"] == 1.0 and isinstance(spec.settings["optimizer.lr"], float)
    assert spec.settings["model.width"] == specs.schema()["model.width"].default
    assert spec.seeds == [0] and spec.metrics == specs.DEFAULT_METRICS


def test_resolved_spec_round_trips(tmp_path):
    import tomli_w

    spec = specs.load(make_spec(
        optimizer={"lr": {"logspace": [-2, 0, 3]}},
        plot={"curves": [{"metric": "train_loss", "hue": "lr"}]},
    ))
    path = tmp_path / "spec.toml"
    path.write_text(tomli_w.dumps(spec.to_dict()))
    again = specs.load(path)
    assert again.settings == spec.settings and again.seeds == spec.seeds and again.plot == spec.plot


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        specs.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3")
    with pytest.raises(SpecError, match="not valid TOML"):
        specs.load(bad)
