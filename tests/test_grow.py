"""Growing a finished sweep (issue 14): running a sweep with more values on its axes or
more seeds into the folder of a finished one computes only the new runs, keeps the old
ones' rows, and gives the tables of a fresh run of the bigger sweep; any other change is
refused, naming the key and what is allowed."""

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_spec

import jaxgd
from jaxgd import SpecError
from jaxgd.storage import slurm, store
from jaxgd.sweep import plan as planning

LRS = [round(0.01 * 1.25**i, 6) for i in range(16)]
NEW = {LRS[2], LRS[9], LRS[15]}  # new step sizes in the middle of the list and at its end


def spec(seeds, lrs, **tables):
    return make_spec(seeds=seeds, steps=20, log_every=10, optimizer={"lr": lrs}, engine={"chunk_size": 8}, **tables)


SMALL = spec(2, [lr for lr in LRS if lr not in NEW][:12])  # 12 step sizes x 2 seeds: 24 runs, 3 parts
BIG = spec(4, LRS)  # 16 step sizes x 4 seeds: 64 runs, 40 of them new
KEY = ["width", "lr", "seed"]  # a run's stable key: its swept settings and seed
# The README's tolerance between a grown sweep and a fresh one: old runs were computed in
# chunks of the smaller sweep, which XLA may round differently in the last bits.
RTOL = 1e-5


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The folder of the finished small sweep, and its results."""
    out = tmp_path_factory.mktemp("small") / "out"
    return out, jaxgd.run(SMALL, out=out, progress=False)


@pytest.fixture(scope="module")
def fresh():
    return jaxgd.run(BIG, progress=False)


@pytest.fixture
def small(finished, tmp_path):
    """A copy of the finished small sweep's folder, for one test to grow."""
    return shutil.copytree(finished[0], tmp_path / "out")


def by_key(table: pd.DataFrame) -> pd.DataFrame:
    order = [c for c in KEY + ["step"] if c in table]
    return table.sort_values(order).drop(columns="run_id").reset_index(drop=True)


def old_rows(table: pd.DataFrame) -> pd.DataFrame:
    return by_key(table[table.lr.isin(SMALL["optimizer"]["lr"]) & table.seed.isin([0, 1])])


def assert_like_fresh(results, fresh):
    """Tables of the bigger sweep, run ids included (positions in its grid), values to RTOL."""
    for mine, theirs in ((results.history, fresh.history), (results.summary, fresh.summary)):
        pd.testing.assert_frame_equal(mine, theirs, check_exact=False, rtol=RTOL)
        floats = [c for c in mine if mine[c].dtype.kind == "f" and c != "lr"]
        pd.testing.assert_frame_equal(mine.drop(columns=floats), theirs.drop(columns=floats), check_exact=True)


def test_a_grown_sweep_runs_only_its_new_runs_and_keeps_the_old_rows(small, finished, fresh):
    grown = jaxgd.run(BIG, out=small, progress=False)
    assert grown.stats["runs_done"] == 40 and grown.stats["runs_before"] == 24 and grown.stats["runs"] == 64
    assert "40 now, 24 done before" in grown.closing_line()
    assert_like_fresh(grown, fresh)
    # the old runs' rows are those of the small sweep, bit for bit (their run ids changed)
    small_results = finished[1]
    pd.testing.assert_frame_equal(old_rows(grown.history), by_key(small_results.history), check_exact=True)
    pd.testing.assert_frame_equal(old_rows(grown.summary), by_key(small_results.summary), check_exact=True)
    # the folder now holds the bigger sweep: its spec, and nothing left to run
    assert jaxgd.load_spec(small / "spec.toml").seeds == [0, 1, 2, 3]
    assert jaxgd.resume(small, progress=False).stats["runs_done"] == 0
    pd.testing.assert_frame_equal(jaxgd.Results.load(small).summary, grown.summary)


def test_a_static_axis_grows_in_the_middle(tmp_path):
    out = tmp_path / "out"
    before = jaxgd.run(spec(1, [0.05, 0.1], model={"width": [4, 16]}), out=out, progress=False)
    grown = jaxgd.run(spec(1, [0.05, 0.1], model={"width": [4, 8, 16]}), out=out, progress=False)
    assert grown.stats["runs_done"] == 2 and grown.stats["runs_before"] == 4
    assert grown.summary.width.tolist() == [4, 4, 8, 8, 16, 16]
    kept = grown.summary[grown.summary.width != 8]
    pd.testing.assert_frame_equal(by_key(kept), by_key(before.summary), check_exact=True)


@pytest.mark.parametrize("change, key", [
    ({"model": {"width": 16}}, "model.width: 8 there, 16 here"),  # an unswept setting
    ({"optimizer": {"lr": [0.05, 0.3]}}, "optimizer.lr: [0.05, 0.1] there, [0.05, 0.3] here"),  # a value changed
    ({"optimizer": {"lr": [0.05]}}, "optimizer.lr: [0.05, 0.1] there, [0.05] here"),  # a value removed
    ({"seeds": [0, 2]}, "seeds: [0, 1] there, [0, 2] here"),
    ({"model": {"width": [8, 16]}}, "model.width: 8 there, [8, 16] here"),  # an unswept setting becomes swept
])
def test_any_other_change_is_refused_naming_the_key(tmp_path, change, key, no_compile):
    saved = make_spec(seeds=2, optimizer={"lr": [0.05, 0.1]})
    store.Store.prepare(tmp_path, planning.make(jaxgd.load_spec(saved)))
    with pytest.raises(SpecError) as refused:
        jaxgd.run(make_spec(saved, **change), out=tmp_path, progress=False)
    assert key in str(refused.value) and store.GROWTH in str(refused.value)


def test_a_random_design_cannot_grow(tmp_path, no_compile):
    design = make_spec(design="sobol", samples=4, optimizer={"lr": {"logspace": [-2, -1, 4]}})
    store.Store.prepare(tmp_path, planning.make(jaxgd.load_spec(design)))
    with pytest.raises(SpecError, match=r"samples: 4 there, 8 here.*only more values on swept axes or more seeds"):
        jaxgd.run(design | {"samples": 8}, out=tmp_path, progress=False)


def test_a_grown_sweep_interrupted_then_resumed(small, fresh, monkeypatch):
    save, saved = store.PartWriter.__call__, []

    def interrupted_after_two_parts(self, *args):
        if len(saved) == 2:
            raise KeyboardInterrupt
        saved.append(save(self, *args))

    monkeypatch.setattr(store.PartWriter, "__call__", interrupted_after_two_parts)
    with pytest.raises(KeyboardInterrupt):
        jaxgd.run(BIG, out=small, progress=False)
    monkeypatch.undo()

    with pytest.raises(FileNotFoundError):  # the small sweep's tables are gone: they are not this sweep's
        jaxgd.Results.load(small)
    so_far = jaxgd.Results.load(small, partial=True)  # the old runs and the new ones saved
    assert len(so_far.summary) == 24 + 16 and so_far.stats["runs_missing"] == 24
    resumed = jaxgd.resume(small, progress=False)
    assert resumed.stats["runs_done"] == 24 and resumed.stats["runs_before"] == 40
    assert_like_fresh(resumed, fresh)


def test_shares_of_a_grown_sweep_then_collect(small, fresh):
    store.Store.prepare(small, planning.make(jaxgd.load_spec(BIG)))  # as `jaxgd run --slurm` does before submitting
    done = [slurm.run_task(str(small), index, 2)["runs_done"] for index in range(2)]
    assert sum(done) == 40 and all(done)
    assert_like_fresh(jaxgd.collect(small, progress=False, plots=False), fresh)


def test_parts_name_their_runs_by_points(small):
    part = next((small / "parts").glob("r*.npz"))
    with np.load(part) as z:
        assert {"point:seed", "point:optimizer.lr"} <= set(z.files) and len(z["point:seed"]) == len(z["run_ids"])


def test_a_crash_while_the_folder_is_grown_never_leaves_the_bigger_spec_beside_the_smaller_tables(small, monkeypatch):
    """The bigger sweep's spec.toml was written before the smaller sweep's tables were
    removed: a crash in between left a folder whose tables Results.load gave as the bigger
    sweep's, silently."""
    unlink = Path.unlink

    def crash_on_tables(path, *args, **kwargs):
        if path.name == "history.parquet":
            raise KeyboardInterrupt  # killed here
        unlink(path, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", crash_on_tables)
    with pytest.raises(KeyboardInterrupt):
        jaxgd.run(BIG, out=small, progress=False)
    monkeypatch.undo()
    loaded = jaxgd.Results.load(small)
    assert loaded.spec["seeds"] == sorted(loaded.summary.seed.unique()) == [0, 1]


def test_a_long_list_changed_near_its_end_is_shown_where_it_differs(tmp_path, no_compile):
    """Values over 60 characters were cut at their start: two lists of step sizes that
    differ in their last value were shown the same, 'optimizer.lr: [0.01, 0.0125, ...'."""
    saved = spec(1, LRS)
    store.Store.prepare(tmp_path, planning.make(jaxgd.load_spec(saved)))
    with pytest.raises(SpecError) as refused:
        jaxgd.run(spec(1, LRS[:-1] + [0.5]), out=tmp_path, progress=False)
    assert re.search(rf"optimizer.lr: \.\.\..*{LRS[-1]}\] there, \.\.\..*0\.5\] here", str(refused.value))
