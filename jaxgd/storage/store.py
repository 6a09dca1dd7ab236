"""Durable results: the `--out` folder of a sweep, written chunk by chunk.

    DIR/spec.toml                      the resolved spec, written before the first chunk
    DIR/parts/r000000512-<hash>.npz    one finished chunk: run_ids, diverged_step, metrics, each run's
                                       point (seed and axis values: its key, run_points) and, with
                                       save_params, its parameters at those steps
    DIR/parts/manifest-<writer>.jsonl  one line per finished part: name, sha256, size, runs, fingerprint
    DIR/parts/settings-<hash>.json     the settings a fingerprint stands for (to name what differs)
    DIR/.jaxgd.lock                    the host and pid of the process writing the folder
    DIR/history.parquet, summary.parquet, stats.json, figures: assembled at the end
    DIR/parts_index.npz                with save_params, written with the tables: which part holds each
                                       run (parts.py), so that one run's parameters are read from its part

Every file is written to a temporary name, flushed to disk and renamed, so a crash
leaves either the whole file or none. A part counts only once its manifest line is
written and its bytes still match the sha256 recorded there; anything else (a crash
between the two, a truncated or damaged file) is ignored and its runs are run again.
Each process writes its own manifest, so processes and Slurm tasks never write to the
same file. A part names its runs itself, so a resumed sweep may be cut into chunks
differently from the first attempt (halved chunks, another chunk size).

A finished sweep may grow: more values on its axes, more seeds (fingerprint.grown).
Run ids are positions in the grid, which growing changes, so a part also stores each
run's point, its stable key; the parts of the smaller sweep are found in the bigger one
by their points, and only the new runs are run.

Nothing on disk is trusted: a manifest line that is not a well-formed entry naming a
plain part name is reported and ignored, and a part whose fingerprint (storage.fingerprint:
settings, code, plugins, data) is not this sweep's is refused, naming what differs,
unless the caller asks to recompute its runs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import secrets
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

from jaxgd.engine.outputs import KeptParams, Outputs
from jaxgd.errors import IncompleteError
from jaxgd.folders import cannot_write
from jaxgd.storage import fingerprint
from jaxgd.storage.files import (HISTORY_FILE, HOST, SPEC_FILE, STATS_FILE, SUMMARY_FILE, Lock, atomic_write_bytes,
                                 left_by_dead_process)
from jaxgd.storage.parts import (PART_NAME, PARTS, PARTS_INDEX, Part, part_bytes, parts_index_bytes, read_part,
                                 spec_sha256)
from jaxgd.sweep import spec as specs
from jaxgd.sweep import plan as planning

ASIDE = {"damaged": "damaged", "foreign": "superseded"}  # where tidy moves parts that do not count


def load_saved(out, doing: str) -> specs.Spec:
    """The spec saved in `out`, or FileNotFoundError saying what could not be done."""
    spec = Store(out).saved_spec()
    if spec is None:
        raise FileNotFoundError(f"{Path(out) / SPEC_FILE} not found: {doing}")
    return spec


def saved_params(out) -> KeptParams:
    """The parameters kept at the steps of save_params by the finished runs of the sweep in
    `out`, from every part (one run's: results.kept_params)."""
    store = Store(out)
    plan = planning.make(load_saved(out, "no parameters to read"))
    return store.assemble(plan, missing_ok=True).params


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and key != "plot":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# What a finished sweep may become besides itself, said where another change is refused.
GROWTH = "only more values on swept axes or more seeds can be added to a finished sweep"


def spec_differences(old: specs.Spec, new: specs.Spec) -> list[str]:
    """'key: old -> new' for every setting that changes the sweep's values, other than
    more values on an axis or more seeds (in which `new` grows `old`) and the data's
    path (a data file moved: the parts' fingerprint holds its content)."""
    a, b = _flat(old.to_dict()), _flat(new.to_dict())
    growing = fingerprint.grown(a, b, fingerprint.growable(new))
    lines = []
    for key in sorted(set(a) | set(b)):
        # where the data are, and inline arrays: their content is compared by the parts' fingerprint
        if key in specs.FREE_KEYS or key in fingerprint.NOT_SETTINGS or key in growing or a.get(key) == b.get(key):
            continue
        there, here = _shown_apart(a.get(key), b.get(key))
        lines.append(f"{key}: {there} there, {here} here")
    return lines


SHOWN = 57  # characters of a long value shown in a refusal


def _shown_apart(a, b) -> tuple[str, str]:
    """Two values as written, a long one cut to SHOWN characters from a little before where
    they first differ (two long lists that differ only near their end, cut at their
    start, looked the same)."""
    texts = ["(unset)" if v is None else repr(v) for v in (a, b)]
    start = max(0, len(os.path.commonprefix(texts)) - 12)
    cut = lambda text: (text if len(text) <= SHOWN + 3 else
                        ("..." if start else "") + text[start : start + SHOWN] + ("..." if len(text) > start + SHOWN else ""))
    return cut(texts[0]), cut(texts[1])


@dataclasses.dataclass
class Scan:
    """What a folder holds: its valid parts, the runs they cover, the damaged parts."""

    parts: list[Part]
    finished: np.ndarray  # bool over run_ids
    damaged: dict[str, str]  # part name -> why
    foreign: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # part -> what differs from this sweep
    bad_lines: list[str] = dataclasses.field(default_factory=list)  # manifest lines ignored, and why
    unlisted: list[str] = dataclasses.field(default_factory=list)  # part files no manifest line names: not read

    @property
    def n_finished(self) -> int:
        return int(self.finished.sum())


class Store:
    def __init__(self, out):
        self.out = Path(out)
        self.parts = self.out / PARTS

    # -- the spec -----------------------------------------------------------------
    def saved_spec(self) -> specs.Spec | None:
        path = self.out / SPEC_FILE
        if not path.is_file():
            return None
        try:
            return specs.load(path)
        except specs.SpecError as err:
            # most often a file it names moved: deleting the folder, its finished runs, is the last resort
            raise specs.SpecError(
                f"{path} cannot be loaded ({err}). If a file it names moved (data.path, data.test_path, plugins), "
                f"put it back or write its new place into {path}; if another version of jaxgd wrote it, use that "
                f"version, or another --out, or delete {self.out} to start over"
            ) from None

    @classmethod
    def prepare(cls, out, plan: planning.Plan, *, recompute: bool = False) -> tuple[Store, Scan]:
        """The folder for the sweep of `plan` and its scan: created, or checked to hold the
        same sweep or one that this one grows (more values on its axes, more seeds: then the
        smaller sweep's tables are removed); the name, plots, chunking and memory budget may
        change. Every check is made before anything in it changes: another sweep
        (refuse_another_sweep's SpecError) and parts of other inputs (refuse_foreign, unless
        `recompute`) are refused with the folder as it was, its spec and tables those of the
        sweep it holds. With `recompute` and such parts, the tables, assembled from them, are
        removed until the tables of this sweep are written. A caller that may grow a folder
        holds its lock."""
        store = cls(out)
        old = store.refuse_another_sweep(plan.spec)
        scan = store.scan(plan)
        store.refuse_foreign(scan, recompute)
        store._take(plan.spec, old, stale_tables=bool(scan.foreign))
        return store, scan

    def refuse_another_sweep(self, spec: specs.Spec) -> specs.Spec | None:
        """The spec the folder holds (None if none), or SpecError if it is another sweep than
        `spec` or one that `spec` does not grow."""
        old = self.saved_spec()
        if old is not None:
            diff = spec_differences(old, spec)
            if diff:
                raise specs.SpecError(
                    f"{self.out} already holds results of a different sweep ("
                    + "; ".join(diff)
                    + f"); {GROWTH}. Refusing to mix them: use another --out, or delete {self.out} to start over"
                )
        return old

    def _take(self, spec: specs.Spec, old: specs.Spec | None, *, stale_tables: bool = False) -> None:
        """Make the folder `spec`'s, which holds `old` (refuse_another_sweep): its spec written,
        the tables of a smaller sweep that `spec` grows (or `stale_tables`) removed."""
        self.make_writable()
        (self.out / PARTS_INDEX).unlink(missing_ok=True)  # the parts this run writes may change what it names
        if stale_tables or (old is not None and fingerprint.settings_of(old) != fingerprint.settings_of(spec)):
            # grown: the tables are the smaller sweep's (its parts stay), written again at the end.
            # Removed before the spec is written: a crash between the two never leaves the
            # bigger sweep's spec beside the smaller sweep's tables.
            for name in (HISTORY_FILE, SUMMARY_FILE, STATS_FILE):
                (self.out / name).unlink(missing_ok=True)
        if old is None or old.to_dict() != spec.to_dict():
            atomic_write_bytes(self.out / SPEC_FILE, tomli_w.dumps(spec.to_dict()).encode())
        record = self.parts / f"settings-{fingerprint.of(spec)['settings']}.json"
        if not record.is_file():
            atomic_write_bytes(record, json.dumps(fingerprint.settings_of(spec), indent=1).encode())

    # -- writing --------------------------------------------------------------------
    def make_writable(self) -> None:
        """Create the folder and its parts/, and check that files can be written there,
        before any run starts, with an error that says what to change."""
        if self.out.exists() and not self.out.is_dir():
            raise NotADirectoryError(f"{self.out} is a file, not a folder; give --out (out=) a new or existing folder")
        if reason := cannot_write(self.parts, make=True):
            raise PermissionError(f"cannot write results into {self.out} ({reason}); "
                                  "give --out (out=) a folder you can write to")

    def writer(self, plan: planning.Plan) -> "PartWriter":
        """A callable `(run_ids, history, diverged_step, params)` that saves one finished chunk."""
        return PartWriter(self, plan)

    # -- reading --------------------------------------------------------------------
    def manifest(self) -> tuple[dict[str, list[dict]], list[str]]:
        """Part name -> its manifest entries (a part written twice has two), and the lines
        ignored: cut short by a crash, or not an entry naming a plain part name."""
        entries: dict[str, list[dict]] = {}
        bad = []
        for path in sorted(self.parts.glob("manifest-*.jsonl")):
            lines = path.read_text(errors="replace").splitlines()
            for number, line in enumerate(lines, 1):
                why = _bad_entry(line)
                if why is None:
                    entry = json.loads(line)
                    entries.setdefault(entry["part"], []).append(entry)
                elif number < len(lines) or why != "not JSON":  # a last line cut short by a crash is expected
                    bad.append(f"{path.name} line {number} ({why}): {line[:80]!r}")
        return entries, bad

    def scan(self, plan: planning.Plan) -> Scan:
        """Every recorded part, checked against its manifest entry and the plan; the runs
        of a part of a smaller sweep that this one grows are found by their points."""
        parts, damaged, foreign = [], {}, {}
        finished = np.zeros(plan.n_runs, bool)
        mine = fingerprint.of(plan.spec)
        index = functools.cache(lambda: run_index(plan))  # built only if some part needs it
        manifest, bad_lines = self.manifest()
        for name, entries in sorted(manifest.items()):
            path = self.parts / name
            if not path.is_file():
                damaged[name] = "the file is missing"
                continue
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if not any(e.get("sha256") == digest and e.get("bytes") == len(data) for e in entries):
                damaged[name] = "truncated or damaged: its sha256 is not the one in the manifest"
                continue
            try:
                part = read_part(name, data, sha256=digest)
                ok = _fits(part, plan)
            except Exception as err:  # noqa: BLE001 - any unreadable part is redone
                damaged[name] = f"unreadable: {type(err).__name__}"
                continue
            theirs = [e.get("fingerprint") for e in entries if e.get("sha256") == digest]
            if mine not in theirs:  # a part redone under its old name has both fingerprints
                why = self._differences(theirs[-1] if isinstance(theirs[-1], dict) else {}, plan.spec, mine)
                if why:
                    foreign[name] = why
                    continue
                if ok:  # a part of a smaller sweep that this one grows: its runs found by their points
                    part = dataclasses.replace(part, run_ids=run_ids_at(index(), part.points))
            if not (ok and part.run_ids.min() >= 0 and part.run_ids.max() < plan.n_runs):
                damaged[name] = "its steps, metrics or runs do not fit this sweep"
                continue
            parts.append(part)
            finished[part.run_ids] = True
        unlisted = sorted(path.name for path in self.parts.glob("*.npz")
                          if PART_NAME.fullmatch(path.name) and path.name not in manifest)
        return Scan(parts=parts, finished=finished, damaged=damaged, foreign=foreign, bad_lines=bad_lines,
                    unlisted=unlisted)

    def _differences(self, theirs: dict, spec: specs.Spec, mine: dict) -> list[str]:
        if not theirs:
            return ["they were written by a jaxgd that recorded no fingerprint"]
        try:
            recorded = json.loads((self.parts / f"settings-{theirs.get('settings')}.json").read_text())
        except (OSError, ValueError):
            recorded = None
        return fingerprint.differences(theirs, mine, recorded, fingerprint.settings_of(spec), fingerprint.growable(spec))

    def refuse_foreign(self, scan: Scan, recompute: bool = False) -> None:
        """SpecError naming what differs if some parts were computed from other inputs (a
        spec.toml edited by hand, other code, plugins or data); with `recompute`, their
        runs are counted as not done (they are run again, and the parts set aside)."""
        if not scan.foreign or recompute:
            return
        differences = list(dict.fromkeys(why for whys in scan.foreign.values() for why in whys))
        raise specs.SpecError(
            f"{self.out} holds {len(scan.foreign)} part(s) computed from other inputs than this sweep's: "
            + "; ".join(differences[:8]) + ("; ..." if len(differences) > 8 else "")
            + f". Refusing to mix them: recompute those runs (`jaxgd run --resume --recompute --out {self.out}`, "
              f"or recompute=True), or use another --out")

    def lock(self) -> Lock:
        """The folder's lock (a context manager): one independent sweep writes it at a time.
        The folder is created (make_writable) if it is not there yet."""
        self.make_writable()
        return Lock(self.out)

    def assemble(self, plan: planning.Plan, scan: Scan | None = None, *, missing_ok: bool = False) -> Outputs:
        """Every run's results from the parts; IncompleteError if some are missing, unless
        `missing_ok` (then a missing run's metrics are NaN)."""
        scan = scan or self.scan(plan)
        missing = plan.n_runs - scan.n_finished
        if missing and not missing_ok:
            damaged = f", {len(scan.damaged)} damaged part(s)" if scan.damaged else ""
            raise IncompleteError(
                f"{self.out} holds {scan.n_finished:,} of {plan.n_runs:,} runs ({missing:,} missing{damaged}); "
                f"finish them with `jaxgd run --resume --out {self.out}`"
            )
        steps = plan.logged_steps
        dtype = np.dtype(plan.spec.settings["dtype"])
        history = {m: np.full((plan.n_runs, len(steps)), np.nan, dtype) for m in plan.logged}
        diverged_step = np.full(plan.n_runs, -1, np.int64)
        params = KeptParams()
        for part in scan.parts:  # a run in two parts: the last one's values, metrics and parameters alike
            for name, values in part.history.items():
                history[name][part.run_ids] = values
            diverged_step[part.run_ids] = part.diverged_step
            params.add(part.run_ids, part.params)
        stats = {"runs": plan.n_runs, "steps": plan.spec.settings["steps"], "groups": len(plan.groups),
                 "parts": len(scan.parts)}
        return Outputs(steps=steps, history=history, diverged_step=diverged_step, stats=stats, params=params)

    def index_parts(self, scan: Scan) -> None:
        """With save_params, once every run is in: write the parts index (parts.py), which part
        holds each run, so that one run's parameters are read from its part alone."""
        if any(part.params for part in scan.parts):
            index = parts_index_bytes(scan.parts, n_runs=len(scan.finished), spec=spec_sha256(self.out))
            atomic_write_bytes(self.out / PARTS_INDEX, index)

    def tidy(self, scan: Scan) -> None:
        """Once every run is in: move damaged parts to parts/damaged/ and parts of other
        inputs (recomputed) to parts/superseded/, and remove temporary files left by dead
        processes of this host."""
        self.set_aside(scan.damaged, "damaged")
        self.set_aside(scan.foreign, "foreign")
        for tmp in self.parts.glob(".*.tmp"):
            if left_by_dead_process(tmp):
                tmp.unlink(missing_ok=True)

    def set_aside(self, names, kind: str) -> None:
        """Move the parts `names` of `kind` ("damaged", "foreign") into their folder of
        parts/ (ASIDE), where no scan reads them. Part names are plain names inside parts/
        (PART_NAME)."""
        for name in names:
            if PART_NAME.fullmatch(name) and (self.parts / name).is_file():
                (self.parts / ASIDE[kind]).mkdir(exist_ok=True)
                os.replace(self.parts / name, self.parts / ASIDE[kind] / f"{name}.{time.time_ns()}")


def _bad_entry(line: str) -> str | None:
    """Why a manifest line is not a well-formed entry (None if it is one)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return "not JSON"
    if not isinstance(entry, dict):
        return "not an entry"
    if not isinstance(entry.get("part"), str) or not PART_NAME.fullmatch(entry["part"]):
        return "no plain part name"
    if not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("bytes"), int):
        return "no sha256 or size"
    return None


def report_damaged(scan: Scan, file=None) -> None:
    file = file or sys.stderr  # the stream of the moment (a test's capture)
    for line in scan.bad_lines:
        print(f"jaxgd: ignoring a manifest line, {line}", file=file)
    for name, why in sorted(scan.damaged.items()):
        print(f"jaxgd: part {name} cannot be used ({why}); its runs will be run again", file=file)
    if scan.unlisted:  # a deleted manifest, a part copied in: a part is trusted by its manifest line alone
        print(f"jaxgd: {len(scan.unlisted)} part file(s) in {PARTS}/ that no manifest line names are not read "
              f"({', '.join(scan.unlisted[:3])}{', ...' if len(scan.unlisted) > 3 else ''}); runs held only "
              f"there will be run again", file=file)


def run_points(plan: planning.Plan, run_ids) -> dict[str, np.ndarray]:
    """The point of each run: its seed and its value on each axis of the grid, by key. It
    is a run's stable key: its run id is its position in the grid, which changes when the
    sweep grows (more values on an axis, more seeds)."""
    runs = plan.runs.iloc[run_ids]
    columns = {"seed": "seed", **{axis: plan.spec.columns[axis] for axis in plan.spec.axes}}
    return {key: _plain(runs[column].to_numpy()) for key, column in columns.items()}


def _plain(values: np.ndarray) -> np.ndarray:
    """Strings (a swept activation) as a NumPy string array: parts are read without pickle."""
    return values.astype(str) if values.dtype == object else values


def run_index(plan: planning.Plan) -> pd.MultiIndex:
    """The plan's runs by their points (run_points), levels named by key: position = run id."""
    points = run_points(plan, slice(None))
    return pd.MultiIndex.from_arrays(list(points.values()), names=list(points))


def run_ids_at(index: pd.MultiIndex, points: dict[str, np.ndarray]) -> np.ndarray:
    """The run ids of the runs at `points` in the plan of `index` (run_index); -1 where none."""
    return index.get_indexer(pd.MultiIndex.from_arrays([points[key] for key in index.names])).astype(np.int64)


def _fits(part: Part, plan: planning.Plan) -> bool:
    """Whether a part's arrays have this sweep's shapes: its logged steps and metrics,
    one value a run of each, a point on each of its axes, the parameters save_params keeps."""
    k, steps, n_saved = len(part.run_ids), plan.logged_steps, len(plan.spec.settings["save_params"])
    return (
        k > 0
        and np.array_equal(part.steps, steps)
        and set(part.history) == set(plan.logged)
        and part.diverged_step.shape == (k,)
        and all(v.shape == (k, len(steps)) for v in part.history.values())
        and set(part.points) == {"seed", *plan.spec.axes}
        and all(v.shape == (k,) for v in part.points.values())
        and bool(part.params) == bool(n_saved) and all(v.shape[:2] == (k, n_saved) for v in part.params.values())
    )


class PartWriter:
    """Writes one process's parts and its own manifest."""

    def __init__(self, store: Store, plan: planning.Plan):
        self.store, self.plan, self.fingerprint = store, plan, fingerprint.of(plan.spec)
        self.writer = f"{HOST}-{os.getpid()}-{secrets.token_hex(3)}"
        self.manifest = store.parts / f"manifest-{self.writer}.jsonl"
        self.last = time.perf_counter()

    def __call__(self, run_ids: np.ndarray, history: dict[str, np.ndarray], diverged_step: np.ndarray,
                 params: dict[str, np.ndarray]) -> str:
        run_ids = np.asarray(run_ids, np.int64)
        points = run_points(self.plan, run_ids)
        # named by its runs' points, not their ids: a grown sweep's new runs take ids of old ones
        tag = hashlib.sha256(b"".join(k.encode() + v.tobytes() for k, v in sorted(points.items()))).hexdigest()[:10]
        name = f"r{int(run_ids[0]):09d}-n{len(run_ids)}-{tag}.npz"
        data = part_bytes(run_ids=run_ids, diverged_step=np.asarray(diverged_step, np.int64), steps=self.plan.logged_steps,
                          history=history, points=points, params=params)
        atomic_write_bytes(self.store.parts / name, data)
        now = time.perf_counter()
        entry = {
            "part": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "runs": len(run_ids), "seconds": round(now - self.last, 3), "writer": self.writer,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "fingerprint": self.fingerprint,
        }
        self.last = now
        with open(self.manifest, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return name
