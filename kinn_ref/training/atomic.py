"""Atomic file writes: write to a temporary file in the target's folder, then rename over the target."""
import os
import tempfile
from pathlib import Path


def atomic_write(path, write, mode="wb"):
    """Call ``write(fileobj)`` on a temporary file next to ``path`` and rename it to ``path``.

    A reader never sees a half-written file, and a failed write leaves the old file in place.

    Parameters
    ----------
    path : str or Path
    write : callable
        Receives the open temporary file.
    mode : {"wb", "w"}

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
