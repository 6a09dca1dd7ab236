"""The benchmark scripts run (a smoke test at the smallest size; timings are never asserted)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_engine_vs_loop_runs_and_checks_agreement():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "engine_vs_loop.py"), "--quick", "--sizes", "tiny"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| tiny | 64, 8, 32 |" in done.stdout
