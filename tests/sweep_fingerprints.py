"""Content fingerprints of every ready sweep's summary table at a shortened step count:
`python tests/sweep_fingerprints.py --record` writes them, tests/test_sweep_fingerprints.py
checks that a change of the inside (issue 11's refactor, say) leaves every table bit for bit."""

import hashlib
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "sweeps").glob("*.toml"))
RECORD = ROOT / "tests" / "data" / "sweep_fingerprints.json"
# Short enough for CI, long enough that every sweep takes gradient steps and logs twice;
# measure.ntk_steps and summary_steps name logged steps, so they follow the step count.
SHORT = {"steps": 20, "log_every": 10}


def short_overrides(path: Path) -> dict:
    import tomllib

    raw = tomllib.loads(path.read_text())
    overrides = dict(SHORT)
    if "summary_steps" in raw:
        overrides["summary_steps"] = [0, 20]
    if "ntk_steps" in raw.get("measure", {}):
        overrides["measure.ntk_steps"] = [0, 20]
    return overrides


def fingerprint(summary: pd.DataFrame) -> str:
    """sha256 of the column names, dtypes and every value's bytes (NaN as NaN)."""
    digest = hashlib.sha256()
    for column in summary.columns:
        values = summary[column].to_numpy()
        digest.update(f"{column}:{values.dtype}".encode())
        digest.update(values.tobytes() if values.dtype != object else repr(values.tolist()).encode())
    return digest.hexdigest()


def sweep_fingerprint(path: Path) -> str:
    import jaxgd

    results = jaxgd.run(path, overrides=short_overrides(path), progress=False)
    return fingerprint(results.summary)


if __name__ == "__main__":
    if "--record" in sys.argv:
        record = {path.stem: sweep_fingerprint(path) for path in SWEEPS}
        RECORD.write_text(json.dumps(record, indent=1) + "\n")
        print(record)
