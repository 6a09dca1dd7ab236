"""Durability: chunks are saved as they finish, each file written atomically, with the
resolved spec and a manifest; a sweep killed (SIGKILL) or interrupted (SIGINT) in the
middle and then resumed ends with exactly the rows of an uninterrupted run; damaged
parts are detected and redone; a different sweep is never mixed into a folder."""

import json
import signal
import subprocess
import sys
import time

import pytest
from scale_helpers import TIMEOUT, assert_same_results, child_env, jaxgd_cli, sweep, write_spec

import jaxgd
from jaxgd.front import cli
from jaxgd.storage import files
from jaxgd.storage import store as storage

# 2 groups x 12 runs in chunks of 2: 12 chunks, saved in 12 parts by one device (a call
# on several devices saves its chunks as one part)
SPEC = sweep(chunk_size=2)

# A child that runs the CLI but takes 0.3 s longer over every chunk (before saving it),
# so that the test can stop it in the middle however loaded the machine is. It handles
# SIGINT as from a terminal: a process started in the background by a non-interactive
# shell (as CI may be) inherits SIGINT ignored.
SLOW_CHILD = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from jaxgd.storage import store
save = store.PartWriter.__call__
def slow_save(self, *args):
    time.sleep(0.3)
    return save(self, *args)
store.PartWriter.__call__ = slow_save
from jaxgd.front.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def reference():
    return jaxgd.run(SPEC, progress=False)


def manifest_entries(out) -> list[dict]:
    """The parts recorded as saved (complete manifest lines)."""
    def entry(line):
        try:
            return json.loads(line)
        except ValueError:
            return None
    lines = [line for p in (out / "parts").glob("manifest-*.jsonl") for line in p.read_text().splitlines()]
    return [e for e in map(entry, lines) if e]


def dead_pid() -> int:
    """The pid of a process of this host that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def manifest_lines(out) -> int:
    return len(manifest_entries(out))


def saved_runs(out) -> int:
    return sum(e["runs"] for e in manifest_entries(out))


def start_slow_run(spec_path, out):
    return subprocess.Popen([sys.executable, "-c", SLOW_CHILD, "run", str(spec_path), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())


def stop_in_the_middle(child, out, sig, after_parts=3):
    """Wait until `after_parts` chunks are saved, then send `sig`."""
    deadline = time.monotonic() + TIMEOUT
    while not (out / "parts").is_dir() or manifest_lines(out) < after_parts:
        assert child.poll() is None, child.communicate()[1]
        assert time.monotonic() < deadline, "the sweep never saved a chunk"
        time.sleep(0.05)
    child.send_signal(sig)
    _, stderr = child.communicate(timeout=TIMEOUT)
    return child.returncode, stderr


def test_sigkill_in_the_middle_then_resume(tmp_path, reference):
    spec_path, out = write_spec(tmp_path / "s.toml", SPEC), tmp_path / "out"
    code, _ = stop_in_the_middle(start_slow_run(spec_path, out), out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    saved = saved_runs(out)
    assert 6 <= saved < 24 and not (out / "history.parquet").exists()

    resumed = jaxgd_cli("run", "--resume", "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["runs_before"] == saved and stats["runs_done"] == 24 - saved  # nothing run twice
    assert "done before" in resumed.stderr
    assert_same_results(out, reference)


def test_sigint_in_the_middle_then_the_same_command_again(tmp_path, reference):
    spec_path, out = write_spec(tmp_path / "s.toml", SPEC), tmp_path / "out"
    code, stderr = stop_in_the_middle(start_slow_run(spec_path, out), out, signal.SIGINT)
    assert code == 130 and "jaxgd run --resume" in stderr and "Traceback" not in stderr
    saved = saved_runs(out)
    assert 6 <= saved < 24

    again = jaxgd_cli("run", spec_path, "--out", out)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "stats.json").read_text())["runs_done"] == 24 - saved
    assert_same_results(out, reference)

    done = jaxgd_cli("run", spec_path, "--out", out)  # a finished sweep: nothing to run, same tables
    assert done.returncode == 0 and "nothing left to run" in done.stderr
    assert_same_results(out, reference)


def test_damaged_parts_are_detected_and_redone(tmp_path, reference):
    out = tmp_path / "out"
    jaxgd.run(SPEC, out=out, progress=False)
    parts = sorted((out / "parts").glob("r*.npz"))
    assert len(parts) == 12
    truncated, flipped, deleted = parts[1], parts[5], parts[8]
    truncated.write_bytes(truncated.read_bytes()[:200])  # a partial file
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one damaged byte
    flipped.write_bytes(bytes(data))
    deleted.unlink()
    left = out / "parts" / f".r000000000-n2-0123456789.npz~{files.HOST}~{dead_pid()}~abcd.tmp"  # by a crashed run
    left.write_bytes(b"PK\x03\x04 half written")
    with open(next((out / "parts").glob("manifest-*.jsonl")), "a") as f:
        f.write('{"part": "r0000000')  # a manifest line cut short
    (out / "history.parquet").unlink()

    collected = jaxgd_cli("collect", out)
    assert collected.returncode == 2 and "18 of 24 runs (6 missing, 3 damaged part(s))" in collected.stderr

    again = jaxgd.run(SPEC, out=out, progress=False)
    assert again.stats["runs_done"] == 6 and again.stats["chunks"] == 3  # only the 3 damaged chunks
    assert_same_results(out, reference)
    assert not (out / "parts" / "damaged").exists()  # the redone parts took the damaged ones' names
    assert not list((out / "parts").glob(".*.tmp"))


def test_parts_are_written_atomically(tmp_path, monkeypatch):
    """A crash after a part's bytes are written but before they are renamed into place
    leaves no file under the part's name (and a temporary file is never read)."""
    replace = storage.os.replace

    def crash_on_parts(src, dst):
        if str(dst).endswith(".npz"):
            raise OSError("crashed before the rename")
        replace(src, dst)

    out = tmp_path / "out"
    monkeypatch.setattr(storage.os, "replace", crash_on_parts)
    with pytest.raises(OSError, match="crashed"):
        jaxgd.run(SPEC, out=out, progress=False)
    monkeypatch.undo()
    assert not list((out / "parts").glob("*.npz")) and not list((out / "parts").glob("manifest-*"))
    assert jaxgd.load_spec(out / "spec.toml").settings["engine.chunk_size"] == 2
    # a leftover temporary file with a part's content is not taken for a part
    (out / "parts" / ".r000000000-n2-0123456789.npz.99-abcd.tmp").write_bytes(b"PK\x03\x04")
    assert jaxgd_cli("collect", out).returncode == 2


def test_a_different_sweep_is_refused(tmp_path, reference):
    spec_path, out = write_spec(tmp_path / "s.toml", SPEC), tmp_path / "out"
    assert jaxgd_cli("run", spec_path, "--out", out).returncode == 0
    before = (out / "history.parquet").read_bytes()

    refused = jaxgd_cli("run", spec_path, "--out", out, "--set", "optimizer.lr=[0.01, 0.2]")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "different sweep" in refused.stderr and "optimizer.lr" in refused.stderr and str(out) in refused.stderr
    with pytest.raises(jaxgd.SpecError, match="seeds: \\[0, 1, 2\\] there, \\[0, 1\\] here"):  # fewer seeds: not a growth
        jaxgd.run(SPEC | {"seeds": 2}, out=out, progress=False)
    assert (out / "history.parquet").read_bytes() == before

    # Chunking and memory settings do not change values: a resume may change them.
    rechunked = jaxgd_cli("run", spec_path, "--out", out, "--set", "engine.chunk_size=3")
    assert rechunked.returncode == 0, rechunked.stderr
    assert_same_results(out, reference)


def test_resume_needs_a_saved_sweep(tmp_path, capsys):
    assert cli.main(["run", "--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert cli.main(["run", "--out", str(tmp_path / "x")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli.main(["collect", str(tmp_path / "nothing")]) == 2
    assert "not found" in capsys.readouterr().err
