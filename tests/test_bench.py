"""`jaxgd bench --quick` runs on the CPU and its JSON holds every figure of every case
(timings are never asserted)."""

import json

from scale_helpers import child_env, jaxgd_cli

FIGURES = ("engine_run_steps_per_s", "floor_run_steps_per_s", "engine_over_floor", "engine_gflops",
           "engine_fraction_of_peak", "engine_fraction_of_bandwidth_bound", "engine_compile_s")


def test_bench_quick_saves_every_figure(tmp_path):
    done = jaxgd_cli("bench", "--quick", "--out", tmp_path / "bench.json", env=child_env())
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["peak_gflops"] > 0 and report["bandwidth_gb_per_s"] > 0 and report["device"]
    assert [c["case"] for c in report["cases"]] == ["tiny", "medium", "large", "online"]
    for case in report["cases"]:
        assert all(case[figure] > 0 for figure in FIGURES), case
    assert "engine run-steps/s" in done.stdout and "online" in done.stdout
