"""The README documents every setting and every registry entry, and its set-up commands
match what CI runs."""

from pathlib import Path

import pytest

from jaxgd import models, optim, registry
from jaxgd.spec import schema

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("key", sorted(schema()))
def test_every_setting_is_documented(key):
    assert f"| `{key}` |" in README


@pytest.mark.parametrize("name", sorted({*(name for kind in registry.KINDS for name in registry.names(kind)),
                                         *models.SCALINGS, *optim.BATCHES}))
def test_every_registry_entry_is_documented(name):
    assert f"`{name}`" in README


def test_ci_runs_the_readme_test_command():
    command = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest"
    assert command in README
    assert command in (ROOT / ".ci" / "run").read_text()
    assert (ROOT / "sweeps" / "quickstart.toml").is_file()
    assert "jaxgd run sweeps/quickstart.toml --out runs/quickstart" in README
