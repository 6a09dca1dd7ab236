import copy

import jax
import pytest

from jaxgd.engine import dispatch

# The test process computes on one device the reference numbers that tests of several
# devices compare against; jaxgd.run would otherwise take one device per core.
jax.config.update("jax_num_cpu_devices", 1)

TINY = {
    "name": "tiny",
    "seeds": 2,
    "steps": 40,
    "log_every": 10,
    "metrics": ["train_loss", "test_loss"],
    "data": {"name": "linear_teacher", "n": 16, "n_test": 8, "d": 3},
    "model": {"width": 8, "activation": "relu", "scaling": "ntk"},
    "optimizer": {"lr": 0.1},
    "loss": {"name": "mse"},
}


def make_spec(base: dict = TINY, /, **tables):
    """`base` (TINY unless given) with some tables or keys replaced or merged:
    make_spec(model={"width": [4, 8]})."""
    spec = copy.deepcopy(base)
    for key, value in tables.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key].update(value)
        else:
            spec[key] = value
    return spec


@pytest.fixture
def no_compile(monkeypatch):
    """Fails the test if anything reaches the engine."""

    def refuse(*args, **kwargs):
        raise AssertionError("the engine was reached: validation should have failed first")

    monkeypatch.setattr(dispatch, "execute", refuse)
    monkeypatch.setattr(dispatch, "compile_group", refuse)
