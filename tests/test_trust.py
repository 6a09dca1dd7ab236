"""What is on disk is checked, never trusted (issue 12): parts computed from other inputs
(an edited spec.toml, another spec, other code, a rewritten data file) are refused,
naming what differs; a malformed manifest line is reported and ignored; nothing outside
the folder is touched; one independent process writes a folder at a time."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tomli_w
from conftest import make_spec

import jaxgd
from jaxgd import SpecError
from jaxgd.front import cli
from jaxgd.storage import files, fingerprint, store

SPEC = make_spec(optimizer={"lr": [0.05, 0.1]}, engine={"chunk_size": 1})  # 4 runs, 4 parts


def write(path, spec):
    path.write_text(tomli_w.dumps(spec))
    return path


@pytest.fixture
def done(tmp_path):
    """A finished sweep's folder."""
    out = tmp_path / "out"
    jaxgd.run(SPEC, out=out, progress=False)
    return out


def test_a_spec_toml_edited_by_hand_is_refused_naming_the_key(done, capsys):
    saved = done / "spec.toml"
    saved.write_text(saved.read_text().replace("    0.1,\n]", "    0.2,\n]"))
    assert "0.2" in saved.read_text()
    assert cli.main(["run", "--resume", "--out", str(done)]) == 2
    err = capsys.readouterr().err
    assert "optimizer.lr: [0.05, 0.1] there, [0.05, 0.2] here" in err and "--recompute" in err

    assert cli.main(["run", "--resume", "--recompute", "--quiet", "--out", str(done)]) == 0
    fresh = jaxgd.run(make_spec(optimizer={"lr": [0.05, 0.2]}, engine={"chunk_size": 1}), progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(done / "history.parquet"), fresh.history, check_exact=True)
    assert cli.main(["collect", "--quiet", str(done)]) == 0  # every part now of the edited sweep


def test_another_spec_after_spec_toml_was_deleted_is_refused(done):
    (done / "spec.toml").unlink()
    with pytest.raises(SpecError, match=r"optimizer.lr: \[0.05, 0.1\] there, \[0.01, 0.1\] here"):
        jaxgd.run(make_spec(optimizer={"lr": [0.01, 0.1]}, engine={"chunk_size": 1}), out=done, progress=False)


def test_parts_of_other_code_are_refused(done, monkeypatch):
    monkeypatch.setattr(fingerprint, "code_hash", lambda: "0123456789abcdef")
    # the version is the same: it said 'jaxgd 0.1.0 there, 0.1.0 here'
    with pytest.raises(SpecError, match=r"code that computes runs changed since these parts were written "
                                        rf"\(the same version, jaxgd {jaxgd.__version__}, with other source\)"):
        jaxgd.run(SPEC, out=done, progress=False)
    with pytest.raises(SpecError, match="code that computes runs changed"):
        jaxgd.collect(done, progress=False)


def test_a_data_file_rewritten_with_the_same_shapes_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    arrays = lambda: dict(X_train=rng.normal(size=(12, 3)), y_train=rng.normal(size=12),
                          X_test=rng.normal(size=(5, 3)), y_test=rng.normal(size=5))
    np.savez(tmp_path / "data.npz", **arrays())
    spec = make_spec()
    spec["data"] = {"name": "file", "path": str(tmp_path / "data.npz")}
    jaxgd.run(spec, out=tmp_path / "out", progress=False)
    np.savez(tmp_path / "data.npz", **arrays())
    with pytest.raises(SpecError, match="data file .* changed since these parts were written"):
        jaxgd.run(spec, out=tmp_path / "out", progress=False)


def test_malformed_manifest_lines_are_reported_and_ignored(done, capsys):
    outside = done.parent / "x.npz"
    outside.write_bytes(b"not mine")
    manifest = next((done / "parts").glob("manifest-*.jsonl"))
    with open(manifest, "a") as f:
        f.write('{"part": 5}\n[1, 2]\n{"part": "../../x.npz", "sha256": "00", "bytes": 8}\n')
    (done / "history.parquet").unlink()
    assert cli.main(["collect", "--no-plots", str(done)]) == 0
    err = capsys.readouterr().err
    assert err.count("ignoring a manifest line") == 3 and "no plain part name" in err
    assert outside.read_bytes() == b"not mine" and (done / "history.parquet").is_file()


def test_part_files_no_manifest_line_names_are_said_to_be_left_unread(done, capsys):
    """A part is trusted by its manifest line alone: with the manifest deleted, a resume
    runs every run again, and now says why (it did so silently)."""
    for manifest in (done / "parts").glob("manifest-*.jsonl"):
        manifest.unlink()
    assert cli.main(["run", "--resume", "--no-plots", "--quiet", "--out", str(done)]) == 0
    err = capsys.readouterr().err
    assert "jaxgd: 4 part file(s) in parts/ that no manifest line names are not read (r000000000-n1-" in err
    assert "runs held only there will be run again" in err
    assert json.loads((done / "stats.json").read_text())["runs_done"] == 4


def sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_second_process_on_a_folder_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    other = sleeper()
    try:
        (out / files.LOCK_FILE).write_text(json.dumps({"host": files.HOST, "pid": other.pid, "since": "now"}))
        assert cli.main(["run", str(write(tmp_path / "s.toml", SPEC)), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"host {files.HOST}, pid {other.pid}" in err and not (out / "parts").exists() or \
            not list((out / "parts").glob("r*.npz"))
    finally:
        other.kill()
        other.wait()
    # the holder is gone: its lock is stale, taken over, and released at the end
    assert cli.main(["run", str(tmp_path / "s.toml"), "--quiet", "--out", str(out)]) == 0
    assert not (out / files.LOCK_FILE).exists()


def test_a_fresh_lock_made_while_a_stale_one_is_taken_over_stays(tmp_path, monkeypatch):
    """Two processes taking over one stale lock: the one that judged it stale and comes
    second must not remove the fresh lock the first made meanwhile (both held the folder)."""
    lock = files.Lock(tmp_path)
    dead = {"host": files.HOST, "pid": os.getpid(), "since": "then"}  # this process's own old lock: stale
    lock.path.write_text(json.dumps(dead))
    other = sleeper()
    fresh = json.dumps({"host": files.HOST, "pid": other.pid, "since": "now"})
    judged = iter([dead])  # this process reads the stale lock; another replaces it before it acts

    def holder_then_replaced():
        found = next(judged, None)
        if found is not None:
            lock.path.unlink()
            lock.path.write_text(fresh)
            return found
        return json.loads(lock.path.read_text())

    monkeypatch.setattr(lock, "holder", holder_then_replaced)
    try:
        with pytest.raises(files.FolderBusy, match=f"pid {other.pid}"):
            lock.acquire()
        assert lock.path.read_text() == fresh and not lock.held
        assert [p.name for p in tmp_path.iterdir()] == [files.LOCK_FILE]  # nothing of ours left beside it
    finally:
        other.kill()
        other.wait()


def test_tidy_leaves_the_temporary_files_of_live_processes(done):
    other = sleeper()
    try:
        live = done / "parts" / f".r000000000-n1-0123456789.npz~{files.HOST}~{other.pid}~abcd.tmp"
        elsewhere = done / "parts" / ".r000000000-n1-0123456789.npz~another-host~1~abcd.tmp"
        live.write_bytes(b"being written")
        elsewhere.write_bytes(b"being written")
        jaxgd.collect(done, progress=False)
        assert live.is_file() and elsewhere.is_file()
    finally:
        other.kill()
        other.wait()


def test_resume_into_an_empty_folder_starts_the_sweep(tmp_path):
    spec = write(tmp_path / "s.toml", SPEC)
    assert cli.main(["run", str(spec), "--quiet", "--resume", "--out", str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / "summary.parquet").is_file()


@pytest.mark.parametrize("file, message", [
    ("../outside.png", "inside the --out folder"),
    ("/tmp/outside.png", "inside the --out folder"),
    ("missing/phase.png", "does not exist"),
    # a figure written over the run's own table, or into a name that fails after the sweep
    ("history.parquet", r"plot\.phase_diagram\.file: got 'history\.parquet'; expected a file name ending in .*\.png"),
    ("sub/", r"plot\.phase_diagram\.file: got 'sub/'; expected a file name ending in"),
])
def test_figures_outside_the_folder_or_matplotlibs_formats_are_refused_before_running(tmp_path, file, message,
                                                                                       no_compile):
    spec = make_spec(optimizer={"lr": [0.05, 0.1]}, model={"width": [4, 8]},
                     plot={"phase_diagram": {"x": "lr", "y": "width", "value": "final_train_loss", "file": file}})
    with pytest.raises(ValueError, match=message):
        jaxgd.run(spec, out=tmp_path / "out", progress=False)


def test_figures_and_tables_are_written_atomically(tmp_path, monkeypatch):
    """A crash while a figure is drawn leaves no file under its name."""
    spec = make_spec(optimizer={"lr": [0.05, 0.1]}, model={"width": [4, 8]},
                     plot={"phase_diagram": {"x": "lr", "y": "width", "value": "final_train_loss"}})
    replace = os.replace

    def crash_on_figures(src, dst):
        if str(dst).endswith(".png"):
            raise OSError("crashed before the rename")
        replace(src, dst)

    monkeypatch.setattr(files.os, "replace", crash_on_figures)
    with pytest.raises(OSError, match="crashed"):
        jaxgd.run(spec, out=tmp_path / "out", progress=False)
    assert not list((tmp_path / "out").glob("*.png")) and not list((tmp_path / "out").glob(".*.tmp"))


def test_parts_of_another_plugin_source_are_refused(tmp_path):
    plugin = tmp_path / "mine.py"
    plugin.write_text("import jax, jaxgd\n\n@jaxgd.activation('trust_soft')\n"
                      "def trust_soft(z):\n    return jax.nn.softplus(z)\n")
    spec = tmp_path / "s.toml"
    spec.write_text(tomli_w.dumps({**make_spec(model={"activation": "trust_soft"}), "plugins": ["mine.py"]}))
    jaxgd.run(spec, out=tmp_path / "out", progress=False)
    plugin.write_text(plugin.read_text() + "# edited\n")
    with pytest.raises(SpecError, match="a plugin file changed since these parts were written"):
        jaxgd.run(spec, out=tmp_path / "out", progress=False)


def test_a_refused_growth_leaves_the_finished_sweep_as_it_was(done, monkeypatch):
    """Growing a folder whose parts another jaxgd computed is refused; the refusal came after
    the folder's spec.toml was rewritten to the bigger sweep and the finished sweep's tables
    removed, so its results could no longer be read."""
    before = {name: (done / name).read_bytes() for name in ("spec.toml", "history.parquet", "summary.parquet")}
    monkeypatch.setattr(fingerprint, "code_hash", lambda: "0123456789abcdef")
    with pytest.raises(SpecError, match="code that computes runs changed"):
        jaxgd.run(make_spec(SPEC, seeds=3), out=done, progress=False)
    assert {name: (done / name).read_bytes() for name in before} == before
    assert len(jaxgd.Results.load(done).summary) == 4


def test_an_interrupted_recompute_leaves_no_tables_of_the_parts_it_sets_aside(done, monkeypatch):
    """The tables were assembled from the parts a recompute sets aside: after a recompute
    interrupted, Results.load(partial=True) (and `jaxgd plot`) gave them as the finished
    sweep, every run there and none missing."""
    monkeypatch.setattr(fingerprint, "code_hash", lambda: "0123456789abcdef")  # jaxgd changed
    save, saved = store.PartWriter.__call__, []

    def interrupted_after_one_part(self, *args):
        if saved:
            raise KeyboardInterrupt
        saved.append(save(self, *args))

    monkeypatch.setattr(store.PartWriter, "__call__", interrupted_after_one_part)
    with pytest.raises(KeyboardInterrupt):
        jaxgd.run(SPEC, out=done, progress=False, recompute=True)
    assert not (done / "summary.parquet").exists() and not (done / "history.parquet").exists()
    so_far = jaxgd.Results.load(done, partial=True)
    assert len(so_far.summary) == 1 and so_far.stats["runs_missing"] == 3


def test_the_same_data_file_at_another_path_is_the_same_sweep(tmp_path):
    """The fingerprint compares the data's content, not its path; the folder's spec compared
    the path, and refused the sweep of a moved data file as a different sweep ('only more
    values on swept axes or more seeds can be added', 'delete the folder to start over')."""
    rng = np.random.default_rng(0)
    arrays = {"X_train": rng.normal(size=(12, 3)), "y_train": rng.normal(size=12),
              "X_test": rng.normal(size=(5, 3)), "y_test": rng.normal(size=5)}
    for folder in ("here", "moved"):
        (tmp_path / folder).mkdir()
        np.savez(tmp_path / folder / "data.npz", **arrays)
    spec = lambda folder: make_spec() | {"data": {"name": "file", "path": str(tmp_path / folder / "data.npz")}}
    first = jaxgd.run(spec("here"), out=tmp_path / "out", progress=False)
    again = jaxgd.run(spec("moved"), out=tmp_path / "out", progress=False)
    assert again.stats["runs_done"] == 0
    pd.testing.assert_frame_equal(again.summary, first.summary, check_exact=True)
    assert jaxgd.load_spec(tmp_path / "out" / "spec.toml").settings["data.path"] == str(tmp_path / "moved" / "data.npz")
    np.savez(tmp_path / "moved" / "data.npz", **(arrays | {"y_train": -arrays["y_train"]}))  # other data there
    with pytest.raises(SpecError, match="data file .* changed since these parts were written"):
        jaxgd.run(spec("moved"), out=tmp_path / "out", progress=False)


def test_a_moved_data_file_is_named_with_how_to_give_its_new_place(tmp_path, capsys):
    """The folder's spec names a data file that moved: every run, resume and collect into the
    folder said 'holds a spec this version of jaxgd cannot read ...; use another --out, or
    delete DIR to start over', advice that throws the finished runs away."""
    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, X_train=rng.normal(size=(12, 3)), y_train=rng.normal(size=12),
             X_test=rng.normal(size=(5, 3)), y_test=rng.normal(size=5))
    first = jaxgd.run(make_spec() | {"data": {"name": "file", "path": str(data)}}, out=tmp_path / "out", progress=False)
    moved = data.rename(tmp_path / "moved.npz")
    saved = tmp_path / "out" / "spec.toml"
    assert cli.main(["run", "--resume", "--quiet", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{saved} cannot be loaded" in err and "put it back or write its new place into" in err
    assert "delete" not in err.split("another version of jaxgd")[0]
    saved.write_text(saved.read_text().replace(str(data), str(moved)))  # as the error says
    resumed = jaxgd.resume(tmp_path / "out", progress=False)
    assert resumed.stats["runs_done"] == 0
    pd.testing.assert_frame_equal(resumed.summary, first.summary, check_exact=True)
