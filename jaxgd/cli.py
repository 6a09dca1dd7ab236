"""Command line:
  jaxgd run SPEC.toml --out DIR [--set key=value ...] [--resume] [--compile-cache DIR|off]
                      [--distributed] [--slurm TASKS [--slurm-param key=value ...] [--slurm-wait]]
  jaxgd run --resume --out DIR
  jaxgd collect DIR
  jaxgd plot DIR --x KEY --y KEY --value COLUMN [--reduce median] [--out FILE.png]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxgd import api, host, plot
from jaxgd.results import Results
from jaxgd.spec import REDUCERS, SpecError, parse_overrides


def _spec_for(args):
    """The spec to run: SPEC, or with --resume and no SPEC the one saved in --out."""
    from jaxgd.store import Store

    saved = Store(args.out).saved_spec() if args.resume else None
    if args.resume and saved is None:
        raise FileNotFoundError(f"{Path(args.out) / 'spec.toml'} not found: nothing to resume in {args.out}")
    if args.spec is None and saved is None:
        raise SpecError("jaxgd run: give a SPEC, or --resume to finish the sweep saved in --out")
    return args.spec if args.spec is not None else saved


def _run(args) -> None:
    if args.distributed:
        from jaxgd import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    else:  # several processes may share a host, and its cores, under --distributed
        host.use_all_cores()
    spec = _spec_for(args)
    if args.slurm is not None:
        return _submit(args, spec)
    try:
        api.run(spec, overrides=args.set, out=args.out, progress=not args.quiet, compile_cache_dir=args.compile_cache)
    except KeyboardInterrupt:
        print(f"\njaxgd: interrupted; every finished chunk is saved in {args.out}/parts. "
              f"Finish with: jaxgd run --resume --out {args.out}", file=sys.stderr)
        raise SystemExit(130) from None
    print(f"wrote {args.out}/", file=sys.stderr)


def _submit(args, spec) -> None:
    from jaxgd import slurm

    parameters = parse_overrides(args.slurm_param)
    jobs = slurm.submit(spec, args.out, args.slurm, overrides=args.set, parameters=parameters,
                        cluster=args.slurm_cluster, compile_cache_dir=args.compile_cache)
    if not jobs:
        print(f"jaxgd: nothing left to run in {args.out}", file=sys.stderr)
    else:
        print(f"jaxgd: submitted job array {jobs[0].job_id.split('_')[0]} ({len(jobs)} tasks); "
              f"logs in {args.out}/slurm/", file=sys.stderr)
    if not args.slurm_wait:
        print(f"when it is done: jaxgd collect {args.out}   (unfinished runs: jaxgd run --resume --out {args.out})",
              file=sys.stderr)
        return
    failed = []
    for job in jobs:
        try:
            job.result()
        except Exception as err:  # noqa: BLE001 - report every failed task, then stop
            failed.append(f"task {job.job_id}: {str(err).strip().splitlines()[-1] if str(err).strip() else err!r}")
    if failed:
        raise ValueError(f"{len(failed)} of {len(jobs)} tasks failed ({'; '.join(failed)}); "
                         f"finish with: jaxgd run --resume --out {args.out}")
    api.collect(args.out, progress=not args.quiet)


def _collect(args) -> None:
    api.collect(args.dir, progress=not args.quiet)


def _plot(args) -> None:
    results = Results.load(args.dir)
    fig = plot.phase_diagram(results.summary, args.x, args.y, args.value, args.reduce)
    out = Path(args.out or Path(args.dir) / f"phase_{args.value}_{args.x}_{args.y}.png")
    fig.savefig(out, dpi=120)
    print(f"wrote {out}", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="jaxgd", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a sweep and write its tables and figures")
    run.add_argument("spec", nargs="?", help="sweep spec (TOML); with --resume, default: the spec saved in --out")
    run.add_argument("--out", required=True,
                     help="folder for history.parquet, summary.parquet, spec.toml, figures; finished chunks are "
                          "saved in DIR/parts as they finish, and running the same sweep again runs only what is missing")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a setting, e.g. --set optimizer.lr=0.1 or --set 'model.width=[16, 64]'")
    run.add_argument("--quiet", action="store_true", help="no progress bar or closing line")
    run.add_argument("--resume", action="store_true",
                     help="finish the sweep saved in --out (SPEC optional; if given it must be the same sweep)")
    run.add_argument("--compile-cache", metavar="DIR|off",
                     help="JAX's persistent compilation cache (default: $JAXGD_COMPILE_CACHE or ~/.cache/jaxgd/xla)")
    group = run.add_argument_group("several processes (jax.distributed)")
    group.add_argument("--distributed", action="store_true",
                       help="join the other processes of this command (srun, mpirun, TPU pods: detected; else "
                            "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID or the options below)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    group.add_argument("--num-processes", type=int, help="number of processes")
    group.add_argument("--process-id", type=int, help="this process's index, 0..N-1")
    group = run.add_argument_group("Slurm job array (submitit)")
    group.add_argument("--slurm", type=int, metavar="TASKS", help="submit the runs still to do as a job array of TASKS tasks")
    group.add_argument("--slurm-param", action="append", default=[], metavar="KEY=VALUE",
                       help="submitit parameter, e.g. timeout_min=120, gpus_per_node=1, cpus_per_task=8, mem_gb=32, "
                            "slurm_partition=gpu, slurm_account=abc, slurm_array_parallelism=16")
    group.add_argument("--slurm-wait", action="store_true", help="wait for the tasks, then collect the results")
    group.add_argument("--slurm-cluster", default="slurm", choices=("slurm", "local", "debug"),
                       help="'local' runs the array on this machine with submitit's local executor")
    run.set_defaults(handler=_run)

    collect = commands.add_parser("collect", help="assemble the tables and figures of a folder from its parts")
    collect.add_argument("dir", help="the --out folder of a `jaxgd run` (its parts written by processes or tasks)")
    collect.add_argument("--quiet", action="store_true", help="no closing line")
    collect.set_defaults(handler=_collect)

    draw = commands.add_parser("plot", help="draw a phase diagram from a finished run's folder")
    draw.add_argument("dir", help="the --out folder of a `jaxgd run`")
    draw.add_argument("--x", required=True, help="swept setting on the x axis (a summary column)")
    draw.add_argument("--y", required=True, help="swept setting on the y axis (a summary column)")
    draw.add_argument("--value", required=True, help="summary column to colour by, e.g. final_train_loss")
    draw.add_argument("--reduce", default="median", choices=REDUCERS, help="how to combine seeds")
    draw.add_argument("--out", help="PNG file (default: in DIR)")
    draw.set_defaults(handler=_plot)
    return top


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        args.handler(args)
    except (SpecError, ValueError, FileNotFoundError) as err:
        print(f"jaxgd: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
