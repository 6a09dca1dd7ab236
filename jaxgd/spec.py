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
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from jaxgd import data, given, losses, metrics, models, optim


from jaxgd.errors import SpecError


@dataclasses.dataclass(frozen=True)
class Setting:
    default: Any
    type: type
    doc: str
    choices: tuple = ()
    minimum: float | None = None
    positive: bool = False  # strictly greater than zero
    sweepable: bool = True


def _int(default, doc, minimum=1, sweepable=True):
    return Setting(default, int, doc, minimum=minimum, sweepable=sweepable)


def _float(default, doc, minimum=0.0, positive=False):
    return Setting(default, float, doc, minimum=minimum, positive=positive)


def _choice(default, choices, doc, sweepable=True):
    return Setting(default, str, doc, choices=tuple(choices), sweepable=sweepable)


def _bool(default, doc):
    return Setting(default, bool, doc)


def _steps_list(doc):
    """A list of step numbers (not a sweep)."""
    return Setting((), tuple, doc, minimum=0, sweepable=False)


def _path(doc):
    return Setting("", str, doc, sweepable=False)


SCHEMA: dict[str, Setting] = {
    "name": Setting("sweep", str, "name of the sweep", sweepable=False),
    "steps": _int(1000, "gradient steps per run", sweepable=False),
    "log_every": _int(10, "steps between logged metrics (1 <= log_every <= steps)", sweepable=False),
    "dtype": _choice("float32", ("float32", "float64"), "floating-point type", sweepable=False),
    "data.name": _choice("linear_teacher", (*data.DATASETS, *data.GIVEN), "data set"),
    "data.n": _int(256, "training samples"),
    "data.n_test": _int(256, "test samples"),
    "data.d": _int(8, "input dimension"),
    "data.noise": _float(0.0, "label-noise standard deviation"),
    "data.labels": _choice("real", data.LABELS, "real targets or their sign (+-1)"),
    "data.teacher_width": _int(4, "hidden units of two_layer_teacher"),
    "data.teacher_activation": _choice("relu", models.ACTIVATIONS, "activation of two_layer_teacher"),
    "data.frequency": _float(1.0, "sin_1d: y = sin(pi * frequency * x)", minimum=None),
    "data.k": _int(2, "parity: y = x_1 ... x_k"),
    "data.clusters": _int(4, "clusters: number of clusters (labels alternate +-1)", minimum=2),
    "data.cluster_std": _float(0.1, "clusters: standard deviation around each centre"),
    "data.link": _choice("square", data.LINKS, "single_index: y = link(w* . x / sqrt(d)) + noise"),
    "data.path": _path("data.name = 'file': an .npz (X_train, y_train, X_test, y_test) or a training CSV (last column the label)"),
    "data.test_path": _path("data.name = 'file' with a CSV: the test CSV"),
    "model.width": _int(128, "hidden units m"),
    "model.activation": _choice("relu", models.ACTIVATIONS, "activation"),
    "model.scaling": _choice("ntk", models.SCALINGS, "output scale c_m: 1, 1/sqrt(m) or 1/m"),
    "model.bias": _bool(False, "hidden-layer bias b"),
    "model.train_W": _bool(True, "train the first layer W"),
    "model.train_a": _bool(True, "train the second layer a"),
    "model.train_b": _bool(True, "train the bias b (when model.bias)"),
    "model.w_scale": _float(1.0, "W ~ N(0, w_scale^2 / d)"),
    "model.a_init": _choice("gaussian", models.A_INITS, "a ~ a_scale * N(0, 1) or a_scale * (+-1, balanced)"),
    "model.a_scale": _float(1.0, "scale of a at initialization"),
    "model.b_scale": _float(0.0, "b ~ N(0, b_scale^2)"),
    "model.leaky_slope": _float(0.01, "negative slope of leaky_relu", minimum=None),
    "model.leaky_c": _float(0.5, "leaky_softplus: c z + (1 - c) softplus(z)", minimum=None),
    "model.input_scaling": _choice("none", models.INPUT_SCALINGS, "pre-activation w . x, or w . x / sqrt(d)"),
    "model.constraint": _choice("none", models.CONSTRAINTS, "constraint on W after every step"),
    "model.row_norm": _float(0.0, "spherical: the norm of each row of W (0: sqrt(d))"),
    "optimizer.name": _choice("gd", optim.OPTIMIZERS, "optimizer"),
    "optimizer.lr": _float(0.1, "step size", positive=True),
    "optimizer.schedule": _choice("constant", optim.SCHEDULES, "step-size schedule"),
    "optimizer.decay_start": _float(0.0, "t0: the step at which decay begins"),
    "optimizer.decay_rate": _float(0.01, "exp_decay: lr exp(-rate (t - t0))"),
    "optimizer.decay_tau": _float(100.0, "poly_decay: lr / (1 + (t - t0) / tau)^power", positive=True),
    "optimizer.decay_power": _float(1.0, "poly_decay: the power"),
    "optimizer.decay_every": _float(100.0, "step_decay: steps between decays", positive=True),
    "optimizer.decay_factor": _float(0.5, "step_decay: lr * factor^floor((t - t0) / every)", positive=True),
    "optimizer.lr_scale_W": _float(1.0, "multiplier of the step size of W"),
    "optimizer.lr_scale_a": _float(1.0, "multiplier of the step size of a (kappa = lr_a / lr_W; 0 freezes a)"),
    "optimizer.lr_scale_b": _float(1.0, "multiplier of the step size of b"),
    "optimizer.batch_size": _int(32, "sgd: samples per mini-batch (<= data.n)"),
    "optimizer.sampling": _choice("replacement", optim.SAMPLINGS, "sgd: mini-batches drawn with replacement, or shuffled epochs"),
    "loss.name": _choice("mse", losses.LOSSES, "training loss"),
    "loss.huber_delta": _float(1.0, "delta of the huber loss and the huber_loss metric", positive=True),
    "measure.displacement_from": _float(0.0, "t0 of the displacement metric ||theta_t - theta_t0||"),
    "measure.fd_points": _int(1024, "grid points of lipschitz_fd", minimum=2),
    "measure.ntk_steps": _steps_list("logged steps at which ntk_min_eig is computed (empty: all)"),
    "measure.margin_degree": _float(0.0, "k of the margin min_i y_i f(x_i) / ||theta||^k (0: f's homogeneity degree)"),
    "measure.sharpness_iterations": _int(20, "power iterations per logged step for sharpness"),
    "measure.mc_samples": _int(4096, "fresh samples of population_risk"),
    "measure.escape_metric": _choice("", ("",) + tuple(metrics.METRICS), "metric whose first crossing below the threshold is the summary column escape_step", sweepable=False),
    "measure.escape_threshold": Setting(0.5, float, "escape threshold", minimum=None, sweepable=False),
    "measure.escape_relative": Setting(True, bool, "the threshold is relative to the metric's value at step 0", sweepable=False),
    "summary_steps": _steps_list("logged steps whose metrics get summary columns <metric>_at_<step>"),
    "engine.divergence_bound": _float(1e8, "a run whose training loss exceeds this (or is not finite) is frozen as diverged", positive=True),
    "engine.memory_budget_mb": _int(0, "MiB per device for one chunk of runs (0: half the accelerator's memory, or 8 MiB, about a CPU cache, on the host)", minimum=0, sweepable=False),
    "engine.chunk_size": _int(0, "most runs per device in one compiled call (0: from the memory budget)", minimum=0, sweepable=False),
    "engine.strategy": _choice("auto", ("auto", "vmap", "map"), "how a device trains the runs of a chunk: vmap (batched), map (one after another), auto (map on the host for runs over 512 KiB, else vmap)", sweepable=False),
    "engine.precision": _choice("highest", ("highest", "high", "default"), "matmul precision", sweepable=False),
    "engine.kernel": _choice("xla", ("xla", "fused"), "training loop: 'xla' (vmapped lax loop) or 'fused' (one Pallas kernel; gd, train_loss and test_loss only)", sweepable=False),
}

TABLES = ("data", "model", "optimizer", "loss", "measure", "engine", "plot")
TOP_LEVEL = ("name", "seeds", "steps", "log_every", "dtype", "metrics", "summary_steps") + TABLES
SWEEP_FORMS = ("linspace", "logspace", "geomspace")
REDUCERS = ("median", "mean", "min", "max")
PHASE_KEYS = {"x": None, "y": None, "value": None, "reduce": "median", "select": None, "file": None}
CURVE_KEYS = {"metric": None, "hue": None, "logy": True, "select": None, "x": "step", "file": None}
LINE_KEYS = {"x": None, "y": None, "hue": None, "reduce": "median", "logy": True, "select": None, "file": None}
PLOT_KINDS = ("phase_diagram", "curves", "lines")
DEFAULT_METRICS = ("train_loss", "test_loss")
DEFAULT_SEEDS = 1
SEEDS_ALLOWED = "a count >= 1 or a non-empty list of distinct integers in [0, 2^31)"


def _nearest(name, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _allowed(setting: Setting) -> str:
    if setting.choices:
        return "one of " + ", ".join(repr(c) for c in setting.choices)
    if setting.type is bool:
        return "true or false"
    if setting.type is tuple:
        return "a list of step numbers >= 0"
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
    setting = SCHEMA[key]
    fail = SpecError(f"{key}: got {value!r}; expected {_allowed(setting)}")
    if setting.type is bool:
        if not isinstance(value, bool):
            raise fail
        return value
    if setting.type is str:
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
    else:
        value = float(value)
        if not math.isfinite(value):
            raise fail
    if setting.positive and not value > 0:
        raise fail
    if setting.minimum is not None and value < setting.minimum:
        raise fail
    return value


def _expand_range(key: str, form: str, args: Any) -> list:
    if not (
        isinstance(args, list)
        and len(args) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in args)
        and float(args[2]).is_integer()
        and args[2] >= 1
    ):
        raise SpecError(
            f"{key}: got {{{form} = {args!r}}}; expected {{{form} = [start, stop, count]}} "
            "with numbers start, stop and an integer count >= 1"
        )
    start, stop, count = args
    make = {"linspace": np.linspace, "logspace": np.logspace, "geomspace": np.geomspace}[form]
    if form == "geomspace" and (start <= 0 or stop <= 0):
        raise SpecError(f"{key}: got {{geomspace = {args!r}}}; expected start > 0 and stop > 0")
    values = [float(v) for v in make(start, stop, int(count))]
    if SCHEMA[key].type is int:
        values = [round(v) for v in values]
        if len(set(values)) < len(values):
            raise SpecError(
                f"{key}: {{{form} = {args!r}}} rounds to repeated integers {values}; "
                "use fewer points or an explicit list"
            )
    return values


def _resolve_setting(key: str, raw: Any) -> Any:
    """A scalar (unswept) or a list of at least one value (a swept axis)."""
    setting = SCHEMA[key]
    if setting.type is tuple:  # a list of steps, not a sweep
        if not isinstance(raw, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in raw
        ):
            raise SpecError(f"{key}: got {raw!r}; expected {_allowed(setting)}")
        return tuple(sorted(set(raw)))
    if isinstance(raw, dict):
        forms = [f for f in raw if f in SWEEP_FORMS]
        if len(raw) != 1 or not forms:
            raise SpecError(
                f"{key}: got {raw!r}; a range is a table with one key, one of "
                + ", ".join(SWEEP_FORMS)
            )
        raw = _expand_range(key, forms[0], raw[forms[0]])
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
    known = list(SCHEMA) + ["seeds", "metrics"]
    if key not in SCHEMA and key not in ("seeds", "metrics"):
        table = key.split(".")[0]
        where = f"[{table}] " if table in TABLES else ""
        ending = [k for k in known if k.endswith(f".{key}")]  # `lr` for optimizer.lr
        hint = f" (did you mean '{ending[0]}'?)" if len(ending) == 1 else _nearest(key, known)
        raise SpecError(f"unknown key {where}'{key}'{hint}")


def _resolve_seeds(raw) -> list[int]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise SpecError(f"seeds: got {raw!r}; expected a count >= 1 or a list of integers >= 0")
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
    if not isinstance(raw, list) or not raw or not all(isinstance(m, str) for m in raw):
        raise SpecError(f"metrics: got {raw!r}; expected a non-empty list of metric names from {', '.join(metrics.METRICS)}")
    for name in raw:
        if name not in metrics.METRICS:
            raise SpecError(f"metrics: unknown metric {name!r}{_nearest(name, metrics.METRICS)}; allowed: {', '.join(metrics.METRICS)}")
    if len(set(raw)) < len(raw):
        raise SpecError(f"metrics: got repeated names in {raw!r}")
    return tuple(raw)


def logged_steps(steps: int, log_every: int) -> np.ndarray:
    """0, log_every, 2 log_every, ... and the last step."""
    return np.unique(np.append(np.arange(0, steps + 1, log_every), steps))


def _values(settings, key) -> list:
    value = settings[key]
    return value if isinstance(value, list) else [value]


# What `engine.kernel = "fused"` (jaxgd/fused.py) supports, beyond which it is refused:
# setting -> allowed values; and the metrics it computes.
FUSED_KERNEL_ALLOWS = {
    # gelu: JAX's Triton backend has no rule for erfc, so the kernel would not compile on GPUs
    "model.activation": tuple(name for name in models.ACTIVATIONS if name != "gelu"),
    "optimizer.name": ("gd",),
    "model.constraint": ("none",),
    "engine.precision": ("highest",),
}
FUSED_KERNEL_METRICS = ("train_loss", "test_loss")


def _check_fused_kernel(settings, metric_names):
    def refuse(key, value, allowed):
        raise SpecError(f"{key}: got {value!r}; with engine.kernel = 'fused' expected "
                        + ("one of " if len(allowed) > 1 else "") + ", ".join(repr(v) for v in allowed))

    for key, allowed in FUSED_KERNEL_ALLOWS.items():
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
    if settings["log_every"] > settings["steps"]:
        raise SpecError(f"log_every: got {settings['log_every']}; expected 1 <= log_every <= steps = {settings['steps']}")
    real_labels = "real" in _values(settings, "data.labels")
    for name in _values(settings, "loss.name"):
        if name in losses.CLASSIFICATION_LOSSES and real_labels:
            raise SpecError(
                f"loss.name: '{name}' needs +-1 labels but data.labels includes 'real'; "
                "set data.labels = 'sign'"
            )
    for name in metric_names:
        if name in metrics.CLASSIFICATION_METRICS and real_labels:
            raise SpecError(f"metrics: '{name}' needs +-1 labels but data.labels includes 'real'; set data.labels = 'sign'")
    names = _values(settings, "data.name")
    one_dimensional = [name for name in names if name in data.ONE_DIMENSIONAL]
    one_dimensional += [name for name in metric_names if name in metrics.ONE_DIMENSIONAL_METRICS]
    if one_dimensional and _values(settings, "data.d") != [1]:
        raise SpecError(f"data.d: got {settings['data.d']!r}; {', '.join(one_dimensional)} needs data.d = 1")
    if set(_values(settings, "optimizer.name")) & set(optim.MINIBATCH):
        batch, n = max(_values(settings, "optimizer.batch_size")), min(_values(settings, "data.n"))
        if batch > n:
            raise SpecError(f"optimizer.batch_size: got {batch}; expected at most data.n = {n}")
    generated = [n for n in names if n not in data.GIVEN]
    if "parity" in names and max(_values(settings, "data.k")) > min(_values(settings, "data.d")):
        raise SpecError(f"data.k: got {settings['data.k']!r}; parity needs k <= data.d = {settings['data.d']!r}")
    if "xor" in names and min(_values(settings, "data.d")) < 2:
        raise SpecError(f"data.d: got {settings['data.d']!r}; xor needs data.d >= 2")
    if set(_values(settings, "optimizer.name")) & set(optim.ONLINE) and len(generated) < len(names):
        raise SpecError("optimizer.name: online_sgd draws fresh samples and needs a generated data set, not given data")
    for name in metric_names:
        if name in metrics.GENERATOR_METRICS and len(generated) < len(names):
            raise SpecError(f"metrics: '{name}' draws fresh samples and needs a generated data set, not given data")
        if name in metrics.TEACHER_DIRECTION_METRICS and not set(names) <= set(metrics.TEACHER_DIRECTION_DATA):
            raise SpecError(f"metrics: '{name}' needs a teacher direction w*: data.name one of {', '.join(metrics.TEACHER_DIRECTION_DATA)}")
    if "committee_risk" in metric_names and (
        _values(settings, "model.activation") != ["square"] or _values(settings, "data.name") != ["single_index"]
        or _values(settings, "data.link") != ["square"] or True in _values(settings, "model.bias")
        or _values(settings, "model.input_scaling") != ["sqrt_d"]
    ):
        raise SpecError("metrics: 'committee_risk' is the closed form for model.activation = 'square', model.input_scaling = 'sqrt_d', "
                        "no bias, on data.name = 'single_index' with data.link = 'square'; use population_risk otherwise")
    if settings["measure.escape_metric"] and settings["measure.escape_metric"] not in metric_names:
        raise SpecError(f"measure.escape_metric: got {settings['measure.escape_metric']!r}; it must be one of the spec's metrics: {', '.join(metric_names)}")
    logged = set(logged_steps(settings["steps"], settings["log_every"]).tolist())
    for key in ("measure.ntk_steps", "summary_steps"):
        unlogged = [t for t in settings[key] if t not in logged]
        if unlogged:
            raise SpecError(f"{key}: steps {unlogged} are not logged; logged steps are multiples of log_every = {settings['log_every']} and the last step {settings['steps']}")
    can_freeze = lambda key: False in _values(settings, key)
    if can_freeze("model.train_W") and can_freeze("model.train_a") and (
        can_freeze("model.train_b") or can_freeze("model.bias")
    ):
        raise SpecError("model.train_W, model.train_a, model.train_b: some run would train no layer; train at least one")


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

    @property
    def name(self) -> str:
        return self.settings["name"]

    @property
    def swept(self) -> list[str]:
        return [k for k, v in self.settings.items() if isinstance(v, list)]

    @property
    def columns(self) -> dict[str, str]:
        return column_names(self.swept)

    def to_dict(self) -> dict:
        """The nested, fully resolved spec (sweeps expanded to lists)."""
        out: dict[str, Any] = {"seeds": list(self.seeds), "metrics": list(self.metrics)}
        for key, value in self.settings.items():
            table, _, leaf = key.rpartition(".")
            (out.setdefault(table, {}) if table else out)[leaf or key] = list(value) if isinstance(value, tuple) else value
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


def _resolve_plot(raw, settings, metric_names) -> dict[str, list[dict]]:
    swept = [k for k, v in settings.items() if isinstance(v, list)]
    spec_columns, summary_steps = column_names(swept), settings["summary_steps"]
    raw = raw or {}
    if not isinstance(raw, dict):
        raise SpecError(f"[plot] must be a table, got {raw!r}")
    for kind in raw:
        if kind not in PLOT_KINDS:
            raise SpecError(f"unknown key [plot] '{kind}'{_nearest(kind, PLOT_KINDS)}; allowed: {', '.join(PLOT_KINDS)}")
    by_column = {**{c: c for c in spec_columns.values()}, **spec_columns, "seed": "seed"}
    summary_columns = ["diverged", "diverged_step"] + [
        f"{s}_{m}" for m in metric_names for s in ("final", "min", "max")
    ] + [f"{m}_at_{t}" for m in metric_names for t in summary_steps] + ["escape_step"]

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
            missing = [k for k, v in merged.items() if v is None and k not in ("file", "hue", "select")]
            if missing:
                raise SpecError(f"plot.{kind}: missing {', '.join(missing)}")
            resolved.append(merged)
        return resolved

    def axis(kind, key, value):
        if value not in by_column:
            raise SpecError(
                f"plot.{kind}.{key}: got {value!r}; expected a swept setting: "
                + (", ".join(spec_columns.values()) or "(nothing is swept)")
            )
        return by_column[value]

    def check_select(kind, entry):
        chosen = entry["select"] or {}
        if not isinstance(chosen, dict):
            raise SpecError(f"plot.{kind}.select: got {chosen!r}; expected a table {{setting = value}}")
        # A value that is not swept (say after --set model.width=...) skips the figure when it is drawn.
        entry["select"] = {axis(kind, "select", k): v for k, v in chosen.items()} or None

    def check_lines(kind, entry):
        """select, hue and logy of curves and lines."""
        check_select(kind, entry)
        if not isinstance(entry["logy"], bool):
            raise SpecError(f"plot.{kind}.logy: got {entry['logy']!r}; expected true or false")
        if entry["hue"] is not None:
            entry["hue"] = axis(kind, "hue", entry["hue"])

    phases = entries("phase_diagram", PHASE_KEYS)
    for p in phases:
        check_select("phase_diagram", p)
        p["x"], p["y"] = axis("phase_diagram", "x", p["x"]), axis("phase_diagram", "y", p["y"])
        if p["value"] not in summary_columns:
            raise SpecError(f"plot.phase_diagram.value: got {p['value']!r}{_nearest(p['value'], summary_columns)}; expected a summary column: {', '.join(summary_columns)}")
        if p["reduce"] not in REDUCERS:
            raise SpecError(f"plot.phase_diagram.reduce: got {p['reduce']!r}; expected one of {', '.join(REDUCERS)}")
        p["file"] = p["file"] or f"phase_{p['value']}_{p['x']}_{p['y']}.png"
    curves = entries("curves", CURVE_KEYS)
    for c in curves:
        if c["metric"] not in metric_names:
            raise SpecError(f"plot.curves.metric: got {c['metric']!r}; expected one of the spec's metrics: {', '.join(metric_names)}")
        check_lines("curves", c)
        if c["x"] != "step" and c["x"] not in metric_names:
            raise SpecError(f"plot.curves.x: got {c['x']!r}; expected 'step' or one of the spec's metrics: {', '.join(metric_names)}")
        c["file"] = c["file"] or f"curves_{c['metric']}.png"
    line_plots = entries("lines", LINE_KEYS)
    for entry in line_plots:
        entry["x"] = axis("lines", "x", entry["x"])
        entry["y"] = [entry["y"]] if isinstance(entry["y"], str) else entry["y"]
        for column in entry["y"]:
            if column not in summary_columns:
                raise SpecError(f"plot.lines.y: got {column!r}{_nearest(str(column), summary_columns)}; expected summary columns: {', '.join(summary_columns)}")
        if entry["reduce"] not in REDUCERS:
            raise SpecError(f"plot.lines.reduce: got {entry['reduce']!r}; expected one of {', '.join(REDUCERS)}")
        check_lines("lines", entry)
        entry["file"] = entry["file"] or f"lines_{'_'.join(entry['y'])}_{entry['x']}.png"
    return {"phase_diagram": phases, "curves": curves, "lines": line_plots}


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
        arrays = given.validate(inline_arrays, "data (inline)")
    else:
        arrays = given.from_files(settings["data.path"], settings["data.test_path"], base)
        for key in ("data.path", "data.test_path"):  # absolute, so the saved spec runs from anywhere
            if settings[key]:
                settings[key] = str((base / settings[key]) if base and not Path(settings[key]).is_absolute() else Path(settings[key]))
    for key, value in (("data.n", arrays.n), ("data.n_test", arrays.n_test), ("data.d", arrays.d)):
        if key in flat and settings[key] != value:
            raise SpecError(f"{key}: got {settings[key]!r} but the given data ({arrays.source}) have {value}")
        settings[key] = value
    return arrays


def load(spec, overrides=None) -> Spec:
    """Read, override, expand and validate a spec (a TOML path or a dict)."""
    if isinstance(spec, Spec):
        spec = spec.to_dict()
    base = None  # where relative data paths start
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        base = path.resolve().parent
        if not path.is_file():
            raise SpecError(f"spec file not found: {path}")
        with path.open("rb") as f:
            try:
                raw = tomllib.load(f)
            except tomllib.TOMLDecodeError as err:
                raise SpecError(f"{path}: not valid TOML: {err}") from None
    elif isinstance(spec, dict):
        raw = copy.deepcopy(spec)
    else:
        raise SpecError(f"spec: expected a path to a TOML file or a dict, got {type(spec).__name__}")

    flat = _flatten(raw)
    plot_raw = flat.pop("plot", None)
    inline_arrays = {k: flat.pop(f"data.{k}") for k in given.ARRAY_NAMES if f"data.{k}" in flat}
    for key, value in parse_overrides(overrides).items():
        if key == "plot" or key.startswith("plot."):
            raise SpecError(f"override {key!r}: plot tables cannot be overridden; edit the spec")
        _check_known(key)
        flat[key] = value
    for key in flat:
        _check_known(key)

    settings = {key: _resolve_setting(key, flat.get(key, s.default)) for key, s in SCHEMA.items()}
    arrays = _resolve_given(settings, flat, inline_arrays, base)
    seeds = _resolve_seeds(flat.get("seeds", DEFAULT_SEEDS))
    metric_names = _resolve_metrics(flat.get("metrics", list(DEFAULT_METRICS)))
    _check_combinations(settings, metric_names)
    plot = _resolve_plot(plot_raw, settings, metric_names)
    return Spec(settings=settings, seeds=seeds, metrics=metric_names, plot=plot, given=arrays)


def _first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def settings_table(prefix: str = "") -> list[dict]:
    """Every setting, metric and data set whose key starts with `prefix`, from the sources
    validation reads (SCHEMA, metrics.METRICS, data.DATASETS): rows of key, type, kind
    ('traced' or 'static'), default, allowed and doc. Metrics and data sets are rows
    `metrics: NAME` and `data.name: NAME`. What `jaxgd settings` prints."""
    from jaxgd.plan import is_traced  # plan reads this module

    def type_name(setting: Setting) -> str:
        name = "list of steps" if setting.type is tuple else setting.type.__name__
        return name if setting.sweepable else f"{name} (not sweepable)"

    rows = [
        dict(key="seeds", type="int or list", kind="static", default=DEFAULT_SEEDS, allowed=SEEDS_ALLOWED,
             doc="random seeds: a count k (seeds 0..k-1) or a list"),
        dict(key="metrics", type="list of str", kind="static", default=list(DEFAULT_METRICS),
             allowed="metric names, below", doc="metrics logged every log_every steps"),
    ]
    rows += [dict(key=key, type=type_name(s), kind="traced" if is_traced(key) else "static", default=s.default,
                  allowed=_allowed(s), doc=s.doc) for key, s in SCHEMA.items()]
    rows += [dict(key=f"metrics: {name}", type="metric", kind="static", default=None, allowed="",
                  doc=_first_paragraph(f.__doc__)) for name, f in metrics.METRICS.items()]
    rows += [dict(key=f"data.name: {name}", type="data set", kind="static", default=None, allowed="",
                  doc=_first_paragraph(generator.sample.__doc__)) for name, generator in data.DATASETS.items()]
    return [row for row in rows if row["key"].startswith(prefix)]
