"""Argument checks shared by the public boundary: every failure is a ValueError naming the argument."""
import numbers

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


def check_array(name, value, shape, dtype=None):
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
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} must be finite; it holds {int(np.size(value) - np.isfinite(value).sum())} "
                         "non-finite value(s)")
    return value


def _fmt(shape):
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
