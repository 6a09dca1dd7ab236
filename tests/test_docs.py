"""The README's settings and components tables are the ones generated from the code, CI
runs its set-up commands as written, and its examples (Python, TOML, `--set`), the columns
it names and the modules of its layout are the real ones."""

import importlib.util
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from conftest import make_spec

import jaxgd
from jaxgd.front import docs
from jaxgd.sweep import plan as planning
from jaxgd.sweep import spec as specs

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


def fenced(language: str) -> list[str]:
    """The README's code blocks in `language`."""
    return re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL)


def section(title: str) -> str:
    """The README's text under the heading `title`, up to the next heading of its level or above."""
    level, rest = title.split(" ", 1)
    heading = rf"^{level} {re.escape(rest)}\n(.*?)(?=^#{{1,{len(level)}}} |\Z)"
    return re.search(heading, README, re.DOTALL | re.MULTILINE).group(1)


def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    """Every line of the README's Python block, on a smaller quickstart (widths 8 and 64, one
    seed: run 17 and the curves' width = 64 are still there). It once asked for parameters
    the sweep did not keep."""
    (block,) = [b for b in fenced("python") if "jaxgd.run(" in b]
    quickstart = ROOT / "sweeps" / "quickstart.toml"
    assert block.count('"sweeps/quickstart.toml"') == 2 and block.count("overrides={") == 1
    smaller = {"model.width": [8, 64], "seeds": 1}
    code = block.replace('"sweeps/quickstart.toml"', repr(str(quickstart))).replace(
        "overrides={", f"overrides={{**{smaller!r}, ")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    assert set(namespace["layers"]) == {"W", "a"} and namespace["layers"]["W"].shape == (8, 8)  # run 17: width 8, d 8
    assert namespace["cell"]["step"] == 200 and (tmp_path / "lines.png").stat().st_size > 0


def test_the_readme_spec_examples_are_valid_specs():
    """The spec of "The spec" validates and plans; the block of vars, zip and designs is a
    fragment whose top-level keys come before its tables (after [optimizer] they were
    optimizer.zip, ...), valid once the zipped settings are lists of equal length."""
    example, fragment = fenced("toml")
    assert planning.make(specs.load(tomllib.loads(example))).n_runs == 4 * 3 * 4 * 20
    table = tomllib.loads(fragment)
    assert {"zip", "design", "samples", "design_seed"} <= set(table)
    resolved = specs.load(table, {"model.width": [8, 16], "data.n": [32, 64]})
    assert planning.make(resolved).n_runs == 2 * 64


def test_the_readme_set_examples_are_shell_words_of_toml_values():
    """Each `--set ...` the README shows is `--set KEY=VALUE` in a shell as written (an
    unquoted list with a space split in two) and parses."""
    examples = re.findall(r"`(--set [^`]*)`", README)
    assert len(examples) >= 6
    for example in examples:
        words = shlex.split(example)
        assert len(words) % 2 == 0 and words[::2] == ["--set"] * (len(words) // 2), example
        assert specs.parse_overrides(words[1::2])


def quoted_columns(text: str) -> list[str]:
    """The column names quoted in `text`, less the settings it names."""
    return [name for name in re.findall(r"`([a-z_<>]+)`", text) if name not in specs.schema()]


def test_the_columns_the_readme_names_are_the_tables_in_their_order():
    spec = make_spec(metrics=["train_loss"], summary_steps=[20], vars={"c": [1.0, 2.0]},
                     model={"width": [4, 8]}, optimizer={"lr": {"expr": "c / 10"}},
                     measure={"escape_metric": "train_loss"}, engine={"stop_when": "train_loss < 1e-8"})
    results = jaxgd.run(spec, progress=False)
    _, history, summary = re.split(r"^- `(?:history|summary)`:", section("## Results").split("\n- `--out DIR`")[0],
                                   flags=re.MULTILINE)
    fill = {"<metric>": "train_loss", "<step>": "20"}
    for text, table in ((history, results.history), (summary, results.summary)):
        named = [re.sub("|".join(fill), lambda m: fill[m[0]], name) for name in quoted_columns(text)]
        assert named and set(named) <= set(table.columns), set(named) - set(table.columns)
        assert sorted(named, key=list(table.columns).index) == named
    assert {"width", "c", "lr"} <= set(results.summary.columns)  # swept setting, var, derived setting


def test_the_layout_names_every_module():
    layout = section("## Layout")
    modules = [path.relative_to(ROOT) for path in (ROOT / "jaxgd").rglob("*.py")
               if path.name not in ("__init__.py", "__main__.py")]
    missing = [str(m) for m in modules if f"`{m.name}`" not in layout and f"`{m.as_posix()}`" not in layout]
    assert not missing, f"README's Layout does not name {missing}"
