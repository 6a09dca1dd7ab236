"""Provenance: a fingerprint of everything a sweep's values depend on, recorded with each
part, so that a folder never mixes runs computed from different inputs.

    settings  the resolved spec, less what may change between attempts (specs.FREE_KEYS)
              and the data's paths and arrays (the data hash stands for them)
    code      the jaxgd version and the source of the code that computes runs
              (jaxgd/science, jaxgd/sweep, jaxgd/engine)
    plugins   the source of the spec's plugin files and modules
    data      the content of the given data (file or inline arrays)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path

import jaxgd
from jaxgd.sweep import spec as specs

# What computes a run's values: the science, the plan that binds settings, the engine.
CODE_FOLDERS = ("science", "sweep", "engine")
NOT_SETTINGS = ("data.path", "data.test_path", *(f"data.{k}" for k in specs.given.ARRAY_NAMES))

# How each part of the fingerprint is named when it differs.
WHAT_CHANGED = {
    "code": "the code that computes runs changed since these parts were written (jaxgd {old} there, {new} here)",
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
    """The settings a part's values depend on, flat by dotted key (JSON values)."""
    flat = {k: v for k, v in spec.settings.items() if k not in specs.FREE_KEYS and k not in NOT_SETTINGS}
    flat.update(seeds=list(spec.seeds), metrics=list(spec.metrics))
    return json.loads(json.dumps(flat, default=list))


def of(spec: specs.Spec) -> dict:
    """The fingerprint of a sweep: a short hash for each of settings, code, plugins, data."""
    return {
        "settings": _sha(json.dumps(settings_of(spec), sort_keys=True).encode()),
        "code": code_hash(),
        "jaxgd": jaxgd.__version__,
        "plugins": _sha(b"\0".join(_plugin_source(p) for p in spec.plugins)),
        "data": spec.given.digest[:16] if spec.given is not None else "",
    }


def differences(old: dict, new: dict, old_settings: dict | None, new_settings: dict) -> list[str]:
    """What differs between the fingerprint `old` of some parts and `new` of this sweep:
    settings by key (where the settings of `old` are known), then code, plugins, data."""
    found = []
    if old.get("settings") != new["settings"]:
        if old_settings is None:
            found.append("their settings (not recorded) differ from this sweep's")
        for key in sorted(set(old_settings or {}) | set(new_settings)):
            a, b = (old_settings or {}).get(key), new_settings.get(key)
            if old_settings is not None and a != b:
                found.append(f"{key}: {a!r} there, {b!r} here")
    for part, why in WHAT_CHANGED.items():
        if old.get(part) != new[part]:
            found.append(why.format(old=old.get("jaxgd", "?"), new=new["jaxgd"]))
    return found
