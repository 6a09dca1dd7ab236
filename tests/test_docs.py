"""The README's settings and components tables are the ones generated from the code, and
its set-up commands match what CI runs."""

from pathlib import Path

from jaxgd import docs

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_tables_are_the_generated_ones():
    """Regenerate with `python -m jaxgd.docs` after changing a setting or a component."""
    assert docs.sections_of(README) == docs.generated()


def test_ci_runs_the_readme_test_command():
    command = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest"
    assert command in README
    assert command in (ROOT / ".ci" / "run").read_text()
    assert (ROOT / "sweeps" / "quickstart.toml").is_file()
    assert "jaxgd run sweeps/quickstart.toml --out runs/quickstart" in README
