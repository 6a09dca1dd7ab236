"""Randomness of a run. Everything random about a run (teacher, samples, label noise,
initial parameters) is cut, in a fixed order, from one vector of standard Gaussians
drawn from a key that depends on the run's seed alone, never on its place in a chunk.

One draw rather than one per array: each draw adds a generator to the compiled program
(about 0.3 s of CPU compile time each). Threefry keys are partitionable, so the first
k values of a draw do not depend on its length: the data, cut first, are the same for
every width.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


class Draws:
    """Consecutive slices of one vector of N(0, 1) values; `normal(shape)` takes the
    next prod(shape) of them. Built without values, it only counts what is taken.
    `key()` hands out keys folded from `base_key`, one per call, for components that
    draw with `jax.random` themselves (a data set whose first argument is `key`)."""

    def __init__(self, values: jax.Array | None, dtype, base_key: jax.Array | None = None):
        self.values, self.dtype, self.taken = values, dtype, 0
        self.base_key, self.keys_taken = base_key, 0

    def key(self) -> jax.Array:
        self.keys_taken += 1
        return jax.random.fold_in(self.base_key, self.keys_taken)

    def normal(self, shape) -> jax.Array:
        size = math.prod(shape)
        start, self.taken = self.taken, self.taken + size
        if self.values is None:
            return jnp.zeros(shape, self.dtype)
        return self.values[start : start + size].reshape(shape)


def run_keys(seed) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(draws, batches, metrics) keys of a run: the first feeds `draw`, the second picks
    batches step by step, the third feeds Monte Carlo metrics. (Splits are prefix-stable:
    adding a key changes none of the others.)"""
    draws, batches, metrics = jax.random.split(jax.random.fold_in(jax.random.key(0), seed), 3)
    return draws, batches, metrics


def draw(key, build, dtype):
    """`build(draws)` fed from one draw of `key`: a dry run counts the values it takes
    (its operations are dead code in the compiled program), then the real run."""
    counter = Draws(None, dtype, key)
    build(counter)
    # Drawn in float32 and cast: a seed gives the same data and initialization (to float32
    # rounding) in float32 and float64, so the two precisions can be compared on one run.
    return build(Draws(jax.random.normal(key, (counter.taken,), jnp.float32).astype(dtype), dtype, key))
