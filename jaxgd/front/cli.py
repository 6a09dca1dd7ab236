"""Command line:
  jaxgd run SPEC.toml --out DIR [--set key=value ...] [--no-plots] [--resume [--recompute]] [--dry-run] [--yes]
                      [--compile-cache DIR|off]
                      [--distributed] [--slurm TASKS [--slurm-param key=value ...] [--slurm-wait]]
  jaxgd run --resume --out DIR
  jaxgd collect DIR
  jaxgd plot DIR [phase] --x KEY --y KEY --value COLUMN [--reduce median] [--select key=value ...]
  jaxgd plot DIR curves --metric METRIC [--hue KEY] [--x step|METRIC] [--select key=value ...]
  jaxgd plot DIR lines --x KEY --y COLUMN [COLUMN ...] [--hue KEY] [--reduce median] [--select key=value ...]
  jaxgd settings [PREFIX] [--plugins FILE ...]
  jaxgd bench [--quick] [--out FILE.json]
Errors a user can cause end as one line `jaxgd: error: ...` (exit status 2); `jaxgd --debug ...`
shows the traceback instead."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings
from functools import partial
from pathlib import Path

from jaxgd import __version__
from jaxgd.errors import FigureSkipped, SizeError

# Each command imports what it needs (JAX, pandas, matplotlib) when it runs, so that
# `jaxgd --help` and `jaxgd run --help` answer at once.

# `jaxgd plot` kinds -> their table in a spec's [plot]
PLOT_KINDS = {"phase": "phase_diagram", "curves": "curves", "lines": "lines"}


def _spec_for(args):
    """The spec to run: SPEC (with --resume too: a folder with nothing yet starts it), or
    with --resume and no SPEC the one saved in --out."""
    from jaxgd.storage.store import load_saved
    from jaxgd.sweep.spec import SpecError

    if args.spec is not None:
        return args.spec
    if not args.resume:
        raise SpecError("jaxgd run: give a SPEC, or --resume to finish the sweep saved in --out")
    return load_saved(args.out, f"nothing to resume in {args.out}")


# The options of --distributed: without it this process would run the whole sweep alone.
DISTRIBUTED_OPTIONS = {"--coordinator": "coordinator", "--num-processes": "num_processes", "--process-id": "process_id"}


def _run(args) -> None:
    from jaxgd.front import api

    given = [option for option, name in DISTRIBUTED_OPTIONS.items() if getattr(args, name) is not None]
    if given and not args.distributed:
        raise ValueError(f"{given[0]}: only with --distributed, which joins this process to the others and runs "
                         f"its share of the sweep; add --distributed, or leave out {', '.join(given)}")
    if args.distributed:
        from jaxgd.storage import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    spec = _spec_for(args)
    if args.dry_run:
        from jaxgd.sweep import preflight

        print(preflight.describe(api.estimate(spec, overrides=args.set, out=args.out)))
        return
    if args.slurm is not None:
        return _submit(args, spec)
    try:
        api.run(spec, overrides=args.set, out=args.out, progress=not args.quiet, compile_cache_dir=args.compile_cache,
                plots=not args.no_plots, recompute=args.recompute, confirm=partial(_confirm, args.yes))
    except KeyboardInterrupt:
        print(f"\njaxgd: interrupted; every finished chunk is saved in {args.out}/parts. "
              f"Finish with: jaxgd run --resume --out {args.out}", file=sys.stderr)
        raise SystemExit(130) from None
    print(f"wrote {args.out}/", file=sys.stderr)


def _confirm(yes: bool, estimate) -> None:
    from jaxgd.sweep import preflight

    preflight.confirm_huge(estimate, yes, interactive=sys.stdin.isatty() and sys.stderr.isatty())


def _submit(args, spec) -> None:
    from jaxgd.front import api
    from jaxgd.storage import slurm
    from jaxgd.sweep.spec import parse_overrides

    parameters = parse_overrides(args.slurm_param)
    jobs = slurm.submit(spec, args.out, args.slurm, overrides=args.set, parameters=parameters,
                        cluster=args.slurm_cluster, compile_cache_dir=args.compile_cache, plots=not args.no_plots,
                        recompute=args.recompute)
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
    api.collect(args.out, progress=not args.quiet, plots=not args.no_plots)


def _edge(args) -> None:
    from jaxgd.front import edge

    tol = {} if args.tol is None else {"tol": args.tol}
    edge.edge(args.spec, axis=args.axis, criterion=args.criterion, out=args.out, overrides=args.set,
              progress=not args.quiet, **tol)


def _collect(args) -> None:
    from jaxgd.front import api

    api.collect(args.dir, progress=not args.quiet, plots=not args.no_plots)


def _plot_entry(args) -> dict:
    """The options given to `jaxgd plot`, as an entry of the spec's [plot] table, so
    that they are checked and completed (defaults, file name) as in a spec."""
    from jaxgd.sweep.spec import parse_overrides

    if args.y and len(args.y) > 1 and args.kind != "lines":
        raise ValueError(f"--y: got {' '.join(args.y)}; a {args.kind} figure takes one")
    given = dict(x=args.x, y=args.y[0] if args.y and len(args.y) == 1 else args.y, value=args.value,
                 metric=args.metric, hue=args.hue, reduce=args.reduce, logy=args.logy,
                 select=parse_overrides(args.select) or None)
    return {key: value for key, value in given.items() if value is not None}


def _plot(args) -> None:
    from jaxgd.front import plot
    from jaxgd.storage import files
    from jaxgd.storage.results import Results
    from jaxgd.sweep import spec as specs

    results = Results.load(args.dir, partial=True)
    kind = PLOT_KINDS[args.kind]
    # the options checked against the folder's spec, whose data file may be elsewhere (its tables hold what is drawn)
    (entry,) = specs.load({**results.spec, "plot": {kind: [_plot_entry(args)]}}, read_data=False).plot[kind]
    out = files.figure_path(Path(args.dir), entry["file"], option="--out", given=args.out)
    fig = plot.figure(kind, entry, results)
    missing = results.stats.get("runs_missing", 0)
    if missing:
        note = f"{missing:,} of {missing + len(results.summary):,} runs missing"
        print(f"jaxgd: {note} (the sweep is unfinished): drawing the finished runs", file=sys.stderr)
        plot.add_note(fig, note)
    files.save_figure(fig, out)
    print(f"wrote {out}", file=sys.stderr)


def _bench(args) -> None:
    from jaxgd.front import bench

    bench.main(args.quick, args.out)


def _settings(args) -> None:
    from jaxgd.sweep import plugins
    from jaxgd.sweep.spec import settings_table, written

    plugins.load(args.plugins)
    rows = settings_table(args.prefix)
    if not rows:
        raise ValueError(f"no setting, metric or data set starts with {args.prefix!r}; `jaxgd settings` lists them all")
    header = dict(key="key", type="type", kind="kind", default="default", meaning="meaning [allowed values]")
    lines = [header] + [
        dict(key=r["key"], type=r["type"], kind=r["kind"], default=written(r["default"]),
             meaning=r["doc"] + (f" [{r['allowed']}]" if r["allowed"] else ""))
        for r in rows
    ]
    columns = list(header)[:-1]
    widths = {c: max(len(line[c]) for line in lines) for c in columns}
    for line in lines:
        print("  ".join(line[c].ljust(widths[c]) for c in columns), line["meaning"], sep="  ")


class _Parser(argparse.ArgumentParser):
    """argparse whose errors read like every other error of jaxgd: one line, exit status 2."""

    def error(self, message):
        self.exit(2, f"jaxgd: error: {message} (see `{self.prog} --help`)\n")


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="jaxgd", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"jaxgd {__version__}")
    debug = argparse.ArgumentParser(add_help=False)  # --debug is taken before or after the command
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error instead of one line")
    top.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    commands = top.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", parents=[debug], help="run a sweep and write its tables and figures")
    run.add_argument("spec", nargs="?", help="sweep spec (TOML); with --resume, default: the spec saved in --out")
    run.add_argument("--out", required=True,
                     help="folder for history.parquet, summary.parquet, spec.toml, figures; finished chunks are "
                          "saved in DIR/parts as they finish, and running the same sweep again runs only what is missing")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a setting, e.g. --set optimizer.lr=0.1 or --set 'model.width=[16, 64]' "
                          "(`jaxgd settings` lists them)")
    run.add_argument("--no-plots", action="store_true", help="write no figures")
    run.add_argument("--quiet", action="store_true", help="no progress bar or closing line")
    run.add_argument("--resume", action="store_true",
                     help="finish the sweep saved in --out (SPEC optional; if given it must be the same sweep)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the plan (groups, programs, chunk sizes, memory, table size, a rough time) and run nothing")
    run.add_argument("--yes", action="store_true",
                     help="run a large sweep (over an hour, or tables over 4 GiB) without asking, from a terminal")
    run.add_argument("--recompute", action="store_true",
                     help="run again the runs whose saved parts were computed from other inputs (an edited spec.toml, "
                          "other code, plugins or data), setting those parts aside in DIR/parts/superseded")
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

    collect = commands.add_parser("collect", parents=[debug],
                                  help="assemble the tables and figures of a folder from its parts")
    collect.add_argument("dir", help="the --out folder of a `jaxgd run` (its parts written by processes or tasks)")
    collect.add_argument("--no-plots", action="store_true", help="write no figures")
    collect.add_argument("--quiet", action="store_true", help="no closing line")
    collect.set_defaults(handler=_collect)

    draw = commands.add_parser(
        "plot", parents=[debug], help="draw a phase diagram, curves or lines from a run's folder",
        description="Draw a figure from the --out folder of a `jaxgd run`, finished or not (an unfinished one: "
                    "the runs finished so far). The options are those of the spec's [plot] tables; curves and "
                    "lines show the median over seeds and their interquartile range as a band.")
    draw.add_argument("dir", help="the --out folder of a `jaxgd run`")
    draw.add_argument("kind", nargs="?", default="phase", choices=PLOT_KINDS,
                      help="phase: a summary column over two swept settings (the default); curves: a metric "
                           "against steps; lines: summary columns against a swept setting")
    draw.add_argument("--x", help="phase, lines: swept setting on the x axis; curves: 'step' (default) or a metric")
    draw.add_argument("--y", nargs="+", metavar="KEY", help="phase: swept setting on the y axis; lines: summary columns")
    draw.add_argument("--value", help="phase: summary column to colour by, e.g. final_train_loss")
    draw.add_argument("--metric", help="curves: the metric, e.g. train_loss")
    draw.add_argument("--hue", help="curves, lines: swept setting with one line per value")
    draw.add_argument("--reduce", help="phase, lines: how to combine seeds and other settings (default: median)")
    draw.add_argument("--logy", action=argparse.BooleanOptionalAction, help="curves, lines: log y axis (default)")
    draw.add_argument("--select", action="append", default=[], metavar="KEY=VALUE",
                      help="only the runs with this value (on a float setting, the nearest swept value), "
                           "e.g. --select width=64")
    draw.add_argument("--out", help="the figure's file, in the format its suffix names, e.g. .pdf (default: a PNG in DIR)")
    draw.set_defaults(handler=_plot)

    search = commands.add_parser(
        "edge", parents=[debug], help="find the boundary on one axis by bisection: edge.parquet and edge.png",
        description="For every combination of the other swept settings and every seed, the largest value on the "
                    "axis's range whose run does not diverge (or meets --criterion), by bisection in log space; "
                    "each round trains every open bracket's midpoint as one batch of runs.")
    search.add_argument("spec", help="sweep spec (TOML); the axis's swept values give its range")
    search.add_argument("--axis", required=True, help="a swept float setting, e.g. optimizer.lr")
    search.add_argument("--criterion", help="a run passes when it meets this summary criterion, e.g. "
                                            "'final_train_loss < 1e-3' (default: it does not diverge)")
    search.add_argument("--tol", type=float, help="width of the final brackets in decades (default 0.01)")
    search.add_argument("--out", required=True, help="folder for edge.parquet, edge.png and the rounds done so far "
                                                     "(running the same search again resumes it)")
    search.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    search.add_argument("--quiet", action="store_true", help="no progress bar or closing line")
    search.set_defaults(handler=_edge)

    settings = commands.add_parser(
        "settings", parents=[debug], help="list every setting, metric and data set",
        description="Every setting of a spec (key, type, traced or static, default, meaning, allowed values), "
                    "every metric and every data set.")
    settings.add_argument("prefix", nargs="?", default="", help="only the keys starting with it, e.g. optimizer.")
    settings.add_argument("--plugins", nargs="+", default=[], metavar="FILE",
                          help="also the components and settings these plugin files (or modules) register")
    settings.set_defaults(handler=_settings)

    bench = commands.add_parser(
        "bench", parents=[debug], help="benchmark this device: the engine against a minimal program",
        description=("Full-batch GD at three sizes and online SGD at d = 1000 on the device JAX sees, the engine "
                     "against a minimal vmapped program on the same work: run-steps/s, GFLOP/s, fractions of the "
                     "measured matmul peak and of the memory-bandwidth bound, ratio to the minimal program."))
    bench.add_argument("--quick", action="store_true", help="small sizes: under a minute on 2 CPU cores")
    bench.add_argument("--out", metavar="FILE.json", help="also save every figure as JSON")
    bench.set_defaults(handler=_bench)
    return top


def _message(err: BaseException) -> str:
    """The error as one line, saying what to change."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, MemoryError) and not isinstance(err, SizeError):  # SizeError names the settings itself
        from jaxgd.sweep.plan import RUN_SIZE_KEYS

        text = (f"out of memory ({text}); make the sweep smaller: fewer runs (seeds, swept values), fewer logged "
                f"steps (steps / log_every) or smaller runs ({', '.join(RUN_SIZE_KEYS)})")
    return text


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # restores showwarning
            warnings.showwarning = _show_warning(warnings.showwarning)
            if getattr(args, "no_plots", False):  # no figures: none to say are skipped
                warnings.simplefilter("ignore", FigureSkipped)
            args.handler(args)
    except BrokenPipeError:  # the reader stopped early (`jaxgd settings | head`): nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, OSError, MemoryError) as err:  # what a user can cause: a spec, a file, a folder, a size
        if args.debug:
            raise
        print(f"jaxgd: error: {_message(err)}", file=sys.stderr)
        return 2
    return 0


def _show_warning(show_others):
    """Warnings of jaxgd's own code in the form of its errors, one line each (others as Python shows them)."""
    package = str(Path(__file__).resolve().parents[1])

    def show(message, category, filename, lineno, file=None, line=None):
        if not str(filename).startswith(package):
            return show_others(message, category, filename, lineno, file, line)
        print(f"jaxgd: warning: {message}", file=sys.stderr)
    return show


def command() -> None:
    """The `jaxgd` command (and `python -m jaxgd`): main, then the end of the process."""
    status = main()
    # Everything is written: spare the exit its last garbage collection over every object
    # of JAX, pandas and matplotlib (0.4 s of a 0.5 s teardown, measured).
    gc.freeze()
    sys.exit(status)
