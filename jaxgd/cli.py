"""Command line: `jaxgd run SPEC.toml --out DIR [--set key=value ...]` and
`jaxgd plot DIR --x KEY --y KEY --value COLUMN [--reduce median] [--out FILE.png]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxgd import api, plot
from jaxgd.results import Results
from jaxgd.spec import REDUCERS, SpecError


def _run(args) -> None:
    api.run(args.spec, overrides=args.set, out=args.out, progress=not args.quiet)
    print(f"wrote {args.out}/", file=sys.stderr)


def _plot(args) -> None:
    results = Results.load(args.dir)
    fig = plot.phase_diagram(results.summary, args.x, args.y, args.value, args.reduce)
    out = Path(args.out or Path(args.dir) / f"phase_{args.value}_{args.x}_{args.y}.png")
    fig.savefig(out, dpi=120)
    print(f"wrote {out}", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="jaxgd", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a sweep and write its tables and figures")
    run.add_argument("spec", help="sweep spec (TOML)")
    run.add_argument("--out", required=True, help="folder for history.parquet, summary.parquet, spec.toml, figures")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a setting, e.g. --set optimizer.lr=0.1 or --set 'model.width=[16, 64]'")
    run.add_argument("--quiet", action="store_true", help="no progress bar or closing line")
    run.set_defaults(handler=_run)

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
