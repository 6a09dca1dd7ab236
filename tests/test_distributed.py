"""Several processes joined by jax.distributed: the same command on each, each takes a
deterministic share of the sweep and writes its own parts; together they give exactly
the results of one process."""

import json
import socket
import subprocess
import sys

import pytest
from scale_helpers import TIMEOUT, assert_same_results, child_env, sweep, write_spec

import jaxgd
from jaxgd.front import cli
from jaxgd.storage import distributed, files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(spec_path, out) -> tuple[list[int], list[str]]:
    """`jaxgd run SPEC --out DIR --distributed` as 2 processes: their exit statuses and stderr."""
    env = child_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{free_port()}", JAX_NUM_PROCESSES=2)
    children = [
        subprocess.Popen([sys.executable, "-m", "jaxgd", "run", str(spec_path), "--out", str(out), "--distributed"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env | {"JAX_PROCESS_ID": str(i)})
        for i in range(2)
    ]
    try:
        logs = [child.communicate(timeout=TIMEOUT)[1] for child in children]
    finally:
        for child in children:
            child.kill()
    return [c.returncode for c in children], logs


def test_two_processes_give_the_results_of_one(tmp_path):
    spec = sweep(chunk_size=3)  # 2 groups x 4 chunks: 8 chunks to share
    spec_path, out = write_spec(tmp_path / "s.toml", spec), tmp_path / "out"
    codes, logs = run_two_processes(spec_path, out)
    assert codes == [0, 0], logs
    assert "[process 1/2]" in logs[0] and "[process 2/2]" in logs[1]

    # each process ran a share and wrote its own manifest; the shares are disjoint and cover the sweep
    manifests = sorted((out / "parts").glob("manifest-*.jsonl"))
    assert len(manifests) == 2
    runs = [sum(json.loads(line)["runs"] for line in m.read_text().splitlines()) for m in manifests]
    assert sum(runs) == 24 and min(runs) > 0
    assert json.loads((out / "stats.json").read_text())["process"] == [0, 2]

    assert_same_results(out, jaxgd.run(spec, progress=False))


def test_shares_are_disjoint_whole_chunks_and_balanced():
    from jaxgd.storage import shares
    from jaxgd.sweep import plan as planning
    from jaxgd.sweep import spec as specs

    plan = planning.make(specs.load(sweep(chunk_size=2) | {"model": {"width": [4, 8, 16]}}))
    masks = [shares.share(plan, i, 4) for i in range(4)]
    assert (sum(m.astype(int) for m in masks) == 1).all()  # every run in exactly one share
    for mask in masks:
        for g, chunk in shares.chunks(plan):
            ids = plan.groups[g].run_ids[chunk]
            assert mask[ids].all() or not mask[ids].any()  # whole chunks
    cost = {g.run_ids[0]: planning.bytes_per_run(g.static) for g in plan.groups}
    per_run = sum((g.run_ids[:, None] == plan.runs.run_id.to_numpy()).any(0) * cost[g.run_ids[0]] for g in plan.groups)
    costs = [per_run[mask].sum() for mask in masks]
    biggest_chunk = 2 * max(cost.values())
    assert all(abs(c - per_run.sum() / 4) <= biggest_chunk for c in costs)  # within one chunk of an equal share


def test_a_coordinator_without_a_port_or_a_count_that_is_not_a_number_is_named(monkeypatch):
    """JAX raised IndexError on the first, int() a message naming no variable on the second."""
    with pytest.raises(ValueError, match=r"--coordinator \(JAX_COORDINATOR_ADDRESS\): got 'node0'; expected HOST:PORT"):
        distributed.initialize("node0", 2, 0)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES: got 'two'; expected an integer"):
        distributed.initialize("node0:1234")


def test_the_options_of_distributed_without_it_are_refused(tmp_path, capsys, no_compile):
    """Without --distributed, --num-processes 2 --process-id 1 were ignored: the process
    ran the whole sweep alone."""
    spec = write_spec(tmp_path / "s.toml", sweep())
    assert cli.main(["run", str(spec), "--out", str(tmp_path / "out"), "--num-processes", "2", "--process-id", "1"]) == 2
    err = capsys.readouterr().err
    assert "--num-processes: only with --distributed" in err and "--num-processes, --process-id" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("index, count", [(2, 2), (-1, 2), (1, 1), (0, 0)])
def test_a_share_out_of_range_is_refused(tmp_path, index, count, no_compile):
    """A task's share out of range ran nothing (or, of one share, every run), silently."""
    from jaxgd.storage import slurm, store
    from jaxgd.sweep import plan as planning

    store.Store.prepare(tmp_path, planning.make(jaxgd.load_spec(sweep())))
    with pytest.raises(ValueError, match=rf"share: got index {index} of {count} shares; expected"):
        slurm.run_task(str(tmp_path), index, count)


def test_two_processes_into_a_folder_another_sweep_writes_touch_nothing(tmp_path):
    """Process 0 was refused the folder's lock; process 1, which does not take it, wrote its
    share into the folder another sweep was writing, then both waited for the other until
    the runtime aborted them (minutes)."""
    spec_path, out = write_spec(tmp_path / "s.toml", sweep(chunk_size=3)), tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (out / files.LOCK_FILE).write_text(json.dumps({"host": files.HOST, "pid": other.pid, "since": "now"}))
        codes, logs = run_two_processes(spec_path, out)
    finally:
        other.kill()
        other.wait()
    assert codes == [2, 2], logs
    assert f"pid {other.pid}" in logs[0] and f"process 0 of this run could not take the folder: {out}" in logs[1]
    assert not list(out.rglob("*.npz")) and not (out / "spec.toml").exists()
