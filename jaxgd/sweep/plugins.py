"""User components from the files a spec names (`plugins = ["pieces.py"]`): each is
imported once per process, before the spec is validated, so its activations, data sets,
losses, metrics, schedules and constraints, and their settings, are known to validation
like built-in ones. A plugin that fails is refused with its path and the problem, and
registers nothing."""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import sys
from functools import partial
from pathlib import Path

from jaxgd.errors import SpecError
from jaxgd.science import registry

_LOADED: dict[str, str] = {}  # plugin -> the module it was loaded as


def _is_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def resolve(entry, base: Path | None) -> str:
    """A plugin entry as it is saved: an absolute path for a file (relative paths start
    at the spec's folder), the module name for a module."""
    if not isinstance(entry, str) or not entry:
        raise SpecError(f"plugins: got {entry!r}; expected a path to a .py file or an importable module name")
    if not _is_path(entry):
        return entry
    path = Path(entry).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return str(path.resolve())


def _import(plugin: str):
    if not _is_path(plugin):
        return importlib.import_module(plugin)
    path = Path(plugin)
    if not path.is_file():
        raise SpecError(f"plugins: {plugin} " + ("is not a file" if path.exists() else "not found"))
    name = f"jaxgd_plugin_{path.stem}_{hashlib.sha256(plugin.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:  # Python imports only .py files (and compiled modules)
        raise SpecError(f"plugins: {plugin} is not a Python file; expected a .py file or an importable module name")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load(entries, base: Path | None = None) -> tuple[str, ...]:
    """Import the plugins `entries` (once per process) and return them resolved."""
    if not isinstance(entries, list):
        raise SpecError(f"plugins: got {entries!r}; expected a list of .py files or module names")
    resolved = tuple(resolve(entry, base) for entry in entries)
    for plugin in resolved:
        if plugin in _LOADED:
            continue
        before = copy.copy({kind: dict(components) for kind, components in registry.REGISTRY.items()})
        try:
            module = _import(plugin)
        except SpecError as err:
            _restore(before)
            raise SpecError(str(err) if str(err).startswith("plugins:") else f"plugins: {plugin}: {err}") from None
        except Exception as err:  # noqa: BLE001 - any failure of a user's file is reported as such
            _restore(before)
            raise SpecError(f"plugins: {plugin} failed to load: {type(err).__name__}: {err}") from None
        _LOADED[plugin] = module.__name__
    return resolved


def origins(plugin_names) -> set[str]:
    """The files the loaded plugins `plugin_names` were read from (what Component.origin names)."""
    return {str(Path(sys.modules[_LOADED[p]].__file__).resolve()) for p in plugin_names if p in _LOADED}


def visible(component: registry.Component, plugin_names) -> bool:
    """Whether a spec whose plugins are `plugin_names` may use `component`: a built-in, or
    one its own plugins register (not one that another spec's plugin left in this process,
    which a fresh process resuming the sweep would not know)."""
    return component.builtin or component.origin in origins(plugin_names)


def _restore(registered: dict) -> None:
    """Forget what a failed plugin registered."""
    for kind, components in registered.items():
        registry.REGISTRY[kind].clear()
        registry.REGISTRY[kind].update(components)


def check_shapes(settings: dict) -> None:
    """Trace (not compile) the user components the settings choose on small abstract
    inputs, and refuse one whose output has the wrong shape, naming its plugin. (Metrics,
    which need a whole run, are traced by `jaxgd.engine.dispatch.trace_user_metrics`.)"""
    import jax
    import jax.numpy as jnp

    from jaxgd.science import rng
    from jaxgd.science.data import samplers

    values = lambda key: settings[key] if isinstance(settings[key], list) else [settings[key]]
    chosen = lambda kind, key: [registry.get(kind, name) for name in values(key) if name in registry.names(kind)]
    # the first value of every setting, bound the way a run binds them
    bound = partial(registry.bind, value_of=lambda key: values(key)[0])

    def refuse(component, what, got, expected):
        raise SpecError(f"plugins: {component.origin}: {component.kind} '{component.name}' returned {what} of shape "
                        f"{tuple(got)}; expected {tuple(expected)}")

    n, d, m = 5, values("data.d")[0], 3
    z = jax.ShapeDtypeStruct((n, m), jnp.float32)
    for activation in chosen("activation", "model.activation"):
        if not activation.builtin and (shape := jax.eval_shape(bound(activation), z).shape) != z.shape:
            refuse(activation, "an array", shape, z.shape)
    f = jax.ShapeDtypeStruct((n,), jnp.float32)
    for loss in chosen("loss", "loss.name"):
        if not loss.builtin and (shape := jax.eval_shape(bound(loss), f, f).shape) != ():
            refuse(loss, "an array", shape, ())
    for dataset in chosen("dataset", "data.name"):
        if dataset.builtin:
            continue
        teacher = dataset.declared("teacher")
        sample_n, draw_teacher = samplers(bound(dataset), teacher and bound(dataset, fn=teacher), d)

        def sample(key):
            build = lambda draws: sample_n(draws, n, draw_teacher(draws) if draw_teacher else None)
            return rng.draw(key, build, jnp.float32)

        X, y = jax.eval_shape(sample, jax.random.key(0))
        if X.shape != (n, d):
            refuse(dataset, "X", X.shape, (n, d))
        if y.shape != (n,):
            refuse(dataset, "y", y.shape, (n,))
