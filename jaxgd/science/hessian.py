"""The top eigenvalue of a loss Hessian by power iteration on Hessian-vector products
(forward-over-reverse), never forming the Hessian."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def top_eigenpair(loss, params, vector, iterations: int):
    """(lambda, v): the eigenvalue of largest magnitude of the Hessian of `loss` at
    `params` and its unit eigenvector (flat, like `ravel_pytree(params)`), from
    `iterations` power steps started at `vector` (warm-started by the caller)."""
    flat, unravel = ravel_pytree(params)
    grad = jax.grad(lambda p: loss(unravel(p)))
    hvp = lambda v: jax.jvp(grad, (flat,), (v,))[1]
    unit = lambda v: v / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(v.dtype).tiny)
    v = jax.lax.fori_loop(0, iterations, lambda _, v: unit(hvp(v)), unit(vector))
    return jnp.vdot(v, hvp(v)), v
