"""The ``kinn-ref`` command line. Each subcommand lives in its own module of :mod:`kinn_ref.commands`
with ``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their command runs.
"""
import argparse
import importlib
import logging
import sys

from . import __version__

# command name -> (module under kinn_ref.commands, one-line help)
COMMANDS = {
    "demo": ("demo", "run the demonstration job on embedded defaults"),
    "train": ("train", "train a KINN (or the MLP baseline) on a built-in task"),
    "solve-pde": ("solve_pde", "solve the heat equation with a KINN RC mesh and check it"),
    "bench": ("bench", "benchmark the numba backend against NumPy and PyTorch (CPU)"),
    "stability": ("stability", "largest stable dt per integrator and cell, maps and stability-region plots"),
    "golden": ("golden", "export, verify or check against the golden reference suite"),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="kinn-ref", description="Kirchhoff-Inspired Neural Networks, "
                                     "reference implementation")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        _load(module).add_arguments(p)
    return parser


def _load(module):
    return importlib.import_module(f"kinn_ref.commands.{module}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return _load(args._module).run(args)
    except ValueError as exc:
        print(f"kinn-ref {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
