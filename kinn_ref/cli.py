"""The ``kinn-ref`` command line. Each subcommand lives in its own module of :mod:`kinn_ref.commands`
with ``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their command runs.
"""
import argparse
import functools
import importlib
import logging
import sys
import warnings
from pathlib import Path

from . import __version__
from .errors import TapeMemoryError

# command name -> (module under kinn_ref.commands, one-line help)
COMMANDS = {
    "demo": ("demo", "run the demonstration job on embedded defaults"),
    "train": ("train", "train a KINN (or the MLP baseline) on a built-in task"),
    "solve-pde": ("solve_pde", "solve the heat equation with a KINN RC mesh and check it"),
    "bench": ("bench", "benchmark the numba backend against NumPy and PyTorch (CPU)"),
    "stability": ("stability", "largest stable dt per integrator and cell, maps and stability-region plots"),
    "golden": ("golden", "export, verify or check against the golden reference suite"),
    "sweep": ("sweep", "a grid of training runs over tasks, models and hyperparameters, serially or on Dask"),
}


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (unless the text already names it, or it is a flag)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("(default" in text or any(action.default is v for v in (None, False, True, argparse.SUPPRESS))
                or not action.option_strings):
            return text
        return f"{text} (default %(default)s)".lstrip()


# failures a user can cause and mend: one line on stderr and exit status 2, never a traceback
EXPECTED_ERRORS = (ValueError, OSError, ImportError, FloatingPointError, TapeMemoryError)


def build_parser():
    parser = argparse.ArgumentParser(prog="kinn-ref", description="Kirchhoff-Inspired Neural Networks, "
                                     "reference implementation", formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=HelpFormatter)
        p.set_defaults(_module=module)
        _load(module).add_arguments(p)
    return parser


def _load(module):
    return importlib.import_module(f"kinn_ref.commands.{module}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(_show_warning, args.command)
        return _run(args)


def _show_warning(command, message, category, filename, lineno, file=None, line=None):
    """Warnings raised by kinn_ref, as the command's one-line notes (``-v`` adds where they came from);
    other packages' warnings keep Python's own format."""
    if not _from_kinn_ref(filename):
        (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))
        return
    where = f" [{category.__name__} at {filename}:{lineno}]" if logging.getLogger().isEnabledFor(logging.INFO) else ""
    print(f"kinn-ref {command}: warning: {message}{where}", file=file or sys.stderr)


def _from_kinn_ref(filename):
    """True when a warning was raised by code of this package (its analysis included)."""
    path = str(Path(filename).resolve())
    return any(path.startswith(d) for d in _package_dirs())


def _package_dirs():
    """Folders of kinn_ref and, once imported, of kinn_ref.analysis (which installs from its own folder)."""
    dirs = []
    for name in ("kinn_ref", "kinn_ref.analysis"):
        module = sys.modules.get(name)
        dirs += [str(Path(d).resolve()) for d in getattr(module, "__path__", ())]
    return tuple(dirs)


def _run(args):
    try:
        return _load(args._module).run(args)
    except EXPECTED_ERRORS as exc:
        logging.getLogger(__name__).info("traceback of the error below", exc_info=True)
        print(f"kinn-ref {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kinn-ref {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, (ValueError, ImportError, TapeMemoryError)) else f"{type(exc).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
