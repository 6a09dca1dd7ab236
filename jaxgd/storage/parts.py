"""The parts of a sweep's --out folder on disk (store.py keeps, checks and assembles them):
one part is the arrays of a finished chunk in an .npz file. Imports no JAX."""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np

PARTS = "parts"  # the folder of the parts, in the --out folder
PART_NAME = re.compile(r"r\d{9}-n\d+-[0-9a-f]{10}\.npz")  # what PartWriter names a part: nothing else is read


@dataclasses.dataclass
class Part:
    """One saved chunk: its runs, their divergence steps and metrics (run, logged step)."""

    name: str
    sha256: str  # of its bytes
    run_ids: np.ndarray  # in this sweep (a part of a smaller sweep this one grows: found by its points)
    diverged_step: np.ndarray
    history: dict[str, np.ndarray]
    steps: np.ndarray  # the logged steps
    params: dict[str, np.ndarray]  # layer -> (run, step of save_params, ...)
    points: dict[str, np.ndarray]  # each run's key (run_points)


def part_bytes(*, run_ids, diverged_step, steps, history, points, params) -> bytes:
    """The file of one part (read back by read_part)."""
    buffer = io.BytesIO()
    arrays = ({f"metric:{k}": v for k, v in history.items()} | {f"point:{k}": v for k, v in points.items()}
              | {f"param:{k}": v for k, v in params.items()})
    np.savez(buffer, run_ids=run_ids, diverged_step=diverged_step, steps=steps, **arrays)
    return buffer.getvalue()


def read_part(name: str, data: bytes, *, sha256: str) -> Part:
    """The part in the file `data` (part_bytes), whose sha256 the caller has checked."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return Part(
            name=name,
            sha256=sha256,
            run_ids=z["run_ids"].astype(np.int64),
            diverged_step=z["diverged_step"].astype(np.int64),
            history={k[len("metric:"):]: z[k] for k in z.files if k.startswith("metric:")},
            steps=z["steps"],
            params={k[len("param:"):]: z[k] for k in z.files if k.startswith("param:")},
            points={k[len("point:"):]: z[k] for k in z.files if k.startswith("point:")},
        )
