"""Limits and casts (issue 12): step counts the int32 loop counter holds, settings that
survive the run's float type, plot settings checked before the sweep; all refused before
anything compiles, naming the key and the value."""

import time

import jax
import jax.numpy as jnp
import pytest
from conftest import make_spec

import jaxgd
from jaxgd import SpecError
from jaxgd.engine import dispatch as engine
from jaxgd.errors import SizeError
from jaxgd.sweep import expressions

REFUSED = [
    (dict(steps=4294967306), ["steps", "4,294,967,306", "2^31 - 1"]),
    (dict(steps=10**12), ["steps", "at most"]),
    (dict(steps=2**31 - 1, log_every=1), ["log_every", "at most"]),
    (dict(optimizer={"lr": 1e-320}), ["optimizer.lr", "1e-320", "float32", "smallest normal"]),
    (dict(optimizer={"lr": 1e-40}), ["optimizer.lr", "1e-40", "float32"]),
    (dict(optimizer={"lr": 1e39}), ["optimizer.lr", "1e+39", "inf in float32"]),
    (dict(optimizer={"lr": [0.1, 0.1000000001]}), ["optimizer.lr", "0.1 and 0.1000000001", "same number in float32"]),
    (dict(dtype="float64", optimizer={"lr": 1e-320}), ["optimizer.lr", "float64"]),
    # every integer setting reaches JAX as an int32: a larger one overflowed inside JAX
    (dict(data={"name": "two_layer_teacher", "teacher_width": 10**30}), ["data.teacher_width", "at most 2^31 - 1"]),
    (dict(metrics=["sharpness"], measure={"sharpness_iterations": 2**31}), ["measure.sharpness_iterations", "2^31 - 1"]),
    (dict(optimizer={"lr": 10**400}), ["optimizer.lr", "a number > 0"]),
    # ranges: a count that would fill the memory (or hang) before the size refusal, ends that
    # are not finite numbers, values beyond float64
    (dict(optimizer={"lr": {"linspace": [0.1, 1, 10**9]}}), ["optimizer.lr", "count from 1 to 16,777,216"]),
    (dict(optimizer={"lr": {"linspace": [0.1, 1, 10**30]}}), ["optimizer.lr", "count from 1 to 16,777,216"]),
    (dict(model={"width": {"linspace": [float("nan"), 16, 3]}}), ["model.width", "finite numbers start, stop"]),
    (dict(vars={"c": {"logspace": [0, float("inf"), 3]}}), ["vars.c", "finite numbers start, stop"]),
    (dict(model={"width": {"logspace": [0, 400, 3]}}), ["model.width", "reaches inf"]),
    # expressions: parts without names computed in floats when parsed, never as huge integers
    (dict(optimizer={"lr": {"expr": "10 ** 10 ** 10"}}), ["optimizer.lr", "'10 ** 10 ** 10' = inf", "finite number"]),
    (dict(optimizer={"lr": {"expr": "1 / 0"}}), ["optimizer.lr", "'1 / 0' = inf"]),
    (dict(optimizer={"lr": {"expr": "-" * 1000 + "1"}}), ["optimizer.lr", "nests deeper than 100"]),
    (dict(optimizer={"lr": {"expr": "+".join(["1"] * 100000)}}), ["optimizer.lr", "nests deeper than 100"]),
    (dict(engine={"stop_when": "train_loss < " + "-" * 100000 + "1"}), ["engine.stop_when", "NAME OP NUMBER"]),
    (dict(optimizer={"lr": {"expr": "1e39"}}), ["optimizer.lr", "gives 1e+39", "inf in float32"]),
    (dict(vars={"c": [1.0, 1e-40]}, model={"w_scale": {"expr": "c"}}), ["model.w_scale", "1e-40", "'vars.c': 1e-40", "float32"]),
    (dict(optimizer={"lr": [0.1, 0.2]}, model={"width": [4, 8]},
          plot={"phase_diagram": {"x": "lr", "y": "lr", "value": "final_train_loss"}}), ["x and y are both 'lr'"]),
]


@pytest.mark.parametrize("changes, words", REFUSED, ids=[str(c)[:60] for c, _ in REFUSED])
def test_refused_within_a_second_before_compiling(changes, words, no_compile):
    start = time.perf_counter()
    with pytest.raises(SpecError) as err:
        jaxgd.run(make_spec(**changes), progress=False)
    assert time.perf_counter() - start < 1.0
    for word in words:
        assert word in str(err.value), f"{word!r} not in: {err.value}"


def test_a_random_design_of_too_many_samples_is_refused_by_its_size(no_compile):
    spec = make_spec(design="random", samples=10**30, optimizer={"lr": {"logspace": [-3, 0, 4]}})
    with pytest.raises(SizeError, match="the sweep has 2,000,000,000,000,000,000,000,000,000,000 runs"):
        jaxgd.run(spec, progress=False)


def test_a_run_whose_random_draw_cannot_fit_is_refused_naming_its_data_set_counts(monkeypatch):
    """A teacher of 2 * 10^9 hidden units in d = 64 is 1.3 * 10^11 values of the run's draw
    (made before its program), 512 GiB: refused before anything compiles (at 10^9 x 8 it hung,
    allocating), naming the setting."""

    def refuse(*args, **kwargs):
        raise AssertionError("compiled: the size check should have refused first")

    monkeypatch.setattr(engine, "compile_group", refuse)
    monkeypatch.setattr(engine, "compile_draws", refuse)
    spec = make_spec(seeds=1, data={"name": "two_layer_teacher", "teacher_width": 2 * 10**9, "n": 8, "d": 64})
    with pytest.raises(SizeError, match=r"data\.teacher_width = 2,000,000,000 needs about 512\.0 GiB") as err:
        jaxgd.run(spec, progress=False)
    assert "data.clusters" not in str(err.value)  # a setting of another data set


def test_large_integers_in_expressions_are_floats_for_jax():
    """A Python int beyond int32 overflowed as an argument of a JAX operation."""
    tree = expressions.parse("c * 2 ** 40 / sharpness0", "optimizer.lr")
    assert float(jax.jit(lambda c: expressions.evaluate(tree, {"c": c, "sharpness0": 2.0}, jnp))(1.0)) == 2.0**39


def test_values_that_differ_in_float64_are_kept():
    spec = jaxgd.load_spec(make_spec(dtype="float64", optimizer={"lr": [0.1, 0.1000000001]}))
    assert spec.settings["optimizer.lr"] == [0.1, 0.1000000001]
    assert jaxgd.load_spec(make_spec(steps=2**31 - 1, log_every=2**20)).settings["steps"] == 2**31 - 1
