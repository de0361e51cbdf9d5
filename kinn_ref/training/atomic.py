"""Atomic file writes: write to a temporary file in the target's folder, then rename over the target.

A process killed while writing leaves its temporary file (``.NAME.XXXXXXXX.tmp`` next to ``NAME``) and the
previous ``NAME`` untouched; :func:`remove_stale_temporaries` clears such leftovers.
"""
import os
import re
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
        _fsync_folder(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _fsync_folder(folder):
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(path):
    """Remove the temporary files that :func:`atomic_write` to ``path`` leaves when its process is killed.

    Only names of the form ``atomic_write`` creates (``.NAME.<random>.tmp`` in the folder of ``path``) are
    removed; call it when no other process is writing ``path``.

    Parameters
    ----------
    path : str or Path
        The target file (it need not exist).

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[A-Za-z0-9_]+\.tmp")
    removed = []
    for entry in path.parent.iterdir():
        if pattern.fullmatch(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
