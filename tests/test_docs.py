"""The README's settings and components tables are the ones generated from the code, and
CI runs its set-up commands as written."""

import importlib.util
from pathlib import Path

import pytest

from jaxgd.front import docs

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_tables_are_the_generated_ones():
    """Regenerate with `python -m jaxgd.front.docs` after changing a setting or a component."""
    assert docs.sections_of(README) == docs.generated()


def readme_commands():
    """.ci/readme_commands.py, the extraction CI runs."""
    spec = importlib.util.spec_from_file_location("readme_commands", ROOT / ".ci" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ci_runs_the_readme_set_up_commands_taken_from_the_readme():
    main, tests = readme_commands().setup_commands(README)
    assert main.endswith("pip install -e . && .venv/bin/jaxgd run sweeps/quickstart.toml --out runs/quickstart")
    assert "[" not in main  # the main job installs no extras
    assert tests.endswith(".venv/bin/pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_commands.py README.md 0" in ci and "readme_commands.py README.md 1" in ci
    assert (ROOT / "sweeps" / "quickstart.toml").is_file()


@pytest.mark.parametrize("readme", ["# jaxgd\n", "## Set-up\n\n```bash\nmake\n```\n\n## Next\n"])
def test_ci_fails_when_the_readme_commands_cannot_be_found(readme):
    with pytest.raises(ValueError, match="Set-up"):
        readme_commands().setup_commands(readme)
