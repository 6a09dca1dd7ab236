"""Durable results: the `--out` folder of a sweep, written chunk by chunk.

    DIR/spec.toml                      the resolved spec, written before the first chunk
    DIR/parts/r000000512-<hash>.npz    one finished chunk: run_ids, diverged_step, metrics
    DIR/parts/manifest-<writer>.jsonl  one line per finished part: name, sha256, size, runs
    DIR/history.parquet, summary.parquet, stats.json, figures: assembled at the end

Every file is written to a temporary name, flushed to disk and renamed, so a crash
leaves either the whole file or none. A part counts only once its manifest line is
written and its bytes still match the sha256 recorded there; anything else (a crash
between the two, a truncated or damaged file) is ignored and its runs are run again.
Each process writes its own manifest, so processes and Slurm tasks never write to the
same file. A part names its runs itself, so a resumed sweep may be cut into chunks
differently from the first attempt (halved chunks, another chunk size).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tomli_w

from jaxgd.errors import IncompleteError
from jaxgd.sweep import spec as specs
from jaxgd.engine.outputs import Outputs
from jaxgd.sweep.plan import Plan

PARTS, SPEC_FILE = "parts", "spec.toml"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file of its own (several processes may
    write the same name), flushed to disk before it is renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and key != "plot":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def spec_differences(old: specs.Spec, new: specs.Spec) -> list[str]:
    """'key: old -> new' for every setting that changes the sweep's values."""
    a, b = _flat(old.to_dict()), _flat(new.to_dict())
    lines = []
    for key in sorted(set(a) | set(b)):
        if key in specs.FREE_KEYS or a.get(key) == b.get(key):
            continue
        show = lambda v: "(unset)" if v is None else (repr(v) if len(repr(v)) < 60 else repr(v)[:57] + "...")
        lines.append(f"{key}: {show(a.get(key))} there, {show(b.get(key))} here")
    return lines


@dataclasses.dataclass
class Part:
    """One saved chunk: its runs, their divergence steps and metrics (run, logged step)."""

    name: str
    run_ids: np.ndarray
    diverged_step: np.ndarray
    history: dict[str, np.ndarray]
    steps: np.ndarray  # the logged steps


@dataclasses.dataclass
class Scan:
    """What a folder holds: its valid parts, the runs they cover, the damaged parts."""

    parts: list[Part]
    finished: np.ndarray  # bool over run_ids
    damaged: dict[str, str]  # part name -> why

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
            raise specs.SpecError(
                f"{self.out} holds a spec this version of jaxgd cannot read ({err}); "
                f"use another --out, or delete {self.out} to start over"
            ) from None

    @classmethod
    def open(cls, out, spec: specs.Spec) -> "Store":
        """The folder for `spec`: created, or checked to hold the same sweep. Raises
        SpecError if it holds another one (a change to any setting that changes values;
        the name, plots, chunking and memory budget may change)."""
        store = cls(out)
        old = store.saved_spec()
        if old is not None:
            diff = spec_differences(old, spec)
            if diff:
                raise specs.SpecError(
                    f"{store.out} already holds results of a different sweep ("
                    + "; ".join(diff)
                    + f"). Refusing to mix them: use another --out, or delete {store.out} to start over"
                )
        store.make_writable()
        if old is None or old.to_dict() != spec.to_dict():
            atomic_write_bytes(store.out / SPEC_FILE, tomli_w.dumps(spec.to_dict()).encode())
        return store

    # -- writing --------------------------------------------------------------------
    def make_writable(self) -> None:
        """Create the folder and its parts/, and check that files can be written there,
        before any run starts, with an error that says what to change."""
        if self.out.exists() and not self.out.is_dir():
            raise NotADirectoryError(f"{self.out} is a file, not a folder; give --out (out=) a new or existing folder")
        try:
            self.parts.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=self.parts).close()
        except OSError as err:
            raise PermissionError(f"cannot write results into {self.out} ({err.strerror or err}); "
                                  "give --out (out=) a folder you can write to") from err

    def writer(self, plan: Plan) -> "PartWriter":
        """A callable `(run_ids, history, diverged_step)` that saves one finished chunk."""
        return PartWriter(self, plan.logged_steps)

    # -- reading --------------------------------------------------------------------
    def manifest(self) -> dict[str, list[dict]]:
        """Part name -> its manifest entries (a part written twice has two)."""
        entries: dict[str, list[dict]] = {}
        for path in sorted(self.parts.glob("manifest-*.jsonl")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    entries.setdefault(entry["part"], []).append(entry)
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash
        return entries

    def scan(self, plan: Plan) -> Scan:
        """Every recorded part, checked against its manifest entry and the plan."""
        steps = plan.logged_steps
        metrics = set(plan.logged)
        parts, damaged = [], {}
        finished = np.zeros(plan.n_runs, bool)
        for name, entries in sorted(self.manifest().items()):
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
                part = _read_part(name, data)
                k = len(part.run_ids)
                ok = (
                    np.array_equal(part.steps, steps)
                    and set(part.history) == metrics
                    and part.diverged_step.shape == (k,)
                    and all(v.shape == (k, len(steps)) for v in part.history.values())
                    and k > 0 and part.run_ids.min() >= 0 and part.run_ids.max() < plan.n_runs
                )
            except Exception as err:  # noqa: BLE001 - any unreadable part is redone
                damaged[name] = f"unreadable: {type(err).__name__}"
                continue
            if not ok:
                damaged[name] = "its steps, metrics or runs do not fit this sweep"
                continue
            parts.append(part)
            finished[part.run_ids] = True
        return Scan(parts=parts, finished=finished, damaged=damaged)

    def assemble(self, plan: Plan, scan: Scan | None = None, *, missing_ok: bool = False) -> Outputs:
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
        for part in scan.parts:  # a run in two parts (a chunk redone) has the same values in both
            for name, values in part.history.items():
                history[name][part.run_ids] = values
            diverged_step[part.run_ids] = part.diverged_step
        stats = {"runs": plan.n_runs, "steps": plan.spec.settings["steps"], "groups": len(plan.groups),
                 "parts": len(scan.parts)}
        return Outputs(steps=steps, history=history, diverged_step=diverged_step, stats=stats)

    def tidy(self, scan: Scan) -> None:
        """Once every run is in: move damaged parts aside (to parts/damaged/) and remove
        temporary files left by crashes. Only when no other process is writing."""
        if scan.damaged:
            (self.parts / "damaged").mkdir(exist_ok=True)
            for name in scan.damaged:
                if (self.parts / name).is_file():
                    os.replace(self.parts / name, self.parts / "damaged" / f"{name}.{time.time_ns()}")
        for tmp in self.parts.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def report_damaged(scan: Scan, file=sys.stderr) -> None:
    for name, why in sorted(scan.damaged.items()):
        print(f"jaxgd: part {name} is damaged, {why}; its runs will be run again", file=file)


def _read_part(name: str, data: bytes) -> Part:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return Part(
            name=name,
            run_ids=z["run_ids"].astype(np.int64),
            diverged_step=z["diverged_step"].astype(np.int64),
            history={k[len("metric:"):]: z[k] for k in z.files if k.startswith("metric:")},
            steps=z["steps"],
        )


class PartWriter:
    """Writes one process's parts and its own manifest."""

    def __init__(self, store: Store, steps: np.ndarray):
        self.store, self.steps = store, steps
        self.writer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.manifest = store.parts / f"manifest-{self.writer}.jsonl"
        self.last = time.perf_counter()

    def __call__(self, run_ids: np.ndarray, history: dict[str, np.ndarray], diverged_step: np.ndarray) -> str:
        run_ids = np.asarray(run_ids, np.int64)
        tag = hashlib.sha256(run_ids.tobytes()).hexdigest()[:10]
        name = f"r{int(run_ids[0]):09d}-n{len(run_ids)}-{tag}.npz"
        buffer = io.BytesIO()
        arrays = {f"metric:{k}": v for k, v in history.items()}
        np.savez(buffer, run_ids=run_ids, diverged_step=np.asarray(diverged_step, np.int64),
                 steps=self.steps, **arrays)
        data = buffer.getvalue()
        atomic_write_bytes(self.store.parts / name, data)
        now = time.perf_counter()
        entry = {
            "part": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "runs": len(run_ids), "seconds": round(now - self.last, 3), "writer": self.writer,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self.last = now
        with open(self.manifest, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return name
