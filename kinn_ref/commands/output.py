"""Output folders of the commands: checked (and created) before any heavy work starts."""
import os
import tempfile
from pathlib import Path

RUNS_ROOT = Path("kinn-runs")


def default_out(*parts):
    """``./kinn-runs/<parts>``: where a command writes unless told otherwise."""
    return RUNS_ROOT.joinpath(*parts)


def prepare_output_dir(path, argument="--out"):
    """Create ``path`` (a folder) if needed and check that files can be written in it.

    Parameters
    ----------
    path : str or Path
    argument : str
        The option that named it, for the message.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        When ``path`` or one of its parents is a file, or the folder cannot be created or written.
    """
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == path else f"is under {parent}, which is a file"
            raise ValueError(f"{argument} must be a folder, but {path} {what}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{argument} {path} cannot be written: {exc.strerror or exc}") from None
    return path
