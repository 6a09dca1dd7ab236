"""jaxgd: thousands of gradient-descent runs of two-layer networks at once, as tidy tables
and phase diagrams.

Importing jaxgd is cheap: each public name (and each submodule, `jaxgd.engine`) is
imported from its module on first use, so `jaxgd --help` answers without starting JAX."""

import importlib

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

# public name -> (module, name there)
_EXPORTS = {
    "run": ("jaxgd.front.api", "run"),
    "resume": ("jaxgd.front.api", "resume"),
    "collect": ("jaxgd.front.api", "collect"),
    "materialize": ("jaxgd.front.api", "materialize"),
    "edge": ("jaxgd.front.edge", "edge"),
    "phase_diagram": ("jaxgd.front.plot", "phase_diagram"),
    "curves": ("jaxgd.front.plot", "curves"),
    "lines": ("jaxgd.front.plot", "lines"),
    "Results": ("jaxgd.storage.results", "Results"),
    "SpecError": ("jaxgd.errors", "SpecError"),
    "FigureSkipped": ("jaxgd.errors", "FigureSkipped"),
    "load_spec": ("jaxgd.sweep.spec", "load"),
    "use_all_cores": ("jaxgd.engine.host", "use_all_cores"),
    # registration of a user's components (see jaxgd.science.registry)
    **{kind: ("jaxgd.science.registry", kind) for kind in ("activation", "constraint", "dataset", "loss", "metric", "schedule")},
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attribute)
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":  # the submodule exists but needs a missing package
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value  # found once, then a plain attribute
    return value


def __dir__():
    return sorted([*globals(), *__all__])
