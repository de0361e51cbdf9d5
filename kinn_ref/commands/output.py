"""Where the commands write: output folders and files are declared with :func:`add_output_argument` and
checked (and created) by :func:`prepare_output_dir` or :func:`prepare_output_file` before any heavy work
starts, naming every file the command will write, so that a path that cannot be written ends the command at
once with one line; each file is then written atomically (a temporary file renamed over it)."""
from pathlib import Path

from .._checks import check_output_file, check_output_folder

RUNS_ROOT = Path("kinn-runs")

#: What an output argument names: a folder the command writes files into, or one file.
OUTPUT_KINDS = ("folder", "file")


def default_out(*parts):
    """``./kinn-runs/<parts>``: where a command writes unless told otherwise."""
    return RUNS_ROOT.joinpath(*parts)


def add_output_argument(parser, *flags, kind="folder", **options):
    """``parser.add_argument(*flags, type=Path, **options)``, marked as an output ``kind`` (``folder`` or
    ``file``) on the returned action's ``output`` attribute so that tools and tests find every output."""
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"kind must be one of {OUTPUT_KINDS}, got {kind!r}")
    action = parser.add_argument(*flags, type=Path, **options)
    action.output = kind
    return action


def prepare_output_dir(path, argument="--out", files=()):
    """:func:`kinn_ref._checks.check_output_folder` for a command's output folder (``argument`` names the
    option in the messages)."""
    return check_output_folder(path, argument, files)


def prepare_output_file(path, argument):
    """Create the folder of the file ``path`` if needed and check that ``path`` can be written.

    Raises
    ------
    ValueError
        When ``path`` is a folder, lies under a file, or its folder cannot be created or written.
    """
    return check_output_file(path, argument)


def run_files():
    """The files of one training run's folder (:func:`kinn_ref.tasks.run.train_task`)."""
    from ..tasks.run import RESULT_NAME
    from ..training.trainer import CHECKPOINT_NAME, METRICS_NAME
    return (CHECKPOINT_NAME, METRICS_NAME, RESULT_NAME)
