"""On a host without accelerators, one JAX device per core. XLA runs the small matmuls
of a chunk of runs on one core, so the engine, which puts one chunk on each device, uses
every core only when each core is a device (benchmarks/RESULTS.md: two host devices on
the 2-core CPU trained medium nets 1.9x as fast as one)."""

from __future__ import annotations

import os

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
    (`XLA_FLAGS=--xla_force_host_platform_device_count=N` or `jax_num_cpu_devices`)
    or JAX has already started (then the count can no longer change). Returns the
    count asked for, or 0 where it left JAX as it was. Only the host platform is
    affected: on a GPU or TPU machine the engine uses the accelerators."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or jax.config.jax_num_cpu_devices != -1:
        return 0
    cores = available_cores()
    try:
        jax.config.update("jax_num_cpu_devices", cores)
    except RuntimeError:  # JAX's backends are already initialized
        return 0
    return cores
