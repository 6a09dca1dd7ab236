"""Components: every activation, data set, loss, metric, step-size schedule and
constraint is one registered function, built-in or a user's, registered the same way:

    @jaxgd.activation("swish", lipschitz=1.1)
    def swish(z, *, beta: float = 1.0):
        '''z sigmoid(beta z).
        beta: slope of the gate'''
        return z * jax.nn.sigmoid(beta * z)

Its keyword-only arguments with defaults are its settings, kept in the spec table of
its kind (`[model] beta = 2.0`): a `float` is traced (vmapped, sweepable within one
compiled program), an `int`, `str`, `bool` or `Literal[...]` is static (one program per
value). A docstring line `name: text` documents a setting. What the cross-setting rules
need to know (a Lipschitz constant, whether labels are +-1, ...) is declared at
registration. The settings table, validation, `jaxgd settings` and the README's table
are generated from this registry.

This module imports no JAX: reading a settings table is cheap.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal

from jaxgd.errors import SpecError


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: its dotted key, type (float: traced; int, str, bool: static; tuple: a
    list of step numbers), default, meaning and allowed values."""

    key: str
    type: type
    default: Any
    doc: str
    choices: tuple = ()
    minimum: float | None = None
    positive: bool = False  # strictly greater than zero
    sweepable: bool = True
    names_a: str | None = None  # the kind of component this setting names (its choices are that kind's names)

    @property
    def traced(self) -> bool:
        return self.type is float

    @property
    def leaf(self) -> str:
        return self.key.rpartition(".")[2]


@dataclasses.dataclass(frozen=True)
class Kind:
    """A kind of component: the spec table its settings live in, the setting of that
    table that chooses one (None: the spec's `metrics` list chooses several), and the
    properties its registration may declare, with their defaults."""

    table: str
    selector: str | None
    properties: dict


KINDS = {
    "activation": Kind("model", "activation", {
        "lipschitz": None,  # sup |act'|: a number, or a function of the activation's settings; None: not Lipschitz
        "homogeneity": 1,  # k with act(t z) = t^k act(z) for t > 0 (1 where only asymptotically so)
    }),
    "constraint": Kind("model", "constraint", {}),
    "dataset": Kind("data", "name", {
        "teacher": None,  # (draws or key, d, *settings) -> the teacher, drawn once per run and shared by its samples
        "teacher_direction": False,  # the teacher is one direction w* (d,)
        "labels_pm1": False,  # labels are +-1 already
        "requires": None,  # (d, **settings) -> a message where the data set cannot be drawn, else None
    }),
    "loss": Kind("loss", "name", {
        "labels_pm1": False,  # needs +-1 labels (data.labels = "sign")
    }),
    "schedule": Kind("optimizer", "schedule", {}),
    "metric": Kind("measure", None, {
        "labels_pm1": False,  # needs +-1 labels
        "teacher_direction": False,  # needs a data set whose teacher is one direction w*
        "one_dimensional": False,  # needs data.d = 1
        "fresh_samples": False,  # draws fresh samples from a generated data set
        "tracks": None,  # what the training loop must track for it: "hessian" (eigenvalues) or "increases"
        "at_ntk_steps": False,  # costly: computed only at the logged steps measure.ntk_steps
        "requires": None,  # (cfg) -> a message where the run's settings do not allow it, else None
    }),
}

# The first argument of a data set: a JAX key, or a stream of standard Gaussians
# (`jaxgd.science.rng.Draws`, whose one draw per run compiles faster).
RANDOMNESS = ("key", "draws")


@dataclasses.dataclass(frozen=True)
class Component:
    kind: str
    name: str
    fn: Callable
    settings: tuple[Setting, ...]
    properties: dict
    origin: str  # the file that registered it

    @property
    def builtin(self) -> bool:
        """Registered by jaxgd itself (built-ins are trusted; users' components are checked)."""
        return Path(__file__).resolve().parents[1] in Path(self.origin).parents

    def declared(self, name: str) -> Any:
        return self.properties.get(name, KINDS[self.kind].properties[name])

    @property
    def doc(self) -> str:
        """The docstring's first paragraph, up to the settings' own lines."""
        leaves, lines = {s.leaf for s in self.settings}, []
        for line in (inspect.getdoc(self.fn) or "").splitlines():
            if not line.strip() or ((match := SETTING_DOC.match(line)) and match[1] in leaves):
                break
            lines.append(line.strip())
        return " ".join(lines)


REGISTRY: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
# Registrations made in this process: a program kept for a name's component is stale once
# the name is registered again (a plugin module reloaded), so kept programs are keyed by it.
registrations = 0
SUPPORTED = (float, int, str, bool)


# A setting's doc: a docstring line `name: text`.
SETTING_DOC = re.compile(r"\s*(\w+)\s*:\s*(.+)")


def _docs(*fns) -> dict[str, str]:
    """Setting docs from docstring lines `name: text`."""
    docs = {}
    for fn in fns:
        for line in (inspect.getdoc(fn) or "").splitlines():
            match = SETTING_DOC.match(line)
            if match:
                docs.setdefault(match[1], match[2].strip())
    return docs


def settings_of(kind: str, name: str, fns, *, minimum=None, positive=(), names=None) -> tuple[Setting, ...]:
    """The settings declared by the keyword-only arguments of `fns` (the component and its
    helpers, e.g. a data set's teacher)."""
    table, docs, found = KINDS[kind].table, _docs(*fns), {}
    where = f"{kind} {name!r}"
    for fn in fns:
        hints = typing.get_type_hints(fn)
        for param in inspect.signature(fn).parameters.values():
            if param.kind is not param.KEYWORD_ONLY:
                continue
            label = f"{where}: setting {param.name!r}"
            if param.name not in hints:
                raise SpecError(f"{label} has no type; annotate it float (traced), int, str or bool (static)")
            if param.default is param.empty:
                raise SpecError(f"{label} has no default; every setting needs one")
            annotation, choices = hints[param.name], ()
            if typing.get_origin(annotation) is Literal:
                choices, annotation = typing.get_args(annotation), str
            if annotation not in SUPPORTED:
                raise SpecError(f"{label} has type {annotation!r}; expected float, int, str, bool or Literal[...]")
            setting = Setting(
                key=f"{table}.{param.name}", type=annotation, default=param.default, doc=docs.get(param.name, ""),
                choices=tuple(choices), minimum=(minimum or {}).get(param.name), positive=param.name in positive,
                names_a=(names or {}).get(param.name),
            )
            found.setdefault(param.name, setting)
    return tuple(found.values())


def _origin(fn) -> str:
    try:
        return str(Path(inspect.getfile(fn)).resolve())
    except TypeError:
        return "<unknown>"


def register(kind: str, name: str, fn: Callable, *, minimum=None, positive=(), names=None, **properties) -> Callable:
    """Register `fn` as the component `name` of `kind`. `minimum` ({setting: bound}),
    `positive` (settings > 0) and `names` ({setting: kind}: a setting naming a component
    of that kind, passed to `fn` as that component) refine its settings; `properties`
    are those of KINDS[kind]."""
    unknown = set(properties) - set(KINDS[kind].properties)
    if unknown:
        raise SpecError(f"{kind} {name!r}: unknown properties {sorted(unknown)}; "
                        f"allowed: {', '.join(KINDS[kind].properties) or 'none'}")
    helpers = [properties["teacher"]] if properties.get("teacher") else []
    settings = settings_of(kind, name, [fn, *helpers], minimum=minimum, positive=positive, names=names)
    component = Component(kind, name, fn, settings, properties, _origin(fn))
    existing = REGISTRY[kind].get(name)
    if existing is not None and (existing.origin, existing.fn.__qualname__) != (component.origin, fn.__qualname__):
        raise SpecError(f"{kind} {name!r} from {component.origin} clashes with the {kind} {name!r} "
                        f"registered by {existing.origin}; choose another name")
    global registrations
    REGISTRY[kind][name] = component
    registrations += 1
    return fn


def _decorator(kind: str):
    def decorate(name: str, **options):
        return lambda fn: register(kind, name, fn, **options)

    decorate.__name__ = kind
    decorate.__doc__ = f"Register a function as the {kind} `name` (see jaxgd.science.registry)."
    return decorate


activation = _decorator("activation")
constraint = _decorator("constraint")
dataset = _decorator("dataset")
loss = _decorator("loss")
schedule = _decorator("schedule")
metric = _decorator("metric")


def names(kind: str) -> tuple[str, ...]:
    return tuple(REGISTRY[kind])


def get(kind: str, name: str) -> Component:
    return REGISTRY[kind][name]


def bound_settings(component: Component, *, value_of: Callable[[str], Any], fn: Callable | None = None) -> dict[str, Any]:
    """The values (`value_of(key)`) of the settings `fn` (default: the component's function)
    declares; a setting naming a component is passed as that component, bound."""
    declared = {p.name for p in inspect.signature(fn or component.fn).parameters.values() if p.kind is p.KEYWORD_ONLY}
    return {
        s.leaf: bind(get(s.names_a, value_of(s.key)), value_of=value_of) if s.names_a else value_of(s.key)
        for s in component.settings if s.leaf in declared
    }


def bind(component: Component, *, value_of: Callable[[str], Any], fn: Callable | None = None) -> Callable:
    """`fn` (default: the component's function) with its settings bound to `value_of(key)`."""
    return partial(fn or component.fn, **bound_settings(component, value_of=value_of, fn=fn))


def owners(key: str) -> list[Component]:
    """The components that declare the setting `key`."""
    return [c for components in REGISTRY.values() for c in components.values() if any(s.key == key for s in c.settings)]


def component_settings() -> dict[str, Setting]:
    """Every component's settings by key, in registration order; components of one table
    that declare the same setting share it (it must then agree)."""
    merged: dict[str, Setting] = {}
    for kind, components in REGISTRY.items():
        for component in components.values():
            for setting in component.settings:
                first = merged.setdefault(setting.key, setting)
                if (first.type, first.default, first.choices) != (setting.type, setting.default, setting.choices):
                    owner = owners(setting.key)[0]
                    raise SpecError(
                        f"{kind} {component.name!r} ({component.origin}): setting {setting.key} "
                        f"({setting.type.__name__} = {setting.default!r}) clashes with the same setting of "
                        f"{owner.kind} {owner.name!r} ({owner.origin}) ({first.type.__name__} = {first.default!r}); rename it")
    return merged
