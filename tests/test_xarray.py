"""Results as xarray: swept settings as coordinates, nearest selection, netCDF and zarr files;
and reading finished tables needs no JAX."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import make_spec

import jaxgd

SPEC = make_spec(seeds=2, steps=20, log_every=10, model={"width": [4, 8]}, optimizer={"lr": {"logspace": [-2, -1, 3]}})


@pytest.fixture(scope="module")
def results():
    return jaxgd.run(SPEC, progress=False)


def test_history_has_the_swept_settings_as_coordinates(results):
    pytest.importorskip("xarray")
    data = results.to_xarray()
    assert set(data.dims) == {"seed", "width", "lr", "step"}
    lr = data.lr.values[1]
    picked = data.sel(lr=lr * 1.05, width=8, seed=1, method="nearest").train_loss.values
    rows = results.history[(results.history.width == 8) & (results.history.seed == 1) & (results.history.lr == lr)]
    np.testing.assert_array_equal(picked, rows.sort_values("step").train_loss.to_numpy())


def test_summary_and_files(results, tmp_path):
    xarray = pytest.importorskip("xarray")
    summary = results.to_xarray("summary")
    assert set(summary.dims) == {"seed", "width", "lr"} and "final_train_loss" in summary
    pytest.importorskip("h5netcdf")
    summary.to_netcdf(tmp_path / "s.nc", engine="h5netcdf")
    again = xarray.open_dataset(tmp_path / "s.nc", engine="h5netcdf")
    np.testing.assert_array_equal(again.final_train_loss.values, summary.final_train_loss.values)
    pytest.importorskip("zarr")
    results.to_xarray().to_zarr(tmp_path / "h.zarr")
    assert xarray.open_zarr(tmp_path / "h.zarr").train_loss.shape == results.to_xarray().train_loss.shape


def test_reading_finished_tables_imports_no_jax(results, tmp_path):
    results.save(tmp_path)
    code = (f"import sys; from jaxgd.storage.results import Results; r = Results.load({str(tmp_path)!r}); "
            "print(len(r.summary), 'jax' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == [str(len(results.summary)), "False"], done.stderr
