"""Data given as arrays: inline in the spec, from .npz or from CSV files."""

import numpy as np
import pytest
from conftest import make_spec

import jaxgd
from jaxgd import SpecError


def arrays(n=12, n_test=5, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X, X_test = rng.normal(size=(n, d)), rng.normal(size=(n_test, d))
    w = rng.normal(size=d)
    return dict(X_train=X, y_train=X @ w, X_test=X_test, y_test=X_test @ w)


def given_spec(**data):
    spec = make_spec(dtype="float64", optimizer={"lr": [0.05, 0.1]})
    spec["data"] = data
    return spec


def write_csv(path, X, y, header=True):
    lines = ([",".join([f"x{i}" for i in range(X.shape[1])] + ["y"])] if header else [])
    lines += [",".join(f"{v:.17g}" for v in [*row, label]) for row, label in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")


def test_inline_npz_and_csv_give_the_same_runs(tmp_path):
    a = arrays()
    np.savez(tmp_path / "data.npz", **a)
    write_csv(tmp_path / "train.csv", a["X_train"], a["y_train"])
    write_csv(tmp_path / "test.csv", a["X_test"], a["y_test"], header=False)

    inline = jaxgd.run(given_spec(name="inline", **a), progress=False)
    npz = jaxgd.run(given_spec(name="file", path=str(tmp_path / "data.npz")), progress=False)
    (tmp_path / "spec.toml").write_text('steps = 40\nlog_every = 10\ndtype = "float64"\nseeds = 2\n'
                                        '[data]\nname = "file"\npath = "train.csv"\ntest_path = "test.csv"\n'
                                        '[model]\nwidth = 8\n[optimizer]\nlr = [0.05, 0.1]\n')
    csv = jaxgd.run(tmp_path / "spec.toml", progress=False)  # paths relative to the spec file
    for other in (npz, csv):
        np.testing.assert_array_equal(other.history.train_loss, inline.history.train_loss)
        np.testing.assert_array_equal(other.history.test_loss, inline.history.test_loss)
    cell = jaxgd.materialize(given_spec(name="inline", **a), 1)
    np.testing.assert_array_equal(cell["X_train"], a["X_train"])
    assert cell["settings"]["data.n"] == 12 and cell["settings"]["data.d"] == 3


def test_inline_arrays_round_trip_through_the_saved_spec(tmp_path):
    a = arrays()
    first = jaxgd.run(given_spec(name="inline", **a), out=tmp_path / "out", progress=False)
    again = jaxgd.run(tmp_path / "out" / "spec.toml", progress=False)
    np.testing.assert_array_equal(first.history.train_loss, again.history.train_loss)


def bad(tmp_path, **changes):
    a = {**arrays(), **changes}
    path = tmp_path / "bad.npz"
    np.savez(path, **{k: v for k, v in a.items() if v is not None})
    return given_spec(name="file", path=str(path))


@pytest.mark.parametrize("changes, message", [
    (dict(X_train=np.ones((12, 3, 2))), r"X_train has shape \(12, 3, 2\); expected \(samples, features\)"),
    (dict(y_train=np.ones(11)), "X_train has 12 samples but y_train has 11 labels"),
    (dict(X_test=np.ones((5, 4))), "X_train has 3 features but X_test has 4"),
    (dict(y_test=np.array([1.0, np.nan, 0, 0, 0])), r"y_test has a NaN or inf value at index \(1,\)"),
    (dict(X_train=np.full((12, 3), np.inf)), "X_train has a NaN or inf"),
    (dict(y_test=None), "missing y_test"),
])
def test_bad_arrays_get_their_own_error(tmp_path, changes, message, no_compile):
    with pytest.raises(SpecError, match=message):
        jaxgd.run(bad(tmp_path, **changes), progress=False)


def test_bad_files_get_their_own_error(tmp_path, no_compile):
    with pytest.raises(SpecError, match="data.path: file not found"):
        jaxgd.run(given_spec(name="file", path=str(tmp_path / "none.npz")), progress=False)
    (tmp_path / "data.txt").write_text("1,2")
    with pytest.raises(SpecError, match="expected an .npz or .csv"):
        jaxgd.run(given_spec(name="file", path=str(tmp_path / "data.txt")), progress=False)
    (tmp_path / "train.csv").write_text("x,y\n1,2\n3,oops\n")
    (tmp_path / "test.csv").write_text("1,2\n")
    with pytest.raises(SpecError, match="train.csv: not a CSV of numbers"):
        jaxgd.run(given_spec(name="file", path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv")), progress=False)
    with pytest.raises(SpecError, match="data.test_path"):
        jaxgd.run(given_spec(name="file", path=str(tmp_path / "train.csv")), progress=False)
    (tmp_path / "ragged.csv").write_text("1,2,3\n4,5\n")
    with pytest.raises(SpecError, match="same number"):
        jaxgd.run(given_spec(name="file", path=str(tmp_path / "ragged.csv"), test_path=str(tmp_path / "test.csv")), progress=False)


def test_shapes_given_in_the_spec_must_match_the_data(no_compile):
    with pytest.raises(SpecError, match=r"data\.n: got 20 but the given data .* have 12"):
        jaxgd.run(given_spec(name="inline", n=20, **arrays()), progress=False)
    with pytest.raises(SpecError, match="need data.name = 'inline'"):
        jaxgd.run(make_spec(data={"X_train": [[1.0]]}), progress=False)


def npz_spec(tmp_path, name="data.npz", dtype="float32", **changes):
    np.savez(tmp_path / name, **{**arrays(), **changes})
    spec = given_spec(name="file", path=str(tmp_path / name))
    spec["dtype"] = dtype
    return spec


@pytest.mark.parametrize("changes, message", [
    (dict(X_train=arrays()["X_train"] * (1 + 1j)), "X_train holds complex128 values; expected real numbers"),
    (dict(y_train=np.arange(12).astype("datetime64[D]")), r"y_train holds datetime64\[D\] values; expected real numbers"),
    (dict(X_train=np.ones((12, 0)), X_test=np.ones((5, 0))), r"X_train has no features \(shape \(12, 0\)\)"),
    (dict(y_test=np.array([1.0, 1e39, 0, 0, 0])), r"y_test has the value 1e\+39 at index \(1,\), which is inf in float32"),
])
def test_data_that_do_not_survive_are_refused(tmp_path, changes, message, no_compile):
    with pytest.raises(SpecError, match=message):
        jaxgd.run(npz_spec(tmp_path, **changes), progress=False)


def test_large_values_are_fine_in_float64(tmp_path, no_compile):
    spec = npz_spec(tmp_path, dtype="float64", y_test=np.array([1.0, 1e39, 0, 0, 0]))
    assert jaxgd.load_spec(spec).given.arrays[3][1] == 1e39


def test_unreadable_files_get_one_line_naming_them(tmp_path, capsys, no_compile):
    from jaxgd.front import cli

    np.save(tmp_path / "array.npy", np.ones(3))
    (tmp_path / "array.npy").rename(tmp_path / "renamed.npz")
    np.savez(tmp_path / "whole.npz", **arrays())
    whole = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[:300])
    (tmp_path / "damaged.npz").write_bytes(whole[:100] + bytes(50) + whole[150:])  # a member's bytes overwritten
    for name, why in (("renamed.npz", "not an .npz file (a zip archive) but an .npy array"),
                      ("cut.npz", "not an .npz file"), ("damaged.npz", "cannot be read")):
        spec = tmp_path / f"{name}.toml"
        spec.write_text(f'steps = 10\n[data]\nname = "file"\npath = "{name}"\n')
        assert cli.main(["run", str(spec), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("jaxgd: error: data.path: ") and str(tmp_path / name) in err and why in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def csv_spec(tmp_path, first_row, header=None):
    a = arrays()
    write_csv(tmp_path / "train.csv", a["X_train"], a["y_train"], header=False)
    write_csv(tmp_path / "test.csv", a["X_test"], a["y_test"], header=False)
    text = (tmp_path / "train.csv").read_text()
    (tmp_path / "train.csv").write_text(first_row + "\n" + text if first_row else text)
    spec = given_spec(name="file", path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv"))
    if header is not None:
        spec["data"]["header"] = header
    return spec


def test_csv_headers_are_explicit(tmp_path, capsys, no_compile):
    # auto: a row of names is skipped, and said so; a row of numbers is data
    assert jaxgd.load_spec(csv_spec(tmp_path, "x0,x1,x2,y")).given.n == 12
    assert "read as a header (data.header = 'auto')" in capsys.readouterr().err
    assert jaxgd.load_spec(csv_spec(tmp_path, "")).given.n == 12
    # a row partly of numbers is not guessed at
    with pytest.raises(SpecError, match="partly numbers: is it a header"):
        jaxgd.load_spec(csv_spec(tmp_path, "x0,1,2,y"))
    assert jaxgd.load_spec(csv_spec(tmp_path, "x0,1,2,y", header=True)).given.n == 12
    assert jaxgd.load_spec(csv_spec(tmp_path, "9,9,9,9", header=False)).given.n == 13
    with pytest.raises(SpecError, match="not a CSV of numbers"):
        jaxgd.load_spec(csv_spec(tmp_path, "x0,x1,x2,y", header=False))
    with pytest.raises(SpecError, match="data.header: got 'maybe'"):
        jaxgd.load_spec(csv_spec(tmp_path, "", header="maybe"))
