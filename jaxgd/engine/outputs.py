"""What the engine returns for a sweep, as NumPy arrays (no JAX: reading results never
imports it)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class KeptParams:
    """Every layer of runs at the steps of save_params, in blocks of runs as they were
    computed (a layer's shape differs between groups of other widths or dimensions)."""

    blocks: list[tuple[np.ndarray, dict[str, np.ndarray]]] = dataclasses.field(default_factory=list)  # run_ids, layer -> (run, n_saved, ...)

    def add(self, run_ids: np.ndarray, layers: dict[str, np.ndarray]) -> None:
        if layers:
            self.blocks.append((np.asarray(run_ids), layers))

    def of(self, run_id: int) -> dict[str, np.ndarray] | None:
        """The run's layers, each (n_saved, ...), or None if no block holds it. Of a run in
        two blocks (two parts), those of the last added: as its metrics (store.assemble)
        and the parts index, where a later part holds it."""
        for run_ids, layers in reversed(self.blocks):
            rows = np.flatnonzero(run_ids == run_id)
            if len(rows):
                return {layer: values[rows[0]] for layer, values in layers.items()}
        return None


@dataclasses.dataclass
class Outputs:
    """Every run's results, indexed by run_id."""

    steps: np.ndarray  # the logged steps (n_logs,)
    history: dict[str, np.ndarray]  # metric -> (n_runs, n_logs)
    diverged_step: np.ndarray  # (n_runs,), -1 if the run never diverged
    stats: dict
    params: KeptParams = dataclasses.field(default_factory=KeptParams)  # empty without save_params
