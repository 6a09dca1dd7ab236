"""A 100,000-run sweep of tiny nets, run twice with `jaxgd run` in fresh processes: the
first with an empty compilation cache, the second with the cache the first one filled.
Reports wall time, run-steps/s, peak resident memory and compile time of each, and with
--append adds them as a section of benchmarks/RESULTS.md.

    python benchmarks/scale_100k.py [--steps 100] [--append]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import tomli_w

HERE = Path(__file__).resolve().parent


def spec(steps: int) -> dict:
    """4 widths x 250 step sizes x 100 seeds = 100,000 runs of tiny two-layer nets."""
    return {
        "name": "scale_100k",
        "seeds": 100,
        "steps": steps,
        "log_every": 10,
        "metrics": ["train_loss", "test_loss"],
        "data": {"name": "two_layer_teacher", "n": 32, "n_test": 32, "d": 4, "noise": 0.1},
        "model": {"width": [4, 8, 16, 32], "scaling": "ntk"},
        "optimizer": {"lr": {"logspace": [-3, 1, 250]}},
        "loss": {"name": "mse"},
    }


def run_once(spec_path: Path, out: Path, cache: Path) -> dict:
    """`jaxgd run` in a fresh process: its wall time, peak RSS and stats.json."""
    env = dict(os.environ, JAXGD_COMPILE_CACHE=str(cache))
    command = [sys.executable, "-m", "jaxgd", "run", str(spec_path), "--out", str(out)]
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    stderr = child.stderr.read()
    if status != 0:
        raise SystemExit(f"jaxgd run failed:\n{stderr}")
    closing = [line for line in stderr.splitlines() if line.startswith("jaxgd:")]
    stats = json.loads((out / "stats.json").read_text())
    return {"wall_s": wall, "peak_rss_gib": usage.ru_maxrss / 2**20, "stats": stats, "closing": closing[-1]}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--append", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="jaxgd_scale_"))
    try:
        spec_path = work / "scale_100k.toml"
        spec_path.write_text(tomli_w.dumps(spec(args.steps)))
        cache = work / "cache"
        first = run_once(spec_path, work / "first", cache)
        print("first: ", first["closing"], f"| wall {first['wall_s']:.1f} s, peak RSS {first['peak_rss_gib']:.2f} GiB")
        second = run_once(spec_path, work / "second", cache)
        print("second:", second["closing"], f"| wall {second['wall_s']:.1f} s, peak RSS {second['peak_rss_gib']:.2f} GiB")
        parts = len(list((work / "first" / "parts").glob("r*.npz")))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    s1, s2 = first["stats"], second["stats"]
    runs, steps = s1["runs"], s1["steps"]
    section = f"""
## Scale-out: 100,000 runs on the host ({datetime.date.today().isoformat()})

`benchmarks/scale_100k.py --steps {args.steps}`: {runs:,} runs (4 widths 4..32 x 250 step sizes x 100
seeds) of a two-layer ReLU net, n = 32, d = 4, {steps} full-batch GD steps, metrics every 10 steps,
each run of `jaxgd run` in a fresh process into a fresh folder; the first with an empty compilation
cache, the second with the cache the first filled. {cpu_name()}, {os.cpu_count()} cores,
JAX {jax.__version__} on {s1['device']}, {s1['devices']} device(s).

| | wall (s) | compile (s) | programs from cache | chunks (parts) | run-steps/s (compile excluded) | peak RSS (GiB) |
|---|---|---|---|---|---|---|
| first run (cold cache) | {first['wall_s']:.1f} | {s1['compile_s']:.1f} | {s1['compile_cache_hits']} of {s1['programs']} | {s1['chunks']} ({parts}) | {s1['run_steps_per_s']:,.0f} | {first['peak_rss_gib']:.2f} |
| second run (warm cache) | {second['wall_s']:.1f} | {s2['compile_s']:.1f} | {s2['compile_cache_hits']} of {s2['programs']} | {s2['chunks']} | {s2['run_steps_per_s']:,.0f} | {second['peak_rss_gib']:.2f} |

Wall time is the whole process (start-up, planning, compiling, running, writing the parts and
the Parquet tables); the second run spent {100 * s2['compile_s'] / max(s1['compile_s'], 1e-9):.0f}% of the first run's
compile time. Closing lines:

```
{first['closing']}
{second['closing']}
```
"""
    print(section)
    if args.append:
        results = HERE / "RESULTS.md"
        text = results.read_text() if results.is_file() else "# Benchmarks\n"
        results.write_text(text.rstrip("\n") + "\n" + section)
        print(f"appended to {results}")


if __name__ == "__main__":
    main()
