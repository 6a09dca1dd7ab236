"""Metrics: one registry entry per metric, `metric(cfg, snapshot) -> scalar`, evaluated
inside the compiled loop every `log_every` steps."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxgd import data as datasets
from jaxgd import losses, models, optim, rng
from jaxgd.data import Dataset


class Snapshot(NamedTuple):
    """What a metric may look at: the parameters now, at initialization and at the
    anchor step `measure.displacement_from`, the data and teacher, the current step, and
    what the training loop tracks step by step."""

    params: dict  # every layer, now
    initial: dict  # every layer at step 0
    anchor: dict | None  # the trained layers at the anchor step (tracked only for `displacement`)
    data: Dataset
    teacher: Any  # the data set's teacher (None where there is none)
    step: jax.Array
    key: jax.Array  # for Monte Carlo metrics: a key of this run and step
    tracked: dict  # "sharpness", "loss_increases", "last_increase_step" where tracked


def _sq_norm(tree) -> jax.Array:
    return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(tree))


def train_loss(cfg, s):
    return losses.loss(cfg, s.params, s.data.X_train, s.data.y_train)


def test_loss(cfg, s):
    return losses.loss(cfg, s.params, s.data.X_test, s.data.y_test)


def huber_loss(cfg, s):
    """Huber loss (delta = loss.huber_delta) on the training set, whatever the training loss."""
    return losses.huber(models.predict(cfg, s.params, s.data.X_train), s.data.y_train, cfg)


def grad_norm(cfg, s):
    """Euclidean norm of the training-loss gradient over the trained layers."""
    trainable, frozen = models.split_trainable(cfg, s.params)
    grads = jax.grad(lambda t: losses.loss(cfg, {**frozen, **t}, s.data.X_train, s.data.y_train))(trainable)
    return jnp.sqrt(_sq_norm(grads))


def _error(cfg, params, X, y):
    """Fraction of samples with sign(f(x)) != y (f = 0 counts as an error)."""
    return jnp.mean(jnp.sign(models.predict(cfg, params, X)) != y)


def _layer_norm(name):
    """Frobenius / Euclidean norm of one layer (0 where the model has no such layer)."""
    return lambda cfg, s: jnp.linalg.norm(s.params[name]) if name in s.params else jnp.zeros((), cfg["dtype"])


def _relative_movement(name):
    """||p_t - p_0|| / ||p_0|| for one layer."""
    return lambda cfg, s: jnp.linalg.norm(s.params[name] - s.initial[name]) / jnp.linalg.norm(s.initial[name])


def lipschitz_lower(cfg, s):
    """max over training and test inputs of ||grad_x f(x)||: a lower bound on Lip(f)."""
    grad_x = jax.vmap(jax.grad(lambda x: models.predict(cfg, s.params, x[None])[0]))
    X = jnp.concatenate([s.data.X_train, s.data.X_test])
    return jnp.max(jnp.linalg.norm(grad_x(X), axis=1))


def lipschitz_fd(cfg, s):
    """d = 1: the largest finite-difference slope of f on a grid of measure.fd_points
    points spanning the training and test inputs."""
    x = jnp.concatenate([s.data.X_train, s.data.X_test])[:, 0]
    grid = jnp.linspace(jnp.min(x), jnp.max(x), cfg["measure.fd_points"])
    f = models.predict(cfg, s.params, grid[:, None])
    return jnp.max(jnp.abs(jnp.diff(f)) / (grid[1] - grid[0]))


def lipschitz_upper(cfg, s):
    """Lip(act) * c_m * ||a||_2 * ||W||_op (/ sqrt(d) with input scaling): an upper bound on Lip(f)."""
    lip_act = models.ACTIVATIONS[cfg["model.activation"]].lipschitz(cfg)
    W_op = models.input_scale(cfg) * jnp.linalg.norm(s.params["W"], ord=2)
    return lip_act * models.output_scale(cfg) * jnp.linalg.norm(s.params["a"]) * W_op


def displacement(cfg, s):
    """||theta_t - theta_t0|| over the trained layers, t0 = measure.displacement_from
    (NaN before t0)."""
    trainable, _ = models.split_trainable(cfg, s.params)
    moved = jnp.sqrt(_sq_norm(jax.tree.map(jnp.subtract, trainable, s.anchor)))
    return jnp.where(s.step >= cfg["measure.displacement_from"], moved, jnp.nan)


def pattern_flips(cfg, s):
    """Fraction of (training sample, unit) pairs whose ReLU pattern 1[w_j . x_i + b_j > 0]
    differs from the one at initialization."""
    now = models.pre_activations(cfg, s.params, s.data.X_train) > 0
    start = models.pre_activations(cfg, s.initial, s.data.X_train) > 0
    return jnp.mean(now != start)


def ntk_min_eig(cfg, s):
    """Smallest eigenvalue of the empirical NTK Gram matrix K = J J^T over the training
    inputs, J the Jacobian of f(X) in the trained layers."""
    trainable, frozen = models.split_trainable(cfg, s.params)
    jacobian = jax.jacrev(lambda t: models.predict(cfg, {**frozen, **t}, s.data.X_train))(trainable)
    n = s.data.X_train.shape[0]
    J = jnp.concatenate([j.reshape(n, -1) for j in jax.tree.leaves(jacobian)], axis=1)
    return jnp.linalg.eigvalsh(J @ J.T)[0]


def symmetry_C(cfg, s):
    """C = ||W||_F^2 - ||a||^2, conserved by gradient flow under the rescaling symmetry
    (for bias-free nets with a homogeneous activation)."""
    return jnp.sum(s.params["W"] ** 2) - jnp.sum(s.params["a"] ** 2)


def margin_degree(cfg):
    """k of the normalized margin: measure.margin_degree, or the homogeneity degree of f
    in the trained layers (deg(act) for W, 1 for a) where it is 0."""
    layers = models.trainable_layers(cfg)
    auto = ("W" in layers) * models.HOMOGENEITY.get(cfg["model.activation"], 1) + ("a" in layers)
    return jnp.where(cfg["measure.margin_degree"] > 0, cfg["measure.margin_degree"], auto)


def margin(cfg, s):
    """Normalized margin min_i y_i f(x_i) / ||theta||^k over the training set, theta the
    trained layers."""
    trainable, _ = models.split_trainable(cfg, s.params)
    f = models.predict(cfg, s.params, s.data.X_train)
    return jnp.min(s.data.y_train * f) / jnp.sqrt(_sq_norm(trainable)) ** margin_degree(cfg)


def movement_sqrt_m(cfg, s):
    """||W_t - W_0||_F / sqrt(m)."""
    return jnp.linalg.norm(s.params["W"] - s.initial["W"]) / jnp.sqrt(cfg["model.width"])


def rotation(cfg, s):
    """Mean over units of the cosine between w_j(t) and w_j(0)."""
    W, W0 = s.params["W"], s.initial["W"]
    return jnp.mean(jnp.sum(W * W0, axis=1) / (jnp.linalg.norm(W, axis=1) * jnp.linalg.norm(W0, axis=1)))


def _row_norms(s):
    return jnp.linalg.norm(s.params["W"], axis=1)


def _overlaps(cfg, s):
    """M_j = w_j . w* / d."""
    return s.params["W"] @ s.teacher / cfg["data.d"]


def _gram(cfg, s):
    """Q = W W^T / d."""
    return s.params["W"] @ s.params["W"].T / cfg["data.d"]


def q_offdiag_mean(cfg, s):
    Q, m = _gram(cfg, s), cfg["model.width"]
    return (jnp.sum(jnp.abs(Q)) - jnp.sum(jnp.abs(jnp.diag(Q)))) / max(m * (m - 1), 1)


def committee_risk(cfg, s):
    """Population risk E 0.5 (f - y)^2 in closed form for f = c_m sum_j a_j u_j^2,
    u_j = w_j . x / sqrt(d), and y = v^2 + sqrt(Delta) z, v = w* . x / sqrt(d),
    x ~ N(0, I_d): with Q = W W^T / d, M = W w* / d, P = w*.w*/d = 1 (Gaussian moments,
    E u_j^2 u_l^2 = Q_jj Q_ll + 2 Q_jl^2),
    2 R = sum_jl c^2 a_j a_l (Q_jj Q_ll + 2 Q_jl^2) - 2 sum_j c a_j (Q_jj + 2 M_j^2) + 3 + Delta."""
    Q, M, ca = _gram(cfg, s), _overlaps(cfg, s), models.output_scale(cfg) * s.params["a"]
    q = jnp.diag(Q)
    student = ca @ (jnp.outer(q, q) + 2 * Q**2) @ ca
    cross = ca @ (q + 2 * M**2)
    return 0.5 * (student - 2 * cross + 3.0 + cfg["data.noise"] ** 2)


def population_risk(cfg, s):
    """Monte Carlo estimate of the population risk (the training loss on
    measure.mc_samples fresh samples from the data set's generator)."""
    build = lambda draws: datasets.sample(cfg, draws, cfg["measure.mc_samples"], s.teacher)
    X, y = rng.draw(s.key, build, cfg["dtype"])
    return losses.loss(cfg, s.params, X, y)


METRICS = {
    "train_loss": train_loss,
    "test_loss": test_loss,
    "huber_loss": huber_loss,
    "grad_norm": grad_norm,
    "norm_W": _layer_norm("W"),
    "norm_a": _layer_norm("a"),
    "norm_b": _layer_norm("b"),
    "train_error": lambda cfg, s: _error(cfg, s.params, s.data.X_train, s.data.y_train),
    "test_error": lambda cfg, s: _error(cfg, s.params, s.data.X_test, s.data.y_test),
    "lipschitz_lower": lipschitz_lower,
    "lipschitz_fd": lipschitz_fd,
    "lipschitz_upper": lipschitz_upper,
    "displacement": displacement,
    "movement_W": _relative_movement("W"),
    "movement_a": _relative_movement("a"),
    "pattern_flips": pattern_flips,
    "ntk_min_eig": ntk_min_eig,
    "symmetry_C": symmetry_C,
    "step_size": lambda cfg, s: optim.step_size(cfg, s.step),
    "margin": margin,
    "movement_sqrt_m": movement_sqrt_m,
    "rotation": rotation,
    "row_norm_min": lambda cfg, s: jnp.min(_row_norms(s)),
    "row_norm_max": lambda cfg, s: jnp.max(_row_norms(s)),
    "overlap_max": lambda cfg, s: jnp.max(jnp.abs(_overlaps(cfg, s))),
    "overlap_mean": lambda cfg, s: jnp.mean(jnp.abs(_overlaps(cfg, s))),
    "q_diag_mean": lambda cfg, s: jnp.mean(jnp.diag(_gram(cfg, s))),
    "q_offdiag_mean": q_offdiag_mean,
    "committee_risk": committee_risk,
    "population_risk": population_risk,
    # t = steps * lr / (m d): the time of online SGD in the paper-5 units (constant lr)
    "online_time": lambda cfg, s: s.step * cfg["optimizer.lr"] / (cfg["model.width"] * cfg["data.d"]),
    "sharpness": lambda cfg, s: s.tracked["sharpness"],
    "lr_sharpness": lambda cfg, s: optim.step_size(cfg, s.step) * s.tracked["sharpness"],
    "loss_increases": lambda cfg, s: s.tracked["loss_increases"],
    "last_increase_step": lambda cfg, s: s.tracked["last_increase_step"],
}

# Metrics that only make sense with +-1 labels (`data.labels = "sign"`).
CLASSIFICATION_METRICS = ("train_error", "test_error")
# Metrics defined for one-dimensional inputs only.
ONE_DIMENSIONAL_METRICS = ("lipschitz_fd",)
# Costly metrics, computed only at the logged steps listed in `measure.ntk_steps` (all if empty).
AT_CHOSEN_STEPS = ("ntk_min_eig",)
# Metrics that need a teacher direction w* (data sets drawing one vector w*).
TEACHER_DIRECTION_METRICS = ("overlap_max", "overlap_mean", "committee_risk")
TEACHER_DIRECTION_DATA = ("linear_teacher", "relu_teacher", "single_index")
# Metrics that need fresh samples from a generator.
GENERATOR_METRICS = ("population_risk",)
# Metrics the training loop must track step by step.
SHARPNESS_METRICS = ("sharpness", "lr_sharpness")
INCREASE_METRICS = ("loss_increases", "last_increase_step")


def compute(cfg, s: Snapshot) -> dict[str, jax.Array]:
    """All metrics the spec asks for, cast to the run's dtype."""
    values = {}
    chosen = cfg["measure.ntk_steps"]
    for name in cfg["metrics"]:
        metric = lambda name=name: METRICS[name](cfg, s).astype(cfg["dtype"])
        if name in AT_CHOSEN_STEPS and chosen:
            # The step is the same for every run of a chunk, so this stays a real branch under vmap.
            skip = lambda: jnp.full((), jnp.nan, cfg["dtype"])
            values[name] = jax.lax.cond(jnp.isin(s.step, jnp.asarray(chosen)), metric, skip)
        else:
            values[name] = metric()
    return values
