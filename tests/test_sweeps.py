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


def test_edge_of_stability_sharpness_rises_to_two_over_lr_and_stays():
    """Progressive sharpening, then the edge of stability: at lr = 60 and 90 the top Hessian
    eigenvalue starts below 2 / lr and ends within 3% of it (lr * sharpness = 2), staying
    below 2.2 over the second half; at lr = 180 it starts above and comes back to 2."""
    results = jaxgd.run(SWEEPS[0].parent / "edge_of_stability.toml", progress=False,
                        overrides={"seeds": 2, "steps": 2500, "optimizer.lr": [60.0, 90.0, 180.0]})
    history = results.history
    for lr, rows in history.groupby("lr"):
        by_step = rows.groupby("step").lr_sharpness.median()
        assert (by_step.iloc[0] > 2.5) == (lr == 180.0)
        assert by_step.iloc[-1] == pytest.approx(2.0, rel=0.03)
        assert by_step[by_step.index >= 1250].max() < 2.2
