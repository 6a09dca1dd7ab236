"""Provenance: a fingerprint of everything a sweep's values depend on, recorded with each
part, so that a folder never mixes runs computed from different inputs.

    settings  the resolved spec, less what may change between attempts (specs.FREE_KEYS)
              and the data's paths and arrays (the data hash stands for them); parts of
              a sweep that this one grows (`grown`: more values on axes, more seeds)
              differ only in their lists, and count
    code      the jaxgd version and the source of the code that computes runs
              (jaxgd/science, jaxgd/sweep, jaxgd/engine)
    plugins   the source of the spec's plugin files and modules
    data      the content of the given data (file or inline arrays)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
from pathlib import Path

import jaxgd
from jaxgd.sweep import plan as planning
from jaxgd.sweep import spec as specs

# What computes a run's values: the science, the plan that binds settings, the engine.
CODE_FOLDERS = ("science", "sweep", "engine")
NOT_SETTINGS = ("data.path", "data.test_path", *(f"data.{k}" for k in specs.given.ARRAY_NAMES))

# How each part of the fingerprint is named when it differs.
WHAT_CHANGED = {
    "code": "the code that computes runs changed since these parts were written ({versions})",
    "plugins": "a plugin file changed since these parts were written",
    "data": "the data file (or inline arrays) changed since these parts were written",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@functools.cache
def code_hash() -> str:
    """The jaxgd version and the source of every module that computes runs."""
    root = Path(jaxgd.__file__).parent
    digest = hashlib.sha256(jaxgd.__version__.encode())
    for folder in CODE_FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _plugin_source(name: str) -> bytes:
    path = Path(name)
    if path.is_file():
        return path.read_bytes()
    found = importlib.util.find_spec(name)
    origin = found.origin if found else None
    return Path(origin).read_bytes() if origin and Path(origin).is_file() else name.encode()


def settings_of(spec: specs.Spec) -> dict:
    """The settings a part's values depend on, flat by dotted key (JSON values): the
    vars by `vars.<name>`, and the zip groups, derived settings and design where given."""
    flat = {k: v for k, v in spec.settings.items() if k not in specs.FREE_KEYS and k not in NOT_SETTINGS}
    flat.update(seeds=list(spec.seeds), metrics=list(spec.metrics))
    flat.update({specs.VAR_PREFIX + name: values for name, values in spec.vars.items()})
    shape = {"zip": spec.zip, "derived": {d.key: d.text for d in spec.derived},
             "design": spec.design and dataclasses.asdict(spec.design)}
    flat.update({k: v for k, v in shape.items() if v})
    return json.loads(json.dumps(flat, default=list))


def growable(spec: specs.Spec) -> list[tuple[str, ...]]:
    """The keys in which a finished sweep may gain values to become `spec`, each group
    gaining them together: the seeds, each zip group (a row of its lists at a time) and
    every other axis of the grid, but not the axes a random design samples (more samples
    are other points, not more of them)."""
    sampled = planning.sampled_axes(spec)
    return [("seeds",), *(group for group in planning.axis_groups(spec) if group != sampled)]


def grown(old: dict, new: dict, groups: list[tuple[str, ...]]) -> set[str]:
    """The keys of `groups` (`growable`) in which the flat settings `new` hold every value
    of `old` (every row, for a zip group), in any order: the keys in which `new` grows `old`."""
    keys = set()
    for group in groups:
        before, after = [old.get(k) for k in group], [new.get(k) for k in group]
        if all(isinstance(v, list) for v in before + after) and set(zip(*before)) <= set(zip(*after)):
            keys.update(group)
    return keys


def of(spec: specs.Spec) -> dict:
    """The fingerprint of a sweep: a short hash for each of settings, code, plugins, data."""
    return {
        "settings": _sha(json.dumps(settings_of(spec), sort_keys=True).encode()),
        "code": code_hash(),
        "jaxgd": jaxgd.__version__,
        "plugins": _sha(b"\0".join(_plugin_source(p) for p in spec.plugins)),
        "data": spec.given.digest[:16] if spec.given is not None else "",
    }


def differences(old: dict, new: dict, old_settings: dict | None, new_settings: dict,
                groups: list[tuple[str, ...]]) -> list[str]:
    """What differs between the fingerprint `old` of some parts and `new` of this sweep:
    settings by key (where the settings of `old` are known) other than the keys in which
    this sweep grows theirs (`grown` in `groups`), then code, plugins, data. An empty
    list: the parts hold runs of this sweep."""
    found = []
    if old.get("settings") != new["settings"]:
        growing = grown(old_settings or {}, new_settings, groups)
        if old_settings is None:
            found.append("their settings (not recorded) differ from this sweep's")
        for key in sorted(set(old_settings or {}) | set(new_settings)):
            a, b = (old_settings or {}).get(key), new_settings.get(key)
            if old_settings is not None and a != b and key not in growing:
                found.append(f"{key}: {a!r} there, {b!r} here")
    # the version alone may not have changed: source edited, or installed from another commit
    versions = (f"jaxgd {old.get('jaxgd', '?')} there, {new['jaxgd']} here" if old.get("jaxgd") != new["jaxgd"]
                else f"the same version, jaxgd {new['jaxgd']}, with other source")
    for part, why in WHAT_CHANGED.items():
        if old.get(part) != new[part]:
            found.append(why.format(versions=versions))
    return found
