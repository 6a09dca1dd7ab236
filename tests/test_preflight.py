"""Preflight (issue 12): before anything compiles, a sweep is planned fast and estimated;
what cannot fit is refused with the estimate and the limit, a large one from a terminal
needs --yes, and `jaxgd run --dry-run` prints the plan and runs nothing."""

import time

import pytest
from conftest import make_spec

import jaxgd
from jaxgd import SpecError
from jaxgd.engine import dispatch  # noqa: F401 - what no_compile replaces
from jaxgd.errors import SizeError
from jaxgd.front import cli
from jaxgd.sweep import plan as planning
from jaxgd.sweep import preflight

SWEEP = make_spec(optimizer={"lr": [0.05, 0.1]}, model={"width": [4, 8]})


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys, no_compile):
    spec = tmp_path / "s.toml"
    spec.write_text('steps = 40\nseeds = 3\n[model]\nwidth = [4, 8]\n[optimizer]\nlr = [0.05, 0.1]\n')
    assert cli.main(["run", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    for words in ("12 runs x 40 steps", "2 programs", "model.width = 4: 6 runs in 1 chunk of 6",
                  "device memory", "host memory for the tables", "disk for the parts", "time: roughly"):
        assert words in printed, printed
    assert not (tmp_path / "out").exists()


def test_seeds_beyond_the_limit_are_refused_at_once(no_compile):
    start = time.perf_counter()
    with pytest.raises(SpecError, match="seeds: got 1,000,000,000; expected at most"):
        jaxgd.run(make_spec(seeds=10**9), progress=False)
    assert time.perf_counter() - start < 1.0


def test_tables_larger_than_the_host_are_refused_with_the_estimate_and_the_limit(monkeypatch, no_compile):
    monkeypatch.setattr(planning, "host_memory", lambda: 2**12)
    with pytest.raises(SizeError, match=r"result tables of 8 runs x 41 logged steps need about .* more than the 4.0 KiB"):
        jaxgd.run(SWEEP | {"log_every": 1}, progress=False)


def test_a_plan_larger_than_the_host_is_refused_before_planning(monkeypatch, no_compile):
    monkeypatch.setattr(planning, "host_memory", lambda: 2**30)
    monkeypatch.setattr(planning, "make", lambda spec: pytest.fail("planned"))
    with pytest.raises(SizeError, match="planning them alone needs about"):
        jaxgd.run(make_spec(seeds=2**24, optimizer={"lr": [0.05, 0.1]}), progress=False)


def test_parts_larger_than_the_free_disk_are_refused(tmp_path, monkeypatch, no_compile):
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 100, "total": 10**9})())
    with pytest.raises(SizeError, match="of disk, more than the 100 B free"):
        jaxgd.run(SWEEP, out=tmp_path / "out", progress=False)


def test_a_large_sweep_from_a_terminal_needs_yes(tmp_path, monkeypatch, capsys, no_compile):
    spec = tmp_path / "s.toml"
    spec.write_text('steps = 40\n[model]\nwidth = [4, 8]\n')
    monkeypatch.setattr(preflight, "HUGE_SECONDS", 0.0)
    monkeypatch.setattr(cli.sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(cli.sys.stderr, "isatty", lambda: True, raising=False)
    assert cli.main(["run", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "run it with --yes" in capsys.readouterr().err
    with pytest.raises(AssertionError, match="the engine was reached"):  # with --yes it goes on to run
        cli.main(["run", str(spec), "--yes", "--out", str(tmp_path / "out")])


def test_a_million_run_grid_is_planned_in_seconds():
    spec = jaxgd.load_spec(make_spec(seeds=1000, optimizer={"lr": {"logspace": [-3, 0, 100]}},
                                     model={"w_scale": [0.5, 1.0, 1.5, 2.0, 2.5], "width": [4, 8]}))
    start = time.perf_counter()
    plan = planning.make(spec)
    assert time.perf_counter() - start < 10 and plan.n_runs == 10**6 and len(plan.groups) == 2
    assert list(plan.groups[1].run_ids[:2]) == [500_000, 500_001]  # model.width, the first swept key, varies slowest


def test_a_metric_evaluated_on_too_many_samples_is_refused_before_compiling(monkeypatch):
    monkeypatch.setattr(dispatch, "compile_group", lambda *a, **k: pytest.fail("compiled"))
    start = time.perf_counter()
    with pytest.raises(SizeError, match=r"measure.mc_samples = 2,147,483,647.*make them smaller"):
        jaxgd.run(make_spec(metrics=["population_risk"], measure={"mc_samples": 2**31 - 1}), progress=False)
    assert time.perf_counter() - start < 2.0


def test_history_saved_chunk_by_chunk_is_not_also_held_whole():
    plan = planning.make(jaxgd.load_spec(SWEEP | {"engine": {"chunk_size": 2}}))
    chunks = []
    outputs = dispatch.execute(plan, progress=False, on_chunk=lambda run_ids, *results: chunks.append(run_ids))
    assert outputs.history == {} and sorted(int(r) for c in chunks for r in c) == list(range(plan.n_runs))
