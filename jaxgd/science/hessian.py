"""Eigenvalues of a loss Hessian by power iteration on Hessian-vector products
(forward-over-reverse), never forming the Hessian."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def power_iteration(hvp, vector, iterations: int):
    """(lambda, v): the eigenvalue of largest magnitude of the operator `hvp` and its unit
    eigenvector, from `iterations` power steps started at `vector`."""
    unit = lambda v: v / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(v.dtype).tiny)
    v = jax.lax.fori_loop(0, iterations, lambda _, v: unit(hvp(v)), unit(vector))
    return jnp.vdot(v, hvp(v)), v


def eigenpairs(loss, params, vectors, iterations: int):
    """The eigenvalue of largest magnitude and the top (largest algebraic) eigenvalue of
    the Hessian of `loss` at `params`, with their unit eigenvectors (flat, like
    `ravel_pytree(params)`), by power iteration warm-started at `vectors` (a pair):
    ((extreme, v), (top, u)). Where the extreme eigenvalue is negative it is the
    smallest, so the Hessian shifted by it has only eigenvalues >= 0 and its largest is
    top - extreme; where it is >= 0 it is the top."""
    flat, unravel = ravel_pytree(params)
    grad = jax.grad(lambda p: loss(unravel(p)))
    hvp = lambda v: jax.jvp(grad, (flat,), (v,))[1]
    extreme, v = power_iteration(hvp, vectors[0], iterations)
    shift = jnp.minimum(extreme, 0.0)
    shifted, u = power_iteration(lambda x: hvp(x) - shift * x, vectors[1], iterations)
    return (extreme, v), (jnp.where(extreme >= 0, extreme, shifted + shift), u)
