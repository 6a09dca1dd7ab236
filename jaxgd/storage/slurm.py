"""Slurm through submitit: the sweep becomes a job array of N tasks; task i runs share
i of N of the sweep's chunks (the same split `jax.distributed` processes use, computed
by each task from the spec alone), skipping what the folder already holds, and writes
its parts into the shared `--out` folder. `jaxgd collect DIR` (or `--slurm-wait`)
assembles them; submitting again, or `jaxgd run --resume`, finishes whatever a failed
or preempted task left (a preempted or timed-out task is also requeued by submitit
and goes on where it stopped)."""

from __future__ import annotations

import sys
from pathlib import Path

from jaxgd.engine import compile_cache, host
from jaxgd.engine import dispatch as engine
from jaxgd.storage import files, shares
from jaxgd.storage.store import Store, load_saved
from jaxgd.sweep import plan as planning
from jaxgd.sweep import spec as specs

CLUSTERS = ("slurm", "local", "debug")


def run_task(out: str, index: int, count: int, compile_cache_dir: str | None = None) -> dict:
    """Task `index` of `count`: run its share of the sweep saved in `out`, skipping the
    runs already there, saving each chunk as it finishes. Returns its statistics."""
    host.use_all_cores()  # the cores Slurm gave the task (cpus_per_task), on a CPU node
    store = Store(out)
    spec = load_saved(out, f"task {index + 1}/{count} has no sweep to run in {out}")
    compile_cache.configure(compile_cache_dir)
    plan = planning.make(spec)
    mine = shares.share(plan, index, count)
    scan = store.scan(plan)
    store.refuse_foreign(scan)
    todo = mine & ~scan.finished
    outputs = engine.execute(shares.restrict(plan, mine), progress=False, todo=todo, on_chunk=store.writer(plan))
    stats = outputs.stats
    print(f"jaxgd task {index + 1}/{count}: ran {stats['runs_done']:,} of its {int(mine.sum()):,} runs "
          f"in {stats['wall_s']:.1f} s (compile {stats['compile_s']:.1f} s) into {out}", file=sys.stderr)
    return stats


class Task:
    """`run_task` as a submitit checkpointable callable: a task that Slurm preempts or
    times out is requeued with the same arguments, and since a task skips the runs
    already saved, it goes on where it stopped."""

    def __call__(self, out: str, index: int, count: int, compile_cache_dir: str | None = None) -> dict:
        return run_task(out, index, count, compile_cache_dir)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def submit(spec, out, tasks: int, *, overrides=None, parameters: dict | None = None, cluster: str = "slurm",
           compile_cache_dir: str | None = None, plots: bool = True, recompute: bool = False):
    """Submit the sweep `spec` into `out` as a job array of `tasks` tasks and return
    the submitit jobs (none if every run is done). The folder is checked first, as by
    `jaxgd run`: another sweep and parts computed from other inputs are refused here, not
    by each task; with `recompute`, those parts are set aside now (parts/superseded), so
    that the tasks run their runs again and `collect` finds only this sweep's.
    `parameters` go to `submitit.AutoExecutor.update_parameters` (timeout_min,
    gpus_per_node, cpus_per_task, mem_gb, slurm_partition, slurm_account,
    slurm_array_parallelism, ...). `cluster`: "slurm", or
    "local"/"debug" (submitit's executors on this machine, for trying it out). With
    `plots`, the files of the figures `jaxgd collect` will draw are checked first."""
    try:
        import submitit
    except ImportError:
        raise ValueError("--slurm needs submitit: pip install 'jaxgd[slurm]'") from None
    if tasks < 1:
        raise ValueError(f"--slurm: got {tasks} tasks; expected at least 1")
    if cluster not in CLUSTERS:
        raise ValueError(f"--slurm-cluster: got {cluster!r}; expected one of {', '.join(CLUSTERS)}")
    resolved = specs.load(spec, overrides)
    if plots:
        files.figure_files(Path(out), resolved.plot)
    with Store(out).lock():  # not while another sweep writes the folder: submitting may grow it
        store, scan = Store.prepare(out, planning.make(resolved), recompute=recompute)
        store.set_aside(scan.foreign, "foreign")
    if scan.finished.all():
        return []
    executor = submitit.AutoExecutor(folder=store.out / "slurm" / "%j", cluster=cluster)
    executor.update_parameters(name=f"jaxgd-{resolved.name}", **(parameters or {}))
    out_dir = str(store.out.resolve())
    return executor.map_array(Task(), [out_dir] * tasks, range(tasks), [tasks] * tasks, [compile_cache_dir] * tasks)
