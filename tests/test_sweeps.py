"""Every ready sweep validates, and the quickstart shows its effect at a size CI affords."""

from pathlib import Path

import pytest

import jaxgd

SWEEPS = sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.toml"))


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_is_valid(path, no_compile):
    spec = jaxgd.load_spec(path)
    assert any(spec.plot.values())


def test_quickstart_edge_of_stability_falls_with_width():
    """In standard parametrization the largest stable step size shrinks as width grows."""
    results = jaxgd.run(SWEEPS[0].parent / "quickstart.toml", progress=False, overrides={
        "model.width": [4, 64, 256], "optimizer.lr": {"logspace": [-3, 1, 13]}, "seeds": 2, "steps": 150,
    })
    stable = results.summary[~results.summary.diverged].groupby("width").lr.max()
    assert stable[4] > stable[64] > stable[256]
    assert stable[4] / stable[256] > 10
    assert results.summary.diverged.any()
