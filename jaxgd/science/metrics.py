"""Metrics (registered components): `metric(s, *, settings) -> scalar`, settings under
[measure], evaluated inside the compiled loop every `log_every` steps on a Snapshot."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxgd.science.data import Dataset
from jaxgd.science.losses import huber
from jaxgd.science.models import Network
from jaxgd.science.registry import metric


class Snapshot(NamedTuple):
    """What a metric may look at."""

    params: dict  # every layer, now
    initial: dict  # every layer at step 0
    anchor: dict | None  # the trained layers at the anchor step (tracked only for `displacement`)
    data: Dataset
    teacher: Any  # the data set's teacher (None where there is none)
    step: jax.Array
    key: jax.Array  # for Monte Carlo metrics: a key of this run and step
    tracked: dict  # "hessian_top", "hessian_extreme", "loss_increases", "last_increase_step" where tracked
    predict: Network  # f(params, X) -> (n,)
    loss: Callable  # the training loss (params, X, y) -> scalar
    trained: tuple  # names of the trained layers
    lr_scales: dict  # layer -> the factor of its step size (optimizer.lr_scale_<layer>)
    lr: jax.Array  # the step size lr_t of the update at this step
    sample_fresh: Callable  # (key, n) -> n fresh samples (X, y) of a generated data set
    cfg: Any  # the run's settings, read by attribute: s.cfg.model.width


def _sq_norm(tree) -> jax.Array:
    return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(tree))


def _trainable(s):
    return {k: v for k, v in s.params.items() if k in s.trained}


@metric("train_loss")
def train_loss(s):
    """The training loss on the training set."""
    return s.loss(s.params, s.data.X_train, s.data.y_train)


@metric("test_loss")
def test_loss(s):
    """The training loss on the test set."""
    return s.loss(s.params, s.data.X_test, s.data.y_test)


@metric("huber_loss")
def huber_loss(s):
    """Huber loss (delta = loss.huber_delta) on the training set, whatever the training loss."""
    return huber(s.predict(s.params, s.data.X_train), s.data.y_train, huber_delta=s.cfg.loss.huber_delta)


@metric("grad_norm")
def grad_norm(s):
    """Euclidean norm of the training-loss gradient over the trained layers."""
    frozen = {k: v for k, v in s.params.items() if k not in s.trained}
    grads = jax.grad(lambda t: s.loss({**frozen, **t}, s.data.X_train, s.data.y_train))(_trainable(s))
    return jnp.sqrt(_sq_norm(grads))


def _layer_norm(name):
    def norm(s):
        return jnp.linalg.norm(s.params[name]) if name in s.params else jnp.zeros((), s.cfg.dtype)

    norm.__doc__ = f"Frobenius / Euclidean norm of {name} (0 where the model has no such layer)."
    return norm


for _name in ("W", "a", "b"):
    metric(f"norm_{_name}")(_layer_norm(_name))


def _error(s, X, y):
    """Fraction of samples with sign(f(x)) != y (f = 0 counts as an error)."""
    return jnp.mean(jnp.sign(s.predict(s.params, X)) != y)


@metric("train_error", labels_pm1=True)
def train_error(s):
    """Fraction of training samples with sign(f(x)) != y."""
    return _error(s, s.data.X_train, s.data.y_train)


@metric("test_error", labels_pm1=True)
def test_error(s):
    """Fraction of test samples with sign(f(x)) != y."""
    return _error(s, s.data.X_test, s.data.y_test)


@metric("lipschitz_lower")
def lipschitz_lower(s):
    """max over training and test inputs of ||grad_x f(x)||: a lower bound on Lip(f)."""
    grad_x = jax.vmap(jax.grad(lambda x: s.predict(s.params, x[None])[0]))
    X = jnp.concatenate([s.data.X_train, s.data.X_test])
    return jnp.max(jnp.linalg.norm(grad_x(X), axis=1))


@metric("lipschitz_fd", one_dimensional=True, minimum={"fd_points": 2})
def lipschitz_fd(s, *, fd_points: int = 1024):
    """d = 1: the largest finite-difference slope of f on a grid spanning the inputs.
    fd_points: grid points of `lipschitz_fd`"""
    x = jnp.concatenate([s.data.X_train, s.data.X_test])[:, 0]
    grid = jnp.linspace(jnp.min(x), jnp.max(x), fd_points)
    f = s.predict(s.params, grid[:, None])
    return jnp.max(jnp.abs(jnp.diff(f)) / (grid[1] - grid[0]))


@metric("lipschitz_upper")
def lipschitz_upper(s):
    """Lip(act) * c_m * ||a||_2 * ||W||_op (/ sqrt(d) with input scaling): an upper bound on Lip(f)."""
    W_op = s.predict.input_scale * jnp.linalg.norm(s.params["W"], ord=2)
    return s.predict.lipschitz * s.predict.output_scale * jnp.linalg.norm(s.params["a"]) * W_op


@metric("displacement", minimum={"displacement_from": 0.0})
def displacement(s, *, displacement_from: float = 0.0):
    """||theta_t - theta_t0|| over the trained layers (NaN before t0).
    displacement_from: t0 of `displacement`"""
    moved = jnp.sqrt(_sq_norm(jax.tree.map(jnp.subtract, _trainable(s), s.anchor)))
    return jnp.where(s.step >= displacement_from, moved, jnp.nan)


def _relative_movement(name):
    def movement(s):
        return jnp.linalg.norm(s.params[name] - s.initial[name]) / jnp.linalg.norm(s.initial[name])

    movement.__doc__ = f"||{name}_t - {name}_0|| / ||{name}_0||."
    return movement


for _name in ("W", "a"):
    metric(f"movement_{_name}")(_relative_movement(_name))


@metric("pattern_flips")
def pattern_flips(s):
    """Fraction of (training sample, unit) pairs whose ReLU pattern 1[w_j . x_i + b_j > 0]
    differs from the one at initialization."""
    now = s.predict.pre_activations(s.params, s.data.X_train) > 0
    start = s.predict.pre_activations(s.initial, s.data.X_train) > 0
    return jnp.mean(now != start)


@metric("ntk_min_eig", at_ntk_steps=True)
def ntk_min_eig(s):
    """Smallest eigenvalue of the empirical NTK Gram matrix over the training inputs,
    K = sum_l kappa_l J_l J_l^T, J_l the Jacobian of f(X) in trained layer l and kappa_l
    its step size factor (optimizer.lr_scale_<l>): the kernel of gradient descent with
    per-layer step sizes, df = -lr K grad_f L. With every factor 1 (the default) it is
    the usual J J^T; a layer of factor 0 (kappa = 0: the first layer alone) adds nothing."""
    return jnp.linalg.eigvalsh(ntk_gram(s.predict, s.params, s.data.X_train, trained=s.trained,
                                        lr_scales=s.lr_scales))[0]


def ntk_gram(predict, params, X, *, trained, lr_scales):
    """The empirical NTK Gram matrix K = sum_l lr_scales[l] J_l J_l^T over the inputs X,
    J_l the Jacobian of f(X) = predict(params, X) in trained layer l."""
    frozen = {k: v for k, v in params.items() if k not in trained}
    jacobian = jax.jacrev(lambda t: predict({**frozen, **t}, X))({k: v for k, v in params.items() if k in trained})
    # one product of the blocks scaled by sqrt(kappa_l) (factors are >= 0): the usual J J^T, to the bit, at factors 1
    J = jnp.concatenate([jnp.sqrt(lr_scales[layer]) * j.reshape(X.shape[0], -1) for layer, j in sorted(jacobian.items())], axis=1)
    return J @ J.T


@metric("symmetry_C")
def symmetry_C(s):
    """C = ||W||_F^2 - ||a||^2, conserved by gradient flow under the rescaling symmetry
    (for bias-free nets with a homogeneous activation)."""
    return jnp.sum(s.params["W"] ** 2) - jnp.sum(s.params["a"] ** 2)


@metric("step_size")
def step_size(s):
    """The step size lr_t of the schedule (before per-layer multipliers)."""
    return s.lr


@metric("margin", minimum={"margin_degree": 0.0})
def margin(s, *, margin_degree: float = 0.0):
    """Normalized margin min_i y_i f(x_i) / ||theta||^k over the training set, theta the
    trained layers; k = margin_degree, or f's homogeneity degree in them (deg(act) for W,
    1 for a) where it is 0.
    margin_degree: k of `margin` (0: the homogeneity degree of f in the trained layers: deg(act) for W, + 1 for a)"""
    auto = ("W" in s.trained) * s.predict.homogeneity + ("a" in s.trained)
    k = jnp.where(margin_degree > 0, margin_degree, auto)
    f = s.predict(s.params, s.data.X_train)
    return jnp.min(s.data.y_train * f) / jnp.sqrt(_sq_norm(_trainable(s))) ** k


@metric("movement_sqrt_m")
def movement_sqrt_m(s):
    """||W_t - W_0||_F / sqrt(m)."""
    return jnp.linalg.norm(s.params["W"] - s.initial["W"]) / jnp.sqrt(s.params["W"].shape[0])


@metric("rotation")
def rotation(s):
    """Mean over units of the cosine between w_j(t) and w_j(0); a row of zero length has
    no direction and is left out (NaN if every row is)."""
    W, W0 = s.params["W"], s.initial["W"]
    lengths = jnp.linalg.norm(W, axis=1) * jnp.linalg.norm(W0, axis=1)
    has_direction = lengths > 0
    cosines = jnp.sum(W * W0, axis=1) / jnp.where(has_direction, lengths, 1.0)
    return jnp.sum(jnp.where(has_direction, cosines, 0.0)) / jnp.sum(has_direction)


def _row_norms(s):
    return jnp.linalg.norm(s.params["W"], axis=1)


@metric("row_norm_min")
def row_norm_min(s):
    """Smallest row norm of W."""
    return jnp.min(_row_norms(s))


@metric("row_norm_max")
def row_norm_max(s):
    """Largest row norm of W."""
    return jnp.max(_row_norms(s))


def _overlaps(s):
    """M_j = w_j . w* / d."""
    return s.params["W"] @ s.teacher / s.params["W"].shape[1]


def _gram(s):
    """Q = W W^T / d."""
    return s.params["W"] @ s.params["W"].T / s.params["W"].shape[1]


@metric("overlap_max", teacher_direction=True)
def overlap_max(s):
    """max_j |M_j|, M_j = w_j . w* / d."""
    return jnp.max(jnp.abs(_overlaps(s)))


@metric("overlap_mean", teacher_direction=True)
def overlap_mean(s):
    """mean_j |M_j|, M_j = w_j . w* / d."""
    return jnp.mean(jnp.abs(_overlaps(s)))


@metric("q_diag_mean")
def q_diag_mean(s):
    """mean_j Q_jj, Q = W W^T / d."""
    return jnp.mean(jnp.diag(_gram(s)))


@metric("q_offdiag_mean")
def q_offdiag_mean(s):
    """mean_{j != l} |Q_jl|, Q = W W^T / d."""
    Q, m = _gram(s), s.params["W"].shape[0]
    return (jnp.sum(jnp.abs(Q)) - jnp.sum(jnp.abs(jnp.diag(Q)))) / max(m * (m - 1), 1)


def _committee_setting(cfg):
    fits = (cfg.model.activation == "square" and cfg.data.name == "single_index" and cfg.data.link == "square"
            and not cfg.model.bias and cfg.model.input_scaling == "sqrt_d")
    return None if fits else (
        "'committee_risk' is the closed form for model.activation = 'square', model.input_scaling = 'sqrt_d', "
        "no bias, on data.name = 'single_index' with data.link = 'square'; use population_risk otherwise")


@metric("committee_risk", teacher_direction=True, requires=_committee_setting)
def committee_risk(s):
    """Risk E 0.5 (f - v^2)^2 in closed form, as paper 5's authors define it (without the
    label noise: population_risk, on noisy labels y = v^2 + sqrt(Delta) z, is this plus
    Delta / 2), for f = c_m sum_j a_j u_j^2, u_j = w_j . x / sqrt(d), v = w* . x / sqrt(d),
    x ~ N(0, I_d): with Q = W W^T / d, M = W w* / d, P = w*.w*/d = 1 (Gaussian moments,
    E u_j^2 u_l^2 = Q_jj Q_ll + 2 Q_jl^2),
    2 R = sum_jl c^2 a_j a_l (Q_jj Q_ll + 2 Q_jl^2) - 2 sum_j c a_j (Q_jj + 2 M_j^2) + 3."""
    Q, M, ca = _gram(s), _overlaps(s), s.predict.output_scale * s.params["a"]
    q = jnp.diag(Q)
    student = ca @ (jnp.outer(q, q) + 2 * Q**2) @ ca
    cross = ca @ (q + 2 * M**2)
    return 0.5 * (student - 2 * cross + 3.0)


@metric("population_risk", fresh_samples=True, minimum={"mc_samples": 1})
def population_risk(s, *, mc_samples: int = 4096):
    """Monte Carlo estimate of the population risk (the training loss on fresh samples
    from the data set's generator).
    mc_samples: fresh samples of `population_risk`"""
    X, y = s.sample_fresh(s.key, mc_samples)
    return s.loss(s.params, X, y)


@metric("online_time")
def online_time(s):
    """t = steps * lr / (m d): the time of online SGD in the units of paper 5 (constant lr)."""
    m, d = s.params["W"].shape
    return s.step * s.cfg.optimizer.lr / (m * d)


HESSIAN = {"tracks": "hessian", "minimum": {"sharpness_iterations": 1}}


@metric("sharpness", **HESSIAN)
def sharpness(s, *, sharpness_iterations: int = 20):
    """The top (largest algebraic) eigenvalue of the training-loss Hessian, by power
    iteration warm-started from the previous logged step (shifted by the smallest
    eigenvalue where that one is larger in magnitude).
    sharpness_iterations: power iterations per logged step for `sharpness`, `lr_sharpness` and `hessian_max_abs_eig`, warm-started from the last logged step"""
    return s.tracked["hessian_top"]


@metric("lr_sharpness", **HESSIAN)
def lr_sharpness(s, *, sharpness_iterations: int = 20):
    """lr_t times the sharpness (the top eigenvalue): 2 at the edge of stability."""
    return s.lr * s.tracked["hessian_top"]


@metric("hessian_max_abs_eig", **HESSIAN)
def hessian_max_abs_eig(s, *, sharpness_iterations: int = 20):
    """The eigenvalue of largest magnitude of the training-loss Hessian (negative where
    the most negative eigenvalue outweighs the top one)."""
    return s.tracked["hessian_extreme"]


@metric("loss_increases", tracks="increases")
def loss_increases(s):
    """Number of steps so far at which the training loss went up."""
    return s.tracked["loss_increases"]


@metric("last_increase_step", tracks="increases")
def last_increase_step(s):
    """The last step at which the training loss went up (-1 before the first)."""
    return s.tracked["last_increase_step"]
