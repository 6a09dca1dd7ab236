"""Random designs (`design = "sobol" | "random"` with `samples = N`): N points in the unit
cube, then in the ranges of the sampled axes. Sobol points are the unscrambled sequence
of Joe & Kuo (2008; the direction numbers of new-joe-kuo-6.21201, the same as
scipy.stats.qmc.Sobol) with a random digital shift (XOR), which keeps its balance."""

from __future__ import annotations

import numpy as np

from jaxgd.errors import SpecError

BITS = 32
# (s, a, m_1..m_s) of dimensions 2, 3, ...: the degree and coefficients of the primitive
# polynomial and the initial direction numbers (dimension 1 is van der Corput's).
JOE_KUO = (
    (1, 0, (1,)), (2, 1, (1, 3)), (3, 1, (1, 3, 1)), (3, 2, (1, 1, 1)), (4, 1, (1, 1, 3, 3)),
    (4, 4, (1, 3, 5, 13)), (5, 2, (1, 1, 5, 5, 17)), (5, 4, (1, 1, 5, 5, 5)), (5, 7, (1, 1, 7, 11, 19)),
    (5, 11, (1, 1, 5, 1, 1)), (5, 13, (1, 1, 1, 3, 11)), (5, 14, (1, 3, 5, 5, 31)),
)
MAX_DIMENSIONS = len(JOE_KUO) + 1


def direction_numbers(dimension: int) -> list[int]:
    """The BITS direction numbers v_1..v_BITS of a dimension (0-based), as integers."""
    if dimension == 0:
        return [1 << (BITS - 1 - i) for i in range(BITS)]
    s, a, m = JOE_KUO[dimension - 1]
    v = [m[i] << (BITS - 1 - i) for i in range(s)]
    for i in range(s, BITS):
        x = v[i - s] ^ (v[i - s] >> s)
        for k in range(1, s):
            if (a >> (s - 1 - k)) & 1:
                x ^= v[i - k]
        v.append(x)
    return v


def sobol(n: int, dimensions: int, rng: np.random.Generator) -> np.ndarray:
    """The first n points of the Sobol sequence in [0, 1)^dimensions (Gray-code order),
    digitally shifted by random bits from `rng`."""
    if dimensions > MAX_DIMENSIONS:
        raise SpecError(f"design = 'sobol': {dimensions} sampled axes, at most {MAX_DIMENSIONS}; use design = 'random'")
    v = np.array([direction_numbers(j) for j in range(dimensions)], dtype=np.uint64).T  # (BITS, dimensions)
    points = np.zeros((n, dimensions), np.uint64)
    for i in range(1, n):
        lowest_zero_bit_of_previous = (i & -i).bit_length() - 1
        points[i] = points[i - 1] ^ v[lowest_zero_bit_of_previous]
    shift = rng.integers(0, 2**BITS, dimensions, dtype=np.uint64)
    return (points ^ shift).astype(np.float64) / 2**BITS


def unit_points(kind: str, n: int, dimensions: int, seed: int) -> np.ndarray:
    """n points in [0, 1)^dimensions of a design, from its seed alone."""
    rng = np.random.default_rng(seed)
    return sobol(n, dimensions, rng) if kind == "sobol" else rng.random((n, dimensions))
