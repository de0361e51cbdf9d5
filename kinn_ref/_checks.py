"""Argument checks shared by the public boundary: every failure is a ValueError naming the argument."""
import numbers
import os
import tempfile
from pathlib import Path

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``; raise ValueError naming ``name`` otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_positive_int(name, value, minimum=1):
    """Return ``value`` as int if it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive_float(name, value):
    """Return ``value`` as float if it is a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_step(name, value):
    """Return ``value`` as float if it is a usable time step: finite, > 0 and a normal float64.

    A subnormal step (below ``numpy.finfo(numpy.float64).tiny``, about 2.2e-308) has lost precision and its
    reciprocal overflows, so the implicit and exponential updates would produce ``inf`` and no stable step.
    """
    dt = check_positive_float(name, value)
    if dt < np.finfo(np.float64).tiny:
        raise ValueError(f"{name} must be at least {np.finfo(np.float64).tiny:.4g} (the smallest normal float64, "
                         f"whose reciprocal is finite), got {value!r}")
    return dt


def check_seed(name, value):
    """Return ``value`` if ``numpy.random.default_rng`` takes it as a seed: an integer >= 0, a
    ``numpy.random.Generator``, ``BitGenerator`` or ``SeedSequence``, or None (fresh entropy)."""
    if value is None or isinstance(value, (np.random.Generator, np.random.BitGenerator, np.random.SeedSequence)):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0 or a numpy.random.Generator, got {value!r}")
    return int(value)


def check_real(name, value, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as float if it is a finite real number inside the given interval.

    Parameters
    ----------
    name : str
        Argument name used in the error message.
    value : object
    low, high : float, optional
        Bounds of the interval (None: unbounded on that side).
    low_open, high_open : bool
        Exclude the bound itself.
    """
    inside = isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value))
    if inside and low is not None:
        inside = value > low if low_open else value >= low
    if inside and high is not None:
        inside = value < high if high_open else value <= high
    if not inside:
        lo = "-inf" if low is None else repr(low)
        hi = "inf" if high is None else repr(high)
        interval = f"{'(' if low is None or low_open else '['}{lo}, {hi}{')' if high is None or high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return float(value)


def check_array(name, value, shape, dtype=None, finite=True):
    """Check that ``value`` is a finite float ndarray of ``shape`` (None entries match any size).

    Parameters
    ----------
    name : str
        Argument name used in the error message.
    value : object
        The candidate array.
    shape : tuple of (int or None)
        Expected shape; ``None`` matches any extent.
    dtype : numpy.dtype, optional
        Required dtype. When omitted, float32 or float64 is required.
    finite : bool
        Also require every value to be finite (False: the caller checks the values another way).

    Returns
    -------
    numpy.ndarray
    """
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray of shape {_fmt(shape)}, got {type(value).__name__}")
    if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        raise ValueError(f"{name} must have shape {_fmt(shape)}, got {value.shape}")
    if dtype is not None and value.dtype != dtype:
        raise ValueError(f"{name} must have dtype {np.dtype(dtype)} (the dtype of params), got {value.dtype}")
    if dtype is None and value.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must have dtype float64 or float32, got {value.dtype}")
    if finite and not np.isfinite(value).all():
        raise ValueError(f"{name} must be finite; it holds {int(np.size(value) - np.isfinite(value).sum())} "
                         "non-finite value(s)")
    return value


def _fmt(shape):
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_output_folder(path, name, files=()):
    """Create the folder ``path`` if needed and check that the ``files`` (relative names, possibly in
    subfolders) can be written into it, before any work that would produce them.

    Parameters
    ----------
    path : str or Path
    name : str
        The argument that named it, for the messages.
    files : iterable of str
        Names of the files that will be written under ``path``.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        Naming the path: ``path`` or one of its parents is a file, one of ``files`` is a folder (or lies under
        a file), or a folder cannot be created or written.
    """
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == path else f"is under {parent}, which is a file"
            raise ValueError(f"{name} must be a folder, but {path} {what}")
    folders = {path}
    for file in files:
        target = path / file
        for parent in reversed(target.relative_to(path).parents[:-1]):
            folder = path / parent
            if folder.exists() and not folder.is_dir():
                raise ValueError(f"{name} {path}: {folder} is a file where a folder should be (for {target})")
            folders.add(folder)
        if target.is_dir():
            raise ValueError(f"{name} {path}: {target} is a folder where a file should be written")
    for folder in sorted(folders, key=lambda f: len(f.parts)):
        if folder == path or folder.exists():
            _check_writable(folder, name)
    return path


def check_output_file(path, name):
    """Create the folder of the file ``path`` if needed and check that ``path`` can be written.

    Raises
    ------
    ValueError
        Naming the path: it is a folder, lies under a file, or its folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name} must be a file, but {path} is a folder")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{name} {path} is under {parent}, which is a file")
    _check_writable(path.parent, name, path)
    return path


def _check_writable(folder, name, target=None):
    """Create ``folder`` if needed and write (then remove) a probe file in it; on failure, remove the
    folders it created."""
    target = folder if target is None else target
    created = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        for p in created:
            try:
                p.rmdir()
            except OSError:
                break
        raise ValueError(f"{name} {target} cannot be written: {exc.strerror or exc}") from None
