"""Several processes, on one host or many, joined by JAX's multi-controller runtime
(`jax.distributed`). Every process runs the same command; each takes a deterministic,
cost-balanced share of the sweep's shards (`shares.process_share`), computes it on its
own devices and writes its parts into the shared `--out` folder; after a barrier,
process 0 assembles the tables and figures. Processes never exchange results, so the
folder must be on a file system every process sees."""

from __future__ import annotations

import itertools
import os

import jax

BARRIER_TIMEOUT_S = 7 * 24 * 3600  # processes wait for the slowest share


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """`jax.distributed.initialize`, before anything else touches JAX. Values not given
    come from `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, else
    from the launcher (Slurm `srun`, Open MPI `mpirun`, Cloud TPU pods: detected by JAX)."""
    if jax.distributed.is_initialized():
        return
    num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    given = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    host, colon, port = (given or "").rpartition(":")
    if given and not (host and colon and port.isdigit()):  # JAX raised IndexError on one without a port
        raise ValueError(f"--coordinator (JAX_COORDINATOR_ADDRESS): got {given!r}; expected HOST:PORT, e.g. node0:1234")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    try:
        return int(text) if text else None
    except ValueError:
        raise ValueError(f"{name}: got {text!r}; expected an integer") from None


def process() -> tuple[int, int]:
    """(this process's index, the number of processes): (0, 1) without jax.distributed."""
    return jax.process_index(), jax.process_count()


def barrier(name: str) -> None:
    """Wait until every process gets here."""
    if jax.process_count() == 1:
        return
    from jax._src import distributed as _distributed  # the runtime's own barrier: no device collectives

    client = _distributed.global_state.client
    if client is not None and hasattr(client, "wait_at_barrier"):
        client.wait_at_barrier(name, BARRIER_TIMEOUT_S * 1000)
    else:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


_told = itertools.count()  # the processes tell each other things in the same order: one key each


def from_process_0(value: str) -> str:
    """`value` as process 0 gives it, in every process (the runtime's key-value store): what
    process 0 alone finds out, such as whether it took the folder's lock, the others act on."""
    if jax.process_count() == 1:
        return value
    from jax._src import distributed as _distributed

    client, key = _distributed.global_state.client, f"jaxgd/from_process_0/{next(_told)}"
    if jax.process_index() == 0:
        client.key_value_set(key, value)
        return value
    return client.blocking_key_value_get(key, BARRIER_TIMEOUT_S * 1000)
