"""The benchmark scripts run (a smoke test at the smallest size; timings are never asserted)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
