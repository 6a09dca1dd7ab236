"""The benchmark scripts run (a smoke test at the smallest size; timings are never asserted),
and the one-call GPU check calls only what exists."""

import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from jaxgd.front import cli

ROOT = Path(__file__).resolve().parents[1]
DEVICE_CHECK = ROOT / "benchmarks" / "device_check.sh"
CONTENDERS = ["engine", "fused", "floor", "loop", "torch_loop", "torch_bmm"]


def test_engine_vs_loop_runs_and_checks_agreement():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "engine_vs_loop.py"), "--quick", "--sizes", "tiny"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| tiny | 64, 8, 32 |" in done.stdout


def test_suite_runs_every_contender_and_they_agree():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "suite.py"), "--quick", "--sizes", "tiny",
                           "--peak-n", "64", "--contenders", *CONTENDERS], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| tiny |")]
    contenders = [cells[2].strip() for cells in rows]
    assert contenders[:4] == ["engine", "fused", "floor", "loop"]  # then the PyTorch ones, where installed
    for cells in rows:
        assert float(cells[-2]) < 1e-5  # max rel. diff. of the train_loss histories vs the engine
    assert "peak:" in done.stdout and "command: python suite.py --quick" in done.stdout


def test_width_sweep_reports_one_compilation_per_width():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "width_sweep.py"), "--quick", "--repeats", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| one sweep, widths 16..256 |" in done.stdout
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| one sweep") or line.startswith("| sum of")]
    assert [cells[3].strip() for cells in rows] == ["5", "5"]  # compilations: one per width, both ways


def test_host_strategy_compares_vmap_map_and_the_loop():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "host_strategy.py"), "--repeats", "1",
                           "--steps", "10", "--gflop", "0.02"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| 256, 32, 128 |")]
    assert len(rows) == 1 and rows[0][-1].strip() == "map"  # medium runs are mapped on the host


def planned_steps(out: Path, *flags: str) -> list[tuple[str, str, list[str]]]:
    """The device check's steps as (name, log, command), printed by DEVICE_CHECK_DRY, not run."""
    env = os.environ | {"DEVICE_CHECK_DRY": "1", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(DEVICE_CHECK), *flags, str(out)], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return [(name, log, shlex.split(command)) for name, log, command in
            (line.split(" ", 2) for line in done.stdout.splitlines())]


def case_ids(function) -> list[str]:
    """The ids of a test's parametrize cases, as pytest names them (ids given, or the values)."""
    (mark,) = [m for m in getattr(function, "pytestmark", []) if m.name == "parametrize"]
    return [str(i) for i in mark.kwargs.get("ids") or mark.args[1]]


@pytest.mark.parametrize("flags", [[], ["--cpu-rehearsal"]], ids=["gpu", "cpu_rehearsal"])
def test_device_check_calls_only_what_exists(tmp_path, monkeypatch, flags):
    """benchmarks/device_check.sh runs where a GPU is lent, once, with no second try: here
    its syntax, every test it names, every flag it gives `jaxgd bench` and suite.py, and
    the files it leaves (the device tool returns 8, named plainly) are checked."""
    assert os.access(DEVICE_CHECK, os.X_OK)
    syntax = subprocess.run(["bash", "-n", str(DEVICE_CHECK)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import suite

    steps = planned_steps(tmp_path, *flags)
    assert [name for name, _, _ in steps] == ["env", "import", "gpu_tests", "fused_tests", "bench", "suite_medium",
                                              "suite_medium_xla", "suite_small"]
    files = {"summary.txt"} | {log for _, log, _ in steps}
    for name, _, command in steps[1:]:
        assert command[0] == sys.executable, name
        args = command[1:]
        if args[:2] == ["-m", "pytest"]:
            for node in (a for a in args if a.startswith("tests/")):
                path, _, test = node.partition("::")
                assert (ROOT / path).is_file(), node
                if test:
                    function, _, case = test.removesuffix("]").partition("[")
                    module = importlib.import_module(Path(path).stem)
                    assert not case or case in case_ids(getattr(module, function)), node
        elif args[:2] == ["-m", "jaxgd"]:
            files.add(Path(cli.parser().parse_args(args[2:]).out).name)
        elif args[:1] == ["benchmarks/suite.py"]:
            parsed = suite.parse_args(args[1:])
            assert parsed.quick == bool(flags) and (name != "suite_medium" or (
                parsed.sizes == ["medium"] and "fused" in parsed.contenders)), name
        else:
            assert name == "import", name
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files), files
