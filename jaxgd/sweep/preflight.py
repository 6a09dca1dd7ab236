"""Preflight: what a sweep will need, estimated from its plan before anything compiles
(programs, chunks, run-steps, device memory per chunk, host memory for the tables, disk
for the parts, a rough time), checked against what this machine has. A sweep that cannot
fit is refused with the estimate and the limit; `jaxgd run --dry-run` prints it all."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import jax

from jaxgd.errors import SizeError
from jaxgd.sweep import plan as planning
from jaxgd.sweep.spec import Spec

# Rough rates, for an estimate of the time only: full-batch GD costs about 4 n d m flops
# a run-step (docs/design: performance model); what the engine reached, in flop/s per
# device: the 2-core CPU near its single-core matmul roofline, an H100 with the fused step.
FLOPS_PER_S = {"cpu": 2e10, "gpu": 1.5e13, "tpu": 1.5e13}
# Above these a sweep run from a terminal asks for --yes.
HUGE_SECONDS, HUGE_TABLE_BYTES = 3600, 4 * 2**30
# Bytes of the plan for one run (its row, group position, seed and traced settings): the
# plan of a grid is built in memory before anything else.
PLAN_BYTES_PER_COLUMN = 8


def count_runs(spec: Spec) -> int:
    return planning.grid_size(spec) * len(spec.seeds)


def refuse_plan_too_large(spec: Spec) -> None:
    """SizeError if the plan itself (one row per run) would not fit in the host's memory."""
    runs, memory = count_runs(spec), planning.host_memory()
    need = runs * PLAN_BYTES_PER_COLUMN * (2 * len(spec.swept) + 6)
    if need > memory // 2:
        raise SizeError(f"the sweep has {runs:,} runs; planning them alone needs about {_size(need)}, more than half "
                        f"the {_size(memory)} of this host's memory; sweep fewer values or seeds")


@dataclasses.dataclass
class Estimate:
    runs: int
    groups: list[dict]  # per group: its static settings that vary, runs, chunk size, chunks, bytes of a chunk
    logged_steps: int
    run_steps: int
    device_bytes: int  # the largest chunk on one device
    device_limit: int
    table_bytes: int  # history and summary in memory (the engine's arrays, then the tables)
    host_limit: int
    parts_bytes: int  # the parts on disk
    saved_steps: int  # steps of save_params
    params_bytes: int  # the parameters kept at those steps (in the parts, and in memory at the end)
    disk_free: int | None  # where the parts go (None without --out)
    seconds: float  # a rough time, at FLOPS_PER_S
    devices: int

    @property
    def programs(self) -> int:
        return len(self.groups)

    @property
    def chunks(self) -> int:
        return sum(g["chunks"] for g in self.groups)

    @property
    def huge(self) -> bool:
        return self.seconds > HUGE_SECONDS or self.table_bytes > HUGE_TABLE_BYTES


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError


def estimate(plan: planning.Plan, out=None, draw_lengths: list[int] | None = None) -> Estimate:
    """The plan's estimates; a chunk's device memory counts its runs' random draws where
    `draw_lengths` (the engine's, one per group) are given, as for `jaxgd run --dry-run`
    (tracing each group for them is left out where only tables and disk are checked)."""
    spec, n_logs = plan.spec, len(plan.logged_steps)
    item = plan.dtype.itemsize
    varying = [k for k in spec.swept if not planning.is_traced(k)]
    groups, flops, params_bytes = [], 0.0, 0
    n_saved = len(spec.settings["save_params"])
    for group, draw_length in zip(plan.groups, draw_lengths or [0] * len(plan.groups)):
        runs = len(group.run_ids)
        size = planning.chunk_size(group.static, runs, draw_length)  # as the engine cuts its calls
        groups.append({"settings": {k: group.static[k] for k in varying}, "runs": runs, "chunk_size": size,
                       "chunks": math.ceil(runs / size), "strategy": group.strategy,
                       "chunk_bytes": size * planning.bytes_per_run(group.static, draw_length)})
        n, d, m = (group.static[k] for k in ("data.n", "data.d", "model.width"))
        flops += 4.0 * n * d * m * runs * plan.steps
        params_bytes += runs * n_saved * m * (d + 1 + group.static["model.bias"]) * item  # W, a and b
    metrics = len(spec.metrics)
    history_values = plan.n_runs * n_logs * metrics * item
    row_columns = 8 * (3 + len(spec.swept))  # run_id, seed, step, the swept settings
    table_bytes = 2 * history_values + plan.n_runs * n_logs * row_columns + plan.n_runs * (row_columns + 3 * metrics * 8)
    platform = jax.local_devices()[0].platform
    devices = jax.local_device_count()
    where = Path(out) if out is not None else None
    while where is not None and not where.exists():
        where = where.parent
    return Estimate(
        runs=plan.n_runs, groups=groups, logged_steps=n_logs, run_steps=plan.n_runs * plan.steps,
        device_bytes=max(g["chunk_bytes"] for g in groups), device_limit=planning.accelerator_memory() or planning.host_memory(),
        table_bytes=table_bytes + params_bytes, host_limit=planning.host_memory(),
        parts_bytes=history_values + plan.n_runs * 16 + params_bytes, saved_steps=n_saved,
        params_bytes=params_bytes, disk_free=_free_disk(where),
        seconds=flops / (FLOPS_PER_S.get(platform, FLOPS_PER_S["cpu"]) * (devices if platform != "cpu" else 1)),
        devices=devices,
    )


def _free_disk(where: Path | None) -> int | None:
    """Free bytes of the file system at `where` (None without a folder, or on a pseudo file
    system such as /sys, which has no size: writing there fails with its own error)."""
    usage = shutil.disk_usage(where) if where is not None else None
    return usage.free if usage and usage.total else None


def refuse_what_cannot_fit(est: Estimate) -> None:
    """SizeError naming the estimate and the limit, for tables that exceed the host's memory
    or parts the disk's free space (device memory: plan.refuse_runs_too_large, and chunks
    out of memory are halved)."""
    if est.table_bytes > est.host_limit:
        raise SizeError(f"the result tables of {est.runs:,} runs x {est.logged_steps:,} logged steps need about "
                        f"{_size(est.table_bytes)}, more than the {_size(est.host_limit)} of this host's memory; "
                        "log less often (log_every), or sweep fewer runs")
    if est.disk_free is not None and est.parts_bytes > est.disk_free:
        raise SizeError(f"the parts of this sweep need about {_size(est.parts_bytes)} of disk, more than the "
                        f"{_size(est.disk_free)} free for --out; free space, use another --out, or log less often")


def describe(est: Estimate) -> str:
    """The plan and its estimates, as `jaxgd run --dry-run` prints them."""
    lines = [f"{est.runs:,} runs x {est.run_steps // max(est.runs, 1):,} steps = {est.run_steps:,} run-steps, "
             f"{est.logged_steps:,} logged steps each",
             f"{est.programs} program{'s' * (est.programs != 1)} (one per group), {est.chunks:,} chunks, "
             f"{est.devices} device{'s' * (est.devices != 1)}:"]
    for g in est.groups:
        settings = ", ".join(f"{k} = {v}" for k, v in g["settings"].items()) or "every run"
        lines.append(f"  {settings}: {g['runs']:,} runs in {g['chunks']:,} chunk{'s' * (g['chunks'] != 1)} of {g['chunk_size']:,} "
                     f"({g['strategy']}, about {_size(g['chunk_bytes'])} a chunk)")
    lines += [
        f"device memory: about {_size(est.device_bytes)} for the largest chunk, of {_size(est.device_limit)}"
        + (" (more than a device has: chunks that run out of memory are halved)" if est.device_bytes > est.device_limit
           else ""),
        f"host memory for the tables: about {_size(est.table_bytes)}, of {_size(est.host_limit)}",
    ]
    if est.saved_steps:
        lines.append(f"parameters kept at {est.saved_steps} step{'s' * (est.saved_steps != 1)} (save_params): about "
                     f"{_size(est.params_bytes)}, counted in the tables' memory and the parts' disk")
    lines += [
        f"disk for the parts: about {_size(est.parts_bytes)}"
        + (f", of {_size(est.disk_free)} free" if est.disk_free is not None else ""),
        f"time: roughly {_duration(est.seconds)} of training, plus compilation",
    ]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.0f} min"
    return f"{seconds / 3600:,.1f} h"


def confirm_huge(est: Estimate, yes: bool, interactive: bool) -> None:
    """From a terminal, a huge sweep (over an hour, or tables over a few GiB) runs only with --yes."""
    if est.huge and interactive and not yes:
        raise ValueError(f"this sweep is large: roughly {_duration(est.seconds)} of training and "
                         f"{_size(est.table_bytes)} of tables ({est.runs:,} runs); see `--dry-run`, and run it with --yes")

