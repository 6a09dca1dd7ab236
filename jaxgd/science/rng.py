"""Randomness of a run. Everything random about a run (teacher, samples, label noise,
initial parameters) is cut, in a fixed order, from one vector of standard Gaussians
drawn from a key that depends on the run's seed alone, never on its place in a chunk.

One draw rather than one per array: each draw adds a generator to the compiled program
(about 0.3 s of CPU compile time each). Threefry keys are partitionable, so the first
k values of a draw do not depend on its length: the data, cut first, are the same for
every width. The engine makes a run's keys and draw before its program (`draw_runs`,
one small program for the whole sweep: the generator was half of each training
program's compile time), with the same numbers as drawn inside.
"""

from __future__ import annotations

import dataclasses
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


def run_keys(seed, start_seed) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(draws, batches, metrics) keys of a run: the first feeds `draw` (its teacher, data
    and initial parameters) and comes from its start seed (start_seeds), the second picks
    batches step by step, the third feeds Monte Carlo metrics. (Splits are prefix-stable:
    adding a key changes none of the others.)"""
    split = lambda seed: jax.random.split(jax.random.fold_in(jax.random.key(0), seed), 3)
    _, batches, metrics = split(seed)
    return split(start_seed)[0], batches, metrics


def start_seeds(seeds, init_seed: int):
    """The seeds runs start from (teacher, data, initial parameters): their own, or the
    sweep's init_seed (>= 0), shared by all."""
    return seeds if init_seed < 0 else jnp.full_like(seeds, init_seed)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Drawn:
    """A run's randomness made before its program by `draw_runs`: its run_keys (as key
    data) and the first values of the draw of its first key (at least those it takes)."""

    keys: jax.Array  # (3, 2) uint32
    values: jax.Array  # (length,) float32

    def run_keys(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        draws, batches, metrics = (jax.random.wrap_key_data(k) for k in self.keys)
        return draws, batches, metrics


def draw_runs(seeds: jax.Array, starts: jax.Array, length: int) -> Drawn:
    """The Drawn of each seed and its start seed, `length` values each (vmapped over seeds)."""

    def one(seed, start):
        keys = run_keys(seed, start)
        return Drawn(jnp.stack([jax.random.key_data(k) for k in keys]), normal(keys[0], length))

    return jax.vmap(one)(seeds, starts)


def normal(key, length: int) -> jax.Array:
    # Drawn in float32 and cast by the user: a seed gives the same data and initialization
    # (to float32 rounding) in float32 and float64, so the two precisions can be compared.
    return jax.random.normal(key, (length,), jnp.float32)


def count(build, dtype, key) -> int:
    """How many values `build(draws)` takes: a dry run (its operations are dead code in a
    compiled program)."""
    counter = Draws(None, dtype, key)
    build(counter)
    return counter.taken


def draw(key, build, dtype, drawn: jax.Array | None = None):
    """`build(draws)` fed from one draw of `key`, or from `drawn`, its first values made
    before the program (Drawn.values)."""
    taken = count(build, dtype, key)
    if drawn is None:
        drawn = normal(key, taken)
    elif drawn.shape[0] < taken:
        raise ValueError(f"{drawn.shape[0]} values drawn before the program, {taken} needed")
    return build(Draws(drawn[:taken].astype(dtype), dtype, key))
