"""Every ready sweep's summary table, at a shortened step count, is bit for bit the one
recorded in tests/data/sweep_fingerprints.json (recorded before issue 11's refactor with
`python tests/sweep_fingerprints.py --record`). A deliberate change of results re-records
it and says why in the commit."""

import json

import pytest
from sweep_fingerprints import RECORD, SWEEPS, sweep_fingerprint

RECORDED = json.loads(RECORD.read_text())


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_summary_is_bit_identical_to_the_record(path):
    assert sweep_fingerprint(path) == RECORDED[path.stem]
