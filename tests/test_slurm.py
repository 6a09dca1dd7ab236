"""Slurm through submitit, with submitit's local executor: a small grid runs as a job
array, each task writes its share as parts, and collecting them gives exactly the
results of one process."""

import json

import pandas as pd
import pytest
from conftest import make_spec
from scale_helpers import TIMEOUT, assert_same_results, jaxgd_cli, sweep, write_spec

import jaxgd
from jaxgd.storage import fingerprint, slurm

pytest.importorskip("submitit")

SPEC = sweep(chunk_size=3)


def test_job_array_then_collect(tmp_path):
    out = tmp_path / "out"
    jobs = slurm.submit(SPEC, out, 3, cluster="local", parameters={"timeout_min": 10})
    assert len(jobs) == 3
    stats = [job.result() for job in jobs]  # waits for each task
    assert sum(s["runs_done"] for s in stats) == 24 and all(s["runs_done"] > 0 for s in stats)
    assert len(list((out / "parts").glob("manifest-*.jsonl"))) == 3  # one per task
    assert not (out / "history.parquet").exists()  # the tasks only write parts

    collected = jaxgd_cli("collect", out)
    assert collected.returncode == 0, collected.stderr
    assert "collected 24 runs" in collected.stderr
    assert_same_results(out, jaxgd.run(SPEC, progress=False))


def test_slurm_from_the_command_line_waits_and_collects(tmp_path):
    spec_path, out = write_spec(tmp_path / "s.toml", SPEC), tmp_path / "out"
    done = jaxgd_cli("run", spec_path, "--out", out, "--slurm", 2, "--slurm-cluster", "local",
                     "--slurm-param", "timeout_min=10", "--slurm-wait", timeout=2 * TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "submitted job array" in done.stderr and "collected 24 runs" in done.stderr
    assert (out / "history.parquet").is_file() and json.loads((out / "stats.json").read_text())["runs"] == 24
    parts = sorted((out / "parts").glob("r*.npz"))
    # submitting again finds nothing to do: every task skips its finished share
    again = jaxgd_cli("run", spec_path, "--out", out, "--slurm", 2, "--slurm-cluster", "local", "--slurm-wait",
                      timeout=2 * TIMEOUT)
    assert again.returncode == 0, again.stderr
    assert sorted((out / "parts").glob("r*.npz")) == parts


def test_a_figure_that_collect_could_not_write_is_refused_before_submitting(tmp_path):
    spec = {**SPEC, "plot": {"phase_diagram": {"x": "width", "y": "lr", "value": "final_train_loss",
                                               "file": "phase.parquet"}}}
    with pytest.raises(ValueError, match=r"plot\.phase_diagram\.file: got 'phase\.parquet'; expected a file name"):
        slurm.submit(spec, tmp_path / "out", 2, cluster="local")
    assert not (tmp_path / "out").exists()


def test_parts_of_other_inputs_are_refused_before_submitting_and_set_aside_with_recompute(tmp_path, monkeypatch):
    """Submitting into a folder whose parts another jaxgd computed submitted the array, and
    every task failed on them; --recompute was not passed on to the tasks. A finished
    sweep was submitted again, its tasks finding nothing to do."""
    spec = make_spec(optimizer={"lr": [0.05, 0.1]}, engine={"chunk_size": 1})  # 4 runs, 4 parts
    out = tmp_path / "out"
    finished = jaxgd.run(spec, out=out, progress=False)
    assert slurm.submit(spec, out, 2, cluster="debug") == []  # nothing left to run
    monkeypatch.setattr(fingerprint, "code_hash", lambda: "0123456789abcdef")  # jaxgd changed since
    with pytest.raises(jaxgd.SpecError, match="code that computes runs changed.*--recompute"):
        slurm.submit(spec, out, 2, cluster="debug")
    assert not (out / "slurm").exists() and (out / "summary.parquet").is_file()

    jobs = slurm.submit(spec, out, 2, cluster="debug", recompute=True)
    assert len(list((out / "parts" / "superseded").iterdir())) == 4 and not (out / "summary.parquet").exists()
    assert sum(job.result()["runs_done"] for job in jobs) == 4
    pd.testing.assert_frame_equal(jaxgd.collect(out, progress=False).summary, finished.summary, check_exact=True)
