"""The parts of a sweep's --out folder on disk (store.py keeps, checks and assembles them):
one part is the arrays of a finished chunk in an .npz file; the parts index says which part
holds each run, so that one run's kept parameters are read from its part alone. Imports
no JAX: reading a finished sweep's parameters by its parts index never needs it."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from pathlib import Path

import numpy as np

from jaxgd.engine.outputs import KeptParams
from jaxgd.storage.files import SPEC_FILE

PARTS = "parts"  # the folder of the parts, in the --out folder
PART_NAME = re.compile(r"r\d{9}-n\d+-[0-9a-f]{10}\.npz")  # what PartWriter names a part: nothing else is read
# In the --out folder: which part holds each run of a finished sweep, written with its
# tables; any run into the folder removes it, since the parts it writes may change what it names.
PARTS_INDEX = "parts_index.npz"


def spec_sha256(out: Path) -> str | None:
    """The sha256 of the spec saved in the folder `out` (None if it cannot be read): run ids
    are positions in its grid, which growing the sweep changes."""
    data = _bytes_of(out / SPEC_FILE)
    return None if data is None else hashlib.sha256(data).hexdigest()


@dataclasses.dataclass
class Part:
    """One saved chunk: its runs, their divergence steps and metrics (run, logged step)."""

    name: str
    sha256: str  # of its bytes
    run_ids: np.ndarray  # in this sweep (a part of a smaller sweep this one grows: found by its points)
    ids_in_file: np.ndarray  # the ids its file names its runs by: run_ids, or those of the smaller sweep
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
        run_ids = z["run_ids"].astype(np.int64)
        return Part(
            name=name,
            sha256=sha256,
            run_ids=run_ids,
            ids_in_file=run_ids,
            diverged_step=z["diverged_step"].astype(np.int64),
            history={k[len("metric:"):]: z[k] for k in z.files if k.startswith("metric:")},
            steps=z["steps"],
            params={k[len("param:"):]: z[k] for k in z.files if k.startswith("param:")},
            points={k[len("point:"):]: z[k] for k in z.files if k.startswith("point:")},
        )


def parts_index_bytes(parts: list[Part], *, n_runs: int, spec: str) -> bytes:
    """The parts index of a sweep of `n_runs` runs held by `parts` (a scan's), whose spec has
    the sha256 `spec` (spec_sha256): each run's part (-1: none), row there and id there
    (ids_in_file), each part's name and sha256."""
    part, row, id_in_part = np.full(n_runs, -1, np.int64), np.zeros(n_runs, np.int64), np.zeros(n_runs, np.int64)
    for number, held in enumerate(parts):  # a run in two parts: the last one, as in store.assemble
        part[held.run_ids], row[held.run_ids] = number, np.arange(len(held.run_ids))
        id_in_part[held.run_ids] = held.ids_in_file
    buffer = io.BytesIO()
    np.savez(buffer, part=part, row=row, id_in_part=id_in_part, name=np.array([p.name for p in parts], str),
             sha256=np.array([p.sha256 for p in parts], str), spec=np.array(spec, str))
    return buffer.getvalue()


def indexed_params(out: Path, run_id: int) -> KeptParams | None:
    """The kept parameters of the runs of the part that holds run `run_id` (none if no
    finished run of the sweep has that id), found by the parts index of the folder `out`;
    None where the index cannot tell: there is none, it is not one parts_index_bytes wrote,
    it was written for another spec (a stale one: the sweep has grown since), its part is
    not the file it indexed (missing, damaged, written again), or the part does not name
    the run at its row by the id the index gives it there (an index edited by hand)."""
    try:
        with np.load(out / PARTS_INDEX, allow_pickle=False) as index:
            part, row, id_in_part = index["part"], index["row"], index["id_in_part"]
            names, sha256, spec = index["name"], index["sha256"], index["spec"]
    except Exception:  # noqa: BLE001 - missing, unreadable or of an older jaxgd: the parts are scanned instead
        return None
    if not _well_formed(part, row, id_in_part, names, sha256, spec) or str(spec) != spec_sha256(out):
        return None
    if run_id not in range(len(part)) or part[run_id] < 0:
        return KeptParams()
    number = part[run_id]
    name, digest = str(names[number]), str(sha256[number])
    data = _bytes_of(out / PARTS / name) if PART_NAME.fullmatch(name) else None
    if data is None or hashlib.sha256(data).hexdigest() != digest:
        return None
    runs, held = np.flatnonzero(part == number), read_part(name, data, sha256=digest)
    if row[runs].max() >= len(held.ids_in_file) or not np.array_equal(held.ids_in_file[row[runs]], id_in_part[runs]):
        return None
    kept = KeptParams()
    kept.add(runs, {layer: values[row[runs]] for layer, values in held.params.items()})
    return kept


def _well_formed(part, row, id_in_part, names, sha256, spec) -> bool:
    """Whether the arrays of a parts index have the shapes and ranges parts_index_bytes gives."""
    integers = all(a.ndim == 1 and a.dtype.kind == "i" for a in (part, row, id_in_part))
    return (integers and len(part) == len(row) == len(id_in_part) and spec.shape == ()
            and names.shape == sha256.shape == (len(names),)
            and bool(np.all((part >= -1) & (part < len(names)) & (row >= 0))))


def _bytes_of(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
