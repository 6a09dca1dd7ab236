"""The package as a new user gets it: `pip install .` without extras into a fresh virtual
environment (dependencies resolved by pip, from its cache or PyPI) imports every module
and runs a sweep through the command line. It fails if something imported at run time
is not a declared dependency."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scale_helpers import child_env, sweep, write_spec

ROOT = Path(__file__).resolve().parents[1]
# a small sweep that also draws a figure (matplotlib is a runtime dependency too)
SPEC = {**sweep(), "plot": {"phase_diagram": [{"x": "width", "y": "lr", "value": "final_train_loss"}]}}
IMPORT_EVERY_MODULE = ("import importlib, pkgutil, jaxgd\n"
                       "for m in pkgutil.walk_packages(jaxgd.__path__, 'jaxgd.'):\n"
                       "    if not m.name.endswith('__main__'):  # that one runs the command line\n"
                       "        importlib.import_module(m.name)\n"
                       "print(jaxgd.__file__)")


@pytest.mark.install
def test_a_fresh_install_without_extras_runs_a_sweep(tmp_path):
    source = tmp_path / "source"  # a copy, so that building leaves nothing in the checkout
    shutil.copytree(ROOT / "jaxgd", source / "jaxgd", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    venv = tmp_path / "venv"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    pip = subprocess.run([venv / "bin" / "pip", "install", "--quiet", source], capture_output=True, text=True,
                         timeout=900)
    print(f"fresh venv and `pip install .`: {time.perf_counter() - start:.0f} s")
    assert pip.returncode == 0, pip.stderr[-3000:]
    try:
        env = child_env(JAX_PLATFORMS="cpu", JAXGD_COMPILE_CACHE="off")
        imported = subprocess.run([venv / "bin" / "python", "-c", IMPORT_EVERY_MODULE], capture_output=True,
                                  text=True, cwd=tmp_path, env=env, timeout=300)
        assert imported.returncode == 0, imported.stderr[-3000:]
        assert imported.stdout.strip().startswith(str(venv))  # the installed copy, not the checkout
        write_spec(tmp_path / "tiny.toml", SPEC)
        done = subprocess.run([venv / "bin" / "jaxgd", "run", "tiny.toml", "--out", "out"], capture_output=True,
                              text=True, cwd=tmp_path, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        out = tmp_path / "out"
        assert all((out / name).stat().st_size > 0 for name in
                   ("history.parquet", "summary.parquet", "phase_final_train_loss_width_lr.png"))
    finally:
        shutil.rmtree(venv)  # about 1 GB
