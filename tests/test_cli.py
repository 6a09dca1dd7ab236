"""The command line end to end: `jaxgd run` then `jaxgd plot` write non-empty Parquet
files, the resolved spec and PNG figures."""

import subprocess
import sys

import pandas as pd
import tomllib

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
    return subprocess.run([sys.executable, "-m", "jaxgd.cli", *args], capture_output=True, text=True, timeout=300)


def is_png(path):
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


def test_run_then_plot(tmp_path):
    spec = tmp_path / "cli.toml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    done = jaxgd_cli("run", str(spec), "--out", str(out), "--set", "steps=20", "--set", "seeds=[5, 6]")
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
    drawn = jaxgd_cli("plot", str(out), "--x", "lr", "--y", "width", "--value", "min_grad_norm",
                      "--reduce", "max", "--out", str(figure))
    assert drawn.returncode == 0, drawn.stderr
    assert is_png(figure)


def test_errors_are_reported_without_a_traceback(tmp_path):
    spec = tmp_path / "cli.toml"
    spec.write_text(SPEC)
    bad = jaxgd_cli("run", str(spec), "--out", str(tmp_path / "o"), "--set", "model.activation=rleu")
    assert bad.returncode == 2
    assert "model.activation" in bad.stderr and "'relu'" in bad.stderr and "Traceback" not in bad.stderr
    missing = jaxgd_cli("plot", str(tmp_path / "nowhere"), "--x", "a", "--y", "b", "--value", "c")
    assert missing.returncode == 2 and "not found" in missing.stderr
