"""What the engine returns for a sweep, as NumPy arrays (no JAX: reading results never
imports it)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Outputs:
    """Every run's results, indexed by run_id."""

    steps: np.ndarray  # the logged steps (n_logs,)
    history: dict[str, np.ndarray]  # metric -> (n_runs, n_logs)
    diverged_step: np.ndarray  # (n_runs,), -1 if the run never diverged
    stats: dict
