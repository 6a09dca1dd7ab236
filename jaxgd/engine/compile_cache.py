"""JAX's persistent compilation cache, on by default: a second run of the same sweep
(or any sweep with the same shapes) loads its programs from disk instead of compiling
them. The directory is `$JAXGD_COMPILE_CACHE`, else `$XDG_CACHE_HOME/jaxgd/xla`
(`~/.cache/jaxgd/xla`); `off` (or `0`, `false`, `none`) switches it off. A cache
directory you set for JAX yourself (`JAX_COMPILATION_CACHE_DIR`,
`jax.config.update("jax_compilation_cache_dir", ...)`) is used as it is."""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache as _cc

from jaxgd.folders import cannot_write

ENV = "JAXGD_COMPILE_CACHE"
OFF = ("off", "0", "false", "no", "none", "")
OPTION = "--compile-cache (compile_cache_dir=)"  # where a user sets the directory: the command, the API
_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_state = {"hits": 0, "listening": False, "ours": None}


def default_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxgd" / "xla"


def _count(event: str, **kwargs) -> None:
    if event == _HIT_EVENT:
        _state["hits"] += 1


def hits() -> int:
    """Programs loaded from the persistent cache so far in this process."""
    return _state["hits"]


def directory() -> str | None:
    """The cache directory in use, or None when the cache is off."""
    if not jax.config.jax_enable_compilation_cache:
        return None
    return jax.config.jax_compilation_cache_dir


def configure(setting: str | os.PathLike | None = None) -> str | None:
    """Switch the cache on at `setting` (a directory), off (`"off"`), or, with None,
    as `$JAXGD_COMPILE_CACHE` says, else keep a directory the user gave JAX, else use
    the default directory. Returns the directory in use, or None."""
    if not _state["listening"]:
        jax.monitoring.register_event_listener(_count)
        _state["listening"] = True
    source = f"{OPTION}: got"  # the words before the directory in an error
    if setting is None:
        setting, source = os.environ.get(ENV), f"${ENV}: got"
    if setting is None:
        current = jax.config.jax_compilation_cache_dir
        if current and current != _state["ours"]:
            return directory()  # the user's own JAX cache
        setting, source = default_directory(), f"{OPTION} not given: the default"
    if str(setting).strip().lower() in OFF:
        wanted, enabled = jax.config.jax_compilation_cache_dir, False
    else:
        wanted, enabled = _writable_folder(Path(setting).expanduser(), source), True
        _state["ours"] = wanted
    if (wanted, enabled) != (jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache):
        jax.config.update("jax_compilation_cache_dir", wanted)
        jax.config.update("jax_enable_compilation_cache", enabled)
        _cc.reset_cache()  # the cache reads its settings once; make it read them again
    if enabled:
        # Our programs compile in about a second on the host: cache them all.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return directory()


def _writable_folder(folder: Path, source: str) -> str:
    """`folder`, created if missing, or a ValueError saying where it was set (`source`):
    JAX would skip a cache it cannot write program by program, with a warning each."""
    if reason := cannot_write(folder, make=True):
        raise ValueError(f"{source} {folder}; it cannot hold the compile cache ({reason}); "
                         f"give a writable folder, or off for none")
    return str(folder)
