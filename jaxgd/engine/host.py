"""On a host without accelerators, one JAX device per core. XLA runs the small matmuls
of a chunk of runs on one core, so the engine, which puts one chunk on each device, uses
every core only when each core is a device (benchmarks/RESULTS.md: two host devices on
the 2-core CPU trained medium nets 1.9x as fast as one)."""

from __future__ import annotations

import functools
import os
import warnings

import jax


def available_cores() -> int:
    """The cores this process may run on (its affinity mask: a Slurm allocation, a
    container's CPU set), else all of the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_all_cores() -> int:
    """Ask JAX for one CPU device per available core, unless the user chose a count
    (`XLA_FLAGS=--xla_force_host_platform_device_count=N` or `jax_num_cpu_devices`),
    this process is one of several (`jax.distributed`: they may share a host and its
    cores) or JAX has already started (then the count can no longer change, and a
    warning says once how to get every core). Returns the count asked for, or 0 where
    it left JAX as it was. Only the host platform is affected: on a GPU or TPU machine
    the engine uses the accelerators."""
    if ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
            or jax.config.jax_num_cpu_devices != -1 or jax.distributed.is_initialized()):
        return 0
    cores = available_cores()
    try:
        jax.config.update("jax_num_cpu_devices", cores)
    except RuntimeError:  # JAX's backends are already initialized
        if jax.default_backend() == "cpu" and jax.local_device_count() < cores:
            _warn_started_early(jax.local_device_count(), cores)
        return 0
    return cores


@functools.cache  # once per process
def _warn_started_early(devices: int, cores: int) -> None:
    warnings.warn(
        f"JAX started before jaxgd could make one CPU device per core, so jaxgd trains on {devices} of "
        f"{cores} cores. To use them all, import jaxgd and run it before anything else uses JAX, or call "
        f"jax.config.update('jax_num_cpu_devices', {cores}) first.", stacklevel=4)
