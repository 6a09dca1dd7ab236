"""Limits and casts (issue 12): step counts the int32 loop counter holds, settings that
survive the run's float type, plot settings checked before the sweep; all refused before
anything compiles, naming the key and the value."""

import time

import pytest
from conftest import make_spec

import jaxgd
from jaxgd import SpecError

REFUSED = [
    (dict(steps=4294967306), ["steps", "4,294,967,306", "2^31 - 1"]),
    (dict(steps=10**12), ["steps", "at most"]),
    (dict(steps=2**31 - 1, log_every=1), ["log_every", "at most"]),
    (dict(optimizer={"lr": 1e-320}), ["optimizer.lr", "1e-320", "float32", "smallest normal"]),
    (dict(optimizer={"lr": 1e-40}), ["optimizer.lr", "1e-40", "float32"]),
    (dict(optimizer={"lr": 1e39}), ["optimizer.lr", "1e+39", "inf in float32"]),
    (dict(optimizer={"lr": [0.1, 0.1000000001]}), ["optimizer.lr", "0.1 and 0.1000000001", "same number in float32"]),
    (dict(dtype="float64", optimizer={"lr": 1e-320}), ["optimizer.lr", "float64"]),
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


def test_values_that_differ_in_float64_are_kept():
    spec = jaxgd.load_spec(make_spec(dtype="float64", optimizer={"lr": [0.1, 0.1000000001]}))
    assert spec.settings["optimizer.lr"] == [0.1, 0.1000000001]
    assert jaxgd.load_spec(make_spec(steps=2**31 - 1, log_every=2**20)).settings["steps"] == 2**31 - 1
