"""The command line end to end: `jaxgd run` then `jaxgd plot` write non-empty Parquet
files, the resolved spec and PNG figures; `--help` answers without JAX; `jaxgd settings`
lists every setting; every error a user can cause is one line `jaxgd: error: ...` with
exit status 2 (a traceback only with --debug)."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from jaxgd.front import cli
from jaxgd.storage.results import Results
from jaxgd.sweep.spec import schema

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SPEC = """
name = "cli"
seeds = 2
steps = 30
log_every = 10
metrics = ["train_loss", "grad_norm"]

[data]
n = 16
n_test = 8
d = 3

[model]
width = [4, 8]

[optimizer]
lr = {logspace = [-2, 1.5, 4]}

[[plot.phase_diagram]]
x = "width"
y = "lr"
value = "final_train_loss"

[[plot.curves]]
metric = "train_loss"
hue = "lr"
"""


def jaxgd_cli(*args):
    return subprocess.run([sys.executable, "-m", "jaxgd", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def is_png(path):
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The folder of a finished `jaxgd run` of SPEC (16 runs), run in this process."""
    folder = tmp_path_factory.mktemp("finished")
    spec = folder / "cli.toml"
    spec.write_text(SPEC)
    assert cli.main(["run", str(spec), "--out", str(folder / "out"), "--quiet"]) == 0
    return folder / "out"


def run_cli(capsys, *args):
    """`jaxgd ARGS` in this process: (exit status, stdout, stderr)."""
    status = cli.main(list(map(str, args)))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_run_then_plot(tmp_path):
    spec = tmp_path / "cli.toml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    done = jaxgd_cli("run", spec, "--out", out, "--set", "steps=20", "--set", "seeds=[5, 6]")
    assert done.returncode == 0, done.stderr
    assert "jaxgd: 16 runs x 20 steps" in done.stderr and "run-steps/s" in done.stderr

    history, summary = pd.read_parquet(out / "history.parquet"), pd.read_parquet(out / "summary.parquet")
    assert len(history) == 16 * 3 and len(summary) == 16
    assert set(summary.seed) == {5, 6} and history.step.max() == 20
    assert summary.diverged.any() and not summary.diverged.all()  # lr up to 10^1.5 blows up
    resolved = tomllib.loads((out / "spec.toml").read_text())
    assert resolved["steps"] == 20 and resolved["seeds"] == [5, 6] and len(resolved["optimizer"]["lr"]) == 4
    assert is_png(out / "phase_final_train_loss_width_lr.png") and is_png(out / "curves_train_loss.png")

    figure = tmp_path / "grad.png"
    drawn = jaxgd_cli("plot", out, "--x", "lr", "--y", "width", "--value", "min_grad_norm",
                      "--reduce", "max", "--out", figure)
    assert drawn.returncode == 0, drawn.stderr
    assert is_png(figure)


def test_help_answers_without_importing_jax():
    check = ("import sys, time; start = time.perf_counter(); from jaxgd.front import cli\n"
             "try:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print(time.perf_counter() - start, *[m for m in ('jax', 'matplotlib', 'pandas', 'jaxgd.engine.loop', "
             "'jaxgd.sweep.spec') if m in sys.modules], file=sys.stderr)")
    for command in (["--help"], ["run", "--help"], ["plot", "--help"]):
        done = subprocess.run([sys.executable, "-c", check, *command], capture_output=True, text=True, timeout=60)
        seconds, *heavy = done.stderr.split()
        print(f"jaxgd {' '.join(command)}: {float(seconds) * 1000:.0f} ms in Python")
        assert done.returncode == 0 and "usage: jaxgd" in done.stdout and heavy == [], done.stderr
    version = jaxgd_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"jaxgd {cli.__version__}"


def test_a_run_that_draws_no_figure_does_not_import_matplotlib_and_checks_their_formats_where_drawn(tmp_path):
    """--dry-run and --no-plots load a spec with figures without matplotlib (0.3 s); a
    figure's format is refused where figures will be drawn, before anything runs."""
    spec = tmp_path / "cli.toml"
    spec.write_text(SPEC.replace('value = "final_train_loss"', 'value = "final_train_loss"\nfile = "phase.parquet"'))
    check = ("import sys\nfrom jaxgd.front import cli\n"
             "for args in (['--dry-run'], ['--no-plots', '--quiet']):\n"
             "    status = cli.main(['run', sys.argv[1], '--out', sys.argv[2], *args])\n"
             "    print('loaded:', status, 'matplotlib' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", check, spec, tmp_path / "out"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    loaded = [line for line in done.stderr.splitlines() if line.startswith("loaded:")]
    assert loaded == ["loaded: 0 False"] * 2, done.stderr
    expected = "plot.phase_diagram.file: got 'phase.parquet'; expected a file name ending in"
    (tmp_path / "out" / "summary.parquet").unlink()
    for drawn in (["run", spec, "--out", tmp_path / "out"], ["collect", tmp_path / "out"]):
        refused = jaxgd_cli(*drawn)
        assert refused.returncode == 2 and expected in refused.stderr, refused.stderr
    assert not (tmp_path / "out" / "summary.parquet").exists()  # refused before assembling the tables


def test_import_jaxgd_is_cheap_and_its_names_are_found_on_use():
    check = ("import sys, jaxgd; before = 'jax' in sys.modules\n"
             "print(before, sorted(jaxgd.__all__), jaxgd.curves is jaxgd.front.plot.curves, jaxgd.run.__module__)")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    before, *rest = done.stdout.split(" ", 1)
    assert done.returncode == 0 and before == "False", done.stderr
    for name in ("run", "Results", "phase_diagram", "curves", "lines", "materialize", "collect", "resume"):
        assert f"'{name}'" in rest[0]
    assert rest[0].rstrip().endswith("True jaxgd.front.api")


def test_settings_lists_every_setting_and_a_prefix_only_its_own(capsys):
    status, out, _ = run_cli(capsys, "settings")
    keys = [line.split("  ")[0] for line in out.splitlines()[1:]]
    assert status == 0 and set(schema()) | {"seeds", "metrics", "metrics: grad_norm", "data.name: xor"} <= set(keys)
    lr = next(line for line in out.splitlines() if line.startswith("optimizer.lr "))
    assert lr.split()[:4] == ["optimizer.lr", "float", "traced", "0.1"] and "step size [a number > 0]" in lr
    status, out, _ = run_cli(capsys, "settings", "optimizer.")
    keys = [line.split("  ")[0] for line in out.splitlines()[1:]]
    assert status == 0 and keys == [key for key in schema() if key.startswith("optimizer.")] + [
        f"optimizer.schedule: {name}" for name in ("constant", "exp_decay", "poly_decay", "step_decay")]


def test_quickstart_with_other_widths_draws_the_figures_that_still_apply(tmp_path, capsys):
    out = tmp_path / "quickstart"
    status, _, err = run_cli(capsys, "run", ROOT / "sweeps" / "quickstart.toml", "--out", out,
                             "--set", "model.width=[8, 16]", "--set", "steps=20", "--quiet")
    assert status == 0, err
    assert set(pd.read_parquet(out / "summary.parquet").width) == {8, 16}
    assert is_png(out / "phase_final_train_loss_width_lr.png") and not (out / "curves_train_loss.png").exists()
    assert err.splitlines()[0] == ("jaxgd: warning: skipping figure curves_train_loss.png: select.width: "
                                   "no rows with width = 64; the table has width = 8, 16")
    status, _, err = run_cli(capsys, "run", ROOT / "sweeps" / "quickstart.toml", "--out", out,
                             "--set", "model.width=[8, 16]", "--set", "steps=20", "--quiet", "--no-plots")
    assert status == 0 and "warning" not in err


def test_quickstart_with_one_step_size_skips_the_figures_drawn_against_it(tmp_path, capsys):
    """--set optimizer.lr=0.05 leaves the quickstart's figures against lr nothing to draw:
    they are skipped with a warning saying why, and the sweep runs (it was refused)."""
    out = tmp_path / "one_lr"
    status, _, err = run_cli(capsys, "run", ROOT / "sweeps" / "quickstart.toml", "--out", out,
                             "--set", "optimizer.lr=0.05", "--set", "steps=20", "--set", "seeds=1", "--quiet")
    assert status == 0, err
    assert err.splitlines()[:2] == [
        "jaxgd: warning: skipping a phase_diagram figure: plot.phase_diagram.y names lr, which an override sets "
        "to one value (optimizer.lr = 0.05)",
        "jaxgd: warning: skipping a curves figure: plot.curves.hue names lr, which an override sets to one value "
        "(optimizer.lr = 0.05)"]
    assert len(pd.read_parquet(out / "summary.parquet")) == 8 and not list(out.glob("*.png"))
    status, _, err = run_cli(capsys, "run", ROOT / "sweeps" / "quickstart.toml", "--out", out, "--no-plots",
                             "--set", "optimizer.lr=0.05", "--set", "steps=20", "--set", "seeds=1", "--quiet")
    assert status == 0 and "warning" not in err


def test_plot_draws_curves_and_lines_with_a_selection(finished, capsys):
    status, _, err = run_cli(capsys, "plot", finished, "curves", "--metric", "train_loss", "--hue", "lr",
                             "--select", "width=8")
    assert status == 0 and is_png(finished / "curves_train_loss.png"), err
    status, _, err = run_cli(capsys, "plot", finished, "lines", "--x", "width", "--y", "final_train_loss",
                             "final_grad_norm", "--select", "lr=0.1")  # the nearest lr, 10^-0.83
    assert status == 0 and is_png(finished / "lines_final_train_loss_final_grad_norm_width.png"), err


def test_plot_on_an_unfinished_folder_draws_the_finished_runs(finished, tmp_path, capsys, monkeypatch):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(finished, unfinished, ignore=shutil.ignore_patterns("*.parquet", "*.png", "stats.json"))
    parts = sorted((unfinished / "parts").glob("*.npz"))
    assert len(parts) == 2  # one part a group (width)
    parts[1].unlink()
    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k)))
    status, _, err = run_cli(capsys, "plot", unfinished, "curves", "--metric", "train_loss", "--hue", "lr")
    assert status == 0, err
    assert "jaxgd: 8 of 16 runs missing" in err and is_png(unfinished / "curves_train_loss.png")
    assert drawn[0].axes[0].get_title().endswith("\n8 of 16 runs missing")


def one_error_line(status, err) -> str:
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("jaxgd: error: "), err
    return lines[0]


def write_inputs(tmp_path: Path, finished: Path) -> None:
    """The files user_errors names: a good spec, a spec of a bad data file, a plain file,
    a spec that is not text, a finished folder whose summary is damaged."""
    (tmp_path / "cli.toml").write_text(SPEC)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    (tmp_path / "file.toml").write_text('[data]\nname = "file"\npath = "bad.npz"\n')
    (tmp_path / "a-file").write_text("")
    (tmp_path / "binary.toml").write_bytes(b"\x7fELF\x02\x01\x01\xd0\xff")
    shutil.copytree(finished, tmp_path / "damaged", ignore=shutil.ignore_patterns("parts"))
    (tmp_path / "damaged" / "summary.parquet").write_bytes(b"junk")


def user_errors(tmp_path: Path, finished: Path) -> dict:
    """Each error a user can cause: (arguments, words the one line must contain)."""
    spec, bad_data, out = tmp_path / "cli.toml", tmp_path / "file.toml", tmp_path / "out"
    return {
        "bad spec": (["run", spec, "--out", out, "--set", "model.activation=rleu"], ["model.activation", "'relu'"]),
        "unknown key": (["run", spec, "--out", out, "--set", "lr=0.1"], ["did you mean 'optimizer.lr'?"]),
        "key twice": (["run", spec, "--out", out, "--set", "steps=5", "--set", "steps=6"], ["'steps' given twice"]),
        "bad data file": (["run", bad_data, "--out", out], ["data.path", "bad.npz", "not an .npz file"]),
        "out names a file": (["run", spec, "--out", tmp_path / "a-file"], ["a-file is a file, not a folder"]),
        "folder not writable": (["run", spec, "--out", "/sys/jaxgd-test"], ["cannot write", "/sys/jaxgd-test"]),
        "compile cache a file": (["run", spec, "--out", out, "--compile-cache", tmp_path / "a-file"],
                                 ["--compile-cache", f"got {tmp_path / 'a-file'};", "(it is a file)",
                                  "give a writable folder, or off"]),
        "compile cache not creatable": (["run", spec, "--out", out, "--compile-cache", tmp_path / "a-file" / "cache"],
                                        ["--compile-cache", "a-file/cache", "(Not a directory)", "writable folder"]),
        "run too large": (["run", spec, "--out", out, "--set", "model.width=[4, 2000000000]"],
                          ["model.width = 2,000,000,000", "GiB", "smaller"]),
        "integer beyond int32": (["run", spec, "--out", out, "--set", "model.width=[4, 10000000000]"],
                                 ["model.width: got 10,000,000,000", "at most 2^31 - 1"]),
        "missing spec": (["run", tmp_path / "nope.toml", "--out", out], ["spec file not found", "nope.toml"]),
        "no such command option": (["run", spec, "--out", out, "--sett", "x"], ["unrecognized arguments: --sett"]),
        "plot kind": (["plot", finished, "bars"], ["'bars'", "phase", "curves", "lines"]),
        "plot options": (["plot", finished, "--x", "width"], ["plot.phase_diagram: missing y, value"]),
        "plot column": (["plot", finished, "curves", "--metric", "test_loss"], ["'test_loss'", "train_loss"]),
        "plot select": (["plot", finished, "curves", "--metric", "train_loss", "--select", "width=5"],
                        ["width = 5", "4, 8"]),
        "plot a file": (["plot", spec], ["cli.toml is not a folder"]),
        "plot nothing": (["plot", tmp_path], ["history.parquet not found"]),
        "spec not text": (["run", tmp_path / "binary.toml", "--out", out], ["binary.toml: not valid TOML"]),
        "spec a folder": (["run", tmp_path, "--out", out], ["spec file not found", "(it is a folder)"]),
        "plot out a folder": (["plot", finished, "curves", "--metric", "train_loss", "--out", tmp_path],
                              ["--out", "it is a folder, give a file in it", "curves_train_loss.png"]),
        "plot out nowhere": (["plot", finished, "curves", "--metric", "train_loss", "--out", tmp_path / "no" / "x.png"],
                             ["--out", f"the folder {tmp_path / 'no'} does not exist"]),
        "plot out unwritable": (["plot", finished, "curves", "--metric", "train_loss", "--out", "/proc/x.png"],
                                ["--out: got '/proc/x.png'; the folder /proc cannot be written", "a folder you can write to"]),
        "plot out not a figure": (["plot", finished, "curves", "--metric", "train_loss", "--out", "x.parquet"],
                                  ["--out: got 'x.parquet'; expected a file name ending in", ".png", ".pdf", ".svg"]),
        "plot out over a table": (["plot", finished, "curves", "--metric", "train_loss",
                                   "--out", finished / "summary.parquet"], ["--out", "summary.parquet", ".png"]),
        "plot damaged table": (["plot", tmp_path / "damaged", "--x", "width", "--y", "lr", "--value", "final_train_loss"],
                               ["summary.parquet cannot be read", "jaxgd collect"]),
    }


CASES = list(user_errors(Path("/x"), Path("/y")))


@pytest.mark.parametrize("case", CASES)
def test_each_user_error_is_one_line_with_exit_status_2(case, tmp_path, finished, capsys):
    write_inputs(tmp_path, finished)
    args, words = user_errors(tmp_path, finished)[case]
    try:
        status, _, err = run_cli(capsys, *args)
    except SystemExit as exit:  # argparse's errors exit from within
        status, err = exit.code, capsys.readouterr().err
    line = one_error_line(status, err)
    for word in words:
        assert word in line, line


def test_debug_shows_the_traceback(tmp_path):
    spec = tmp_path / "cli.toml"
    spec.write_text(SPEC)
    for debug in (["--debug", "run"], ["run", "--debug"]):
        done = jaxgd_cli(*debug, spec, "--out", tmp_path / "o", "--set", "model.activation=rleu")
        assert done.returncode == 1 and "Traceback" in done.stderr and "SpecError: model.activation" in done.stderr


def test_plot_and_load_of_a_folder_missing_a_table(finished, tmp_path, capsys):
    """Without history.parquet (summary.parquet there), `jaxgd plot` said 'not found: is
    DIR the --out folder of a `jaxgd run`?' where without summary.parquet it drew the runs
    of the parts; Results.load said so too, and not how to write the tables again."""
    folder = shutil.copytree(finished, tmp_path / "folder", ignore=shutil.ignore_patterns("history.parquet"))
    status, _, err = run_cli(capsys, "plot", folder, "curves", "--metric", "train_loss", "--hue", "lr")
    assert status == 0 and is_png(folder / "curves_train_loss.png"), err
    with pytest.raises(FileNotFoundError, match=rf"history.parquet not found: .*`jaxgd collect {folder}`"):
        Results.load(folder)


def test_plot_of_a_finished_folder_needs_not_its_data_file(tmp_path, capsys):
    """A finished folder copied to another machine, or whose data file moved: `jaxgd plot`
    read the data file again (to check the figure's options against the spec) and said
    'data.path: file not found'. The tables hold all it draws."""
    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, X_train=rng.normal(size=(12, 3)), y_train=rng.normal(size=12),
             X_test=rng.normal(size=(5, 3)), y_test=rng.normal(size=5))
    (tmp_path / "s.toml").write_text(f'steps = 20\nlog_every = 10\n[data]\nname = "file"\npath = "{data}"\n'
                                     '[model]\nwidth = [4, 8]\n[optimizer]\nlr = [0.05, 0.1]\n')
    assert run_cli(capsys, "run", tmp_path / "s.toml", "--out", tmp_path / "out", "--quiet")[0] == 0
    data.unlink()
    status, _, err = run_cli(capsys, "plot", tmp_path / "out", "--x", "width", "--y", "lr", "--value", "final_train_loss")
    assert status == 0 and is_png(tmp_path / "out" / "phase_final_train_loss_width_lr.png"), err
