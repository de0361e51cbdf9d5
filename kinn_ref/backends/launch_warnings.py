"""Numba's performance warnings about the library's own launches, kept out of the user's output.

The backends launch small grids on purpose (one block per batch row of a tiny layer, a 4-element probe
kernel), and numba.cuda warns about every launch of fewer than 128 blocks ("Grid size ... will likely
result in GPU under-utilization"); numba's CPU compiler may warn about its parallel kernels. Those warnings
are raised inside numba's own modules, so no filter by module can tell a launch of this library from one of
the user's; :func:`quiet_launches` instead ignores ``NumbaPerformanceWarning`` only while a backend entry
point runs, and restores the caller's filters when it returns. The user's own numba code keeps every
warning. (``warnings.catch_warnings`` swaps the process-wide filters; a thread that launches its own
kernels while another runs a backend call may miss those warnings for that moment.)
"""
import functools
import sys
import warnings


PERFORMANCE_WARNING_MODULES = ("numba.core.errors", "numba.cuda.core.errors")


def performance_warning_categories():
    """The ``NumbaPerformanceWarning`` classes of the numba modules imported so far.

    numba's (``numba.core.errors``) and, when the numba-cuda package provides ``numba.cuda``, that package's
    own class (a different one). Only modules already imported are looked at, so this imports nothing (the
    cuda backend imports numba-cuda itself, after its numpy compatibility fix); a module not imported yet
    cannot have raised a warning.

    Returns
    -------
    tuple of type
    """
    found = []
    for name in PERFORMANCE_WARNING_MODULES:
        category = getattr(sys.modules.get(name), "NumbaPerformanceWarning", None)
        if category is not None and category not in found:
            found.append(category)
    return tuple(found)


def quiet_launches(func):
    """Decorator of a backend entry point: ``NumbaPerformanceWarning`` is ignored while ``func`` runs.

    Parameters
    ----------
    func : callable
        A function that compiles or launches the library's own kernels, once numba (and numba.cuda, for
        GPU kernels) is imported.

    Returns
    -------
    callable
        ``func`` with the same signature, name and docstring.
    """
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            for category in performance_warning_categories():
                warnings.filterwarnings("ignore", category=category)
            return func(*args, **kwargs)

    return wrapper
