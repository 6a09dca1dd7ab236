"""Sweep specifications: read a TOML file or dict, apply overrides, expand sweeps and
validate every setting before anything is compiled.

Settings are addressed by dotted keys (`optimizer.lr`, `model.width`). Any sweepable
setting may be a scalar, a list, or `{linspace = [a, b, k]}`, `{logspace = [a, b, k]}`
(base-10 exponents) or `{geomspace = [a, b, k]}` (end points); a list or range makes
it a swept axis. Float settings are traced (vmapped); int, str and bool settings are
static (one compiled program per combination).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import json
import math
import tomllib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from jaxgd.errors import FigureSkipped, SpecError

# Importing losses and metrics registers the built-in losses and metrics.
from jaxgd.science import data, given, losses, metrics, models, optim, registry  # noqa: F401
from jaxgd.science.registry import Setting
from jaxgd.sweep import expressions, plugins
from jaxgd.sweep.steps import FINAL, step_numbers


def _int(key, default, doc, minimum=1, sweepable=True):
    return Setting(key, int, default, doc, minimum=minimum, sweepable=sweepable)


def _float(key, default, doc, minimum=0.0, positive=False):
    return Setting(key, float, default, doc, minimum=minimum, positive=positive)


def _choice(key, default, choices, doc, sweepable=True):
    return Setting(key, str, default, doc, choices=tuple(choices), sweepable=sweepable)


def _bool(key, default, doc):
    return Setting(key, bool, default, doc)


def _steps_list(key, doc):
    """A list of step numbers (not a sweep); "final" stands for the last step."""
    return Setting(key, tuple, (), doc, minimum=0, sweepable=False)


def _path(key, doc):
    return Setting(key, str, "", doc, sweepable=False)


def _chooses(key, kind, default, doc):
    """The setting that chooses a component of `kind`: its choices are that kind's names."""
    return Setting(key, str, default, doc, names_a=kind)


# The settings of the sweep itself; the components' own settings are added from the
# registry (`schema()`), each table's after its own.
FRAMEWORK: tuple[Setting, ...] = (
    Setting("name", str, "sweep", "name of the sweep", sweepable=False),
    _int("steps", 1000, "gradient steps per run (at most 2^31 - 1: the loop counts steps in int32)", sweepable=False),
    _int("log_every", 10, "steps between logged metrics (1 <= log_every <= steps)", sweepable=False),
    _choice("dtype", "float32", ("float32", "float64"), "floating-point type", sweepable=False),
    _int("init_seed", -1, "seed of every run's start, its teacher, data set and initial parameters (-1: the run's own seed). Set, the runs of a sweep's seeds start alike and differ only in their batches (SGD noise) and Monte Carlo samples, as paper 5's authors measure escape times: one initial condition, many SGD runs", minimum=-1),
    _chooses("data.name", "dataset", "linear_teacher", "data set (see Components), or given arrays: `file` (data.path) or `inline` (arrays in the spec)"),
    _int("data.n", 256, "training samples"),
    _int("data.n_test", 256, "test samples"),
    _int("data.d", 8, "input dimension"),
    _float("data.noise", 0.0, "label-noise standard deviation"),
    _choice("data.labels", "real", data.LABELS, "`real` targets or their `sign` (+-1) for classification"),
    _path("data.path", "`file`: an `.npz` (X_train, y_train, X_test, y_test) or a training CSV (last column the label); relative to the spec file"),
    _path("data.test_path", "`file` with a CSV: the test CSV"),
    _choice("data.header", "auto", given.HEADERS, "`file` with CSVs: whether the first row is a header (`true`, `false`, or `auto`: only a row with no number in it, said when skipped)", sweepable=False),
    _int("model.width", 128, "hidden units m"),
    _chooses("model.activation", "activation", "relu", "activation"),
    _choice("model.scaling", "ntk", models.SCALINGS, "output scale c_m: `standard` (1), `ntk` (1/sqrt(m)), `mean_field` (1/m)"),
    _bool("model.bias", False, "hidden-layer bias b"),
    _bool("model.train_W", True, "train the first layer W"),
    _bool("model.train_a", True, "train the second layer a"),
    _bool("model.train_b", True, "train the bias b (when `model.bias`)"),
    _float("model.w_scale", 1.0, "W ~ N(0, w_scale^2 / d)"),
    _choice("model.a_init", "gaussian", models.A_INITS, "a ~ a_scale N(0, 1) (`gaussian`), a_scale (+-1, balanced halves) (`pm1`) or a_scale (`constant`, e.g. 1 with `mean_field` for the 1/p committee)"),
    _float("model.a_scale", 1.0, "scale of a at initialization"),
    _float("model.b_scale", 0.0, "b ~ N(0, b_scale^2)"),
    _choice("model.input_scaling", "none", models.INPUT_SCALINGS, "pre-activation `w . x` (`none`) or `w . x / sqrt(d)` (`sqrt_d`)"),
    _chooses("model.constraint", "constraint", "none", "constraint on W, at initialization and after every step (see Components)"),
    _choice("optimizer.name", "gd", optim.BATCHES, "`gd`: full-batch gradient descent; `sgd`: mini-batch SGD; `online_sgd`: a fresh batch of `batch_size` samples from the data set's generator at every step, inside the compiled loop (no training set is read)"),
    _float("optimizer.lr", 0.1, "step size", positive=True),
    _chooses("optimizer.schedule", "schedule", "constant", "step-size schedule"),
    _float("optimizer.lr_scale_W", 1.0, "multiplier of the step size of W"),
    _float("optimizer.lr_scale_a", 1.0, "multiplier of the step size of a: kappa = lr_a / lr_W (0 freezes a)"),
    _float("optimizer.lr_scale_b", 1.0, "multiplier of the step size of b"),
    _int("optimizer.batch_size", 32, "`sgd`, `online_sgd`: samples per batch (<= `data.n` for sgd)"),
    _choice("optimizer.sampling", "replacement", optim.SAMPLINGS, "`sgd`: `replacement` (each batch drawn anew) or `epochs` (a fresh permutation each epoch, the remainder dropped)"),
    _chooses("loss.name", "loss", "mse", "training loss (see Components)"),
    _steps_list("measure.ntk_steps", "logged steps at which `ntk_min_eig` is computed (empty: every logged step; NaN at the others)"),
    Setting("measure.escape_metric", str, "", "a metric: the summary gets `escape_step`, the first logged step at which it falls below the threshold (<NA> if never), and every metric at that step, `<metric>_at_escape` (NaN if never)",
            sweepable=False, names_a="metric"),
    Setting("measure.escape_threshold", float, 0.5, "the threshold of `escape_step`", sweepable=False),
    Setting("measure.escape_relative", bool, True, "the threshold is a fraction of the metric's value at step 0", sweepable=False),
    _steps_list("summary_steps", "logged steps whose metrics get summary columns <metric>_at_<step>"),
    _steps_list("save_params", "logged steps at which every run's parameters (every layer) are kept, in the parts and the results: `Results.params(run_id, step)`, `jaxgd.materialize(..., step=t)`"),
    _float("engine.divergence_bound", 1e8, "a run whose training loss exceeds this (or is not finite) is frozen as diverged", positive=True),
    Setting("engine.stop_when", str, "", "a criterion on a logged metric (`\"train_loss < 1e-8\"`): a run meeting it at a logged step is frozen there, keeping its values, and the summary gets `stopped_step`", sweepable=False),
    _int("engine.memory_budget_mb", 0, "MiB for one chunk of runs on one device (0: half the accelerator's memory, or 8 MiB, about a CPU cache, on the host)", minimum=0, sweepable=False),
    _int("engine.chunk_size", 0, "most runs per chunk, the runs one device computes in one call (0: from the memory budget)", minimum=0, sweepable=False),
    _choice("engine.strategy", "auto", ("auto", "vmap", "map"), "how a device trains the runs of a chunk: `vmap` (batched into one program), `map` (one after another, in one call), `auto` (`map` on the host for runs over 512 KiB, else `vmap`)", sweepable=False),
    _choice("engine.precision", "highest", ("highest", "high", "default"), "matmul precision", sweepable=False),
    _choice("engine.kernel", "xla", ("xla", "fused"), "training loop: `xla` (the vmapped `lax` loop) or `fused` (one Pallas kernel per group; opt-in, limited scope, see How it runs)", sweepable=False),
)


# Settings a resumed sweep may change: its name, its plots, and how its runs are cut into
# chunks and batched (not which runs there are or what each computes; another chunk size
# or strategy may change values in the last bits, as XLA compiles them differently).
FREE_KEYS = ("name", "plot", "engine.memory_budget_mb", "engine.chunk_size", "engine.strategy")


def choices(setting: Setting) -> tuple:
    """The allowed values of a setting: its own, or the names of the components it chooses."""
    if setting.names_a is None:
        return setting.choices
    names = registry.names(setting.names_a)
    if setting.key == "data.name":
        return names + data.GIVEN
    if setting.key == "measure.escape_metric":
        return ("",) + names
    return names


_SCHEMA_CACHE: dict = {}


def schema() -> dict[str, Setting]:
    """Every setting by dotted key: the framework's, then after each table's own, the
    settings of its registered components (in registration order), choices filled in."""
    version = tuple(len(components) for components in registry.REGISTRY.values())
    if version not in _SCHEMA_CACHE:
        by_table: dict[str, list[Setting]] = {}
        for setting in registry.component_settings().values():
            clash = next((f for f in FRAMEWORK if f.key == setting.key), None)
            if clash:
                raise SpecError(f"setting {setting.key} of a registered component clashes with jaxgd's own "
                                f"setting {clash.key} ({clash.doc}); rename it")
            by_table.setdefault(setting.key.split(".")[0], []).append(setting)
        ordered, last_of_table = [], {}
        for setting in FRAMEWORK:
            last_of_table[setting.key.partition(".")[0] if "." in setting.key else ""] = len(ordered)
            ordered.append(setting)
        for table in sorted(by_table, key=lambda t: -last_of_table.get(t, len(ordered))):
            at = last_of_table.get(table, len(ordered) - 1) + 1
            ordered[at:at] = by_table[table]
        filled = [dataclasses.replace(s, choices=choices(s)) if s.names_a else s for s in ordered]
        _SCHEMA_CACHE.clear()
        _SCHEMA_CACHE[version] = {s.key: s for s in filled}
    return _SCHEMA_CACHE[version]


TABLES = ("data", "model", "optimizer", "loss", "measure", "engine", "plot")
DESIGN_KEYS = ("design", "samples", "design_seed")
# the top-level settings of FRAMEWORK, and the keys that are not settings
TOP_LEVEL = (*(s.key for s in FRAMEWORK if "." not in s.key), "seeds", "metrics", "plugins", "vars", "zip",
             *DESIGN_KEYS) + TABLES
SWEEP_FORMS = ("linspace", "logspace", "geomspace")
REDUCERS = ("median", "mean", "min", "max")
PHASE_KEYS = {"x": None, "y": None, "value": None, "reduce": "median", "select": None, "file": None, "overlay": None}
CURVE_KEYS = {"metric": None, "hue": None, "logy": True, "select": None, "x": "step", "file": None, "reference": None}
LINE_KEYS = {"x": None, "y": None, "hue": None, "reduce": "median", "logy": True, "select": None, "file": None,
             "overlay": None}
OPTIONAL_PLOT_KEYS = ("file", "hue", "select", "overlay", "reference")
PLOT_KINDS = ("phase_diagram", "curves", "lines")
DEFAULT_METRICS = ("train_loss", "test_loss")
DEFAULT_SEEDS = 1
SEEDS_ALLOWED = "a count >= 1 or a non-empty list of distinct integers in [0, 2^31)"


def _nearest(name, candidates) -> str:
    if not isinstance(name, str):  # a number or a list where a name belongs: nothing is near it
        return ""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _allowed(setting: Setting) -> str:
    if setting.choices:
        return "one of " + ", ".join(repr(c) for c in setting.choices)
    if setting.type is bool:
        return "true or false"
    if setting.type is tuple:
        return f'a list of step numbers >= 0 or "{FINAL}" (the last step)'
    if setting.type is str:
        return "a string"
    kind = "an integer" if setting.type is int else "a number"
    if setting.positive:
        return f"{kind} > 0"
    if setting.minimum is not None:
        return f"{kind} >= {setting.minimum:g}"
    return kind


def _check_scalar(key: str, value: Any) -> Any:
    """`value` converted to the setting's type, or a SpecError naming key and allowed values."""
    setting = schema()[key]
    fail = SpecError(f"{key}: got {value!r}; expected {_allowed(setting)}")
    if setting.type is bool:
        if not isinstance(value, bool):
            raise fail
        return value
    if setting.type is str:
        if isinstance(value, bool) and str(value).lower() in setting.choices:  # data.header = true
            value = str(value).lower()
        if not isinstance(value, str) or (setting.choices and value not in setting.choices):
            raise SpecError(
                f"{key}: got {value!r}; expected {_allowed(setting)}"
                + (_nearest(value, setting.choices) if isinstance(value, str) else "")
            )
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail
    if setting.type is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise fail
            value = int(value)
        if value > MAX_INT:
            raise SpecError(f"{key}: got {value:,}; expected at most 2^31 - 1 = {MAX_INT:,} (integers reach the "
                            "compiled program as int32: steps, loop counts, sizes)")
    else:
        if not expressions.is_number(value):
            raise fail
        value = float(value)
    if setting.positive and not value > 0:
        raise fail
    if setting.minimum is not None and value < setting.minimum:
        raise fail
    return value


# Integer settings reach the compiled program as int32 (the loop counts steps in it,
# engine/loop.py; a Python int passed to JAX is one): a larger one would overflow.
MAX_INT = 2**31 - 1
# Logged steps of one run: each is a row of the history of every run.
MAX_LOGS = 2**24
# Values of one axis (a range's count) and seeds of one sweep: each is a row of the plan,
# held in memory before anything runs.
MAX_VALUES = 2**24


def check_in_dtype(key: str, values, dtype, given=None) -> np.ndarray:
    """`values` of a traced setting in the run's float type, refused where it turns one
    into inf, or into 0 or a subnormal (below its smallest normal number), naming the key
    and the value (`given(value)`: how the spec gave it)."""
    dtype, given = np.dtype(dtype), given or (lambda value: f"got {value!r}")
    info = np.finfo(dtype)
    with np.errstate(over="ignore"):
        cast = np.asarray(values, np.float64).astype(dtype)
    for value, became in zip(values, cast):
        if not np.isfinite(became):
            raise SpecError(f"{key}: {given(value)}, which is inf in {dtype} (largest {info.max:.4g}); "
                            "give a smaller value (or dtype = 'float64')")
        if value != 0 and abs(became) < info.tiny:
            raise SpecError(f"{key}: {given(value)}, which is {float(became)!r} in {dtype} (below its smallest "
                            f"normal number {info.tiny:.4g}); give 0 or a larger value (or dtype = 'float64')")
    return cast


def _check_survives_dtype(settings) -> None:
    """Traced settings become the run's float type: refuse a value it turns into inf, 0 or
    a subnormal (check_in_dtype), and swept values it merges into one, naming the key and
    the values."""
    dtype = np.dtype(settings["dtype"])
    for key in settings:
        if not schema()[key].traced:
            continue
        values = _values(settings, key)
        cast = check_in_dtype(key, values, dtype)
        first = {}
        for value, became in zip(values, cast.tolist()):
            if became in first:
                raise SpecError(f"{key}: {first[became]!r} and {value!r} are the same number in {dtype} ({became!r}), "
                                "so they would give identical runs; give values that differ in it (or dtype = 'float64')")
            first[became] = value


def _expanded(key: str, raw: Any) -> Any:
    """A range table (`{logspace = [a, b, k]}`) expanded to its list of values; anything
    else as it is."""
    if not isinstance(raw, dict):
        return raw
    forms = [f for f in raw if f in SWEEP_FORMS]
    if len(raw) != 1 or not forms:
        raise SpecError(f"{key}: got {raw!r}; a range is a table with one key, one of {', '.join(SWEEP_FORMS)}")
    return _expand_range(key, forms[0], raw[forms[0]])


def _expand_range(key: str, form: str, args: Any) -> list:
    if not (
        isinstance(args, list)
        and len(args) == 3
        and all(map(expressions.is_number, args))
        and float(args[2]).is_integer()
        and 1 <= args[2] <= MAX_VALUES
    ):
        raise SpecError(
            f"{key}: got {{{form} = {args!r}}}; expected {{{form} = [start, stop, count]}} "
            f"with finite numbers start, stop and an integer count from 1 to {MAX_VALUES:,}"
        )
    start, stop, count = args
    make = {"linspace": np.linspace, "logspace": np.logspace, "geomspace": np.geomspace}[form]
    if form == "geomspace" and (start <= 0 or stop <= 0):
        raise SpecError(f"{key}: got {{geomspace = {args!r}}}; expected start > 0 and stop > 0")
    with np.errstate(over="ignore"):
        values = [float(v) for v in make(start, stop, int(count))]
    if not all(map(math.isfinite, values)):  # logspace = [0, 400, 3]: 10^400 is inf
        raise SpecError(f"{key}: {{{form} = {args!r}}} reaches {max(values, key=abs)!r}; expected finite values")
    if key in schema() and schema()[key].type is int:
        values = [round(v) for v in values]
        if len(set(values)) < len(values):
            raise SpecError(
                f"{key}: {{{form} = {args!r}}} rounds to repeated integers {values}; "
                "use fewer points or an explicit list"
            )
    return values


def _resolve_setting(key: str, raw: Any) -> Any:
    """A scalar (unswept) or a list of at least one value (a swept axis)."""
    setting = schema()[key]
    if setting.type is tuple:  # a list of steps, not a sweep ("final" is resolved by _final_steps)
        if not isinstance(raw, (list, tuple)) or not all(
            (isinstance(v, int) and not isinstance(v, bool) and v >= 0) or v == FINAL for v in raw
        ):
            raise SpecError(f"{key}: got {raw!r}; expected {_allowed(setting)}")
        return tuple(raw)
    raw = _expanded(key, raw)
    if isinstance(raw, (list, tuple)):
        if not setting.sweepable:
            raise SpecError(f"{key}: got {raw!r}; this setting cannot be swept, give one {_allowed(setting)}")
        if len(raw) == 0:
            raise SpecError(f"{key}: got an empty sweep []; give at least one {_allowed(setting)}")
        values = [_check_scalar(key, v) for v in raw]
        if len(set(values)) < len(values):
            raise SpecError(f"{key}: got repeated values in the sweep {list(raw)!r}")
        return values
    return _check_scalar(key, raw)


# Per-run quantities at initialization an expression may read (computed inside the
# compiled program: jaxgd.engine.loop.at_init), and short names of the shape settings.
INIT_QUANTITIES = ("sharpness0", "ntk0")
SHORT_NAMES = {"width": "model.width", "d": "data.d", "n": "data.n"}
VAR_PREFIX = "vars."
# Quantities at initialization depend on the data, the model and the loss: they may set
# only what comes after initialization.
SET_AFTER_INIT = ("optimizer.", "engine.")


def _final_steps(settings) -> None:
    """Each list of steps as step numbers ("final": the number of steps)."""
    for key, setting in schema().items():
        if setting.type is tuple and key in settings:
            settings[key] = step_numbers(settings[key], last=settings["steps"])


def _resolve_vars(raw) -> dict[str, list[float]]:
    """[vars]: each free variable's values (a number, a list or a range) as a list; every
    var is an axis of the grid."""
    if not isinstance(raw, dict):
        raise SpecError(f"[vars] must be a table of name = values, got {raw!r}")
    leaves = {key.rpartition(".")[2] for key in schema()}
    resolved = {}
    for name, value in raw.items():
        where = f"{VAR_PREFIX}{name}"
        if not name.isidentifier() or name in INIT_QUANTITIES or name in SHORT_NAMES or name in leaves:
            raise SpecError(f"{where}: {name!r} is not a free name (a setting, a quantity at initialization or not "
                            "an identifier); choose another")
        value = _expanded(where, value)
        values = value if isinstance(value, list) else [value]
        if not values or not all(map(expressions.is_number, values)):
            raise SpecError(f"{where}: got {value!r}; expected a number, a non-empty list of numbers or a range")
        if len(set(values)) < len(values):
            raise SpecError(f"{where}: got repeated values {values!r}")
        resolved[name] = [float(v) for v in values]
    return resolved


@dataclasses.dataclass(frozen=True)
class Derived:
    """A setting computed per run from an expression, `key = {expr = text}`; `refs` says
    what each name in the text reads: `vars.<name>`, a dotted key or a quantity at
    initialization. Without quantities at initialization it is computed when the grid is
    planned (a column of the tables); with them, inside the compiled program."""

    key: str
    text: str
    refs: tuple[tuple[str, str], ...]
    at_init: bool

    @property
    def tree(self):
        return expressions.parse(self.text, self.key)

    def value(self, value_of, xp=np):
        """Its value, `value_of(ref)` giving what each name reads."""
        return expressions.evaluate(self.tree, {name: value_of(ref) for name, ref in self.refs}, xp)


def _reference(key: str, name: str, variables, leaves) -> str:
    """What `name` in the expression of `key` reads: a var, a quantity at initialization,
    or a setting by dotted key, short name or unambiguous last part."""
    if name in variables:
        return VAR_PREFIX + name
    if name in INIT_QUANTITIES:
        return name
    ref = SHORT_NAMES.get(name, name if name in schema() else None)
    if ref is None and len(leaves.get(name, ())) == 1:
        ref = leaves[name][0]
    if ref is None:
        known = list(variables) + list(INIT_QUANTITIES) + list(SHORT_NAMES)
        what = f"ambiguous: it is the last part of {', '.join(leaves[name])}; write the dotted key" if name in leaves else \
            f"unknown{_nearest(name, known + list(leaves))}; names are vars ({', '.join(variables) or 'none'}), settings, " \
            f"{', '.join(INIT_QUANTITIES + tuple(SHORT_NAMES))}"
        raise SpecError(f"{key}: the name {name!r} is {what}")
    if schema()[ref].type not in (int, float):
        raise SpecError(f"{key}: {name!r} reads {ref}, which is not a number")
    return ref


def _resolve_derived(exprs: dict[str, Any], variables) -> tuple[Derived, ...]:
    """The derived settings, each after those it reads; refused before compiling: a static
    setting derived, unknown names, cycles, quantities at initialization setting what
    initialization depends on."""
    leaves: dict[str, list[str]] = {}
    for known in schema():
        leaves.setdefault(known.rpartition(".")[2], []).append(known)
    refs = {}
    for key, text in exprs.items():
        setting = schema()[key]
        if not setting.traced:
            raise SpecError(f"{key}: got {{expr = {text!r}}}; only float settings can be derived, and {key} "
                            f"({setting.type.__name__}) is static: one compiled program per value")
        if not setting.sweepable:  # one value for the whole sweep, read outside the runs (escape_threshold)
            raise SpecError(f"{key}: got {{expr = {text!r}}}; {key} cannot be swept or derived, give one "
                            f"{_allowed(setting)}")
        names = expressions.names(expressions.parse(text, key))
        refs[key] = tuple(sorted((name, _reference(key, name, variables, leaves)) for name in names))
    ordered: dict[str, Derived] = {}

    def visit(key, path):
        if key in path:
            raise SpecError(f"{' -> '.join(path[path.index(key):] + (key,))}: derived settings read each other in a cycle")
        if key in ordered:
            return
        for _, ref in refs[key]:
            if ref in refs:
                visit(ref, path + (key,))
        at_init = any(ref in INIT_QUANTITIES or (ref in ordered and ordered[ref].at_init) for _, ref in refs[key])
        if at_init and not key.startswith(SET_AFTER_INIT):
            raise SpecError(f"{key}: {{expr = {exprs[key]!r}}} reads a quantity at initialization "
                            f"({', '.join(INIT_QUANTITIES)}), which depends on {key}; such expressions may set only "
                            + ", ".join(p + "*" for p in SET_AFTER_INIT))
        ordered[key] = Derived(key, exprs[key], refs[key], at_init)

    for key in refs:
        visit(key, ())
    return tuple(ordered.values())


def _resolve_zip(raw, settings, variables) -> tuple[tuple[str, ...], ...]:
    """zip = [["model.width", "optimizer.lr"], ...]: axes (swept settings, vars) that move
    together, so their lists must have equal lengths."""
    if not isinstance(raw, list) or not all(isinstance(g, list) and len(g) >= 2 and all(isinstance(k, str) for k in g)
                                            for g in raw):
        raise SpecError(f"zip: got {raw!r}; expected a list of lists of two or more swept keys, "
                        "e.g. zip = [[\"model.width\", \"optimizer.lr\"]]")
    def axis(key):
        """(the axis, its values): `c` or `vars.c` for a var, else a dotted key."""
        var = key.removeprefix(VAR_PREFIX)
        return (VAR_PREFIX + var, variables[var]) if var in variables else (key, settings.get(key))

    seen, groups = set(), []
    for group in raw:
        axes = dict(axis(key) for key in group)
        for key, (name, values) in zip(group, map(axis, group)):
            if not isinstance(values, list):
                raise SpecError(f"zip: {key!r} is not a swept setting or a var; zip lists swept settings "
                                "(dotted keys) and vars")
            if name in seen or len(axes) < len(group):
                raise SpecError(f"zip: {key!r} appears twice; an axis moves with one group")
        if len({len(values) for values in axes.values()}) > 1:
            raise SpecError(f"zip: {group!r} have lists of unequal length ({', '.join(str(len(v)) for v in axes.values())}); "
                            "zipped axes move together and need as many values each")
        seen.update(axes)
        groups.append(tuple(axes))
    return tuple(groups)


@dataclasses.dataclass(frozen=True)
class Design:
    """design = "sobol" | "random" with samples = N: N points drawn in the ranges of the
    swept float settings and vars given as ranges (log-uniform for logspace and
    geomspace), from design_seed; other swept settings stay a product with them."""

    kind: str
    samples: int
    seed: int
    ranges: tuple[tuple[str, str, tuple], ...]  # (axis, form, [start, stop, count]) as written

    def bounds(self, axis_form_args) -> tuple[float, float, bool]:
        """(low, high, log) of one range."""
        _, form, (start, stop, _) = axis_form_args
        if form == "logspace":
            return 10.0 ** start, 10.0 ** stop, True
        return float(start), float(stop), form == "geomspace"


def _range_form(value) -> str | None:
    return next(iter(value)) if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SWEEP_FORMS else None


def _resolve_design(raw: dict, flat, raw_vars, zipped) -> Design | None:
    """The random design, if any: its kind, sample count, seed and the ranges it samples."""
    kind, samples, seed = raw.get("design", "grid"), raw.get("samples"), raw.get("design_seed", 0)
    if kind == "grid":
        if samples is not None or "design_seed" in raw:
            raise SpecError("samples, design_seed: need design = 'sobol' or 'random'")
        return None
    if kind not in ("sobol", "random"):
        raise SpecError(f"design: got {kind!r}; expected 'grid' (the default), 'sobol' or 'random'")
    for key, value, minimum in (("samples", samples, 1), ("design_seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SpecError(f"{key}: got {value!r}; expected an integer >= {minimum}")
    ranges = [(k, _range_form(v), tuple(v[_range_form(v)])) for k, v in flat.items() if _range_form(v) and schema()[k].traced]
    ranges += [(VAR_PREFIX + k, _range_form(v), tuple(v[_range_form(v)])) for k, v in raw_vars.items() if _range_form(v)]
    if not ranges:
        raise SpecError(f"design = {kind!r}: no float setting or var is a range ({', '.join(SWEEP_FORMS)}) to sample")
    zipped_ranges = [axis for axis, _, _ in ranges if any(axis in group for group in zipped)]
    if zipped_ranges:
        raise SpecError(f"zip: {', '.join(zipped_ranges)} are sampled by design = {kind!r}; they cannot be zipped")
    return Design(kind, samples, seed, tuple(ranges))


def _check_stop_when(settings, metric_names, derived):
    """engine.stop_when: a criterion on one of the spec's metrics, in the XLA loop (as are
    settings derived at initialization)."""
    if settings["engine.kernel"] == "fused" and (settings["engine.stop_when"] or settings["save_params"]
                                                 or any(d.at_init for d in derived)):
        raise SpecError("engine.kernel: got 'fused', which computes neither engine.stop_when, save_params nor settings "
                        f"derived from {', '.join(INIT_QUANTITIES)}; expected 'xla'")
    if settings["engine.stop_when"]:
        metric, _, _ = expressions.criterion(settings["engine.stop_when"], "engine.stop_when")
        if metric not in metric_names:
            raise SpecError(f"engine.stop_when: {metric!r} is not one of the spec's metrics: {', '.join(metric_names)}")


def _flatten(raw: dict) -> dict[str, Any]:
    """Nested spec dict -> {dotted key: value}; the plot table stays whole under 'plot'."""
    flat = {}
    for top, value in raw.items():
        if top not in TOP_LEVEL:
            raise SpecError(f"unknown top-level key '{top}'{_nearest(top, TOP_LEVEL)}; allowed: {', '.join(TOP_LEVEL)}")
        if top in TABLES and top != "plot":
            if not isinstance(value, dict):
                raise SpecError(f"[{top}] must be a table, got {value!r}")
            for key, inner in value.items():
                flat[f"{top}.{key}"] = inner
        else:
            flat[top] = value
    return flat


def _parse_override_value(text: str) -> Any:
    """`--set` values are TOML values (0.1, [1, 2], {logspace = [-3, 0, 4]}, true);
    anything else is taken as a bare string (`--set model.activation=tanh`)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(overrides) -> dict[str, Any]:
    """Overrides as a dict {dotted key: value} or a list of 'key=value' strings."""
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"override {item!r}: expected key=value, e.g. optimizer.lr=0.1")
        if key.strip() in parsed:
            raise SpecError(f"override {key.strip()!r} given twice; give each key once")
        parsed[key.strip()] = _parse_override_value(text.strip())
    return parsed


def _check_known(key: str):
    known = list(schema()) + ["seeds", "metrics"]
    if key in TABLES or key == "vars":  # --set model={width = 8}
        example = next((k for k in known if k.startswith(f"{key}.")), f"{key}.NAME")
        raise SpecError(f"override {key!r}: [{key}] is a table; set its keys one by one, e.g. {example}=...")
    if key not in schema() and key not in ("seeds", "metrics"):
        table = key.split(".")[0]
        where = f"[{table}] " if table in TABLES else ""
        ending = [k for k in known if k.endswith(f".{key}")]  # `lr` for optimizer.lr
        hint = f" (did you mean '{ending[0]}'?)" if len(ending) == 1 else _nearest(key, known)
        raise SpecError(f"unknown key {where}'{key}'{hint}")


def _resolve_seeds(raw) -> list[int]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise SpecError(f"seeds: got {raw!r}; expected a count >= 1 or a list of integers >= 0")
        if raw > MAX_VALUES:
            raise SpecError(f"seeds: got {raw:,}; expected at most {MAX_VALUES:,} seeds (each is a row of the plan)")
        return list(range(raw))
    if (
        isinstance(raw, list)
        and raw
        and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in raw)
        and len(set(raw)) == len(raw)
    ):
        return list(raw)
    raise SpecError(f"seeds: got {raw!r}; expected {SEEDS_ALLOWED}")


def _resolve_metrics(raw) -> tuple[str, ...]:
    known = registry.names("metric")
    if not isinstance(raw, list) or not raw or not all(isinstance(m, str) for m in raw):
        raise SpecError(f"metrics: got {raw!r}; expected a non-empty list of metric names from {', '.join(known)}")
    for name in raw:
        if name not in known:
            raise SpecError(f"metrics: unknown metric {name!r}{_nearest(name, known)}; allowed: {', '.join(known)}")
    if len(set(raw)) < len(raw):
        raise SpecError(f"metrics: got repeated names in {raw!r}")
    return tuple(raw)


def logged_steps(steps: int, log_every: int) -> np.ndarray:
    """0, log_every, 2 log_every, ... and the last step."""
    return np.unique(np.append(np.arange(0, steps + 1, log_every), steps))


def _values(settings, key) -> list:
    value = settings[key]
    return value if isinstance(value, list) else [value]


def fused_kernel_allows() -> dict[str, tuple]:
    """What `engine.kernel = "fused"` (jaxgd/engine/fused.py) supports, beyond which it is
    refused: setting -> allowed values."""
    return {
        # gelu: JAX's Triton backend has no rule for erfc, so the kernel would not compile on GPUs
        "model.activation": tuple(name for name in registry.names("activation") if name != "gelu"),
        "optimizer.name": ("gd",),
        "model.constraint": ("none",),
        "engine.precision": ("highest",),
    }


FUSED_KERNEL_METRICS = ("train_loss", "test_loss")


def _check_fused_kernel(settings, metric_names):
    def refuse(key, value, allowed):
        raise SpecError(f"{key}: got {value!r}; with engine.kernel = 'fused' expected "
                        + ("one of " if len(allowed) > 1 else "") + ", ".join(repr(v) for v in allowed))

    for key, allowed in fused_kernel_allows().items():
        for value in _values(settings, key):
            if value not in allowed:
                refuse(key, value, allowed)
    for name in metric_names:
        if name not in FUSED_KERNEL_METRICS:
            refuse("metrics", name, FUSED_KERNEL_METRICS)


def _check_combinations(settings, metric_names):
    """Constraints between settings, checked for every combination the grid contains."""
    if settings["engine.kernel"] == "fused":
        _check_fused_kernel(settings, metric_names)
    _check_survives_dtype(settings)
    if settings["steps"] // settings["log_every"] + 1 > MAX_LOGS:
        raise SpecError(f"log_every: got {settings['log_every']:,}, which logs {settings['steps'] // settings['log_every'] + 1:,} "
                        f"steps of each run; expected at most {MAX_LOGS:,} (a larger log_every)")
    if settings["log_every"] > settings["steps"]:
        raise SpecError(f"log_every: got {settings['log_every']}; expected 1 <= log_every <= steps = {settings['steps']}")
    # Labels are +-1 where their sign is taken, or where every data set chosen gives +-1
    # labels and no label noise is added to them.
    names = _values(settings, "data.name")
    pm1_data = all(n in registry.names("dataset") and registry.get("dataset", n).declared("labels_pm1") for n in names)
    real_labels = "real" in _values(settings, "data.labels") and not (pm1_data and _values(settings, "data.noise") == [0.0])
    for name in _values(settings, "loss.name"):
        if registry.get("loss", name).declared("labels_pm1") and real_labels:
            raise SpecError(
                f"loss.name: '{name}' needs +-1 labels but data.labels includes 'real' (with a data set whose labels are "
                "not all +-1, or label noise); set data.labels = 'sign'"
            )
    chosen = [registry.get("metric", name) for name in metric_names]
    for metric in chosen:
        if metric.declared("labels_pm1") and real_labels:
            raise SpecError(f"metrics: '{metric.name}' needs +-1 labels but data.labels includes 'real'; set data.labels = 'sign'")
    generated = [registry.get("dataset", n) for n in names if n not in data.GIVEN]
    for dataset in generated:
        _check_requires(settings, dataset)
    one_dimensional = [m.name for m in chosen if m.declared("one_dimensional")]
    if one_dimensional and _values(settings, "data.d") != [1]:
        raise SpecError(f"data.d: got {settings['data.d']!r}; {', '.join(one_dimensional)} needs data.d = 1")
    if set(_values(settings, "optimizer.name")) & set(optim.MINIBATCH):
        batch, n = max(_values(settings, "optimizer.batch_size")), min(_values(settings, "data.n"))
        if batch > n:
            raise SpecError(f"optimizer.batch_size: got {batch}; expected at most data.n = {n}")
    if set(_values(settings, "optimizer.name")) & set(optim.ONLINE) and len(generated) < len(names):
        raise SpecError("optimizer.name: online_sgd draws fresh samples and needs a generated data set, not given data")
    with_direction = [n for n in registry.names("dataset") if registry.get("dataset", n).declared("teacher_direction")]
    for metric in chosen:
        if metric.declared("fresh_samples") and len(generated) < len(names):
            raise SpecError(f"metrics: '{metric.name}' draws fresh samples and needs a generated data set, not given data")
        if metric.declared("teacher_direction") and not set(names) <= set(with_direction):
            raise SpecError(f"metrics: '{metric.name}' needs a teacher direction w*: data.name one of {', '.join(with_direction)}")
        if metric.declared("requires"):
            for combination in _static_combinations(settings):
                message = metric.declared("requires")(combination)
                if message:
                    raise SpecError(f"metrics: {message}")
    if settings["measure.escape_metric"] and settings["measure.escape_metric"] not in metric_names:
        raise SpecError(f"measure.escape_metric: got {settings['measure.escape_metric']!r}; it must be one of the spec's metrics: {', '.join(metric_names)}")
    logged = set(logged_steps(settings["steps"], settings["log_every"]).tolist())
    for key in (k for k, setting in schema().items() if setting.type is tuple and k in settings):
        unlogged = [t for t in settings[key] if t not in logged]
        if unlogged:
            raise SpecError(f"{key}: steps {unlogged} are not logged; logged steps are multiples of log_every = {settings['log_every']} and the last step {settings['steps']}")
    can_freeze = lambda key: False in _values(settings, key)
    if can_freeze("model.train_W") and can_freeze("model.train_a") and (
        can_freeze("model.train_b") or can_freeze("model.bias")
    ):
        raise SpecError("model.train_W, model.train_a, model.train_b: some run would train no layer; train at least one")


def _static_combinations(settings):
    """Each combination of the swept static settings, as a Config-like namespace
    (`cfg.model.activation`; a swept float reads as its first value)."""
    static_swept = [k for k, v in settings.items() if isinstance(v, list) and not schema()[k].traced]
    first = {k: (v[0] if isinstance(v, list) else v) for k, v in settings.items()}
    for values in itertools.product(*(settings[k] for k in static_swept)):
        yield _Namespace({**first, **dict(zip(static_swept, values))})


class ByAttribute:
    """Settings read by attribute, `cfg.model.width` for the dotted key model.width and
    `cfg.steps` for a top-level one, from `value(key)` (a KeyError where there is none)."""

    def value(self, key: str) -> Any:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        if name in TABLES:
            return _Table(self, name)
        try:
            return self.value(name)
        except KeyError:
            raise AttributeError(name) from None


class _Table:
    """One spec table read by attribute: `cfg.model.width`."""

    def __init__(self, settings: ByAttribute, table: str):
        self._settings, self._table = settings, table

    def __getattr__(self, leaf: str) -> Any:
        try:
            return self._settings.value(f"{self._table}.{leaf}")
        except KeyError:
            raise AttributeError(f"{self._table}.{leaf}") from None


class _Namespace(ByAttribute):
    """Flat {dotted key: value} read by attribute."""

    def __init__(self, flat: dict):
        self._flat = flat

    def value(self, key: str) -> Any:
        return self._flat[key]


def _keys_of(visible) -> list[str]:
    """The settings of `schema()` a spec sees: the framework's, and those of the components
    `visible` accepts."""
    return [key for key in schema() if not (owners := registry.owners(key)) or any(map(visible, owners))]


def _check_in_scope(settings, flat, metric_names, in_scope) -> None:
    """Every component the spec chooses, and every setting it gives, is a built-in's or its
    own plugins': a component that another spec's plugin registered in this process is
    refused (a fresh process resuming this sweep would not know it)."""
    stray = next((k for k in flat if k in schema() and k not in settings), None)
    if stray:
        raise SpecError(f"{stray}: this setting belongs to {registry.owners(stray)[0].origin}, which this spec does not "
                        "list in plugins; add it to plugins = [...]")
    chosen = [(key, schema()[key].names_a, _values(settings, key)) for key in settings if schema()[key].names_a]
    for key, kind, names in chosen + [("metrics", "metric", metric_names)]:
        for name in names:
            if name in registry.names(kind) and not in_scope(registry.get(kind, name)):
                raise SpecError(f"{key}: '{name}' is registered by {registry.get(kind, name).origin}, which this spec "
                                "does not list in plugins; add it to plugins = [...]")


def _check_requires(settings, dataset: registry.Component):
    """A data set's own condition on data.d and its settings, for every value swept."""
    requires = dataset.declared("requires")
    if requires is None:
        return
    keys = ["data.d"] + [s.key for s in dataset.settings]
    for values in itertools.product(*(_values(settings, k) for k in keys)):
        named = dict(zip([k.rpartition(".")[2] for k in keys], values))
        message = requires(**named)
        if message:
            raise SpecError(f"data.name = '{dataset.name}': {message}")


def column_names(swept_keys) -> dict[str, str]:
    """Table column of each swept key: its last part (`lr`), or the dotted key where two clash."""
    leaves = [k.split(".")[-1] for k in swept_keys]
    reserved = {"run_id", "seed", "step", "diverged", "diverged_step"}
    return {
        key: leaf if leaves.count(leaf) == 1 and leaf not in reserved else key
        for key, leaf in zip(swept_keys, leaves)
    }


@dataclasses.dataclass(frozen=True)
class Spec:
    """A validated spec. `settings` maps every dotted key to a scalar or, for a swept
    axis, a list of values; `columns` names each swept key's table column."""

    settings: dict[str, Any]
    seeds: list[int]
    metrics: tuple[str, ...]
    plot: dict[str, list[dict]]
    given: given.GivenData | None = None  # the arrays of data.name = "file" or "inline"
    plugins: tuple[str, ...] = ()  # the user files and modules that register components, resolved
    vars: dict[str, list[float]] = dataclasses.field(default_factory=dict)  # [vars]: free swept variables
    derived: tuple[Derived, ...] = ()  # settings given as {expr = ...}, each after those it reads
    zip: tuple[tuple[str, ...], ...] = ()  # axes that move together
    design: Design | None = None  # a random design instead of a grid over the ranges

    @property
    def name(self) -> str:
        return self.settings["name"]

    @property
    def swept(self) -> list[str]:
        return [k for k, v in self.settings.items() if isinstance(v, list)]

    @property
    def axes(self) -> list[str]:
        """The grid's axes: swept settings, then vars (`vars.c`)."""
        return self.swept + [VAR_PREFIX + name for name in self.vars]

    @property
    def columns(self) -> dict[str, str]:
        """Table column of each axis and of each derived setting."""
        return column_names(self.axes + [d.key for d in self.derived])

    @property
    def escape(self) -> tuple[str, float, bool] | None:
        """(metric, threshold, relative) of the summary column escape_step, if asked for."""
        metric = self.settings["measure.escape_metric"]
        return (metric, self.settings["measure.escape_threshold"], self.settings["measure.escape_relative"]) if metric else None

    def to_dict(self) -> dict:
        """The nested, fully resolved spec (sweeps expanded to lists)."""
        out: dict[str, Any] = {"seeds": list(self.seeds), "metrics": list(self.metrics)}
        if self.plugins:
            out["plugins"] = list(self.plugins)
        for key, value in self.settings.items():
            table, _, leaf = key.rpartition(".")
            (out.setdefault(table, {}) if table else out)[leaf or key] = list(value) if isinstance(value, tuple) else value
        for d in self.derived:
            table, _, leaf = d.key.rpartition(".")
            out[table][leaf] = {"expr": d.text}
        if self.vars:
            out["vars"] = dict(self.vars)
        if self.zip:
            out["zip"] = [list(group) for group in self.zip]
        if self.design:
            out.update(design=self.design.kind, samples=self.design.samples, design_seed=self.design.seed)
            for axis, form, args in self.design.ranges:  # as written: the design samples the range, not its points
                table, _, leaf = axis.rpartition(".")
                out[table][leaf] = {form: list(args)}
        if self.settings["data.name"] == "inline":
            out["data"].update({k: a.tolist() for k, a in zip(given.ARRAY_NAMES, self.given.arrays)})
        if any(self.plot.values()):
            # TOML has no null: unset options (a curve without hue) are left out
            out["plot"] = {
                kind: [{k: v for k, v in e.items() if v is not None} for e in entries]
                for kind, entries in self.plot.items()
                if entries
            }
        return out


def _is_theory(value) -> bool:
    """An expression, a number or a table {expr, label} of strings (a theory line)."""
    if isinstance(value, dict):
        return set(value) == {"expr", "label"} and all(isinstance(v, str) for v in value.values())
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


class _SetByOverride(Exception):
    """A figure names a setting that an override set to one value: it is skipped."""


def _resolve_plot(raw, settings, spec_columns, metric_names, overridden=()) -> dict[str, list[dict]]:
    """The [plot] tables checked and completed. A figure whose axis, hue or selection
    names a setting that an override (`overridden`: their keys) set to one value is
    skipped with a warning (--set optimizer.lr=0.05 on a sweep drawn against lr)."""
    summary_steps = settings["summary_steps"]
    set_once = {name: key for key in overridden if key in settings and not isinstance(settings[key], list)
                for name in (key, key.rpartition(".")[2])}

    def set_by_override(what, name):
        return _SetByOverride(f"{what} {name}, which an override sets to one value ({set_once[name]} = "
                              f"{settings[set_once[name]]!r})")
    raw = raw or {}
    if not isinstance(raw, dict):
        raise SpecError(f"[plot] must be a table, got {raw!r}")
    for kind in raw:
        if kind not in PLOT_KINDS:
            raise SpecError(f"unknown key [plot] '{kind}'{_nearest(kind, PLOT_KINDS)}; allowed: {', '.join(PLOT_KINDS)}")
    by_column = {**{c: c for c in spec_columns.values()}, **spec_columns, "seed": "seed"}
    summary_columns = ["diverged", "diverged_step"] + [
        f"{s}_{m}" for m in metric_names for s in ("final", "min", "max")
    ] + [f"{m}_at_{t}" for m in metric_names for t in summary_steps] + (
        ["escape_step"] + [f"{m}_at_escape" for m in metric_names] if settings["measure.escape_metric"] else []) + (
        ["stopped_step"] if settings["engine.stop_when"] else [])

    def entries(kind, allowed):
        items = raw.get(kind, [])
        items = [items] if isinstance(items, dict) else items
        if not isinstance(items, list) or not all(isinstance(e, dict) for e in items):
            raise SpecError(f"plot.{kind}: expected a table or a list of tables, got {items!r}")
        resolved = []
        for entry in items:
            for key in entry:
                if key not in allowed:
                    raise SpecError(f"unknown key plot.{kind}.{key}{_nearest(key, allowed)}; allowed: {', '.join(allowed)}")
            merged = {**allowed, **entry}
            missing = [k for k, v in merged.items() if v is None and k not in OPTIONAL_PLOT_KEYS]
            if missing:
                raise SpecError(f"plot.{kind}: missing {', '.join(missing)}")
            resolved.append(merged)
        return resolved

    def axis(kind, key, value):
        if isinstance(value, str) and value not in by_column and value in set_once:
            raise set_by_override(f"plot.{kind}.{key} names", value)
        if not isinstance(value, str) or value not in by_column:
            raise SpecError(
                f"plot.{kind}.{key}: got {value!r}; expected a swept setting: "
                + (", ".join(spec_columns.values()) or "(nothing is swept)")
            )
        return by_column[value]

    def check_select(kind, entry):
        chosen = entry["select"] or {}
        if not isinstance(chosen, dict):
            raise SpecError(f"plot.{kind}.select: got {chosen!r}; expected a table {{setting = value}}")
        for key, value in chosen.items():
            if not isinstance(value, (str, int, float)):  # a list was compared with the column element-wise
                raise SpecError(f"plot.{kind}.select.{key}: got {value!r}; expected one value of the setting")
        # A value that is not swept (say after --set model.width=...) skips the figure when it is drawn.
        entry["select"] = {axis(kind, "select", k): v for k, v in chosen.items()} or None

    def check_theory(kind, key, entry, columns):
        """Theory lines: expressions (or numbers) over the figure's columns, each alone or
        as a table {expr, label}."""
        texts = entry[key] or []
        texts = [texts] if _is_theory(texts) else texts
        if not isinstance(texts, list) or not all(map(_is_theory, texts)):
            raise SpecError(f"plot.{kind}.{key}: got {entry[key]!r}; expected a list of expressions, e.g. [\"2 / lr\"] "
                            f"or [{{expr = \"2 / lr\", label = \"edge of stability\"}}]")
        texts = [t if isinstance(t, dict) else str(t) for t in texts]
        for text, _ in map(expressions.expression_and_label, texts):
            unknown = expressions.names(expressions.parse(text, f"plot.{kind}.{key}")) - set(columns)
            if unknown & set(set_once):
                raise set_by_override(f"plot.{kind}.{key}: {text!r} reads", min(unknown & set(set_once)))
            if unknown:
                raise SpecError(f"plot.{kind}.{key}: {text!r} reads {', '.join(sorted(unknown))}; an expression may read "
                                f"{', '.join(columns)}")
        entry[key] = texts or None

    def check_lines(kind, entry):
        """select, hue and logy of curves and lines."""
        check_select(kind, entry)
        if not isinstance(entry["logy"], bool):
            raise SpecError(f"plot.{kind}.logy: got {entry['logy']!r}; expected true or false")
        if entry["hue"] is not None:
            entry["hue"] = axis(kind, "hue", entry["hue"])

    def kept(kind, allowed, check):
        """The entries of `kind` that `check` completes, less those it skips (_SetByOverride)."""
        complete = []
        for entry in entries(kind, allowed):
            try:
                check(entry)
            except _SetByOverride as reason:
                warnings.warn(f"skipping {'figure ' + entry['file'] if entry['file'] else 'a ' + kind + ' figure'}: {reason}",
                              FigureSkipped, stacklevel=2)
                continue
            complete.append(entry)
        return complete

    def check_phase(p):
        check_select("phase_diagram", p)
        p["x"], p["y"] = axis("phase_diagram", "x", p["x"]), axis("phase_diagram", "y", p["y"])
        if p["x"] == p["y"]:
            raise SpecError(f"plot.phase_diagram: x and y are both {p['x']!r}; give two different swept settings")
        if p["value"] not in summary_columns:
            raise SpecError(f"plot.phase_diagram.value: got {p['value']!r}{_nearest(p['value'], summary_columns)}; expected a summary column: {', '.join(summary_columns)}")
        if p["reduce"] not in REDUCERS:
            raise SpecError(f"plot.phase_diagram.reduce: got {p['reduce']!r}; expected one of {', '.join(REDUCERS)}")
        check_theory("phase_diagram", "overlay", p, [*spec_columns.values(), *summary_columns])
        p["file"] = p["file"] or f"phase_{p['value']}_{p['x']}_{p['y']}.png"

    def check_curve(c):
        if c["metric"] not in metric_names:
            raise SpecError(f"plot.curves.metric: got {c['metric']!r}; expected one of the spec's metrics: {', '.join(metric_names)}")
        check_lines("curves", c)
        if c["x"] != "step" and c["x"] not in metric_names:
            raise SpecError(f"plot.curves.x: got {c['x']!r}; expected 'step' or one of the spec's metrics: {', '.join(metric_names)}")
        check_theory("curves", "reference", c, ["step", *spec_columns.values(), *metric_names])
        c["file"] = c["file"] or f"curves_{c['metric']}.png"

    def check_line(entry):
        entry["x"] = axis("lines", "x", entry["x"])
        entry["y"] = [entry["y"]] if isinstance(entry["y"], str) else entry["y"]
        if not isinstance(entry["y"], list) or not entry["y"]:
            raise SpecError(f"plot.lines.y: got {entry['y']!r}; expected a summary column or a non-empty list of them: "
                            f"{', '.join(summary_columns)}")
        for column in entry["y"]:
            if not isinstance(column, str) or column not in summary_columns:
                raise SpecError(f"plot.lines.y: got {column!r}{_nearest(column, summary_columns)}; expected summary columns: {', '.join(summary_columns)}")
        if entry["reduce"] not in REDUCERS:
            raise SpecError(f"plot.lines.reduce: got {entry['reduce']!r}; expected one of {', '.join(REDUCERS)}")
        check_lines("lines", entry)
        check_theory("lines", "overlay", entry, [*spec_columns.values(), *summary_columns])
        entry["file"] = entry["file"] or f"lines_{'_'.join(entry['y'])}_{entry['x']}.png"

    phases = kept("phase_diagram", PHASE_KEYS, check_phase)
    curves = kept("curves", CURVE_KEYS, check_curve)
    line_plots = kept("lines", LINE_KEYS, check_line)
    _check_figure_files([(kind, entry) for kind, entries in (("phase_diagram", phases), ("curves", curves),
                                                            ("lines", line_plots)) for entry in entries])
    return {"phase_diagram": phases, "curves": curves, "lines": line_plots}


def _check_figure_files(figures) -> None:
    """Each figure's file: a name, one per figure. Its format is checked where figures
    are drawn (storage.files.figure_path), against matplotlib's list: importing it here
    would cost every load 0.3 s, for --dry-run and --no-plots too."""
    seen = set()
    for kind, entry in figures:
        name = entry["file"]
        if not isinstance(name, str) or "\0" in name:
            raise SpecError(f"plot.{kind}.file: got {name!r}; expected a file name (in the --out folder)")
        if name in seen:
            raise SpecError(f"plot.{kind}.file: {name!r} is the file of two figures; give each its own")
        seen.add(name)


def _resolve_given(settings, flat, inline_arrays, base) -> given.GivenData | None:
    """Load and check given data (data.name = "file" or "inline"), and set data.n,
    data.n_test and data.d from the arrays."""
    names = _values(settings, "data.name")
    if not set(names) & set(data.GIVEN):
        if inline_arrays:
            raise SpecError(f"data.{next(iter(inline_arrays))}: arrays in the spec need data.name = 'inline'")
        return None
    if len(names) > 1:
        raise SpecError(f"data.name: got {names!r}; given data ('file', 'inline') cannot be swept with other data sets")
    if names[0] == "inline":
        arrays = given.validate(inline_arrays, "data (inline)", settings["dtype"])
    else:
        arrays = given.from_files(settings["data.path"], settings["data.test_path"], base,
                                  header=settings["data.header"], dtype=settings["dtype"])
        for key in ("data.path", "data.test_path"):  # absolute, so the saved spec runs from anywhere
            if settings[key]:
                settings[key] = str((base / settings[key]) if base and not Path(settings[key]).is_absolute() else Path(settings[key]))
    for key, value in (("data.n", arrays.n), ("data.n_test", arrays.n_test), ("data.d", arrays.d)):
        if key in flat and settings[key] != value:
            raise SpecError(f"{key}: got {settings[key]!r} but the given data ({arrays.source}) have {value}")
        settings[key] = value
    return arrays


def load(spec, overrides=None, *, read_data: bool = True) -> Spec:
    """Read, override, expand and validate a spec (a TOML path or a dict). Without
    `read_data`, given data (`file`, `inline`) are neither read nor checked and `given` is
    None: for a resolved spec (it holds the data.n, data.n_test and data.d they set) of
    which only the tables are used, as by a finished folder's figures."""
    if isinstance(spec, Spec):
        spec = spec.to_dict()
    base = None  # where relative data paths start
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        base = path.resolve().parent
        if not path.is_file():
            raise SpecError(f"spec file not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
        with path.open("rb") as f:
            try:
                raw = tomllib.load(f)
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:  # TOML is UTF-8 text
                raise SpecError(f"{path}: not valid TOML: {err}") from None
    elif isinstance(spec, dict):
        raw = copy.deepcopy(spec)
    else:
        raise SpecError(f"spec: expected a path to a TOML file or a dict, got {type(spec).__name__}")

    plugin_names = plugins.load(raw.pop("plugins", []), base)
    flat = _flatten(raw)
    plot_raw = flat.pop("plot", None)
    raw_vars = flat.pop("vars", {})
    design_raw = {k: flat.pop(k) for k in DESIGN_KEYS if k in flat}
    zip_raw = flat.pop("zip", [])
    inline_arrays = {k: flat.pop(f"data.{k}") for k in given.ARRAY_NAMES if f"data.{k}" in flat}
    overridden = parse_overrides(overrides)
    for key, value in overridden.items():
        if key in ("plot", "plugins") or key.startswith("plot."):
            raise SpecError(f"override {key!r}: {key.partition('.')[0]} cannot be overridden; edit the spec")
        if key.startswith(VAR_PREFIX):  # --set vars.c=[0.5, 1]
            raw_vars = {**raw_vars, key.removeprefix(VAR_PREFIX): value}
        elif key in DESIGN_KEYS:
            design_raw[key] = value
        elif key == "zip":
            zip_raw = value
        else:
            _check_known(key)
            flat[key] = value
    for key in flat:
        _check_known(key)
    variables = _resolve_vars(raw_vars)
    exprs = {k: flat.pop(k)["expr"] for k, v in list(flat.items()) if isinstance(v, dict) and list(v) == ["expr"]}

    in_scope = lambda c: plugins.visible(c, plugin_names)
    settings = {key: _resolve_setting(key, flat.get(key, schema()[key].default)) for key in _keys_of(in_scope)}
    _final_steps(settings)
    metric_names = _resolve_metrics(flat.get("metrics", list(DEFAULT_METRICS)))
    _check_in_scope(settings, flat, metric_names, in_scope)
    derived = _resolve_derived(exprs, variables)
    zipped = _resolve_zip(zip_raw, settings, variables)
    design = _resolve_design(design_raw, flat, raw_vars if isinstance(raw_vars, dict) else {}, zipped)
    arrays = _resolve_given(settings, flat, inline_arrays, base) if read_data else None
    seeds = _resolve_seeds(flat.get("seeds", DEFAULT_SEEDS))
    _check_combinations(settings, metric_names)
    _check_stop_when(settings, metric_names, derived)
    if plugin_names:
        plugins.check_shapes(settings)
    resolved = Spec(settings=settings, seeds=seeds, metrics=metric_names, plot={}, given=arrays, plugins=plugin_names,
                    vars=variables, derived=derived, zip=zipped, design=design)
    plot = _resolve_plot(plot_raw, settings, resolved.columns, metric_names, overridden)
    return dataclasses.replace(resolved, plot=plot)


def written(value) -> str:
    """A default as it is written in a spec (for these types JSON and TOML agree)."""
    return "" if value is None else json.dumps(list(value) if isinstance(value, tuple) else value)


def _type_name(setting: Setting) -> str:
    name = "list of steps" if setting.type is tuple else setting.type.__name__
    return name if setting.sweepable else f"{name} (not sweepable)"


def _selector_key(kind: str) -> str:
    """How a component of `kind` is chosen in a spec: `model.activation`, `metrics`, ..."""
    selector = registry.KINDS[kind].selector
    return f"{registry.KINDS[kind].table}.{selector}" if selector else "metrics"


def settings_table(prefix: str = "", *, builtin_only: bool = False) -> list[dict]:
    """Every setting, and every registered component, whose key starts with `prefix`, from
    the sources validation reads (`schema()` and the registry): rows of key, type, kind
    ('traced' or 'static'), default, allowed and doc. A component is a row
    `<the key that chooses it>: NAME` (`data.name: parity`, `metrics: margin`) of type
    its kind. What `jaxgd settings` prints and (`builtin_only`) the README's tables show."""
    rows = [
        dict(key="seeds", type="int or list", kind="static", default=DEFAULT_SEEDS, allowed=SEEDS_ALLOWED,
             doc="random seeds: a count k (seeds 0..k-1) or a list"),
        dict(key="metrics", type="list of str", kind="static", default=list(DEFAULT_METRICS),
             allowed="names of metrics (see Components)", doc="metrics logged every log_every steps"),
        dict(key="plugins", type="list of str", kind="static", default=[], allowed="",
             doc="user files (relative to the spec) or modules that register components, loaded before validation"),
        dict(key="vars", type="table", kind="traced", default={}, allowed="name = a number, list or range",
             doc="free swept variables, read by expressions (`lr = {expr = \"c / sharpness0\"}`); each is an axis and a column"),
        dict(key="zip", type="list of lists", kind="static", default=[], allowed="swept keys and vars, lists of equal length",
             doc="axes that move together instead of forming a product"),
        dict(key="design", type="str", kind="static", default="grid", allowed="'grid', 'sobol' or 'random'",
             doc="`sobol`, `random`: `samples` points in the ranges of the swept float settings and vars"),
        dict(key="samples", type="int", kind="static", default=None, allowed="an integer >= 1",
             doc="points of a `sobol` or `random` design"),
        dict(key="design_seed", type="int", kind="static", default=0, allowed="an integer >= 0",
             doc="seed of a `sobol` (digital shift) or `random` design"),
    ]
    shown = lambda component: component.builtin or not builtin_only

    def listed(setting: Setting) -> Setting:
        """The setting with the choices shown (a component choice: only those shown)."""
        if setting.names_a is None:
            return setting
        kept = [c for c in setting.choices
                if c not in registry.names(setting.names_a) or shown(registry.get(setting.names_a, c))]
        return dataclasses.replace(setting, choices=tuple(kept))

    rows += [dict(key=key, type=_type_name(schema()[key]), kind="traced" if schema()[key].traced else "static",
                  default=schema()[key].default, allowed=_allowed(listed(schema()[key])), doc=schema()[key].doc)
             for key in _keys_of(shown)]
    rows += [dict(key=f"{_selector_key(kind)}: {name}", type=kind, kind="component", default=None, allowed="",
                  doc=registry.get(kind, name).doc) for kind in registry.KINDS for name in registry.names(kind)
             if shown(registry.get(kind, name))]
    return [row for row in rows if row["key"].startswith(prefix)]
